#pragma once

/// \file
/// The building blocks of the DDPM/ADM UNet: a residual block conditioned on a time embedding,
/// multi-head self-attention over pixels, and 2x down- and upsampling. They are public so that other
/// backbones can be assembled from them.
///
/// Reference: Ho et al. 2020, "Denoising Diffusion Probabilistic Models"; Dhariwal & Nichol 2021,
/// "Diffusion Models Beat GANs on Image Synthesis" (ADM).

#include <manifold_diffusion/core/namespace.h>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <ostream>
#include <vector>

namespace manifold_diffusion {

/// True when this build of the library calls LibTorch's fused `at::scaled_dot_product_attention`
/// (LibTorch 2.x); false when the fused path is the library's own row-wise kernel
/// (mdiff::ops::attention, inference only) and recorded-gradient calls take the plain path.
bool fused_attention_available();

/// Scaled dot-product attention softmax(q k^T / sqrt(d)) v over the last two dimensions.
/// q, k, v have shape [..., L, d] (k and v: [..., S, d]). With `allow_fused`, LibTorch 2.x runs
/// `at::scaled_dot_product_attention` and LibTorch 1.x the library's row-wise kernel
/// (mdiff::ops::attention: no score tensor in memory; the plain path when recording gradients);
/// otherwise the plain path (the softmax is taken in float32 for half-precision inputs). All give
/// the same numbers up to rounding.
///
/// Example:
/// \code
///   at::Tensor q = at::randn({2, 4, 49, 16}), k = at::randn({2, 4, 49, 16}), v = at::randn({2, 4, 49, 16});
///   at::Tensor fused = mdiff::dot_product_attention(q, k, v);
///   at::Tensor plain = mdiff::dot_product_attention(q, k, v, /*allow_fused=*/false);  // ~= fused
/// \endcode
at::Tensor dot_product_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 bool allow_fused = true);

/// Options of ResBlock.
///
/// Example:
/// \code
///   auto opts = mdiff::ResBlockOptions(64, 128, 256).norm_groups(32).dropout(0.1).use_scale_shift_norm(true);
/// \endcode
struct ResBlockOptions {
  ResBlockOptions(int64_t in_channels, int64_t out_channels, int64_t emb_dim)
      : in_channels_(in_channels), out_channels_(out_channels), emb_dim_(emb_dim) {}

  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, out_channels);
  /// Width of the conditioning embedding passed to forward().
  TORCH_ARG(int64_t, emb_dim);
  /// Groups of both GroupNorms; must divide in_channels and out_channels.
  TORCH_ARG(int64_t, norm_groups) = 32;
  /// GroupNorm epsilon.
  TORCH_ARG(double, norm_eps) = 1e-5;
  /// Dropout before the second convolution.
  TORCH_ARG(double, dropout) = 0.0;
  /// True: the embedding gives a scale and a shift applied after the second norm (FiLM, ADM);
  /// false: the embedding is added after the first convolution (DDPM).
  TORCH_ARG(bool, use_scale_shift_norm) = true;
  /// Halve the spatial size inside the block (2x2 average pooling, ceil mode), as ADM's resblock_updown.
  TORCH_ARG(bool, down) = false;
  /// Resize to the `size` given to forward() (nearest) inside the block, as ADM's resblock_updown.
  TORCH_ARG(bool, up) = false;
  /// Start the second convolution at zero, so the block is the identity (or its skip) at init.
  TORCH_ARG(bool, zero_init) = true;
};

/// Residual block: GroupNorm, SiLU, 3x3 conv, time conditioning, GroupNorm, SiLU, dropout, 3x3 conv,
/// plus a skip connection (a 1x1 conv when the channel count changes). With `down` or `up` the
/// feature map and the skip are resized between the first activation and the first convolution.
///
/// Example:
/// \code
///   mdiff::ResBlock block(mdiff::ResBlockOptions(32, 64, 128).norm_groups(8));
///   at::Tensor h = block(at::randn({4, 32, 14, 14}), at::randn({4, 128}));   // [4, 64, 14, 14]
///   mdiff::ResBlock up(mdiff::ResBlockOptions(64, 64, 128).norm_groups(8).up(true));
///   at::Tensor u = up->forward(h, at::randn({4, 128}), {28, 28});           // [4, 64, 28, 28]
/// \endcode
class ResBlockImpl : public torch::nn::Cloneable<ResBlockImpl> {
 public:
  explicit ResBlockImpl(ResBlockOptions options);

  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  /// x [N, in_channels, H, W], emb [N, emb_dim]; `size` ({H', W'}) is required with `up` and is the
  /// output's spatial size; otherwise it must be empty.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& emb, at::IntArrayRef size = {});

