#pragma once
/// \file
/// Sampling-time constraints: corrections that run on the sampler's hook points (on_x0 and
/// on_proposal, see samplers/sampler.h) and so work with every sampler. Range constraints (static
/// clip, dynamic thresholding), manifold constraints (local-PCA projection or normal pull, autoencoder
/// projection), measurement consistency for inverse problems (projection, MCG, DPS, MPGD, DSG) and
/// the RePaint resampling loop. Residual norms are per sample, never per batch.
///
/// A constraint object keeps the diagnostics of its last step (residual norms), so use one
/// object per sampling run (or per thread).

#include <manifold_diffusion/constraints/measurement.h>
#include <manifold_diffusion/manifold/manifold.h>
#include <manifold_diffusion/samplers/sampler.h>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace manifold_diffusion {

class ConstraintSpec;

/// Steps at which a constraint acts, as fractions of the run: it is active at step k of N when
/// start <= k / N < end. Default: every step.
struct StepWindow {
  double start = 0.0;
  double end = 1.0;
  bool contains(int64_t step, int64_t num_steps) const;
};

/// Base of the sampling-time constraints: a SamplingHook with a name, diagnostics and a cost.
///
/// Example:
/// \code
///   auto dps = std::make_shared<mdiff::DPSConstraint>(mdiff::Measurement{op, y}, mdiff::DPSOptions().scale(0.5));
///   mdiff::SampleArgs args;
///   args.hooks.push_back(dps);                       // the sampler turns autograd on for it
///   at::Tensor x = mdiff::DDPMSampler(100).sample(denoiser, {8, 1, 28, 28}, 0, args);
///   at::Tensor r = dps->residual();                  // [8] |y - A x0_hat| at the last step
/// \endcode
class SamplingConstraint : public SamplingHook {
 public:
  /// Short name, e.g. "dps".
  virtual std::string name() const = 0;
  /// Backward passes through the denoiser per step (1 for MCG, DPS, DSG; 0 otherwise).
  virtual int64_t backward_passes_per_step() const { return needs_jacobian() ? 1 : 0; }
  /// Per-sample residual norms [N] of the last step where the constraint measured one (undefined
  /// before). Measurement constraints: |y - A x0_hat|; manifold constraints: distance moved.
  /// A constraint may serve several concurrent runs (sample() on several threads): it is then the
  /// residual of whichever run recorded last, so give each run its own constraint to read its own.
  at::Tensor residual() const {
    std::lock_guard<std::mutex> lock(residual_mutex_);
    return residual_;
  }
  /// Scalars for logs (mean residual).
  virtual std::map<std::string, double> scalars() const;

 protected:
  /// Records the residual of a step (thread-safe).
  void set_residual(at::Tensor r) {
    std::lock_guard<std::mutex> lock(residual_mutex_);
    residual_ = std::move(r);
  }

 private:
  mutable std::mutex residual_mutex_;
  at::Tensor residual_;
};

// ------------------------------------------------------------------------------------------------
// Range constraints (on x0_hat)

/// x0_hat <- clamp(x0_hat, min, max) (DDPM's clip_denoised, diffusers' clip_sample).
///
/// Example:
/// \code
///   args.hooks.push_back(std::make_shared<mdiff::StaticClip>(-1.0, 1.0));
/// \endcode
class StaticClip : public SamplingConstraint {
 public:
  explicit StaticClip(double min = -1.0, double max = 1.0);
  std::string name() const override { return "clip"; }
  at::Tensor on_x0(const StepContext& ctx, at::Tensor x0) override;

 private:
  double min_, max_;
};

/// Imagen's dynamic thresholding: s = clamp(quantile(|x0_hat|, p), 1, max_value) per sample,
/// x0_hat <- clamp(x0_hat, -s, s) / s. With max_value = 1 it is the static clip.
struct DynamicThresholdOptions {
  TORCH_ARG(double, percentile) = 0.995;
  TORCH_ARG(double, max_value) = 1.5;
};

/// Example:
/// \code
///   args.hooks.push_back(std::make_shared<mdiff::DynamicThreshold>(mdiff::DynamicThresholdOptions().max_value(2.0)));
/// \endcode
class DynamicThreshold : public SamplingConstraint {
 public:
  explicit DynamicThreshold(DynamicThresholdOptions options = {});
  std::string name() const override { return "dynamic_threshold"; }
  at::Tensor on_x0(const StepContext& ctx, at::Tensor x0) override;

 private:
  DynamicThresholdOptions options_;
};

// ------------------------------------------------------------------------------------------------
// Manifold constraints (on x0_hat)

