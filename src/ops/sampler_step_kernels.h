#pragma once

// Private declarations of the native kernels behind mdiff::ops::sampler_step / predict_x0 /
// combine. Inputs arrive validated, on one device, with one dtype and one dense memory layout in
// which each sample occupies a contiguous block of numel / N elements (so the kernels walk flat
// memory and find sample i of flat index j as j / per_sample).

#include "md_build_config.h"

#include <manifold_diffusion/ops/sampler_step.h>

#include <ATen/core/Tensor.h>

#include <array>

namespace manifold_diffusion {
namespace ops {
namespace detail {

// Which part of the step a kernel runs.
enum class StepPhase {
  Full,     // reads x, cond [, uncond, x0_prev, noise]; writes x0 and x_next
  Predict,  // reads x, cond [, uncond]; writes x0
  Combine,  // reads x, x0 [, x0_prev, noise]; writes x_next
};

struct SamplerStepTensors {
  at::Tensor x;
  at::Tensor cond;     // Full and Predict
  at::Tensor uncond;   // optional
  at::Tensor x0_prev;  // optional (Full and Combine)
  at::Tensor noise;    // optional (Full and Combine)
  at::Tensor x0;       // output of Full and Predict, input of Combine
  at::Tensor x_next;   // output of Full and Combine
  at::Tensor s;        // X0Clip::Dynamic: [N] float64, contiguous, positive
};

using CoefficientArray = std::array<double, SamplerStepCoefficients::kSize>;

// `coef` holds the validated coefficients (on the host).
void sampler_step_cpu(const SamplerStepTensors& t, StepPhase phase, X0Clip clip, const CoefficientArray& coef);

#ifdef MD_WITH_CUDA_KERNELS
// The coefficients come from `coef_tensor` ([8] float64 contiguous on the device) when it is
// defined, else from `coef` (passed by value to the kernel).
void sampler_step_cuda(const SamplerStepTensors& t, StepPhase phase, X0Clip clip, const CoefficientArray& coef,
                       const at::Tensor& coef_tensor);

// True while the current CUDA stream of `device` is being captured into a graph (reading device
// memory on the host is then impossible).
bool cuda_stream_capturing(c10::Device device);
#endif

}  // namespace detail
}  // namespace ops
}  // namespace manifold_diffusion
