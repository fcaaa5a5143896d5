// GroupNorm + scale/shift + SiLU: the fused op against the ATen composition the UNet's blocks ran
// before (group_norm, mul, add, silu; each a pass over memory) and the float64 reference.
#include <manifold_diffusion/core/device.h>
#include <manifold_diffusion/ops/group_norm.h>

#include <ATen/ATen.h>
#include <benchmark/benchmark.h>

#ifdef MD_BENCH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace {

using mdiff::ops::GroupNormSiLUOptions;
using mdiff::ops::OpBackend;

struct GnInputs {
  at::Tensor x, weight, bias, scale, shift;
};

GnInputs make_gn(int64_t batch, int64_t channels, int64_t size, bool channels_last, c10::Device device,
                 at::ScalarType dt) {
  const auto o = at::TensorOptions().device(device).dtype(dt);
  GnInputs in{at::randn({batch, channels, size, size}, o), at::randn({channels}, o), at::randn({channels}, o),
              at::randn({batch, channels}, o) * 0.1, at::randn({batch, channels}, o) * 0.1};
  if (channels_last) {
    in.x = in.x.contiguous(at::MemoryFormat::ChannelsLast);
  }
  return in;
}

at::Tensor composition(const GnInputs& in, int64_t groups) {
  const at::Tensor s = in.scale.unsqueeze(-1).unsqueeze(-1);
  const at::Tensor t = in.shift.unsqueeze(-1).unsqueeze(-1);
  return at::silu(at::group_norm(in.x, groups, in.weight, in.bias, 1e-5) * (1 + s) + t);
}

// Arguments: batch, channels, size, channels_last, mode (0 = float64 reference, 1 = ATen composition, 2 = fused).
void BM_GroupNormSiLU_CPU(benchmark::State& state) {
  const auto in = make_gn(state.range(0), state.range(1), state.range(2), state.range(3) != 0, c10::kCPU, at::kFloat);
  const int64_t mode = state.range(4);
  const auto opts = GroupNormSiLUOptions(32);
  at::NoGradGuard no_grad;
  for (auto _ : state) {
    if (mode == 1) {
      benchmark::DoNotOptimize(composition(in, 32));
    } else {
      benchmark::DoNotOptimize(mdiff::ops::group_norm_silu(in.x, in.weight, in.bias, in.scale, in.shift, opts,
                                                           mode == 0 ? OpBackend::Reference : OpBackend::Native));
    }
  }
  // Bytes of the fused op: x read twice (statistics, then the fused pass), y written once.
  state.SetBytesProcessed(static_cast<int64_t>(3.0 * in.x.numel() * 4.0) * state.iterations());
  state.SetLabel(mode == 0 ? "reference" : mode == 1 ? "aten" : "fused");
}
BENCHMARK(BM_GroupNormSiLU_CPU)
    ->ArgNames({"batch", "ch", "size", "cl", "mode"})
    ->ArgsProduct({{64}, {64}, {28}, {0, 1}, {1, 2}})
    ->ArgsProduct({{64}, {128}, {14}, {0, 1}, {1, 2}})
    ->Args({64, 64, 28, 0, 0})
    ->Unit(benchmark::kMicrosecond);

#ifdef MD_BENCH_CUDA
void BM_GroupNormSiLU_CUDA(benchmark::State& state) {
  if (!mdiff::cuda_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const auto dt = state.range(5) == 0 ? at::kFloat : at::kBFloat16;
  const auto in = make_gn(state.range(0), state.range(1), state.range(2), state.range(3) != 0,
                          c10::Device(c10::kCUDA, 0), dt);
  const int64_t mode = state.range(4);
  const auto opts = GroupNormSiLUOptions(32);
  at::NoGradGuard no_grad;
  at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
  for (auto _ : state) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    start.record(stream);
    if (mode == 1) {
      benchmark::DoNotOptimize(composition(in, 32));
    } else {
      benchmark::DoNotOptimize(
          mdiff::ops::group_norm_silu(in.x, in.weight, in.bias, in.scale, in.shift, opts, OpBackend::Native));
    }
    stop.record(stream);
    stop.synchronize();
    state.SetIterationTime(start.elapsed_time(stop) / 1000.0);
  }
  state.SetBytesProcessed(static_cast<int64_t>(3.0 * in.x.numel() * in.x.element_size()) * state.iterations());
  state.SetLabel(std::string(mode == 1 ? "aten" : "fused") + (dt == at::kFloat ? " float32" : " bfloat16"));
}
BENCHMARK(BM_GroupNormSiLU_CUDA)
    ->ArgNames({"batch", "ch", "size", "cl", "mode", "bf16"})
    ->ArgsProduct({{64}, {128}, {64}, {0, 1}, {1, 2}, {0}})
    ->Args({64, 128, 64, 0, 2, 1})
    ->Args({256, 64, 28, 0, 1, 0})
    ->Args({256, 64, 28, 0, 2, 0})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
#endif

}  // namespace
