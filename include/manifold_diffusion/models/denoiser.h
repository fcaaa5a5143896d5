#pragma once

/// \file
/// The Denoiser adapter: the one place where the parameterisations of a diffusion model meet.

#include <manifold_diffusion/core/enum.h>
#include <manifold_diffusion/schedules/noise_schedule.h>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <functional>
#include <optional>
#include <string>
#include <utility>

namespace manifold_diffusion {

/// What the network predicts.
enum class PredictionType {
  Epsilon,      ///< the noise eps (Ho et al. 2020).
  Sample,       ///< the clean sample x0.
  VPrediction,  ///< v = alpha * eps - sigma * x0 (Salimans & Ho 2022).
  EDM,          ///< EDM's preconditioned network F (Karras et al. 2022): D = c_skip x + c_out F(c_in x, c_noise).
};

/// Per-sample weight of the training loss over noise levels.
enum class LossWeighting {
  Uniform,   ///< 1 (the "simple" loss of Ho et al.).
  MinSNR,    ///< min-SNR-gamma (Hang et al. 2023), expressed for the prediction type in use.
  P2,        ///< perception-prioritised 1 / (k + SNR)^gamma (Choi et al. 2022), on the eps loss.
  EDM,       ///< EDM's lambda(sigma); with the EDM parameterisation the F-space loss already carries it (weight 1).
};

/// How training draws noise levels.
enum class NoiseLevelSampling {
  UniformTimestep,  ///< t ~ U{0, ..., T-1}.
  LogNormalSigma,   ///< EDM: ln(sigma) ~ N(p_mean, p_std^2), mapped to a fractional timestep of the schedule.
};

template <>
struct EnumTraits<PredictionType> {
  static constexpr const char* type_name = "PredictionType";
  static constexpr EnumEntry<PredictionType> entries[] = {
      {PredictionType::Epsilon, "epsilon"}, {PredictionType::Epsilon, "eps"},
      {PredictionType::Sample, "sample"},   {PredictionType::Sample, "x0"},
      {PredictionType::VPrediction, "v_prediction"}, {PredictionType::VPrediction, "v"},
      {PredictionType::EDM, "edm"},
  };
};
template <>
struct EnumTraits<LossWeighting> {
  static constexpr const char* type_name = "LossWeighting";
  static constexpr EnumEntry<LossWeighting> entries[] = {
      {LossWeighting::Uniform, "uniform"}, {LossWeighting::MinSNR, "min_snr"},
      {LossWeighting::P2, "p2"},           {LossWeighting::EDM, "edm"},
  };
};
template <>
struct EnumTraits<NoiseLevelSampling> {
  static constexpr const char* type_name = "NoiseLevelSampling";
  static constexpr EnumEntry<NoiseLevelSampling> entries[] = {
      {NoiseLevelSampling::UniformTimestep, "uniform_timestep"},
      {NoiseLevelSampling::LogNormalSigma, "log_normal_sigma"},
  };
};

/// Options of a Denoiser.
///
/// Example:
/// \code
///   auto opts = mdiff::DenoiserOptions(mdiff::PredictionType::VPrediction)
///                   .weighting(mdiff::LossWeighting::MinSNR).min_snr_gamma(5.0);
/// \endcode
struct DenoiserOptions {
  /* implicit */ DenoiserOptions(PredictionType prediction = PredictionType::Epsilon) : prediction_(prediction) {}
  TORCH_ARG(PredictionType, prediction);
  /// EDM's sigma_data (standard deviation of the data).
  TORCH_ARG(double, sigma_data) = 0.5;
  /// The network also outputs variance interpolation values: its output has 2C channels along dim 1.
  TORCH_ARG(bool, learned_variance) = false;
  TORCH_ARG(LossWeighting, weighting) = LossWeighting::Uniform;
  TORCH_ARG(double, min_snr_gamma) = 5.0;
  TORCH_ARG(double, p2_k) = 1.0;
  TORCH_ARG(double, p2_gamma) = 1.0;
  TORCH_ARG(NoiseLevelSampling, noise_sampling) = NoiseLevelSampling::UniformTimestep;
  /// EDM log-normal noise-level distribution: mean and std of ln(sigma).
  TORCH_ARG(double, p_mean) = -1.2;
  TORCH_ARG(double, p_std) = 1.2;
  /// Weight of the variational-bound term in the hybrid loss (learned variance only; Nichol & Dhariwal use 0.001).
  TORCH_ARG(double, vlb_weight) = 0.001;