/// How ManifoldConstraint moves x0_hat.
enum class ManifoldMode {
  Project,  ///< x0 <- x0 + strength (P(x0) - x0), P the projection onto the local tangent plane.
  Pull,     ///< ManifoldGD's normal pull: x0 <- x0 + step tanh(d / h) v / |v|, v = -(I - U U^T)(x0 - mu).
};
template <>
struct EnumTraits<ManifoldMode> {
  static constexpr const char* type_name = "ManifoldMode";
  static constexpr EnumEntry<ManifoldMode> entries[] = {{ManifoldMode::Project, "project"}, {ManifoldMode::Pull, "pull"}};
};

struct ManifoldConstraintOptions {
  TORCH_ARG(ManifoldMode, mode) = ManifoldMode::Project;
  /// Project: fraction of the way to the local plane (1 = onto it).
  TORCH_ARG(double, strength) = 1.0;
  /// Pull: step length s and distance scale h (ManifoldGD: 0.1, 0.2).
  TORCH_ARG(double, step) = 0.1;
  TORCH_ARG(double, h) = 0.2;
  /// Steps where it acts.
  TORCH_ARG(StepWindow, window) = StepWindow{};
};

/// Moves x0_hat toward a manifold (analytic, or a ReferenceManifold estimated from data with
/// local PCA) at every active step.
///
/// Example:
/// \code
///   auto m = std::make_shared<mdiff::ManifoldConstraint>(manifold, mdiff::ManifoldConstraintOptions().strength(0.5));
///   args.hooks.push_back(m);
/// \endcode
class ManifoldConstraint : public SamplingConstraint {
 public:
  ManifoldConstraint(std::shared_ptr<const Manifold> manifold, ManifoldConstraintOptions options = {});
  std::string name() const override { return "manifold"; }
  at::Tensor on_x0(const StepContext& ctx, at::Tensor x0) override;

 private:
  std::shared_ptr<const Manifold> manifold_;
  ManifoldConstraintOptions options_;
};

/// An encoder/decoder pair (a learned manifold): project(x) = decode(encode(x)).
struct AutoencoderFunctions {
  std::function<at::Tensor(const at::Tensor&)> encode;
  std::function<at::Tensor(const at::Tensor&)> decode;
};

/// x0_hat <- x0_hat + strength (D(E(x0_hat)) - x0_hat) at active steps.
///
/// Example:
/// \code
///   mdiff::AutoencoderFunctions f{[ae](const at::Tensor& x) { return ae->encode(x); },
///                                 [ae](const at::Tensor& z) { return ae->decode(z); }};
///   args.hooks.push_back(std::make_shared<mdiff::AutoencoderProjection>(f, 0.5));
/// \endcode
class AutoencoderProjection : public SamplingConstraint {
 public:
  AutoencoderProjection(AutoencoderFunctions ae, double strength = 1.0, StepWindow window = {});
  std::string name() const override { return "ae_projection"; }
  at::Tensor on_x0(const StepContext& ctx, at::Tensor x0) override;

 private:
  AutoencoderFunctions ae_;
  double strength_;
  StepWindow window_;
};

// ------------------------------------------------------------------------------------------------
// Measurement constraints (inverse problems y = A x0 + noise)

/// What every measurement constraint holds: the operator, the measurements y [N, ...] (one per
/// sample of the batch being drawn), the noise model, and a seed for the noise it draws itself.
struct Measurement {
  std::shared_ptr<const MeasurementOperator> op;
  at::Tensor y;
  MeasurementNoise noise{};
  uint64_t seed = 0;
};

/// Projection onto the noisy measurement set after every step: x_next <- P_{A x = y_t}(x_next),
/// y_t = sqrt(ab_next) y + sqrt(1 - ab_next) A z (the measurement noised to the proposal's level;
/// y itself at the end). For masks this is "replacement" (Song et al. 2021, RePaint with r = 1).
///
/// Example:
/// \code
///   args.hooks.push_back(std::make_shared<mdiff::MeasurementProjection>(mdiff::Measurement{op, y}));
/// \endcode
class MeasurementProjection : public SamplingConstraint {
 public:
  explicit MeasurementProjection(Measurement m);
  std::string name() const override { return "projection"; }
  at::Tensor on_proposal(const StepContext& ctx, at::Tensor x_next) override;
  /// The measurement at noise level alpha_bar for the current batch (deterministic per sample and step).
  at::Tensor noised_measurement(double alpha_bar, int64_t step, const at::Tensor& like) const;

 protected:
  Measurement m_;
  bool record_residual_ = true;  ///< false in MCG, which records its own.
};

