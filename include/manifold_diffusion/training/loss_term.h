#pragma once
/// \file
/// Pluggable loss terms: extra objectives the Trainer adds to the denoising loss without any
/// change to its loop (the constraint modules are loss terms).
///
/// Example:
/// \code
///   // Penalise x0 estimates outside [-1, 1], more at high SNR.
///   class RangePenalty : public mdiff::LossTerm {
///    public:
///     std::string name() const override { return "range"; }
///     at::Tensor loss(const mdiff::LossContext& c) override {
///       at::Tensor excess = at::relu(c.pred.x0.abs() - 1).flatten(1).pow(2).mean(1);
///       return (c.alpha_bar * excess).mean();
///     }
///   };
///   trainer.add_loss_term(std::make_shared<RangePenalty>(), 0.1);
/// \endcode

#include <manifold_diffusion/models/denoiser.h>
#include <manifold_diffusion/models/ema.h>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace manifold_diffusion {

/// Everything a loss term may look at for one micro-batch. Tensors are on the training device;
/// `output` and `pred` carry the autograd graph of the network call.
struct LossContext {
  const Denoiser& denoiser;
  const at::Tensor& x0;         ///< clean batch [N, ...].
  const at::Tensor& x_t;        ///< noised batch.
  const at::Tensor& t;          ///< [N] timesteps (fractional for EDM-style sampling).
  const at::Tensor& noise;      ///< the noise of the regression target (x_t used input_noise() when a term gave one).
  const at::Tensor& cond;       ///< class labels or other conditioning (may be undefined).
  const at::Tensor& output;     ///< raw network output.
  const DenoiserOutput& pred;   ///< x0_hat and eps_hat implied by the output.
  const at::Tensor& alpha_bar;  ///< [N] noise levels.
  int64_t step;                 ///< optimiser step being computed (0-based).
};

/// One extra objective. `loss()` returns a scalar (already reduced over the batch) that the Trainer
/// multiplies by the weight given to add_loss_term and adds to the denoising loss. A term with its
/// own parameters (a discriminator, say) updates them in after_step() and saves them in state().
class LossTerm {
 public:
  virtual ~LossTerm() = default;
  /// Short name used in logs and checkpoints (letters, digits, '_').
  virtual std::string name() const = 0;
  /// The term's loss for one micro-batch.
  virtual at::Tensor loss(const LossContext& context) = 0;
  /// Forward-noising hook, called before x_t is formed: returns the noise that makes
  /// x_t = sqrt(ab) x0 + sqrt(1 - ab) * input_noise, or an undefined tensor to leave `noise` as it
  /// is. The regression target is still built from the unperturbed noise (DDPM-IP). Random draws
  /// must come from `generator` (the Trainer's, saved in checkpoints). With several terms, each
  /// receives the previous one's result.
  virtual at::Tensor input_noise(const at::Tensor& /*noise*/, at::Generator& /*generator*/) { return {}; }
  /// Called after each optimiser step of the model (own optimiser steps go here).
  virtual void after_step(int64_t /*step*/) {}
  /// Scalars to log beside the loss (e.g. a discriminator's accuracy); read after each step.
  virtual std::map<std::string, double> scalars() const { return {}; }
  /// Network evaluations the term adds per training example (for cost reports).
  virtual double extra_network_calls() const { return 0.0; }
  /// State saved in checkpoints and restored on resume (parameters, optimiser moments, counters).
  virtual NamedTensors state() const { return {}; }
  virtual void load_state(const NamedTensors& /*state*/) {}
};

}  // namespace manifold_diffusion
