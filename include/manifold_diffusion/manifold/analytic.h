#pragma once

/// \file
/// Manifolds known in closed form: a round sphere and an affine subspace, both embedded in R^D by
/// a matrix with orthonormal columns. Projection, distance and tangent bases are exact. Parameters
/// are held in float64 and cast to each query's dtype and device. Guide: docs/manifold.md.

#include <manifold_diffusion/manifold/manifold.h>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <cstdint>
#include <memory>
#include <string>

namespace manifold_diffusion {

/// Options of SphereManifold: the sphere S^k of radius r centred at c inside the (k+1)-dimensional
/// subspace spanned by the columns of P [D, k+1]: { c + r P u : |u| = 1 }.
///
/// Example:
/// \code
///   auto opts = mdiff::SphereOptions(16).intrinsic_dim(2).radius(2.0);   // S^2 in the first 3 axes of R^16
/// \endcode
struct SphereOptions {
  explicit SphereOptions(int64_t ambient_dim) : ambient_dim_(ambient_dim) {}
  /// D (>= 2).
  TORCH_ARG(int64_t, ambient_dim);
  /// k (>= 1, k + 1 <= D); -1 means D - 1 (a hypersphere).
  TORCH_ARG(int64_t, intrinsic_dim) = -1;
  /// r (> 0).
  TORCH_ARG(double, radius) = 1.0;
  /// c [D]; undefined means the origin.
  TORCH_ARG(at::Tensor, centre);
  /// P [D, k+1] with orthonormal columns (checked to 1e-6); undefined means the first k+1 axes.
  TORCH_ARG(at::Tensor, embedding);
};

/// The sphere S^k of SphereOptions. project(x) = c + r P a / |a| with a = P^T (x - c) (for a = 0,
/// where every point of the sphere is nearest, the direction P e_1); distance(x) =
/// sqrt(|(I - P P^T)(x - c)|^2 + (|a| - r)^2); tangent_basis(x) = P times an orthonormal basis of
/// the complement of a / |a| in R^(k+1) [N, D, k].
///
/// Example:
/// \code
///   auto s = mdiff::SphereManifold::make(mdiff::SphereOptions(3));
///   at::Tensor d = s->distance(at::randn({8, 3}));   // | |x| - 1 |
/// \endcode
class SphereManifold : public Manifold {
 public:
  explicit SphereManifold(SphereOptions options);
  static std::shared_ptr<SphereManifold> make(SphereOptions options) {
    return std::make_shared<SphereManifold>(std::move(options));
  }
  std::string name() const override { return "sphere"; }
  int64_t ambient_dim() const override { return dims_; }
  int64_t intrinsic_dim() const override { return k_; }
  double radius() const { return radius_; }
  /// [D] float64.
  const at::Tensor& centre() const { return centre_; }
  /// [D, k+1] float64.
  const at::Tensor& embedding() const { return embedding_; }
  at::Tensor project(const at::Tensor& x) const override;
  at::Tensor tangent_basis(const at::Tensor& x) const override;
  at::Tensor distance(const at::Tensor& x) const override;

 private:
  at::Tensor flat(const at::Tensor& x) const;
  int64_t dims_;
  int64_t k_;
  double radius_;
  at::Tensor centre_;
  at::Tensor embedding_;
};

/// Options of SubspaceManifold: the affine subspace { offset + P c : c in R^d } for P [D, d] with
/// orthonormal columns.
///
/// Example:
/// \code
///   auto opts = mdiff::SubspaceOptions(10, 3).offset(at::ones({10}));   // a 3-plane through (1, ..., 1)
/// \endcode
struct SubspaceOptions {
  SubspaceOptions(int64_t ambient_dim, int64_t intrinsic_dim)
      : ambient_dim_(ambient_dim), intrinsic_dim_(intrinsic_dim) {}
  /// D (>= 1).
  TORCH_ARG(int64_t, ambient_dim);
  /// d (in [0, D]).
  TORCH_ARG(int64_t, intrinsic_dim);
  /// [D]; undefined means the origin.
  TORCH_ARG(at::Tensor, offset);
  /// P [D, d] with orthonormal columns (checked to 1e-6); undefined means the first d axes.
  TORCH_ARG(at::Tensor, basis);
};

/// An affine subspace: project(x) = o + P P^T (x - o), distance(x) = |(I - P P^T)(x - o)|,
/// tangent_basis(x) = P for every x.
///
/// Example:
/// \code
///   auto plane = mdiff::SubspaceManifold::make(mdiff::SubspaceOptions(3, 2));   // the xy-plane
///   at::Tensor p = plane->project(at::randn({4, 3}));                            // z set to 0
/// \endcode
class SubspaceManifold : public Manifold {
 public:
  explicit SubspaceManifold(SubspaceOptions options);
  static std::shared_ptr<SubspaceManifold> make(SubspaceOptions options) {
    return std::make_shared<SubspaceManifold>(std::move(options));
  }
  std::string name() const override { return "subspace"; }
  int64_t ambient_dim() const override { return dims_; }
  int64_t intrinsic_dim() const override { return d_; }
  /// [D] float64.
  const at::Tensor& offset() const { return offset_; }
  /// [D, d] float64.
  const at::Tensor& basis() const { return basis_; }
  at::Tensor project(const at::Tensor& x) const override;
  at::Tensor tangent_basis(const at::Tensor& x) const override;
  at::Tensor distance(const at::Tensor& x) const override;

 private:
  at::Tensor flat(const at::Tensor& x) const;
  int64_t dims_;
  int64_t d_;
  at::Tensor offset_;
  at::Tensor basis_;
};

}  // namespace manifold_diffusion
