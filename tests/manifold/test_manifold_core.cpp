// kNN, PCA, local PCA, intrinsic dimension, and the analytic and reference manifolds.

#include <manifold_diffusion/manifold/analytic.h>
#include <manifold_diffusion/manifold/knn.h>
#include <manifold_diffusion/manifold/pca.h>
#include <manifold_diffusion/manifold/reference.h>

#include "test_util.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

namespace mdiff = manifold_diffusion;

namespace {

at::TensorOptions f64() { return at::TensorOptions().dtype(at::kDouble); }

// A random [rows, cols] matrix with orthonormal columns.
at::Tensor random_frame(int64_t rows, int64_t cols, uint64_t seed) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  return std::get<0>(at::linalg_qr(at::randn({rows, cols}, g, f64()), "reduced"));
}

at::Tensor randn(at::IntArrayRef shape, uint64_t seed) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  return at::randn(shape, g, f64());
}

at::Tensor rand(at::IntArrayRef shape, uint64_t seed) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  return at::rand(shape, g, f64());
}

// Brute-force kNN: exact distances, ties by index (stable sort of index-ordered distances).
mdiff::KnnResult brute_knn(const at::Tensor& q, const at::Tensor& p, int64_t k, bool exclude_self) {
  at::Tensor d = (q.unsqueeze(1) - p.unsqueeze(0)).pow(2).sum(2).sqrt();
  if (exclude_self) {
    d.diagonal().fill_(std::numeric_limits<double>::infinity());
  }
  auto s = at::sort(d, /*stable=*/true, /*dim=*/1, /*descending=*/false);
  return {std::get<0>(s).narrow(1, 0, k), std::get<1>(s).narrow(1, 0, k)};
}

// Points uniformly on S^k (radius 1) in R^(k+1).
at::Tensor sphere_points(int64_t n, int64_t k, uint64_t seed) {
  at::Tensor x = randn({n, k + 1}, seed);
  return x / x.norm(2, 1, true);
}

}  // namespace

TEST(ManifoldKnn, MatchesBruteForceAcrossBlocks) {
  const at::Tensor p = randn({300, 7}, 1);
  const at::Tensor q = randn({50, 7}, 2);
  const auto want = brute_knn(q, p, 6, false);
  for (int64_t block : {int64_t{1} << 24, int64_t{100}, int64_t{7}}) {
    const auto got = mdiff::knn(q, p, 6, mdiff::KnnOptions().block_entries(block));
    ASSERT_EQ(got.indices.sizes(), (at::IntArrayRef{50, 6}));
    EXPECT_EQ(got.indices.scalar_type(), at::kLong);
    EXPECT_TRUE(at::equal(got.indices, want.indices)) << "block " << block;
    EXPECT_TRUE(at::allclose(got.distances, want.distances, 0, 1e-12)) << "block " << block;
  }
  // Without refinement: same neighbours, distances from the expanded formula.
  const auto rough = mdiff::knn(q, p, 6, mdiff::KnnOptions().refine(false));
  EXPECT_TRUE(at::equal(rough.indices, want.indices));
  EXPECT_TRUE(at::allclose(rough.distances, want.distances, 0, 1e-6));
}

TEST(ManifoldKnn, Float32AgreesWithFloat64) {
  const at::Tensor p = randn({2000, 40}, 3);
  const at::Tensor q = randn({64, 40}, 4);
  const auto want = brute_knn(q, p, 10, false);
  const auto got = mdiff::knn(q.to(at::kFloat), p.to(at::kFloat), 10);
  EXPECT_EQ(got.distances.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::allclose(got.distances.to(at::kDouble), want.distances, 1e-5, 1e-5));
  // Each returned index really is at the returned distance (float64 check); only float32-level
  // near-ties may swap places with the float64 order.
  const at::Tensor true_d = (q.unsqueeze(1) - p.index_select(0, got.indices.reshape({-1})).view({64, 10, 40})).norm(2, 2);
  EXPECT_TRUE(at::allclose(true_d, got.distances.to(at::kDouble), 1e-5, 1e-5));
  EXPECT_GT((got.indices == want.indices).to(at::kDouble).mean().item<double>(), 0.99);
}

