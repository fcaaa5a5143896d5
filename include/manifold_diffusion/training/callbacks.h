#pragma once
/// \file
/// Training callbacks. Each hook may stop the run by returning true; the Trainer then finishes the
/// step, writes a final checkpoint when it keeps checkpoints, and returns.
///
/// Example:
/// \code
///   trainer.add_callback(std::make_shared<mdiff::ProgressBar>());
///   trainer.add_callback(std::make_shared<mdiff::TimeLimit>(600.0));      // stop after 10 minutes
///   trainer.add_callback(std::make_shared<mdiff::EarlyStop>(5, 1e-4));    // 5 validations without gain
/// \endcode

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <string>

namespace manifold_diffusion {

class Trainer;

/// What the Trainer reports after each optimiser step.
struct TrainStepInfo {
  int64_t step = 0;          ///< steps completed (1 after the first update).
  int64_t total_steps = 0;   ///< the run's length.
  double loss = 0;           ///< total loss of this step (mean over micro-batches).
  double lr = 0;             ///< learning rate used.
  double grad_norm = 0;      ///< gradient norm before clipping.
  double seconds = 0;        ///< wall time since fit() started (this process).
  double steps_per_second = 0;  ///< recent throughput (smoothed).
  int64_t skipped = 0;       ///< steps skipped so far (non-finite values, loss or gradient spikes).
  bool skipped_this_step = false;
  /// Why this step was skipped: "nonfinite", "loss_spike" or "grad_spike"; empty when it was not.
  std::string skip_reason;
  /// Set on the step after which the weights were rolled back: the checkpoint's step.
  int64_t rolled_back_to = -1;
  std::map<std::string, double> scalars;  ///< loss-term values and term scalars.
};

/// Base class of the callbacks. Hooks returning true stop the run.
class TrainerCallback {
 public:
  virtual ~TrainerCallback() = default;
  virtual void on_begin(Trainer& /*trainer*/) {}
  virtual bool on_step(Trainer& /*trainer*/, const TrainStepInfo& /*info*/) { return false; }
  virtual bool on_validation(Trainer& /*trainer*/, int64_t /*step*/, double /*val_loss*/) { return false; }
  virtual void on_end(Trainer& /*trainer*/) {}
};

/// A progress bar with it/s, ETA and a smoothed loss on a terminal; on a pipe or file, a plain line
/// every `interval_seconds` instead (so logs stay readable).
///
/// Example:
/// \code
///   trainer.add_callback(std::make_shared<mdiff::ProgressBar>(stderr, 10.0));
/// \endcode
class ProgressBar : public TrainerCallback {
 public:
  explicit ProgressBar(std::FILE* out = stderr, double interval_seconds = 10.0);
  bool on_step(Trainer& trainer, const TrainStepInfo& info) override;
  void on_end(Trainer& trainer) override;
  /// Forces the terminal (true) or plain-line (false) mode.
  ProgressBar& terminal(bool on) {
    terminal_ = on;
    return *this;
  }

 private:
  std::FILE* out_;
  double interval_;
  bool terminal_;
  double smoothed_ = 0;
  bool have_smoothed_ = false;
  double last_print_ = -1e300;
  bool printed_ = false;
};

/// Prints the step, loss, learning rate and gradient norm every `every` steps.
///
/// Example:
/// \code
///   trainer.add_callback(std::make_shared<mdiff::LossPrinter>(100));
/// \endcode
class LossPrinter : public TrainerCallback {
 public:
  explicit LossPrinter(int64_t every = 100, std::FILE* out = stdout);
  bool on_step(Trainer& trainer, const TrainStepInfo& info) override;

 private:
  int64_t every_;
  std::FILE* out_;
  double sum_ = 0;
  int64_t count_ = 0;
};

/// Stops when the validation loss has not improved by `min_delta` for `patience` validations.
///
/// Example:
/// \code
///   auto stop = std::make_shared<mdiff::EarlyStop>(3, 1e-4);
/// \endcode
class EarlyStop : public TrainerCallback {
 public:
  explicit EarlyStop(int64_t patience = 5, double min_delta = 0.0);
  bool on_validation(Trainer& trainer, int64_t step, double val_loss) override;
  double best() const { return best_; }

 private:
  int64_t patience_;
  double min_delta_;
  double best_ = 1e300;
  int64_t bad_ = 0;
};

/// Stops the run once `seconds` of wall time have passed in this process.
///
/// Example:
/// \code
///   trainer.add_callback(std::make_shared<mdiff::TimeLimit>(8 * 60.0));
/// \endcode
class TimeLimit : public TrainerCallback {
 public:
  explicit TimeLimit(double seconds);
  bool on_step(Trainer& trainer, const TrainStepInfo& info) override;
  bool fired() const { return fired_; }

 private:
  double seconds_;
  bool fired_ = false;
};

/// Writes a checkpoint every `every` steps (the Trainer's own checkpoint_every does the same; this
/// form lets a program add checkpoints at chosen moments).
///
/// Example:
/// \code
///   trainer.add_callback(std::make_shared<mdiff::CheckpointEvery>(500));
/// \endcode
class CheckpointEvery : public TrainerCallback {
 public:
  explicit CheckpointEvery(int64_t every);
  bool on_step(Trainer& trainer, const TrainStepInfo& info) override;

 private:
  int64_t every_;
};

/// Calls `fn(trainer, step)` every `every` steps, e.g. to sample a preview grid with the EMA
/// weights; `fn` returning true stops the run.
///
/// Example:
/// \code
///   trainer.add_callback(std::make_shared<mdiff::Preview>(1000, [&](mdiff::Trainer& t, int64_t step) {
///     t.with_ema_weights([&] { save_grid(sample(t.denoiser()), step); });
///     return false;
///   }));
/// \endcode
class Preview : public TrainerCallback {
 public:
  using Fn = std::function<bool(Trainer&, int64_t)>;
  Preview(int64_t every, Fn fn);
  bool on_step(Trainer& trainer, const TrainStepInfo& info) override;

 private:
  int64_t every_;
  Fn fn_;
};

/// Calls a function on every step (stops the run when it returns true): for small ad-hoc hooks.
///
/// Example:
/// \code
///   trainer.add_callback(std::make_shared<mdiff::LambdaCallback>(
///       [](mdiff::Trainer&, const mdiff::TrainStepInfo& s) { return s.loss < 1e-3; }));
/// \endcode
class LambdaCallback : public TrainerCallback {
 public:
  using Fn = std::function<bool(Trainer&, const TrainStepInfo&)>;
  explicit LambdaCallback(Fn fn) : fn_(std::move(fn)) {}
  bool on_step(Trainer& trainer, const TrainStepInfo& info) override { return fn_(trainer, info); }

 private:
  Fn fn_;
};

}  // namespace manifold_diffusion
