#pragma once

/// \file
/// Low-dimensional embeddings of point clouds (for maps of data and samples, and as conditioning
/// coordinates): PCA, Isomap, spectral embedding / diffusion maps and t-SNE behind one interface,
/// each with an out-of-sample rule transform() for points not seen by the fit. Guide:
/// docs/manifold.md.

#include <manifold_diffusion/manifold/pca.h>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace manifold_diffusion {

/// Options of every Embedding; each method reads the fields it needs.
///
/// Example:
/// \code
///   auto opts = mdiff::EmbeddingOptions().dims(2).k(15).seed(3).perplexity(20);
///   auto tsne = mdiff::make_embedding("tsne", opts);
/// \endcode
struct EmbeddingOptions {
  /// Output dimension (>= 1).
  TORCH_ARG(int64_t, dims) = 2;
  /// Neighbours of the kNN graph (Isomap, spectral, diffusion map) and of the out-of-sample rules
  /// (all but PCA); >= 1 and < the number of fitted points.
  TORCH_ARG(int64_t, k) = 12;
  /// Seed of every random choice (landmarks, t-SNE's start); equal seeds give equal results.
  TORCH_ARG(uint64_t, seed) = 0;
  /// Isomap, spectral, diffusion map: with more points than this, the eigenproblem is solved on
  /// this many landmarks (Isomap: max-min geodesic spread; spectral: a seeded random subset) and
  /// extended to the rest (landmark MDS; Nyström). Otherwise on all points. >= dims + 2.
  TORCH_ARG(int64_t, landmarks) = 1000;
  /// Diffusion map: alpha of the kernel normalisation K / (q_i q_j)^alpha, in [0, 1] (0: graph
  /// Laplacian, 1: Laplace–Beltrami, independent of the sampling density).
  TORCH_ARG(double, alpha) = 1.0;
  /// Diffusion map: diffusion time t >= 0; coordinates are lambda_l^t psi_l.
  TORCH_ARG(double, diffusion_time) = 1.0;
  /// Spectral, diffusion map: Gaussian kernel width sigma, exp(-d^2 / sigma^2) on the kNN graph;
  /// 0 means the median distance to the k-th neighbour.
  TORCH_ARG(double, bandwidth) = 0.0;
  /// t-SNE: perplexity (> 0); capped at (N - 1) / 3. P uses the 3 * perplexity nearest neighbours.
  TORCH_ARG(double, perplexity) = 30.0;
  /// t-SNE: gradient-descent iterations (>= 1).
  TORCH_ARG(int64_t, iterations) = 1000;
  /// t-SNE: learning rate; 0 means max(N / early_exaggeration / 4, 50).
  TORCH_ARG(double, learning_rate) = 0.0;
  /// t-SNE: factor on P during the first exaggeration_iterations (>= 1).
  TORCH_ARG(double, early_exaggeration) = 12.0;
  TORCH_ARG(int64_t, exaggeration_iterations) = 250;
  /// t-SNE: Barnes–Hut accuracy (cell width / distance below theta is summarised), in (0, 1].
  TORCH_ARG(double, theta) = 0.5;
  /// t-SNE: exact O(N^2) gradients up to this many points, Barnes–Hut (2-D quadtree) beyond
  /// (Barnes–Hut needs dims = 2; other dims stay exact).
  TORCH_ARG(int64_t, exact_max) = 2000;
};

/// A fitted map from R^D to R^dims. Inputs are [N, ...] floating tensors (flattened to [N, D]),
/// finite, on any device; the work runs in float64 on the CPU (kNN searches on the input's
/// device) and results [N, dims] have the input's dtype and device. Deterministic for a seed.
///
/// Example:
/// \code
///   auto emb = mdiff::make_embedding("isomap", mdiff::EmbeddingOptions().k(10));
///   at::Tensor y = emb->fit_transform(train);     // [N, 2]
///   at::Tensor y_new = emb->transform(queries);   // out-of-sample
/// \endcode
class Embedding {
 public:
  explicit Embedding(EmbeddingOptions options);
  virtual ~Embedding() = default;
  /// "pca", "isomap", "spectral", "diffusion_map" or "tsne".
  virtual std::string name() const = 0;
  /// Fits to x and returns the coordinates of x.
  virtual at::Tensor fit_transform(const at::Tensor& x) = 0;
  /// Coordinates of new points by the method's out-of-sample rule. Needs a fit.
  virtual at::Tensor transform(const at::Tensor& x) const = 0;
  bool fitted() const { return fitted_; }
  const EmbeddingOptions& options() const { return options_; }
  /// Seconds the last fit_transform() took.
  double fit_seconds() const { return fit_seconds_; }

