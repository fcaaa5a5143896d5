#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/data/augment.h>
#include <manifold_diffusion/data/loader.h>
#include <manifold_diffusion/metrics/distribution.h>
#include <manifold_diffusion/metrics/feature_classifier.h>
#include <manifold_diffusion/training/checkpoint.h>

#include <ATen/ATen.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/pooling.h>
#include <torch/optim/adamw.h>
#include <torch/utils.h>

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <unistd.h>

namespace manifold_diffusion {
namespace metrics {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr const char* kClassifierKind = "image-classifier";
constexpr int64_t kClassifierFormat = 2;  // 1: the LibTorch archive of manifold_diffusion 0.1

// Puts `module` in eval mode for the lifetime of the guard, then restores its previous mode.
class EvalGuard {
 public:
  explicit EvalGuard(ImageClassifier& module) : module_(module), was_training_(module->is_training()) {
    module_->eval();
  }
  ~EvalGuard() { module_->train(was_training_); }
  EvalGuard(const EvalGuard&) = delete;
  EvalGuard& operator=(const EvalGuard&) = delete;

 private:
  ImageClassifier& module_;
  bool was_training_;
};

c10::Device module_device(const ImageClassifier& model) {
  const auto params = model->parameters();
  return params.empty() ? c10::Device(c10::kCPU) : params.front().device();
}

void check_images(const data::LabeledImages& d, const char* name, const ImageClassifierOptions& o) {
  check_defined(d.images, name);
  check_defined(d.labels, name);
  const int64_t s = o.image_size();
  check_shape(d.images, name, {-1, o.in_channels(), s, s});
  check_floating(d.images, name);
  MD_CHECK_VALUE(d.labels.dim() == 1 && d.labels.size(0) == d.images.size(0), name, ": labels must have shape [",
                 d.images.size(0), "], got ", shape_string(d.labels));
  check_index_range(d.labels, name, 0, o.num_classes());
}

}  // namespace

void ImageClassifierOptions::validate() const {
  check_positive(in_channels_, "ImageClassifierOptions::in_channels");
  MD_CHECK_VALUE(image_size_ >= 4, "ImageClassifierOptions::image_size must be at least 4, got ", image_size_);
  MD_CHECK_VALUE(num_classes_ >= 2, "ImageClassifierOptions::num_classes must be at least 2, got ", num_classes_);
  check_positive(width_, "ImageClassifierOptions::width");
  check_positive(feature_dim_, "ImageClassifierOptions::feature_dim");
  check_in_range(dropout_, 0.0, 1.0, "ImageClassifierOptions::dropout");
}

bool ImageClassifierOptions::operator==(const ImageClassifierOptions& o) const {
  return in_channels_ == o.in_channels_ && image_size_ == o.image_size_ && num_classes_ == o.num_classes_ &&
         width_ == o.width_ && feature_dim_ == o.feature_dim_ && dropout_ == o.dropout_;
}

ImageClassifierImpl::ImageClassifierImpl(ImageClassifierOptions options) : options_(std::move(options)) {
  options_.validate();
  reset();
}

void ImageClassifierImpl::reset() {
  namespace nn = torch::nn;
  const int64_t w = options_.width();
  auto conv_block = [](int64_t in, int64_t out) {
    nn::Sequential s;
    s->push_back(nn::Conv2d(nn::Conv2dOptions(in, out, 3).padding(1).bias(false)));
    s->push_back(nn::BatchNorm2d(out));
    s->push_back(nn::ReLU(nn::ReLUOptions(true)));
    return s;
  };
  nn::Sequential trunk;
  trunk->extend(*conv_block(options_.in_channels(), w));
  trunk->extend(*conv_block(w, w));
  trunk->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2)));
  trunk->extend(*conv_block(w, 2 * w));
  trunk->extend(*conv_block(2 * w, 2 * w));
  trunk->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2)));
  trunk_ = register_module("trunk", trunk);
  const int64_t side = options_.image_size() / 2 / 2;
  fc_ = register_module("fc", nn::Linear(nn::LinearOptions(2 * w * side * side, options_.feature_dim()).bias(false)));
  fc_norm_ = register_module("fc_norm", nn::BatchNorm1d(options_.feature_dim()));
  dropout_ = register_module("dropout", nn::Dropout(options_.dropout()));
  head_ = register_module("head", nn::Linear(options_.feature_dim(), options_.num_classes()));
}

