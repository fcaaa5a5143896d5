// The description of an image model that mdiff-train writes next to its checkpoints (config.json)
// and mdiff-sample reads back: network, noise schedule, parameterisation, classes, image shape.
#pragma once

#include "common.h"

#include <fstream>
#include <sstream>

namespace mdiff_program {

struct ImageModelConfig {
  mdiff::UNetOptions unet{1, 1};
  mdiff::ScheduleOptions schedule;
  mdiff::DenoiserOptions denoiser;
  std::vector<std::string> classes;  ///< empty: unconditional.
  int64_t channels = 1;
  int64_t image_size = 28;
  std::string dataset;

  nlohmann::json to_json() const {
    nlohmann::json j;
    j["format"] = "manifold_diffusion image model 1";
    j["unet"] = nlohmann::json::parse(unet.to_json());
    j["schedule"] = nlohmann::json::parse(schedule.to_json());
    j["denoiser"] = nlohmann::json::parse(denoiser.to_json());
    j["classes"] = classes;
    j["channels"] = channels;
    j["image_size"] = image_size;
    j["dataset"] = dataset;
    return j;
  }

  void save(const std::string& dir) const {
    mdiff::atomic_write_text((std::filesystem::path(dir) / "config.json").string(), to_json().dump(2) + "\n");
  }

  static ImageModelConfig load(const std::string& path) {
    std::ifstream in(path);
    MD_CHECK(in.good(), "cannot read model config '", path, "'");
    std::stringstream ss;
    ss << in.rdbuf();
    const auto j = nlohmann::json::parse(ss.str(), nullptr, false);
    MD_CHECK(!j.is_discarded() && j.is_object(), "'", path, "' is not valid JSON");
    MD_CHECK(j.value("format", "") == "manifold_diffusion image model 1", "'", path,
             "' is not an mdiff-train model config (format '", j.value("format", ""), "')");
    ImageModelConfig c;
    try {
      c.unet = mdiff::UNetOptions::from_json(j.at("unet").dump());
      c.schedule = mdiff::ScheduleOptions::from_json(j.at("schedule").dump());
      c.denoiser = mdiff::DenoiserOptions::from_json(j.at("denoiser").dump());
      c.classes = j.at("classes").get<std::vector<std::string>>();
      c.channels = j.at("channels").get<int64_t>();
      c.image_size = j.at("image_size").get<int64_t>();
      c.dataset = j.value("dataset", "");
    } catch (const nlohmann::json::exception& e) {
      MD_CHECK(false, "'", path, "': ", e.what());
    }
    MD_CHECK(c.unet.num_classes() == static_cast<int64_t>(c.classes.size()), "'", path, "': unet.num_classes (",
             c.unet.num_classes(), ") differs from the ", c.classes.size(), " class names");
    return c;
  }
};

/// The model's denoiser over a UNet (augmentation conditioning, if any, is left at zero: the
/// identity augmentation).
inline mdiff::Denoiser image_denoiser(mdiff::UNet unet, const ImageModelConfig& c) {
  return mdiff::Denoiser(
      [unet](const at::Tensor& x, const at::Tensor& t, const at::Tensor& cond) mutable {
        return unet->forward(x, t, cond);
      },
      mdiff::NoiseSchedule(c.schedule), c.denoiser);
}

/// Clamps x0_hat to the data range [-1, 1] at every step (DDPM's "clip_denoised").
class ClipX0 : public mdiff::SamplingHook {
 public:
  at::Tensor on_x0(const mdiff::StepContext&, at::Tensor x0) override { return x0.clamp(-1, 1); }
};

/// Samples `labels.size(0)` images (labels undefined: unconditional, then `n` images) in batches,
/// with classifier-free guidance when `guidance` != 1. Per-sample seeds: sample i depends only on
/// (seed, i), whatever the batch size.
inline at::Tensor sample_images(const mdiff::Denoiser& denoiser, const mdiff::Sampler& sampler,
                                const ImageModelConfig& c, int64_t n, const at::Tensor& labels, double guidance,
                                uint64_t seed, int64_t batch, c10::Device device, bool clip = true) {
  std::vector<at::Tensor> parts;
  at::NoGradGuard no_grad;
  for (int64_t start = 0; start < n; start += batch) {
    const int64_t m = std::min(batch, n - start);
    mdiff::SampleArgs args;
    if (clip) args.hooks.push_back(std::make_shared<ClipX0>());
    if (labels.defined()) {
      args.cond = labels.slice(0, start, start + m).to(device);
      if (guidance != 1.0) {
        args.uncond = at::full_like(args.cond, -1);
        args.guidance_scale = guidance;
      }
    }
    parts.push_back(sampler
                        .sample(denoiser, {m, c.channels, c.image_size, c.image_size}, seed, args, start,
                                at::TensorOptions(at::kFloat).device(device))
                        .cpu());
  }
  return at::cat(parts, 0);
}

}  // namespace mdiff_program
