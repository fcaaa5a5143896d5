#include "md_build_config.h"

#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/ops/project_local_pca.h>

#include "ops/manifold_kernels.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

namespace manifold_diffusion {
namespace ops {
namespace {

// Gathers the frames and applies them with two batched products, in float64 (differentiable).
LocalPcaProjection project_reference(const at::Tensor& x, const at::Tensor& centers, const at::Tensor& bases,
                                     const at::Tensor& assign) {
  const at::Tensor idx = assign.to(at::kLong);
  const at::Tensor c = centers.to(at::kDouble).index_select(0, idx);  // [B, D]
  const at::Tensor u = bases.to(at::kDouble).index_select(0, idx);    // [B, d, D]
  const at::Tensor y = x.to(at::kDouble) - c;
  const at::Tensor coef = at::bmm(u, y.unsqueeze(2));                // [B, d, 1]
  const at::Tensor t = at::bmm(u.transpose(1, 2), coef).squeeze(2);  // [B, D]
  LocalPcaProjection out;
  out.projected = (c + t).to(x.scalar_type());
  out.residual_norm = (y - t).norm(2, 1).to(x.scalar_type());
  return out;
}

// The native kernel for the input's device; `centers` undefined projects onto the linear span.
void project_native(const at::Tensor& x, const at::Tensor& centers, const at::Tensor& bases, const at::Tensor& assign,
                    at::Tensor& out, at::Tensor& residual) {
#ifdef MD_WITH_CUDA_KERNELS
  if (x.is_cuda()) {
    detail::project_local_pca_cuda(x, centers, bases, assign, out, residual);
    return;
  }
#endif
  MD_INTERNAL_ASSERT(x.device().is_cpu(), "project_local_pca: no native kernel for ", x.device());
  detail::project_local_pca_cpu(x, centers, bases, assign, out, residual);
}

// First-order gradient in x: d projected = U^T U dx, d |r| = (r / |r|) . dx with r = x - projected
// normal to the plane.
class ProjectLocalPcaFunction : public torch::autograd::Function<ProjectLocalPcaFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                                                const at::Tensor& centers, const at::Tensor& bases,
                                                const at::Tensor& assign) {
    at::Tensor out = at::empty_like(x);
    at::Tensor residual = at::empty({x.size(0)}, x.options());
    project_native(x, centers, bases, assign, out, residual);
    ctx->save_for_backward({x, bases, assign, out, residual});
    return {out, residual};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& bases = saved[1];
    const at::Tensor& assign = saved[2];
    at::Tensor grad_x;
    if (grads[0].defined()) {
      const at::Tensor g = grads[0].contiguous();
      grad_x = at::empty_like(g);
      at::Tensor none;
      project_native(g, at::Tensor(), bases, assign, grad_x, none);
    }
    if (grads[1].defined()) {
      const at::Tensor& res = saved[4];
      const at::Tensor scale = at::where(res > 0, grads[1] / res, at::zeros_like(res)).unsqueeze(1);
      const at::Tensor g_res = scale * (x - saved[3]);
      grad_x = grad_x.defined() ? grad_x + g_res : g_res;
    }
    return {grad_x, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

LocalPcaProjection project_checked(const at::Tensor& x, const at::Tensor& centers, const at::Tensor& bases,
                                   const at::Tensor& assign, OpBackend backend, bool with_residual) {
  check_dim(x, "x", 2);
  check_floating(x, "x");
  check_dim(centers, "centers", 2);
  check_dim(bases, "bases", 3);
  check_same_dtype(x, "x", centers, "centers");
  check_same_dtype(x, "x", bases, "bases");
  check_same_device(x, "x", centers, "centers");
  check_same_device(x, "x", bases, "bases");
  check_index_dtype(assign, "assign");
  check_shape(assign, "assign", {x.size(0)});
  check_same_device(x, "x", assign, "assign");
  const int64_t dims = x.size(1);
  const int64_t frames = centers.size(0);
  MD_CHECK_VALUE(centers.size(1) == dims, "centers: expected [K, D] with D = ", dims, " (x is ", shape_string(x),
                 "), got ", shape_string(centers));
  MD_CHECK_VALUE(bases.size(0) == frames && bases.size(2) == dims, "bases: expected [K, d, D] = [", frames, ", d, ",
                 dims, "] (K from centers ", shape_string(centers), "), got ", shape_string(bases));
  check_index_range(assign, "assign", 0, frames);

  const bool any_grad =
      at::GradMode::is_enabled() && (x.requires_grad() || centers.requires_grad() || bases.requires_grad());
  const bool frames_need_grad = any_grad && (centers.requires_grad() || bases.requires_grad());
  bool reference = backend == OpBackend::Reference || frames_need_grad;
  if (!reference && x.is_cuda()) {
#ifdef MD_WITH_CUDA_KERNELS
    const bool fits = bases.size(1) <= detail::kProjectCudaMaxDim;
    MD_CHECK_VALUE(fits || backend != OpBackend::Native,
                   "project_local_pca: the CUDA kernel takes d <= ", detail::kProjectCudaMaxDim, ", got bases ",
                   shape_string(bases));
    reference = !fits;
#else
    MD_CHECK_VALUE(backend != OpBackend::Native, "project_local_pca: the native CUDA kernel was requested for ",
                   x.device(), " but the library was built without CUDA kernels (MD_WITH_CUDA=OFF)");
    reference = true;
#endif
  } else if (!reference) {
    MD_CHECK_VALUE(x.device().is_cpu(), "project_local_pca: unsupported device ", x.device());
  }
  if (reference) {
    return project_reference(x, centers, bases, assign);
  }
  const at::Tensor xc = x.contiguous();
  const at::Tensor cc = centers.contiguous();
  const at::Tensor bc = bases.contiguous();
  const at::Tensor ac = assign.to(at::kLong).contiguous();
  LocalPcaProjection out;
  if (any_grad) {
    const auto outs = ProjectLocalPcaFunction::apply(xc, cc, bc, ac);
    out.projected = outs[0];
    out.residual_norm = outs[1];
    return out;
  }
  out.projected = at::empty_like(xc);
  if (with_residual) {
    out.residual_norm = at::empty({x.size(0)}, x.options());
  }
  project_native(xc, cc, bc, ac, out.projected, out.residual_norm);
  return out;
}

}  // namespace

at::Tensor project_local_pca(const at::Tensor& x, const at::Tensor& centers, const at::Tensor& bases,
                             const at::Tensor& assign, OpBackend backend) {
  CheckContext check_context("project_local_pca");
  return project_checked(x, centers, bases, assign, backend, /*with_residual=*/false).projected;
}

LocalPcaProjection project_local_pca_with_residual(const at::Tensor& x, const at::Tensor& centers,
                                                   const at::Tensor& bases, const at::Tensor& assign,
                                                   OpBackend backend) {
  CheckContext check_context("project_local_pca_with_residual");
  return project_checked(x, centers, bases, assign, backend, /*with_residual=*/true);
}

}  // namespace ops
}  // namespace manifold_diffusion
