// Sampler overhead per step: everything a step costs except the network, measured with a Denoiser
// whose network is one multiplication (eps = 0.1 x), on a batch of 64 x 1 x 28 x 28 float32.
// `per_step` is the time of a run divided by its steps; BM_NearlyFreeNetwork is the network's own
// cost per call, to subtract if wanted (Heun calls it about twice per step).
#include <manifold_diffusion/core/device.h>
#include <manifold_diffusion/samplers/ddim.h>
#include <manifold_diffusion/samplers/ddpm.h>
#include <manifold_diffusion/samplers/dpm_solver.h>
#include <manifold_diffusion/samplers/euler.h>

#include <ATen/ATen.h>
#include <benchmark/benchmark.h>

#include <memory>
#include <string>

namespace {

constexpr int64_t kSteps = 20;
const std::vector<int64_t> kShape = {64, 1, 28, 28};

at::Tensor nearly_free_network(const at::Tensor& x, const at::Tensor&, const at::Tensor&) {
  return x * 0.1;
}

const mdiff::Denoiser& denoiser() {
  static const mdiff::Denoiser den(nearly_free_network, mdiff::NoiseSchedule::linear(1000));
  return den;
}

// Arguments: sampler (0 DDPM, 1 DDIM, 2 DPM-Solver++ 2M, 3 Euler, 4 Heun), hooks (0 none: the
// fused step; 1 a pass-through on_x0 hook: predict_x0 + hook + combine).
std::unique_ptr<mdiff::Sampler> make_sampler(int64_t id) {
  using namespace mdiff;
  switch (id) {
    case 0:
      return std::make_unique<DDPMSampler>(DDPMOptions(kSteps));
    case 1:
      return std::make_unique<DDIMSampler>(DDIMOptions(kSteps));
    case 2:
      return std::make_unique<DPMSolverSampler>(DPMSolverOptions(kSteps));
    case 3:
      return std::make_unique<EulerSampler>(SigmaSamplerOptions(kSteps));
    default:
      return std::make_unique<HeunSampler>(SigmaSamplerOptions(kSteps));
  }
}

struct PassThroughHook : mdiff::SamplingHook {
  at::Tensor on_x0(const mdiff::StepContext&, at::Tensor x0) override { return x0; }
};

void BM_SamplerOverhead(benchmark::State& state) {
  const auto sampler = make_sampler(state.range(0));
  mdiff::SampleArgs args;
  if (state.range(1) != 0) {
    args.hooks.push_back(std::make_shared<PassThroughHook>());
  }
  uint64_t seed = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(sampler->sample(denoiser(), kShape, seed++, args));
  }
  state.counters["per_step"] = benchmark::Counter(static_cast<double>(kSteps * state.iterations()),
                                                  benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.SetLabel(sampler->name() + (state.range(1) != 0 ? " + hook" : ""));
}
BENCHMARK(BM_SamplerOverhead)
    ->ArgNames({"sampler", "hook"})
    ->ArgsProduct({{0, 1, 2, 3, 4}, {0, 1}})
    ->Unit(benchmark::kMillisecond);

void BM_NearlyFreeNetwork(benchmark::State& state) {
  const at::Tensor x = at::randn(kShape);
  const at::Tensor t = at::full({kShape[0]}, 500.0);
  for (auto _ : state) {
    benchmark::DoNotOptimize(nearly_free_network(x, t, {}));
  }
  state.SetLabel("eps = 0.1 x");
}
BENCHMARK(BM_NearlyFreeNetwork)->Unit(benchmark::kMicrosecond);

}  // namespace