 protected:
  /// Checks x against the fit (after one) and returns it as [N, D].
  at::Tensor checked_input(const at::Tensor& x, bool for_fit) const;
  EmbeddingOptions options_;
  bool fitted_ = false;
  int64_t features_ = 0;
  double fit_seconds_ = 0.0;
};

/// PCA to `dims` components; transform() is PCA::transform.
///
/// Example:
/// \code
///   mdiff::PcaEmbedding pca(mdiff::EmbeddingOptions());
///   at::Tensor y = pca.fit_transform(x);
/// \endcode
class PcaEmbedding : public Embedding {
 public:
  explicit PcaEmbedding(EmbeddingOptions options = {});
  std::string name() const override { return "pca"; }
  at::Tensor fit_transform(const at::Tensor& x) override;
  at::Tensor transform(const at::Tensor& x) const override;
  const PCA& pca() const { return pca_; }

 private:
  PCA pca_;
};

/// Isomap (Tenenbaum et al. 2000): geodesic distances by Dijkstra on the symmetrised kNN graph
/// (components joined by their closest pair of points), then classical MDS. With more than
/// `landmarks` points it is landmark Isomap (de Silva and Tenenbaum 2003): landmarks spread by
/// max-min geodesic distance, MDS on them, and every point placed by distance-based triangulation.
/// transform(): geodesic distances to the landmarks through the k nearest fitted points, then the
/// same triangulation (a Nyström extension of MDS). Cost O(L N k log N + L^3) time, O(N L) memory
/// (L = number of landmarks).
///
/// Example:
/// \code
///   mdiff::Isomap iso(mdiff::EmbeddingOptions().k(10).landmarks(500));
///   at::Tensor y = iso.fit_transform(swiss_roll);   // unrolled sheet [N, 2]
/// \endcode
class Isomap : public Embedding {
 public:
  explicit Isomap(EmbeddingOptions options = {});
  std::string name() const override { return "isomap"; }
  at::Tensor fit_transform(const at::Tensor& x) override;
  at::Tensor transform(const at::Tensor& x) const override;
  /// Indices of the landmarks among the fitted points.
  const std::vector<int64_t>& landmark_indices() const { return landmarks_; }

 private:
  at::Tensor place(const at::Tensor& sq_geodesic) const;  // [M, L] -> [M, dims]
  at::Tensor points_;      // fitted points [N, D] (input dtype and device)
  at::Tensor geodesic_;    // [N, L] float64
  at::Tensor pinv_;        // [L, dims]
  at::Tensor mean_sq_;     // [L]
  std::vector<int64_t> landmarks_;
};

/// Spectral embedding (Laplacian eigenmaps; Belkin and Niyogi 2003) and diffusion maps (Coifman and
/// Lafon 2006) on a Gaussian kernel restricted to the symmetrised kNN graph (with self-loops):
/// K_ij = exp(-d_ij^2 / sigma^2), alpha-normalised, turned into a Markov matrix P; coordinates are
/// the right eigenvectors psi_1..psi_dims of P after the constant one, scaled by lambda^t for the
/// diffusion map ("spectral" is alpha = 0, t = 0). Solved densely (symmetric eigen-decomposition)
/// on up to `landmarks` points; other points, and transform(), use the Nyström extension
/// psi_l(x) = (1 / lambda_l) sum_j p(x, j) psi_l(j) over the k nearest fitted points.
///
/// Example:
/// \code
///   mdiff::SpectralEmbedding dm(mdiff::EmbeddingOptions().alpha(1).diffusion_time(2), /*diffusion=*/true);
///   at::Tensor y = dm.fit_transform(x);
/// \endcode
class SpectralEmbedding : public Embedding {
 public:
  explicit SpectralEmbedding(EmbeddingOptions options = {}, bool diffusion = false);
  std::string name() const override { return diffusion_ ? "diffusion_map" : "spectral"; }
  at::Tensor fit_transform(const at::Tensor& x) override;
  at::Tensor transform(const at::Tensor& x) const override;
  /// Eigenvalues lambda_1..lambda_dims of P (the trivial 1 left out).
  const at::Tensor& eigenvalues() const { return eigenvalues_; }

