#pragma once

/// \file
/// Fused k-nearest-neighbour candidate search: blocked squared distances from a matrix product and
/// a running per-row top-k, never the whole [M, N] distance matrix.

#include <manifold_diffusion/ops/backend.h>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <cstdint>

namespace manifold_diffusion {
namespace ops {

/// The k smallest squared distances of each query and their point indices (knn_sqdist_topk()).
///
/// Example:
/// \code
///   auto [d2, idx] = mdiff::ops::knn_sqdist_topk(queries, points, 10);   // both [M, 10]
/// \endcode
struct KnnTopK {
  at::Tensor sqdist;   ///< [M, k] squared distances, ascending along each row; the dtype of the inputs.
  at::Tensor indices;  ///< [M, k] int64 row indices into `points`; equal distances keep the smaller index first.
};

/// Options of knn_sqdist_topk().
///
/// Example:
/// \code
///   auto opts = mdiff::ops::KnnTopKOptions().block_points(4096).exclude(at::arange(n, at::kLong));
///   auto graph = mdiff::ops::knn_sqdist_topk(points, points, 8, mdiff::ops::OpBackend::Auto, opts);
/// \endcode
struct KnnTopKOptions {
  /// Points per block (one matrix product [M, block] at a time); 0 picks about 2^22 / M on the CPU
  /// (at least 1024) and 2^24 / M on a GPU (at least 4096). Raised to k + 1 and capped at N.
  /// Memory is M x block distances.
  TORCH_ARG(int64_t, block_points) = 0;
  /// Optional [M] int64 or int32: point exclude[i] is never a neighbour of query i (-1: none), e.g.
  /// arange(M) for a self-kNN graph. Needs k <= N - 1.
  TORCH_ARG(at::Tensor, exclude);
  /// Check that queries and points are finite (one read of each; a GPU synchronisation). Without
  /// the check a NaN distance ranks as +infinity and is returned as +infinity.
  TORCH_ARG(bool, check_finite) = true;
};

/// For each row of `queries` [M, D], the k rows of `points` [N, D] at the smallest squared
/// Euclidean distance, nearest first:
///
///     d2(i, j) = max(|q_i|^2 + |p_j|^2 - 2 q_i . p_j, 0)
///
/// Points are taken in blocks: q p^T of a block is one at::mm (BLAS, oneDNN or cuBLAS do the
/// flops), and a fused epilogue forms d2 and merges it into each row's running top-k (CPU: a
/// per-row max-heap inside at::parallel_for over rows; CUDA: one thread block per row keeping
/// per-thread sorted lists merged by warp shuffles for k <= 64, a stable sort of the block above).
/// Ties are broken by the smaller index, so results are deterministic.
/// The expanded form loses precision when distances are small against the norms (relative error
/// about 1e-7 of |q|^2 in float32): manifold's knn() re-measures its candidates exactly.
///
/// Inputs float32 or float64 (one dtype, one device), 1 <= k <= N (N - 1 with `exclude`); M = 0
/// gives empty [0, k] results. Cost O(M N D) time, O(M block + M k) memory. No gradient.
///
/// Example:
/// \code
///   at::Tensor points = at::randn({60000, 784});
///   mdiff::ops::KnnTopK r = mdiff::ops::knn_sqdist_topk(points.narrow(0, 0, 1024), points, 10);
///   // r.indices.select(1, 0) == arange(1024): each query finds itself at distance 0
/// \endcode
KnnTopK knn_sqdist_topk(const at::Tensor& queries, const at::Tensor& points, int64_t k,
                        OpBackend backend = OpBackend::Auto, const KnnTopKOptions& options = {});

}  // namespace ops
}  // namespace manifold_diffusion
