#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/data/loader.h>

#include <ATen/ATen.h>

#include <condition_variable>
#include <deque>
#include <exception>
#include <limits>
#include <map>
#include <mutex>
#include <numeric>
#include <thread>
#include <utility>
#include <vector>

namespace manifold_diffusion {
namespace data {
namespace {

// Keeps the seeds of the permutations and of the transforms apart.
constexpr uint64_t kTransformSalt = 0x6c6f616465727466ULL;

uint64_t epoch_seed(uint64_t seed, int64_t epoch) { return sample_seed(seed, epoch); }

uint64_t transform_seed(uint64_t seed, int64_t epoch, int64_t index) {
  return sample_seed(sample_seed(seed ^ kTransformSalt, epoch), index);
}

// Fisher-Yates driven by SplitMix64: the same order on every platform and LibTorch version.
std::vector<int64_t> permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  uint64_t state = mix_seed(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    state = mix_seed(state);
    const auto j = static_cast<int64_t>(state % static_cast<uint64_t>(i + 1));
    std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(j)]);
  }
  return perm;
}

}  // namespace

void LoaderOptions::validate() const {
  check_positive(batch_size_, "LoaderOptions::batch_size");
  check_non_negative(num_workers_, "LoaderOptions::num_workers");
  MD_CHECK_VALUE(num_workers_ <= 256, "LoaderOptions::num_workers must be at most 256, got ", num_workers_);
  check_positive(prefetch_, "LoaderOptions::prefetch");
  check_positive(num_shards_, "LoaderOptions::num_shards");
  MD_CHECK_VALUE(shard_index_ >= 0 && shard_index_ < num_shards_, "LoaderOptions::shard_index must be in [0, ",
                 num_shards_, "), got ", shard_index_);
  MD_CHECK_VALUE(batch_size_ % num_shards_ == 0, "LoaderOptions: batch_size ", batch_size_,
                 " must be divisible by num_shards ", num_shards_);
  MD_CHECK_VALUE(num_shards_ == 1 || drop_last_, "LoaderOptions: num_shards ", num_shards_,
                 " needs drop_last (every shard's batches must have the same size)");
}

struct TensorLoader::Impl {
  Impl(at::Tensor data_, at::Tensor labels_, LoaderOptions options_)
      : data(std::move(data_)), labels(std::move(labels_)), options(std::move(options_)) {
    options.validate();
    check_defined(data, "TensorLoader: data");
    MD_CHECK_VALUE(data.dim() >= 1, "TensorLoader: data must have a sample dimension, got shape ",
                   shape_string(data));
    n = data.size(0);
    MD_CHECK_VALUE(n > 0, "TensorLoader: data must hold at least one sample, got shape ", shape_string(data));
    if (labels.defined()) {
      MD_CHECK_VALUE(labels.dim() == 1 && labels.size(0) == n, "TensorLoader: labels must have shape [", n,
                     "], got ", shape_string(labels));
      check_same_device(data, "data", labels, "labels");
    }
    const int64_t b = options.batch_size();
    per_epoch = options.drop_last() ? n / b : (n + b - 1) / b;
    MD_CHECK_VALUE(per_epoch > 0, "TensorLoader: drop_last with batch_size ", b, " larger than the ", n,
                   " samples leaves no batch");
  }

  ~Impl() { stop_workers(); }

  // Indices of epoch `epoch` in visiting order, cached for the epochs in use.
  std::shared_ptr<const std::vector<int64_t>> order(int64_t epoch) {
    std::lock_guard<std::mutex> lock(order_mutex);
    for (const auto& entry : order_cache) {
      if (entry.first == epoch) return entry.second;
    }
    auto perm = std::make_shared<const std::vector<int64_t>>(permutation(n, epoch_seed(options.seed(), epoch)));
    order_cache.emplace_back(epoch, perm);
    if (order_cache.size() > 3) order_cache.pop_front();
    return perm;
  }

  Batch assemble(int64_t position) {
    const int64_t epoch = position / per_epoch;
    const int64_t index = position % per_epoch;
    const int64_t shard_rows = options.batch_size() / options.num_shards();
    const int64_t start = index * options.batch_size() + options.shard_index() * shard_rows;
    const int64_t count = options.num_shards() == 1 ? std::min(options.batch_size(), n - start) : shard_rows;
    at::Tensor idx;
    if (options.shuffle()) {
      const auto perm = order(epoch);
      idx = at::tensor(at::ArrayRef<int64_t>(perm->data() + start, static_cast<size_t>(count)), at::kLong);
    } else {
      idx = at::arange(start, start + count, at::kLong);
    }
    idx = idx.to(data.device());
    Batch batch;
    batch.data = data.index_select(0, idx);
    if (labels.defined()) batch.labels = labels.index_select(0, idx);
    batch.epoch = epoch;
    batch.index = index;
    if (options.transform()) {
      uint64_t seed = transform_seed(options.seed(), epoch, index);
      if (options.num_shards() > 1) seed = sample_seed(seed, options.shard_index());
      at::Generator gen = make_generator(seed);
      batch = options.transform()(std::move(batch), gen);
    }
    return batch;
  }

