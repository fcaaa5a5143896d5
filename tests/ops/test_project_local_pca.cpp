#include <manifold_diffusion/ops/project_local_pca.h>

#include "test_util.h"

#include <ATen/ATen.h>

namespace {

using mdiff::ops::OpBackend;
using mdiff::ops::project_local_pca;
using mdiff::ops::project_local_pca_with_residual;

at::Tensor randn(at::IntArrayRef shape, uint64_t seed) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  return at::randn(shape, g, at::TensorOptions().dtype(at::kDouble));
}

// K frames [K, d, D] with orthonormal rows.
at::Tensor random_bases(int64_t frames, int64_t d, int64_t dims, uint64_t seed) {
  return std::get<0>(at::linalg_qr(randn({frames, dims, d}, seed), "reduced")).transpose(1, 2).contiguous();
}

struct Problem {
  at::Tensor x, centers, bases, assign;
};

Problem make_problem(int64_t batch, int64_t dims, int64_t d, int64_t frames, uint64_t seed) {
  at::Generator g = at::detail::createCPUGenerator(seed + 3);
  return {randn({batch, dims}, seed), randn({frames, dims}, seed + 1), random_bases(frames, d, dims, seed + 2),
          at::randint(0, frames, {batch}, g, at::TensorOptions().dtype(at::kLong))};
}

double tolerance(at::ScalarType dt) {
  switch (dt) {
    case at::kDouble:
      return 1e-12;
    case at::kFloat:
      return 2e-5;
    case at::kHalf:
      return 2e-2;
    default:
      return 1e-1;  // bfloat16
  }
}

TEST(ProjectLocalPca, MatchesTheClosedForm) {
  // Frame 0: the xz plane through (0, 1, 0); frame 1: the yz plane through (5, 0, 0).
  const at::Tensor centers = at::tensor({0.0, 1.0, 0.0, 5.0, 0.0, 0.0}, at::kDouble).view({2, 3});
  at::Tensor bases = at::zeros({2, 2, 3}, at::kDouble);
  bases[0][0][0] = 1.0;
  bases[0][1][2] = 1.0;
  bases[1][0][1] = 1.0;
  bases[1][1][2] = 1.0;
  const at::Tensor x = at::tensor({2.0, 3.0, 4.0, 2.0, 3.0, 4.0}, at::kDouble).view({2, 3});
  const at::Tensor assign = at::tensor({0, 1}, at::kLong);
  const at::Tensor want = at::tensor({2.0, 1.0, 4.0, 5.0, 3.0, 4.0}, at::kDouble).view({2, 3});
  for (auto be : {OpBackend::Auto, OpBackend::Reference, OpBackend::Native}) {
    const auto r = project_local_pca_with_residual(x, centers, bases, assign, be);
    EXPECT_TRUE(at::allclose(r.projected, want, 0, 1e-15)) << be;
    EXPECT_TRUE(at::allclose(r.residual_norm, at::tensor({2.0, 3.0}, at::kDouble), 0, 1e-15)) << be;
    EXPECT_TRUE(at::allclose(project_local_pca(x, centers, bases, assign, be), want, 0, 1e-15)) << be;
  }
}

TEST(ProjectLocalPca, NativeMatchesReferenceAcrossDtypesAndShapes) {
  struct Case {
    int64_t batch, dims, d, frames;
  };
  const Case cases[] = {{1, 1, 1, 1}, {1, 5, 2, 3}, {7, 9, 0, 2}, {16, 33, 4, 5}, {64, 784, 8, 16}, {5, 13, 13, 2}};
  for (const auto& c : cases) {
    const Problem pb = make_problem(c.batch, c.dims, c.d, c.frames, static_cast<uint64_t>(c.dims));
    for (auto dt : {at::kDouble, at::kFloat, at::kHalf, at::kBFloat16}) {
      const at::Tensor x = pb.x.to(dt);
      const at::Tensor cs = pb.centers.to(dt);
      const at::Tensor bs = pb.bases.to(dt);
      const auto ref = project_local_pca_with_residual(x, cs, bs, pb.assign, OpBackend::Reference);
      const auto fast = project_local_pca_with_residual(x, cs, bs, pb.assign, OpBackend::Native);
      EXPECT_EQ(fast.projected.scalar_type(), dt);
      EXPECT_EQ(fast.projected.sizes(), x.sizes());
      EXPECT_EQ(fast.residual_norm.sizes(), (at::IntArrayRef{c.batch}));
      const double tol = tolerance(dt);
      const std::string what = "B " + std::to_string(c.batch) + " D " + std::to_string(c.dims) + " d " +
                               std::to_string(c.d) + " " + c10::toString(dt);
      EXPECT_TRUE(at::allclose(fast.projected.to(at::kDouble), ref.projected.to(at::kDouble), tol, tol)) << what;
      EXPECT_TRUE(at::allclose(fast.residual_norm.to(at::kDouble), ref.residual_norm.to(at::kDouble), tol, tol))
          << what;
      EXPECT_TRUE(at::equal(project_local_pca(x, cs, bs, pb.assign), fast.projected)) << what;
    }
  }
}

