#include "ops/group_norm_kernels.h"

#include <ATen/ATen.h>
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

constexpr int kThreads = 256;

template <typename acc_t>
__device__ acc_t block_sum(acc_t v, acc_t* shared) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    v += __shfl_down_sync(0xffffffffu, v, offset);
  }
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  if (lane == 0) {
    shared[warp] = v;
  }
  __syncthreads();
  acc_t total = 0;
  if (threadIdx.x == 0) {
    for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) {
      total += shared[w];
    }
    shared[0] = total;
  }
  __syncthreads();
  total = shared[0];
  __syncthreads();
  return total;
}

// Element j of group g of sample n.
__device__ __forceinline__ int64_t group_offset(int64_t n, int64_t g, int64_t j, int64_t c, int64_t cg, int64_t hw,
                                                bool channels_last) {
  if (!channels_last) {
    return (n * c + g * cg) * hw + j;
  }
  return n * hw * c + (j / cg) * c + g * cg + (j % cg);
}

// One block per (sample, group): two-pass mean and variance, then the per-channel coefficients
// A = rstd * gamma * (1 + scale), B = (beta - mean * rstd * gamma) * (1 + scale) + shift.
template <typename scalar_t, typename acc_t>
__global__ void group_stats_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ weight,
                                   const scalar_t* __restrict__ bias, const scalar_t* __restrict__ scale,
                                   const scalar_t* __restrict__ shift, acc_t* __restrict__ A, acc_t* __restrict__ M, acc_t* __restrict__ B,
                                   int64_t c, int64_t groups, int64_t hw, double eps, bool channels_last) {
  __shared__ acc_t shared[kThreads / 32];
  const int64_t n = blockIdx.x / groups;
  const int64_t g = blockIdx.x % groups;
  const int64_t cg = c / groups;
  const int64_t len = cg * hw;
  acc_t sum = 0;
  for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
    sum += static_cast<acc_t>(x[group_offset(n, g, j, c, cg, hw, channels_last)]);
  }
  const acc_t mean = block_sum(sum, shared) / static_cast<acc_t>(len);
  acc_t sq = 0;
  for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
    const acc_t d = static_cast<acc_t>(x[group_offset(n, g, j, c, cg, hw, channels_last)]) - mean;
    sq += d * d;
  }
  const acc_t var = block_sum(sq, shared) / static_cast<acc_t>(len);
  const acc_t rstd = static_cast<acc_t>(1) / sqrt(var + static_cast<acc_t>(eps));
  for (int64_t ch = g * cg + threadIdx.x; ch < (g + 1) * cg; ch += blockDim.x) {
    const acc_t gamma = weight ? static_cast<acc_t>(weight[ch]) : acc_t(1);
    const acc_t beta = bias ? static_cast<acc_t>(bias[ch]) : acc_t(0);
    const acc_t k = scale ? acc_t(1) + static_cast<acc_t>(scale[n * c + ch]) : acc_t(1);
    const acc_t t = shift ? static_cast<acc_t>(shift[n * c + ch]) : acc_t(0);
    A[n * c + ch] = rstd * gamma * k;
    M[n * c + ch] = mean;
    B[n * c + ch] = beta * k + t;
  }
}

template <typename scalar_t, typename acc_t>
__global__ void group_apply_kernel(const scalar_t* __restrict__ x, const acc_t* __restrict__ A,
                                   const acc_t* __restrict__ M, const acc_t* __restrict__ B, scalar_t* __restrict__ y, int64_t total, int64_t c,
                                   int64_t hw, bool channels_last, bool silu) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t nc = channels_last ? (i / (hw * c)) * c + i % c : i / hw;
    acc_t z = A[nc] * (static_cast<acc_t>(x[i]) - M[nc]) + B[nc];
    if (silu) {
      z = z / (acc_t(1) + exp(-z));
    }
    y[i] = static_cast<scalar_t>(z);
  }
}

template <typename scalar_t>
const scalar_t* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<scalar_t>() : nullptr;
}

}  // namespace

void group_norm_silu_cuda(const GroupNormArgs& a, at::Tensor& out) {
  const int64_t total = a.x.numel();
  if (total == 0) {
    return;
  }
  const c10::cuda::CUDAGuard guard(a.x.device());
  const int64_t n = a.x.size(0);
  const int64_t c = a.x.size(1);
  const int64_t hw = total / (n * c);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.x.scalar_type(), "group_norm_silu_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto acc_dtype = c10::CppTypeToScalarType<acc_t>::value;
    at::Tensor A = at::empty({n * c}, a.x.options().dtype(acc_dtype));
    at::Tensor M = at::empty({n * c}, a.x.options().dtype(acc_dtype));
    at::Tensor B = at::empty({n * c}, a.x.options().dtype(acc_dtype));
    group_stats_kernel<scalar_t, acc_t><<<static_cast<unsigned>(n * a.groups), kThreads, 0, stream>>>(
        a.x.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(a.weight), ptr_or_null<scalar_t>(a.bias),
        ptr_or_null<scalar_t>(a.scale), ptr_or_null<scalar_t>(a.shift), A.data_ptr<acc_t>(), M.data_ptr<acc_t>(),
        B.data_ptr<acc_t>(), c,
        a.groups, hw, a.eps, a.channels_last);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, 65535LL * 8);
    group_apply_kernel<scalar_t, acc_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        a.x.data_ptr<scalar_t>(), A.data_ptr<acc_t>(), M.data_ptr<acc_t>(), B.data_ptr<acc_t>(), out.data_ptr<scalar_t>(),
        total, c, hw,
        a.channels_last, a.silu);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace detail
}  // namespace ops
}  // namespace manifold_diffusion
