#include <manifold_diffusion/manifold/embedding.h>
#include <manifold_diffusion/manifold/knn.h>

#include "common.h"
#include "embed_common.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <queue>
#include <utility>

namespace manifold_diffusion {

using manifold_detail::as_points;
using manifold_detail::fix_column_signs;
using manifold_detail::index_tensor;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

using Adjacency = std::vector<std::vector<std::pair<int64_t, double>>>;

// The symmetrised kNN graph of x [n, D] with Euclidean edge lengths.
Adjacency knn_adjacency(const at::Tensor& x, int64_t k) {
  const KnnResult g = knn_graph(x, k);
  const at::Tensor d = g.distances.to(at::kCPU, at::kDouble).contiguous();
  const at::Tensor idx = g.indices.to(at::kCPU).contiguous();
  const int64_t n = x.size(0);
  const double* dp = d.data_ptr<double>();
  const int64_t* ip = idx.data_ptr<int64_t>();
  Adjacency adj(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < k; ++j) {
      const int64_t other = ip[i * k + j];
      adj[static_cast<size_t>(i)].emplace_back(other, dp[i * k + j]);
      adj[static_cast<size_t>(other)].emplace_back(i, dp[i * k + j]);
    }
  }
  return adj;
}

// Connected-component labels; returns the number of components.
int64_t component_labels(const Adjacency& adj, std::vector<int64_t>& label) {
  const int64_t n = static_cast<int64_t>(adj.size());
  label.assign(static_cast<size_t>(n), -1);
  int64_t count = 0;
  std::vector<int64_t> stack;
  for (int64_t s = 0; s < n; ++s) {
    if (label[static_cast<size_t>(s)] >= 0) {
      continue;
    }
    label[static_cast<size_t>(s)] = count;
    stack.push_back(s);
    while (!stack.empty()) {
      const int64_t v = stack.back();
      stack.pop_back();
      for (const auto& e : adj[static_cast<size_t>(v)]) {
        if (label[static_cast<size_t>(e.first)] < 0) {
          label[static_cast<size_t>(e.first)] = count;
          stack.push_back(e.first);
        }
      }
    }
    ++count;
  }
  return count;
}

// Joins the components of the graph: every component but the largest gets an edge from its point
// nearest to the rest, repeated until one component is left. Returns the number of edges added.
int64_t connect_components(Adjacency& adj, const at::Tensor& x) {
  int64_t added = 0;
  std::vector<int64_t> label;
  for (;;) {
    const int64_t comps = component_labels(adj, label);
    if (comps <= 1) {
      return added;
    }
    std::vector<int64_t> sizes(static_cast<size_t>(comps), 0);
    for (int64_t l : label) {
      ++sizes[static_cast<size_t>(l)];
    }
    const int64_t largest = std::max_element(sizes.begin(), sizes.end()) - sizes.begin();
    for (int64_t c = 0; c < comps; ++c) {
      if (c == largest) {
        continue;
      }
      std::vector<int64_t> inside;
      std::vector<int64_t> outside;
      for (int64_t i = 0; i < static_cast<int64_t>(label.size()); ++i) {
        (label[static_cast<size_t>(i)] == c ? inside : outside).push_back(i);
      }
      const KnnResult r = knn(x.index_select(0, index_tensor(inside, x.device())),
                              x.index_select(0, index_tensor(outside, x.device())), 1);
      const at::Tensor d = r.distances.select(1, 0).to(at::kCPU, at::kDouble);
      const int64_t row = d.argmin().item<int64_t>();
      const int64_t a = inside[static_cast<size_t>(row)];
      const int64_t b = outside[static_cast<size_t>(r.indices[row][0].item<int64_t>())];
      const double len = d[row].item<double>();
      adj[static_cast<size_t>(a)].emplace_back(b, len);
      adj[static_cast<size_t>(b)].emplace_back(a, len);
      ++added;
    }
  }
}

