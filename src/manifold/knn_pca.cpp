#include <manifold_diffusion/manifold/knn.h>
#include <manifold_diffusion/manifold/pca.h>
#include <manifold_diffusion/ops/knn_topk.h>

#include "common.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace manifold_diffusion {

using manifold_detail::as_points;

namespace {

KnnResult knn_impl(const at::Tensor& queries, const at::Tensor& points, int64_t k, bool exclude_self,
                   const KnnOptions& options) {
  MD_CHECK_VALUE(options.block_entries() >= 1, "knn: block_entries must be >= 1, got ", options.block_entries());
  const at::ScalarType dtype =
      (queries.scalar_type() == at::kDouble || points.scalar_type() == at::kDouble) ? at::kDouble : at::kFloat;
  // Neighbour selection is piecewise constant: no gradient flows through the search.
  const at::Tensor q = queries.detach().to(dtype).contiguous();
  const at::Tensor p = points.detach().to(dtype).contiguous();
  const int64_t nq = q.size(0);
  const int64_t n = p.size(0);
  const int64_t dims = p.size(1);
  const int64_t available = exclude_self ? n - 1 : n;
  const int64_t extra = options.refine() ? std::min<int64_t>(available - k, std::max<int64_t>(4, k / 2)) : 0;
  const int64_t kk = k + extra;
  const int64_t col_block = std::min<int64_t>(n, std::max<int64_t>(kk, std::min<int64_t>(65536, options.block_entries())));
  const int64_t row_block = std::max<int64_t>(1, options.block_entries() / col_block);

  KnnResult out;
  out.distances = at::empty({nq, k}, q.options());
  out.indices = at::empty({nq, k}, q.options().dtype(at::kLong));
  for (int64_t r0 = 0; r0 < nq; r0 += row_block) {
    const int64_t rows = std::min(row_block, nq - r0);
    const at::Tensor qb = q.narrow(0, r0, rows);
    // Candidates from the expanded formula: the fused blocked product + running top-k (the inputs
    // were checked finite by the callers).
    auto search = ops::KnnTopKOptions().block_points(col_block).check_finite(false);
    if (exclude_self) {
      search.exclude(at::arange(r0, r0 + rows, q.options().dtype(at::kLong)));
    }
    const ops::KnnTopK top = ops::knn_sqdist_topk(qb, p, kk, ops::OpBackend::Auto, search);
    const at::Tensor& best_d = top.sqdist;
    const at::Tensor& best_i = top.indices;
    if (!options.refine()) {
      // Already ascending by (distance, index).
      out.distances.narrow(0, r0, rows).copy_(best_d.sqrt());
      out.indices.narrow(0, r0, rows).copy_(best_i);
      continue;
    }
    // Exact distances of the candidates, a few queries at a time to bound the gathered block.
    at::Tensor dist = at::empty_like(best_d);
    const int64_t chunk = std::max<int64_t>(1, options.block_entries() / std::max<int64_t>(kk * dims, 1));
    for (int64_t s = 0; s < rows; s += chunk) {
      const int64_t m = std::min(chunk, rows - s);
      const at::Tensor cand = p.index_select(0, best_i.narrow(0, s, m).reshape({-1})).view({m, kk, dims});
      dist.narrow(0, s, m).copy_((qb.narrow(0, s, m).unsqueeze(1) - cand).pow(2).sum(2).sqrt());
    }
    // Sort by (distance, index): by index first, then a stable sort by distance.
    auto by_index = best_i.sort(1);
    const at::Tensor idx_sorted = std::get<0>(by_index);
    const at::Tensor dist_sorted = dist.gather(1, std::get<1>(by_index));
    auto by_dist = at::sort(dist_sorted, /*stable=*/true, /*dim=*/1, /*descending=*/false);
    out.distances.narrow(0, r0, rows).copy_(std::get<0>(by_dist).narrow(1, 0, k));
    out.indices.narrow(0, r0, rows).copy_(idx_sorted.gather(1, std::get<1>(by_dist)).narrow(1, 0, k));
  }
  return out;
}

// Evenly spaced row indices, at most `max_points` of [0, n).
at::Tensor spread_indices(int64_t n, int64_t max_points, const at::Device& device) {
  if (n <= max_points) {
    return at::arange(n, at::TensorOptions().dtype(at::kLong).device(device));
  }
  return at::linspace(0, static_cast<double>(n - 1), max_points, at::TensorOptions().dtype(at::kDouble))
      .round()
      .to(at::kLong)
      .to(device);
}

void check_dim_options(const IntrinsicDimOptions& o, int64_t n) {
  MD_CHECK_VALUE(o.k() >= 2 && o.k() < n, "intrinsic dimension: k must be in [2, ", n - 1,
                 "] (fewer than the number of points), got ", o.k());
  MD_CHECK_VALUE(o.threshold() > 0.0 && o.threshold() <= 1.0, "intrinsic dimension: threshold must be in (0, 1], got ",
                 o.threshold());
  MD_CHECK_VALUE(o.max_points() >= 1, "intrinsic dimension: max_points must be >= 1, got ", o.max_points());
}

}  // namespace