/// MCG options: the gradient step alpha on |y - A x0_hat(x_t)| (per-sample norm, not squared).
struct MCGOptions {
  TORCH_ARG(double, alpha) = 1.0;
};

/// Manifold Constrained Gradient (Chung et al., NeurIPS 2022): before the projection, a gradient
/// step on the measurement residual of x0_hat(x_t), differentiated through the denoiser and
/// restricted to the null space of A (the unmeasured part); then MeasurementProjection.
///
/// Example:
/// \code
///   args.hooks.push_back(std::make_shared<mdiff::MCGConstraint>(mdiff::Measurement{op, y}));
/// \endcode
class MCGConstraint : public MeasurementProjection {
 public:
  MCGConstraint(Measurement m, MCGOptions options = {});
  std::string name() const override { return "mcg"; }
  bool needs_jacobian() const override { return true; }
  at::Tensor on_proposal(const StepContext& ctx, at::Tensor x_next) override;

 private:
  MCGOptions options_;
};

/// DPS options: x_next <- x_next - scale grad_{x_t} |y - A x0_hat(x_t)| (per-sample norm; the code
/// form of zeta_t = scale / (2 |residual|) on the squared norm).
struct DPSOptions {
  TORCH_ARG(double, scale) = 0.5;
};

/// Diffusion Posterior Sampling (Chung et al., ICLR 2023); Gaussian or Poisson (weighted norm) noise.
///
/// Example:
/// \code
///   auto dps = std::make_shared<mdiff::DPSConstraint>(mdiff::Measurement{op, y, noise}, mdiff::DPSOptions().scale(0.5));
/// \endcode
class DPSConstraint : public SamplingConstraint {
 public:
  DPSConstraint(Measurement m, DPSOptions options = {});
  std::string name() const override { return "dps"; }
  bool needs_jacobian() const override { return true; }
  at::Tensor on_proposal(const StepContext& ctx, at::Tensor x_next) override;

 private:
  Measurement m_;
  DPSOptions options_;
};

/// MPGD variants.
enum class MPGDVariant {
  Plain,        ///< gradient step on x0_hat (no Jacobian of the denoiser).
  Autoencoder,  ///< inside the window, the gradient goes through D(E(x0)) ("MPGD-AE").
  Latent,       ///< inside the window, the step is taken in the latent z = E(x0), residual added back ("MPGD-Z").
};
template <>
struct EnumTraits<MPGDVariant> {
  static constexpr const char* type_name = "MPGDVariant";
  static constexpr EnumEntry<MPGDVariant> entries[] = {
      {MPGDVariant::Plain, "plain"}, {MPGDVariant::Autoencoder, "ae"}, {MPGDVariant::Latent, "z"}};
};

struct MPGDOptions {
  /// c: x0 <- x0 - c grad_{x0} |y - A x0| / sqrt(ab_next).
  TORCH_ARG(double, scale) = 7.5;
  TORCH_ARG(MPGDVariant, variant) = MPGDVariant::Plain;
  /// Step-size factors of the AE and latent variants relative to scale (reference: 0.0075, 0.01).
  TORCH_ARG(double, ae_factor) = 0.0075;
  TORCH_ARG(double, latent_factor) = 0.01;
  /// Where the AE / latent variants act (fraction of the run; the reference's 0.3 < t/N < 0.5
  /// counts t down, i.e. steps 0.5 N .. 0.7 N).
  TORCH_ARG(StepWindow, window) = (StepWindow{0.5, 0.7});
};

/// Manifold Preserving Guided Diffusion (He et al., ICLR 2024): the measurement gradient is taken
/// with respect to x0_hat (no backward pass through the denoiser), and the guided x0 re-enters the
/// step with the step's own eps: x_next += sqrt(ab_next) (x0_guided - x0_hat) (exactly DDIM with the
/// guided x0 and the kept eps; pair it with DDIM, eta 0.5 in the reference).
///
/// Example:
/// \code
///   auto mpgd = std::make_shared<mdiff::MPGDConstraint>(mdiff::Measurement{op, y}, mdiff::MPGDOptions().scale(7.5));
///   mdiff::DDIMSampler ddim(mdiff::DDIMOptions(50).eta(0.5));
/// \endcode
class MPGDConstraint : public SamplingConstraint {
 public:
  MPGDConstraint(Measurement m, MPGDOptions options = {}, AutoencoderFunctions ae = {});
  std::string name() const override { return "mpgd"; }
  at::Tensor on_proposal(const StepContext& ctx, at::Tensor x_next) override;