// Shortest-path lengths from `source` to every node.
std::vector<double> dijkstra(const Adjacency& adj, int64_t source) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> dist(adj.size(), inf);
  using Item = std::pair<double, int64_t>;
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> queue;
  dist[static_cast<size_t>(source)] = 0.0;
  queue.emplace(0.0, source);
  while (!queue.empty()) {
    const auto [d, v] = queue.top();
    queue.pop();
    if (d > dist[static_cast<size_t>(v)]) {
      continue;
    }
    for (const auto& e : adj[static_cast<size_t>(v)]) {
      const double nd = d + e.second;
      if (nd < dist[static_cast<size_t>(e.first)]) {
        dist[static_cast<size_t>(e.first)] = nd;
        queue.emplace(nd, e.first);
      }
    }
  }
  return dist;
}

// Top `count` eigenpairs (descending) of the symmetric float64 matrix a.
std::pair<at::Tensor, at::Tensor> top_eigen(const at::Tensor& a, int64_t count) {
  auto eig = at::linalg_eigh(a, "L");
  const int64_t n = a.size(0);
  return {std::get<0>(eig).narrow(0, n - count, count).flip({0}), std::get<1>(eig).narrow(1, n - count, count).flip({1})};
}

at::Tensor to_like(const at::Tensor& result, const at::Tensor& like) {
  return result.to(like.device(), like.scalar_type());
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Embedding

Embedding::Embedding(EmbeddingOptions options) : options_(std::move(options)) {
  MD_CHECK_VALUE(options_.dims() >= 1, "EmbeddingOptions: dims must be >= 1, got ", options_.dims());
  MD_CHECK_VALUE(options_.k() >= 1, "EmbeddingOptions: k must be >= 1, got ", options_.k());
  MD_CHECK_VALUE(options_.landmarks() >= options_.dims() + 2, "EmbeddingOptions: landmarks must be >= dims + 2 = ",
                 options_.dims() + 2, ", got ", options_.landmarks());
}

at::Tensor Embedding::checked_input(const at::Tensor& x, bool for_fit) const {
  const at::Tensor f = as_points(x, "x");
  if (for_fit) {
    MD_CHECK_VALUE(f.size(0) >= 2, name(), ": needs at least 2 points to fit, got shape ", shape_string(x));
    if (name() != "pca") {
      MD_CHECK_VALUE(options_.k() < f.size(0), name(), ": k must be < the number of points (", f.size(0), "), got ",
                     options_.k());
    }
  } else {
    MD_CHECK_VALUE(fitted_, name(), ": transform() needs a fit first (call fit_transform)");
    MD_CHECK_VALUE(f.size(1) == features_, name(), ": x must have ", features_,
                   " features per point like the fitted data, got shape ", shape_string(x));
  }
  return f;
}

// ---------------------------------------------------------------------------------------------
// PCA

PcaEmbedding::PcaEmbedding(EmbeddingOptions options)
    : Embedding(std::move(options)), pca_(PCAOptions().n_components(options_.dims())) {}

at::Tensor PcaEmbedding::fit_transform(const at::Tensor& x) {
  const auto t0 = Clock::now();
  const at::Tensor f = checked_input(x, true);
  MD_CHECK_VALUE(options_.dims() <= std::min(f.size(0), f.size(1)), "pca: dims must be <= min(N, D) = ",
                 std::min(f.size(0), f.size(1)), ", got ", options_.dims());
  pca_.fit(f);
  features_ = f.size(1);
  fitted_ = true;
  at::Tensor y = pca_.transform(f);
  fit_seconds_ = seconds_since(t0);
  return y;
}

at::Tensor PcaEmbedding::transform(const at::Tensor& x) const { return pca_.transform(checked_input(x, false)); }

// ---------------------------------------------------------------------------------------------
// Isomap

Isomap::Isomap(EmbeddingOptions options) : Embedding(std::move(options)) {}

at::Tensor Isomap::place(const at::Tensor& sq_geodesic) const {
  return -0.5 * at::mm(sq_geodesic - mean_sq_.unsqueeze(0), pinv_);
}

at::Tensor Isomap::fit_transform(const at::Tensor& x) {
  const auto t0 = Clock::now();
  const at::Tensor f = checked_input(x, true).contiguous();
  const int64_t n = f.size(0);
  const int64_t dims = options_.dims();
  MD_CHECK_VALUE(dims < n, "isomap: dims must be < the number of points (", n, "), got ", dims);
  Adjacency adj = knn_adjacency(f, options_.k());
  connect_components(adj, f);
  const int64_t count = std::min(n, options_.landmarks());
  landmarks_.clear();
  at::Tensor geo = at::empty({count, n}, at::TensorOptions().dtype(at::kDouble));
  if (count == n) {
    for (int64_t i = 0; i < n; ++i) {
      landmarks_.push_back(i);
    }
  } else {
    landmarks_.push_back(static_cast<int64_t>(std::mt19937_64(options_.seed())() % static_cast<uint64_t>(n)));
  }
  std::vector<double> nearest(static_cast<size_t>(n), std::numeric_limits<double>::infinity());
  for (int64_t l = 0; l < count; ++l) {
    const std::vector<double> d = dijkstra(adj, landmarks_[static_cast<size_t>(l)]);
    std::copy(d.begin(), d.end(), geo[l].data_ptr<double>());
    if (count < n && l + 1 < count) {
      // Max-min spread: the next landmark is the point farthest from all chosen ones.
      for (int64_t i = 0; i < n; ++i) {
        nearest[static_cast<size_t>(i)] = std::min(nearest[static_cast<size_t>(i)], d[static_cast<size_t>(i)]);
      }
      landmarks_.push_back(std::max_element(nearest.begin(), nearest.end()) - nearest.begin());
    }
  }
  geodesic_ = geo.t().contiguous();  // [n, L]
  const at::Tensor delta = geo.index_select(1, index_tensor(landmarks_, at::kCPU)).pow(2);  // [L, L]
  const at::Tensor b = -0.5 * (delta - delta.mean(0, true) - delta.mean(1, true) + delta.mean());
  auto eig = top_eigen(0.5 * (b + b.t()), std::min(dims, count));
  at::Tensor lambda = std::get<0>(eig);
  const at::Tensor v = fix_column_signs(std::get<1>(eig));
  const double top = std::max(lambda[0].item<double>(), 0.0);
  const at::Tensor keep = lambda > 1e-12 * top;
  pinv_ = at::where(keep.unsqueeze(0), v / lambda.clamp_min(1e-300).sqrt().unsqueeze(0), at::zeros_like(v));
  if (pinv_.size(1) < dims) {
    pinv_ = at::cat({pinv_, at::zeros({count, dims - pinv_.size(1)}, pinv_.options())}, 1);
  }
  mean_sq_ = delta.mean(1);
  points_ = f;
  features_ = f.size(1);
  fitted_ = true;
  at::Tensor y = to_like(place(geodesic_.pow(2)), x);
  fit_seconds_ = seconds_since(t0);
  return y;
}

at::Tensor Isomap::transform(const at::Tensor& x) const {
  const at::Tensor f = checked_input(x, false);
  const int64_t m = f.size(0);
  const int64_t k = std::min(options_.k(), points_.size(0));
  const int64_t count = geodesic_.size(1);
  const KnnResult r = knn(f.to(points_.scalar_type()), points_, k);
  const at::Tensor d = r.distances.to(at::kCPU, at::kDouble);
  const at::Tensor idx = r.indices.to(at::kCPU);
  at::Tensor sq = at::empty({m, count}, at::TensorOptions().dtype(at::kDouble));
  const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 22) / std::max<int64_t>(k * count, 1));
  for (int64_t s = 0; s < m; s += chunk) {
    const int64_t b = std::min(chunk, m - s);
    const at::Tensor via = geodesic_.index_select(0, idx.narrow(0, s, b).reshape({-1})).view({b, k, count}) +
                           d.narrow(0, s, b).unsqueeze(2);
    sq.narrow(0, s, b).copy_(std::get<0>(via.min(1)).pow(2));
  }
  return to_like(place(sq), x);
}