TEST(ManifoldKnn, TiesAndDuplicatesFollowTheIndexOrder) {
  // Integer grid points (many exact ties) plus duplicated rows.
  const at::Tensor grid = at::stack(at::meshgrid({at::arange(6, f64()), at::arange(5, f64())}, "ij"), 2).reshape({-1, 2});
  const at::Tensor p = at::cat({grid, grid.narrow(0, 3, 4), grid.narrow(0, 17, 2)});
  const auto want = brute_knn(p, p, 5, false);
  const auto got = mdiff::knn(p, p, 5, mdiff::KnnOptions().block_entries(64));
  EXPECT_TRUE(at::equal(got.distances, want.distances));
  EXPECT_TRUE(at::equal(got.indices, want.indices));
  // A duplicated point finds itself and its copy at distance 0, smaller index first.
  EXPECT_EQ(got.indices[3][0].item<int64_t>(), 3);
  EXPECT_EQ(got.indices[3][1].item<int64_t>(), 30);
  EXPECT_EQ(got.distances[3][1].item<double>(), 0.0);
  const auto gwant = brute_knn(p, p, 4, true);
  const auto ggot = mdiff::knn_graph(p, 4);
  EXPECT_TRUE(at::equal(ggot.distances, gwant.distances));
  EXPECT_TRUE(at::equal(ggot.indices, gwant.indices));
  EXPECT_EQ(ggot.indices[30][0].item<int64_t>(), 3);  // the copy, not itself
}

TEST(ManifoldKnn, GraphWithAllOtherPoints) {
  const at::Tensor p = randn({23, 3}, 5);
  const auto g = mdiff::knn_graph(p, 22, mdiff::KnnOptions().block_entries(50));
  const auto want = brute_knn(p, p, 22, true);
  EXPECT_TRUE(at::equal(g.indices, want.indices));
  for (int64_t i = 0; i < 23; ++i) {
    EXPECT_FALSE((g.indices[i] == i).any().item<bool>()) << "row " << i << " lists itself";
    EXPECT_EQ(std::get<0>(at::_unique(g.indices[i])).numel(), 22);
  }
  EXPECT_TRUE(at::equal(mdiff::knn(p, p, 23).indices.select(1, 0), at::arange(23, at::kLong)));
}

TEST(ManifoldKnn, BadInputIsRefused) {
  const at::Tensor p = randn({10, 3}, 6);
  MD_EXPECT_ERROR(mdiff::knn(p, p, 0), "k must be in [1, 10]", "got 0");
  MD_EXPECT_ERROR(mdiff::knn(p, p, 11), "got 11");
  MD_EXPECT_ERROR(mdiff::knn_graph(p, 10), "k must be in [1, 9]", "got 10");
  MD_EXPECT_ERROR(mdiff::knn(randn({4, 2}, 1), p, 2), "same dimension", "[4, 2]", "[10, 3]");
  MD_EXPECT_ERROR(mdiff::knn(p, randn({10}, 1), 2), "points");
  MD_EXPECT_ERROR(mdiff::knn(p, at::ones({10, 3}, at::kLong), 2), "points");
  MD_EXPECT_ERROR(mdiff::knn(at::empty({0, 3}, f64()), p, 2), "queries");
  at::Tensor bad = p.clone();
  bad[2][1] = std::numeric_limits<double>::quiet_NaN();
  MD_EXPECT_ERROR(mdiff::knn(p, bad, 2), "points");
}

TEST(ManifoldPca, RecoversAnisotropicPlaneAndRoundTrips) {
  // z on a symmetric grid (uncorrelated columns, variances known), embedded by orthonormal rows A.
  const at::Tensor g = at::stack(at::meshgrid({at::linspace(-3, 3, 13, f64()), at::linspace(-1, 1, 9, f64())}, "ij"), 2)
                           .reshape({-1, 2});
  const at::Tensor a = random_frame(5, 2, 7).t();  // [2, 5]
  const at::Tensor offset = randn({5}, 8);
  const at::Tensor x = at::mm(g, a) + offset;
  mdiff::PCA pca(mdiff::PCAOptions().n_components(2));
  const at::Tensor z = pca.fit_transform(x);
  EXPECT_EQ(z.sizes(), (at::IntArrayRef{117, 2}));
  // Component i equals +-A_i; variance = the grid column's sample variance.
  for (int64_t i = 0; i < 2; ++i) {
    EXPECT_NEAR(std::abs(at::dot(pca.components()[i], a[i]).item<double>()), 1.0, 1e-10);
    EXPECT_NEAR(pca.explained_variance()[i].item<double>(), g.select(1, i).var().item<double>(), 1e-10);
  }
  EXPECT_NEAR(pca.explained_variance_ratio().sum().item<double>(), 1.0, 1e-10);
  EXPECT_TRUE(at::allclose(pca.inverse_transform(z), x, 1e-9, 1e-9));
  EXPECT_TRUE(at::allclose(pca.mean(), offset, 1e-10, 1e-10));
  // Keeps dtype; N < D path (Gram matrix) round-trips at full rank.
  const at::Tensor wide = randn({8, 30}, 9).to(at::kFloat);
  mdiff::PCA full;
  const at::Tensor zw = full.fit_transform(wide);
  EXPECT_EQ(zw.scalar_type(), at::kFloat);
  EXPECT_EQ(full.n_components(), 8);
  EXPECT_TRUE(at::allclose(full.inverse_transform(zw), wide, 1e-4, 1e-4));
  MD_EXPECT_ERROR(mdiff::PCA(mdiff::PCAOptions().n_components(9)).fit(wide), "n_components", "9");
  MD_EXPECT_ERROR(mdiff::PCA().transform(wide), "fit");
  MD_EXPECT_ERROR(full.transform(randn({2, 7}, 1)), "7");
}

