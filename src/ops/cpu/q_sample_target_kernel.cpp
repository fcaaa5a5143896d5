#include "ops/manifold_kernels.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>

namespace manifold_diffusion {
namespace ops {
namespace detail {

void q_sample_target_cpu(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t, const at::Tensor& signal,
                         const at::Tensor& noise_scale, at::Tensor& x_t, at::Tensor& v) {
  const int64_t total = x0.numel();
  if (total == 0) {
    return;
  }
  const int64_t per_sample = total / x0.size(0);
  const int64_t* tp = t.defined() ? t.data_ptr<int64_t>() : nullptr;
  const double* sp = signal.data_ptr<double>();
  const double* np = noise_scale.data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x0.scalar_type(), "q_sample_target_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x0.data_ptr<scalar_t>();
    const scalar_t* ep = noise.data_ptr<scalar_t>();
    scalar_t* op = x_t.data_ptr<scalar_t>();
    scalar_t* vp = v.defined() ? v.data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, total, 32768, [&](int64_t begin, int64_t end) {
      int64_t i = begin;
      while (i < end) {
        const int64_t s = i / per_sample;
        const int64_t stop = std::min(end, (s + 1) * per_sample);
        const int64_t row = tp != nullptr ? tp[s] : s;
        const opmath_t a = static_cast<opmath_t>(sp[row]);
        const opmath_t b = static_cast<opmath_t>(np[row]);
        if (vp != nullptr) {
          for (; i < stop; ++i) {
            const opmath_t x = static_cast<opmath_t>(xp[i]);
            const opmath_t e = static_cast<opmath_t>(ep[i]);
            op[i] = static_cast<scalar_t>(a * x + b * e);
            vp[i] = static_cast<scalar_t>(a * e - b * x);
          }
        } else {
          for (; i < stop; ++i) {
            op[i] = static_cast<scalar_t>(a * static_cast<opmath_t>(xp[i]) + b * static_cast<opmath_t>(ep[i]));
          }
        }
      }
    });
  });
}

}  // namespace detail
}  // namespace ops
}  // namespace manifold_diffusion
