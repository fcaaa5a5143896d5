// Numerical faults in training: a batch with NaN, a loss spike, an exploding gradient, and the
// roll-back to the newest checkpoint after consecutive skipped steps.
#include "test_util.h"
#include "data/data_test_util.h"

#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/core/version.h>
#include <manifold_diffusion/models/mlp_denoiser.h>
#include <manifold_diffusion/training/checkpoint.h>
#include <manifold_diffusion/training/trainer.h>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <iostream>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace mdiff = manifold_diffusion;
namespace fs = std::filesystem;

namespace {

// Batches of 2-D points; `corrupt(call, x0)` may change the batch of a given call (0-based).
mdiff::DataSource faulty_source(std::function<void(int64_t, at::Tensor&)> corrupt) {
  struct State {
    at::Generator gen = mdiff::make_generator(11);
    int64_t calls = 0;
  };
  auto s = std::make_shared<State>();
  mdiff::DataSource src;
  src.next = [s, corrupt] {
    mdiff::TrainBatch b;
    b.x0 = at::randn({32, 2}, s->gen, at::TensorOptions(at::kFloat)) * 0.5;
    corrupt(s->calls++, b.x0);
    return b;
  };
  src.state = [s] { return at::tensor({s->calls}, at::kLong); };
  src.load_state = [s](const at::Tensor& t) { s->calls = t.item<int64_t>(); };
  return src;
}

struct FaultRun {
  mdiff::MLPDenoiser net{nullptr};
  std::unique_ptr<mdiff::Trainer> trainer;
  std::vector<mdiff::TrainStepInfo> steps;

  mdiff::TrainStepInfo step() {
    steps.push_back(trainer->train_step());
    return steps.back();
  }
  std::vector<at::Tensor> params() const {
    std::vector<at::Tensor> out;
    for (const auto& p : net->parameters()) out.push_back(p.detach().clone());
    return out;
  }
};

FaultRun make_run(mdiff::TrainerOptions opts, mdiff::DataSource src,
                  mdiff::PredictionType prediction = mdiff::PredictionType::Epsilon) {
  at::manual_seed(5);
  FaultRun r;
  r.net = mdiff::MLPDenoiser(mdiff::MLPDenoiserOptions(2).hidden(32).num_blocks(1).time_embed_dim(16));
  r.trainer = std::make_unique<mdiff::Trainer>(opts.lr(1e-3).ema_decay(0.9).log_every(0).seed(3), r.net.ptr(),
                                               mdiff::network_function(r.net), mdiff::NoiseSchedule::linear(100),
                                               mdiff::DenoiserOptions(prediction), std::move(src));
  return r;
}

bool same(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!at::equal(a[i], b[i])) return false;
  }
  return true;
}

// A term whose value is 0 and whose gradient is `scale` on every parameter, at one step only.
struct GradientBomb : mdiff::LossTerm {
  GradientBomb(mdiff::MLPDenoiser net, int64_t at_step, double scale) : net_(net), at_(at_step), scale_(scale) {}
  std::string name() const override { return "bomb"; }
  at::Tensor loss(const mdiff::LossContext& ctx) override {
    at::Tensor total = at::zeros({}, at::kFloat);
    if (ctx.step != at_) return total;
    for (const auto& p : net_->parameters()) total = total + (p - p.detach()).sum() * scale_;
    return total;
  }
  mdiff::MLPDenoiser net_;
  int64_t at_;
  double scale_;
};


}  // namespace

TEST(TrainerFaults, ABatchWithNaNIsSkippedAndTrainingGoesOn) {
  FaultRun r = make_run(mdiff::TrainerOptions(10), faulty_source([](int64_t call, at::Tensor& x) {
                     if (call == 3) x[5][1] = std::numeric_limits<float>::quiet_NaN();
                   }));
  for (int i = 0; i < 3; ++i) r.step();
  const auto before = r.params();
  const mdiff::TrainStepInfo bad = r.step();
  EXPECT_TRUE(bad.skipped_this_step);
  EXPECT_EQ(bad.skip_reason, "nonfinite");
  EXPECT_EQ(bad.skipped, 1);
  EXPECT_TRUE(same(before, r.params())) << "a skipped step must not change the weights";
  const mdiff::TrainStepInfo next = r.step();
  EXPECT_FALSE(next.skipped_this_step);
  EXPECT_TRUE(std::isfinite(next.loss));
  EXPECT_FALSE(same(before, r.params()));
  for (const auto& p : r.params()) EXPECT_TRUE(at::isfinite(p).all().item<bool>());
}

