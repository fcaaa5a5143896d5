#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/data/augment.h>

#include "test_util.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstdlib>

namespace {

namespace md = mdiff::data;

at::Tensor random_images(int64_t n, int64_t c, int64_t h, int64_t w, uint64_t seed = 3) {
  at::Generator g = mdiff::make_generator(seed);
  return at::randn({n, c, h, w}, g, at::kFloat);
}

TEST(Augment, ZeroProbabilityIsIdentityWithZeroLabels) {
  const at::Tensor x = random_images(6, 2, 8, 8);
  md::Augment aug(md::AugmentOptions().rotate_degrees(30).scale_range(0.5, 2.0).translate_pixels(3));
  at::Generator gen = mdiff::make_generator(1);
  const md::AugmentResult r = aug.apply(x, gen);
  EXPECT_TRUE(at::equal(r.images, x));
  EXPECT_EQ(r.labels.sizes(), (at::IntArrayRef{6, md::Augment::label_dim()}));
  EXPECT_EQ(r.labels.scalar_type(), at::kFloat);
  EXPECT_EQ(r.labels.abs().sum().item<double>(), 0.0);
}

TEST(Augment, FullXflipEqualsFlipAndSetsFlag) {
  const at::Tensor x = random_images(4, 1, 5, 7);
  md::Augment aug(md::AugmentOptions().xflip(1.0));
  at::Generator gen = mdiff::make_generator(2);
  const md::AugmentResult r = aug.apply(x, gen);
  EXPECT_TRUE(at::equal(r.images, at::flip(x, {3})));
  EXPECT_TRUE(at::equal(r.labels.select(1, 0), at::ones({4})));
  EXPECT_EQ(r.labels.narrow(1, 1, 6).abs().sum().item<double>(), 0.0);
}

TEST(Augment, FlipLabelsMatchWhatWasApplied) {
  const at::Tensor x = random_images(64, 1, 6, 6);
  md::Augment aug(md::AugmentOptions().xflip(0.5).yflip(0.5));
  at::Generator gen = mdiff::make_generator(5);
  const md::AugmentResult r = aug.apply(x, gen);
  int64_t flipped = 0;
  for (int64_t i = 0; i < 64; ++i) {
    at::Tensor expect = x[i];
    const bool fx = r.labels[i][0].item<float>() == 1.0f;
    const bool fy = r.labels[i][1].item<float>() == 1.0f;
    if (fx) expect = at::flip(expect, {2});
    if (fy) expect = at::flip(expect, {1});
    flipped += fx + fy;
    EXPECT_TRUE(at::equal(r.images[i], expect)) << "sample " << i;
  }
  EXPECT_GT(flipped, 30);
  EXPECT_LT(flipped, 98);
}

TEST(Augment, TranslationMovesABrightPixel) {
  const int64_t n = 32;
  at::Tensor x = at::zeros({n, 1, 9, 11});
  x.select(2, 4).select(2, 5).fill_(1.0);  // pixel (row 4, col 5) in every image
  for (auto padding : {md::AugmentPadding::Zeros, md::AugmentPadding::Reflect}) {
    md::Augment aug(md::AugmentOptions().translate(1.0).translate_pixels(3).padding(padding));
    at::Generator gen = mdiff::make_generator(7);
    const md::AugmentResult r = aug.apply(x, gen);
    bool any_shift = false;
    for (int64_t i = 0; i < n; ++i) {
      const auto tx = static_cast<int64_t>(std::lround(r.labels[i][2].item<double>() * 11));
      const auto ty = static_cast<int64_t>(std::lround(r.labels[i][3].item<double>() * 9));
      EXPECT_LE(std::abs(tx), 3);
      EXPECT_LE(std::abs(ty), 3);
      any_shift = any_shift || tx != 0 || ty != 0;
      at::Tensor expect = at::zeros({1, 9, 11});
      expect[0][4 + ty][5 + tx] = 1.0;
      EXPECT_TRUE(at::equal(r.images[i], expect)) << "sample " << i << " tx " << tx << " ty " << ty;
    }
    EXPECT_TRUE(any_shift);
  }
}

// A smooth, asymmetric blob: small angle errors change it only a little.
at::Tensor blob(int64_t size, double row = 4, double col = 10) {
  const at::Tensor r = at::arange(size, at::kFloat).view({size, 1});
  const at::Tensor c = at::arange(size, at::kFloat).view({1, size});
  return at::exp(-((r - row) * (r - row) + (c - col) * (c - col)) / 8.0).view({1, 1, size, size});
}

TEST(Augment, QuarterTurnMatchesRot90) {
  // Angles are uniform in [-90, 90]; among many copies, the one turned closest to +90 degrees must
  // match at::rot90 (counter-clockwise) up to interpolation of the small remaining angle.
  const int64_t n = 400;
  const at::Tensor x = blob(16).expand({n, 1, 16, 16}).contiguous();
  for (auto padding : {md::AugmentPadding::Zeros, md::AugmentPadding::Reflect}) {
    md::Augment aug(md::AugmentOptions().rotate(1.0).rotate_degrees(90).padding(padding));
    at::Generator gen = mdiff::make_generator(11);
    const md::AugmentResult r = aug.apply(x, gen);
    const int64_t i = r.labels.select(1, 5).argmax().item<int64_t>();
    const double angle = std::atan2(r.labels[i][5].item<double>(), r.labels[i][4].item<double>() + 1.0);
    ASSERT_NEAR(angle * 180 / 3.14159265358979, 90.0, 1.5);
    const at::Tensor expect = at::rot90(x[i], 1, {1, 2});
    EXPECT_LT((r.images[i] - expect).abs().max().item<double>(), 0.1);
    EXPECT_GT((x[i] - expect).abs().max().item<double>(), 0.5);  // the check can tell
    EXPECT_NEAR(r.labels[i][6].item<double>(), 0.0, 1e-7);
  }
}

TEST(Augment, ZoomLabelsAndEffect) {
  md::Augment aug(md::AugmentOptions().scale(1.0).scale_range(2.0, 2.0).padding(md::AugmentPadding::Zeros));
  at::Generator gen = mdiff::make_generator(4);
  const at::Tensor x = blob(32, 15.5, 15.5);  // centred
  const md::AugmentResult r = aug.apply(x, gen);
  EXPECT_NEAR(r.labels[0][6].item<double>(), 1.0, 1e-6);
  EXPECT_NEAR(r.labels[0][4].item<double>(), 0.0, 1e-7);
  // Magnified twice about the centre: the blob's mass grows about four times.
  EXPECT_NEAR(r.images.sum().item<double>() / x.sum().item<double>(), 4.0, 0.4);
}

TEST(Augment, SameGeneratorStateSameOutput) {
  const at::Tensor x = random_images(16, 3, 12, 12);
  md::Augment aug(md::AugmentOptions()
                      .xflip(0.5)
                      .yflip(0.3)
                      .translate(0.5)
                      .rotate(0.5)
                      .rotate_degrees(20)
                      .scale(0.5)
                      .scale_range(0.8, 1.25));
  at::Generator g1 = mdiff::make_generator(9);
  const at::Tensor state = mdiff::generator_state(g1);
  const md::AugmentResult a = aug.apply(x, g1);
  const md::AugmentResult b = aug.apply(x, g1);  // the generator moved on
  at::Generator g2 = mdiff::make_generator(123);
  mdiff::set_generator_state(g2, state);
  const md::AugmentResult c = aug.apply(x, g2);
  EXPECT_TRUE(at::equal(a.images, c.images));
  EXPECT_TRUE(at::equal(a.labels, c.labels));
  EXPECT_FALSE(at::equal(a.labels, b.labels));
  // Samples without a rotation or zoom label were not resampled.
  for (int64_t i = 0; i < 16; ++i) {
    if (a.labels[i].narrow(0, 4, 3).abs().sum().item<double>() == 0.0) {
      at::Tensor expect = x[i];
      if (a.labels[i][0].item<float>() == 1.0f) expect = at::flip(expect, {2});
      if (a.labels[i][1].item<float>() == 1.0f) expect = at::flip(expect, {1});
      if (a.labels[i][2].item<float>() == 0.0f && a.labels[i][3].item<float>() == 0.0f) {
        EXPECT_TRUE(at::equal(a.images[i], expect)) << "sample " << i;
      }
    }
  }
}

TEST(Augment, BadOptionsAndInputs) {
  MD_EXPECT_ERROR(md::Augment(md::AugmentOptions().xflip(1.5)), "xflip", "1.5");
  MD_EXPECT_ERROR(md::Augment(md::AugmentOptions().translate(-0.1)), "translate", "-0.1");
  MD_EXPECT_ERROR(md::Augment(md::AugmentOptions().rotate_degrees(-5)), "rotate_degrees", "-5");
  MD_EXPECT_ERROR(md::Augment(md::AugmentOptions().translate_pixels(-1)), "translate_pixels", "-1");
  MD_EXPECT_ERROR(md::Augment(md::AugmentOptions().scale_range(1.2, 0.8)), "scale_min", "1.2", "scale_max");
  MD_EXPECT_ERROR(md::Augment(md::AugmentOptions().scale_range(0.0, 1.0)), "scale_min", "positive");
  md::Augment aug(md::AugmentOptions().translate(1.0).translate_pixels(8));
  at::Generator gen = mdiff::make_generator(0);
  MD_EXPECT_ERROR(aug.apply(at::zeros({2, 8, 8}), gen), "images", "4 dimensions");
  MD_EXPECT_ERROR(aug.apply(at::zeros({2, 1, 8, 8}, at::kLong), gen), "images", "floating");
  MD_EXPECT_ERROR(aug.apply(at::zeros({2, 1, 8, 8}), gen), "translate_pixels", "8");
}

}  // namespace
