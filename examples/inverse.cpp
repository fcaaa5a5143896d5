// mdiff-inverse: restore images from measurements y = A x + noise with a model trained by
// mdiff-train, using a sampling-time method, and measure how well it did.
//
//   mdiff-inverse --run out/fmnist --operator box:size=14 --method dps --steps 100 --out out/inv
//   mdiff-inverse --run out/fmnist --operator sr:factor=2 --sigma-y 0.05 --method mpgd --steps 50 --out out/sr
//   mdiff-inverse --run out/fmnist --images my_pngs/ --operator random:missing=0.7 --method repaint --out out/rp
//
// Operators: box[:size], random[:missing,seed], sr[:factor], blur[:size,sigma], gray.
// Methods: none (A^+ y, no model), projection, repaint, mcg, dps, mpgd, dsg.
// Writes panels.png (truth | measurement | restored, per image), restored.safetensors and metrics.json with
// psnr, ssim (images in [-1, 1], data range 2), residual_ratio (|y - A x| over the expected noise
// norm; over |y| when noise-free), feature_fd (restored vs real images, classifier features; not
// FID), seconds_per_image and nfe_per_image.

#include "image_model.h"


#include <chrono>

namespace {

namespace mdiff = manifold_diffusion;

struct MethodDefaults {
  std::string sampler;
  double eta;
  double scale;
};

MethodDefaults defaults_for(const std::string& method) {
  // Step sizes for 28x28 images: a sweep on test images 100..107 (SR x2 and a 14x14 box, sigma_y
  // 0.05, 50 steps; docs/programs.md) preferred 2 for DPS and MPGD over the references' 0.5 and 7.5
  // (tuned on 256x256 images); DSG and MCG keep the references' 0.2 and 1.
  if (method == "mpgd") return {"ddim", 0.5, 2.0};
  if (method == "dsg") return {"ddim", 1.0, 0.2};
  if (method == "dps") return {"ddpm", 0.0, 2.0};
  if (method == "mcg") return {"ddpm", 0.0, 1.0};
  return {"ddpm", 0.0, 0.0};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mdiff-inverse: restore images from degraded measurements with a trained diffusion model"};
  mdiff_program::CommonFlags common;
  common.out = "out/inverse";
  mdiff_program::add_common_flags(app, common);
  std::string images = "fashion-mnist:test", op_spec = "box:size=14";
  std::string method = "dps", sampler_name, noise_kind = "gaussian";
  std::string classifier_path = mdiff_program::default_classifier_path();
  int64_t num_images = 16, first = 0, steps = 50, batch = 64, jump = 5, resample = 5, fd_reference = 2000;
  double sigma_y = 0.0, poisson_rate = 255.0, scale = -1, eta = -1;
  bool no_clip = false, no_fd = false;
  std::vector<std::string> extra;
  std::string autoencoder_path, mpgd_variant = "plain";
  int64_t reference_images = 10000;
  mdiff_program::ModelFlags model_flags;
  mdiff_program::add_model_flags(app, model_flags);
  app.add_option("--images", images, "fashion-mnist[:test|train] or a folder of PNG images")->capture_default_str();
  app.add_option("--num-images", num_images, "images to restore")->capture_default_str()->check(CLI::Range(1, 1000000));
  app.add_option("--first", first, "index of the first image")->capture_default_str()->check(CLI::Range(0, 100000000));
  app.add_option("--operator", op_spec, "measurement operator: box[:size], random[:missing,seed], sr[:factor], blur[:size,sigma], gray")
      ->capture_default_str();
  app.add_option("--sigma-y", sigma_y, "Gaussian measurement noise std (images in [-1, 1])")->capture_default_str()->check(CLI::Range(0.0, 10.0));
  app.add_option("--noise", noise_kind, "gaussian or poisson")->capture_default_str()->check(CLI::IsMember({"gaussian", "poisson"}));
  app.add_option("--poisson-rate", poisson_rate, "Poisson counts at intensity 1")->capture_default_str()->check(CLI::Range(1e-3, 1e9));
  app.add_option("--method", method, "none, projection, repaint, mcg, dps, mpgd, dsg")
      ->capture_default_str()
      ->check(CLI::IsMember({"none", "projection", "repaint", "mcg", "dps", "mpgd", "dsg"}));
  app.add_option("--scale", scale, "step size of the method (mcg alpha, dps scale, mpgd c, dsg rate); default per method");
  app.add_option("--steps", steps, "sampling steps (repaint: respaced levels)")->capture_default_str()->check(CLI::Range(1, 100000));
  app.add_option("--sampler", sampler_name, "sampler (default: ddpm; ddim eta 0.5 for mpgd, eta 1 for dsg)")
      ->check(CLI::IsMember(mdiff::sampler_names()));
  app.add_option("--eta", eta, "DDIM eta (default per method)");
  app.add_option("--jump", jump, "repaint jump length")->capture_default_str()->check(CLI::Range(1, 100000));
  app.add_option("--resample", resample, "repaint resample count (1: plain replacement)")->capture_default_str()->check(CLI::Range(1, 1000));
  app.add_option("--sample-constraint", extra, "extra sampling constraint NAME[:k=v,...] (repeatable), e.g. dynamic_threshold");
  app.add_flag("--no-clip", no_clip, "do not clamp x0_hat to [-1, 1]");
  app.add_option("--mpgd-variant", mpgd_variant, "plain, ae (gradient through the autoencoder) or z (step in its latent)")
      ->capture_default_str()
      ->check(CLI::IsMember({"plain", "ae", "z"}));
  app.add_option("--autoencoder", autoencoder_path, "autoencoder file (mdiff-train's autoencoder.safetensors) for --mpgd-variant ae|z and ae_projection");
  app.add_option("--reference-images", reference_images, "training images in the 'manifold' constraint's reference set")
      ->capture_default_str()
      ->check(CLI::Range(16, 60000));
  app.add_option("--batch", batch, "images per sampling batch")->capture_default_str()->check(CLI::Range(1, 100000));
  app.add_option("--classifier", classifier_path, "feature classifier for feature_fd (trained and cached when missing)")->capture_default_str();
  app.add_option("--fd-reference", fd_reference, "real training images feature_fd compares against")->capture_default_str()->check(CLI::Range(2, 60000));
  app.add_flag("--no-fd", no_fd, "skip feature_fd");
  CLI11_PARSE(app, argc, argv);

  return mdiff_program::run_guarded("mdiff-inverse", [&] {
    const c10::Device device = mdiff_program::setup(common, "mdiff-inverse");
    auto model = mdiff_program::load_image_model(model_flags, device);
    const auto& config = model.config;

    // Ground-truth images.
    at::Tensor truth;
    if (images.rfind("fashion-mnist", 0) == 0) {
      const std::string split = images.size() > 14 ? images.substr(14) : "test";
      MD_CHECK_VALUE(split == "test" || split == "train", "--images: fashion-mnist split must be test or train, got '",
                     split, "'");
      truth = mdiff::data::load_fashion_mnist(mdiff::data::kFashionMnistDir, split).images;
    } else {
      truth = mdiff::data::load_image_folder(
                  images, mdiff::data::ImageFolderOptions().channels(config.channels).size({config.image_size, config.image_size}))
                  .data.images;
    }
    MD_CHECK_VALUE(first + num_images <= truth.size(0), "--first ", first, " + --num-images ", num_images,
                   " exceeds the ", truth.size(0), " images of '", images, "'");
    truth = truth.slice(0, first, first + num_images).to(at::kFloat);
    MD_CHECK_VALUE(truth.size(1) == config.channels && truth.size(2) == config.image_size &&
                       truth.size(3) == config.image_size,
                   "images ", truth.sizes(), " do not match the model (", config.channels, "x", config.image_size, "x",
                   config.image_size, ")");

    // Blur has no useful exact projection (A A^T is nearly singular): with measurement noise the
    // regularised projection's ridge defaults to sigma_y (a sweep on test images 100..107, 
    // blur 5x5 sigma 1, sigma_y 0.05, 50 steps: ridge 0.0025 / 0.01 / 0.05 gave 11.4 / 15.6 / 21.3 dB).
    const std::string op_spec_given = op_spec;
    {
      const auto spec = mdiff::ConstraintSpec::parse(op_spec);
      if (spec.name() == "blur" && !spec.has("ridge") && sigma_y > 0) {
        op_spec += (op_spec.find(':') == std::string::npos ? ":ridge=" : ",ridge=") + std::to_string(sigma_y);
        fmt::print("operator: {} (ridge = sigma_y)\n", op_spec);
      }
    }
    const auto op = mdiff::make_operator(op_spec, config.image_size, config.image_size, config.channels);
    mdiff::MeasurementNoise noise(mdiff::MeasurementNoiseOptions()
                                      .kind(mdiff::enum_from_string<mdiff::NoiseKind>(noise_kind))
                                      .sigma(sigma_y)
                                      .rate(poisson_rate));
    const at::Tensor clean_y = op->forward(truth);
    // Noise only on what is measured (inpainting: not on the missing pixels).
    const at::Tensor y = op->restrict_to_measured(noise.apply(clean_y, common.seed + 1));

    const MethodDefaults def = defaults_for(method);
    if (sampler_name.empty()) sampler_name = def.sampler;
    if (eta < 0) eta = def.eta;
    if (scale < 0) scale = def.scale;
    const mdiff::Denoiser denoiser = mdiff_program::image_denoiser(model.unet, config);
    const auto sampler = mdiff::make_sampler(sampler_name, steps, eta);

    mdiff::SamplingConstraintContext base_context;
    mdiff_program::add_image_constraint_context(base_context, extra, autoencoder_path, reference_images, device);
    MD_CHECK_VALUE(mpgd_variant == "plain" || !autoencoder_path.empty(), "--mpgd-variant ", mpgd_variant,
                   " needs --autoencoder");
    if (method == "repaint") {
      for (const auto& e : extra) {
        const std::string n = mdiff::ConstraintSpec::parse(e).name();
        MD_CHECK_VALUE(n == "clip" || n == "dynamic_threshold" || n == "manifold" || n == "ae_projection",
                       "--sample-constraint ", e, " acts on the proposal, which RePaint's own loop replaces; with "
                       "--method repaint only clip, dynamic_threshold, manifold and ae_projection apply");
      }
    }
    std::vector<at::Tensor> parts;
    std::vector<at::Tensor> residuals;
    int64_t nfe = 0, backward = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t start = 0; start < num_images; start += batch) {
      const int64_t m = std::min(batch, num_images - start);
      const at::Tensor yb = y.slice(0, start, start + m).to(device);
      at::Tensor cond;
      if (!config.classes.empty()) cond = at::full({m}, -1, at::TensorOptions(at::kLong).device(device));  // null class
      std::vector<std::shared_ptr<mdiff::SamplingHook>> hooks;
      // The default clip of x0_hat steps aside when extra constraints are given (a clip before a dynamic
      // threshold would make the threshold the identity); `clip` can be listed explicitly.
      if (!no_clip && extra.empty()) hooks.push_back(std::make_shared<mdiff::StaticClip>());
      mdiff::SamplingConstraintContext ctx = base_context;
      ctx.op = op;
      ctx.y = yb;
      ctx.noise = noise;
      ctx.seed = mdiff::sample_seed(common.seed, start);
      for (const auto& e : extra) hooks.push_back(mdiff::make_sampling_constraint(e, ctx));
      at::Tensor out;
      if (method == "none") {
        out = op->pseudo_inverse(yb);
      } else if (method == "repaint") {
        int64_t evals = 0;
        out = mdiff::repaint(denoiser, mdiff::Measurement{op, yb, noise, ctx.seed},
                             mdiff::RePaintOptions().steps(steps).jump_length(jump).resample(resample),
                             mdiff::sample_seed(common.seed, start), hooks, &evals, cond);
        nfe = evals;
      } else {
        std::string spec = method;
        if (method == "mcg") spec += ":alpha=" + std::to_string(scale);
        if (method == "dps") spec += ":scale=" + std::to_string(scale);
        if (method == "mpgd") spec += ":scale=" + std::to_string(scale) + ",variant=" + mpgd_variant;
        if (method == "dsg") spec += ":rate=" + std::to_string(scale);
        auto constraint = mdiff::make_sampling_constraint(spec, ctx);
        hooks.push_back(constraint);
        mdiff::SampleArgs args;
        args.cond = cond;
        args.hooks = hooks;
        out = sampler->sample(denoiser, {m, config.channels, config.image_size, config.image_size}, common.seed, args,
                              start, at::TensorOptions(at::kFloat).device(device));
        nfe = sampler->num_model_evaluations();
        backward = constraint->backward_passes_per_step() * steps;
      }
      parts.push_back(out.detach().cpu().to(at::kFloat));
      residuals.push_back(noise.fidelity(yb.cpu(), op->forward(parts.back().clamp(-1, 1))));
      fmt::print("restored {}/{}\n", start + m, num_images);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const at::Tensor restored = at::cat(parts, 0);
    MD_CHECK(at::isfinite(restored).all().item<bool>(), "restoration produced non-finite values");
    const at::Tensor shown = restored.clamp(-1, 1);

    // Metrics (images in [-1, 1]: data range 2).
    const at::Tensor psnr = mdiff::metrics::psnr(shown, truth, 2.0);
    const at::Tensor ssim = mdiff::metrics::ssim(shown, truth, 2.0);
    const at::Tensor res = at::cat(residuals, 0);
    const double expected = noise.expected_noise_norm(op->measured_entries(y));
    const at::Tensor ratio = expected > 0 ? res / expected : res / y.flatten(1).norm(2, 1).clamp_min(1e-12);
    nlohmann::json mj;
    mj["program"] = "mdiff-inverse";
    mj["checkpoint"] = model.checkpoint;
    mj["operator"] = op_spec_given;
    mj["operator_effective"] = op_spec;
    mj["noise"] = noise_kind;
    mj["sigma_y"] = sigma_y;
    mj["method"] = method;
    if (method == "mpgd") mj["mpgd_variant"] = mpgd_variant;
    mj["scale"] = scale;
    mj["sampler"] = method == "repaint" || method == "none" ? method : sampler_name;
    mj["eta"] = eta;
    mj["steps"] = steps;
    mj["num_images"] = num_images;
    mj["psnr"] = psnr.clamp_max(100).mean().item<double>();
    mj["ssim"] = ssim.mean().item<double>();
    mj["residual_ratio"] = ratio.mean().item<double>();
    mj["residual_ratio_is_relative"] = expected <= 0;
    mj["seconds"] = seconds;
    mj["seconds_per_image"] = seconds / static_cast<double>(num_images);
    mj["nfe_per_image"] = method == "none" ? 0 : nfe;
    mj["backward_per_image"] = backward;
    mj["threads"] = common.threads;
    mj["device"] = device.str();
    if (!no_fd && config.channels == 1 && config.image_size == 28) {
      auto classifier = mdiff::metrics::load_or_train_fashion_classifier(
          classifier_path, mdiff::metrics::ClassifierTrainOptions().device(device), mdiff::data::kFashionMnistDir);
      const at::Tensor real = mdiff::data::load_fashion_mnist(mdiff::data::kFashionMnistDir, "train")
                                  .images.slice(0, 0, fd_reference);
      mj["feature_fd"] = mdiff::metrics::feature_fd(classifier, real, shown);
      mj["feature_fd_truth"] = mdiff::metrics::feature_fd(classifier, real, truth);
      classifier->eval();
      at::NoGradGuard no_grad;
      const at::Tensor pred = classifier->forward(shown.to(device)).argmax(1).cpu();
      const at::Tensor want = classifier->forward(truth.to(device)).argmax(1).cpu();
      mj["class_agreement"] = (pred == want).to(at::kDouble).mean().item<double>();
    }

    // Panels: truth | measurement | restored, four images per row.
    const int64_t shown_n = std::min<int64_t>(num_images, 16);
    const at::Tensor vis = op->visualise(y.slice(0, 0, shown_n), truth.sizes()).clamp(-1, 1);
    const at::Tensor panel = at::stack({truth.slice(0, 0, shown_n), vis.to(at::kFloat), shown.slice(0, 0, shown_n)}, 1)
                                 .flatten(0, 1);
    mdiff::io::save_image_grid(common.out + "/panels.png", panel, mdiff::io::GridOptions().nrow(12));
    mdiff_program::save_tensor_file(common.out + "/restored.safetensors", "restored", restored);
    mdiff_program::write_metrics(common.out, mj);
  });
}
