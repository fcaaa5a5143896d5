// Fused ops against their plain-ATen references. CPU timings use wall time; CUDA timings use
// CUDA events through manual time (compiled only with the CUDA kernels, run only with a GPU).
#include <manifold_diffusion/core/device.h>
#include <manifold_diffusion/ops/q_sample.h>

#include <ATen/ATen.h>
#include <benchmark/benchmark.h>

#ifdef MD_BENCH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace {

using mdiff::ops::OpBackend;

struct QSampleInputs {
  at::Tensor x0, noise, t, signal, noise_scale;
};

QSampleInputs make_inputs(int64_t batch, int64_t channels, int64_t size, c10::Device device, at::ScalarType dt) {
  const at::Tensor ab = at::cumprod(1 - at::linspace(1e-4, 0.02, 1000, at::kDouble), 0);
  const auto opts = at::TensorOptions().device(device);
  return {at::randn({batch, channels, size, size}).to(opts.dtype(dt)),
          at::randn({batch, channels, size, size}).to(opts.dtype(dt)),
          at::randint(0, 1000, {batch}, at::kLong).to(device), ab.sqrt().to(device), (1 - ab).sqrt().to(device)};
}

// Arguments: batch, channels, image size, backend (0 = reference, 1 = native).
void BM_QSample_CPU(benchmark::State& state) {
  const auto in = make_inputs(state.range(0), state.range(1), state.range(2), c10::kCPU, at::kFloat);
  const OpBackend backend = state.range(3) == 0 ? OpBackend::Reference : OpBackend::Native;
  for (auto _ : state) {
    benchmark::DoNotOptimize(mdiff::ops::q_sample(in.x0, in.noise, in.t, in.signal, in.noise_scale, backend));
  }
  const double bytes = 3.0 * static_cast<double>(in.x0.numel()) * 4.0;  // read x0 and noise, write x_t
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
  state.SetLabel(mdiff::to_string(backend));
}
BENCHMARK(BM_QSample_CPU)
    ->ArgNames({"batch", "ch", "size", "native"})
    ->Args({128, 1, 28, 0})
    ->Args({128, 1, 28, 1})
    ->Args({64, 3, 32, 0})
    ->Args({64, 3, 32, 1})
    ->Args({16, 3, 256, 0})
    ->Args({16, 3, 256, 1})
    ->Unit(benchmark::kMicrosecond);

#ifdef MD_BENCH_CUDA
void BM_QSample_CUDA(benchmark::State& state) {
  if (!mdiff::cuda_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const auto dt = state.range(4) == 0 ? at::kFloat : at::kBFloat16;
  const auto in = make_inputs(state.range(0), state.range(1), state.range(2), c10::Device(c10::kCUDA, 0), dt);
  const OpBackend backend = state.range(3) == 0 ? OpBackend::Reference : OpBackend::Native;
  at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
  for (auto _ : state) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    start.record(stream);
    benchmark::DoNotOptimize(mdiff::ops::q_sample(in.x0, in.noise, in.t, in.signal, in.noise_scale, backend));
    stop.record(stream);
    stop.synchronize();
    state.SetIterationTime(start.elapsed_time(stop) / 1000.0);
  }
  const double bytes = 3.0 * static_cast<double>(in.x0.numel()) * in.x0.element_size();
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
  state.SetLabel(mdiff::to_string(backend) + (dt == at::kFloat ? " float32" : " bfloat16"));
}
BENCHMARK(BM_QSample_CUDA)
    ->ArgNames({"batch", "ch", "size", "native", "bf16"})
    ->Args({256, 3, 32, 0, 0})
    ->Args({256, 3, 32, 1, 0})
    ->Args({64, 3, 256, 0, 0})
    ->Args({64, 3, 256, 1, 0})
    ->Args({64, 3, 256, 1, 1})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
#endif

}  // namespace
