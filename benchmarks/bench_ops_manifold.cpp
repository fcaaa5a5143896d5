// q_sample_with_target, knn_sqdist_topk and project_local_pca: the native path against the
// float64 reference and against the unfused ATen composition the library used before. CPU
// timings use wall time; CUDA timings use CUDA events through manual time (compiled only with the
// CUDA kernels, run only with a GPU).
#include <manifold_diffusion/core/device.h>
#include <manifold_diffusion/ops/knn_topk.h>
#include <manifold_diffusion/ops/project_local_pca.h>
#include <manifold_diffusion/ops/q_sample_with_target.h>

#include <ATen/ATen.h>
#include <benchmark/benchmark.h>

#include <algorithm>
#include <string>
#include <utility>

#ifdef MD_BENCH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace {

using mdiff::ops::OpBackend;

// 0 = reference, 1 = native, 2 = unfused ATen composition, 3 = the matrix product alone (kNN: the
// floor any blocked search pays).
enum Variant { kReference = 0, kNative = 1, kUnfused = 2, kGemmOnly = 3 };

const char* variant_label(int64_t v) {
  switch (v) {
    case kReference:
      return "reference";
    case kNative:
      return "native";
    case kGemmOnly:
      return "gemm only";
    default:
      return "unfused";
  }
}

// Times fn() per iteration: wall time on the CPU, CUDA events on a GPU. One untimed call first
// (allocator, library handles and kernel loading).
template <typename Fn>
void run_timed(benchmark::State& state, bool cuda, Fn&& fn) {
  fn();
#ifdef MD_BENCH_CUDA
  if (cuda) {
    at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
    for (auto _ : state) {
      const auto stream = c10::cuda::getCurrentCUDAStream();
      start.record(stream);
      fn();
      stop.record(stream);
      stop.synchronize();
      state.SetIterationTime(start.elapsed_time(stop) / 1000.0);
    }
    return;
  }
#endif
  (void)cuda;
  for (auto _ : state) {
    fn();
  }
}

// ---- q_sample_with_target --------------------------------------------------------------------

struct QInputs {
  at::Tensor x0, noise, t, signal, noise_scale;
};

QInputs make_q_inputs(int64_t batch, int64_t channels, int64_t size, c10::Device device) {
  const at::Tensor ab = at::cumprod(1 - at::linspace(1e-4, 0.02, 1000, at::kDouble), 0);
  const auto opts = at::TensorOptions().device(device).dtype(at::kFloat);
  return {at::randn({batch, channels, size, size}).to(opts), at::randn({batch, channels, size, size}).to(opts),
          at::randint(0, 1000, {batch}, at::kLong).to(device), ab.sqrt().to(device), (1 - ab).sqrt().to(device)};
}

// What the training loss did before: per-sample coefficients broadcast, x_t and v separately.
std::pair<at::Tensor, at::Tensor> unfused_v_target(const QInputs& in) {
  const at::Tensor a = in.signal.index_select(0, in.t).to(in.x0.scalar_type()).view({-1, 1, 1, 1});
  const at::Tensor b = in.noise_scale.index_select(0, in.t).to(in.x0.scalar_type()).view({-1, 1, 1, 1});
  return {a * in.x0 + b * in.noise, a * in.noise - b * in.x0};
}

void q_target_case(benchmark::State& state, c10::Device device) {
  const auto in = make_q_inputs(state.range(0), state.range(1), state.range(2), device);
  const int64_t variant = state.range(3);
  run_timed(state, device.is_cuda(), [&] {
    if (variant == kUnfused) {
      benchmark::DoNotOptimize(unfused_v_target(in));
    } else {
      benchmark::DoNotOptimize(mdiff::ops::q_sample_with_target(
          in.x0, in.noise, in.t, in.signal, in.noise_scale, mdiff::ops::TrainingTarget::VPrediction,
          variant == kReference ? OpBackend::Reference : OpBackend::Native));
    }
  });
  // Read x0 and noise, write x_t and v.
  state.SetBytesProcessed(static_cast<int64_t>(4 * in.x0.numel() * in.x0.element_size()) * state.iterations());
  state.SetItemsProcessed(in.x0.numel() * state.iterations());
  state.SetLabel(std::string(variant_label(variant)) + " v_prediction");
}

// Arguments: batch, channels, image size, variant (0 reference, 1 native, 2 unfused).
void BM_QSampleTarget_CPU(benchmark::State& state) { q_target_case(state, c10::Device(c10::kCPU)); }
BENCHMARK(BM_QSampleTarget_CPU)
    ->ArgNames({"batch", "ch", "size", "variant"})
    ->Args({128, 1, 28, kReference})
    ->Args({128, 1, 28, kNative})
    ->Args({128, 1, 28, kUnfused})
    ->Unit(benchmark::kMicrosecond);

