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

/// A trained image model loaded for sampling.
struct LoadedImageModel {
  ImageModelConfig config;
  mdiff::UNet unet{nullptr};
  std::string checkpoint;
  int64_t step = 0;
};

/// The flags that name a trained model: --run, --config, --checkpoint, --trained-weights.
struct ModelFlags {
  std::string run_dir, config_path, checkpoint;
  bool trained_weights = false;
};

inline void add_model_flags(CLI::App& app, ModelFlags& f) {
  app.add_option("--run", f.run_dir, "an mdiff-train output folder (config.json + newest checkpoint)");
  app.add_option("--config", f.config_path, "model config.json (instead of --run)");
  app.add_option("--checkpoint", f.checkpoint, "checkpoint file (instead of the newest one of --run)");
  app.add_flag("--trained-weights", f.trained_weights, "use the trained weights instead of the EMA");
}

/// Loads `--run DIR` (config.json + the newest checkpoint) or `--config` + `--checkpoint`, with
/// the EMA weights unless `trained_weights`; the network is moved to `device` in eval mode.
inline LoadedImageModel load_image_model(const std::string& run_dir, std::string config_path, std::string checkpoint,
                                         bool trained_weights, c10::Device device) {
  MD_CHECK_VALUE(!run_dir.empty() || (!config_path.empty() && !checkpoint.empty()),
                 "give --run DIR, or both --config and --checkpoint");
  if (config_path.empty()) config_path = run_dir + "/config.json";
  if (checkpoint.empty()) {
    const auto files = mdiff::list_checkpoints(run_dir + "/checkpoints");
    MD_CHECK_VALUE(!files.empty(), "no checkpoint in '", run_dir, "/checkpoints'");
    // The newest current-format file; a folder of 0.1 archives only gets their refusal by name.
    checkpoint = files.back().path;
    for (auto it = files.rbegin(); it != files.rend(); ++it) {
      if (!it->legacy) {
        checkpoint = it->path;
        break;
      }
    }
  }
  LoadedImageModel m;
  m.config = ImageModelConfig::load(config_path);
  m.unet = mdiff::UNet(m.config.unet);
  // A Trainer checkpoint (the EMA or trained weights) or weights alone (mdiff-train's
  // weights.safetensors / weights-ema.safetensors); a 0.1 archive is refused by name.
  m.step = mdiff::load_weights(checkpoint, *m.unet, !trained_weights);
  m.unet->to(device);
  m.unet->eval();
  m.checkpoint = checkpoint;
  fmt::print("model: {} ({} weights, step {})\n", checkpoint, trained_weights ? "trained" : "EMA", m.step);
  return m;
}

inline LoadedImageModel load_image_model(const ModelFlags& f, c10::Device device) {
  return load_image_model(f.run_dir, f.config_path, f.checkpoint, f.trained_weights, device);
}

/// Writes a diffusers DDPMPipeline folder: unet/ (export_diffusers_unet) and a DDPMScheduler config
/// with this model's schedule and prediction type, plus model_index.json.
inline void export_ddpm_pipeline(const mdiff::UNetImpl& unet, const ImageModelConfig& c, const std::string& dir) {
  const mdiff::ScheduleOptions& s = c.schedule;
  std::string kind;
  switch (s.kind()) {
    case mdiff::BetaSchedule::Linear: kind = "linear"; break;
    case mdiff::BetaSchedule::ScaledLinear: kind = "scaled_linear"; break;
    case mdiff::BetaSchedule::Cosine: kind = "squaredcos_cap_v2"; break;
    case mdiff::BetaSchedule::Sigmoid: kind = "sigmoid"; break;
    case mdiff::BetaSchedule::Custom: break;
  }
  MD_CHECK_VALUE(!kind.empty(), "--export-diffusers: a custom beta schedule has no diffusers scheduler name");
  MD_CHECK_VALUE(s.kind() != mdiff::BetaSchedule::Cosine || (s.cosine_s() == 0.008 && s.max_beta() == 0.999),
                 "--export-diffusers: diffusers' squaredcos_cap_v2 has s = 0.008 and max_beta = 0.999, this schedule s = ",
                 s.cosine_s(), " and max_beta = ", s.max_beta());
  std::string prediction;
  switch (c.denoiser.prediction()) {
    case mdiff::PredictionType::Epsilon: prediction = "epsilon"; break;
    case mdiff::PredictionType::Sample: prediction = "sample"; break;
    case mdiff::PredictionType::VPrediction: prediction = "v_prediction"; break;
    case mdiff::PredictionType::EDM: break;
  }
  MD_CHECK_VALUE(!prediction.empty(), "--export-diffusers: EDM preconditioning has no diffusers DDPMScheduler equivalent");
  mdiff::export_diffusers_unet(unet, (std::filesystem::path(dir) / "unet").string());
  nlohmann::json sched = {{"_class_name", "DDPMScheduler"},
                          {"num_train_timesteps", s.num_train_timesteps()},
                          {"beta_schedule", kind},
                          {"beta_start", s.beta_start()},
                          {"beta_end", s.beta_end()},
                          {"prediction_type", prediction},
                          {"variance_type", "fixed_small"},
                          {"clip_sample", true},
                          {"clip_sample_range", 1.0},
                          {"rescale_betas_zero_snr", s.rescale_zero_terminal_snr()},
                          {"timestep_spacing", "leading"},
                          {"steps_offset", 0}};
  std::filesystem::create_directories(std::filesystem::path(dir) / "scheduler");
  mdiff::atomic_write_text((std::filesystem::path(dir) / "scheduler" / "scheduler_config.json").string(), sched.dump(2) + "\n");
  nlohmann::json index = {{"_class_name", "DDPMPipeline"},
                          {"scheduler", {"diffusers", "DDPMScheduler"}},
                          {"unet", {"diffusers", "UNet2DModel"}}};
  mdiff::atomic_write_text((std::filesystem::path(dir) / "model_index.json").string(), index.dump(2) + "\n");
}

