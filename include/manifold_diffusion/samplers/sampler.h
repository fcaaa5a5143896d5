#pragma once

/// \file
/// The sampler interface: stateless samplers, per-run state, hooks and callbacks.

#include <manifold_diffusion/models/denoiser.h>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace manifold_diffusion {

/// Everything a hook sees at one step. Noise levels are VP alpha_bar values; `alpha_bar_next` is
/// 1 at the final step (the clean sample). `x_t` is the current sample in the VP domain.
struct StepContext {
  int64_t step = 0;             ///< 0-based step index.
  int64_t num_steps = 0;        ///< total steps of the run.
  double t = 0;                 ///< (fractional) timestep of x_t.
  double t_next = -1;           ///< timestep of the proposal; -1 at the final step.
  double alpha_bar = 0;         ///< noise level of x_t.
  double alpha_bar_next = 1;    ///< noise level of the proposal.
  at::Tensor x_t;               ///< current sample (VP domain).
  /// Runs the denoiser (with the run's conditioning and guidance) on any x at this step's noise
  /// level with autograd enabled, for hooks that need the network at other inputs (MCG, DPS and DSG
  /// use the step's own graph instead: x_t_leaf / x0_graph below).
  std::function<DenoiserOutput(const at::Tensor& x)> denoise;
  /// The clean-sample estimate of the step's (last) network evaluation after the on_x0 hooks
  /// (detached); set before on_proposal runs.
  at::Tensor x0_hat;
  /// Mean and standard deviation of the proposal's Gaussian when the sampler knows them (DDPM with
  /// fixed variances, DDIM): proposal = proposal_mean + proposal_std * z. Undefined / -1 otherwise.
  at::Tensor proposal_mean;
  double proposal_std = -1;
  /// Set when a hook needs the denoiser's Jacobian (SamplingHook::needs_jacobian): `x_t_leaf` is x_t
  /// as a leaf that requires grad and `x0_graph` the on_x0-hooked x0_hat computed from it with the
  /// autograd graph kept, from the step's first network evaluation. A hook differentiates through
  /// them (torch::autograd::grad with retain_graph) without another network call.
  at::Tensor x_t_leaf;
  at::Tensor x0_graph;
};

/// A sampling-time correction. Every sampler calls the hooks at the same points of every step:
/// `on_x0` after x0_hat is formed (it may replace it; eps is re-derived from the result), and
/// `on_proposal` after the next sample is formed (it may replace it; VP domain). The default
/// implementations return their input unchanged. Hooks run with autograd enabled (the sampling
/// loop itself runs without), so a hook may differentiate through `ctx.denoise`.
///
/// Example:
/// \code
///   struct ClampHook : mdiff::SamplingHook {
///     at::Tensor on_x0(const mdiff::StepContext&, at::Tensor x0) override { return x0.clamp(-1, 1); }
///   };
///   mdiff::SampleArgs args;
///   args.hooks.push_back(std::make_shared<ClampHook>());
/// \endcode
class SamplingHook {
 public:
  virtual ~SamplingHook() = default;
  virtual at::Tensor on_x0(const StepContext& ctx, at::Tensor x0_hat) { return x0_hat; }
  virtual at::Tensor on_proposal(const StepContext& ctx, at::Tensor x_next) { return x_next; }
  /// True when on_proposal differentiates through the denoiser (ctx.x_t_leaf / ctx.x0_graph): the
  /// sampler then runs the step's first network evaluation with autograd on. False by default, so
  /// samplers pay for autograd only when a hook needs it.
  virtual bool needs_jacobian() const { return false; }
};

/// What a callback sees after each step.
struct StepInfo {
  int64_t step = 0;       ///< 0-based index of the step just taken.
  int64_t num_steps = 0;
  double t = 0;           ///< timestep the step started from.
  double t_next = -1;     ///< timestep reached (-1: the end).
  at::Tensor x;           ///< the sample after the step (VP domain).
  at::Tensor x0_hat;      ///< the clean-sample estimate used by the step.
};

/// Called after every step; returning true stops the run early (sample() then returns the current x).
using StepCallback = std::function<bool(const StepInfo&)>;

/// Per-run arguments of a sampler: conditioning, guidance, hooks and callbacks.
struct SampleArgs {
  at::Tensor cond;                ///< conditioning passed to the network (e.g. class labels [N]), or undefined.
  at::Tensor uncond;              ///< unconditional conditioning for classifier-free guidance, or undefined.
  double guidance_scale = 1.0;    ///< 1 = no guidance.
  double guidance_rescale = 0.0;  ///< guidance rescale phi in [0, 1] (Lin et al. 2023).
  std::vector<std::shared_ptr<SamplingHook>> hooks;
  std::vector<StepCallback> callbacks;
  /// sample() fails (naming the count and the first sample) when the result holds NaN or Inf,
  /// instead of returning it; false returns it as it is. Costs one reduction and one host sync per run.
  bool check_finite = true;
};

/// Per-run state of a sampler; created by Sampler::start(), advanced by Sampler::step().
struct SamplerState {
  at::Tensor x;                              ///< current sample in the sampler's working domain.
  int64_t step = 0;                          ///< steps taken.
  int64_t num_steps = 0;                     ///< steps of the run.
  std::vector<double> grid;                  ///< timesteps (VP samplers) or VE sigmas (sigma-space samplers).
  std::vector<at::Generator> generators;     ///< one per sample: all noise of sample i comes from generators[i].
  std::vector<at::Tensor> history;           ///< multistep memory (previous x0_hat, ...).
  std::vector<double> history_level;         ///< noise levels that go with `history`.
  at::Tensor x0_hat;                         ///< the last clean-sample estimate.
  at::Tensor last_x;                         ///< the sample before the last update (UniPC's corrector).
  bool stopped = false;                      ///< a callback asked to stop.
  bool done() const { return stopped || step >= num_steps; }
};

