#include "md_build_config.h"

#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/ops/q_sample.h>

#include "ops/kernels.h"

#include <ATen/ATen.h>

namespace manifold_diffusion {
namespace ops {
namespace {

at::Tensor q_sample_reference(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t,
                              const at::Tensor& signal, const at::Tensor& noise_scale) {
  std::vector<int64_t> coef_shape(static_cast<size_t>(x0.dim()), 1);
  coef_shape[0] = x0.size(0);
  const at::Tensor idx = t.to(at::kLong);
  const at::Tensor a = signal.to(at::kDouble).index_select(0, idx).reshape(coef_shape);
  const at::Tensor b = noise_scale.to(at::kDouble).index_select(0, idx).reshape(coef_shape);
  return (a * x0.to(at::kDouble) + b * noise.to(at::kDouble)).to(x0.scalar_type());
}

}  // namespace

at::Tensor q_sample(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t, const at::Tensor& signal,
                    const at::Tensor& noise_scale, OpBackend backend) {
  CheckContext check_context("q_sample");
  check_floating(x0, "x0");
  MD_CHECK_VALUE(x0.dim() >= 1, "x0: expected a batch dimension, got a 0-dimensional tensor");
  check_same_shape(x0, "x0", noise, "noise");
  check_same_dtype(x0, "x0", noise, "noise");
  check_same_device(x0, "x0", noise, "noise");
  check_index_dtype(t, "t");
  check_shape(t, "t", {x0.size(0)});
  check_same_device(x0, "x0", t, "t");
  check_dim(signal, "signal", 1);
  check_floating(signal, "signal");
  check_same_shape(signal, "signal", noise_scale, "noise_scale");
  check_floating(noise_scale, "noise_scale");
  check_same_device(x0, "x0", signal, "signal");
  check_same_device(x0, "x0", noise_scale, "noise_scale");
  MD_CHECK_VALUE(signal.numel() > 0, "signal: expected a non-empty coefficient table");
  check_index_range(t, "t", 0, signal.numel());

  if (backend == OpBackend::Reference) {
    return q_sample_reference(x0, noise, t, signal, noise_scale);
  }
  const at::Tensor x0c = x0.contiguous();
  const at::Tensor nc = noise.contiguous();
  const at::Tensor tc = t.to(at::kLong).contiguous();
  const at::Tensor sc = signal.to(at::kDouble).contiguous();
  const at::Tensor nsc = noise_scale.to(at::kDouble).contiguous();
  at::Tensor out = at::empty_like(x0c);
  if (x0.is_cuda()) {
#ifdef MD_WITH_CUDA_KERNELS
    detail::q_sample_cuda(x0c, nc, tc, sc, nsc, out);
    return out;
#else
    if (backend == OpBackend::Native) {
      MD_CHECK_VALUE(false, "q_sample: the native CUDA kernel was requested for ", x0.device(),
                     " but the library was built without CUDA kernels (MD_WITH_CUDA=OFF)");
    }
    return q_sample_reference(x0, noise, t, signal, noise_scale);
#endif
  }
  MD_CHECK_VALUE(x0.device().is_cpu(), "q_sample: unsupported device ", x0.device());
  detail::q_sample_cpu(x0c, nc, tc, sc, nsc, out);
  return out;
}

}  // namespace ops
}  // namespace manifold_diffusion
