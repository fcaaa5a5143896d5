// Embeddings: PCA, Isomap, spectral / diffusion maps, t-SNE, and their out-of-sample rules.

#include <manifold_diffusion/manifold/embedding.h>
#include <manifold_diffusion/manifold/knn.h>

#include "test_util.h"

#include <ATen/ATen.h>

#include <cmath>

namespace mdiff = manifold_diffusion;

namespace {

at::TensorOptions f64() { return at::TensorOptions().dtype(at::kDouble); }

at::Tensor randn(at::IntArrayRef shape, uint64_t seed) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  return at::randn(shape, g, f64());
}

at::Tensor rand(at::IntArrayRef shape, uint64_t seed) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  return at::rand(shape, g, f64());
}

// A strip bent into a half cylinder in R^3: (cos(pi u), sin(pi u), v); geodesic coordinates (pi u, v).
struct Strip {
  at::Tensor x;
  at::Tensor geo;
};
Strip half_cylinder(int64_t n, uint64_t seed) {
  const at::Tensor uv = rand({n, 2}, seed);
  const at::Tensor a = M_PI * uv.select(1, 0);
  return {at::stack({a.cos(), a.sin(), 2.0 * uv.select(1, 1)}, 1), at::stack({a, 2.0 * uv.select(1, 1)}, 1)};
}

// Relative Frobenius error between the pairwise distances of a and b.
double distance_error(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor da = at::cdist(a, a);
  const at::Tensor db = at::cdist(b, b);
  return ((da - db).norm() / db.norm()).item<double>();
}

double spearman(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor ra = a.argsort().argsort().to(at::kDouble);
  const at::Tensor rb = b.argsort().argsort().to(at::kDouble);
  const at::Tensor ca = ra - ra.mean();
  const at::Tensor cb = rb - rb.mean();
  return ((ca * cb).sum() / (ca.norm() * cb.norm())).item<double>();
}

// Three Gaussian clusters in R^10 (centres 8 apart), labels 0, 1, 2.
std::pair<at::Tensor, at::Tensor> clusters(int64_t per, uint64_t seed) {
  const at::Tensor centres = randn({3, 10}, 99) * 8.0;
  const at::Tensor labels = at::arange(3, at::kLong).repeat_interleave(per);
  return {centres.index_select(0, labels) + randn({3 * per, 10}, seed), labels};
}

// Fraction of points whose nearest other point in y has the same label.
double nn_label_agreement(const at::Tensor& y, const at::Tensor& labels) {
  const at::Tensor nn = mdiff::knn_graph(y.to(at::kDouble), 1).indices.select(1, 0);
  return (labels.index_select(0, nn) == labels).to(at::kDouble).mean().item<double>();
}

}  // namespace

TEST(ManifoldEmbedding, FactoryAndPca) {
  for (const auto& name : mdiff::embedding_names()) {
    EXPECT_EQ(mdiff::make_embedding(name)->name(), name);
  }
  MD_EXPECT_ERROR(mdiff::make_embedding("umap"), "unknown embedding 'umap'", "tsne", "isomap");
  const at::Tensor x = randn({50, 6}, 1).to(at::kFloat);
  auto pca = mdiff::make_embedding("pca", mdiff::EmbeddingOptions().dims(3));
  const at::Tensor y = pca->fit_transform(x);
  EXPECT_EQ(y.sizes(), (at::IntArrayRef{50, 3}));
  EXPECT_EQ(y.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::allclose(pca->transform(x), y, 1e-5, 1e-5));
  MD_EXPECT_ERROR(mdiff::make_embedding("isomap")->transform(x), "fit");
  MD_EXPECT_ERROR(pca->transform(randn({4, 5}, 2)), "6 features", "[4, 5]");
  MD_EXPECT_ERROR(mdiff::make_embedding("tsne", mdiff::EmbeddingOptions().k(60))->fit_transform(x), "k must be <", "60");
  MD_EXPECT_ERROR(mdiff::make_embedding("tsne", mdiff::EmbeddingOptions().perplexity(-1)), "perplexity", "-1");
  MD_EXPECT_ERROR(mdiff::make_embedding("spectral", mdiff::EmbeddingOptions().dims(0)), "dims", "got 0");
  at::Tensor bad = x.clone();
  bad[3][2] = NAN;
  MD_EXPECT_ERROR(mdiff::make_embedding("isomap")->fit_transform(bad), "x");
}

