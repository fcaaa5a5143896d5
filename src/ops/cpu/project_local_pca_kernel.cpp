#include "ops/manifold_kernels.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace manifold_diffusion {
namespace ops {
namespace detail {
namespace {

constexpr int64_t kLanes = 8;

// sum_j a[j] * b[j] with kLanes independent partial sums, so the loop vectorises without
// reassociating a single accumulator.
template <typename scalar_t, typename opmath_t>
opmath_t dot(const scalar_t* a, const opmath_t* b, int64_t n) {
  opmath_t acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int64_t l = 0; l < kLanes; ++l) {
      acc[l] += static_cast<opmath_t>(a[j + l]) * b[j + l];
    }
  }
  opmath_t tail = 0;
  for (; j < n; ++j) {
    tail += static_cast<opmath_t>(a[j]) * b[j];
  }
  opmath_t sum = 0;
  for (int64_t l = 0; l < kLanes; ++l) {
    sum += acc[l];
  }
  return sum + tail;
}

template <typename scalar_t>
void project_rows(const at::Tensor& x, const at::Tensor& centers, const at::Tensor& bases, const at::Tensor& assign,
                  at::Tensor& out, at::Tensor& residual) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t rows = x.size(0);
  const int64_t dims = x.size(1);
  const int64_t d = bases.size(1);
  const scalar_t* xp = x.data_ptr<scalar_t>();
  const scalar_t* cp = centers.defined() ? centers.data_ptr<scalar_t>() : nullptr;
  const scalar_t* up = bases.data_ptr<scalar_t>();
  const int64_t* ap = assign.data_ptr<int64_t>();
  scalar_t* op = out.data_ptr<scalar_t>();
  scalar_t* rp = residual.defined() ? residual.data_ptr<scalar_t>() : nullptr;
  const int64_t work = std::max<int64_t>(1, dims * (2 * d + 2));
  const int64_t grain = std::max<int64_t>(1, 32768 / work);
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    std::vector<opmath_t> y(static_cast<size_t>(dims));
    std::vector<opmath_t> t(static_cast<size_t>(dims));
    for (int64_t i = begin; i < end; ++i) {
      const scalar_t* xi = xp + i * dims;
      const scalar_t* ci = cp != nullptr ? cp + ap[i] * dims : nullptr;
      const scalar_t* u = up + ap[i] * d * dims;
      if (ci != nullptr) {
        for (int64_t j = 0; j < dims; ++j) {
          y[j] = static_cast<opmath_t>(xi[j]) - static_cast<opmath_t>(ci[j]);
        }
      } else {
        for (int64_t j = 0; j < dims; ++j) {
          y[j] = static_cast<opmath_t>(xi[j]);
        }
      }
      std::fill(t.begin(), t.end(), opmath_t(0));
      // t = U^T (U y): one dot product and one axpy per basis row.
      for (int64_t r = 0; r < d; ++r) {
        const scalar_t* ur = u + r * dims;
        const opmath_t coef = dot(ur, y.data(), dims);
        for (int64_t j = 0; j < dims; ++j) {
          t[j] += coef * static_cast<opmath_t>(ur[j]);
        }
      }
      scalar_t* oi = op + i * dims;
      if (ci != nullptr) {
        for (int64_t j = 0; j < dims; ++j) {
          oi[j] = static_cast<scalar_t>(static_cast<opmath_t>(ci[j]) + t[j]);
        }
      } else {
        for (int64_t j = 0; j < dims; ++j) {
          oi[j] = static_cast<scalar_t>(t[j]);
        }
      }
      if (rp != nullptr) {
        opmath_t acc[kLanes] = {};
        int64_t j = 0;
        for (; j + kLanes <= dims; j += kLanes) {
          for (int64_t l = 0; l < kLanes; ++l) {
            const opmath_t e = y[j + l] - t[j + l];
            acc[l] += e * e;
          }
        }
        opmath_t sum = 0;
        for (; j < dims; ++j) {
          const opmath_t e = y[j] - t[j];
          sum += e * e;
        }
        for (int64_t l = 0; l < kLanes; ++l) {
          sum += acc[l];
        }
        rp[i] = static_cast<scalar_t>(std::sqrt(sum));
      }
    }
  });
}

}  // namespace

void project_local_pca_cpu(const at::Tensor& x, const at::Tensor& centers, const at::Tensor& bases,
                           const at::Tensor& assign, at::Tensor& out, at::Tensor& residual) {
  if (x.numel() == 0) {
    if (residual.defined()) {
      residual.zero_();
    }
    return;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "project_local_pca_cpu",
                                  [&] { project_rows<scalar_t>(x, centers, bases, assign, out, residual); });
}

}  // namespace detail
}  // namespace ops
}  // namespace manifold_diffusion
