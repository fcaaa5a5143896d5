#include <manifold_diffusion/manifold/embedding.h>
#include <manifold_diffusion/manifold/knn.h>

#include "common.h"
#include "embed_common.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <vector>

namespace manifold_diffusion {

namespace {

// Sparse symmetric affinities in compressed-row form.
struct SparseP {
  std::vector<int64_t> start;  // [n + 1]
  std::vector<int64_t> col;
  std::vector<double> val;
};

// Perplexity-calibrated conditional probabilities on the kNN lists, symmetrised and normalised to
// sum 1: P_ij = (p_j|i + p_i|j) / (2 n).
SparseP affinities(const at::Tensor& d_knn, const at::Tensor& idx_knn, double perplexity) {
  const int64_t n = d_knn.size(0);
  const int64_t k = d_knn.size(1);
  const at::Tensor d2t = d_knn.to(at::kCPU, at::kDouble).pow(2).contiguous();
  const at::Tensor it = idx_knn.to(at::kCPU).contiguous();
  const double* d2 = d2t.data_ptr<double>();
  const int64_t* ix = it.data_ptr<int64_t>();
  const double target = std::log(perplexity);
  std::vector<double> cond(static_cast<size_t>(n * k));
  std::vector<double> p(static_cast<size_t>(k));
  for (int64_t i = 0; i < n; ++i) {
    const double* row = d2 + i * k;
    const double shift = row[0];
    double beta = 1.0;
    double lo = 0.0;
    double hi = std::numeric_limits<double>::infinity();
    // Scale so that beta = 1 matches the typical distance.
    double scale = 0.0;
    for (int64_t j = 0; j < k; ++j) {
      scale += row[j] - shift;
    }
    scale = scale > 0.0 ? scale / static_cast<double>(k) : 1.0;
    for (int iter = 0; iter < 200; ++iter) {
      double sum = 0.0;
      double weighted = 0.0;
      for (int64_t j = 0; j < k; ++j) {
        const double e = (row[j] - shift) / scale;
        p[static_cast<size_t>(j)] = std::exp(-beta * e);
        sum += p[static_cast<size_t>(j)];
        weighted += beta * e * p[static_cast<size_t>(j)];
      }
      const double entropy = std::log(sum) + weighted / sum;
      if (std::abs(entropy - target) < 1e-5) {
        break;
      }
      if (entropy > target) {
        lo = beta;
        beta = std::isinf(hi) ? beta * 2.0 : 0.5 * (beta + hi);
      } else {
        hi = beta;
        beta = 0.5 * (beta + lo);
      }
    }
    double sum = 0.0;
    for (int64_t j = 0; j < k; ++j) {
      sum += p[static_cast<size_t>(j)];
    }
    for (int64_t j = 0; j < k; ++j) {
      cond[static_cast<size_t>(i * k + j)] = p[static_cast<size_t>(j)] / sum;
    }
  }
  // Symmetrise: collect (i, j, v) and (j, i, v), sort, merge.
  struct Entry {
    int64_t r, c;
    double v;
  };
  std::vector<Entry> entries;
  entries.reserve(static_cast<size_t>(2 * n * k));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < k; ++j) {
      const double v = cond[static_cast<size_t>(i * k + j)];
      entries.push_back({i, ix[i * k + j], v});
      entries.push_back({ix[i * k + j], i, v});
    }
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.r != b.r ? a.r < b.r : a.c < b.c;
  });
  SparseP out;
  out.start.assign(static_cast<size_t>(n + 1), 0);
  const double norm = 1.0 / (2.0 * static_cast<double>(n));
  for (size_t e = 0; e < entries.size();) {
    size_t f = e;
    double v = 0.0;
    while (f < entries.size() && entries[f].r == entries[e].r && entries[f].c == entries[e].c) {
      v += entries[f].v;
      ++f;
    }
    out.col.push_back(entries[e].c);
    out.val.push_back(v * norm);
    ++out.start[static_cast<size_t>(entries[e].r + 1)];
    e = f;
  }
  for (int64_t i = 0; i < n; ++i) {
    out.start[static_cast<size_t>(i + 1)] += out.start[static_cast<size_t>(i)];
  }
  return out;
}

