#include <manifold_diffusion/ops/attention.h>

#include "test_util.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <cmath>

namespace {

using mdiff::ops::attention;
using mdiff::ops::OpBackend;

double tolerance(at::ScalarType dt) {
  switch (dt) {
    case at::kDouble:
      return 1e-12;
    case at::kFloat:
      return 2e-6;
    case at::kHalf:
      return 5e-3;
    default:
      return 3e-2;  // bfloat16
  }
}

using mdiff_test::expect_max_close;

TEST(Attention, MatchesTheFormulaOnHandValues) {
  // One query [1, 0] against keys [1, 0] and [0, 1] with d = 2: scores 1/sqrt(2) and 0.
  const at::Tensor q = at::tensor({1.0, 0.0}, at::kDouble).reshape({1, 1, 2});
  const at::Tensor k = at::tensor({1.0, 0.0, 0.0, 1.0}, at::kDouble).reshape({1, 2, 2});
  const at::Tensor v = at::tensor({10.0, 20.0}, at::kDouble).reshape({1, 2, 1});
  const double w0 = std::exp(1 / std::sqrt(2.0)) / (std::exp(1 / std::sqrt(2.0)) + 1);
  for (auto be : {OpBackend::Auto, OpBackend::Reference, OpBackend::Native}) {
    EXPECT_NEAR(attention(q, k, v, be).item<double>(), 10 * w0 + 20 * (1 - w0), 1e-12) << be;
  }
}

TEST(Attention, NativeMatchesReferenceAcrossDtypesAndShapes) {
  struct Case {
    std::vector<int64_t> q, k, v;
  };
  const std::vector<Case> cases = {
      {{4, 8, 196, 8}, {4, 8, 196, 8}, {4, 8, 196, 8}},      // many small heads at 14x14
      {{2, 1, 49, 128}, {2, 1, 49, 128}, {2, 1, 49, 128}},   // one wide head at 7x7
      {{3, 17, 5}, {3, 23, 5}, {3, 23, 9}},                  // L != S, e != d, odd sizes
      {{1, 130, 1}, {1, 3, 1}, {1, 3, 2}},                   // d = 1, rows spanning two tasks
      {{2, 3}, {4, 3}, {4, 6}},                              // no batch dimension
  };
  for (auto dt : {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16}) {
    for (const auto& c : cases) {
      const at::Tensor q = at::randn(c.q).to(dt);
      const at::Tensor k = at::randn(c.k).to(dt);
      const at::Tensor v = at::randn(c.v).to(dt);
      std::ostringstream what;
      what << dt << " q " << q.sizes() << " k " << k.sizes() << " v " << v.sizes();
      expect_max_close(attention(q, k, v, OpBackend::Native), attention(q, k, v, OpBackend::Reference), tolerance(dt),
                   what.str());
    }
  }
}

TEST(Attention, StableForLargeLogitsNonContiguousAndEmptyInputs) {
  const at::Tensor q = at::randn({2, 3, 40, 16}) * 30;  // logits in the hundreds: needs the max shift
  const at::Tensor k = at::randn({2, 3, 40, 16}) * 30;
  const at::Tensor v = at::randn({2, 3, 40, 16});
  const at::Tensor fast = attention(q, k, v, OpBackend::Native);
  EXPECT_TRUE(at::isfinite(fast).all().item<bool>());
  // Logits of order 1e3 carry float32 rounding of order 1e-4 into the weights: the kernel must be
  // no less accurate than ATen's float32 composition measured against the float64 reference.
  const at::Tensor ref = attention(q, k, v, OpBackend::Reference).to(at::kDouble);
  const at::Tensor aten32 = at::matmul(at::softmax(at::matmul(q, k.transpose(-1, -2)) / 4.0, -1), v);
  const double err_fast = (fast.to(at::kDouble) - ref).abs().max().item<double>();
  const double err_aten = (aten32.to(at::kDouble) - ref).abs().max().item<double>();
  EXPECT_LE(err_fast, 2 * err_aten + 1e-5) << "kernel " << err_fast << " vs ATen float32 " << err_aten;
  const at::Tensor qt = at::randn({2, 16, 3, 40}).permute({0, 2, 3, 1});  // [2, 3, 40, 16], non-contiguous
  ASSERT_FALSE(qt.is_contiguous());
  expect_max_close(attention(qt, k.transpose(2, 3).contiguous().transpose(2, 3), v),
               attention(qt, k, v, OpBackend::Reference), 2e-5, "non-contiguous");
  EXPECT_EQ(attention(at::zeros({0, 4, 8}), at::zeros({0, 5, 8}), at::zeros({0, 5, 3})).sizes(),
            (std::vector<int64_t>{0, 4, 3}));
  EXPECT_EQ(attention(at::zeros({2, 0, 8}), at::zeros({2, 5, 8}), at::zeros({2, 5, 3})).sizes(),
            (std::vector<int64_t>{2, 0, 3}));
}

TEST(Attention, AutogradFallsBackToTheComposition) {
  const at::Tensor q = at::randn({2, 5, 4}, at::kDouble).requires_grad_(true);
  const at::Tensor k = at::randn({2, 6, 4}, at::kDouble);
  const at::Tensor v = at::randn({2, 6, 3}, at::kDouble);
  const at::Tensor g = torch::autograd::grad({attention(q, k, v).sum()}, {q})[0];
  const at::Tensor q2 = q.detach().clone().requires_grad_(true);
  const at::Tensor ref = at::matmul(at::softmax(at::matmul(q2, k.transpose(1, 2)) / 2.0, -1), v);
  const at::Tensor g2 = torch::autograd::grad({ref.sum()}, {q2})[0];
  EXPECT_TRUE(at::allclose(g, g2, 1e-10, 1e-10));
  MD_EXPECT_ERROR(attention(q, k, v, OpBackend::Native), "no backward");
}

TEST(Attention, RejectsBadInput) {
  const at::Tensor q = at::randn({2, 5, 4});
  const at::Tensor k = at::randn({2, 6, 4});
  const at::Tensor v = at::randn({2, 6, 3});
  MD_EXPECT_ERROR(attention(q, k.slice(2, 0, 3), v), "[2, 6, 3]", "k [..., S, d]");
  MD_EXPECT_ERROR(attention(q, k, v.slice(1, 0, 5)), "v [..., S, e]");
  MD_EXPECT_ERROR(attention(q, at::randn({3, 6, 4}), at::randn({3, 6, 3})), "leading", "[3, 6, 4]");
  MD_EXPECT_ERROR(attention(q, k, v.to(at::kDouble)), "v", "Double");
  MD_EXPECT_ERROR(attention(q.to(at::kLong), k.to(at::kLong), v.to(at::kLong)), "q", "floating");
  MD_EXPECT_ERROR(attention(at::randn({5}), at::randn({5}), at::randn({5})), "rank >= 2");
  MD_EXPECT_ERROR(attention(at::randn({2, 5, 0}), at::randn({2, 6, 0}), v), "head width");
  MD_EXPECT_ERROR(attention(q, at::randn({2, 0, 4}), at::randn({2, 0, 3})), "no positions");
}

TEST(Attention, MatchesCpuReference_CUDA) {
  MD_SKIP_WITHOUT_CUDA();
  const c10::Device dev(c10::kCUDA, 0);
  for (auto dt : {at::kFloat, at::kHalf, at::kBFloat16}) {
    const at::Tensor q = at::randn({4, 8, 196, 8}).to(dt);
    const at::Tensor k = at::randn({4, 8, 196, 8}).to(dt);
    const at::Tensor v = at::randn({4, 8, 196, 8}).to(dt);
    const at::Tensor gpu = attention(q.to(dev), k.to(dev), v.to(dev));
    ASSERT_TRUE(gpu.is_cuda());
    expect_max_close(gpu.cpu(), attention(q, k, v, OpBackend::Reference), dt == at::kFloat ? 1e-3 : tolerance(dt),
                 "cuda");
  }
}

}  // namespace