 private:
  at::Tensor nystrom(const at::Tensor& x) const;  // [M, D] -> [M, dims] (psi scaled by lambda^t)
  bool diffusion_;
  double alpha_ = 0.0;
  double time_ = 0.0;
  double eps_ = 1.0;
  at::Tensor base_;         // fitted (eigen-solved) points [L, D]
  at::Tensor q_;            // [L] kernel degrees before the alpha normalisation
  at::Tensor psi_;          // [L, dims] right eigenvectors
  at::Tensor eigenvalues_;  // [dims]
};

/// t-SNE (van der Maaten and Hinton 2008): perplexity-calibrated affinities on the 3 * perplexity
/// nearest neighbours, symmetrised; Student-t similarities in the map; gradient descent with
/// momentum (0.5, then 0.8), gains, and early exaggeration. Exact gradients up to `exact_max`
/// points, Barnes–Hut with a 2-D quadtree (van der Maaten 2014) beyond. Starts from the PCA
/// coordinates scaled to standard deviation 1e-4, so it is deterministic. transform(): each new
/// point is the Gaussian-weighted mean of the map coordinates of its k nearest fitted points,
/// weights exp(-(d_j^2 - d_1^2) / mean(d^2)) (a point equal to a fitted point lands near it, not
/// exactly on it). Cost per iteration O(N^2) exact, O(N log N) Barnes–Hut.
///
/// Example:
/// \code
///   mdiff::Tsne tsne(mdiff::EmbeddingOptions().perplexity(30).iterations(750));
///   at::Tensor y = tsne.fit_transform(features);
///   double kl = tsne.kl_divergence();
/// \endcode
class Tsne : public Embedding {
 public:
  explicit Tsne(EmbeddingOptions options = {});
  std::string name() const override { return "tsne"; }
  at::Tensor fit_transform(const at::Tensor& x) override;
  at::Tensor transform(const at::Tensor& x) const override;
  /// KL(P || Q) at the end of the fit (exact mode), or its Barnes–Hut estimate.
  double kl_divergence() const { return kl_; }
  /// Whether the last fit used Barnes–Hut.
  bool barnes_hut() const { return barnes_hut_; }

 private:
  at::Tensor points_;  // fitted points [N, D] (input dtype and device)
  at::Tensor coords_;  // [N, dims] float64
  double kl_ = 0.0;
  bool barnes_hut_ = false;
};

/// The embedding named `name`: "pca", "isomap", "spectral", "diffusion_map" (or "diffusion"),
/// "tsne" (or "t-sne"). Unknown names fail with the list of known ones.
///
/// Example:
/// \code
///   std::unique_ptr<mdiff::Embedding> e = mdiff::make_embedding("diffusion_map");
/// \endcode
std::unique_ptr<Embedding> make_embedding(const std::string& name, const EmbeddingOptions& options = {});

/// The names make_embedding() knows.
///
/// Example:
/// \code
///   for (const auto& n : mdiff::embedding_names()) fmt::print("{}\n", n);
/// \endcode
const std::vector<std::string>& embedding_names();

/// Neighbourhood preservation of a map: the mean over points of |kNN_high(i) ∩ kNN_low(i)| / k,
/// where kNN excludes the point itself; 1 means every k-neighbourhood is kept. high [N, D] and
/// low [N, d] are the same points before and after embedding. Needs 1 <= k < N.
///
/// Example:
/// \code
///   double kept = mdiff::knn_preservation(x, tsne.fit_transform(x), 10);
/// \endcode
double knn_preservation(const at::Tensor& high, const at::Tensor& low, int64_t k);

}  // namespace manifold_diffusion