TEST(TrainerFaults, ALossSpikeIsSkippedWhenDetectionIsOn) {
  auto spike = [](int64_t call, at::Tensor& x) {
    if (call == 30) x.mul_(1000.0);
  };
  // x0-prediction: the target scales with the data (an eps target would not show the spike).
  const auto x0 = mdiff::PredictionType::Sample;
  // Detection off: the step goes through (and its loss really is a spike).
  FaultRun off = make_run(mdiff::TrainerOptions(40), faulty_source(spike), x0);
  for (int i = 0; i < 31; ++i) off.step();
  EXPECT_FALSE(off.steps.back().skipped_this_step);
  double mean = 0;
  for (int i = 10; i < 30; ++i) mean += off.steps[static_cast<size_t>(i)].loss / 20.0;
  EXPECT_GT(off.steps.back().loss, 10 * mean);

  FaultRun on = make_run(mdiff::TrainerOptions(40).loss_spike_factor(5), faulty_source(spike), x0);
  for (int i = 0; i < 30; ++i) EXPECT_FALSE(on.step().skipped_this_step) << "step " << i;
  const auto before = on.params();
  const mdiff::TrainStepInfo s = on.step();
  EXPECT_TRUE(s.skipped_this_step);
  EXPECT_EQ(s.skip_reason, "loss_spike");
  EXPECT_TRUE(same(before, on.params()));
  EXPECT_FALSE(on.step().skipped_this_step);
}

TEST(TrainerFaults, AnExplodingGradientIsSkippedWhenDetectionIsOn) {
  FaultRun r = make_run(mdiff::TrainerOptions(40).grad_spike_factor(10), faulty_source([](int64_t, at::Tensor&) {}));
  r.trainer->add_loss_term(std::make_shared<GradientBomb>(r.net, 25, 1e4));
  for (int i = 0; i < 25; ++i) EXPECT_FALSE(r.step().skipped_this_step) << "step " << i;
  const double typical = r.steps.back().grad_norm;
  const auto before = r.params();
  const mdiff::TrainStepInfo s = r.step();
  EXPECT_TRUE(s.skipped_this_step);
  EXPECT_EQ(s.skip_reason, "grad_spike");
  EXPECT_GT(s.grad_norm, 100 * typical);
  EXPECT_LT(std::abs(s.loss - r.steps[24].loss), 1.0) << "the loss itself did not spike";
  EXPECT_TRUE(same(before, r.params()));
  EXPECT_FALSE(r.step().skipped_this_step);
}

TEST(TrainerFaults, ConsecutiveSkipsRollTheWeightsBackToTheNewestCheckpoint) {
  mdiff_test::TempDir dir;
  // Calls 12 and 13 (steps 13 and 14) have NaN: after the second, the weights go back to step 10's.
  FaultRun r = make_run(mdiff::TrainerOptions(30).out_dir(dir.path()).checkpoint_every(5).rollback_after(2),
                   faulty_source([](int64_t call, at::Tensor& x) {
                     if (call == 12 || call == 13) x.fill_(std::numeric_limits<float>::quiet_NaN());
                   }));
  std::vector<at::Tensor> at10;
  for (int i = 0; i < 12; ++i) {
    r.step();
    if (r.trainer->step() % 5 == 0) r.trainer->save_checkpoint();
    if (r.trainer->step() == 10) at10 = r.params();
  }
  EXPECT_FALSE(same(at10, r.params()));
  EXPECT_EQ(r.step().skip_reason, "nonfinite");
  const mdiff::TrainStepInfo second = r.step();
  EXPECT_EQ(second.skip_reason, "nonfinite");
  EXPECT_EQ(second.rolled_back_to, 10);
  EXPECT_EQ(second.step, 14) << "the step count goes on";
  EXPECT_TRUE(same(at10, r.params())) << "the weights are step 10's again";
  const mdiff::TrainStepInfo after = r.step();
  EXPECT_FALSE(after.skipped_this_step) << "the data moved past the bad batches";
  EXPECT_EQ(after.step, 15);
}