void ImageClassifierImpl::pretty_print(std::ostream& stream) const {
  stream << "mdiff::metrics::ImageClassifier(in_channels=" << options_.in_channels()
         << ", image_size=" << options_.image_size() << ", num_classes=" << options_.num_classes()
         << ", width=" << options_.width() << ", feature_dim=" << options_.feature_dim()
         << ", dropout=" << options_.dropout() << ")";
}

void ImageClassifierImpl::check_input(const at::Tensor& x) const {
  const int64_t s = options_.image_size();
  check_shape(x, "ImageClassifier: x", {-1, options_.in_channels(), s, s});
  check_floating(x, "ImageClassifier: x");
}

at::Tensor ImageClassifierImpl::features(const at::Tensor& x) {
  check_input(x);
  const at::Tensor h = trunk_->forward(x).flatten(1);
  return at::relu(fc_norm_->forward(fc_->forward(h)));
}

at::Tensor ImageClassifierImpl::forward(const at::Tensor& x) { return head_->forward(dropout_->forward(features(x))); }

void ClassifierTrainOptions::validate() const {
  check_positive(epochs_, "ClassifierTrainOptions::epochs");
  MD_CHECK_VALUE(batch_size_ >= 2, "ClassifierTrainOptions::batch_size must be at least 2 (BatchNorm), got ",
                 batch_size_);
  check_positive(lr_, "ClassifierTrainOptions::lr");
  check_non_negative(weight_decay_, "ClassifierTrainOptions::weight_decay");
  check_in_range(translate_, 0.0, 1.0, "ClassifierTrainOptions::translate");
  check_non_negative(translate_pixels_, "ClassifierTrainOptions::translate_pixels");
}

double classifier_accuracy(ImageClassifier& model, const data::LabeledImages& d, int64_t batch_size) {
  check_positive(batch_size, "classifier_accuracy: batch_size");
  check_images(d, "classifier_accuracy: data", model->options());
  EvalGuard eval(model);
  torch::NoGradGuard no_grad;
  const c10::Device device = module_device(model);
  const int64_t n = d.images.size(0);
  MD_CHECK_VALUE(n > 0, "classifier_accuracy: data is empty");
  int64_t correct = 0;
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t count = std::min(batch_size, n - start);
    const at::Tensor x = d.images.narrow(0, start, count).to(device);
    const at::Tensor y = d.labels.narrow(0, start, count).to(device);
    correct += model->forward(x).argmax(1).eq(y).sum().item<int64_t>();
  }
  return static_cast<double>(correct) / static_cast<double>(n);
}

