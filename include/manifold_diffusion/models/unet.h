#pragma once

/// \file
/// The UNet backbone of the DDPM/ADM family for image diffusion.
///
/// Reference: Ho et al. 2020, "Denoising Diffusion Probabilistic Models" (DDPM); Nichol & Dhariwal
/// 2021, "Improved Denoising Diffusion Probabilistic Models" (learned variances); Dhariwal & Nichol
/// 2021, "Diffusion Models Beat GANs on Image Synthesis" (ADM: scale-shift norm, resblock up/down,
/// head channels, class conditioning).

#include <manifold_diffusion/core/namespace.h>
#include <manifold_diffusion/models/blocks.h>
#include <manifold_diffusion/models/embeddings.h>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace manifold_diffusion {

/// Options of UNet. The defaults give a small DDPM-style network for 28x28 images
/// (base_channels 64, levels of 64, 128 and 128 channels, no attention).
///
/// Example:
/// \code
///   auto opts = mdiff::UNetOptions(1, 1)
///                   .base_channels(64)
///                   .channel_mult({1, 2, 2})
///                   .attention_resolutions({14})   // feature-map sizes of a 28x28 input: 28, 14, 7
///                   .image_size(28)
///                   .num_classes(10)
///                   .learn_sigma(true);
///   std::string json = opts.to_json();           // round-trips through UNetOptions::from_json
/// \endcode
struct UNetOptions {
  UNetOptions(int64_t in_channels, int64_t out_channels) : in_channels_(in_channels), out_channels_(out_channels) {}

  /// Channels of the input images.
  TORCH_ARG(int64_t, in_channels);
  /// Channels of the prediction (doubled by learn_sigma).
  TORCH_ARG(int64_t, out_channels);
  /// Channels of the first level; level i has base_channels * channel_mult[i]. The time embedding
  /// has 4 * base_channels features.
  TORCH_ARG(int64_t, base_channels) = 64;
  /// One multiplier per resolution level; each level after the first halves the spatial size
  /// (H -> ceil(H / 2)).
  TORCH_ARG(std::vector<int64_t>, channel_mult) = std::vector<int64_t>{1, 2, 2};
  /// Residual blocks per level on the way down (the way up has one more per level).
  TORCH_ARG(int64_t, num_res_blocks) = 2;
  /// Feature-map sizes (of an image_size x image_size input) at which a self-attention block
  /// follows each residual block; each must be one of the level sizes, e.g. {14} for 28x28 inputs
  /// (sizes 28, 14, 7) or {16} for 32x32 (32, 16, 8).
  TORCH_ARG(std::vector<int64_t>, attention_resolutions) = std::vector<int64_t>{};
  /// Side of the square images the attention_resolutions refer to. Inputs of other sizes still run
  /// (the network is convolutional); attention then sits at the same levels.
  TORCH_ARG(int64_t, image_size) = 28;
  /// Self-attention in the middle block, between its two residual blocks (DDPM and ADM have it).
  TORCH_ARG(bool, middle_attention) = true;
  /// Attention heads, used when num_head_channels is -1.
  TORCH_ARG(int64_t, num_heads) = 4;
  /// Channels per attention head (heads = channels / num_head_channels); -1 uses num_heads.
  TORCH_ARG(int64_t, num_head_channels) = -1;
  /// Dropout inside the residual blocks.
  TORCH_ARG(double, dropout) = 0.0;
  /// Groups of every GroupNorm; must divide every channel count base_channels * channel_mult[i].
  TORCH_ARG(int64_t, norm_groups) = 32;
  /// Epsilon of every GroupNorm (diffusers' norm_eps; 1e-6 in google/ddpm-* models).
  TORCH_ARG(double, norm_eps) = 1e-5;
  /// True: time (and class) conditioning as a per-channel scale and shift after a norm (FiLM, ADM);
  /// false: added to the features (DDPM).
  TORCH_ARG(bool, use_scale_shift_norm) = true;
  /// Features of the timestep fed to the time MLP.
  TORCH_ARG(TimeEmbedding, time_embedding) = TimeEmbedding::Sinusoidal;
  /// Frequency scale of the Fourier time embedding (FourierEmbeddingOptions::scale).
  TORCH_ARG(double, fourier_scale) = 16.0;
  /// Shift of the sinusoidal embedding's frequencies, as diffusers' freq_shift: frequency i of the
  /// D = base_channels features is exp(-ln(10000) * i / (D / 2 - freq_shift)); 0 is the DDPM/ADM
  /// embedding, 1 that of diffusers' google/ddpm-* models. Must be below D / 2.
  TORCH_ARG(double, freq_shift) = 0.0;
  /// 0: unconditional. Otherwise labels 0 .. num_classes - 1 plus a null class (index num_classes,
  /// or label -1) for classifier-free guidance; an embedding table of num_classes + 1 rows.
  TORCH_ARG(int64_t, num_classes) = 0;
  /// Width of the augmentation-parameter conditioning (EDM's non-leaky augmentation: the labels of
  /// data::Augment, mapped by a bias-free linear layer into the embedding); 0: none.
  TORCH_ARG(int64_t, augment_dim) = 0;
  /// False: strided-convolution downsampling and nearest-plus-convolution upsampling; true: ADM's
  /// residual blocks with down/up sampling inside.
  TORCH_ARG(bool, resblock_updown) = false;
  /// Double the output channels: the first half predicts eps, the second the variance
  /// interpolation values v of Nichol & Dhariwal 2021.
  TORCH_ARG(bool, learn_sigma) = false;
  /// The last convolution of every residual block, every attention projection and the output
  /// convolution start at zero, so the untrained network outputs 0.
  TORCH_ARG(bool, zero_init_output) = true;
  /// Memory layout in evaluation mode: channels_last (NHWC) convolution weights and feature maps
  /// (the convolutions, fused normalisations and attention run without layout conversions;
  /// measured in docs/performance.md); training mode always runs NCHW. false: NCHW throughout.
  /// Results agree to float rounding; checkpoints do not depend on it. forward() takes and
  /// returns contiguous NCHW tensors either way.
  TORCH_ARG(bool, channels_last) = true;

