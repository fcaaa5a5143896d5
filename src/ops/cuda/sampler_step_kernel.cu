#include "ops/sampler_step_kernels.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <cstdint>

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

// Coefficient I with a constant index, so that the by-value copy stays in parameter space (an
// index computed at run time would copy the whole struct to per-thread local memory).
template <int I>
__device__ __forceinline__ double coefficient(const KernelCoefficients& kc) {
  return kc.device != nullptr ? kc.device[I] : kc.value[I];
}

template <typename opmath_t>
struct Coefs {
  opmath_t w, c_x, c_out, k_x, k_x0, k_prev, k_noise, r;
};

template <typename opmath_t>
__device__ __forceinline__ Coefs<opmath_t> load_coefficients(const KernelCoefficients& kc) {
  using C = SamplerStepCoefficients;
  return {static_cast<opmath_t>(coefficient<C::kW>(kc)),     static_cast<opmath_t>(coefficient<C::kCx>(kc)),
          static_cast<opmath_t>(coefficient<C::kCout>(kc)),  static_cast<opmath_t>(coefficient<C::kKx>(kc)),
          static_cast<opmath_t>(coefficient<C::kKx0>(kc)),   static_cast<opmath_t>(coefficient<C::kKprev>(kc)),
          static_cast<opmath_t>(coefficient<C::kKnoise>(kc)), static_cast<opmath_t>(coefficient<C::kR>(kc))};
}

// clamp to [lo, hi] that keeps a NaN (as at::clamp and the CPU kernel do; fminf/fmaxf would drop it).
template <typename T>
__device__ __forceinline__ T clamp_keep_nan(T v, T lo, T hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

// kVec consecutive elements as one aligned access (16 bytes for kVec = 16 / sizeof(scalar_t)).
template <typename scalar_t, int kVec>
struct alignas(sizeof(scalar_t) * kVec) Pack {
  scalar_t v[kVec];
};

template <typename scalar_t, int kVec>
__device__ __forceinline__ Pack<scalar_t, kVec> load_pack(const scalar_t* p, int64_t i) {
  return *reinterpret_cast<const Pack<scalar_t, kVec>*>(p + i);
}

// Elements [kVec * v, kVec * v + kVec) for v in the grid-stride range of vectors [0, vectors),
// offset by `first`: loads kVec elements of every input at once, then computes element by element.
template <typename scalar_t, int kVec, StepPhase kPhase>
__global__ void sampler_step_kernel(KernelPointers<scalar_t> p, KernelCoefficients kc, X0Clip clip, int64_t first,
                                    int64_t vectors, int64_t per_sample) {
  using opmath_t = at::opmath_type<scalar_t>;
  using P = Pack<scalar_t, kVec>;
  const Coefs<opmath_t> k = load_coefficients<opmath_t>(kc);
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t v = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; v < vectors; v += stride) {
    const int64_t i = first + v * kVec;
    const P xv = load_pack<scalar_t, kVec>(p.x, i);
    P x0v;
    opmath_t x0[kVec];
    if constexpr (kPhase == StepPhase::Combine) {
      x0v = load_pack<scalar_t, kVec>(p.x0, i);
#pragma unroll
      for (int j = 0; j < kVec; ++j) x0[j] = static_cast<opmath_t>(x0v.v[j]);
    } else {
      const P cv = load_pack<scalar_t, kVec>(p.cond, i);
      P uv{};
      if (p.uncond != nullptr) uv = load_pack<scalar_t, kVec>(p.uncond, i);
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        opmath_t g = static_cast<opmath_t>(cv.v[j]);
        if (p.uncond != nullptr) {
          const opmath_t u = static_cast<opmath_t>(uv.v[j]);
          g = u + k.w * (g - u);
        }
        opmath_t e = k.c_x * static_cast<opmath_t>(xv.v[j]) + k.c_out * g;
        if (clip == X0Clip::Static) {
          e = clamp_keep_nan(e, -k.r, k.r);
        } else if (clip == X0Clip::Dynamic) {
          const opmath_t b = static_cast<opmath_t>(p.s[(i + j) / per_sample]);
          e = clamp_keep_nan(e, -b, b) / b;
        }
        x0[j] = e;
        x0v.v[j] = static_cast<scalar_t>(e);
      }
      *reinterpret_cast<P*>(p.x0 + i) = x0v;
    }
    if constexpr (kPhase != StepPhase::Predict) {
      P pv{}, zv{}, out;
      if (p.x0_prev != nullptr) pv = load_pack<scalar_t, kVec>(p.x0_prev, i);
      if (p.noise != nullptr) zv = load_pack<scalar_t, kVec>(p.noise, i);
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        opmath_t e = k.k_x * static_cast<opmath_t>(xv.v[j]) + k.k_x0 * x0[j];
        if (p.x0_prev != nullptr) e = e + k.k_prev * static_cast<opmath_t>(pv.v[j]);
        if (p.noise != nullptr) e = e + k.k_noise * static_cast<opmath_t>(zv.v[j]);
        out.v[j] = static_cast<scalar_t>(e);
      }
      *reinterpret_cast<P*>(p.x_next + i) = out;
    }
  }
}

template <typename scalar_t>
const scalar_t* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<scalar_t>() : nullptr;
}

template <int kAlign>
bool aligned(const void* ptr) {
  return ptr == nullptr || reinterpret_cast<uintptr_t>(ptr) % kAlign == 0;
}

template <typename scalar_t, int kVec>
void launch(const KernelPointers<scalar_t>& p, const KernelCoefficients& kc, StepPhase phase, X0Clip clip,
            int64_t first, int64_t vectors, int64_t per_sample, cudaStream_t stream) {
  if (vectors <= 0) {
    return;
  }
  constexpr int threads = 256;
  const auto blocks = static_cast<unsigned>(std::min<int64_t>((vectors + threads - 1) / threads, 65535LL * 8));
  switch (phase) {
    case StepPhase::Full:
      sampler_step_kernel<scalar_t, kVec, StepPhase::Full>
          <<<blocks, threads, 0, stream>>>(p, kc, clip, first, vectors, per_sample);
      break;
    case StepPhase::Predict:
      sampler_step_kernel<scalar_t, kVec, StepPhase::Predict>
          <<<blocks, threads, 0, stream>>>(p, kc, clip, first, vectors, per_sample);
      break;
    case StepPhase::Combine:
      sampler_step_kernel<scalar_t, kVec, StepPhase::Combine>
          <<<blocks, threads, 0, stream>>>(p, kc, clip, first, vectors, per_sample);
      break;
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
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
    // 16-byte accesses when every tensor allows them; the remainder (and misaligned inputs, e.g.
    // views with a storage offset) one element at a time.
    constexpr int kVec = 16 / sizeof(scalar_t);
    const bool vectorise = aligned<16>(p.x) && aligned<16>(p.cond) && aligned<16>(p.uncond) &&
                           aligned<16>(p.x0_prev) && aligned<16>(p.noise) && aligned<16>(p.x0) &&
                           aligned<16>(p.x_next);
    const int64_t vectors = vectorise ? total / kVec : 0;
    launch<scalar_t, kVec>(p, kc, phase, clip, 0, vectors, per_sample, stream);
    const int64_t done = vectors * kVec;
    launch<scalar_t, 1>(p, kc, phase, clip, done, total - done, per_sample, stream);
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
