// Uses the installed library through the umbrella header: noising with the fused op must agree
// with the closed form, and a bad argument must raise a clear error.
#include <manifold_diffusion/manifold_diffusion.h>

#include <ATen/ATen.h>

#include <cstdio>

int main() {
  mdiff::set_num_threads(1);
  std::printf("%s\n", mdiff::describe_build().c_str());
  const at::Tensor x0 = at::ones({2, 3});
  const at::Tensor noise = at::full({2, 3}, 2.0);
  const at::Tensor t = at::tensor({0, 1}, at::kLong);
  const at::Tensor a = at::tensor({1.0, 0.6}, at::kDouble);
  const at::Tensor b = at::tensor({0.0, 0.8}, at::kDouble);
  const at::Tensor x_t = mdiff::ops::q_sample(x0, noise, t, a, b);
  const double row1 = x_t[1][0].item<double>();  // 0.6 * 1 + 0.8 * 2 = 2.2
  if (std::abs(x_t[0][0].item<double>() - 1.0) > 1e-6 || std::abs(row1 - 2.2) > 1e-6) {
    std::printf("wrong result: %f %f\n", x_t[0][0].item<double>(), row1);
    return 1;
  }
  try {
    mdiff::ops::q_sample(x0, noise, at::tensor({0, 5}, at::kLong), a, b);
    std::printf("expected an error for t out of range\n");
    return 1;
  } catch (const c10::Error& e) {
    std::printf("bad t rejected: %s\n", e.what_without_backtrace());
  }
  std::printf("consumer ok (manifold_diffusion %s)\n", mdiff::version_string().c_str());
  return 0;
}