 public:

  std::string to_json() const;
  static DenoiserOptions from_json(const std::string& json);
};

/// What a denoiser says about x_t: the clean-sample estimate, the noise estimate and, for models
/// with learned variance, the raw variance interpolation values in [-1, 1] (else undefined).
struct DenoiserOutput {
  at::Tensor x0;
  at::Tensor eps;
  at::Tensor var_values;
};

/// A network's prediction at one noise level before its conversion to x0, for fused sampler steps
/// (`ops::sampler_step`): the clean-sample estimate is
///
///     x0 = c_x * x_t + c_out * (uncond + guidance_scale * (cond - uncond))
///
/// or c_x * x_t + c_out * cond when `uncond` is undefined (no guidance, or guidance already
/// combined because guidance_rescale > 0 needs the combined output's statistics).
///
/// Example:
/// \code
///   mdiff::RawPrediction raw = denoiser.predict_raw(x_t, 500.0, denoiser.schedule().alpha_bar_at(500.0));
///   at::Tensor x0 = mdiff::ops::predict_x0(x_t, raw.cond, raw.uncond,
///       mdiff::ops::SamplerStepCoefficients().w(raw.guidance_scale).c_x(raw.c_x).c_out(raw.c_out));
/// \endcode
struct RawPrediction {
  at::Tensor cond;             ///< the conditional (or only) network output, prediction channels only.
  at::Tensor uncond;           ///< the unconditional output when guidance is still to be combined, else undefined.
  double guidance_scale = 1;   ///< weight of (cond - uncond).
  double c_x = 0;              ///< weight of x_t in x0.
  double c_out = 1;            ///< weight of the (guided) network output in x0.
  at::Tensor var_values;       ///< learned-variance values of the conditional output, else undefined.
};

/// A network call: (x, t, cond) -> output. `x` is the network input, `t` the per-sample [N] float
/// tensor of (fractional) training timesteps, or EDM's c_noise for the EDM parameterisation;
/// `cond` is the conditioning (class labels, ...) or an undefined tensor.
using ModelFunction = std::function<at::Tensor(const at::Tensor& x, const at::Tensor& t, const at::Tensor& cond)>;

/// Wraps a network, a noise schedule and a prediction type, and owns every conversion between
/// eps, x0, v, score and EDM's preconditioning, plus the training target and loss.
///
/// The noise level of x_t is given by alpha_bar (x_t = sqrt(ab) x0 + sqrt(1 - ab) eps); a
/// (fractional) timestep t of the schedule names it as alpha_bar_at(t). A Denoiser is immutable
/// and may be shared by threads if its network's forward is (a module in eval mode is).
///
/// Example:
/// \code
///   mdiff::UNet net(mdiff::UNetOptions(1, 1));
///   mdiff::Denoiser den([net](const at::Tensor& x, const at::Tensor& t, const at::Tensor& c) mutable {
///                         return net->forward(x, t, c); },
///                       mdiff::NoiseSchedule::cosine(1000), mdiff::PredictionType::VPrediction);
///   mdiff::DenoiserOutput out = den.predict(x_t, 500.0);           // x0 and eps at timestep 500
///   at::Tensor loss = den.training_loss(x0, t, at::randn_like(x0)); // per-sample weighted MSE, averaged
/// \endcode
class Denoiser {
 public:
  Denoiser(ModelFunction model, NoiseSchedule schedule, DenoiserOptions options = {});

  const NoiseSchedule& schedule() const { return schedule_; }
  const DenoiserOptions& options() const { return options_; }

