// DPM-Solver++ (2M, 2M-SDE) and UniPC (bh2): multistep solvers in lambda = log(alpha / sigma) with
// data (x0) prediction.
#include "samplers/common.h"
#include "samplers/linear_update.h"

#include <manifold_diffusion/samplers/dpm_solver.h>
#include <manifold_diffusion/samplers/unipc.h>

#include <ATen/ATen.h>

#include <array>

namespace manifold_diffusion {

// ---- DPM-Solver++ -------------------------------------------------------------------------------

DPMSolverSampler::DPMSolverSampler(DPMSolverOptions options) : options_(std::move(options)) {
  detail::check_grid_options(options_, "DPMSolverOptions");
}

int64_t DPMSolverSampler::num_model_evaluations() const {
  return detail::grid_steps(options_);
}

void DPMSolverSampler::init(const Denoiser& denoiser, SamplerState& state) const {
  detail::init_vp_grid(options_, denoiser.schedule(), state);
}

void DPMSolverSampler::advance(const Denoiser& denoiser, SamplerState& state, const SampleArgs& args) const {
  const detail::VPStep s = detail::vp_step(denoiser.schedule(), state);
  const double lambda_s = detail::half_log_snr(s.ab);
  // With D = x0 + 0.5 (x0 - x0_prev) / r (the midpoint form; D = x0 on the first step):
  //   2M:     x_next = (sigma_t / sigma_s) x - alpha_t (e^{-h} - 1) D
  //   2M-SDE: x_next = (sigma_t / sigma_s) e^{-h} x - alpha_t (e^{-2h} - 1) D + sigma_t sqrt(1 - e^{-2h}) z
  // both linear in x, x0 and x0_prev. The last step returns x0 (first order into sigma = 0).
  const bool second_order = !s.last && !state.history.empty();
  const detail::UpdateRule rule = [&](const at::Tensor&) {
    detail::LinearUpdate u;
    if (s.last) {
      return u;
    }
    const double lambda_t = detail::half_log_snr(s.ab_next);
    const double h = lambda_t - lambda_s;
    const double alpha_t = std::sqrt(s.ab_next);
    const double sigma_t = std::sqrt(1 - s.ab_next);
    const double sigma_s = std::sqrt(1 - s.ab);
    double k_d = 0;  // weight of D
    if (options_.variant() == DPMSolverVariant::Multistep2M) {
      u.k_x = sigma_t / sigma_s;
      k_d = -alpha_t * std::expm1(-h);
    } else {
      const double e2h = std::expm1(-2 * h);  // e^{-2h} - 1
      u.k_x = (sigma_t / sigma_s) * std::exp(-h);
      k_d = -alpha_t * e2h;
      u.noise = noise_like(state);
      u.k_noise = sigma_t * std::sqrt(-e2h);
    }
    u.k_x0 = k_d;
    if (second_order) {
      const double r = (lambda_s - state.history_level.back()) / h;
      u.k_x0 = k_d * (1 + 0.5 / r);
      u.k_prev = -k_d * 0.5 / r;
      u.x0_prev = state.history.back();
    }
    return u;
  };
  detail::UpdateResult r;
  if (args.hooks.empty()) {
    r = detail::fused_step(denoiser, state.x, 1.0, s.t, s.ab, args, rule);
  } else {
    StepContext ctx = context(denoiser, state, args, s.t, s.t_next, s.ab, s.ab_next);
    const DenoiserOutput out = eval(denoiser, state.x, s.t, s.ab, args, ctx);
    r = detail::linear_update(state.x, out.x0, rule(out.var_values), /*split_mean=*/false);
    r.x_next = propose(args, ctx, r.x_next);
  }
  state.x0_hat = r.x0;
  state.history.assign(1, r.x0);
  state.history_level.assign(1, lambda_s);
  state.x = r.x_next.detach();
}

std::string DPMSolverOptions::to_json() const {
  nlohmann::json j;
  detail::write_grid_options(j, *this);
  j["variant"] = mdiff::to_string(variant());
  return j.dump();
}

DPMSolverOptions DPMSolverOptions::from_json(const std::string& json) {
  detail::JsonReader r(json, "DPMSolverOptions::from_json");
  DPMSolverOptions o;
  detail::read_grid_options(r, o);
  r.read_enum<DPMSolverVariant>("variant", [&](DPMSolverVariant v) { o.variant(v); });
  r.finish();
  detail::check_grid_options(o, "DPMSolverOptions");
  return o;
}

// ---- UniPC --------------------------------------------------------------------------------------

namespace {

// Solves the small dense system A x = b (n <= 3) by Gaussian elimination with partial pivoting.
std::vector<double> solve_small(std::vector<std::vector<double>> a, std::vector<double> b) {
  const size_t n = b.size();
  for (size_t c = 0; c < n; ++c) {
    size_t p = c;
    for (size_t r = c + 1; r < n; ++r) {
      if (std::abs(a[r][c]) > std::abs(a[p][c])) p = r;
    }
    std::swap(a[c], a[p]);
    std::swap(b[c], b[p]);
    MD_INTERNAL_ASSERT(std::abs(a[c][c]) > 1e-300, "UniPC: singular coefficient system");
    for (size_t r = c + 1; r < n; ++r) {
      const double f = a[r][c] / a[c][c];
      for (size_t k = c; k < n; ++k) a[r][k] -= f * a[c][k];
      b[r] -= f * b[c];
    }
  }
  std::vector<double> x(n);
  for (size_t i = n; i-- > 0;) {
    double acc = b[i];
    for (size_t k = i + 1; k < n; ++k) acc -= a[i][k] * x[k];
    x[i] = acc / a[i][i];
  }
  return x;
}

// The UniPC coefficient system for order p: rows rk^(i-1) and right-hand side b_i (bh2).
struct UniCoefficients {
  std::vector<std::vector<double>> R;
  std::vector<double> b;
  double h_phi_1 = 0;
  double B_h = 0;
};

UniCoefficients uni_coefficients(const std::vector<double>& rks, double h, int64_t order) {
  UniCoefficients c;
  const double hh = -h;
  c.h_phi_1 = std::expm1(hh);
  double h_phi_k = c.h_phi_1 / hh - 1;
  double factorial = 1;
  c.B_h = std::expm1(hh);
  for (int64_t i = 1; i <= order; ++i) {
    std::vector<double> row;
    for (double rk : rks) row.push_back(std::pow(rk, static_cast<double>(i - 1)));
    c.R.push_back(row);
    c.b.push_back(h_phi_k * factorial / c.B_h);
    factorial *= static_cast<double>(i + 1);
    h_phi_k = h_phi_k / hh - 1 / factorial;
  }
  return c;
}

}  // namespace

UniPCSampler::UniPCSampler(UniPCOptions options) : options_(std::move(options)) {
  detail::check_grid_options(options_, "UniPCOptions");
  check_in_range<int64_t>(options_.order(), 1, 3, "UniPCOptions: order");
}

int64_t UniPCSampler::num_model_evaluations() const {
  return detail::grid_steps(options_);
}

void UniPCSampler::init(const Denoiser& denoiser, SamplerState& state) const {
  detail::init_vp_grid(options_, denoiser.schedule(), state);
}

void UniPCSampler::advance(const Denoiser& denoiser, SamplerState& state, const SampleArgs& args) const {
  const NoiseSchedule& sched = denoiser.schedule();
  const detail::VPStep s = detail::vp_step(sched, state);
  const int64_t k = state.step;
  const int64_t n = state.num_steps;
  StepContext ctx = context(denoiser, state, args, s.t, s.t_next, s.ab, s.ab_next);
  const DenoiserOutput out = eval(denoiser, state.x, s.t, s.ab, args, ctx);
  state.x0_hat = out.x0;
  const double lambda_cur = detail::half_log_snr(s.ab);
  auto order_at = [&](int64_t step) {
    int64_t p = options_.order();
    if (options_.lower_order_final()) {
      p = std::min<int64_t>(p, n - step);
    }
    return std::min<int64_t>(p, step + 1);
  };

  // UniC: correct the current sample with this evaluation, using the previous step's outputs.
  if (options_.use_corrector() && k > 0 && state.last_x.defined()) {
    const int64_t p = order_at(k - 1);
    const auto& ms = state.history;           // model outputs, oldest first; back() is at the previous level
    const auto& ls = state.history_level;     // their lambdas
    const at::Tensor& m0 = ms.back();
    const double lambda_s0 = ls.back();
    const double h = lambda_cur - lambda_s0;
    std::vector<double> rks;
    std::vector<at::Tensor> d1s;
    for (int64_t i = 1; i < p; ++i) {
      const auto idx = ms.size() - 1 - static_cast<size_t>(i);
      const double rk = (ls[idx] - lambda_s0) / h;
      rks.push_back(rk);
      d1s.push_back((ms[idx] - m0) / rk);
    }
    rks.push_back(1.0);
    const UniCoefficients c = uni_coefficients(rks, h, p);
    const std::vector<double> rhos = p == 1 ? std::vector<double>{0.5} : solve_small(c.R, c.b);
    const double ab_s0 = 1 / (1 + std::exp(-2 * lambda_s0));
    const double alpha_t = std::sqrt(s.ab);
    const double sigma_t = std::sqrt(1 - s.ab);
    const double sigma_s0 = std::sqrt(1 - ab_s0);
    at::Tensor x_t = (sigma_t / sigma_s0) * state.last_x - alpha_t * c.h_phi_1 * m0;
    at::Tensor corr = at::zeros_like(x_t);
    for (size_t i = 0; i < d1s.size(); ++i) corr = corr + rhos[i] * d1s[i];
    state.x = x_t - alpha_t * c.B_h * (corr + rhos.back() * (out.x0 - m0));
  }

  state.history.push_back(out.x0);
  state.history_level.push_back(lambda_cur);
  while (static_cast<int64_t>(state.history.size()) > options_.order()) {
    state.history.erase(state.history.begin());
    state.history_level.erase(state.history_level.begin());
  }
  state.last_x = state.x;

  // UniP: predict the next sample.
  at::Tensor x_next;
  if (s.last) {
    x_next = out.x0;
  } else {
    const int64_t p = order_at(k);
    const auto& ms = state.history;
    const auto& ls = state.history_level;
    const at::Tensor& m0 = ms.back();
    const double lambda_t = detail::half_log_snr(s.ab_next);
    const double h = lambda_t - lambda_cur;
    std::vector<double> rks;
    std::vector<at::Tensor> d1s;
    for (int64_t i = 1; i < p; ++i) {
      const auto idx = ms.size() - 1 - static_cast<size_t>(i);
      const double rk = (ls[idx] - lambda_cur) / h;
      rks.push_back(rk);
      d1s.push_back((ms[idx] - m0) / rk);
    }
    rks.push_back(1.0);
    const UniCoefficients c = uni_coefficients(rks, h, p);
    const double alpha_t = std::sqrt(s.ab_next);
    const double sigma_t = std::sqrt(1 - s.ab_next);
    const double sigma_s0 = std::sqrt(1 - s.ab);
    x_next = (sigma_t / sigma_s0) * state.x - alpha_t * c.h_phi_1 * m0;
    if (!d1s.empty()) {
      std::vector<double> rhos;
      if (p == 2) {
        rhos = {0.5};
      } else {
        std::vector<std::vector<double>> r(c.R.begin(), c.R.end() - 1);
        for (auto& row : r) row.pop_back();
        rhos = solve_small(r, std::vector<double>(c.b.begin(), c.b.end() - 1));
      }
      at::Tensor pred = at::zeros_like(x_next);
      for (size_t i = 0; i < d1s.size(); ++i) pred = pred + rhos[i] * d1s[i];
      x_next = x_next - alpha_t * c.B_h * pred;
    }
  }
  state.x = propose(args, ctx, x_next);
}

std::string UniPCOptions::to_json() const {
  nlohmann::json j;
  detail::write_grid_options(j, *this);
  j["order"] = order();
  j["use_corrector"] = use_corrector();
  j["lower_order_final"] = lower_order_final();
  return j.dump();
}

UniPCOptions UniPCOptions::from_json(const std::string& json) {
  detail::JsonReader r(json, "UniPCOptions::from_json");
  UniPCOptions o;
  detail::read_grid_options(r, o);
  r.read<int64_t>("order", [&](int64_t v) { o.order(v); });
  r.read<bool>("use_corrector", [&](bool v) { o.use_corrector(v); });
  r.read<bool>("lower_order_final", [&](bool v) { o.lower_order_final(v); });
  r.finish();
  detail::check_grid_options(o, "UniPCOptions");
  check_in_range<int64_t>(o.order(), 1, 3, "UniPCOptions: order");
  return o;
}

}  // namespace manifold_diffusion
