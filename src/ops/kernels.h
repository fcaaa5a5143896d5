#pragma once

// Private declarations of the native kernels behind mdiff::ops. Inputs arrive validated,
// contiguous, on one device, with t as int64 and the tables as float64.

#include "md_build_config.h"

#include <ATen/core/Tensor.h>

namespace manifold_diffusion {
namespace ops {
namespace detail {

void q_sample_cpu(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t, const at::Tensor& signal,
                  const at::Tensor& noise_scale, at::Tensor& out);

#ifdef MD_WITH_CUDA_KERNELS
void q_sample_cuda(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t, const at::Tensor& signal,
                   const at::Tensor& noise_scale, at::Tensor& out);
#endif

}  // namespace detail
}  // namespace ops
}  // namespace manifold_diffusion