 private:
  Measurement m_;
  MPGDOptions options_;
  AutoencoderFunctions ae_;
};

struct DSGOptions {
  /// Guidance rate w in [0, 1]: 0 = plain step, 1 = steepest descent on the sphere.
  TORCH_ARG(double, rate) = 0.2;
  /// Guide every `interval` steps.
  TORCH_ARG(int64_t, interval) = 1;
};

/// Guidance with a spherical Gaussian constraint (Yang et al., ICML 2024): the guided proposal stays
/// on the sphere of radius sqrt(n) sigma around the step's mean, pointing between the sampled noise
/// direction and steepest descent of |y - A x0_hat(x_t)|. Needs a sampler that reports its
/// proposal's mean and standard deviation (DDPM with fixed variance, DDIM with eta > 0). The graph
/// is kept at every step; with interval > 1 the backward pass runs on every interval-th step only.
///
/// Example:
/// \code
///   auto dsg = std::make_shared<mdiff::DSGConstraint>(mdiff::Measurement{op, y}, mdiff::DSGOptions().rate(0.2));
///   mdiff::DDIMSampler ddim(mdiff::DDIMOptions(50).eta(1.0));
/// \endcode
class DSGConstraint : public SamplingConstraint {
 public:
  DSGConstraint(Measurement m, DSGOptions options = {});
  std::string name() const override { return "dsg"; }
  bool needs_jacobian() const override { return true; }
  at::Tensor on_proposal(const StepContext& ctx, at::Tensor x_next) override;

 private:
  Measurement m_;
  DSGOptions options_;
};

// ------------------------------------------------------------------------------------------------
// RePaint

struct RePaintOptions {
  /// Respaced reverse steps T over the schedule.
  TORCH_ARG(int64_t, steps) = 100;
  /// Jump length j and resample count r (r = 1: plain replacement, no jumps).
  TORCH_ARG(int64_t, jump_length) = 5;
  TORCH_ARG(int64_t, resample) = 5;
};

/// The RePaint time sequence: respaced step indices from `steps` down to -1 (the clean sample),
/// going back up `jump_length` steps (r - 1) times at every multiple of j below steps - j.
std::vector<int64_t> repaint_schedule(const RePaintOptions& options);

/// RePaint (Lugmayr et al., CVPR 2022): ancestral DDPM steps with the known part injected at each
/// level, and forward "undo" jumps that let the fill harmonise with it. Returns the samples [N, ...]
/// (data domain); `nfe` receives the network evaluations per sample. The on_x0 hooks of `hooks`
/// (e.g. StaticClip) run at every network evaluation; their on_proposal is not called (RePaint's own
/// replacement takes that place). Deterministic given `seed` and the batch.
///
/// Example:
/// \code
///   int64_t nfe = 0;
///   at::Tensor x = mdiff::repaint(denoiser, mdiff::Measurement{op, y}, mdiff::RePaintOptions(), 0, {clip}, &nfe);
/// \endcode
at::Tensor repaint(const Denoiser& denoiser, const Measurement& m, const RePaintOptions& options, uint64_t seed,
                   const std::vector<std::shared_ptr<SamplingHook>>& hooks = {}, int64_t* nfe = nullptr,
                   const at::Tensor& cond = {});

// ------------------------------------------------------------------------------------------------
// Factory

/// What make_sampling_constraint() may need besides the specification.
struct SamplingConstraintContext {
  std::shared_ptr<const Manifold> manifold;       ///< for "manifold".
  AutoencoderFunctions autoencoder;               ///< for "ae_projection" and mpgd variants ae / z.
  std::shared_ptr<const MeasurementOperator> op;  ///< for the measurement constraints.
  at::Tensor y;                                   ///< measurements for the batch being drawn.
  MeasurementNoise noise{};
  uint64_t seed = 0;
};

/// Builds a constraint from `NAME[:key=value,...]`: clip[:min,max], dynamic_threshold[:p,max],
/// manifold[:mode=project|pull,strength,step,h,start,end], ae_projection[:strength,start,end],
/// projection, mcg[:alpha], dps[:scale], mpgd[:scale,variant=plain|ae|z,ae_factor,latent_factor,start,end],
/// dsg[:rate,interval].
/// Unknown names or options, and missing context (no manifold, no measurement), are errors that
/// say what is missing.
std::shared_ptr<SamplingConstraint> make_sampling_constraint(const std::string& spec,
                                                             const SamplingConstraintContext& context);
/// The names make_sampling_constraint() knows.
std::vector<std::string> sampling_constraint_names();

}  // namespace manifold_diffusion
