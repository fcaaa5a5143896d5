#include "md_build_config.h"

#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/distributed/distributed.h>

#include <ATen/ATen.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/nn/module.h>
#include <torch/version.h>

#ifdef MD_WITH_DISTRIBUTED
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef MD_WITH_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#include <c10/cuda/CUDAGuard.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <string>

namespace manifold_diffusion {

namespace {

#ifdef MD_WITH_DISTRIBUTED
// LibTorch 2.x split the collectives' interface (Backend) from the front-end ProcessGroup; both
// Gloo and NCCL groups are Backends there and ProcessGroups in 1.x.
#if TORCH_VERSION_MAJOR >= 2
using CollectiveGroup = c10d::Backend;
#else
using CollectiveGroup = c10d::ProcessGroup;
#endif
#endif

std::string env_string(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

int64_t parse_env_int(const char* name, const std::string& text) {
  size_t used = 0;
  int64_t value = 0;
  bool ok = !text.empty();
  if (ok) {
    try {
      value = std::stoll(text, &used, 10);
    } catch (const std::exception&) {
      ok = false;
    }
  }
  MD_CHECK_VALUE(ok && used == text.size(), "DistributedOptions::from_environment: ", name,
                 " must be an integer, got '", text, "'");
  return value;
}

bool is_loopback(const std::string& addr) {
  return addr == "localhost" || addr == "::1" || addr.rfind("127.", 0) == 0;
}

std::string rank_prefix(int64_t rank, int64_t world) {
  return "distributed (rank " + std::to_string(rank) + " of " + std::to_string(world) + ")";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Options

DistributedOptions DistributedOptions::from_environment() {
  DistributedOptions o;
  const std::string rank = env_string("RANK");
  const std::string world = env_string("WORLD_SIZE");
  MD_CHECK_VALUE(rank.empty() == world.empty(), "DistributedOptions::from_environment: RANK and WORLD_SIZE must be ",
                 "set together (RANK='", rank, "', WORLD_SIZE='", world, "')");
  if (!rank.empty()) {
    o.rank(parse_env_int("RANK", rank));
    o.world_size(parse_env_int("WORLD_SIZE", world));
  }
  const std::string local = env_string("LOCAL_RANK");
  o.local_rank(local.empty() ? o.rank() : parse_env_int("LOCAL_RANK", local));
  const std::string addr = env_string("MASTER_ADDR");
  if (!addr.empty()) o.master_addr(addr);
  const std::string port = env_string("MASTER_PORT");
  if (!port.empty()) o.master_port(parse_env_int("MASTER_PORT", port));
  const std::string backend = env_string("MDIFF_DIST_BACKEND");
  if (!backend.empty()) o.backend(enum_from_string<DistributedBackend>(backend));
  const std::string timeout = env_string("MDIFF_DIST_TIMEOUT");
  if (!timeout.empty()) {
    size_t used = 0;
    double t = std::numeric_limits<double>::quiet_NaN();
    try {
      t = std::stod(timeout, &used);
    } catch (const std::exception&) {
    }
    MD_CHECK_VALUE(used == timeout.size() && std::isfinite(t), "DistributedOptions::from_environment: ",
                   "MDIFF_DIST_TIMEOUT must be a number of seconds, got '", timeout, "'");
    o.timeout_seconds(t);
  }
  const std::string agent = env_string("TORCHELASTIC_USE_AGENT_STORE");
  o.agent_store(agent == "True" || agent == "true" || agent == "1");
  o.validate();
  return o;
}

void DistributedOptions::validate() const {
  const char* w = "DistributedOptions";
  MD_CHECK_VALUE(world_size() >= 1, w, ": world_size must be >= 1, got ", world_size());
  MD_CHECK_VALUE(rank() >= 0 && rank() < world_size(), w, ": rank must be in [0, world_size) = [0, ", world_size(),
                 "), got ", rank());
  MD_CHECK_VALUE(local_rank() >= 0, w, ": local_rank must be >= 0, got ", local_rank());
  MD_CHECK_VALUE(master_port() >= 1 && master_port() <= 65535, w, ": master_port must be in [1, 65535], got ",
                 master_port());
  MD_CHECK_VALUE(!master_addr().empty(), w, ": master_addr is empty");
  MD_CHECK_VALUE(std::isfinite(timeout_seconds()) && timeout_seconds() > 0, w,
                 ": timeout_seconds must be positive, got ", timeout_seconds());
}

bool distributed_available() {
#ifdef MD_WITH_DISTRIBUTED
  return true;
#else
  return false;
#endif
}

bool nccl_available() {
#ifdef MD_WITH_NCCL
  return true;
#else
  return false;
#endif
}

void Shard::validate() const {
  MD_CHECK_VALUE(count >= 1, "Shard: count must be >= 1, got ", count);
  MD_CHECK_VALUE(index >= 0 && index < count, "Shard: index must be in [0, ", count, "), got ", index);
}

void GradientSyncOptions::validate() const {
  MD_CHECK_VALUE(std::isfinite(bucket_mb()) && bucket_mb() > 0, "GradientSyncOptions: bucket_mb must be positive, got ",
                 bucket_mb());
}

// ---------------------------------------------------------------------------------------------
// Communicator

struct Communicator::Impl {
  DistributedOptions options;
  DistributedBackend backend = DistributedBackend::Gloo;
  c10::Device device{c10::kCPU};
  std::string who;
  // Set by any failed collective, also one waited on through a Pending.
  std::shared_ptr<std::atomic<bool>> failed = std::make_shared<std::atomic<bool>>(false);
#ifdef MD_WITH_DISTRIBUTED
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<CollectiveGroup> group;
#endif

  std::chrono::milliseconds timeout() const {
    return std::chrono::milliseconds(static_cast<int64_t>(std::ceil(options.timeout_seconds() * 1000.0)));
  }
};

struct Communicator::Pending::Impl {
#ifdef MD_WITH_DISTRIBUTED
  c10::intrusive_ptr<c10d::Work> work;
#endif
  std::string what;
  std::string who;
  double timeout_seconds = 0;
  std::shared_ptr<std::atomic<bool>> failed;
};

Communicator::Pending::Pending() = default;
Communicator::Pending::~Pending() = default;
Communicator::Pending::Pending(Pending&&) noexcept = default;
Communicator::Pending& Communicator::Pending::operator=(Pending&&) noexcept = default;
bool Communicator::Pending::valid() const { return impl_ != nullptr; }

namespace {

[[noreturn]] void collective_failed(const std::string& who, const std::string& what, double timeout,
                                    const std::string& cause) {
  MD_CHECK(false, who, ": '", what, "' failed: ", cause,
           " (a peer process has probably exited or the network failed; collectives time out after ", timeout,
           " s)");
  std::abort();  // unreachable
}

#ifdef MD_WITH_DISTRIBUTED
void wait_work(const c10::intrusive_ptr<c10d::Work>& work, const std::string& who, const std::string& what,
               double timeout) {
  try {
    work->wait();
  } catch (const c10::Error& e) {
    collective_failed(who, what, timeout, e.what_without_backtrace());
  } catch (const std::exception& e) {
    collective_failed(who, what, timeout, e.what());
  }
}
#endif

}  // namespace

void Communicator::Pending::wait() {
  if (!impl_) return;
  std::unique_ptr<Impl> impl = std::move(impl_);  // waited on once, even when it fails
#ifdef MD_WITH_DISTRIBUTED
  try {
    if (impl->work) wait_work(impl->work, impl->who, impl->what, impl->timeout_seconds);
  } catch (...) {
    if (impl->failed) *impl->failed = true;
    throw;
  }
#endif
}

Communicator::Communicator(DistributedOptions options) : impl_(std::make_unique<Impl>()) {
  options.validate();
  impl_->options = options;
  impl_->who = rank_prefix(options.rank(), options.world_size());
  DistributedBackend backend = options.backend();
  if (backend == DistributedBackend::Auto) {
    backend = nccl_available() && at::hasCUDA() ? DistributedBackend::NCCL : DistributedBackend::Gloo;
  }
  MD_CHECK_VALUE(backend != DistributedBackend::NCCL || nccl_available(), "Communicator: backend nccl is not ",
                 "compiled into this build (LibTorch without NCCL, or nccl.h not found); use gloo");
  impl_->backend = backend;
  if (backend == DistributedBackend::NCCL) {
    MD_CHECK_VALUE(at::hasCUDA(), "Communicator: backend nccl needs CUDA, which is not available");
    const int64_t gpus = static_cast<int64_t>(at::detail::getCUDAHooks().getNumGPUs());
    MD_CHECK_VALUE(options.local_rank() < gpus, "Communicator: local_rank ", options.local_rank(),
                   " has no GPU (", gpus, " visible); one process per GPU");
    impl_->device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(options.local_rank()));
  }
  if (options.world_size() == 1) return;  // a job of one: every collective is the identity

#ifdef MD_WITH_DISTRIBUTED
  const auto timeout = impl_->timeout();
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(options.master_port());
  so.isServer = options.rank() == 0 && !options.agent_store();
  so.numWorkers = static_cast<std::size_t>(options.world_size());
  so.waitWorkers = false;
  so.timeout = timeout;
  try {
    auto tcp = c10::make_intrusive<c10d::TCPStore>(options.master_addr(), so);
    impl_->store = c10::make_intrusive<c10d::PrefixStore>("mdiff", tcp);
  } catch (const std::exception& e) {
    MD_CHECK(false, impl_->who, ": cannot ", so.isServer ? "host" : "reach", " the TCPStore at ",
             options.master_addr(), ":", options.master_port(), " within ", options.timeout_seconds(), " s: ", e.what());
  }
  try {
    if (backend == DistributedBackend::Gloo) {
      auto go = c10d::ProcessGroupGloo::Options::create(timeout);
      const std::string ifname = env_string("GLOO_SOCKET_IFNAME");
      if (!ifname.empty()) {
        go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      } else if (is_loopback(options.master_addr())) {
        go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        go->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, static_cast<int>(options.rank()),
                                                                 static_cast<int>(options.world_size()), go);
    } else {
#ifdef MD_WITH_NCCL
      // Blocking waits: a dead or hung peer then fails wait() with an error after the timeout,
      // instead of leaving the CPU to hang at the next synchronisation (or the watchdog aborting).
      ::setenv("TORCH_NCCL_BLOCKING_WAIT", "1", 0);
      ::setenv("NCCL_BLOCKING_WAIT", "1", 0);
      c10::cuda::set_device(static_cast<c10::DeviceIndex>(options.local_rank()));
      auto no = c10d::ProcessGroupNCCL::Options::create();
      no->timeout = timeout;
      impl_->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, static_cast<int>(options.rank()),
                                                                 static_cast<int>(options.world_size()), no);
#endif
    }
  } catch (const c10::Error& e) {
    MD_CHECK(false, impl_->who, ": the ", to_string(backend), " process group did not form within ",
             options.timeout_seconds(), " s: ", e.what_without_backtrace());
  } catch (const std::exception& e) {
    MD_CHECK(false, impl_->who, ": the ", to_string(backend), " process group did not form within ",
             options.timeout_seconds(), " s: ", e.what());
  }
  // Every rank is there: meet once so that a rank that cannot reach the others fails here, not in
  // the first gradient all-reduce.
  barrier();
#else
  MD_CHECK(false, "Communicator: world_size ", options.world_size(), " needs c10d, and this build of the library ",
           "has no distributed support (LibTorch without c10d headers, or Gloo's headers not found: install ",
           "libgloo-dev and reconfigure)");
#endif
}

Communicator::~Communicator() = default;

int64_t Communicator::rank() const { return impl_->options.rank(); }
int64_t Communicator::world_size() const { return impl_->options.world_size(); }
int64_t Communicator::local_rank() const { return impl_->options.local_rank(); }
DistributedBackend Communicator::backend() const { return impl_->backend; }
c10::Device Communicator::device() const { return impl_->device; }
const DistributedOptions& Communicator::options() const { return impl_->options; }

namespace {

void check_collective_tensor(const at::Tensor& t, const c10::Device& device, const std::string& op) {
  MD_CHECK_VALUE(t.defined(), "Communicator::", op, ": the tensor is undefined");
  MD_CHECK_VALUE(t.device() == device, "Communicator::", op, ": tensors must be on ", device, " for this backend, got ",
                 t.device());
  MD_CHECK_VALUE(t.is_contiguous(), "Communicator::", op, ": the tensor must be contiguous");
}

}  // namespace

Communicator::Pending Communicator::all_reduce_sum_async(at::Tensor tensor, const std::string& what) {
  check_collective_tensor(tensor, impl_->device, "all_reduce_sum_async");
  Pending p;
  if (world_size() == 1) return p;
#ifdef MD_WITH_DISTRIBUTED
  MD_CHECK(!*impl_->failed, impl_->who, ": the process group failed earlier and cannot be used");
  p.impl_ = std::make_unique<Pending::Impl>();
  p.impl_->what = what;
  p.impl_->who = impl_->who;
  p.impl_->timeout_seconds = impl_->options.timeout_seconds();
  p.impl_->failed = impl_->failed;
  std::vector<at::Tensor> ts{std::move(tensor)};
  c10d::AllreduceOptions opts;
  opts.reduceOp = c10d::ReduceOp::SUM;
  try {
    p.impl_->work = impl_->group->allreduce(ts, opts);
  } catch (const std::exception& e) {
    *impl_->failed = true;
    collective_failed(impl_->who, what, impl_->options.timeout_seconds(), e.what());
  }
#endif
  return p;
}

void Communicator::all_reduce_sum(at::Tensor& tensor) {
  check_collective_tensor(tensor, impl_->device, "all_reduce_sum");
  all_reduce_sum_async(tensor, "all_reduce_sum").wait();  // a failure marks the group failed
}

void Communicator::all_reduce_max(at::Tensor& tensor) {
  check_collective_tensor(tensor, impl_->device, "all_reduce_max");
  if (world_size() == 1) return;
#ifdef MD_WITH_DISTRIBUTED
  MD_CHECK(!*impl_->failed, impl_->who, ": the process group failed earlier and cannot be used");
  std::vector<at::Tensor> ts{tensor};
  c10d::AllreduceOptions opts;
  opts.reduceOp = c10d::ReduceOp::MAX;
  try {
    wait_work(impl_->group->allreduce(ts, opts), impl_->who, "all_reduce_max", impl_->options.timeout_seconds());
  } catch (...) {
    *impl_->failed = true;
    throw;
  }
#endif
}

void Communicator::broadcast(std::vector<at::Tensor>& tensors, int64_t root) {
  MD_CHECK_VALUE(root >= 0 && root < world_size(), "Communicator::broadcast: root must be in [0, ", world_size(),
                 "), got ", root);
  for (const auto& t : tensors) check_collective_tensor(t, impl_->device, "broadcast");
  if (world_size() == 1 || tensors.empty()) return;
#ifdef MD_WITH_DISTRIBUTED
  MD_CHECK(!*impl_->failed, impl_->who, ": the process group failed earlier and cannot be used");
  c10d::BroadcastOptions opts;
  opts.rootRank = root;
  try {
    // One tensor per call: Gloo's and NCCL's broadcasts take one tensor per device.
    for (auto& t : tensors) {
      std::vector<at::Tensor> one{t};
      wait_work(impl_->group->broadcast(one, opts), impl_->who, "broadcast", impl_->options.timeout_seconds());
    }
  } catch (...) {
    *impl_->failed = true;
    throw;
  }
#endif
}

void Communicator::barrier() {
  if (world_size() == 1) return;
  // An all-reduce of one element: the same guarantee as a barrier, with the collective's timeout
  // and error reporting, on both backends.
  at::Tensor t = at::zeros({1}, at::TensorOptions(at::kFloat).device(impl_->device));
  all_reduce_sum(t);
}

bool Communicator::any(bool flag) {
  if (world_size() == 1) return flag;
  at::Tensor t = at::full({1}, flag ? 1.0f : 0.0f, at::TensorOptions(at::kFloat).device(impl_->device));
  all_reduce_max(t);
  return t.item<float>() > 0.5f;
}

void Communicator::check_same(int64_t value, const std::string& what) {
  if (world_size() == 1) return;
  // The maximum of v and of ~v (= ~minimum of v) in one exact int64 all-reduce.
  at::Tensor t = at::tensor({value, ~value}, at::TensorOptions(at::kLong)).to(impl_->device);
  all_reduce_max(t);
  const at::Tensor h = t.cpu();
  const int64_t hi = h[0].item<int64_t>();
  const int64_t lo = ~h[1].item<int64_t>();
  MD_CHECK(hi == lo, impl_->who, ": ranks disagree on ", what, ": values range from ", lo, " to ", hi, " (this rank: ",
           value, ")");
}

void broadcast_tensors(Communicator& comm, const std::vector<at::Tensor>& targets, int64_t root) {
  if (comm.world_size() == 1) return;
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> staged;
  for (const auto& t : targets) {
    MD_CHECK_VALUE(t.defined(), "broadcast_tensors: a tensor is undefined");
    staged.push_back(t.detach().to(comm.device()).contiguous().clone());
  }
  // Every rank must pass the same structure; a mismatch would pair tensors wrongly.
  comm.check_same(static_cast<int64_t>(staged.size()), "the number of tensors to broadcast");
  int64_t numel = 0;
  for (const auto& t : staged) numel += t.numel();
  comm.check_same(numel, "the number of elements to broadcast");
  comm.broadcast(staged, root);
  for (size_t i = 0; i < targets.size(); ++i) targets[i].detach().copy_(staged[i]);
}

void broadcast_module(Communicator& comm, torch::nn::Module& module, int64_t root) {
  std::vector<at::Tensor> targets;
  for (const auto& p : module.parameters(true)) targets.push_back(p);
  for (const auto& b : module.buffers(true)) {
    if (b.defined()) targets.push_back(b);
  }
  broadcast_tensors(comm, targets, root);
}

// ---------------------------------------------------------------------------------------------
// GradientSync

struct GradientSync::Impl {
  struct Slot {
    int64_t bucket = 0;
    int64_t offset = 0;
  };
  struct Bucket {
    at::Tensor flat;
    std::vector<int64_t> members;
    int64_t pending = 0;
    bool launched = false;
    Communicator::Pending work;
  };

