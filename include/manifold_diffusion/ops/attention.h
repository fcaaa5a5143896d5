#pragma once

/// \file
/// Fused scaled dot-product attention for inference (no score matrix in memory).

#include <manifold_diffusion/ops/backend.h>

#include <ATen/core/Tensor.h>

namespace manifold_diffusion {
namespace ops {

/// softmax(q k^T / sqrt(d)) v, row by row: `q` [B..., L, d], `k` [B..., S, d], `v` [B..., S, e]
/// (the same leading batch dimensions, e.g. [N, heads]) -> [B..., L, e].
///
/// The CPU path computes one query row at a time against a transposed copy of k held in cache
/// (scores, a max-subtracted softmax and the weighted sum of v in one pass; vectorised float32
/// loops), so memory holds no [B, L, S] score tensor: with many small heads (head width 8, say)
/// the materialised scores are the largest tensors of a UNet and their allocation dominates.
/// CUDA inputs run at::scaled_dot_product_attention where the LibTorch has it (2.x), the
/// composition otherwise. With autograd recording and an input requiring grad, `Auto` runs the
/// differentiable composition and `Native` is an error. `Reference` computes in float64.
/// Dtypes: float32 (fast path), float64, float16, bfloat16 (float accumulation).
///
/// Example:
/// \code
///   at::NoGradGuard no_grad;
///   at::Tensor q = at::randn({64, 8, 196, 8}), k = at::randn({64, 8, 196, 8}), v = at::randn({64, 8, 196, 8});
///   at::Tensor out = mdiff::ops::attention(q, k, v);   // [64, 8, 196, 8]
/// \endcode
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     OpBackend backend = OpBackend::Auto);

}  // namespace ops
}  // namespace manifold_diffusion
