// mdiff-embed: a 2-D map (t-SNE, Isomap, spectral, diffusion map or PCA) of real samples and
// generated samples drawn as one picture, to see where generated samples leave the data manifold.
//
//   mdiff-embed --real fashion-mnist:test --generated out/sample/samples.safetensors --method tsne --out out/map
//   mdiff-embed --real data.npy --generated out/toy/samples.npy --method isomap --max-points 3000 --out out/map
//   mdiff-embed --real images/ --generated generated_pngs/ --method pca --out out/map
//
// Inputs (--real, --generated): fashion-mnist[:train|test], a .npy file ([N, ...] float), a
// .safetensors file holding one tensor (e.g. mdiff-sample's samples.safetensors), or a folder of PNGs.
// Writes map.png, map.svg, map.npy ([N, 3]: x, y, 1 for generated points) and metrics.json.

#include "common.h"


#include <chrono>
#include <filesystem>

namespace {

namespace fs = std::filesystem;

struct Loaded {
  at::Tensor points;  // float32 [N, ...]
  std::string kind;
};

bool is_folder(const std::string& spec) { return fs::is_directory(spec); }

// Points from one input; `like` (when defined) gives the channels and size of PNG folders.
Loaded load_input(const std::string& spec, const char* flag, const at::Tensor& like) {
  MD_CHECK_VALUE(!spec.empty(), flag, " is empty");
  if (spec.rfind("fashion-mnist", 0) == 0) {
    std::string split = "train";
    if (spec.size() > 13) {
      MD_CHECK_VALUE(spec[13] == ':', flag, " '", spec, "': expected fashion-mnist, fashion-mnist:train or fashion-mnist:test");
      split = spec.substr(14);
    }
    MD_CHECK_VALUE(split == "train" || split == "test", flag, " '", spec, "': the split must be train or test, got '",
                   split, "'");
    return {mdiff::data::load_fashion_mnist(mdiff::data::kFashionMnistDir, split).images, "fashion-mnist:" + split};
  }
  MD_CHECK_VALUE(fs::exists(spec), flag, " '", spec, "': no such file or folder");
  if (is_folder(spec)) {
    auto opts = mdiff::data::ImageFolderOptions().channels(3);
    if (like.defined() && like.dim() == 4 && (like.size(1) == 1 || like.size(1) == 3)) {
      opts.channels(like.size(1)).size({like.size(2), like.size(3)});
    }
    return {mdiff::data::load_image_folder(spec, opts).data.images, "png folder"};
  }
  const std::string ext = fs::path(spec).extension().string();
  at::Tensor t;
  if (ext == ".npy") {
    t = mdiff::data::read_npy(spec);
  } else if (ext == ".safetensors") {
    const mdiff::io::Safetensors st = mdiff::io::load_safetensors(spec);
    MD_CHECK_VALUE(st.tensors.size() == 1, flag, " '", spec, "' must hold one tensor, got ", st.tensors.size());
    t = st.tensors[0].second;
  } else {
    MD_CHECK_VALUE(false, flag, " '", spec, "': expected fashion-mnist[:train|test], a .npy or .safetensors file, or a "
                   "folder of PNGs; got extension '", ext, "'",
                   ext == ".pt" ? " (LibTorch archives are not read: mdiff-sample --save-tensor writes .safetensors)"
                                : "");
  }
  MD_CHECK_VALUE(t.defined() && t.dim() >= 2 && t.size(0) >= 1, flag, " '", spec, "' must hold a tensor [N, ...], got ",
                 mdiff::shape_string(t));
  MD_CHECK_VALUE(t.is_floating_point(), flag, " '", spec, "' must hold floating-point values, got ", t.scalar_type());
  MD_CHECK_VALUE(at::isfinite(t).all().item<bool>(), flag, " '", spec, "' contains NaN or Inf values");
  return {t.to(at::kCPU, at::kFloat), ext.substr(1)};
}

// At most `max_points` rows, a seeded random subset kept in order.
at::Tensor subsample(const at::Tensor& x, int64_t max_points, uint64_t seed) {
  if (max_points <= 0 || x.size(0) <= max_points) {
    return x;
  }
  at::Generator g = mdiff::make_generator(seed);
  const at::Tensor idx = std::get<0>(at::randperm(x.size(0), g, at::TensorOptions(at::kLong)).narrow(0, 0, max_points).sort());
  return x.index_select(0, idx);
}

double seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mdiff-embed: a 2-D map of real and generated samples (t-SNE, Isomap, spectral, diffusion map, PCA)"};
  mdiff_program::CommonFlags common{"out/embed", 0, 2, "cpu"};
  mdiff_program::add_common_flags(app, common);
  std::string real_spec, generated_spec, method = "tsne";
  int64_t max_points = 2000, max_generated = -1, k = 12, iterations = 1000, landmarks = 1000, exact_max = 1000;
  double perplexity = 30.0;
  app.add_option("--real", real_spec, "real samples: fashion-mnist[:train|test], a .npy/.safetensors file or a PNG folder")->required();
  app.add_option("--generated", generated_spec, "generated samples: a .safetensors (mdiff-sample), .npy (mdiff-toy) file, a PNG folder, or fashion-mnist[:split]");
  app.add_option("--method", method, "tsne, isomap, spectral, diffusion_map or pca")->capture_default_str();
  app.add_option("--max-points", max_points, "at most this many points of each input (a seeded random subset; 0: all)")
      ->capture_default_str()->check(CLI::Range(int64_t{0}, int64_t{100000000}));
  app.add_option("--max-generated", max_generated, "at most this many generated points (-1: as --max-points; 0: all)")
      ->capture_default_str()->check(CLI::Range(int64_t{-1}, int64_t{100000000}));
  app.add_option("--k", k, "neighbours of the kNN graph and the metrics")->capture_default_str()->check(CLI::Range(1, 10000));
  app.add_option("--perplexity", perplexity, "t-SNE perplexity")->capture_default_str()->check(CLI::Range(1.0, 10000.0));
  app.add_option("--iterations", iterations, "t-SNE iterations")->capture_default_str()->check(CLI::Range(1, 1000000));
  app.add_option("--landmarks", landmarks, "Isomap/spectral: landmarks beyond this many points")->capture_default_str()->check(CLI::Range(4, 1000000));
  app.add_option("--exact-max", exact_max, "t-SNE: exact gradients up to this many points, Barnes-Hut beyond")->capture_default_str()->check(CLI::Range(0, 100000000));
  CLI11_PARSE(app, argc, argv);

