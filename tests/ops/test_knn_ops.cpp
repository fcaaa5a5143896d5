#include <manifold_diffusion/ops/knn_topk.h>

#include "test_util.h"

#include <ATen/ATen.h>

#include <limits>

namespace {

using mdiff::ops::knn_sqdist_topk;
using mdiff::ops::KnnTopK;
using mdiff::ops::KnnTopKOptions;
using mdiff::ops::OpBackend;

at::Tensor randn(at::IntArrayRef shape, uint64_t seed, at::ScalarType dt = at::kDouble) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  return at::randn(shape, g, at::TensorOptions().dtype(at::kDouble)).to(dt);
}

// Exact brute force: float64 differences, ties by index (stable sort).
KnnTopK brute(const at::Tensor& q, const at::Tensor& p, int64_t k) {
  const at::Tensor d = (q.to(at::kDouble).unsqueeze(1) - p.to(at::kDouble).unsqueeze(0)).pow(2).sum(2);
  auto s = at::sort(d, /*stable=*/true, /*dim=*/1, /*descending=*/false);
  return {std::get<0>(s).narrow(1, 0, k), std::get<1>(s).narrow(1, 0, k)};
}

// Native and reference agree: same indices, distances to `tol` (relative to the squared norms).
void expect_same(const KnnTopK& got, const KnnTopK& want, double tol, const std::string& what) {
  ASSERT_EQ(got.sqdist.sizes(), want.sqdist.sizes()) << what;
  ASSERT_EQ(got.indices.sizes(), want.indices.sizes()) << what;
  EXPECT_EQ(got.indices.scalar_type(), at::kLong) << what;
  EXPECT_TRUE(at::equal(got.indices, want.indices)) << what << "\n" << got.indices << "\n" << want.indices;
  EXPECT_TRUE(at::allclose(got.sqdist.to(at::kDouble), want.sqdist.to(at::kDouble), tol, tol)) << what;
}

TEST(KnnTopK, NativeMatchesReferenceAcrossShapesAndBlocks) {
  struct Case {
    int64_t m, n, d, k, block;
  };
  const Case cases[] = {{1, 1, 3, 1, 0},     {1, 50, 4, 1, 0},       {7, 50, 4, 50, 0},     {7, 50, 4, 50, 3},
                        {30, 200, 7, 6, 16}, {30, 200, 7, 6, 7},     {65, 300, 5, 10, 0},   {33, 257, 9, 64, 70},
                        {20, 400, 3, 65, 0}, {20, 400, 3, 100, 130}, {3, 1000, 16, 12, 101}};
  for (const auto& c : cases) {
    for (auto dt : {at::kDouble, at::kFloat}) {
      const at::Tensor q = randn({c.m, c.d}, 1 + static_cast<uint64_t>(c.m), dt);
      const at::Tensor p = randn({c.n, c.d}, 2 + static_cast<uint64_t>(c.n), dt);
      const auto opts = KnnTopKOptions().block_points(c.block);
      const KnnTopK ref = knn_sqdist_topk(q, p, c.k, OpBackend::Reference, opts);
      const KnnTopK fast = knn_sqdist_topk(q, p, c.k, OpBackend::Native, opts);
      EXPECT_EQ(fast.sqdist.scalar_type(), dt);
      const std::string what = "m " + std::to_string(c.m) + " n " + std::to_string(c.n) + " k " + std::to_string(c.k) +
                               " block " + std::to_string(c.block) + (dt == at::kFloat ? " float32" : " float64");
      if (dt == at::kDouble) {
        expect_same(fast, ref, 1e-12, what);
        const KnnTopK exact = brute(q, p, c.k);
        EXPECT_TRUE(at::equal(fast.indices, exact.indices)) << what;
      } else {
        // float32 products may reorder float64 near-ties: compare distances, and the indices almost always.
        EXPECT_TRUE(at::allclose(fast.sqdist.to(at::kDouble), ref.sqdist.to(at::kDouble), 1e-4, 1e-4)) << what;
        EXPECT_GT((fast.indices == ref.indices).to(at::kDouble).mean().item<double>(), 0.95) << what;
      }
      // Sorted ascending along each row.
      if (c.k > 1) {
        EXPECT_TRUE((fast.sqdist.narrow(1, 1, c.k - 1) >= fast.sqdist.narrow(1, 0, c.k - 1)).all().item<bool>())
            << what;
      }
    }
  }
}

