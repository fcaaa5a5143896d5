#pragma once

// Private declarations of the fused GroupNorm + scale/shift + SiLU kernels behind
// mdiff::ops::group_norm_silu. Inputs arrive validated: x is [N, C, *] and contiguous in its own
// memory format (channels_last says which), weight / bias are [C] or undefined, scale / shift
// [N, C] or undefined, all contiguous, of x's dtype, on x's device; out is shaped and laid out like x.

#include "md_build_config.h"

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace manifold_diffusion {
namespace ops {
namespace detail {

struct GroupNormArgs {
  at::Tensor x, weight, bias, scale, shift;
  int64_t groups = 1;
  double eps = 1e-5;
  bool silu = true;
  bool channels_last = false;
};

void group_norm_silu_cpu(const GroupNormArgs& args, at::Tensor& out);

#ifdef MD_WITH_CUDA_KERNELS
void group_norm_silu_cuda(const GroupNormArgs& args, at::Tensor& out);
#endif

}  // namespace detail
}  // namespace ops
}  // namespace manifold_diffusion
