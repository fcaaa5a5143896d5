#pragma once

/// \file
/// Synthetic data on low-dimensional manifolds whose geometry is known exactly, so that a model's
/// samples can be scored by their true distance to the data manifold. Guide: docs/data.md.

#include <manifold_diffusion/core/enum.h>
#include <manifold_diffusion/core/namespace.h>

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>
#include <torch/arg.h>

#include <cstdint>

namespace manifold_diffusion {
namespace data {

using manifold_diffusion::operator<<;

/// The manifolds make_synthetic_manifold() can draw from. "Native" coordinates are the ones below;
/// the points are then embedded isometrically in R^ambient_dim.
enum class ManifoldKind {
  /// 2-D sheet in R^3: (t cos t, y, t sin t), t in [1.5 pi, 4.5 pi], y in [0, 21] (scikit-learn's
  /// make_swiss_roll), t and y uniform.
  SwissRoll,
  /// 1-D spiral in R^2: (t cos t, t sin t), t in [1.5 pi, 4.5 pi] uniform — the swiss roll's
  /// cross-section, the "2-D swiss roll" of diffusion tutorials.
  SwissRoll2D,
  /// 1-D, two arcs in R^2: (cos s, sin s) and (1 - cos s, 0.5 - sin s), s in [0, pi] (scikit-learn's
  /// make_moons); label 0 for the upper arc, 1 for the lower.
  TwoMoons,
  /// 1-D, two concentric circles in R^2 of radii 1 (label 0) and 0.5 (label 1).
  Circles,
  /// 1-D curve in R^3: (cos t, sin t, 0.1 t), t in [0, 4 pi] (two turns), t uniform.
  Helix,
  /// The unit sphere S^k in R^(k+1), k = intrinsic_dim, uniform.
  Sphere,
  /// 2-D torus in R^3 with major radius 1 and minor radius 0.3, uniform by area.
  Torus,
};

}  // namespace data

template <>
struct EnumTraits<data::ManifoldKind> {
  static constexpr const char* type_name = "ManifoldKind";
  static constexpr EnumEntry<data::ManifoldKind> entries[] = {
      {data::ManifoldKind::SwissRoll, "swiss_roll"},
      {data::ManifoldKind::SwissRoll2D, "swiss_roll_2d"},
      {data::ManifoldKind::TwoMoons, "two_moons"},
      {data::ManifoldKind::Circles, "circles"},      {data::ManifoldKind::Helix, "helix"},
      {data::ManifoldKind::Sphere, "sphere"},        {data::ManifoldKind::Torus, "torus"},
  };
};

namespace data {

/// Options of make_synthetic_manifold().
///
/// Example:
/// \code
///   auto opts = mdiff::data::SyntheticManifoldOptions(mdiff::data::ManifoldKind::Sphere, 4096)
///                   .intrinsic_dim(2)     // S^2 in R^3 ...
///                   .ambient_dim(16)      // ... embedded in R^16
///                   .noise(0.01)
///                   .seed(7);
/// \endcode
struct SyntheticManifoldOptions {
  SyntheticManifoldOptions(ManifoldKind kind, int64_t n) : kind_(kind), n_(n) {}

  /// Which manifold.
  TORCH_ARG(ManifoldKind, kind);
  /// Number of points (>= 1).
  TORCH_ARG(int64_t, n);
  /// k of the sphere S^k (>= 1); ignored by the other kinds.
  TORCH_ARG(int64_t, intrinsic_dim) = 2;
  /// Dimension D of the space the points live in; 0 keeps the native coordinates (identity
  /// embedding). Otherwise D >= native dimension and the native coordinates are mapped by a random
  /// matrix with orthonormal rows drawn from `seed`.
  TORCH_ARG(int64_t, ambient_dim) = 0;
  /// Standard deviation of isotropic Gaussian noise added in R^D (0: points on the manifold).
  TORCH_ARG(double, noise) = 0.0;
  /// Seed of the points, the noise and the embedding.
  TORCH_ARG(uint64_t, seed) = 0;
  /// dtype of `points` and `embedding` (float32 or float64).
  TORCH_ARG(c10::ScalarType, dtype) = c10::kFloat;
};

/// Points drawn from a manifold, with what is needed to measure distances to it.
///
/// Example:
/// \code
///   auto m = mdiff::data::make_synthetic_manifold(
///       mdiff::data::SyntheticManifoldOptions(mdiff::data::ManifoldKind::Torus, 2048).ambient_dim(8));
///   at::Tensor d = m.distance(samples);   // [N] exact distances of samples [N, 8] to the torus
///   double mean_off_manifold = d.mean().item<double>();
/// \endcode
struct SyntheticManifold {
  /// [n, D] points (with noise when options.noise() > 0).
  at::Tensor points;
  /// [d_native, D] with orthonormal rows: points = native @ embedding (+ noise).
  at::Tensor embedding;
  /// int64 [n]: the component of each point (arc or circle for TwoMoons and Circles), else 0.
  at::Tensor labels;
  /// The options the manifold was made with.
  SyntheticManifoldOptions options{ManifoldKind::Sphere, 1};
  /// Dimension of the manifold (1 for curves, 2 for surfaces, k for S^k).
  int64_t intrinsic_dim = 0;
  /// Dimension of the native coordinates.
  int64_t native_dim = 0;

  /// Exact Euclidean distance from each row of `x` [m, D] to the clean manifold, as a [m] tensor of
  /// x's floating dtype (computed in float64 on the CPU). The residual orthogonal to the embedded
  /// native space is combined with the distance in native coordinates: closed forms for Sphere,
  /// Circles, Torus and TwoMoons; for Helix and SwissRoll a dense search over the curve parameter
  /// refined by safeguarded Newton steps (agrees with the true distance to 1e-9 in tests).
  at::Tensor distance(const at::Tensor& x) const;
};

/// Draws `options.n()` points from the manifold `options.kind()`. Deterministic given the options.
///
/// Example:
/// \code
///   auto m = mdiff::data::make_synthetic_manifold(
///       mdiff::data::SyntheticManifoldOptions(mdiff::data::ManifoldKind::SwissRoll, 1000).noise(0.05).seed(1));
///   at::Tensor x = m.points;   // float32 [1000, 3]
/// \endcode
SyntheticManifold make_synthetic_manifold(const SyntheticManifoldOptions& options);

}  // namespace data
}  // namespace manifold_diffusion