KnnResult knn(const at::Tensor& queries, const at::Tensor& points, int64_t k, const KnnOptions& options) {
  CheckContext check_context("knn");
  const at::Tensor q = as_points(queries, "queries");
  const at::Tensor p = as_points(points, "points");
  check_dim(queries, "queries", 2);
  check_dim(points, "points", 2);
  check_same_device(q, "queries", p, "points");
  MD_CHECK_VALUE(q.size(1) == p.size(1), "knn: queries and points must have the same dimension D, got shapes ",
                 shape_string(queries), " and ", shape_string(points));
  MD_CHECK_VALUE(k >= 1 && k <= p.size(0), "knn: k must be in [1, ", p.size(0), "] (the number of points), got ", k);
  return knn_impl(q, p, k, /*exclude_self=*/false, options);
}

KnnResult knn_graph(const at::Tensor& points, int64_t k, const KnnOptions& options) {
  CheckContext check_context("knn_graph");
  check_dim(points, "points", 2);
  const at::Tensor p = as_points(points, "points");
  MD_CHECK_VALUE(k >= 1 && k <= p.size(0) - 1, "knn_graph: k must be in [1, ", p.size(0) - 1,
                 "] (fewer than the number of points), got ", k);
  return knn_impl(p, p, k, /*exclude_self=*/true, options);
}

// ---------------------------------------------------------------------------------------------
// PCA

PCA::PCA(PCAOptions options) : options_(options) {
  MD_CHECK_VALUE(options_.n_components() == -1 || options_.n_components() >= 1,
                 "PCA: n_components must be -1 (all) or >= 1, got ", options_.n_components());
}

PCA& PCA::fit(const at::Tensor& x) {
  const at::Tensor flat = as_points(x, "x").to(at::kCPU, at::kDouble).contiguous();
  const int64_t n = flat.size(0);
  const int64_t dims = flat.size(1);
  const int64_t rank = std::min(n, dims);
  const int64_t d = options_.n_components() == -1 ? rank : options_.n_components();
  MD_CHECK_VALUE(d <= rank, "PCA: n_components must be <= min(N, D) = ", rank, " for x of shape ", shape_string(x),
                 ", got ", d);
  const at::Tensor mean = options_.center() ? flat.mean(0) : at::zeros({dims}, flat.options());
  const at::Tensor xc = flat - mean;
  const double denom = static_cast<double>(std::max<int64_t>(n - 1, 1));
  const double total = xc.pow(2).sum().item<double>() / denom;
  at::Tensor comps;
  at::Tensor var;
  if (dims <= n) {
    const manifold_detail::RowMatrix cov = manifold_detail::to_eigen(at::mm(xc.t(), xc) / denom);
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(cov);
    MD_CHECK(es.info() == Eigen::Success, "PCA: the eigen-decomposition did not converge");
    const Eigen::MatrixXd top = es.eigenvectors().rightCols(d).rowwise().reverse();  // [D, d]
    comps = manifold_detail::from_eigen(top.transpose());
    var = manifold_detail::from_eigen(es.eigenvalues().tail(d).reverse().transpose()).view({d});
  } else {
    const manifold_detail::RowMatrix gram = manifold_detail::to_eigen(at::mm(xc, xc.t()) / denom);
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(gram);
    MD_CHECK(es.info() == Eigen::Success, "PCA: the eigen-decomposition did not converge");
    const Eigen::MatrixXd top = es.eigenvectors().rightCols(d).rowwise().reverse();  // [N, d]
    var = manifold_detail::from_eigen(es.eigenvalues().tail(d).reverse().transpose()).view({d});
    // X^T v_j are orthogonal with norms sqrt(lambda_j (N - 1)); QR normalises them and completes
    // directions of zero variance to an orthonormal set.
    comps = std::get<0>(at::linalg_qr(at::mm(xc.t(), manifold_detail::from_eigen(top)), "reduced")).t();
  }
  var = var.clamp_min(0.0);
  // Deterministic signs: the largest-magnitude entry of each component is positive.
  const at::Tensor arg = comps.abs().argmax(1, /*keepdim=*/true);
  comps = comps * comps.gather(1, arg).sign().clamp_min(0).mul(2).sub(1);
  mean_ = mean;
  components_ = comps.contiguous();
  variance_ = var;
  ratio_ = total > 0.0 ? var / total : at::zeros_like(var);
  return *this;
}