 public:
  /// Channels of forward()'s output: out_channels, doubled by learn_sigma.
  int64_t output_channels() const { return learn_sigma_ ? 2 * out_channels_ : out_channels_; }
  /// Fails with a message naming the bad option; the UNet constructor and from_json call it.
  void validate() const;

  /// JSON object with every field.
  std::string to_json() const;
  /// Parses to_json()'s output (in_channels and out_channels are required, the rest default);
  /// unknown keys and bad values are errors that name them.
  static UNetOptions from_json(const std::string& json);
};

/// UNet denoiser of the DDPM/ADM family: eps (or x0, v: the network does not care) from a noisy
/// image x_t, its timestep t and, optionally, a class label.
///
/// Layout: a 3x3 input convolution; per level, num_res_blocks residual blocks (each followed by
/// self-attention at the attention_resolutions), then a 2x downsampling except at the last level;
/// a middle block (residual, attention, residual); the mirrored way up with num_res_blocks + 1
/// residual blocks per level that each take a skip connection, and a 2x upsampling whose output
/// size is the size of the skip it meets, so odd sizes work (28 -> 14 -> 7 -> 4 and back); GroupNorm,
/// SiLU and a 3x3 output convolution. Timesteps go through the time embedding and a two-layer MLP
/// (SiLU) of width 4 * base_channels; a class embedding is added to it.
///
/// Example:
/// \code
///   mdiff::UNet net(mdiff::UNetOptions(1, 1).base_channels(32).attention_resolutions({14}).num_classes(10));
///   at::Tensor x_t = at::randn({8, 1, 28, 28});
///   at::Tensor t = at::randint(0, 1000, {8}, at::kLong);
///   at::Tensor labels = at::randint(0, 10, {8}, at::kLong);
///   at::Tensor eps = net(x_t, t, labels);          // [8, 1, 28, 28]
///   at::Tensor uncond = net(x_t, t);               // the null class: classifier-free guidance
/// \endcode
class UNetImpl : public torch::nn::Cloneable<UNetImpl> {
 public:
  explicit UNetImpl(UNetOptions options);

  void reset() override;
  /// Switches training / evaluation mode; with UNetOptions::channels_last, also the layout of the
  /// convolution weights: NHWC in evaluation mode (inference runs NHWC), NCHW in training mode
  /// (LibTorch's normalisation backward is faster there). Values and parameter identities are kept.
  void train(bool on = true) override;
  /// Shows every option.
  void pretty_print(std::ostream& stream) const override;

  /// x [N, in_channels, H, W] floating; t [N] (integral or floating; fractional timesteps allowed)
  /// or a 0-dim tensor used for the whole batch, moved to x's device; class_labels [N] integral in
  /// [-1, num_classes] (num_classes and -1 are the null class), or undefined for the null class.
  /// Returns [N, output_channels(), H, W].
  at::Tensor forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& class_labels = {},
                     const at::Tensor& augment_labels = {});

  const UNetOptions& options() const { return options_; }

 private:
  // One step of the way down, the middle or the way up, in order.
  enum class Step { Res, Attention, Down, Up };

  at::Tensor embed(const at::Tensor& t, const at::Tensor& class_labels, const at::Tensor& augment_labels, int64_t batch,
                   const at::Tensor& like);

  UNetOptions options_;
  SinusoidalEmbedding sinusoidal_{nullptr};
  FourierEmbedding fourier_{nullptr};
  torch::nn::Linear time_fc1_{nullptr}, time_fc2_{nullptr};
  torch::nn::Embedding label_embedding_{nullptr};
  torch::nn::Linear augment_embedding_{nullptr};
  torch::nn::Conv2d input_conv_{nullptr}, output_conv_{nullptr};
  torch::nn::GroupNorm output_norm_{nullptr};
  torch::nn::ModuleList down_{nullptr}, middle_{nullptr}, up_{nullptr};
  std::vector<Step> down_steps_, middle_steps_, up_steps_;
  // Whether the output of down_[i] is kept as a skip connection.
  std::vector<bool> down_keeps_;
};
TORCH_MODULE(UNet);

}  // namespace manifold_diffusion
