#pragma once

/// \file
/// Fused forward noising and training target: x_t and the regression target of one prediction type
/// in one pass over the data.

#include <manifold_diffusion/core/enum.h>
#include <manifold_diffusion/ops/backend.h>

#include <ATen/core/Tensor.h>

namespace manifold_diffusion {
namespace ops {

/// What a network regresses onto during training; the same parameterisations as
/// `PredictionType` (models/denoiser.h) without EDM, whose target needs its own preconditioning.
///
/// Example:
/// \code
///   auto tt = mdiff::enum_from_string<mdiff::ops::TrainingTarget>("v_prediction");
/// \endcode
enum class TrainingTarget {
  Epsilon,      ///< the noise: target = eps (Ho et al. 2020).
  Sample,       ///< the clean sample: target = x0.
  VPrediction,  ///< the velocity: target = a * eps - b * x0 (Salimans & Ho 2022).
};

/// The noised sample and the regression target returned by q_sample_with_target().
///
/// Example:
/// \code
///   auto s = mdiff::ops::q_sample_with_target(x0, eps, t, a, b, mdiff::ops::TrainingTarget::Epsilon);
///   at::Tensor loss = (net(s.x_t, t) - s.target).pow(2).mean();
/// \endcode
struct NoisedSample {
  at::Tensor x_t;     ///< a[t] * x0 + b[t] * eps, shaped like x0.
  at::Tensor target;  ///< the training target, shaped like x0.
};

/// Forward noising of the variance-preserving process together with the training target, in one
/// pass over the data:
///
///     x_t[i]    = a[t[i]] * x0[i] + b[t[i]] * eps[i]
///     target[i] = eps[i]                              (Epsilon)
///               = x0[i]                               (Sample)
///               = a[t[i]] * eps[i] - b[t[i]] * x0[i]  (VPrediction)
///
/// with a = `signal` = sqrt(alpha_bar) and b = `noise_scale` = sqrt(1 - alpha_bar). Arguments as in
/// q_sample(): `x0` and `noise` [N, ...] of one floating dtype (float16, bfloat16, float32,
/// float64), `t` [N] int64 or int32 in [0, T), tables [T] float32 or float64, all on one device.
/// `t` may also be an undefined tensor: then the tables hold one coefficient per sample ([N]) and
/// sample i uses entry i (the form for fractional or continuous noise levels).
///
/// For Epsilon and Sample the target is the input tensor itself (`noise` or `x0`, not a copy) and
/// the pass writes x_t alone; for VPrediction both outputs are written in the same pass. Arithmetic
/// is float32 for the reduced-precision dtypes and float64 for float64. The native paths carry no
/// gradient (training inputs are data and noise): when an input requires one, the differentiable
/// reference runs instead.
///
/// Example:
/// \code
///   at::Tensor ab = at::cumprod(1 - at::linspace(1e-4, 0.02, 1000, at::kDouble), 0);
///   at::Tensor t = at::randint(0, 1000, {x0.size(0)}, at::kLong);
///   auto s = mdiff::ops::q_sample_with_target(x0, at::randn_like(x0), t, ab.sqrt(), (1 - ab).sqrt(),
///                                             mdiff::ops::TrainingTarget::VPrediction);
///   // s.x_t, s.target: the network input and the v target
/// \endcode
NoisedSample q_sample_with_target(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t,
                                  const at::Tensor& signal, const at::Tensor& noise_scale, TrainingTarget target,
                                  OpBackend backend = OpBackend::Auto);

}  // namespace ops

template <>
struct EnumTraits<ops::TrainingTarget> {
  static constexpr const char* type_name = "TrainingTarget";
  static constexpr EnumEntry<ops::TrainingTarget> entries[] = {
      {ops::TrainingTarget::Epsilon, "epsilon"},
      {ops::TrainingTarget::Epsilon, "eps"},
      {ops::TrainingTarget::Sample, "sample"},
      {ops::TrainingTarget::Sample, "x0"},
      {ops::TrainingTarget::VPrediction, "v_prediction"},
      {ops::TrainingTarget::VPrediction, "v"},
  };
};

}  // namespace manifold_diffusion
