#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/metrics/distribution.h>

#include "common.h"

#include <ATen/ATen.h>

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>

namespace manifold_diffusion {
namespace metrics {
namespace {

using Matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

Matrix to_matrix(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kCPU, at::kDouble).contiguous();
  return Eigen::Map<const Matrix>(c.data_ptr<double>(), c.size(0), c.size(1));
}

// Symmetric square root through the eigendecomposition, negative eigenvalues clamped to 0.
Matrix sqrt_psd(const Matrix& s) {
  Eigen::SelfAdjointEigenSolver<Matrix> es(s);
  MD_INTERNAL_ASSERT(es.info() == Eigen::Success, "eigendecomposition failed");
  const Eigen::VectorXd r = es.eigenvalues().cwiseMax(0.0).cwiseSqrt();
  return es.eigenvectors() * r.asDiagonal() * es.eigenvectors().transpose();
}

}  // namespace

double frechet_distance(const at::Tensor& mu1, const at::Tensor& sigma1, const at::Tensor& mu2,
                        const at::Tensor& sigma2) {
  CheckContext check_context("frechet_distance");
  const std::pair<const at::Tensor*, const char*> mus[] = {{&mu1, "mu1"}, {&mu2, "mu2"}};
  for (const auto& [t, name] : mus) {
    check_dim(*t, name, 1);
    check_non_empty(*t, name);
    check_floating(*t, name);
    check_finite(*t, name);
  }
  const int64_t d = mu1.size(0);
  check_shape(mu2, "mu2", {d});
  const std::pair<const at::Tensor*, const char*> sigmas[] = {{&sigma1, "sigma1"}, {&sigma2, "sigma2"}};
  for (const auto& [t, name] : sigmas) {
    check_shape(*t, name, {d, d});
    check_floating(*t, name);
    check_finite(*t, name);
  }
  const at::Tensor dmu = mu1.to(at::kCPU, at::kDouble) - mu2.to(at::kCPU, at::kDouble);
  const double mean_term = dmu.dot(dmu).item<double>();

  Matrix s1 = to_matrix(sigma1);
  Matrix s2 = to_matrix(sigma2);
  s1 = (0.5 * (s1 + s1.transpose())).eval();
  s2 = (0.5 * (s2 + s2.transpose())).eval();
  const Matrix r1 = sqrt_psd(s1);
  Matrix m = r1 * s2 * r1;
  m = (0.5 * (m + m.transpose())).eval();
  Eigen::SelfAdjointEigenSolver<Matrix> es(m, Eigen::EigenvaluesOnly);
  MD_INTERNAL_ASSERT(es.info() == Eigen::Success, "eigendecomposition failed");
  const double tr_sqrt = es.eigenvalues().cwiseMax(0.0).cwiseSqrt().sum();
  const double value = mean_term + s1.trace() + s2.trace() - 2.0 * tr_sqrt;
  return std::max(value, 0.0);
}

double frechet_distance(const at::Tensor& x, const at::Tensor& y) {
  CheckContext check_context("frechet_distance");
  const at::Tensor a = detail::as_points(x, "x");
  const at::Tensor b = detail::as_points(y, "y");
  detail::check_same_features(a, "x", b, "y");
  MD_CHECK_VALUE(a.size(0) >= 2, "x: need at least 2 points for a covariance, got ", a.size(0));
  MD_CHECK_VALUE(b.size(0) >= 2, "y: need at least 2 points for a covariance, got ", b.size(0));
  auto stats = [](const at::Tensor& p) {
    const at::Tensor mu = p.mean(0);
    const at::Tensor c = p - mu;
    return std::make_pair(mu, at::mm(c.t(), c) / static_cast<double>(p.size(0) - 1));
  };
  const auto [mu1, s1] = stats(a);
  const auto [mu2, s2] = stats(b);
  return frechet_distance(mu1, s1, mu2, s2);
}

}  // namespace metrics
}  // namespace manifold_diffusion
