#pragma once

// Private declaration of the CPU attention kernel behind mdiff::ops::attention. Inputs arrive
// validated and contiguous: q [B, L, d], k [B, S, d], v [B, S, e], out [B, L, e], one dtype.

#include <ATen/core/Tensor.h>

namespace manifold_diffusion {
namespace ops {
namespace detail {

void attention_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale, at::Tensor& out);

}  // namespace detail
}  // namespace ops
}  // namespace manifold_diffusion
