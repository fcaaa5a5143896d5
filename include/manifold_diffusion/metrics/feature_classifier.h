#pragma once

/// \file
/// A small convolutional classifier for Fashion-MNIST-sized images, and the feature-FD: the
/// Fréchet distance between its penultimate-layer features of two image sets.
///
/// The feature-FD follows the recipe of the Fréchet Inception Distance (Heusel et al. 2017) with a
/// network trained on the data set at hand instead of Inception-v3 on ImageNet. Its values are
/// comparable only between runs that use the same classifier weights; they are not FID values.
/// Guide: docs/metrics.md.

#include <manifold_diffusion/core/namespace.h>
#include <manifold_diffusion/data/idx.h>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace manifold_diffusion {
namespace metrics {

/// Options of ImageClassifier. The defaults suit 28x28 grey images with 10 classes.
///
/// Example:
/// \code
///   auto opts = mdiff::metrics::ImageClassifierOptions().in_channels(1).width(16).feature_dim(128);
/// \endcode
struct ImageClassifierOptions {
  /// Channels of the input images.
  TORCH_ARG(int64_t, in_channels) = 1;
  /// Side of the square input images (at least 4).
  TORCH_ARG(int64_t, image_size) = 28;
  /// Number of classes (at least 2).
  TORCH_ARG(int64_t, num_classes) = 10;
  /// Channels of the first stage; the second stage has twice as many.
  TORCH_ARG(int64_t, width) = 16;
  /// Size of the penultimate layer: the features of features() and feature_fd().
  TORCH_ARG(int64_t, feature_dim) = 128;
  /// Dropout before the last layer (training only).
  TORCH_ARG(double, dropout) = 0.2;

 public:
  /// Fails with a message naming the bad option.
  void validate() const;
  bool operator==(const ImageClassifierOptions& other) const;
  bool operator!=(const ImageClassifierOptions& other) const { return !(*this == other); }
};

/// A small VGG-style network: two stages of (3x3 convolution, BatchNorm, ReLU) x 2 followed by
/// 2x2 max pooling, with `width` and 2 * `width` channels; then a linear layer to `feature_dim`
/// features with BatchNorm and ReLU (the penultimate layer), dropout, and a linear layer to the
/// class logits.
///
/// Example:
/// \code
///   mdiff::metrics::ImageClassifier net(mdiff::metrics::ImageClassifierOptions());
///   at::Tensor logits = net(images);             // images [N, 1, 28, 28] -> [N, 10]
///   at::Tensor feats = net->features(images);    // [N, 128]
/// \endcode
class ImageClassifierImpl : public torch::nn::Cloneable<ImageClassifierImpl> {
 public:
  explicit ImageClassifierImpl(ImageClassifierOptions options = {});

  void reset() override;
  /// Shows every option.
  void pretty_print(std::ostream& stream) const override;

  /// x: floating [N, in_channels, image_size, image_size]. Returns the logits [N, num_classes].
  at::Tensor forward(const at::Tensor& x);
  /// The penultimate layer, [N, feature_dim] (after its ReLU), for the same input as forward().
  at::Tensor features(const at::Tensor& x);

  const ImageClassifierOptions& options() const { return options_; }

 private:
  void check_input(const at::Tensor& x) const;

  ImageClassifierOptions options_;
  torch::nn::Sequential trunk_{nullptr};
  torch::nn::Linear fc_{nullptr};
  torch::nn::BatchNorm1d fc_norm_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::Linear head_{nullptr};
};
TORCH_MODULE(ImageClassifier);

/// Options of train_classifier().
///
/// Example:
/// \code
///   auto opts = mdiff::metrics::ClassifierTrainOptions().epochs(3).batch_size(128).lr(2e-3).seed(1);
/// \endcode
struct ClassifierTrainOptions {
  /// Passes over the training set.
  TORCH_ARG(int64_t, epochs) = 2;
  /// Images per optimiser step.
  TORCH_ARG(int64_t, batch_size) = 128;
  /// Peak learning rate of AdamW; it decays to 0 along a half cosine over the run.
  TORCH_ARG(double, lr) = 2e-3;
  /// AdamW's decoupled weight decay.
  TORCH_ARG(double, weight_decay) = 5e-4;
  /// Probability of shifting a training image by up to translate_pixels (zero padding); 0: off.
  TORCH_ARG(double, translate) = 0.0;
  /// Largest shift of the translation augmentation, in pixels.
  TORCH_ARG(int64_t, translate_pixels) = 2;
  /// Seeds the batch order and the augmentation (load_or_train_fashion_classifier() also seeds the
  /// initial weights with it; otherwise they come from the model's construction).
  TORCH_ARG(uint64_t, seed) = 0;
  /// Where to train; the data are moved there.
  TORCH_ARG(c10::Device, device) = c10::Device(c10::kCPU);
  /// Called after every epoch with (epoch (1-based), mean training loss, test accuracy).
  TORCH_ARG(std::function<void(int64_t, double, double)>, on_epoch) = nullptr;

