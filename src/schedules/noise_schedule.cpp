#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/ops/q_sample.h>
#include <manifold_diffusion/schedules/noise_schedule.h>

#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace manifold_diffusion {
namespace {

constexpr double kPi = 3.14159265358979323846;

// numpy's round: half to even (the default floating-point rounding mode).
double round_half_even(double x) { return std::nearbyint(x); }

std::vector<double> make_betas(const ScheduleOptions& o) {
  const int64_t T = o.num_train_timesteps();
  std::vector<double> betas(static_cast<size_t>(T));
  auto lin = [&](double a, double b, int64_t i) { return T == 1 ? a : a + (b - a) * static_cast<double>(i) / (T - 1); };
  switch (o.kind()) {
    case BetaSchedule::Linear:
      for (int64_t i = 0; i < T; ++i) betas[i] = lin(o.beta_start(), o.beta_end(), i);
      break;
    case BetaSchedule::ScaledLinear:
      for (int64_t i = 0; i < T; ++i) {
        const double r = lin(std::sqrt(o.beta_start()), std::sqrt(o.beta_end()), i);
        betas[i] = r * r;
      }
      break;
    case BetaSchedule::Cosine: {
      auto f = [&](double u) {
        const double c = std::cos((u + o.cosine_s()) / (1 + o.cosine_s()) * kPi / 2);
        return c * c;
      };
      for (int64_t i = 0; i < T; ++i) {
        const double t1 = static_cast<double>(i) / T;
        const double t2 = static_cast<double>(i + 1) / T;
        betas[i] = std::min(1 - f(t2) / f(t1), o.max_beta());
      }
      break;
    }
    case BetaSchedule::Sigmoid:
      for (int64_t i = 0; i < T; ++i) {
        const double x = lin(-6.0, 6.0, i);
        betas[i] = o.beta_start() + (o.beta_end() - o.beta_start()) / (1 + std::exp(-x));
      }
      break;
    case BetaSchedule::Custom:
      betas = o.betas();
      break;
  }
  return betas;
}

// Every beta finite and in (0, 1]; only the last may be 1 (alpha_bar reaches 0 there and nowhere before).
void check_betas(const std::vector<double>& betas, const char* what) {
  const auto T = static_cast<int64_t>(betas.size());
  for (int64_t i = 0; i < T; ++i) {
    const double b = betas[i];
    MD_CHECK_VALUE(std::isfinite(b) && b > 0 && b <= 1, what, ": beta[", i, "] must be in (0, 1], got ", b);
    MD_CHECK_VALUE(b < 1 || i == T - 1, what, ": only the last beta may be 1, beta[", i, "] = 1");
  }
}

void validate(const ScheduleOptions& o) {
  int64_t T = o.num_train_timesteps();
  if (o.kind() == BetaSchedule::Custom) {
    // num_train_timesteps follows the number of betas.
    MD_CHECK_VALUE(!o.betas().empty(), "ScheduleOptions: a custom schedule needs betas, got none");
    check_betas(o.betas(), "ScheduleOptions");
    T = static_cast<int64_t>(o.betas().size());
  } else {
    MD_CHECK_VALUE(T >= 1 && T <= 1000000, "ScheduleOptions: num_train_timesteps must be in [1, 1000000], got ", T);
    if (o.kind() == BetaSchedule::Cosine) {
      check_positive(o.cosine_s(), "ScheduleOptions: cosine_s");
      MD_CHECK_VALUE(o.max_beta() > 0 && o.max_beta() <= 1, "ScheduleOptions: max_beta must be in (0, 1], got ",
                     o.max_beta());
    } else {
      MD_CHECK_VALUE(o.beta_start() > 0 && o.beta_start() < 1, "ScheduleOptions: beta_start must be in (0, 1), got ",
                     o.beta_start());
      MD_CHECK_VALUE(o.beta_end() > 0 && o.beta_end() < 1, "ScheduleOptions: beta_end must be in (0, 1), got ",
                     o.beta_end());
    }
  }
  MD_CHECK_VALUE(!o.rescale_zero_terminal_snr() || T >= 2,
                 "ScheduleOptions: zero-terminal-SNR rescaling needs at least 2 timesteps, got ", T);
}

std::vector<double> rescale_zero_terminal_snr(const std::vector<double>& betas) {
  const size_t T = betas.size();
  MD_CHECK_VALUE(T >= 2, "zero-terminal-SNR rescaling needs at least 2 timesteps, got ", T);
  std::vector<double> sqrt_ab(T);
  double ab = 1;
  for (size_t i = 0; i < T; ++i) {
    ab *= 1 - betas[i];
    sqrt_ab[i] = std::sqrt(ab);
  }
  const double first = sqrt_ab.front();
  const double last = sqrt_ab.back();
  MD_CHECK_VALUE(first > last, "zero-terminal-SNR rescaling needs a decreasing alpha_bar");
  for (double& v : sqrt_ab) {
    v = (v - last) * first / (first - last);
  }
  std::vector<double> out(T);
  double prev = 1;
  for (size_t i = 0; i < T; ++i) {
    const double cur = sqrt_ab[i] * sqrt_ab[i];
    out[i] = 1 - cur / prev;
    prev = cur;
  }
  out.back() = 1.0;  // exactly: alpha_bar_{T-1} = 0
  return out;
}

}  // namespace

