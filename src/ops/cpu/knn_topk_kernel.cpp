#include "ops/manifold_kernels.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace manifold_diffusion {
namespace ops {
namespace detail {
namespace {

// A max-heap of (distance, index) pairs, ordered lexicographically, kept in two parallel arrays of
// capacity k (a row of the outputs; the caller keeps size <= k). The root is the worst kept
// candidate.
template <typename T>
struct RowHeap {
  T* d;
  int64_t* idx;
  int64_t size;

  static bool less(T da, int64_t ia, T db, int64_t ib) { return da < db || (da == db && ia < ib); }

  void sift_down(int64_t pos, int64_t n) {
    const T dv = d[pos];
    const int64_t iv = idx[pos];
    while (true) {
      int64_t child = 2 * pos + 1;
      if (child >= n) {
        break;
      }
      if (child + 1 < n && less(d[child], idx[child], d[child + 1], idx[child + 1])) {
        ++child;
      }
      if (!less(dv, iv, d[child], idx[child])) {
        break;
      }
      d[pos] = d[child];
      idx[pos] = idx[child];
      pos = child;
    }
    d[pos] = dv;
    idx[pos] = iv;
  }

  void push(T dv, int64_t iv) {
    int64_t pos = size++;
    while (pos > 0) {
      const int64_t parent = (pos - 1) / 2;
      if (!less(d[parent], idx[parent], dv, iv)) {
        break;
      }
      d[pos] = d[parent];
      idx[pos] = idx[parent];
      pos = parent;
    }
    d[pos] = dv;
    idx[pos] = iv;
  }

  // Replaces the root (the worst candidate) by a better one.
  void replace_top(T dv, int64_t iv) {
    d[0] = dv;
    idx[0] = iv;
    sift_down(0, size);
  }

  // Heap sort in place: ascending (distance, index).
  void sort() {
    for (int64_t n = size - 1; n > 0; --n) {
      std::swap(d[0], d[n]);
      std::swap(idx[0], idx[n]);
      sift_down(0, n);
    }
  }
};

template <typename T>
void knn_topk_cpu_impl(const at::Tensor& queries, const at::Tensor& points, const at::Tensor& qn_t,
                       const at::Tensor& pn_t, int64_t k, int64_t block, const at::Tensor& exclude, at::Tensor& sqdist,
                       at::Tensor& indices) {
  const int64_t m = queries.size(0);
  const int64_t n = points.size(0);
  const T* qn = qn_t.data_ptr<T>();
  const T* pn = pn_t.data_ptr<T>();
  const int64_t* ex = exclude.defined() ? exclude.data_ptr<int64_t>() : nullptr;
  T* out_d = sqdist.data_ptr<T>();
  int64_t* out_i = indices.data_ptr<int64_t>();
  std::vector<int64_t> sizes(static_cast<size_t>(m), 0);
  const T inf = std::numeric_limits<T>::infinity();
  // One buffer for every block's products, reused: [m, cols] contiguous.
  at::Tensor buffer = at::empty({m * block}, queries.options());
  // Rows per task: about 64K distances of epilogue work.
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(block, 1));

  for (int64_t c0 = 0; c0 < n; c0 += block) {
    const int64_t cols = std::min(block, n - c0);
    at::Tensor dots = buffer.narrow(0, 0, m * cols).view({m, cols});
    at::mm_out(dots, queries, points.narrow(0, c0, cols).t());
    T* dp = dots.data_ptr<T>();
    const T* pnb = pn + c0;
    at::parallel_for(0, m, grain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        T* row = dp + i * cols;
        const T qi = qn[i];
        // The epilogue: a vectorisable pass turning products into clamped squared distances.
        for (int64_t j = 0; j < cols; ++j) {
          const T v = qi + pnb[j] - T(2) * row[j];
          row[j] = v < T(0) ? T(0) : v;  // NaN stays NaN (ranked as +inf below)
        }
        const int64_t skip = ex != nullptr && ex[i] >= c0 && ex[i] < c0 + cols ? ex[i] - c0 : -1;
        RowHeap<T> heap{out_d + i * k, out_i + i * k, sizes[i]};
        int64_t j = 0;
        for (; j < cols && heap.size < k; ++j) {
          if (j == skip) {
            continue;
          }
          heap.push(std::isnan(row[j]) ? inf : row[j], c0 + j);
        }
        if (heap.size == k) {
          if (skip >= j) {
            row[skip] = std::numeric_limits<T>::quiet_NaN();  // never below the worst kept
          }
          // Indices only grow, so an equal distance never displaces a kept candidate.
          T worst = heap.d[0];
          for (; j < cols; ++j) {
            if (row[j] < worst) {
              heap.replace_top(row[j], c0 + j);
              worst = heap.d[0];
            }
          }
        }
        sizes[i] = heap.size;
      }
    });
  }
  at::parallel_for(0, m, 256, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      RowHeap<T> heap{out_d + i * k, out_i + i * k, sizes[i]};
      heap.sort();
    }
  });
}

}  // namespace

at::Tensor row_sqnorms_cpu(const at::Tensor& x) {
  const int64_t rows = x.size(0);
  const int64_t dims = x.size(1);
  at::Tensor out = at::empty({rows}, x.options());
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(dims, 1));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "row_sqnorms_cpu", [&] {
    constexpr int64_t lanes = 8;
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const scalar_t* row = xp + i * dims;
        // Independent partial sums so that the loop vectorises.
        scalar_t acc[lanes] = {};
        int64_t j = 0;
        for (; j + lanes <= dims; j += lanes) {
          for (int64_t l = 0; l < lanes; ++l) {
            acc[l] += row[j + l] * row[j + l];
          }
        }
        scalar_t sum = 0;
        for (; j < dims; ++j) {
          sum += row[j] * row[j];
        }
        for (int64_t l = 0; l < lanes; ++l) {
          sum += acc[l];
        }
        op[i] = sum;
      }
    });
  });
  return out;
}

void knn_topk_cpu(const at::Tensor& queries, const at::Tensor& points, const at::Tensor& qn, const at::Tensor& pn,
                  int64_t k, int64_t block, const at::Tensor& exclude, at::Tensor& sqdist, at::Tensor& indices) {
  AT_DISPATCH_FLOATING_TYPES(queries.scalar_type(), "knn_topk_cpu", [&] {
    knn_topk_cpu_impl<scalar_t>(queries, points, qn, pn, k, block, exclude, sqdist, indices);
  });
}

}  // namespace detail
}  // namespace ops
}  // namespace manifold_diffusion
