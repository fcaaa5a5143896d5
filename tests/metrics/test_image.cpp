#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/metrics/image.h>

#include "test_util.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

namespace {

namespace mm = mdiff::metrics;

at::Tensor rand_images(at::IntArrayRef shape, uint64_t seed) {
  at::Generator g = mdiff::make_generator(seed);
  return at::rand(shape, g, at::TensorOptions().dtype(at::kDouble));
}

at::Tensor randn(at::IntArrayRef shape, uint64_t seed) {
  at::Generator g = mdiff::make_generator(seed);
  return at::randn(shape, g, at::TensorOptions().dtype(at::kDouble));
}

// SSIM by direct loops over every window position (Wang et al. 2004).
double brute_force_ssim(const at::Tensor& x, const at::Tensor& y, int64_t n, double range) {
  const int64_t c_count = x.size(1), h = x.size(2), w = x.size(3), win = 11;
  double weights[11][11];
  double total = 0.0;
  for (int i = 0; i < win; ++i)
    for (int j = 0; j < win; ++j) {
      const double u = i - 5.0, v = j - 5.0;
      weights[i][j] = std::exp(-(u * u + v * v) / (2 * 1.5 * 1.5));
      total += weights[i][j];
    }
  const double c1 = (0.01 * range) * (0.01 * range), c2 = (0.03 * range) * (0.03 * range);
  const auto xa = x.accessor<double, 4>();
  const auto ya = y.accessor<double, 4>();
  double sum = 0.0;
  int64_t count = 0;
  for (int64_t c = 0; c < c_count; ++c)
    for (int64_t r = 0; r + win <= h; ++r)
      for (int64_t s = 0; s + win <= w; ++s) {
        double mx = 0, my = 0;
        for (int i = 0; i < win; ++i)
          for (int j = 0; j < win; ++j) {
            mx += weights[i][j] / total * xa[n][c][r + i][s + j];
            my += weights[i][j] / total * ya[n][c][r + i][s + j];
          }
        double vx = 0, vy = 0, cxy = 0;
        for (int i = 0; i < win; ++i)
          for (int j = 0; j < win; ++j) {
            const double dx = xa[n][c][r + i][s + j] - mx, dy = ya[n][c][r + i][s + j] - my;
            const double wt = weights[i][j] / total;
            vx += wt * dx * dx;
            vy += wt * dy * dy;
            cxy += wt * dx * dy;
          }
        sum += ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2));
        ++count;
      }
  return sum / static_cast<double>(count);
}

TEST(MetricsImage, IdenticalImages) {
  const at::Tensor x = rand_images({3, 2, 16, 16}, 1);
  const at::Tensor p = mm::psnr(x, x);
  ASSERT_EQ(p.sizes(), at::IntArrayRef({3}));
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_EQ(p[i].item<double>(), std::numeric_limits<double>::infinity());
  }
  const at::Tensor s = mm::ssim(x.to(at::kFloat), x.to(at::kFloat));
  ASSERT_EQ(s.sizes(), at::IntArrayRef({3}));
  EXPECT_LT((s - 1.0).abs().max().item<double>(), 1e-12);
}

TEST(MetricsImage, PsnrOfConstantOffset) {
  const at::Tensor x = rand_images({2, 3, 8, 8}, 2);
  // MSE = 0.01: 10 log10(1 / 0.01) = 20 dB; with data_range 2, 10 log10(400).
  EXPECT_LT((mm::psnr(x, x + 0.1, 1.0) - 20.0).abs().max().item<double>(), 1e-9);
  EXPECT_LT((mm::psnr(x - 0.1, x, 2.0) - 10.0 * std::log10(400.0)).abs().max().item<double>(), 1e-9);
}

TEST(MetricsImage, SsimMatchesDirectLoops) {
  const at::Tensor x = rand_images({2, 2, 14, 13}, 3);
  const at::Tensor y = (x + 0.2 * randn({2, 2, 14, 13}, 4)).clamp(0, 1);
  const at::Tensor s = mm::ssim(x, y, 1.0);
  for (int64_t n = 0; n < 2; ++n) {
    EXPECT_NEAR(s[n].item<double>(), brute_force_ssim(x, y, n, 1.0), 1e-10);
  }
  const at::Tensor s2 = mm::ssim(x * 2 - 1, y * 2 - 1, 2.0);
  EXPECT_NEAR(s2[0].item<double>(), brute_force_ssim(x * 2 - 1, y * 2 - 1, 0, 2.0), 1e-10);
}

TEST(MetricsImage, SsimDecreasesWithNoise) {
  const at::Tensor u = at::linspace(0, 6.0, 32, at::kDouble);
  const at::Tensor img = (0.5 + 0.4 * at::sin(u).unsqueeze(1) * at::cos(u).unsqueeze(0)).view({1, 1, 32, 32});
  const at::Tensor noise = randn({1, 1, 32, 32}, 5);
  double last = 1.0;
  for (double sigma : {0.02, 0.05, 0.1, 0.2}) {
    const double s = mm::ssim(img, img + sigma * noise).item<double>();
    EXPECT_LT(s, last) << "sigma " << sigma;
    last = s;
  }
}

TEST(MetricsImage, RejectsBadInputs) {
  const at::Tensor x = rand_images({1, 1, 16, 16}, 6);
  MD_EXPECT_ERROR(mm::psnr(x, x.narrow(2, 0, 15)), "x", "y", "same shape", "[1, 1, 15, 16]");
  MD_EXPECT_ERROR(mm::ssim(x.narrow(3, 0, 10), x.narrow(3, 0, 10)), "at least 11", "[1, 1, 16, 10]");
  MD_EXPECT_ERROR(mm::ssim(x, x, 0.0), "data_range must be positive, got 0");
  MD_EXPECT_ERROR(mm::psnr(x.view({1, 16, 16}), x.view({1, 16, 16})), "x", "expected 4 dimensions");
}

}  // namespace
