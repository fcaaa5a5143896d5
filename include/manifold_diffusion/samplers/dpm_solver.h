#pragma once

/// \file
/// DPM-Solver++ (Lu et al. 2022): second-order multistep, deterministic (2M) and SDE (2M-SDE).

#include <manifold_diffusion/samplers/sampler.h>

namespace manifold_diffusion {

enum class DPMSolverVariant {
  Multistep2M,  ///< DPM-Solver++(2M), deterministic.
  SDE2M,        ///< DPM-Solver++(2M) SDE variant: stochastic, injects fresh noise each step.
};
template <>
struct EnumTraits<DPMSolverVariant> {
  static constexpr const char* type_name = "DPMSolverVariant";
  static constexpr EnumEntry<DPMSolverVariant> entries[] = {
      {DPMSolverVariant::Multistep2M, "2m"},
      {DPMSolverVariant::SDE2M, "2m_sde"},
  };
};

/// Options of DPMSolverSampler.
///
/// Example:
/// \code
///   mdiff::DPMSolverSampler s(mdiff::DPMSolverOptions(20).variant(mdiff::DPMSolverVariant::SDE2M));
/// \endcode
struct DPMSolverOptions {
  /* implicit */ DPMSolverOptions(int64_t num_steps = 20) : num_steps_(num_steps) {}
  TORCH_ARG(int64_t, num_steps);
  TORCH_ARG(TimestepSpacing, spacing) = TimestepSpacing::Trailing;
  TORCH_ARG(int64_t, steps_offset) = 0;
  TORCH_ARG(std::vector<int64_t>, timesteps) = {};
  TORCH_ARG(DPMSolverVariant, variant) = DPMSolverVariant::Multistep2M;

 public:

  std::string to_json() const;
  static DPMSolverOptions from_json(const std::string& json);
};

/// DPM-Solver++ in its data-prediction form, in lambda = log(alpha / sigma), with the midpoint
/// second-order correction from the previous step's x0_hat; the first step is first order and the
/// last step (to the clean sample) returns x0_hat.
///
/// Example:
/// \code
///   at::Tensor x = mdiff::DPMSolverSampler(mdiff::DPMSolverOptions(20)).sample(denoiser, {8, 2}, 0);
/// \endcode
class DPMSolverSampler : public Sampler {
 public:
  explicit DPMSolverSampler(DPMSolverOptions options = {});
  const DPMSolverOptions& options() const { return options_; }
  std::string name() const override {
    return options_.variant() == DPMSolverVariant::SDE2M ? "dpmpp_2m_sde" : "dpmpp_2m";
  }
  std::string options_json() const override { return options_.to_json(); }
  int64_t num_model_evaluations() const override;

 protected:
  void init(const Denoiser& denoiser, SamplerState& state) const override;
  void advance(const Denoiser& denoiser, SamplerState& state, const SampleArgs& args) const override;

 private:
  DPMSolverOptions options_;
};

}  // namespace manifold_diffusion