  std::shared_ptr<Communicator> comm;
  GradientSyncOptions options;
  std::vector<at::Tensor> params;
  std::vector<Slot> slots;
  std::vector<char> filled;
  std::vector<Bucket> buckets;
  std::vector<unsigned> hooks;
  std::mutex mutex;
  bool armed = false;
  size_t next_launch = 0;
  int64_t overlapped = 0;
  // Per parameter: 1 when this rank has a gradient for it; summed over the ranks, 0 means no rank
  // has one and the parameter keeps an undefined gradient, as in a single process.
  at::Tensor has_grad;
  Communicator::Pending flags_work;

  void launch_in_order(bool from_hook) {
    while (next_launch < buckets.size() && buckets[next_launch].pending == 0 && !buckets[next_launch].launched) {
      Bucket& b = buckets[next_launch];
      b.launched = true;
      b.work = comm->all_reduce_sum_async(b.flat, "gradient all-reduce (bucket " + std::to_string(next_launch) + " of " +
                                                      std::to_string(buckets.size()) + ")");
      if (from_hook) ++overlapped;
      ++next_launch;
    }
  }

  void on_grad(int64_t i, const at::Tensor& grad) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!armed || filled[i]) return;
    at::NoGradGuard no_grad;
    const at::Tensor& p = params[i];
    Bucket& b = buckets[slots[i].bucket];
    at::Tensor dst = b.flat.narrow(0, slots[i].offset, p.numel()).view(p.sizes());
    const at::Tensor prev = p.grad();
    if (prev.defined()) {
      at::add_out(dst, prev, grad);
    } else {
      dst.copy_(grad);
    }
    filled[i] = 1;
    --b.pending;
    if (options.overlap()) launch_in_order(true);
  }
};

