#include "samplers/linear_update.h"

#include <ATen/ATen.h>

namespace manifold_diffusion {
namespace detail {
namespace {

// A network output or hook result in x's dtype, device and shape.
at::Tensor like_x(const at::Tensor& t, const at::Tensor& x) {
  if (!t.defined()) {
    return t;
  }
  at::Tensor out = t.to(x.device(), x.scalar_type());
  return out.sizes() == x.sizes() ? out : out.expand_as(x);
}

}  // namespace

UpdateResult fused_step(const Denoiser& denoiser, const at::Tensor& x, double x_scale, double t, double alpha_bar,
                        const SampleArgs& args, const UpdateRule& rule) {
  const at::Tensor x_vp = x_scale == 1.0 ? x : x * x_scale;
  const RawPrediction raw = denoiser.predict_raw(x_vp, t, alpha_bar, args.cond, args.uncond, args.guidance_scale,
                                                 args.guidance_rescale);
  const LinearUpdate u = rule(raw.var_values);
  const auto coef = u.coefficients().w(raw.guidance_scale).c_x(raw.c_x * x_scale).c_out(raw.c_out);
  ops::SamplerStepOutput out =
      ops::sampler_step(x, like_x(raw.cond, x), like_x(raw.uncond, x), u.x0_prev, u.noise, coef);
  return {std::move(out.x_next), std::move(out.x0), at::Tensor()};
}

at::Tensor raw_to_x0(const RawPrediction& raw, const at::Tensor& x_vp) {
  const auto coef = ops::SamplerStepCoefficients().w(raw.guidance_scale).c_x(raw.c_x).c_out(raw.c_out);
  return ops::predict_x0(x_vp, like_x(raw.cond, x_vp), like_x(raw.uncond, x_vp), coef);
}

UpdateResult linear_update(const at::Tensor& x, const at::Tensor& x0, const LinearUpdate& update, bool split_mean) {
  const at::Tensor x0x = like_x(x0, x);
  const at::Tensor prev = like_x(update.x0_prev, x);
  UpdateResult r;
  r.x0 = x0;
  if (split_mean && update.noise.defined()) {
    r.mean = ops::combine(x, x0x, prev, at::Tensor(), update.coefficients().k_noise(0));
    r.x_next = at::add(r.mean, update.noise, update.k_noise);
  } else {
    r.x_next = ops::combine(x, x0x, prev, update.noise, update.coefficients());
    r.mean = r.x_next;
  }
  return r;
}

}  // namespace detail
}  // namespace manifold_diffusion
