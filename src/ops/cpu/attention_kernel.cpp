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

// Element strides of the two batch dimensions and of a row, per tensor.
struct AttentionLayout {
  int64_t q[3], k[3], v[3], out[3];
};

// One block of query rows against one head: scores against kT [d, S], max-subtracted softmax,
// weights times vT [e, S] (every inner loop runs along the S positions). `s`: scratch of S floats.
MD_VECTOR_CLONES
void attention_rows_f32(const float* q, int64_t q_row_stride, const float* kT, const float* vT, float* out,
                        int64_t out_row_stride, int64_t rows, int64_t d, int64_t S, int64_t e, float scale, float* s) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* qr = q + r * q_row_stride;
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
    float* o = out + r * out_row_stride;
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
void attention_rows_generic(const scalar_t* q, const scalar_t* k, const scalar_t* v, scalar_t* out,
                            const AttentionLayout& lay, int64_t rows, int64_t d, int64_t S, int64_t e, double scale) {
  using acc_t = at::opmath_type<scalar_t>;
  std::vector<acc_t> s(static_cast<size_t>(S)), acc(static_cast<size_t>(e));
  for (int64_t r = 0; r < rows; ++r) {
    const scalar_t* qr = q + r * lay.q[2];
    acc_t m = -std::numeric_limits<acc_t>::infinity();
    for (int64_t j = 0; j < S; ++j) {
      acc_t dot = 0;
      for (int64_t c = 0; c < d; ++c) {
        dot += static_cast<acc_t>(qr[c]) * static_cast<acc_t>(k[j * lay.k[2] + c]);
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
        acc[c] += s[j] * static_cast<acc_t>(v[j * lay.v[2] + c]);
      }
    }
    for (int64_t c = 0; c < e; ++c) {
      out[r * lay.out[2] + c] = static_cast<scalar_t>(acc[c] / total);
    }
  }
}

template <typename scalar_t>
void run_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale, at::Tensor& out,
                   const AttentionLayout& lay, int64_t B1, int64_t B2, int64_t L, int64_t d, int64_t S, int64_t e) {
  const int64_t blocks = (L + kRowsPerTask - 1) / kRowsPerTask;
  const scalar_t* qp = q.data_ptr<scalar_t>();
  const scalar_t* kp = k.data_ptr<scalar_t>();
  const scalar_t* vp = v.data_ptr<scalar_t>();
  scalar_t* op = out.data_ptr<scalar_t>();
  at::parallel_for(0, B1 * B2 * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> kT, vT, s;
    int64_t transposed_for = -1;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / blocks;
      const int64_t b1 = b / B2;
      const int64_t b2 = b % B2;
      const int64_t r0 = (task % blocks) * kRowsPerTask;
      const int64_t rows = std::min(kRowsPerTask, L - r0);
      const scalar_t* qb = qp + b1 * lay.q[0] + b2 * lay.q[1] + r0 * lay.q[2];
      const scalar_t* kb = kp + b1 * lay.k[0] + b2 * lay.k[1];
      const scalar_t* vb = vp + b1 * lay.v[0] + b2 * lay.v[1];
      scalar_t* ob = op + b1 * lay.out[0] + b2 * lay.out[1] + r0 * lay.out[2];
      if constexpr (std::is_same<scalar_t, float>::value) {
        if (transposed_for != b) {
          kT.resize(static_cast<size_t>(d * S));
          vT.resize(static_cast<size_t>(e * S));
          for (int64_t j = 0; j < S; ++j) {
            for (int64_t c = 0; c < d; ++c) {
              kT[c * S + j] = kb[j * lay.k[2] + c];
            }
            for (int64_t c = 0; c < e; ++c) {
              vT[c * S + j] = vb[j * lay.v[2] + c];
            }
          }
          transposed_for = b;
          s.resize(static_cast<size_t>(S));
        }
        attention_rows_f32(qb, lay.q[2], kT.data(), vT.data(), ob, lay.out[2], rows, d, S, e,
                           static_cast<float>(scale), s.data());
      } else {
        attention_rows_generic<scalar_t>(qb, kb, vb, ob, lay, rows, d, S, e, scale);
      }
    }
  });
}

}  // namespace

void attention_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale, at::Tensor& out) {
  // [B1, B2, rows, width] views with unit stride in the last dimension; any strides elsewhere.
  const int64_t B1 = q.size(0), B2 = q.size(1), L = q.size(2), d = q.size(3), S = k.size(2), e = v.size(3);
  if (B1 * B2 == 0 || L == 0 || e == 0) {
    return;
  }
  AttentionLayout lay;
  for (int i = 0; i < 3; ++i) {
    lay.q[i] = q.stride(i);
    lay.k[i] = k.stride(i);
    lay.v[i] = v.stride(i);
    lay.out[i] = out.stride(i);
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "attention_cpu",
                                  [&] { run_attention<scalar_t>(q, k, v, scale, out, lay, B1, B2, L, d, S, e); });
}

}  // namespace detail
}  // namespace ops
}  // namespace manifold_diffusion
