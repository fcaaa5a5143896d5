#pragma once

/// \file
/// DDIM sampling and inversion (Song, Meng & Ermon 2021).

#include <manifold_diffusion/samplers/sampler.h>

namespace manifold_diffusion {

/// Options of DDIMSampler.
///
/// Example:
/// \code
///   mdiff::DDIMSampler s(mdiff::DDIMOptions(50).eta(0.0).spacing(mdiff::TimestepSpacing::Trailing));
/// \endcode
struct DDIMOptions {
  /* implicit */ DDIMOptions(int64_t num_steps = 50) : num_steps_(num_steps) {}
  TORCH_ARG(int64_t, num_steps);
  TORCH_ARG(TimestepSpacing, spacing) = TimestepSpacing::Trailing;
  TORCH_ARG(int64_t, steps_offset) = 0;
  TORCH_ARG(std::vector<int64_t>, timesteps) = {};
  /// 0: deterministic DDIM; 1: the DDPM posterior variance.
  TORCH_ARG(double, eta) = 0.0;

 public:

  std::string to_json() const;
  static DDIMOptions from_json(const std::string& json);
};

/// x_next = sqrt(ab_next) x0_hat + sqrt(1 - ab_next - s^2) eps_hat + s z with
/// s = eta sqrt((1 - ab_next) / (1 - ab_t)) sqrt(1 - ab_t / ab_next).
///
/// Example:
/// \code
///   mdiff::DDIMSampler ddim(mdiff::DDIMOptions(50));
///   at::Tensor x = ddim.sample(denoiser, {8, 2}, /*seed=*/0);
///   at::Tensor z = ddim.invert(denoiser, x);   // back to noise along the same timesteps
/// \endcode
class DDIMSampler : public Sampler {
 public:
  explicit DDIMSampler(DDIMOptions options = {});
  const DDIMOptions& options() const { return options_; }
  std::string name() const override { return "ddim"; }
  std::string options_json() const override { return options_.to_json(); }
  int64_t num_model_evaluations() const override;

  /// Deterministic DDIM inversion: walks the timesteps upward from data x0 and returns the latent at
  /// the first timestep of the sampling run (eta is ignored). Hooks are not called.
  at::Tensor invert(const Denoiser& denoiser, const at::Tensor& x0, const SampleArgs& args = {}) const;

 protected:
  void init(const Denoiser& denoiser, SamplerState& state) const override;
  void advance(const Denoiser& denoiser, SamplerState& state, const SampleArgs& args) const override;

 private:
  DDIMOptions options_;
};

}  // namespace manifold_diffusion
