#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/models/embeddings.h>

#include "test_util.h"

#include <ATen/ATen.h>

#include <cmath>
#include <sstream>

namespace {

// ADM's formula written out with std:: functions, in double.
double expected_entry(double t, int64_t dim, int64_t j, double max_period = 10000.0) {
  const int64_t half = dim / 2;
  if (j >= 2 * half) {
    return 0.0;  // odd dim: the padding column
  }
  const int64_t i = j % half;
  const double freq = std::exp(-std::log(max_period) * static_cast<double>(i) / static_cast<double>(half));
  return j < half ? std::cos(t * freq) : std::sin(t * freq);
}

TEST(Embeddings, SinusoidalHandPickedValues) {
  // dim 4: half 2, frequencies 1 and exp(-log(10000) / 2) = 0.01.
  const at::Tensor e = mdiff::sinusoidal_embedding(at::tensor({0.0, 1.0}, at::kDouble), 4);
  ASSERT_EQ(e.sizes(), (at::IntArrayRef{2, 4}));
  const double want[2][4] = {{1.0, 1.0, 0.0, 0.0}, {std::cos(1.0), std::cos(0.01), std::sin(1.0), std::sin(0.01)}};
  for (int64_t n = 0; n < 2; ++n) {
    for (int64_t j = 0; j < 4; ++j) {
      EXPECT_NEAR(e[n][j].item<double>(), want[n][j], 1e-12) << "row " << n << " column " << j;
    }
  }
}

TEST(Embeddings, SinusoidalMatchesFormula) {
  const std::vector<double> ts = {0.0, 1.0, 2.5, 17.25, 500.0, 999.0};
  for (int64_t dim : {8, 7, 64, 1}) {
    const at::Tensor e = mdiff::sinusoidal_embedding(at::tensor(ts, at::kDouble), dim);
    ASSERT_EQ(e.sizes(), (at::IntArrayRef{static_cast<int64_t>(ts.size()), dim}));
    EXPECT_EQ(e.scalar_type(), at::kDouble);
    for (size_t n = 0; n < ts.size(); ++n) {
      for (int64_t j = 0; j < dim; ++j) {
        EXPECT_NEAR(e[static_cast<int64_t>(n)][j].item<double>(), expected_entry(ts[n], dim, j), 1e-12)
            << "t " << ts[n] << " dim " << dim << " column " << j;
      }
    }
  }
  // A different max_period.
  const at::Tensor e = mdiff::sinusoidal_embedding(at::tensor({3.0}, at::kDouble), 6, 100.0);
  for (int64_t j = 0; j < 6; ++j) {
    EXPECT_NEAR(e[0][j].item<double>(), expected_entry(3.0, 6, j, 100.0), 1e-12);
  }
}

TEST(Embeddings, SinusoidalDtypesAndShapes) {
  const at::Tensor t_long = at::tensor({0, 10, 999}, at::kLong);
  const at::Tensor from_long = mdiff::sinusoidal_embedding(t_long, 16);
  EXPECT_EQ(from_long.scalar_type(), at::kFloat);
  const at::Tensor from_int = mdiff::sinusoidal_embedding(t_long.to(at::kInt), 16);
  const at::Tensor from_float = mdiff::sinusoidal_embedding(t_long.to(at::kFloat), 16);
  EXPECT_TRUE(at::equal(from_long, from_int));
  EXPECT_TRUE(at::equal(from_long, from_float));
  const at::Tensor from_double = mdiff::sinusoidal_embedding(t_long.to(at::kDouble), 16);
  EXPECT_TRUE(at::allclose(from_long.to(at::kDouble), from_double, 0, 1e-6));
  // float32 rounding of a large argument does not creep in: the result is the float64 value rounded.
  EXPECT_NEAR(from_long[2][0].item<double>(), std::cos(999.0), 1e-7);
  // 0-dim t is one row.
  EXPECT_EQ(mdiff::sinusoidal_embedding(at::scalar_tensor(5.0), 8).sizes(), (at::IntArrayRef{1, 8}));
  // The module gives the function's values.
  mdiff::SinusoidalEmbedding module(mdiff::SinusoidalEmbeddingOptions(16).max_period(500));
  EXPECT_TRUE(at::equal(module(t_long), mdiff::sinusoidal_embedding(t_long, 16, 500)));
  EXPECT_TRUE(module->parameters().empty());
}

TEST(Embeddings, SinusoidalRejectsBadArguments) {
  const at::Tensor t = at::arange(4);
  MD_EXPECT_ERROR(mdiff::sinusoidal_embedding(t, 0), "dim must be >= 1", "got 0");
  MD_EXPECT_ERROR(mdiff::sinusoidal_embedding(t, 8, 1.0), "max_period", "got 1");
  MD_EXPECT_ERROR(mdiff::sinusoidal_embedding(at::zeros({2, 3}), 8), "t: expected shape [N]", "[2, 3]");
  MD_EXPECT_ERROR(mdiff::sinusoidal_embedding(at::ones({3}, at::kBool), 8), "t: expected an integral or floating", "Bool");
  MD_EXPECT_ERROR(mdiff::sinusoidal_embedding(at::Tensor(), 8), "t");
  MD_EXPECT_ERROR(mdiff::SinusoidalEmbedding(0), "SinusoidalEmbeddingOptions: dim", "got 0");
}

TEST(Embeddings, FourierIsSeededAndSaved) {
  mdiff::FourierEmbedding a(mdiff::FourierEmbeddingOptions(64).scale(2.0).seed(7));
  mdiff::FourierEmbedding b(mdiff::FourierEmbeddingOptions(64).scale(2.0).seed(7));
  mdiff::FourierEmbedding c(mdiff::FourierEmbeddingOptions(64).scale(2.0).seed(8));
  // Whatever the global generator did in between, the same seed gives the same frequencies.
  mdiff::manual_seed(123);
  (void)at::randn({10});
  mdiff::FourierEmbedding d(mdiff::FourierEmbeddingOptions(64).scale(2.0).seed(7));
  EXPECT_TRUE(at::equal(a->weight(), b->weight()));
  EXPECT_TRUE(at::equal(a->weight(), d->weight()));
  EXPECT_FALSE(at::equal(a->weight(), c->weight()));
  EXPECT_EQ(a->weight().sizes(), (at::IntArrayRef{32}));
  // A buffer: saved with the state, not trained.
  EXPECT_TRUE(a->parameters().empty());
  const auto buffers = a->named_buffers();
  ASSERT_EQ(buffers.size(), 1u);
  EXPECT_EQ(buffers.begin()->key(), "weight");
  // A clone keeps the frequencies.
  auto copy = std::dynamic_pointer_cast<mdiff::FourierEmbeddingImpl>(a->clone());
  ASSERT_TRUE(copy);
  EXPECT_TRUE(at::equal(copy->weight(), a->weight()));
}

TEST(Embeddings, FourierScaleAndFormula) {
  mdiff::FourierEmbedding wide(mdiff::FourierEmbeddingOptions(8192).scale(3.0).seed(1));
  const double std_dev = wide->weight().std().item<double>();
  EXPECT_NEAR(std_dev, 3.0, 0.15);  // 4096 draws: the standard error is about 0.03

  mdiff::FourierEmbedding emb(mdiff::FourierEmbeddingOptions(6).scale(0.5).seed(2));
  const at::Tensor t = at::tensor({0.0, 0.25, 3.0}, at::kDouble);
  const at::Tensor e = emb(t);
  ASSERT_EQ(e.sizes(), (at::IntArrayRef{3, 6}));
  EXPECT_EQ(e.scalar_type(), at::kFloat);
  const double two_pi = 2 * 3.14159265358979323846;
  for (int64_t n = 0; n < 3; ++n) {
    for (int64_t i = 0; i < 3; ++i) {
      const double arg = two_pi * t[n].item<double>() * emb->weight()[i].item<double>();
      EXPECT_NEAR(e[n][i].item<double>(), std::sin(arg), 1e-6);
      EXPECT_NEAR(e[n][i + 3].item<double>(), std::cos(arg), 1e-6);
    }
  }
  // Integer timesteps give the same as their float values.
  EXPECT_TRUE(at::allclose(emb(at::tensor({0, 3}, at::kLong)), emb(at::tensor({0.0, 3.0}))));
  MD_EXPECT_ERROR(mdiff::FourierEmbedding(mdiff::FourierEmbeddingOptions(7)), "dim must be even", "got 7");
  MD_EXPECT_ERROR(mdiff::FourierEmbedding(mdiff::FourierEmbeddingOptions(8).scale(0)), "scale must be positive");
  MD_EXPECT_ERROR(emb(at::zeros({2, 2})), "t: expected shape [N]");
}

TEST(Embeddings, TimeEmbeddingNames) {
  EXPECT_EQ(mdiff::to_string(mdiff::TimeEmbedding::Sinusoidal), "sinusoidal");
  EXPECT_EQ(mdiff::to_string(mdiff::TimeEmbedding::Fourier), "fourier");
  EXPECT_EQ(mdiff::enum_from_string<mdiff::TimeEmbedding>("Fourier"), mdiff::TimeEmbedding::Fourier);
  MD_EXPECT_ERROR(mdiff::enum_from_string<mdiff::TimeEmbedding>("learned"), "unknown TimeEmbedding 'learned'",
                  "sinusoidal, fourier");
  std::ostringstream os;
  os << mdiff::TimeEmbedding::Sinusoidal;
  EXPECT_EQ(os.str(), "sinusoidal");
}

}  // namespace
