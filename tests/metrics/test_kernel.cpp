#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/metrics/distribution.h>

#include "test_util.h"

#include <ATen/ATen.h>

#include <cmath>
#include <vector>

namespace {

namespace mm = mdiff::metrics;

at::Tensor randn(at::IntArrayRef shape, uint64_t seed) {
  at::Generator g = mdiff::make_generator(seed);
  return at::randn(shape, g, at::TensorOptions().dtype(at::kDouble));
}

TEST(MetricsKid, TinyHandExample) {
  // D = 1, k(a, b) = (ab + 1)^3. x = {1, 2}, y = {0, 3}, one subset of both points:
  // k_xx(1, 2) = 27, k_yy(0, 3) = 1, k_xy = 1 + 64 + 1 + 343 = 409.
  // MMD^2 = 2 * 27 / 2 + 2 * 1 / 2 - 2 * 409 / 4 = -176.5.
  const at::Tensor x = at::tensor({1.0, 2.0}, at::kDouble).view({2, 1});
  const at::Tensor y = at::tensor({0.0, 3.0}, at::kDouble).view({2, 1});
  const mm::KIDResult r = mm::kid(x, y, 3, 2, 0);
  EXPECT_NEAR(r.mean, -176.5, 1e-9);
  EXPECT_NEAR(r.std, 0.0, 1e-9);
}

TEST(MetricsKid, SameDistributionNearZeroShiftedPositive) {
  const at::Tensor x = randn({400, 16}, 1);
  const at::Tensor y = randn({400, 16}, 2);
  const mm::KIDResult same = mm::kid(x, y, 20, 200, 0);
  EXPECT_GT(same.std, 0.0);
  EXPECT_LT(std::abs(same.mean), same.std);
  const mm::KIDResult shifted = mm::kid(x, y + 0.5, 20, 200, 0);
  EXPECT_GT(shifted.mean, 5.0 * shifted.std);
  EXPECT_GT(shifted.mean, 10.0 * std::abs(same.mean));
  // Reproducible from the seed; subset_size is capped at the number of points.
  const mm::KIDResult again = mm::kid(x, y, 20, 200, 0);
  EXPECT_EQ(again.mean, same.mean);
  EXPECT_NO_THROW(mm::kid(x.narrow(0, 0, 50), y, 2, 1000, 0));
}

TEST(MetricsKid, RejectsBadInputs) {
  const at::Tensor x = randn({10, 3}, 3);
  MD_EXPECT_ERROR(mm::kid(x, randn({10, 2}, 4)), "feature dimension");
  MD_EXPECT_ERROR(mm::kid(x, x, 0), "subsets must be positive, got 0");
  MD_EXPECT_ERROR(mm::kid(x, x.narrow(0, 0, 1)), "subset_size", "at least 2", "got 1");
}

// Unbiased Gaussian-kernel MMD^2 by explicit loops.
double brute_force_mmd(const at::Tensor& x, const at::Tensor& y, const std::vector<double>& hs) {
  auto k = [&](const at::Tensor& a, const at::Tensor& b) {
    const double d2 = (a - b).pow(2).sum().item<double>();
    double s = 0.0;
    for (double h : hs) s += std::exp(-d2 / (2 * h * h));
    return s;
  };
  const int64_t n = x.size(0);
  const int64_t m = y.size(0);
  double sxx = 0.0, syy = 0.0, sxy = 0.0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      if (i != j) sxx += k(x[i], x[j]);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < m; ++j)
      if (i != j) syy += k(y[i], y[j]);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < m; ++j) sxy += k(x[i], y[j]);
  return sxx / (n * (n - 1.0)) + syy / (m * (m - 1.0)) - 2.0 * sxy / (n * static_cast<double>(m));
}

TEST(MetricsMmd, MatchesBruteForce) {
  const at::Tensor x = randn({7, 3}, 5);
  const at::Tensor y = randn({5, 3}, 6) + 0.4;
  const std::vector<double> hs = {0.7, 1.3};
  EXPECT_NEAR(mm::mmd(x, y, hs), brute_force_mmd(x, y, hs), 1e-12);
  const double h = mm::median_bandwidth(x, y);
  EXPECT_NEAR(mm::mmd(x, y), brute_force_mmd(x, y, {h}), 1e-12);
}