TEST(KnnTopK, TiesAndDuplicatesTakeTheSmallerIndex) {
  // An integer grid (exact distances, many ties) with duplicated rows: float32 and float64 are exact.
  const at::Tensor grid =
      at::stack(at::meshgrid({at::arange(6, at::kDouble), at::arange(5, at::kDouble)}, "ij"), 2).reshape({-1, 2});
  const at::Tensor p = at::cat({grid, grid.narrow(0, 3, 4), grid.narrow(0, 17, 2)});
  const int64_t n = p.size(0);
  for (auto dt : {at::kDouble, at::kFloat}) {
    for (int64_t k : {int64_t{1}, int64_t{5}, int64_t{12}, n}) {
      for (int64_t block : {int64_t{0}, int64_t{4}, int64_t{9}}) {
        const auto opts = KnnTopKOptions().block_points(block);
        const KnnTopK want = brute(p, p, k);
        const KnnTopK fast = knn_sqdist_topk(p.to(dt), p.to(dt), k, OpBackend::Native, opts);
        const KnnTopK ref = knn_sqdist_topk(p.to(dt), p.to(dt), k, OpBackend::Reference, opts);
        EXPECT_TRUE(at::equal(fast.indices, want.indices)) << "k " << k << " block " << block;
        EXPECT_TRUE(at::equal(ref.indices, want.indices)) << "k " << k;
        EXPECT_TRUE(at::equal(fast.sqdist.to(at::kDouble), want.sqdist)) << "k " << k << " block " << block;
      }
    }
  }
  // Point 3 and its copy 30 both sit at distance 0 from query 3: 3 first.
  const KnnTopK r = knn_sqdist_topk(p, p, 3);
  EXPECT_EQ(r.indices[3][0].item<int64_t>(), 3);
  EXPECT_EQ(r.indices[3][1].item<int64_t>(), 30);
  EXPECT_EQ(r.sqdist[3][1].item<double>(), 0.0);
  // All points equal: every row lists 0, 1, ..., k-1.
  const at::Tensor same = at::ones({40, 3}, at::kFloat);
  const KnnTopK all = knn_sqdist_topk(same, same, 7, OpBackend::Native, KnnTopKOptions().block_points(8));
  EXPECT_TRUE(at::equal(all.indices, at::arange(7, at::kLong).expand({40, 7})));
  EXPECT_TRUE(at::equal(all.sqdist, at::zeros({40, 7})));
}

TEST(KnnTopK, ExcludeLeavesOneIndexOut) {
  const at::Tensor p = randn({120, 5}, 3);
  const at::Tensor self = at::arange(120, at::kLong);
  for (int64_t k : {int64_t{1}, int64_t{8}, int64_t{70}, int64_t{119}}) {
    for (int64_t block : {int64_t{0}, int64_t{13}}) {
      const auto opts = KnnTopKOptions().exclude(self).block_points(block);
      const KnnTopK fast = knn_sqdist_topk(p, p, k, OpBackend::Native, opts);
      const KnnTopK ref = knn_sqdist_topk(p, p, k, OpBackend::Reference, opts);
      expect_same(fast, ref, 1e-12, "exclude k " + std::to_string(k));
      EXPECT_FALSE((fast.indices == self.unsqueeze(1)).any().item<bool>()) << "k " << k;
      // The same as the k + 1 nearest without the first (each point is its own unique nearest).
      const KnnTopK plus = knn_sqdist_topk(p, p, k + 1);
      EXPECT_TRUE(at::equal(fast.indices, plus.indices.narrow(1, 1, k))) << "k " << k;
    }
  }
  // -1 excludes nothing; int32 is accepted.
  const at::Tensor mixed = at::tensor({-1, 1, -1}, at::kInt);
  const KnnTopK r = knn_sqdist_topk(p.narrow(0, 0, 3), p, 2, OpBackend::Native, KnnTopKOptions().exclude(mixed));
  EXPECT_EQ(r.indices[0][0].item<int64_t>(), 0);
  EXPECT_NE(r.indices[1][0].item<int64_t>(), 1);
  EXPECT_EQ(r.indices[2][0].item<int64_t>(), 2);
}

