// Trainer, LR schedule, checkpoints and callbacks.

#include <manifold_diffusion/manifold_diffusion.h>

#include "models/model_test_util.h"
#include "test_util.h"

#include <ATen/ATen.h>

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

namespace fs = std::filesystem;

namespace {

using mdiff_test::SmallNetworkTest;

std::string temp_dir(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("md_trainer_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

// Gaussian data N(0, s^2 I) in `dim` dimensions with class labels (for label-dropout coverage).
struct Toy {
  at::Tensor x, labels;
};
Toy gaussian_toy(int64_t n, int64_t dim, double s, uint64_t seed) {
  at::Generator g = mdiff::make_generator(seed);
  Toy t;
  t.x = at::randn({n, dim}, g, at::TensorOptions(at::kFloat)) * s;
  t.labels = at::randint(0, 3, {n}, g, at::TensorOptions(at::kLong));
  return t;
}

struct ToyRun {
  mdiff::MLPDenoiser net{nullptr};
  std::unique_ptr<mdiff::Trainer> trainer;
};

ToyRun make_run(const mdiff::TrainerOptions& opts, const Toy& data, uint64_t init_seed, double dropout = 0.1,
             int64_t classes = 3) {
  at::manual_seed(init_seed);
  ToyRun r;
  r.net = mdiff::MLPDenoiser(
      mdiff::MLPDenoiserOptions(data.x.size(1)).hidden(32).num_blocks(2).time_embed_dim(16).num_classes(classes)
          .dropout(dropout).zero_init_output(false));
  r.trainer = std::make_unique<mdiff::Trainer>(
      opts, r.net.ptr(), mdiff::network_function(r.net), mdiff::NoiseSchedule::linear(100, 1e-3, 0.2),
      mdiff::DenoiserOptions(), mdiff::random_batches(data.x, classes > 0 ? data.labels : at::Tensor(), 16, 5),
      mdiff::random_batches(data.x, classes > 0 ? data.labels : at::Tensor(), 64, 6));
  return r;
}

void expect_same_module(torch::nn::Module& a, torch::nn::Module& b) {
  const auto pa = a.named_parameters(true);
  const auto pb = b.named_parameters(true);
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& p : pa) {
    EXPECT_TRUE(at::equal(p.value(), pb[p.key()])) << "parameter " << p.key() << " differs";
  }
}

}  // namespace

TEST(LRSchedule, WarmupThenCosineToMinimum) {
  const mdiff::LRSchedule s(mdiff::LRScheduleOptions(110).warmup_steps(10).min_factor(0.2));
  EXPECT_DOUBLE_EQ(s.factor(0), 0.1);
  EXPECT_DOUBLE_EQ(s.factor(4), 0.5);
  EXPECT_DOUBLE_EQ(s.factor(10), 1.0);
  EXPECT_NEAR(s.factor(60), 0.6, 1e-12);  // half way: (1 + 0.2) / 2
  EXPECT_NEAR(s.factor(110), 0.2, 1e-12);
  EXPECT_NEAR(s.factor(500), 0.2, 1e-12);
  for (int64_t k = 11; k < 110; ++k) EXPECT_LE(s.factor(k), s.factor(k - 1) + 1e-15);
}

TEST(LRSchedule, LinearAndConstant) {
  const mdiff::LRSchedule lin(mdiff::LRScheduleOptions(100).decay(mdiff::LRDecay::Linear));
  EXPECT_DOUBLE_EQ(lin.factor(0), 1.0);
  EXPECT_NEAR(lin.factor(25), 0.75, 1e-12);
  const mdiff::LRSchedule c(mdiff::LRScheduleOptions(100).warmup_steps(4).decay(mdiff::LRDecay::Constant));
  EXPECT_DOUBLE_EQ(c.factor(1), 0.5);
  EXPECT_DOUBLE_EQ(c.factor(99), 1.0);
}

TEST(LRSchedule, BadOptions) {
  MD_EXPECT_ERROR(mdiff::LRSchedule(mdiff::LRScheduleOptions(0)), "total_steps", "0");
  MD_EXPECT_ERROR(mdiff::LRSchedule(mdiff::LRScheduleOptions(10).warmup_steps(-1)), "warmup_steps", "-1");
  MD_EXPECT_ERROR(mdiff::LRSchedule(mdiff::LRScheduleOptions(10).min_factor(1.5)), "min_factor", "1.5");
  MD_EXPECT_ERROR(mdiff::LRSchedule(mdiff::LRScheduleOptions(10)).factor(-3), "step", "-3");
}

TEST(TrainerOptions, BadValuesNameTheOption) {
  MD_EXPECT_ERROR(mdiff::TrainerOptions(0).validate(), "steps", "0");
  MD_EXPECT_ERROR(mdiff::TrainerOptions(10).lr(-1).validate(), "lr", "-1");
  MD_EXPECT_ERROR(mdiff::TrainerOptions(10).grad_accumulation(0).validate(), "grad_accumulation");
  MD_EXPECT_ERROR(mdiff::TrainerOptions(10).ema_decay(1.0).validate(), "ema_decay", "1");
  MD_EXPECT_ERROR(mdiff::TrainerOptions(10).label_dropout(2).validate(), "label_dropout", "2");
  MD_EXPECT_ERROR(mdiff::TrainerOptions(10).checkpoint_every(5).validate(), "checkpoint_every", "out_dir");
  MD_EXPECT_ERROR(mdiff::TrainerOptions(10).keep_last(0).validate(), "keep_last", "0");
}

TEST_F(SmallNetworkTest, TrainerBf16OnCpuIsRejected) {
  const Toy data = gaussian_toy(64, 2, 1.0, 1);
  MD_EXPECT_ERROR(make_run(mdiff::TrainerOptions(5).precision(mdiff::Precision::BF16), data, 0), "bf16", "cpu");
}

// For N(0, s^2 I) data the Bayes-optimal eps prediction is sqrt(1 - ab) x_t / (ab s^2 + 1 - ab), with
// per-dimension error ab s^2 / (ab s^2 + 1 - ab). A trained network's validation loss must come close
// to the mean of that over the timesteps (and cannot be far below it).
TEST_F(SmallNetworkTest, TrainerApproachesTheBayesLossOnGaussianData) {
  const double s = 0.5;
  const Toy data = gaussian_toy(4096, 2, s, 3);
  auto opts = mdiff::TrainerOptions(1500).lr(3e-3).warmup_steps(50).ema_decay(0.99).validation_batches(32);
  ToyRun r = make_run(opts, data, 0, 0.0, 0);
  const double before = r.trainer->validate();
  const mdiff::TrainResult res = r.trainer->fit();
  EXPECT_EQ(res.steps, 1500);
  EXPECT_EQ(res.skipped, 0);
  const double after = r.trainer->validate();
  const at::Tensor ab = r.trainer->denoiser().schedule().alphas_cumprod();
  const double bayes = (ab * s * s / (ab * s * s + 1 - ab)).mean().item<double>();
  EXPECT_LT(after, before * 0.5);
  EXPECT_LT(after, bayes * 1.15) << "bayes " << bayes;
  EXPECT_GT(after, bayes * 0.85) << "bayes " << bayes;
}

// A run killed after its step-5 checkpoint and resumed by a new process (new trainer, new model with
// other initial weights) ends with exactly the weights, EMA and optimiser moments of an uninterrupted
// run: data order, timesteps, noise, dropout and label dropout all continue from the checkpoint.
TEST_F(SmallNetworkTest, KilledAndResumedRunEqualsUninterruptedRun) {
  const Toy data = gaussian_toy(256, 3, 1.0, 2);
  const std::string dir_a = temp_dir("full");
  const std::string dir_b = temp_dir("killed");
  auto opts = [](const std::string& dir) {
    return mdiff::TrainerOptions(12).lr(1e-2).warmup_steps(3).grad_accumulation(2).ema_decay(0.9).label_dropout(0.3)
        .out_dir(dir).checkpoint_every(5).keep_last(2).log_every(1).validation_every(4).seed(11);
  };
  ToyRun a = make_run(opts(dir_a), data, 100);
  a.trainer->fit();

  ToyRun b = make_run(opts(dir_b), data, 100);
  b.trainer->add_callback(std::make_shared<mdiff::LambdaCallback>([](mdiff::Trainer&, const mdiff::TrainStepInfo& s) {
    if (s.step == 7) throw std::runtime_error("simulated kill");
    return false;
  }));
  EXPECT_THROW(b.trainer->fit(), std::runtime_error);
  const auto ckpts = mdiff::list_checkpoints(dir_b + "/checkpoints");
  ASSERT_EQ(ckpts.size(), 1u);
  EXPECT_EQ(ckpts[0].step, 5);

  ToyRun c = make_run(opts(dir_b), data, 999);  // different initial weights: all must come from the checkpoint
  ASSERT_TRUE(c.trainer->resume());
  EXPECT_EQ(c.trainer->step(), 5);
  c.trainer->fit();
  EXPECT_EQ(c.trainer->step(), 12);
  expect_same_module(*a.net, *c.net);
  const auto& ea = a.trainer->ema()->shadow_parameters();
  const auto& ec = c.trainer->ema()->shadow_parameters();
  ASSERT_EQ(ea.size(), ec.size());
  for (size_t i = 0; i < ea.size(); ++i) EXPECT_TRUE(at::equal(ea[i].second, ec[i].second)) << ea[i].first;
  // keep_last(2): steps 10 and 12 remain.
  const auto left = mdiff::list_checkpoints(dir_b + "/checkpoints");
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left[0].step, 10);
  EXPECT_EQ(left[1].step, 12);
  // The log reads as one run: steps 1..12, each once, with validation at 4, 8, 12.
  std::ifstream log(dir_b + "/train_log.jsonl");
  std::string line;
  std::vector<int64_t> steps;
  int64_t validations = 0;
  while (std::getline(log, line)) {
    const auto p = line.find("\"step\":");
    ASSERT_NE(p, std::string::npos) << line;
    steps.push_back(std::stoll(line.substr(p + 7)));
    validations += line.find("val_loss") != std::string::npos;
  }
  ASSERT_EQ(steps.size(), 12u);
  for (int64_t i = 0; i < 12; ++i) EXPECT_EQ(steps[i], i + 1);
  EXPECT_EQ(validations, 3);
  fs::remove_all(dir_a);
  fs::remove_all(dir_b);
}

