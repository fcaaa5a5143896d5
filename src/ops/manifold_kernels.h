#pragma once

// Private declarations of the native kernels behind q_sample_with_target, knn_sqdist_topk and
// project_local_pca. Inputs arrive validated and contiguous, on one device; index tensors as int64,
// coefficient tables as float64.

#include "md_build_config.h"

#include <manifold_diffusion/ops/q_sample_with_target.h>

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace manifold_diffusion {
namespace ops {
namespace detail {

// x_t = a * x0 + b * noise and, for VPrediction, v = a * noise - b * x0 into `v` (undefined
// otherwise). `t` undefined: sample i uses table entry i.
void q_sample_target_cpu(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t, const at::Tensor& signal,
                         const at::Tensor& noise_scale, at::Tensor& x_t, at::Tensor& v);

// Squared Euclidean norm of each row of a contiguous [R, D] float32 / float64 tensor.
at::Tensor row_sqnorms_cpu(const at::Tensor& x);

// The k smallest squared distances per query row, ascending, ties by index, into sqdist [M, k] and
// indices [M, k]. qn [M] and pn [N] are the rows' squared norms. `exclude` is undefined or [M] int64
// (-1 = none). 1 <= k <= N (N - 1 with `exclude`), k + 1 <= block <= N unless block == N.
void knn_topk_cpu(const at::Tensor& queries, const at::Tensor& points, const at::Tensor& qn, const at::Tensor& pn,
                  int64_t k, int64_t block, const at::Tensor& exclude, at::Tensor& sqdist, at::Tensor& indices);

// out = c + U^T U (x - c) per row (c = 0 when `centers` is undefined); `residual` [B], when
// defined, receives |x - c - U^T U (x - c)|.
void project_local_pca_cpu(const at::Tensor& x, const at::Tensor& centers, const at::Tensor& bases,
                           const at::Tensor& assign, at::Tensor& out, at::Tensor& residual);

#ifdef MD_WITH_CUDA_KERNELS
void q_sample_target_cuda(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t, const at::Tensor& signal,
                          const at::Tensor& noise_scale, at::Tensor& x_t, at::Tensor& v);

void knn_topk_cuda(const at::Tensor& queries, const at::Tensor& points, const at::Tensor& qn, const at::Tensor& pn,
                   int64_t k, int64_t block, const at::Tensor& exclude, at::Tensor& sqdist, at::Tensor& indices);

// The largest d the CUDA projection kernel takes (its coefficients live in shared memory).
constexpr int64_t kProjectCudaMaxDim = 4096;

void project_local_pca_cuda(const at::Tensor& x, const at::Tensor& centers, const at::Tensor& bases,
                            const at::Tensor& assign, at::Tensor& out, at::Tensor& residual);
#endif

}  // namespace detail
}  // namespace ops
}  // namespace manifold_diffusion