  return mdiff_program::run_guarded("mdiff-embed", [&] {
    const auto& names = mdiff::embedding_names();
    MD_CHECK_VALUE(std::find(names.begin(), names.end(), method) != names.end(), "unknown --method '", method,
                   "'; known: tsne, isomap, spectral, diffusion_map, pca");
    const c10::Device device = mdiff_program::setup(common, "mdiff-embed");
    const auto t0 = std::chrono::steady_clock::now();

    // Files first, then PNG folders shaped like the other input.
    Loaded real, gen;
    const bool real_first = !is_folder(real_spec) || generated_spec.empty() || is_folder(generated_spec);
    if (real_first) {
      real = load_input(real_spec, "--real", {});
      if (!generated_spec.empty()) gen = load_input(generated_spec, "--generated", real.points);
    } else {
      gen = load_input(generated_spec, "--generated", {});
      real = load_input(real_spec, "--real", gen.points);
    }
    const int64_t real_total = real.points.size(0);
    at::Tensor r = subsample(real.points, max_points, common.seed).flatten(1);
    at::Tensor g;
    if (gen.points.defined()) {
      g = subsample(gen.points, max_generated < 0 ? max_points : max_generated, common.seed + 1).flatten(1);
      MD_CHECK_VALUE(g.size(1) == r.size(1), "--generated has dimension ", g.size(1), " (shape ",
                     mdiff::shape_string(gen.points), ") but --real has ", r.size(1), " (shape ",
                     mdiff::shape_string(real.points), ")");
    } else {
      g = at::empty({0, r.size(1)}, r.options());
    }
    const double load_seconds = seconds(t0);
    const int64_t nr = r.size(0), ng = g.size(0);
    fmt::print("real: {} points of {} ({}), generated: {} points, dimension {}\n", nr, real_total, real.kind, ng, r.size(1));

    const at::Tensor x = at::cat({r, g}).to(device);
    auto opts = mdiff::EmbeddingOptions().dims(2).k(k).seed(common.seed).perplexity(perplexity).iterations(iterations)
                    .landmarks(landmarks).exact_max(exact_max);
    auto emb = mdiff::make_embedding(method, opts);
    const auto t1 = std::chrono::steady_clock::now();
    const at::Tensor y = emb->fit_transform(x).to(at::kCPU, at::kDouble);
    const double embed_seconds = seconds(t1);
    fmt::print("{}: {} points mapped in {:.2f} s\n", method, x.size(0), embed_seconds);

    // Picture: reals and generated in two colours.
    mdiff::io::ScatterPlot plot(mdiff::io::ScatterPlotOptions()
                                    .width(800)
                                    .height(640)
                                    .title(fmt::format("{} map: {} real, {} generated", method, nr, ng))
                                    .point_size(2.0)
                                    .alpha(0.6));
    plot.add("real", y.narrow(0, 0, nr), mdiff::io::Color{31, 119, 180});
    if (ng > 0) plot.add("generated", y.narrow(0, nr, ng), mdiff::io::Color{214, 39, 40});
    plot.save(common.out + "/map.png");
    plot.save(common.out + "/map.svg");
    at::Tensor flag = at::cat({at::zeros({nr, 1}, y.options()), at::ones({ng, 1}, y.options())});
    mdiff::data::write_npy(common.out + "/map.npy", at::cat({y, flag}, 1).to(at::kFloat));

    nlohmann::json m;
    m["method"] = method;
    m["real"] = real_spec;
    m["generated"] = generated_spec;
    m["n_real"] = nr;
    m["n_generated"] = ng;
    m["dimension"] = r.size(1);
    m["load_seconds"] = load_seconds;
    m["embed_seconds"] = embed_seconds;
    const int64_t n = nr + ng;
    at::Tensor ambient_nn, map_nn;
    if (n >= 3) {
      // Neighbourhoods of the map against those of R^D (also the timing of a full self-kNN graph).
      const int64_t kk = std::min<int64_t>(k, n - 1);
      const auto tg = std::chrono::steady_clock::now();
      const at::Tensor ambient = mdiff::knn_graph(x, kk).indices.to(at::kCPU);
      m["knn_graph_seconds"] = seconds(tg);
      const at::Tensor in_map = mdiff::knn_graph(y, kk).indices;
      m["knn_preservation"] = mdiff::knn_overlap(ambient, in_map);
      m["knn_preservation_k"] = kk;
      ambient_nn = ambient.select(1, 0);
      map_nn = in_map.select(1, 0);
    }
    if (ng > 0 && nr > 0 && ambient_nn.defined()) {
      // Nearest other point of each generated point: real or generated? In the map and in R^D.
      const at::Tensor& nn_map = map_nn;
      m["generated_nn_real_fraction_map"] = (nn_map.narrow(0, nr, ng) < nr).to(at::kDouble).mean().item<double>();
      m["generated_nn_real_fraction_ambient"] =
          (ambient_nn.narrow(0, nr, ng) < nr).to(at::kDouble).mean().item<double>();
      m["real_nn_generated_fraction_map"] = (nn_map.narrow(0, 0, nr) >= nr).to(at::kDouble).mean().item<double>();
      m["mixed_expectation"] = static_cast<double>(nr) / static_cast<double>(n - 1);
      // How far generated points are from the reals, relative to the spacing of the reals (the
      // latter from at most 2000 evenly spaced real points).
      const auto tq = std::chrono::steady_clock::now();
      const double gen_gap = mdiff::knn(g.to(device), r.to(device), 1).distances.mean().item<double>();
      m["knn_generated_to_real_seconds"] = seconds(tq);
      m["generated_to_real_distance_mean"] = gen_gap;
      if (nr >= 2) {
        const at::Tensor sel = at::linspace(0, static_cast<double>(nr - 1), std::min<int64_t>(nr, 2000),
                                            at::TensorOptions(at::kDouble)).round().to(at::kLong);
        const double real_gap = mdiff::knn(r.index_select(0, sel).to(device), r.to(device), 2)
                                    .distances.select(1, 1).mean().item<double>();
        m["real_to_real_distance_mean"] = real_gap;
        m["distance_ratio"] = real_gap > 0 ? gen_gap / real_gap : 0.0;
      }
    }
    if (nr >= 4) {
      // The reals' intrinsic dimension, and the distance of the generated points to the local PCA
      // planes of the reals (ReferenceManifold with d estimated).
      const int64_t kd = std::min<int64_t>(std::max<int64_t>(k, 3), nr - 1);
      const at::Tensor rd = r.to(device);
      const auto dim_opts = mdiff::IntrinsicDimOptions().k(kd).max_points(2000);
      m["real_intrinsic_dim_mle"] = mdiff::intrinsic_dim_mle(rd, dim_opts).estimate;
      m["real_intrinsic_dim_local_pca"] = mdiff::intrinsic_dim_local_pca(rd, dim_opts).estimate;
      if (ng > 0) {
        const auto tr = std::chrono::steady_clock::now();
        auto reference = mdiff::ReferenceManifold::make(rd, mdiff::ReferenceOptions().k(kd));
        const at::Tensor dist = reference->distance(g.to(device));
        m["reference_dim"] = reference->intrinsic_dim();
        m["generated_reference_distance_mean"] = dist.mean().item<double>();
        m["reference_seconds"] = seconds(tr);
      }
    }
    if (emb->name() == "tsne") m["tsne_kl_divergence"] = static_cast<const mdiff::Tsne&>(*emb).kl_divergence();
    m["seconds"] = seconds(t0);
    mdiff_program::write_metrics(common.out, m);
  });
}