// ---- knn_sqdist_topk -------------------------------------------------------------------------

// The candidate search knn() did before: per block addmm(|q|^2 + |p|^2, q, p^T, -2), topk of the
// block, concatenation with the running candidates and topk again.
std::pair<at::Tensor, at::Tensor> unfused_knn(const at::Tensor& q, const at::Tensor& p, int64_t k) {
  const int64_t n = p.size(0);
  const int64_t cols_per_block = std::min<int64_t>(n, 65536);
  const int64_t rows_per_block = std::max<int64_t>(1, (int64_t{1} << 24) / cols_per_block);
  const at::Tensor pn = p.pow(2).sum(1);
  at::Tensor all_d = at::empty({q.size(0), k}, q.options());
  at::Tensor all_i = at::empty({q.size(0), k}, q.options().dtype(at::kLong));
  for (int64_t r0 = 0; r0 < q.size(0); r0 += rows_per_block) {
    const int64_t rows = std::min(rows_per_block, q.size(0) - r0);
    const at::Tensor qb = q.narrow(0, r0, rows);
    const at::Tensor qn = qb.pow(2).sum(1, /*keepdim=*/true);
    at::Tensor best_d;
    at::Tensor best_i;
    for (int64_t c0 = 0; c0 < n; c0 += cols_per_block) {
      const int64_t cols = std::min(cols_per_block, n - c0);
      const at::Tensor d2 = at::addmm(qn + pn.narrow(0, c0, cols).unsqueeze(0), qb, p.narrow(0, c0, cols).t(), 1, -2);
      auto top = d2.topk(std::min(k, cols), 1, /*largest=*/false, /*sorted=*/false);
      at::Tensor vals = std::get<0>(top);
      at::Tensor idx = std::get<1>(top) + c0;
      if (best_d.defined()) {
        vals = at::cat({best_d, vals}, 1);
        idx = at::cat({best_i, idx}, 1);
        auto merged = vals.topk(k, 1, /*largest=*/false, /*sorted=*/false);
        vals = std::get<0>(merged);
        idx = idx.gather(1, std::get<1>(merged));
      }
      best_d = vals;
      best_i = idx;
    }
    all_d.narrow(0, r0, rows).copy_(best_d);
    all_i.narrow(0, r0, rows).copy_(best_i);
  }
  return {all_d, all_i};
}

void knn_case(benchmark::State& state, c10::Device device) {
  const int64_t m = state.range(0);
  const int64_t n = state.range(1);
  const int64_t dims = state.range(2);
  const int64_t k = state.range(3);
  const int64_t variant = state.range(4);
  const auto opts = at::TensorOptions().device(device).dtype(at::kFloat);
  const at::Tensor points = at::randn({n, dims}).to(opts);
  const at::Tensor queries = at::randn({m, dims}).to(opts);
  run_timed(state, device.is_cuda(), [&] {
    if (variant == kUnfused) {
      benchmark::DoNotOptimize(unfused_knn(queries, points, k));
    } else if (variant == kGemmOnly) {
      benchmark::DoNotOptimize(at::mm(queries, points.t()));
    } else {
      benchmark::DoNotOptimize(mdiff::ops::knn_sqdist_topk(
          queries, points, k, variant == kReference ? OpBackend::Reference : OpBackend::Native));
    }
  });
  // Count distances, and the bytes of the inputs read once.
  state.SetItemsProcessed(m * n * state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>((m + n) * dims * 4) * state.iterations());
  state.SetLabel(std::string(variant_label(variant)) + " float32");
}

// Arguments: queries M, points N, dimension D, k, variant (0 reference, 1 native, 2 unfused).
void BM_KnnTopK_CPU(benchmark::State& state) { knn_case(state, c10::Device(c10::kCPU)); }
BENCHMARK(BM_KnnTopK_CPU)
    ->ArgNames({"M", "N", "D", "k", "variant"})
    ->Args({1024, 8192, 784, 10, kReference})
    ->Args({1024, 8192, 784, 10, kNative})
    ->Args({1024, 8192, 784, 10, kUnfused})
    ->Args({1024, 8192, 784, 10, kGemmOnly})
    ->Args({1024, 60000, 784, 10, kNative})
    ->Args({1024, 60000, 784, 10, kUnfused})
    ->Unit(benchmark::kMillisecond);

// ---- project_local_pca -----------------------------------------------------------------------

struct ProjInputs {
  at::Tensor x, centers, bases, assign;
};

