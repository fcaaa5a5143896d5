// mdiff-classifier: trains the Fashion-MNIST classifier whose penultimate features give the
// feature-FD (mdiff::metrics::feature_fd), and reports its test accuracy.
//
// Writes DIR/classifier.safetensors (options and weights, for load_classifier / load_or_train_fashion_classifier)
// and DIR/metrics.json (test_accuracy, train_seconds, epochs, threads, reference feature-FD values).
// With --evaluate FILE it loads those weights instead of training and writes only metrics.json.
//
//   mdiff-classifier --out out/classifier --epochs 2 --threads 2
//   mdiff-classifier --out out/eval --evaluate out/classifier/classifier.safetensors

#include <manifold_diffusion/manifold_diffusion.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <filesystem>
#include <fstream>

namespace {

// Feature-FD values that give its scale: two halves of the test split, a training subset against
// the test split, and test halves with Gaussian noise (std in units of the [-1, 1] pixel range).
std::string reference_fds(mdiff::metrics::ImageClassifier& net, const mdiff::data::LabeledImages& train,
                          const mdiff::data::LabeledImages& test, uint64_t seed) {
  const int64_t half = test.size() / 2;
  const at::Tensor a = test.images.narrow(0, 0, half);
  const at::Tensor b = test.images.narrow(0, half, test.size() - half);
  at::Generator gen = mdiff::make_generator(mdiff::mix_seed(seed + 17));
  const at::Tensor noise = at::randn(b.sizes(), gen, at::kFloat);
  const double halves = mdiff::metrics::feature_fd(net, a, b);
  const double train_test =
      mdiff::metrics::feature_fd(net, train.images.narrow(0, 0, std::min<int64_t>(train.size(), 10000)), test.images);
  const double n01 = mdiff::metrics::feature_fd(net, a, b + 0.1 * noise);
  const double n03 = mdiff::metrics::feature_fd(net, a, b + 0.3 * noise);
  fmt::print("feature-FD: test halves {:.3f}, train[:10000] vs test {:.3f}, test halves with noise 0.1: {:.3f}, 0.3: {:.3f}\n",
             halves, train_test, n01, n03);
  return fmt::format(R"({{"test_halves": {:.4f}, "train10k_vs_test": {:.4f}, "test_halves_noise_0.1": {:.4f}, )"
                     R"("test_halves_noise_0.3": {:.4f}}})",
                     halves, train_test, n01, n03);
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  MD_CHECK(f.good(), "cannot write '", path, "'");
  f << text << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mdiff-classifier: train the Fashion-MNIST feature classifier used by the feature-FD"};
  std::string out_dir = "out/classifier";
  std::string data_dir = mdiff::data::kFashionMnistDir;
  std::string device_name = "cpu";
  int64_t epochs = 2;
  int64_t batch = 128;
  int64_t width = 16;
  int64_t feature_dim = 128;
  double lr = 2e-3;
  double translate = 0.0;
  uint64_t seed = 0;
  int64_t train_subset = 0;
  std::string evaluate;
  int threads = 2;
  app.add_option("--out", out_dir, "output directory")->capture_default_str();
  app.add_option("--data", data_dir, "folder with the Fashion-MNIST IDX files")->capture_default_str();
  app.add_option("--epochs", epochs, "passes over the 60000 training images")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--batch", batch, "batch size")->capture_default_str()->check(CLI::Range(2, 100000));
  app.add_option("--lr", lr, "peak AdamW learning rate (cosine decay)")->capture_default_str()->check(CLI::Range(1e-8, 1.0));
  app.add_option("--width", width, "channels of the first stage")->capture_default_str()->check(CLI::Range(1, 1024));
  app.add_option("--feature-dim", feature_dim, "size of the penultimate (feature) layer")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--translate", translate, "probability of a random shift by up to 2 px")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--train-subset", train_subset, "train on the first N training images only (0 = all 60000)")
      ->capture_default_str()
      ->check(CLI::Range(0, 60000));
  app.add_option("--seed", seed, "random seed")->capture_default_str();
  app.add_option("--threads", threads, "intra-op threads (0 = all)")->capture_default_str()->check(CLI::Range(0, 1024));
  app.add_option("--evaluate", evaluate, "load these classifier weights and evaluate them instead of training");
  app.add_option("--device", device_name, "cpu, cuda, cuda:N or auto")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    threads = mdiff::set_num_threads(threads);
    const c10::Device device = mdiff::parse_device(device_name);
    fmt::print("{}\n", mdiff::describe_build());
    std::filesystem::create_directories(out_dir);

    auto train = mdiff::data::load_fashion_mnist(data_dir, "train");
    if (train_subset > 0) {
      train.images = train.images.narrow(0, 0, train_subset);
      train.labels = train.labels.narrow(0, 0, train_subset);
    }
    const auto test = mdiff::data::load_fashion_mnist(data_dir, "test");
    if (!evaluate.empty()) {
      mdiff::metrics::ImageClassifier net = mdiff::metrics::load_classifier(evaluate, device);
      const double accuracy = mdiff::metrics::classifier_accuracy(net, test);
      fmt::print("{}: test accuracy {:.2f}%\n", evaluate, 100 * accuracy);
      const std::string fds = reference_fds(net, train, test, seed);
      const std::string json = fmt::format(R"({{"weights": "{}", "test_accuracy": {:.4f}, "threads": {}, "device": "{}", )"
                                           R"("feature_fd": {}}})",
                                           evaluate, accuracy, threads, device.str(), fds);
      write_text(out_dir + "/metrics.json", json);
      fmt::print("{}\n", json);
      return 0;
    }
    mdiff::manual_seed(seed);
    const auto model_options = mdiff::metrics::ImageClassifierOptions().width(width).feature_dim(feature_dim);
    mdiff::metrics::ImageClassifier net(model_options);
    const auto options = mdiff::metrics::ClassifierTrainOptions()
                             .epochs(epochs)
                             .batch_size(batch)
                             .lr(lr)
                             .translate(translate)
                             .seed(seed)
                             .device(device)
                             .on_epoch([](int64_t epoch, double loss, double accuracy) {
                               fmt::print("epoch {:>3}  train loss {:.4f}  test accuracy {:.4f}\n", epoch, loss,
                                          accuracy);
                               std::fflush(stdout);
                             });
    const auto report = mdiff::metrics::train_classifier(net, train, test, options);

    const std::string weights = out_dir + "/classifier.safetensors";
    mdiff::metrics::save_classifier(net, weights);
    const std::string json = fmt::format(
        R"({{"test_accuracy": {:.4f}, "train_seconds": {:.2f}, "epochs": {}, "threads": {}, "device": "{}", )"
        R"("batch": {}, "lr": {}, "width": {}, "feature_dim": {}, "translate": {}, "seed": {}, "train_images": {}, )"
        R"("final_train_loss": {:.5f}, "feature_fd": {}}})",
        report.test_accuracy, report.train_seconds, report.epochs, threads, device.str(), batch, lr, width,
        feature_dim, translate, seed, train.size(), report.final_train_loss, reference_fds(net, train, test, seed));
    write_text(out_dir + "/metrics.json", json);
    fmt::print("test accuracy {:.2f}% after {} epochs in {:.1f} s ({} threads, {})\n", 100 * report.test_accuracy,
               report.epochs, report.train_seconds, threads, device.str());
    fmt::print("{}\n", json);
    fmt::print("outputs: {0}/classifier.safetensors, {0}/metrics.json\n", std::filesystem::absolute(out_dir).string());
  } catch (const std::exception& e) {
    fmt::print(stderr, "mdiff-classifier: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