  void start_workers() {
    stopping = false;
    next_task = position;
    const int64_t workers = options.num_workers();
    threads.reserve(static_cast<size_t>(workers));
    for (int64_t i = 0; i < workers; ++i) {
      threads.emplace_back([this] { work(); });
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stopping = true;
    }
    work_cv.notify_all();
    for (auto& t : threads) {
      if (t.joinable()) t.join();
    }
    threads.clear();
    ready.clear();
    stopping = false;
  }

  void work() {
    const int64_t capacity = options.num_workers() * options.prefetch();
    while (true) {
      int64_t task = 0;
      {
        std::unique_lock<std::mutex> lock(mutex);
        work_cv.wait(lock, [&] { return stopping || next_task < position + capacity; });
        if (stopping) return;
        task = next_task++;
      }
      Slot slot;
      try {
        slot.batch = assemble(task);
      } catch (...) {
        slot.error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (stopping) return;
        ready.emplace(task, std::move(slot));
      }
      ready_cv.notify_all();
    }
  }

  Batch next() {
    if (options.num_workers() == 0) {
      Batch b = assemble(position);
      ++position;
      return b;
    }
    if (threads.empty()) start_workers();
    Slot slot;
    {
      std::unique_lock<std::mutex> lock(mutex);
      ready_cv.wait(lock, [&] { return ready.count(position) > 0; });
      auto it = ready.find(position);
      slot = std::move(it->second);
      ready.erase(it);
      if (!slot.error) ++position;
    }
    if (slot.error) {
      // The position stays at the failed batch; the workers restart from it on the next call.
      stop_workers();
      std::rethrow_exception(slot.error);
    }
    work_cv.notify_all();
    return std::move(slot.batch);
  }

  struct Slot {
    Batch batch;
    std::exception_ptr error;
  };

  at::Tensor data;
  at::Tensor labels;
  LoaderOptions options;
  int64_t n = 0;
  int64_t per_epoch = 0;
  // Linear position of the next batch the consumer takes: epoch * per_epoch + index.
  int64_t position = 0;

  std::mutex order_mutex;
  std::deque<std::pair<int64_t, std::shared_ptr<const std::vector<int64_t>>>> order_cache;

  // Guards position (while workers run), next_task, ready and stopping.
  std::mutex mutex;
  std::condition_variable work_cv;
  std::condition_variable ready_cv;
  std::vector<std::thread> threads;
  bool stopping = false;
  int64_t next_task = 0;
  std::map<int64_t, Slot> ready;
};

TensorLoader::TensorLoader(at::Tensor data, at::Tensor labels, LoaderOptions options)
    : impl_(std::make_unique<Impl>(std::move(data), std::move(labels), std::move(options))) {}

TensorLoader::TensorLoader(at::Tensor data, LoaderOptions options)
    : TensorLoader(std::move(data), at::Tensor(), std::move(options)) {}

TensorLoader::~TensorLoader() = default;
TensorLoader::TensorLoader(TensorLoader&&) noexcept = default;
TensorLoader& TensorLoader::operator=(TensorLoader&&) noexcept = default;

Batch TensorLoader::next() { return impl_->next(); }

int64_t TensorLoader::batches_per_epoch() const { return impl_->per_epoch; }

int64_t TensorLoader::size() const { return impl_->n; }

at::Tensor TensorLoader::state() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const int64_t p = impl_->position;
  return at::tensor(std::vector<int64_t>{p / impl_->per_epoch, p % impl_->per_epoch}, at::kLong);
}

void TensorLoader::load_state(const at::Tensor& state) {
  check_defined(state, "TensorLoader::load_state: state");
  check_dtype(state, "TensorLoader::load_state: state", at::kLong);
  check_shape(state, "TensorLoader::load_state: state", {2});
  const at::Tensor s = state.cpu();
  const int64_t epoch = s[0].item<int64_t>();
  const int64_t index = s[1].item<int64_t>();
  const int64_t per_epoch = impl_->per_epoch;
  MD_CHECK_VALUE(epoch >= 0 && epoch <= std::numeric_limits<int64_t>::max() / per_epoch - 1,
                 "TensorLoader::load_state: epoch must be non-negative, got ", epoch);
  MD_CHECK_VALUE(index >= 0 && index < per_epoch, "TensorLoader::load_state: batch index must be in [0, ",
                 per_epoch, "), got ", index);
  impl_->stop_workers();
  impl_->position = epoch * per_epoch + index;
}

void TensorLoader::reset() {
  impl_->stop_workers();
  impl_->position = 0;
}

const LoaderOptions& TensorLoader::options() const { return impl_->options; }

}  // namespace data
}  // namespace manifold_diffusion