TEST(ManifoldLocalPca, RecoversTangentPlanes) {
  // A 2-plane in R^6 (Gram path, k < D) and a 2-plane in R^3 (covariance path, D <= k).
  for (int64_t dims : {6, 3}) {
    const at::Tensor frame = random_frame(dims, 2, 10 + dims);
    const at::Tensor x = at::mm(rand({400, 2}, 11), frame.t()) + 0.5;
    const auto nb = mdiff::knn(x.narrow(0, 0, 50), x, 10);
    const auto l = mdiff::local_pca(x, nb.indices, 2, 1e-6);
    ASSERT_EQ(l.basis.sizes(), (at::IntArrayRef{50, dims, 2}));
    ASSERT_EQ(l.eigenvalues.sizes(), (at::IntArrayRef{50, std::min<int64_t>(10, dims)}));
    const at::Tensor utu = at::bmm(l.basis.transpose(1, 2), l.basis);
    EXPECT_TRUE(at::allclose(utu, at::eye(2, f64()).expand({50, 2, 2}), 1e-9, 1e-9)) << dims;
    // The basis lies in the plane: P P^T U = U.
    const at::Tensor inplane = at::matmul(at::mm(frame, frame.t()), l.basis);
    EXPECT_TRUE(at::allclose(inplane, l.basis, 1e-8, 1e-8)) << dims;
    EXPECT_TRUE(at::allclose(l.eigenvalues.narrow(1, 2, l.eigenvalues.size(1) - 2),
                             at::full({50, l.eigenvalues.size(1) - 2}, 1e-6, f64()), 0, 1e-9));
    EXPECT_TRUE((l.eigenvalues.narrow(1, 0, 2) > 1e-4).all().item<bool>());
  }
  // A neighbourhood of one repeated point still gets an orthonormal basis.
  const at::Tensor same = at::ones({5, 8}, f64());
  const auto l = mdiff::local_pca(same, at::zeros({1, 5}, at::kLong), 3, 1e-5);
  EXPECT_TRUE(at::allclose(at::bmm(l.basis.transpose(1, 2), l.basis), at::eye(3, f64()).unsqueeze(0), 1e-9, 1e-9));
  EXPECT_FALSE(at::isnan(l.basis).any().item<bool>());
  MD_EXPECT_ERROR(mdiff::local_pca(same, at::zeros({1, 5}, at::kLong), 6), "dim must be in [1, min(k, D)]", "got 6");
  MD_EXPECT_ERROR(mdiff::local_pca(same, at::full({1, 5}, 7, at::kLong), 2), "neighbours");
  MD_EXPECT_ERROR(mdiff::local_pca(same, at::zeros({1, 5}, at::kLong), 2, -1.0), "ridge", "-1");
}

