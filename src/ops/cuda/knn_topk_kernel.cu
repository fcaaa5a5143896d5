#include "ops/manifold_kernels.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <limits>

namespace manifold_diffusion {
namespace ops {
namespace detail {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerRow = 8;  // one thread block of 256 threads per query row
constexpr int64_t kNoIndex = std::numeric_limits<int64_t>::max();

// (da, ia) < (db, ib) lexicographically.
template <typename T>
__device__ __forceinline__ bool pair_less(T da, int64_t ia, T db, int64_t ib) {
  return da < db || (da == db && ia < ib);
}

// Inserts (v, j) into the ascending list (vals, idx) of length count (capacity k), after every
// entry of equal value: a lane sees its indices in increasing order, so the list stays sorted by
// (value, index).
template <typename T, int MAXK>
__device__ __forceinline__ void insert_sorted(T (&vals)[MAXK], int64_t (&idx)[MAXK], int& count, int k, T v,
                                              int64_t j) {
  int pos = count < k ? count++ : k - 1;
  while (pos > 0 && vals[pos - 1] > v) {
    vals[pos] = vals[pos - 1];
    idx[pos] = idx[pos - 1];
    --pos;
  }
  vals[pos] = v;
  idx[pos] = j;
}

// The warp's smallest (value, index) of the lanes' candidates (v, i); every lane gets it.
template <typename T>
__device__ __forceinline__ void warp_arg_min(T& v, int64_t& i) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const T other_v = __shfl_xor_sync(0xffffffffu, v, offset);
    const long long other_i = __shfl_xor_sync(0xffffffffu, static_cast<long long>(i), offset);
    if (pair_less<T>(other_v, static_cast<int64_t>(other_i), v, i)) {
      v = other_v;
      i = static_cast<int64_t>(other_i);
    }
  }
}

// One block of points for one query row per thread block. The epilogue
// d2 = max(|q|^2 + |p|^2 - 2 q.p, 0) (NaN as +inf) feeds a sorted top-k per thread (candidates at or
// above the row's running k-th distance are dropped at once); each warp merges its 32 lists with
// k rounds of a shuffle arg-min, and warp 0 merges the warps' lists with the running top-k of the
// earlier blocks (whose indices are all smaller) into the new running top-k.
template <typename T, int MAXK>
__global__ void knn_block_topk_kernel(const T* __restrict__ dots, const T* __restrict__ qn, const T* __restrict__ pn,
                                      const int64_t* __restrict__ exclude, int64_t m, int64_t cols, int64_t c0, int k,
                                      bool has_running, T* __restrict__ out_d, int64_t* __restrict__ out_i) {
  __shared__ T list_v[kWarpsPerRow + 1][MAXK];
  __shared__ int64_t list_i[kWarpsPerRow + 1][MAXK];
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int warp = static_cast<int>(threadIdx.x) / kWarp;
  const T inf = std::numeric_limits<T>::infinity();
  for (int64_t row = blockIdx.x; row < m; row += gridDim.x) {
    T* row_d = out_d + row * k;
    int64_t* row_i = out_i + row * k;
    // The running list is list kWarpsPerRow; its worst entry bounds every new candidate.
    for (int r = threadIdx.x; r < k; r += blockDim.x) {
      list_v[kWarpsPerRow][r] = has_running ? row_d[r] : inf;
      list_i[kWarpsPerRow][r] = has_running ? row_i[r] : kNoIndex;
    }
    const T bound = has_running ? row_d[k - 1] : inf;
    T vals[MAXK];
    int64_t idx[MAXK];
    int count = 0;
    const T qi = qn[row];
    const int64_t skip = exclude != nullptr ? exclude[row] : -1;
    const T* drow = dots + row * cols;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const int64_t gj = c0 + j;
      T v = qi + pn[gj] - T(2) * drow[j];
      v = v != v ? inf : (v < T(0) ? T(0) : v);  // NaN as +inf
      const bool take = count < k ? (!has_running || v < bound) : v < vals[k - 1];
      if (take && gj != skip) {
        insert_sorted<T, MAXK>(vals, idx, count, k, v, gj);
      }
    }
    // Warp merge: the warp's k best into list `warp`.
    int head = 0;
    for (int r = 0; r < k; ++r) {
      T best_v = head < count ? vals[head] : inf;
      int64_t best_i = head < count ? idx[head] : kNoIndex;
      warp_arg_min(best_v, best_i);
      if (head < count && idx[head] == best_i) {
        ++head;
      }
      if (lane == 0) {
        list_v[warp][r] = best_v;
        list_i[warp][r] = best_i;
      }
    }
    __syncthreads();
    // Block merge in warp 0: lane l walks list l.
    if (warp == 0) {
      int pos = 0;
      for (int r = 0; r < k; ++r) {
        const bool own = lane <= kWarpsPerRow && pos < k;
        T best_v = own ? list_v[lane][pos] : inf;
        int64_t best_i = own ? list_i[lane][pos] : kNoIndex;
        warp_arg_min(best_v, best_i);
        if (own && list_i[lane][pos] == best_i && best_i != kNoIndex) {
          ++pos;
        }
        if (lane == 0) {
          row_d[r] = best_v;
          row_i[r] = best_i == kNoIndex ? -1 : best_i;
        }
      }
    }
    __syncthreads();  // the lists are reused by the next row
  }
}