TEST(MetricsMmd, MedianBandwidthHandExample) {
  // Pooled 1-D points {0, 1, 3}: distances 1, 3, 2; median 2.
  const at::Tensor x = at::tensor({0.0, 1.0}, at::kDouble).view({2, 1});
  const at::Tensor y = at::tensor({3.0}, at::kDouble).view({1, 1});
  EXPECT_DOUBLE_EQ(mm::median_bandwidth(x, y), 2.0);
}

TEST(MetricsMmd, NearZeroForOneDistributionPositiveForShift) {
  const at::Tensor x = randn({300, 4}, 7);
  const at::Tensor y = randn({300, 4}, 8);
  const double same = mm::mmd(x, y);
  const double shifted = mm::mmd(x, y + 1.0);
  EXPECT_LT(std::abs(same), 0.01);
  EXPECT_GT(shifted, 0.1);
  EXPECT_GT(shifted, 20.0 * std::abs(same));
}

TEST(MetricsMmd, RejectsBadInputs) {
  const at::Tensor x = randn({10, 3}, 9);
  MD_EXPECT_ERROR(mm::mmd(x, x, {1.0, -2.0}), "bandwidths[1]", "-2");
  MD_EXPECT_ERROR(mm::mmd(x, x.narrow(0, 0, 1)), "y", "at least 2 points");
  MD_EXPECT_ERROR(mm::mmd(x, randn({10, 3, 1}, 9)), "y", "expected 2 dimensions");
}

TEST(MetricsSlicedWasserstein, ShiftedSetClosedForm) {
  // y = x + s: every sorted projection moves by theta.s, so SW2^2 = E[(theta.s)^2] = |s|^2 / D.
  const at::Tensor x = randn({50, 4}, 10);
  const at::Tensor s = at::tensor({1.0, 2.0, -1.0, 0.5}, at::kDouble);
  const double expected = s.pow(2).sum().item<double>() / 4.0;
  // 20000 directions: the relative standard error of the estimate is about 0.7%.
  EXPECT_NEAR(mm::sliced_wasserstein(x, x + s, 20000, 0), expected, 0.04 * expected);
  // Two point masses behave the same.
  const at::Tensor a = at::zeros({8, 4}, at::kDouble);
  EXPECT_NEAR(mm::sliced_wasserstein(a, a + s, 20000, 1), expected, 0.04 * expected);
  EXPECT_NEAR(mm::sliced_wasserstein(x, x, 64, 0), 0.0, 1e-12);
}

TEST(MetricsSlicedWasserstein, OneDimensionIsExact) {
  // D = 1: theta = +-1. Sorted x = {0, 1, 2}, sorted y = {0.5, 1, 3}.
  const at::Tensor x = at::tensor({2.0, 0.0, 1.0}, at::kDouble).view({3, 1});
  const at::Tensor y = at::tensor({0.5, 3.0, 1.0}, at::kDouble).view({3, 1});
  EXPECT_NEAR(mm::sliced_wasserstein(x, y, 5, 0, 1), 0.5, 1e-12);
  EXPECT_NEAR(mm::sliced_wasserstein(x, y, 5, 0, 2), 1.25 / 3.0, 1e-12);
}

TEST(MetricsSlicedWasserstein, RejectsBadInputs) {
  const at::Tensor x = randn({10, 3}, 11);
  MD_EXPECT_ERROR(mm::sliced_wasserstein(x, randn({9, 3}, 12)), "same number of points", "[10, 3]", "[9, 3]");
  MD_EXPECT_ERROR(mm::sliced_wasserstein(x, x, 16, 0, 3), "p must be 1 or 2, got 3");
  MD_EXPECT_ERROR(mm::sliced_wasserstein(x, x, 0), "projections must be positive, got 0");
}

}  // namespace