NoiseSchedule::NoiseSchedule(ScheduleOptions options) : options_(std::move(options)) {
  validate(options_);
  std::vector<double> betas = make_betas(options_);
  if (options_.kind() == BetaSchedule::Custom) {
    options_.num_train_timesteps(static_cast<int64_t>(betas.size()));
  }
  if (options_.rescale_zero_terminal_snr()) {
    betas = rescale_zero_terminal_snr(betas);
  }
  build(std::move(betas));
}

void NoiseSchedule::build(std::vector<double> betas) {
  const int64_t T = static_cast<int64_t>(betas.size());
  check_betas(betas, "NoiseSchedule");
  alpha_bar_.resize(betas.size());
  double ab = 1;
  for (int64_t i = 0; i < T; ++i) {
    ab *= 1 - betas[i];
    alpha_bar_[i] = ab;
  }
  betas_ = std::move(betas);
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  betas_t_ = at::tensor(betas_, opts);
  alpha_bar_t_ = at::tensor(alpha_bar_, opts);
  signal_t_ = alpha_bar_t_.sqrt();
  noise_t_ = (1 - alpha_bar_t_).sqrt();
}

NoiseSchedule NoiseSchedule::linear(int64_t T, double beta_start, double beta_end) {
  return NoiseSchedule(
      ScheduleOptions(BetaSchedule::Linear).num_train_timesteps(T).beta_start(beta_start).beta_end(beta_end));
}

NoiseSchedule NoiseSchedule::scaled_linear(int64_t T, double beta_start, double beta_end) {
  return NoiseSchedule(
      ScheduleOptions(BetaSchedule::ScaledLinear).num_train_timesteps(T).beta_start(beta_start).beta_end(beta_end));
}

NoiseSchedule NoiseSchedule::cosine(int64_t T, double s, double max_beta) {
  return NoiseSchedule(ScheduleOptions(BetaSchedule::Cosine).num_train_timesteps(T).cosine_s(s).max_beta(max_beta));
}

NoiseSchedule NoiseSchedule::sigmoid(int64_t T, double beta_start, double beta_end) {
  return NoiseSchedule(
      ScheduleOptions(BetaSchedule::Sigmoid).num_train_timesteps(T).beta_start(beta_start).beta_end(beta_end));
}

NoiseSchedule NoiseSchedule::from_betas(std::vector<double> betas) {
  const auto T = static_cast<int64_t>(betas.size());
  return NoiseSchedule(ScheduleOptions(BetaSchedule::Custom).num_train_timesteps(T).betas(std::move(betas)));
}

NoiseSchedule NoiseSchedule::rescaled_zero_terminal_snr() const {
  ScheduleOptions o = options_;
  o.rescale_zero_terminal_snr(true);
  return NoiseSchedule(o);
}

#define MD_CHECK_T(t)                                                                                        \
  MD_CHECK_INDEX((t) >= 0 && (t) < num_train_timesteps(), "timestep must be in [0, ", num_train_timesteps(), \
                 "), got ", (t))

double NoiseSchedule::beta(int64_t t) const {
  MD_CHECK_T(t);
  return betas_[t];
}
double NoiseSchedule::alpha_bar(int64_t t) const {
  MD_CHECK_T(t);
  return alpha_bar_[t];
}
double NoiseSchedule::alpha(int64_t t) const { return std::sqrt(alpha_bar(t)); }
double NoiseSchedule::sigma(int64_t t) const { return std::sqrt(1 - alpha_bar(t)); }
double NoiseSchedule::snr(int64_t t) const {
  const double ab = alpha_bar(t);
  return ab / (1 - ab);
}
double NoiseSchedule::log_snr(int64_t t) const {
  const double ab = alpha_bar(t);
  return std::log(ab) - std::log1p(-ab);
}
double NoiseSchedule::ve_sigma(int64_t t) const {
  const double ab = alpha_bar(t);
  return ab > 0 ? std::sqrt((1 - ab) / ab) : std::numeric_limits<double>::infinity();
}