TEST(ProjectLocalPca, ProjectionIsIdempotentAndTheResidualNormal) {
  const Problem pb = make_problem(40, 20, 3, 6, 11);
  const auto r = project_local_pca_with_residual(pb.x, pb.centers, pb.bases, pb.assign);
  const at::Tensor again = project_local_pca(r.projected, pb.centers, pb.bases, pb.assign);
  EXPECT_TRUE(at::allclose(again, r.projected, 1e-12, 1e-12));
  const at::Tensor u = pb.bases.index_select(0, pb.assign);     // [B, d, D]
  const at::Tensor normal = (pb.x - r.projected).unsqueeze(2);  // [B, D, 1]
  EXPECT_LT(at::bmm(u, normal).abs().max().item<double>(), 1e-12);
  EXPECT_TRUE(at::allclose(r.residual_norm, (pb.x - r.projected).norm(2, 1), 1e-12, 1e-12));
}

TEST(ProjectLocalPca, NonContiguousInputsAndInt32Assign) {
  const Problem pb = make_problem(12, 10, 2, 4, 21);
  const at::Tensor x = pb.x.t().contiguous().t();                                      // column-major [12, 10]
  const at::Tensor centers = at::cat({pb.centers, pb.centers}, 1).slice(1, 0, 20, 2);  // strided
  const at::Tensor bases = pb.bases.transpose(1, 2).contiguous().transpose(1, 2);      // [K, d, D] strided
  ASSERT_FALSE(x.is_contiguous());
  ASSERT_FALSE(bases.is_contiguous());
  const auto ref = project_local_pca_with_residual(x, centers, bases, pb.assign, OpBackend::Reference);
  const auto got = project_local_pca_with_residual(x, centers, bases, pb.assign.to(at::kInt));
  EXPECT_TRUE(at::allclose(got.projected, ref.projected, 1e-12, 1e-12));
  EXPECT_TRUE(at::allclose(got.residual_norm, ref.residual_norm, 1e-12, 1e-12));
}

TEST(ProjectLocalPca, EmptyBatchAndBatchOfOne) {
  const Problem pb = make_problem(1, 6, 2, 3, 31);
  for (auto be : {OpBackend::Native, OpBackend::Reference}) {
    const auto e = project_local_pca_with_residual(at::empty({0, 6}, at::kDouble), pb.centers, pb.bases,
                                                   at::empty({0}, at::kLong), be);
    EXPECT_EQ(e.projected.sizes(), (at::IntArrayRef{0, 6}));
    EXPECT_EQ(e.residual_norm.sizes(), (at::IntArrayRef{0}));
    const auto one = project_local_pca_with_residual(pb.x, pb.centers, pb.bases, pb.assign, be);
    EXPECT_EQ(one.projected.sizes(), (at::IntArrayRef{1, 6}));
  }
  // No frames at all is fine for an empty batch.
  const at::Tensor none =
      project_local_pca(at::empty({0, 6}), at::empty({0, 6}), at::empty({0, 2, 6}), at::empty({0}, at::kLong));
  EXPECT_EQ(none.sizes(), (at::IntArrayRef{0, 6}));
}

TEST(ProjectLocalPca, GradientFlowsToX) {
  const Problem pb = make_problem(9, 12, 3, 4, 41);
  const at::Tensor w = randn({9, 12}, 42);
  const at::Tensor wr = randn({9}, 43);
  // Fused path.
  const at::Tensor xa = pb.x.clone().requires_grad_(true);
  const auto a = project_local_pca_with_residual(xa, pb.centers, pb.bases, pb.assign);
  ((a.projected * w).sum() + (a.residual_norm * wr).sum()).backward();
  // Differentiable reference.
  const at::Tensor xb = pb.x.clone().requires_grad_(true);
  const auto b = project_local_pca_with_residual(xb, pb.centers, pb.bases, pb.assign, OpBackend::Reference);
  ((b.projected * w).sum() + (b.residual_norm * wr).sum()).backward();
  ASSERT_TRUE(xa.grad().defined());
  EXPECT_TRUE(at::allclose(xa.grad(), xb.grad(), 1e-12, 1e-12));
  // Only the projection: U^T U w.
  const at::Tensor xc = pb.x.clone().requires_grad_(true);
  (project_local_pca(xc, pb.centers, pb.bases, pb.assign) * w).sum().backward();
  const at::Tensor u = pb.bases.index_select(0, pb.assign);
  const at::Tensor want = at::bmm(u.transpose(1, 2), at::bmm(u, w.unsqueeze(2))).squeeze(2);
  EXPECT_TRUE(at::allclose(xc.grad(), want, 1e-12, 1e-12));
  // Frames that need a gradient take the differentiable reference.
  const at::Tensor cg = pb.centers.clone().requires_grad_(true);
  project_local_pca(pb.x, cg, pb.bases, pb.assign).sum().backward();
  ASSERT_TRUE(cg.grad().defined());
  // d/dc of sum(c + U^T U (x - c)) = sum over rows assigned to c of (I - U^T U) 1.
  EXPECT_EQ(cg.grad().sizes(), pb.centers.sizes());
}

