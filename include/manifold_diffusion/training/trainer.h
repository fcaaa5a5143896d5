#pragma once
/// \file
/// The training loop: AdamW with warm-up and decay, gradient clipping and accumulation, EMA, bf16
/// autocast on CUDA (LibTorch 2.x), validation, a non-finite guard, JSON-lines metrics, callbacks,
/// pluggable loss terms, and atomic checkpoints that resume a killed run bit for bit on CPU.
///
/// Example:
/// \code
///   mdiff::MLPDenoiser net(mdiff::MLPDenoiserOptions(2));
///   auto source = mdiff::random_batches(points, {}, 256, /*seed=*/1);
///   mdiff::Trainer trainer(mdiff::TrainerOptions(5000).lr(2e-3).out_dir("out/run").checkpoint_every(1000),
///                          net.ptr(), mdiff::network_function(net),
///                          mdiff::NoiseSchedule::linear(1000), mdiff::DenoiserOptions(), source);
///   trainer.resume();          // continues from out/run/checkpoints when there is one
///   trainer.fit();
///   trainer.with_ema_weights([&] { x = sampler.sample(trainer.denoiser(), noise); });
/// \endcode

#include <manifold_diffusion/core/enum.h>
#include <manifold_diffusion/data/loader.h>
#include <manifold_diffusion/distributed/distributed.h>
#include <manifold_diffusion/models/denoiser.h>
#include <manifold_diffusion/models/ema.h>
#include <manifold_diffusion/schedules/noise_schedule.h>
#include <manifold_diffusion/training/callbacks.h>
#include <manifold_diffusion/training/loss_term.h>
#include <manifold_diffusion/training/lr_schedule.h>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <torch/arg.h>
#include <torch/nn/module.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace torch {
namespace optim {
class AdamW;
}  // namespace optim
}  // namespace torch

