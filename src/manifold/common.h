#pragma once
// Helpers shared by the manifold sources.

#include <manifold_diffusion/core/check.h>

#include <ATen/ATen.h>
#include <Eigen/Dense>

#include <cstdint>

namespace manifold_diffusion {
namespace manifold_detail {

using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Checks a point set [N, ...] (floating, non-empty, finite) and returns it flattened to [N, D].
inline at::Tensor as_points(const at::Tensor& t, const char* name) {
  check_defined(t, name);
  MD_CHECK_VALUE(t.dim() >= 2, name, ": expected points [N, D] (or [N, ...]), got shape ", shape_string(t));
  check_non_empty(t, name);
  check_floating(t, name);
  check_finite(t, name);
  return t.flatten(1);
}

// A float64 CPU tensor [r, c] as an Eigen matrix (copied).
inline RowMatrix to_eigen(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kCPU, at::kDouble).contiguous();
  MD_INTERNAL_ASSERT(c.dim() == 2);
  return Eigen::Map<const RowMatrix>(c.data_ptr<double>(), c.size(0), c.size(1));
}

// An Eigen matrix as a float64 CPU tensor (copied).
template <typename M>
at::Tensor from_eigen(const M& m) {
  RowMatrix r = m;
  at::Tensor t = at::empty({static_cast<int64_t>(r.rows()), static_cast<int64_t>(r.cols())},
                           at::TensorOptions().dtype(at::kDouble));
  if (r.size() > 0) {
    std::copy(r.data(), r.data() + r.size(), t.data_ptr<double>());
  }
  return t;
}

}  // namespace manifold_detail
}  // namespace manifold_diffusion