// A 2-D quadtree over the map points, rebuilt every iteration.
class QuadTree {
 public:
  QuadTree(const std::vector<double>& y, int64_t n) : y_(y), order_(static_cast<size_t>(n)) {
    for (int64_t i = 0; i < n; ++i) {
      order_[static_cast<size_t>(i)] = i;
    }
    double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
    for (int64_t i = 0; i < n; ++i) {
      x0 = std::min(x0, y[2 * i]);
      x1 = std::max(x1, y[2 * i]);
      y0 = std::min(y0, y[2 * i + 1]);
      y1 = std::max(y1, y[2 * i + 1]);
    }
    const double half = 0.5 * std::max(x1 - x0, y1 - y0) * (1.0 + 1e-9) + 1e-12;
    nodes_.reserve(static_cast<size_t>(4 * n + 1));
    nodes_.resize(1);
    build(0, 0.5 * (x0 + x1), 0.5 * (y0 + y1), half, 0, n, 0);
  }

  // Adds the repulsive force numerators of point i (sum q^2 (y_i - y_j)) to f and returns sum q.
  double repulse(int64_t i, double theta, double& fx, double& fy) const {
    const double px = y_[2 * i];
    const double py = y_[2 * i + 1];
    double z = 0.0;
    stack_.clear();
    stack_.push_back(0);
    while (!stack_.empty()) {
      const Node& node = nodes_[static_cast<size_t>(stack_.back())];
      stack_.pop_back();
      if (node.count == 0) {
        continue;
      }
      const double dx = px - node.mx;
      const double dy = py - node.my;
      const double d2 = dx * dx + dy * dy;
      if (node.first_child < 0) {
        for (int64_t s = node.begin; s < node.end; ++s) {
          const int64_t j = order_[static_cast<size_t>(s)];
          if (j == i) {
            continue;
          }
          const double ex = px - y_[2 * j];
          const double ey = py - y_[2 * j + 1];
          const double q = 1.0 / (1.0 + ex * ex + ey * ey);
          z += q;
          fx += q * q * ex;
          fy += q * q * ey;
        }
      } else if (4.0 * node.half * node.half < theta * theta * d2) {
        const double q = 1.0 / (1.0 + d2);
        const double c = static_cast<double>(node.count);
        z += c * q;
        fx += c * q * q * dx;
        fy += c * q * q * dy;
      } else {
        for (int c = 0; c < 4; ++c) {
          stack_.push_back(node.first_child + c);
        }
      }
    }
    return z;
  }

 private:
  struct Node {
    double cx = 0.0, cy = 0.0, half = 0.0;
    double mx = 0.0, my = 0.0;
    int64_t count = 0;
    int64_t begin = 0, end = 0;
    int64_t first_child = -1;
  };

  // Fills node `id` (already allocated) for order_[begin, end) and builds its children.
  void build(int64_t id, double cx, double cy, double half, int64_t begin, int64_t end, int depth) {
    Node node{cx, cy, half};
    node.begin = begin;
    node.end = end;
    node.count = end - begin;
    for (int64_t s = begin; s < end; ++s) {
      const int64_t j = order_[static_cast<size_t>(s)];
      node.mx += y_[2 * j];
      node.my += y_[2 * j + 1];
    }
    if (node.count > 0) {
      node.mx /= static_cast<double>(node.count);
      node.my /= static_cast<double>(node.count);
    }
    if (node.count <= 1 || depth >= 48 || half <= 1e-12) {
      nodes_[static_cast<size_t>(id)] = node;
      return;
    }
    // Partition into quadrants: (x < cx, y < cy), (x >= cx, y < cy), (x < cx, y >= cy), (x >= cx, y >= cy).
    auto quadrant = [&](int64_t j) { return (y_[2 * j] >= cx ? 1 : 0) + (y_[2 * j + 1] >= cy ? 2 : 0); };
    int64_t bounds[5];
    bounds[0] = begin;
    int64_t pos = begin;
    for (int q = 0; q < 4; ++q) {
      for (int64_t s = pos; s < end; ++s) {
        if (quadrant(order_[static_cast<size_t>(s)]) == q) {
          std::swap(order_[static_cast<size_t>(s)], order_[static_cast<size_t>(pos)]);
          ++pos;
        }
      }
      bounds[q + 1] = pos;
    }
    node.first_child = static_cast<int64_t>(nodes_.size());
    nodes_.resize(nodes_.size() + 4);
    nodes_[static_cast<size_t>(id)] = node;
    const double h = 0.5 * half;
    for (int q = 0; q < 4; ++q) {
      build(node.first_child + q, cx + ((q & 1) ? h : -h), cy + ((q & 2) ? h : -h), h, bounds[q], bounds[q + 1],
            depth + 1);
    }
  }