  const ResBlockOptions& options() const { return options_; }

 private:
  ResBlockOptions options_;
  torch::nn::GroupNorm norm1_{nullptr}, norm2_{nullptr};
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, skip_{nullptr};
  torch::nn::Linear emb_proj_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
};
TORCH_MODULE(ResBlock);

/// Options of AttentionBlock.
///
/// Example:
/// \code
///   auto opts = mdiff::AttentionBlockOptions(128).num_head_channels(32).norm_groups(32);
/// \endcode
struct AttentionBlockOptions {
  /* implicit */ AttentionBlockOptions(int64_t channels) : channels_(channels) {}

  TORCH_ARG(int64_t, channels);
  /// Number of heads; must divide channels. Used when num_head_channels is -1.
  TORCH_ARG(int64_t, num_heads) = 4;
  /// Channels per head (the head count is channels / num_head_channels); -1 uses num_heads.
  TORCH_ARG(int64_t, num_head_channels) = -1;
  TORCH_ARG(int64_t, norm_groups) = 32;
  /// GroupNorm epsilon.
  TORCH_ARG(double, norm_eps) = 1e-5;
  /// Start the output projection at zero, so the block is the identity at init.
  TORCH_ARG(bool, zero_init) = true;
  /// Use a fused attention: LibTorch's where the build has it (fused_attention_available()),
  /// the library's row-wise kernel otherwise.
  TORCH_ARG(bool, allow_fused) = true;
};

/// Multi-head self-attention over the H * W positions of a feature map, with a residual
/// connection: x + proj(attention(qkv(GroupNorm(x)))).
///
/// Example:
/// \code
///   mdiff::AttentionBlock attn(mdiff::AttentionBlockOptions(64).num_heads(4).norm_groups(8));
///   at::Tensor y = attn(at::randn({2, 64, 7, 7}));    // [2, 64, 7, 7]
/// \endcode
class AttentionBlockImpl : public torch::nn::Cloneable<AttentionBlockImpl> {
 public:
  explicit AttentionBlockImpl(AttentionBlockOptions options);

  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  /// x [N, channels, H, W] -> same shape.
  at::Tensor forward(const at::Tensor& x);

  const AttentionBlockOptions& options() const { return options_; }
  int64_t num_heads() const { return heads_; }

 private:
  AttentionBlockOptions options_;
  int64_t heads_ = 1;
  torch::nn::GroupNorm norm_{nullptr};
  torch::nn::Conv1d qkv_{nullptr}, proj_{nullptr};
};
TORCH_MODULE(AttentionBlock);

/// Halves the spatial size with a 3x3 convolution of stride 2 (padding 1): H -> ceil(H / 2).
///
/// Example:
/// \code
///   mdiff::Downsample down(64);
///   at::Tensor y = down(at::randn({2, 64, 7, 7}));    // [2, 64, 4, 4]
/// \endcode
class DownsampleImpl : public torch::nn::Cloneable<DownsampleImpl> {
 public:
  explicit DownsampleImpl(int64_t channels);

  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  at::Tensor forward(const at::Tensor& x);

 private:
  int64_t channels_;
  torch::nn::Conv2d conv_{nullptr};
};
TORCH_MODULE(Downsample);

/// Resizes to a given spatial size (nearest neighbour) and applies a 3x3 convolution. The UNet passes
/// the size of the skip connection the result is joined with, so 4 -> 7 works as well as 7 -> 14.
///
/// Example:
/// \code
///   mdiff::Upsample up(64);
///   at::Tensor y = up->forward(at::randn({2, 64, 4, 4}), {7, 7});   // [2, 64, 7, 7]
/// \endcode
class UpsampleImpl : public torch::nn::Cloneable<UpsampleImpl> {
 public:
  explicit UpsampleImpl(int64_t channels);

  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  /// x [N, channels, H, W] -> [N, channels, size[0], size[1]].
  at::Tensor forward(const at::Tensor& x, at::IntArrayRef size);

 private:
  int64_t channels_;
  torch::nn::Conv2d conv_{nullptr};
};
TORCH_MODULE(Upsample);

}  // namespace manifold_diffusion