// ---------------------------------------------------------------------------------------------
// Spectral embedding and diffusion maps

SpectralEmbedding::SpectralEmbedding(EmbeddingOptions options, bool diffusion)
    : Embedding(std::move(options)), diffusion_(diffusion) {
  if (diffusion_) {
    MD_CHECK_VALUE(options_.alpha() >= 0.0 && options_.alpha() <= 1.0, "diffusion_map: alpha must be in [0, 1], got ",
                   options_.alpha());
    MD_CHECK_VALUE(std::isfinite(options_.diffusion_time()) && options_.diffusion_time() >= 0.0,
                   "diffusion_map: diffusion_time must be >= 0, got ", options_.diffusion_time());
    alpha_ = options_.alpha();
    time_ = options_.diffusion_time();
  }
  MD_CHECK_VALUE(std::isfinite(options_.bandwidth()) && options_.bandwidth() >= 0.0, name(),
                 ": bandwidth must be >= 0 (0 = automatic), got ", options_.bandwidth());
}

at::Tensor SpectralEmbedding::nystrom(const at::Tensor& x) const {
  const int64_t k = std::min(options_.k(), base_.size(0));
  const KnnResult r = knn(x.to(base_.scalar_type()), base_, k);
  const at::Tensor d2 = r.distances.to(at::kCPU, at::kDouble).pow(2);
  const at::Tensor idx = r.indices.to(at::kCPU);
  // Kernel weights, shifted by the nearest distance (the shift cancels in the normalisation).
  at::Tensor w = (-(d2 - d2.narrow(1, 0, 1)) / eps_).exp() / q_.index_select(0, idx.reshape({-1})).view(idx.sizes()).pow(alpha_);
  w = w / w.sum(1, true);
  const int64_t dims = psi_.size(1);
  const at::Tensor nb = psi_.index_select(0, idx.reshape({-1})).view({idx.size(0), k, dims});
  const at::Tensor lam = eigenvalues_.sign() * eigenvalues_.abs().clamp_min(1e-12);
  return (w.unsqueeze(2) * nb).sum(1) * lam.pow(time_ - 1.0).unsqueeze(0);
}

