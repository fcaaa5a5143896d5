#pragma once

/// \file
/// Fused GroupNorm + per-sample scale/shift + SiLU (the normalisation of a UNet residual block).

#include <manifold_diffusion/ops/backend.h>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <cstdint>

namespace manifold_diffusion {
namespace ops {

/// Options of group_norm_silu().
///
/// Example:
/// \code
///   auto opts = mdiff::ops::GroupNormSiLUOptions(32).eps(1e-6).silu(false);
/// \endcode
struct GroupNormSiLUOptions {
  /* implicit */ GroupNormSiLUOptions(int64_t num_groups) : num_groups_(num_groups) {}
  /// Groups the channels are split into; must divide the channel count.
  TORCH_ARG(int64_t, num_groups);
  /// Added to the variance before the square root.
  TORCH_ARG(double, eps) = 1e-5;
  /// Apply SiLU (x * sigmoid(x)) after the affine steps; false leaves the identity.
  TORCH_ARG(bool, silu) = true;

 public:
  GroupNormSiLUOptions() = delete;
};

/// GroupNorm followed by an optional per-sample FiLM scale/shift and SiLU, in two passes over the
/// data (statistics, then one fused affine + activation pass):
///
///     h = (x - mean[n, g]) / sqrt(var[n, g] + eps) * weight[c] + bias[c]
///     h = h * (1 + scale[n, c]) + shift[n, c]          (when scale / shift are given)
///     y = silu(h)                                      (when options.silu())
///
/// `x` is [N, C, *] (any number of spatial dimensions, float32 / float64 / float16 / bfloat16;
/// 4-D inputs may be channels_last, and the output keeps the input's memory format). `weight`
/// and `bias` are [C] (or undefined: 1 and 0), `scale` and `shift` are [N, C] (or undefined), all
/// in x's dtype and on x's device. Statistics accumulate in float32 (float64 for float64 inputs);
/// the variance is the biased one, as in torch's GroupNorm.
///
/// The native paths (a vectorised CPU loop, a CUDA kernel) have no backward: with autograd
/// recording and any input requiring grad, `Auto` runs the ATen composition (differentiable) and
/// `Native` is an error. `Reference` computes the composition in float64 (the test oracle).
///
/// Example:
/// \code
///   at::NoGradGuard no_grad;
///   at::Tensor y = mdiff::ops::group_norm_silu(x, norm->weight, norm->bias, ss[0], ss[1],
///                                              mdiff::ops::GroupNormSiLUOptions(32));
/// \endcode
at::Tensor group_norm_silu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                           const at::Tensor& scale, const at::Tensor& shift, const GroupNormSiLUOptions& options,
                           OpBackend backend = OpBackend::Auto);

}  // namespace ops
}  // namespace manifold_diffusion
