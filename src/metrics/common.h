#pragma once
// Helpers shared by the metrics sources.

#include <manifold_diffusion/core/check.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <functional>

namespace manifold_diffusion {
namespace metrics {
namespace detail {

// Checks a point set [N, D] and returns it as a contiguous float64 CPU tensor.
inline at::Tensor as_points(const at::Tensor& t, const char* name) {
  check_dim(t, name, 2);
  check_non_empty(t, name);
  check_floating(t, name);
  check_finite(t, name);
  return t.to(at::kCPU, at::kDouble).contiguous();
}

// Both point sets have the same feature dimension.
inline void check_same_features(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name) {
  MD_CHECK_VALUE(a.size(1) == b.size(1), a_name, " and ", b_name,
                 " must have the same feature dimension D, got shapes ", shape_string(a), " and ",
                 shape_string(b));
}

// Squared Euclidean distances between the rows of a [n, D] and b [m, D], clamped at 0.
inline at::Tensor squared_distances(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor an = a.pow(2).sum(1, /*keepdim=*/true);
  const at::Tensor bn = b.pow(2).sum(1).unsqueeze(0);
  return (an + bn - 2.0 * at::mm(a, b.t())).clamp_min(0.0);
}

// Rows per block so that a block of distances to `cols` points holds about 4M entries.
inline int64_t block_rows(int64_t cols) {
  return std::max<int64_t>(1, (int64_t{1} << 22) / std::max<int64_t>(cols, 1));
}

// Calls fn(start, rows) over consecutive row blocks of [0, n).
inline void for_each_block(int64_t n, int64_t cols, const std::function<void(int64_t, int64_t)>& fn) {
  const int64_t step = block_rows(cols);
  for (int64_t start = 0; start < n; start += step) {
    fn(start, std::min(step, n - start));
  }
}

}  // namespace detail
}  // namespace metrics
}  // namespace manifold_diffusion