at::Tensor SpectralEmbedding::fit_transform(const at::Tensor& x) {
  const auto t0 = Clock::now();
  const at::Tensor f = checked_input(x, true).contiguous();
  const int64_t n = f.size(0);
  const int64_t dims = options_.dims();
  const int64_t count = std::min(n, options_.landmarks());
  MD_CHECK_VALUE(options_.k() < count, name(), ": k must be < the number of points solved for (", count, "), got ",
                 options_.k());
  MD_CHECK_VALUE(dims + 1 <= count, name(), ": dims must be < the number of points (", count, "), got ", dims);
  const std::vector<int64_t> base =
      count == n ? std::vector<int64_t>() : manifold_detail::random_subset(n, count, options_.seed());
  const at::Tensor z = count == n ? f : f.index_select(0, index_tensor(base, f.device()));
  const int64_t k = options_.k();
  const KnnResult g = knn_graph(z, k);
  const at::Tensor d = g.distances.to(at::kCPU, at::kDouble);
  const at::Tensor idx = g.indices.to(at::kCPU);
  const double sigma = options_.bandwidth() > 0.0 ? options_.bandwidth() : d.select(1, k - 1).median().item<double>();
  eps_ = sigma > 0.0 ? sigma * sigma : 1.0;
  const auto dopts = at::TensorOptions().dtype(at::kDouble);
  at::Tensor w = at::zeros({count, count}, dopts);
  const at::Tensor rows = at::arange(count, at::kLong).unsqueeze(1).expand({count, k}).reshape({-1});
  const at::Tensor vals = (-d.pow(2) / eps_).exp().reshape({-1});
  w.index_put_({rows, idx.reshape({-1})}, vals);
  w = at::maximum(w, w.t());
  w.diagonal().fill_(1.0);
  q_ = w.sum(1);
  const at::Tensor qa = q_.pow(alpha_);
  const at::Tensor kmat = w / (qa.unsqueeze(1) * qa.unsqueeze(0));
  const at::Tensor deg = kmat.sum(1);
  const at::Tensor rs = deg.rsqrt();
  const at::Tensor s = kmat * rs.unsqueeze(1) * rs.unsqueeze(0);
  auto eig = top_eigen(0.5 * (s + s.t()), dims + 1);
  eigenvalues_ = std::get<0>(eig).narrow(0, 1, dims).contiguous();
  // Right eigenvectors of P = D^-1 K, normalised so that psi^T D psi = sum(D) (psi_0 = 1).
  psi_ = fix_column_signs(std::get<1>(eig).narrow(1, 1, dims) * rs.unsqueeze(1) * std::sqrt(deg.sum().item<double>()))
             .contiguous();
  base_ = z;
  features_ = f.size(1);
  fitted_ = true;
  const at::Tensor lam = eigenvalues_.sign() * eigenvalues_.abs().clamp_min(1e-12);
  const at::Tensor base_coords = psi_ * lam.pow(time_).unsqueeze(0);
  at::Tensor y;
  if (count == n) {
    y = base_coords;
  } else {
    y = at::empty({n, dims}, dopts);
    std::vector<bool> is_base(static_cast<size_t>(n), false);
    for (int64_t i : base) {
      is_base[static_cast<size_t>(i)] = true;
    }
    std::vector<int64_t> rest;
    for (int64_t i = 0; i < n; ++i) {
      if (!is_base[static_cast<size_t>(i)]) {
        rest.push_back(i);
      }
    }
    y.index_copy_(0, index_tensor(base, at::kCPU), base_coords);
    y.index_copy_(0, index_tensor(rest, at::kCPU), nystrom(f.index_select(0, index_tensor(rest, f.device()))));
  }
  fit_seconds_ = seconds_since(t0);
  return to_like(y, x);
}

