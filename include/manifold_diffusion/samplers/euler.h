#pragma once

/// \file
/// Samplers in sigma space (Karras et al. 2022): Euler, Euler-ancestral and Heun, with EDM's
/// stochastic "churn".

#include <manifold_diffusion/samplers/sampler.h>

#include <limits>

namespace manifold_diffusion {

/// Options shared by the sigma-space samplers. They work on the variance-exploding view
/// x_ve = x_vp / alpha with sigma = sqrt((1 - alpha_bar) / alpha_bar), and call the network at the
/// fractional timestep whose sigma matches.
///
/// Example:
/// \code
///   auto opts = mdiff::SigmaSamplerOptions(18).karras(true).rho(7).s_churn(40).s_tmin(0.05).s_tmax(50);
///   mdiff::HeunSampler heun(opts);
/// \endcode
struct SigmaSamplerOptions {
  /* implicit */ SigmaSamplerOptions(int64_t num_steps = 30) : num_steps_(num_steps) {}
  TORCH_ARG(int64_t, num_steps);
  /// Karras noise levels (true) or the sigmas of the schedule's timesteps picked by `spacing`.
  TORCH_ARG(bool, karras) = true;
  TORCH_ARG(double, rho) = 7.0;
  /// Karras range; 0 = the schedule's smallest/largest sigma. An infinite schedule maximum (zero
  /// terminal SNR) is replaced by the sigma of alpha_bar = 2^-24.
  TORCH_ARG(double, sigma_min) = 0.0;
  TORCH_ARG(double, sigma_max) = 0.0;
  TORCH_ARG(TimestepSpacing, spacing) = TimestepSpacing::Trailing;
  TORCH_ARG(int64_t, steps_offset) = 0;
  TORCH_ARG(std::vector<int64_t>, timesteps) = {};
  /// EDM churn (Euler and Heun): gamma = min(s_churn / n, sqrt(2) - 1) for sigma in [s_tmin, s_tmax].
  TORCH_ARG(double, s_churn) = 0.0;
  TORCH_ARG(double, s_tmin) = 0.0;
  TORCH_ARG(double, s_tmax) = std::numeric_limits<double>::infinity();
  TORCH_ARG(double, s_noise) = 1.0;
  /// Euler-ancestral: fraction of the ancestral noise (1 = full ancestral step, 0 = Euler).
  TORCH_ARG(double, eta) = 1.0;

 public:

  std::string to_json() const;
  static SigmaSamplerOptions from_json(const std::string& json);
};

/// Common machinery of the sigma-space samplers.
class SigmaSpaceSampler : public Sampler {
 public:
  explicit SigmaSpaceSampler(SigmaSamplerOptions options);
  const SigmaSamplerOptions& options() const { return options_; }
  std::string options_json() const override { return options_.to_json(); }
  /// The noise levels a run walks (decreasing, ending with 0).
  std::vector<double> sigmas(const NoiseSchedule& schedule) const;

 protected:
  void init(const Denoiser& denoiser, SamplerState& state) const override;
  at::Tensor to_vp(const SamplerState& state) const override;
  /// D(x) at VE noise level sigma, with hooks; x in the VE domain.
  DenoiserOutput denoise_ve(const Denoiser& denoiser, const at::Tensor& x_ve, double sigma, const SampleArgs& args,
                            StepContext& ctx) const;
  /// Runs on_proposal hooks on a VE-domain proposal at level sigma_next.
  at::Tensor propose_ve(const SampleArgs& args, const StepContext& ctx, const at::Tensor& x_next_ve,
                        double sigma_next) const;
  /// The StepContext of a step to sigma_next (its t and alpha_bar are filled in by denoise_ve()).
  StepContext step_context(const Denoiser& denoiser, const SamplerState& state, const SampleArgs& args,
                           double sigma_next) const;
  /// Applies EDM churn to state.x; returns sigma_hat.
  double churn(SamplerState& state, double sigma) const;

  SigmaSamplerOptions options_;
};

/// Euler's method on the probability-flow ODE dx/dsigma = (x - D(x)) / sigma (with optional churn).
///
/// Example:
/// \code
///   at::Tensor x = mdiff::EulerSampler(mdiff::SigmaSamplerOptions(30)).sample(denoiser, {8, 2}, 0);
/// \endcode
class EulerSampler : public SigmaSpaceSampler {
 public:
  explicit EulerSampler(SigmaSamplerOptions options = {}) : SigmaSpaceSampler(std::move(options)) {}
  std::string name() const override { return "euler"; }
  int64_t num_model_evaluations() const override { return options_.num_steps(); }

 protected:
  void advance(const Denoiser& denoiser, SamplerState& state, const SampleArgs& args) const override;
};

/// Euler-ancestral: an Euler step to sigma_down followed by fresh noise of size sigma_up.
///
/// Example:
/// \code
///   at::Tensor x = mdiff::EulerAncestralSampler(mdiff::SigmaSamplerOptions(30).eta(1.0)).sample(denoiser, {8, 2}, 0);
/// \endcode
class EulerAncestralSampler : public SigmaSpaceSampler {
 public:
  explicit EulerAncestralSampler(SigmaSamplerOptions options = {}) : SigmaSpaceSampler(std::move(options)) {}
  std::string name() const override { return "euler_ancestral"; }
  int64_t num_model_evaluations() const override { return options_.num_steps(); }

 protected:
  void advance(const Denoiser& denoiser, SamplerState& state, const SampleArgs& args) const override;
};

/// Heun's second-order method (EDM's Algorithm 2): an Euler step corrected with the slope at its end
/// (except on the last step to sigma = 0).
///
/// Example:
/// \code
///   at::Tensor x = mdiff::HeunSampler(mdiff::SigmaSamplerOptions(18)).sample(denoiser, {8, 2}, 0);
/// \endcode
class HeunSampler : public SigmaSpaceSampler {
 public:
  explicit HeunSampler(SigmaSamplerOptions options = {}) : SigmaSpaceSampler(std::move(options)) {}
  std::string name() const override { return "heun"; }
  int64_t num_model_evaluations() const override { return 2 * options_.num_steps() - 1; }

 protected:
  void advance(const Denoiser& denoiser, SamplerState& state, const SampleArgs& args) const override;
};

}  // namespace manifold_diffusion
