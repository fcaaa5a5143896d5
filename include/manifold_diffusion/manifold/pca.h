#pragma once

/// \file
/// Principal component analysis, local PCA on neighbourhoods (tangent-space estimates), and
/// estimates of the intrinsic dimension of a point cloud. Guide: docs/manifold.md.

#include <manifold_diffusion/core/namespace.h>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <cstdint>

namespace manifold_diffusion {

/// Options of PCA.
///
/// Example:
/// \code
///   mdiff::PCA pca(mdiff::PCAOptions().n_components(2));
/// \endcode
struct PCAOptions {
  /// Number of components kept; -1 keeps min(N, D).
  TORCH_ARG(int64_t, n_components) = -1;
  /// Subtract the mean before the decomposition (off: components of the raw second moment).
  TORCH_ARG(bool, center) = true;
};

/// Principal component analysis by an eigen-decomposition of the D x D covariance (of the N x N
/// Gram matrix when N < D), in float64 on the CPU. Each component's sign is chosen so that its
/// largest-magnitude entry is positive, so results are deterministic. Inputs [N, ...] are
/// flattened to [N, D]; transform() and inverse_transform() keep the input's dtype and device.
/// Cost O(N D min(N, D) + min(N, D)^3).
///
/// Example:
/// \code
///   mdiff::PCA pca(mdiff::PCAOptions().n_components(2));
///   at::Tensor z = pca.fit_transform(x);             // [N, 2]
///   at::Tensor back = pca.inverse_transform(z);      // [N, D]: x projected on the top-2 plane
///   double kept = pca.explained_variance_ratio().sum().item<double>();
/// \endcode
class PCA {
 public:
  explicit PCA(PCAOptions options = {});
  /// Fits the components to x [N, ...] (N >= 1, finite, floating).
  PCA& fit(const at::Tensor& x);
  /// fit(x), then transform(x).
  at::Tensor fit_transform(const at::Tensor& x);
  /// Coordinates [N, d] = (x - mean) @ components^T.
  at::Tensor transform(const at::Tensor& x) const;
  /// Points [N, D] = z @ components + mean, for z [N, d].
  at::Tensor inverse_transform(const at::Tensor& z) const;
  bool fitted() const { return components_.defined(); }
  /// d (after fit()).
  int64_t n_components() const;
  /// D (after fit()).
  int64_t n_features() const;
  /// [D] float64 (zeros when center is off).
  const at::Tensor& mean() const;
  /// [d, D] float64, orthonormal rows, by decreasing variance.
  const at::Tensor& components() const;
  /// [d] float64 variance along each component (divided by N - 1).
  const at::Tensor& explained_variance() const;
  /// [d] float64 explained_variance / total variance.
  const at::Tensor& explained_variance_ratio() const;

 private:
  void check_fitted(const char* what) const;
  PCAOptions options_;
  at::Tensor mean_, components_, variance_, ratio_;
};

/// Local PCA at M neighbourhoods: mean, tangent basis and covariance spectrum.
///
/// Example:
/// \code
///   auto g = mdiff::knn(points, points, 12);
///   mdiff::LocalPCA l = mdiff::local_pca(points, g.indices, 2);   // l.basis [N, D, 2]
/// \endcode
struct LocalPCA {
  at::Tensor mean;         ///< [M, D] mean of each neighbourhood.
  at::Tensor basis;        ///< [M, D, d] orthonormal columns: the top-d principal directions.
  at::Tensor eigenvalues;  ///< [M, min(k, D)] descending eigenvalues of (covariance + ridge I).
};

/// Local PCA of the neighbourhoods `neighbours` [M, k] (integer row indices into `points` [N, D],
/// e.g. knn(queries, points, k).indices): the covariance of each neighbourhood (divided by k),
/// plus `ridge` times the identity, is eigen-decomposed (the k x k Gram matrix when k < D), and
/// its top `dim` eigenvectors form the basis. The ridge keeps the basis well defined (and
/// orthonormal) when a neighbourhood spans fewer than `dim` directions, e.g. duplicates. Computed
/// in float64 on the points' device in blocks; results have the points' dtype and device.
/// Needs 1 <= dim <= min(k, D), ridge >= 0. Cost O(M k D min(k, D)).
///
/// Example:
/// \code
///   auto nb = mdiff::knn(x, reference, 12).indices;
///   auto l = mdiff::local_pca(reference, nb, 2, 1e-5);
///   at::Tensor proj = l.mean + at::bmm(l.basis, at::bmm(l.basis.transpose(1, 2),
///                                               (x - l.mean).unsqueeze(2))).squeeze(2);
/// \endcode
LocalPCA local_pca(const at::Tensor& points, const at::Tensor& neighbours, int64_t dim, double ridge = 1e-5);

/// Options of the intrinsic-dimension estimators.
///
/// Example:
/// \code
///   auto opts = mdiff::IntrinsicDimOptions().k(20).threshold(0.9);
/// \endcode
struct IntrinsicDimOptions {
  /// Neighbours per point (>= 2; < N).
  TORCH_ARG(int64_t, k) = 12;
  /// Local PCA rule: the smallest d whose top-d eigenvalues hold this fraction of the local
  /// variance, in (0, 1].
  TORCH_ARG(double, threshold) = 0.95;
  /// At most this many evenly spaced points are examined (>= 1); their neighbours are searched
  /// among all points.
  TORCH_ARG(int64_t, max_points) = 2000;
};

/// An intrinsic-dimension estimate: a global value and the local values it aggregates.
///
/// Example:
/// \code
///   mdiff::IntrinsicDimension e = mdiff::intrinsic_dim_mle(points);
///   int64_t d = std::llround(e.estimate);
/// \endcode
struct IntrinsicDimension {
  double estimate = 0.0;  ///< The global estimate.
  at::Tensor local;       ///< [M] float64 per examined point (NaN where undefined).
};

/// Local-PCA explained-variance rule: at each examined point, the number of principal directions of
/// its k-neighbourhood (the point included) needed to hold `threshold` of the local variance; the
/// estimate is their mean. On noise-free d-dimensional data every local value is at most d (thin,
/// elongated neighbourhoods can show fewer); curvature and noise push it up; it never exceeds
/// min(k - 1, D). Cost: knn + local_pca.
///
/// Example:
/// \code
///   double d = mdiff::intrinsic_dim_local_pca(sphere_points).estimate;   // ~2 for S^2
/// \endcode
IntrinsicDimension intrinsic_dim_local_pca(const at::Tensor& points, const IntrinsicDimOptions& options = {});

/// Levina–Bickel maximum-likelihood estimate (NeurIPS 2004) from the distances T_1 <= ... <= T_k
/// to the k nearest other points: m(x) = [ (1 / (k - 1)) sum_{j<k} log(T_k / T_j) ]^-1, aggregated
/// as the inverse of the mean of 1 / m(x) (MacKay and Ghahramani's correction). Points with a
/// duplicate (T_1 = 0) are left out (local NaN). Cost: knn.
///
/// Example:
/// \code
///   double d = mdiff::intrinsic_dim_mle(points, mdiff::IntrinsicDimOptions().k(10)).estimate;
/// \endcode
IntrinsicDimension intrinsic_dim_mle(const at::Tensor& points, const IntrinsicDimOptions& options = {});

}  // namespace manifold_diffusion
