#include "md_build_config.h"

#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/ops/group_norm.h>

#include "ops/group_norm_kernels.h"

#include <ATen/ATen.h>

#include <cmath>
#include <vector>

namespace manifold_diffusion {
namespace ops {
namespace {

// The ATen composition, in x's dtype (differentiable) or in float64 (the oracle).
at::Tensor group_norm_silu_composite(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                     const at::Tensor& scale, const at::Tensor& shift,
                                     const GroupNormSiLUOptions& o, bool in_double) {
  auto cast = [&](const at::Tensor& t) { return t.defined() && in_double ? t.to(at::kDouble) : t; };
  const at::Tensor xx = cast(x);
  at::Tensor h = at::group_norm(xx, o.num_groups(), cast(weight), cast(bias), o.eps());
  std::vector<int64_t> coef_shape(static_cast<size_t>(x.dim()), 1);
  coef_shape[0] = x.size(0);
  coef_shape[1] = x.size(1);
  if (scale.defined()) {
    h = h * (1 + cast(scale).reshape(coef_shape));
  }
  if (shift.defined()) {
    h = h + cast(shift).reshape(coef_shape);
  }
  if (o.silu()) {
    h = at::silu(h);
  }
  if (in_double) {
    h = h.to(x.scalar_type());
  }
  return x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous()
             ? h.contiguous(at::MemoryFormat::ChannelsLast)
             : h;
}

void check_param(const at::Tensor& p, const char* name, const at::Tensor& x, at::IntArrayRef shape) {
  if (!p.defined()) {
    return;
  }
  check_shape(p, name, shape);
  check_same_dtype(x, "x", p, name);
  check_same_device(x, "x", p, name);
}

bool needs_grad(std::initializer_list<const at::Tensor*> ts) {
  if (!at::GradMode::is_enabled()) {
    return false;
  }
  for (const at::Tensor* t : ts) {
    if (t->defined() && t->requires_grad()) {
      return true;
    }
  }
  return false;
}

}  // namespace

at::Tensor group_norm_silu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                           const at::Tensor& scale, const at::Tensor& shift, const GroupNormSiLUOptions& options,
                           OpBackend backend) {
  CheckContext check_context("group_norm_silu");
  check_floating(x, "x");
  MD_CHECK_VALUE(x.dim() >= 2, "group_norm_silu: x: expected [N, C, *], got shape ", shape_string(x));
  const int64_t n = x.size(0);
  const int64_t c = x.size(1);
  MD_CHECK_VALUE(options.num_groups() >= 1, "group_norm_silu: num_groups must be positive, got ",
                 options.num_groups());
  MD_CHECK_VALUE(c % options.num_groups() == 0, "group_norm_silu: num_groups (", options.num_groups(),
                 ") must divide the channels of x (", c, ", shape ", shape_string(x), ")");
  MD_CHECK_VALUE(std::isfinite(options.eps()) && options.eps() > 0, "group_norm_silu: eps must be positive, got ",
                 options.eps());
  check_param(weight, "weight", x, {c});
  check_param(bias, "bias", x, {c});
  check_param(scale, "scale", x, {n, c});
  check_param(shift, "shift", x, {n, c});

  if (backend == OpBackend::Reference) {
    return group_norm_silu_composite(x, weight, bias, scale, shift, options, /*in_double=*/true);
  }
  if (needs_grad({&x, &weight, &bias, &scale, &shift})) {
    MD_CHECK_VALUE(backend != OpBackend::Native,
                   "group_norm_silu: the native kernel has no backward; run it under at::NoGradGuard or "
                   "c10::InferenceMode, or use OpBackend::Auto (which falls back to the differentiable composition)");
    return group_norm_silu_composite(x, weight, bias, scale, shift, options, /*in_double=*/false);
  }
  detail::GroupNormArgs args;
  args.channels_last = x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
  args.x = args.channels_last ? x : x.contiguous();
  auto prep = [](const at::Tensor& t) { return t.defined() ? t.contiguous() : t; };
  args.weight = prep(weight);
  args.bias = prep(bias);
  args.scale = prep(scale);
  args.shift = prep(shift);
  args.groups = options.num_groups();
  args.eps = options.eps();
  args.silu = options.silu();
  at::Tensor out = at::empty_like(args.x);
  if (x.is_cuda()) {
#ifdef MD_WITH_CUDA_KERNELS
    detail::group_norm_silu_cuda(args, out);
    return out;
#else
    MD_CHECK_VALUE(backend != OpBackend::Native, "group_norm_silu: the native CUDA kernel was requested for ",
                   x.device(), " but the library was built without CUDA kernels (MD_WITH_CUDA=OFF)");
    return group_norm_silu_composite(x, weight, bias, scale, shift, options, /*in_double=*/false);
#endif
  }
  MD_CHECK_VALUE(x.device().is_cpu(), "group_norm_silu: unsupported device ", x.device());
  detail::group_norm_silu_cpu(args, out);
  return out;
}

}  // namespace ops
}  // namespace manifold_diffusion