GradientSync::GradientSync(std::shared_ptr<Communicator> comm, std::vector<at::Tensor> parameters,
                           GradientSyncOptions options)
    : impl_(std::make_shared<Impl>()) {
  options.validate();
  MD_CHECK_VALUE(comm != nullptr, "GradientSync: comm is null");
  impl_->comm = std::move(comm);
  impl_->options = options;
  for (auto& p : parameters) {
    MD_CHECK_VALUE(p.defined(), "GradientSync: a parameter is undefined");
    if (!p.requires_grad()) continue;
    MD_CHECK_VALUE(at::isFloatingType(p.scalar_type()), "GradientSync: parameters must be floating point, got ",
                   p.scalar_type());
    MD_CHECK_VALUE(p.device() == impl_->comm->device(), "GradientSync: parameters must be on ", impl_->comm->device(),
                   " (the communicator's device), got ", p.device());
    impl_->params.push_back(p);
  }
  MD_CHECK_VALUE(!impl_->params.empty(), "GradientSync: no parameter requires a gradient");
  const auto& params = impl_->params;
  const int64_t n = static_cast<int64_t>(params.size());
  impl_->slots.resize(static_cast<size_t>(n));
  impl_->filled.assign(static_cast<size_t>(n), 0);
  const double cap = options.bucket_mb() * 1024.0 * 1024.0;
  // Reverse registration order: the output layers' gradients come first in backward.
  std::vector<std::vector<int64_t>> groups;
  double bytes = 0;
  at::ScalarType dtype = params.back().scalar_type();
  for (int64_t i = n - 1; i >= 0; --i) {
    const at::Tensor& p = params[static_cast<size_t>(i)];
    const double pb = static_cast<double>(p.numel()) * static_cast<double>(p.element_size());
    if (groups.empty() || p.scalar_type() != dtype || (bytes > 0 && bytes + pb > cap)) {
      groups.emplace_back();
      bytes = 0;
      dtype = p.scalar_type();
    }
    groups.back().push_back(i);
    bytes += pb;
  }
  for (size_t b = 0; b < groups.size(); ++b) {
    Impl::Bucket bucket;
    int64_t offset = 0;
    for (int64_t i : groups[b]) {
      impl_->slots[static_cast<size_t>(i)] = Impl::Slot{static_cast<int64_t>(b), offset};
      offset += params[static_cast<size_t>(i)].numel();
    }
    bucket.members = groups[b];
    bucket.flat = at::zeros({offset}, params[static_cast<size_t>(groups[b].front())].options().requires_grad(false));
    impl_->buckets.push_back(std::move(bucket));
  }
  std::weak_ptr<Impl> weak = impl_;
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor p = params[static_cast<size_t>(i)];
    impl_->hooks.push_back(p.register_hook([weak, i](const at::Tensor& grad) {
      if (auto s = weak.lock()) s->on_grad(i, grad);
    }));
  }
}

