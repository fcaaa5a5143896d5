#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/metrics/distribution.h>

#include "common.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace manifold_diffusion {
namespace metrics {
namespace {

// Sum of all entries of k(a, b) minus, when `same`, its diagonal; accumulated over row blocks.
double gaussian_kernel_sum(const at::Tensor& a, const at::Tensor& b, const std::vector<double>& bandwidths,
                           bool same) {
  double total = 0.0;
  detail::for_each_block(a.size(0), b.size(0), [&](int64_t start, int64_t rows) {
    const at::Tensor d2 = detail::squared_distances(a.narrow(0, start, rows), b);
    for (double h : bandwidths) {
      total += at::exp(d2 * (-0.5 / (h * h))).sum().item<double>();
    }
  });
  if (same) {
    total -= static_cast<double>(a.size(0) * static_cast<int64_t>(bandwidths.size()));
  }
  return total;
}

}  // namespace

KIDResult kid(const at::Tensor& x, const at::Tensor& y, int64_t subsets, int64_t subset_size, uint64_t seed) {
  const at::Tensor a = detail::as_points(x, "x");
  const at::Tensor b = detail::as_points(y, "y");
  detail::check_same_features(a, "x", b, "y");
  check_positive(subsets, "subsets");
  check_positive(subset_size, "subset_size");
  const int64_t m = std::min({subset_size, a.size(0), b.size(0)});
  MD_CHECK_VALUE(m >= 2, "kid: subset_size capped at min(N, M) must be at least 2, got ", m, " (x ",
                 shape_string(x), ", y ", shape_string(y), ")");
  const double inv_d = 1.0 / static_cast<double>(a.size(1));
  auto kernel = [&](const at::Tensor& p, const at::Tensor& q) { return (at::mm(p, q.t()) * inv_d + 1.0).pow(3); };
  at::Generator gen = make_generator(seed);
  const double mm1 = static_cast<double>(m) * static_cast<double>(m - 1);
  std::vector<double> values;
  values.reserve(static_cast<size_t>(subsets));
  for (int64_t s = 0; s < subsets; ++s) {
    const at::Tensor px = a.index_select(0, at::randperm(a.size(0), gen, at::kLong).narrow(0, 0, m));
    const at::Tensor py = b.index_select(0, at::randperm(b.size(0), gen, at::kLong).narrow(0, 0, m));
    const at::Tensor kxx = kernel(px, px);
    const at::Tensor kyy = kernel(py, py);
    const double sxx = (kxx.sum() - kxx.diagonal().sum()).item<double>();
    const double syy = (kyy.sum() - kyy.diagonal().sum()).item<double>();
    const double sxy = kernel(px, py).sum().item<double>();
    values.push_back((sxx + syy) / mm1 - 2.0 * sxy / (static_cast<double>(m) * static_cast<double>(m)));
  }
  KIDResult r;
  for (double v : values) r.mean += v;
  r.mean /= static_cast<double>(values.size());
  double var = 0.0;
  for (double v : values) var += (v - r.mean) * (v - r.mean);
  r.std = std::sqrt(var / static_cast<double>(values.size()));
  return r;
}

double median_bandwidth(const at::Tensor& x, const at::Tensor& y) {
  const at::Tensor a = detail::as_points(x, "x");
  const at::Tensor b = detail::as_points(y, "y");
  detail::check_same_features(a, "x", b, "y");
  at::Tensor pool = at::cat({a, b}, 0);
  constexpr int64_t kMaxPool = 2048;
  if (pool.size(0) > kMaxPool) {
    pool = pool.index_select(
        0, at::linspace(0, static_cast<double>(pool.size(0) - 1), kMaxPool, at::kDouble).round().to(at::kLong));
  }
  const int64_t n = pool.size(0);
  MD_CHECK_VALUE(n >= 2, "median_bandwidth: need at least 2 points in x and y together, got ", n);
  const at::Tensor d = detail::squared_distances(pool, pool).sqrt();
  const at::Tensor iu = at::triu_indices(n, n, 1, at::TensorOptions().dtype(at::kLong));
  const at::Tensor off = d.index({iu[0], iu[1]});
  const at::Tensor positive = off.masked_select(off > 0);
  MD_CHECK_VALUE(positive.numel() > 0, "median_bandwidth: every pooled point is the same, no bandwidth to pick");
  // Lower median of the positive pairwise distances.
  return std::get<0>(positive.sort()).select(0, (positive.numel() - 1) / 2).item<double>();
}

double mmd(const at::Tensor& x, const at::Tensor& y, const std::vector<double>& bandwidths) {
  CheckContext check_context("mmd");
  const at::Tensor a = detail::as_points(x, "x");
  const at::Tensor b = detail::as_points(y, "y");
  detail::check_same_features(a, "x", b, "y");
  MD_CHECK_VALUE(a.size(0) >= 2, "x: unbiased MMD needs at least 2 points, got ", a.size(0));
  MD_CHECK_VALUE(b.size(0) >= 2, "y: unbiased MMD needs at least 2 points, got ", b.size(0));
  std::vector<double> hs = bandwidths;
  for (size_t i = 0; i < hs.size(); ++i) {
    MD_CHECK_VALUE(std::isfinite(hs[i]) && hs[i] > 0, "bandwidths[", i, "] must be positive, got ", hs[i]);
  }
  if (hs.empty()) {
    hs.push_back(median_bandwidth(a, b));
  }
  const double n = static_cast<double>(a.size(0));
  const double m = static_cast<double>(b.size(0));
  return gaussian_kernel_sum(a, a, hs, true) / (n * (n - 1)) + gaussian_kernel_sum(b, b, hs, true) / (m * (m - 1)) -
         2.0 * gaussian_kernel_sum(a, b, hs, false) / (n * m);
}

double sliced_wasserstein(const at::Tensor& x, const at::Tensor& y, int64_t projections, uint64_t seed, int64_t p) {
  const at::Tensor a = detail::as_points(x, "x");
  const at::Tensor b = detail::as_points(y, "y");
  detail::check_same_features(a, "x", b, "y");
  MD_CHECK_VALUE(a.size(0) == b.size(0),
                 "sliced_wasserstein: x and y must hold the same number of points (sorted projections are "
                 "matched one to one), got shapes ",
                 shape_string(x), " and ", shape_string(y));
  check_positive(projections, "projections");
  MD_CHECK_VALUE(p == 1 || p == 2, "p must be 1 or 2, got ", p);
  at::Generator gen = make_generator(seed);
  at::Tensor theta = at::randn({a.size(1), projections}, gen, at::TensorOptions().dtype(at::kDouble));
  theta = theta / theta.norm(2, {0}, /*keepdim=*/true);
  const at::Tensor pa = std::get<0>(at::mm(a, theta).sort(0));
  const at::Tensor pb = std::get<0>(at::mm(b, theta).sort(0));
  const at::Tensor diff = (pa - pb).abs();
  return (p == 2 ? diff.pow(2) : diff).mean().item<double>();
}

}  // namespace metrics
}  // namespace manifold_diffusion
