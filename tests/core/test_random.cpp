#include <manifold_diffusion/core/random.h>

#include "test_util.h"

#include <ATen/ATen.h>

#include <set>

namespace {

TEST(Random, SampleSeedsAreDeterministicAndDistinct) {
  std::set<uint64_t> seen;
  for (int64_t i = 0; i < 1000; ++i) {
    EXPECT_EQ(mdiff::sample_seed(7, i), mdiff::sample_seed(7, i));
    seen.insert(mdiff::sample_seed(7, i));
    seen.insert(mdiff::sample_seed(8, i));
  }
  EXPECT_EQ(seen.size(), 2000u);
  // SplitMix64 reference value (Vigna's splitmix64.c, state 0, first output).
  EXPECT_EQ(mdiff::mix_seed(0), 0xE220A8397B1DCDAFULL);
  MD_EXPECT_ERROR(mdiff::sample_seed(1, -1), "sample index", "-1");
}

TEST(Random, GeneratorsWithTheSameSeedDrawTheSame) {
  auto g1 = mdiff::make_generator(123);
  auto g2 = mdiff::make_generator(123);
  auto g3 = mdiff::make_generator(124);
  const at::Tensor a = at::randn({64}, g1);
  EXPECT_TRUE(at::equal(a, at::randn({64}, g2)));
  EXPECT_FALSE(at::equal(a, at::randn({64}, g3)));
}

TEST(Random, PerSampleNoiseIsBatchInvariant) {
  const auto all = mdiff::make_sample_generators(42, 0, 8);
  const at::Tensor batch = mdiff::randn_per_sample({8, 3, 5, 5}, all);
  const auto tail = mdiff::make_sample_generators(42, 3, 2);
  const at::Tensor part = mdiff::randn_per_sample({2, 3, 5, 5}, tail);
  EXPECT_TRUE(at::equal(batch.slice(0, 3, 5), part));
  // Different base seeds give different noise.
  const auto other = mdiff::make_sample_generators(43, 3, 2);
  EXPECT_FALSE(at::equal(part, mdiff::randn_per_sample({2, 3, 5, 5}, other)));
  // float64 output keeps its own draw; float16 is the float32 draw rounded.
  const auto again = mdiff::make_sample_generators(42, 3, 2);
  const at::Tensor half = mdiff::randn_per_sample({2, 3, 5, 5}, again, at::kHalf);
  EXPECT_EQ(half.scalar_type(), at::kHalf);
  EXPECT_TRUE(at::allclose(half.to(at::kFloat), part, 1e-3, 1e-3));
}

TEST(Random, PerSampleNoiseIsStandardNormal) {
  const int64_t n = 512;
  const int64_t d = 256;
  const auto gens = mdiff::make_sample_generators(5, 0, n);
  const at::Tensor x = mdiff::randn_per_sample({n, d}, gens, at::kDouble);
  const double count = static_cast<double>(n * d);
  // Mean ~ N(0, 1/count), variance ~ N(1, 2/count): 6-sigma bounds.
  EXPECT_NEAR(x.mean().item<double>(), 0.0, 6.0 / std::sqrt(count));
  EXPECT_NEAR(x.var().item<double>(), 1.0, 6.0 * std::sqrt(2.0 / count));
  // Rows are uncorrelated: the mean of row-to-row correlations is ~0.
  const at::Tensor z = (x - x.mean(1, true)) / x.std(1, true, true);
  const at::Tensor corr = z.slice(0, 0, n - 1).mul(z.slice(0, 1, n)).mean(1);
  EXPECT_NEAR(corr.mean().item<double>(), 0.0, 6.0 / std::sqrt(static_cast<double>(d * (n - 1))));
}

TEST(Random, RejectsBadArguments) {
  const auto gens = mdiff::make_sample_generators(1, 0, 2);
  MD_EXPECT_ERROR(mdiff::randn_per_sample({3, 4}, gens), "shape[0] = 3", "got 2");
  MD_EXPECT_ERROR(mdiff::randn_per_sample({2, 4}, gens, at::kLong), "floating", "Long");
  MD_EXPECT_ERROR(mdiff::randn_per_sample({2, -4}, gens), "negative size");
  MD_EXPECT_ERROR(mdiff::make_sample_generators(1, -1, 2), "first_index", "-1");
  MD_EXPECT_ERROR(mdiff::make_generator(1, c10::Device(c10::kMeta)), "unsupported device");
}

TEST(Random, StateRoundTrip) {
  auto g = mdiff::make_generator(9);
  (void)at::randn({10}, g);
  const at::Tensor state = mdiff::generator_state(g);
  const at::Tensor first = at::randn({32}, g);
  mdiff::set_generator_state(g, state);
  EXPECT_TRUE(at::equal(first, at::randn({32}, g)));
  MD_EXPECT_ERROR(mdiff::set_generator_state(g, state.to(at::kFloat)), "state", "Byte");
  EXPECT_THROW(mdiff::set_generator_state(g, state.slice(0, 0, 10)), c10::Error);
}

TEST(Random, ManualSeedMakesGlobalDrawsRepeatable) {
  mdiff::manual_seed(3);
  const at::Tensor a = at::randn({16});
  mdiff::manual_seed(3);
  EXPECT_TRUE(at::equal(a, at::randn({16})));
}

TEST(Random, CudaGeneratorsMatchAcrossBatches_CUDA) {
  MD_SKIP_WITHOUT_CUDA();
  const c10::Device dev(c10::kCUDA, 0);
  const auto all = mdiff::make_sample_generators(42, 0, 4, dev);
  const at::Tensor batch = mdiff::randn_per_sample({4, 16}, all);
  EXPECT_TRUE(batch.is_cuda());
  const auto one = mdiff::make_sample_generators(42, 2, 1, dev);
  EXPECT_TRUE(at::equal(batch.slice(0, 2, 3), mdiff::randn_per_sample({1, 16}, one)));
}

}  // namespace
