#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/data/augment.h>
#include <manifold_diffusion/data/loader.h>

#include "test_util.h"

#include <ATen/ATen.h>

#include <stdexcept>
#include <vector>

namespace {

namespace md = mdiff::data;

// Sample i is a [2, 3] block filled with i; label i is 1000 + i.
at::Tensor numbered(int64_t n) {
  return at::arange(n, at::kFloat).view({n, 1, 1}).expand({n, 2, 3}).contiguous();
}
at::Tensor numbered_labels(int64_t n) { return at::arange(n, at::kLong) + 1000; }

std::vector<int64_t> ids(const md::Batch& b) {
  const at::Tensor first = b.data.select(1, 0).select(1, 0).to(at::kLong).contiguous();
  return std::vector<int64_t>(first.data_ptr<int64_t>(), first.data_ptr<int64_t>() + first.numel());
}

md::Batch add_noise(md::Batch b, at::Generator& g) {
  b.data = b.data + at::randn(b.data.sizes(), g, at::kFloat);
  b.aug_labels = at::rand({b.data.size(0), 2}, g, at::kFloat);
  return b;
}

void expect_same(const md::Batch& a, const md::Batch& b) {
  EXPECT_EQ(a.epoch, b.epoch);
  EXPECT_EQ(a.index, b.index);
  EXPECT_TRUE(at::equal(a.data, b.data));
  EXPECT_EQ(a.labels.defined(), b.labels.defined());
  if (a.labels.defined()) {
    EXPECT_TRUE(at::equal(a.labels, b.labels));
  }
  EXPECT_EQ(a.aug_labels.defined(), b.aug_labels.defined());
  if (a.aug_labels.defined()) {
    EXPECT_TRUE(at::equal(a.aug_labels, b.aug_labels));
  }
}

TEST(TensorLoader, EverySampleOncePerEpochAndLabelsFollow) {
  const int64_t n = 103;
  md::TensorLoader loader(numbered(n), numbered_labels(n), md::LoaderOptions(10).seed(5));
  EXPECT_EQ(loader.batches_per_epoch(), 11);
  EXPECT_EQ(loader.size(), n);
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    std::vector<int> seen(n, 0);
    for (int64_t i = 0; i < 11; ++i) {
      const md::Batch b = loader.next();
      EXPECT_EQ(b.epoch, epoch);
      EXPECT_EQ(b.index, i);
      EXPECT_EQ(b.data.size(0), i == 10 ? 3 : 10);
      const auto v = ids(b);
      for (size_t k = 0; k < v.size(); ++k) {
        ++seen[static_cast<size_t>(v[k])];
        EXPECT_EQ(b.labels[static_cast<int64_t>(k)].item<int64_t>(), 1000 + v[k]);
      }
    }
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(seen[static_cast<size_t>(i)], 1) << "sample " << i;
  }
}

