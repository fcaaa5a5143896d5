#pragma once
// Helpers shared by the embedding sources.

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace manifold_diffusion {
namespace manifold_detail {

// Flips each column of v [n, c] so that its largest-magnitude entry is positive.
inline at::Tensor fix_column_signs(const at::Tensor& v) {
  if (v.numel() == 0) {
    return v;
  }
  const at::Tensor arg = v.abs().argmax(0, /*keepdim=*/true);
  return v * v.gather(0, arg).sign().clamp_min(0).mul(2).sub(1);
}

// A seeded random subset of `count` indices of [0, n), ascending (Fisher–Yates on the raw 64-bit
// outputs of mt19937_64, so it is the same on every platform).
inline std::vector<int64_t> random_subset(int64_t n, int64_t count, uint64_t seed) {
  std::vector<int64_t> perm(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    perm[static_cast<size_t>(i)] = i;
  }
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t j = i + static_cast<int64_t>(rng() % static_cast<uint64_t>(n - i));
    std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(j)]);
  }
  perm.resize(static_cast<size_t>(count));
  std::sort(perm.begin(), perm.end());
  return perm;
}

inline at::Tensor index_tensor(const std::vector<int64_t>& idx, const at::Device& device) {
  return at::tensor(idx, at::TensorOptions().dtype(at::kLong)).to(device);
}

}  // namespace manifold_detail
}  // namespace manifold_diffusion
