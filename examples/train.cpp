// mdiff-train: train a UNet diffusion model on Fashion-MNIST (default) or a folder of PNG images,
// with checkpoints, --resume, previews, and an evaluation by feature-FD.
//
//   mdiff-train --out out/fmnist --steps 4000                      # class-conditional Fashion-MNIST
//   mdiff-train --out out/fmnist --steps 8000 --resume             # continue the same run further
//   mdiff-train --image-folder photos/ --image-size 32 --channels 3 --unconditional --out out/photos
//
// Writes config.json (what mdiff-sample needs), checkpoints/, train_log.jsonl, previews/,
// samples.png (one row per class), loss.svg and metrics.json into --out.
//
// feature-FD is the Fréchet distance between features of a small Fashion-MNIST classifier trained
// by this library (cached in --classifier); it is not FID and its values are not comparable to FID.

#include "image_model.h"

#include <chrono>

namespace {

std::vector<int64_t> parse_ints(const std::string& s, const char* what) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    try {
      size_t used = 0;
      out.push_back(std::stoll(item, &used));
      MD_CHECK_VALUE(used == item.size(), "");
    } catch (const std::exception&) {
      MD_CHECK_VALUE(false, what, ": expected comma-separated integers, got '", s, "'");
    }
  }
  return out;
}


}  // namespace