TEST(ManifoldIsomap, UnrollsAHalfCylinder) {
  const Strip s = half_cylinder(600, 3);
  mdiff::Isomap iso(mdiff::EmbeddingOptions().k(10));
  const at::Tensor y = iso.fit_transform(s.x);
  ASSERT_EQ(y.sizes(), (at::IntArrayRef{600, 2}));
  // Pairwise map distances follow the geodesic ones; the chord lengths of R^3 do not.
  // (Graph paths zig-zag, so they overestimate the geodesics by a few per cent.)
  const double iso_error = distance_error(y, s.geo);
  EXPECT_LT(iso_error, 0.07);
  EXPECT_GT(distance_error(s.x, s.geo), 2.0 * iso_error);
  EXPECT_GT(distance_error(mdiff::PcaEmbedding().fit_transform(s.x), s.geo), 2.0 * iso_error);
  // Landmark Isomap (150 landmarks) is nearly as good, and deterministic.
  mdiff::Isomap lm(mdiff::EmbeddingOptions().k(10).landmarks(150).seed(4));
  const at::Tensor yl = lm.fit_transform(s.x);
  EXPECT_EQ(lm.landmark_indices().size(), 150u);
  EXPECT_LT(distance_error(yl, s.geo), 0.08);
  EXPECT_TRUE(at::equal(yl, mdiff::Isomap(mdiff::EmbeddingOptions().k(10).landmarks(150).seed(4)).fit_transform(s.x)));
  // Out of sample: new points of the strip land where their geodesic coordinates say.
  const Strip t = half_cylinder(100, 5);
  const at::Tensor yt = iso.transform(t.x);
  const at::Tensor cross = at::cdist(yt, y);
  const at::Tensor truth = at::cdist(t.geo, s.geo);
  EXPECT_LT(((cross - truth).norm() / truth.norm()).item<double>(), 0.07);
  // Training points transformed again land on their own coordinates (up to the kNN detour).
  EXPECT_LT((iso.transform(s.x) - y).norm(2, 1).max().item<double>(), 1e-6);
}

TEST(ManifoldIsomap, JoinsDisconnectedComponents) {
  // Two far-apart blobs: the kNN graph has two components; the map keeps them apart.
  const at::Tensor x = at::cat({randn({60, 3}, 6), randn({60, 3}, 7) + 50.0});
  const at::Tensor y = mdiff::Isomap(mdiff::EmbeddingOptions().k(5)).fit_transform(x);
  EXPECT_FALSE(at::isnan(y).any().item<bool>());
  const double gap = (y.narrow(0, 0, 60).mean(0) - y.narrow(0, 60, 60).mean(0)).norm().item<double>();
  EXPECT_GT(gap, 30.0);
}

TEST(ManifoldSpectral, DiffusionMapOrdersACurve) {
  // An open arc in R^5: the first diffusion coordinate is monotone along it.
  const int64_t n = 400;
  const at::Tensor t = rand({n}, 8) * 3.0;
  const at::Tensor x = at::stack({t.cos(), t.sin(), 0.3 * t, at::zeros_like(t), at::zeros_like(t)}, 1);
  for (const char* name : {"diffusion_map", "spectral"}) {
    auto dm = mdiff::make_embedding(name, mdiff::EmbeddingOptions().k(10));
    const at::Tensor y = dm->fit_transform(x);
    ASSERT_EQ(y.sizes(), (at::IntArrayRef{n, 2}));
    EXPECT_GT(std::abs(spearman(y.select(1, 0), t)), 0.99) << name;
    // Out of sample (Nyström): new points of the arc keep the order.
    const at::Tensor tn = at::linspace(0.1, 2.9, 50, f64());
    const at::Tensor xn = at::stack({tn.cos(), tn.sin(), 0.3 * tn, at::zeros_like(tn), at::zeros_like(tn)}, 1);
    EXPECT_GT(std::abs(spearman(dm->transform(xn).select(1, 0), tn)), 0.99) << name;
  }
  // Landmark mode (100 of 400 solved densely, the rest by Nyström) keeps the order too.
  mdiff::SpectralEmbedding lm(mdiff::EmbeddingOptions().k(10).landmarks(100), /*diffusion=*/true);
  const at::Tensor yl = lm.fit_transform(x);
  EXPECT_GT(std::abs(spearman(yl.select(1, 0), t)), 0.98);
  EXPECT_EQ(lm.eigenvalues().size(0), 2);
  EXPECT_LE(lm.eigenvalues()[0].item<double>(), 1.0 + 1e-9);
  EXPECT_GE(lm.eigenvalues()[0].item<double>(), lm.eigenvalues()[1].item<double>());
}