TEST(TensorLoader, EpochsDifferSeedsRepeatNoShuffleIsInOrder) {
  md::TensorLoader a(numbered(50), md::LoaderOptions(50).seed(1));
  md::TensorLoader b(numbered(50), md::LoaderOptions(50).seed(1));
  md::TensorLoader c(numbered(50), md::LoaderOptions(50).seed(2));
  const auto a0 = ids(a.next()), a1 = ids(a.next());
  EXPECT_NE(a0, a1);
  EXPECT_EQ(ids(b.next()), a0);
  EXPECT_NE(ids(c.next()), a0);
  md::TensorLoader plain(numbered(7), md::LoaderOptions(7).shuffle(false));
  EXPECT_EQ(ids(plain.next()), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_FALSE(plain.next().labels.defined());
}

TEST(TensorLoader, WorkersGiveTheSameBatches) {
  const int64_t n = 57;
  md::TensorLoader serial(numbered(n), numbered_labels(n), md::LoaderOptions(8).seed(3).transform(add_noise));
  md::TensorLoader threaded(numbered(n), numbered_labels(n),
                            md::LoaderOptions(8).seed(3).num_workers(2).prefetch(3).transform(add_noise));
  for (int64_t i = 0; i < 3 * serial.batches_per_epoch() + 2; ++i) {
    expect_same(serial.next(), threaded.next());
  }
}

TEST(TensorLoader, AugmentTransformIsReproducible) {
  md::Augment aug(md::AugmentOptions().xflip(0.5).translate(0.5).translate_pixels(1));
  auto transform = [aug](md::Batch b, at::Generator& g) {
    auto r = aug.apply(b.data, g);
    b.data = r.images;
    b.aug_labels = r.labels;
    return b;
  };
  at::Generator g = mdiff::make_generator(0);
  const at::Tensor images = at::randn({40, 1, 4, 4}, g, at::kFloat);
  md::TensorLoader a(images, md::LoaderOptions(16).transform(transform));
  md::TensorLoader b(images, md::LoaderOptions(16).transform(transform).num_workers(2));
  for (int i = 0; i < 7; ++i) {
    const md::Batch x = a.next();
    ASSERT_EQ(x.aug_labels.size(1), md::Augment::label_dim());
    expect_same(x, b.next());
  }
}

TEST(TensorLoader, StateRoundTripContinuesIdentically) {
  for (int64_t workers : {0, 2}) {
    const int64_t n = 45;
    auto opts = md::LoaderOptions(10).seed(9).num_workers(workers).transform(add_noise);
    md::TensorLoader a(numbered(n), numbered_labels(n), opts);
    for (int i = 0; i < 7; ++i) a.next();  // into the second epoch
    const at::Tensor state = a.state();
    EXPECT_EQ(state.scalar_type(), at::kLong);
    EXPECT_EQ(state[0].item<int64_t>(), 1);
    EXPECT_EQ(state[1].item<int64_t>(), 2);
    md::TensorLoader b(numbered(n), numbered_labels(n), opts);
    b.next();  // workers running, then moved
    b.load_state(state);
    for (int i = 0; i < 9; ++i) expect_same(a.next(), b.next());
    b.reset();
    const at::Tensor s = b.state();
    EXPECT_EQ(s[0].item<int64_t>(), 0);
    EXPECT_EQ(s[1].item<int64_t>(), 0);
  }
}

TEST(TensorLoader, DropLast) {
  md::TensorLoader loader(numbered(25), md::LoaderOptions(10).drop_last(true));
  EXPECT_EQ(loader.batches_per_epoch(), 2);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(loader.next().data.size(0), 10);
  MD_EXPECT_ERROR(md::TensorLoader(numbered(5), md::LoaderOptions(10).drop_last(true)), "drop_last", "10", "5");
}

TEST(TensorLoader, BadOptionsAndStates) {
  MD_EXPECT_ERROR(md::TensorLoader(numbered(5), md::LoaderOptions(0)), "batch_size", "0");
  MD_EXPECT_ERROR(md::TensorLoader(numbered(5), md::LoaderOptions(2).num_workers(-1)), "num_workers", "-1");
  MD_EXPECT_ERROR(md::TensorLoader(numbered(5), md::LoaderOptions(2).prefetch(0)), "prefetch", "0");
  MD_EXPECT_ERROR(md::TensorLoader(numbered(5), at::arange(4), md::LoaderOptions(2)), "labels", "[5]", "[4]");
  MD_EXPECT_ERROR(md::TensorLoader(at::zeros({0, 3}), md::LoaderOptions(2)), "at least one sample");
  md::TensorLoader loader(numbered(5), md::LoaderOptions(2));
  MD_EXPECT_ERROR(loader.load_state(at::zeros({3}, at::kLong)), "state", "[3]");
  MD_EXPECT_ERROR(loader.load_state(at::zeros({2}, at::kFloat)), "state", "Long");
  MD_EXPECT_ERROR(loader.load_state(at::tensor(std::vector<int64_t>{-1, 0})), "epoch", "-1");
  MD_EXPECT_ERROR(loader.load_state(at::tensor(std::vector<int64_t>{0, 3})), "batch index", "[0, 3)", "3");
}

TEST(TensorLoader, TransformExceptionsReachTheCaller) {
  for (int64_t workers : {0, 2}) {
    auto failing = [](md::Batch b, at::Generator&) {
      if (b.epoch == 0 && b.index == 2) throw std::runtime_error("transform failed on batch 2");
      return b;
    };
    md::TensorLoader loader(numbered(20), md::LoaderOptions(4).num_workers(workers).transform(failing));
    loader.next();
    loader.next();
    try {
      loader.next();
      ADD_FAILURE() << "expected an exception";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "transform failed on batch 2");
    }
    EXPECT_EQ(loader.state()[1].item<int64_t>(), 2);  // still at the failed batch
    loader.load_state(at::tensor(std::vector<int64_t>{0, 3}));
    EXPECT_EQ(loader.next().index, 3);
  }
}

}  // namespace
