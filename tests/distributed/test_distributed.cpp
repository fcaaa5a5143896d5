// Data-parallel training on c10d. The multi-process tests start copies of this test binary (the
// DistributedChild.Run test, which does nothing unless MD_DIST_CHILD is set) as ranks of a job on
// loopback, and compare what they trained with an in-process run of one rank.
#include "test_util.h"
#include "data/data_test_util.h"

#include <manifold_diffusion/data/loader.h>
#include <manifold_diffusion/distributed/distributed.h>
#include <manifold_diffusion/models/mlp_denoiser.h>
#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/training/checkpoint.h>
#include <manifold_diffusion/training/trainer.h>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/serialize.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace mdiff = manifold_diffusion;
namespace fs = std::filesystem;

namespace {

// ---------------------------------------------------------------------------------------------
// The training job every test runs: a small MLP on fixed 2-D points, global batch 64.

constexpr int64_t kGlobalBatch = 64;

struct Job {
  mdiff::MLPDenoiser net{nullptr};
  std::unique_ptr<mdiff::Trainer> trainer;
};

// nan_at >= 0: the batch of that call has NaN in the rows of the second half of the global batch
// (rank 1's rows in a job of two).
Job make_job(int64_t steps, const std::string& out_dir, int64_t checkpoint_every, mdiff::Shard shard,
             int64_t accumulation = 1, int64_t nan_at = -1) {
  at::manual_seed(123);
  Job job;
  job.net = mdiff::MLPDenoiser(mdiff::MLPDenoiserOptions(2).hidden(64).num_blocks(2).time_embed_dim(32));
  at::Generator g = mdiff::make_generator(77);
  const at::Tensor points = at::randn({512, 2}, g, at::TensorOptions(at::kFloat)) * 0.5 + 1.0;
  auto opts = mdiff::TrainerOptions(steps)
                  .lr(2e-3)
                  .ema_decay(0.9)
                  .grad_clip(1.0)
                  .grad_accumulation(accumulation)
                  .label_dropout(0.0)
                  .log_every(5)
                  .seed(5)
                  .out_dir(out_dir)
                  .checkpoint_every(checkpoint_every);
  mdiff::DataSource source = mdiff::random_batches(points, {}, kGlobalBatch / accumulation, 9, shard);
  if (nan_at >= 0) {
    auto calls = std::make_shared<int64_t>(0);
    auto next = source.next;
    source.next = [next, calls, nan_at, shard] {
      mdiff::TrainBatch b = next();
      if ((*calls)++ == nan_at) {
        const int64_t n = b.x0.size(0);
        if (shard.count == 1) b.x0.narrow(0, n / 2, n - n / 2).fill_(std::numeric_limits<float>::quiet_NaN());
        if (shard.count == 2 && shard.index == 1) b.x0.fill_(std::numeric_limits<float>::quiet_NaN());
      }
      return b;
    };
  }
  job.trainer = std::make_unique<mdiff::Trainer>(opts, job.net.ptr(), mdiff::network_function(job.net),
                                                 mdiff::NoiseSchedule::linear(100), mdiff::DenoiserOptions(), source);
  return job;
}

std::vector<at::Tensor> params_of(Job& job) {
  std::vector<at::Tensor> out;
  for (const auto& p : job.net->parameters()) out.push_back(p.detach().clone());
  return out;
}

double max_param_diff(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, (a[i] - b[i]).abs().max().item<double>());
  return m;
}

// Stops fit() at a step (the run's LR schedule stays that of the full run).
struct StopAt : mdiff::TrainerCallback {
  explicit StopAt(int64_t s) : stop(s) {}
  bool on_step(mdiff::Trainer&, const mdiff::TrainStepInfo& info) override { return info.step >= stop; }
  int64_t stop;
};

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : fallback;
}

// ---------------------------------------------------------------------------------------------
// Process helpers

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return 29500 + static_cast<int>(::getpid() % 1000);
  }
  const int port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

std::string self_exe() { return fs::read_symlink("/proc/self/exe").string(); }

// Starts this test binary as one rank running DistributedChild.Run; stdout and stderr go to `log`.
pid_t spawn_rank(const std::map<std::string, std::string>& vars, const std::string& log) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv(*e);
    const std::string key = kv.substr(0, kv.find('='));
    if (vars.count(key) == 0 && key.rfind("GTEST_", 0) != 0) env_strings.push_back(kv);
  }
  for (const auto& [k, v] : vars) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string exe = self_exe();
  std::string filter = "--gtest_filter=DistributedChild.Run";
  std::vector<char*> argv{exe.data(), filter.data(), nullptr};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, exe.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  EXPECT_EQ(rc, 0) << "posix_spawn failed";
  return pid;
}

