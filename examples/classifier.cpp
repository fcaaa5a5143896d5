// mdiff-classifier: trains the Fashion-MNIST classifier whose penultimate features give the
// feature-FD (mdiff::metrics::feature_fd), and reports its test accuracy.
//
// Writes DIR/classifier.pt (options and weights, for load_classifier / load_or_train_fashion_classifier)
// and DIR/metrics.json (test_accuracy, train_seconds, epochs, threads, ...).
//
//   mdiff-classifier --out out/classifier --epochs 2 --threads 2

#include <manifold_diffusion/manifold_diffusion.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <filesystem>
#include <fstream>

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

    const std::string weights = out_dir + "/classifier.pt";
    mdiff::metrics::save_classifier(net, weights);
    const std::string json = fmt::format(
        R"({{"test_accuracy": {:.4f}, "train_seconds": {:.2f}, "epochs": {}, "threads": {}, "device": "{}", )"
        R"("batch": {}, "lr": {}, "width": {}, "feature_dim": {}, "translate": {}, "seed": {}, "train_images": {}, )"
        R"("final_train_loss": {:.5f}}})",
        report.test_accuracy, report.train_seconds, report.epochs, threads, device.str(), batch, lr, width,
        feature_dim, translate, seed, train.size(), report.final_train_loss);
    {
      std::ofstream f(out_dir + "/metrics.json");
      MD_CHECK(f.good(), "cannot write '", out_dir, "/metrics.json'");
      f << json << "\n";
    }
    fmt::print("test accuracy {:.2f}% after {} epochs in {:.1f} s ({} threads, {})\n", 100 * report.test_accuracy,
               report.epochs, report.train_seconds, threads, device.str());
    fmt::print("{}\n", json);
    fmt::print("outputs: {0}/classifier.pt, {0}/metrics.json\n", std::filesystem::absolute(out_dir).string());
  } catch (const std::exception& e) {
    fmt::print(stderr, "mdiff-classifier: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
