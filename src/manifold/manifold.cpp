#include <manifold_diffusion/manifold/manifold.h>

#include <manifold_diffusion/core/check.h>

#include <ATen/ATen.h>

namespace manifold_diffusion {

at::Tensor Manifold::distance(const at::Tensor& x) const {
  MD_CHECK_VALUE(x.dim() >= 1, name(), ": distance expects a batch [N, ...], got shape ", x.sizes());
  return (x - project(x)).flatten(1).norm(2, 1);
}

LocalFrame Manifold::local_frame(const at::Tensor& x) const {
  LocalFrame frame;
  frame.origin = project(x).flatten(1);
  frame.basis = tangent_basis(x);
  frame.nearest_distance = (x.flatten(1) - frame.origin).norm(2, 1);
  return frame;
}

std::pair<at::Tensor, at::Tensor> split_tangent_normal(const at::Tensor& v, const at::Tensor& basis) {
  MD_CHECK_VALUE(v.dim() >= 1 && basis.dim() == 3, "split_tangent_normal: expected v [N, ...] and basis [N, D, d], got ",
                 v.sizes(), " and ", basis.sizes());
  const at::Tensor flat = v.flatten(1);
  MD_CHECK_VALUE(basis.size(0) == flat.size(0) && basis.size(1) == flat.size(1),
                 "split_tangent_normal: basis ", basis.sizes(), " does not match v flattened to ", flat.sizes());
  const at::Tensor b = basis.to(flat.scalar_type());
  const at::Tensor coeff = at::bmm(b.transpose(1, 2), flat.unsqueeze(2));  // [N, d, 1]
  const at::Tensor tangent = at::bmm(b, coeff).squeeze(2);
  return {tangent.view(v.sizes()), (flat - tangent).view(v.sizes())};
}

}  // namespace manifold_diffusion
