#include "md_build_config.h"

#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/ops/knn_topk.h>

#include "ops/manifold_kernels.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>

namespace manifold_diffusion {
namespace ops {
namespace {

// The whole [M, N] matrix in float64, then two stable sorts: by distance, then excluded entries to
// the back. NaN distances count as +infinity, as in the native paths.
KnnTopK knn_topk_reference(const at::Tensor& queries, const at::Tensor& points, int64_t k, const at::Tensor& exclude) {
  const at::Tensor q = queries.to(at::kDouble);
  const at::Tensor p = points.to(at::kDouble);
  const at::Tensor qn = q.pow(2).sum(1, /*keepdim=*/true);
  const at::Tensor pn = p.pow(2).sum(1).unsqueeze(0);
  const double inf = std::numeric_limits<double>::infinity();
  at::Tensor d2 = (qn + pn - 2 * at::mm(q, p.t())).clamp_min(0);
  d2 = at::where(at::isnan(d2), at::full_like(d2, inf), d2);
  auto by_dist = at::sort(d2, /*stable=*/true, /*dim=*/1, /*descending=*/false);
  at::Tensor order = std::get<1>(by_dist);
  if (exclude.defined()) {
    const at::Tensor excluded = order == exclude.to(at::kLong).unsqueeze(1);
    const at::Tensor back = std::get<1>(at::sort(excluded.to(at::kByte), /*stable=*/true, /*dim=*/1,
                                                 /*descending=*/false));
    order = order.gather(1, back);
  }
  order = order.narrow(1, 0, k);
  KnnTopK out;
  out.sqdist = d2.gather(1, order).to(queries.scalar_type());
  out.indices = order;
  return out;
}

}  // namespace

KnnTopK knn_sqdist_topk(const at::Tensor& queries, const at::Tensor& points, int64_t k, OpBackend backend,
                        const KnnTopKOptions& options) {
  CheckContext check_context("knn_sqdist_topk");
  check_dim(queries, "queries", 2);
  check_dim(points, "points", 2);
  MD_CHECK_TYPE(queries.scalar_type() == at::kFloat || queries.scalar_type() == at::kDouble,
                "knn_sqdist_topk: queries: expected float32 or float64, got ", queries.scalar_type());
  check_same_dtype(queries, "queries", points, "points");
  check_same_device(queries, "queries", points, "points");
  MD_CHECK_VALUE(queries.size(1) == points.size(1),
                 "knn_sqdist_topk: queries and points must have the same dimension D, got shapes ",
                 shape_string(queries), " and ", shape_string(points));
  const int64_t m = queries.size(0);
  const int64_t n = points.size(0);
  const at::Tensor& exclude = options.exclude();
  const int64_t available = exclude.defined() ? n - 1 : n;
  MD_CHECK_VALUE(k >= 1 && k <= available, "knn_sqdist_topk: k must be in [1, ", available, "] (",
                 exclude.defined() ? "the number of points less the excluded one" : "the number of points", "), got ",
                 k);
  MD_CHECK_VALUE(options.block_points() >= 0, "knn_sqdist_topk: block_points must be >= 0 (0 = automatic), got ",
                 options.block_points());
  if (exclude.defined()) {
    check_index_dtype(exclude, "exclude");
    check_shape(exclude, "exclude", {m});
    check_same_device(queries, "queries", exclude, "exclude");
    check_index_range(exclude, "exclude", -1, n);
  }
  if (m == 0) {
    if (options.check_finite()) {
      check_finite(points, "points");
    }
    return {at::empty({0, k}, queries.options()), at::empty({0, k}, queries.options().dtype(at::kLong))};
  }
  bool native = backend != OpBackend::Reference;
#ifndef MD_WITH_CUDA_KERNELS
  MD_CHECK_VALUE(!(queries.is_cuda() && backend == OpBackend::Native),
                 "knn_sqdist_topk: the native CUDA kernel was requested for ", queries.device(),
                 " but the library was built without CUDA kernels (MD_WITH_CUDA=OFF)");
  if (queries.is_cuda()) {
    native = false;
  }
#endif
  if (!native) {
    if (options.check_finite()) {
      check_finite(queries, "queries");
      check_finite(points, "points");
    }
    return knn_topk_reference(queries, points, k, exclude);
  }

  int64_t block = options.block_points();
  if (block == 0) {
    // Distances per block: 2^22 on the CPU (16 MiB in float32), 2^24 on a GPU (64 MiB).
    block = queries.is_cuda() ? std::max<int64_t>(4096, (int64_t{1} << 24) / m)
                              : std::max<int64_t>(1024, (int64_t{1} << 22) / m);
  }
  block = std::min(n, std::max(block, k + 1));
  MD_CHECK_VALUE(queries.is_cuda() || queries.device().is_cpu(), "knn_sqdist_topk: unsupported device ",
                 queries.device());
  const at::Tensor q = queries.contiguous();
  const at::Tensor p = points.contiguous();
  const at::Tensor qn = q.is_cuda() ? q.pow(2).sum(1) : detail::row_sqnorms_cpu(q);
  const at::Tensor pn = p.is_cuda() ? p.pow(2).sum(1) : detail::row_sqnorms_cpu(p);
  if (options.check_finite()) {
    // A non-finite entry makes its row's squared norm non-finite: test the M + N norms (one read of
    // two small vectors) and search the data itself for the message only then. Norms that
    // overflowed from finite data pass the full check, and those distances rank as +infinity.
    if (!(at::isfinite(qn).all() & at::isfinite(pn).all()).item<bool>()) {
      check_finite(queries, "queries");
      check_finite(points, "points");
    }
  }
  const at::Tensor ex = exclude.defined() ? exclude.to(at::kLong).contiguous() : at::Tensor();
  KnnTopK out;
  out.sqdist = at::empty({m, k}, q.options());
  out.indices = at::empty({m, k}, q.options().dtype(at::kLong));
#ifdef MD_WITH_CUDA_KERNELS
  if (q.is_cuda()) {
    detail::knn_topk_cuda(q, p, qn, pn, k, block, ex, out.sqdist, out.indices);
    return out;
  }
#endif
  detail::knn_topk_cpu(q, p, qn, pn, k, block, ex, out.sqdist, out.indices);
  return out;
}

}  // namespace ops
}  // namespace manifold_diffusion
