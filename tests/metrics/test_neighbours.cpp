#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/metrics/neighbours.h>

#include "test_util.h"

#include <ATen/ATen.h>

#include <cstdio>
#include <limits>

namespace {

namespace mm = mdiff::metrics;

at::Tensor randn(at::IntArrayRef shape, uint64_t seed) {
  at::Generator g = mdiff::make_generator(seed);
  return at::randn(shape, g, at::TensorOptions().dtype(at::kDouble));
}

at::Tensor points_1d(std::vector<double> v) {
  const auto n = static_cast<int64_t>(v.size());
  return at::tensor(v, at::kDouble).view({n, 1});
}

TEST(MetricsPrdc, OneDimensionalHandExample) {
  // real {0, 1, 2, 3}: every k = 1 radius is 1. fake {0.5, 1.4, 10}: radii 0.9, 0.9, 8.6.
  // precision: 0.5 and 1.4 lie in real balls, 10 does not -> 2/3.
  // recall: 0 and 1 lie in the ball of 0.5; 2 and 3 in the (outlier) ball of 10 -> 1.
  // density: 0.5 is in the balls of 0 and 1, 1.4 in those of 1 and 2, 10 in none -> 4 / (1 * 3).
  // coverage: the nearest fake of 0, 1, 2 is within 1, that of 3 (1.6) is not -> 3/4.
  const mm::PRDC r = mm::prdc(points_1d({0, 1, 2, 3}), points_1d({0.5, 1.4, 10}), 1);
  EXPECT_NEAR(r.precision, 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(r.recall, 1.0, 1e-12);
  EXPECT_NEAR(r.density, 4.0 / 3.0, 1e-12);
  EXPECT_NEAR(r.coverage, 0.75, 1e-12);
}

TEST(MetricsPrdc, BoundaryCountsAsInside) {
  // real {0, 2}: radii 2. fake {4, 5}: radii 1. 4 is exactly on the ball of 2.
  const mm::PRDC r = mm::prdc(points_1d({0, 2}), points_1d({4, 5}), 1);
  EXPECT_DOUBLE_EQ(r.precision, 0.5);
  EXPECT_DOUBLE_EQ(r.recall, 0.0);
  EXPECT_DOUBLE_EQ(r.density, 0.5);
  EXPECT_DOUBLE_EQ(r.coverage, 0.5);
}

TEST(MetricsPrdc, IdenticalGaussiansMatchReference) {
  // clovaai/generative-evaluation-prdc reports for N(0, I) in 64 dimensions, 1000 points each, k = 5:
  // precision ~0.77, recall ~0.77, density ~1.0, coverage ~0.97. One run at this size spreads
  // widely (measured over seeds 0..5: precision 0.727-0.735, recall 0.704-0.787, density
  // 0.784-1.043, coverage 0.946-0.977), because every point's verdict hangs on the same few
  // k-NN radii. The test therefore averages three independent pairs; E[density] = 1 exactly for
  // identical distributions (Naeem et al. 2020, Lemma 1), so +-0.1 is about 1.5 standard errors
  // of the mean of three; +-0.05 for precision and recall, +-0.03 for coverage.
  mm::PRDC mean;
  const int runs = 3;
  for (int run = 0; run < runs; ++run) {
    const at::Tensor real = randn({1000, 64}, 2 * run);
    const at::Tensor fake = randn({1000, 64}, 2 * run + 1).to(at::kFloat);
    const mm::PRDC r = mm::prdc(real, fake, 5);
    std::printf("prdc N(0, I) 64-d, 1000 vs 1000, k = 5, seeds %d/%d: P %.4f R %.4f D %.4f C %.4f\n", 2 * run,
                2 * run + 1, r.precision, r.recall, r.density, r.coverage);
    mean.precision += r.precision / runs;
    mean.recall += r.recall / runs;
    mean.density += r.density / runs;
    mean.coverage += r.coverage / runs;
  }
  const mm::PRDC r = mean;
  EXPECT_NEAR(r.precision, 0.77, 0.05);
  EXPECT_NEAR(r.recall, 0.77, 0.05);
  EXPECT_NEAR(r.density, 1.0, 0.1);
  EXPECT_NEAR(r.coverage, 0.97, 0.03);
}

TEST(MetricsPrdc, DisjointDistributionsScoreZero) {
  const at::Tensor real = randn({200, 8}, 2);
  const at::Tensor fake = randn({150, 8}, 3) + 100.0;
  const mm::PRDC r = mm::prdc(real, fake);
  EXPECT_EQ(r.precision, 0.0);
  EXPECT_EQ(r.recall, 0.0);
  EXPECT_EQ(r.density, 0.0);
  EXPECT_EQ(r.coverage, 0.0);
}

TEST(MetricsPrdc, RejectsBadInputs) {
  const at::Tensor x = randn({5, 3}, 4);
  MD_EXPECT_ERROR(mm::prdc(x, randn({8, 3}, 5), 5), "k must be in [1, 4]", "got 5");
  MD_EXPECT_ERROR(mm::prdc(x, x, 0), "k must be in", "got 0");
  MD_EXPECT_ERROR(mm::prdc(x, randn({8, 2}, 5), 1), "real", "fake", "feature dimension");
  MD_EXPECT_ERROR(mm::prdc(at::zeros({5, 3}, at::kLong), x, 1), "real", "floating");
  at::Tensor bad = x.clone();
  bad[0][0] = std::numeric_limits<double>::infinity();
  MD_EXPECT_ERROR(mm::prdc(x, bad, 1), "fake", "finite");
}

// k-th nearest distances by an exact pairwise difference and a full sort.
at::Tensor brute_force_kth(const at::Tensor& a, const at::Tensor& b, int64_t k) {
  const at::Tensor d = (a.unsqueeze(1) - b.unsqueeze(0)).pow(2).sum(2).sqrt();
  return std::get<0>(d.sort(1)).select(1, k - 1);
}

TEST(MetricsKnnDistance, MatchesBruteForceAcrossBlocks) {
  // 4000 reference points: blocks of ~1000 rows, so 1200 points take two blocks.
  const at::Tensor points = randn({1200, 2}, 6);
  const at::Tensor reference = randn({4000, 2}, 7).to(at::kFloat);
  for (int64_t k : {1, 4}) {
    const at::Tensor d = mm::knn_distance(points, reference, k);
    ASSERT_EQ(d.sizes(), at::IntArrayRef({1200}));
    EXPECT_EQ(d.scalar_type(), at::kDouble);
    EXPECT_LT((d - brute_force_kth(points, reference.to(at::kDouble), k)).abs().max().item<double>(), 1e-9);
  }
  // The radii exclude the point itself: the second smallest distance within the set.
  const at::Tensor small = randn({60, 3}, 8);
  EXPECT_LT((mm::knn_radii(small, 3) - brute_force_kth(small, small, 4)).abs().max().item<double>(), 1e-9);
}

TEST(MetricsKnnDistance, RejectsBadInputs) {
  const at::Tensor x = randn({5, 3}, 9);
  MD_EXPECT_ERROR(mm::knn_distance(x, x, 6), "k must be in [1, 5]", "got 6");
  MD_EXPECT_ERROR(mm::knn_distance(x, randn({5, 4}, 9)), "points", "reference", "feature dimension");
  MD_EXPECT_ERROR(mm::knn_radii(x, 5), "k must be in [1, 4]", "got 5");
}

}  // namespace