TEST(TrainerFaults, RejectsBadFaultOptions) {
  MD_EXPECT_ERROR(mdiff::TrainerOptions(10).loss_spike_factor(0.5).validate(), "loss_spike_factor must be 0 (off) or > 1, got 0.5");
  MD_EXPECT_ERROR(mdiff::TrainerOptions(10).grad_spike_factor(-1).validate(), "grad_spike_factor must be 0 (off) or > 1, got -1");
  MD_EXPECT_ERROR(mdiff::TrainerOptions(10).spike_warmup(0).validate(), "spike_warmup must be >= 1, got 0");
  MD_EXPECT_ERROR(mdiff::TrainerOptions(10).rollback_after(3).validate(), "rollback_after = 3 needs an out_dir");
}

namespace {
// Files of this process may not grow beyond `bytes` while alive (RLIMIT_FSIZE): writes past it fail
// with EFBIG, as on a full disk. SIGXFSZ is ignored meanwhile.
struct FileSizeLimit {
  explicit FileSizeLimit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &saved_);
    previous_ = std::signal(SIGXFSZ, SIG_IGN);
    rlimit lim = saved_;
    lim.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &lim);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, previous_);
  }
  rlimit saved_{};
  void (*previous_)(int) = nullptr;
};
}  // namespace

TEST(TrainerFaults, AFullDiskFailsTheCheckpointClearlyAndKeepsThePreviousOne) {
  mdiff_test::TempDir dir;
  FaultRun r = make_run(mdiff::TrainerOptions(20).out_dir(dir.path()).checkpoint_every(5),
                        faulty_source([](int64_t, at::Tensor&) {}));
  for (int i = 0; i < 5; ++i) r.step();
  const std::string first = r.trainer->save_checkpoint();
  const auto at5 = r.params();
  for (int i = 0; i < 5; ++i) r.step();
  std::string message;
  {
    FileSizeLimit full(4096);
    message = mdiff_test::error_message([&] { r.trainer->save_checkpoint(); });
  }
  std::cout << "checkpoint on a full disk: " << message.substr(0, message.find('\n')) << "\n";
  EXPECT_NE(message.find("ckpt-00000010.safetensors"), std::string::npos) << message;
  // The previous checkpoint is the newest and intact, and nothing half-written is left.
  const auto files = mdiff::list_checkpoints(dir.path() + "/checkpoints");
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].path, first);
  for (const auto& f : fs::directory_iterator(dir.path() + "/checkpoints")) {
    EXPECT_EQ(f.path().filename().string().find(".tmp."), std::string::npos) << f.path();
  }
  FaultRun again = make_run(mdiff::TrainerOptions(20).out_dir(dir.path()).checkpoint_every(5),
                            faulty_source([](int64_t, at::Tensor&) {}));
  ASSERT_TRUE(again.trainer->resume());
  EXPECT_EQ(again.trainer->step(), 5);
  EXPECT_TRUE(same(again.params(), at5));
  // With room again, the same trainer writes step 10.
  EXPECT_NO_THROW(r.trainer->save_checkpoint());
  EXPECT_EQ(mdiff::list_checkpoints(dir.path() + "/checkpoints").back().step, 10);
}

TEST(TrainerFaults, AnUnwritableOutputFolderFailsClearly) {
  mdiff_test::TempDir dir;
  fs::create_directories(dir.path());
  std::ofstream(dir.path() + "/checkpoints") << "a file where the checkpoint folder should be\n";
  FaultRun r = make_run(mdiff::TrainerOptions(20).out_dir(dir.path()).checkpoint_every(5),
                        faulty_source([](int64_t, at::Tensor&) {}));
  r.step();
  const std::string message = mdiff_test::error_message([&] { r.trainer->save_checkpoint(); });
  EXPECT_NE(message.find(dir.path() + "/checkpoints"), std::string::npos) << message;
  if (::geteuid() == 0) GTEST_SKIP() << "running as root: permissions do not stop writes (the folder-is-a-file case ran)";
  fs::remove(dir.path() + "/checkpoints");
  fs::create_directories(dir.path() + "/checkpoints");
  fs::permissions(dir.path() + "/checkpoints", fs::perms::owner_read | fs::perms::owner_exec);
  const std::string denied = mdiff_test::error_message([&] { r.trainer->save_checkpoint(); });
  fs::permissions(dir.path() + "/checkpoints", fs::perms::owner_all);
  EXPECT_NE(denied.find("checkpoints"), std::string::npos) << denied;
}

