#include <manifold_diffusion/ops/q_sample.h>

#include "test_util.h"

#include <ATen/ATen.h>

namespace {

using mdiff::ops::OpBackend;
using mdiff::ops::q_sample;

struct Tables {
  at::Tensor signal;
  at::Tensor noise_scale;
};

// The linear schedule of the DDPM papers: beta from 1e-4 to 0.02 over T steps.
Tables linear_tables(int64_t T, c10::Device device = c10::Device(c10::kCPU)) {
  const at::Tensor ab = at::cumprod(1 - at::linspace(1e-4, 0.02, T, at::kDouble), 0);
  return {ab.sqrt().to(device), (1 - ab).sqrt().to(device)};
}

double tolerance(at::ScalarType dt) {
  switch (dt) {
    case at::kDouble:
      return 1e-12;
    case at::kFloat:
      return 1e-6;
    case at::kHalf:
      return 1e-3;
    default:
      return 1e-2;  // bfloat16
  }
}

TEST(QSample, MatchesTheClosedForm) {
  const at::Tensor x0 = at::tensor({1.0, 2.0, -1.0, 0.5}, at::kDouble).reshape({2, 2});
  const at::Tensor noise = at::tensor({0.5, -1.0, 2.0, 1.0}, at::kDouble).reshape({2, 2});
  const at::Tensor t = at::tensor({1, 0}, at::kLong);
  const at::Tensor a = at::tensor({0.8, 0.6}, at::kDouble);
  const at::Tensor b = at::tensor({0.6, 0.8}, at::kDouble);
  // Row 0 uses t = 1: 0.6 x + 0.8 e; row 1 uses t = 0: 0.8 x + 0.6 e.
  const at::Tensor expected =
      at::tensor({0.6 * 1 + 0.8 * 0.5, 0.6 * 2 - 0.8, 0.8 * -1 + 0.6 * 2, 0.8 * 0.5 + 0.6}, at::kDouble)
          .reshape({2, 2});
  for (auto be : {OpBackend::Auto, OpBackend::Reference, OpBackend::Native}) {
    EXPECT_TRUE(at::allclose(q_sample(x0, noise, t, a, b, be), expected, 0, 1e-15)) << be;
  }
}

TEST(QSample, NativeMatchesReferenceAcrossDtypesAndShapes) {
  const Tables tab = linear_tables(1000);
  const std::vector<std::vector<int64_t>> shapes = {{5}, {3, 7}, {4, 1, 28, 28}, {2, 3, 32, 32}, {1, 2, 3, 4, 5}};
  for (auto dt : {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16}) {
    for (const auto& shape : shapes) {
      const at::Tensor x0 = at::randn(shape).to(dt);
      const at::Tensor noise = at::randn(shape).to(dt);
      const at::Tensor t = at::randint(0, 1000, {shape[0]}, at::kLong);
      const at::Tensor ref = q_sample(x0, noise, t, tab.signal, tab.noise_scale, OpBackend::Reference);
      const at::Tensor fast = q_sample(x0, noise, t, tab.signal, tab.noise_scale, OpBackend::Native);
      EXPECT_EQ(fast.scalar_type(), dt);
      EXPECT_EQ(fast.sizes(), x0.sizes());
      const double tol = tolerance(dt);
      EXPECT_TRUE(at::allclose(fast.to(at::kDouble), ref.to(at::kDouble), tol, tol))
          << dt << " " << x0.sizes() << " max diff "
          << (fast.to(at::kDouble) - ref.to(at::kDouble)).abs().max().item<double>();
    }
  }
}

TEST(QSample, HandlesNonContiguousInputsInt32TimestepsAndFloatTables) {
  const Tables tab = linear_tables(50);
  const at::Tensor x0 = at::randn({6, 8, 4}).transpose(1, 2);
  const at::Tensor noise = at::randn({6, 4, 8}).slice(2, 0, 8);
  ASSERT_FALSE(x0.is_contiguous());
  const at::Tensor t = at::randint(0, 50, {6}, at::kInt);
  const at::Tensor ref = q_sample(x0, noise, t, tab.signal, tab.noise_scale, OpBackend::Reference);
  EXPECT_TRUE(at::allclose(q_sample(x0, noise, t, tab.signal, tab.noise_scale), ref, 1e-6, 1e-6));
  const at::Tensor fast_f32 = q_sample(x0, noise, t, tab.signal.to(at::kFloat), tab.noise_scale.to(at::kFloat));
  EXPECT_TRUE(at::allclose(fast_f32, ref, 1e-6, 1e-6));
}

TEST(QSample, PreservesVarianceOfUnitGaussianData) {
  // x0 and noise independent N(0, 1): x_t has variance a^2 + b^2 = 1 for every t.
  const Tables tab = linear_tables(1000);
  const at::Tensor x0 = at::randn({8, 20000}, at::kDouble);
  const at::Tensor noise = at::randn({8, 20000}, at::kDouble);
  const at::Tensor t = at::tensor({0, 1, 10, 100, 300, 500, 800, 999}, at::kLong);
  const at::Tensor x_t = q_sample(x0, noise, t, tab.signal, tab.noise_scale);
  const at::Tensor var = x_t.var(1);
  EXPECT_TRUE(at::allclose(var, at::ones_like(var), 0, 6 * std::sqrt(2.0 / 20000))) << var;
  // The correlation with x0 equals the signal coefficient sqrt(alpha_bar).
  const at::Tensor corr = (x_t * x0).mean(1);
  const at::Tensor expect = tab.signal.index_select(0, t);
  EXPECT_TRUE(at::allclose(corr, expect, 0, 6 / std::sqrt(20000.0))) << corr << expect;
}

TEST(QSample, EmptyBatchReturnsEmpty) {
  const Tables tab = linear_tables(10);
  const at::Tensor out = q_sample(at::zeros({0, 3}), at::zeros({0, 3}), at::zeros({0}, at::kLong), tab.signal,
                                  tab.noise_scale);
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{0, 3}));
}

