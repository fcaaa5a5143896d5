#pragma once

// Private helpers of the CPU kernels: a branch-free float32 exp that vectorising compilers turn
// into SIMD code, and the attribute that compiles a hot loop for several instruction sets, the
// best one picked when the library loads.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define MD_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define MD_VECTOR_CLONES
#endif

namespace manifold_diffusion {
namespace ops {
namespace detail {

// exp(x) for float32 within 1e-7 relative error on [-87, 88] (Cody-Waite reduction, degree-6
// polynomial); inputs below -87 give exp(-87) ~ 1.6e-38 instead of 0, above 88 exp(88). NaN
// propagates. Branch-free (selects, and rounding by the 1.5 * 2^23 shift instead of floor and
// float-to-int conversion), so loops calling it vectorise.
inline float exp_poly(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float shifted = x * 1.44269504088896341f + 12582912.0f;
  int32_t rounded;
  std::memcpy(&rounded, &shifted, sizeof(rounded));
  const float n = shifted - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // In unsigned arithmetic: for a NaN input `rounded` holds NaN's bits and the signed product would
  // overflow (undefined behaviour; UBSan reports it). The result is NaN either way, through p.
  const uint32_t bits = (static_cast<uint32_t>(rounded) - 0x4B400000u + 127u) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

}  // namespace detail
}  // namespace ops
}  // namespace manifold_diffusion
