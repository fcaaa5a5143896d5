// The backbones' throughput: UNet forward (inference) and forward + backward at the sizes the
// bundled programs use, the MLP denoiser's forward, and the best single 3x3 convolution at the
// UNet's shapes, the ceiling its GFLOP/s is compared with (docs/performance.md).
//
// FLOPs are counted analytically from the layer shapes (model_cost.h: 2 FLOP per MAC of every
// convolution, linear layer and attention matmul; a backward pass counts twice its forward).
// Every network runs once before timing, so one-time setup (oneDNN primitives, allocator growth)
// stays out of the numbers, and each benchmark needs only one timed iteration to report.
#include "bench_configs.h"
#include "model_cost.h"

#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/models/mlp_denoiser.h>
#include <manifold_diffusion/models/unet.h>

#include <ATen/ATen.h>
#include <benchmark/benchmark.h>
#include <c10/core/InferenceMode.h>
#include <torch/autograd.h>

#include <string>

namespace {

mdiff::UNetOptions unet_config(int64_t which) {
  return which == 0 ? mdiff_bench::train_unet_options() : mdiff_bench::race_unet_options();
}

const char* unet_label(int64_t which) {
  return which == 0 ? "mdiff-train default" : "race";
}

// Fraction of the network's FLOPs at each feature-map size (`at28`, `at14`, `at7`; `at0` is the time
// MLP and the embedding projections), for weighting the convolution ceilings of those sizes.
void set_share_counters(benchmark::State& state, const mdiff_bench::ModelCost& cost) {
  for (const auto& [size, macs] : cost.macs_by_size) {
    state.counters["at" + std::to_string(size)] = macs / cost.macs;
  }
}

void set_flop_counters(benchmark::State& state, double flop_per_iteration, int64_t items_per_iteration) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flop_per_iteration / 1e9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["GFLOP"] = flop_per_iteration / 1e9;
  state.SetItemsProcessed(items_per_iteration * state.iterations());
}

// Arguments: config (0 = mdiff-train's default, 1 = the race UNet), batch.
void BM_UNetForward(benchmark::State& state) {
  const int64_t batch = state.range(1);
  mdiff::manual_seed(0);
  mdiff::UNet net(unet_config(state.range(0)));
  net->eval();
  const at::Tensor x = at::randn({batch, 1, 28, 28});
  const at::Tensor t = at::randint(0, 1000, {batch}, at::kLong);
  const at::Tensor labels = net->options().num_classes() > 0 ? at::randint(0, 10, {batch}, at::kLong) : at::Tensor();
  c10::InferenceMode guard;
  benchmark::DoNotOptimize(net->forward(x, t, labels));
  for (auto _ : state) {
    benchmark::DoNotOptimize(net->forward(x, t, labels));
  }
  const mdiff_bench::ModelCost cost = mdiff_bench::unet_cost(net->options(), batch, 28, 28);
  set_flop_counters(state, 2 * cost.macs, batch);
  set_share_counters(state, cost);
  state.SetLabel(unet_label(state.range(0)));
}
BENCHMARK(BM_UNetForward)
    ->ArgNames({"config", "batch"})
    ->Args({0, 64})
    ->Args({0, 128})
    ->Args({1, 64})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Forward, a mean-square loss and the backward pass (training mode: dropout on); no optimiser.
void BM_UNetForwardBackward(benchmark::State& state) {
  const int64_t batch = state.range(1);
  mdiff::manual_seed(0);
  mdiff::UNet net(unet_config(state.range(0)));
  net->train();
  const at::Tensor x = at::randn({batch, 1, 28, 28});
  const at::Tensor t = at::randint(0, 1000, {batch}, at::kLong);
  const at::Tensor labels = net->options().num_classes() > 0 ? at::randint(0, 10, {batch}, at::kLong) : at::Tensor();
  const at::Tensor target = at::randn({batch, 1, 28, 28});
  auto step = [&] {
    net->zero_grad();
    at::Tensor loss = (net->forward(x, t, labels) - target).pow(2).mean();
    loss.backward();
  };
  step();
  for (auto _ : state) {
    step();
  }
  const mdiff_bench::ModelCost cost = mdiff_bench::unet_cost(net->options(), batch, 28, 28);
  set_flop_counters(state, 3 * 2 * cost.macs, batch);
  state.SetLabel(unet_label(state.range(0)));
}
BENCHMARK(BM_UNetForwardBackward)
    ->ArgNames({"config", "batch"})
    ->Args({0, 64})
    ->Args({0, 128})
    ->Args({1, 128})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// mdiff-toy's MLP denoiser on a batch of points in R^3.
void BM_MLPForward(benchmark::State& state) {
  const int64_t batch = state.range(0);
  mdiff::manual_seed(0);
  mdiff::MLPDenoiser net(mdiff_bench::toy_mlp_options());
  net->eval();
  const at::Tensor x = at::randn({batch, 3});
  const at::Tensor t = at::randint(0, 1000, {batch}, at::kLong);
  c10::InferenceMode guard;
  benchmark::DoNotOptimize(net->forward(x, t));
  for (auto _ : state) {
    benchmark::DoNotOptimize(net->forward(x, t));
  }
  const mdiff_bench::ModelCost cost = mdiff_bench::mlp_cost(net->options(), batch);
  set_flop_counters(state, 2 * cost.macs, batch);
}
BENCHMARK(BM_MLPForward)->ArgNames({"batch"})->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();

// One 3x3 convolution (padding 1, bias) [batch, ch, size, size] -> ch channels, as the UNet's
// residual blocks run it, in inference mode; layout 0 = contiguous (NCHW, what the UNet uses),
// 1 = channels-last. The faster layout per shape is the ceiling.
void BM_Conv2dCeiling(benchmark::State& state) {
  const int64_t batch = state.range(0), ch = state.range(1), size = state.range(2);
  const bool channels_last = state.range(3) == 1;
  at::Tensor x = at::randn({batch, ch, size, size});
  at::Tensor w = at::randn({ch, ch, 3, 3}) * 0.05;
  const at::Tensor b = at::randn({ch});
  if (channels_last) {
    x = x.contiguous(at::MemoryFormat::ChannelsLast);
    w = w.contiguous(at::MemoryFormat::ChannelsLast);
  }
  c10::InferenceMode guard;
  benchmark::DoNotOptimize(at::conv2d(x, w, b, {1, 1}, {1, 1}));
  for (auto _ : state) {
    benchmark::DoNotOptimize(at::conv2d(x, w, b, {1, 1}, {1, 1}));
  }
  const double macs = static_cast<double>(batch * ch * size * size) * static_cast<double>(ch * 9);
  set_flop_counters(state, 2 * macs, batch);
  state.SetLabel(channels_last ? "channels-last" : "NCHW");
}
BENCHMARK(BM_Conv2dCeiling)
    ->ArgNames({"batch", "ch", "size", "cl"})
    // mdiff-train's UNet at batch 64: 32 channels at 28x28, 64 at 14x14 and 7x7.
    ->Args({64, 32, 28, 0})
    ->Args({64, 32, 28, 1})
    ->Args({64, 64, 14, 0})
    ->Args({64, 64, 14, 1})
    ->Args({64, 64, 7, 0})
    ->Args({64, 64, 7, 1})
    // The race UNet adds 128 channels at 7x7.
    ->Args({64, 128, 7, 0})
    ->Args({64, 128, 7, 1})
    // Wider shapes for reference.
    ->Args({64, 64, 28, 0})
    ->Args({64, 64, 28, 1})
    ->Args({64, 128, 14, 0})
    ->Args({64, 128, 14, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
