#pragma once
/// \file
/// The manifold interface shared by analytic manifolds (sphere, embedded subspace) and manifolds
/// estimated from data (ReferenceManifold: points + kNN + local PCA). Constraints and metrics use
/// only this interface.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>

namespace manifold_diffusion {

/// A local affine frame of a manifold near a batch of query points: the manifold is approximated
/// near query i by { origin[i] + basis[i] @ c }.
struct LocalFrame {
  at::Tensor origin;            ///< [N, D] a point of the (estimated) manifold near each query.
  at::Tensor basis;             ///< [N, D, d] orthonormal tangent basis at `origin`.
  at::Tensor nearest_distance;  ///< [N] distance from each query to the nearest manifold (or reference) point.
};

/// A d-dimensional manifold in R^D. Queries are batches [N, ...] whose trailing dimensions flatten
/// to D; results keep the query's shape, dtype and device. Implementations are immutable after
/// construction and may be shared by threads.
///
/// Example:
/// \code
///   auto sphere = mdiff::SphereManifold::make(mdiff::SphereOptions(3));   // S^2 in R^3
///   at::Tensor x = at::randn({8, 3});
///   at::Tensor p = sphere->project(x);          // on the unit sphere
///   at::Tensor d = sphere->distance(x);         // [8] = | |x| - 1 |
///   at::Tensor u = sphere->tangent_basis(x);    // [8, 3, 2]
/// \endcode
class Manifold {
 public:
  virtual ~Manifold() = default;
  /// Short name, e.g. "sphere", "subspace", "reference".
  virtual std::string name() const = 0;
  /// D.
  virtual int64_t ambient_dim() const = 0;
  /// d (estimated for data manifolds).
  virtual int64_t intrinsic_dim() const = 0;
  /// The nearest point of the manifold (exact for analytic manifolds; the projection onto the local
  /// PCA plane at the nearest reference points for data manifolds). Same shape as x.
  virtual at::Tensor project(const at::Tensor& x) const = 0;
  /// Orthonormal tangent bases [N, D, d] at project(x).
  virtual at::Tensor tangent_basis(const at::Tensor& x) const = 0;
  /// Per-sample distance [N] from x to the manifold: |x - project(x)| unless overridden.
  virtual at::Tensor distance(const at::Tensor& x) const;
  /// Local frames at x: origin = project(x), basis = tangent_basis(x), nearest_distance = distance(x)
  /// unless overridden (ReferenceManifold returns the local PCA mean and basis of the k nearest
  /// reference points).
  virtual LocalFrame local_frame(const at::Tensor& x) const;
};

/// Splits v [N, ...] into its tangent component U U^T v and normal component v - U U^T v for
/// bases U [N, D, d]; returns {tangent, normal}, both shaped like v.
std::pair<at::Tensor, at::Tensor> split_tangent_normal(const at::Tensor& v, const at::Tensor& basis);

}  // namespace manifold_diffusion