GradientSync::~GradientSync() {
  for (size_t i = 0; i < impl_->hooks.size(); ++i) {
    try {
      impl_->params[i].remove_hook(impl_->hooks[i]);
    } catch (...) {
    }
  }
}

int64_t GradientSync::num_buckets() const { return static_cast<int64_t>(impl_->buckets.size()); }
int64_t GradientSync::overlapped_buckets() const { return impl_->overlapped; }

void GradientSync::arm() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  // Re-arming without finish() (after a failed backward) starts over, once the all-reduces still in
  // flight have ended (their buffers are about to be refilled); their errors are not this step's.
  for (auto& b : impl_->buckets) {
    try {
      b.work.wait();
    } catch (const c10::Error&) {
    }
  }
  impl_->flags_work = Communicator::Pending();
  for (auto& b : impl_->buckets) {
    b.pending = static_cast<int64_t>(b.members.size());
    b.launched = false;
  }
  std::fill(impl_->filled.begin(), impl_->filled.end(), 0);
  impl_->next_launch = 0;
  impl_->overlapped = 0;
  impl_->armed = true;
}

void GradientSync::finish() {
  Impl& s = *impl_;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    MD_CHECK(s.armed, "GradientSync::finish: not armed; call arm() before backward");
    s.armed = false;
    at::NoGradGuard no_grad;
    // Parameters that received no gradient in this backward: their accumulated gradient (or zero).
    std::vector<float> has(s.params.size(), 1.0f);
    for (auto& b : s.buckets) {
      if (b.pending == 0) continue;
      for (int64_t i : b.members) {
        if (s.filled[static_cast<size_t>(i)]) continue;
        const at::Tensor& p = s.params[static_cast<size_t>(i)];
        at::Tensor dst = b.flat.narrow(0, s.slots[static_cast<size_t>(i)].offset, p.numel()).view(p.sizes());
        if (p.grad().defined()) {
          dst.copy_(p.grad());
        } else {
          dst.zero_();
          has[static_cast<size_t>(i)] = 0.0f;
        }
        s.filled[static_cast<size_t>(i)] = 1;
      }
      b.pending = 0;
    }
    s.launch_in_order(false);
    s.has_grad = at::tensor(has, at::TensorOptions(at::kFloat)).to(s.comm->device());
    s.flags_work = s.comm->all_reduce_sum_async(s.has_grad, "gradient presence flags");
  }
  at::NoGradGuard no_grad;
  const double inv = 1.0 / static_cast<double>(s.comm->world_size());
  for (auto& b : s.buckets) b.work.wait();
  s.flags_work.wait();
  const at::Tensor flags = s.has_grad.cpu();
  const float* any_grad = flags.data_ptr<float>();
  for (auto& b : s.buckets) {
    b.flat.mul_(inv);
    for (int64_t i : b.members) {
      at::Tensor& p = s.params[static_cast<size_t>(i)];
      if (any_grad[i] == 0.0f) continue;  // no rank has a gradient: it stays undefined
      const at::Tensor src = b.flat.narrow(0, s.slots[static_cast<size_t>(i)].offset, p.numel()).view(p.sizes());
      if (p.grad().defined()) {
        p.mutable_grad().copy_(src);
      } else {
        p.mutable_grad() = src.clone();
      }
    }
  }
}

}  // namespace manifold_diffusion
