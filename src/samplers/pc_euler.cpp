// Score-SDE predictor-corrector, and the sigma-space samplers (Euler, Euler-ancestral, Heun).
#include "samplers/common.h"
#include "samplers/linear_update.h"

#include <manifold_diffusion/samplers/euler.h>
#include <manifold_diffusion/samplers/predictor_corrector.h>

#include <ATen/ATen.h>

#include <limits>

namespace manifold_diffusion {

// ---- Predictor-corrector ------------------------------------------------------------------------

PCSampler::PCSampler(PCOptions options) : options_(std::move(options)) {
  detail::check_grid_options(options_, "PCOptions");
  check_positive(options_.snr(), "PCOptions: snr");
  check_in_range<int64_t>(options_.corrector_steps(), 0, 100, "PCOptions: corrector_steps");
}

int64_t PCSampler::num_model_evaluations() const {
  const int64_t n = detail::grid_steps(options_);
  return n * (1 + options_.corrector_steps());
}

void PCSampler::init(const Denoiser& denoiser, SamplerState& state) const {
  detail::init_vp_grid(options_, denoiser.schedule(), state);
}

void PCSampler::advance(const Denoiser& denoiser, SamplerState& state, const SampleArgs& args) const {
  const detail::VPStep s = detail::vp_step(denoiser.schedule(), state);
  StepContext ctx = context(denoiser, state, args, s.t, s.t_next, s.ab, s.ab_next);
  const double sigma = std::sqrt(1 - s.ab);
  const double beta = 1 - s.ab / s.ab_next;
  std::vector<int64_t> dims;
  for (int64_t d = 1; d < state.x.dim(); ++d) dims.push_back(d);
  // Langevin corrector at the current level.
  for (int64_t c = 0; c < options_.corrector_steps(); ++c) {
    ctx.x_t = state.x;
    const DenoiserOutput out = eval(denoiser, state.x, s.t, s.ab, args, ctx);
    const at::Tensor score = -out.eps / sigma;
    const at::Tensor z = noise_like(state);
    // Per-sample norms keep the run batch-invariant (the reference averages them over the batch).
    const at::Tensor grad_norm = score.flatten(1).norm(2, 1);
    const at::Tensor noise_norm = z.flatten(1).norm(2, 1);
    const double alpha = s.last ? 1.0 : 1 - beta;
    at::Tensor step = 2 * alpha * (options_.snr() * noise_norm / grad_norm.clamp_min(1e-20)).pow(2);
    std::vector<int64_t> shape(static_cast<size_t>(state.x.dim()), 1);
    shape[0] = state.x.size(0);
    step = step.reshape(shape);
    state.x = state.x + step * score + (2 * step).sqrt() * z;
  }
  // Reverse-diffusion predictor.
  ctx.x_t = state.x;
  const DenoiserOutput out = eval(denoiser, state.x, s.t, s.ab, args, ctx);
  state.x0_hat = out.x0;
  at::Tensor x_next;
  if (s.last) {
    x_next = out.x0;
  } else {
    const at::Tensor score = -out.eps / sigma;
    x_next = (2 - std::sqrt(1 - beta)) * state.x + beta * score + std::sqrt(beta) * noise_like(state);
  }
  state.x = propose(args, ctx, x_next);
}

std::string PCOptions::to_json() const {
  nlohmann::json j;
  detail::write_grid_options(j, *this);
  j["snr"] = snr();
  j["corrector_steps"] = corrector_steps();
  return j.dump();
}

PCOptions PCOptions::from_json(const std::string& json) {
  detail::JsonReader r(json, "PCOptions::from_json");
  PCOptions o;
  detail::read_grid_options(r, o);
  r.read<double>("snr", [&](double v) { o.snr(v); });
  r.read<int64_t>("corrector_steps", [&](int64_t v) { o.corrector_steps(v); });
  r.finish();
  return PCSampler(o).options();
}

// ---- Sigma-space samplers -----------------------------------------------------------------------

namespace {
// VE sigma of alpha_bar = 2^-24, the stand-in for an infinite maximum (zero terminal SNR).
const double kSigmaCap = std::sqrt((1 - std::ldexp(1.0, -24)) / std::ldexp(1.0, -24));

double vp_scale(double sigma) {
  return 1 / std::sqrt(1 + sigma * sigma);  // alpha of VE level sigma
}
}  // namespace

SigmaSpaceSampler::SigmaSpaceSampler(SigmaSamplerOptions options) : options_(std::move(options)) {
  const auto& o = options_;
  detail::check_grid_options(o, "SigmaSamplerOptions");
  check_positive(o.rho(), "SigmaSamplerOptions: rho");
  check_non_negative(o.sigma_min(), "SigmaSamplerOptions: sigma_min");
  check_non_negative(o.sigma_max(), "SigmaSamplerOptions: sigma_max");
  MD_CHECK_VALUE(o.sigma_max() == 0 || o.sigma_max() >= o.sigma_min(), "SigmaSamplerOptions: sigma_max (",
                 o.sigma_max(), ") must be >= sigma_min (", o.sigma_min(), ")");
  check_non_negative(o.s_churn(), "SigmaSamplerOptions: s_churn");
  check_non_negative(o.s_tmin(), "SigmaSamplerOptions: s_tmin");
  MD_CHECK_VALUE(!std::isnan(o.s_tmax()) && o.s_tmax() >= o.s_tmin(), "SigmaSamplerOptions: s_tmax (", o.s_tmax(),
                 ") must be >= s_tmin (", o.s_tmin(), ")");
  check_non_negative(o.s_noise(), "SigmaSamplerOptions: s_noise");
  check_in_range(o.eta(), 0.0, 1.0, "SigmaSamplerOptions: eta");
}

std::vector<double> SigmaSpaceSampler::sigmas(const NoiseSchedule& schedule) const {
  std::vector<double> out;
  if (options_.karras() && options_.timesteps().empty()) {
    double lo = options_.sigma_min() > 0 ? options_.sigma_min() : schedule.ve_sigma_min();
    double hi = options_.sigma_max() > 0 ? options_.sigma_max() : schedule.ve_sigma_max();
    hi = std::min(hi, kSigmaCap);
    lo = std::min(lo, hi);
    out = NoiseSchedule::karras_sigmas(options_.num_steps(), lo, hi, options_.rho());
  } else {
    const auto ts = inference_timesteps(schedule, options_.num_steps(), options_.spacing(), options_.steps_offset(),
                                        options_.timesteps());
    for (int64_t t : ts) out.push_back(std::min(schedule.ve_sigma(t), kSigmaCap));
  }
  out.push_back(0.0);
  return out;
}

void SigmaSpaceSampler::init(const Denoiser& denoiser, SamplerState& state) const {
  state.grid = sigmas(denoiser.schedule());
  state.num_steps = static_cast<int64_t>(state.grid.size()) - 1;
  state.x = state.x / vp_scale(state.grid.front());  // VP noise -> VE domain
}

at::Tensor SigmaSpaceSampler::to_vp(const SamplerState& state) const {
  const auto k = static_cast<size_t>(std::min<int64_t>(state.step, state.num_steps));
  return state.x * vp_scale(state.grid[k]);
}

DenoiserOutput SigmaSpaceSampler::denoise_ve(const Denoiser& denoiser, const at::Tensor& x_ve, double sigma,
                                             const SampleArgs& args, StepContext& ctx) const {
  const double a = vp_scale(sigma);
  const double t = denoiser.schedule().timestep_from_ve_sigma(sigma);
  ctx.x_t = x_ve * a;
  ctx.t = t;
  ctx.alpha_bar = a * a;
  ctx.denoise = denoise_fn(denoiser, args, t, a * a);
  return eval(denoiser, x_ve * a, t, a * a, args, ctx);
}

at::Tensor SigmaSpaceSampler::propose_ve(const SampleArgs& args, const StepContext& ctx, const at::Tensor& x_next_ve,
                                         double sigma_next) const {
  if (args.hooks.empty()) {
    return x_next_ve;
  }
  const double a = vp_scale(sigma_next);
  return propose(args, ctx, x_next_ve * a) / a;
}

double SigmaSpaceSampler::churn(SamplerState& state, double sigma) const {
  const auto& o = options_;
  if (o.s_churn() <= 0 || sigma < o.s_tmin() || sigma > o.s_tmax()) {
    return sigma;
  }
  const double gamma = std::min(o.s_churn() / static_cast<double>(state.num_steps), std::sqrt(2.0) - 1);
  const double sigma_hat = sigma * (1 + gamma);
  state.x = state.x + std::sqrt(sigma_hat * sigma_hat - sigma * sigma) * o.s_noise() * noise_like(state);
  return sigma_hat;
}

StepContext SigmaSpaceSampler::step_context(const Denoiser& denoiser, const SamplerState& state,
                                            const SampleArgs& args, double sigma_next) const {
  StepContext ctx = context(denoiser, state, args, 0, 0, 0, 0);  // t and alpha_bar: set by denoise_ve()
  ctx.alpha_bar_next = 1 / (1 + sigma_next * sigma_next);
  ctx.t_next = sigma_next > 0 ? denoiser.schedule().timestep_from_ve_sigma(sigma_next) : -1;
  return ctx;
}

// The sigma-space steps are linear in the VE sample and the denoised estimates: an Euler step from
// sigma to sigma_next is x + (sigma_next - sigma) (x - x0) / sigma = (sigma_next / sigma) x +
// (1 - sigma_next / sigma) x0. Without hooks one fused kernel turns the raw network output into
// x0 (c_x scaled by alpha, since the network sees x * alpha) and takes the step.

namespace {
detail::LinearUpdate euler_update(double sigma, double sigma_to) {
  detail::LinearUpdate u;
  u.k_x = sigma_to / sigma;
  u.k_x0 = 1 - sigma_to / sigma;
  return u;
}
}  // namespace

void EulerSampler::advance(const Denoiser& denoiser, SamplerState& state, const SampleArgs& args) const {
  const auto k = static_cast<size_t>(state.step);
  const double sigma = state.grid[k];
  const double sigma_next = state.grid[k + 1];
  if (args.hooks.empty()) {
    const double sigma_hat = churn(state, sigma);
    const double a = vp_scale(sigma_hat);
    const double t = denoiser.schedule().timestep_from_ve_sigma(sigma_hat);
    const detail::UpdateRule rule = [&](const at::Tensor&) { return euler_update(sigma_hat, sigma_next); };
    const detail::UpdateResult r = detail::fused_step(denoiser, state.x, a, t, a * a, args, rule);
    state.x0_hat = r.x0;
    state.x = r.x_next;
    return;
  }
  StepContext ctx = step_context(denoiser, state, args, sigma_next);
  const double sigma_hat = churn(state, sigma);
  const DenoiserOutput out = denoise_ve(denoiser, state.x, sigma_hat, args, ctx);
  state.x0_hat = out.x0;
  const detail::UpdateResult r =
      detail::linear_update(state.x, out.x0, euler_update(sigma_hat, sigma_next), /*split_mean=*/false);
  state.x = propose_ve(args, ctx, r.x_next, sigma_next);
}

void EulerAncestralSampler::advance(const Denoiser& denoiser, SamplerState& state, const SampleArgs& args) const {
  const auto k = static_cast<size_t>(state.step);
  const double sigma = state.grid[k];
  const double sigma_next = state.grid[k + 1];
  const double sigma_up =
      std::min(sigma_next, options_.eta() * std::sqrt(sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next) /
                                                      (sigma * sigma)));
  const double sigma_down = std::sqrt(sigma_next * sigma_next - sigma_up * sigma_up);
  // An Euler step to sigma_down, then fresh noise of size sigma_up.
  const detail::UpdateRule rule = [&](const at::Tensor&) {
    detail::LinearUpdate u = euler_update(sigma, sigma_down);
    if (sigma_next > 0 && sigma_up > 0) {
      u.noise = noise_like(state);
      u.k_noise = sigma_up * options_.s_noise();
    }
    return u;
  };
  if (args.hooks.empty()) {
    const double a = vp_scale(sigma);
    const double t = denoiser.schedule().timestep_from_ve_sigma(sigma);
    const detail::UpdateResult r = detail::fused_step(denoiser, state.x, a, t, a * a, args, rule);
    state.x0_hat = r.x0;
    state.x = r.x_next;
    return;
  }
  StepContext ctx = step_context(denoiser, state, args, sigma_next);
  const DenoiserOutput out = denoise_ve(denoiser, state.x, sigma, args, ctx);
  state.x0_hat = out.x0;
  const detail::UpdateResult r = detail::linear_update(state.x, out.x0, rule(out.var_values), /*split_mean=*/false);
  state.x = propose_ve(args, ctx, r.x_next, sigma_next);
}

