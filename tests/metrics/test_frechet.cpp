#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/metrics/distribution.h>

#include "test_util.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

namespace {

namespace mm = mdiff::metrics;

at::Tensor randn(at::IntArrayRef shape, uint64_t seed) {
  at::Generator g = mdiff::make_generator(seed);
  return at::randn(shape, g, at::TensorOptions().dtype(at::kDouble));
}

// A random symmetric positive definite matrix.
at::Tensor random_spd(int64_t d, uint64_t seed) {
  const at::Tensor a = randn({d, d}, seed);
  return at::mm(a, a.t()) / static_cast<double>(d) + 0.1 * at::eye(d, at::kDouble);
}

// Principal square root of a matrix with positive eigenvalues by the Denman-Beavers iteration.
at::Tensor sqrtm_denman_beavers(const at::Tensor& m) {
  at::Tensor y = m.clone();
  at::Tensor z = at::eye(m.size(0), at::kDouble);
  for (int i = 0; i < 100; ++i) {
    const at::Tensor y_next = 0.5 * (y + at::inverse(z));
    const at::Tensor z_next = 0.5 * (z + at::inverse(y));
    const double change = (y_next - y).abs().max().item<double>();
    y = y_next;
    z = z_next;
    if (change < 1e-14) break;
  }
  return y;
}

double brute_force_frechet(const at::Tensor& mu1, const at::Tensor& s1, const at::Tensor& mu2, const at::Tensor& s2) {
  const at::Tensor dmu = mu1 - mu2;
  const at::Tensor root = sqrtm_denman_beavers(at::mm(s1, s2));
  return dmu.dot(dmu).item<double>() + s1.trace().item<double>() + s2.trace().item<double>() -
         2.0 * root.trace().item<double>();
}

TEST(MetricsFrechet, IdenticalDistributionsGiveZero) {
  const at::Tensor x = randn({200, 8}, 1);
  EXPECT_NEAR(mm::frechet_distance(x, x), 0.0, 1e-8);
  EXPECT_NEAR(mm::frechet_distance(x.to(at::kFloat), x.to(at::kFloat)), 0.0, 1e-8);
  const at::Tensor s = random_spd(6, 2);
  const at::Tensor mu = randn({6}, 3);
  EXPECT_NEAR(mm::frechet_distance(mu, s, mu, s), 0.0, 1e-8);
}

TEST(MetricsFrechet, DiagonalGaussiansClosedForm) {
  const at::Tensor mu1 = randn({5}, 4);
  const at::Tensor mu2 = randn({5}, 5);
  const at::Tensor a = randn({5}, 20).abs() + 0.1;
  const at::Tensor b = randn({5}, 21).abs() * 3 + 0.1;
  const double expected =
      (mu1 - mu2).pow(2).sum().item<double>() + (a.sqrt() - b.sqrt()).pow(2).sum().item<double>();
  EXPECT_NEAR(mm::frechet_distance(mu1, at::diag(a), mu2, at::diag(b)), expected, 1e-10 * (1 + expected));
}

TEST(MetricsFrechet, MatchesDenmanBeaversSquareRoot) {
  const int64_t d = 7;
  const at::Tensor mu1 = randn({d}, 6);
  const at::Tensor mu2 = randn({d}, 7);
  const at::Tensor s1 = random_spd(d, 8);
  // Non-commuting pair.
  const at::Tensor s2 = random_spd(d, 9);
  const double expected = brute_force_frechet(mu1, s1, mu2, s2);
  EXPECT_NEAR(mm::frechet_distance(mu1, s1, mu2, s2), expected, 1e-9 * (1 + expected));
  // Commuting pair: s3 is a polynomial in s1.
  const at::Tensor s3 = at::mm(s1, s1) + 0.5 * s1 + 0.2 * at::eye(d, at::kDouble);
  const double expected_c = brute_force_frechet(mu1, s1, mu2, s3);
  EXPECT_NEAR(mm::frechet_distance(mu1, s1, mu2, s3), expected_c, 1e-9 * (1 + expected_c));
  // From samples: the same as from the sample statistics (covariance with divisor N - 1).
  const at::Tensor x = randn({50, d}, 10);
  const at::Tensor y = randn({60, d}, 11) * 1.5 + 0.3;
  auto cov = [](const at::Tensor& p) {
    const at::Tensor c = p - p.mean(0);
    return at::mm(c.t(), c) / static_cast<double>(p.size(0) - 1);
  };
  const double from_stats = brute_force_frechet(x.mean(0), cov(x), y.mean(0), cov(y));
  EXPECT_NEAR(mm::frechet_distance(x, y), from_stats, 1e-9 * (1 + from_stats));
}

TEST(MetricsFrechet, RankDeficientCovariances) {
  // sqrt(diag(1, 0, 0) diag(4, 9, 0)) = diag(2, 0, 0): 1 + 13 - 2 * 2 = 10.
  const at::Tensor mu = at::zeros({3}, at::kDouble);
  const at::Tensor s1 = at::diag(at::tensor({1.0, 0.0, 0.0}, at::kDouble));
  const at::Tensor s2 = at::diag(at::tensor({4.0, 9.0, 0.0}, at::kDouble));
  EXPECT_NEAR(mm::frechet_distance(mu, s1, mu, s2), 10.0, 1e-10);
  // Fewer samples than dimensions: singular covariances, still exact.
  const at::Tensor x = randn({5, 16}, 12);
  EXPECT_NEAR(mm::frechet_distance(x, x), 0.0, 1e-8);
  const at::Tensor y = randn({6, 16}, 13);
  const double d = mm::frechet_distance(x, y);
  EXPECT_TRUE(std::isfinite(d));
  EXPECT_GT(d, 0.0);
}

TEST(MetricsFrechet, IsSymmetric) {
  const at::Tensor x = randn({40, 6}, 14);
  const at::Tensor y = randn({30, 6}, 15) * 2.0 + 1.0;
  const double a = mm::frechet_distance(x, y);
  EXPECT_NEAR(a, mm::frechet_distance(y, x), 1e-9 * a);
  EXPECT_GT(a, 0.0);
}

TEST(MetricsFrechet, RejectsBadInputs) {
  const at::Tensor x = randn({10, 3}, 16);
  MD_EXPECT_ERROR(mm::frechet_distance(x, randn({10, 4}, 17)), "x", "y", "feature dimension", "[10, 4]");
  MD_EXPECT_ERROR(mm::frechet_distance(x, randn({10}, 17)), "y", "expected 2 dimensions");
  MD_EXPECT_ERROR(mm::frechet_distance(x, x.narrow(0, 0, 1)), "y", "at least 2 points", "got 1");
  at::Tensor bad = x.clone();
  bad[2][1] = std::numeric_limits<double>::quiet_NaN();
  MD_EXPECT_ERROR(mm::frechet_distance(bad, x), "x", "finite");
  MD_EXPECT_ERROR(mm::frechet_distance(at::zeros({0, 3}), x), "x", "non-empty");
  const at::Tensor mu = at::zeros({3}, at::kDouble);
  MD_EXPECT_ERROR(mm::frechet_distance(mu, at::eye(3), mu, at::eye(4)), "sigma2", "[3, 3]", "[4, 4]");
  MD_EXPECT_ERROR(mm::frechet_distance(mu, at::eye(3), at::zeros({4}), at::eye(3)), "mu2", "[3]", "[4]");
}

}  // namespace