TEST_F(SmallNetworkTest, ResumeSkipsACorruptNewestCheckpointAndRejectsAllCorrupt) {
  const Toy data = gaussian_toy(128, 2, 1.0, 4);
  const std::string dir = temp_dir("corrupt");
  auto opts = mdiff::TrainerOptions(6).out_dir(dir).checkpoint_every(3).keep_last(5);
  ToyRun a = make_run(opts, data, 1);
  a.trainer->fit();
  const std::string newest = mdiff::checkpoint_path(dir + "/checkpoints", 6);
  {
    // Truncate the newest checkpoint to half its size.
    const auto size = fs::file_size(newest);
    fs::resize_file(newest, size / 2);
  }
  ToyRun b = make_run(opts, data, 2);
  ASSERT_TRUE(b.trainer->resume());
  EXPECT_EQ(b.trainer->step(), 3);
  MD_EXPECT_ERROR(b.trainer->load_checkpoint(newest), "ckpt-00000006.safetensors");
  std::ofstream(mdiff::checkpoint_path(dir + "/checkpoints", 3), std::ios::trunc) << "not a checkpoint";
  ToyRun c = make_run(opts, data, 3);
  MD_EXPECT_ERROR(c.trainer->resume(), "no readable checkpoint", "ckpt-00000003.safetensors", "ckpt-00000006.safetensors");
  MD_EXPECT_ERROR(c.trainer->load_checkpoint(dir + "/missing.safetensors"), "missing.safetensors", "does not exist");
  fs::remove_all(dir);
}