TEST(StateFileFormat, SectionsMetadataAndRefusals) {
  mdiff::StateFile f("unit-test", 3);
  f.add_section("a", {{"x", at::arange(4)}, {"y.z", at::ones({2, 2})}});
  f.add_section("b", {{"flag", at::tensor({1, 0}).to(at::kBool)}});
  f.metadata["n"] = "-12";
  f.metadata["bad"] = "12x";
  MD_EXPECT_ERROR(f.add_section("a", {}), "section 'a' is already there");
  MD_EXPECT_ERROR(f.add_section("c/d", {}), "without '/'", "c/d");
  MD_EXPECT_ERROR(f.add_section("c", {{"", at::ones({1})}}), "empty tensor name");
  MD_EXPECT_ERROR(mdiff::StateFile("", 1), "kind must not be empty");
  MD_EXPECT_ERROR(mdiff::StateFile("k", 0), "format must be >= 1, got 0");

  const std::vector<uint8_t> bytes = f.encode();
  const mdiff::StateFile back = mdiff::StateFile::decode(bytes.data(), bytes.size(), "unit-test", 3, "the file");
  ASSERT_EQ(back.section("a").size(), 2u);
  EXPECT_EQ(back.section("a")[1].first, "y.z");
  EXPECT_TRUE(at::equal(back.section("a")[0].second, at::arange(4)));
  EXPECT_TRUE(at::equal(back.section("b")[0].second, at::tensor({1, 0}).to(at::kBool)));
  EXPECT_TRUE(back.section("none").empty());
  EXPECT_FALSE(back.has_section("none"));
  EXPECT_EQ(back.metadata_int("n"), -12);
  MD_EXPECT_ERROR(back.metadata_int("bad"), "the file", "'bad' is not an integer", "12x");
  MD_EXPECT_ERROR(back.metadata_int("absent"), "the file", "no 'absent' metadata");
  EXPECT_EQ(back.metadata.at("format"), "pt");
  EXPECT_EQ(back.metadata.at("mdiff.library_version"), mdiff::version_string());

  MD_EXPECT_ERROR(mdiff::StateFile::decode(bytes.data(), bytes.size(), "other", 3, "the file"),
                  "the file is a manifold_diffusion 'unit-test' file, not a 'other' file");
  MD_EXPECT_ERROR(mdiff::StateFile::decode(bytes.data(), bytes.size(), "unit-test", 2, "the file"),
                  "unit-test format 3 is not supported (this version reads format 2)");
  // Plain safetensors without the library's metadata, and names outside any section.
  const std::vector<uint8_t> plain = mdiff::io::encode_safetensors({{"w", at::ones({1})}});
  MD_EXPECT_ERROR(mdiff::StateFile::decode(plain.data(), plain.size(), "unit-test", 3, "plain"),
                  "plain is a safetensors file but not a manifold_diffusion unit-test file");
  const std::vector<uint8_t> loose = mdiff::io::encode_safetensors(
      {{"w", at::ones({1})}}, {{"mdiff.kind", "unit-test"}, {"mdiff.format", "3"}});
  MD_EXPECT_ERROR(mdiff::StateFile::decode(loose.data(), loose.size(), "unit-test", 3, "loose"),
                  "tensor 'w' is not of the form <section>/<name>");

  mdiff_test::TempDir dir;
  f.save(dir.file("s.safetensors"));
  EXPECT_EQ(mdiff::StateFile::load(dir.file("s.safetensors"), "unit-test", 3, "s").metadata_int("n"), -12);
  MD_EXPECT_ERROR(mdiff::StateFile::load(dir.file("absent.safetensors"), "unit-test", 3, "absent file"),
                  "absent file does not exist");
}

// A run folder of manifold_diffusion 0.1 holds ckpt-<step>.pt LibTorch archives: they are listed
// (so a run is never silently restarted), refused by name, and a newer safetensors file of the
// same step is preferred.
TEST(StateFileFormat, OldArchiveCheckpointsAreListedAndRefusedByName) {
  mdiff_test::TempDir dir;
  const std::string ckpts = dir.path() + "/checkpoints";
  std::filesystem::create_directories(ckpts);
  const char zip_start[] = "PK\x03\x04 rest of a zip";
  std::ofstream(ckpts + "/ckpt-00000005.pt", std::ios::binary) << std::string(zip_start, sizeof(zip_start) - 1);
  FaultRun r = make_run(mdiff::TrainerOptions(10).out_dir(dir.path()), faulty_source([](int64_t, at::Tensor&) {}));
  auto files = mdiff::list_checkpoints(ckpts);
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].step, 5);
  MD_EXPECT_ERROR(r.trainer->resume(), "no readable checkpoint", "ckpt-00000005.pt", "LibTorch archive",
                  "manifold_diffusion 0.1");
  for (int i = 0; i < 5; ++i) r.step();
  const std::string now = r.trainer->save_checkpoint();
  files = mdiff::list_checkpoints(ckpts);
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files.back().path, now);  // same step: the current format sorts last
  FaultRun again = make_run(mdiff::TrainerOptions(10).out_dir(dir.path()), faulty_source([](int64_t, at::Tensor&) {}));
  ASSERT_TRUE(again.trainer->resume());
  EXPECT_EQ(again.trainer->step(), 5);
}

