#include "samplers/common.h"
#include "samplers/linear_update.h"

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
  // Posterior q(x_next | x_t, x0) of the (respaced) step: mean c1 x0 + c2 x_t; the last step
  // returns x0 itself.
  const double beta = 1 - s.ab / s.ab_next;
  const double post_var = beta * (1 - s.ab_next) / (1 - s.ab);
  double noise_std = -1;
  if (!s.last) {
    noise_std = options_.variance() == DDPMVariance::FixedSmall   ? std::sqrt(post_var)
                : options_.variance() == DDPMVariance::FixedLarge ? std::sqrt(beta)
                                                                  : -1;  // learned: per element
  }
  const detail::UpdateRule rule = [&](const at::Tensor& var_values) {
    detail::LinearUpdate u;
    if (s.last) {
      return u;  // x_next = x0
    }
    u.k_x0 = std::sqrt(s.ab_next) * beta / (1 - s.ab);
    u.k_x = std::sqrt(1 - beta) * (1 - s.ab_next) / (1 - s.ab);
    const at::Tensor z = noise_like(state);
    if (options_.variance() == DDPMVariance::LearnedRange) {
      const at::Tensor frac = (var_values.to(state.x.scalar_type()) + 1) / 2;
      const double log_min = std::log(std::max(post_var, 1e-20));
      const at::Tensor log_var = frac * std::log(beta) + (1 - frac) * log_min;
      u.noise = at::exp(0.5 * log_var) * z;
      u.k_noise = 1;
    } else {
      u.noise = z;
      u.k_noise = noise_std;
    }
    return u;
  };
  if (args.hooks.empty()) {
    detail::UpdateResult r = detail::fused_step(denoiser, state.x, 1.0, s.t, s.ab, args, rule);
    state.x0_hat = r.x0;
    state.x = r.x_next.detach();
    return;
  }
  StepContext ctx = context(denoiser, state, args, s.t, s.t_next, s.ab, s.ab_next);
  const DenoiserOutput out = eval(denoiser, state.x, s.t, s.ab, args, ctx);
  state.x0_hat = out.x0;
  const detail::UpdateResult r = detail::linear_update(state.x, out.x0, rule(out.var_values), /*split_mean=*/true);
  ctx.proposal_mean = r.mean;
  ctx.proposal_std = s.last ? 0 : noise_std;
  state.x = propose(args, ctx, r.x_next);
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
  // x_next = sqrt(ab_next) x0 + c_eps eps + sigma z with eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab):
  // linear in x_t and x0.
  const double sigma = options_.eta() * std::sqrt((1 - s.ab_next) / (1 - s.ab)) * std::sqrt(1 - s.ab / s.ab_next);
  const double c_eps = std::sqrt(std::max(0.0, 1 - s.ab_next - sigma * sigma));
  const double sd = std::sqrt(std::max(1 - s.ab, 1e-40));
  const detail::UpdateRule rule = [&](const at::Tensor&) {
    detail::LinearUpdate u;
    u.k_x = c_eps / sd;
    u.k_x0 = std::sqrt(s.ab_next) - c_eps * std::sqrt(s.ab) / sd;
    if (sigma > 0) {
      u.noise = noise_like(state);
      u.k_noise = sigma;
    }
    return u;
  };
  if (args.hooks.empty()) {
    detail::UpdateResult r = detail::fused_step(denoiser, state.x, 1.0, s.t, s.ab, args, rule);
    state.x0_hat = r.x0;
    state.x = r.x_next.detach();
    return;
  }
  StepContext ctx = context(denoiser, state, args, s.t, s.t_next, s.ab, s.ab_next);
  const DenoiserOutput out = eval(denoiser, state.x, s.t, s.ab, args, ctx);
  state.x0_hat = out.x0;
  const detail::UpdateResult r = detail::linear_update(state.x, out.x0, rule(out.var_values), /*split_mean=*/true);
  ctx.proposal_mean = r.mean;
  ctx.proposal_std = sigma;
  state.x = propose(args, ctx, r.x_next);
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
