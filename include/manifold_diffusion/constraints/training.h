#pragma once
/// \file
/// Training-time data-manifold constraints: loss terms (and one forward-noising hook) that the
/// Trainer adds to the denoising objective. Each has a weight schedule over noise levels
/// (TimeWeight), logs its own scalars, reports its extra network evaluations, and checkpoints its
/// state when it has any. The programs build them from `NAME[:key=value,...]` specifications with
/// make_training_constraint(). Algorithms and defaults: docs/constraints-training.md.
///
/// Example:
/// \code
///   mdiff::TrainingConstraintContext ctx;
///   ctx.manifold = my_manifold;                          // for "tangent"
///   ctx.sample_shape = {2};
///   for (const char* s : {"ip:gamma=0.1", "iso:lambda=0.1", "tangent:weight=1"}) {
///     trainer.add_loss_term(mdiff::make_training_constraint(mdiff::ConstraintSpec::parse(s), ctx));
///   }
/// \endcode

#include <manifold_diffusion/constraints/spec.h>
#include <manifold_diffusion/manifold/manifold.h>
#include <manifold_diffusion/models/autoencoder.h>
#include <manifold_diffusion/training/loss_term.h>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace manifold_diffusion {

/// A per-sample weight over noise levels: w = 0 outside snr_min <= SNR <= snr_max, else 1, or
/// alpha_bar = SNR / (1 + SNR) when snr_weighted (in [0, 1], larger at high SNR, i.e. small t).
/// SNR = alpha_bar / (1 - alpha_bar).
///
/// Example:
/// \code
///   auto w = mdiff::TimeWeight().snr_min(1.0).snr_weighted(true);   // only t with alpha_bar >= 0.5
///   at::Tensor weights = w(alpha_bar);                              // [N]
/// \endcode
struct TimeWeight {
  TORCH_ARG(double, snr_min) = 0.0;
  TORCH_ARG(double, snr_max) = std::numeric_limits<double>::infinity();
  TORCH_ARG(bool, snr_weighted) = false;

 public:
  /// Weights [N] (float32, alpha_bar's device) for noise levels alpha_bar [N].
  at::Tensor operator()(const at::Tensor& alpha_bar) const;
  /// Fails naming the bad value; `who` prefixes the message.
  void validate(const std::string& who) const;
  /// Reads snr_min, snr_max, snr_weighted from `spec`, with this object's values as defaults.
  TimeWeight read(const ConstraintSpec& spec) const;
  std::string describe() const;
};

/// A training-time constraint: a LossTerm with a name, the spec it was made from, and a weight
/// schedule over noise levels. Its loss() already includes its weight (add it with weight 1).
///
/// Example:
/// \code
///   std::shared_ptr<mdiff::TrainingConstraint> c = std::make_shared<mdiff::IsotropyRegulariser>(0.1);
///   trainer.add_loss_term(c);   // logs loss_iso and iso_eps_sq_mean
/// \endcode
class TrainingConstraint : public LossTerm {
 public:
  explicit TrainingConstraint(TimeWeight time_weight = {}) : time_weight_(time_weight) {}
  const TimeWeight& time_weight() const { return time_weight_; }
  /// One line: the constraint and its settings (for logs and metrics.json).
  virtual std::string describe() const = 0;
  std::map<std::string, double> scalars() const override { return scalars_; }

 protected:
  TimeWeight time_weight_;
  std::map<std::string, double> scalars_;
};

/// DDPM-IP input perturbation (Ning et al. 2023): x_t = sqrt(ab) x0 + sqrt(1 - ab) (eps + gamma xi)
/// with xi ~ N(0, I) from the Trainer's generator; the target is built from the unperturbed eps
/// (for every prediction type). loss() is 0. Logs the std of the perturbed noise.
///
/// Example:
/// \code
///   trainer.add_loss_term(std::make_shared<mdiff::InputPerturbation>(0.1));
/// \endcode
class InputPerturbation : public TrainingConstraint {
 public:
  explicit InputPerturbation(double gamma = 0.1);
  std::string name() const override { return "ip"; }
  std::string describe() const override;
  at::Tensor input_noise(const at::Tensor& noise, at::Generator& generator) override;
  at::Tensor loss(const LossContext& context) override;
  double gamma() const { return gamma_; }

 private:
  double gamma_;
};

/// Iso-Diffusion (Fernando et al. 2024): lambda * (mean(eps_hat^2) - 1)^2, the mean over the
/// batch and all coordinates (samples weighted by the TimeWeight: sum_i w_i m_i / sum_i w_i with
/// m_i = mean over coordinates of eps_hat_i^2). Logs eps_sq_mean.
///
/// Example:
/// \code
///   trainer.add_loss_term(std::make_shared<mdiff::IsotropyRegulariser>(0.1));
/// \endcode
class IsotropyRegulariser : public TrainingConstraint {
 public:
  explicit IsotropyRegulariser(double lambda = 0.1, TimeWeight time_weight = {});
  std::string name() const override { return "iso"; }
  std::string describe() const override;
  at::Tensor loss(const LossContext& context) override;

