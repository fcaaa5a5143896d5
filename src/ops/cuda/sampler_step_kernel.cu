#include "ops/sampler_step_kernels.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>

namespace manifold_diffusion {
namespace ops {
namespace detail {
namespace {

// The coefficients by value (struct overloads) or through a device pointer (tensor overloads, so
// that a captured graph reads whatever was copied into the tensor before the replay).
struct KernelCoefficients {
  double value[SamplerStepCoefficients::kSize];
  const double* device;  // null: use `value`
};

template <typename scalar_t>
struct KernelPointers {
  const scalar_t* x;
  const scalar_t* cond;
  const scalar_t* uncond;   // may be null
  const scalar_t* x0_prev;  // may be null
  const scalar_t* noise;    // may be null
  scalar_t* x0;             // output of Full and Predict, input of Combine
  scalar_t* x_next;         // output of Full and Combine
  const double* s;          // X0Clip::Dynamic only
};

// clamp to [lo, hi] that keeps a NaN (as at::clamp and the CPU kernel do; fminf/fmaxf would drop it).
template <typename T>
__device__ __forceinline__ T clamp_keep_nan(T v, T lo, T hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

template <typename scalar_t, StepPhase kPhase>
__global__ void sampler_step_kernel(KernelPointers<scalar_t> p, KernelCoefficients kc, X0Clip clip, int64_t total,
                                    int64_t per_sample) {
  using opmath_t = at::opmath_type<scalar_t>;
  const double* c = kc.device != nullptr ? kc.device : kc.value;
  const opmath_t w = static_cast<opmath_t>(c[SamplerStepCoefficients::kW]);
  const opmath_t c_x = static_cast<opmath_t>(c[SamplerStepCoefficients::kCx]);
  const opmath_t c_out = static_cast<opmath_t>(c[SamplerStepCoefficients::kCout]);
  const opmath_t k_x = static_cast<opmath_t>(c[SamplerStepCoefficients::kKx]);
  const opmath_t k_x0 = static_cast<opmath_t>(c[SamplerStepCoefficients::kKx0]);
  const opmath_t k_prev = static_cast<opmath_t>(c[SamplerStepCoefficients::kKprev]);
  const opmath_t k_noise = static_cast<opmath_t>(c[SamplerStepCoefficients::kKnoise]);
  const opmath_t r = static_cast<opmath_t>(c[SamplerStepCoefficients::kR]);
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const opmath_t xi = static_cast<opmath_t>(p.x[i]);
    opmath_t x0;
    if constexpr (kPhase == StepPhase::Combine) {
      x0 = static_cast<opmath_t>(p.x0[i]);
    } else {
      opmath_t g = static_cast<opmath_t>(p.cond[i]);
      if (p.uncond != nullptr) {
        const opmath_t u = static_cast<opmath_t>(p.uncond[i]);
        g = u + w * (g - u);
      }
      x0 = c_x * xi + c_out * g;
      if (clip == X0Clip::Static) {
        x0 = clamp_keep_nan(x0, -r, r);
      } else if (clip == X0Clip::Dynamic) {
        const opmath_t b = static_cast<opmath_t>(p.s[i / per_sample]);
        x0 = clamp_keep_nan(x0, -b, b) / b;
      }
      p.x0[i] = static_cast<scalar_t>(x0);
    }
    if constexpr (kPhase != StepPhase::Predict) {
      opmath_t v = k_x * xi + k_x0 * x0;
      if (p.x0_prev != nullptr) {
        v = v + k_prev * static_cast<opmath_t>(p.x0_prev[i]);
      }
      if (p.noise != nullptr) {
        v = v + k_noise * static_cast<opmath_t>(p.noise[i]);
      }
      p.x_next[i] = static_cast<scalar_t>(v);
    }
  }
}

template <typename scalar_t>
const scalar_t* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<scalar_t>() : nullptr;
}

}  // namespace

void sampler_step_cuda(const SamplerStepTensors& t, StepPhase phase, X0Clip clip, const CoefficientArray& coef,
                       const at::Tensor& coef_tensor) {
  const int64_t total = t.x.numel();
  if (total == 0) {
    return;
  }
  const c10::cuda::CUDAGuard guard(t.x.device());
  const int64_t per_sample = total / t.x.size(0);
  constexpr int threads = 256;
  const int64_t blocks = std::min<int64_t>((total + threads - 1) / threads, 65535LL * 8);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  KernelCoefficients kc{};
  for (size_t i = 0; i < coef.size(); ++i) {
    kc.value[i] = coef[i];
  }
  kc.device = coef_tensor.defined() ? coef_tensor.data_ptr<double>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.x.scalar_type(), "sampler_step_cuda", [&] {
    KernelPointers<scalar_t> p{};
    p.x = t.x.data_ptr<scalar_t>();
    p.cond = ptr_or_null<scalar_t>(t.cond);
    p.uncond = ptr_or_null<scalar_t>(t.uncond);
    p.x0_prev = ptr_or_null<scalar_t>(t.x0_prev);
    p.noise = ptr_or_null<scalar_t>(t.noise);
    p.x0 = t.x0.data_ptr<scalar_t>();
    p.x_next = t.x_next.defined() ? t.x_next.data_ptr<scalar_t>() : nullptr;
    p.s = t.s.defined() ? t.s.data_ptr<double>() : nullptr;
    const auto grid = static_cast<unsigned>(blocks);
    switch (phase) {
      case StepPhase::Full:
        sampler_step_kernel<scalar_t, StepPhase::Full>
            <<<grid, threads, 0, stream>>>(p, kc, clip, total, per_sample);
        break;
      case StepPhase::Predict:
        sampler_step_kernel<scalar_t, StepPhase::Predict>
            <<<grid, threads, 0, stream>>>(p, kc, clip, total, per_sample);
        break;
      case StepPhase::Combine:
        sampler_step_kernel<scalar_t, StepPhase::Combine>
            <<<grid, threads, 0, stream>>>(p, kc, clip, total, per_sample);
        break;
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

bool cuda_stream_capturing(c10::Device device) {
  const c10::cuda::CUDAGuard guard(device);
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  C10_CUDA_CHECK(cudaStreamIsCapturing(at::cuda::getCurrentCUDAStream(), &status));
  return status != cudaStreamCaptureStatusNone;
}

}  // namespace detail
}  // namespace ops
}  // namespace manifold_diffusion
