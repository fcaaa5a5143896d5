#pragma once

/// \file
/// Timestep embeddings: the sinusoidal embedding of the Transformer as used by DDPM and ADM, and
/// Gaussian Fourier features (Tancik et al. 2020; Song et al. 2021, score SDEs).

#include <manifold_diffusion/core/enum.h>
#include <manifold_diffusion/core/namespace.h>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <ostream>

namespace manifold_diffusion {

/// How a backbone turns the timestep t into features before its time MLP.
enum class TimeEmbedding {
  Sinusoidal,  ///< Fixed sinusoids of geometrically spaced frequencies (sinusoidal_embedding).
  Fourier,     ///< Fixed random Gaussian frequencies (FourierEmbedding).
};

template <>
struct EnumTraits<TimeEmbedding> {
  static constexpr const char* type_name = "TimeEmbedding";
  static constexpr EnumEntry<TimeEmbedding> entries[] = {
      {TimeEmbedding::Sinusoidal, "sinusoidal"},
      {TimeEmbedding::Fourier, "fourier"},
  };
};

/// Sinusoidal timestep embedding in ADM's layout. With half = dim / 2 and frequencies
/// f_i = exp(-log(max_period) * i / half), i = 0 .. half - 1, row n of the result is
/// [cos(t_n f_0), ..., cos(t_n f_{half-1}), sin(t_n f_0), ..., sin(t_n f_{half-1})]; an odd `dim`
/// gets a trailing zero column.
///
/// `t` is a tensor of shape [N] (or a 0-dim tensor, treated as [1]) of any integral or floating
/// dtype; fractional timesteps are allowed. The arguments are formed in float64; the result has
/// shape [N, dim], dtype float64 when `t` is float64 and float32 otherwise, on `t`'s device.
///
/// Example:
/// \code
///   at::Tensor t = at::arange(4, at::kLong) * 250;          // 0, 250, 500, 750
///   at::Tensor e = mdiff::sinusoidal_embedding(t, 128);     // [4, 128], float32
///   // e[n][0] = cos(t_n), e[n][64] = sin(t_n)
/// \endcode
at::Tensor sinusoidal_embedding(const at::Tensor& t, int64_t dim, double max_period = 10000.0);

/// Options of SinusoidalEmbedding.
///
/// Example:
/// \code
///   mdiff::SinusoidalEmbedding emb(mdiff::SinusoidalEmbeddingOptions(64).max_period(1000));
/// \endcode
struct SinusoidalEmbeddingOptions {
  /* implicit */ SinusoidalEmbeddingOptions(int64_t dim) : dim_(dim) {}

  /// Output width (>= 1).
  TORCH_ARG(int64_t, dim);
  /// Longest period of the sinusoids (> 1).
  TORCH_ARG(double, max_period) = 10000.0;
};

/// sinusoidal_embedding as a module without parameters, so a backbone can hold either embedding.
///
/// Example:
/// \code
///   mdiff::SinusoidalEmbedding emb(128);
///   at::Tensor e = emb(at::tensor({0.5, 999.0}));           // [2, 128]
/// \endcode
class SinusoidalEmbeddingImpl : public torch::nn::Cloneable<SinusoidalEmbeddingImpl> {
 public:
  explicit SinusoidalEmbeddingImpl(SinusoidalEmbeddingOptions options);

  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  /// t [N] (integral or floating) -> [N, dim].
  at::Tensor forward(const at::Tensor& t);

  const SinusoidalEmbeddingOptions& options() const { return options_; }

 private:
  SinusoidalEmbeddingOptions options_;
};
TORCH_MODULE(SinusoidalEmbedding);

/// Options of FourierEmbedding.
///
/// Example:
/// \code
///   auto opts = mdiff::FourierEmbeddingOptions(128).scale(16.0).seed(3);
/// \endcode
struct FourierEmbeddingOptions {
  /* implicit */ FourierEmbeddingOptions(int64_t dim) : dim_(dim) {}

  /// Output width; even, >= 2 (dim / 2 frequencies, each giving a sine and a cosine).
  TORCH_ARG(int64_t, dim);
  /// Standard deviation of the random frequencies. 16 is Song et al.'s value for t (or log sigma)
  /// of order 1; for integer timesteps in [0, 1000) use a scale near 0.02.
  TORCH_ARG(double, scale) = 16.0;
  /// Seed of the generator that draws the frequencies: the same seed gives the same embedding.
  TORCH_ARG(uint64_t, seed) = 0;
};

/// Gaussian Fourier features of the timestep: fixed frequencies w ~ N(0, scale^2) of size dim / 2,
/// drawn at construction from a generator seeded with `seed`, and output
/// [sin(2 pi t w), cos(2 pi t w)] of shape [N, dim]. The frequencies are a buffer named `weight`
/// (not trained, but saved and loaded with the module's state and moved by `to()`).
///
/// Reference: Tancik et al. 2020, "Fourier Features Let Networks Learn High Frequency Functions in
/// Low Dimensional Domains"; Song et al. 2021, "Score-Based Generative Modeling through Stochastic
/// Differential Equations".
///
/// Example:
/// \code
///   mdiff::FourierEmbedding emb(mdiff::FourierEmbeddingOptions(64).scale(0.02));
///   at::Tensor e = emb(at::arange(8, at::kLong) * 100);     // [8, 64], float32
/// \endcode
class FourierEmbeddingImpl : public torch::nn::Cloneable<FourierEmbeddingImpl> {
 public:
  explicit FourierEmbeddingImpl(FourierEmbeddingOptions options);

  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  /// t [N] or 0-dim (integral or floating) -> [N, dim] in the buffer's dtype.
  at::Tensor forward(const at::Tensor& t);

  const FourierEmbeddingOptions& options() const { return options_; }
  /// The frequencies w, shape [dim / 2].
  const at::Tensor& weight() const { return weight_; }

 private:
  FourierEmbeddingOptions options_;
  at::Tensor weight_;
};
TORCH_MODULE(FourierEmbedding);

}  // namespace manifold_diffusion