 private:
  double lambda_;
};

/// Normal component of x0_hat with respect to the tangent space at the clean sample:
/// weight * mean_i w_i * |(I - U U^T)(x0_hat_i - origin_i)|^2 / D, where (origin, U) =
/// manifold->local_frame(x0) (computed without gradient) and w_i the TimeWeight (default:
/// alpha_bar, toward high SNR). Divided by D like the denoising MSE. Logs normal_sq (the unweighted
/// batch mean of |normal|^2 / D).
///
/// Example:
/// \code
///   trainer.add_loss_term(std::make_shared<mdiff::TangentRegulariser>(manifold, 1.0));
/// \endcode
class TangentRegulariser : public TrainingConstraint {
 public:
  TangentRegulariser(std::shared_ptr<const Manifold> manifold, double weight = 1.0,
                     TimeWeight time_weight = TimeWeight().snr_weighted(true));
  std::string name() const override { return "tangent"; }
  std::string describe() const override;
  at::Tensor loss(const LossContext& context) override;

 private:
  std::shared_ptr<const Manifold> manifold_;
  double weight_;
};

/// [Experimental] Autoencoder-manifold regulariser with a frozen autoencoder (E, D):
/// mean_i w_i (latent * |E(x0_hat_i) - E(x0_i)|^2 / (L var_z) + energy * |x0_hat_i - D(E(x0_hat_i))|^2 / D)
/// with w the TimeWeight (default: SNR >= 1 only) and var_z the variance of E(x0) over the batch
/// (mean over latent coordinates; the encoder's scale is arbitrary). Logs latent_sq (in var_z
/// units) and energy_sq.
///
/// Example:
/// \code
///   trainer.add_loss_term(std::make_shared<mdiff::AutoencoderRegulariser>(ae, 1.0, 1.0));
/// \endcode
class AutoencoderRegulariser : public TrainingConstraint {
 public:
  AutoencoderRegulariser(Autoencoder autoencoder, double latent_weight = 1.0, double energy_weight = 1.0,
                         TimeWeight time_weight = TimeWeight().snr_min(1.0));
  std::string name() const override { return "ae"; }
  std::string describe() const override;
  at::Tensor loss(const LossContext& context) override;
  double extra_network_calls() const override { return 3.0; }

 private:
  Autoencoder ae_;
  double latent_weight_, energy_weight_;
};

/// Options of AdversarialX0.
///
/// Example:
/// \code
///   auto o = mdiff::AdversarialX0Options({2}).weight(0.05).r1_gamma(0.05).r1_every(4);
/// \endcode
struct AdversarialX0Options {
  /* implicit */ AdversarialX0Options(std::vector<int64_t> sample_shape) : sample_shape_(std::move(sample_shape)) {}
  /// Shape of one sample: {D} (MLP discriminator) or {C, H, W} (convolutional).
  TORCH_ARG(std::vector<int64_t>, sample_shape);
  /// Weight of the generator loss.
  TORCH_ARG(double, weight) = 0.05;
  /// Discriminator learning rate (AdamW, betas 0.5 and 0.9).
  TORCH_ARG(double, lr) = 2e-4;
  /// R1 penalty gamma (gamma / 2 |grad D(real)|^2).
  TORCH_ARG(double, r1_gamma) = 0.05;
  /// Lazy R1: every this many discriminator steps.
  TORCH_ARG(int64_t, r1_every) = 4;
  /// Std of the instance noise (Diffusion-GAN) both inputs get: sqrt(ab) x + sqrt(1 - ab) noise eps.
  TORCH_ARG(double, noise) = 0.05;
  /// Hidden width (MLP) or base channels (conv).
  TORCH_ARG(int64_t, hidden) = 128;
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(TimeWeight, time_weight) = TimeWeight();

 public:
  void validate() const;
};

