#pragma once

/// \file
/// Ancestral DDPM sampling (Ho et al. 2020; learned-range variance: Nichol & Dhariwal 2021).

#include <manifold_diffusion/samplers/sampler.h>

namespace manifold_diffusion {

/// Variance of the ancestral step from t to t_next (with beta' = 1 - alpha_bar_t / alpha_bar_next).
enum class DDPMVariance {
  FixedSmall,    ///< the posterior variance beta' (1 - alpha_bar_next) / (1 - alpha_bar_t).
  FixedLarge,    ///< beta'.
  LearnedRange,  ///< interpolated in log space between the two by the model's variance output (learned_variance).
};
template <>
struct EnumTraits<DDPMVariance> {
  static constexpr const char* type_name = "DDPMVariance";
  static constexpr EnumEntry<DDPMVariance> entries[] = {
      {DDPMVariance::FixedSmall, "fixed_small"},
      {DDPMVariance::FixedLarge, "fixed_large"},
      {DDPMVariance::LearnedRange, "learned_range"},
  };
};

/// Options of DDPMSampler.
///
/// Example:
/// \code
///   mdiff::DDPMSampler s(mdiff::DDPMOptions(1000).variance(mdiff::DDPMVariance::FixedLarge));
/// \endcode
struct DDPMOptions {
  /* implicit */ DDPMOptions(int64_t num_steps = 1000) : num_steps_(num_steps) {}
  TORCH_ARG(int64_t, num_steps);
  TORCH_ARG(TimestepSpacing, spacing) = TimestepSpacing::Trailing;
  TORCH_ARG(int64_t, steps_offset) = 0;
  /// Explicit timesteps (strictly decreasing); overrides num_steps and spacing when non-empty.
  TORCH_ARG(std::vector<int64_t>, timesteps) = {};
  TORCH_ARG(DDPMVariance, variance) = DDPMVariance::FixedSmall;

 public:

  std::string to_json() const;
  static DDPMOptions from_json(const std::string& json);
};

/// Ancestral sampling with the posterior q(x_{t_next} | x_t, x0_hat) on any decreasing subset of
/// the training timesteps (respaced betas when steps are skipped).
///
/// Example:
/// \code
///   mdiff::DDPMSampler ddpm(mdiff::DDPMOptions(250));
///   at::Tensor x = ddpm.sample(denoiser, {8, 1, 28, 28}, /*seed=*/1);
/// \endcode
class DDPMSampler : public Sampler {
 public:
  explicit DDPMSampler(DDPMOptions options = {});
  const DDPMOptions& options() const { return options_; }
  std::string name() const override { return "ddpm"; }
  std::string options_json() const override { return options_.to_json(); }
  int64_t num_model_evaluations() const override;

 protected:
  void init(const Denoiser& denoiser, SamplerState& state) const override;
  void advance(const Denoiser& denoiser, SamplerState& state, const SampleArgs& args) const override;

 private:
  DDPMOptions options_;
};

}  // namespace manifold_diffusion
