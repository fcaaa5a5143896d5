#include "ops/group_norm_kernels.h"
#include "ops/cpu/vec_math.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace manifold_diffusion {
namespace ops {
namespace detail {
namespace {

constexpr int64_t kLanes = 16;

inline float silu_f(float z) {
  return z / (1.0f + exp_poly(-z));
}

// Sum and sum of squared deviations from `shift` of a contiguous span, in kLanes float lanes
// folded into double.
MD_VECTOR_CLONES
void moments_f32(const float* x, int64_t len, float shift, double* sum, double* sq) {
  double s_total = 0, q_total = 0;
  int64_t i = 0;
  constexpr int64_t chunk = 4096;
  while (i < len) {
    const int64_t stop = std::min(len, i + chunk);
    float s[kLanes] = {};
    float q[kLanes] = {};
    for (; i + kLanes <= stop; i += kLanes) {
      for (int64_t j = 0; j < kLanes; ++j) {
        const float d = x[i + j] - shift;
        s[j] += d;
        q[j] += d * d;
      }
    }
    for (; i < stop; ++i) {
      const float d = x[i] - shift;
      s[0] += d;
      q[0] += d * d;
    }
    for (int64_t j = 0; j < kLanes; ++j) {
      s_total += s[j];
      q_total += q[j];
    }
  }
  *sum += s_total;
  *sq += q_total;
}

// Per-channel sums of one NHWC sample: rows of C channels, `rows` of them.
MD_VECTOR_CLONES
void channel_moments_f32(const float* x, int64_t rows, int64_t channels, const float* shift, float* sum, float* sq) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * channels;
    for (int64_t c = 0; c < channels; ++c) {
      const float d = row[c] - shift[c];
      sum[c] += d;
      sq[c] += d * d;
    }
  }
}

MD_VECTOR_CLONES
void affine_f32(const float* x, float* y, int64_t len, float a, float mu, float mu_lo, float b, bool silu) {
  if (silu) {
    for (int64_t i = 0; i < len; ++i) {
      y[i] = silu_f(a * ((x[i] - mu) - mu_lo) + b);
    }
  } else {
    for (int64_t i = 0; i < len; ++i) {
      y[i] = a * ((x[i] - mu) - mu_lo) + b;
    }
  }
}

MD_VECTOR_CLONES
void affine_rows_f32(const float* x, float* y, int64_t rows, int64_t channels, const float* a, const float* mu,
                     const float* mu_lo, const float* b,
                     bool silu) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * channels;
    float* yr = y + r * channels;
    if (silu) {
      for (int64_t c = 0; c < channels; ++c) {
        yr[c] = silu_f(a[c] * ((xr[c] - mu[c]) - mu_lo[c]) + b[c]);
      }
    } else {
      for (int64_t c = 0; c < channels; ++c) {
        yr[c] = a[c] * ((xr[c] - mu[c]) - mu_lo[c]) + b[c];
      }
    }
  }
}

template <typename acc_t>
acc_t silu_generic(acc_t z) {
  return z / (acc_t(1) + std::exp(-z));
}

