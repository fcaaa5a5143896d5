// md_race: the C++ side of the race against the Python stack (diffusers on PyTorch). It runs the
// workloads of benchmarks/peers/race.py through the library's public API and reports throughput:
//
//   sampling  DDIM, 50 steps, batch 64 of 1x28x28, with a UNet configured like race.py's UNet2DModel
//   training  one optimiser step (Trainer::train_step: q_sample, forward, MSE, backward, AdamW) at batch 128
//   toy       DDIM, 50 steps, batch 4096 of points in R^3, with mdiff-toy's MLPDenoiser
//
//   md_race                                # every workload, 2 threads
//   md_race --workload sampling --reps 1 --json out/race/ours-sampling-1.json
//   md_race --quick                        # a short smoke run (the ctest benchmark.race_quick)
//
// benchmarks/peers/run.sh runs this and race.py alternately and writes the comparison; see
// docs/performance.md.

#include "bench_configs.h"
#include "model_cost.h"

#include <manifold_diffusion/manifold_diffusion.h>

#include <CLI/CLI.hpp>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Settings {
  std::vector<std::string> workloads;
  int threads = 2;
  bool quick = false;
  int reps = 0;          // 0: the workload's default
  int warmup = 1;
  int train_steps = 0;   // optimiser steps per training repetition (0: default)
  int sample_steps = 0;  // DDIM steps (0: default)
  uint64_t seed = 0;
  std::string json;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

/// One workload's result: times of the repetitions, and what one repetition does.
struct Result {
  std::string name;
  std::string what;
  std::string unit;        // what the throughput counts: images, samples
  int64_t batch = 0;
  int64_t iterations = 0;  // DDIM steps or optimiser steps per repetition
  int64_t items = 0;       // units per repetition
  std::vector<double> times;
  mdiff_bench::ModelCost cost;  // per forward at `batch`
  int64_t module_params = 0;
  double flop_per_iteration = 0;  // 2 * MACs of what one iteration runs (training: 3 forwards' worth)

  nlohmann::json to_json() const {
    const double med = median(times);
    return {{"workload", name},
            {"what", what},
            {"unit", unit},
            {"batch", batch},
            {"iterations_per_rep", iterations},
            {"items_per_rep", items},
            {"times_s", times},
            {"median_s", med},
            {"items_per_s", static_cast<double>(items) / med},
            {"s_per_iteration", med / static_cast<double>(iterations)},
            {"params", module_params},
            {"params_counted", cost.params},
            {"gflop_per_forward", cost.gflop()},
            {"gflop_per_s", flop_per_iteration * static_cast<double>(iterations) / med / 1e9}};
  }
};

void check_walker(const mdiff_bench::ModelCost& cost, int64_t module_params, const char* what) {
  MD_CHECK(cost.params == module_params, "md_race: benchmarks/model_cost.h counts ", cost.params, " parameters for the ",
           what, " but the module has ", module_params,
           ": the layout changed and the FLOP walk must follow it");
}

template <typename Fn>
void repeat(Result& r, int reps, Fn&& run) {
  for (int i = 0; i < reps; ++i) {
    const auto start = Clock::now();
    run();
    r.times.push_back(seconds_since(start));
    fmt::print("  ours {} rep {}/{}: {:.3f} s\n", r.name, i + 1, reps, r.times.back());
  }
}

Result run_sampling(const Settings& s) {
  const int64_t batch = s.quick ? 16 : 64;
  const int64_t steps = s.sample_steps > 0 ? s.sample_steps : (s.quick ? 3 : 50);
  const int reps = s.reps > 0 ? s.reps : (s.quick ? 1 : 3);
  mdiff::manual_seed(s.seed);
  mdiff::UNet net(mdiff_bench::race_unet_options());
  net->eval();
  Result r;
  r.name = "sampling";
  r.what = fmt::format("DDIM {} steps (eta 0, trailing, linear schedule, eps), UNet, batch {} of 1x28x28", steps, batch);
  r.unit = "images";
  r.batch = batch;
  r.iterations = steps;
  r.items = batch;
  r.module_params = mdiff_bench::count_parameters(net);
  r.cost = mdiff_bench::unet_cost(net->options(), batch, 28, 28);
  r.flop_per_iteration = 2 * r.cost.macs;
  check_walker(r.cost, r.module_params, "race UNet");
  const mdiff::Denoiser den([net](const at::Tensor& x, const at::Tensor& t, const at::Tensor& c) mutable {
                              return net->forward(x, t, c);
                            },
                            mdiff::NoiseSchedule::linear(1000), mdiff::PredictionType::Epsilon);
  auto sample = [&](int64_t n_steps) {
    c10::InferenceMode guard;
    const at::Tensor x = mdiff::make_sampler("ddim", n_steps)->sample(den, {batch, 1, 28, 28}, s.seed);
    MD_CHECK(at::isfinite(x).all().item<bool>(), "md_race: non-finite samples");
  };
  for (int i = 0; i < s.warmup; ++i) sample(s.quick ? 1 : 2);
  repeat(r, reps, [&] { sample(steps); });
  return r;
}