/// Base class of every sampler. A sampler holds only const options: `sample()` keeps its own
/// state, so one sampler object can serve several threads at once. Runs are deterministic given
/// the seed and batch-invariant: sample i draws all its noise from its own generator, seeded
/// with sample_seed(seed, first_index + i).
///
/// Every sampler starts from x_T ~ N(0, I) in the VP domain at its first noise level and returns
/// samples in the data domain.
///
/// Example:
/// \code
///   mdiff::DDIMSampler ddim(mdiff::DDIMOptions(50).eta(0.0));
///   at::Tensor x = ddim.sample(denoiser, {16, 1, 28, 28}, /*seed=*/0);
///   // hand-written loop:
///   auto gens = mdiff::make_sample_generators(0, 0, 16);
///   mdiff::SamplerState st = ddim.start(denoiser, mdiff::randn_per_sample({16, 1, 28, 28}, gens), gens);
///   while (!st.done()) ddim.step(denoiser, st);
///   at::Tensor out = ddim.result(st);
/// \endcode
class Sampler {
 public:
  virtual ~Sampler() = default;

  /// Short name, e.g. "ddim".
  virtual std::string name() const = 0;
  /// The sampler's options as JSON (round-trips through the options' from_json).
  virtual std::string options_json() const = 0;
  /// Network evaluations one run costs (with guidance, each evaluation is one doubled batch).
  virtual int64_t num_model_evaluations() const = 0;

  /// Draws x_T for samples first_index .. first_index + N - 1 of `seed` and runs the whole loop.
  at::Tensor sample(const Denoiser& denoiser, at::IntArrayRef shape, uint64_t seed, const SampleArgs& args = {},
                    int64_t first_index = 0, at::TensorOptions options = at::TensorOptions()) const;
  /// Runs the whole loop from a given x_T (standard normal, VP domain) with per-sample generators.
  at::Tensor sample(const Denoiser& denoiser, const at::Tensor& x_T, std::vector<at::Generator> generators,
                    const SampleArgs& args = {}) const;

  /// Starts a run (for hand-written loops).
  SamplerState start(const Denoiser& denoiser, const at::Tensor& x_T, std::vector<at::Generator> generators) const;
  /// Takes one step; runs hooks and callbacks.
  void step(const Denoiser& denoiser, SamplerState& state, const SampleArgs& args = {}) const;
  /// The sample of a run (data domain once the run is done; the current VP-domain x otherwise).
  at::Tensor result(const SamplerState& state) const;

 protected:
  /// Fills state.grid and state.num_steps and puts state.x into the working domain.
  virtual void init(const Denoiser& denoiser, SamplerState& state) const = 0;
  /// Advances state by one step, calling eval() for network evaluations and finish() for the result.
  virtual void advance(const Denoiser& denoiser, SamplerState& state, const SampleArgs& args) const = 0;
  /// The current sample of `state` in the VP domain.
  virtual at::Tensor to_vp(const SamplerState& state) const;

  /// One denoiser evaluation at timestep `t` (fractional) and noise level `alpha_bar` on VP-domain x,
  /// with guidance from args and the on_x0 hooks applied (ctx describes the step).
  DenoiserOutput eval(const Denoiser& denoiser, const at::Tensor& x_vp, double t, double alpha_bar,
                      const SampleArgs& args, StepContext& ctx) const;
  /// Runs the on_proposal hooks on a VP-domain proposal.
  at::Tensor propose(const SampleArgs& args, const StepContext& ctx, at::Tensor x_next_vp) const;
  /// Fresh per-sample standard normal noise shaped like state.x.
  static at::Tensor noise_like(SamplerState& state);
  /// The StepContext::denoise function for noise level (t, alpha_bar).
  std::function<DenoiserOutput(const at::Tensor&)> denoise_fn(const Denoiser& denoiser, const SampleArgs& args,
                                                              double t, double alpha_bar) const;
  /// A StepContext for the current step.
  StepContext context(const Denoiser& denoiser, const SamplerState& state, const SampleArgs& args, double t,
                      double t_next, double alpha_bar, double alpha_bar_next) const;
};

/// The inference timesteps a sampler walks: `custom` when given (validated), else `num_steps`
/// timesteps of `schedule` with `spacing` and `steps_offset`.
std::vector<int64_t> inference_timesteps(const NoiseSchedule& schedule, int64_t num_steps, TimestepSpacing spacing,
                                         int64_t steps_offset, const std::vector<int64_t>& custom);

/// Ready-made callbacks.
namespace callbacks {
/// Prints "step k/n" with steps per second to stderr every `every` steps.
StepCallback progress(int64_t every = 1);
/// Appends a copy of x (and x0_hat) after every step to the given vectors.
StepCallback record_trajectory(std::shared_ptr<std::vector<at::Tensor>> xs,
                               std::shared_ptr<std::vector<at::Tensor>> x0s = nullptr);
/// Stops the run after `steps` steps.
StepCallback stop_after(int64_t steps);
}  // namespace callbacks

}  // namespace manifold_diffusion