TEST(ProjectLocalPca, RejectsBadInput) {
  const Problem pb = make_problem(4, 6, 2, 3, 51);
  const at::Tensor& x = pb.x;
  const at::Tensor& c = pb.centers;
  const at::Tensor& u = pb.bases;
  const at::Tensor& a = pb.assign;
  MD_EXPECT_ERROR(project_local_pca(x.view({4, 2, 3}), c, u, a), "x", "2 dimensions", "[4, 2, 3]");
  MD_EXPECT_ERROR(project_local_pca(x, c.narrow(1, 0, 5), u, a), "centers", "[K, D]", "D = 6", "[3, 5]");
  MD_EXPECT_ERROR(project_local_pca(x, c, u.narrow(2, 0, 5), a), "bases", "[3, d, 6]", "[3, 2, 5]");
  MD_EXPECT_ERROR(project_local_pca(x, c, u.narrow(0, 0, 2), a), "bases", "[3, d, 6]", "[2, 2, 6]");
  MD_EXPECT_ERROR(project_local_pca(x, c, u.view({3, 12}), a), "bases", "3 dimensions");
  MD_EXPECT_ERROR(project_local_pca(x, c.to(at::kFloat), u, a), "x", "centers", "same dtype");
  MD_EXPECT_ERROR(project_local_pca(x, c, u.to(at::kFloat), a), "x", "bases", "same dtype");
  MD_EXPECT_ERROR(project_local_pca(x.to(at::kLong), c.to(at::kLong), u.to(at::kLong), a), "x", "floating");
  MD_EXPECT_ERROR(project_local_pca(x, c, u, a.to(at::kFloat)), "assign", "integer");
  MD_EXPECT_ERROR(project_local_pca(x, c, u, a.narrow(0, 0, 3)), "assign", "[4]", "[3]");
  MD_EXPECT_ERROR(project_local_pca(x, c, u, at::tensor({0, 1, 3, 2}, at::kLong)), "assign", "[0, 3)", "max 3");
  MD_EXPECT_ERROR(project_local_pca(x, c, u, at::tensor({0, -2, 1, 2}, at::kLong)), "assign", "min -2");
  MD_EXPECT_ERROR(project_local_pca(x, c, u, at::Tensor()), "assign", "undefined");
}

TEST(ProjectLocalPca, MatchesCpuReference_CUDA) {
  MD_SKIP_WITHOUT_CUDA();
  const c10::Device dev(c10::kCUDA, 0);
  struct Case {
    int64_t batch, dims, d, frames;
  };
  const Case cases[] = {{1, 1, 1, 1}, {7, 9, 0, 2}, {16, 33, 4, 5}, {300, 784, 8, 64}, {5, 13, 13, 2}, {3, 600, 40, 2}};
  for (const auto& c : cases) {
    const Problem pb = make_problem(c.batch, c.dims, c.d, c.frames, static_cast<uint64_t>(c.dims) + 100);
    for (auto dt : {at::kDouble, at::kFloat, at::kHalf, at::kBFloat16}) {
      const auto ref = project_local_pca_with_residual(pb.x.to(dt), pb.centers.to(dt), pb.bases.to(dt), pb.assign,
                                                       OpBackend::Reference);
      const auto gpu = project_local_pca_with_residual(pb.x.to(dev, dt), pb.centers.to(dev, dt), pb.bases.to(dev, dt),
                                                       pb.assign.to(dev), OpBackend::Native);
      ASSERT_TRUE(gpu.projected.is_cuda());
      const double tol = tolerance(dt);
      EXPECT_TRUE(at::allclose(gpu.projected.cpu().to(at::kDouble), ref.projected.to(at::kDouble), tol, tol))
          << c.dims << " " << dt;
      EXPECT_TRUE(at::allclose(gpu.residual_norm.cpu().to(at::kDouble), ref.residual_norm.to(at::kDouble), tol, tol))
          << c.dims << " " << dt;
    }
  }
  // Gradient on the GPU.
  const Problem pb = make_problem(20, 30, 3, 4, 7);
  const at::Tensor xg = pb.x.to(dev).requires_grad_(true);
  project_local_pca(xg, pb.centers.to(dev), pb.bases.to(dev), pb.assign.to(dev)).pow(2).sum().backward();
  const at::Tensor xc = pb.x.clone().requires_grad_(true);
  project_local_pca(xc, pb.centers, pb.bases, pb.assign, OpBackend::Reference).pow(2).sum().backward();
  EXPECT_TRUE(at::allclose(xg.grad().cpu(), xc.grad(), 1e-10, 1e-10));
  MD_EXPECT_ERROR(project_local_pca(pb.x.to(dev), pb.centers, pb.bases, pb.assign), "x", "centers", "same device");
}

}  // namespace
