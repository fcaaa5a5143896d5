#include <manifold_diffusion/ops/q_sample.h>
#include <manifold_diffusion/ops/q_sample_with_target.h>

#include "test_util.h"

#include <ATen/ATen.h>

namespace {

using mdiff::ops::OpBackend;
using mdiff::ops::q_sample_with_target;
using mdiff::ops::TrainingTarget;

struct Tables {
  at::Tensor signal;
  at::Tensor noise_scale;
};

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

bool close(const at::Tensor& a, const at::Tensor& b, double tol) {
  return at::allclose(a.to(at::kDouble), b.to(at::kDouble), tol, tol);
}

const TrainingTarget kTargets[] = {TrainingTarget::Epsilon, TrainingTarget::Sample, TrainingTarget::VPrediction};

TEST(QSampleTarget, MatchesTheClosedForm) {
  const at::Tensor x0 = at::tensor({1.0, 2.0, -1.0, 0.5}, at::kDouble).reshape({2, 2});
  const at::Tensor eps = at::tensor({0.5, -1.0, 2.0, 1.0}, at::kDouble).reshape({2, 2});
  const at::Tensor t = at::tensor({1, 0}, at::kLong);
  const at::Tensor a = at::tensor({0.8, 0.6}, at::kDouble);
  const at::Tensor b = at::tensor({0.6, 0.8}, at::kDouble);
  // Row 0 uses t = 1 (a = 0.6, b = 0.8), row 1 uses t = 0 (a = 0.8, b = 0.6).
  const at::Tensor x_t =
      at::tensor({0.6 * 1 + 0.8 * 0.5, 0.6 * 2 - 0.8, 0.8 * -1 + 0.6 * 2, 0.8 * 0.5 + 0.6}, at::kDouble)
          .reshape({2, 2});
  const at::Tensor v =
      at::tensor({0.6 * 0.5 - 0.8 * 1, 0.6 * -1 - 0.8 * 2, 0.8 * 2 + 0.6, 0.8 * 1 - 0.6 * 0.5}, at::kDouble)
          .reshape({2, 2});
  for (auto be : {OpBackend::Auto, OpBackend::Reference, OpBackend::Native}) {
    const auto e = q_sample_with_target(x0, eps, t, a, b, TrainingTarget::Epsilon, be);
    EXPECT_TRUE(at::allclose(e.x_t, x_t, 0, 1e-15)) << be;
    EXPECT_TRUE(e.target.is_same(eps)) << "the eps target is the noise itself, " << be;
    const auto s = q_sample_with_target(x0, eps, t, a, b, TrainingTarget::Sample, be);
    EXPECT_TRUE(s.target.is_same(x0)) << be;
    const auto vp = q_sample_with_target(x0, eps, t, a, b, TrainingTarget::VPrediction, be);
    EXPECT_TRUE(at::allclose(vp.x_t, x_t, 0, 1e-15)) << be;
    EXPECT_TRUE(at::allclose(vp.target, v, 0, 1e-15)) << be;
  }
}

TEST(QSampleTarget, NativeMatchesReferenceAcrossDtypesShapesAndTargets) {
  const Tables tab = linear_tables(1000);
  const std::vector<std::vector<int64_t>> shapes = {{1}, {5}, {3, 7}, {1, 1, 28, 28}, {4, 1, 28, 28}, {1, 2, 3, 4, 5}};
  for (auto dt : {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16}) {
    for (const auto& shape : shapes) {
      const at::Tensor x0 = at::randn(shape).to(dt);
      const at::Tensor noise = at::randn(shape).to(dt);
      const at::Tensor t = at::randint(0, 1000, {shape[0]}, at::kLong);
      for (auto target : kTargets) {
        const auto ref = q_sample_with_target(x0, noise, t, tab.signal, tab.noise_scale, target, OpBackend::Reference);
        const auto fast = q_sample_with_target(x0, noise, t, tab.signal, tab.noise_scale, target, OpBackend::Native);
        EXPECT_EQ(fast.x_t.scalar_type(), dt);
        EXPECT_EQ(fast.target.scalar_type(), dt);
        EXPECT_EQ(fast.x_t.sizes(), x0.sizes());
        EXPECT_EQ(fast.target.sizes(), x0.sizes());
        const double tol = tolerance(dt);
        EXPECT_TRUE(close(fast.x_t, ref.x_t, tol)) << dt << " " << x0.sizes() << " " << target;
        EXPECT_TRUE(close(fast.target, ref.target, tol)) << dt << " " << x0.sizes() << " " << target;
      }
    }
  }
}

TEST(QSampleTarget, XtEqualsQSample) {
  const Tables tab = linear_tables(1000);
  const at::Tensor x0 = at::randn({16, 1, 28, 28});
  const at::Tensor noise = at::randn({16, 1, 28, 28});
  const at::Tensor t = at::randint(0, 1000, {16}, at::kLong);
  const at::Tensor plain = mdiff::ops::q_sample(x0, noise, t, tab.signal, tab.noise_scale);
  for (auto target : kTargets) {
    EXPECT_TRUE(at::equal(q_sample_with_target(x0, noise, t, tab.signal, tab.noise_scale, target).x_t, plain))
        << target;
  }
}

TEST(QSampleTarget, PerSampleTablesWithoutTimesteps) {
  // Fractional noise levels: one coefficient per sample, sample i uses entry i.
  const at::Tensor ab = at::rand({6}, at::kDouble) * 0.98 + 0.01;
  const at::Tensor a = ab.sqrt();
  const at::Tensor b = (1 - ab).sqrt();
  const at::Tensor x0 = at::randn({6, 3, 4}, at::kDouble);
  const at::Tensor noise = at::randn({6, 3, 4}, at::kDouble);
  const auto got = q_sample_with_target(x0, noise, at::Tensor(), a, b, TrainingTarget::VPrediction);
  const auto via_t = q_sample_with_target(x0, noise, at::arange(6, at::kLong), a, b, TrainingTarget::VPrediction);
  EXPECT_TRUE(at::allclose(got.x_t, via_t.x_t, 0, 1e-15));
  EXPECT_TRUE(at::allclose(got.target, via_t.target, 0, 1e-15));
  const auto ref =
      q_sample_with_target(x0, noise, at::Tensor(), a, b, TrainingTarget::VPrediction, OpBackend::Reference);
  EXPECT_TRUE(at::allclose(got.target, ref.target, 0, 1e-14));
  const at::Tensor col = a.view({6, 1, 1});
  const at::Tensor sig = b.view({6, 1, 1});
  EXPECT_TRUE(at::allclose(got.target, col * noise - sig * x0, 0, 1e-14));
}

TEST(QSampleTarget, VelocityRecoversX0AndEps) {
  // x0 = a x_t - b v and eps = b x_t + a v when a^2 + b^2 = 1.
  const Tables tab = linear_tables(1000);
  const at::Tensor x0 = at::randn({8, 50}, at::kDouble);
  const at::Tensor noise = at::randn({8, 50}, at::kDouble);
  const at::Tensor t = at::tensor({0, 1, 10, 100, 300, 500, 800, 999}, at::kLong);
  const auto s = q_sample_with_target(x0, noise, t, tab.signal, tab.noise_scale, TrainingTarget::VPrediction);
  const at::Tensor a = tab.signal.index_select(0, t).unsqueeze(1);
  const at::Tensor b = tab.noise_scale.index_select(0, t).unsqueeze(1);
  EXPECT_TRUE(at::allclose(a * s.x_t - b * s.target, x0, 0, 1e-12));
  EXPECT_TRUE(at::allclose(b * s.x_t + a * s.target, noise, 0, 1e-12));
}

TEST(QSampleTarget, NonContiguousInputsInt32TimestepsAndFloatTables) {
  const Tables tab = linear_tables(50);
  const at::Tensor x0 = at::randn({6, 8, 4}).transpose(1, 2);
  const at::Tensor noise = at::randn({6, 4, 16}).slice(2, 0, 16, 2);
  ASSERT_FALSE(x0.is_contiguous());
  ASSERT_FALSE(noise.is_contiguous());
  const at::Tensor t = at::randint(0, 50, {6}, at::kInt);
  for (auto target : kTargets) {
    const auto ref = q_sample_with_target(x0, noise, t, tab.signal, tab.noise_scale, target, OpBackend::Reference);
    const auto fast =
        q_sample_with_target(x0, noise, t, tab.signal.to(at::kFloat), tab.noise_scale.to(at::kFloat), target);
    EXPECT_TRUE(at::allclose(fast.x_t, ref.x_t, 1e-6, 1e-6)) << target;
    EXPECT_TRUE(at::allclose(fast.target, ref.target, 1e-6, 1e-6)) << target;
  }
}

TEST(QSampleTarget, InputsNeedingAGradientTakeTheDifferentiableReference) {
  const Tables tab = linear_tables(100);
  const at::Tensor x0 = at::randn({3, 5}, at::kDouble).requires_grad_(true);
  const at::Tensor noise = at::randn({3, 5}, at::kDouble);
  const at::Tensor t = at::tensor({4, 50, 99}, at::kLong);
  const auto s = q_sample_with_target(x0, noise, t, tab.signal, tab.noise_scale, TrainingTarget::VPrediction);
  ASSERT_TRUE(s.x_t.requires_grad());
  (s.x_t.sum() + s.target.sum()).backward();
  // d/dx0 of (a x0 + b eps) + (a eps - b x0) = a - b per entry.
  const at::Tensor a = tab.signal.index_select(0, t).unsqueeze(1);
  const at::Tensor b = tab.noise_scale.index_select(0, t).unsqueeze(1);
  EXPECT_TRUE(at::allclose(x0.grad(), (a - b).expand({3, 5}), 0, 1e-12));
}

TEST(QSampleTarget, EmptyBatchReturnsEmpty) {
  const Tables tab = linear_tables(10);
  for (auto target : kTargets) {
    const auto out = q_sample_with_target(at::zeros({0, 3}), at::zeros({0, 3}), at::zeros({0}, at::kLong), tab.signal,
                                          tab.noise_scale, target);
    EXPECT_EQ(out.x_t.sizes(), (std::vector<int64_t>{0, 3}));
    EXPECT_EQ(out.target.sizes(), (std::vector<int64_t>{0, 3}));
  }
}

TEST(QSampleTarget, TargetNamesParse) {
  EXPECT_EQ(mdiff::enum_from_string<TrainingTarget>("v_prediction"), TrainingTarget::VPrediction);
  EXPECT_EQ(mdiff::enum_from_string<TrainingTarget>("eps"), TrainingTarget::Epsilon);
  EXPECT_EQ(mdiff::enum_from_string<TrainingTarget>("x0"), TrainingTarget::Sample);
  EXPECT_EQ(mdiff::to_string(TrainingTarget::VPrediction), "v_prediction");
}

TEST(QSampleTarget, RejectsBadInput) {
  const Tables tab = linear_tables(10);
  const at::Tensor x0 = at::randn({4, 3});
  const at::Tensor noise = at::randn({4, 3});
  const at::Tensor t = at::tensor({0, 1, 2, 3}, at::kLong);
  const auto v = TrainingTarget::VPrediction;
  MD_EXPECT_ERROR(q_sample_with_target(x0, at::randn({4, 2}), t, tab.signal, tab.noise_scale, v), "x0", "noise",
                  "[4, 2]");
  MD_EXPECT_ERROR(q_sample_with_target(x0, noise.to(at::kDouble), t, tab.signal, tab.noise_scale, v), "noise",
                  "Double");
  MD_EXPECT_ERROR(q_sample_with_target(x0.to(at::kLong), noise.to(at::kLong), t, tab.signal, tab.noise_scale, v), "x0",
                  "floating");
  MD_EXPECT_ERROR(q_sample_with_target(x0, noise, t.to(at::kFloat), tab.signal, tab.noise_scale, v), "t", "integer");
  MD_EXPECT_ERROR(q_sample_with_target(x0, noise, at::tensor({0, 1}, at::kLong), tab.signal, tab.noise_scale, v), "t",
                  "[4]", "[2]");
  MD_EXPECT_ERROR(q_sample_with_target(x0, noise, at::tensor({0, 1, 2, 10}, at::kLong), tab.signal, tab.noise_scale, v),
                  "t", "[0, 10)", "max 10");
  MD_EXPECT_ERROR(q_sample_with_target(x0, noise, at::tensor({0, -1, 2, 3}, at::kLong), tab.signal, tab.noise_scale, v),
                  "min -1");
  MD_EXPECT_ERROR(q_sample_with_target(x0, noise, t, tab.signal, tab.noise_scale.slice(0, 0, 5), v), "signal",
                  "noise_scale");
  MD_EXPECT_ERROR(q_sample_with_target(x0, noise, t, tab.signal.reshape({2, 5}), tab.noise_scale, v), "signal",
                  "1 dimensions");
  MD_EXPECT_ERROR(q_sample_with_target(x0, noise, at::Tensor(), tab.signal, tab.noise_scale, v), "signal",
                  "one coefficient per sample (4)", "got 10");
  MD_EXPECT_ERROR(
      q_sample_with_target(at::scalar_tensor(1.0), at::scalar_tensor(1.0), t, tab.signal, tab.noise_scale, v),
      "batch dimension");
  MD_EXPECT_ERROR(q_sample_with_target(x0, noise, t, at::zeros({0}, at::kDouble), at::zeros({0}, at::kDouble), v),
                  "non-empty");
  MD_EXPECT_ERROR(q_sample_with_target(at::Tensor(), noise, t, tab.signal, tab.noise_scale, v), "x0", "undefined");
}

TEST(QSampleTarget, MatchesCpuReference_CUDA) {
  MD_SKIP_WITHOUT_CUDA();
  const c10::Device dev(c10::kCUDA, 0);
  const Tables cpu_tab = linear_tables(1000);
  const Tables gpu_tab = linear_tables(1000, dev);
  for (auto dt : {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16}) {
    const at::Tensor x0 = at::randn({16, 3, 32, 32}).to(dt);
    const at::Tensor noise = at::randn({16, 3, 32, 32}).to(dt);
    const at::Tensor t = at::randint(0, 1000, {16}, at::kLong);
    for (auto target : kTargets) {
      const auto ref =
          q_sample_with_target(x0, noise, t, cpu_tab.signal, cpu_tab.noise_scale, target, OpBackend::Reference);
      const auto gpu = q_sample_with_target(x0.to(dev), noise.to(dev), t.to(dev), gpu_tab.signal, gpu_tab.noise_scale,
                                            target, OpBackend::Native);
      ASSERT_TRUE(gpu.x_t.is_cuda());
      ASSERT_TRUE(gpu.target.is_cuda());
      const double tol = tolerance(dt);
      EXPECT_TRUE(close(gpu.x_t.cpu(), ref.x_t, tol)) << dt << " " << target;
      EXPECT_TRUE(close(gpu.target.cpu(), ref.target, tol)) << dt << " " << target;
    }
  }
  // Per-sample tables on the GPU.
  const at::Tensor ab = at::rand({5}, at::kDouble) * 0.9 + 0.05;
  const at::Tensor x0 = at::randn({5, 7});
  const at::Tensor noise = at::randn({5, 7});
  const auto ref = q_sample_with_target(x0, noise, at::Tensor(), ab.sqrt(), (1 - ab).sqrt(),
                                        TrainingTarget::VPrediction, OpBackend::Reference);
  const auto gpu = q_sample_with_target(x0.to(dev), noise.to(dev), at::Tensor(), ab.sqrt().to(dev),
                                        (1 - ab).sqrt().to(dev), TrainingTarget::VPrediction);
  EXPECT_TRUE(close(gpu.target.cpu(), ref.target, 1e-6));
  MD_EXPECT_ERROR(q_sample_with_target(at::randn({2, 3}).to(dev), at::randn({2, 3}), at::zeros({2}, at::kLong).to(dev),
                                       gpu_tab.signal, gpu_tab.noise_scale, TrainingTarget::Epsilon),
                  "x0", "noise", "same device");
}

}  // namespace
