#pragma once

/// \file
/// Fused forward noising with a per-sample coefficient gather (training's `q_sample`).

#include <manifold_diffusion/ops/backend.h>

#include <ATen/core/Tensor.h>

namespace manifold_diffusion {
namespace ops {

/// Forward noising of the variance-preserving process, in one pass over the data:
///
///     x_t[i] = signal[t[i]] * x0[i] + noise_scale[t[i]] * noise[i]
///
/// where `signal` = sqrt(alpha_bar) and `noise_scale` = sqrt(1 - alpha_bar) are 1-D tables of
/// length T (float32 or float64) and `t` holds one integer timestep per sample (int64 or int32,
/// shape [N], values in [0, T)). `x0` and `noise` share shape [N, ...] and a floating dtype
/// (float16, bfloat16, float32, float64); all tensors live on one device. Arithmetic runs in float32
/// for the reduced-precision dtypes and float64 for float64. Returns a new tensor shaped like `x0`.
///
/// Validation reads `t`'s min and max (a GPU synchronisation) so that an out-of-range timestep is a
/// clear error instead of an out-of-bounds read.
///
/// Example:
/// \code
///   at::Tensor ab = at::cumprod(1 - at::linspace(1e-4, 0.02, 1000, at::kDouble), 0);
///   at::Tensor x_t = mdiff::ops::q_sample(x0, at::randn_like(x0), t, ab.sqrt(), (1 - ab).sqrt());
/// \endcode
at::Tensor q_sample(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t,
                    const at::Tensor& signal, const at::Tensor& noise_scale,
                    OpBackend backend = OpBackend::Auto);

}  // namespace ops
}  // namespace manifold_diffusion
