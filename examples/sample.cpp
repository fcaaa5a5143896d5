// mdiff-sample: load a model trained by mdiff-train and write a PNG grid of samples (and
// optionally the raw tensor).
//
//   mdiff-sample --run out/fmnist --prompt "ankle boot" --num-samples 16 --out out/boots
//   mdiff-sample --run out/fmnist --sampler ddim --sample-steps 50 --eta 1 --guidance 3 --out out/ddim
//   mdiff-sample --config out/fmnist/config.json --checkpoint out/fmnist/checkpoints/ckpt-00004000.safetensors --out out/s
//   mdiff-sample --diffusers ddpm-pipeline --num-samples 16 --out out/d     # a diffusers DDPMPipeline folder
//   mdiff-sample --run out/fmnist --export-diffusers out/fmnist-diffusers   # for diffusers' DDPMPipeline
//
// Writes grid.png, metrics.json and, with --save-tensor, samples.safetensors (tensor "samples", float32 [N, C, H, W] in [-1, 1]).

#include "image_model.h"



#include <chrono>

int main(int argc, char** argv) {
  bool no_clip = false;
  CLI::App app{"mdiff-sample: sample images from an mdiff-train model"};
  mdiff_program::CommonFlags common{"out/sample", 0, 2, "cpu"};
  mdiff_program::add_common_flags(app, common);
  std::string sampler_name = "dpmpp_2m";
  int64_t sample_steps = 25, num_samples = 64, batch = 256, nrow = 8;
  double eta = 0.0, guidance = 1.0;
  std::vector<std::string> prompts;
  bool save_tensor = false, fd = false;
  std::string classifier_path = mdiff_program::default_classifier_path();
  mdiff_program::ModelFlags model_flags;
  mdiff_program::add_model_flags(app, model_flags);
  app.add_flag("--no-clip", no_clip, "do not clamp x0_hat to [-1, 1] while sampling");
  std::vector<std::string> sample_constraints;
  std::string autoencoder_path;
  int64_t reference_images = 10000;
  app.add_option("--autoencoder", autoencoder_path, "autoencoder file for ae_projection (mdiff-train's autoencoder.safetensors)");
  app.add_option("--reference-images", reference_images, "training images in the 'manifold' constraint's local-PCA reference set")
      ->capture_default_str()
      ->check(CLI::Range(16, 60000));
  app.add_option("--sample-constraint", sample_constraints,
                 "sampling-time constraint NAME[:key=value,...] (repeatable; replaces the default clip): clip, dynamic_threshold, ...");
  app.add_option("--sampler", sampler_name, "sampler")->capture_default_str()->check(CLI::IsMember(mdiff::sampler_names()));
  app.add_option("--sample-steps", sample_steps, "sampling steps")->capture_default_str()->check(CLI::Range(1, 100000));
  app.add_option("--eta", eta, "DDIM eta (ddim only)")->capture_default_str()->check(CLI::Range(0.0, 10.0));
  app.add_option("--guidance", guidance, "classifier-free guidance scale (1: none)")->capture_default_str()->check(CLI::Range(0.0, 100.0));
  app.add_option("--num-samples", num_samples, "number of images")->capture_default_str()->check(CLI::Range(1, 10000000));
  app.add_option("--batch", batch, "sampling batch")->capture_default_str()->check(CLI::Range(1, 100000));
  app.add_option("--nrow", nrow, "images per grid row")->capture_default_str()->check(CLI::Range(1, 10000));
  app.add_option("--prompt", prompts, "class name(s) to draw, e.g. --prompt \"ankle boot\" (repeatable; the samples are split among them in order)");
  app.add_flag("--save-tensor", save_tensor, "also write samples.safetensors");
  app.add_flag("--fd", fd, "Fashion-MNIST models: feature-FD, precision/recall and class agreement of the samples against the test set");
  app.add_option("--classifier", classifier_path, "feature classifier for --fd (trained and cached when missing)")->capture_default_str();
  std::string diffusers_dir, scheduler_config, export_dir;
  app.add_option("--diffusers", diffusers_dir,
                 "sample from a diffusers pipeline folder (unet/ + scheduler/scheduler_config.json) or UNet2DModel "
                 "folder (with --scheduler-config) instead of --run; its scheduler is the sampler unless --sampler is given");
  app.add_option("--scheduler-config", scheduler_config, "diffusers scheduler_config.json for --diffusers");
  app.add_option("--export-diffusers", export_dir,
                 "write the model (EMA weights unless --trained-weights) as a diffusers DDPMPipeline folder and exit");
  CLI11_PARSE(app, argc, argv);

  return mdiff_program::run_guarded("mdiff-sample", [&] {
    const c10::Device device = mdiff_program::setup(common, "mdiff-sample");
    std::unique_ptr<mdiff::Sampler> scheduler_sampler;
    mdiff_program::LoadedImageModel model;
    if (!diffusers_dir.empty()) {
      MD_CHECK_VALUE(model_flags.run_dir.empty() && model_flags.config_path.empty() && model_flags.checkpoint.empty(),
                     "--diffusers replaces --run, --config and --checkpoint; give only one model");
      const std::filesystem::path dir(diffusers_dir);
      std::string sched_path = scheduler_config;
      if (sched_path.empty()) sched_path = (dir / "scheduler" / "scheduler_config.json").string();
      MD_CHECK_VALUE(std::filesystem::is_regular_file(sched_path), "--diffusers ", diffusers_dir, ": no scheduler config at '",
                     sched_path, "'; give --scheduler-config FILE");
      mdiff::DiffusersScheduler sched = mdiff::from_diffusers_scheduler_config(mdiff_program::read_small_text_file(sched_path), sample_steps);
      model.unet = mdiff::load_diffusers_unet(diffusers_dir);
      model.unet->to(device);
      model.unet->eval();
      const mdiff::UNetOptions& o = model.unet->options();
      model.config.unet = o;
      model.config.schedule = sched.schedule;
      model.config.denoiser = mdiff::DenoiserOptions(sched.prediction);
      model.config.channels = o.in_channels();
      model.config.image_size = o.image_size();
      model.config.dataset = diffusers_dir;
      for (int64_t c = 0; c < o.num_classes(); ++c) model.config.classes.push_back(std::to_string(c));
      model.checkpoint = diffusers_dir;
      model.step = -1;
      if (app.count("--sampler") == 0) {
        scheduler_sampler = std::move(sched.sampler);
        sampler_name = sched.class_name;
      }
      fmt::print("model: diffusers folder {} ({}, {} steps)\n", diffusers_dir, sched.class_name, sample_steps);
    } else {
      model = mdiff_program::load_image_model(model_flags, device);
    }
    const auto& config = model.config;
    mdiff::UNet unet = model.unet;
    const std::string& checkpoint = model.checkpoint;
    const int64_t step = model.step;
    if (!export_dir.empty()) {
      mdiff_program::export_ddpm_pipeline(*unet, config, export_dir);
      fmt::print("exported: {} (diffusers DDPMPipeline: unet/ and scheduler/)\n", export_dir);
      return;
    }

    at::Tensor labels;
    std::vector<std::string> drawn;
    if (!config.classes.empty()) {
      std::vector<int64_t> ids;
      if (prompts.empty()) {
        for (int64_t i = 0; i < num_samples; ++i) ids.push_back(i % static_cast<int64_t>(config.classes.size()));
      } else {
        std::vector<int64_t> wanted;
        for (const auto& p : prompts) {
          wanted.push_back(mdiff::data::class_index(config.classes, p));
          drawn.push_back(config.classes[wanted.back()]);
        }
        // In blocks: the first n/k samples show the first prompt, and so on.
        const auto k = static_cast<int64_t>(wanted.size());
        for (int64_t i = 0; i < num_samples; ++i) ids.push_back(wanted[(i * k) / num_samples]);
      }
      labels = at::tensor(ids, at::kLong);
    } else {
      MD_CHECK_VALUE(prompts.empty(), "--prompt needs a class-conditional model; this one is unconditional");
      MD_CHECK_VALUE(guidance == 1.0, "--guidance needs a class-conditional model; this one is unconditional");
    }

    const mdiff::Denoiser denoiser = mdiff_program::image_denoiser(unet, config);
    const std::unique_ptr<mdiff::Sampler> sampler =
        scheduler_sampler ? std::move(scheduler_sampler) : mdiff::make_sampler(sampler_name, sample_steps, eta);
    mdiff::SamplingConstraintContext constraint_context;
    mdiff_program::add_image_constraint_context(constraint_context, sample_constraints, autoencoder_path,
                                                reference_images, device);
    const auto t0 = std::chrono::steady_clock::now();
    const at::Tensor x = mdiff_program::sample_images(denoiser, *sampler, config, num_samples, labels, guidance,
                                                      common.seed, batch, device, !no_clip && sample_constraints.empty(),
                                                      sample_constraints, constraint_context);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MD_CHECK(at::isfinite(x).all().item<bool>(), "sampling produced non-finite values");
    mdiff::io::save_image_grid(common.out + "/grid.png", x, mdiff::io::GridOptions().nrow(nrow));
    if (save_tensor) {
      mdiff_program::save_tensor_file(common.out + "/samples.safetensors", "samples", x);
    }
    nlohmann::json m;
    m["program"] = "mdiff-sample";
    m["checkpoint"] = checkpoint;
    m["step"] = step;
    m["sampler"] = sampler_name;
    m["sample_steps"] = sample_steps;
    m["eta"] = eta;
    m["guidance"] = guidance;
    m["num_samples"] = num_samples;
    m["sample_constraints"] = sample_constraints;
    if (fd) {
      MD_CHECK_VALUE(config.channels == 1 && config.image_size == 28, "--fd needs a 1x28x28 (Fashion-MNIST) model, got ",
                     config.channels, "x", config.image_size, "x", config.image_size);
      m.update(mdiff_program::fashion_feature_metrics(x.clamp(-1, 1), labels, classifier_path,
                                                      mdiff::data::kFashionMnistDir, device));
    }
    m["saturated_fraction"] = (x.abs() > 0.99).to(at::kDouble).mean().item<double>();
    m["prompts"] = drawn;
    m["sample_seconds"] = seconds;
    m["images_per_second"] = static_cast<double>(num_samples) / std::max(1e-9, seconds);
    m["threads"] = common.threads;
    m["device"] = device.str();
    mdiff_program::write_metrics(common.out, m);
    fmt::print("grid: {}\n", std::filesystem::absolute(common.out + "/grid.png").string());
  });
}