 public:
  /// Fails with a message naming the bad option.
  void validate() const;
};

/// What train_classifier() measured.
struct ClassifierReport {
  /// Fraction of the test images classified correctly after the last epoch.
  double test_accuracy = 0.0;
  /// Test accuracy after each epoch.
  std::vector<double> epoch_accuracy;
  /// Mean training loss of the last epoch.
  double final_train_loss = 0.0;
  /// Wall-clock seconds of training (evaluation included).
  double train_seconds = 0.0;
  /// Epochs run.
  int64_t epochs = 0;
};

/// Trains `model` on `train` with cross-entropy, AdamW and a cosine learning-rate decay, and
/// evaluates it on `test` after every epoch. Leaves the model in eval mode on `options.device()`.
/// LibTorch's thread count is left as it is. The batch order and the augmentation draw from
/// generators seeded with `options.seed()`; dropout draws from LibTorch's default generator
/// (seed it with mdiff::manual_seed for a reproducible run).
///
/// Example:
/// \code
///   auto train = mdiff::data::load_fashion_mnist(mdiff::data::kFashionMnistDir, "train");
///   auto test = mdiff::data::load_fashion_mnist(mdiff::data::kFashionMnistDir, "test");
///   mdiff::metrics::ImageClassifier net;
///   auto report = mdiff::metrics::train_classifier(net, train, test, mdiff::metrics::ClassifierTrainOptions());
///   fmt::print("test accuracy {:.4f} in {:.0f} s\n", report.test_accuracy, report.train_seconds);
/// \endcode
ClassifierReport train_classifier(ImageClassifier& model, const data::LabeledImages& train,
                                  const data::LabeledImages& test, const ClassifierTrainOptions& options = {});

/// Fraction of `data` that `model` classifies correctly (eval mode, no gradients, batches of
/// `batch_size`, on the model's device). Restores the model's training mode afterwards.
double classifier_accuracy(ImageClassifier& model, const data::LabeledImages& data, int64_t batch_size = 500);

/// Writes the options and weights of `model` to `path`: to a temporary file next to it first, then
/// renamed over `path`, so a reader never sees a half-written file.
///
/// Example:
/// \code
///   mdiff::metrics::save_classifier(net, "out/classifier.safetensors");
///   mdiff::metrics::ImageClassifier back = mdiff::metrics::load_classifier("out/classifier.safetensors");
/// \endcode
void save_classifier(const ImageClassifier& model, const std::string& path);

/// Reads a classifier written by save_classifier() onto `device` and puts it in eval mode. A
/// missing, truncated or foreign file is an error naming `path`.
ImageClassifier load_classifier(const std::string& path, c10::Device device = c10::Device(c10::kCPU));

/// Loads the classifier cached in `cache_file` when it exists; otherwise trains one on
/// Fashion-MNIST from `data_dir` (train split; test split for the reported accuracy), saves it to
/// `cache_file` (creating its folder) and returns it. A cached file that cannot be read, or whose
/// options differ from `model_options`, is an error (delete it to retrain).
///
/// Example:
/// \code
///   auto net = mdiff::metrics::load_or_train_fashion_classifier("cache/fashion_classifier.safetensors");
///   double d = mdiff::metrics::feature_fd(net, real_images, generated_images);
/// \endcode
ImageClassifier load_or_train_fashion_classifier(const std::string& cache_file,
                                                 const ClassifierTrainOptions& train_options = {},
                                                 const std::string& data_dir = data::kFashionMnistDir,
                                                 const ImageClassifierOptions& model_options = {});

/// Penultimate-layer features of `images` ([N, C, H, W], any device), computed in eval mode without
/// gradients in batches of `batch_size` on the model's device. Returns float32 [N, feature_dim] on
/// the CPU and restores the model's training mode.
at::Tensor extract_features(ImageClassifier& model, const at::Tensor& images, int64_t batch_size = 500);

/// Feature-FD: the Fréchet distance (frechet_distance()) between the Gaussians fitted to the
/// classifier features of `x` and of `y` (each [N, C, H, W] with N >= 2). Lower means closer; 0 for
/// identical sets. Values depend on the classifier's weights and are not FID values.
///
/// Example:
/// \code
///   auto net = mdiff::metrics::load_or_train_fashion_classifier("cache/fashion_classifier.safetensors");
///   double d = mdiff::metrics::feature_fd(net, test_images, samples);   // both in [-1, 1]
/// \endcode
double feature_fd(ImageClassifier& model, const at::Tensor& x, const at::Tensor& y, int64_t batch_size = 500);

}  // namespace metrics
}  // namespace manifold_diffusion