/// [Experimental] Adversarial term on x0 predictions: a time-conditioned discriminator D(y, t) sees
/// real x0 and detached x0_hat, both noise-injected as y = sqrt(ab_t) x + sqrt(1 - ab_t) noise eps.
/// Generator loss weight * mean_i w_i softplus(-D(y(x0_hat_i), t_i)); discriminator loss
/// softplus(-D(real)) + softplus(D(fake)) plus lazy R1, minimised by its own AdamW in after_step().
/// Discriminator weights, optimiser moments, counters and its generator are in state(). Logs d_loss,
/// d_acc (fraction of real with D > 0 and fake with D < 0) and r1.
///
/// Example:
/// \code
///   auto adv = std::make_shared<mdiff::AdversarialX0>(mdiff::AdversarialX0Options({2}).weight(0.05));
///   trainer.add_loss_term(adv);
/// \endcode
class AdversarialX0 : public TrainingConstraint {
 public:
  explicit AdversarialX0(AdversarialX0Options options);
  ~AdversarialX0() override;
  std::string name() const override { return "adv"; }
  std::string describe() const override;
  at::Tensor loss(const LossContext& context) override;
  void after_step(int64_t step) override;
  double extra_network_calls() const override { return 3.0; }
  NamedTensors state() const override;
  void load_state(const NamedTensors& state) override;
  /// The discriminator (for tests and inspection).
  torch::nn::Module& discriminator();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class Embedding;

/// Options of EmbeddingConditioning.
///
/// Example:
/// \code
///   auto o = mdiff::EmbeddingConditioningOptions().method("tsne").dims(2).fit_points(2000).seed(1);
/// \endcode
struct EmbeddingConditioningOptions {
  /// An embedding name of make_embedding(): pca, isomap, spectral, diffusion_map, tsne.
  TORCH_ARG(std::string, method) = "spectral";
  TORCH_ARG(int64_t, dims) = 2;
  /// Neighbours of the embedding's graph and of its out-of-sample rule.
  TORCH_ARG(int64_t, k) = 12;
  /// The embedding is fitted on (a seeded random subset of) this many points; the other points get
  /// their coordinates from the embedding's out-of-sample transform().
  TORCH_ARG(int64_t, fit_points) = 2000;
  TORCH_ARG(uint64_t, seed) = 0;

 public:
  void validate() const;
  /// Reads method, dims, k, fit_points from a spec named "embed" (seed stays).
  static EmbeddingConditioningOptions from_spec(const ConstraintSpec& spec, uint64_t seed);
};

/// Conditioning on low-dimensional manifold coordinates of x0: fit() embeds the training set
/// (spectral embedding, t-SNE, ... of the manifold module) and returns its coordinates,
/// standardised per coordinate, to be passed to the network as a continuous conditioning vector
/// (MLPDenoiserOptions::cond_dim); at sampling, sample() draws coordinates from their empirical
/// distribution (or the caller gives its own) and coordinates() maps new points (e.g. samples, to
/// check that they landed where they were asked to).
///
/// Example:
/// \code
///   mdiff::EmbeddingConditioning ec(mdiff::EmbeddingConditioningOptions().method("spectral"));
///   at::Tensor c = ec.fit(train);                                   // [N, 2]
///   mdiff::MLPDenoiser net(mdiff::MLPDenoiserOptions(D).cond_dim(2));
///   auto src = mdiff::random_batches(train, c, 256, 1);             // (x0, coordinates) pairs
///   at::Tensor want = ec.sample(1000, 7);                           // coordinates to sample at
/// \endcode
class EmbeddingConditioning {
 public:
  explicit EmbeddingConditioning(EmbeddingConditioningOptions options);
  ~EmbeddingConditioning();
  EmbeddingConditioning(EmbeddingConditioning&&) noexcept;
  EmbeddingConditioning& operator=(EmbeddingConditioning&&) noexcept;
  /// Fits the embedding and returns standardised coordinates [N, dims] (float32) of all points.
  at::Tensor fit(const at::Tensor& points);
  /// Standardised coordinates of new points (out-of-sample). Needs fit().
  at::Tensor coordinates(const at::Tensor& x) const;
  /// n rows of the training coordinates drawn with replacement (seeded).
  at::Tensor sample(int64_t n, uint64_t seed) const;
  const EmbeddingConditioningOptions& options() const { return options_; }
  std::string describe() const;

 private:
  EmbeddingConditioningOptions options_;
  std::unique_ptr<Embedding> embedding_;
  at::Tensor mean_, scale_, coords_;
};

/// What the factory may need: a manifold ("tangent"), an autoencoder ("ae"), the sample shape
/// ("adversarial"), a seed.
struct TrainingConstraintContext {
  std::shared_ptr<const Manifold> manifold;
  Autoencoder autoencoder{nullptr};
  std::vector<int64_t> sample_shape;
  uint64_t seed = 0;
};

/// Names make_training_constraint() accepts: ip, iso, tangent, ae, adversarial. (The programs also
/// take augment, embed and, in mdiff-toy, latent diffusion by --latent-dim; those change the data
/// or the network rather than the loss.)
std::vector<std::string> training_constraint_names();

/// Builds a constraint from its specification; unknown names or options, bad values, and a
/// missing manifold / autoencoder are one-line errors naming them (and the valid ones).
std::shared_ptr<TrainingConstraint> make_training_constraint(const ConstraintSpec& spec,
                                                             const TrainingConstraintContext& context);

}  // namespace manifold_diffusion