// Statistics per (sample, group) for any dtype: mean and 1 / sqrt(var + eps), two passes.
template <typename scalar_t, typename acc_t>
void group_stats(const GroupNormArgs& a, int64_t n, int64_t c, int64_t hw, std::vector<double>& mean,
                 std::vector<acc_t>& rstd) {
  const int64_t groups = a.groups;
  const int64_t cg = c / groups;
  const scalar_t* xp = a.x.data_ptr<scalar_t>();
  const double count = static_cast<double>(cg * hw);
  mean.assign(static_cast<size_t>(n * groups), 0.0);
  rstd.assign(static_cast<size_t>(n * groups), acc_t(0));
  if (!a.channels_last) {
    at::parallel_for(0, n * groups, 1, [&](int64_t begin, int64_t end) {
      for (int64_t ng = begin; ng < end; ++ng) {
        const scalar_t* base = xp + ng * cg * hw;
        const int64_t len = cg * hw;
        double sum = 0, sq = 0;
        if constexpr (std::is_same<scalar_t, float>::value) {
          // Shift by the first element: keeps the one-pass variance accurate for offset data.
          const float shift = len > 0 ? base[0] : 0.0f;
          moments_f32(base, len, shift, &sum, &sq);
          const double m = sum / count;
          mean[ng] = shift + m;
          rstd[ng] = static_cast<acc_t>(1.0 / std::sqrt(std::max(sq / count - m * m, 0.0) + a.eps));
        } else {
          for (int64_t i = 0; i < len; ++i) sum += static_cast<double>(base[i]);
          const double m = sum / count;
          for (int64_t i = 0; i < len; ++i) {
            const double d = static_cast<double>(base[i]) - m;
            sq += d * d;
          }
          mean[ng] = m;
          rstd[ng] = static_cast<acc_t>(1.0 / std::sqrt(sq / count + a.eps));
        }
      }
    });
    return;
  }
  // NHWC: per-channel moments of each sample, folded into groups.
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> fsum(static_cast<size_t>(c)), fsq(static_cast<size_t>(c)), fshift(static_cast<size_t>(c));
    for (int64_t s = begin; s < end; ++s) {
      const scalar_t* base = xp + s * hw * c;
      if constexpr (std::is_same<scalar_t, float>::value) {
        // Blocks of rows in float, folded into double per block; shifted by the first row.
        std::vector<double> dsum(static_cast<size_t>(c), 0.0), dsq(static_cast<size_t>(c), 0.0);
        for (int64_t ch = 0; ch < c; ++ch) fshift[ch] = hw > 0 ? base[ch] : 0.0f;
        constexpr int64_t block = 256;
        for (int64_t r = 0; r < hw; r += block) {
          std::fill(fsum.begin(), fsum.end(), 0.0f);
          std::fill(fsq.begin(), fsq.end(), 0.0f);
          channel_moments_f32(base + r * c, std::min(block, hw - r), c, fshift.data(), fsum.data(), fsq.data());
          for (int64_t ch = 0; ch < c; ++ch) {
            dsum[ch] += fsum[ch];
            dsq[ch] += fsq[ch];
          }
        }
        for (int64_t g = 0; g < groups; ++g) {
          // Combine the channels of the group around a common shift: sum of (x - s_g)^2 with
          // s_g = the group's first shift.
          const double sg = fshift[g * cg];
          double sum = 0, sq = 0;
          for (int64_t ch = g * cg; ch < (g + 1) * cg; ++ch) {
            const double delta = static_cast<double>(fshift[ch]) - sg;
            sum += dsum[ch] + delta * hw;
            sq += dsq[ch] + 2 * delta * dsum[ch] + delta * delta * hw;
          }
          const double m = sum / count;
          mean[s * groups + g] = sg + m;
          rstd[s * groups + g] = static_cast<acc_t>(1.0 / std::sqrt(std::max(sq / count - m * m, 0.0) + a.eps));
        }
      } else {
        std::vector<double> sum(static_cast<size_t>(groups), 0.0), sq(static_cast<size_t>(groups), 0.0);
        for (int64_t r = 0; r < hw; ++r) {
          for (int64_t ch = 0; ch < c; ++ch) sum[ch / cg] += static_cast<double>(base[r * c + ch]);
        }
        for (int64_t g = 0; g < groups; ++g) sum[g] /= count;
        for (int64_t r = 0; r < hw; ++r) {
          for (int64_t ch = 0; ch < c; ++ch) {
            const double d = static_cast<double>(base[r * c + ch]) - sum[ch / cg];
            sq[ch / cg] += d * d;
          }
        }
        for (int64_t g = 0; g < groups; ++g) {
          mean[s * groups + g] = sum[g];
          rstd[s * groups + g] = static_cast<acc_t>(1.0 / std::sqrt(sq[g] / count + a.eps));
        }
      }
    }
  });
}