void HeunSampler::advance(const Denoiser& denoiser, SamplerState& state, const SampleArgs& args) const {
  // Stage 1: an Euler step x1 = (sigma_next / sigma_hat) x + (1 - sigma_next / sigma_hat) x0_1.
  // Stage 2 (sigma_next > 0): with d = (x - x0_1) / sigma_hat and d2 = (x1 - x0_2) / sigma_next,
  //   x + (sigma_next - sigma_hat) (d + d2) / 2 = x1 + (sigma_next - sigma_hat) / (2 sigma_next) (x0_1 - x0_2),
  // since (x1 - x0_1) / sigma_next = d: one fused call at x1 with x0_prev = x0_1.
  const auto k = static_cast<size_t>(state.step);
  const double sigma = state.grid[k];
  const double sigma_next = state.grid[k + 1];
  const auto second_stage = [&](double sigma_hat, const at::Tensor& x0_1) {
    const double c = (sigma_next - sigma_hat) / (2 * sigma_next);
    detail::LinearUpdate u;
    u.k_x = 1;
    u.k_x0 = -c;
    u.k_prev = c;
    u.x0_prev = x0_1;
    return u;
  };
  if (args.hooks.empty()) {
    const double sigma_hat = churn(state, sigma);
    const double a = vp_scale(sigma_hat);
    const double t = denoiser.schedule().timestep_from_ve_sigma(sigma_hat);
    const detail::UpdateResult r1 = detail::fused_step(
        denoiser, state.x, a, t, a * a, args, [&](const at::Tensor&) { return euler_update(sigma_hat, sigma_next); });
    state.x0_hat = r1.x0;
    if (sigma_next > 0) {
      const double a2 = vp_scale(sigma_next);
      const double t2 = denoiser.schedule().timestep_from_ve_sigma(sigma_next);
      const detail::UpdateResult r2 = detail::fused_step(
          denoiser, r1.x_next, a2, t2, a2 * a2, args, [&](const at::Tensor&) { return second_stage(sigma_hat, r1.x0); });
      state.x = r2.x_next;
    } else {
      state.x = r1.x_next;
    }
    return;
  }
  StepContext ctx = step_context(denoiser, state, args, sigma_next);
  const double sigma_hat = churn(state, sigma);
  const DenoiserOutput out = denoise_ve(denoiser, state.x, sigma_hat, args, ctx);
  state.x0_hat = out.x0;
  at::Tensor x_next =
      detail::linear_update(state.x, out.x0, euler_update(sigma_hat, sigma_next), /*split_mean=*/false).x_next;
  if (sigma_next > 0) {
    StepContext ctx2 = ctx;
    const DenoiserOutput out2 = denoise_ve(denoiser, x_next, sigma_next, args, ctx2);
    x_next = detail::linear_update(x_next, out2.x0, second_stage(sigma_hat, out.x0), /*split_mean=*/false).x_next;
  }
  state.x = propose_ve(args, ctx, x_next, sigma_next);
}

