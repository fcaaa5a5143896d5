#pragma once

/// \file
/// A manifold estimated from a sample of it: the reference points, their k-nearest-neighbour
/// structure and local PCA. Guide: docs/manifold.md.

#include <manifold_diffusion/manifold/knn.h>
#include <manifold_diffusion/manifold/manifold.h>
#include <manifold_diffusion/ops/project_local_pca.h>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <cstdint>
#include <memory>
#include <string>

namespace manifold_diffusion {

/// Options of ReferenceManifold.
///
/// Example:
/// \code
///   auto opts = mdiff::ReferenceOptions().k(16).dim(2).ridge(1e-6);
/// \endcode
struct ReferenceOptions {
  /// Reference points per local PCA (>= 2, <= N).
  TORCH_ARG(int64_t, k) = 12;
  /// Intrinsic dimension d in [1, min(k - 1, D)]; -1 estimates it with intrinsic_dim_local_pca()
  /// (same k, `dim_threshold`, at most 2000 points), rounded and clamped to that range.
  TORCH_ARG(int64_t, dim) = -1;
  /// Ridge of local_pca() (>= 0).
  TORCH_ARG(double, ridge) = 1e-5;
  /// Explained-variance threshold used when dim is estimated, in (0, 1].
  TORCH_ARG(double, dim_threshold) = 0.95;
};

/// A data manifold given by reference points X [N, D] (N >= 2): near a query x, the manifold is the
/// local PCA plane (mean m, basis U [D, d]) of the k reference points nearest to x.
/// project(x) = m + U U^T (x - m); local_frame(x) = {m, U, distance to the nearest reference
/// point}; distance(x) = |x - project(x)|. The frame carries no gradient (it depends on x only
/// through the choice of neighbours); project() and distance() are differentiable in x through
/// the linear projection. The reference points keep their dtype and device; queries
/// must be on the same device. Each call costs one knn() of the queries, O(N D) per query;
/// project() and distance() then apply each query's frame with ops::project_local_pca().
///
/// Example:
/// \code
///   auto m = mdiff::ReferenceManifold::make(train_images, mdiff::ReferenceOptions().k(12).dim(8));
///   mdiff::LocalFrame f = m->local_frame(x_t_hat);        // f.basis [B, 784, 8]
///   auto [tangent, normal] = mdiff::split_tangent_normal(score, f.basis);
/// \endcode
class ReferenceManifold : public Manifold {
 public:
  ReferenceManifold(const at::Tensor& points, ReferenceOptions options = {});
  static std::shared_ptr<ReferenceManifold> make(const at::Tensor& points, ReferenceOptions options = {}) {
    return std::make_shared<ReferenceManifold>(points, std::move(options));
  }
  std::string name() const override { return "reference"; }
  int64_t ambient_dim() const override { return points_.size(1); }
  int64_t intrinsic_dim() const override { return dim_; }
  /// The reference points [N, D] (flattened).
  const at::Tensor& points() const { return points_; }
  const ReferenceOptions& options() const { return options_; }
  at::Tensor project(const at::Tensor& x) const override;
  /// |x - project(x)|, from the same pass as the projection (the normal residual of the frame).
  at::Tensor distance(const at::Tensor& x) const override;
  at::Tensor tangent_basis(const at::Tensor& x) const override;
  LocalFrame local_frame(const at::Tensor& x) const override;
  /// The k nearest reference points of each query (x [N, ...]).
  KnnResult neighbours(const at::Tensor& x, int64_t k) const;
  /// The nearest reference point of each query, shaped like x.
  at::Tensor nearest(const at::Tensor& x) const;

 private:
  at::Tensor flat(const at::Tensor& x) const;
  ops::LocalPcaProjection project_onto_frames(const at::Tensor& f) const;
  at::Tensor points_;
  ReferenceOptions options_;
  int64_t dim_ = 0;
};

}  // namespace manifold_diffusion
