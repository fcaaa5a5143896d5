// Sampling with the network replayed from a captured CUDA graph against eager sampling, for the
// bundled trainers' small models: mdiff-train's default UNet (base 32, channels 1-2-2, one residual
// block per level, attention at 7x7, 10 classes) at batch 64 on 28x28, and mdiff-toy's MLP
// denoiser at batch 4096. DDIM, 50 steps, float32 (bf16 as a variant), timed with CUDA events.
#include <manifold_diffusion/core/device.h>
#include <manifold_diffusion/models/cuda_graph.h>
#include <manifold_diffusion/models/mlp_denoiser.h>
#include <manifold_diffusion/models/unet.h>
#include <manifold_diffusion/samplers/factory.h>

#include <ATen/ATen.h>
#include <benchmark/benchmark.h>
#include <c10/core/InferenceMode.h>

#ifdef MD_BENCH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace {

#ifdef MD_BENCH_CUDA
// Arguments: model (0 = UNet batch 64, 1 = MLP batch 4096), graph (0/1), bf16 (0/1).
void BM_SampleDDIM50_CUDA(benchmark::State& state) {
  if (!mdiff::cuda_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const bool unet = state.range(0) == 0;
  const bool graph = state.range(1) != 0;
  const bool bf16 = state.range(2) != 0;
  const at::Device dev(at::kCUDA, 0);
  const at::ScalarType dt = bf16 ? at::kBFloat16 : at::kFloat;
  mdiff::ModelFunction fn;
  std::vector<int64_t> shape;
  if (unet) {
    mdiff::UNet net(mdiff::UNetOptions(1, 1)
                        .base_channels(32)
                        .channel_mult({1, 2, 2})
                        .num_res_blocks(1)
                        .attention_resolutions({7})
                        .num_classes(10));
    net->to(dev, dt);
    net->eval();
    fn = [net](const at::Tensor& x, const at::Tensor& t, const at::Tensor& c) mutable { return net->forward(x, t, c); };
    shape = {64, 1, 28, 28};
  } else {
    mdiff::MLPDenoiser net(mdiff::MLPDenoiserOptions(2));
    net->to(dev, dt);
    net->eval();
    fn = [net](const at::Tensor& x, const at::Tensor& t, const at::Tensor& c) mutable { return net->forward(x, t, c); };
    shape = {4096, 2};
  }
  if (bf16) {
    fn = mdiff::cast_model(fn, at::kBFloat16);
  }
  if (graph) {
    fn = mdiff::cuda_graph_model(fn);
  }
  const mdiff::Denoiser den(fn, mdiff::NoiseSchedule::cosine(1000), mdiff::PredictionType::VPrediction);
  const auto sampler = mdiff::make_sampler("ddim", 50);
  const auto opts = at::TensorOptions().device(dev);
  c10::InferenceMode guard;
  (void)sampler->sample(den, shape, 0, {}, 0, opts);  // warm-up (and capture)
  at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
  for (auto _ : state) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    start.record(stream);
    benchmark::DoNotOptimize(sampler->sample(den, shape, 1, {}, 0, opts));
    stop.record(stream);
    stop.synchronize();
    state.SetIterationTime(start.elapsed_time(stop) / 1000.0);
  }
  state.SetItemsProcessed(shape[0] * state.iterations());
  state.SetLabel(std::string(unet ? "unet b64" : "mlp b4096") + (graph ? " graph" : " eager") +
                 (bf16 ? " bf16" : " fp32"));
}
BENCHMARK(BM_SampleDDIM50_CUDA)
    ->ArgNames({"model", "graph", "bf16"})
    ->ArgsProduct({{0, 1}, {0, 1}, {0, 1}})
    ->UseManualTime()
    ->Iterations(5)
    ->Unit(benchmark::kMillisecond);
#endif

}  // namespace