namespace manifold_diffusion {

struct StateFile;

/// Numeric precision of the forward pass.
enum class Precision {
  Auto,  ///< bf16 autocast on CUDA with LibTorch >= 2.4, fp32 otherwise.
  FP32,  ///< float32 everywhere.
  BF16,  ///< bf16 autocast (CUDA, LibTorch >= 2.4 only; an error elsewhere).
};

template <>
struct EnumTraits<Precision> {
  static constexpr const char* type_name = "Precision";
  static constexpr EnumEntry<Precision> entries[] = {
      {Precision::Auto, "auto"}, {Precision::FP32, "fp32"}, {Precision::BF16, "bf16"}};
};

/// One batch of training data. `labels` (class indices, or any conditioning tensor the network
/// takes) and `augment` (EDM non-leaky augmentation parameters [N, L]) may be undefined.
struct TrainBatch {
  at::Tensor x0;
  at::Tensor labels;
  at::Tensor augment;
};

/// Where batches come from. `state` / `load_state` save and restore the position in the data
/// order (and any randomness of the source) so a resumed run sees the same batches.
struct DataSource {
  std::function<TrainBatch()> next;
  std::function<at::Tensor()> state;
  std::function<void(const at::Tensor&)> load_state;
};

/// Batches of `batch` rows drawn uniformly with replacement from `data` (and the same rows of
/// `labels` when defined), from a generator seeded by `seed`; the generator state is the source's
/// state. For point clouds and other in-memory sets. With a `shard` of count > 1, `batch` is the
/// global batch: every shard draws the same global batch and keeps its batch / count rows, so the
/// shards together see exactly the batches of one unsharded source.
///
/// Example:
/// \code
///   mdiff::DataSource src = mdiff::random_batches(points, {}, 512, 7);
///   mdiff::DataSource part = mdiff::random_batches(points, {}, 512, 7, mdiff::Shard{1, 2});  // rows 256..511
/// \endcode
DataSource random_batches(at::Tensor data, at::Tensor labels, int64_t batch, uint64_t seed, Shard shard = {});

/// A DataSource over a data::TensorLoader (epochs shuffled by seed, batches assembled on worker
/// threads, optional augmentation): x0 = batch.data, labels = batch.labels, augment =
/// batch.aug_labels; its state is the loader's (epoch, batch index).
///
/// Example:
/// \code
///   auto loader = std::make_shared<mdiff::data::TensorLoader>(images, labels,
///       mdiff::data::LoaderOptions(128).seed(1).drop_last(true).num_workers(2));
///   mdiff::DataSource src = mdiff::loader_source(loader);
/// \endcode
DataSource loader_source(std::shared_ptr<data::TensorLoader> loader);

/// The network as the Trainer calls it: (x_t, model time, conditioning labels, augmentation
/// parameters). Either of the last two may be undefined.
using NetworkFunction = std::function<at::Tensor(const at::Tensor& x, const at::Tensor& t, const at::Tensor& labels,
                                                 const at::Tensor& augment)>;

namespace detail {
template <typename Holder, typename = void>
struct forward_takes_augment : std::false_type {};
template <typename Holder>
struct forward_takes_augment<Holder, std::void_t<decltype(std::declval<Holder&>()->forward(
                                         std::declval<at::Tensor>(), std::declval<at::Tensor>(),
                                         std::declval<at::Tensor>(), std::declval<at::Tensor>()))>> : std::true_type {};
}  // namespace detail

/// NetworkFunction for a module holder whose forward is (x, t, labels) — e.g. MLPDenoiser — or
/// (x, t, labels, augment_labels) — e.g. UNet with augment_dim > 0. Augmentation parameters given
/// to a network of the first kind are an error.
///
/// Example:
/// \code
///   mdiff::UNet unet(mdiff::UNetOptions(1, 1).augment_dim(mdiff::data::Augment::label_dim()));
///   mdiff::NetworkFunction f = mdiff::network_function(unet);
/// \endcode
template <typename Holder>
NetworkFunction network_function(Holder holder) {
  return [holder](const at::Tensor& x, const at::Tensor& t, const at::Tensor& labels,
                  const at::Tensor& augment) mutable {
    if constexpr (detail::forward_takes_augment<Holder>::value) {
      return holder->forward(x, t, labels, augment);
    } else {
      TORCH_CHECK_VALUE(!augment.defined(), "network_function: this network takes no augmentation conditioning; ",
                        "use augmentation without non-leaky labels or a network with augment_dim > 0");
      return holder->forward(x, t, labels);
    }
  };
}

/// Options of the Trainer.
///
/// Example:
/// \code
///   auto o = mdiff::TrainerOptions(20000).lr(2e-4).warmup_steps(500).grad_clip(1.0)
///                .ema_decay(0.999).out_dir("out/fmnist").checkpoint_every(1000).keep_last(3);
/// \endcode
struct TrainerOptions {
  /* implicit */ TrainerOptions(int64_t steps = 1000) : steps_(steps) {}
  /// Optimiser steps of the whole run (the LR schedule's length).
  TORCH_ARG(int64_t, steps);
  TORCH_ARG(double, lr) = 2e-4;
  TORCH_ARG(double, weight_decay) = 0.0;
  TORCH_ARG(double, beta1) = 0.9;
  TORCH_ARG(double, beta2) = 0.999;
  TORCH_ARG(double, adam_eps) = 1e-8;
  TORCH_ARG(int64_t, warmup_steps) = 0;
  TORCH_ARG(LRDecay, lr_decay) = LRDecay::Cosine;
  /// LR factor reached at the last step.
  TORCH_ARG(double, min_lr_factor) = 0.0;
  /// Max gradient norm (0: no clipping; the norm is still measured and logged).
  TORCH_ARG(double, grad_clip) = 1.0;
  /// Micro-batches per optimiser step.
  TORCH_ARG(int64_t, grad_accumulation) = 1;
  /// EMA decay (0: no EMA).
  TORCH_ARG(double, ema_decay) = 0.9999;
  TORCH_ARG(bool, ema_warmup) = true;
  TORCH_ARG(Precision, precision) = Precision::Auto;
  /// Probability of replacing a class label by the null class (-1), for classifier-free guidance.
  TORCH_ARG(double, label_dropout) = 0.0;
  /// Validate every this many steps (0: never); needs a validation source.
  TORCH_ARG(int64_t, validation_every) = 0;
  TORCH_ARG(int64_t, validation_batches) = 4;
  /// Skipped (non-finite) steps allowed before the run stops with an error.
  TORCH_ARG(int64_t, max_nonfinite) = 20;
  /// Skip a step whose loss exceeds this factor times the running mean of accepted losses (a loss
  /// spike: a corrupt batch, say); 0: off. Detection starts after spike_warmup accepted steps.
  TORCH_ARG(double, loss_spike_factor) = 0.0;
  /// Skip a step whose gradient norm (before clipping) exceeds this factor times the running mean
  /// of accepted steps' norms (an exploding gradient); 0: off.
  TORCH_ARG(double, grad_spike_factor) = 0.0;
  /// Accepted steps that form the running means before spike detection starts.
  TORCH_ARG(int64_t, spike_warmup) = 20;
  /// After this many consecutive skipped steps, roll the model, optimiser and EMA back to the newest
  /// checkpoint in out_dir (the data position, random state and step count go on, so the batches
  /// that caused the trouble are not seen again); 0: off.
  TORCH_ARG(int64_t, rollback_after) = 0;
  /// Metrics line every this many steps.
  TORCH_ARG(int64_t, log_every) = 50;
  /// Folder for checkpoints/ and train_log.jsonl ("": no files).
  TORCH_ARG(std::string, out_dir) = "";
  TORCH_ARG(int64_t, checkpoint_every) = 0;
  TORCH_ARG(int64_t, keep_last) = 3;
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(c10::Device, device) = c10::Device(c10::kCPU);

