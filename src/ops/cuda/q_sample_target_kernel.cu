#include "ops/manifold_kernels.h"

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

// One element per thread (grid-stride); v == nullptr writes x_t only.
template <typename scalar_t>
__global__ void q_sample_target_kernel(const scalar_t* __restrict__ x0, const scalar_t* __restrict__ noise,
                                       const int64_t* __restrict__ t, const double* __restrict__ signal,
                                       const double* __restrict__ noise_scale, scalar_t* __restrict__ x_t,
                                       scalar_t* __restrict__ v, int64_t total, int64_t per_sample) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t s = i / per_sample;
    const int64_t row = t != nullptr ? t[s] : s;
    const opmath_t a = static_cast<opmath_t>(signal[row]);
    const opmath_t b = static_cast<opmath_t>(noise_scale[row]);
    const opmath_t x = static_cast<opmath_t>(x0[i]);
    const opmath_t e = static_cast<opmath_t>(noise[i]);
    x_t[i] = static_cast<scalar_t>(a * x + b * e);
    if (v != nullptr) {
      v[i] = static_cast<scalar_t>(a * e - b * x);
    }
  }
}

}  // namespace

void q_sample_target_cuda(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t, const at::Tensor& signal,
                          const at::Tensor& noise_scale, at::Tensor& x_t, at::Tensor& v) {
  const int64_t total = x0.numel();
  if (total == 0) {
    return;
  }
  const c10::cuda::CUDAGuard guard(x0.device());
  const int64_t per_sample = total / x0.size(0);
  constexpr int threads = 256;
  const int64_t blocks = std::min<int64_t>((total + threads - 1) / threads, 65535LL * 8);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x0.scalar_type(), "q_sample_target_cuda", [&] {
    q_sample_target_kernel<scalar_t><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
        x0.data_ptr<scalar_t>(), noise.data_ptr<scalar_t>(), t.defined() ? t.data_ptr<int64_t>() : nullptr,
        signal.data_ptr<double>(), noise_scale.data_ptr<double>(), x_t.data_ptr<scalar_t>(),
        v.defined() ? v.data_ptr<scalar_t>() : nullptr, total, per_sample);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace detail
}  // namespace ops
}  // namespace manifold_diffusion
