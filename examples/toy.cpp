// mdiff-toy: train a diffusion model on a point cloud with known geometry and measure how close
// its samples stay to the data manifold.
//
//   mdiff-toy --dataset swiss_roll --ambient-dim 64 --steps 4000 --out out/toy
//   mdiff-toy --data points.npy --reference dense.npy --sampler unipc --sample-steps 20 --out out/mine
//
// Data are standardised (one shift and one scale for all coordinates) for training; samples and
// every metric are in the data's own units. Writes samples.csv, samples.npy, scatter.{svg,png},
// loss.svg, train_log.jsonl, checkpoints/ and metrics.json into --out.

#include "common.h"

#include <chrono>
#include <fstream>

namespace {

struct Flags {
  mdiff_program::CommonFlags common{"out/toy", 0, 2, "cpu"};
  std::string dataset = "swiss_roll";
  int64_t ambient_dim = 0;
  double noise = 0.0;
  int64_t n_train = 20000;
  std::string data_file, reference_file;
  int64_t steps = 4000;
  int64_t batch = 512;
  double lr = 2e-3;
  int64_t hidden = 256;
  int64_t blocks = 4;
  int64_t diffusion_steps = 1000;
  std::string schedule = "cosine";
  std::string prediction = "v_prediction";
  std::string sampler = "dpmpp_2m";
  int64_t sample_steps = 50;
  double eta = 0.0;
  int64_t num_samples = 4000;
  int64_t checkpoint_every = 1000;
  bool resume = false;
  std::vector<std::string> train_constraints;
  std::vector<std::string> sample_constraints;
  std::vector<std::string> compare_constraints;
  int64_t reference_points = 5000;
  int64_t latent_dim = 0;
  int64_t ae_latent = 0;
  int64_t ae_steps = 2000;
};

mdiff::data::ManifoldKind manifold_kind(const std::string& name) {
  return mdiff::enum_from_string<mdiff::data::ManifoldKind>(name == "moons" ? "two_moons" : name);
}

// Rows `points` from a .csv or .npy file (float32 [N, D]).
at::Tensor read_points(const std::string& path) {
  const std::string ext = std::filesystem::path(path).extension().string();
  at::Tensor t;
  if (ext == ".npy") {
    t = mdiff::data::read_npy(path);
  } else if (ext == ".csv") {
    t = mdiff::data::read_csv_points(path);
  } else {
    MD_CHECK_VALUE(false, "'", path, "': expected a .csv or .npy file, got extension '", ext, "'");
  }
  MD_CHECK_VALUE(t.dim() == 2 && t.size(0) >= 2 && t.size(1) >= 1, "'", path, "' must hold a [N, D] array, got ",
                 t.sizes());
  MD_CHECK_VALUE(at::isfinite(t).all().item<bool>(), "'", path, "' contains NaN or Inf values");
  return t.to(at::kFloat);
}

void write_csv(const std::string& path, const at::Tensor& x, const at::Tensor& distance) {
  mdiff::atomic_write(path, [&](const std::string& tmp) {
    std::ofstream f(tmp);
    const at::Tensor xs = x.to(at::kDouble).contiguous();
    const at::Tensor ds = distance.to(at::kDouble).contiguous();
    for (int64_t j = 0; j < xs.size(1); ++j) f << "x" << j << ",";
    f << "distance_to_manifold\n";
    const double* p = xs.data_ptr<double>();
    for (int64_t i = 0; i < xs.size(0); ++i) {
      for (int64_t j = 0; j < xs.size(1); ++j) f << fmt::format("{:.6g},", p[i * xs.size(1) + j]);
      f << fmt::format("{:.6g}\n", ds.data_ptr<double>()[i]);
    }
    MD_CHECK(f.good(), "write failed");
  });
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mdiff-toy: train and sample a diffusion model on a point cloud, measure distance to its manifold"};
  Flags f;
  mdiff_program::add_common_flags(app, f.common);
  app.add_option("--dataset", f.dataset,
                 "synthetic manifold (swiss_roll: the 2-D sheet in R^3; swiss_roll_2d: its spiral cross-section in R^2)")
      ->capture_default_str()
      ->check(CLI::IsMember({"swiss_roll", "swiss_roll_2d", "moons", "circles", "helix", "sphere", "torus"}));
  app.add_option("--ambient-dim", f.ambient_dim, "embed in R^D by a random orthonormal map (0: native coordinates)")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000));
  app.add_option("--noise", f.noise, "std of ambient Gaussian noise on the training data")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e6));
  app.add_option("--n-train", f.n_train, "training points (synthetic data)")->capture_default_str()->check(CLI::Range(16, 100000000));
  app.add_option("--data", f.data_file, "train on this .csv/.npy point cloud instead of a synthetic manifold");
  app.add_option("--reference", f.reference_file,
                 "dense sample of the true data (.csv/.npy) to evaluate against (default with --data: the data)");
  app.add_option("--steps", f.steps, "optimiser steps")->capture_default_str()->check(CLI::Range(1, 100000000));
  app.add_option("--batch", f.batch, "batch size")->capture_default_str()->check(CLI::Range(1, 10000000));
  app.add_option("--lr", f.lr, "AdamW learning rate")->capture_default_str()->check(CLI::Range(1e-8, 1.0));
  app.add_option("--hidden", f.hidden, "MLP width")->capture_default_str()->check(CLI::Range(8, 65536));
  app.add_option("--blocks", f.blocks, "MLP residual blocks")->capture_default_str()->check(CLI::Range(1, 256));
  app.add_option("--diffusion-steps", f.diffusion_steps, "T of the noise schedule")->capture_default_str()->check(CLI::Range(2, 100000));
  app.add_option("--schedule", f.schedule, "beta schedule")->capture_default_str()->check(CLI::IsMember({"linear", "cosine"}));
  app.add_option("--prediction", f.prediction, "network target (v_prediction: with the cosine schedule, eps-prediction divides by sqrt(alpha_bar) ~ 5e-5 at the first sampling step)")
      ->capture_default_str()
      ->check(CLI::IsMember({"epsilon", "sample", "v_prediction"}));
  app.add_option("--sampler", f.sampler, "sampler")->capture_default_str()->check(CLI::IsMember(mdiff::sampler_names()));
  app.add_option("--sample-steps", f.sample_steps, "sampling steps")->capture_default_str()->check(CLI::Range(1, 100000));
  app.add_option("--eta", f.eta, "DDIM eta (ddim only)")->capture_default_str()->check(CLI::Range(0.0, 10.0));
  app.add_option("--num-samples", f.num_samples, "samples to draw")->capture_default_str()->check(CLI::Range(2, 100000000));
  app.add_option("--checkpoint-every", f.checkpoint_every, "checkpoint interval in steps (0: only at the end)")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000000));
  app.add_flag("--resume", f.resume, "continue from the newest checkpoint in --out");
  app.add_option("--train-constraint", f.train_constraints,
                 "training-time constraint NAME[:key=value,...], repeatable: " +
                     [] {
                       std::string names;
                       for (const auto& n : mdiff::training_constraint_names()) names += (names.empty() ? "" : ", ") + n;
                       return names;
                     }() +
                     " (see docs/constraints-training.md)");
  app.add_option("--sample-constraint", f.sample_constraints,
                 "sampling-time constraint NAME[:key=value,...], repeatable (applied together); metrics.json then also "
                 "holds the unconstrained samples of the same model under 'baseline': manifold (local PCA of the "
                 "training points), ae_projection (an MLP autoencoder)");
  app.add_option("--compare-sample-constraint", f.compare_constraints,
                 "also sample the same model with this constraint alone (repeatable; each is reported under "
                 "'comparisons' in metrics.json, with the unconstrained baseline)");
  app.add_option("--reference-points", f.reference_points,
                 "training points in the 'manifold' sampling constraint's local-PCA reference set")
      ->capture_default_str()
      ->check(CLI::Range(16, 100000000));
  app.add_option("--latent-dim", f.latent_dim,
                 "latent diffusion: train an MLP autoencoder to this latent dimension, diffuse its standardised "
                 "latents, decode the samples (0: off)")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000));
  app.add_option("--ae-latent", f.ae_latent, "latent dimension of the autoencoder of the 'ae' constraint (0: the "
                 "manifold's intrinsic dimension, else 2)")->capture_default_str()->check(CLI::Range(0, 100000));
  app.add_option("--ae-steps", f.ae_steps, "autoencoder training steps (ae constraint, --latent-dim)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000000));
  CLI11_PARSE(app, argc, argv);

  return mdiff_program::run_guarded("mdiff-toy", [&] {
    c10::Device device = mdiff_program::setup(f.common, "mdiff-toy");
    // A rank of a distributed job when launched by scripts/launch.sh or torchrun (else null).
    const auto comm = mdiff_program::join_job(device);
    const std::string& out = f.common.out;

    // Data: training points, a reference sample of the true distribution, and (synthetic) the manifold.
    at::Tensor train, reference;
    std::optional<mdiff::data::SyntheticManifold> manifold;
    if (!f.data_file.empty()) {
      train = read_points(f.data_file);
      reference = f.reference_file.empty() ? train : read_points(f.reference_file);
      MD_CHECK_VALUE(reference.size(1) == train.size(1), "--reference has dimension ", reference.size(1),
                     " but --data has ", train.size(1));
    } else {
      const int64_t n_ref = std::max<int64_t>(f.num_samples, 2000);
      auto m = mdiff::data::make_synthetic_manifold(
          mdiff::data::SyntheticManifoldOptions(manifold_kind(f.dataset), f.n_train + n_ref)
              .ambient_dim(f.ambient_dim)
              .seed(f.common.seed));
      // One draw, so training and reference share the embedding; noise only on the training part.
      at::Generator g = mdiff::make_generator(mdiff::mix_seed(f.common.seed + 17));
      train = m.points.slice(0, 0, f.n_train) +
              f.noise * at::randn({f.n_train, m.points.size(1)}, g, at::TensorOptions(at::kFloat));
      reference = m.points.slice(0, f.n_train);
      manifold = std::move(m);
      if (!f.reference_file.empty()) reference = read_points(f.reference_file);
    }
    const int64_t dim = train.size(1);
    const at::Tensor mean = train.mean(0, /*keepdim=*/true);
    const double scale = (train - mean).pow(2).mean().sqrt().item<double>();
    MD_CHECK_VALUE(scale > 0, "the training data have zero spread");
    const at::Tensor train_n = (train - mean) / scale;
    fmt::print("data: {} training points in R^{}{}, reference {} points\n", train.size(0), dim,
               manifold ? fmt::format(" ({}, intrinsic dimension {})", f.dataset, manifold->intrinsic_dim) : "",
               reference.size(0));

    // The autoencoder (for the 'ae' constraint or latent diffusion), trained on the standardised
    // data, or read back from --out when resuming. With --latent-dim the model's space is the
    // autoencoder's latent space (standardised by one shift and one scale), else the standardised data.
    bool wants_ae_term = false;
    for (const auto& c : f.train_constraints) wants_ae_term = wants_ae_term || mdiff::ConstraintSpec::parse(c).name() == "ae";
    bool wants_ae_sampling = false;
    std::vector<std::string> all_sample_specs = f.sample_constraints;
    all_sample_specs.insert(all_sample_specs.end(), f.compare_constraints.begin(), f.compare_constraints.end());
    for (const auto& c : all_sample_specs) {
      const std::string n = mdiff::ConstraintSpec::parse(c).name();
      wants_ae_sampling = wants_ae_sampling || n == "ae_projection";
    }
    MD_CHECK_VALUE(!(wants_ae_term && f.latent_dim > 0), "--train-constraint ae and --latent-dim ", f.latent_dim,
                   " cannot be combined (the ae regulariser acts in data space)");
    mdiff::Autoencoder ae{nullptr};
    double ae_loss = -1;
    MD_CHECK_VALUE(!(wants_ae_sampling && f.latent_dim > 0),
                   "--sample-constraint ae_projection and --latent-dim cannot be combined");
    if (wants_ae_term || wants_ae_sampling || f.latent_dim > 0) {
      const std::string ae_path = out + "/autoencoder.safetensors";
      if (f.resume && std::filesystem::exists(ae_path)) {
        ae = mdiff::load_autoencoder(ae_path);
      } else {
        const int64_t latent = f.latent_dim > 0 ? f.latent_dim
                               : f.ae_latent > 0 ? f.ae_latent
                                                 : (manifold ? manifold->intrinsic_dim : 2);
        at::manual_seed(f.common.seed + 5);
        ae = mdiff::Autoencoder(mdiff::AutoencoderOptions::mlp(dim, latent).hidden(128));
        const auto h = mdiff::train_autoencoder(
            ae, train_n, mdiff::AutoencoderTrainOptions().steps(f.ae_steps).seed(f.common.seed + 6));
        ae_loss = h.back();
        mdiff::save_autoencoder(ae_path, ae);
        fmt::print("autoencoder: R^{} -> R^{}, {} steps, final reconstruction MSE {:.3g} (standardised units)\n", dim,
                   latent, f.ae_steps, ae_loss);
      }
    }
    at::Tensor model_data = train_n, z_mean, z_scale;
    if (f.latent_dim > 0) {
      at::NoGradGuard no_grad;
      const at::Tensor z = ae->encode(train_n);
      z_mean = z.mean(0, true);
      z_scale = (z - z_mean).pow(2).mean().sqrt();
      model_data = (z - z_mean) / z_scale;
    }
    const int64_t model_dim = model_data.size(1);

    // Embedding conditioning ("embed" constraint): the network is conditioned on standardised
    // low-dimensional coordinates of x0; the other constraints are loss terms.
    std::optional<mdiff::EmbeddingConditioning> embed;
    at::Tensor cond_data;
    std::vector<std::string> loss_constraints;
    nlohmann::json embed_json;
    for (const auto& c : f.train_constraints) {
      const auto spec = mdiff::ConstraintSpec::parse(c);
      MD_CHECK_VALUE(spec.name() != "augment", "--train-constraint augment: non-leaky augmentation is for images "
                     "(mdiff-train); mdiff-toy takes ", [] {
                       std::string names;
                       for (const auto& n : mdiff::training_constraint_names()) names += n + ", ";
                       return names;
                     }(), "embed");
      if (spec.name() != "embed") {
        loss_constraints.push_back(c);
        continue;
      }
      MD_CHECK_VALUE(!embed, "--train-constraint embed given twice");
      embed.emplace(mdiff::EmbeddingConditioningOptions::from_spec(spec, f.common.seed));
      const auto t_fit = std::chrono::steady_clock::now();
      cond_data = embed->fit(model_data);
      const double fit_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_fit).count();
      fmt::print("train constraint: {} (fitted in {:.1f} s)\n", embed->describe(), fit_s);
      embed_json = {{"spec", c}, {"description", embed->describe()}, {"extra_network_calls", 0.0}, {"fit_seconds", fit_s}};
    }

    // Model, schedule, trainer.
    mdiff::MLPDenoiser net(mdiff::MLPDenoiserOptions(model_dim)
                               .hidden(f.hidden)
                               .num_blocks(f.blocks)
                               .cond_dim(embed ? embed->options().dims() : 0));
    const mdiff::NoiseSchedule schedule = f.schedule == "cosine" ? mdiff::NoiseSchedule::cosine(f.diffusion_steps)
                                                                 : mdiff::NoiseSchedule::linear(f.diffusion_steps);
    auto opts = mdiff::TrainerOptions(f.steps)
                    .lr(f.lr)
                    .warmup_steps(std::min<int64_t>(200, f.steps / 10))
                    .ema_decay(0.999)
                    .out_dir(out)
                    .checkpoint_every(f.checkpoint_every > 0 ? f.checkpoint_every : f.steps)
                    .seed(f.common.seed)
                    .device(device);
    // Distributed (launched by scripts/launch.sh or torchrun): --batch is the global batch, each rank
    // takes its shard of it; rank 0 writes the log, the checkpoints and everything after training.
    const mdiff::Shard shard = comm ? mdiff::Shard::of(*comm) : mdiff::Shard{};
    MD_CHECK_VALUE(f.batch % shard.count == 0, "--batch ", f.batch, " must be divisible by the ", shard.count,
                   " processes of the job");
    mdiff::Trainer trainer(opts, net.ptr(), mdiff::network_function(net), schedule,
                           mdiff::DenoiserOptions(mdiff::enum_from_string<mdiff::PredictionType>(f.prediction)),
                           mdiff::random_batches(model_data, cond_data, f.batch, mdiff::mix_seed(f.common.seed + 1), shard));
    if (comm) trainer.distribute(comm);
    // Training-time constraints. The tangent regulariser's manifold: local PCA of (up to 5000)
    // training points in the model's space, with the synthetic manifold's intrinsic dimension.
    nlohmann::json constraints_json = nlohmann::json::array();
    std::map<std::string, double> last_scalars;
    if (!embed_json.is_null()) constraints_json.push_back(embed_json);
    if (!loss_constraints.empty()) {
      mdiff::TrainingConstraintContext ctx;
      ctx.sample_shape = {model_dim};
      ctx.seed = f.common.seed;
      if (wants_ae_term) {
        ae->to(device);
        ctx.autoencoder = ae;
      }
      for (const auto& c : loss_constraints) {
        if (mdiff::ConstraintSpec::parse(c).name() == "tangent" && !ctx.manifold) {
          const at::Tensor ref = model_data.slice(0, 0, std::min<int64_t>(model_data.size(0), 5000)).to(device);
          ctx.manifold = mdiff::ReferenceManifold::make(
              ref, mdiff::ReferenceOptions().k(12).dim(manifold ? std::min<int64_t>(manifold->intrinsic_dim, model_dim) : -1));
          fmt::print("tangent manifold: local PCA of {} training points, k = 12, d = {}\n", ref.size(0),
                     ctx.manifold->intrinsic_dim());
        }
      }
      for (const auto& a : mdiff_program::add_train_constraints(trainer, loss_constraints, ctx)) constraints_json.push_back(a);
      trainer.add_callback(std::make_shared<mdiff::LambdaCallback>([&](mdiff::Trainer&, const mdiff::TrainStepInfo& s) {
        last_scalars = s.scalars;
        return false;
      }));
    }
    std::vector<std::pair<int64_t, double>> losses;
    if (trainer.is_main_process()) trainer.add_callback(std::make_shared<mdiff::ProgressBar>());
    trainer.add_callback(std::make_shared<mdiff::LambdaCallback>([&](mdiff::Trainer&, const mdiff::TrainStepInfo& s) {
      if (!s.skipped_this_step) losses.emplace_back(s.step, s.loss);
      return false;
    }));
    if (f.resume && trainer.resume()) fmt::print("resumed at step {}\n", trainer.step());
    const mdiff::TrainResult tr = trainer.fit();
    if (!trainer.is_main_process()) {
      fmt::print("rank {}: trained to step {}; rank 0 samples and writes the results\n", comm->rank(), tr.steps);
      return;
    }

    // Sampling with the EMA weights: with sampling-time constraints, the same model and seed also
    // sample without them (the baseline), so the comparison is at equal training and sampling steps.
    const auto sampler = mdiff::make_sampler(f.sampler, f.sample_steps, f.eta);
    mdiff::SampleArgs sample_args;
    mdiff::SamplingConstraintContext sctx;
    sctx.seed = f.common.seed;
    if (!all_sample_specs.empty()) {
      MD_CHECK_VALUE(f.latent_dim == 0, "--sample-constraint acts in data space; it cannot be combined with --latent-dim");
      for (const auto& c : all_sample_specs) {
        const std::string n = mdiff::ConstraintSpec::parse(c).name();
        if (n == "manifold" && !sctx.manifold) {
          const at::Tensor ref = model_data.slice(0, 0, std::min<int64_t>(model_data.size(0), f.reference_points)).to(device);
          sctx.manifold = mdiff::ReferenceManifold::make(
              ref, mdiff::ReferenceOptions().k(12).dim(manifold ? std::min<int64_t>(manifold->intrinsic_dim, model_dim) : -1));
          fmt::print("sampling manifold: local PCA of {} training points, k = 12, d = {}\n", ref.size(0),
                     sctx.manifold->intrinsic_dim());
        }
        if (n == "ae_projection" && !sctx.autoencoder.encode) {
          ae->to(device);
          ae->eval();
          sctx.autoencoder.encode = [ae](const at::Tensor& x) mutable { return ae->encode(x); };
          sctx.autoencoder.decode = [ae](const at::Tensor& z) mutable { return ae->decode(z); };
        }
      }
      for (const auto& c : f.sample_constraints) sample_args.hooks.push_back(mdiff::make_sampling_constraint(c, sctx));
    }
    auto draw = [&](mdiff::SampleArgs args, bool main_run) {
      at::Tensor x;
      trainer.with_ema_weights([&] {
        at::NoGradGuard no_grad;
        if (embed) args.cond = embed->sample(f.num_samples, mdiff::mix_seed(f.common.seed + 3)).to(device);
        x = sampler->sample(trainer.denoiser(), {f.num_samples, model_dim}, mdiff::mix_seed(f.common.seed + 2), args, 0,
                            at::TensorOptions(at::kFloat).device(device));
        if (embed && main_run) {
          // Do samples land at the coordinates they were asked for? Compared with a shuffled pairing.
          const at::Tensor got = embed->coordinates(x.cpu());
          const at::Tensor want = args.cond.cpu();
          embed_json["coordinate_error"] = (got - want).norm(2, 1).mean().item<double>();
          embed_json["coordinate_error_unpaired"] = (got - want.roll(1, 0)).norm(2, 1).mean().item<double>();
        }
        if (f.latent_dim > 0) x = ae->decode(x.cpu() * z_scale + z_mean);
      });
      x = x.cpu() * scale + mean;
      MD_CHECK(at::isfinite(x).all().item<bool>(), "sampling produced non-finite values");
      return x;
    };
    net->eval();
    const auto t0 = std::chrono::steady_clock::now();
    at::Tensor samples = draw(sample_args, true);
    const double sample_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    // Metrics against the manifold (exact distance) or the reference sample (nearest neighbour).
    const at::Tensor ref_eval = reference.slice(0, 0, std::min<int64_t>(reference.size(0), f.num_samples));
    auto sample_metrics = [&](const at::Tensor& x, at::Tensor* dist_out) {
      const at::Tensor dist = manifold ? manifold->distance(x).to(at::kDouble)
                                       : mdiff::metrics::knn_distance(x, reference, 1).to(at::kDouble);
      const at::Tensor sorted = std::get<0>(dist.sort());
      const double p95 = sorted[std::min<int64_t>(sorted.size(0) - 1, (sorted.size(0) * 95) / 100)].item<double>();
      const auto prdc = mdiff::metrics::prdc(ref_eval, x, 5);
      nlohmann::json j;
      j["manifold_distance_mean"] = dist.mean().item<double>();
      j["manifold_distance_p95"] = p95;
      j["sliced_wasserstein"] = mdiff::metrics::sliced_wasserstein(x, ref_eval, 128, f.common.seed);
      j["mmd"] = mdiff::metrics::mmd(x, ref_eval);
      j["precision"] = prdc.precision;
      j["recall"] = prdc.recall;
      j["density"] = prdc.density;
      j["coverage"] = prdc.coverage;
      if (dist_out) *dist_out = dist;
      return j;
    };
    at::Tensor dist;
    nlohmann::json m;
    m["program"] = "mdiff-toy";
    m["dataset"] = f.data_file.empty() ? f.dataset : f.data_file;
    m["ambient_dim"] = dim;
    m["distance_kind"] = manifold ? "exact distance to the manifold" : "distance to the nearest reference point";
    m.update(sample_metrics(samples, &dist));
    m["sample_constraints"] = f.sample_constraints;
    if (!all_sample_specs.empty()) {
      const auto tb = std::chrono::steady_clock::now();
      const at::Tensor base = draw({}, false);
      const double base_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - tb).count();
      nlohmann::json b = sample_metrics(base, nullptr);
      b["sample_seconds"] = base_seconds;
      m["baseline"] = b;
      for (const auto& h : sample_args.hooks) {
        for (const auto& [k, v] : std::dynamic_pointer_cast<mdiff::SamplingConstraint>(h)->scalars()) m["last_" + k] = v;
      }
      nlohmann::json comparisons = nlohmann::json::object();
      for (const auto& spec : f.compare_constraints) {
        mdiff::SampleArgs args;
        auto c = mdiff::make_sampling_constraint(spec, sctx);
        args.hooks.push_back(c);
        const auto tc = std::chrono::steady_clock::now();
        const at::Tensor x = draw(args, false);
        nlohmann::json j = sample_metrics(x, nullptr);
        j["sample_seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - tc).count();
        for (const auto& [k, v] : c->scalars()) j["last_" + k] = v;
        comparisons[spec] = j;
        fmt::print("{}: distance mean {:.4g} (baseline {:.4g})\n", spec, j["manifold_distance_mean"].get<double>(),
                   b["manifold_distance_mean"].get<double>());
      }
      if (!f.compare_constraints.empty()) m["comparisons"] = comparisons;
    }
    m["train_seconds"] = tr.seconds;
    m["train_ms_per_step"] = 1000.0 * tr.seconds / static_cast<double>(std::max<int64_t>(1, tr.steps_this_run));
    m["train_constraints"] = constraints_json;
    if (embed) {
      m["embed_coordinate_error"] = embed_json["coordinate_error"];
      m["embed_coordinate_error_unpaired"] = embed_json["coordinate_error_unpaired"];
    }
    for (const auto& [k, v] : last_scalars) m["last_" + k] = v;
    if (f.latent_dim > 0) m["latent_dim"] = f.latent_dim;
    if (ae_loss >= 0) m["autoencoder_final_loss"] = ae_loss;
    m["sample_seconds"] = sample_seconds;
    m["steps"] = tr.steps;
    m["final_loss"] = tr.final_loss;
    m["sampler"] = f.sampler;
    m["sample_steps"] = f.sample_steps;
    m["num_samples"] = f.num_samples;
    m["threads"] = f.common.threads;
    m["device"] = device.str();
    if (manifold) {
      const at::Tensor noise_dist = manifold->distance(at::randn_like(samples) * scale + mean).to(at::kDouble);
      m["noise_distance_mean"] = noise_dist.mean().item<double>();
    }

    // Pictures: samples over the reference (the first two principal components of both when D > 2)
    // and the loss curve.
    {
      const int64_t n_ref_plot = std::min<int64_t>(reference.size(0), 4000);
      const at::Tensor both = at::cat({reference.slice(0, 0, n_ref_plot), samples}, 0);
      const at::Tensor flat = dim == 2 ? both : mdiff::io::project_2d(both);
      mdiff::io::ScatterPlot plot(mdiff::io::ScatterPlotOptions()
                                      .title(fmt::format("{}: {} samples ({} x {})", m["dataset"].get<std::string>(),
                                                         f.num_samples, f.sampler, f.sample_steps))
                                      .x_label(dim == 2 ? "x0" : "PC 1")
                                      .y_label(dim == 2 ? "x1" : "PC 2"));
      plot.add("reference", flat.slice(0, 0, n_ref_plot), mdiff::io::Color{150, 150, 150});
      plot.add("samples", flat.slice(0, n_ref_plot), mdiff::io::Color{214, 39, 40});
      plot.save(out + "/scatter.svg");
      plot.save(out + "/scatter.png");
      std::vector<double> xs, ys;
      for (const auto& [step, loss] : losses) {
        xs.push_back(static_cast<double>(step));
        ys.push_back(loss);
      }
      if (!xs.empty()) {
        mdiff::io::LinePlot(mdiff::io::LinePlotOptions().title("training loss (this run)").x_label("step").log_y(true))
            .add("loss", xs, ys)
            .save(out + "/loss.svg");
      }
    }
    write_csv(out + "/samples.csv", samples, dist);
    mdiff::data::write_npy(out + "/samples.npy", samples);
    mdiff_program::write_metrics(out, m);
    fmt::print("outputs in {}\n", std::filesystem::absolute(out).string());
  });
}