double NoiseSchedule::alpha_bar_at(double t) const {
  const auto T = static_cast<double>(num_train_timesteps());
  MD_CHECK_INDEX(std::isfinite(t) && t >= 0 && t <= T - 1, "fractional timestep must be in [0, ", T - 1, "], got ", t);
  const auto lo = static_cast<int64_t>(std::floor(t));
  const double w = t - static_cast<double>(lo);
  if (w == 0 || lo + 1 >= num_train_timesteps()) {
    return alpha_bar_[lo];
  }
  const double a = log_snr(lo);
  const double b = log_snr(lo + 1);
  if (!std::isfinite(b)) {  // zero terminal SNR: interpolate alpha_bar itself on the last interval
    return (1 - w) * alpha_bar_[lo] + w * alpha_bar_[lo + 1];
  }
  const double l = (1 - w) * a + w * b;
  return 1 / (1 + std::exp(-l));  // sigmoid(log-SNR)
}

double NoiseSchedule::timestep_from_ve_sigma(double sigma) const {
  MD_CHECK_VALUE(!std::isnan(sigma) && sigma >= 0, "ve sigma must be non-negative, got ", sigma);
  const int64_t T = num_train_timesteps();
  if (sigma <= ve_sigma(0)) {
    return 0.0;
  }
  if (sigma >= ve_sigma(T - 1)) {
    return static_cast<double>(T - 1);
  }
  // ve_sigma increases with t: binary search, then interpolate in log sigma.
  int64_t lo = 0;
  int64_t hi = T - 1;
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    (ve_sigma(mid) <= sigma ? lo : hi) = mid;
  }
  if (alpha_bar_[hi] == 0) {
    // The last interval of a zero-terminal-SNR schedule, where alpha_bar_at interpolates alpha_bar
    // itself: alpha_bar = (1 - w) alpha_bar[lo] and alpha_bar = 1 / (1 + sigma^2).
    const double w = 1 - 1 / (1 + sigma * sigma) / alpha_bar_[lo];
    return static_cast<double>(lo) + std::min(std::max(w, 0.0), 1.0);
  }
  // Elsewhere alpha_bar_at interpolates log-SNR = -2 log(ve_sigma) linearly.
  const double a = std::log(ve_sigma(lo));
  const double b = std::log(ve_sigma(hi));
  return static_cast<double>(lo) + (std::log(sigma) - a) / (b - a);
}

std::vector<int64_t> NoiseSchedule::timesteps(int64_t n, TimestepSpacing spacing, int64_t steps_offset) const {
  const int64_t T = num_train_timesteps();
  MD_CHECK_VALUE(n >= 1 && n <= T, "number of inference steps must be in [1, ", T, "] (the training timesteps), got ",
                 n);
  MD_CHECK_VALUE(steps_offset >= 0, "steps_offset must be non-negative, got ", steps_offset);
  std::vector<int64_t> ts(static_cast<size_t>(n));
  switch (spacing) {
    case TimestepSpacing::Leading: {
      // diffusers: (np.arange(0, n) * (T // n))[::-1] + steps_offset.
      const int64_t ratio = T / n;
      MD_CHECK_VALUE(steps_offset <= T - 1 - (n - 1) * ratio, "steps_offset ", steps_offset, " pushes the first of ", n,
                     " leading timesteps past T - 1 = ", T - 1);
      for (int64_t i = 0; i < n; ++i) ts[i] = (n - 1 - i) * ratio + steps_offset;
      break;
    }
    case TimestepSpacing::Trailing: {
      // diffusers: np.round(np.arange(T, 0, -T / n)) - 1, evaluated the way numpy does it so that exact
      // halves round alike: element i of an arange is start + i * delta, where delta is the difference
      // of its first two elements. (Where numpy's arange makes an (n+1)-th element, -1, it is left out.)
      const auto t_max = static_cast<double>(T);
      const double delta = (t_max - t_max / static_cast<double>(n)) - t_max;
      for (int64_t i = 0; i < n; ++i) {
        ts[i] = static_cast<int64_t>(round_half_even(t_max + static_cast<double>(i) * delta)) - 1;
      }
      break;
    }
    case TimestepSpacing::Linspace: {
      // diffusers: np.linspace(0, T - 1, n).round()[::-1]. numpy computes element j as j * step and sets
      // the last one to T - 1 exactly. A single step is T - 1 (np.linspace would give 0: no noise).
      ts[0] = T - 1;
      if (n > 1) {
        const double step = static_cast<double>(T - 1) / static_cast<double>(n - 1);
        for (int64_t i = 1; i < n; ++i) {
          ts[i] = static_cast<int64_t>(round_half_even(static_cast<double>(n - 1 - i) * step));
        }
      }
      break;
    }
  }
  check_timesteps(ts);
  return ts;
}