 public:
  /// Throws c10::ValueError naming the bad option.
  void validate() const;
};

/// What fit() did.
struct TrainResult {
  int64_t steps = 0;           ///< steps completed in total (including before a resume).
  int64_t steps_this_run = 0;  ///< steps completed by this fit() call.
  double seconds = 0;          ///< wall time of this fit() call.
  double final_loss = 0;       ///< mean loss over the last log interval.
  double last_val_loss = -1;   ///< last validation loss (-1: none).
  int64_t skipped = 0;         ///< steps skipped (non-finite, loss spike or gradient spike).
  int64_t rollbacks = 0;       ///< roll-backs to a checkpoint (rollback_after).
  bool stopped_by_callback = false;
};

/// The training loop. Holds the model (shared), optimiser, EMA, loss terms, callbacks and all
/// random state; fit() runs until options.steps or a callback stops it.
///
/// Example: see the file comment above.
class Trainer {
 public:
  Trainer(TrainerOptions options, std::shared_ptr<torch::nn::Module> model, NetworkFunction network,
          NoiseSchedule schedule, DenoiserOptions denoiser_options, DataSource train,
          std::optional<DataSource> validation = std::nullopt);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  /// Adds an objective weighted by `weight` (a constant; weight over t belongs inside the term).
  void add_loss_term(std::shared_ptr<LossTerm> term, double weight = 1.0);
  void add_callback(std::shared_ptr<TrainerCallback> callback);

  /// Trains from the current step to options.steps (or until a callback stops).
  TrainResult fit();

  /// One optimiser step (with accumulation); returns what it measured. fit() calls this.
  TrainStepInfo train_step();

  /// Mean denoising loss over `validation_batches` fixed validation batches (fixed timesteps and
  /// noise, so values are comparable across steps), with the EMA weights when there is an EMA.
  double validate();

  /// Writes a checkpoint for the current step into out_dir/checkpoints and prunes old ones;
  /// returns its path. Needs out_dir. On ranks other than 0 of a distributed job: writes nothing
  /// and returns "". 
  std::string save_checkpoint();
  /// Saves to an explicit file (atomically). The file is a StateFile of kind
  /// kTrainerCheckpointKind: safetensors, readable by any safetensors reader.
  void save_checkpoint(const std::string& path);
  /// Restores everything from a checkpoint file. The whole file is read and checked (sizes, names,
  /// shapes, dtypes, finite weights and optimizer moments) before anything is changed: a bad file is
  /// a c10::Error and leaves the trainer as it was.
  void load_checkpoint(const std::string& path);
  /// Restores everything from a checkpoint held in memory (the bytes of a checkpoint file);
  /// `what` names it in errors.
  void load_checkpoint_bytes(const std::string& bytes, const std::string& what);
  /// Loads the newest readable checkpoint of out_dir/checkpoints (a corrupt newest file is reported
  /// and the previous one used); returns false when there is none.
  bool resume();

