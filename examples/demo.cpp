// mdiff-demo: a small end-to-end diffusion run on a known manifold.
//
// Trains a denoising diffusion model (MLPDenoiser, eps-prediction, linear betas, EMA) on the
// "two moons" curve in R^2, samples it with the chosen sampler using per-sample generators, and
// measures how far the samples are from the true curve (the exact distance to the two arcs).
// Writes samples.csv and samples.svg into --out and prints a JSON summary line.
//
//   mdiff-demo --out out/demo --train-steps 3000 --samples 2000 --sampler dpmpp_2m --steps 25 --threads 2

#include <manifold_diffusion/manifold_diffusion.h>

#include <ATen/ATen.h>
#include <torch/optim/adam.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/os.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

namespace {

constexpr double kPi = 3.14159265358979323846;

// Two moons: the upper unit half-circle at (0, 0) and the lower one at (1, 0.5), shifted to zero mean.
const double kShiftX = 0.5;
const double kShiftY = 0.25;

at::Tensor two_moons(int64_t n, double noise, at::Generator& gen) {
  const at::Tensor u = at::rand({n}, gen, at::kDouble) * kPi;
  const at::Tensor upper = at::rand({n}, gen, at::kDouble) < 0.5;
  const at::Tensor x = at::where(upper, at::cos(u), 1 - at::cos(u)) - kShiftX;
  const at::Tensor y = at::where(upper, at::sin(u), 0.5 - at::sin(u)) - kShiftY;
  return (at::stack({x, y}, 1) + noise * at::randn({n, 2}, gen, at::kDouble)).to(at::kFloat);
}

// Exact distance from each point to the two arcs.
at::Tensor distance_to_moons(const at::Tensor& pts) {
  const at::Tensor p = pts.to(at::kDouble);
  auto arc_distance = [&](double cx, double cy, bool upper) {
    const at::Tensor dx = p.select(1, 0) + kShiftX - cx;
    const at::Tensor dy = p.select(1, 1) + kShiftY - cy;
    const at::Tensor r = at::sqrt(dx * dx + dy * dy);
    const at::Tensor on_arc = upper ? dy >= 0 : dy <= 0;
    // Off the arc's angular range the nearest point is an endpoint, (cx +- 1, cy).
    const at::Tensor d_end = at::minimum(at::sqrt((dx - 1) * (dx - 1) + dy * dy), at::sqrt((dx + 1) * (dx + 1) + dy * dy));
    return at::where(on_arc, at::abs(r - 1), d_end);
  };
  return at::minimum(arc_distance(0.0, 0.0, true), arc_distance(1.0, 0.5, false));
}

std::unique_ptr<mdiff::Sampler> make_sampler(const std::string& name, int64_t steps) {
  if (name == "ddpm") return std::make_unique<mdiff::DDPMSampler>(mdiff::DDPMOptions(steps));
  if (name == "ddim") return std::make_unique<mdiff::DDIMSampler>(mdiff::DDIMOptions(steps));
  if (name == "dpmpp_2m") return std::make_unique<mdiff::DPMSolverSampler>(mdiff::DPMSolverOptions(steps));
  if (name == "unipc") return std::make_unique<mdiff::UniPCSampler>(mdiff::UniPCOptions(steps));
  if (name == "euler") return std::make_unique<mdiff::EulerSampler>(mdiff::SigmaSamplerOptions(steps));
  if (name == "heun") return std::make_unique<mdiff::HeunSampler>(mdiff::SigmaSamplerOptions(steps));
  if (name == "euler_ancestral") return std::make_unique<mdiff::EulerAncestralSampler>(mdiff::SigmaSamplerOptions(steps));
  if (name == "pc") return std::make_unique<mdiff::PCSampler>(mdiff::PCOptions(steps));
  MD_CHECK_VALUE(false, "unknown sampler '", name, "'");
  return nullptr;
}

void write_svg(const std::string& path, const at::Tensor& data, const at::Tensor& samples) {
  std::ofstream f(path);
  MD_CHECK(f.good(), "cannot write '", path, "'");
  const double size = 480;
  auto px = [&](double v) { return size / 2 + v * size / 4.0; };
  f << fmt::format(R"(<svg xmlns="http://www.w3.org/2000/svg" width="{0}" height="{0}" viewBox="0 0 {0} {0}">)",
                   size)
    << "\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  auto dots = [&](const at::Tensor& pts, const char* color, double r) {
    const at::Tensor p = pts.to(at::kDouble).contiguous();
    const double* d = p.data_ptr<double>();
    for (int64_t i = 0; i < p.size(0); ++i) {
      f << fmt::format(R"(<circle cx="{:.1f}" cy="{:.1f}" r="{}" fill="{}" fill-opacity="0.5"/>)", px(d[2 * i]),
                       size - px(d[2 * i + 1]), r, color)
        << "\n";
    }
  };
  dots(data, "#999999", 1.2);
  dots(samples, "#d62728", 1.5);
  f << R"(<text x="10" y="20" font-family="sans-serif" font-size="14">grey: training data, red: samples</text>)"
    << "\n</svg>\n";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mdiff-demo: train and sample a small diffusion model on the two-moons curve"};
  std::string out_dir = "out/demo";
  int64_t train_steps = 2000;
  int64_t n_samples = 2000;
  int64_t n_data = 4000;
  int64_t diffusion_steps = 200;
  int64_t batch = 256;
  std::string sampler_name = "dpmpp_2m";
  int64_t sample_steps = 25;
  double lr = 2e-3;
  uint64_t seed = 0;
  int threads = 2;
  app.add_option("--out", out_dir, "output directory")->capture_default_str();
  app.add_option("--train-steps", train_steps, "optimiser steps")->capture_default_str()->check(CLI::Range(1, 10000000));
  app.add_option("--samples", n_samples, "samples to draw")->capture_default_str()->check(CLI::Range(1, 10000000));
  app.add_option("--data", n_data, "training points")->capture_default_str()->check(CLI::Range(16, 10000000));
  app.add_option("--diffusion-steps", diffusion_steps, "T of the noise schedule")
      ->capture_default_str()
      ->check(CLI::Range(2, 100000));
  app.add_option("--batch", batch, "batch size")->capture_default_str()->check(CLI::Range(1, 1000000));
  app.add_option("--lr", lr, "Adam learning rate")->capture_default_str()->check(CLI::Range(1e-8, 1.0));
  app.add_option("--sampler", sampler_name, "sampler")
      ->capture_default_str()
      ->check(CLI::IsMember({"ddpm", "ddim", "dpmpp_2m", "unipc", "euler", "heun", "euler_ancestral", "pc"}));
  app.add_option("--steps", sample_steps, "sampling steps (<= diffusion steps)")->capture_default_str()->check(CLI::Range(1, 100000));
  app.add_option("--seed", seed, "random seed")->capture_default_str();
  app.add_option("--threads", threads, "intra-op threads (0 = all)")->capture_default_str()->check(CLI::Range(0, 1024));
  CLI11_PARSE(app, argc, argv);

