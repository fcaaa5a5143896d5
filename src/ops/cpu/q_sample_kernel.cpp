#include "ops/kernels.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>

namespace manifold_diffusion {
namespace ops {
namespace detail {

void q_sample_cpu(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t, const at::Tensor& signal,
                  const at::Tensor& noise_scale, at::Tensor& out) {
  const int64_t n = x0.size(0);
  const int64_t total = x0.numel();
  if (total == 0) {
    return;
  }
  const int64_t per_sample = total / n;
  const int64_t* tp = t.data_ptr<int64_t>();
  const double* sp = signal.data_ptr<double>();
  const double* np = noise_scale.data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x0.scalar_type(), "q_sample_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x0.data_ptr<scalar_t>();
    const scalar_t* ep = noise.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, total, 32768, [&](int64_t begin, int64_t end) {
      int64_t i = begin;
      while (i < end) {
        const int64_t s = i / per_sample;
        const int64_t stop = std::min(end, (s + 1) * per_sample);
        const opmath_t a = static_cast<opmath_t>(sp[tp[s]]);
        const opmath_t b = static_cast<opmath_t>(np[tp[s]]);
        for (; i < stop; ++i) {
          op[i] = static_cast<scalar_t>(a * static_cast<opmath_t>(xp[i]) + b * static_cast<opmath_t>(ep[i]));
        }
      }
    });
  });
}

}  // namespace detail
}  // namespace ops
}  // namespace manifold_diffusion
