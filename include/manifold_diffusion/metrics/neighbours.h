#pragma once

/// \file
/// Nearest-neighbour metrics of sample quality: improved precision and recall, density and
/// coverage, and the distance of each point to a reference sample.
///
/// Points are tensors of shape [N, D] (float32 or float64, any device), checked (rank 2, non-empty,
/// finite, the same D) and evaluated on the CPU in float64. Neighbour distances are exact:
/// pairwise Euclidean distances are formed one block of rows at a time, so 10k x 10k points need
/// memory for one block, never N x M x D.
///
/// Example:
/// \code
///   mdiff::metrics::PRDC r = mdiff::metrics::prdc(real_features, fake_features, /*k=*/5);
///   fmt::print("P {:.3f} R {:.3f} D {:.3f} C {:.3f}\n", r.precision, r.recall, r.density, r.coverage);
///   at::Tensor d = mdiff::metrics::knn_distance(samples, dense_reference);   // [N] float64
/// \endcode

#include <manifold_diffusion/core/namespace.h>

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace manifold_diffusion {
namespace metrics {

/// Precision, recall, density and coverage of a generated sample against a real one.
struct PRDC {
  double precision = 0.0;  ///< Fraction of fake points inside some real point's k-NN ball.
  double recall = 0.0;     ///< Fraction of real points inside some fake point's k-NN ball.
  double density = 0.0;    ///< Mean number of real k-NN balls holding a fake point, divided by k.
  double coverage = 0.0;   ///< Fraction of real points whose k-NN ball holds a fake point.
};

/// Improved precision and recall (Kynkäänniemi et al. 2019, "Improved precision and recall metric
/// for assessing generative models") and density and coverage (Naeem et al. 2020, "Reliable
/// fidelity and diversity metrics for generative models"), as in clovaai/generative-evaluation-prdc.
///
/// The k-NN ball of a point has radius the distance to its k-th nearest neighbour in its own set,
/// the point itself excluded; a point on the boundary is inside (closed balls, as in both papers).
/// Needs k >= 1, k < N and k < M.
///
/// Example:
/// \code
///   auto r = mdiff::metrics::prdc(real, fake);   // k = 5
/// \endcode
PRDC prdc(const at::Tensor& real, const at::Tensor& fake, int64_t k = 5);

/// Distance of each point to its k-th nearest point of `reference` ([N] float64, on the CPU), e.g.
/// how far generated samples lie from a dense sample of the data manifold. Exact and blocked.
/// Needs 1 <= k <= the number of reference points. A point that is also in `reference` is not
/// excluded (its distance to itself, 0, counts as the nearest).
///
/// Example:
/// \code
///   at::Tensor d = mdiff::metrics::knn_distance(samples, reference, /*k=*/1);
///   double mean_gap = d.mean().item<double>();
/// \endcode
at::Tensor knn_distance(const at::Tensor& points, const at::Tensor& reference, int64_t k = 1);

/// Distance of each point of `points` to its k-th nearest neighbour among the other points
/// (itself excluded): the radii of the k-NN balls used by prdc(). Needs 1 <= k < N.
///
/// Example:
/// \code
///   at::Tensor radii = mdiff::metrics::knn_radii(real, 5);   // [N] float64
/// \endcode
at::Tensor knn_radii(const at::Tensor& points, int64_t k);

}  // namespace metrics
}  // namespace manifold_diffusion