// A checkpoint is a safetensors StateFile: every field is checked before the trainer changes, and a
// load that fails half-way puts the previous state back. Each damaged variant of a good checkpoint
// must fail with its own message, leave the weights and the step as they were, and leave the
// trainer able to load the good file and train on.
TEST(TrainerFaults, EveryDamagedCheckpointFieldIsAClearErrorAndChangesNothing) {
  FaultRun r = make_run(mdiff::TrainerOptions(10).ema_decay(0.9), faulty_source([](int64_t, at::Tensor&) {}));
  r.step();
  r.step();
  mdiff_test::TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  r.trainer->save_checkpoint(path);
  const std::vector<uint8_t> raw = mdiff::read_file_bytes(path);
  const std::string good(raw.begin(), raw.end());
  const mdiff::StateFile file = mdiff::StateFile::decode(raw.data(), raw.size(), mdiff::kTrainerCheckpointKind,
                                                         mdiff::kTrainerCheckpointFormat, "good");
  ASSERT_TRUE(file.has_section("model") && file.has_section("ema") && file.has_section("optimizer") &&
              file.has_section("rng") && file.has_section("guard"));
  r.step();  // the trainer moves on from the file: a load that changed anything would show
  const auto before = r.params();
  const int64_t step_before = r.trainer->step();
  // The whole state (weights, EMA, optimizer moments, random and data state, counters), as bytes.
  auto state_bytes = [&] {
    r.trainer->save_checkpoint(dir.file("state.safetensors"));
    return mdiff::read_file_bytes(dir.file("state.safetensors"));
  };
  const std::vector<uint8_t> state_before = state_bytes();

  auto bytes_of = [](const mdiff::StateFile& f) {
    const std::vector<uint8_t> b = f.encode();
    return std::string(b.begin(), b.end());
  };
  auto with_tensor = [&](const std::string& name, const std::function<at::Tensor(const at::Tensor&)>& change) {
    mdiff::StateFile f = file;
    bool found = false;
    for (auto& [n, t] : f.tensors) {
      if (n == name) {
        t = change(t);
        found = true;
      }
    }
    EXPECT_TRUE(found) << name;
    return bytes_of(f);
  };
  auto with_metadata = [&](const std::string& key, const std::string& value) {
    mdiff::StateFile f = file;
    f.metadata[key] = value;
    return bytes_of(f);
  };
  const std::string first_param = file.section("model").front().first;
  struct Case {
    const char* what;
    std::string bytes;
    std::vector<std::string> expected;
  };
  std::vector<Case> cases;
  cases.push_back({"truncated", good.substr(0, good.size() / 2), {"decode_safetensors"}});
  cases.push_back({"not safetensors", "hello", {"too short"}});
  cases.push_back({"LibTorch archive", "PK\x03\x04" + good.substr(4), {"LibTorch archive", "does not parse archives"}});
  {
    mdiff::StateFile other("autoencoder", mdiff::kTrainerCheckpointFormat);
    other.tensors = file.tensors;
    cases.push_back({"other kind", bytes_of(other), {"'autoencoder' file, not a 'trainer-checkpoint' file"}});
    mdiff::StateFile old(mdiff::kTrainerCheckpointKind, 1);
    old.tensors = file.tensors;
    cases.push_back({"other format", bytes_of(old), {"format 1 is not supported"}});
  }
  cases.push_back({"step not a number", with_metadata("step", "2x"), {"'step' is not an integer", "2x"}});
  cases.push_back({"step out of range", with_metadata("step", "11"), {"step 11 is outside this run's 0..10"}});
  cases.push_back({"skipped out of range", with_metadata("skipped", "-1"), {"skipped -1 is outside"}});
  cases.push_back({"model shape", with_tensor("model/" + first_param, [](const at::Tensor& t) { return t.flatten(); }),
                   {first_param, "has shape"}});
  cases.push_back({"model NaN",
                   with_tensor("model/" + first_param,
                               [](const at::Tensor& t) { return t.clone().fill_(std::nan("")); }),
                   {first_param, "non-finite"}});
  cases.push_back({"optimizer step dtype",
                   with_tensor("optimizer/0.step", [](const at::Tensor& t) { return t.to(at::kDouble); }),
                   {"parameter 0", "step must be one int64"}});
  cases.push_back({"optimizer negative step",
                   with_tensor("optimizer/0.step", [](const at::Tensor& t) { return t - 100; }),
                   {"parameter 0", "step must be >= 0"}});
  cases.push_back({"optimizer moment negative",
                   with_tensor("optimizer/0.exp_avg_sq", [](const at::Tensor& t) { return t - 1; }),
                   {"parameter 0", "exp_avg_sq has negative values"}});
  cases.push_back({"optimizer moment shape",
                   with_tensor("optimizer/0.exp_avg", [](const at::Tensor& t) { return t.flatten()[0]; }),
                   {"parameter 0", "exp_avg has dtype"}});
  {
    mdiff::StateFile f = file;
    f.tensors.emplace_back("optimizer/999.step", at::scalar_tensor(1, at::kLong));
    cases.push_back({"optimizer index", bytes_of(f), {"is for parameter 999"}});
  }
  cases.push_back({"random state dtype",
                   with_tensor("rng/trainer", [](const at::Tensor& t) { return t.to(at::kLong); }),
                   {"random state 'trainer'", "uint8"}});
  // Passes every check of the file; LibTorch refuses the generator state after the model and the
  // optimizer were already replaced: the previous state must come back.
  cases.push_back({"random state size", with_tensor("rng/trainer", [](const at::Tensor& t) { return t.narrow(0, 0, 16); }),
                   {"RNG state"}});
  cases.push_back({"guard", with_tensor("guard/values", [](const at::Tensor& t) { return t.narrow(0, 0, 4); }),
                   {"'guard/values'"}});
  cases.push_back({"guard counter",
                   with_tensor("guard/values", [](const at::Tensor& t) {
                     at::Tensor c = t.clone();
                     c[2] = 1e300;
                     return c;
                   }),
                   {"guard value 'accepted' must be a whole number in 0..2", "1e+300"}});
  cases.push_back({"guard mean",
                   with_tensor("guard/values", [](const at::Tensor& t) {
                     at::Tensor c = t.clone();
                     c[0] = -1.0;
                     return c;
                   }),
                   {"guard means must be finite and >= 0"}});
  cases.push_back({"model dtype", with_tensor("model/" + first_param, [](const at::Tensor& t) { return t.to(at::kBool); }),
                   {first_param, "has dtype Bool but the model holds Float"}});
  cases.push_back({"ema NaN",
                   with_tensor("ema/param." + first_param, [](const at::Tensor& t) { return t.clone().fill_(std::nan("")); }),
                   {"ema tensor", "non-finite"}});
  {
    mdiff::StateFile f = file;
    for (auto& [n, t] : f.tensors) {
      if (n == "optimizer/1.step") n = "optimizer/01.step";
    }
    cases.push_back({"optimizer index alias", bytes_of(f), {"'01.step' is not of the form <index>.<field>"}});
  }

  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const std::string message = mdiff_test::error_message([&] { r.trainer->load_checkpoint_bytes(c.bytes, "damaged"); });
    EXPECT_NE(message.find("damaged"), std::string::npos) << message;
    for (const auto& e : c.expected) EXPECT_NE(message.find(e), std::string::npos) << "want '" << e << "' in: " << message;
    EXPECT_TRUE(same(r.params(), before));
    EXPECT_EQ(r.trainer->step(), step_before);
    EXPECT_TRUE(state_bytes() == state_before) << "the trainer's state changed";
  }
  // The same refusals from a file, and from load_weights.
  {
    std::ofstream out(dir.file("bad.safetensors"), std::ios::binary);
    out.write(cases[2].bytes.data(), static_cast<std::streamsize>(cases[2].bytes.size()));
  }
  MD_EXPECT_ERROR(r.trainer->load_checkpoint(dir.file("bad.safetensors")), "bad.safetensors", "LibTorch archive");
  MD_EXPECT_ERROR(mdiff::load_weights(dir.file("bad.safetensors"), *r.net), "bad.safetensors", "LibTorch archive");
  r.trainer->load_checkpoint_bytes(good, "the good checkpoint");
  EXPECT_EQ(r.trainer->step(), 2);
  EXPECT_EQ(r.step().step, 3);
}