  const std::vector<double>& y_;
  std::vector<int64_t> order_;
  std::vector<Node> nodes_;
  mutable std::vector<int64_t> stack_;
};

}  // namespace

Tsne::Tsne(EmbeddingOptions options) : Embedding(std::move(options)) {
  const auto& o = options_;
  MD_CHECK_VALUE(std::isfinite(o.perplexity()) && o.perplexity() > 0.0, "tsne: perplexity must be > 0, got ",
                 o.perplexity());
  MD_CHECK_VALUE(o.iterations() >= 1, "tsne: iterations must be >= 1, got ", o.iterations());
  MD_CHECK_VALUE(std::isfinite(o.learning_rate()) && o.learning_rate() >= 0.0,
                 "tsne: learning_rate must be >= 0 (0 = automatic), got ", o.learning_rate());
  MD_CHECK_VALUE(std::isfinite(o.early_exaggeration()) && o.early_exaggeration() >= 1.0,
                 "tsne: early_exaggeration must be >= 1, got ", o.early_exaggeration());
  MD_CHECK_VALUE(o.exaggeration_iterations() >= 0, "tsne: exaggeration_iterations must be >= 0, got ",
                 o.exaggeration_iterations());
  MD_CHECK_VALUE(o.theta() > 0.0 && o.theta() <= 1.0, "tsne: theta must be in (0, 1], got ", o.theta());
  MD_CHECK_VALUE(o.exact_max() >= 0, "tsne: exact_max must be >= 0, got ", o.exact_max());
}

