#pragma once

/// \file
/// Fused sampler update: classifier-free guidance, conversion to x0, x0 clipping and the linear
/// update of one sampler step, in one pass over the data.

#include <manifold_diffusion/core/enum.h>
#include <manifold_diffusion/ops/backend.h>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <torch/arg.h>

#include <cstdint>

namespace manifold_diffusion {
namespace ops {

/// How the clean-sample estimate x0 is clipped before the update.
///
/// Example:
/// \code
///   auto clip = mdiff::enum_from_string<mdiff::ops::X0Clip>("dynamic");   // X0Clip::Dynamic
/// \endcode
enum class X0Clip {
  None,     ///< no clipping.
  Static,   ///< clamp to [-r, r] (r = SamplerStepCoefficients::r; 1 for data in [-1, 1]).
  Dynamic,  ///< per-sample dynamic thresholding (Saharia et al. 2022): clamp(x0, -s_i, s_i) / s_i.
};

/// The scalar coefficients of a fused sampler step:
///
///     guided = uncond_out + w * (cond_out - uncond_out)    (cond_out when uncond_out is undefined)
///     x0     = clip(c_x * x + c_out * guided)
///     x_next = k_x * x + k_x0 * x0 + k_prev * x0_prev + k_noise * noise
///
/// The defaults give x0 = cond_out and x_next = x0. `to_tensor()` packs them, in the order of
/// `Index`, into the float64 tensor of shape [kSize] that the tensor overloads read on the device:
/// a captured CUDA graph replays with new coefficients after a `copy_()` into that tensor.
///
/// Common parameterisations (a = sqrt(alpha_bar), s = sqrt(1 - alpha_bar)):
/// eps-prediction c_x = 1 / a, c_out = -s / a; v-prediction c_x = a, c_out = -s; x0-prediction
/// c_x = 0, c_out = 1; EDM with sigma = s / a: c_x = c_skip / a, c_out = c_out(sigma).
///
/// Example:
/// \code
///   // A deterministic DDIM step from alpha_bar = 0.5 to 0.8 with an eps-predicting network:
///   const double a = std::sqrt(0.5), s = std::sqrt(0.5), a1 = std::sqrt(0.8), s1 = std::sqrt(0.2);
///   auto coef = mdiff::ops::SamplerStepCoefficients().c_x(1 / a).c_out(-s / a).k_x(s1 / s).k_x0(a1 - s1 * a / s);
///   at::Tensor device_coef = coef.to_tensor(x.device());   // [8] float64
/// \endcode
struct SamplerStepCoefficients {
  /// Positions of the coefficients in the packed tensor.
  enum Index : int64_t { kW = 0, kCx, kCout, kKx, kKx0, kKprev, kKnoise, kR, kSize };

  /// Guidance scale w of uncond_out + w * (cond_out - uncond_out); unused without uncond_out.
  TORCH_ARG(double, w) = 1.0;
  /// Weight of x in x0.
  TORCH_ARG(double, c_x) = 0.0;
  /// Weight of the (guided) network output in x0.
  TORCH_ARG(double, c_out) = 1.0;
  /// Weight of x in x_next.
  TORCH_ARG(double, k_x) = 0.0;
  /// Weight of the (clipped) x0 in x_next.
  TORCH_ARG(double, k_x0) = 1.0;
  /// Weight of x0_prev in x_next (multistep memory, Heun's first estimate).
  TORCH_ARG(double, k_prev) = 0.0;
  /// Weight of noise in x_next.
  TORCH_ARG(double, k_noise) = 0.0;
  /// Bound of X0Clip::Static (must be positive then).
  TORCH_ARG(double, r) = 1.0;