TEST_F(SmallNetworkTest, CheckpointOfAnotherModelIsRejectedBeforeAnythingChanges) {
  const Toy data = gaussian_toy(128, 2, 1.0, 4);
  const std::string dir = temp_dir("mismatch");
  ToyRun a = make_run(mdiff::TrainerOptions(2).out_dir(dir).checkpoint_every(2), data, 1);
  a.trainer->fit();
  ToyRun b = make_run(mdiff::TrainerOptions(2), data, 2, 0.1, 0);  // unconditional: no label embedding
  const at::Tensor before = b.net->parameters()[0].clone();
  MD_EXPECT_ERROR(b.trainer->load_checkpoint(mdiff::checkpoint_path(dir + "/checkpoints", 2)), "ckpt-00000002.safetensors");
  EXPECT_TRUE(at::equal(before, b.net->parameters()[0]));
  EXPECT_EQ(b.trainer->step(), 0);
  fs::remove_all(dir);
}

TEST_F(SmallNetworkTest, NonFiniteBatchesAreSkippedCountedAndLimited) {
  Toy data = gaussian_toy(64, 2, 1.0, 5);
  data.x[3][0] = std::numeric_limits<float>::quiet_NaN();  // about one batch in four contains row 3
  ToyRun r = make_run(mdiff::TrainerOptions(40).max_nonfinite(40), data, 1);
  const at::Tensor w0 = r.net->parameters()[0].clone();
  const mdiff::TrainResult res = r.trainer->fit();
  EXPECT_GT(res.skipped, 0);
  EXPECT_LT(res.skipped, 40);
  EXPECT_EQ(res.steps, 40);
  for (const auto& p : r.net->parameters()) EXPECT_TRUE(at::isfinite(p).all().item<bool>());
  EXPECT_FALSE(at::equal(w0, r.net->parameters()[0]));
  ToyRun strict = make_run(mdiff::TrainerOptions(40).max_nonfinite(0), data, 1);
  MD_EXPECT_ERROR(strict.trainer->fit(), "non-finite", "max_nonfinite = 0");
}

