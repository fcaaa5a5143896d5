#pragma once

/// \file
/// UniPC (Zhao et al. 2023): unified predictor-corrector multistep sampler, B(h) = bh2.

#include <manifold_diffusion/samplers/sampler.h>

namespace manifold_diffusion {

/// Options of UniPCSampler.
///
/// Example:
/// \code
///   mdiff::UniPCSampler s(mdiff::UniPCOptions(10).order(2));
/// \endcode
struct UniPCOptions {
  /* implicit */ UniPCOptions(int64_t num_steps = 20) : num_steps_(num_steps) {}
  TORCH_ARG(int64_t, num_steps);
  TORCH_ARG(TimestepSpacing, spacing) = TimestepSpacing::Trailing;
  TORCH_ARG(int64_t, steps_offset) = 0;
  TORCH_ARG(std::vector<int64_t>, timesteps) = {};
  /// Solver order, 1 to 3 (the predictor's order; the corrector adds one).
  TORCH_ARG(int64_t, order) = 2;
  /// Apply the UniC corrector (free: it reuses the next step's network evaluation).
  TORCH_ARG(bool, use_corrector) = true;
  /// Drop to lower orders near the end (recommended below 15 steps).
  TORCH_ARG(bool, lower_order_final) = true;

 public:

  std::string to_json() const;
  static UniPCOptions from_json(const std::string& json);
};

/// UniPC with data prediction and B(h) = e^{-h} - 1 ("bh2"): a UniP predictor of the chosen order
/// and a UniC corrector that refines each new sample with the network evaluation the next step
/// makes anyway, so the corrector costs no extra evaluations.
///
/// Example:
/// \code
///   at::Tensor x = mdiff::UniPCSampler(mdiff::UniPCOptions(10)).sample(denoiser, {8, 2}, 0);
/// \endcode
class UniPCSampler : public Sampler {
 public:
  explicit UniPCSampler(UniPCOptions options = {});
  const UniPCOptions& options() const { return options_; }
  std::string name() const override { return "unipc"; }
  std::string options_json() const override { return options_.to_json(); }
  int64_t num_model_evaluations() const override;

 protected:
  void init(const Denoiser& denoiser, SamplerState& state) const override;
  void advance(const Denoiser& denoiser, SamplerState& state, const SampleArgs& args) const override;

 private:
  UniPCOptions options_;
};

}  // namespace manifold_diffusion
