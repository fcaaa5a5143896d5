#pragma once
/// \file
/// A small autoencoder: the learned data manifold { D(z) } used by the autoencoder regulariser,
/// latent diffusion and the autoencoder-projected sampling constraints. An MLP variant for points
/// (R^D -> R^latent_dim) and a convolutional variant for images (C x H x W -> latent_channels x
/// H/4 x W/4).

#include <manifold_diffusion/core/enum.h>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace manifold_diffusion {

/// Architecture of an Autoencoder.
enum class AutoencoderKind {
  MLP,   ///< points [N, D] -> latents [N, latent]
  Conv,  ///< images [N, C, H, W] (H, W divisible by 4) -> latents [N, latent, H/4, W/4]
};

template <>
struct EnumTraits<AutoencoderKind> {
  static constexpr const char* type_name = "AutoencoderKind";
  static constexpr EnumEntry<AutoencoderKind> entries[] = {{AutoencoderKind::MLP, "mlp"}, {AutoencoderKind::Conv, "conv"}};
};

/// Options of an Autoencoder. `input` is D (MLP) or the image channels C (Conv); `latent` is the
/// latent dimension (MLP) or the latent channels (Conv).
///
/// Example:
/// \code
///   auto points = mdiff::AutoencoderOptions::mlp(8, 2).hidden(128);       // R^8 -> R^2
///   auto images = mdiff::AutoencoderOptions::conv(1, 4).hidden(32);       // 1x28x28 -> 4x7x7
/// \endcode
struct AutoencoderOptions {
  AutoencoderOptions(AutoencoderKind kind, int64_t input, int64_t latent) : kind_(kind), input_(input), latent_(latent) {}
  static AutoencoderOptions mlp(int64_t dim, int64_t latent_dim) { return {AutoencoderKind::MLP, dim, latent_dim}; }
  static AutoencoderOptions conv(int64_t channels, int64_t latent_channels) {
    return {AutoencoderKind::Conv, channels, latent_channels};
  }

  TORCH_ARG(AutoencoderKind, kind);
  /// D (MLP) or C (Conv).
  TORCH_ARG(int64_t, input);
  /// Latent dimension (MLP) or latent channels (Conv).
  TORCH_ARG(int64_t, latent);
  /// Hidden width (MLP) or base channels (Conv).
  TORCH_ARG(int64_t, hidden) = 128;
  /// Hidden layers of the MLP encoder (the decoder mirrors it); ignored by Conv.
  TORCH_ARG(int64_t, layers) = 3;

 public:
  /// Fails with a message naming the bad option.
  void validate() const;
  std::string to_json() const;
  static AutoencoderOptions from_json(const std::string& json);
};

/// Encoder E and decoder D with SiLU activations. forward(x) = decode(encode(x)); project(x) is the
/// same map without gradient, the autoencoder's projection onto its learned manifold.
///
/// Example:
/// \code
///   mdiff::Autoencoder ae(mdiff::AutoencoderOptions::mlp(8, 2));
///   auto history = mdiff::train_autoencoder(ae, points, mdiff::AutoencoderTrainOptions().steps(2000));
///   at::Tensor z = ae->encode(points);        // [N, 2]
///   at::Tensor p = ae->project(points + 0.1 * at::randn_like(points));
///   mdiff::save_autoencoder("out/ae.safetensors", ae);
///   mdiff::Autoencoder again = mdiff::load_autoencoder("out/ae.safetensors");
/// \endcode
class AutoencoderImpl : public torch::nn::Cloneable<AutoencoderImpl> {
 public:
  explicit AutoencoderImpl(AutoencoderOptions options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  at::Tensor encode(const at::Tensor& x);
  at::Tensor decode(const at::Tensor& z);
  at::Tensor forward(const at::Tensor& x);
  /// decode(encode(x)) without gradient, in eval mode (restores the mode afterwards).
  at::Tensor project(const at::Tensor& x);
  /// Latent shape of one sample for an input sample shape (e.g. {1, 28, 28} -> {4, 7, 7}).
  std::vector<int64_t> latent_shape(const std::vector<int64_t>& sample_shape) const;

  const AutoencoderOptions& options() const { return options_; }

 private:
  void check_input(const at::Tensor& x) const;
  AutoencoderOptions options_;
  torch::nn::Sequential encoder_{nullptr}, decoder_{nullptr};
};
TORCH_MODULE(Autoencoder);

/// Options of train_autoencoder().
///
/// Example:
/// \code
///   auto o = mdiff::AutoencoderTrainOptions().steps(3000).batch(256).lr(2e-3).seed(1);
/// \endcode
struct AutoencoderTrainOptions {
  TORCH_ARG(int64_t, steps) = 2000;
  TORCH_ARG(int64_t, batch) = 256;
  TORCH_ARG(double, lr) = 2e-3;
  TORCH_ARG(double, weight_decay) = 0.0;
  /// Cosine decay of the learning rate to zero over `steps`.
  TORCH_ARG(bool, cosine_decay) = true;
  TORCH_ARG(uint64_t, seed) = 0;

 public:
  void validate() const;
};

/// Trains `ae` (in place) to reconstruct rows of `data` [N, ...] with the mean squared error, by
/// AdamW on batches drawn with replacement from a generator seeded by options.seed (deterministic on
/// the CPU). Returns the loss of every step. Leaves the module in eval mode.
std::vector<double> train_autoencoder(Autoencoder& ae, const at::Tensor& data, const AutoencoderTrainOptions& options);

/// Writes the options and weights to `path` atomically.
void save_autoencoder(const std::string& path, const Autoencoder& ae);
/// Reads what save_autoencoder() wrote (on the CPU, eval mode).
Autoencoder load_autoencoder(const std::string& path);

}  // namespace manifold_diffusion
