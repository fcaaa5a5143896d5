// Noise schedules: building each kind with T = 1000, the per-timestep lookups the samplers and the
// Trainer make, inference timesteps and Karras sigmas, and forward noising (q_sample) through a
// schedule at a training batch of 128 x 1 x 28 x 28.
#include <manifold_diffusion/schedules/noise_schedule.h>

#include <ATen/ATen.h>
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

namespace {

using mdiff::BetaSchedule;
using mdiff::NoiseSchedule;
using mdiff::ScheduleOptions;

// Argument: 0 linear, 1 scaled-linear, 2 cosine, 3 sigmoid, 4 custom (from betas), 5 linear
// rescaled to zero terminal SNR.
void BM_ScheduleBuild(benchmark::State& state) {
  const int64_t kind = state.range(0);
  const at::Tensor b = NoiseSchedule::linear(1000).betas().contiguous();
  const std::vector<double> betas(b.data_ptr<double>(), b.data_ptr<double>() + b.numel());
  const char* labels[] = {"linear", "scaled_linear", "cosine", "sigmoid", "custom", "linear, zero terminal SNR"};
  for (auto _ : state) {
    switch (kind) {
      case 0: benchmark::DoNotOptimize(NoiseSchedule::linear(1000)); break;
      case 1: benchmark::DoNotOptimize(NoiseSchedule::scaled_linear(1000)); break;
      case 2: benchmark::DoNotOptimize(NoiseSchedule::cosine(1000)); break;
      case 3: benchmark::DoNotOptimize(NoiseSchedule::sigmoid(1000)); break;
      case 4: benchmark::DoNotOptimize(NoiseSchedule::from_betas(betas)); break;
      default: benchmark::DoNotOptimize(NoiseSchedule::linear(1000).rescaled_zero_terminal_snr()); break;
    }
  }
  state.SetLabel(labels[kind]);
}
BENCHMARK(BM_ScheduleBuild)->ArgName("kind")->DenseRange(0, 5)->Unit(benchmark::kMicrosecond);

// Per-timestep coefficients at every integer timestep (one iteration = 1000 lookups of each).
void BM_ScheduleLookup(benchmark::State& state) {
  const NoiseSchedule s = NoiseSchedule::cosine(1000);
  for (auto _ : state) {
    double sum = 0;
    for (int64_t t = 0; t < 1000; ++t) {
      sum += s.alpha_bar(t) + s.alpha(t) + s.sigma(t) + s.snr(t) + s.ve_sigma(t);
    }
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(5 * 1000 * state.iterations());
}
BENCHMARK(BM_ScheduleLookup)->Unit(benchmark::kMicrosecond);

// alpha_bar at fractional timesteps (log-SNR interpolation), as the samplers and EDM training use it.
void BM_ScheduleFractional(benchmark::State& state) {
  const NoiseSchedule s = NoiseSchedule::cosine(1000);
  for (auto _ : state) {
    double sum = 0;
    for (int64_t i = 0; i < 1000; ++i) {
      sum += s.alpha_bar_at(0.999 * static_cast<double>(i) + 0.25);
    }
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(1000 * state.iterations());
}
BENCHMARK(BM_ScheduleFractional)->Unit(benchmark::kMicrosecond);

// The sigma-to-timestep inverse the sigma-space samplers call at every step.
void BM_ScheduleTimestepFromSigma(benchmark::State& state) {
  const NoiseSchedule s = NoiseSchedule::linear(1000);
  const std::vector<double> sigmas = NoiseSchedule::karras_sigmas(1000, s.ve_sigma_min(), s.ve_sigma_max());
  for (auto _ : state) {
    double sum = 0;
    for (double sigma : sigmas) sum += s.timestep_from_ve_sigma(sigma);
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(static_cast<int64_t>(sigmas.size()) * state.iterations());
}
BENCHMARK(BM_ScheduleTimestepFromSigma)->Unit(benchmark::kMicrosecond);

// Inference timesteps (argument: 0 leading, 1 trailing, 2 linspace) and Karras sigmas for 50 steps.
void BM_ScheduleTimesteps(benchmark::State& state) {
  const NoiseSchedule s = NoiseSchedule::linear(1000);
  const auto spacing = static_cast<mdiff::TimestepSpacing>(state.range(0));
  for (auto _ : state) {
    benchmark::DoNotOptimize(s.timesteps(50, spacing));
  }
  state.SetLabel(mdiff::to_string(spacing));
}
BENCHMARK(BM_ScheduleTimesteps)->ArgName("spacing")->DenseRange(0, 2)->Unit(benchmark::kMicrosecond);

void BM_KarrasSigmas(benchmark::State& state) {
  const NoiseSchedule s = NoiseSchedule::linear(1000);
  for (auto _ : state) {
    benchmark::DoNotOptimize(NoiseSchedule::karras_sigmas(50, s.ve_sigma_min(), s.ve_sigma_max()));
  }
}
BENCHMARK(BM_KarrasSigmas)->Unit(benchmark::kMicrosecond);

// x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps through NoiseSchedule::q_sample, per-sample
// timesteps. Argument: batch.
void BM_ScheduleQSample(benchmark::State& state) {
  const int64_t batch = state.range(0);
  const NoiseSchedule s = NoiseSchedule::cosine(1000);
  const at::Tensor x0 = at::randn({batch, 1, 28, 28});
  const at::Tensor noise = at::randn({batch, 1, 28, 28});
  const at::Tensor t = at::randint(0, 1000, {batch}, at::kLong);
  for (auto _ : state) {
    benchmark::DoNotOptimize(s.q_sample(x0, noise, t));
  }
  state.SetItemsProcessed(batch * state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(3 * x0.numel() * 4) * state.iterations());
}
BENCHMARK(BM_ScheduleQSample)->ArgName("batch")->Arg(128)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