  /// Predictions at per-sample noise levels: `t_model` [N] (what the network receives as time) and
  /// `alpha_bar` [N] (what the conversions use). With guidance (`uncond` defined and
  /// `guidance_scale` != 1), the conditional and unconditional calls run as one batch and the
  /// network outputs are combined as uncond + scale * (cond - uncond), then rescaled toward the
  /// conditional output's standard deviation by `guidance_rescale` (Lin et al. 2023).
  DenoiserOutput predict_at(const at::Tensor& x_t, const at::Tensor& t_model, const at::Tensor& alpha_bar,
                            const at::Tensor& cond = {}, const at::Tensor& uncond = {}, double guidance_scale = 1.0,
                            double guidance_rescale = 0.0) const;
  /// The network's raw output for the whole batch at the (fractional) timestep `t` (mapped by
  /// model_time() as in predict_at) and noise level `alpha_bar`, with the coefficients that turn it
  /// into x0: the same network call, conditioning and guidance as predict_at() with constant t and
  /// alpha_bar, so ops::predict_x0 on the result equals predict_at(...).x0 up to rounding. Used by
  /// the samplers' fused steps (ops::sampler_step).
  RawPrediction predict_raw(const at::Tensor& x_t, double t, double alpha_bar, const at::Tensor& cond = {},
                            const at::Tensor& uncond = {}, double guidance_scale = 1.0,
                            double guidance_rescale = 0.0) const;
  /// Predictions at one (fractional) timestep of the schedule for the whole batch.
  DenoiserOutput predict(const at::Tensor& x_t, double t, const at::Tensor& cond = {}) const;
  /// Predictions at per-sample (fractional) timesteps [N].
  DenoiserOutput predict(const at::Tensor& x_t, const at::Tensor& t, const at::Tensor& cond = {}) const;

  /// Score of the noisy marginal, -eps / sqrt(1 - alpha_bar).
  static at::Tensor score(const DenoiserOutput& out, const at::Tensor& x_t, const at::Tensor& alpha_bar);
  /// v = sqrt(ab) eps - sqrt(1 - ab) x0.
  static at::Tensor velocity(const DenoiserOutput& out, const at::Tensor& alpha_bar);

  /// The network input time for per-sample timesteps t (c_noise for EDM).
  at::Tensor model_time(const at::Tensor& t, const at::Tensor& alpha_bar) const;
  /// The regression target of the network for (x0, noise) at noise level alpha_bar [N].
  at::Tensor target(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& alpha_bar) const;
  /// Per-sample loss weights [N] for the configured weighting at noise level alpha_bar [N].
  at::Tensor loss_weight(const at::Tensor& alpha_bar) const;
  /// Draws per-sample training timesteps [N] (float64; integers for UniformTimestep, fractional for
  /// LogNormalSigma) from `generator`.
  at::Tensor sample_timesteps(int64_t n, at::Generator generator) const;

  /// Result of training_loss_terms().
  struct LossTerms {
    at::Tensor loss;       ///< scalar: the weighted regression loss plus vlb_weight * vlb.
    at::Tensor mse;        ///< [N] unweighted per-sample mean squared error of the network output.
    at::Tensor vlb;        ///< [N] variational-bound term in bits per dimension (learned variance), else undefined.
    at::Tensor x_t;        ///< the noised input.
    at::Tensor output;     ///< the raw network output (prediction part).
    DenoiserOutput pred;   ///< x0_hat / eps_hat implied by the output.
    at::Tensor alpha_bar;  ///< [N] noise levels used.
  };
  /// Noises x0 at timesteps t [N] with `noise`, runs the network and returns every loss term.
  /// When `input_noise` is defined, x_t is formed with it instead while the target keeps `noise`
  /// (input perturbation, DDPM-IP: input_noise = noise + gamma * xi).
  LossTerms training_loss_terms(const at::Tensor& x0, const at::Tensor& t, const at::Tensor& noise,
                                const at::Tensor& cond = {}, const at::Tensor& input_noise = {}) const;
  /// training_loss_terms(...).loss.
  at::Tensor training_loss(const at::Tensor& x0, const at::Tensor& t, const at::Tensor& noise,
                           const at::Tensor& cond = {}) const;

  /// alpha_bar at per-sample (fractional) timesteps, as a float64 tensor on `device`.
  at::Tensor alpha_bar_at(const at::Tensor& t) const;

 private:
  DenoiserOutput convert(const at::Tensor& x_t, const at::Tensor& raw, const at::Tensor& alpha_bar) const;
  /// Validated network call(s) with guidance; `combine_guidance` false leaves a plain guided
  /// combination (no rescale) to the caller.
  RawPrediction network_outputs(const at::Tensor& x_t, const at::Tensor& t_model, const at::Tensor& alpha_bar,
                                const at::Tensor& cond, const at::Tensor& uncond, double guidance_scale,
                                double guidance_rescale, bool combine_guidance) const;
  at::Tensor call_model(const at::Tensor& x_in, const at::Tensor& t_model, const at::Tensor& cond) const;

  ModelFunction model_;
  NoiseSchedule schedule_;
  DenoiserOptions options_;
};

}  // namespace manifold_diffusion
