#pragma once

/// \file
/// Noise schedules of the variance-preserving (DDPM) family, as immutable values.

#include <manifold_diffusion/core/enum.h>
#include <manifold_diffusion/core/namespace.h>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <cstdint>
#include <string>
#include <vector>

namespace manifold_diffusion {

/// How the betas of a schedule are made.
enum class BetaSchedule {
  Linear,        ///< beta linear from beta_start to beta_end (DDPM).
  ScaledLinear,  ///< sqrt(beta) linear from sqrt(beta_start) to sqrt(beta_end) (Stable Diffusion).
  /// alpha_bar_t = f(t + 1) / f(0) with f(u) = cos^2((u/T + s) / (1 + s) * pi/2), each beta capped at
  /// max_beta (Nichol & Dhariwal 2021).
  Cosine,
  Sigmoid,       ///< beta = beta_start + (beta_end - beta_start) * sigmoid(linspace(-6, 6, T)).
  Custom,        ///< betas given by the user.
};

/// How inference timesteps are picked from the training timesteps (diffusers' names and values;
/// rounding is half to even, evaluated as numpy evaluates diffusers' expressions).
enum class TimestepSpacing {
  Leading,   ///< t_i = (n - 1 - i) * floor(T / n) + steps_offset.
  Trailing,  ///< t_i = round(T - i * T / n) - 1: always starts at T - 1.
  Linspace,  ///< t_i = round((n - 1 - i) * (T - 1) / (n - 1)): from T - 1 down to 0; a single step uses T - 1.
};

template <>
struct EnumTraits<BetaSchedule> {
  static constexpr const char* type_name = "BetaSchedule";
  static constexpr EnumEntry<BetaSchedule> entries[] = {
      {BetaSchedule::Linear, "linear"},
      {BetaSchedule::ScaledLinear, "scaled_linear"},
      {BetaSchedule::Cosine, "cosine"},
      {BetaSchedule::Cosine, "squaredcos_cap_v2"},
      {BetaSchedule::Sigmoid, "sigmoid"},
      {BetaSchedule::Custom, "custom"},
  };
};

template <>
struct EnumTraits<TimestepSpacing> {
  static constexpr const char* type_name = "TimestepSpacing";
  static constexpr EnumEntry<TimestepSpacing> entries[] = {
      {TimestepSpacing::Leading, "leading"},
      {TimestepSpacing::Trailing, "trailing"},
      {TimestepSpacing::Linspace, "linspace"},
  };
};

/// Options of a NoiseSchedule. Defaults are the DDPM paper's linear schedule.
///
/// Example:
/// \code
///   auto opts = mdiff::ScheduleOptions(mdiff::BetaSchedule::Cosine).num_train_timesteps(1000);
///   mdiff::NoiseSchedule s(opts);
///   std::string json = opts.to_json();   // round-trips through ScheduleOptions::from_json
/// \endcode
struct ScheduleOptions {
  /* implicit */ ScheduleOptions(BetaSchedule kind = BetaSchedule::Linear) : kind_(kind) {}

  /// JSON object with every field (`betas` only for Custom).
  std::string to_json() const;
  /// Parses to_json()'s output; unknown keys and bad values are errors that name them.
  static ScheduleOptions from_json(const std::string& json);
  /// Reads the schedule part of a diffusers `scheduler_config.json` (num_train_timesteps,
  /// beta_start, beta_end, beta_schedule, trained_betas, rescale_betas_zero_snr); other keys are ignored.
  static ScheduleOptions from_diffusers_config(const std::string& json);

  /// Beta construction.
  TORCH_ARG(BetaSchedule, kind);
  /// Number of training timesteps T.
  TORCH_ARG(int64_t, num_train_timesteps) = 1000;
  /// First beta (Linear, ScaledLinear, Sigmoid).
  TORCH_ARG(double, beta_start) = 1e-4;
  /// Last beta (Linear, ScaledLinear, Sigmoid).
  TORCH_ARG(double, beta_end) = 0.02;
  /// Offset s of the cosine schedule.
  TORCH_ARG(double, cosine_s) = 0.008;
  /// Cap on each beta of the cosine schedule.
  TORCH_ARG(double, max_beta) = 0.999;
  /// The betas of a Custom schedule (length T, each in (0, 1]).
  TORCH_ARG(std::vector<double>, betas) = {};
  /// Rescale to zero terminal SNR (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample
  /// Steps are Flawed"); the last alpha_bar becomes exactly 0.
  TORCH_ARG(bool, rescale_zero_terminal_snr) = false;
};

/// A noise schedule of the variance-preserving process x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps,
/// t = 0 .. T-1. An immutable value with float64 tables; it holds no step counter and is safe to
/// share between threads.
///
/// Names used below: alpha(t) = sqrt(alpha_bar_t) (signal scale), sigma(t) = sqrt(1 - alpha_bar_t)
/// (noise scale), snr(t) = alpha_bar / (1 - alpha_bar), and the variance-exploding noise level
/// ve_sigma(t) = sigma(t) / alpha(t) used by Euler/Heun/Karras samplers.
///
/// References: Ho et al. (2020), "Denoising Diffusion Probabilistic Models" (linear betas); Nichol &
/// Dhariwal (2021), "Improved Denoising Diffusion Probabilistic Models" (cosine); Lin et al. (2023),
/// "Common Diffusion Noise Schedules and Sample Steps are Flawed" (zero terminal SNR, trailing
/// spacing); Karras et al. (2022), "Elucidating the Design Space of Diffusion-Based Generative
/// Models" (karras_sigmas). Guide: docs/schedules.md.
///
/// Example:
/// \code
///   auto s = mdiff::NoiseSchedule::cosine(1000);
///   double ab = s.alpha_bar(500);
///   std::vector<int64_t> ts = s.timesteps(50, mdiff::TimestepSpacing::Trailing);  // 999, 979, ..., 19
///   at::Tensor x_t = s.q_sample(x0, at::randn_like(x0), t);
///   auto karras = mdiff::NoiseSchedule::karras_sigmas(30, s.ve_sigma_min(), s.ve_sigma_max());
/// \endcode
class NoiseSchedule {
 public:
  explicit NoiseSchedule(ScheduleOptions options = {});

