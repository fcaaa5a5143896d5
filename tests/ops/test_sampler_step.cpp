// The fused sampler step: native kernels against the float64 reference, clipping, layouts,
// validation, the algebra behind each sampler's use of it, and the samplers themselves.
#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/ops/sampler_step.h>
#include <manifold_diffusion/samplers/ddim.h>
#include <manifold_diffusion/samplers/ddpm.h>
#include <manifold_diffusion/samplers/dpm_solver.h>
#include <manifold_diffusion/samplers/euler.h>

#include "samplers/gaussian_oracle.h"
#include "test_util.h"

#include <torch/csrc/autograd/autograd.h>

#include <ATen/ATen.h>

#ifdef MD_TEST_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#endif

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace {

using mdiff::ops::combine;
using mdiff::ops::OpBackend;
using mdiff::ops::predict_x0;
using mdiff::ops::sampler_step;
using mdiff::ops::SamplerStepCoefficients;
using mdiff::ops::X0Clip;

// Tolerances: one rounding of the result in the dtype, plus float32 arithmetic for the reduced types.
double tolerance(at::ScalarType dt) {
  switch (dt) {
    case at::kDouble:
      return 1e-12;
    case at::kFloat:
      return 1e-5;
    case at::kHalf:
      return 4e-3;
    default:
      return 3e-2;  // bfloat16
  }
}

::testing::AssertionResult close(const at::Tensor& got, const at::Tensor& want, double tol) {
  if (got.sizes() != want.sizes()) {
    return ::testing::AssertionFailure() << "shape " << got.sizes() << " vs " << want.sizes();
  }
  if (got.numel() == 0) {
    return ::testing::AssertionSuccess();
  }
  const at::Tensor g = got.to(at::kCPU, at::kDouble);
  const at::Tensor w = want.to(at::kCPU, at::kDouble);
  if (at::allclose(g, w, tol, tol)) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "max abs diff " << (g - w).abs().max().item<double>() << " (tol " << tol
                                       << ")";
}

SamplerStepCoefficients test_coefficients() {
  return SamplerStepCoefficients().w(2.5).c_x(1.3).c_out(-0.7).k_x(0.9).k_x0(0.4).k_prev(-0.2).k_noise(0.3).r(1.5);
}

struct Inputs {
  at::Tensor x, cond, uncond, x0_prev, noise, s;
};

// Which optional inputs are present: bit 0 uncond, bit 1 x0_prev, bit 2 noise.
Inputs make_inputs(at::IntArrayRef shape, at::ScalarType dt, int optional, c10::Device device = c10::kCPU) {
  const auto opts = at::TensorOptions().dtype(dt).device(device);
  Inputs in;
  in.x = at::randn(shape).to(opts);
  in.cond = at::randn(shape).to(opts);
  if (optional & 1) in.uncond = at::randn(shape).to(opts);
  if (optional & 2) in.x0_prev = at::randn(shape).to(opts);
  if (optional & 4) in.noise = at::randn(shape).to(opts);
  in.s = (at::rand({shape[0]}, at::kDouble) * 1.5 + 0.5).to(device);
  return in;
}

mdiff::ops::SamplerStepOutput run(const Inputs& in, const SamplerStepCoefficients& c, X0Clip clip, OpBackend be) {
  return sampler_step(in.x, in.cond, in.uncond, in.x0_prev, in.noise, c, clip,
                      clip == X0Clip::Dynamic ? in.s : at::Tensor(), be);
}

TEST(SamplerStep, MatchesHandComputedValues) {
  // Two samples of two elements; w = 2, x0 = 0.5 x - guided, x_next = x + 2 x0 - x0_prev + 0.1 noise.
  const at::Tensor x = at::tensor({1.0, -2.0, 0.5, 3.0}, at::kDouble).reshape({2, 2});
  const at::Tensor c = at::tensor({0.2, 0.4, -1.0, 0.0}, at::kDouble).reshape({2, 2});
  const at::Tensor u = at::tensor({0.1, 0.0, -0.5, 1.0}, at::kDouble).reshape({2, 2});
  const at::Tensor prev = at::tensor({1.0, 1.0, 2.0, 2.0}, at::kDouble).reshape({2, 2});
  const at::Tensor noise = at::tensor({10.0, -10.0, 0.0, 5.0}, at::kDouble).reshape({2, 2});
  const auto coef = SamplerStepCoefficients().w(2).c_x(0.5).c_out(-1).k_x(1).k_x0(2).k_prev(-1).k_noise(0.1).r(1);
  // guided = u + 2 (c - u) = {0.3, 0.8, -1.5, -1}; x0 = {0.2, -1.8, 1.75, 2.5}
  const at::Tensor x0 = at::tensor({0.2, -1.8, 1.75, 2.5}, at::kDouble).reshape({2, 2});
  const at::Tensor x_next = x + 2 * x0 - prev + 0.1 * noise;
  // Static clip to [-1, 1]: {0.2, -1, 1, 1}. Dynamic with s = {2, 0.5}: {0.1, -0.9, 1, 1}.
  const at::Tensor x0_static = at::tensor({0.2, -1.0, 1.0, 1.0}, at::kDouble).reshape({2, 2});
  const at::Tensor x0_dynamic = at::tensor({0.1, -0.9, 1.0, 1.0}, at::kDouble).reshape({2, 2});
  const at::Tensor s = at::tensor({2.0, 0.5}, at::kDouble);
  for (auto be : {OpBackend::Auto, OpBackend::Reference, OpBackend::Native}) {
    auto out = sampler_step(x, c, u, prev, noise, coef, X0Clip::None, {}, be);
    EXPECT_TRUE(close(out.x0, x0, 1e-15)) << be;
    EXPECT_TRUE(close(out.x_next, x_next, 1e-14)) << be;
    out = sampler_step(x, c, u, prev, noise, coef, X0Clip::Static, {}, be);
    EXPECT_TRUE(close(out.x0, x0_static, 1e-15)) << be;
    EXPECT_TRUE(close(out.x_next, x + 2 * x0_static - prev + 0.1 * noise, 1e-14)) << be;
    out = sampler_step(x, c, u, prev, noise, coef, X0Clip::Dynamic, s, be);
    EXPECT_TRUE(close(out.x0, x0_dynamic, 1e-15)) << be;
    EXPECT_TRUE(close(out.x_next, x + 2 * x0_dynamic - prev + 0.1 * noise, 1e-14)) << be;
  }
}

TEST(SamplerStep, NativeMatchesReferenceAcrossDtypesShapesClipsAndOptionalInputs) {
  const std::vector<std::vector<int64_t>> shapes = {{0, 3}, {1, 5}, {3, 7}, {4, 1, 28, 28}, {2, 3, 5, 6}, {700}};
  const auto coef = test_coefficients();
  for (auto dt : {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16}) {
    for (const auto& shape : shapes) {
      for (int optional = 0; optional < 8; ++optional) {
        const Inputs in = make_inputs(shape, dt, optional);
        for (auto clip : {X0Clip::None, X0Clip::Static, X0Clip::Dynamic}) {
          const auto ref = run(in, coef, clip, OpBackend::Reference);
          const auto fast = run(in, coef, clip, OpBackend::Native);
          ASSERT_EQ(fast.x_next.scalar_type(), dt);
          ASSERT_EQ(fast.x0.scalar_type(), dt);
          const double tol = tolerance(dt);
          EXPECT_TRUE(close(fast.x0, ref.x0, tol)) << dt << " " << at::IntArrayRef(shape) << " opt " << optional
                                                   << " " << clip;
          EXPECT_TRUE(close(fast.x_next, ref.x_next, tol))
              << dt << " " << at::IntArrayRef(shape) << " opt " << optional << " " << clip;
        }
      }
    }
  }
}

TEST(SamplerStep, LargeInputsSpanSeveralParallelTasks) {
  // 2 x 3 x 128 x 128 = 98304 elements: more than one parallel task, and sample boundaries inside tasks.
  const auto coef = test_coefficients();
  for (auto clip : {X0Clip::None, X0Clip::Dynamic}) {
    const Inputs in = make_inputs({6, 1, 128, 128}, at::kFloat, 7);
    const auto ref = run(in, coef, clip, OpBackend::Reference);
    const auto fast = run(in, coef, clip, OpBackend::Native);
    EXPECT_TRUE(close(fast.x0, ref.x0, 1e-5)) << clip;
    EXPECT_TRUE(close(fast.x_next, ref.x_next, 1e-5)) << clip;
  }
}

TEST(SamplerStep, HandlesNonContiguousInputs) {
  const auto coef = test_coefficients();
  Inputs in;
  in.x = at::randn({5, 8, 4}).transpose(1, 2);             // [5, 4, 8], not contiguous
  in.cond = at::randn({5, 4, 16}).slice(2, 0, 16, 2);      // strided
  in.uncond = at::randn({5, 4, 8});
  in.x0_prev = at::randn({4, 5, 8}).transpose(0, 1);       // batch not outermost
  in.noise = at::randn({1, 4, 8}).expand({5, 4, 8});       // broadcast view
  in.s = at::rand({10}, at::kDouble).slice(0, 0, 10, 2) + 0.5;
  ASSERT_FALSE(in.x.is_contiguous());
  for (auto clip : {X0Clip::None, X0Clip::Static, X0Clip::Dynamic}) {
    const auto ref = run(in, coef, clip, OpBackend::Reference);
    const auto fast = run(in, coef, clip, OpBackend::Native);
    EXPECT_TRUE(close(fast.x0, ref.x0, 1e-5)) << clip;
    EXPECT_TRUE(close(fast.x_next, ref.x_next, 1e-5)) << clip;
  }
}

TEST(SamplerStep, KeepsChannelsLastLayout) {
  const auto coef = test_coefficients();
  const auto cl = at::MemoryFormat::ChannelsLast;
  for (auto dt : {at::kFloat, at::kHalf}) {
    Inputs in = make_inputs({3, 4, 5, 6}, dt, 7);
    in.x = in.x.contiguous(cl);
    in.cond = in.cond.contiguous(cl);
    in.uncond = in.uncond.contiguous(cl);
    in.x0_prev = in.x0_prev.contiguous(cl);
    in.noise = in.noise.contiguous(cl);
    ASSERT_FALSE(in.x.is_contiguous());
    for (auto clip : {X0Clip::None, X0Clip::Dynamic}) {
      const auto ref = run(in, coef, clip, OpBackend::Reference);
      const auto fast = run(in, coef, clip, OpBackend::Native);
      EXPECT_TRUE(fast.x_next.is_contiguous(cl));
      EXPECT_TRUE(fast.x0.is_contiguous(cl));
      EXPECT_TRUE(close(fast.x0, ref.x0, tolerance(dt))) << dt << " " << clip;
      EXPECT_TRUE(close(fast.x_next, ref.x_next, tolerance(dt))) << dt << " " << clip;
    }
    // Mixed layouts: x channels_last, the network output contiguous.
    in.cond = in.cond.contiguous();
    const auto ref = run(in, coef, X0Clip::Static, OpBackend::Reference);
    const auto fast = run(in, coef, X0Clip::Static, OpBackend::Native);
    EXPECT_TRUE(close(fast.x_next, ref.x_next, tolerance(dt))) << dt;
  }
}

TEST(SamplerStep, EmptyBatchAndBatchOfOne) {
  const auto coef = test_coefficients();
  const Inputs empty = make_inputs({0, 3, 4}, at::kFloat, 7);
  const auto out = run(empty, coef, X0Clip::Dynamic, OpBackend::Native);
  EXPECT_EQ(out.x_next.sizes(), (std::vector<int64_t>{0, 3, 4}));
  EXPECT_EQ(out.x0.sizes(), (std::vector<int64_t>{0, 3, 4}));
  const Inputs one = make_inputs({1, 3, 4}, at::kFloat, 7);
  for (auto clip : {X0Clip::None, X0Clip::Static, X0Clip::Dynamic}) {
    const auto ref = run(one, coef, clip, OpBackend::Reference);
    const auto fast = run(one, coef, clip, OpBackend::Native);
    EXPECT_TRUE(close(fast.x_next, ref.x_next, 1e-5)) << clip;
  }
}

TEST(SamplerStep, ClipModesBoundX0) {
  const Inputs in = make_inputs({4, 50}, at::kFloat, 0);
  const auto coef = SamplerStepCoefficients().c_x(0).c_out(3).r(0.75);
  const at::Tensor raw = 3 * in.cond;
  const at::Tensor none = predict_x0(in.x, in.cond, {}, coef);
  EXPECT_TRUE(close(none, raw, 1e-6));
  const at::Tensor st = predict_x0(in.x, in.cond, {}, coef, X0Clip::Static);
  EXPECT_LE(st.abs().max().item<double>(), 0.75);
  EXPECT_TRUE(close(st, raw.clamp(-0.75, 0.75), 1e-6));
  // Dynamic thresholding with s = the 0.9-quantile of |x0| (at least 1), as computed outside.
  const at::Tensor s = at::quantile(raw.abs(), 0.9, 1).clamp_min(1.0);
  const at::Tensor dy = predict_x0(in.x, in.cond, {}, coef, X0Clip::Dynamic, s);
  EXPECT_LE(dy.abs().max().item<double>(), 1.0 + 1e-6);
  const at::Tensor sv = s.reshape({4, 1});
  EXPECT_TRUE(close(dy, at::minimum(at::maximum(raw, -sv), sv) / sv, 1e-6));
  // x_next uses the clipped x0.
  const auto out = sampler_step(in.x, in.cond, {}, {}, {}, SamplerStepCoefficients(coef).k_x(0.5).k_x0(2),
                                X0Clip::Dynamic, s);
  EXPECT_TRUE(close(out.x_next, 0.5 * in.x + 2 * dy, 1e-5));
}

TEST(SamplerStep, CoefficientTensorAndStructAgree) {
  const auto coef = test_coefficients();
  const at::Tensor packed = coef.to_tensor();
  EXPECT_EQ(packed.scalar_type(), at::kDouble);
  EXPECT_EQ(packed.sizes(), (std::vector<int64_t>{SamplerStepCoefficients::kSize}));
  EXPECT_DOUBLE_EQ(packed[SamplerStepCoefficients::kKprev].item<double>(), -0.2);
  EXPECT_TRUE(at::equal(SamplerStepCoefficients::from_tensor(packed).to_tensor(), packed));
  for (auto be : {OpBackend::Reference, OpBackend::Native}) {
    for (auto clip : {X0Clip::None, X0Clip::Static, X0Clip::Dynamic}) {
      const Inputs in = make_inputs({3, 2, 9}, at::kFloat, 7);
      const at::Tensor s = clip == X0Clip::Dynamic ? in.s : at::Tensor();
      const auto a = sampler_step(in.x, in.cond, in.uncond, in.x0_prev, in.noise, coef, clip, s, be);
      const auto b = sampler_step(in.x, in.cond, in.uncond, in.x0_prev, in.noise, packed, clip, s, be);
      EXPECT_TRUE(at::equal(a.x_next, b.x_next)) << be << " " << clip;
      EXPECT_TRUE(at::equal(a.x0, b.x0)) << be << " " << clip;
      EXPECT_TRUE(at::equal(predict_x0(in.x, in.cond, in.uncond, coef, clip, s, be),
                            predict_x0(in.x, in.cond, in.uncond, packed, clip, s, be)));
      EXPECT_TRUE(at::equal(combine(in.x, a.x0, in.x0_prev, in.noise, coef, be),
                            combine(in.x, a.x0, in.x0_prev, in.noise, packed, be)));
    }
  }
}

TEST(SamplerStep, PredictThenCombineEqualsTheFusedCall) {
  const auto coef = test_coefficients();
  for (auto dt : {at::kFloat, at::kDouble}) {
    const Inputs in = make_inputs({4, 3, 7}, dt, 7);
    for (auto clip : {X0Clip::None, X0Clip::Static, X0Clip::Dynamic}) {
      const at::Tensor s = clip == X0Clip::Dynamic ? in.s : at::Tensor();
      const auto fused = sampler_step(in.x, in.cond, in.uncond, in.x0_prev, in.noise, coef, clip, s);
      const at::Tensor x0 = predict_x0(in.x, in.cond, in.uncond, coef, clip, s);
      EXPECT_TRUE(at::equal(x0, fused.x0)) << dt << " " << clip;
      // Same arithmetic; only x0's rounding to the dtype between the two calls can differ.
      EXPECT_TRUE(close(combine(in.x, x0, in.x0_prev, in.noise, coef), fused.x_next, tolerance(dt)));
    }
  }
}

TEST(SamplerStep, RecordsAutogradThroughTheReference) {
  const auto coef = SamplerStepCoefficients().c_x(0.5).c_out(2).k_x(3).k_x0(-1);
  const at::Tensor x = at::randn({2, 3}, at::kDouble).requires_grad_(true);
  const at::Tensor cond = at::randn({2, 3}, at::kDouble).requires_grad_(true);
  const auto out = sampler_step(x, cond, {}, {}, {}, coef);
  ASSERT_TRUE(out.x_next.requires_grad());
  const auto grads = torch::autograd::grad({out.x_next.sum()}, {x, cond});
  // d x_next / d x = k_x + k_x0 c_x = 2.5; d x_next / d cond = k_x0 c_out = -2.
  EXPECT_TRUE(close(grads[0], at::full({2, 3}, 2.5, at::kDouble), 1e-15));
  EXPECT_TRUE(close(grads[1], at::full({2, 3}, -2.0, at::kDouble), 1e-15));
  MD_EXPECT_ERROR(sampler_step(x, cond, {}, {}, {}, coef, X0Clip::None, {}, OpBackend::Native), "autograd");
  {
    at::NoGradGuard no_grad;
    EXPECT_FALSE(sampler_step(x, cond, {}, {}, {}, coef, X0Clip::None, {}, OpBackend::Native).x_next.requires_grad());
  }
}

TEST(SamplerStep, RejectsBadInput) {
  const auto coef = test_coefficients();
  const at::Tensor x = at::randn({4, 3});
  const at::Tensor c = at::randn({4, 3});
  const at::Tensor s = at::ones({4}, at::kDouble);
  // Shapes.
  MD_EXPECT_ERROR(sampler_step(x, at::randn({4, 2}), {}, {}, {}, coef), "x", "cond_out", "[4, 2]");
  MD_EXPECT_ERROR(sampler_step(x, c, at::randn({3, 3}), {}, {}, coef), "uncond_out", "[3, 3]");
  MD_EXPECT_ERROR(sampler_step(x, c, {}, at::randn({4}), {}, coef), "x0_prev", "[4]");
  MD_EXPECT_ERROR(sampler_step(x, c, {}, {}, at::randn({4, 3, 1}), coef), "noise", "[4, 3, 1]");
  MD_EXPECT_ERROR(combine(x, at::randn({2, 3}), {}, {}, coef), "x0", "[2, 3]");
  MD_EXPECT_ERROR(sampler_step(at::scalar_tensor(1.0), at::scalar_tensor(1.0), {}, {}, {}, coef), "batch dimension");
  // Dtypes.
  MD_EXPECT_ERROR(sampler_step(x, c.to(at::kDouble), {}, {}, {}, coef), "cond_out", "Double");
  MD_EXPECT_ERROR(sampler_step(x, c, {}, {}, at::randn({4, 3}, at::kHalf), coef), "noise", "Half");
  MD_EXPECT_ERROR(sampler_step(x.to(at::kLong), c.to(at::kLong), {}, {}, {}, coef), "x", "floating");
  // Missing inputs.
  MD_EXPECT_ERROR(sampler_step(x, at::Tensor(), {}, {}, {}, coef), "cond_out", "undefined");
  MD_EXPECT_ERROR(combine(x, at::Tensor(), {}, {}, coef), "x0", "undefined");
  MD_EXPECT_ERROR(sampler_step(at::Tensor(), c, {}, {}, {}, coef), "x", "undefined");
  // Coefficients.
  MD_EXPECT_ERROR(sampler_step(x, c, {}, {}, {}, SamplerStepCoefficients().k_x(NAN)), "k_x", "finite", "nan");
  MD_EXPECT_ERROR(sampler_step(x, c, {}, {}, {}, SamplerStepCoefficients().w(INFINITY)), "w", "finite", "inf");
  MD_EXPECT_ERROR(sampler_step(x, c, {}, {}, {}, SamplerStepCoefficients().r(0), X0Clip::Static), "r", "positive",
                  "got 0");
  MD_EXPECT_ERROR(sampler_step(x, c, {}, {}, {}, SamplerStepCoefficients().r(-2), X0Clip::Static), "r", "-2");
  (void)sampler_step(x, c, {}, {}, {}, SamplerStepCoefficients().r(0));  // r unused without static clipping
  const at::Tensor packed = coef.to_tensor();
  MD_EXPECT_ERROR(sampler_step(x, c, {}, {}, {}, packed.to(at::kFloat)), "coefficients", "Double", "Float");
  MD_EXPECT_ERROR(sampler_step(x, c, {}, {}, {}, packed.slice(0, 0, 7)), "coefficients", "[8]", "[7]");
  MD_EXPECT_ERROR(sampler_step(x, c, {}, {}, {}, packed.reshape({2, 4})), "coefficients", "[2, 4]");
  MD_EXPECT_ERROR(sampler_step(x, c, {}, {}, {}, at::Tensor()), "coefficients", "undefined");
  at::Tensor bad = packed.clone();
  bad[SamplerStepCoefficients::kKnoise] = NAN;
  MD_EXPECT_ERROR(sampler_step(x, c, {}, {}, {}, bad), "coefficients[6]", "k_noise", "nan");
  bad = packed.clone();
  bad[SamplerStepCoefficients::kR] = -1;
  MD_EXPECT_ERROR(predict_x0(x, c, {}, bad, X0Clip::Static), "coefficients[7]", "r", "-1");
  MD_EXPECT_ERROR(SamplerStepCoefficients::from_tensor(at::zeros({3}, at::kDouble)), "coefficients", "[3]");
  // The per-sample bound.
  MD_EXPECT_ERROR(sampler_step(x, c, {}, {}, {}, coef, X0Clip::Dynamic), "s", "undefined");
  MD_EXPECT_ERROR(sampler_step(x, c, {}, {}, {}, coef, X0Clip::Dynamic, at::ones({3})), "s", "[4]", "[3]");
  MD_EXPECT_ERROR(sampler_step(x, c, {}, {}, {}, coef, X0Clip::Dynamic, at::ones({4, 1})), "s", "[4, 1]");
  MD_EXPECT_ERROR(sampler_step(x, c, {}, {}, {}, coef, X0Clip::Dynamic, at::tensor({1.0, 0.5, 0.0, 2.0})), "s",
                  "positive", "min 0");
  MD_EXPECT_ERROR(sampler_step(x, c, {}, {}, {}, coef, X0Clip::Dynamic, at::tensor({1.0, -0.5, 1.0, 2.0})), "s",
                  "min -0.5");
  MD_EXPECT_ERROR(sampler_step(x, c, {}, {}, {}, coef, X0Clip::Dynamic, at::tensor({1.0, NAN, 1.0, 2.0})), "s",
                  "finite");
  MD_EXPECT_ERROR(sampler_step(x, c, {}, {}, {}, coef, X0Clip::Dynamic, at::ones({4}, at::kLong)), "s", "floating");
  MD_EXPECT_ERROR(sampler_step(x, c, {}, {}, {}, coef, X0Clip::Static, s), "s", "dynamic", "static");
  // Enum names.
  EXPECT_EQ(mdiff::enum_from_string<X0Clip>("Dynamic"), X0Clip::Dynamic);
  MD_EXPECT_ERROR(mdiff::enum_from_string<X0Clip>("soft"), "X0Clip", "soft");
}

// ---- The samplers' updates, by hand ---------------------------------------------------------------

struct Level {
  double a, s;  // sqrt(alpha_bar), sqrt(1 - alpha_bar)
  explicit Level(double alpha_bar) : a(std::sqrt(alpha_bar)), s(std::sqrt(1 - alpha_bar)) {}
};

TEST(SamplerStepReduction, DDPMPosteriorStep) {
  const double ab = 0.3, ab_next = 0.45;
  const Level l(ab);
  const at::Tensor x = at::randn({3, 5}, at::kDouble), eps = at::randn({3, 5}, at::kDouble);
  const at::Tensor z = at::randn({3, 5}, at::kDouble);
  const double beta = 1 - ab / ab_next;
  const double c1 = std::sqrt(ab_next) * beta / (1 - ab);
  const double c2 = std::sqrt(1 - beta) * (1 - ab_next) / (1 - ab);
  const double post_std = std::sqrt(beta * (1 - ab_next) / (1 - ab));
  const at::Tensor x0 = (x - l.s * eps) / l.a;
  const at::Tensor want = c1 * x0 + c2 * x + post_std * z;
  const auto out = sampler_step(
      x, eps, {}, {}, z, SamplerStepCoefficients().c_x(1 / l.a).c_out(-l.s / l.a).k_x(c2).k_x0(c1).k_noise(post_std));
  EXPECT_TRUE(close(out.x0, x0, 1e-12));
  EXPECT_TRUE(close(out.x_next, want, 1e-12));
}

TEST(SamplerStepReduction, DDIMStepWithClippingAndEta) {
  // v-prediction; eps is re-derived from the clipped x0, which keeps the update linear in x and x0.
  const double ab = 0.2, ab_next = 0.6;
  const Level l(ab);
  const at::Tensor x = at::randn({4, 6}, at::kDouble), v = at::randn({4, 6}, at::kDouble);
  const at::Tensor z = at::randn({4, 6}, at::kDouble);
  for (double eta : {0.0, 0.5, 1.0}) {
    const double sigma = eta * std::sqrt((1 - ab_next) / (1 - ab)) * std::sqrt(1 - ab / ab_next);
    const double c_eps = std::sqrt(1 - ab_next - sigma * sigma);
    const at::Tensor x0 = (l.a * x - l.s * v).clamp(-1, 1);
    const at::Tensor eps = (x - l.a * x0) / l.s;
    const at::Tensor want = std::sqrt(ab_next) * x0 + c_eps * eps + sigma * z;
    const auto coef = SamplerStepCoefficients().c_x(l.a).c_out(-l.s).k_x(c_eps / l.s).k_x0(
        std::sqrt(ab_next) - c_eps * l.a / l.s).k_noise(sigma);
    const auto out = sampler_step(x, v, {}, {}, z, coef, X0Clip::Static);
    EXPECT_TRUE(close(out.x0, x0, 1e-12)) << eta;
    EXPECT_TRUE(close(out.x_next, want, 1e-12)) << eta;
  }
}

TEST(SamplerStepReduction, DPMSolverPlusPlus2MWithGuidance) {
  const double ab = 0.3, ab_next = 0.5, ab_prev = 0.15;
  const auto lambda = [](double v) { return 0.5 * (std::log(v) - std::log1p(-v)); };
  const double h = lambda(ab_next) - lambda(ab);
  const double r = (lambda(ab) - lambda(ab_prev)) / h;
  const Level l(ab), ln(ab_next);
  const at::Tensor x = at::randn({2, 3, 4}, at::kDouble), c = at::randn({2, 3, 4}, at::kDouble);
  const at::Tensor u = at::randn({2, 3, 4}, at::kDouble), prev = at::randn({2, 3, 4}, at::kDouble);
  const double w = 4;
  const at::Tensor eps = u + w * (c - u);
  const at::Tensor x0 = (x - l.s * eps) / l.a;
  const at::Tensor d = x0 + 0.5 * (x0 - prev) / r;
  const at::Tensor want = (ln.s / l.s) * x - ln.a * std::expm1(-h) * d;
  const double k_d = -ln.a * std::expm1(-h);
  const auto coef = SamplerStepCoefficients().w(w).c_x(1 / l.a).c_out(-l.s / l.a).k_x(ln.s / l.s).k_x0(
      k_d * (1 + 0.5 / r)).k_prev(-k_d * 0.5 / r);
  const auto out = sampler_step(x, c, u, prev, {}, coef);
  EXPECT_TRUE(close(out.x0, x0, 1e-12));
  EXPECT_TRUE(close(out.x_next, want, 1e-12));
}

// EDM's preconditioning at VE level sigma, for a network called on the VP input x_ve * alpha.
struct EDMLevel {
  double a, c_skip, c_out;
  EDMLevel(double sigma, double sd)
      : a(1 / std::sqrt(1 + sigma * sigma)),
        c_skip(sd * sd / (sigma * sigma + sd * sd)),
        c_out(sigma * sd / std::sqrt(sigma * sigma + sd * sd)) {}
};

TEST(SamplerStepReduction, EulerAndHeunInSigmaSpace) {
  const double sd = 0.5, sigma = 2.0, sigma_next = 1.2;
  const EDMLevel e1(sigma, sd), e2(sigma_next, sd);
  const at::Tensor x = at::randn({3, 8}, at::kDouble) * sigma;
  const at::Tensor f1 = at::randn({3, 8}, at::kDouble), f2 = at::randn({3, 8}, at::kDouble);
  // Euler: D = c_skip x_vp / a + c_out F with x_vp = a x, i.e. c_x = c_skip (the VE x), c_out.
  const at::Tensor x0_1 = e1.c_skip * (x * e1.a) / e1.a + e1.c_out * f1;
  const at::Tensor d = (x - x0_1) / sigma;
  const at::Tensor x1 = x + d * (sigma_next - sigma);
  const auto euler = SamplerStepCoefficients().c_x(e1.c_skip).c_out(e1.c_out).k_x(sigma_next / sigma).k_x0(
      1 - sigma_next / sigma);
  const auto s1 = sampler_step(x, f1, {}, {}, {}, euler);
  EXPECT_TRUE(close(s1.x0, x0_1, 1e-12));
  EXPECT_TRUE(close(s1.x_next, x1, 1e-12));
  // Heun's second stage: x + (sigma_next - sigma) (d + d2) / 2 with d2 = (x1 - x0_2) / sigma_next
  // equals x1 + (sigma_next - sigma) / (2 sigma_next) (x0_1 - x0_2): one call at x1.
  const at::Tensor x0_2 = e2.c_skip * x1 + e2.c_out * f2;
  const at::Tensor d2 = (x1 - x0_2) / sigma_next;
  const at::Tensor want = x + 0.5 * (d + d2) * (sigma_next - sigma);
  const double c = (sigma_next - sigma) / (2 * sigma_next);
  const auto heun = SamplerStepCoefficients().c_x(e2.c_skip).c_out(e2.c_out).k_x(1).k_x0(-c).k_prev(c);
  const auto s2 = sampler_step(s1.x_next, f2, {}, s1.x0, {}, heun);
  EXPECT_TRUE(close(s2.x0, x0_2, 1e-12));
  EXPECT_TRUE(close(s2.x_next, want, 1e-12));
}

// ---- The samplers on the fused op -------------------------------------------------------------------

// A cheap conditional eps-network whose output depends on x, t and the class label.
mdiff::Denoiser toy_denoiser(mdiff::PredictionType p = mdiff::PredictionType::Epsilon) {
  return mdiff::Denoiser(
      [](const at::Tensor& x, const at::Tensor& t, const at::Tensor& c) {
        at::Tensor out = 0.3 * x + 1e-3 * t.to(x.scalar_type()).reshape({-1, 1});
        if (c.defined()) out = out + 0.05 * c.to(x.scalar_type()).reshape({-1, 1});
        return out;
      },
      mdiff::NoiseSchedule::linear(1000), p);
}

struct PassThroughHook : mdiff::SamplingHook {
  at::Tensor on_x0(const mdiff::StepContext&, at::Tensor x0) override { return x0; }
};

std::vector<std::pair<std::string, std::shared_ptr<mdiff::Sampler>>> fused_samplers() {
  using namespace mdiff;
  return {
      {"ddpm", std::make_shared<DDPMSampler>(DDPMOptions(12))},
      {"ddpm_large", std::make_shared<DDPMSampler>(DDPMOptions(12).variance(DDPMVariance::FixedLarge))},
      {"ddim", std::make_shared<DDIMSampler>(DDIMOptions(12))},
      {"ddim_eta", std::make_shared<DDIMSampler>(DDIMOptions(12).eta(0.6))},
      {"dpmpp_2m", std::make_shared<DPMSolverSampler>(DPMSolverOptions(12))},
      {"dpmpp_2m_sde", std::make_shared<DPMSolverSampler>(DPMSolverOptions(12).variant(DPMSolverVariant::SDE2M))},
      {"euler", std::make_shared<EulerSampler>(SigmaSamplerOptions(12))},
      {"euler_churn", std::make_shared<EulerSampler>(SigmaSamplerOptions(12).s_churn(10))},
      {"euler_ancestral", std::make_shared<EulerAncestralSampler>(SigmaSamplerOptions(12))},
      {"heun", std::make_shared<HeunSampler>(SigmaSamplerOptions(12))},
  };
}

TEST(SamplerStepInSamplers, FusedAndHookedPathsAgree) {
  // Without hooks a step is one fused kernel; with a hook it is predict_x0, the hook, then combine.
  for (auto p : {mdiff::PredictionType::Epsilon, mdiff::PredictionType::VPrediction, mdiff::PredictionType::EDM}) {
    const mdiff::Denoiser den = toy_denoiser(p);
    for (const auto& [name, sampler] : fused_samplers()) {
      for (double rescale : {0.0, 0.5}) {
        mdiff::SampleArgs args;
        args.cond = at::tensor({1.0, 2.0, 3.0});
        args.uncond = at::zeros({3});
        args.guidance_scale = 2.5;
        args.guidance_rescale = rescale;
        const auto opts = at::TensorOptions().dtype(at::kDouble);
        const at::Tensor plain = sampler->sample(den, {3, 4}, 5, args, 0, opts);
        args.hooks.push_back(std::make_shared<PassThroughHook>());
        const at::Tensor hooked = sampler->sample(den, {3, 4}, 5, args, 0, opts);
        EXPECT_TRUE(close(plain, hooked, 1e-10)) << name << " " << p << " rescale " << rescale;
      }
    }
  }
}

TEST(SamplerStepInSamplers, PredictRawMatchesPredictAt) {
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  for (auto p : {mdiff::PredictionType::Epsilon, mdiff::PredictionType::Sample, mdiff::PredictionType::VPrediction,
                 mdiff::PredictionType::EDM}) {
    const mdiff::Denoiser den = toy_denoiser(p);
    const at::Tensor x = at::randn({3, 4}, at::kDouble);
    for (double scale : {1.0, 3.0}) {
      const at::Tensor cond = at::tensor({1.0, 2.0, 3.0}), uncond = at::zeros({3});
      const auto want = den.predict_at(x, at::full({3}, 400.0, opts), at::full({3}, 0.37, opts), cond, uncond, scale);
      const mdiff::RawPrediction raw = den.predict_raw(x, 400.0, 0.37, cond, uncond, scale);
      EXPECT_EQ(raw.uncond.defined(), scale != 1.0);
      const at::Tensor x0 = predict_x0(
          x, raw.cond, raw.uncond, SamplerStepCoefficients().w(raw.guidance_scale).c_x(raw.c_x).c_out(raw.c_out));
      EXPECT_TRUE(close(x0, want.x0, 1e-12)) << p << " " << scale;
    }
  }
}

// One step of each sampler through the public loop against the update formulas written out with
// the denoiser's own x0 and eps; noise from a copy of the per-sample generators.
TEST(SamplerStepInSamplers, StepsMatchTheUnfusedFormulas) {
  const mdiff::Denoiser den = toy_denoiser();
  const auto& sched = den.schedule();
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  const int64_t n = 3;
  auto predict = [&](const at::Tensor& x_vp, double t, double ab) {
    return den.predict_at(x_vp, at::full({n}, t, opts), at::full({n}, ab, opts));
  };
  auto copy_generators = [](const std::vector<at::Generator>& g) {
    std::vector<at::Generator> out;
    for (const auto& gi : g) out.push_back(gi.clone());
    return out;
  };
  auto start = [&](const mdiff::Sampler& s, int steps_before) {
    auto gens = mdiff::make_sample_generators(3, 0, n);
    mdiff::SamplerState st = s.start(den, mdiff::randn_per_sample({n, 4}, gens, at::kDouble), gens);
    for (int i = 0; i < steps_before; ++i) s.step(den, st);
    return st;
  };
  {
    mdiff::DDPMSampler ddpm{mdiff::DDPMOptions(10)};
    mdiff::SamplerState st = start(ddpm, 2);
    const double t = st.grid[2], tn = st.grid[3];
    const double ab = sched.alpha_bar_at(t), abn = sched.alpha_bar_at(tn);
    const auto out = predict(st.x, t, ab);
    const double beta = 1 - ab / abn;
    auto gens = copy_generators(st.generators);
    const at::Tensor z = mdiff::randn_per_sample({n, 4}, gens, at::kDouble);
    const at::Tensor want = std::sqrt(abn) * beta / (1 - ab) * out.x0 + std::sqrt(1 - beta) * (1 - abn) / (1 - ab) * st.x +
                            std::sqrt(beta * (1 - abn) / (1 - ab)) * z;
    ddpm.step(den, st);
    EXPECT_TRUE(close(st.x, want, 1e-12)) << "ddpm";
  }
  {
    mdiff::DDIMSampler ddim{mdiff::DDIMOptions(10).eta(0.7)};
    mdiff::SamplerState st = start(ddim, 1);
    const double t = st.grid[1], tn = st.grid[2];
    const double ab = sched.alpha_bar_at(t), abn = sched.alpha_bar_at(tn);
    const auto out = predict(st.x, t, ab);
    const double sigma = 0.7 * std::sqrt((1 - abn) / (1 - ab)) * std::sqrt(1 - ab / abn);
    auto gens = copy_generators(st.generators);
    const at::Tensor z = mdiff::randn_per_sample({n, 4}, gens, at::kDouble);
    const at::Tensor want = std::sqrt(abn) * out.x0 + std::sqrt(1 - abn - sigma * sigma) * out.eps + sigma * z;
    ddim.step(den, st);
    EXPECT_TRUE(close(st.x, want, 1e-12)) << "ddim";
  }
  {
    mdiff::DPMSolverSampler dpm{mdiff::DPMSolverOptions(10)};
    mdiff::SamplerState st = start(dpm, 2);
    const at::Tensor prev = st.history.back();
    const double t = st.grid[2], tn = st.grid[3];
    const double ab = sched.alpha_bar_at(t), abn = sched.alpha_bar_at(tn);
    const auto lambda = [](double v) { return 0.5 * (std::log(v) - std::log1p(-v)); };
    const double h = lambda(abn) - lambda(ab);
    const double r = (lambda(ab) - st.history_level.back()) / h;
    const auto out = predict(st.x, t, ab);
    const at::Tensor d = out.x0 + 0.5 * (out.x0 - prev) / r;
    const at::Tensor want = std::sqrt((1 - abn) / (1 - ab)) * st.x - std::sqrt(abn) * std::expm1(-h) * d;
    dpm.step(den, st);
    EXPECT_TRUE(close(st.x, want, 1e-12)) << "dpmpp_2m";
  }
  const auto ve_predict = [&](const at::Tensor& x_ve, double sigma) {
    const double a = 1 / std::sqrt(1 + sigma * sigma);
    return predict(x_ve * a, sched.timestep_from_ve_sigma(sigma), a * a).x0;
  };
  {
    mdiff::EulerSampler euler{mdiff::SigmaSamplerOptions(10)};
    mdiff::SamplerState st = start(euler, 3);
    const double sg = st.grid[3], sn = st.grid[4];
    const at::Tensor x0 = ve_predict(st.x, sg);
    const at::Tensor want = st.x + (st.x - x0) / sg * (sn - sg);
    euler.step(den, st);
    EXPECT_TRUE(close(st.x, want, 1e-12)) << "euler";
  }
  {
    mdiff::HeunSampler heun{mdiff::SigmaSamplerOptions(10)};
    mdiff::SamplerState st = start(heun, 3);
    const double sg = st.grid[3], sn = st.grid[4];
    const at::Tensor d = (st.x - ve_predict(st.x, sg)) / sg;
    const at::Tensor x1 = st.x + d * (sn - sg);
    const at::Tensor d2 = (x1 - ve_predict(x1, sn)) / sn;
    const at::Tensor want = st.x + 0.5 * (d + d2) * (sn - sg);
    heun.step(den, st);
    EXPECT_TRUE(close(st.x, want, 1e-12)) << "heun";
  }
}

// ---- CUDA -------------------------------------------------------------------------------------------

TEST(SamplerStep, MatchesCpuReference_CUDA) {
  MD_SKIP_WITHOUT_CUDA();
  const c10::Device dev(c10::kCUDA, 0);
  const auto coef = test_coefficients();
  for (auto dt : {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16}) {
    for (const std::vector<int64_t>& shape :
         {std::vector<int64_t>{16, 3, 32, 32}, std::vector<int64_t>{4096, 2}, std::vector<int64_t>{3, 5, 7},
          std::vector<int64_t>{1, 7}, std::vector<int64_t>{0, 5}}) {
      for (int optional : {0, 7}) {
        const Inputs cpu = make_inputs(shape, dt, optional);
        Inputs gpu = cpu;
        for (at::Tensor* t : {&gpu.x, &gpu.cond, &gpu.uncond, &gpu.x0_prev, &gpu.noise, &gpu.s}) {
          if (t->defined()) *t = t->to(dev);
        }
        for (auto clip : {X0Clip::None, X0Clip::Static, X0Clip::Dynamic}) {
          const auto ref = run(cpu, coef, clip, OpBackend::Reference);
          const auto fast = run(gpu, coef, clip, OpBackend::Native);
          ASSERT_TRUE(fast.x_next.is_cuda());
          EXPECT_TRUE(close(fast.x0, ref.x0, tolerance(dt))) << dt << " " << at::IntArrayRef(shape) << " " << clip;
          EXPECT_TRUE(close(fast.x_next, ref.x_next, tolerance(dt)))
              << dt << " " << at::IntArrayRef(shape) << " " << clip;
          // The coefficient tensor on the device gives the same result as the struct.
          const at::Tensor s = clip == X0Clip::Dynamic ? gpu.s : at::Tensor();
          const auto packed = sampler_step(gpu.x, gpu.cond, gpu.uncond, gpu.x0_prev, gpu.noise, coef.to_tensor(dev),
                                           clip, s, OpBackend::Native);
          EXPECT_TRUE(at::equal(packed.x_next, fast.x_next)) << dt << " " << clip;
          EXPECT_TRUE(at::equal(predict_x0(gpu.x, gpu.cond, gpu.uncond, coef, clip, s), fast.x0));
          EXPECT_TRUE(close(combine(gpu.x, fast.x0, gpu.x0_prev, gpu.noise, coef), fast.x_next, tolerance(dt)));
        }
      }
    }
  }
  // Inputs that start one element into their storage: no 16-byte accesses, same results.
  {
    const Inputs cpu = make_inputs({4, 33}, at::kFloat, 7);
    Inputs gpu = cpu;
    for (at::Tensor* t : {&gpu.x, &gpu.cond, &gpu.uncond, &gpu.x0_prev, &gpu.noise}) {
      at::Tensor storage = at::empty({t->numel() + 1}, t->options().device(dev));
      storage.slice(0, 1).copy_(t->reshape({-1}));
      *t = storage.slice(0, 1).view(t->sizes());
    }
    ASSERT_NE(reinterpret_cast<uintptr_t>(gpu.x.data_ptr()) % 16, 0u);
    const auto ref = run(cpu, coef, X0Clip::Static, OpBackend::Reference);
    const auto fast = run(gpu, coef, X0Clip::Static, OpBackend::Native);
    EXPECT_TRUE(close(fast.x_next, ref.x_next, 1e-5));
    EXPECT_TRUE(close(fast.x0, ref.x0, 1e-5));
  }
  // channels_last on the device.
  Inputs cl = make_inputs({2, 3, 8, 8}, at::kFloat, 7);
  const auto ref = run(cl, coef, X0Clip::Static, OpBackend::Reference);
  for (at::Tensor* t : {&cl.x, &cl.cond, &cl.uncond, &cl.x0_prev, &cl.noise}) {
    *t = t->to(dev).contiguous(at::MemoryFormat::ChannelsLast);
  }
  const auto fast = run(cl, coef, X0Clip::Static, OpBackend::Native);
  EXPECT_TRUE(fast.x_next.is_contiguous(at::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(close(fast.x_next, ref.x_next, 1e-5));
  // Device mismatches.
  const at::Tensor x = at::randn({2, 3}).to(dev);
  MD_EXPECT_ERROR(sampler_step(x, at::randn({2, 3}), {}, {}, {}, coef), "x", "cond_out", "same device");
  MD_EXPECT_ERROR(sampler_step(x, x, {}, {}, {}, coef.to_tensor()), "x", "coefficients", "same device");
  MD_EXPECT_ERROR(sampler_step(x, x, {}, {}, {}, coef, X0Clip::Dynamic, at::ones({2})), "x", "s", "same device");
}

#ifdef MD_TEST_CUDA
TEST(SamplerStep, ReplaysInACapturedGraphWithNewCoefficients_CUDA) {
  MD_SKIP_WITHOUT_CUDA();
  const c10::Device dev(c10::kCUDA, 0);
  const Inputs cpu = make_inputs({8, 3, 16, 16}, at::kFloat, 7);
  Inputs gpu = cpu;
  for (at::Tensor* t : {&gpu.x, &gpu.cond, &gpu.uncond, &gpu.x0_prev, &gpu.noise, &gpu.s}) *t = t->to(dev);
  const auto first = test_coefficients();
  const auto second = SamplerStepCoefficients().w(1.5).c_x(0.2).c_out(1.1).k_x(-0.3).k_x0(1.2).k_prev(0.5).k_noise(
      0.01).r(0.8);
  at::Tensor coef = first.to_tensor(dev);
  at::cuda::CUDAStream side = at::cuda::getStreamFromPool();
  at::cuda::CUDAGraph graph;
  mdiff::ops::SamplerStepOutput out;
  {
    const c10::cuda::CUDAStreamGuard guard(side);
    (void)sampler_step(gpu.x, gpu.cond, gpu.uncond, gpu.x0_prev, gpu.noise, coef, X0Clip::Static);  // warm-up
    side.synchronize();
    graph.capture_begin();
    out = sampler_step(gpu.x, gpu.cond, gpu.uncond, gpu.x0_prev, gpu.noise, coef, X0Clip::Static);
    graph.capture_end();
  }
  for (const auto& c : {first, second}) {
    coef.copy_(c.to_tensor());
    graph.replay();
    at::cuda::getCurrentCUDAStream().synchronize();
    const auto ref = run(cpu, c, X0Clip::Static, OpBackend::Reference);
    EXPECT_TRUE(close(out.x_next, ref.x_next, 1e-5));
    EXPECT_TRUE(close(out.x0, ref.x0, 1e-5));
  }
}
#endif

}  // namespace
