// One optimiser step of the Trainer (Trainer::train_step: a batch, timesteps and noise, q_sample,
// forward, the weighted loss, backward, gradient clipping, AdamW, EMA) for mdiff-train's default
// UNet with mdiff-train's default options, in items (images) per second. The data are random
// images in memory (random_batches), so the numbers are the step itself, not data loading.
#include "bench_configs.h"

#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/models/denoiser.h>
#include <manifold_diffusion/models/unet.h>
#include <manifold_diffusion/schedules/noise_schedule.h>
#include <manifold_diffusion/training/trainer.h>

#include <ATen/ATen.h>
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>

namespace {

// Arguments: batch; ema (1: mdiff-train's EMA 0.999 and clipping at 1.0, 0: neither).
void BM_TrainStep(benchmark::State& state) {
  const int64_t batch = state.range(0);
  const bool full = state.range(1) == 1;
  mdiff::manual_seed(0);
  mdiff::UNet net(mdiff_bench::train_unet_options());
  const at::Tensor images = at::rand({2048, 1, 28, 28}, mdiff::make_generator(1)) * 2 - 1;
  const at::Tensor labels = at::randint(0, 10, {2048}, mdiff::make_generator(2), at::TensorOptions(at::kLong));
  // mdiff-train's defaults: lr 1e-3, 200 warm-up steps, clipping at 1, EMA 0.999, label dropout 0.1,
  // cosine schedule, v-prediction.
  mdiff::Trainer trainer(mdiff::TrainerOptions(int64_t{1} << 40)
                             .lr(1e-3)
                             .warmup_steps(200)
                             .grad_clip(full ? 1.0 : 0.0)
                             .ema_decay(full ? 0.999 : 0.0)
                             .label_dropout(0.1)
                             .log_every(0)
                             .seed(0),
                         net.ptr(), mdiff::network_function(net), mdiff::NoiseSchedule::cosine(1000),
                         mdiff::DenoiserOptions(mdiff::PredictionType::VPrediction),
                         mdiff::random_batches(images, labels, batch, 3));
  trainer.train_step();  // warm-up: one-time setup stays out of the timing
  for (auto _ : state) {
    const mdiff::TrainStepInfo info = trainer.train_step();
    if (!std::isfinite(info.loss)) {
      state.SkipWithError("non-finite loss");
      break;
    }
  }
  state.SetItemsProcessed(batch * state.iterations());
  state.SetLabel(full ? "mdiff-train default, EMA + clipping" : "mdiff-train default, no EMA, no clipping");
}
BENCHMARK(BM_TrainStep)
    ->ArgNames({"batch", "ema"})
    ->Args({64, 1})
    ->Args({128, 1})
    ->Args({128, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
