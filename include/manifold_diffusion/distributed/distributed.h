#pragma once
/// \file
/// Data-parallel training on LibTorch's distributed engine, c10d: a process group (Gloo on the CPU,
/// NCCL on GPUs when LibTorch has it) met through a TCPStore and configured from the variables that
/// `torchrun` and cluster schedulers set (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT),
/// and a gradient synchroniser that all-reduces gradients in buckets while backward still runs.
/// Guide: docs/distributed.md.
///
/// Example (one process of `scripts/launch.sh -n 2 ./my_trainer`):
/// \code
///   auto comm = std::make_shared<mdiff::Communicator>(mdiff::DistributedOptions::from_environment());
///   // Each rank draws the same global batches of 256 and keeps its 256 / world_size rows.
///   auto source = mdiff::random_batches(points, {}, 256, /*seed=*/1, mdiff::Shard::of(*comm));
///   mdiff::Trainer trainer(opts, net.ptr(), mdiff::network_function(net), schedule, {}, source);
///   trainer.distribute(comm);  // rank 0's weights everywhere; gradients averaged every step
///   trainer.resume();          // rank 0 reads the checkpoint and sends it to the others
///   trainer.fit();             // logs and checkpoints are written by rank 0 only
/// \endcode

#include <manifold_diffusion/core/enum.h>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <torch/arg.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace torch {
namespace nn {
class Module;
}  // namespace nn
}  // namespace torch

namespace manifold_diffusion {

/// Which c10d process group carries the collectives.
enum class DistributedBackend {
  Auto,  ///< NCCL when it is compiled in and CUDA is available, Gloo otherwise.
  Gloo,  ///< ProcessGroupGloo: CPU tensors (the only one on CPU-only LibTorch builds).
  NCCL,  ///< ProcessGroupNCCL: CUDA tensors, one GPU per process (cuda:LOCAL_RANK).
};

template <>
struct EnumTraits<DistributedBackend> {
  static constexpr const char* type_name = "DistributedBackend";
  static constexpr EnumEntry<DistributedBackend> entries[] = {
      {DistributedBackend::Auto, "auto"}, {DistributedBackend::Gloo, "gloo"}, {DistributedBackend::NCCL, "nccl"}};
};

/// Where a process sits in the job and how it meets the others.
///
/// Example:
/// \code
///   auto o = mdiff::DistributedOptions().rank(1).world_size(2).master_port(29600).timeout_seconds(60);
///   auto e = mdiff::DistributedOptions::from_environment();   // what torchrun or launch.sh set
/// \endcode
struct DistributedOptions {
  /// This process's index, 0 .. world_size - 1. Rank 0 hosts the TCPStore (unless the launcher's
  /// agent hosts it) and writes logs and checkpoints.
  TORCH_ARG(int64_t, rank) = 0;
  TORCH_ARG(int64_t, world_size) = 1;
  /// Index of the process on its machine: its GPU with NCCL.
  TORCH_ARG(int64_t, local_rank) = 0;
  /// Address and port of the TCPStore (rank 0's machine).
  TORCH_ARG(std::string, master_addr) = "127.0.0.1";
  TORCH_ARG(int64_t, master_port) = 29500;
  TORCH_ARG(DistributedBackend, backend) = DistributedBackend::Auto;
  /// Limit for the rendezvous and for every collective: a peer that died or hangs makes the others
  /// fail with an error after at most this long (a peer whose process is gone is noticed at once).
  TORCH_ARG(double, timeout_seconds) = 300.0;
  /// The TCPStore is hosted by the launcher's agent (torchrun sets TORCHELASTIC_USE_AGENT_STORE):
  /// every rank connects as a client.
  TORCH_ARG(bool, agent_store) = false;

 public:
  /// Reads RANK, WORLD_SIZE, LOCAL_RANK (default: RANK), MASTER_ADDR (default 127.0.0.1),
  /// MASTER_PORT (default 29500), TORCHELASTIC_USE_AGENT_STORE, and MDIFF_DIST_BACKEND
  /// (auto/gloo/nccl) and MDIFF_DIST_TIMEOUT (seconds). Without RANK and WORLD_SIZE: a job of one.
  /// A malformed value is an error naming the variable and the value.
  static DistributedOptions from_environment();
  /// Fails with a message naming the bad option.
  void validate() const;
};

/// True when the library was built with c10d's ProcessGroupGloo.
bool distributed_available();
/// True when the library was built with c10d's ProcessGroupNCCL.
bool nccl_available();

/// One process's membership of a data-parallel job: a c10d process group and its store. All
/// collectives are blocking unless named async, run on the tensors in place, and must be called by
/// every rank in the same order. A failed collective (a dead peer, a timeout) throws a c10::Error
/// naming the rank, the operation and the cause; the group cannot be used afterwards.
///
/// Example:
/// \code
///   mdiff::Communicator comm(mdiff::DistributedOptions::from_environment());
///   at::Tensor x = at::ones({4});
///   comm.all_reduce_sum(x);                      // x == world_size everywhere
///   comm.check_same(step, "resumed step");       // fails on every rank when ranks disagree
/// \endcode
class Communicator {
 public:
  explicit Communicator(DistributedOptions options);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int64_t rank() const;
  int64_t world_size() const;
  int64_t local_rank() const;
  /// The backend in use (never Auto).
  DistributedBackend backend() const;
  /// Where the tensors handed to collectives must live: CPU for Gloo, cuda:local_rank for NCCL.
  c10::Device device() const;
  const DistributedOptions& options() const;