TEST(QSample, RejectsBadInput) {
  const Tables tab = linear_tables(10);
  const at::Tensor x0 = at::randn({4, 3});
  const at::Tensor noise = at::randn({4, 3});
  const at::Tensor t = at::tensor({0, 1, 2, 3}, at::kLong);
  MD_EXPECT_ERROR(q_sample(x0, at::randn({4, 2}), t, tab.signal, tab.noise_scale), "x0", "noise", "[4, 2]");
  MD_EXPECT_ERROR(q_sample(x0, noise.to(at::kDouble), t, tab.signal, tab.noise_scale), "noise", "Double");
  MD_EXPECT_ERROR(q_sample(x0.to(at::kLong), noise.to(at::kLong), t, tab.signal, tab.noise_scale), "x0",
                  "floating");
  MD_EXPECT_ERROR(q_sample(x0, noise, t.to(at::kFloat), tab.signal, tab.noise_scale), "t", "integer");
  MD_EXPECT_ERROR(q_sample(x0, noise, at::tensor({0, 1}, at::kLong), tab.signal, tab.noise_scale), "t", "[4]",
                  "[2]");
  MD_EXPECT_ERROR(q_sample(x0, noise, at::tensor({0, 1, 2, 10}, at::kLong), tab.signal, tab.noise_scale), "t",
                  "[0, 10)", "max 10");
  MD_EXPECT_ERROR(q_sample(x0, noise, at::tensor({0, -1, 2, 3}, at::kLong), tab.signal, tab.noise_scale), "min -1");
  MD_EXPECT_ERROR(q_sample(x0, noise, t, tab.signal, tab.noise_scale.slice(0, 0, 5)), "signal", "noise_scale");
  MD_EXPECT_ERROR(q_sample(x0, noise, t, tab.signal.reshape({2, 5}), tab.noise_scale), "signal", "1 dimensions");
  MD_EXPECT_ERROR(q_sample(at::scalar_tensor(1.0), at::scalar_tensor(1.0), t, tab.signal, tab.noise_scale), "batch dimension");
  MD_EXPECT_ERROR(q_sample(x0, noise, t, at::zeros({0}, at::kDouble), at::zeros({0}, at::kDouble)), "non-empty");
  MD_EXPECT_ERROR(q_sample(at::Tensor(), noise, t, tab.signal, tab.noise_scale), "x0", "undefined");
}

TEST(QSample, MatchesCpuReference_CUDA) {
  MD_SKIP_WITHOUT_CUDA();
  const c10::Device dev(c10::kCUDA, 0);
  const Tables cpu_tab = linear_tables(1000);
  const Tables gpu_tab = linear_tables(1000, dev);
  for (auto dt : {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16}) {
    const at::Tensor x0 = at::randn({16, 3, 32, 32}).to(dt);
    const at::Tensor noise = at::randn({16, 3, 32, 32}).to(dt);
    const at::Tensor t = at::randint(0, 1000, {16}, at::kLong);
    const at::Tensor ref = q_sample(x0, noise, t, cpu_tab.signal, cpu_tab.noise_scale, OpBackend::Reference);
    const at::Tensor gpu =
        q_sample(x0.to(dev), noise.to(dev), t.to(dev), gpu_tab.signal, gpu_tab.noise_scale, OpBackend::Native);
    ASSERT_TRUE(gpu.is_cuda());
    const double tol = tolerance(dt);
    EXPECT_TRUE(at::allclose(gpu.cpu().to(at::kDouble), ref.to(at::kDouble), tol, tol)) << dt;
  }
  MD_EXPECT_ERROR(q_sample(at::randn({2, 3}).to(dev), at::randn({2, 3}), at::zeros({2}, at::kLong).to(dev),
                           gpu_tab.signal, gpu_tab.noise_scale),
                  "x0", "noise", "same device");
}

}  // namespace
