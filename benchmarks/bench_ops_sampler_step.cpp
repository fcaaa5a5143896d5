// The fused sampler step against its float64 reference and against the unfused ATen composition
// the samplers ran before (guidance, conversion to x0 with per-sample noise-level tensors, then the
// update), on a DDPM posterior step with classifier-free guidance: reads x, cond, uncond, noise and
// writes x_next and x0. Bytes counted: those six tensors, for every implementation.
#include <manifold_diffusion/core/device.h>
#include <manifold_diffusion/ops/sampler_step.h>

#include <ATen/ATen.h>
#include <benchmark/benchmark.h>

#include <cmath>
#include <string>
#include <vector>

#ifdef MD_BENCH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace {

using mdiff::ops::OpBackend;

// One DDPM step from alpha_bar = 0.5 to 0.6 with guidance scale 3, eps-prediction.
struct Step {
  double ab = 0.5, ab_next = 0.6, w = 3.0;
  double beta() const { return 1 - ab / ab_next; }
  double c1() const { return std::sqrt(ab_next) * beta() / (1 - ab); }
  double c2() const { return std::sqrt(1 - beta()) * (1 - ab_next) / (1 - ab); }
  double sigma() const { return std::sqrt(beta() * (1 - ab_next) / (1 - ab)); }
  mdiff::ops::SamplerStepCoefficients coefficients() const {
    const double a = std::sqrt(ab), s = std::sqrt(1 - ab);
    return mdiff::ops::SamplerStepCoefficients().w(w).c_x(1 / a).c_out(-s / a).k_x(c2()).k_x0(c1()).k_noise(sigma());
  }
};

struct StepInputs {
  at::Tensor x, cond, uncond, noise;
};

const std::vector<std::vector<int64_t>>& shapes() {
  static const std::vector<std::vector<int64_t>> s = {{64, 1, 28, 28}, {4096, 2}, {16, 3, 256, 256}};
  return s;
}

StepInputs make_inputs(int64_t shape_id, c10::Device device, at::ScalarType dt) {
  const auto& shape = shapes()[static_cast<size_t>(shape_id)];
  const auto opts = at::TensorOptions().device(device).dtype(dt);
  return {at::randn(shape).to(opts), at::randn(shape).to(opts), at::randn(shape).to(opts),
          at::randn(shape).to(opts)};
}

// The composition the samplers used before the fused op: Denoiser::predict_at's guidance and
// eps -> x0 conversion with [N, 1, ...] noise-level tensors, then DDPMSampler's update.
std::vector<at::Tensor> unfused(const StepInputs& in, const Step& st) {
  std::vector<int64_t> coef_shape(static_cast<size_t>(in.x.dim()), 1);
  coef_shape[0] = in.x.size(0);
  const at::Tensor ab = at::full({in.x.size(0)}, st.ab, at::TensorOptions().dtype(at::kDouble))
                            .to(in.x.device(), in.x.scalar_type())
                            .reshape(coef_shape);
  const at::Tensor a = ab.sqrt();
  const at::Tensor s = (1 - ab).sqrt();
  const at::Tensor g = in.uncond + st.w * (in.cond - in.uncond);
  const at::Tensor x0 = (in.x - s * g) / a;
  at::Tensor x_next = st.c1() * x0 + st.c2() * in.x;
  x_next = x_next + st.sigma() * in.noise;
  return {x_next, x0};
}

// 0 = reference, 1 = fused (native), 2 = unfused ATen composition.
const char* impl_name(int64_t impl) {
  return impl == 0 ? "reference" : impl == 1 ? "fused" : "unfused ATen";
}

void run_once(const StepInputs& in, const Step& st, int64_t impl) {
  if (impl == 2) {
    benchmark::DoNotOptimize(unfused(in, st));
    return;
  }
  const OpBackend be = impl == 0 ? OpBackend::Reference : OpBackend::Native;
  benchmark::DoNotOptimize(
      mdiff::ops::sampler_step(in.x, in.cond, in.uncond, {}, in.noise, st.coefficients(), mdiff::ops::X0Clip::None, {},
                               be));
}

std::string shape_label(int64_t shape_id) {
  std::string out;
  for (int64_t d : shapes()[static_cast<size_t>(shape_id)]) {
    out += (out.empty() ? "" : "x") + std::to_string(d);
  }
  return out;
}

// Arguments: shape (0: 64x1x28x28, 1: 4096x2, 2: 16x3x256x256), implementation (see impl_name).
void BM_SamplerStep_CPU(benchmark::State& state) {
  const StepInputs in = make_inputs(state.range(0), c10::kCPU, at::kFloat);
  const Step st;
  for (auto _ : state) {
    run_once(in, st, state.range(1));
  }
  const double bytes = 6.0 * static_cast<double>(in.x.numel()) * 4.0;
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
  state.SetLabel(shape_label(state.range(0)) + " float32 " + impl_name(state.range(1)));
}
BENCHMARK(BM_SamplerStep_CPU)
    ->ArgNames({"shape", "impl"})
    ->ArgsProduct({{0, 1, 2}, {0, 1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

#ifdef MD_BENCH_CUDA
// Arguments: shape, implementation, dtype (0 float32, 1 bfloat16).
void BM_SamplerStep_CUDA(benchmark::State& state) {
  if (!mdiff::cuda_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const auto dt = state.range(2) == 0 ? at::kFloat : at::kBFloat16;
  const StepInputs in = make_inputs(state.range(0), c10::Device(c10::kCUDA, 0), dt);
  const Step st;
  at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
  for (auto _ : state) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    start.record(stream);
    run_once(in, st, state.range(1));
    stop.record(stream);
    stop.synchronize();
    state.SetIterationTime(start.elapsed_time(stop) / 1000.0);
  }
  const double bytes = 6.0 * static_cast<double>(in.x.numel()) * in.x.element_size();
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
  state.SetLabel(shape_label(state.range(0)) + (dt == at::kFloat ? " float32 " : " bfloat16 ") +
                 impl_name(state.range(1)));
}
BENCHMARK(BM_SamplerStep_CUDA)
    ->ArgNames({"shape", "impl", "bf16"})
    ->ArgsProduct({{0, 1, 2}, {0, 1, 2}, {0}})
    ->Args({2, 1, 1})
    ->Args({2, 2, 1})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
#endif

}  // namespace
