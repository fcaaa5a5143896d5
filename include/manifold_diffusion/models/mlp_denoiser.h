#pragma once

/// \file
/// A residual MLP backbone for points in R^D: toy manifolds (circles, spheres, swiss rolls embedded
/// in R^D), low-dimensional latents, tabular data.

#include <manifold_diffusion/core/namespace.h>
#include <manifold_diffusion/models/embeddings.h>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <ostream>
#include <string>

namespace manifold_diffusion {

/// Options of MLPResBlock.
///
/// Example:
/// \code
///   auto opts = mdiff::MLPResBlockOptions(256, 256).dropout(0.1).use_scale_shift_norm(false);
/// \endcode
struct MLPResBlockOptions {
  MLPResBlockOptions(int64_t hidden, int64_t emb_dim) : hidden_(hidden), emb_dim_(emb_dim) {}

  /// Width of the block's input and output.
  TORCH_ARG(int64_t, hidden);
  /// Width of the conditioning embedding.
  TORCH_ARG(int64_t, emb_dim);
  /// Dropout before the second linear layer.
  TORCH_ARG(double, dropout) = 0.0;
  /// True: the embedding gives a scale and a shift (FiLM); false: it is added.
  TORCH_ARG(bool, use_scale_shift_norm) = true;
  /// Start the second linear layer at zero, so the block is the identity at init.
  TORCH_ARG(bool, zero_init) = true;
};

/// Residual block x + Linear(Dropout(cond(SiLU(Linear(LayerNorm(x))), emb))), where cond applies
/// the embedding as h * (1 + scale) + shift (FiLM) or h + shift.
///
/// Example:
/// \code
///   mdiff::MLPResBlock block(mdiff::MLPResBlockOptions(128, 128));
///   at::Tensor h = block(at::randn({64, 128}), at::randn({64, 128}));   // [64, 128]
/// \endcode
class MLPResBlockImpl : public torch::nn::Cloneable<MLPResBlockImpl> {
 public:
  explicit MLPResBlockImpl(MLPResBlockOptions options);

  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  /// x [N, hidden], emb [N, emb_dim] -> [N, hidden].
  at::Tensor forward(const at::Tensor& x, const at::Tensor& emb);

  const MLPResBlockOptions& options() const { return options_; }

 private:
  MLPResBlockOptions options_;
  torch::nn::LayerNorm norm_{nullptr};
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr}, emb_proj_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
};
TORCH_MODULE(MLPResBlock);

/// Options of MLPDenoiser.
///
/// Example:
/// \code
///   auto opts = mdiff::MLPDenoiserOptions(2).hidden(128).num_blocks(3).num_classes(4);
///   std::string json = opts.to_json();   // round-trips through MLPDenoiserOptions::from_json
/// \endcode
struct MLPDenoiserOptions {
  /* implicit */ MLPDenoiserOptions(int64_t dim) : dim_(dim) {}

  /// Dimension D of the points (input and output width).
  TORCH_ARG(int64_t, dim);
  /// Width of the residual stream and of the conditioning embedding.
  TORCH_ARG(int64_t, hidden) = 256;
  /// Number of residual blocks.
  TORCH_ARG(int64_t, num_blocks) = 4;
  /// Width of the timestep features fed to the time MLP.
  TORCH_ARG(int64_t, time_embed_dim) = 128;
  /// Features of the timestep.
  TORCH_ARG(TimeEmbedding, time_embedding) = TimeEmbedding::Sinusoidal;
  /// Frequency scale of the Fourier time embedding (FourierEmbeddingOptions::scale).
  TORCH_ARG(double, fourier_scale) = 16.0;
  /// 0: unconditional; otherwise labels 0 .. num_classes - 1 plus the null class (num_classes or -1).
  TORCH_ARG(int64_t, num_classes) = 0;
  /// Width of a continuous conditioning vector (e.g. manifold coordinates of x0), given to forward()
  /// in place of class labels: a linear embedding of it is added to the time embedding. An
  /// undefined conditioning means the zero vector. 0: none. Exclusive with num_classes.
  TORCH_ARG(int64_t, cond_dim) = 0;
  /// Dropout inside the residual blocks.
  TORCH_ARG(double, dropout) = 0.0;
  /// True: FiLM time conditioning (scale and shift); false: additive.
  TORCH_ARG(bool, use_scale_shift_norm) = true;
  /// The second linear layer of every block and the output layer start at zero, so the untrained
  /// network outputs 0.
  TORCH_ARG(bool, zero_init_output) = true;

 public:
  /// Fails with a message naming the bad option; the MLPDenoiser constructor and from_json call it.
  void validate() const;

  /// JSON object with every field.
  std::string to_json() const;
  /// Parses to_json()'s output (dim is required, the rest default); unknown keys and bad values are
  /// errors that name them.
  static MLPDenoiserOptions from_json(const std::string& json);
};

/// Residual MLP denoiser for points in R^D: Linear(D, hidden), num_blocks MLPResBlocks conditioned
/// on a time (plus class) embedding of width hidden, then LayerNorm, SiLU, Linear(hidden, D).
/// The time embedding is sinusoidal or Fourier features of width time_embed_dim followed by a
/// two-layer MLP (SiLU).
///
/// Example:
/// \code
///   mdiff::MLPDenoiser net(mdiff::MLPDenoiserOptions(3).hidden(128));
///   at::Tensor x_t = at::randn({512, 3});
///   at::Tensor t = at::randint(0, 1000, {512}, at::kLong);
///   at::Tensor eps = net(x_t, t);                 // [512, 3]
/// \endcode
class MLPDenoiserImpl : public torch::nn::Cloneable<MLPDenoiserImpl> {
 public:
  explicit MLPDenoiserImpl(MLPDenoiserOptions options);

  void reset() override;
  /// Shows every option.
  void pretty_print(std::ostream& stream) const override;

  /// x [N, dim] floating; t [N] (integral or floating) or 0-dim, moved to x's device;
  /// class_labels [N] integral in [-1, num_classes] or undefined (the null class); with cond_dim > 0
  /// instead a floating conditioning vector [N, cond_dim] (or undefined: zeros). Returns [N, dim].
  at::Tensor forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& class_labels = {});

  const MLPDenoiserOptions& options() const { return options_; }

 private:
  MLPDenoiserOptions options_;
  SinusoidalEmbedding sinusoidal_{nullptr};
  FourierEmbedding fourier_{nullptr};
  torch::nn::Linear time_fc1_{nullptr}, time_fc2_{nullptr}, input_{nullptr}, output_{nullptr};
  torch::nn::Embedding label_embedding_{nullptr};
  torch::nn::Linear cond_embedding_{nullptr};
  torch::nn::ModuleList blocks_{nullptr};
  torch::nn::LayerNorm output_norm_{nullptr};
};
TORCH_MODULE(MLPDenoiser);

}  // namespace manifold_diffusion