at::Tensor SpectralEmbedding::transform(const at::Tensor& x) const {
  return to_like(nystrom(checked_input(x, false)), x);
}

// ---------------------------------------------------------------------------------------------
// Factory and quality

const std::vector<std::string>& embedding_names() {
  static const std::vector<std::string> names = {"pca", "isomap", "spectral", "diffusion_map", "tsne"};
  return names;
}

std::unique_ptr<Embedding> make_embedding(const std::string& name, const EmbeddingOptions& options) {
  if (name == "pca") {
    return std::make_unique<PcaEmbedding>(options);
  }
  if (name == "isomap") {
    return std::make_unique<Isomap>(options);
  }
  if (name == "spectral") {
    return std::make_unique<SpectralEmbedding>(options, false);
  }
  if (name == "diffusion_map" || name == "diffusion") {
    return std::make_unique<SpectralEmbedding>(options, true);
  }
  if (name == "tsne" || name == "t-sne") {
    return std::make_unique<Tsne>(options);
  }
  MD_CHECK_VALUE(false, "unknown embedding '", name, "'; known: pca, isomap, spectral, diffusion_map, tsne");
  return nullptr;
}

double knn_preservation(const at::Tensor& high, const at::Tensor& low, int64_t k) {
  check_dim(high, "high", 2);
  check_dim(low, "low", 2);
  MD_CHECK_VALUE(high.size(0) == low.size(0), "knn_preservation: high and low must have the same number of points, got ",
                 shape_string(high), " and ", shape_string(low));
  const at::Tensor a = knn_graph(high, k).indices.to(at::kCPU);
  const at::Tensor b = knn_graph(low, k).indices.to(at::kCPU);
  int64_t kept = 0;
  const int64_t n = a.size(0);
  const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 22) / (k * k));
  for (int64_t s = 0; s < n; s += chunk) {
    const int64_t m = std::min(chunk, n - s);
    kept += (a.narrow(0, s, m).unsqueeze(2) == b.narrow(0, s, m).unsqueeze(1)).any(2).sum().item<int64_t>();
  }
  return static_cast<double>(kept) / static_cast<double>(n * k);
}

}  // namespace manifold_diffusion