ClassifierReport train_classifier(ImageClassifier& model, const data::LabeledImages& train,
                                  const data::LabeledImages& test, const ClassifierTrainOptions& options) {
  options.validate();
  MD_CHECK_VALUE(!model.is_empty(), "train_classifier: the model is empty");
  check_images(train, "train_classifier: train", model->options());
  check_images(test, "train_classifier: test", model->options());
  const c10::Device device = options.device();
  model->to(device);

  auto loader_options = data::LoaderOptions(options.batch_size()).seed(options.seed()).drop_last(true);
  if (options.translate() > 0 && options.translate_pixels() > 0) {
    const data::Augment augment(data::AugmentOptions()
                                    .translate(options.translate())
                                    .translate_pixels(options.translate_pixels())
                                    .padding(data::AugmentPadding::Zeros));
    loader_options.transform([augment](data::Batch b, at::Generator& gen) {
      b.data = augment.apply(b.data, gen).images;
      return b;
    });
  }
  data::TensorLoader loader(train.images.to(device), train.labels.to(device), loader_options);

  torch::optim::AdamW optimizer(model->parameters(),
                                torch::optim::AdamWOptions(options.lr()).weight_decay(options.weight_decay()));
  const int64_t per_epoch = loader.batches_per_epoch();
  const int64_t total = per_epoch * options.epochs();

  ClassifierReport report;
  const auto t0 = std::chrono::steady_clock::now();
  int64_t step = 0;
  for (int64_t epoch = 1; epoch <= options.epochs(); ++epoch) {
    model->train();
    double loss_sum = 0.0;
    for (int64_t i = 0; i < per_epoch; ++i, ++step) {
      const double lr = options.lr() * 0.5 * (1.0 + std::cos(kPi * static_cast<double>(step) / static_cast<double>(total)));
      for (auto& group : optimizer.param_groups()) {
        static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
      }
      const data::Batch b = loader.next();
      const at::Tensor logits = model->forward(b.data);
      const at::Tensor loss = at::nll_loss(at::log_softmax(logits, 1), b.labels);
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();
      const double l = loss.item<double>();
      MD_CHECK(std::isfinite(l), "train_classifier: loss became ", l, " at epoch ", epoch, ", batch ", i);
      loss_sum += l;
    }
    report.final_train_loss = loss_sum / static_cast<double>(per_epoch);
    report.epoch_accuracy.push_back(classifier_accuracy(model, test));
    if (options.on_epoch()) options.on_epoch()(epoch, report.final_train_loss, report.epoch_accuracy.back());
  }
  model->eval();
  report.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  report.test_accuracy = report.epoch_accuracy.back();
  report.epochs = options.epochs();
  return report;
}

void save_classifier(const ImageClassifier& model, const std::string& path) {
  MD_CHECK_VALUE(!model.is_empty(), "save_classifier: the model is empty");
  const ImageClassifierOptions& o = model->options();
  StateFile f(kClassifierKind, kClassifierFormat);
  f.metadata["in_channels"] = std::to_string(o.in_channels());
  f.metadata["image_size"] = std::to_string(o.image_size());
  f.metadata["num_classes"] = std::to_string(o.num_classes());
  f.metadata["width"] = std::to_string(o.width());
  f.metadata["feature_dim"] = std::to_string(o.feature_dim());
  f.metadata["dropout"] = fmt::format("{}", o.dropout());  // shortest text that reads back exactly
  f.add_section("model", module_state(*model));
  f.save(path);
}

ImageClassifier load_classifier(const std::string& path, c10::Device device) {
  MD_CHECK(std::filesystem::is_regular_file(path), "load_classifier: no classifier file at '", path, "'");
  const std::string what = "load_classifier: '" + path + "' is not a readable classifier file";
  const StateFile f = StateFile::load(path, kClassifierKind, kClassifierFormat, what);
  double dropout = 0;
  {
    const auto it = f.metadata.find("dropout");
    MD_CHECK(it != f.metadata.end(), what, ": no 'dropout' metadata");
    const char* end = it->second.data() + it->second.size();
    const auto r = std::from_chars(it->second.data(), end, dropout);  // locale-independent
    MD_CHECK(!it->second.empty() && r.ec == std::errc() && r.ptr == end, what, ": 'dropout' is not a number: '",
             it->second, "'");
  }
  ImageClassifierOptions opts;
  try {
    opts = ImageClassifierOptions()
               .in_channels(f.metadata_int("in_channels"))
               .image_size(f.metadata_int("image_size"))
               .num_classes(f.metadata_int("num_classes"))
               .width(f.metadata_int("width"))
               .feature_dim(f.metadata_int("feature_dim"))
               .dropout(dropout);
    opts.validate();
  } catch (const c10::Error& e) {
    MD_CHECK(false, what, ": ", e.what_without_backtrace());
  }
  // The options decide what constructing the model allocates: its weights alone must fit in the
  // file's tensors, or a few bytes of metadata could ask for any amount of memory.
  const auto stored = static_cast<double>(f.values("model"));
  const double w = static_cast<double>(opts.width()), side = static_cast<double>(opts.image_size() / 4),
               fd = static_cast<double>(opts.feature_dim());
  const double weights = 9 * (static_cast<double>(opts.in_channels()) * w + w * w + 2 * w * w + 4 * w * w) +
                         2 * w * side * side * fd + fd * static_cast<double>(opts.num_classes());
  MD_CHECK(weights <= stored, what, ": its options ask for at least ", weights, " weights but the file holds ", stored,
           " values");
  ImageClassifier model(opts);
  load_module_state(*model, f.section("model"), what);
  model->to(device);
  model->eval();
  return model;
}