  try {
    threads = mdiff::set_num_threads(threads);
    mdiff::manual_seed(seed);
    fmt::print("{}\n", mdiff::describe_build());
    std::filesystem::create_directories(out_dir);

    at::Generator data_gen = mdiff::make_generator(mdiff::mix_seed(seed));
    const at::Tensor data = two_moons(n_data, 0.02, data_gen);

    MD_CHECK_VALUE(sample_steps <= diffusion_steps, "--steps (", sample_steps, ") must be <= --diffusion-steps (",
                   diffusion_steps, ")");
    // Linear betas of the DDPM papers, scaled by 1000 / T.
    const double scale = 1000.0 / static_cast<double>(diffusion_steps);
    const mdiff::NoiseSchedule schedule =
        mdiff::NoiseSchedule::linear(diffusion_steps, scale * 1e-4, std::min(0.999, scale * 0.02));

    mdiff::MLPDenoiser net(mdiff::MLPDenoiserOptions(2).hidden(128).num_blocks(3).time_embed_dim(32));
    const mdiff::Denoiser denoiser(
        [net](const at::Tensor& x, const at::Tensor& t, const at::Tensor& c) mutable { return net->forward(x, t, c); },
        schedule, mdiff::DenoiserOptions(mdiff::PredictionType::Epsilon));
    mdiff::EMA ema(*net, mdiff::EMAOptions().decay(0.995));
    torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(lr));
    at::Generator train_gen = mdiff::make_generator(mdiff::mix_seed(seed + 1));
    const auto t0 = std::chrono::steady_clock::now();
    double ema_loss = 0;
    for (int64_t step = 1; step <= train_steps; ++step) {
      const at::Tensor idx = at::randint(0, n_data, {batch}, train_gen, at::kLong);
      const at::Tensor x0 = data.index_select(0, idx);
      const at::Tensor t = denoiser.sample_timesteps(batch, train_gen);
      const at::Tensor noise = at::randn({batch, 2}, train_gen, at::kFloat);
      const at::Tensor loss = denoiser.training_loss(x0, t, noise);
      opt.zero_grad();
      loss.backward();
      opt.step();
      ema.update(*net);
      const double l = loss.item<double>();
      MD_CHECK(std::isfinite(l), "training diverged: loss ", l, " at step ", step);
      ema_loss = step == 1 ? l : 0.98 * ema_loss + 0.02 * l;
      if (step % std::max<int64_t>(1, train_steps / 10) == 0 || step == train_steps) {
        fmt::print("step {:>6}/{}  loss {:.4f}\n", step, train_steps, ema_loss);
      }
    }
    const double train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    // Sampling with the averaged weights; every sample draws from its own generator (batch-invariant).
    net->eval();
    ema.copy_to(*net);
    const auto sampler = make_sampler(sampler_name, sample_steps);
    auto gens = mdiff::make_sample_generators(seed, 0, n_samples);
    const at::Tensor x_T = mdiff::randn_per_sample({n_samples, 2}, gens);
    const auto t1 = std::chrono::steady_clock::now();
    const at::Tensor x = sampler->sample(denoiser, x_T, gens);
    const double sample_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();

