#include "md_build_config.h"

#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/ops/attention.h>

#include "ops/attention_kernels.h"

#include <ATen/ATen.h>
#include <c10/util/accumulate.h>
#include <torch/version.h>

#include <cmath>
#include <vector>

namespace manifold_diffusion {
namespace ops {
namespace {

at::Tensor attention_composite(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  const bool low_precision = q.scalar_type() == at::kHalf || q.scalar_type() == at::kBFloat16;
  const at::Tensor scores = at::matmul(q, k.transpose(-2, -1)) * scale;
  const at::Tensor weights =
      low_precision ? at::softmax(scores, -1, at::kFloat).to(q.scalar_type()) : at::softmax(scores, -1);
  return at::matmul(weights, v);
}

bool needs_grad(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  return at::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
}

}  // namespace

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, OpBackend backend) {
  check_floating(q, "q");
  check_same_dtype(q, "q", k, "k");
  check_same_dtype(q, "q", v, "v");
  check_same_device(q, "q", k, "k");
  check_same_device(q, "q", v, "v");
  MD_CHECK_VALUE(q.dim() >= 2 && k.dim() == q.dim() && v.dim() == q.dim(),
                 "attention: q, k and v must have the same rank >= 2, got shapes ", shape_string(q), ", ",
                 shape_string(k), " and ", shape_string(v));
  MD_CHECK_VALUE(q.sizes().slice(0, q.dim() - 2) == k.sizes().slice(0, k.dim() - 2) &&
                     q.sizes().slice(0, q.dim() - 2) == v.sizes().slice(0, v.dim() - 2),
                 "attention: q, k and v must share their leading (batch) dimensions, got shapes ", shape_string(q),
                 ", ", shape_string(k), " and ", shape_string(v));
  MD_CHECK_VALUE(k.size(-1) == q.size(-1) && v.size(-2) == k.size(-2),
                 "attention: expected q [..., L, d], k [..., S, d] and v [..., S, e], got shapes ", shape_string(q),
                 ", ", shape_string(k), " and ", shape_string(v));
  MD_CHECK_VALUE(q.size(-1) > 0, "attention: the head width d must be positive, got shapes ", shape_string(q));
  MD_CHECK_VALUE(q.size(-2) == 0 || k.size(-2) > 0, "attention: k and v have no positions (S = 0), shapes ",
                 shape_string(k), " and ", shape_string(v));

  if (backend == OpBackend::Reference) {
    return attention_composite(q.to(at::kDouble), k.to(at::kDouble), v.to(at::kDouble)).to(q.scalar_type());
  }
  if (needs_grad(q, k, v)) {
    MD_CHECK_VALUE(backend != OpBackend::Native,
                   "attention: the native kernel has no backward; run it under at::NoGradGuard or "
                   "c10::InferenceMode, or use OpBackend::Auto (which falls back to the differentiable composition)");
    return attention_composite(q, k, v);
  }
  if (q.is_cuda()) {
#if TORCH_VERSION_MAJOR >= 2
    return at::scaled_dot_product_attention(q, k, v);
#else
    return attention_composite(q, k, v);
#endif
  }
  MD_CHECK_VALUE(q.device().is_cpu(), "attention: unsupported device ", q.device());
  const int64_t L = q.size(-2), d = q.size(-1), S = k.size(-2), e = v.size(-1);
  const int64_t batch = c10::multiply_integers(q.sizes().slice(0, q.dim() - 2));
  const at::Tensor qf = q.reshape({batch, L, d}).contiguous();
  const at::Tensor kf = k.reshape({batch, S, d}).contiguous();
  const at::Tensor vf = v.reshape({batch, S, e}).contiguous();
  at::Tensor out = at::empty({batch, L, e}, q.options());
  detail::attention_cpu(qf, kf, vf, 1.0 / std::sqrt(static_cast<double>(d)), out);
  std::vector<int64_t> shape(q.sizes().begin(), q.sizes().end());
  shape.back() = e;
  return out.view(shape);
}

}  // namespace ops
}  // namespace manifold_diffusion
