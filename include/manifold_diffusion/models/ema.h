#pragma once

/// \file
/// Exponential moving average of a module's weights, the averaged model that DDPM and ADM sample
/// from (decay 0.9999).

#include <manifold_diffusion/core/namespace.h>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <torch/arg.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace manifold_diffusion {

/// Named tensors, in a fixed order: what EMA::named_state returns and load_named_state takes.
using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

/// Options of EMA.
///
/// Example:
/// \code
///   auto opts = mdiff::EMAOptions().decay(0.999).warmup(true).update_every(10);
/// \endcode
struct EMAOptions {
  /// Decay per averaging update: shadow <- decay * shadow + (1 - decay) * weights. In [0, 1].
  TORCH_ARG(double, decay) = 0.9999;
  /// True: update k (k = 0, 1, ...) uses min(decay, (1 + k) / (10 + k)), so the average forgets
  /// the random initial weights quickly early in training.
  TORCH_ARG(bool, warmup) = true;
  /// Average on every update_every-th call of update() (>= 1); the other calls only count.
  TORCH_ARG(int64_t, update_every) = 1;
};

/// Shadow copies of a module's parameters, averaged after each optimiser step, and copies of its
/// buffers (taken as they are at each averaging update). The shadow lives on the module's device
/// and dtype at construction (see to()).
///
/// Every method that takes a module checks that its parameters (and buffers) have the names and
/// shapes of the shadow and fails with a message naming the first mismatch.
///
/// Example:
/// \code
///   mdiff::UNet net(mdiff::UNetOptions(1, 1));
///   mdiff::EMA ema(*net, mdiff::EMAOptions().decay(0.999));
///   for (...) {
///     loss.backward();
///     optimizer.step();
///     ema.update(*net);
///   }
///   ema.store(*net);          // keep the training weights
///   ema.copy_to(*net);        // evaluate / sample with the averaged weights
///   ...
///   ema.restore(*net);        // back to the training weights
///   mdiff::NamedTensors state = ema.named_state();   // for a checkpoint
/// \endcode
class EMA {
 public:
  /// Starts the shadow at the module's current weights.
  explicit EMA(const torch::nn::Module& module, EMAOptions options = {});

  /// Counts a call; on every update_every-th call averages the module's parameters into the
  /// shadow with decay_at(num_updates()) and copies its buffers.
  void update(const torch::nn::Module& module);
  /// Writes the shadow parameters and buffers into the module.
  void copy_to(torch::nn::Module& module) const;
  /// Keeps a copy of the module's current parameters and buffers (for restore()).
  void store(const torch::nn::Module& module);
  /// Writes the weights kept by store() back into the module and forgets them.
  void restore(torch::nn::Module& module);
  /// Whether store() holds weights that restore() has not yet written back.
  bool has_stored() const { return !stored_params_.empty() || !stored_buffers_.empty(); }

  /// Averaging updates done so far (the k of the warm-up formula).
  int64_t num_updates() const { return num_updates_; }
  /// Calls of update() so far.
  int64_t num_steps() const { return num_steps_; }
  /// The decay of averaging update k: min(decay, (1 + k) / (10 + k)) with warm-up, decay without.
  double decay_at(int64_t k) const;

  /// The shadow parameters, in the module's order.
  const NamedTensors& shadow_parameters() const { return shadow_params_; }
  /// The shadow buffers, in the module's order.
  const NamedTensors& shadow_buffers() const { return shadow_buffers_; }

  /// Everything a checkpoint needs: "param.<name>" and "buffer.<name>" for the shadow tensors
  /// (shared with the EMA, not copies) and 0-dim int64 "num_updates" and "num_steps".
  NamedTensors named_state() const;
  /// Loads named_state()'s output: the names must match exactly and the shapes agree; values are
  /// copied into the shadow (converted to its device and dtype).
  void load_named_state(const NamedTensors& state);

  /// Moves the shadow (and any stored weights) to `device`.
  void to(c10::Device device);

  const EMAOptions& options() const { return options_; }

 private:
  EMAOptions options_;
  NamedTensors shadow_params_, shadow_buffers_;
  NamedTensors stored_params_, stored_buffers_;
  int64_t num_updates_ = 0;
  int64_t num_steps_ = 0;
};

}  // namespace manifold_diffusion
