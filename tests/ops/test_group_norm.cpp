#include <manifold_diffusion/ops/group_norm.h>

#include "test_util.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <cmath>

namespace {

using mdiff::ops::group_norm_silu;
using mdiff::ops::GroupNormSiLUOptions;
using mdiff::ops::OpBackend;

double tolerance(at::ScalarType dt) {
  switch (dt) {
    case at::kDouble:
      return 1e-10;
    case at::kFloat:
      return 2e-5;
    case at::kHalf:
      return 1e-2;
    default:
      return 5e-2;  // bfloat16
  }
}

struct Inputs {
  at::Tensor x, weight, bias, scale, shift;
};

Inputs random_inputs(at::IntArrayRef shape, at::ScalarType dt, double offset = 0.0) {
  const int64_t n = shape[0];
  const int64_t c = shape[1];
  Inputs in;
  in.x = (at::randn(shape, at::kDouble) * 2 + offset).to(dt);
  in.weight = (1 + 0.5 * at::randn({c}, at::kDouble)).to(dt);
  in.bias = (0.3 * at::randn({c}, at::kDouble)).to(dt);
  in.scale = (0.4 * at::randn({n, c}, at::kDouble)).to(dt);
  in.shift = (0.4 * at::randn({n, c}, at::kDouble)).to(dt);
  return in;
}

using mdiff_test::expect_max_close;

TEST(GroupNormSiLU, MatchesTheFormulaOnHandValues) {
  // One sample, 2 channels in 1 group, 2 positions: values 1, 3 | 5, 7 -> mean 4, var 5.
  const at::Tensor x = at::tensor({1.0, 3.0, 5.0, 7.0}, at::kDouble).reshape({1, 2, 2});
  const at::Tensor w = at::tensor({2.0, 1.0}, at::kDouble);
  const at::Tensor b = at::tensor({0.5, -0.5}, at::kDouble);
  const at::Tensor s = at::tensor({1.0, 0.0}, at::kDouble).reshape({1, 2});
  const at::Tensor t = at::tensor({0.0, 1.0}, at::kDouble).reshape({1, 2});
  const double eps = 1e-5;
  const double rstd = 1 / std::sqrt(5.0 + eps);
  auto silu = [](double z) { return z / (1 + std::exp(-z)); };
  const std::vector<double> h = {((1 - 4) * rstd * 2 + 0.5) * 2, ((3 - 4) * rstd * 2 + 0.5) * 2,
                                 (5 - 4) * rstd - 0.5 + 1, (7 - 4) * rstd - 0.5 + 1};
  for (auto be : {OpBackend::Auto, OpBackend::Reference, OpBackend::Native}) {
    const at::Tensor y = group_norm_silu(x, w, b, s, t, GroupNormSiLUOptions(1).eps(eps), be);
    for (int64_t i = 0; i < 4; ++i) {
      EXPECT_NEAR(y.flatten()[i].item<double>(), silu(h[static_cast<size_t>(i)]), 1e-12) << be << " " << i;
    }
    const at::Tensor lin = group_norm_silu(x, w, b, s, t, GroupNormSiLUOptions(1).eps(eps).silu(false), be);
    EXPECT_NEAR(lin.flatten()[3].item<double>(), h[3], 1e-12) << be;
  }
}

TEST(GroupNormSiLU, NativeMatchesReferenceAcrossDtypesShapesAndLayouts) {
  const std::vector<std::vector<int64_t>> shapes = {{2, 32, 28, 28}, {3, 64, 7, 7}, {1, 8, 5, 3}, {4, 16, 33},
                                                    {2, 12}, {2, 96, 14, 14}};
  for (auto dt : {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16}) {
    for (const auto& shape : shapes) {
      for (int64_t groups : {1, 4}) {
        for (bool cl : {false, true}) {
          if (cl && shape.size() != 4) {
            continue;
          }
          Inputs in = random_inputs(shape, dt, /*offset=*/3.0);
          if (cl) {
            in.x = in.x.contiguous(at::MemoryFormat::ChannelsLast);
          }
          for (bool affine : {false, true}) {
            const at::Tensor w = affine ? in.weight : at::Tensor();
            const at::Tensor b = affine ? in.bias : at::Tensor();
            const at::Tensor s = affine ? in.scale : at::Tensor();
            const at::Tensor t = affine ? in.shift : at::Tensor();
            const auto opts = GroupNormSiLUOptions(groups);
            const at::Tensor ref = group_norm_silu(in.x, w, b, s, t, opts, OpBackend::Reference);
            const at::Tensor fast = group_norm_silu(in.x, w, b, s, t, opts, OpBackend::Native);
            std::ostringstream what;
            what << dt << " " << in.x.sizes() << " groups " << groups << " channels_last " << cl << " affine "
                 << affine;
            expect_max_close(fast, ref, tolerance(dt), what.str());
            if (cl) {
              EXPECT_TRUE(fast.is_contiguous(at::MemoryFormat::ChannelsLast)) << what.str();
            }
          }
        }
      }
    }
  }
}

TEST(GroupNormSiLU, EqualsTorchGroupNormThenSiLU) {
  // Independent of this library's reference: torch's own GroupNorm in float32.
  const Inputs in = random_inputs({4, 32, 14, 14}, at::kFloat);
  at::NoGradGuard no_grad;
  const at::Tensor want = at::silu(at::group_norm(in.x, 8, in.weight, in.bias, 1e-6));
  const at::Tensor got = group_norm_silu(in.x, in.weight, in.bias, {}, {}, GroupNormSiLUOptions(8).eps(1e-6));
  expect_max_close(got, want, 2e-5, "vs torch");
}

TEST(GroupNormSiLU, StableForLargeOffsetsAndExtremeActivations) {
  // A large common offset (the one-pass variance must not cancel) and activations far in both tails.
  at::Tensor x = at::randn({2, 8, 16, 16}, at::kDouble) * 1e-2 + 1e3;
  const at::Tensor ref = group_norm_silu(x.to(at::kFloat), {}, {}, {}, {}, GroupNormSiLUOptions(2), OpBackend::Reference);
  for (bool cl : {false, true}) {
    at::Tensor xf = x.to(at::kFloat);
    if (cl) xf = xf.contiguous(at::MemoryFormat::ChannelsLast);
    expect_max_close(group_norm_silu(xf, {}, {}, {}, {}, GroupNormSiLUOptions(2), OpBackend::Native), ref, 1e-3,
                 cl ? "offset, channels_last" : "offset");
  }
  const at::Tensor big = at::tensor({-200.0f, -90.0f, -20.0f, 0.0f, 20.0f, 90.0f, 200.0f}).reshape({1, 1, 7});
  const at::Tensor shift = at::zeros({1, 1});
  const at::Tensor scale = at::full({1, 1}, 99.0f);  // stretch the normalised values far into the tails
  const at::Tensor got = group_norm_silu(big, {}, {}, scale, shift, GroupNormSiLUOptions(1), OpBackend::Native);
  const at::Tensor want = group_norm_silu(big, {}, {}, scale, shift, GroupNormSiLUOptions(1), OpBackend::Reference);
  EXPECT_TRUE(at::isfinite(got).all().item<bool>()) << got;
  expect_max_close(got, want, 1e-5, "tails");
}

TEST(GroupNormSiLU, NonContiguousAndEmptyInputs) {
  const Inputs in = random_inputs({3, 16, 10, 10}, at::kFloat);
  const at::Tensor x = at::randn({3, 10, 16, 10}).transpose(1, 2);  // neither layout
  ASSERT_FALSE(x.is_contiguous());
  const auto opts = GroupNormSiLUOptions(4);
  expect_max_close(group_norm_silu(x, in.weight, in.bias, in.scale.t().contiguous().t(), in.shift, opts),
               group_norm_silu(x, in.weight, in.bias, in.scale, in.shift, opts, OpBackend::Reference), 2e-5,
               "non-contiguous");
  const at::Tensor empty = at::zeros({0, 16, 4, 4});
  EXPECT_EQ(group_norm_silu(empty, {}, {}, {}, {}, opts).sizes(), empty.sizes());
}

TEST(GroupNormSiLU, AutogradFallsBackToTheDifferentiableComposition) {
  const Inputs in = random_inputs({2, 8, 4, 4}, at::kDouble);
  const at::Tensor x = in.x.clone().requires_grad_(true);
  const at::Tensor y = group_norm_silu(x, in.weight, in.bias, in.scale, in.shift, GroupNormSiLUOptions(2));
  ASSERT_TRUE(y.requires_grad());
  const at::Tensor g = torch::autograd::grad({y.sum()}, {x})[0];
  const at::Tensor x2 = in.x.clone().requires_grad_(true);
  const at::Tensor h = at::group_norm(x2, 2, in.weight, in.bias, 1e-5) * (1 + in.scale.reshape({2, 8, 1, 1})) +
                       in.shift.reshape({2, 8, 1, 1});
  const at::Tensor g2 = torch::autograd::grad({at::silu(h).sum()}, {x2})[0];
  EXPECT_TRUE(at::allclose(g, g2, 1e-10, 1e-10));
  MD_EXPECT_ERROR(group_norm_silu(x, {}, {}, {}, {}, GroupNormSiLUOptions(2), OpBackend::Native), "no backward",
                  "NoGradGuard");
}

TEST(GroupNormSiLU, RejectsBadInput) {
  const at::Tensor x = at::randn({2, 8, 4, 4});
  const auto o = GroupNormSiLUOptions(2);
  MD_EXPECT_ERROR(group_norm_silu(x, {}, {}, {}, {}, GroupNormSiLUOptions(3)), "num_groups (3)", "channels", "8");
  MD_EXPECT_ERROR(group_norm_silu(x, {}, {}, {}, {}, GroupNormSiLUOptions(0)), "num_groups", "0");
  MD_EXPECT_ERROR(group_norm_silu(x, {}, {}, {}, {}, GroupNormSiLUOptions(2).eps(-1)), "eps", "-1");
  MD_EXPECT_ERROR(group_norm_silu(x, at::ones({4}), {}, {}, {}, o), "weight", "[8]", "[4]");
  MD_EXPECT_ERROR(group_norm_silu(x, {}, at::ones({8}, at::kDouble), {}, {}, o), "bias", "Double");
  MD_EXPECT_ERROR(group_norm_silu(x, {}, {}, at::zeros({8}), {}, o), "scale", "[2, 8]");
  MD_EXPECT_ERROR(group_norm_silu(x, {}, {}, {}, at::zeros({3, 8}), o), "shift", "[3, 8]");
  MD_EXPECT_ERROR(group_norm_silu(at::ones({8}), {}, {}, {}, {}, o), "[N, C, *]");
  MD_EXPECT_ERROR(group_norm_silu(at::ones({2, 8}, at::kLong), {}, {}, {}, {}, o), "x", "floating");
  MD_EXPECT_ERROR(group_norm_silu(at::Tensor(), {}, {}, {}, {}, o), "x", "undefined");
}

TEST(GroupNormSiLU, MatchesCpuReference_CUDA) {
  MD_SKIP_WITHOUT_CUDA();
  const c10::Device dev(c10::kCUDA, 0);
  for (auto dt : {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16}) {
    for (bool cl : {false, true}) {
      Inputs in = random_inputs({8, 64, 14, 14}, dt, 2.0);
      if (cl) in.x = in.x.contiguous(at::MemoryFormat::ChannelsLast);
      const auto opts = GroupNormSiLUOptions(32);
      const at::Tensor ref = group_norm_silu(in.x, in.weight, in.bias, in.scale, in.shift, opts, OpBackend::Reference);
      const at::Tensor gpu = group_norm_silu(in.x.to(dev), in.weight.to(dev), in.bias.to(dev), in.scale.to(dev),
                                             in.shift.to(dev), opts, OpBackend::Native);
      ASSERT_TRUE(gpu.is_cuda());
      expect_max_close(gpu.cpu(), ref, tolerance(dt), cl ? "cuda channels_last" : "cuda");
    }
  }
  MD_EXPECT_ERROR(group_norm_silu(at::randn({2, 8, 4, 4}).to(dev), at::ones({8}), {}, {}, {}, GroupNormSiLUOptions(2)),
                  "weight", "device");
}

}  // namespace