TEST(ManifoldIntrinsicDim, SubspaceAndSphere) {
  const at::Tensor frame = random_frame(10, 3, 12);
  const at::Tensor cube = at::mm(rand({1500, 3}, 13), frame.t());
  const auto pca3 = mdiff::intrinsic_dim_local_pca(cube, mdiff::IntrinsicDimOptions().k(12).max_points(300));
  EXPECT_EQ(std::llround(pca3.estimate), 3);
  EXPECT_LE(pca3.local.max().item<double>(), 3.0);
  EXPECT_EQ(std::llround(mdiff::intrinsic_dim_local_pca(cube, mdiff::IntrinsicDimOptions().threshold(0.9).max_points(300)).estimate), 3);
  EXPECT_EQ(pca3.local.size(0), 300);
  const auto mle3 = mdiff::intrinsic_dim_mle(cube, mdiff::IntrinsicDimOptions().k(10).max_points(500));
  EXPECT_NEAR(mle3.estimate, 3.0, 0.4);

  const at::Tensor s2 = sphere_points(2000, 2, 14);
  EXPECT_EQ(std::llround(mdiff::intrinsic_dim_local_pca(s2, mdiff::IntrinsicDimOptions().max_points(300)).estimate), 2);
  EXPECT_NEAR(mdiff::intrinsic_dim_mle(s2, mdiff::IntrinsicDimOptions().k(10).max_points(500)).estimate, 2.0, 0.3);
  const at::Tensor s4 = at::mm(sphere_points(2000, 4, 15), random_frame(12, 5, 16).t());
  EXPECT_NEAR(mdiff::intrinsic_dim_mle(s4, mdiff::IntrinsicDimOptions().k(15).max_points(300)).estimate, 4.0, 0.6);
  MD_EXPECT_ERROR(mdiff::intrinsic_dim_mle(s2, mdiff::IntrinsicDimOptions().k(1)), "k must be in [2, 1999]", "got 1");
  MD_EXPECT_ERROR(mdiff::intrinsic_dim_local_pca(s2, mdiff::IntrinsicDimOptions().threshold(1.5)), "threshold", "1.5");
}

TEST(ManifoldSphere, ExactProjectionDistanceAndTangents) {
  const at::Tensor p = random_frame(5, 3, 17);
  const at::Tensor c = randn({5}, 18);
  auto s = mdiff::SphereManifold::make(mdiff::SphereOptions(5).intrinsic_dim(2).radius(2.0).centre(c).embedding(p));
  EXPECT_EQ(s->intrinsic_dim(), 2);
  EXPECT_EQ(s->ambient_dim(), 5);
  const at::Tensor x = randn({64, 5}, 19) * 2 + c;
  const at::Tensor proj = s->project(x);
  const at::Tensor y = proj - c;
  EXPECT_TRUE(at::allclose(at::mm(y, p).norm(2, 1), at::full({64}, 2.0, f64()), 1e-10, 1e-10));
  EXPECT_TRUE(at::allclose(y - at::mm(at::mm(y, p), p.t()), at::zeros_like(y), 0, 1e-10));
  const at::Tensor d = s->distance(x);
  EXPECT_TRUE(at::allclose(d, (x - proj).norm(2, 1), 1e-10, 1e-10));
  // No point of a dense sample of the sphere is nearer than the projection.
  const at::Tensor dense = c + 2.0 * at::mm(sphere_points(20000, 2, 20), p.t());
  const at::Tensor brute = std::get<0>((x.unsqueeze(1) - dense.unsqueeze(0)).norm(2, 2).min(1));
  EXPECT_TRUE((d <= brute + 1e-12).all().item<bool>());
  EXPECT_LT((brute - d).max().item<double>(), 0.1);
  // Tangent bases: orthonormal, orthogonal to the radius, inside span(P).
  const at::Tensor u = s->tangent_basis(x);
  ASSERT_EQ(u.sizes(), (at::IntArrayRef{64, 5, 2}));
  EXPECT_TRUE(at::allclose(at::bmm(u.transpose(1, 2), u), at::eye(2, f64()).expand({64, 2, 2}), 1e-10, 1e-10));
  EXPECT_TRUE(at::allclose(at::bmm(u.transpose(1, 2), y.unsqueeze(2)), at::zeros({64, 2, 1}, f64()), 0, 1e-10));
  EXPECT_TRUE(at::allclose(at::matmul(at::mm(p, p.t()), u), u, 1e-10, 1e-10));
  // Points of the sphere project to themselves; the centre projects somewhere on the sphere.
  EXPECT_TRUE(at::allclose(s->project(proj), proj, 1e-10, 1e-10));
  EXPECT_NEAR(s->distance(c.unsqueeze(0)).item<double>(), 2.0, 1e-12);
  EXPECT_FALSE(at::isnan(s->tangent_basis(c.unsqueeze(0))).any().item<bool>());
  // dtype and shape follow the query.
  auto unit = mdiff::SphereManifold::make(mdiff::SphereOptions(3));
  const at::Tensor xf = at::randn({4, 1, 3});
  EXPECT_EQ(unit->project(xf).sizes(), xf.sizes());
  EXPECT_EQ(unit->project(xf).scalar_type(), at::kFloat);
  EXPECT_TRUE(at::allclose(unit->distance(xf), (xf.flatten(1).norm(2, 1) - 1).abs(), 1e-5, 1e-5));
  // The frame's tangent/normal split: the normal part of x - c is radial.
  const auto parts = mdiff::split_tangent_normal(x - c, u);
  EXPECT_TRUE(at::allclose(at::bmm(u.transpose(1, 2), parts.second.unsqueeze(2)), at::zeros({64, 2, 1}, f64()), 0, 1e-9));
  MD_EXPECT_ERROR(mdiff::SphereManifold(mdiff::SphereOptions(3).radius(-1)), "radius", "-1");
  MD_EXPECT_ERROR(mdiff::SphereManifold(mdiff::SphereOptions(3).intrinsic_dim(3)), "intrinsic_dim", "got 3");
  MD_EXPECT_ERROR(mdiff::SphereManifold(mdiff::SphereOptions(5).intrinsic_dim(2).embedding(p * 2)), "orthonormal");
  MD_EXPECT_ERROR(unit->project(at::randn({4, 4})), "[4, 4]");
}