template <typename T, int MAXK>
void launch_block_topk(const at::Tensor& dots, const at::Tensor& qn, const at::Tensor& pn, const int64_t* exclude,
                       int64_t m, int64_t cols, int64_t c0, int k, bool has_running, at::Tensor& sqdist,
                       at::Tensor& indices, cudaStream_t stream) {
  const int64_t blocks = std::min<int64_t>(m, int64_t{1} << 20);
  knn_block_topk_kernel<T, MAXK><<<static_cast<unsigned>(blocks), kWarpsPerRow * kWarp, 0, stream>>>(
      dots.data_ptr<T>(), qn.data_ptr<T>(), pn.data_ptr<T>(), exclude, m, cols, c0, k, has_running,
      sqdist.data_ptr<T>(), indices.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// k > 64: the block's distances with ATen, a stable sort, and a stable sort of the merge with the
// running list (whose indices are all smaller, so equal distances keep index order).
void sorted_block_topk(const at::Tensor& dots, const at::Tensor& qn, const at::Tensor& pn_block,
                       const at::Tensor& exclude, int64_t c0, int64_t k, bool has_running, at::Tensor& sqdist,
                       at::Tensor& indices) {
  const int64_t cols = dots.size(1);
  at::Tensor d2 = (qn.unsqueeze(1) + pn_block.unsqueeze(0) - 2 * dots).clamp_min(0);
  const double inf = std::numeric_limits<double>::infinity();
  d2 = at::nan_to_num(d2, inf, inf);
  if (exclude.defined()) {
    // An excluded point becomes NaN, which sorts after +inf.
    const at::Tensor cols_idx = at::arange(c0, c0 + cols, exclude.options()).unsqueeze(0);
    d2.masked_fill_(cols_idx == exclude.unsqueeze(1), std::numeric_limits<double>::quiet_NaN());
  }
  auto sorted = at::sort(d2, /*stable=*/true, /*dim=*/1, /*descending=*/false);
  const int64_t take = std::min(k, cols);
  at::Tensor vals = std::get<0>(sorted).narrow(1, 0, take);
  at::Tensor idx = std::get<1>(sorted).narrow(1, 0, take) + c0;
  if (has_running) {
    vals = at::cat({sqdist, vals}, 1);
    idx = at::cat({indices, idx}, 1);
    auto merged = at::sort(vals, /*stable=*/true, /*dim=*/1, /*descending=*/false);
    vals = std::get<0>(merged).narrow(1, 0, k);
    idx = idx.gather(1, std::get<1>(merged).narrow(1, 0, k));
  }
  sqdist.copy_(vals);
  indices.copy_(idx);
}

}  // namespace

void knn_topk_cuda(const at::Tensor& queries, const at::Tensor& points, const at::Tensor& qn, const at::Tensor& pn,
                   int64_t k, int64_t block, const at::Tensor& exclude, at::Tensor& sqdist, at::Tensor& indices) {
  const c10::cuda::CUDAGuard guard(queries.device());
  const int64_t m = queries.size(0);
  const int64_t n = points.size(0);
  at::Tensor buffer = at::empty({m * block}, queries.options());
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t* ex = exclude.defined() ? exclude.data_ptr<int64_t>() : nullptr;
  for (int64_t c0 = 0; c0 < n; c0 += block) {
    const int64_t cols = std::min(block, n - c0);
    at::Tensor dots = buffer.narrow(0, 0, m * cols).view({m, cols});
    at::mm_out(dots, queries, points.narrow(0, c0, cols).t());
    const bool has_running = c0 > 0;
    if (k > 64) {
      sorted_block_topk(dots, qn, pn.narrow(0, c0, cols), exclude, c0, k, has_running, sqdist, indices);
      continue;
    }
    const int ki = static_cast<int>(k);
    AT_DISPATCH_FLOATING_TYPES(queries.scalar_type(), "knn_topk_cuda", [&] {
      if (k <= 8) {
        launch_block_topk<scalar_t, 8>(dots, qn, pn, ex, m, cols, c0, ki, has_running, sqdist, indices, stream);
      } else if (k <= 16) {
        launch_block_topk<scalar_t, 16>(dots, qn, pn, ex, m, cols, c0, ki, has_running, sqdist, indices, stream);
      } else if (k <= 32) {
        launch_block_topk<scalar_t, 32>(dots, qn, pn, ex, m, cols, c0, ki, has_running, sqdist, indices, stream);
      } else {
        launch_block_topk<scalar_t, 64>(dots, qn, pn, ex, m, cols, c0, ki, has_running, sqdist, indices, stream);
      }
    });
  }
}

}  // namespace detail
}  // namespace ops
}  // namespace manifold_diffusion