    const at::Tensor d_samples = distance_to_moons(x);
    const at::Tensor d_noise = distance_to_moons(x_T);
    const double mean_d = d_samples.mean().item<double>();
    const double near = (d_samples < 0.1).to(at::kDouble).mean().item<double>();
    const double mean_d_noise = d_noise.mean().item<double>();

    {
      std::ofstream csv(out_dir + "/samples.csv");
      MD_CHECK(csv.good(), "cannot write '", out_dir, "/samples.csv'");
      csv << "x,y,distance_to_manifold\n";
      const at::Tensor xs = x.to(at::kDouble).contiguous();
      for (int64_t i = 0; i < n_samples; ++i) {
        csv << fmt::format("{:.6f},{:.6f},{:.6f}\n", xs[i][0].item<double>(), xs[i][1].item<double>(),
                           d_samples[i].item<double>());
      }
    }
    write_svg(out_dir + "/samples.svg", data.slice(0, 0, std::min<int64_t>(n_data, 2000)), x);

    fmt::print("trained {} steps in {:.1f} s, sampled {} points with {} x {} steps in {:.2f} s ({} threads)\n",
               train_steps, train_s, n_samples, sampler->name(), sample_steps, sample_s, threads);
    fmt::print("mean distance to the two-moons curve: samples {:.4f}, initial noise {:.4f}; within 0.1: {:.1f}%\n",
               mean_d, mean_d_noise, 100 * near);
    fmt::print(R"({{"train_steps": {}, "final_loss": {:.5f}, "mean_distance": {:.5f}, "noise_mean_distance": {:.5f}, )"
               R"("fraction_within_0.1": {:.4f}, "sampler": "{}", "sample_steps": {}, "train_seconds": {:.2f}, )"
               R"("sample_seconds": {:.2f}, "threads": {}}})"
               "\n",
               train_steps, ema_loss, mean_d, mean_d_noise, near, sampler->name(), sample_steps, train_s, sample_s,
               threads);
    fmt::print("outputs: {0}/samples.csv, {0}/samples.svg\n", std::filesystem::absolute(out_dir).string());
  } catch (const std::exception& e) {
    fmt::print(stderr, "mdiff-demo: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
