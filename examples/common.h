// Pieces shared by the bundled programs: the common flags, device/thread setup, and metrics.json.
#pragma once

#include <manifold_diffusion/manifold_diffusion.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>

namespace mdiff_program {

/// Flags every program takes.
struct CommonFlags {
  std::string out;
  uint64_t seed = 0;
  int threads = 2;
  std::string device = "cpu";
};

inline void add_common_flags(CLI::App& app, CommonFlags& f) {
  app.add_option("--out", f.out, "output folder")->capture_default_str();
  app.add_option("--seed", f.seed, "random seed")->capture_default_str();
  app.add_option("--threads", f.threads, "intra-op CPU threads (0 = all cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  app.add_option("--device", f.device, "cpu, cuda or cuda:N")->capture_default_str();
}

/// Sets threads and seeds, creates the output folder, prints the build line; returns the device.
inline c10::Device setup(CommonFlags& f, const char* program) {
  // Line-buffered output, so a log file or pipe shows progress as it happens (and keeps it when
  // the process is killed).
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  f.threads = mdiff::set_num_threads(f.threads);
  mdiff::manual_seed(f.seed);
  const c10::Device device = mdiff::parse_device(f.device);
  std::filesystem::create_directories(f.out);
  fmt::print("{}: {} | device {} | {} threads\n", program, mdiff::describe_build(), device.str(), f.threads);
  return device;
}

/// The data-parallel job this process is a rank of, from the launcher's environment (RANK,
/// WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT: scripts/launch.sh, torchrun, a scheduler);
/// null when the process runs alone. Gloo serves CPU training; NCCL serves CUDA training, on
/// cuda:LOCAL_RANK (which then replaces `device`).
inline std::shared_ptr<mdiff::Communicator> join_job(c10::Device& device) {
  auto options = mdiff::DistributedOptions::from_environment();
  if (options.world_size() == 1) return nullptr;
  if (options.backend() == mdiff::DistributedBackend::Auto) {
    options.backend(device.is_cuda() ? mdiff::DistributedBackend::NCCL : mdiff::DistributedBackend::Gloo);
  }
  auto comm = std::make_shared<mdiff::Communicator>(options);
  MD_CHECK_VALUE(comm->device().is_cuda() == device.is_cuda(), "--device ", device.str(), " does not fit the ",
                 mdiff::to_string(comm->backend()), " backend (it works on ", comm->device().str(),
                 "); train on the CPU with gloo and on GPUs with nccl");
  device = comm->device();
  fmt::print("distributed: rank {} of {} (local rank {}), {} backend, store {}:{}, device {}\n", comm->rank(),
             comm->world_size(), comm->local_rank(), mdiff::to_string(comm->backend()), options.master_addr(),
             options.master_port(), device.str());
  return comm;
}

/// Where the Fashion-MNIST feature classifier is cached: $XDG_CACHE_HOME or ~/.cache, then
/// manifold_diffusion/fashion_classifier.safetensors.
inline std::string default_classifier_path() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  const std::string base = xdg && *xdg ? xdg : (home && *home ? std::string(home) + "/.cache" : ".");
  return base + "/manifold_diffusion/fashion_classifier.safetensors";
}

/// Writes `DIR/metrics.json` atomically and prints it.
inline void write_metrics(const std::string& dir, const nlohmann::json& metrics) {
  const std::string path = (std::filesystem::path(dir) / "metrics.json").string();
  mdiff::atomic_write_text(path, metrics.dump(2) + "\n");
  fmt::print("{}\nmetrics: {}\n", metrics.dump(), std::filesystem::absolute(path).string());
}

/// Writes `x` as the one tensor `name` of a safetensors file, atomically (mdiff-embed, Python's
/// safetensors and numpy-free tools read it).
inline void save_tensor_file(const std::string& path, const std::string& name, const at::Tensor& x) {
  mdiff::io::save_safetensors(path, {{name, x.detach().to(at::kCPU).contiguous()}}, {{"format", "pt"}});
}

/// Runs `body` and turns exceptions into a one-line error and exit status 1.
template <typename F>
int run_guarded(const char* program, F&& body) {
  try {
    body();
  } catch (const c10::Error& e) {
    fmt::print(stderr, "{}: error: {}\n", program, e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: error: {}\n", program, e.what());
    return 1;
  }
  return 0;
}

/// Builds the --train-constraint specifications with `context`, adds them to the trainer, prints
/// one line per constraint, and returns {spec, description} pairs for metrics.json.
inline nlohmann::json add_train_constraints(mdiff::Trainer& trainer, const std::vector<std::string>& specs,
                                            const mdiff::TrainingConstraintContext& context) {
  nlohmann::json list = nlohmann::json::array();
  for (const std::string& text : specs) {
    auto c = mdiff::make_training_constraint(mdiff::ConstraintSpec::parse(text), context);
    fmt::print("train constraint: {} (extra network calls per example: {})\n", c->describe(), c->extra_network_calls());
    list.push_back({{"spec", text}, {"description", c->describe()}, {"extra_network_calls", c->extra_network_calls()}});
    trainer.add_loss_term(c);
  }
  return list;
}

}  // namespace mdiff_program
