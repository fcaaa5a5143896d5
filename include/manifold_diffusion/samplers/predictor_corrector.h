#pragma once

/// \file
/// Score-SDE predictor-corrector sampling (Song et al. 2021): reverse-diffusion predictor and
/// Langevin corrector for the VP SDE.

#include <manifold_diffusion/samplers/sampler.h>

namespace manifold_diffusion {

/// Options of PCSampler.
///
/// Example:
/// \code
///   mdiff::PCSampler pc(mdiff::PCOptions(1000).snr(0.16).corrector_steps(1));
/// \endcode
struct PCOptions {
  /* implicit */ PCOptions(int64_t num_steps = 1000) : num_steps_(num_steps) {}
  TORCH_ARG(int64_t, num_steps);
  TORCH_ARG(TimestepSpacing, spacing) = TimestepSpacing::Trailing;
  TORCH_ARG(int64_t, steps_offset) = 0;
  TORCH_ARG(std::vector<int64_t>, timesteps) = {};
  /// Langevin corrector signal-to-noise ratio r: step = 2 alpha (r |z| / |score|)^2 with the norms of
  /// each sample's own noise and score (batch-invariant; the reference averages the norms over the
  /// batch). The rule assumes high-dimensional samples, whose norms concentrate; for data of a few
  /// dimensions use a small snr or corrector_steps(0).
  TORCH_ARG(double, snr) = 0.16;
  /// Langevin steps before each predictor step (0 = predictor only).
  TORCH_ARG(int64_t, corrector_steps) = 1;

 public:

  std::string to_json() const;
  static PCOptions from_json(const std::string& json);
};

/// Each step: `corrector_steps` Langevin updates at the current level, then the reverse-diffusion
/// predictor x_next = (2 - sqrt(1 - beta')) x + beta' score + sqrt(beta') z; the last step returns
/// x0_hat (noise removal).
///
/// Example:
/// \code
///   at::Tensor x = mdiff::PCSampler(mdiff::PCOptions(500)).sample(denoiser, {8, 2}, 0);
/// \endcode
class PCSampler : public Sampler {
 public:
  explicit PCSampler(PCOptions options = {});
  const PCOptions& options() const { return options_; }
  std::string name() const override { return "pc"; }
  std::string options_json() const override { return options_.to_json(); }
  int64_t num_model_evaluations() const override;

 protected:
  void init(const Denoiser& denoiser, SamplerState& state) const override;
  void advance(const Denoiser& denoiser, SamplerState& state, const SampleArgs& args) const override;

 private:
  PCOptions options_;
};

}  // namespace manifold_diffusion
