#pragma once
// Reference values for the schedule tests, written from the papers and from diffusers' definitions in
// plain double arithmetic. Nothing here calls the library.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace mdiff_test {
namespace ref {

constexpr double kPi = 3.14159265358979323846;

/// numpy.linspace(a, b, n)[i] for n >= 2 (a single point is a).
inline double linspace_at(double a, double b, int64_t i, int64_t n) {
  return n == 1 ? a : a + (b - a) * static_cast<double>(i) / static_cast<double>(n - 1);
}

/// Ho et al. (2020): beta linear from beta_start to beta_end.
inline std::vector<double> linear_betas(int64_t T, double beta_start, double beta_end) {
  std::vector<double> b;
  for (int64_t i = 0; i < T; ++i) b.push_back(linspace_at(beta_start, beta_end, i, T));
  return b;
}

/// Latent / Stable Diffusion: sqrt(beta) linear from sqrt(beta_start) to sqrt(beta_end), squared.
inline std::vector<double> scaled_linear_betas(int64_t T, double beta_start, double beta_end) {
  std::vector<double> b;
  for (int64_t i = 0; i < T; ++i) {
    const double r = linspace_at(std::sqrt(beta_start), std::sqrt(beta_end), i, T);
    b.push_back(r * r);
  }
  return b;
}

/// Nichol & Dhariwal (2021), eq. 17: f(t) = cos^2((t/T + s) / (1 + s) * pi/2), t in [0, T].
inline double cosine_f(double t, int64_t T, double s) {
  const double c = std::cos((t / static_cast<double>(T) + s) / (1 + s) * kPi / 2);
  return c * c;
}

/// beta_t = min(1 - alpha_bar(t) / alpha_bar(t - 1), max_beta) with alpha_bar(t) = f(t) / f(0); the
/// library's index i is the paper's step t = i + 1.
inline std::vector<double> cosine_betas(int64_t T, double s, double max_beta) {
  std::vector<double> b;
  for (int64_t i = 0; i < T; ++i) {
    b.push_back(
        std::min(1 - cosine_f(static_cast<double>(i + 1), T, s) / cosine_f(static_cast<double>(i), T, s), max_beta));
  }
  return b;
}

/// diffusers' "sigmoid": beta_start + (beta_end - beta_start) * sigmoid(linspace(-6, 6, T)).
inline std::vector<double> sigmoid_betas(int64_t T, double beta_start, double beta_end) {
  std::vector<double> b;
  for (int64_t i = 0; i < T; ++i) {
    const double x = linspace_at(-6.0, 6.0, i, T);
    b.push_back(beta_start + (beta_end - beta_start) / (1 + std::exp(-x)));
  }
  return b;
}

/// alpha_bar_t = prod_{s <= t} (1 - beta_s).
inline std::vector<double> alpha_bar(const std::vector<double>& betas) {
  std::vector<double> ab;
  double p = 1;
  for (double b : betas) {
    p *= 1 - b;
    ab.push_back(p);
  }
  return ab;
}

/// Lin et al. (2023), Algorithm 1 on sqrt(alpha_bar): s -> (s - s_last) * s_first / (s_first - s_last).
inline double zero_snr_sqrt_alpha_bar(const std::vector<double>& alpha_bar, int64_t t) {
  const double first = std::sqrt(alpha_bar.front());
  const double last = std::sqrt(alpha_bar.back());
  return (std::sqrt(alpha_bar[static_cast<size_t>(t)]) - last) * first / (first - last);
}

/// Karras et al. (2022), eq. 5: sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho.
inline double karras_sigma(int64_t i, int64_t n, double sigma_min, double sigma_max, double rho) {
  const double a = std::pow(sigma_max, 1 / rho);
  const double b = std::pow(sigma_min, 1 / rho);
  return std::pow(a + static_cast<double>(i) / static_cast<double>(n - 1) * (b - a), rho);
}

/// The indices the table tests look at: 0, 1, T/2, T-1 (those that exist, without repeats).
inline std::vector<int64_t> probe_indices(int64_t T) {
  std::vector<int64_t> idx;
  for (int64_t t : {int64_t{0}, int64_t{1}, T / 2, T - 1}) {
    if (t >= 0 && t < T && std::find(idx.begin(), idx.end(), t) == idx.end()) idx.push_back(t);
  }
  return idx;
}

// ---- diffusers' set_timesteps, evaluated the way numpy evaluates it ----------------------------

/// numpy's round: half to even.
inline int64_t np_round(double x) { return static_cast<int64_t>(std::nearbyint(x)); }

/// "leading": (np.arange(0, n) * (T // n)).round()[::-1] + steps_offset.
inline std::vector<int64_t> diffusers_leading(int64_t T, int64_t n, int64_t steps_offset) {
  std::vector<int64_t> ts;
  for (int64_t k = n - 1; k >= 0; --k) ts.push_back(k * (T / n) + steps_offset);
  return ts;
}

/// "trailing": np.round(np.arange(T, 0, -T / n)) - 1, every element numpy's arange makes. numpy
/// fills an arange as start + i * delta, where delta is the difference of its first two elements.
inline std::vector<int64_t> diffusers_trailing(int64_t T, int64_t n) {
  const double start = static_cast<double>(T);
  const double step = -(static_cast<double>(T) / static_cast<double>(n));
  const auto length = static_cast<int64_t>(std::ceil((0.0 - start) / step));
  std::vector<double> buf(static_cast<size_t>(length));
  buf[0] = start;
  if (length > 1) buf[1] = start + step;
  const double delta = length > 1 ? buf[1] - buf[0] : 0.0;
  for (int64_t i = 2; i < length; ++i) buf[static_cast<size_t>(i)] = start + static_cast<double>(i) * delta;
  std::vector<int64_t> ts;
  for (double v : buf) ts.push_back(np_round(v) - 1);
  return ts;
}

/// "linspace": np.linspace(0, T - 1, n).round()[::-1]. numpy computes element j as j * step with
/// step = (T - 1) / (n - 1) and sets the last element to T - 1 exactly.
inline std::vector<int64_t> diffusers_linspace(int64_t T, int64_t n) {
  std::vector<double> y(static_cast<size_t>(n), 0.0);
  if (n > 1) {
    const double step = static_cast<double>(T - 1) / static_cast<double>(n - 1);
    for (int64_t j = 0; j < n; ++j) y[static_cast<size_t>(j)] = static_cast<double>(j) * step;
    y.back() = static_cast<double>(T - 1);
  }
  std::vector<int64_t> ts;
  for (auto it = y.rbegin(); it != y.rend(); ++it) ts.push_back(np_round(*it));
  return ts;
}

}  // namespace ref
}  // namespace mdiff_test