/// The text of a (small) file, at most 16 MB.
inline std::string read_small_text_file(const std::string& path) {
  const std::vector<uint8_t> b = mdiff::read_file_bytes(path, 16 << 20);
  return std::string(b.begin(), b.end());
}

/// Fills what image sampling constraints may need: a ReferenceManifold of `reference_images`
/// Fashion-MNIST training images when a spec names `manifold` (local PCA, k = 12, dimension
/// estimated), and the autoencoder saved at `autoencoder_path` (mdiff-train writes one for its
/// `ae` constraint) when given.
inline void add_image_constraint_context(mdiff::SamplingConstraintContext& ctx, const std::vector<std::string>& specs,
                                         const std::string& autoencoder_path, int64_t reference_images,
                                         c10::Device device) {
  bool wants_manifold = false;
  for (const auto& s : specs) wants_manifold = wants_manifold || mdiff::ConstraintSpec::parse(s).name() == "manifold";
  if (wants_manifold && !ctx.manifold) {
    const at::Tensor train = mdiff::data::load_fashion_mnist(mdiff::data::kFashionMnistDir, "train").images;
    const at::Tensor ref = train.slice(0, 0, std::min<int64_t>(reference_images, train.size(0))).to(device);
    ctx.manifold = mdiff::ReferenceManifold::make(ref, mdiff::ReferenceOptions().k(12));
    fmt::print("manifold: local PCA of {} Fashion-MNIST training images, k = 12, d = {}\n", ref.size(0),
               ctx.manifold->intrinsic_dim());
  }
  if (!autoencoder_path.empty()) {
    mdiff::Autoencoder ae = mdiff::load_autoencoder(autoencoder_path);
    ae->to(device);
    ae->eval();
    ctx.autoencoder.encode = [ae](const at::Tensor& x) mutable { return ae->encode(x); };
    ctx.autoencoder.decode = [ae](const at::Tensor& z) mutable { return ae->decode(z); };
  }
}

/// Samples `labels.size(0)` images (labels undefined: unconditional, then `n` images) in batches,
/// with classifier-free guidance when `guidance` != 1. Per-sample seeds: sample i depends only on
/// (seed, i), whatever the batch size.
inline at::Tensor sample_images(const mdiff::Denoiser& denoiser, const mdiff::Sampler& sampler,
                                const ImageModelConfig& c, int64_t n, const at::Tensor& labels, double guidance,
                                uint64_t seed, int64_t batch, c10::Device device, bool clip = true,
                                const std::vector<std::string>& constraints = {},
                                const mdiff::SamplingConstraintContext& context = {}) {
  std::vector<at::Tensor> parts;
  at::NoGradGuard no_grad;
  for (int64_t start = 0; start < n; start += batch) {
    const int64_t m = std::min(batch, n - start);
    mdiff::SampleArgs args;
    if (clip) args.hooks.push_back(std::make_shared<mdiff::StaticClip>());
    for (const auto& spec : constraints) {
      args.hooks.push_back(mdiff::make_sampling_constraint(spec, context));
    }
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

/// Metrics of Fashion-MNIST-shaped samples (1x28x28 in [-1, 1]) in the features of the library's
/// classifier, against the test set: feature_fd (not FID), its floor for this many samples
/// (feature_fd_real_baseline: as many training images), precision/recall/density/coverage (k = 5)
/// and, given the labels the samples were drawn for, class_agreement.
inline nlohmann::json fashion_feature_metrics(const at::Tensor& samples, const at::Tensor& labels,
                                              const std::string& classifier_path, const std::string& data_dir,
                                              c10::Device device) {
  auto classifier = mdiff::metrics::load_or_train_fashion_classifier(
      classifier_path, mdiff::metrics::ClassifierTrainOptions().device(device), data_dir);
  const int64_t n = samples.size(0);
  const at::Tensor real = mdiff::data::load_fashion_mnist(data_dir, "test").images;
  const at::Tensor train = mdiff::data::load_fashion_mnist(data_dir, "train").images;
  const at::Tensor f_real = mdiff::metrics::extract_features(classifier, real);
  const at::Tensor f_fake = mdiff::metrics::extract_features(classifier, samples);
  nlohmann::json m;
  m["feature_fd"] = mdiff::metrics::frechet_distance(f_fake, f_real);
  // The floor for this many samples: the same number of real training images against the test set.
  const at::Tensor f_train = mdiff::metrics::extract_features(classifier, train.slice(0, 0, std::min(n, train.size(0))));
  m["feature_fd_real_baseline"] = mdiff::metrics::frechet_distance(f_train, f_real);
  const auto prdc = mdiff::metrics::prdc(f_real.slice(0, 0, std::min<int64_t>(n, f_real.size(0))), f_fake, 5);
  m["precision"] = prdc.precision;
  m["recall"] = prdc.recall;
  m["density"] = prdc.density;
  m["coverage"] = prdc.coverage;
  m["feature_fd_note"] = "Frechet distance of features of the bundled Fashion-MNIST classifier; not FID";
  if (labels.defined()) {
    classifier->eval();
    at::NoGradGuard no_grad;
    const at::Tensor pred = classifier->forward(samples.to(device)).argmax(1).cpu();
    m["class_agreement"] = pred.eq(labels.cpu()).to(at::kDouble).mean().item<double>();
  }
  return m;
}

}  // namespace mdiff_program
