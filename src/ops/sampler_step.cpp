#include "md_build_config.h"

#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/ops/sampler_step.h>

#include "ops/sampler_step_kernels.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <initializer_list>
#include <string>

namespace manifold_diffusion {
namespace ops {

using detail::CoefficientArray;
using detail::SamplerStepTensors;
using detail::StepPhase;
using C = SamplerStepCoefficients;

namespace {

constexpr const char* kCoefficientNames[C::kSize] = {"w", "c_x", "c_out", "k_x", "k_x0", "k_prev", "k_noise", "r"};

CoefficientArray to_array(const C& c) {
  return {c.w(), c.c_x(), c.c_out(), c.k_x(), c.k_x0(), c.k_prev(), c.k_noise(), c.r()};
}

// `packed`: the values came from a coefficient tensor (messages name the position too).
void check_coefficient_values(const CoefficientArray& c, X0Clip clip, bool packed) {
  for (int64_t i = 0; i < C::kSize; ++i) {
    const double v = c[static_cast<size_t>(i)];
    if (packed) {
      MD_CHECK_VALUE(std::isfinite(v), "coefficients[", i, "] (", kCoefficientNames[i], ") must be finite, got ", v);
    } else {
      MD_CHECK_VALUE(std::isfinite(v), "SamplerStepCoefficients: ", kCoefficientNames[i], " must be finite, got ", v);
    }
  }
  if (clip == X0Clip::Static) {
    MD_CHECK_VALUE(c[C::kR] > 0, packed ? "coefficients[7] (r)" : "SamplerStepCoefficients: r",
                   " must be positive for static clipping, got ", c[C::kR]);
  }
}

bool capturing(const at::Tensor& t) {
#ifdef MD_WITH_CUDA_KERNELS
  return t.is_cuda() && detail::cuda_stream_capturing(t.device());
#else
  (void)t;
  return false;
#endif
}

// An optional input: when defined it must match x in shape, dtype and device.
void check_like_x(const at::Tensor& x, const at::Tensor& t, const char* name) {
  if (!t.defined()) {
    return;
  }
  check_same_shape(x, "x", t, name);
  check_same_dtype(x, "x", t, name);
  check_same_device(x, "x", t, name);
}

void check_threshold(const at::Tensor& x, X0Clip clip, const at::Tensor& s) {
  if (clip != X0Clip::Dynamic) {
    MD_CHECK_VALUE(!s.defined(), "s: a per-sample bound is only used with X0Clip::dynamic, got one with X0Clip::",
                   clip);
    return;
  }
  MD_CHECK_VALUE(s.defined(), "s: X0Clip::dynamic needs the per-sample bound s [", x.size(0),
                 "], got an undefined tensor");
  check_floating(s, "s");
  check_shape(s, "s", {x.size(0)});
  check_same_device(x, "x", s, "s");
  if (s.numel() == 0 || capturing(s)) {
    return;
  }
  check_finite(s, "s");
  const double lo = s.min().item<double>();
  MD_CHECK_VALUE(lo > 0, "s: expected positive per-sample bounds, got min ", lo);
}

// Validates a packed coefficient tensor; returns its values unless they cannot be read (capture).
bool read_coefficient_tensor(const at::Tensor& x, const at::Tensor& coef, X0Clip clip, CoefficientArray& values) {
  check_dtype(coef, "coefficients", at::kDouble);
  check_shape(coef, "coefficients", {C::kSize});
  check_same_device(x, "x", coef, "coefficients");
  if (capturing(coef)) {
    return false;
  }
  const at::Tensor host = coef.to(at::kCPU).contiguous();
  const double* p = host.data_ptr<double>();
  for (int64_t i = 0; i < C::kSize; ++i) {
    values[static_cast<size_t>(i)] = p[i];
  }
  check_coefficient_values(values, clip, /*packed=*/true);
  return true;
}

bool records_autograd(std::initializer_list<const at::Tensor*> tensors) {
  if (!at::GradMode::is_enabled()) {
    return false;
  }
  for (const at::Tensor* t : tensors) {
    if (t->defined() && t->requires_grad()) {
      return true;
    }
  }
  return false;
}

// [N] -> [N, 1, ..., 1] for broadcasting against x.
at::Tensor per_sample(const at::Tensor& v, const at::Tensor& x) {
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[0] = x.size(0);
  return v.reshape(shape);
}

// The float64 reference; `coef` is the [8] float64 coefficient tensor on x's device (its entries
// act as 0-dimensional tensors, so no value is read on the host). Returns float64 results.
at::Tensor reference_x0(const at::Tensor& x, const at::Tensor& cond, const at::Tensor& uncond, const at::Tensor& coef,
                        X0Clip clip, const at::Tensor& s) {
  const at::Tensor xd = x.to(at::kDouble);
  at::Tensor guided = cond.to(at::kDouble);
  if (uncond.defined()) {
    const at::Tensor u = uncond.to(at::kDouble);
    guided = u + coef[C::kW] * (guided - u);
  }
  at::Tensor x0 = coef[C::kCx] * xd + coef[C::kCout] * guided;
  if (clip == X0Clip::Static) {
    const at::Tensor r = coef[C::kR];
    x0 = at::minimum(at::maximum(x0, -r), r);
  } else if (clip == X0Clip::Dynamic) {
    const at::Tensor sd = per_sample(s.to(at::kDouble), x);
    x0 = at::minimum(at::maximum(x0, -sd), sd) / sd;
  }
  return x0;
}

at::Tensor reference_next(const at::Tensor& x, const at::Tensor& x0d, const at::Tensor& x0_prev,
                          const at::Tensor& noise, const at::Tensor& coef) {
  at::Tensor out = coef[C::kKx] * x.to(at::kDouble) + coef[C::kKx0] * x0d;
  if (x0_prev.defined()) {
    out = out + coef[C::kKprev] * x0_prev.to(at::kDouble);
  }
  if (noise.defined()) {
    out = out + coef[C::kKnoise] * noise.to(at::kDouble);
  }
  return out;
}

// True when t is dense with every sample in one contiguous block of numel / N elements.
bool batch_major_dense(const at::Tensor& t) {
  if (!t.is_non_overlapping_and_dense()) {
    return false;
  }
  const int64_t n = t.size(0);
  return n <= 1 || t.stride(0) == t.numel() / n;
}

// `t` in the layout of `like` (a copy only when the strides differ).
at::Tensor in_layout_of(const at::Tensor& t, const at::Tensor& like) {
  if (!t.defined() || t.strides() == like.strides()) {
    return t;
  }
  return at::empty_like(like).copy_(t);
}

struct Request {
  StepPhase phase;
  const at::Tensor& x;
  const at::Tensor& cond;     // Full, Predict
  const at::Tensor& uncond;   // Full, Predict (optional)
  const at::Tensor& x0_prev;  // Full, Combine (optional)
  const at::Tensor& noise;    // Full, Combine (optional)
  const at::Tensor& x0;       // Combine
  X0Clip clip;
  const at::Tensor& s;
  const C* coef_struct;           // one of these two is set
  const at::Tensor* coef_tensor;
  OpBackend backend;
  const char* op;
};

SamplerStepOutput run(const Request& q) {
  const at::Tensor& x = q.x;
  check_floating(x, "x");
  MD_CHECK_VALUE(x.dim() >= 1, "x: expected a batch dimension [N, ...], got a 0-dimensional tensor");
  if (q.phase == StepPhase::Combine) {
    check_defined(q.x0, "x0");
    check_like_x(x, q.x0, "x0");
  } else {
    check_defined(q.cond, "cond_out");
    check_like_x(x, q.cond, "cond_out");
    check_like_x(x, q.uncond, "uncond_out");
  }
  if (q.phase != StepPhase::Predict) {
    check_like_x(x, q.x0_prev, "x0_prev");
    check_like_x(x, q.noise, "noise");
  }
  const X0Clip clip = q.phase == StepPhase::Combine ? X0Clip::None : q.clip;
  check_threshold(x, clip, q.s);

  CoefficientArray values{};
  bool have_values = true;
  if (q.coef_struct != nullptr) {
    values = to_array(*q.coef_struct);
    check_coefficient_values(values, clip, /*packed=*/false);
  } else {
    check_defined(*q.coef_tensor, "coefficients");
    have_values = read_coefficient_tensor(x, *q.coef_tensor, clip, values);
  }

  const bool autograd = records_autograd({&x, &q.cond, &q.uncond, &q.x0_prev, &q.noise, &q.x0, &q.s});
  MD_CHECK_VALUE(!(autograd && q.backend == OpBackend::Native), q.op,
                 ": the native kernels do not record autograd, but an input requires grad; use OpBackend::auto or "
                 "OpBackend::reference, or run under torch::NoGradGuard");
  bool reference = q.backend == OpBackend::Reference || autograd;
  if (!reference && x.is_cuda()) {
#ifndef MD_WITH_CUDA_KERNELS
    MD_CHECK_VALUE(q.backend != OpBackend::Native, q.op, ": the native CUDA kernel was requested for ", x.device(),
                   " but the library was built without CUDA kernels (MD_WITH_CUDA=OFF)");
    reference = true;
#endif
  }
  if (!reference) {
    MD_CHECK_VALUE(x.is_cpu() || x.is_cuda(), q.op, ": no native kernel for device ", x.device(),
                   "; use OpBackend::reference");
  }

  SamplerStepOutput out;
  if (reference) {
    const at::Tensor coef =
        q.coef_struct != nullptr ? q.coef_struct->to_tensor(x.device()) : *q.coef_tensor;
    const at::Tensor x0d =
        q.phase == StepPhase::Combine ? q.x0.to(at::kDouble) : reference_x0(x, q.cond, q.uncond, coef, clip, q.s);
    if (q.phase != StepPhase::Combine) {
      out.x0 = x0d.to(x.scalar_type());
    }
    if (q.phase != StepPhase::Predict) {
      out.x_next = reference_next(x, x0d, q.x0_prev, q.noise, coef).to(x.scalar_type());
    }
    return out;
  }

  // Native: every tensor in one dense, batch-major layout (x's when it has one, else contiguous).
  const at::Tensor xl = batch_major_dense(x) ? x : x.contiguous();
  SamplerStepTensors t;
  t.x = xl;
  if (q.phase == StepPhase::Combine) {
    t.x0 = in_layout_of(q.x0, xl);
  } else {
    t.cond = in_layout_of(q.cond, xl);
    t.uncond = in_layout_of(q.uncond, xl);
    t.x0 = at::empty_like(xl);
  }
  if (q.phase != StepPhase::Predict) {
    t.x0_prev = in_layout_of(q.x0_prev, xl);
    t.noise = in_layout_of(q.noise, xl);
    t.x_next = at::empty_like(xl);
  }
  if (clip == X0Clip::Dynamic) {
    t.s = q.s.to(at::kDouble).contiguous();
  }
  if (x.numel() > 0) {
    if (x.is_cuda()) {
#ifdef MD_WITH_CUDA_KERNELS
      const at::Tensor coef_dev = q.coef_tensor != nullptr ? q.coef_tensor->contiguous() : at::Tensor();
      detail::sampler_step_cuda(t, q.phase, clip, values, coef_dev);
#endif
    } else {
      MD_INTERNAL_ASSERT(have_values, "coefficient values of a CPU tensor are always readable");
      detail::sampler_step_cpu(t, q.phase, clip, values);
    }
  }
  if (q.phase != StepPhase::Combine) {
    out.x0 = t.x0;
  }
  if (q.phase != StepPhase::Predict) {
    out.x_next = t.x_next;
  }
  return out;
}

}  // namespace

at::Tensor SamplerStepCoefficients::to_tensor(c10::Device device) const {
  const CoefficientArray a = to_array(*this);
  at::Tensor host = at::empty({kSize}, at::TensorOptions().dtype(at::kDouble));
  double* p = host.data_ptr<double>();
  for (int64_t i = 0; i < kSize; ++i) {
    p[i] = a[static_cast<size_t>(i)];
  }
  return device.is_cpu() ? host : host.to(device);
}

SamplerStepCoefficients SamplerStepCoefficients::from_tensor(const at::Tensor& coefficients) {
  check_dtype(coefficients, "coefficients", at::kDouble);
  check_shape(coefficients, "coefficients", {kSize});
  const at::Tensor host = coefficients.to(at::kCPU).contiguous();
  const double* p = host.data_ptr<double>();
  return SamplerStepCoefficients()
      .w(p[kW])
      .c_x(p[kCx])
      .c_out(p[kCout])
      .k_x(p[kKx])
      .k_x0(p[kKx0])
      .k_prev(p[kKprev])
      .k_noise(p[kKnoise])
      .r(p[kR]);
}

SamplerStepOutput sampler_step(const at::Tensor& x, const at::Tensor& cond_out, const at::Tensor& uncond_out,
                               const at::Tensor& x0_prev, const at::Tensor& noise,
                               const SamplerStepCoefficients& coefficients, X0Clip clip, const at::Tensor& s,
                               OpBackend backend) {
  const at::Tensor none;
  return run({StepPhase::Full, x, cond_out, uncond_out, x0_prev, noise, none, clip, s, &coefficients, nullptr,
              backend, "sampler_step"});
}

SamplerStepOutput sampler_step(const at::Tensor& x, const at::Tensor& cond_out, const at::Tensor& uncond_out,
                               const at::Tensor& x0_prev, const at::Tensor& noise, const at::Tensor& coefficients,
                               X0Clip clip, const at::Tensor& s, OpBackend backend) {
  const at::Tensor none;
  return run({StepPhase::Full, x, cond_out, uncond_out, x0_prev, noise, none, clip, s, nullptr, &coefficients,
              backend, "sampler_step"});
}

at::Tensor predict_x0(const at::Tensor& x, const at::Tensor& cond_out, const at::Tensor& uncond_out,
                      const SamplerStepCoefficients& coefficients, X0Clip clip, const at::Tensor& s,
                      OpBackend backend) {
  const at::Tensor none;
  return run({StepPhase::Predict, x, cond_out, uncond_out, none, none, none, clip, s, &coefficients, nullptr, backend,
              "predict_x0"})
      .x0;
}

at::Tensor predict_x0(const at::Tensor& x, const at::Tensor& cond_out, const at::Tensor& uncond_out,
                      const at::Tensor& coefficients, X0Clip clip, const at::Tensor& s, OpBackend backend) {
  const at::Tensor none;
  return run({StepPhase::Predict, x, cond_out, uncond_out, none, none, none, clip, s, nullptr, &coefficients, backend,
              "predict_x0"})
      .x0;
}

at::Tensor combine(const at::Tensor& x, const at::Tensor& x0, const at::Tensor& x0_prev, const at::Tensor& noise,
                   const SamplerStepCoefficients& coefficients, OpBackend backend) {
  const at::Tensor none;
  return run({StepPhase::Combine, x, none, none, x0_prev, noise, x0, X0Clip::None, none, &coefficients, nullptr,
              backend, "combine"})
      .x_next;
}

at::Tensor combine(const at::Tensor& x, const at::Tensor& x0, const at::Tensor& x0_prev, const at::Tensor& noise,
                   const at::Tensor& coefficients, OpBackend backend) {
  const at::Tensor none;
  return run({StepPhase::Combine, x, none, none, x0_prev, noise, x0, X0Clip::None, none, nullptr, &coefficients,
              backend, "combine"})
      .x_next;
}

}  // namespace ops
}  // namespace manifold_diffusion
