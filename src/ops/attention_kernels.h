#pragma once

// Private declaration of the CPU attention kernel behind mdiff::ops::attention. Inputs arrive
// validated as 4-D [B1, B2, rows, width] tensors of one dtype with unit stride in the last
// dimension (any strides in the others): q [B1, B2, L, d], k [B1, B2, S, d], v [B1, B2, S, e],
// out [B1, B2, L, e].

#include <ATen/core/Tensor.h>

namespace manifold_diffusion {
namespace ops {
namespace detail {

void attention_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale, at::Tensor& out);

}  // namespace detail
}  // namespace ops
}  // namespace manifold_diffusion