at::Tensor PCA::fit_transform(const at::Tensor& x) { return fit(x).transform(x); }

void PCA::check_fitted(const char* what) const {
  MD_CHECK_VALUE(fitted(), "PCA::", what, ": call fit() first");
}

int64_t PCA::n_components() const {
  check_fitted("n_components");
  return components_.size(0);
}
int64_t PCA::n_features() const {
  check_fitted("n_features");
  return components_.size(1);
}
const at::Tensor& PCA::mean() const {
  check_fitted("mean");
  return mean_;
}
const at::Tensor& PCA::components() const {
  check_fitted("components");
  return components_;
}
const at::Tensor& PCA::explained_variance() const {
  check_fitted("explained_variance");
  return variance_;
}
const at::Tensor& PCA::explained_variance_ratio() const {
  check_fitted("explained_variance_ratio");
  return ratio_;
}

at::Tensor PCA::transform(const at::Tensor& x) const {
  check_fitted("transform");
  const at::Tensor flat = as_points(x, "x");
  MD_CHECK_VALUE(flat.size(1) == n_features(), "PCA::transform: x has ", flat.size(1),
                 " features per row (shape ", shape_string(x), "), the fit had ", n_features());
  const auto opts = flat.options();
  return at::mm(flat - mean_.to(opts), components_.to(opts).t());
}

at::Tensor PCA::inverse_transform(const at::Tensor& z) const {
  check_fitted("inverse_transform");
  check_dim(z, "z", 2);
  check_floating(z, "z");
  MD_CHECK_VALUE(z.size(1) == n_components(), "PCA::inverse_transform: z must have ", n_components(),
                 " columns, got shape ", shape_string(z));
  const auto opts = z.options();
  return at::mm(z, components_.to(opts)) + mean_.to(opts);
}

// ---------------------------------------------------------------------------------------------
// Local PCA

