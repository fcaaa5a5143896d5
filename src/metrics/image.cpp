#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/metrics/image.h>

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <vector>

namespace manifold_diffusion {
namespace metrics {
namespace {

constexpr int64_t kWindow = 11;
constexpr double kSigma = 1.5;
constexpr double kK1 = 0.01;
constexpr double kK2 = 0.03;

std::pair<at::Tensor, at::Tensor> as_images(const at::Tensor& x, const at::Tensor& y) {
  const std::pair<const at::Tensor*, const char*> args[] = {{&x, "x"}, {&y, "y"}};
  for (const auto& [t, name] : args) {
    check_dim(*t, name, 4);
    check_non_empty(*t, name);
    check_floating(*t, name);
    check_finite(*t, name);
  }
  check_same_shape(x, "x", y, "y");
  return {x.to(at::kCPU, at::kDouble).contiguous(), y.to(at::kCPU, at::kDouble).contiguous()};
}

// Normalised 1-D Gaussian window of kWindow taps.
at::Tensor gaussian_window() {
  const at::Tensor u = at::arange(kWindow, at::TensorOptions().dtype(at::kDouble)) - (kWindow - 1) / 2.0;
  const at::Tensor g = at::exp(-u.pow(2) / (2 * kSigma * kSigma));
  return g / g.sum();
}

}  // namespace

at::Tensor psnr(const at::Tensor& x, const at::Tensor& y, double data_range) {
  CheckContext check_context("psnr");
  check_positive(data_range, "data_range");
  const auto [a, b] = as_images(x, y);
  const at::Tensor mse = (a - b).pow(2).flatten(1).mean(1);
  // log10(range^2 / 0) = +inf: identical images.
  return 10.0 * at::log10(data_range * data_range / mse);
}

at::Tensor ssim(const at::Tensor& x, const at::Tensor& y, double data_range) {
  CheckContext check_context("ssim");
  check_positive(data_range, "data_range");
  const auto [a, b] = as_images(x, y);
  MD_CHECK_VALUE(a.size(2) >= kWindow && a.size(3) >= kWindow, "ssim: images must be at least ", kWindow, " x ",
                 kWindow, " (the Gaussian window), got shape ", shape_string(x));
  const int64_t channels = a.size(1);
  const at::Tensor g = gaussian_window();
  const at::Tensor wh = g.view({1, 1, kWindow, 1}).expand({channels, 1, kWindow, 1}).contiguous();
  const at::Tensor ww = g.view({1, 1, 1, kWindow}).expand({channels, 1, 1, kWindow}).contiguous();
  const std::vector<int64_t> ones = {1, 1};
  const std::vector<int64_t> zeros = {0, 0};
  const at::Tensor no_bias;
  auto filter = [&](const at::Tensor& t) {
    const at::Tensor rows = at::conv2d(t, wh, no_bias, ones, zeros, ones, channels);
    return at::conv2d(rows, ww, no_bias, ones, zeros, ones, channels);
  };
  const double c1 = (kK1 * data_range) * (kK1 * data_range);
  const double c2 = (kK2 * data_range) * (kK2 * data_range);
  const at::Tensor mu_a = filter(a);
  const at::Tensor mu_b = filter(b);
  const at::Tensor var_a = filter(a * a) - mu_a * mu_a;
  const at::Tensor var_b = filter(b * b) - mu_b * mu_b;
  const at::Tensor cov = filter(a * b) - mu_a * mu_b;
  const at::Tensor map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) /
                         ((mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2));
  return map.flatten(1).mean(1);
}

}  // namespace metrics
}  // namespace manifold_diffusion