TEST_F(SmallNetworkTest, CheckpointWithNonFiniteWeightsIsRefusedAndOldFileKept) {
  const Toy data = gaussian_toy(64, 2, 1.0, 5);
  const std::string dir = temp_dir("nonfinite");
  ToyRun r = make_run(mdiff::TrainerOptions(2).out_dir(dir).checkpoint_every(1), data, 1);
  r.trainer->fit();
  const std::string path = mdiff::checkpoint_path(dir + "/checkpoints", 2);
  const auto size = fs::file_size(path);
  {
    at::NoGradGuard g;
    r.net->parameters()[0].view(-1)[0] = std::numeric_limits<float>::infinity();
  }
  MD_EXPECT_ERROR(r.trainer->save_checkpoint(path), "non-finite", "ckpt-00000002.safetensors");
  EXPECT_EQ(fs::file_size(path), size);
  fs::remove_all(dir);
}

TEST(AtomicWrite, FailureLeavesThePreviousFileIntact) {
  const std::string dir = temp_dir("atomic");
  const std::string path = dir + "/file.txt";
  mdiff::atomic_write_text(path, "first");
  MD_EXPECT_ERROR(mdiff::atomic_write(path,
                                      [](const std::string& tmp) {
                                        std::ofstream(tmp) << "partial";
                                        throw std::runtime_error("No space left on device");
                                      }),
                  "file.txt", "previous file left intact", "No space left");
  std::ifstream in(path);
  std::string content;
  std::getline(in, content);
  EXPECT_EQ(content, "first");
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.is_regular_file();
  EXPECT_EQ(n, 1u) << "a temporary file was left behind";
  MD_EXPECT_ERROR(mdiff::atomic_write_text(dir + "/no/such/folder/x.txt", "x"), "does not exist");
  fs::remove_all(dir);
}