at::Tensor Tsne::fit_transform(const at::Tensor& x) {
  const auto t0 = std::chrono::steady_clock::now();
  const at::Tensor f = checked_input(x, true).contiguous();
  const int64_t n = f.size(0);
  const int64_t dims = options_.dims();
  MD_CHECK_VALUE(n >= 4, "tsne: needs at least 4 points, got ", n);
  const double perplexity = std::min(options_.perplexity(), static_cast<double>(n - 1) / 3.0);
  const int64_t kp = std::min<int64_t>(n - 1, static_cast<int64_t>(std::floor(3.0 * perplexity)) + 1);
  const KnnResult g = knn_graph(f, kp);
  const SparseP p = affinities(g.distances, g.indices, perplexity);

  // Start: PCA coordinates scaled to standard deviation 1e-4 (zeros padded beyond the rank).
  const int64_t rank = std::min({dims, n, f.size(1)});
  at::Tensor init = at::zeros({n, dims}, at::TensorOptions().dtype(at::kDouble));
  init.narrow(1, 0, rank).copy_(PCA(PCAOptions().n_components(rank)).fit_transform(f.to(at::kDouble)).to(at::kCPU));
  const double sd = init.select(1, 0).std().item<double>();
  init = init * (sd > 0.0 ? 1e-4 / sd : 0.0);
  if (sd == 0.0) {  // all points equal: a seeded tiny random start
    std::mt19937_64 rng(options_.seed());
    std::normal_distribution<double> normal(0.0, 1e-4);
    for (int64_t i = 0; i < n * dims; ++i) {
      init.data_ptr<double>()[i] = normal(rng);
    }
  }
  std::vector<double> y(init.data_ptr<double>(), init.data_ptr<double>() + n * dims);
  std::vector<double> update(y.size(), 0.0);
  std::vector<double> gains(y.size(), 1.0);
  std::vector<double> grad(y.size(), 0.0);
  std::vector<double> rep(y.size(), 0.0);
  barnes_hut_ = n > options_.exact_max() && dims == 2;
  const double lr = options_.learning_rate() > 0.0
                        ? options_.learning_rate()
                        : std::max(static_cast<double>(n) / options_.early_exaggeration() / 4.0, 50.0);
  double z = 1.0;
  for (int64_t it = 0; it < options_.iterations(); ++it) {
    const bool exaggerate = it < options_.exaggeration_iterations();
    const double exag = exaggerate ? options_.early_exaggeration() : 1.0;
    const double momentum = exaggerate ? 0.5 : 0.8;
    std::fill(rep.begin(), rep.end(), 0.0);
    z = 0.0;
    if (barnes_hut_) {
      const QuadTree tree(y, n);
      for (int64_t i = 0; i < n; ++i) {
        z += tree.repulse(i, options_.theta(), rep[static_cast<size_t>(2 * i)], rep[static_cast<size_t>(2 * i + 1)]);
      }
    } else {
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t j = i + 1; j < n; ++j) {
          double d2 = 0.0;
          for (int64_t c = 0; c < dims; ++c) {
            const double e = y[static_cast<size_t>(i * dims + c)] - y[static_cast<size_t>(j * dims + c)];
            d2 += e * e;
          }
          const double q = 1.0 / (1.0 + d2);
          z += 2.0 * q;
          for (int64_t c = 0; c < dims; ++c) {
            const double e = y[static_cast<size_t>(i * dims + c)] - y[static_cast<size_t>(j * dims + c)];
            rep[static_cast<size_t>(i * dims + c)] += q * q * e;
            rep[static_cast<size_t>(j * dims + c)] -= q * q * e;
          }
        }
      }
    }
    z = std::max(z, 1e-300);
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t c = 0; c < dims; ++c) {
        grad[static_cast<size_t>(i * dims + c)] = -rep[static_cast<size_t>(i * dims + c)] / z;
      }
      for (int64_t s = p.start[static_cast<size_t>(i)]; s < p.start[static_cast<size_t>(i + 1)]; ++s) {
        const int64_t j = p.col[static_cast<size_t>(s)];
        double d2 = 0.0;
        for (int64_t c = 0; c < dims; ++c) {
          const double e = y[static_cast<size_t>(i * dims + c)] - y[static_cast<size_t>(j * dims + c)];
          d2 += e * e;
        }
        const double w = exag * p.val[static_cast<size_t>(s)] / (1.0 + d2);
        for (int64_t c = 0; c < dims; ++c) {
          grad[static_cast<size_t>(i * dims + c)] +=
              w * (y[static_cast<size_t>(i * dims + c)] - y[static_cast<size_t>(j * dims + c)]);
        }
      }
    }
    std::vector<double> mean(static_cast<size_t>(dims), 0.0);
    for (size_t e = 0; e < y.size(); ++e) {
      const double gr = 4.0 * grad[e];
      gains[e] = (gr > 0.0) != (update[e] > 0.0) ? gains[e] + 0.2 : std::max(gains[e] * 0.8, 0.01);
      update[e] = momentum * update[e] - lr * gains[e] * gr;
      y[e] += update[e];
      mean[e % static_cast<size_t>(dims)] += y[e];
    }
    for (size_t e = 0; e < y.size(); ++e) {
      y[e] -= mean[e % static_cast<size_t>(dims)] / static_cast<double>(n);
    }
  }
  // KL(P || Q) with the last normalisation z (exact, or the Barnes–Hut estimate of z).
  double kl = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t s = p.start[static_cast<size_t>(i)]; s < p.start[static_cast<size_t>(i + 1)]; ++s) {
      const int64_t j = p.col[static_cast<size_t>(s)];
      double d2 = 0.0;
      for (int64_t c = 0; c < dims; ++c) {
        const double e = y[static_cast<size_t>(i * dims + c)] - y[static_cast<size_t>(j * dims + c)];
        d2 += e * e;
      }
      const double pij = p.val[static_cast<size_t>(s)];
      const double qij = std::max(1.0 / (1.0 + d2) / z, 1e-300);
      if (pij > 0.0) {
        kl += pij * std::log(pij / qij);
      }
    }
  }
  kl_ = kl;
  coords_ = at::tensor(y, at::TensorOptions().dtype(at::kDouble)).view({n, dims});
  points_ = f;
  features_ = f.size(1);
  fitted_ = true;
  fit_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return coords_.to(x.device(), x.scalar_type());
}

at::Tensor Tsne::transform(const at::Tensor& x) const {
  const at::Tensor f = checked_input(x, false);
  const int64_t k = std::min(options_.k(), points_.size(0));
  const KnnResult r = knn(f.to(points_.scalar_type()), points_, k);
  const at::Tensor d2 = r.distances.to(at::kCPU, at::kDouble).pow(2);
  const at::Tensor idx = r.indices.to(at::kCPU);
  const at::Tensor shifted = d2 - d2.narrow(1, 0, 1);
  const at::Tensor scale = d2.mean(1, true).clamp_min(1e-300);
  at::Tensor w = (-shifted / scale).exp();
  w = w / w.sum(1, true);
  const int64_t dims = coords_.size(1);
  const at::Tensor nb = coords_.index_select(0, idx.reshape({-1})).view({idx.size(0), k, dims});
  return (w.unsqueeze(2) * nb).sum(1).to(x.device(), x.scalar_type());
}

}  // namespace manifold_diffusion