void NoiseSchedule::check_timesteps(const std::vector<int64_t>& ts) const {
  MD_CHECK_VALUE(!ts.empty(), "timesteps must not be empty");
  for (size_t i = 0; i < ts.size(); ++i) {
    MD_CHECK_INDEX(ts[i] >= 0 && ts[i] < num_train_timesteps(), "timesteps[", i, "] = ", ts[i], " is outside [0, ",
                   num_train_timesteps(), ")");
    MD_CHECK_VALUE(i == 0 || ts[i] < ts[i - 1], "timesteps must be strictly decreasing, got timesteps[", i - 1,
                   "] = ", ts[i - 1], " then timesteps[", i, "] = ", ts[i]);
  }
}

std::vector<double> NoiseSchedule::karras_sigmas(int64_t n, double sigma_min, double sigma_max, double rho) {
  MD_CHECK_VALUE(n >= 1, "karras_sigmas: n must be >= 1, got ", n);
  MD_CHECK_VALUE(std::isfinite(sigma_min) && sigma_min > 0, "karras_sigmas: sigma_min must be positive, got ",
                 sigma_min);
  if (n == 1) {
    MD_CHECK_VALUE(std::isfinite(sigma_max) && sigma_max >= sigma_min,
                   "karras_sigmas: sigma_max must be finite and >= sigma_min (", sigma_min, "), got ", sigma_max);
  } else {
    MD_CHECK_VALUE(std::isfinite(sigma_max) && sigma_max > sigma_min, "karras_sigmas: sigma_max must be finite and > ",
                   "sigma_min (", sigma_min, ") for ", n, " levels, got ", sigma_max);
  }
  check_positive(rho, "karras_sigmas: rho");
  const double a = std::pow(sigma_max, 1 / rho);
  const double b = std::pow(sigma_min, 1 / rho);
  std::vector<double> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double u = n == 1 ? 0.0 : static_cast<double>(i) / static_cast<double>(n - 1);
    out[i] = std::pow(a + u * (b - a), rho);
  }
  // The ends exactly: a sampler starts at the schedule's sigma_max and stops at its sigma_min.
  out.front() = sigma_max;
  if (n > 1) {
    out.back() = sigma_min;
  }
  return out;
}

at::Tensor NoiseSchedule::q_sample(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t) const {
  CheckContext check_context("NoiseSchedule::q_sample");
  check_defined(x0, "x0");
  const auto dev = x0.device();
  return ops::q_sample(x0, noise, t, signal_t_.to(dev), noise_t_.to(dev));
}

// ---- JSON -------------------------------------------------------------------------------------

std::string ScheduleOptions::to_json() const {
  nlohmann::json j;
  j["kind"] = mdiff::to_string(kind());
  j["num_train_timesteps"] = num_train_timesteps();
  j["beta_start"] = beta_start();
  j["beta_end"] = beta_end();
  j["cosine_s"] = cosine_s();
  j["max_beta"] = max_beta();
  if (kind() == BetaSchedule::Custom) {
    j["betas"] = betas();
  }
  j["rescale_zero_terminal_snr"] = rescale_zero_terminal_snr();
  return j.dump();
}

namespace {
nlohmann::json parse_json_object(const std::string& text, const char* what) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    MD_CHECK_VALUE(false, what, ": invalid JSON: ", e.what());
  }
  MD_CHECK_VALUE(j.is_object(), what, ": expected a JSON object, got ", j.type_name());
  return j;
}

// Typed reads of one key. The JSON type must be the option's own, with no silent conversions: a
// boolean is not a number and 1000.5 is not an integer.
std::string json_type_error(const nlohmann::json& v, const char* key, const char* expected, const char* what) {
  return fmt::format("{}: '{}' must be {}, got {} ({})", what, key, expected, v.dump(), v.type_name());
}