TEST(KnnTopK, NonContiguousInputsAndEmptyQueries) {
  const at::Tensor q = randn({9, 12}, 4).t();                                   // [12, 9]
  const at::Tensor p = randn({40, 18}, 5).narrow(1, 0, 18).slice(1, 0, 18, 2);  // [40, 9] strided
  ASSERT_FALSE(q.is_contiguous());
  ASSERT_FALSE(p.is_contiguous());
  expect_same(knn_sqdist_topk(q, p, 4), knn_sqdist_topk(q, p, 4, OpBackend::Reference), 1e-12, "strided");
  for (auto be : {OpBackend::Native, OpBackend::Reference}) {
    const KnnTopK e = knn_sqdist_topk(at::empty({0, 9}, at::kDouble), p, 3, be);
    EXPECT_EQ(e.sqdist.sizes(), (at::IntArrayRef{0, 3}));
    EXPECT_EQ(e.indices.sizes(), (at::IntArrayRef{0, 3}));
    EXPECT_EQ(e.indices.scalar_type(), at::kLong);
  }
  // D = 0: every distance is 0, indices in order.
  const KnnTopK z = knn_sqdist_topk(at::empty({2, 0}), at::empty({5, 0}), 3);
  EXPECT_TRUE(at::equal(z.indices, at::arange(3, at::kLong).expand({2, 3})));
}

TEST(KnnTopK, NonFiniteInputs) {
  const at::Tensor p = randn({10, 3}, 6);
  at::Tensor bad = p.clone();
  bad[4][1] = std::numeric_limits<double>::quiet_NaN();
  MD_EXPECT_ERROR(knn_sqdist_topk(p, bad, 2), "points", "finite", "flat index 13", "nan");
  MD_EXPECT_ERROR(knn_sqdist_topk(bad, p, 2), "queries", "finite");
  // Unchecked: a NaN distance ranks as +inf, after every finite one.
  const auto opts = KnnTopKOptions().check_finite(false);
  for (auto be : {OpBackend::Native, OpBackend::Reference}) {
    const KnnTopK r = knn_sqdist_topk(p, bad, 10, be, opts);
    EXPECT_TRUE((r.indices.select(1, 9) == 4).all().item<bool>()) << be;
    EXPECT_TRUE(at::isinf(r.sqdist.select(1, 9)).all().item<bool>()) << be;
    EXPECT_TRUE(at::isfinite(r.sqdist.narrow(1, 0, 9)).all().item<bool>()) << be;
  }
}

TEST(KnnTopK, RejectsBadInput) {
  const at::Tensor p = randn({10, 3}, 7);
  MD_EXPECT_ERROR(knn_sqdist_topk(p, p, 0), "k must be in [1, 10]", "got 0");
  MD_EXPECT_ERROR(knn_sqdist_topk(p, p, 11), "k must be in [1, 10]", "got 11");
  MD_EXPECT_ERROR(knn_sqdist_topk(p, p, 10, OpBackend::Auto, KnnTopKOptions().exclude(at::arange(10, at::kLong))),
                  "k must be in [1, 9]", "got 10");
  MD_EXPECT_ERROR(knn_sqdist_topk(p, p, -3), "got -3");
  MD_EXPECT_ERROR(knn_sqdist_topk(randn({4, 2}, 1), p, 2), "same dimension", "[4, 2]", "[10, 3]");
  MD_EXPECT_ERROR(knn_sqdist_topk(p, randn({10}, 1), 2), "points", "2 dimensions", "[10]");
  MD_EXPECT_ERROR(knn_sqdist_topk(randn({2, 2, 3}, 1), p, 2), "queries", "2 dimensions");
  MD_EXPECT_ERROR(knn_sqdist_topk(p, p.to(at::kFloat), 2), "queries", "points", "same dtype");
  MD_EXPECT_ERROR(knn_sqdist_topk(p.to(at::kHalf), p.to(at::kHalf), 2), "queries", "float32 or float64", "Half");
  MD_EXPECT_ERROR(knn_sqdist_topk(p.to(at::kLong), p.to(at::kLong), 2), "queries", "float32 or float64");
  MD_EXPECT_ERROR(knn_sqdist_topk(at::empty({3, 3}, at::kDouble), at::empty({0, 3}, at::kDouble), 1),
                  "k must be in [1, 0]");
  MD_EXPECT_ERROR(knn_sqdist_topk(p, p, 2, OpBackend::Auto, KnnTopKOptions().block_points(-1)), "block_points",
                  "got -1");
  MD_EXPECT_ERROR(knn_sqdist_topk(p, p, 2, OpBackend::Auto, KnnTopKOptions().exclude(at::arange(9, at::kLong))),
                  "exclude", "[10]", "[9]");
  MD_EXPECT_ERROR(knn_sqdist_topk(p, p, 2, OpBackend::Auto, KnnTopKOptions().exclude(at::full({10}, 10, at::kLong))),
                  "exclude", "[-1, 10)", "max 10");
  MD_EXPECT_ERROR(knn_sqdist_topk(p, p, 2, OpBackend::Auto, KnnTopKOptions().exclude(at::zeros({10}))), "exclude",
                  "integer");
  MD_EXPECT_ERROR(knn_sqdist_topk(at::Tensor(), p, 2), "queries", "undefined");
}

