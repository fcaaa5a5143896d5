#pragma once

/// \file
/// Exact k-nearest-neighbour search. Squared distances are formed as |q|^2 + |p|^2 - 2 q p^T one
/// block of queries by one block of points at a time (a matrix product, so it runs wherever the
/// tensors live, CPU or CUDA), the best candidates of each query are kept by the fused
/// mdiff::ops::knn_sqdist_topk(), and the surviving candidates are re-measured as |q - p| so that
/// the returned distances are exact. Memory is one
/// block of distances (about `block_entries` values), never Q x N. Guide: docs/manifold.md.

#include <manifold_diffusion/core/namespace.h>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <cstdint>

namespace manifold_diffusion {

/// The k nearest points of each query, nearest first.
///
/// Example:
/// \code
///   mdiff::KnnResult r = mdiff::knn(queries, points, 5);
///   at::Tensor nearest = points.index_select(0, r.indices.select(1, 0));   // [Q, D]
/// \endcode
struct KnnResult {
  at::Tensor distances;  ///< [Q, k] Euclidean distances, ascending along each row.
  at::Tensor indices;    ///< [Q, k] int64 row indices into `points`.
};

/// Options of knn() and knn_graph().
///
/// Example:
/// \code
///   auto r = mdiff::knn(q, p, 10, mdiff::KnnOptions().block_entries(1 << 22));
/// \endcode
struct KnnOptions {
  /// About how many distances one block holds (>= 1); blocks are 4 bytes (float32) or 8 bytes
  /// (float64) per entry, so the default 2^24 needs 64 MiB or 128 MiB.
  TORCH_ARG(int64_t, block_entries) = int64_t{1} << 24;
  /// Keep a few extra candidates per query and re-measure them as |q - p| (exact distances, and
  /// ties resolved by the exact distance, then by the smaller index). Off: distances come from the
  /// expanded formula (relative error about 1e-7 of |q|^2 in float32).
  TORCH_ARG(bool, refine) = true;
};

/// The k nearest rows of `points` [N, D] to each row of `queries` [Q, D] (float32 or float64, the
/// same device; computed in float64 when either is float64, otherwise float32). A query that is
/// also a point finds itself at distance 0. Among candidates at equal distance the smaller index
/// comes first (with `refine`, k + max(4, k / 2) candidates are kept per query).
/// Needs 1 <= k <= N, finite inputs. Results carry no gradient. Cost O(Q N D) time,
/// O(block_entries + Q k) memory.
///
/// Example:
/// \code
///   at::Tensor points = at::randn({60000, 784});
///   mdiff::KnnResult r = mdiff::knn(points.narrow(0, 0, 1024), points, 10);   // r.distances [1024, 10]
/// \endcode
KnnResult knn(const at::Tensor& queries, const at::Tensor& points, int64_t k, const KnnOptions& options = {});

/// The k nearest other points of every point of `points` [N, D]: as knn(points, points, k) with
/// each point excluded from its own list (by index: duplicates of a point are still neighbours).
/// Needs 1 <= k <= N - 1.
///
/// Example:
/// \code
///   mdiff::KnnResult g = mdiff::knn_graph(points, 12);   // g.indices [N, 12], no i in row i
/// \endcode
KnnResult knn_graph(const at::Tensor& points, int64_t k, const KnnOptions& options = {});

}  // namespace manifold_diffusion