  static NoiseSchedule linear(int64_t T = 1000, double beta_start = 1e-4, double beta_end = 0.02);
  static NoiseSchedule scaled_linear(int64_t T = 1000, double beta_start = 0.00085, double beta_end = 0.012);
  static NoiseSchedule cosine(int64_t T = 1000, double s = 0.008, double max_beta = 0.999);
  static NoiseSchedule sigmoid(int64_t T = 1000, double beta_start = 1e-4, double beta_end = 0.02);
  static NoiseSchedule from_betas(std::vector<double> betas);

  /// The same schedule rescaled to zero terminal SNR.
  NoiseSchedule rescaled_zero_terminal_snr() const;

  const ScheduleOptions& options() const { return options_; }
  int64_t num_train_timesteps() const { return static_cast<int64_t>(alpha_bar_.size()); }

  /// float64 CPU tensors of length T.
  const at::Tensor& betas() const { return betas_t_; }
  const at::Tensor& alphas_cumprod() const { return alpha_bar_t_; }
  /// sqrt(alpha_bar) and sqrt(1 - alpha_bar) as float64 CPU tensors (the tables q_sample gathers from).
  const at::Tensor& signal_table() const { return signal_t_; }
  const at::Tensor& noise_table() const { return noise_t_; }

  double beta(int64_t t) const;
  double alpha_bar(int64_t t) const;
  double alpha(int64_t t) const;
  double sigma(int64_t t) const;
  double snr(int64_t t) const;
  double log_snr(int64_t t) const;
  double ve_sigma(int64_t t) const;
  /// ve_sigma at t = 0 and at t = T - 1 (infinite after zero-terminal-SNR rescaling).
  double ve_sigma_min() const { return ve_sigma(0); }
  double ve_sigma_max() const { return ve_sigma(num_train_timesteps() - 1); }

  /// alpha_bar at a fractional timestep t in [0, T - 1], interpolating log-SNR linearly between
  /// the two neighbouring integer timesteps (exact at integers).
  double alpha_bar_at(double t) const;
  /// The continuous-time VP view: alpha_bar(u) for u in [0, 1], u = t / (T - 1).
  double vp_alpha_bar(double u) const { return alpha_bar_at(u * static_cast<double>(num_train_timesteps() - 1)); }
  /// The fractional timestep whose ve_sigma is `sigma`, clamped to [0, T - 1]: the inverse of the
  /// ve_sigma of alpha_bar_at (log-sigma interpolation; on the last interval of a zero-terminal-SNR
  /// schedule, the inverse of its alpha_bar interpolation).
  double timestep_from_ve_sigma(double sigma) const;

  /// `n` inference timesteps (1 <= n <= T), strictly decreasing, in [0, T). `steps_offset` shifts
  /// Leading spacing (diffusers' steps_offset; the other spacings ignore it, as diffusers does); it
  /// must keep every timestep below T.
  std::vector<int64_t> timesteps(int64_t n, TimestepSpacing spacing, int64_t steps_offset = 0) const;
  /// Validates user-supplied timesteps: non-empty, strictly decreasing, in [0, T).
  void check_timesteps(const std::vector<int64_t>& timesteps) const;

  /// Karras et al. (2022) noise levels: n values from sigma_max down to sigma_min with
  /// (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho; the first is sigma_max and
  /// the last sigma_min exactly, and for n >= 2 sigma_max must exceed sigma_min. No trailing zero.
  static std::vector<double> karras_sigmas(int64_t n, double sigma_min, double sigma_max, double rho = 7.0);

  /// Forward noising with this schedule's tables (mdiff::ops::q_sample); the tables are moved to
  /// x0's device.
  at::Tensor q_sample(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t) const;

 private:
  void build(std::vector<double> betas);

  ScheduleOptions options_;
  std::vector<double> betas_;
  std::vector<double> alpha_bar_;
  at::Tensor betas_t_, alpha_bar_t_, signal_t_, noise_t_;
};

}  // namespace manifold_diffusion