 public:
  /// The coefficients as a float64 tensor of shape [kSize] on `device`, in the order of `Index`.
  at::Tensor to_tensor(c10::Device device = c10::Device(c10::kCPU)) const;
  /// Reads a [kSize] float64 tensor (copies it to the host: a synchronisation on a GPU).
  static SamplerStepCoefficients from_tensor(const at::Tensor& coefficients);
};

/// Result of sampler_step().
///
/// Example:
/// \code
///   auto [x_next, x0] = mdiff::ops::sampler_step(x, eps, {}, {}, {}, coef);
/// \endcode
struct SamplerStepOutput {
  at::Tensor x_next;  ///< the next sample.
  at::Tensor x0;      ///< the clipped clean-sample estimate used by the update.
};

/// One sampler step in one pass over the data (see SamplerStepCoefficients for the equations):
/// guidance, conversion of the network output to x0, clipping, and the linear update that covers
/// DDPM's posterior step, DDIM (any eta), DPM-Solver++(2M) (x0_prev = the previous step's x0),
/// Euler and both stages of Heun.
///
/// `x`, `cond_out` and the optional `uncond_out`, `x0_prev` and `noise` (undefined = absent) share
/// a shape [N, ...], a floating dtype (float16, bfloat16, float32, float64) and a device. With
/// X0Clip::Dynamic, `s` is the per-sample bound [N] (floating, positive, same device; e.g. the
/// `at::quantile` of |x0| clamped below at 1); otherwise `s` must be undefined. Arithmetic runs in
/// float32 for the reduced-precision dtypes and float64 for float64; both outputs have x's dtype,
/// and x's memory layout when every input shares it (channels_last included).
///
/// When autograd records (an input requires grad and grad mode is on), `Auto` runs the
/// differentiable reference and `Native` is an error.
///
/// Example:
/// \code
///   // Classifier-free guidance with w = 3, eps-prediction, static clipping and a DDPM posterior step:
///   auto coef = mdiff::ops::SamplerStepCoefficients().w(3).c_x(1 / a).c_out(-s / a)
///                   .k_x(c2).k_x0(c1).k_noise(std::sqrt(post_var));
///   auto out = mdiff::ops::sampler_step(x, eps_cond, eps_uncond, {}, at::randn_like(x), coef,
///                                       mdiff::ops::X0Clip::Static);
///   x = out.x_next;
/// \endcode
SamplerStepOutput sampler_step(const at::Tensor& x, const at::Tensor& cond_out, const at::Tensor& uncond_out,
                               const at::Tensor& x0_prev, const at::Tensor& noise,
                               const SamplerStepCoefficients& coefficients, X0Clip clip = X0Clip::None,
                               const at::Tensor& s = {}, OpBackend backend = OpBackend::Auto);

/// As above with the coefficients in a float64 tensor of shape [8] on x's device (see
/// SamplerStepCoefficients::to_tensor); the native kernels read it through a pointer, so a captured
/// CUDA graph picks up new values copied into it. Its values are validated (finite, r > 0 for
/// static clipping) except while a CUDA stream is capturing, where reading them is impossible.
///
/// Example:
/// \code
///   at::Tensor coef = mdiff::ops::SamplerStepCoefficients().c_x(1).c_out(-0.5).k_x0(1).to_tensor(x.device());
///   auto out = mdiff::ops::sampler_step(x, eps, {}, {}, {}, coef);
///   coef.copy_(next_coef.to_tensor());   // new step, same tensor
/// \endcode
SamplerStepOutput sampler_step(const at::Tensor& x, const at::Tensor& cond_out, const at::Tensor& uncond_out,
                               const at::Tensor& x0_prev, const at::Tensor& noise, const at::Tensor& coefficients,
                               X0Clip clip = X0Clip::None, const at::Tensor& s = {},
                               OpBackend backend = OpBackend::Auto);

/// The first half of sampler_step(): x0 = clip(c_x * x + c_out * guided), for samplers that let
/// hooks change x0 before the update. Reads w, c_x, c_out and r.
///
/// Example:
/// \code
///   at::Tensor x0 = mdiff::ops::predict_x0(x, v_cond, {}, mdiff::ops::SamplerStepCoefficients().c_x(a).c_out(-s));
///   x0 = my_hook(x0);
///   at::Tensor x_next = mdiff::ops::combine(x, x0, {}, {}, update_coef);
/// \endcode
at::Tensor predict_x0(const at::Tensor& x, const at::Tensor& cond_out, const at::Tensor& uncond_out,
                      const SamplerStepCoefficients& coefficients, X0Clip clip = X0Clip::None,
                      const at::Tensor& s = {}, OpBackend backend = OpBackend::Auto);

/// predict_x0() with the coefficients in a float64 [8] tensor on x's device.
///
/// Example:
/// \code
///   at::Tensor x0 = mdiff::ops::predict_x0(x, out, {}, coef.to_tensor(x.device()), mdiff::ops::X0Clip::Static);
/// \endcode
at::Tensor predict_x0(const at::Tensor& x, const at::Tensor& cond_out, const at::Tensor& uncond_out,
                      const at::Tensor& coefficients, X0Clip clip = X0Clip::None, const at::Tensor& s = {},
                      OpBackend backend = OpBackend::Auto);

/// The second half of sampler_step(): x_next = k_x * x + k_x0 * x0 + k_prev * x0_prev + k_noise * noise
/// (x0_prev and noise optional). Reads k_x, k_x0, k_prev and k_noise.
///
/// Example:
/// \code
///   // Euler from sigma to sigma_next in the VE domain:
///   at::Tensor x_next = mdiff::ops::combine(x, x0, {}, {},
///       mdiff::ops::SamplerStepCoefficients().k_x(sigma_next / sigma).k_x0(1 - sigma_next / sigma));
/// \endcode
at::Tensor combine(const at::Tensor& x, const at::Tensor& x0, const at::Tensor& x0_prev, const at::Tensor& noise,
                   const SamplerStepCoefficients& coefficients, OpBackend backend = OpBackend::Auto);

/// combine() with the coefficients in a float64 [8] tensor on x's device.
///
/// Example:
/// \code
///   at::Tensor x_next = mdiff::ops::combine(x, x0, x0_prev, {}, coef.to_tensor(x.device()));
/// \endcode
at::Tensor combine(const at::Tensor& x, const at::Tensor& x0, const at::Tensor& x0_prev, const at::Tensor& noise,
                   const at::Tensor& coefficients, OpBackend backend = OpBackend::Auto);

}  // namespace ops

template <>
struct EnumTraits<ops::X0Clip> {
  static constexpr const char* type_name = "X0Clip";
  static constexpr EnumEntry<ops::X0Clip> entries[] = {
      {ops::X0Clip::None, "none"},
      {ops::X0Clip::Static, "static"},
      {ops::X0Clip::Dynamic, "dynamic"},
  };
};

}  // namespace manifold_diffusion
