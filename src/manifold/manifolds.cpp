#include <manifold_diffusion/manifold/analytic.h>
#include <manifold_diffusion/manifold/pca.h>
#include <manifold_diffusion/manifold/reference.h>
#include <manifold_diffusion/ops/project_local_pca.h>

#include "common.h"

#include <algorithm>
#include <cmath>

namespace manifold_diffusion {
namespace {

// Checks that p [D, c] has orthonormal columns (to 1e-6).
void check_orthonormal(const at::Tensor& p, const char* what) {
  const at::Tensor err = (at::mm(p.t(), p) - at::eye(p.size(1), p.options())).abs();
  const double worst = p.size(1) == 0 ? 0.0 : err.max().item<double>();
  MD_CHECK_VALUE(worst <= 1e-6, what, ": the columns must be orthonormal (P^T P = I); the largest entry of "
                 "|P^T P - I| is ", worst);
}

at::Tensor as_vector(const at::Tensor& t, int64_t dims, const char* what) {
  if (!t.defined()) {
    return at::zeros({dims}, at::TensorOptions().dtype(at::kDouble));
  }
  check_floating(t, what);
  check_finite(t, what);
  MD_CHECK_VALUE(t.numel() == dims, what, " must have D = ", dims, " entries, got shape ", shape_string(t));
  return t.to(at::kCPU, at::kDouble).reshape({dims}).contiguous();
}

at::Tensor as_frame(const at::Tensor& t, int64_t dims, int64_t cols, const char* what) {
  if (!t.defined()) {
    return at::eye(dims, at::TensorOptions().dtype(at::kDouble)).narrow(1, 0, cols).contiguous();
  }
  check_floating(t, what);
  check_finite(t, what);
  MD_CHECK_VALUE(t.dim() == 2 && t.size(0) == dims && t.size(1) == cols, what, " must have shape [", dims, ", ",
                 cols, "], got ", shape_string(t));
  at::Tensor p = t.to(at::kCPU, at::kDouble).contiguous();
  check_orthonormal(p, what);
  return p;
}

// Checks a query batch [N, ...] flattening to D and returns it as [N, D].
at::Tensor flat_query(const at::Tensor& x, int64_t dims, const std::string& name) {
  check_defined(x, "x");
  MD_CHECK_VALUE(x.dim() >= 2 || (x.dim() == 1 && dims == 1), name, ": expected a batch x [N, ...] of points in R^",
                 dims, ", got shape ", shape_string(x));
  check_floating(x, "x");
  const at::Tensor f = x.dim() == 1 ? x.unsqueeze(1) : x.flatten(1);
  MD_CHECK_VALUE(f.size(1) == dims, name, ": x must flatten to [N, ", dims, "], got shape ", shape_string(x));
  return f;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Sphere

SphereManifold::SphereManifold(SphereOptions options) : dims_(options.ambient_dim()) {
  MD_CHECK_VALUE(dims_ >= 2, "SphereOptions: ambient_dim must be >= 2, got ", dims_);
  k_ = options.intrinsic_dim() == -1 ? dims_ - 1 : options.intrinsic_dim();
  MD_CHECK_VALUE(k_ >= 1 && k_ + 1 <= dims_, "SphereOptions: intrinsic_dim must be in [1, ", dims_ - 1,
                 "] (or -1) in R^", dims_, ", got ", options.intrinsic_dim());
  radius_ = options.radius();
  check_positive(radius_, "SphereOptions: radius");
  centre_ = as_vector(options.centre(), dims_, "SphereOptions: centre");
  embedding_ = as_frame(options.embedding(), dims_, k_ + 1, "SphereOptions: embedding");
}

at::Tensor SphereManifold::flat(const at::Tensor& x) const { return flat_query(x, dims_, name()); }

at::Tensor SphereManifold::project(const at::Tensor& x) const {
  const at::Tensor f = flat(x);
  const at::Tensor c = centre_.to(f.options());
  const at::Tensor p = embedding_.to(f.options());
  const at::Tensor a = at::mm(f - c, p);  // [N, k+1]
  const at::Tensor na = a.norm(2, 1, /*keepdim=*/true);
  at::Tensor e1 = at::zeros_like(a);
  e1.select(1, 0).fill_(1.0);
  const at::Tensor u = at::where(na > 0, a / na.clamp_min(1e-300), e1);
  return (c + radius_ * at::mm(u, p.t())).view(x.sizes());
}

at::Tensor SphereManifold::distance(const at::Tensor& x) const {
  const at::Tensor f = flat(x);
  const at::Tensor p = embedding_.to(f.options());
  const at::Tensor y = f - centre_.to(f.options());
  const at::Tensor a = at::mm(y, p);
  const at::Tensor normal = (y - at::mm(a, p.t())).pow(2).sum(1);
  return (normal + (a.norm(2, 1) - radius_).pow(2)).sqrt();
}

at::Tensor SphereManifold::tangent_basis(const at::Tensor& x) const {
  const at::Tensor f = flat(x);
  const at::Tensor p = embedding_.to(f.options());
  const at::Tensor a = at::mm(f - centre_.to(f.options()), p);
  const at::Tensor na = a.norm(2, 1, /*keepdim=*/true);
  at::Tensor e1 = at::zeros_like(a);
  e1.select(1, 0).fill_(1.0);
  const at::Tensor u = at::where(na > 0, a / na.clamp_min(1e-300), e1);
  // Householder reflection H with H e1 = +-u: its columns 2..k+1 are an orthonormal basis of u's complement.
  const at::Tensor sign = at::where(u.select(1, 0) <= 0, at::ones_like(na.squeeze(1)), -at::ones_like(na.squeeze(1)));
  const at::Tensor w = e1 - sign.unsqueeze(1) * u;  // |w|^2 = 2 + 2 |u_1| >= 2
  const at::Tensor w2 = w.pow(2).sum(1).view({-1, 1, 1});
  const int64_t m = k_ + 1;
  const at::Tensor h = at::eye(m, f.options()).unsqueeze(0) - 2.0 * w.unsqueeze(2) * w.unsqueeze(1) / w2;
  return at::matmul(p, h.narrow(2, 1, k_));  // [N, D, k]
}

// ---------------------------------------------------------------------------------------------
// Subspace

SubspaceManifold::SubspaceManifold(SubspaceOptions options)
    : dims_(options.ambient_dim()), d_(options.intrinsic_dim()) {
  MD_CHECK_VALUE(dims_ >= 1, "SubspaceOptions: ambient_dim must be >= 1, got ", dims_);
  MD_CHECK_VALUE(d_ >= 0 && d_ <= dims_, "SubspaceOptions: intrinsic_dim must be in [0, ", dims_, "], got ", d_);
  offset_ = as_vector(options.offset(), dims_, "SubspaceOptions: offset");
  basis_ = as_frame(options.basis(), dims_, d_, "SubspaceOptions: basis");
}

at::Tensor SubspaceManifold::flat(const at::Tensor& x) const { return flat_query(x, dims_, name()); }

at::Tensor SubspaceManifold::project(const at::Tensor& x) const {
  const at::Tensor f = flat(x);
  const at::Tensor o = offset_.to(f.options());
  const at::Tensor p = basis_.to(f.options());
  return (o + at::mm(at::mm(f - o, p), p.t())).view(x.sizes());
}

at::Tensor SubspaceManifold::distance(const at::Tensor& x) const {
  const at::Tensor f = flat(x);
  const at::Tensor p = basis_.to(f.options());
  const at::Tensor y = f - offset_.to(f.options());
  return (y - at::mm(at::mm(y, p), p.t())).norm(2, 1);
}

at::Tensor SubspaceManifold::tangent_basis(const at::Tensor& x) const {
  const at::Tensor f = flat(x);
  return basis_.to(f.options()).unsqueeze(0).expand({f.size(0), dims_, d_}).contiguous();
}

// ---------------------------------------------------------------------------------------------
// Reference

ReferenceManifold::ReferenceManifold(const at::Tensor& points, ReferenceOptions options)
    : options_(std::move(options)) {
  points_ = manifold_detail::as_points(points, "points").contiguous();
  const int64_t n = points_.size(0);
  const int64_t dims = points_.size(1);
  MD_CHECK_VALUE(n >= 2, "ReferenceManifold: needs at least 2 reference points, got shape ", shape_string(points));
  MD_CHECK_VALUE(options_.k() >= 2 && options_.k() <= n, "ReferenceOptions: k must be in [2, ", n,
                 "] (the number of reference points), got ", options_.k());
  MD_CHECK_VALUE(std::isfinite(options_.ridge()) && options_.ridge() >= 0.0,
                 "ReferenceOptions: ridge must be finite and >= 0, got ", options_.ridge());
  const int64_t max_dim = std::min(options_.k() - 1, dims);
  if (options_.dim() == -1) {
    const int64_t k = std::min(options_.k(), n - 1);
    if (k >= 2) {
      const double est = intrinsic_dim_local_pca(
                             points_, IntrinsicDimOptions().k(k).threshold(options_.dim_threshold()).max_points(2000))
                             .estimate;
      dim_ = std::clamp<int64_t>(std::llround(est), 1, max_dim);
    } else {
      dim_ = 1;
    }
  } else {
    MD_CHECK_VALUE(options_.dim() >= 1 && options_.dim() <= max_dim, "ReferenceOptions: dim must be in [1, ",
                   max_dim, "] (min(k - 1, D) with k = ", options_.k(), ", D = ", dims, ") or -1, got ",
                   options_.dim());
    dim_ = options_.dim();
  }
}

at::Tensor ReferenceManifold::flat(const at::Tensor& x) const {
  const at::Tensor f = flat_query(x, points_.size(1), name());
  check_same_device(f, "x", points_, "reference points");
  check_finite(f, "x");
  return f;
}

// Queries are searched in the reference points' dtype, so a float64 query never converts (copies)
// a large float32 reference set.
KnnResult ReferenceManifold::neighbours(const at::Tensor& x, int64_t k) const {
  return knn(flat(x).to(points_.scalar_type()), points_, k);
}

at::Tensor ReferenceManifold::nearest(const at::Tensor& x) const {
  const KnnResult r = neighbours(x, 1);
  return points_.index_select(0, r.indices.select(1, 0)).to(x.scalar_type()).view(x.sizes());
}

LocalFrame ReferenceManifold::local_frame(const at::Tensor& x) const {
  // The frame depends on x only through the choice of neighbours: it carries no gradient.
  const at::Tensor f = flat(x).detach();
  const KnnResult r = knn(f.to(points_.scalar_type()), points_, options_.k());
  const LocalPCA l = local_pca(points_, r.indices, dim_, options_.ridge());
  LocalFrame frame;
  frame.origin = l.mean.to(f.scalar_type());
  frame.basis = l.basis.to(f.scalar_type());
  frame.nearest_distance = r.distances.select(1, 0).to(f.scalar_type());
  return frame;
}

// Each query has its own frame (the local PCA of its neighbours): frame i is applied to row i by
// the fused projection, without the [N, D, d] products of a batched matmul.
ops::LocalPcaProjection ReferenceManifold::project_onto_frames(const at::Tensor& f) const {
  const LocalFrame frame = local_frame(f);
  const at::Tensor own = at::arange(f.size(0), f.options().dtype(at::kLong));
  return ops::project_local_pca_with_residual(f, frame.origin, frame.basis.transpose(1, 2), own);
}

at::Tensor ReferenceManifold::project(const at::Tensor& x) const {
  return project_onto_frames(flat(x)).projected.view(x.sizes());
}

at::Tensor ReferenceManifold::distance(const at::Tensor& x) const { return project_onto_frames(flat(x)).residual_norm; }

at::Tensor ReferenceManifold::tangent_basis(const at::Tensor& x) const { return local_frame(x).basis; }

}  // namespace manifold_diffusion