ImageClassifier load_or_train_fashion_classifier(const std::string& cache_file,
                                                 const ClassifierTrainOptions& train_options,
                                                 const std::string& data_dir,
                                                 const ImageClassifierOptions& model_options) {
  if (std::filesystem::exists(cache_file)) {
    ImageClassifier model = load_classifier(cache_file, train_options.device());
    MD_CHECK_VALUE(model->options() == model_options, "load_or_train_fashion_classifier: '", cache_file,
                   "' holds a classifier with other options than requested; delete it to retrain");
    return model;
  }
  const data::LabeledImages train = data::load_fashion_mnist(data_dir, "train");
  const data::LabeledImages test = data::load_fashion_mnist(data_dir, "test");
  manual_seed(train_options.seed());
  ImageClassifier model(model_options);
  train_classifier(model, train, test, train_options);
  const std::filesystem::path parent = std::filesystem::path(cache_file).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  save_classifier(model, cache_file);
  return model;
}

at::Tensor extract_features(ImageClassifier& model, const at::Tensor& images, int64_t batch_size) {
  check_positive(batch_size, "extract_features: batch_size");
  MD_CHECK_VALUE(!model.is_empty(), "extract_features: the model is empty");
  const ImageClassifierOptions& o = model->options();
  check_shape(images, "extract_features: images", {-1, o.in_channels(), o.image_size(), o.image_size()});
  check_floating(images, "extract_features: images");
  EvalGuard eval(model);
  torch::NoGradGuard no_grad;
  const c10::Device device = module_device(model);
  const int64_t n = images.size(0);
  std::vector<at::Tensor> parts;
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t count = std::min(batch_size, n - start);
    const at::Tensor x = images.narrow(0, start, count).to(device, at::kFloat);
    parts.push_back(model->features(x).to(c10::Device(c10::kCPU), at::kFloat));
  }
  if (parts.empty()) return at::empty({0, o.feature_dim()}, at::kFloat);
  return at::cat(parts);
}

double feature_fd(ImageClassifier& model, const at::Tensor& x, const at::Tensor& y, int64_t batch_size) {
  check_defined(x, "feature_fd: x");
  check_defined(y, "feature_fd: y");
  MD_CHECK_VALUE(x.dim() == 4 && x.size(0) >= 2, "feature_fd: x must be [N, C, H, W] with N >= 2, got shape ",
                 shape_string(x));
  MD_CHECK_VALUE(y.dim() == 4 && y.size(0) >= 2, "feature_fd: y must be [N, C, H, W] with N >= 2, got shape ",
                 shape_string(y));
  const at::Tensor fx = extract_features(model, x, batch_size).to(at::kDouble);
  const at::Tensor fy = extract_features(model, y, batch_size).to(at::kDouble);
  return frechet_distance(fx, fy);
}

}  // namespace metrics
}  // namespace manifold_diffusion