  /// A collective in flight; wait() blocks until it is done and rethrows its failure.
  class Pending {
   public:
    Pending();
    ~Pending();
    Pending(Pending&&) noexcept;
    Pending& operator=(Pending&&) noexcept;
    void wait();
    bool valid() const;

   private:
    friend class Communicator;
    struct Impl;
    std::unique_ptr<Impl> impl_;
  };

  /// Sums `tensor` over the ranks, in place.
  void all_reduce_sum(at::Tensor& tensor);
  /// Starts a sum over the ranks of `tensor` in place; the tensor must not be touched until wait().
  Pending all_reduce_sum_async(at::Tensor tensor, const std::string& what = "all_reduce");
  /// Element-wise maximum over the ranks, in place.
  void all_reduce_max(at::Tensor& tensor);
  /// Copies root's tensors into every rank's (same shapes and dtypes everywhere).
  void broadcast(std::vector<at::Tensor>& tensors, int64_t root = 0);
  void barrier();
  /// True on every rank when `flag` is true on any rank.
  bool any(bool flag);
  /// Fails on every rank, naming `what` and the values, unless all ranks pass the same value.
  void check_same(int64_t value, const std::string& what);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Copies root's values into every rank's `targets`, in place, whatever their device and layout
/// (the same number and sizes on every rank; checked).
///
/// Example:
/// \code
///   std::vector<at::Tensor> state{weights, step_counter};
///   mdiff::broadcast_tensors(comm, state);   // rank 0's values everywhere
/// \endcode
void broadcast_tensors(Communicator& comm, const std::vector<at::Tensor>& targets, int64_t root = 0);

/// Copies rank 0's parameters and buffers into every rank's module (names and shapes must agree).
void broadcast_module(Communicator& comm, torch::nn::Module& module, int64_t root = 0);

/// A data-parallel shard: which part of each global batch this process takes.
///
/// Example:
/// \code
///   mdiff::Shard s = mdiff::Shard::of(comm);   // {comm.rank(), comm.world_size()}
///   mdiff::Shard whole;                        // {0, 1}: the whole batch
/// \endcode
struct Shard {
  int64_t index = 0;
  int64_t count = 1;
  static Shard of(const Communicator& comm) { return Shard{comm.rank(), comm.world_size()}; }
  /// Fails unless 0 <= index < count.
  void validate() const;
};

/// Options of GradientSync.
///
/// Example:
/// \code
///   auto o = mdiff::GradientSyncOptions().bucket_mb(25);
/// \endcode
struct GradientSyncOptions {
  /// Gradient bytes per all-reduce bucket (parameters are assigned in reverse order of
  /// registration, roughly the order backward produces their gradients).
  TORCH_ARG(double, bucket_mb) = 25.0;
  /// Start a bucket's all-reduce as soon as backward has produced all its gradients (true), or
  /// all-reduce every bucket after backward (false).
  TORCH_ARG(bool, overlap) = true;

 public:
  void validate() const;
};

/// Averages gradients over the ranks of a Communicator: bucketed all-reduces launched from
/// gradient hooks while backward is still running, in bucket order on every rank.
///
/// Use: arm() before the backward whose gradients should be averaged (the last micro-batch of an
/// accumulation), finish() after it; then every parameter's .grad() holds the mean over the ranks
/// of its accumulated gradient (zeros where a parameter received none).
///
/// Example:
/// \code
///   mdiff::GradientSync sync(comm, net->parameters());
///   sync.arm();
///   loss.backward();
///   sync.finish();      // grads averaged over the ranks
///   optimizer.step();
/// \endcode
class GradientSync {
 public:
  GradientSync(std::shared_ptr<Communicator> comm, std::vector<at::Tensor> parameters,
               GradientSyncOptions options = {});
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  void arm();
  void finish();
  int64_t num_buckets() const;
  /// All-reduces started from hooks, during backward, by the last finish() (the rest started in it).
  int64_t overlapped_buckets() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace manifold_diffusion