namespace {
// Pulls x0_hat toward zero; counts its calls.
class ShrinkTerm : public mdiff::LossTerm {
 public:
  std::string name() const override { return "shrink"; }
  at::Tensor loss(const mdiff::LossContext& c) override {
    ++calls;
    EXPECT_EQ(c.pred.x0.sizes(), c.x0.sizes());
    EXPECT_EQ(c.alpha_bar.size(0), c.x0.size(0));
    return c.pred.x0.pow(2).mean();
  }
  void after_step(int64_t) override { ++steps; }
  std::map<std::string, double> scalars() const override { return {{"calls", static_cast<double>(calls)}}; }
  mdiff::NamedTensors state() const override { return {{"steps", at::scalar_tensor(steps, at::kLong)}}; }
  void load_state(const mdiff::NamedTensors& s) override { steps = s.at(0).second.item<int64_t>(); }
  int64_t calls = 0, steps = 0;
};
class BadTerm : public mdiff::LossTerm {
 public:
  std::string name() const override { return "bad"; }
  at::Tensor loss(const mdiff::LossContext& c) override { return c.pred.x0; }
};
}  // namespace

TEST_F(SmallNetworkTest, LossTermsJoinTheLossAndTheirStateTheCheckpoint) {
  const Toy data = gaussian_toy(128, 2, 1.0, 6);
  const std::string dir = temp_dir("terms");
  ToyRun r = make_run(mdiff::TrainerOptions(4).grad_accumulation(2).out_dir(dir).checkpoint_every(4), data, 1);
  auto term = std::make_shared<ShrinkTerm>();
  r.trainer->add_loss_term(term, 0.5);
  std::map<std::string, double> seen;
  r.trainer->add_callback(std::make_shared<mdiff::LambdaCallback>([&](mdiff::Trainer&, const mdiff::TrainStepInfo& s) {
    seen = s.scalars;
    return false;
  }));
  r.trainer->fit();
  EXPECT_EQ(term->calls, 8);
  EXPECT_EQ(term->steps, 4);
  EXPECT_GT(seen.at("loss_shrink"), 0.0);
  EXPECT_EQ(seen.at("shrink_calls"), 8.0);
  MD_EXPECT_ERROR(r.trainer->add_loss_term(std::make_shared<ShrinkTerm>()), "shrink", "already");

  ToyRun q = make_run(mdiff::TrainerOptions(4), data, 2);
  auto term2 = std::make_shared<ShrinkTerm>();
  q.trainer->add_loss_term(term2);
  q.trainer->load_checkpoint(mdiff::checkpoint_path(dir + "/checkpoints", 4));
  EXPECT_EQ(term2->steps, 4);

  ToyRun b = make_run(mdiff::TrainerOptions(4), data, 1);
  b.trainer->add_loss_term(std::make_shared<BadTerm>());
  MD_EXPECT_ERROR(b.trainer->fit(), "bad", "expected a scalar");
  fs::remove_all(dir);
}

TEST_F(SmallNetworkTest, CallbacksStopTheRunAndValidationIsRepeatable) {
  const Toy data = gaussian_toy(128, 2, 1.0, 7);
  ToyRun r = make_run(mdiff::TrainerOptions(100).validation_every(5), data, 1);
  EXPECT_DOUBLE_EQ(r.trainer->validate(), r.trainer->validate());
  auto early = std::make_shared<mdiff::EarlyStop>(1, 1e9);  // no validation can improve by 1e9
  r.trainer->add_callback(early);
  const mdiff::TrainResult res = r.trainer->fit();
  EXPECT_TRUE(res.stopped_by_callback);
  EXPECT_EQ(res.steps, 10);  // the first validation sets the best, the second fails to improve
  ToyRun q = make_run(mdiff::TrainerOptions(100), data, 1);
  int64_t previews = 0;
  q.trainer->add_callback(std::make_shared<mdiff::Preview>(3, [&](mdiff::Trainer&, int64_t step) {
    ++previews;
    return step >= 9;
  }));
  EXPECT_EQ(q.trainer->fit().steps, 9);
  EXPECT_EQ(previews, 3);
}

TEST_F(SmallNetworkTest, ProgressBarPrintsPlainLinesOffATerminal) {
  const Toy data = gaussian_toy(128, 2, 1.0, 8);
  ToyRun r = make_run(mdiff::TrainerOptions(5), data, 1);
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  r.trainer->add_callback(std::make_shared<mdiff::ProgressBar>(f, 0.0));
  r.trainer->fit();
  std::rewind(f);
  char buf[4096] = {0};
  const size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  const std::string out(buf, n);
  EXPECT_NE(out.find("step 5/5 (100%)"), std::string::npos) << out;
  EXPECT_NE(out.find("it/s"), std::string::npos);
  EXPECT_NE(out.find("ETA"), std::string::npos);
  EXPECT_EQ(out.find('\r'), std::string::npos);
}

