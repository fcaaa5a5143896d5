#include "md_build_config.h"

#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/ops/attention.h>

#include "ops/attention_kernels.h"

#include <ATen/ATen.h>
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
  CheckContext check_context("attention");
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
  const int64_t L = q.size(-2), d = q.size(-1), e = v.size(-1);
  // Views [B1, B2, rows, width]: one or two leading dimensions keep their strides (the heads of an
  // attention block are a strided view of its qkv projection); more are flattened.
  const int64_t lead = q.dim() - 2;
  auto as4 = [&](const at::Tensor& t) {
    at::Tensor r = t;
    if (lead == 0) {
      r = r.unsqueeze(0).unsqueeze(0);
    } else if (lead == 1) {
      r = r.unsqueeze(1);
    } else if (lead > 2) {
      r = r.reshape({-1, t.size(lead - 1), t.size(-2), t.size(-1)});
    }
    return r.stride(-1) == 1 ? r : r.contiguous();
  };
  const at::Tensor q4 = as4(q), k4 = as4(k), v4 = as4(v);
  // The output is laid out [B1, L, B2, e] (for an attention block: tokens with the heads side by
  // side, ready for the output projection) and returned as a [B1, B2, L, e] view.
  at::Tensor out = at::empty({q4.size(0), L, q4.size(1), e}, q.options()).permute({0, 2, 1, 3});
  detail::attention_cpu(q4, k4, v4, 1.0 / std::sqrt(static_cast<double>(d)), out);
  std::vector<int64_t> shape(q.sizes().begin(), q.sizes().end());
  shape.back() = e;
  return lead == 2 ? out : out.reshape(shape);
}

}  // namespace ops
}  // namespace manifold_diffusion