int main(int argc, char** argv) {
  bool no_clip = false;
  CLI::App app{"mdiff-train: train a diffusion UNet on Fashion-MNIST or an image folder"};
  mdiff_program::CommonFlags common{"out/train", 0, 2, "cpu"};
  mdiff_program::add_common_flags(app, common);
  std::string data_dir = mdiff::data::kFashionMnistDir, image_folder;
  int64_t image_size = 28, channels = 1;
  bool unconditional = false, resume = false;
  int64_t steps = 4000, batch = 64, base_channels = 32, res_blocks = 1, diffusion_steps = 1000;
  std::string channel_mult = "1,2,2", attention = "7", schedule_name = "cosine", prediction = "v_prediction";
  double lr = 1e-3, dropout = 0.1, label_dropout = 0.1, augment_p = 0.0, ema_decay = 0.999, grad_clip = 1.0;
  int64_t warmup = 200, accumulation = 1, checkpoint_every = 500, keep_last = 3, preview_every = 0;
  int64_t validation_every = 0, workers = 1;
  double time_limit = 0;
  std::string sampler_name = "dpmpp_2m", classifier_path = mdiff_program::default_classifier_path();
  int64_t sample_steps = 25, num_samples = 1000, sample_batch = 250;
  double eta = 0.0, guidance = 1.0;
  app.add_option("--data-dir", data_dir, "Fashion-MNIST IDX folder")->capture_default_str();
  app.add_option("--image-folder", image_folder, "train on the PNG images of this folder instead (class = subfolder)");
  app.add_option("--image-size", image_size, "image side for --image-folder")->capture_default_str()->check(CLI::Range(8, 1024));
  app.add_option("--channels", channels, "1 (gray) or 3 (RGB) for --image-folder")->capture_default_str()->check(CLI::IsMember({1, 3}));
  app.add_flag("--unconditional", unconditional, "ignore class labels");
  app.add_option("--steps", steps, "optimiser steps of the run")->capture_default_str()->check(CLI::Range(1, 100000000));
  app.add_option("--batch", batch, "batch size")->capture_default_str()->check(CLI::Range(1, 1000000));
  app.add_option("--lr", lr, "AdamW learning rate")->capture_default_str()->check(CLI::Range(1e-8, 1.0));
  app.add_option("--warmup", warmup, "warm-up steps")->capture_default_str()->check(CLI::Range(0, 100000000));
  app.add_option("--grad-clip", grad_clip, "gradient norm clip (0: off)")->capture_default_str()->check(CLI::Range(0.0, 1e9));
  app.add_option("--accumulation", accumulation, "micro-batches per step")->capture_default_str()->check(CLI::Range(1, 4096));
  app.add_option("--ema-decay", ema_decay, "EMA decay (0: none)")->capture_default_str()->check(CLI::Range(0.0, 0.999999));
  app.add_option("--base-channels", base_channels, "UNet width")->capture_default_str()->check(CLI::Range(8, 4096));
  app.add_option("--channel-mult", channel_mult, "UNet channel multipliers per level")->capture_default_str();
  app.add_option("--res-blocks", res_blocks, "residual blocks per level")->capture_default_str()->check(CLI::Range(1, 16));
  app.add_option("--attention", attention, "resolutions with self-attention (comma-separated, '' for none)")->capture_default_str();
  app.add_option("--dropout", dropout, "UNet dropout")->capture_default_str()->check(CLI::Range(0.0, 0.9));
  app.add_option("--diffusion-steps", diffusion_steps, "T")->capture_default_str()->check(CLI::Range(2, 100000));
  app.add_option("--schedule", schedule_name, "beta schedule")->capture_default_str()->check(CLI::IsMember({"linear", "cosine"}));
  app.add_option("--prediction", prediction, "network target (v_prediction: with the cosine schedule, eps-prediction divides by sqrt(alpha_bar) ~ 5e-5 at the first sampling step)")->capture_default_str()->check(CLI::IsMember({"epsilon", "v_prediction", "sample"}));
  app.add_option("--label-dropout", label_dropout, "null-class probability (classifier-free guidance)")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  app.add_option("--augment", augment_p, "probability of each augmentation (x-flip, 2-px translation); non-leaky: the network is told what was applied")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  app.add_option("--workers", workers, "batch-assembly threads")->capture_default_str()->check(CLI::Range(0, 64));
  app.add_option("--checkpoint-every", checkpoint_every, "checkpoint interval (steps)")->capture_default_str()->check(CLI::Range(1, 100000000));
  app.add_option("--keep-last", keep_last, "checkpoints kept")->capture_default_str()->check(CLI::Range(1, 1000));
  app.add_flag("--resume", resume, "continue from the newest checkpoint in --out");
  app.add_option("--time-limit", time_limit, "stop training after this many seconds (0: none)")->capture_default_str()->check(CLI::Range(0.0, 1e9));
  app.add_option("--preview-every", preview_every, "write a preview grid every N steps (0: none)")->capture_default_str()->check(CLI::Range(0, 100000000));
  app.add_option("--validation-every", validation_every, "validation loss every N steps (0: none)")->capture_default_str()->check(CLI::Range(0, 100000000));
  app.add_flag("--no-clip", no_clip, "do not clamp x0_hat to [-1, 1] while sampling");
  app.add_option("--sampler", sampler_name, "sampler for the evaluation")->capture_default_str()->check(CLI::IsMember(mdiff::sampler_names()));
  app.add_option("--sample-steps", sample_steps, "sampling steps")->capture_default_str()->check(CLI::Range(1, 100000));
  app.add_option("--eta", eta, "DDIM eta")->capture_default_str()->check(CLI::Range(0.0, 10.0));
  app.add_option("--guidance", guidance, "classifier-free guidance scale for the evaluation")->capture_default_str()->check(CLI::Range(0.0, 100.0));
  app.add_option("--num-samples", num_samples, "samples for feature-FD (0: skip the evaluation)")->capture_default_str()->check(CLI::Range(0, 10000000));
  app.add_option("--sample-batch", sample_batch, "sampling batch")->capture_default_str()->check(CLI::Range(1, 100000));
  std::vector<std::string> train_constraints;
  int64_t ae_steps = 1000;
  app.add_option("--train-constraint", train_constraints,
                 "training-time constraint NAME[:key=value,...], repeatable: augment:p=0.12 (the same as --augment p), "
                 "ip, iso, tangent, ae, adversarial (see docs/constraints-training.md)");
  app.add_option("--ae-steps", ae_steps, "training steps of the convolutional autoencoder of the 'ae' constraint")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000000));
  app.add_option("--classifier", classifier_path, "feature classifier (trained on Fashion-MNIST and cached here when missing)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  return mdiff_program::run_guarded("mdiff-train", [&] {
    c10::Device device = mdiff_program::setup(common, "mdiff-train");
    // A rank of a distributed job when launched by scripts/launch.sh or torchrun (else null).
    const auto comm = mdiff_program::join_job(device);
    const std::string& out = common.out;

    // "augment" is EDM's non-leaky augmentation of the loader (--augment); the rest are loss terms.
    std::vector<std::string> loss_constraints;
    bool wants_ae_term = false, wants_tangent = false;
    for (const auto& text : train_constraints) {
      const auto spec = mdiff::ConstraintSpec::parse(text);
      if (spec.name() == "augment") {
        augment_p = spec.get_double("p", 0.12);
        MD_CHECK_VALUE(augment_p >= 0 && augment_p <= 1, "constraint 'augment': p must be in [0, 1], got ", augment_p);
        spec.check_all_used();
      } else {
        MD_CHECK_VALUE(spec.name() != "embed", "--train-constraint embed: embedding conditioning is available in mdiff-toy "
                       "(MLP denoiser) only");
        loss_constraints.push_back(text);
        wants_ae_term = wants_ae_term || spec.name() == "ae";
        wants_tangent = wants_tangent || spec.name() == "tangent";
      }
    }

    // Data.
    mdiff::data::LabeledImages train, validation, test;
    std::vector<std::string> classes;
    std::string dataset;
    if (image_folder.empty()) {
      const auto split = mdiff::data::validation_split(mdiff::data::load_fashion_mnist(data_dir, "train"), 0.05, common.seed);
      train = split.train;
      validation = split.validation;
      test = mdiff::data::load_fashion_mnist(data_dir, "test");
      classes = mdiff::data::fashion_mnist_classes();
      dataset = "fashion-mnist";
      image_size = 28;
      channels = 1;
    } else {
      auto folder = mdiff::data::load_image_folder(
          image_folder, mdiff::data::ImageFolderOptions().channels(channels).size({image_size, image_size}));
      const auto split = mdiff::data::validation_split(folder.data, 0.05, common.seed);
      train = split.train;
      validation = split.validation;
      test = folder.data;
      classes = folder.classes;
      dataset = image_folder;
    }
    if (unconditional || classes.size() < 2) classes.clear();
    fmt::print("data: {} training / {} validation images of {}x{}x{}, {} classes\n", train.size(), validation.size(),
               channels, image_size, image_size, classes.size());

    // Model description, written first so that mdiff-sample can use any checkpoint of the run.
    mdiff_program::ImageModelConfig config;
    config.unet = mdiff::UNetOptions(channels, channels)
                      .base_channels(base_channels)
                      .channel_mult(parse_ints(channel_mult, "--channel-mult"))
                      .num_res_blocks(res_blocks)
                      .attention_resolutions(parse_ints(attention, "--attention"))
                      .image_size(image_size)
                      .dropout(dropout)
                      .norm_groups(std::min<int64_t>(32, base_channels / 4))
                      .num_classes(static_cast<int64_t>(classes.size()))
                      .augment_dim(augment_p > 0 ? mdiff::data::Augment::label_dim() : 0);
    config.schedule = mdiff::ScheduleOptions(mdiff::enum_from_string<mdiff::BetaSchedule>(schedule_name))
                          .num_train_timesteps(diffusion_steps);
    config.denoiser = mdiff::DenoiserOptions(mdiff::enum_from_string<mdiff::PredictionType>(prediction));
    config.classes = classes;
    config.channels = channels;
    config.image_size = image_size;
    config.dataset = dataset;
    config.save(out);

    mdiff::UNet unet(config.unet);
    int64_t num_parameters = 0;
    for (const auto& p : unet->parameters()) num_parameters += p.numel();
    fmt::print("UNet: {} parameters\n", num_parameters);

    // Distributed (launched by scripts/launch.sh or torchrun): --batch is the global batch, each rank
    // loads its shard of every batch; rank 0 writes the log, checkpoints, previews and the results.
    const mdiff::Shard shard = comm ? mdiff::Shard::of(*comm) : mdiff::Shard{};
    MD_CHECK_VALUE(batch % shard.count == 0, "--batch ", batch, " must be divisible by the ", shard.count,
                   " processes of the job");

    // Loader: shuffled by seed, batches assembled on `workers` threads, non-leaky augmentation.
    auto loader_options = mdiff::data::LoaderOptions(batch)
                              .seed(common.seed)
                              .drop_last(true)
                              .num_workers(workers)
                              .num_shards(shard.count)
                              .shard_index(shard.index);
    if (augment_p > 0) {
      const mdiff::data::Augment augment(mdiff::data::AugmentOptions().xflip(augment_p).translate(augment_p));
      loader_options.transform([augment](mdiff::data::Batch b, at::Generator& g) {
        auto r = augment.apply(b.data, g);
        b.data = r.images;
        b.aug_labels = r.labels;
        return b;
      });
    }
    auto loader = std::make_shared<mdiff::data::TensorLoader>(
        train.images, classes.empty() ? at::Tensor() : train.labels, loader_options);
    std::optional<mdiff::DataSource> val_source;
    if (validation_every > 0) {
      val_source = mdiff::random_batches(validation.images, classes.empty() ? at::Tensor() : validation.labels, 256,
                                         common.seed + 3);
    }

    auto opts = mdiff::TrainerOptions(steps)
                    .lr(lr)
                    .warmup_steps(warmup)
                    .grad_clip(grad_clip)
                    .grad_accumulation(accumulation)
                    .ema_decay(ema_decay)
                    .label_dropout(classes.empty() ? 0.0 : label_dropout)
                    .validation_every(validation_every)
                    .out_dir(out)
                    .checkpoint_every(checkpoint_every)
                    .keep_last(keep_last)
                    .seed(common.seed)
                    .device(device);
    mdiff::Trainer trainer(opts, unet.ptr(), mdiff::network_function(unet), mdiff::NoiseSchedule(config.schedule),
                           config.denoiser, mdiff::loader_source(loader), val_source);
    if (comm) trainer.distribute(comm);
    nlohmann::json constraints_json = nlohmann::json::array();
    for (const auto& text : train_constraints) {
      if (mdiff::ConstraintSpec::parse(text).name() == "augment") {
        constraints_json.push_back({{"spec", text}, {"description", fmt::format("augment: p={} (non-leaky, augment_dim {})",
                                                                                augment_p, mdiff::data::Augment::label_dim())},
                                    {"extra_network_calls", 0.0}});
      }
    }
    if (!loss_constraints.empty()) {
      mdiff::TrainingConstraintContext ctx;
      ctx.sample_shape = {channels, image_size, image_size};
      ctx.seed = common.seed;
      if (wants_tangent) {
        // Local PCA of 12 neighbours among (up to) 5000 training images, tangent dimension 8.
        const at::Tensor ref = train.images.slice(0, 0, std::min<int64_t>(train.size(), 5000)).to(device, at::kFloat);
        ctx.manifold = mdiff::ReferenceManifold::make(ref, mdiff::ReferenceOptions().k(12).dim(8));
      }
      if (wants_ae_term) {
        const std::string ae_path = out + "/autoencoder.safetensors";
        if (resume && std::filesystem::exists(ae_path)) {
          ctx.autoencoder = mdiff::load_autoencoder(ae_path);
        } else {
          at::manual_seed(common.seed + 5);
          ctx.autoencoder = mdiff::Autoencoder(mdiff::AutoencoderOptions::conv(channels, 4).hidden(32));
          ctx.autoencoder->to(device);
          const auto h = mdiff::train_autoencoder(ctx.autoencoder, train.images.to(device),
                                                  mdiff::AutoencoderTrainOptions().steps(ae_steps).batch(64).seed(common.seed + 6));
          ctx.autoencoder->to(c10::kCPU);
          mdiff::save_autoencoder(ae_path, ctx.autoencoder);
          fmt::print("autoencoder: {}x{}x{} -> 4x{}x{}, {} steps, final reconstruction MSE {:.3g}\n", channels, image_size,
                     image_size, image_size / 4, image_size / 4, ae_steps, h.back());
        }
        ctx.autoencoder->to(device);
      }
      const auto added = mdiff_program::add_train_constraints(trainer, loss_constraints, ctx);
      for (const auto& a : added) constraints_json.push_back(a);
    }
    if (trainer.is_main_process()) trainer.add_callback(std::make_shared<mdiff::ProgressBar>());
    if (time_limit > 0) trainer.add_callback(std::make_shared<mdiff::TimeLimit>(time_limit));
    const auto preview_sampler = mdiff::make_sampler("dpmpp_2m", 20);
    const int64_t per_class = 8;
    const at::Tensor grid_labels =
        classes.empty() ? at::Tensor()
                        : at::arange(static_cast<int64_t>(classes.size()), at::kLong).repeat_interleave(per_class);
    const int64_t grid_n = classes.empty() ? 64 : grid_labels.size(0);
    if (preview_every > 0 && trainer.is_main_process()) {
      std::filesystem::create_directories(out + "/previews");
      trainer.add_callback(std::make_shared<mdiff::Preview>(preview_every, [&](mdiff::Trainer& t, int64_t step) {
        t.with_ema_weights([&] {
          unet->eval();
          const at::Tensor x = mdiff_program::sample_images(t.denoiser(), *preview_sampler, config, grid_n, grid_labels,
                                                            1.0, common.seed, 256, device, !no_clip);
          unet->train();
          mdiff::io::save_image_grid(fmt::format("{}/previews/step-{:08}.png", out, step), x,
                                     mdiff::io::GridOptions().nrow(per_class));
        });
        return false;
      }));
    }
    if (resume && trainer.resume()) fmt::print("resumed at step {}\n", trainer.step());
    const mdiff::TrainResult tr = trainer.fit();
    fmt::print("trained {} steps ({} this run) in {:.1f} s{}\n", tr.steps, tr.steps_this_run, tr.seconds,
               tr.stopped_by_callback ? " (stopped by the time limit)" : "");
    if (!trainer.is_main_process()) return;  // rank 0 evaluates and writes the results
    // The weights in safetensors too, for other tools (mdiff-sample --checkpoint takes them).
    mdiff::io::save_module_safetensors(out + "/weights.safetensors", *unet, {{"step", std::to_string(tr.steps)}});
    if (trainer.ema() != nullptr) {
      mdiff::io::save_ema_safetensors(out + "/weights-ema.safetensors", *trainer.ema(),
                                      {{"step", std::to_string(tr.steps)}});
    }

    // Loss curve from the log.
    {
      std::ifstream log(out + "/train_log.jsonl");
      std::vector<double> xs, ys;
      std::string line;
      while (std::getline(log, line)) {
        const auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_object() && j.contains("loss") && j["loss"].is_number()) {
          xs.push_back(j["step"].get<double>());
          ys.push_back(j["loss"].get<double>());
        }
      }
      if (!xs.empty()) {
        mdiff::io::LinePlot(mdiff::io::LinePlotOptions().title("training loss").x_label("step").y_label("loss").log_y(true))
            .add("loss", xs, ys)
            .save(out + "/loss.svg");
      }
    }

    // Evaluation with the EMA weights: a grid per class, then feature-FD against the test set.
    unet->eval();
    const auto sampler = mdiff::make_sampler(sampler_name, sample_steps, eta);
    nlohmann::json m;
    m["program"] = "mdiff-train";
    m["dataset"] = dataset;
    m["steps"] = tr.steps;
    m["train_seconds"] = tr.seconds;
    m["train_constraints"] = constraints_json;
    m["train_steps_per_second"] = tr.steps_this_run / std::max(1e-9, tr.seconds);
    m["final_loss"] = tr.final_loss;
    m["skipped_steps"] = tr.skipped;
    m["parameters"] = num_parameters;
    m["batch"] = batch;
    m["threads"] = common.threads;
    m["device"] = device.str();
    m["sampler"] = sampler_name;
    m["sample_steps"] = sample_steps;
    m["guidance"] = guidance;
    trainer.with_ema_weights([&] {
      const at::Tensor grid = mdiff_program::sample_images(trainer.denoiser(), *sampler, config, grid_n, grid_labels,
                                                           guidance, common.seed, sample_batch, device, !no_clip);
      mdiff::io::save_image_grid(out + "/samples.png", grid, mdiff::io::GridOptions().nrow(per_class));
      // The feature classifier is a Fashion-MNIST classifier: its metrics mean something for that data only.
      const bool fmnist = image_folder.empty();
      if (num_samples >= 2 && fmnist) {
        const at::Tensor labels = classes.empty() ? at::Tensor()
                                                  : at::arange(num_samples, at::kLong).remainder(
                                                        static_cast<int64_t>(classes.size()));
        const auto t0 = std::chrono::steady_clock::now();
        // Clamped to the data range, as an image file of them would be.
        const at::Tensor samples = mdiff_program::sample_images(trainer.denoiser(), *sampler, config, num_samples,
                                                                labels, guidance, common.seed + 1, sample_batch, device, !no_clip)
                                       .clamp(-1, 1);
        const double sample_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        m.update(mdiff_program::fashion_feature_metrics(samples, labels, classifier_path, data_dir, device));
        m["num_samples"] = num_samples;
        m["sample_seconds"] = sample_seconds;
      } else if (num_samples >= 2) {
        fmt::print("feature-FD skipped: the feature classifier is trained on Fashion-MNIST, not on '{}'\n", image_folder);
      }
    });
    mdiff_program::write_metrics(out, m);
    fmt::print("outputs in {}\n", std::filesystem::absolute(out).string());
  });
}