TEST(ManifoldSubspace, ExactProjectionAndDistance) {
  const at::Tensor p = random_frame(6, 2, 21);
  const at::Tensor o = randn({6}, 22);
  auto m = mdiff::SubspaceManifold::make(mdiff::SubspaceOptions(6, 2).basis(p).offset(o));
  const at::Tensor coords = randn({30, 2}, 23);
  const at::Tensor normal = at::mm(randn({30, 6}, 24), at::eye(6, f64()) - at::mm(p, p.t()));
  const at::Tensor x = o + at::mm(coords, p.t()) + normal;
  EXPECT_TRUE(at::allclose(m->project(x), o + at::mm(coords, p.t()), 1e-10, 1e-10));
  EXPECT_TRUE(at::allclose(m->distance(x), normal.norm(2, 1), 1e-10, 1e-10));
  const mdiff::LocalFrame f = m->local_frame(x);
  EXPECT_TRUE(at::allclose(f.basis, p.expand({30, 6, 2})));
  EXPECT_TRUE(at::allclose(f.nearest_distance, normal.norm(2, 1), 1e-10, 1e-10));
  MD_EXPECT_ERROR(mdiff::SubspaceManifold(mdiff::SubspaceOptions(3, 4)), "intrinsic_dim", "got 4");
  MD_EXPECT_ERROR(mdiff::SubspaceManifold(mdiff::SubspaceOptions(6, 2).offset(at::zeros({5}))), "offset", "[5]");
}

TEST(ManifoldReference, PlaneIsRecoveredExactly) {
  const at::Tensor p = random_frame(8, 2, 25);
  const at::Tensor o = randn({8}, 26);
  const at::Tensor ref = o + at::mm(rand({800, 2}, 27) * 4 - 2, p.t());
  auto m = mdiff::ReferenceManifold::make(ref);  // dim estimated
  EXPECT_EQ(m->intrinsic_dim(), 2);
  EXPECT_EQ(m->ambient_dim(), 8);
  auto truth = mdiff::SubspaceManifold::make(mdiff::SubspaceOptions(8, 2).basis(p).offset(o));
  const at::Tensor x = o + at::mm(rand({40, 2}, 28) * 2 - 1, p.t()) +
                       0.3 * at::mm(randn({40, 8}, 29), at::eye(8, f64()) - at::mm(p, p.t()));
  const at::Tensor proj = m->project(x);
  EXPECT_TRUE(at::allclose(proj, truth->project(x), 1e-8, 1e-8));
  EXPECT_TRUE(at::allclose(m->distance(x), truth->distance(x), 1e-8, 1e-8));
  const mdiff::LocalFrame f = m->local_frame(x);
  ASSERT_EQ(f.basis.sizes(), (at::IntArrayRef{40, 8, 2}));
  EXPECT_TRUE(at::allclose(at::matmul(at::mm(p, p.t()), f.basis), f.basis, 1e-8, 1e-8));
  // Gradients flow through the projection (I - U U^T for the distance), not through the search.
  const at::Tensor xg = x.clone().requires_grad_(true);
  m->distance(xg).sum().backward();
  const at::Tensor residual = x - truth->project(x);
  EXPECT_TRUE(at::allclose(xg.grad(), residual / residual.norm(2, 1, true), 1e-6, 1e-6));
  const at::Tensor nearest = m->nearest(x);
  EXPECT_TRUE(at::allclose((x - nearest).norm(2, 1), f.nearest_distance, 1e-10, 1e-10));
  EXPECT_TRUE(at::allclose(f.nearest_distance, std::get<0>(at::cdist(x, ref).min(1)), 1e-10, 1e-10));
}

