// Attention for inference: the row-wise kernel (mdiff::ops::attention) against the ATen
// composition (matmul, softmax, matmul: a [B, heads, L, S] score tensor in memory).
#include <manifold_diffusion/ops/attention.h>

#include <ATen/ATen.h>
#include <benchmark/benchmark.h>

#include <cmath>

namespace {

// Arguments: batch, heads, positions, head width, native (0 = ATen composition, 1 = kernel).
void BM_Attention_CPU(benchmark::State& state) {
  const int64_t n = state.range(0), h = state.range(1), l = state.range(2), d = state.range(3);
  const at::Tensor q = at::randn({n, h, l, d}), k = at::randn({n, h, l, d}), v = at::randn({n, h, l, d});
  const bool native = state.range(4) != 0;
  at::NoGradGuard no_grad;
  for (auto _ : state) {
    if (native) {
      benchmark::DoNotOptimize(mdiff::ops::attention(q, k, v));
    } else {
      const at::Tensor s = at::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(d)));
      benchmark::DoNotOptimize(at::matmul(at::softmax(s, -1), v));
    }
  }
  // 2 FLOP per multiply-add in q k^T and in p v.
  const double flop = 4.0 * n * h * l * l * d;
  state.counters["GFLOP/s"] = benchmark::Counter(flop * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(native ? "kernel" : "aten");
}
BENCHMARK(BM_Attention_CPU)
    ->ArgNames({"batch", "heads", "L", "d", "native"})
    ->ArgsProduct({{64}, {8}, {196}, {8}, {0, 1}})
    ->ArgsProduct({{64}, {1}, {196}, {64}, {0, 1}})
    ->ArgsProduct({{64}, {1}, {49}, {128}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
