#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/metrics/neighbours.h>

#include "common.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>

namespace manifold_diffusion {
namespace metrics {
namespace {

// k-th smallest distance of each row of a to the rows of b (k counted from 1), blocked.
at::Tensor kth_distance(const at::Tensor& a, const at::Tensor& b, int64_t k) {
  at::Tensor out = at::empty({a.size(0)}, at::TensorOptions().dtype(at::kDouble));
  detail::for_each_block(a.size(0), b.size(0), [&](int64_t start, int64_t rows) {
    const at::Tensor d2 = detail::squared_distances(a.narrow(0, start, rows), b);
    const at::Tensor kth = std::get<0>(d2.topk(k, 1, /*largest=*/false, /*sorted=*/true)).select(1, k - 1);
    out.narrow(0, start, rows).copy_(kth.sqrt());
  });
  return out;
}

// Radii of the k-NN balls of p: the (k + 1)-th smallest distance counts the point itself (0) first.
at::Tensor radii(const at::Tensor& p, int64_t k) { return kth_distance(p, p, k + 1); }

}  // namespace

at::Tensor knn_distance(const at::Tensor& points, const at::Tensor& reference, int64_t k) {
  const at::Tensor a = detail::as_points(points, "points");
  const at::Tensor b = detail::as_points(reference, "reference");
  detail::check_same_features(a, "points", b, "reference");
  MD_CHECK_VALUE(k >= 1 && k <= b.size(0), "k must be in [1, ", b.size(0), "] (the number of reference points), got ",
                 k);
  return kth_distance(a, b, k);
}

at::Tensor knn_radii(const at::Tensor& points, int64_t k) {
  const at::Tensor a = detail::as_points(points, "points");
  MD_CHECK_VALUE(k >= 1 && k < a.size(0), "k must be in [1, ", a.size(0) - 1,
                 "] (fewer than the number of points), got ", k);
  return radii(a, k);
}

PRDC prdc(const at::Tensor& real, const at::Tensor& fake, int64_t k) {
  const at::Tensor r = detail::as_points(real, "real");
  const at::Tensor f = detail::as_points(fake, "fake");
  detail::check_same_features(r, "real", f, "fake");
  const int64_t n = r.size(0);
  const int64_t m = f.size(0);
  MD_CHECK_VALUE(k >= 1 && k < n && k < m, "k must be in [1, ", std::min(n, m) - 1,
                 "] (fewer than the points in real and in fake), got ", k, " (real ", shape_string(real), ", fake ",
                 shape_string(fake), ")");
  // Squared radii, so that the comparisons below need no square roots.
  const at::Tensor real_r2 = radii(r, k).pow(2).unsqueeze(0);  // [1, n]
  const at::Tensor fake_r2 = radii(f, k).pow(2);               // [m]

  int64_t precise = 0;
  double density_count = 0.0;
  at::Tensor recalled = at::zeros({n}, at::TensorOptions().dtype(at::kBool));
  at::Tensor nearest_fake =
      at::full({n}, std::numeric_limits<double>::infinity(), at::TensorOptions().dtype(at::kDouble));
  detail::for_each_block(m, n, [&](int64_t start, int64_t rows) {
    const at::Tensor d2 = detail::squared_distances(f.narrow(0, start, rows), r);  // [rows, n]
    const at::Tensor in_real = d2 <= real_r2;
    precise += in_real.any(1).sum().item<int64_t>();
    density_count += static_cast<double>(in_real.sum().item<int64_t>());
    recalled.logical_or_((d2 <= fake_r2.narrow(0, start, rows).unsqueeze(1)).any(0));
    nearest_fake = at::minimum(nearest_fake, std::get<0>(d2.min(0)));
  });
  PRDC out;
  out.precision = static_cast<double>(precise) / static_cast<double>(m);
  out.recall = recalled.to(at::kDouble).mean().item<double>();
  out.density = density_count / (static_cast<double>(k) * static_cast<double>(m));
  out.coverage = (nearest_fake <= real_r2.squeeze(0)).to(at::kDouble).mean().item<double>();
  return out;
}

}  // namespace metrics
}  // namespace manifold_diffusion