  /// Makes this trainer one rank of a data-parallel job: copies rank 0's weights (and EMA) to every
  /// rank, then averages gradients over the ranks every step (bucketed all-reduces overlapped with
  /// backward), agrees on skipped steps and stops, and leaves logs and checkpoints to rank 0.
  /// Each rank's DataSource must yield its own shard of the global batch (random_batches with a
  /// Shard, or a loader with num_shards), the same number of rows on every rank. Timesteps, noise
  /// and label dropout are drawn for the global batch and sliced, so a job of W ranks with local
  /// batch B trains the same model as one process with batch W * B (up to float summation order).
  /// resume() then reads the checkpoint on rank 0 and sends it to the others. Call it before fit().
  void distribute(std::shared_ptr<Communicator> comm, GradientSyncOptions sync = {});
  /// True unless this is a rank other than 0 of a distributed job.
  bool is_main_process() const;
  /// The communicator given to distribute(), or null.
  Communicator* communicator() const { return comm_.get(); }

  /// Runs `fn` with the EMA weights in the model, then puts the trained weights back.
  void with_ema_weights(const std::function<void()>& fn);

  int64_t step() const { return step_; }
  const TrainerOptions& options() const { return options_; }
  const Denoiser& denoiser() const { return *denoiser_; }
  torch::nn::Module& model() { return *model_; }
  const EMA* ema() const { return ema_ ? &*ema_ : nullptr; }
  double current_lr() const;
  /// Requests a stop after the current step (from another thread or a signal handler's flag).
  void request_stop() { stop_requested_ = true; }

 private:
  void log_line(const TrainStepInfo& info, double val_loss);
  void open_log();
  std::unique_ptr<torch::optim::AdamW> make_optimizer() const;
  at::Tensor prepare_labels(const at::Tensor& labels);
  struct ParsedCheckpoint;
  void apply_checkpoint(const StateFile& file, const std::string& what);
  ParsedCheckpoint parse_checkpoint(const StateFile& file, const std::string& what, bool trusted);
  void apply_parsed(ParsedCheckpoint& checkpoint, const std::string& what);
  StateFile checkpoint_state(bool copy) const;
  std::string optimizer_description() const;
  bool resume_distributed();
  void checkpoint_collectively();

  TrainerOptions options_;
  std::shared_ptr<torch::nn::Module> model_;
  NetworkFunction network_;
  bool bf16_ = false;  ///< resolved from options.precision and device once
  at::Tensor current_augment_;
  std::unique_ptr<Denoiser> denoiser_;
  DataSource train_;
  std::optional<DataSource> validation_;
  std::vector<TrainBatch> validation_cache_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::optional<EMA> ema_;
  LRSchedule lr_schedule_;
  at::Generator gen_;
  std::vector<std::pair<std::shared_ptr<LossTerm>, double>> terms_;
  std::vector<std::shared_ptr<TrainerCallback>> callbacks_;
  int64_t step_ = 0;
  int64_t skipped_ = 0;
  // Running means of accepted steps' loss and gradient norm (spike detection), the number of
  // accepted steps they hold, consecutive skips, and roll-backs; saved in checkpoints.
  double loss_mean_ = 0;
  double norm_mean_ = 0;
  int64_t accepted_ = 0;
  int64_t consecutive_skips_ = 0;
  int64_t rollbacks_ = 0;
  int64_t rollback();  // returns the checkpoint step rolled back to, or -1
  bool stop_requested_ = false;
  std::ofstream log_;
  double log_loss_sum_ = 0;
  int64_t log_loss_count_ = 0;
  double steps_per_second_ = 0;
  std::chrono::steady_clock::time_point fit_start_;
  std::shared_ptr<Communicator> comm_;
  std::unique_ptr<GradientSync> sync_;
  bool batch_checked_ = false;
};

}  // namespace manifold_diffusion