TEST_F(SmallNetworkTest, LoadWeightsTakesTheEmaOrTheTrainedWeights) {
  const Toy data = gaussian_toy(128, 2, 1.0, 9);
  const std::string dir = temp_dir("weights");
  ToyRun r = make_run(mdiff::TrainerOptions(3).ema_decay(0.5).out_dir(dir).checkpoint_every(3), data, 1);
  r.trainer->fit();
  const std::string path = mdiff::checkpoint_path(dir + "/checkpoints", 3);
  ToyRun fresh = make_run(mdiff::TrainerOptions(3), data, 2);
  EXPECT_EQ(mdiff::load_weights(path, *fresh.net, /*ema=*/false), 3);
  expect_same_module(*r.net, *fresh.net);
  EXPECT_EQ(mdiff::load_weights(path, *fresh.net), 3);
  for (const auto& [name, t] : r.trainer->ema()->shadow_parameters()) {
    EXPECT_TRUE(at::equal(t, fresh.net->named_parameters()[name])) << name;
  }
  ToyRun no_ema = make_run(mdiff::TrainerOptions(1).ema_decay(0).out_dir(dir + "/b").checkpoint_every(1), data, 1);
  no_ema.trainer->fit();
  MD_EXPECT_ERROR(mdiff::load_weights(mdiff::checkpoint_path(dir + "/b/checkpoints", 1), *fresh.net), "no EMA");
  MD_EXPECT_ERROR(mdiff::load_weights(dir + "/none.safetensors", *fresh.net), "none.safetensors", "does not exist");
  fs::remove_all(dir);
}

// The same kill-and-resume equality with the shuffling, multi-threaded loader and an augmentation
// transform: the loader's (epoch, batch) state and its per-batch generators carry the data order.
TEST_F(SmallNetworkTest, ResumeWithTheThreadedLoaderEqualsUninterruptedRun) {
  const Toy data = gaussian_toy(40, 3, 1.0, 12);
  auto make = [&](const std::string& dir, uint64_t init) {
    auto loader = std::make_shared<mdiff::data::TensorLoader>(
        data.x, data.labels,
        mdiff::data::LoaderOptions(16).seed(3).num_workers(2).transform(
            [](mdiff::data::Batch b, at::Generator& g) {
              b.data = b.data + 0.01 * at::randn(b.data.sizes(), g, at::TensorOptions(at::kFloat));
              return b;
            }));
    at::manual_seed(init);
    ToyRun r;
    r.net = mdiff::MLPDenoiser(mdiff::MLPDenoiserOptions(3).hidden(16).num_blocks(1).num_classes(3));
    r.trainer = std::make_unique<mdiff::Trainer>(
        mdiff::TrainerOptions(9).lr(1e-2).ema_decay(0.8).out_dir(dir).checkpoint_every(4), r.net.ptr(),
        mdiff::network_function(r.net), mdiff::NoiseSchedule::linear(50), mdiff::DenoiserOptions(),
        mdiff::loader_source(loader));
    return r;
  };
  const std::string dir_a = temp_dir("loader_a"), dir_b = temp_dir("loader_b");
  ToyRun a = make(dir_a, 1);
  a.trainer->fit();
  ToyRun b = make(dir_b, 1);
  b.trainer->add_callback(std::make_shared<mdiff::LambdaCallback>([](mdiff::Trainer&, const mdiff::TrainStepInfo& s) {
    if (s.step == 6) throw std::runtime_error("simulated kill");
    return false;
  }));
  EXPECT_THROW(b.trainer->fit(), std::runtime_error);
  ToyRun c = make(dir_b, 2);
  ASSERT_TRUE(c.trainer->resume());
  EXPECT_EQ(c.trainer->step(), 4);
  c.trainer->fit();
  expect_same_module(*a.net, *c.net);
  fs::remove_all(dir_a);
  fs::remove_all(dir_b);
}
