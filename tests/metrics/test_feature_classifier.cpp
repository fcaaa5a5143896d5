#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/metrics/feature_classifier.h>

#include "data/data_test_util.h"
#include "test_util.h"

#include <ATen/ATen.h>
#include <torch/utils.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

namespace {

namespace mm = mdiff::metrics;
namespace md = mdiff::data;

constexpr int64_t kSize = 16;

// Class 0: a bright horizontal bar at a random row; class 1: a vertical bar; plus noise.
md::LabeledImages bars(int64_t n, uint64_t seed) {
  at::Generator g = mdiff::make_generator(seed);
  at::Tensor images = 0.3 * at::randn({n, 1, kSize, kSize}, g, at::kFloat) - 0.5;
  const at::Tensor labels = at::randint(0, 2, {n}, g, at::kLong);
  const at::Tensor where = at::randint(2, kSize - 2, {n}, g, at::kLong);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = where[i].item<int64_t>();
    if (labels[i].item<int64_t>() == 0) {
      images[i][0].select(0, k).add_(1.5);
    } else {
      images[i][0].select(1, k).add_(1.5);
    }
  }
  return {images, labels};
}

mm::ImageClassifierOptions small_options() {
  return mm::ImageClassifierOptions().image_size(kSize).num_classes(2).width(4).feature_dim(16);
}

// One small classifier trained on the bars, shared by the tests.
mm::ImageClassifier& trained() {
  static mm::ImageClassifier net = [] {
    mdiff::manual_seed(0);
    mm::ImageClassifier m(small_options());
    mm::train_classifier(m, bars(768, 1), bars(256, 2),
                         mm::ClassifierTrainOptions().epochs(3).batch_size(32).lr(3e-3).seed(1));
    return m;
  }();
  return net;
}

TEST(ImageClassifier, ShapesAndInputErrors) {
  mm::ImageClassifier net(mm::ImageClassifierOptions().width(4).feature_dim(8));
  net->eval();
  const at::Tensor x = at::randn({3, 1, 28, 28});
  EXPECT_EQ(net->forward(x).sizes(), (at::IntArrayRef{3, 10}));
  EXPECT_EQ(net->features(x).sizes(), (at::IntArrayRef{3, 8}));
  MD_EXPECT_ERROR(net->forward(at::randn({3, 1, 32, 32})), "x", "[3, 1, 32, 32]");
  MD_EXPECT_ERROR(net->forward(at::randn({3, 28, 28})), "x", "[3, 28, 28]");
  MD_EXPECT_ERROR(net->forward(at::zeros({3, 1, 28, 28}, at::kLong)), "x", "floating");
  MD_EXPECT_ERROR(mm::ImageClassifier(mm::ImageClassifierOptions().num_classes(1)), "num_classes", "1");
  MD_EXPECT_ERROR(mm::ImageClassifier(mm::ImageClassifierOptions().width(0)), "width", "0");
  MD_EXPECT_ERROR(mm::extract_features(net, at::randn({2, 3, 28, 28})), "images", "[2, 3, 28, 28]");
  MD_EXPECT_ERROR(mm::ClassifierTrainOptions().epochs(0).validate(), "epochs", "0");
}

TEST(ImageClassifier, LearnsASyntheticTwoClassTask) {
  mm::ImageClassifier& net = trained();
  EXPECT_FALSE(net->is_training());
  EXPECT_GE(mm::classifier_accuracy(net, bars(512, 3)), 0.95);
}

TEST(ImageClassifier, TrainReportAndLabelErrors) {
  mdiff::manual_seed(0);
  mm::ImageClassifier net(small_options());
  int64_t calls = 0;
  const auto report =
      mm::train_classifier(net, bars(64, 4), bars(32, 5),
                           mm::ClassifierTrainOptions().epochs(2).batch_size(16).translate(0.5).on_epoch(
                               [&](int64_t, double loss, double acc) {
                                 ++calls;
                                 EXPECT_TRUE(std::isfinite(loss));
                                 EXPECT_GE(acc, 0.0);
                               }));
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(report.epochs, 2);
  EXPECT_EQ(report.epoch_accuracy.size(), 2u);
  EXPECT_EQ(report.test_accuracy, report.epoch_accuracy.back());
  EXPECT_GT(report.train_seconds, 0.0);
  md::LabeledImages bad = bars(8, 6);
  bad.labels[0] = 5;
  MD_EXPECT_ERROR(mm::train_classifier(net, bad, bars(8, 7)), "train", "5");
}

TEST(FeatureFD, ZeroForTheSameSetAndGrowsWithNoise) {
  mm::ImageClassifier& net = trained();
  const at::Tensor x = bars(400, 8).images;
  at::Generator g = mdiff::make_generator(9);
  const at::Tensor noise = at::randn(x.sizes(), g, at::kFloat);
  const double same = mm::feature_fd(net, x, x, 128);
  const double d1 = mm::feature_fd(net, x, x + 0.2 * noise);
  const double d2 = mm::feature_fd(net, x, x + 0.6 * noise);
  const double d3 = mm::feature_fd(net, x, x + 1.5 * noise);
  EXPECT_NEAR(same, 0.0, 1e-6 * (1 + d1));
  EXPECT_GT(d1, 0.0);
  EXPECT_LT(d1, d2);
  EXPECT_LT(d2, d3);
  // Another sample of the same distribution is closer than a noised copy.
  EXPECT_LT(mm::feature_fd(net, x, bars(400, 10).images), d2);
  EXPECT_EQ(mm::extract_features(net, x, 64).sizes(), (at::IntArrayRef{400, 16}));
  MD_EXPECT_ERROR(mm::feature_fd(net, x, x.narrow(0, 0, 1)), "y", "N >= 2");
}

TEST(ImageClassifier, SaveLoadRoundTrip) {
  mdiff_test::TempDir dir;
  mm::ImageClassifier& net = trained();
  const std::string path = dir.file("classifier.pt");
  mm::save_classifier(net, path);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp." + std::to_string(::getpid())));
  mm::ImageClassifier back = mm::load_classifier(path);
  EXPECT_TRUE(back->options() == net->options());
  EXPECT_FALSE(back->is_training());
  torch::NoGradGuard no_grad;
  const at::Tensor x = bars(20, 11).images;
  EXPECT_TRUE(at::equal(net->forward(x), back->forward(x)));
  // load_or_train takes the cached file when the options match, and refuses when they do not.
  mm::ImageClassifier cached = mm::load_or_train_fashion_classifier(path, {}, "/nonexistent", small_options());
  EXPECT_TRUE(at::equal(net->forward(x), cached->forward(x)));
  MD_EXPECT_ERROR(mm::load_or_train_fashion_classifier(path, {}, "/nonexistent", mm::ImageClassifierOptions()),
                  path.c_str(), "other options");
}

TEST(ImageClassifier, MissingOrCorruptFile) {
  mdiff_test::TempDir dir;
  MD_EXPECT_ERROR(mm::load_classifier(dir.file("absent.pt")), "no classifier file", "absent.pt");
  const std::string junk = dir.file("junk.pt");
  {
    std::ofstream f(junk, std::ios::binary);
    f << "this is not a classifier";
  }
  MD_EXPECT_ERROR(mm::load_classifier(junk), "junk.pt", "not a readable classifier file");
  // A truncated real file.
  const std::string cut = dir.file("cut.pt");
  mm::save_classifier(trained(), cut);
  const auto size = std::filesystem::file_size(cut);
  std::filesystem::resize_file(cut, size / 2);
  MD_EXPECT_ERROR(mm::load_classifier(cut), "cut.pt", "not a readable classifier file");
}

}  // namespace
