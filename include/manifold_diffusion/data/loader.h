#pragma once

/// \file
/// A batch loader over tensors held in memory, with reproducible shuffling, per-batch random
/// transforms and optional background threads that assemble batches ahead.
///
/// The loader's state is its position: the epoch and the index of the next batch in that epoch.
/// Epoch e visits the samples in the order of a permutation drawn from a generator seeded with
/// (seed, e), and the transform of batch (e, i) draws from a generator seeded with (seed, e, i),
/// so every batch is a function of (seed, e, i) alone: the same with 0 or 8 workers, and the same
/// after saving state() and restoring it into a fresh loader with load_state(). Guide: docs/data.md.

#include <manifold_diffusion/core/namespace.h>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <cstdint>
#include <functional>
#include <memory>

namespace manifold_diffusion {
namespace data {

/// One batch and where it came from.
///
/// Example:
/// \code
///   mdiff::data::Batch b = loader.next();
///   fmt::print("epoch {} batch {}: {} samples\n", b.epoch, b.index, b.data.size(0));
/// \endcode
struct Batch {
  /// The rows of the loader's `data` for this batch: [B, ...].
  at::Tensor data;
  /// The matching rows of `labels` ([B]); undefined when the loader has no labels.
  at::Tensor labels;
  /// Set by a transform (e.g. Augment's conditioning labels); undefined otherwise.
  at::Tensor aug_labels;
  /// Epoch of the batch (0-based).
  int64_t epoch = 0;
  /// Index of the batch within its epoch (0-based).
  int64_t index = 0;
};

/// A per-batch transform: takes a batch and a generator seeded from (seed, epoch, index) and
/// returns the transformed batch. It may run on a worker thread, so it must not touch shared
/// mutable state without locking.
using BatchTransform = std::function<Batch(Batch, at::Generator&)>;

/// Options of TensorLoader.
///
/// Example:
/// \code
///   mdiff::data::Augment aug(mdiff::data::AugmentOptions().xflip(0.5));
///   auto opts = mdiff::data::LoaderOptions(128).seed(7).num_workers(2).transform(
///       [aug](mdiff::data::Batch b, at::Generator& g) {
///         auto r = aug.apply(b.data, g);
///         b.data = r.images;
///         b.aug_labels = r.labels;
///         return b;
///       });
/// \endcode
struct LoaderOptions {
  explicit LoaderOptions(int64_t batch_size) : batch_size_(batch_size) {}

  /// Samples per batch (the last batch of an epoch may be smaller unless drop_last).
  TORCH_ARG(int64_t, batch_size);
  /// Visit the samples in a new random order every epoch; false: in index order.
  TORCH_ARG(bool, shuffle) = true;
  /// Seeds the epoch permutations and the transforms' generators.
  TORCH_ARG(uint64_t, seed) = 0;
  /// Leave out the last batch of an epoch when it would be smaller than batch_size.
  TORCH_ARG(bool, drop_last) = false;
  /// 0: batches are assembled in the thread that calls next(); otherwise this many threads
  /// assemble the coming batches ahead of time.
  TORCH_ARG(int64_t, num_workers) = 0;
  /// Batches each worker may hold ready ahead of the consumer (the queue holds
  /// num_workers * prefetch batches at most).
  TORCH_ARG(int64_t, prefetch) = 2;
  /// Applied to every batch after it is gathered; empty for none.
  TORCH_ARG(BatchTransform, transform) = nullptr;
  /// Data-parallel sharding: every batch is the slice shard_index of num_shards equal slices of the
  /// global batch of batch_size rows (the same epoch order on every shard), so num_shards
  /// processes together see exactly the batches of one unsharded loader. Needs batch_size
  /// divisible by num_shards and drop_last when num_shards > 1. A sharded transform draws from a
  /// generator seeded by (seed, epoch, index, shard_index).
  TORCH_ARG(int64_t, num_shards) = 1;
  TORCH_ARG(int64_t, shard_index) = 0;

 public:
  /// Fails with a message naming the bad option.
  void validate() const;
};

/// An endless batch loader over in-memory tensors.
///
/// `data` is [N, ...] (any dtype) and `labels`, when given, [N]; batches are gathered with
/// index_select on the tensors' device. next() never runs out: after the last batch of an epoch
/// comes batch 0 of the next epoch. Worker threads are stopped and joined by the destructor,
/// load_state() and reset(). An exception thrown while a batch is assembled (by the transform, say)
/// is rethrown by next() in the caller's thread; the position then stays at that batch.
///
/// The loader is not itself thread-safe: call it from one thread at a time.
///
/// Example:
/// \code
///   auto train = mdiff::data::load_fashion_mnist(mdiff::data::kFashionMnistDir, "train");
///   mdiff::data::TensorLoader loader(train.images, train.labels, mdiff::data::LoaderOptions(128).seed(1));
///   for (int64_t step = 0; step < 1000; ++step) {
///     mdiff::data::Batch b = loader.next();   // b.data [128, 1, 28, 28], b.labels [128]
///   }
///   at::Tensor state = loader.state();        // save with the checkpoint ...
///   loader.load_state(state);                 // ... and continue from there later
/// \endcode
class TensorLoader {
 public:
  TensorLoader(at::Tensor data, at::Tensor labels, LoaderOptions options);
  /// A loader without labels.
  TensorLoader(at::Tensor data, LoaderOptions options);
  ~TensorLoader();
  TensorLoader(TensorLoader&&) noexcept;
  TensorLoader& operator=(TensorLoader&&) noexcept;
  TensorLoader(const TensorLoader&) = delete;
  TensorLoader& operator=(const TensorLoader&) = delete;

  /// The batch at the current position; then moves the position on by one.
  Batch next();
  /// Batches in one epoch: ceil(N / batch_size), or floor with drop_last.
  int64_t batches_per_epoch() const;
  /// Number of samples N.
  int64_t size() const;
  /// int64 CPU tensor {epoch, index of the next batch}.
  at::Tensor state() const;
  /// Moves to a position taken with state(); fails on a tensor that is not int64 of shape [2], a
  /// negative epoch or an index outside [0, batches_per_epoch()).
  void load_state(const at::Tensor& state);
  /// Back to epoch 0, batch 0.
  void reset();
  const LoaderOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace data
}  // namespace manifold_diffusion