ProjInputs make_proj_inputs(int64_t batch, int64_t dims, int64_t d, int64_t frames, c10::Device device) {
  const auto opts = at::TensorOptions().device(device).dtype(at::kFloat);
  const at::Tensor bases = std::get<0>(at::linalg_qr(at::randn({frames, dims, d}), "reduced")).transpose(1, 2);
  return {at::randn({batch, dims}).to(opts), at::randn({frames, dims}).to(opts), bases.contiguous().to(opts),
          at::randint(0, frames, {batch}, at::kLong).to(device)};
}

// What ReferenceManifold::project did before: gathered frames [B, D] and [B, D, d], two bmm.
at::Tensor unfused_projection(const ProjInputs& in) {
  const at::Tensor origin = in.centers.index_select(0, in.assign);
  const at::Tensor basis = in.bases.index_select(0, in.assign).transpose(1, 2);  // [B, D, d]
  const at::Tensor y = (in.x - origin).unsqueeze(2);
  return origin + at::bmm(basis, at::bmm(basis.transpose(1, 2), y)).squeeze(2);
}

void projection_case(benchmark::State& state, c10::Device device) {
  const int64_t batch = state.range(0);
  const int64_t dims = state.range(1);
  const int64_t d = state.range(2);
  const int64_t variant = state.range(4);
  const auto in = make_proj_inputs(batch, dims, d, state.range(3), device);
  run_timed(state, device.is_cuda(), [&] {
    if (variant == kUnfused) {
      benchmark::DoNotOptimize(unfused_projection(in));
    } else {
      benchmark::DoNotOptimize(mdiff::ops::project_local_pca(
          in.x, in.centers, in.bases, in.assign, variant == kReference ? OpBackend::Reference : OpBackend::Native));
    }
  });
  // Per row: read x, its centre and its d basis rows, write the projection.
  state.SetBytesProcessed(static_cast<int64_t>((3 + d) * batch * dims * 4) * state.iterations());
  state.SetItemsProcessed(batch * state.iterations());
  state.SetLabel(std::string(variant_label(variant)) + " float32");
}

// Arguments: batch B, dimension D, frame dimension d, frames K, variant.
void BM_ProjectLocalPca_CPU(benchmark::State& state) { projection_case(state, c10::Device(c10::kCPU)); }
BENCHMARK(BM_ProjectLocalPca_CPU)
    ->ArgNames({"B", "D", "d", "K", "variant"})
    ->Args({4096, 784, 8, 1024, kReference})
    ->Args({4096, 784, 8, 1024, kNative})
    ->Args({4096, 784, 8, 1024, kUnfused})
    ->Unit(benchmark::kMicrosecond);

#ifdef MD_BENCH_CUDA
bool skip_without_cuda(benchmark::State& state) {
  if (!mdiff::cuda_available()) {
    state.SkipWithError("no CUDA device");
    return true;
  }
  return false;
}

void BM_QSampleTarget_CUDA(benchmark::State& state) {
  if (!skip_without_cuda(state)) q_target_case(state, c10::Device(c10::kCUDA, 0));
}
BENCHMARK(BM_QSampleTarget_CUDA)
    ->ArgNames({"batch", "ch", "size", "variant"})
    ->Args({128, 1, 28, kReference})
    ->Args({128, 1, 28, kNative})
    ->Args({128, 1, 28, kUnfused})
    ->Args({64, 3, 256, kNative})
    ->Args({64, 3, 256, kUnfused})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

void BM_KnnTopK_CUDA(benchmark::State& state) {
  if (!skip_without_cuda(state)) knn_case(state, c10::Device(c10::kCUDA, 0));
}
BENCHMARK(BM_KnnTopK_CUDA)
    ->ArgNames({"M", "N", "D", "k", "variant"})
    ->Args({1024, 8192, 784, 10, kReference})
    ->Args({1024, 8192, 784, 10, kNative})
    ->Args({1024, 8192, 784, 10, kUnfused})
    ->Args({1024, 8192, 784, 10, kGemmOnly})
    ->Args({1024, 60000, 784, 10, kNative})
    ->Args({1024, 60000, 784, 10, kUnfused})
    ->Args({1024, 60000, 784, 10, kGemmOnly})
    ->Args({1024, 60000, 784, 100, kNative})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

void BM_ProjectLocalPca_CUDA(benchmark::State& state) {
  if (!skip_without_cuda(state)) projection_case(state, c10::Device(c10::kCUDA, 0));
}
BENCHMARK(BM_ProjectLocalPca_CUDA)
    ->ArgNames({"B", "D", "d", "K", "variant"})
    ->Args({4096, 784, 8, 1024, kReference})
    ->Args({4096, 784, 8, 1024, kNative})
    ->Args({4096, 784, 8, 1024, kUnfused})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
#endif

}  // namespace