LocalPCA local_pca(const at::Tensor& points, const at::Tensor& neighbours, int64_t dim, double ridge) {
  CheckContext check_context("local_pca");
  check_dim(points, "points", 2);
  const at::Tensor p = as_points(points, "points");
  check_dim(neighbours, "neighbours", 2);
  check_non_empty(neighbours, "neighbours");
  check_index_dtype(neighbours, "neighbours");
  check_same_device(p, "points", neighbours, "neighbours");
  check_index_range(neighbours, "neighbours", 0, p.size(0));
  const int64_t m = neighbours.size(0);
  const int64_t k = neighbours.size(1);
  const int64_t dims = p.size(1);
  const int64_t r = std::min(k, dims);
  MD_CHECK_VALUE(dim >= 1 && dim <= r, "local_pca: dim must be in [1, min(k, D)] = [1, ", r, "] for ", k,
                 " neighbours in dimension ", dims, ", got ", dim);
  MD_CHECK_VALUE(std::isfinite(ridge) && ridge >= 0.0, "local_pca: ridge must be finite and >= 0, got ", ridge);

  const auto dopts = p.options().dtype(at::kDouble);
  LocalPCA out;
  out.mean = at::empty({m, dims}, dopts);
  out.basis = at::empty({m, dims, dim}, dopts);
  out.eigenvalues = at::empty({m, r}, dopts);
  const at::Tensor idx = neighbours.to(at::kLong);
  const int64_t block = std::max<int64_t>(1, (int64_t{1} << 22) / std::max<int64_t>(k * dims, 1));
  for (int64_t s = 0; s < m; s += block) {
    const int64_t b = std::min(block, m - s);
    const at::Tensor nb = p.index_select(0, idx.narrow(0, s, b).reshape({-1})).view({b, k, dims}).to(at::kDouble);
    const at::Tensor mean = nb.mean(1);
    const at::Tensor c = nb - mean.unsqueeze(1);  // [b, k, D]
    at::Tensor basis;
    at::Tensor evals;
    if (dims <= k) {
      const at::Tensor cov = at::bmm(c.transpose(1, 2), c) / static_cast<double>(k) +
                             ridge * at::eye(dims, dopts).unsqueeze(0);
      auto eig = at::linalg_eigh(cov, "L");
      evals = std::get<0>(eig).flip({1});
      basis = std::get<1>(eig).flip({2}).narrow(2, 0, dim);
    } else {
      const at::Tensor gram = at::bmm(c, c.transpose(1, 2)) / static_cast<double>(k);  // [b, k, k]
      auto eig = at::linalg_eigh(gram, "L");
      evals = std::get<0>(eig).flip({1}).clamp_min(0.0) + ridge;
      const at::Tensor v = std::get<1>(eig).flip({2}).narrow(2, 0, dim);  // [b, k, d]
      // C^T v_j are orthogonal with norms sqrt(k lambda_j); QR normalises them and completes
      // directions of zero variance to an orthonormal set.
      basis = std::get<0>(at::linalg_qr(at::bmm(c.transpose(1, 2), v), "reduced"));
    }
    out.mean.narrow(0, s, b).copy_(mean);
    out.basis.narrow(0, s, b).copy_(basis);
    out.eigenvalues.narrow(0, s, b).copy_(evals.narrow(1, 0, r));
  }
  const at::ScalarType dtype = p.scalar_type();
  out.mean = out.mean.to(dtype);
  out.basis = out.basis.to(dtype);
  out.eigenvalues = out.eigenvalues.to(dtype);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Intrinsic dimension

IntrinsicDimension intrinsic_dim_local_pca(const at::Tensor& points, const IntrinsicDimOptions& options) {
  check_dim(points, "points", 2);
  const at::Tensor p = as_points(points, "points");
  check_dim_options(options, p.size(0));
  const at::Tensor sel = spread_indices(p.size(0), options.max_points(), p.device());
  const int64_t k = options.k();
  const KnnResult nb = knn(p.index_select(0, sel), p, k);
  const at::Tensor ev = local_pca(p, nb.indices, 1, 0.0).eigenvalues.to(at::kCPU, at::kDouble).clamp_min(0.0);
  const at::Tensor total = ev.sum(1, /*keepdim=*/true);
  const at::Tensor frac = ev.cumsum(1) / total.clamp_min(1e-300);
  // Number of leading eigenvalues needed: count of prefixes still below the threshold, plus one.
  at::Tensor local = (frac < options.threshold() - 1e-12).sum(1).to(at::kDouble) + 1.0;
  local = local.clamp_max(static_cast<double>(ev.size(1)));
  local = at::where(total.squeeze(1) > 0, local, at::zeros_like(local));  // all neighbours equal: 0-dimensional
  IntrinsicDimension out;
  out.local = local;
  out.estimate = local.mean().item<double>();
  return out;
}

IntrinsicDimension intrinsic_dim_mle(const at::Tensor& points, const IntrinsicDimOptions& options) {
  check_dim(points, "points", 2);
  const at::Tensor p = as_points(points, "points");
  check_dim_options(options, p.size(0));
  const at::Tensor sel = spread_indices(p.size(0), options.max_points(), p.device());
  const int64_t k = options.k();
  // k + 1 neighbours: the first is the point itself (or a duplicate, at the same distance 0).
  const at::Tensor t = knn(p.index_select(0, sel), p, k + 1).distances.narrow(1, 1, k).to(at::kCPU, at::kDouble);
  const at::Tensor tk = t.select(1, k - 1).unsqueeze(1);
  const at::Tensor valid = t.select(1, 0) > 0;
  const at::Tensor inv = (tk / t.narrow(1, 0, k - 1).clamp_min(1e-300)).log().sum(1) / static_cast<double>(k - 1);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  IntrinsicDimension out;
  out.local = at::where(valid, 1.0 / inv, at::full_like(inv, nan));
  const int64_t n_valid = valid.sum().item<int64_t>();
  MD_CHECK_VALUE(n_valid > 0, "intrinsic_dim_mle: every examined point has a duplicate (distance 0 to its nearest "
                 "neighbour); remove duplicates first (", p.size(0), " points)");
  const double mean_inv = inv.masked_select(valid).mean().item<double>();
  MD_CHECK_VALUE(mean_inv > 0.0, "intrinsic_dim_mle: all neighbour distances are equal; the estimate is undefined");
  out.estimate = 1.0 / mean_inv;
  return out;
}

}  // namespace manifold_diffusion
