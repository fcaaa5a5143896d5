#include "samplers/common.h"

#include <manifold_diffusion/samplers/ddim.h>
#include <manifold_diffusion/samplers/ddpm.h>

#include <ATen/ATen.h>
#include <torch/types.h>
#include <torch/utils.h>

namespace manifold_diffusion {

// ---- DDPM ---------------------------------------------------------------------------------------

DDPMSampler::DDPMSampler(DDPMOptions options) : options_(std::move(options)) {
  detail::check_grid_options(options_, "DDPMOptions");
}

int64_t DDPMSampler::num_model_evaluations() const {
  return detail::grid_steps(options_);
}

void DDPMSampler::init(const Denoiser& denoiser, SamplerState& state) const {
  MD_CHECK_VALUE(options_.variance() != DDPMVariance::LearnedRange || denoiser.options().learned_variance(),
                 "DDPMSampler: learned_range variance needs a denoiser with learned_variance");
  detail::init_vp_grid(options_, denoiser.schedule(), state);
}

void DDPMSampler::advance(const Denoiser& denoiser, SamplerState& state, const SampleArgs& args) const {
  const detail::VPStep s = detail::vp_step(denoiser.schedule(), state);
  StepContext ctx = context(denoiser, state, args, s.t, s.t_next, s.ab, s.ab_next);
  const DenoiserOutput out = eval(denoiser, state.x, s.t, s.ab, args, ctx);
  state.x0_hat = out.x0;
  at::Tensor x_next;
  if (s.last) {
    x_next = out.x0;
    ctx.proposal_mean = x_next;
    ctx.proposal_std = 0;
  } else {
    const double beta = 1 - s.ab / s.ab_next;  // respaced beta of this step
    const double c1 = std::sqrt(s.ab_next) * beta / (1 - s.ab);
    const double c2 = std::sqrt(1 - beta) * (1 - s.ab_next) / (1 - s.ab);
    const double post_var = beta * (1 - s.ab_next) / (1 - s.ab);
    x_next = c1 * out.x0 + c2 * state.x;
    ctx.proposal_mean = x_next;
    const at::Tensor z = noise_like(state);
    switch (options_.variance()) {
      case DDPMVariance::FixedSmall:
        ctx.proposal_std = std::sqrt(post_var);
        x_next = x_next + std::sqrt(post_var) * z;
        break;
      case DDPMVariance::FixedLarge:
        ctx.proposal_std = std::sqrt(beta);
        x_next = x_next + std::sqrt(beta) * z;
        break;
      case DDPMVariance::LearnedRange: {
        const at::Tensor frac = (out.var_values.to(state.x.scalar_type()) + 1) / 2;
        const double log_min = std::log(std::max(post_var, 1e-20));
        const at::Tensor log_var = frac * std::log(beta) + (1 - frac) * log_min;
        x_next = x_next + at::exp(0.5 * log_var) * z;
        break;
      }
    }
  }
  state.x = propose(args, ctx, x_next);
}

std::string DDPMOptions::to_json() const {
  nlohmann::json j;
  detail::write_grid_options(j, *this);
  j["variance"] = mdiff::to_string(variance());
  return j.dump();
}

DDPMOptions DDPMOptions::from_json(const std::string& json) {
  detail::JsonReader r(json, "DDPMOptions::from_json");
  DDPMOptions o;
  detail::read_grid_options(r, o);
  r.read_enum<DDPMVariance>("variance", [&](DDPMVariance v) { o.variance(v); });
  r.finish();
  detail::check_grid_options(o, "DDPMOptions");
  return o;
}

// ---- DDIM ---------------------------------------------------------------------------------------

DDIMSampler::DDIMSampler(DDIMOptions options) : options_(std::move(options)) {
  detail::check_grid_options(options_, "DDIMOptions");
  check_in_range(options_.eta(), 0.0, 1.0, "DDIMOptions: eta");
}

int64_t DDIMSampler::num_model_evaluations() const {
  return detail::grid_steps(options_);
}

void DDIMSampler::init(const Denoiser& denoiser, SamplerState& state) const {
  detail::init_vp_grid(options_, denoiser.schedule(), state);
}

void DDIMSampler::advance(const Denoiser& denoiser, SamplerState& state, const SampleArgs& args) const {
  const detail::VPStep s = detail::vp_step(denoiser.schedule(), state);
  StepContext ctx = context(denoiser, state, args, s.t, s.t_next, s.ab, s.ab_next);
  const DenoiserOutput out = eval(denoiser, state.x, s.t, s.ab, args, ctx);
  state.x0_hat = out.x0;
  const double sigma = options_.eta() * std::sqrt((1 - s.ab_next) / (1 - s.ab)) * std::sqrt(1 - s.ab / s.ab_next);
  at::Tensor x_next =
      std::sqrt(s.ab_next) * out.x0 + std::sqrt(std::max(0.0, 1 - s.ab_next - sigma * sigma)) * out.eps;
  ctx.proposal_mean = x_next;
  ctx.proposal_std = sigma;
  if (sigma > 0) {
    x_next = x_next + sigma * noise_like(state);
  }
  state.x = propose(args, ctx, x_next);
}

at::Tensor DDIMSampler::invert(const Denoiser& denoiser, const at::Tensor& x0, const SampleArgs& args) const {
  check_floating(x0, "x0");
  MD_CHECK_VALUE(x0.dim() >= 2, "DDIMSampler::invert: x0 must be [N, ...], got ", shape_string(x0));
  torch::NoGradGuard no_grad;
  SamplerState grid;
  detail::init_vp_grid(options_, denoiser.schedule(), grid);
  std::vector<double> up(grid.grid.rbegin(), grid.grid.rend());  // increasing timesteps
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  const int64_t n = x0.size(0);
  at::Tensor x = x0.clone();
  // The first evaluation treats the data as the sample at the smallest timestep.
  for (size_t i = 0; i < up.size(); ++i) {
    const double t_eval = up[i == 0 ? 0 : i - 1];
    const double ab_eval = denoiser.schedule().alpha_bar_at(t_eval);
    const double ab_to = denoiser.schedule().alpha_bar_at(up[i]);
    const DenoiserOutput out = denoiser.predict_at(x, at::full({n}, t_eval, opts), at::full({n}, ab_eval, opts),
                                                   args.cond, args.uncond, args.guidance_scale, args.guidance_rescale);
    x = std::sqrt(ab_to) * out.x0 + std::sqrt(1 - ab_to) * out.eps;
  }
  return x;
}

std::string DDIMOptions::to_json() const {
  nlohmann::json j;
  detail::write_grid_options(j, *this);
  j["eta"] = eta();
  return j.dump();
}

DDIMOptions DDIMOptions::from_json(const std::string& json) {
  detail::JsonReader r(json, "DDIMOptions::from_json");
  DDIMOptions o;
  detail::read_grid_options(r, o);
  r.read<double>("eta", [&](double v) { o.eta(v); });
  r.finish();
  detail::check_grid_options(o, "DDIMOptions");
  check_in_range(o.eta(), 0.0, 1.0, "DDIMOptions: eta");
  return o;
}

}  // namespace manifold_diffusion
