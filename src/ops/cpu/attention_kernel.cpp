#include "ops/attention_kernels.h"
#include "ops/cpu/vec_math.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace manifold_diffusion {
namespace ops {
namespace detail {
namespace {

constexpr int64_t kLanes = 16;
constexpr int64_t kRowsPerTask = 64;

// One block of query rows against one head: scores against kT [d, S], max-subtracted softmax,
// weights times vT [e, S] (every inner loop runs along the S positions). `s`: scratch of S floats.
MD_VECTOR_CLONES
void attention_rows_f32(const float* q, const float* kT, const float* vT, float* out, int64_t rows, int64_t d,
                        int64_t S, int64_t e, float scale, float* s) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* qr = q + r * d;
    for (int64_t j = 0; j < S; ++j) {
      s[j] = 0.0f;
    }
    for (int64_t c = 0; c < d; ++c) {
      const float qc = qr[c] * scale;
      const float* kc = kT + c * S;
      for (int64_t j = 0; j < S; ++j) {
        s[j] += qc * kc[j];
      }
    }
    float lane_max[kLanes];
    for (int64_t l = 0; l < kLanes; ++l) {
      lane_max[l] = -std::numeric_limits<float>::infinity();
    }
    int64_t j = 0;
    for (; j + kLanes <= S; j += kLanes) {
      for (int64_t l = 0; l < kLanes; ++l) {
        lane_max[l] = std::max(lane_max[l], s[j + l]);
      }
    }
    float m = -std::numeric_limits<float>::infinity();
    for (; j < S; ++j) {
      m = std::max(m, s[j]);
    }
    for (int64_t l = 0; l < kLanes; ++l) {
      m = std::max(m, lane_max[l]);
    }
    for (j = 0; j < S; ++j) {
      s[j] = exp_poly(s[j] - m);
    }
    float lane_sum[kLanes] = {};
    for (j = 0; j + kLanes <= S; j += kLanes) {
      for (int64_t l = 0; l < kLanes; ++l) {
        lane_sum[l] += s[j + l];
      }
    }
    float total = 0.0f;
    for (; j < S; ++j) {
      total += s[j];
    }
    for (int64_t l = 0; l < kLanes; ++l) {
      total += lane_sum[l];
    }
    const float inv = 1.0f / total;
    float* o = out + r * e;
    for (int64_t c = 0; c < e; ++c) {
      const float* vc = vT + c * S;
      float lanes[kLanes] = {};
      for (j = 0; j + kLanes <= S; j += kLanes) {
        for (int64_t l = 0; l < kLanes; ++l) {
          lanes[l] += s[j + l] * vc[j + l];
        }
      }
      float dot = 0.0f;
      for (; j < S; ++j) {
        dot += s[j] * vc[j];
      }
      for (int64_t l = 0; l < kLanes; ++l) {
        dot += lanes[l];
      }
      o[c] = dot * inv;
    }
  }
}

template <typename scalar_t>
void attention_rows_generic(const scalar_t* q, const scalar_t* k, const scalar_t* v, scalar_t* out, int64_t rows,
                            int64_t d, int64_t S, int64_t e, double scale) {
  using acc_t = at::opmath_type<scalar_t>;
  std::vector<acc_t> s(static_cast<size_t>(S)), acc(static_cast<size_t>(e));
  for (int64_t r = 0; r < rows; ++r) {
    acc_t m = -std::numeric_limits<acc_t>::infinity();
    for (int64_t j = 0; j < S; ++j) {
      acc_t dot = 0;
      for (int64_t c = 0; c < d; ++c) {
        dot += static_cast<acc_t>(q[r * d + c]) * static_cast<acc_t>(k[j * d + c]);
      }
      s[j] = dot * static_cast<acc_t>(scale);
      m = std::max(m, s[j]);
    }
    acc_t total = 0;
    for (int64_t j = 0; j < S; ++j) {
      s[j] = std::exp(s[j] - m);
      total += s[j];
    }
    std::fill(acc.begin(), acc.end(), acc_t(0));
    for (int64_t j = 0; j < S; ++j) {
      for (int64_t c = 0; c < e; ++c) {
        acc[c] += s[j] * static_cast<acc_t>(v[j * e + c]);
      }
    }
    for (int64_t c = 0; c < e; ++c) {
      out[r * e + c] = static_cast<scalar_t>(acc[c] / total);
    }
  }
}

template <typename scalar_t>
void run_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale, at::Tensor& out,
                   int64_t B, int64_t L, int64_t d, int64_t S, int64_t e, int64_t blocks) {
    const scalar_t* qp = q.data_ptr<scalar_t>();
    const scalar_t* kp = k.data_ptr<scalar_t>();
    const scalar_t* vp = v.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, B * blocks, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> kT, vT, s;
      int64_t transposed_for = -1;
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / blocks;
        const int64_t r0 = (task % blocks) * kRowsPerTask;
        const int64_t rows = std::min(kRowsPerTask, L - r0);
        if constexpr (std::is_same<scalar_t, float>::value) {
          if (transposed_for != b) {
            kT.resize(static_cast<size_t>(d * S));
            const float* kb = kp + b * S * d;
            for (int64_t j = 0; j < S; ++j) {
              for (int64_t c = 0; c < d; ++c) {
                kT[c * S + j] = kb[j * d + c];
              }
            }
            vT.resize(static_cast<size_t>(e * S));
            const float* vb = vp + b * S * e;
            for (int64_t j = 0; j < S; ++j) {
              for (int64_t c = 0; c < e; ++c) {
                vT[c * S + j] = vb[j * e + c];
              }
            }
            transposed_for = b;
            s.resize(static_cast<size_t>(S));
          }
          attention_rows_f32(qp + (b * L + r0) * d, kT.data(), vT.data(), op + (b * L + r0) * e, rows, d, S, e,
                             static_cast<float>(scale), s.data());
        } else {
          attention_rows_generic<scalar_t>(qp + (b * L + r0) * d, kp + b * S * d, vp + b * S * e,
                                           op + (b * L + r0) * e, rows, d, S, e, scale);
        }
      }
    });
}

}  // namespace

void attention_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale, at::Tensor& out) {
  const int64_t B = q.size(0);
  const int64_t L = q.size(1);
  const int64_t d = q.size(2);
  const int64_t S = k.size(1);
  const int64_t e = v.size(2);
  if (B == 0 || L == 0 || e == 0) {
    return;
  }
  const int64_t blocks = (L + kRowsPerTask - 1) / kRowsPerTask;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "attention_cpu",
                                  [&] { run_attention<scalar_t>(q, k, v, scale, out, B, L, d, S, e, blocks); });
}

}  // namespace detail
}  // namespace ops
}  // namespace manifold_diffusion