int64_t json_int(const nlohmann::json& j, const char* key, const char* what) {
  const nlohmann::json& v = j.at(key);
  const bool ok =
      v.is_number_integer() && !(v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX));
  MD_CHECK_VALUE(ok, json_type_error(v, key, "an integer", what));
  return v.get<int64_t>();
}

double json_double(const nlohmann::json& j, const char* key, const char* what) {
  const nlohmann::json& v = j.at(key);
  MD_CHECK_VALUE(v.is_number(), json_type_error(v, key, "a number", what));
  return v.get<double>();
}

bool json_bool(const nlohmann::json& j, const char* key, const char* what) {
  const nlohmann::json& v = j.at(key);
  MD_CHECK_VALUE(v.is_boolean(), json_type_error(v, key, "a boolean", what));
  return v.get<bool>();
}

std::vector<double> json_doubles(const nlohmann::json& j, const char* key, const char* what) {
  const nlohmann::json& v = j.at(key);
  const bool ok =
      v.is_array() && std::all_of(v.begin(), v.end(), [](const nlohmann::json& e) { return e.is_number(); });
  MD_CHECK_VALUE(ok, json_type_error(v, key, "an array of numbers", what));
  return v.get<std::vector<double>>();
}

BetaSchedule json_kind(const nlohmann::json& j, const char* key, const char* what) {
  const nlohmann::json& v = j.at(key);
  MD_CHECK_VALUE(v.is_string(), json_type_error(v, key, "a string", what));
  const std::string name = v.get<std::string>();
  const std::optional<BetaSchedule> kind = try_enum_from_string<BetaSchedule>(name);
  if (!kind) {
    std::vector<std::string> names;
    for (const auto& entry : EnumTraits<BetaSchedule>::entries) names.emplace_back(entry.name);
    MD_CHECK_VALUE(false, what, ": unknown BetaSchedule '", name, "' for '", key,
                   "'; expected one of: ", fmt::format("{}", fmt::join(names, ", ")));
  }
  return *kind;
}
}  // namespace

ScheduleOptions ScheduleOptions::from_json(const std::string& text) {
  const char* what = "ScheduleOptions::from_json";
  const nlohmann::json j = parse_json_object(text, what);
  ScheduleOptions o;
  for (const auto& item : j.items()) {
    const std::string& k = item.key();
    if (k == "kind") {
      o.kind(json_kind(j, "kind", what));
    } else if (k == "num_train_timesteps") {
      o.num_train_timesteps(json_int(j, "num_train_timesteps", what));
    } else if (k == "beta_start") {
      o.beta_start(json_double(j, "beta_start", what));
    } else if (k == "beta_end") {
      o.beta_end(json_double(j, "beta_end", what));
    } else if (k == "cosine_s") {
      o.cosine_s(json_double(j, "cosine_s", what));
    } else if (k == "max_beta") {
      o.max_beta(json_double(j, "max_beta", what));
    } else if (k == "betas") {
      o.betas(json_doubles(j, "betas", what));
    } else if (k == "rescale_zero_terminal_snr") {
      o.rescale_zero_terminal_snr(json_bool(j, "rescale_zero_terminal_snr", what));
    } else {
      MD_CHECK_VALUE(false, what, ": unknown key '", k, "'");
    }
  }
  validate(o);
  return o;
}

ScheduleOptions ScheduleOptions::from_diffusers_config(const std::string& text) {
  const char* what = "ScheduleOptions::from_diffusers_config";
  const nlohmann::json j = parse_json_object(text, what);
  ScheduleOptions o;
  if (j.contains("num_train_timesteps")) o.num_train_timesteps(json_int(j, "num_train_timesteps", what));
  if (j.contains("beta_start")) o.beta_start(json_double(j, "beta_start", what));
  if (j.contains("beta_end")) o.beta_end(json_double(j, "beta_end", what));
  if (j.contains("beta_schedule")) o.kind(json_kind(j, "beta_schedule", what));
  if (j.contains("trained_betas") && !j.at("trained_betas").is_null()) {
    o.kind(BetaSchedule::Custom).betas(json_doubles(j, "trained_betas", what));
    o.num_train_timesteps(static_cast<int64_t>(o.betas().size()));
  }
  if (j.contains("rescale_betas_zero_snr")) {
    o.rescale_zero_terminal_snr(json_bool(j, "rescale_betas_zero_snr", what));
  }
  validate(o);
  return o;
}

}  // namespace manifold_diffusion