// Waits for `pid` at most `seconds`; returns its exit status (128 + signal when killed), or -1
// after killing it on timeout.
int wait_rank(pid_t pid, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (true) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (std::chrono::steady_clock::now() > end) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}


// Runs `world` ranks of the child job and returns their exit codes; logs in dir/rank<r>.log.
std::vector<int> run_ranks(int world, const std::string& dir, std::map<std::string, std::string> vars,
                           double timeout = 240) {
  vars["WORLD_SIZE"] = std::to_string(world);
  vars["MASTER_ADDR"] = "127.0.0.1";
  vars["MASTER_PORT"] = std::to_string(free_port());
  vars["MD_DIST_CHILD"] = "1";
  vars["MD_DIST_DIR"] = dir;
  vars["MDIFF_DIST_TIMEOUT"] = "60";
  std::vector<pid_t> pids;
  for (int r = 0; r < world; ++r) {
    vars["RANK"] = std::to_string(r);
    vars["LOCAL_RANK"] = std::to_string(r);
    pids.push_back(spawn_rank(vars, dir + "/rank" + std::to_string(r) + ".log"));
  }
  std::vector<int> codes;
  for (pid_t p : pids) codes.push_back(wait_rank(p, timeout));
  return codes;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The child: one rank of a job, configured by MD_DIST_* variables.

TEST(DistributedChild, Run) {
  if (std::getenv("MD_DIST_CHILD") == nullptr) GTEST_SKIP() << "runs only as a rank started by the Distributed tests";
  const std::string dir = env_or("MD_DIST_DIR", ".");
  const std::string mode = env_or("MD_DIST_MODE", "train");
  const int64_t steps = std::stoll(env_or("MD_DIST_STEPS", "20"));
  const int64_t stop_at = std::stoll(env_or("MD_DIST_STOP_AT", "0"));
  auto comm = std::make_shared<mdiff::Communicator>(mdiff::DistributedOptions::from_environment());
  Job job = make_job(steps, dir + "/run", std::stoll(env_or("MD_DIST_CHECKPOINT_EVERY", "0")), mdiff::Shard::of(*comm),
                     std::stoll(env_or("MD_DIST_ACCUM", "1")), std::stoll(env_or("MD_DIST_NAN_AT", "-1")));
  job.trainer->distribute(comm, mdiff::GradientSyncOptions().bucket_mb(0.01));
  if (env_or("MD_DIST_RESUME", "0") == "1") {
    ASSERT_TRUE(job.trainer->resume());
  }
  if (stop_at > 0) job.trainer->add_callback(std::make_shared<StopAt>(stop_at));
  if (mode == "kill") {
    // Reports progress so the parent can kill a rank mid-run.
    job.trainer->add_callback(std::make_shared<mdiff::LambdaCallback>(
        [&](mdiff::Trainer&, const mdiff::TrainStepInfo& s) {
          std::ofstream(dir + "/progress" + std::to_string(comm->rank())) << s.step << "\n";
          return false;
        }));
  }
  const mdiff::TrainResult result = job.trainer->fit();
  if (comm->rank() == 0) torch::save(params_of(job), dir + "/params.pt");
  std::ofstream(dir + "/done" + std::to_string(comm->rank())) << job.trainer->step() << " " << result.skipped << "\n";
}

// ---------------------------------------------------------------------------------------------
// Options and single-process behaviour

namespace {
struct EnvGuard {
  explicit EnvGuard(std::vector<std::string> names) : names_(std::move(names)) {
    for (const auto& n : names_) {
      const char* v = std::getenv(n.c_str());
      saved_.emplace_back(v != nullptr, v ? v : "");
      ::unsetenv(n.c_str());
    }
  }
  ~EnvGuard() {
    for (size_t i = 0; i < names_.size(); ++i) {
      if (saved_[i].first) {
        ::setenv(names_[i].c_str(), saved_[i].second.c_str(), 1);
      } else {
        ::unsetenv(names_[i].c_str());
      }
    }
  }
  std::vector<std::string> names_;
  std::vector<std::pair<bool, std::string>> saved_;
};
}  // namespace

TEST(DistributedOptions, ReadsTheLauncherEnvironment) {
  EnvGuard guard({"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "MDIFF_DIST_BACKEND",
                  "MDIFF_DIST_TIMEOUT", "TORCHELASTIC_USE_AGENT_STORE"});
  auto none = mdiff::DistributedOptions::from_environment();
  EXPECT_EQ(none.world_size(), 1);
  EXPECT_EQ(none.rank(), 0);
  ::setenv("RANK", "3", 1);
  ::setenv("WORLD_SIZE", "4", 1);
  ::setenv("LOCAL_RANK", "1", 1);
  ::setenv("MASTER_ADDR", "10.0.0.7", 1);
  ::setenv("MASTER_PORT", "29611", 1);
  ::setenv("MDIFF_DIST_BACKEND", "gloo", 1);
  ::setenv("MDIFF_DIST_TIMEOUT", "12.5", 1);
  ::setenv("TORCHELASTIC_USE_AGENT_STORE", "True", 1);
  auto o = mdiff::DistributedOptions::from_environment();
  EXPECT_EQ(o.rank(), 3);
  EXPECT_EQ(o.world_size(), 4);
  EXPECT_EQ(o.local_rank(), 1);
  EXPECT_EQ(o.master_addr(), "10.0.0.7");
  EXPECT_EQ(o.master_port(), 29611);
  EXPECT_EQ(o.backend(), mdiff::DistributedBackend::Gloo);
  EXPECT_DOUBLE_EQ(o.timeout_seconds(), 12.5);
  EXPECT_TRUE(o.agent_store());
}

TEST(DistributedOptions, RejectsMalformedEnvironment) {
  EnvGuard guard({"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "MDIFF_DIST_BACKEND",
                  "MDIFF_DIST_TIMEOUT", "TORCHELASTIC_USE_AGENT_STORE"});
  ::setenv("RANK", "1", 1);
  MD_EXPECT_ERROR(mdiff::DistributedOptions::from_environment(), "set together");
  ::setenv("WORLD_SIZE", "two", 1);
  MD_EXPECT_ERROR(mdiff::DistributedOptions::from_environment(), "WORLD_SIZE must be an integer, got 'two'");
  ::setenv("WORLD_SIZE", "1", 1);
  MD_EXPECT_ERROR(mdiff::DistributedOptions::from_environment(), "rank must be in [0, world_size) = [0, 1), got 1");
  ::setenv("WORLD_SIZE", "2", 1);
  ::setenv("MASTER_PORT", "70000", 1);
  MD_EXPECT_ERROR(mdiff::DistributedOptions::from_environment(), "master_port must be in [1, 65535], got 70000");
  ::setenv("MASTER_PORT", "29500", 1);
  ::setenv("MDIFF_DIST_BACKEND", "mpi", 1);
  MD_EXPECT_ERROR(mdiff::DistributedOptions::from_environment(), "mpi");
  ::unsetenv("MDIFF_DIST_BACKEND");
  ::setenv("MDIFF_DIST_TIMEOUT", "-1", 1);
  MD_EXPECT_ERROR(mdiff::DistributedOptions::from_environment(), "timeout_seconds must be positive, got -1");
  MD_EXPECT_ERROR(mdiff::Shard({2, 2}).validate(), "index must be in [0, 2), got 2");
  MD_EXPECT_ERROR(mdiff::GradientSyncOptions().bucket_mb(0).validate(), "bucket_mb must be positive, got 0");
}

TEST(Communicator, AJobOfOneIsTheIdentity) {
  mdiff::Communicator comm{mdiff::DistributedOptions()};
  EXPECT_EQ(comm.world_size(), 1);
  EXPECT_EQ(comm.backend(), mdiff::nccl_available() && at::hasCUDA() ? mdiff::DistributedBackend::NCCL
                                                                       : mdiff::DistributedBackend::Gloo);
  if (comm.device().is_cuda()) GTEST_SKIP() << "checked on the CPU";
  at::Tensor x = at::arange(5, at::kFloat);
  comm.all_reduce_sum(x);
  EXPECT_TRUE(at::equal(x, at::arange(5, at::kFloat)));
  EXPECT_TRUE(comm.any(true));
  EXPECT_FALSE(comm.any(false));
  comm.check_same(7, "a value");
  std::vector<at::Tensor> ts{at::ones({3})};
  comm.broadcast(ts);
  EXPECT_TRUE(at::equal(ts[0], at::ones({3})));
  MD_EXPECT_ERROR(comm.broadcast(ts, 1), "root must be in [0, 1), got 1");
  at::Tensor nc = at::ones({4, 4}).t();
  MD_EXPECT_ERROR(comm.all_reduce_sum(nc), "contiguous");
}

TEST(GradientSync, AJobOfOneLeavesAccumulatedGradientsUnchanged) {
  at::manual_seed(3);
  mdiff::MLPDenoiser net(mdiff::MLPDenoiserOptions(3).hidden(32).num_blocks(2).time_embed_dim(16));
  const at::Tensor x1 = at::randn({8, 3}), x2 = at::randn({8, 3});
  const at::Tensor t = at::full({8}, 0.5);
  auto grads = [&](bool sync_on) {
    auto comm = std::make_shared<mdiff::Communicator>(mdiff::DistributedOptions());
    std::unique_ptr<mdiff::GradientSync> sync;
    if (sync_on) sync = std::make_unique<mdiff::GradientSync>(comm, net->parameters(), mdiff::GradientSyncOptions().bucket_mb(0.002));
    for (auto& p : net->parameters()) p.mutable_grad() = at::Tensor();
    net->forward(x1, t, {}).square().mean().backward();  // an earlier micro-batch: not synchronised
    if (sync) sync->arm();
    net->forward(x2, t, {}).square().mean().backward();
    if (sync) {
      sync->finish();
      EXPECT_GT(sync->num_buckets(), 2);
      EXPECT_EQ(sync->overlapped_buckets(), sync->num_buckets());
    }
    std::vector<at::Tensor> g;
    for (auto& p : net->parameters()) g.push_back(p.grad().clone());
    return g;
  };
  const auto plain = grads(false);
  const auto synced = grads(true);
  ASSERT_EQ(plain.size(), synced.size());
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_TRUE(at::allclose(plain[i], synced[i], 1e-6, 1e-7)) << "param " << i;
}

TEST(Shard, ShardedSourcesTogetherSeeTheUnshardedBatches) {
  const at::Tensor data = at::arange(200, at::kFloat).view({100, 2});
  const at::Tensor labels = at::arange(100, at::kLong);
  auto whole = mdiff::random_batches(data, labels, 12, 4);
  auto s0 = mdiff::random_batches(data, labels, 12, 4, {0, 3});
  auto s1 = mdiff::random_batches(data, labels, 12, 4, {1, 3});
  auto s2 = mdiff::random_batches(data, labels, 12, 4, {2, 3});
  for (int i = 0; i < 3; ++i) {
    const mdiff::TrainBatch w = whole.next();
    const mdiff::TrainBatch a = s0.next(), b = s1.next(), c = s2.next();
    EXPECT_TRUE(at::equal(at::cat({a.x0, b.x0, c.x0}), w.x0));
    EXPECT_TRUE(at::equal(at::cat({a.labels, b.labels, c.labels}), w.labels));
  }
  MD_EXPECT_ERROR(mdiff::random_batches(data, labels, 10, 4, {0, 3}), "global batch 10 must be divisible by the shard count 3");

  namespace data_ns = mdiff::data;
  data_ns::TensorLoader full(data, labels, data_ns::LoaderOptions(8).seed(3).drop_last(true));
  data_ns::TensorLoader l0(data, labels, data_ns::LoaderOptions(8).seed(3).drop_last(true).num_shards(2).shard_index(0));
  data_ns::TensorLoader l1(data, labels, data_ns::LoaderOptions(8).seed(3).drop_last(true).num_shards(2).shard_index(1));
  for (int i = 0; i < 15; ++i) {  // crosses an epoch boundary (12 batches per epoch)
    const auto w = full.next();
    const auto a = l0.next(), b = l1.next();
    EXPECT_TRUE(at::equal(at::cat({a.data, b.data}), w.data)) << "batch " << i;
  }
  MD_EXPECT_ERROR(data_ns::TensorLoader(data, data_ns::LoaderOptions(8).num_shards(2).shard_index(0)), "needs drop_last");
  MD_EXPECT_ERROR(data_ns::TensorLoader(data, data_ns::LoaderOptions(9).drop_last(true).num_shards(2)),
                  "batch_size 9 must be divisible by num_shards 2");
}

TEST(Communicator, ManyRanksWithoutDistributedSupportFailClearly) {
  if (mdiff::distributed_available()) GTEST_SKIP() << "this build has c10d";
  MD_EXPECT_ERROR(mdiff::Communicator(mdiff::DistributedOptions().world_size(2)), "no distributed support");
}

// ---------------------------------------------------------------------------------------------
// Several processes on loopback (Gloo)

#define MD_SKIP_WITHOUT_DISTRIBUTED() \
  if (!mdiff::distributed_available()) GTEST_SKIP() << "built without c10d"

TEST(Distributed, TwoProcessesTrainTheSameModelAsOne) {
  MD_SKIP_WITHOUT_DISTRIBUTED();
  mdiff_test::TempDir dir;
  const auto codes = run_ranks(2, dir.path(), {{"MD_DIST_STEPS", "20"}});
  ASSERT_EQ(codes, (std::vector<int>{0, 0})) << read_text(dir.path() + "/rank0.log") << read_text(dir.path() + "/rank1.log");
  std::vector<at::Tensor> two;
  torch::load(two, dir.path() + "/params.pt");
  Job one = make_job(20, "", 0, {});
  one.trainer->fit();
  const double diff = max_param_diff(params_of(one), two);
  std::cout << "max |param(2 processes) - param(1 process)| after 20 steps: " << diff << "\n";
  EXPECT_LT(diff, 2e-5);
  // The initial weights moved: the comparison is not between two untrained models.
  Job init = make_job(20, "", 0, {});
  EXPECT_GT(max_param_diff(params_of(init), two), 1e-3);
  // Only rank 0 wrote the log.
  EXPECT_TRUE(fs::exists(dir.path() + "/run/train_log.jsonl"));
}

TEST(Distributed, NaNOnOneRankMakesEveryRankSkipTheStep) {
  MD_SKIP_WITHOUT_DISTRIBUTED();
  mdiff_test::TempDir dir;
  const auto codes = run_ranks(2, dir.path(), {{"MD_DIST_STEPS", "12"}, {"MD_DIST_NAN_AT", "5"}});
  ASSERT_EQ(codes, (std::vector<int>{0, 0})) << read_text(dir.path() + "/rank0.log") << read_text(dir.path() + "/rank1.log");
  EXPECT_EQ(read_text(dir.path() + "/done0"), "12 1\n") << "rank 0 (finite data) skipped the step too";
  EXPECT_EQ(read_text(dir.path() + "/done1"), "12 1\n");
  std::vector<at::Tensor> two;
  torch::load(two, dir.path() + "/params.pt");
  Job one = make_job(12, "", 0, {}, 1, 5);
  const mdiff::TrainResult r = one.trainer->fit();
  EXPECT_EQ(r.skipped, 1);
  EXPECT_LT(max_param_diff(params_of(one), two), 2e-5);
}

TEST(Distributed, GradientAccumulationAcrossTwoProcessesMatchesOne) {
  MD_SKIP_WITHOUT_DISTRIBUTED();
  mdiff_test::TempDir dir;
  const auto codes = run_ranks(2, dir.path(), {{"MD_DIST_STEPS", "10"}, {"MD_DIST_ACCUM", "2"}});
  ASSERT_EQ(codes, (std::vector<int>{0, 0})) << read_text(dir.path() + "/rank0.log") << read_text(dir.path() + "/rank1.log");
  std::vector<at::Tensor> two;
  torch::load(two, dir.path() + "/params.pt");
  Job one = make_job(10, "", 0, {}, 2);
  one.trainer->fit();
  EXPECT_LT(max_param_diff(params_of(one), two), 2e-5);
}

TEST(Distributed, ATwoProcessCheckpointResumesOnOneProcessAndOnTwo) {
  MD_SKIP_WITHOUT_DISTRIBUTED();
  mdiff_test::TempDir dir;
  // Two ranks train 10 of 20 steps and checkpoint (rank 0 writes).
  auto codes = run_ranks(2, dir.path(), {{"MD_DIST_STEPS", "20"}, {"MD_DIST_STOP_AT", "10"}, {"MD_DIST_CHECKPOINT_EVERY", "10"}});
  ASSERT_EQ(codes, (std::vector<int>{0, 0})) << read_text(dir.path() + "/rank0.log") << read_text(dir.path() + "/rank1.log");
  ASSERT_FALSE(mdiff::list_checkpoints(dir.path() + "/run/checkpoints").empty());
  Job reference = make_job(20, "", 0, {});
  reference.trainer->fit();
  const auto want = params_of(reference);

  // One process resumes the two-process checkpoint.
  mdiff_test::TempDir copy;
  fs::copy(dir.path() + "/run", copy.path() + "/run", fs::copy_options::recursive);
  Job one = make_job(20, copy.path() + "/run", 10, {});
  ASSERT_TRUE(one.trainer->resume());
  EXPECT_EQ(one.trainer->step(), 10);
  one.trainer->fit();
  EXPECT_LT(max_param_diff(params_of(one), want), 2e-5);

  // Two processes resume it too (rank 0 reads it and sends it to rank 1).
  codes = run_ranks(2, dir.path(), {{"MD_DIST_STEPS", "20"}, {"MD_DIST_RESUME", "1"}, {"MD_DIST_CHECKPOINT_EVERY", "10"}});
  ASSERT_EQ(codes, (std::vector<int>{0, 0})) << read_text(dir.path() + "/rank0.log") << read_text(dir.path() + "/rank1.log");
  std::vector<at::Tensor> two;
  torch::load(two, dir.path() + "/params.pt");
  EXPECT_LT(max_param_diff(two, want), 2e-5);
}

TEST(Distributed, AKilledRankMakesTheOthersStopWithAnError) {
  MD_SKIP_WITHOUT_DISTRIBUTED();
  mdiff_test::TempDir dir;
  std::map<std::string, std::string> vars{{"MD_DIST_STEPS", "1000000"}, {"MD_DIST_MODE", "kill"}};
  vars["WORLD_SIZE"] = "2";
  vars["MASTER_ADDR"] = "127.0.0.1";
  vars["MASTER_PORT"] = std::to_string(free_port());
  vars["MD_DIST_CHILD"] = "1";
  vars["MD_DIST_DIR"] = dir.path();
  vars["MDIFF_DIST_TIMEOUT"] = "60";
  std::vector<pid_t> pids;
  for (int r = 0; r < 2; ++r) {
    vars["RANK"] = vars["LOCAL_RANK"] = std::to_string(r);
    pids.push_back(spawn_rank(vars, dir.path() + "/rank" + std::to_string(r) + ".log"));
  }
  // Wait until rank 1 has trained a few steps, then kill it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  int64_t progress = 0;
  while (progress < 5 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const std::string p = read_text(dir.path() + "/progress1");
    if (!p.empty()) progress = std::atoll(p.c_str());
  }
  ASSERT_GE(progress, 5) << read_text(dir.path() + "/rank1.log");
  ::kill(pids[1], SIGKILL);
  const auto killed = std::chrono::steady_clock::now();
  EXPECT_EQ(wait_rank(pids[1], 30), 128 + SIGKILL);
  const int code = wait_rank(pids[0], 60);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  const std::string log = read_text(dir.path() + "/rank0.log");
  const size_t at = log.find("distributed (rank 0 of 2)");
  std::cout << "rank 0 exited with " << code << " " << seconds << " s after rank 1 was killed: "
            << (at == std::string::npos ? std::string("(no message)") : log.substr(at, log.find('\n', at) - at)) << "\n";
  EXPECT_NE(code, 0) << log;
  EXPECT_NE(code, -1) << "rank 0 did not stop within 60 s: " << log;
  EXPECT_LT(seconds, 30.0);
  EXPECT_NE(log.find("distributed (rank 0 of 2)"), std::string::npos) << log;
  EXPECT_NE(log.find("a peer process has probably exited"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(dir.path() + "/done0"));
}

TEST(Distributed, ARankWhosePeersNeverComeFailsAfterTheTimeout) {
  MD_SKIP_WITHOUT_DISTRIBUTED();
  mdiff_test::TempDir dir;
  // Rank 1 of 2 alone: no TCPStore to reach (rank 0 never starts).
  std::map<std::string, std::string> vars{{"WORLD_SIZE", "2"}, {"RANK", "1"}, {"LOCAL_RANK", "1"},
                                          {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", std::to_string(free_port())},
                                          {"MD_DIST_CHILD", "1"}, {"MD_DIST_DIR", dir.path()}, {"MDIFF_DIST_TIMEOUT", "3"}};
  const auto start = std::chrono::steady_clock::now();
  const int code = wait_rank(spawn_rank(vars, dir.path() + "/rank1.log"), 60);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string log = read_text(dir.path() + "/rank1.log");
  std::cout << "a lone rank 1 exited with " << code << " after " << seconds << " s\n";
  EXPECT_NE(code, 0) << log;
  EXPECT_NE(code, -1) << "the lone rank hung: " << log;
  EXPECT_LT(seconds, 30.0);
  EXPECT_NE(log.find("distributed (rank 1 of 2): cannot reach the TCPStore at 127.0.0.1:"), std::string::npos) << log;
}