std::string SigmaSamplerOptions::to_json() const {
  nlohmann::json j;
  detail::write_grid_options(j, *this);
  j["karras"] = karras();
  j["rho"] = rho();
  j["sigma_min"] = sigma_min();
  j["sigma_max"] = sigma_max();
  j["s_churn"] = s_churn();
  j["s_tmin"] = s_tmin();
  j["s_tmax"] = std::isinf(s_tmax()) ? nlohmann::json("inf") : nlohmann::json(s_tmax());
  j["s_noise"] = s_noise();
  j["eta"] = eta();
  return j.dump();
}

SigmaSamplerOptions SigmaSamplerOptions::from_json(const std::string& json) {
  detail::JsonReader r(json, "SigmaSamplerOptions::from_json");
  SigmaSamplerOptions o;
  detail::read_grid_options(r, o);
  r.read<bool>("karras", [&](bool v) { o.karras(v); });
  r.read<double>("rho", [&](double v) { o.rho(v); });
  r.read<double>("sigma_min", [&](double v) { o.sigma_min(v); });
  r.read<double>("sigma_max", [&](double v) { o.sigma_max(v); });
  r.read<double>("s_churn", [&](double v) { o.s_churn(v); });
  r.read<double>("s_tmin", [&](double v) { o.s_tmin(v); });
  r.read<nlohmann::json>("s_tmax", [&](const nlohmann::json& v) {
    if (v.is_string() && v.get<std::string>() == "inf") {
      o.s_tmax(std::numeric_limits<double>::infinity());
    } else {
      MD_CHECK_VALUE(v.is_number(), "SigmaSamplerOptions::from_json: bad value for 's_tmax': ", v.dump());
      o.s_tmax(v.get<double>());
    }
  });
  r.read<double>("s_noise", [&](double v) { o.s_noise(v); });
  r.read<double>("eta", [&](double v) { o.eta(v); });
  r.finish();
  return EulerSampler(o).options();
}

}  // namespace manifold_diffusion