TEST(ManifoldSpectral, SeparatesClusters) {
  const auto [x, labels] = clusters(60, 9);
  const at::Tensor y = mdiff::make_embedding("diffusion_map", mdiff::EmbeddingOptions().k(8))->fit_transform(x);
  EXPECT_GT(nn_label_agreement(y, labels), 0.98);
}

TEST(ManifoldTsne, ExactSeparatesClustersDeterministically) {
  const auto [x, labels] = clusters(80, 10);
  const auto opts = mdiff::EmbeddingOptions().perplexity(20).iterations(400).seed(1);
  mdiff::Tsne tsne(opts);
  const at::Tensor y = tsne.fit_transform(x.to(at::kFloat));
  EXPECT_FALSE(tsne.barnes_hut());
  EXPECT_EQ(y.scalar_type(), at::kFloat);
  EXPECT_GT(nn_label_agreement(y, labels), 0.99);
  EXPECT_GT(mdiff::knn_preservation(x, y, 10), 0.3);
  EXPECT_GT(tsne.kl_divergence(), 0.0);
  EXPECT_LT(tsne.kl_divergence(), 2.0);
  EXPECT_TRUE(at::equal(y, mdiff::Tsne(opts).fit_transform(x.to(at::kFloat))));
  // Clusters are far apart relative to their size in the map.
  const at::Tensor c0 = y.narrow(0, 0, 80).to(at::kDouble);
  const at::Tensor c1 = y.narrow(0, 80, 80).to(at::kDouble);
  const double spread = (c0 - c0.mean(0)).norm(2, 1).mean().item<double>();
  EXPECT_GT((c0.mean(0) - c1.mean(0)).norm().item<double>(), 2.0 * spread);
  // New points of a cluster land among that cluster's map points.
  const auto [xn, ln] = clusters(10, 11);
  const at::Tensor yn = tsne.transform(xn.to(at::kFloat)).to(at::kDouble);
  const at::Tensor nearest = mdiff::knn(yn, y.to(at::kDouble), 1).indices.select(1, 0);
  EXPECT_GT((labels.index_select(0, nearest) == ln).to(at::kDouble).mean().item<double>(), 0.95);
}

TEST(ManifoldTsne, BarnesHutMatchesExactQuality) {
  const auto [x, labels] = clusters(150, 12);
  mdiff::Tsne bh(mdiff::EmbeddingOptions().perplexity(30).iterations(300).exact_max(100));
  const at::Tensor y = bh.fit_transform(x);
  EXPECT_TRUE(bh.barnes_hut());
  EXPECT_GT(nn_label_agreement(y, labels), 0.99);
  EXPECT_GT(mdiff::knn_preservation(x, y, 10), 0.3);
  // Random (structureless) data: the neighbourhoods are still largely kept, better than PCA's.
  const at::Tensor r = randn({400, 5}, 13);
  const double tsne_kept =
      mdiff::knn_preservation(r, mdiff::Tsne(mdiff::EmbeddingOptions().iterations(300).exact_max(100)).fit_transform(r), 10);
  const double pca_kept = mdiff::knn_preservation(r, mdiff::PcaEmbedding().fit_transform(r), 10);
  EXPECT_GT(tsne_kept, pca_kept + 0.05) << tsne_kept << " vs " << pca_kept;
}