TEST(KnnTopK, MatchesCpuReference_CUDA) {
  MD_SKIP_WITHOUT_CUDA();
  const c10::Device dev(c10::kCUDA, 0);
  struct Case {
    int64_t m, n, d, k, block;
  };
  const Case cases[] = {{1, 1, 3, 1, 0},      {5, 50, 4, 50, 0},   {30, 200, 7, 6, 16},    {64, 3000, 20, 10, 0},
                        {33, 257, 9, 64, 70}, {20, 400, 3, 65, 0}, {20, 400, 3, 100, 130}, {130, 2000, 50, 8, 777}};
  for (const auto& c : cases) {
    const at::Tensor q = randn({c.m, c.d}, 10 + static_cast<uint64_t>(c.m));
    const at::Tensor p = randn({c.n, c.d}, 20 + static_cast<uint64_t>(c.n));
    const auto opts = KnnTopKOptions().block_points(c.block);
    const KnnTopK ref = knn_sqdist_topk(q, p, c.k, OpBackend::Reference, opts);
    const KnnTopK gpu = knn_sqdist_topk(q.to(dev), p.to(dev), c.k, OpBackend::Native, opts);
    ASSERT_TRUE(gpu.indices.is_cuda());
    expect_same({gpu.sqdist.cpu(), gpu.indices.cpu()}, ref, 1e-10, "CUDA float64 k " + std::to_string(c.k));
    const KnnTopK gpu32 = knn_sqdist_topk(q.to(dev, at::kFloat), p.to(dev, at::kFloat), c.k, OpBackend::Native, opts);
    EXPECT_TRUE(at::allclose(gpu32.sqdist.cpu().to(at::kDouble), ref.sqdist, 1e-4, 1e-4)) << "k " << c.k;
    EXPECT_GT((gpu32.indices.cpu() == ref.indices).to(at::kDouble).mean().item<double>(), 0.95) << "k " << c.k;
    // Exclusion on the GPU.
    if (c.m <= c.n && c.k < c.n) {
      const at::Tensor self = at::arange(c.m, at::kLong);
      const auto eopts = KnnTopKOptions().block_points(c.block).exclude(self);
      const KnnTopK eref = knn_sqdist_topk(p.narrow(0, 0, c.m), p, c.k, OpBackend::Reference, eopts);
      const KnnTopK egpu = knn_sqdist_topk(p.narrow(0, 0, c.m).to(dev), p.to(dev), c.k, OpBackend::Native,
                                           KnnTopKOptions().block_points(c.block).exclude(self.to(dev)));
      expect_same({egpu.sqdist.cpu(), egpu.indices.cpu()}, eref, 1e-10, "CUDA exclude k " + std::to_string(c.k));
    }
  }
  // Ties on the GPU: the grid with duplicates, exact in float32.
  const at::Tensor grid =
      at::stack(at::meshgrid({at::arange(6, at::kDouble), at::arange(5, at::kDouble)}, "ij"), 2).reshape({-1, 2});
  const at::Tensor p = at::cat({grid, grid.narrow(0, 3, 4), grid.narrow(0, 17, 2)});
  for (int64_t k : {int64_t{1}, int64_t{5}, int64_t{36}}) {
    const KnnTopK want = brute(p, p, k);
    const KnnTopK gpu = knn_sqdist_topk(p.to(dev, at::kFloat), p.to(dev, at::kFloat), k, OpBackend::Native,
                                        KnnTopKOptions().block_points(9));
    EXPECT_TRUE(at::equal(gpu.indices.cpu(), want.indices)) << "k " << k;
  }
  MD_EXPECT_ERROR(knn_sqdist_topk(p.to(dev), p, 2), "queries", "points", "same device");
}

}  // namespace