TEST(ManifoldReference, SphereIsApproximated) {
  const at::Tensor ref = sphere_points(4000, 2, 30).to(at::kFloat);
  auto m = mdiff::ReferenceManifold::make(ref, mdiff::ReferenceOptions().k(16));
  EXPECT_EQ(m->intrinsic_dim(), 2);
  auto truth = mdiff::SphereManifold::make(mdiff::SphereOptions(3));
  const at::Tensor x = sphere_points(100, 2, 31).to(at::kFloat) * (1 + 0.1 * at::randn({100, 1}));
  const at::Tensor err = (m->project(x) - truth->project(x)).norm(2, 1);
  EXPECT_LT(err.max().item<double>(), 0.02);
  EXPECT_TRUE(at::allclose(m->distance(x), truth->distance(x), 0, 0.02));
  // The estimated tangent plane is nearly orthogonal to the radius.
  const at::Tensor u = m->tangent_basis(x);
  const at::Tensor radial = truth->project(x).unsqueeze(2);
  EXPECT_LT(at::bmm(u.transpose(1, 2), radial).abs().max().item<double>(), 0.05);
  MD_EXPECT_ERROR(mdiff::ReferenceManifold(ref, mdiff::ReferenceOptions().k(16).dim(16)), "dim must be in [1, 3]",
                  "got 16");
  MD_EXPECT_ERROR(mdiff::ReferenceManifold(ref, mdiff::ReferenceOptions().k(5000)), "k must be in [2, 4000]");
  MD_EXPECT_ERROR(m->project(at::randn({3, 4})), "[3, 4]");
}

TEST(ManifoldKnn, CudaMatchesCpu) {
  MD_SKIP_WITHOUT_CUDA();
  const at::Tensor p = randn({3000, 50}, 40).to(at::kFloat);
  const at::Tensor q = randn({200, 50}, 41).to(at::kFloat);
  const auto cpu = mdiff::knn(q, p, 8);
  const auto gpu = mdiff::knn(q.cuda(), p.cuda(), 8, mdiff::KnnOptions().block_entries(1 << 16));
  EXPECT_TRUE(gpu.indices.is_cuda());
  EXPECT_GT((gpu.indices.cpu() == cpu.indices).to(at::kDouble).mean().item<double>(), 0.99);
  EXPECT_TRUE(at::allclose(gpu.distances.cpu(), cpu.distances, 1e-4, 1e-4));
  const auto g = mdiff::knn_graph(p.cuda(), 5);
  EXPECT_GT((g.indices.cpu() == mdiff::knn_graph(p, 5).indices).to(at::kDouble).mean().item<double>(), 0.99);
}

TEST(ManifoldReference, CudaFrameMatchesCpu) {
  MD_SKIP_WITHOUT_CUDA();
  const at::Tensor ref = sphere_points(2000, 2, 42);
  const at::Tensor x = sphere_points(64, 2, 43) * 1.1;
  auto cpu = mdiff::ReferenceManifold::make(ref, mdiff::ReferenceOptions().dim(2));
  auto gpu = mdiff::ReferenceManifold::make(ref.cuda(), mdiff::ReferenceOptions().dim(2));
  const mdiff::LocalFrame fc = cpu->local_frame(x);
  const mdiff::LocalFrame fg = gpu->local_frame(x.cuda());
  EXPECT_TRUE(fg.basis.is_cuda());
  EXPECT_TRUE(at::allclose(fg.origin.cpu(), fc.origin, 1e-9, 1e-9));
  // Bases may differ by a rotation inside the plane: compare the projectors.
  const at::Tensor pc = at::bmm(fc.basis, fc.basis.transpose(1, 2));
  const at::Tensor pg = at::bmm(fg.basis, fg.basis.transpose(1, 2)).cpu();
  EXPECT_TRUE(at::allclose(pg, pc, 1e-8, 1e-8));
  EXPECT_TRUE(at::allclose(gpu->project(x.cuda()).cpu(), cpu->project(x), 1e-8, 1e-8));
  auto sphere = mdiff::SphereManifold::make(mdiff::SphereOptions(3));
  EXPECT_TRUE(at::allclose(sphere->tangent_basis(x.cuda()).cpu(), sphere->tangent_basis(x), 1e-10, 1e-10));
}