Result run_training(const Settings& s) {
  const int64_t batch = s.quick ? 32 : 128;
  const int64_t steps = s.train_steps > 0 ? s.train_steps : (s.quick ? 1 : 3);
  const int reps = s.reps > 0 ? s.reps : (s.quick ? 1 : 3);
  mdiff::manual_seed(s.seed);
  mdiff::UNet net(mdiff_bench::race_unet_options());
  Result r;
  r.name = "training";
  r.what = fmt::format("Trainer::train_step (q_sample, forward, MSE, backward, AdamW; no EMA, no clipping), UNet, "
                       "batch {} of 1x28x28",
                       batch);
  r.unit = "images";
  r.batch = batch;
  r.iterations = steps;
  r.items = batch * steps;
  r.module_params = mdiff_bench::count_parameters(net);
  r.cost = mdiff_bench::unet_cost(net->options(), batch, 28, 28);
  r.flop_per_iteration = 3 * 2 * r.cost.macs;  // backward counted as twice the forward
  check_walker(r.cost, r.module_params, "race UNet");
  const at::Tensor data = at::rand({1024, 1, 28, 28}, mdiff::make_generator(s.seed)) * 2 - 1;
  mdiff::Trainer trainer(mdiff::TrainerOptions(int64_t{1} << 40)
                             .lr(1e-4)
                             .grad_clip(0.0)
                             .ema_decay(0.0)
                             .precision(mdiff::Precision::FP32)
                             .log_every(0)
                             .seed(s.seed),
                         net.ptr(), mdiff::network_function(net), mdiff::NoiseSchedule::linear(1000),
                         mdiff::DenoiserOptions(mdiff::PredictionType::Epsilon),
                         mdiff::random_batches(data, {}, batch, s.seed + 1));
  auto train = [&](int64_t n) {
    for (int64_t k = 0; k < n; ++k) {
      const mdiff::TrainStepInfo info = trainer.train_step();
      MD_CHECK(std::isfinite(info.loss), "md_race: non-finite training loss");
    }
  };
  for (int i = 0; i < s.warmup; ++i) train(1);
  repeat(r, reps, [&] { train(steps); });
  return r;
}

Result run_toy(const Settings& s) {
  const int64_t batch = s.quick ? 1024 : 4096;
  const int64_t steps = s.sample_steps > 0 ? s.sample_steps : (s.quick ? 5 : 50);
  const int reps = s.reps > 0 ? s.reps : (s.quick ? 1 : 5);
  mdiff::manual_seed(s.seed);
  mdiff::MLPDenoiser net(mdiff_bench::toy_mlp_options());
  net->eval();
  Result r;
  r.name = "toy";
  r.what = fmt::format("DDIM {} steps (eta 0, trailing, cosine schedule, v-prediction), MLPDenoiser(3, hidden 256, "
                       "4 blocks), batch {} points in R^3",
                       steps, batch);
  r.unit = "samples";
  r.batch = batch;
  r.iterations = steps;
  r.items = batch;
  r.module_params = mdiff_bench::count_parameters(net);
  r.cost = mdiff_bench::mlp_cost(net->options(), batch);
  r.flop_per_iteration = 2 * r.cost.macs;
  check_walker(r.cost, r.module_params, "toy MLP");
  const mdiff::Denoiser den([net](const at::Tensor& x, const at::Tensor& t, const at::Tensor& c) mutable {
                              return net->forward(x, t, c);
                            },
                            mdiff::NoiseSchedule::cosine(1000), mdiff::PredictionType::VPrediction);
  auto sample = [&](int64_t n_steps) {
    c10::InferenceMode guard;
    const at::Tensor x = mdiff::make_sampler("ddim", n_steps)->sample(den, {batch, 3}, s.seed);
    MD_CHECK(at::isfinite(x).all().item<bool>(), "md_race: non-finite samples");
  };
  for (int i = 0; i < s.warmup; ++i) sample(steps);
  repeat(r, reps, [&] { sample(steps); });
  return r;
}