template <typename scalar_t>
void run(const GroupNormArgs& a, at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t n = a.x.size(0);
  const int64_t c = a.x.size(1);
  const int64_t hw = n * c == 0 ? 0 : a.x.numel() / (n * c);
  if (a.x.numel() == 0) {
    return;
  }
  std::vector<double> mean;
  std::vector<acc_t> rstd;
  group_stats<scalar_t, acc_t>(a, n, c, hw, mean, rstd);

  // Per (sample, channel): y = act(A x + B).
  const int64_t cg = c / a.groups;
  std::vector<acc_t> A(static_cast<size_t>(n * c)), M(static_cast<size_t>(n * c)), Mlo(static_cast<size_t>(n * c)),
      B(static_cast<size_t>(n * c));
  const scalar_t* w = a.weight.defined() ? a.weight.data_ptr<scalar_t>() : nullptr;
  const scalar_t* bb = a.bias.defined() ? a.bias.data_ptr<scalar_t>() : nullptr;
  const scalar_t* sc = a.scale.defined() ? a.scale.data_ptr<scalar_t>() : nullptr;
  const scalar_t* sh = a.shift.defined() ? a.shift.data_ptr<scalar_t>() : nullptr;
  for (int64_t s = 0; s < n; ++s) {
    for (int64_t ch = 0; ch < c; ++ch) {
      const double m = mean[s * a.groups + ch / cg];
      const acc_t r = rstd[s * a.groups + ch / cg];
      const acc_t gamma = w ? static_cast<acc_t>(w[ch]) : acc_t(1);
      const acc_t beta = bb ? static_cast<acc_t>(bb[ch]) : acc_t(0);
      const acc_t k = sc ? acc_t(1) + static_cast<acc_t>(sc[s * c + ch]) : acc_t(1);
      const acc_t t = sh ? static_cast<acc_t>(sh[s * c + ch]) : acc_t(0);
      // y = A (x - M) + B: subtracting the mean first keeps data far from zero exact (folding
      // it into B would cancel two large terms in float32).
      A[s * c + ch] = r * gamma * k;
      // The mean as a sum of two acc_t values: x - M_hi is exact for x near the mean.
      M[s * c + ch] = static_cast<acc_t>(m);
      Mlo[s * c + ch] = static_cast<acc_t>(m - static_cast<double>(M[s * c + ch]));
      B[s * c + ch] = beta * k + t;
    }
  }

  const scalar_t* xp = a.x.data_ptr<scalar_t>();
  scalar_t* yp = out.data_ptr<scalar_t>();
  if (!a.channels_last) {
    at::parallel_for(0, n * c, std::max<int64_t>(1, 16384 / std::max<int64_t>(hw, 1)), [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        if constexpr (std::is_same<scalar_t, float>::value) {
          affine_f32(xp + p * hw, yp + p * hw, hw, A[p], M[p], Mlo[p], B[p], a.silu);
        } else {
          for (int64_t i = 0; i < hw; ++i) {
            const acc_t z = A[p] * ((static_cast<acc_t>(xp[p * hw + i]) - M[p]) - Mlo[p]) + B[p];
            yp[p * hw + i] = static_cast<scalar_t>(a.silu ? silu_generic(z) : z);
          }
        }
      }
    });
    return;
  }
  at::parallel_for(0, n * hw, std::max<int64_t>(1, 16384 / std::max<int64_t>(c, 1)), [&](int64_t begin, int64_t end) {
    int64_t r = begin;
    while (r < end) {
      const int64_t s = r / hw;
      const int64_t stop = std::min(end, (s + 1) * hw);
      if constexpr (std::is_same<scalar_t, float>::value) {
        affine_rows_f32(xp + r * c, yp + r * c, stop - r, c, A.data() + s * c, M.data() + s * c,
                        Mlo.data() + s * c, B.data() + s * c,
                        a.silu);
      } else {
        for (int64_t q = r; q < stop; ++q) {
          for (int64_t ch = 0; ch < c; ++ch) {
            const acc_t z =
                A[s * c + ch] * ((static_cast<acc_t>(xp[q * c + ch]) - M[s * c + ch]) - Mlo[s * c + ch]) + B[s * c + ch];
            yp[q * c + ch] = static_cast<scalar_t>(a.silu ? silu_generic(z) : z);
          }
        }
      }
      r = stop;
    }
  });
}

}  // namespace

void group_norm_silu_cpu(const GroupNormArgs& args, at::Tensor& out) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, args.x.scalar_type(), "group_norm_silu_cpu",
                                  [&] { run<scalar_t>(args, out); });
}

}  // namespace detail
}  // namespace ops
}  // namespace manifold_diffusion
