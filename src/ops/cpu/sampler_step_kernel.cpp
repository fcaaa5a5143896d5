#include "ops/sampler_step_kernels.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <type_traits>

namespace manifold_diffusion {
namespace ops {
namespace detail {
namespace {

// The inner loops are plain loops over __restrict__ pointers with the optional inputs and the clip
// mode fixed at compile time, which GCC and Clang vectorise for the target (SSE2 on a default
// x86-64 build). at::vec::Vectorized was measured 4x slower here: outside ATen's own
// per-capability kernels (no CPU_CAPABILITY_AVX2 when compiling this file) it is the generic
// array-based fallback, see docs/ops.md.
//
// Elements per block: x0 of a block stays in a stack buffer (or in the x0 output, hot in L1)
// between the prediction and the update, so the data is read once from memory.
constexpr int64_t kBlock = 512;
// Elements per parallel task.
constexpr int64_t kGrain = 32768;

template <typename opmath_t>
struct Coefs {
  opmath_t w, c_x, c_out, k_x, k_x0, k_prev, k_noise;
};

// x0 of n elements into dst: clip(c_x x + c_out guided); `bound` is r or the sample's s.
template <typename scalar_t, typename opmath_t, bool kUncond, X0Clip kClip>
void predict_block(const scalar_t* __restrict__ x, const scalar_t* __restrict__ c, const scalar_t* __restrict__ u,
                   int64_t n, const Coefs<opmath_t>& k, opmath_t bound, opmath_t* __restrict__ dst) {
  const opmath_t w = k.w, c_x = k.c_x, c_out = k.c_out;
  for (int64_t j = 0; j < n; ++j) {
    opmath_t g = static_cast<opmath_t>(c[j]);
    if constexpr (kUncond) {
      const opmath_t uu = static_cast<opmath_t>(u[j]);
      g = uu + w * (g - uu);
    }
    opmath_t v = c_x * static_cast<opmath_t>(x[j]) + c_out * g;
    if constexpr (kClip != X0Clip::None) {
      v = std::min(std::max(v, -bound), bound);
    }
    if constexpr (kClip == X0Clip::Dynamic) {
      v = v / bound;
    }
    dst[j] = v;
  }
}

// x_next of n elements: k_x x + k_x0 x0 (+ k_prev x0_prev) (+ k_noise noise).
template <typename scalar_t, typename opmath_t, bool kPrev, bool kNoise>
void combine_block(const scalar_t* __restrict__ x, const opmath_t* __restrict__ x0, const scalar_t* __restrict__ p,
                   const scalar_t* __restrict__ z, int64_t n, const Coefs<opmath_t>& k, scalar_t* __restrict__ out) {
  const opmath_t k_x = k.k_x, k_x0 = k.k_x0, k_prev = k.k_prev, k_noise = k.k_noise;
  for (int64_t j = 0; j < n; ++j) {
    opmath_t v = k_x * static_cast<opmath_t>(x[j]) + k_x0 * x0[j];
    if constexpr (kPrev) {
      v = v + k_prev * static_cast<opmath_t>(p[j]);
    }
    if constexpr (kNoise) {
      v = v + k_noise * static_cast<opmath_t>(z[j]);
    }
    out[j] = static_cast<scalar_t>(v);
  }
}

template <typename scalar_t, typename opmath_t>
using PredictFn = void (*)(const scalar_t*, const scalar_t*, const scalar_t*, int64_t, const Coefs<opmath_t>&,
                           opmath_t, opmath_t*);
template <typename scalar_t, typename opmath_t>
using CombineFn = void (*)(const scalar_t*, const opmath_t*, const scalar_t*, const scalar_t*, int64_t,
                           const Coefs<opmath_t>&, scalar_t*);

template <typename scalar_t, typename opmath_t, bool kUncond>
PredictFn<scalar_t, opmath_t> pick_predict(X0Clip clip) {
  switch (clip) {
    case X0Clip::Static:
      return &predict_block<scalar_t, opmath_t, kUncond, X0Clip::Static>;
    case X0Clip::Dynamic:
      return &predict_block<scalar_t, opmath_t, kUncond, X0Clip::Dynamic>;
    case X0Clip::None:
      break;
  }
  return &predict_block<scalar_t, opmath_t, kUncond, X0Clip::None>;
}

template <typename scalar_t, typename opmath_t>
CombineFn<scalar_t, opmath_t> pick_combine(bool prev, bool noise) {
  if (prev) {
    return noise ? &combine_block<scalar_t, opmath_t, true, true> : &combine_block<scalar_t, opmath_t, true, false>;
  }
  return noise ? &combine_block<scalar_t, opmath_t, false, true> : &combine_block<scalar_t, opmath_t, false, false>;
}

template <typename scalar_t>
void run_cpu(const SamplerStepTensors& t, StepPhase phase, X0Clip clip, const CoefficientArray& c) {
  using opmath_t = at::opmath_type<scalar_t>;
  constexpr bool kSameType = std::is_same_v<scalar_t, opmath_t>;
  const Coefs<opmath_t> k{static_cast<opmath_t>(c[SamplerStepCoefficients::kW]),
                          static_cast<opmath_t>(c[SamplerStepCoefficients::kCx]),
                          static_cast<opmath_t>(c[SamplerStepCoefficients::kCout]),
                          static_cast<opmath_t>(c[SamplerStepCoefficients::kKx]),
                          static_cast<opmath_t>(c[SamplerStepCoefficients::kKx0]),
                          static_cast<opmath_t>(c[SamplerStepCoefficients::kKprev]),
                          static_cast<opmath_t>(c[SamplerStepCoefficients::kKnoise])};
  const opmath_t r = static_cast<opmath_t>(c[SamplerStepCoefficients::kR]);
  const bool predicts = phase != StepPhase::Combine;
  const bool updates = phase != StepPhase::Predict;

  const int64_t total = t.x.numel();
  const int64_t per_sample = total / t.x.size(0);
  const scalar_t* xp = t.x.data_ptr<scalar_t>();
  const scalar_t* cp = predicts ? t.cond.data_ptr<scalar_t>() : nullptr;
  const scalar_t* up = predicts && t.uncond.defined() ? t.uncond.data_ptr<scalar_t>() : nullptr;
  const scalar_t* pp = updates && t.x0_prev.defined() ? t.x0_prev.data_ptr<scalar_t>() : nullptr;
  const scalar_t* zp = updates && t.noise.defined() ? t.noise.data_ptr<scalar_t>() : nullptr;
  scalar_t* x0p = t.x0.data_ptr<scalar_t>();  // output (Full, Predict) or input (Combine)
  scalar_t* xnp = updates ? t.x_next.data_ptr<scalar_t>() : nullptr;
  const double* sp = clip == X0Clip::Dynamic ? t.s.data_ptr<double>() : nullptr;

  const PredictFn<scalar_t, opmath_t> predict =
      up != nullptr ? pick_predict<scalar_t, opmath_t, true>(clip) : pick_predict<scalar_t, opmath_t, false>(clip);
  const CombineFn<scalar_t, opmath_t> update = pick_combine<scalar_t, opmath_t>(pp != nullptr, zp != nullptr);

  at::parallel_for(0, total, kGrain, [&](int64_t begin, int64_t end) {
    opmath_t buf[kBlock];
    int64_t i = begin;
    while (i < end) {
      int64_t stop = std::min(end, i + kBlock);
      opmath_t bound = r;
      if (sp != nullptr) {
        const int64_t sample = i / per_sample;
        stop = std::min(stop, (sample + 1) * per_sample);
        bound = static_cast<opmath_t>(sp[sample]);
      }
      const int64_t n = stop - i;
      const opmath_t* x0_block = nullptr;
      if (predicts) {
        // float and double write x0 straight into the output; reduced types keep it in opmath.
        opmath_t* dst = buf;
        if constexpr (kSameType) {
          dst = x0p + i;
        }
        predict(xp + i, cp + i, up != nullptr ? up + i : nullptr, n, k, bound, dst);
        if constexpr (!kSameType) {
          for (int64_t j = 0; j < n; ++j) {
            x0p[i + j] = static_cast<scalar_t>(buf[j]);
          }
        }
        x0_block = dst;
      } else {
        if constexpr (kSameType) {
          x0_block = x0p + i;
        } else {
          for (int64_t j = 0; j < n; ++j) {
            buf[j] = static_cast<opmath_t>(x0p[i + j]);
          }
          x0_block = buf;
        }
      }
      if (updates) {
        update(xp + i, x0_block, pp != nullptr ? pp + i : nullptr, zp != nullptr ? zp + i : nullptr, n, k, xnp + i);
      }
      i = stop;
    }
  });
}

}  // namespace

void sampler_step_cpu(const SamplerStepTensors& t, StepPhase phase, X0Clip clip, const CoefficientArray& coef) {
  if (t.x.numel() == 0) {
    return;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.x.scalar_type(), "sampler_step_cpu",
                                  [&] { run_cpu<scalar_t>(t, phase, clip, coef); });
}

}  // namespace detail
}  // namespace ops
}  // namespace manifold_diffusion