nlohmann::json environment() {
  nlohmann::json env = nlohmann::json::object();
  for (const char* name : {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "KMP_AFFINITY",
                           "OMP_PROC_BIND", "GOMP_CPU_AFFINITY", "DNNL_VERBOSE", "ONEDNN_VERBOSE", "LD_PRELOAD"}) {
    const char* v = std::getenv(name);
    env[name] = v ? nlohmann::json(v) : nlohmann::json(nullptr);
  }
  return env;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  CLI::App app{"md_race: the C++ side of the race against diffusers (benchmarks/peers/run.sh)"};
  Settings s;
  app.add_option("--workload", s.workloads, "sampling, training, toy (repeatable; default: all three)")
      ->check(CLI::IsMember({"sampling", "training", "toy"}));
  app.add_option("--threads", s.threads, "intra-op threads")->capture_default_str()->check(CLI::Range(1, 1024));
  app.add_flag("--quick", s.quick, "a short smoke run: a quarter of the batch, few steps, one repetition");
  app.add_option("--reps", s.reps, "timed repetitions per workload (0: 3 for sampling and training, 5 for toy)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  app.add_option("--warmup", s.warmup, "untimed warm-up runs per workload")->capture_default_str()->check(CLI::Range(0, 100));
  app.add_option("--train-steps", s.train_steps, "optimiser steps per training repetition (0: 3)")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000));
  app.add_option("--sample-steps", s.sample_steps, "DDIM steps (0: 50)")->capture_default_str()->check(CLI::Range(0, 1000));
  app.add_option("--seed", s.seed, "seed of weights, data and noise")->capture_default_str();
  app.add_option("--json", s.json, "write the results to this file");
  CLI11_PARSE(app, argc, argv);
  if (s.workloads.empty()) s.workloads = {"sampling", "training", "toy"};

  try {
    const int threads = mdiff::set_num_threads(s.threads);
    const nlohmann::json env = environment();
    fmt::print("md_race: {} | torch threads {}\n", mdiff::describe_build(), threads);
    for (const auto& [k, v] : env.items()) fmt::print("  env {}={}\n", k, v.is_null() ? "(unset)" : v.get<std::string>());

    nlohmann::json out = {{"side", "ours"},
                          {"library", "manifold_diffusion " + mdiff::version_string()},
                          {"torch_version", mdiff::torch_version()},
                          {"build", mdiff::describe_build()},
                          {"threads", threads},
                          {"quick", s.quick},
                          {"seed", s.seed},
                          {"env", env},
                          {"time", static_cast<int64_t>(std::time(nullptr))},
                          {"workloads", nlohmann::json::object()}};
    const std::map<std::string, std::function<Result(const Settings&)>> runners = {
        {"sampling", run_sampling}, {"training", run_training}, {"toy", run_toy}};
    for (const auto& w : s.workloads) {
      const Result r = runners.at(w)(s);
      const nlohmann::json j = r.to_json();
      fmt::print("ours {}: {}\n  params {} | {:.3f} GFLOP per forward | median {:.3f} s per rep | {:.4f} s per "
                 "iteration | {:.2f} {}/s | {:.2f} GFLOP/s\n",
                 w, r.what, r.module_params, r.cost.gflop(), j["median_s"].get<double>(),
                 j["s_per_iteration"].get<double>(), j["items_per_s"].get<double>(), r.unit,
                 j["gflop_per_s"].get<double>());
      out["workloads"][w] = j;
    }
    if (!s.json.empty()) {
      const std::filesystem::path p(s.json);
      if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
      mdiff::atomic_write_text(s.json, out.dump(2) + "\n");
      fmt::print("wrote {}\n", s.json);
    }
    fmt::print("md_race ok\n");
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "md_race: error: {}\n", e.what());
    return 1;
  }
}
