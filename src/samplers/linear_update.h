#pragma once
// Private: the samplers' updates through the fused ops (ops/sampler_step.h). Every update the
// samplers here take is linear in the current sample and the clean-sample estimates:
//
//     x_next = k_x * x + k_x0 * x0 + k_prev * x0_prev + k_noise * noise
//
// Without hooks one kernel forms x0 from the raw network output and takes the update; with hooks
// x0 is formed first (ops::predict_x0 inside Sampler::eval), the hooks change it, and
// ops::combine takes the update.

#include <manifold_diffusion/ops/sampler_step.h>
#include <manifold_diffusion/samplers/sampler.h>

#include <functional>

namespace manifold_diffusion {
namespace detail {

struct LinearUpdate {
  double k_x = 0;
  double k_x0 = 1;
  double k_prev = 0;
  double k_noise = 0;
  at::Tensor x0_prev;  // optional
  at::Tensor noise;    // optional

  ops::SamplerStepCoefficients coefficients() const {
    return ops::SamplerStepCoefficients().k_x(k_x).k_x0(k_x0).k_prev(k_prev).k_noise(k_noise);
  }
};

struct UpdateResult {
  at::Tensor x_next;
  at::Tensor x0;
  at::Tensor mean;  // x_next without its noise term (linear_update with split_mean only)
};

// Builds the update of a step once the learned-variance values (undefined without) are known.
using UpdateRule = std::function<LinearUpdate(const at::Tensor& var_values)>;

// No hooks: one network call at (t, alpha_bar) on the VP input x_scale * x, then one fused kernel
// for guidance, x0 and the update (x in the sampler's working domain).
UpdateResult fused_step(const Denoiser& denoiser, const at::Tensor& x, double x_scale, double t, double alpha_bar,
                        const SampleArgs& args, const UpdateRule& rule);

// x0 of a raw prediction made at the VP input x_vp (ops::predict_x0); differentiable when autograd
// records (the Jacobian hooks' first evaluation).
at::Tensor raw_to_x0(const RawPrediction& raw, const at::Tensor& x_vp);

// With hooks: the update from an x0 the hooks have seen. With `split_mean` the noise-free part is
// returned as `mean` too (the proposal mean hooks read from StepContext).
UpdateResult linear_update(const at::Tensor& x, const at::Tensor& x0, const LinearUpdate& update, bool split_mean);

}  // namespace detail
}  // namespace manifold_diffusion
