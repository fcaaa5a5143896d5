#pragma once

/// \file
/// Distances between two samples of feature vectors: Fréchet distance (FID when the features are
/// Inception features), kernel inception distance, Gaussian-kernel MMD and sliced Wasserstein.
///
/// Every function takes points as tensors of shape [N, D] (float32 or float64, any device); they
/// are checked (rank 2, non-empty, finite, the same D in both) and evaluated on the CPU in float64.
///
/// Example:
/// \code
///   at::Tensor real = ...;   // [N, D] features of real data
///   at::Tensor fake = ...;   // [M, D] features of generated samples
///   double fid = mdiff::metrics::frechet_distance(real, fake);
///   mdiff::metrics::KIDResult k = mdiff::metrics::kid(real, fake, /*subsets=*/100, /*subset_size=*/1000);
///   double mmd2 = mdiff::metrics::mmd(real, fake);                       // median-heuristic bandwidth
///   double sw2 = mdiff::metrics::sliced_wasserstein(real, fake, 256);    // needs N == M
/// \endcode

#include <manifold_diffusion/core/namespace.h>

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace manifold_diffusion {
namespace metrics {

/// Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2):
/// ||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^{1/2}) (Heusel et al. 2017, "GANs
/// trained by a two time-scale update rule converge to a local Nash equilibrium").
///
/// tr((sigma1 sigma2)^{1/2}) is the sum of the square roots of the eigenvalues of the symmetric
/// matrix sigma1^{1/2} sigma2 sigma1^{1/2}, with tiny negative eigenvalues (round-off) clamped to
/// zero, so singular covariances (fewer samples than dimensions) need no regularisation. The
/// covariances are symmetrised before use; the result is clamped at 0.
///
/// mu1, mu2: [D]; sigma1, sigma2: [D, D].
///
/// Example:
/// \code
///   double d = mdiff::metrics::frechet_distance(mu_real, cov_real, mu_fake, cov_fake);
///   double fid = mdiff::metrics::frechet_distance(real_features, fake_features);   // from samples
/// \endcode
double frechet_distance(const at::Tensor& mu1, const at::Tensor& sigma1, const at::Tensor& mu2,
                        const at::Tensor& sigma2);
/// Fréchet distance between the Gaussians fitted to the samples x [N, D] and y [M, D] (mean and
/// unbiased covariance, divisor N - 1, as numpy's `cov`); N, M >= 2.
double frechet_distance(const at::Tensor& x, const at::Tensor& y);

/// Mean and standard deviation of the per-subset KID estimates.
struct KIDResult {
  double mean = 0.0;  ///< Mean of the unbiased MMD^2 estimates over the subsets.
  double std = 0.0;   ///< Their standard deviation (population form, divisor `subsets`).
};

/// Kernel inception distance (Bińkowski et al. 2018, "Demystifying MMD GANs"): the unbiased MMD^2
/// with the cubic polynomial kernel k(a, b) = (a.b / D + 1)^3, averaged over `subsets` pairs of
/// random subsets of `subset_size` points drawn without replacement from x and from y.
/// `subset_size` is capped at min(N, M) (as clean-fid does) and must then be at least 2. The
/// subsets are drawn from a generator seeded with `seed`, so the result is reproducible.
///
/// Example:
/// \code
///   auto k = mdiff::metrics::kid(real, fake, 100, 1000, /*seed=*/0);
///   fmt::print("KID {:.4f} +- {:.4f}\n", k.mean, k.std);
/// \endcode
KIDResult kid(const at::Tensor& x, const at::Tensor& y, int64_t subsets = 100, int64_t subset_size = 1000,
              uint64_t seed = 0);

/// Unbiased MMD^2 (Gretton et al. 2012, "A kernel two-sample test") with the kernel
/// k(a, b) = sum_h exp(-||a - b||^2 / (2 h^2)) over the bandwidths h. With no bandwidths, one is
/// chosen by the median heuristic: the lower median of the positive pairwise distances between the
/// pooled points (at most 2048 of them, evenly spaced, when the pool is larger). N, M >= 2. The
/// kernel sums are accumulated in blocks, so memory stays O(block x (N + M)). The unbiased estimate
/// can be slightly negative when the two samples come from one distribution.
///
/// Example:
/// \code
///   double m = mdiff::metrics::mmd(x, y);                  // median heuristic
///   double m3 = mdiff::metrics::mmd(x, y, {0.5, 1, 2});   // sum over three bandwidths
/// \endcode
double mmd(const at::Tensor& x, const at::Tensor& y, const std::vector<double>& bandwidths = {});

/// The median heuristic bandwidth that mmd() uses when given none.
double median_bandwidth(const at::Tensor& x, const at::Tensor& y);

/// Sliced Wasserstein distance: the mean over `projections` random unit directions theta (drawn
/// from a generator seeded with `seed`) of the 1-D W_p^p between the projected samples, computed
/// by matching sorted projections. `p` is 1 (mean W1) or 2 (mean W2^2, the default). x and y must
/// hold the same number of points (sorting matches them one to one; subsample the larger set
/// first).
///
/// Example:
/// \code
///   double sw = mdiff::metrics::sliced_wasserstein(x, y, /*projections=*/512, /*seed=*/0, /*p=*/2);
/// \endcode
double sliced_wasserstein(const at::Tensor& x, const at::Tensor& y, int64_t projections = 128, uint64_t seed = 0,
                          int64_t p = 2);

}  // namespace metrics
}  // namespace manifold_diffusion
