#pragma once

/// \file
/// Fused projection of a batch onto assigned local affine frames (local PCA planes).

#include <manifold_diffusion/ops/backend.h>

#include <ATen/core/Tensor.h>

namespace manifold_diffusion {
namespace ops {

/// The projections and the normal residual norms returned by project_local_pca_with_residual().
///
/// Example:
/// \code
///   auto r = mdiff::ops::project_local_pca_with_residual(x, centers, bases, assign);
///   at::Tensor off = r.residual_norm > 0.1;   // rows far from their plane
/// \endcode
struct LocalPcaProjection {
  at::Tensor projected;      ///< [B, D] c + U^T U (x - c).
  at::Tensor residual_norm;  ///< [B] |x - projected| = |(I - U^T U)(x - c)|.
};

/// Projects each row of `x` [B, D] onto the affine plane of its assigned frame:
///
///     projected[i] = c + U^T U (x[i] - c),   c = centers[assign[i]], U = bases[assign[i]]
///
/// with `centers` [K, D], `bases` [K, d, D] whose rows are orthonormal (not checked) and `assign`
/// [B] int64 or int32 in [0, K). One pass per row: d dot products and d axpys, no [B, d, D] gather
/// (CPU: one at::parallel_for over rows; CUDA: one thread block per row). Dtypes float16,
/// bfloat16, float32, float64 (one dtype, one device; float32 arithmetic for the reduced-precision
/// ones). B = 0 gives an empty result; d = 0 projects onto the centres.
///
/// Differentiable in `x` (the backward is the same projection without centres, U^T U g). When
/// `centers` or `bases` require a gradient, the differentiable reference runs instead.
///
/// Example:
/// \code
///   at::Tensor bases = std::get<0>(at::linalg_qr(at::randn({K, D, d}))).transpose(1, 2);   // [K, d, D]
///   at::Tensor y = mdiff::ops::project_local_pca(x, centers, bases, assign);              // [B, D]
/// \endcode
at::Tensor project_local_pca(const at::Tensor& x, const at::Tensor& centers, const at::Tensor& bases,
                             const at::Tensor& assign, OpBackend backend = OpBackend::Auto);

/// As project_local_pca(), also returning the norm of each row's normal residual, computed in the
/// same pass (differentiable in `x` as well).
///
/// Example:
/// \code
///   auto [proj, dist] = mdiff::ops::project_local_pca_with_residual(x, centers, bases, assign);
/// \endcode
LocalPcaProjection project_local_pca_with_residual(const at::Tensor& x, const at::Tensor& centers,
                                                   const at::Tensor& bases, const at::Tensor& assign,
                                                   OpBackend backend = OpBackend::Auto);

}  // namespace ops
}  // namespace manifold_diffusion
