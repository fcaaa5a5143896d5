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

constexpr int kWarp = 32;
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarp;

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

// One thread block per row (grid-stride over rows). The warps share the d coefficients U (x - c):
// warp w reduces rows w, w + 8, ... of U; then every thread forms its columns of c + U^T coef and
// the block sums the squared normal residual. c == nullptr means c = 0.
template <typename scalar_t>
__global__ void project_local_pca_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ centers,
                                         const scalar_t* __restrict__ bases, const int64_t* __restrict__ assign,
                                         scalar_t* __restrict__ out, scalar_t* __restrict__ residual, int64_t rows,
                                         int64_t dims, int64_t d) {
  using opmath_t = at::opmath_type<scalar_t>;
  extern __shared__ __align__(16) unsigned char shared_raw[];
  opmath_t* coef = reinterpret_cast<opmath_t*>(shared_raw);  // [d]
  __shared__ opmath_t partial[kWarps];
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int warp = static_cast<int>(threadIdx.x) / kWarp;
  for (int64_t i = blockIdx.x; i < rows; i += gridDim.x) {
    const int64_t a = assign[i];
    const scalar_t* xi = x + i * dims;
    const scalar_t* ci = centers != nullptr ? centers + a * dims : nullptr;
    const scalar_t* u = bases + a * d * dims;
    for (int64_t r = warp; r < d; r += kWarps) {
      const scalar_t* ur = u + r * dims;
      opmath_t acc = 0;
      for (int64_t j = lane; j < dims; j += kWarp) {
        const opmath_t y = static_cast<opmath_t>(xi[j]) - (ci != nullptr ? static_cast<opmath_t>(ci[j]) : opmath_t(0));
        acc += static_cast<opmath_t>(ur[j]) * y;
      }
      acc = warp_sum(acc);
      if (lane == 0) {
        coef[r] = acc;
      }
    }
    __syncthreads();
    opmath_t res = 0;
    for (int64_t j = threadIdx.x; j < dims; j += blockDim.x) {
      opmath_t t = 0;
      for (int64_t r = 0; r < d; ++r) {
        t += coef[r] * static_cast<opmath_t>(u[r * dims + j]);
      }
      const opmath_t c = ci != nullptr ? static_cast<opmath_t>(ci[j]) : opmath_t(0);
      const opmath_t y = static_cast<opmath_t>(xi[j]) - c;
      out[i * dims + j] = static_cast<scalar_t>(c + t);
      res += (y - t) * (y - t);
    }
    if (residual != nullptr) {
      res = warp_sum(res);
      if (lane == 0) {
        partial[warp] = res;
      }
      __syncthreads();
      if (threadIdx.x == 0) {
        opmath_t total = 0;
        for (int w = 0; w < kWarps; ++w) {
          total += partial[w];
        }
        residual[i] = static_cast<scalar_t>(sqrt(total));
      }
    }
    __syncthreads();  // coef and partial are reused by the next row
  }
}

}  // namespace

void project_local_pca_cuda(const at::Tensor& x, const at::Tensor& centers, const at::Tensor& bases,
                            const at::Tensor& assign, at::Tensor& out, at::Tensor& residual) {
  const int64_t rows = x.size(0);
  if (rows == 0) {
    return;
  }
  const c10::cuda::CUDAGuard guard(x.device());
  if (x.size(1) == 0) {
    if (residual.defined()) {
      residual.zero_();
    }
    return;
  }
  const int64_t d = bases.size(1);
  const int64_t blocks = std::min<int64_t>(rows, 65535LL * 16);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "project_local_pca_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const size_t shared = static_cast<size_t>(std::max<int64_t>(d, 1)) * sizeof(opmath_t);
    project_local_pca_kernel<scalar_t><<<static_cast<unsigned>(blocks), kThreads, shared, stream>>>(
        x.data_ptr<scalar_t>(), centers.defined() ? centers.data_ptr<scalar_t>() : nullptr, bases.data_ptr<scalar_t>(),
        assign.data_ptr<int64_t>(), out.data_ptr<scalar_t>(),
        residual.defined() ? residual.data_ptr<scalar_t>() : nullptr, rows, x.size(1), d);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace detail
}  // namespace ops
}  // namespace manifold_diffusion
