#include "md_build_config.h"

#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/ops/q_sample_with_target.h>

#include "ops/manifold_kernels.h"

#include <ATen/ATen.h>

namespace manifold_diffusion {
namespace ops {
namespace {

NoisedSample q_sample_with_target_reference(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t,
                                            const at::Tensor& signal, const at::Tensor& noise_scale,
                                            TrainingTarget target) {
  std::vector<int64_t> coef_shape(static_cast<size_t>(x0.dim()), 1);
  coef_shape[0] = x0.size(0);
  at::Tensor a = signal.to(at::kDouble);
  at::Tensor b = noise_scale.to(at::kDouble);
  if (t.defined()) {
    const at::Tensor idx = t.to(at::kLong);
    a = a.index_select(0, idx);
    b = b.index_select(0, idx);
  }
  a = a.reshape(coef_shape);
  b = b.reshape(coef_shape);
  const at::Tensor x = x0.to(at::kDouble);
  const at::Tensor e = noise.to(at::kDouble);
  NoisedSample out;
  out.x_t = (a * x + b * e).to(x0.scalar_type());
  switch (target) {
    case TrainingTarget::Epsilon:
      out.target = noise;
      break;
    case TrainingTarget::Sample:
      out.target = x0;
      break;
    case TrainingTarget::VPrediction:
      out.target = (a * e - b * x).to(x0.scalar_type());
      break;
  }
  return out;
}

}  // namespace

NoisedSample q_sample_with_target(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t,
                                  const at::Tensor& signal, const at::Tensor& noise_scale, TrainingTarget target,
                                  OpBackend backend) {
  check_floating(x0, "x0");
  MD_CHECK_VALUE(x0.dim() >= 1, "x0: expected a batch dimension, got a 0-dimensional tensor");
  check_same_shape(x0, "x0", noise, "noise");
  check_same_dtype(x0, "x0", noise, "noise");
  check_same_device(x0, "x0", noise, "noise");
  check_dim(signal, "signal", 1);
  check_floating(signal, "signal");
  check_same_shape(signal, "signal", noise_scale, "noise_scale");
  check_floating(noise_scale, "noise_scale");
  check_same_device(x0, "x0", signal, "signal");
  check_same_device(x0, "x0", noise_scale, "noise_scale");
  if (t.defined()) {
    check_index_dtype(t, "t");
    check_shape(t, "t", {x0.size(0)});
    check_same_device(x0, "x0", t, "t");
    MD_CHECK_VALUE(signal.numel() > 0, "signal: expected a non-empty coefficient table");
    check_index_range(t, "t", 0, signal.numel());
  } else {
    MD_CHECK_VALUE(signal.numel() == x0.size(0), "signal: without t the tables hold one coefficient per sample (",
                   x0.size(0), "), got ", signal.numel(), " entries");
  }

  // The native paths write plain tensors: inputs that need a gradient take the differentiable
  // reference.
  const bool needs_grad = at::GradMode::is_enabled() && (x0.requires_grad() || noise.requires_grad() ||
                                                         signal.requires_grad() || noise_scale.requires_grad());
  if (backend == OpBackend::Reference || needs_grad) {
    return q_sample_with_target_reference(x0, noise, t, signal, noise_scale, target);
  }
  const at::Tensor x0c = x0.contiguous();
  const at::Tensor nc = noise.contiguous();
  const at::Tensor tc = t.defined() ? t.to(at::kLong).contiguous() : at::Tensor();
  const at::Tensor sc = signal.to(at::kDouble).contiguous();
  const at::Tensor nsc = noise_scale.to(at::kDouble).contiguous();
  NoisedSample out;
  out.x_t = at::empty_like(x0c);
  at::Tensor v;
  if (target == TrainingTarget::VPrediction) {
    v = at::empty_like(x0c);
  }
  if (x0.is_cuda()) {
#ifdef MD_WITH_CUDA_KERNELS
    detail::q_sample_target_cuda(x0c, nc, tc, sc, nsc, out.x_t, v);
#else
    MD_CHECK_VALUE(backend != OpBackend::Native, "q_sample_with_target: the native CUDA kernel was requested for ",
                   x0.device(), " but the library was built without CUDA kernels (MD_WITH_CUDA=OFF)");
    return q_sample_with_target_reference(x0, noise, t, signal, noise_scale, target);
#endif
  } else {
    MD_CHECK_VALUE(x0.device().is_cpu(), "q_sample_with_target: unsupported device ", x0.device());
    detail::q_sample_target_cpu(x0c, nc, tc, sc, nsc, out.x_t, v);
  }
  switch (target) {
    case TrainingTarget::Epsilon:
      out.target = noise;
      break;
    case TrainingTarget::Sample:
      out.target = x0;
      break;
    case TrainingTarget::VPrediction:
      out.target = v;
      break;
  }
  return out;
}

}  // namespace ops
}  // namespace manifold_diffusion
