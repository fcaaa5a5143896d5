#pragma once

/// \file
/// IDX files (the MNIST format) and the Fashion-MNIST data set.
///
/// An IDX file is four magic bytes `00 00 <type> <ndim>`, then `ndim` big-endian uint32 sizes, then
/// the elements in big-endian byte order, row-major. Files may be gzip-compressed (recognised by
/// the `1f 8b` magic). Every header field is validated, and the element count is bounded, before
/// any data buffer is allocated, so hostile files fail with a message rather than a crash or a huge
/// allocation. Guide: docs/data.md.

#include <manifold_diffusion/core/namespace.h>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <cstdint>
#include <string>
#include <vector>

namespace manifold_diffusion {
namespace data {

/// Limits applied while reading an IDX file.
///
/// Example:
/// \code
///   at::Tensor t = mdiff::data::read_idx("labels.idx1", mdiff::data::IdxOptions().max_elements(1 << 20));
/// \endcode
struct IdxOptions {
  /// Largest accepted number of elements (the product of the sizes); checked before allocating.
  TORCH_ARG(int64_t, max_elements) = int64_t{1} << 31;
};

/// Reads an IDX file, plain or gzip-compressed, into a CPU tensor with the file's shape and dtype:
/// type 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64. Fails, naming
/// `path`, on a missing file, a bad magic, an unknown type code, `ndim` outside 1..8, an element
/// count above `options.max_elements()`, and data shorter or longer than the header says.
///
/// Example:
/// \code
///   at::Tensor images = mdiff::data::read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz");
///   // uint8 [10000, 28, 28]
/// \endcode
at::Tensor read_idx(const std::string& path, const IdxOptions& options = {});

/// read_idx() on bytes in memory, plain or gzip-compressed (concatenated gzip members are read in
/// turn). The checks are the same; errors name the source `<memory>`. The data tensor is allocated
/// only after the header's byte count is known to be present, so hostile input costs at most about
/// twice its own (decompressed) size: lower `options.max_elements()` to bound what a gzip stream may
/// expand to.
///
/// Example:
/// \code
///   std::vector<uint8_t> bytes = download();   // any source of an IDX file
///   at::Tensor t = mdiff::data::decode_idx(bytes, mdiff::data::IdxOptions().max_elements(1 << 24));
/// \endcode
at::Tensor decode_idx(const std::vector<uint8_t>& bytes, const IdxOptions& options = {});
/// decode_idx() over a raw buffer (`data` may be null only when `size` is 0).
at::Tensor decode_idx(const uint8_t* data, size_t size, const IdxOptions& options = {});

/// Images with one integer label each.
///
/// Example:
/// \code
///   mdiff::data::LabeledImages test = mdiff::data::load_fashion_mnist(mdiff::data::kFashionMnistDir, "test");
///   at::Tensor batch = test.images.index_select(0, idx);
/// \endcode
struct LabeledImages {
  /// float32 [N, C, H, W].
  at::Tensor images;
  /// int64 [N].
  at::Tensor labels;
  /// N.
  int64_t size() const;
};

/// Where Debian's `dataset-fashion-mnist` package installs the files.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

/// Loads Fashion-MNIST from `dir` (files `{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`).
/// `split` is "train" (60000 images) or "test" (10000). Images are float32 [N, 1, 28, 28] scaled
/// from 0..255 to [-1, 1]; labels are int64 [N] in 0..9. A missing file is an error naming its path.
///
/// Example:
/// \code
///   auto train = mdiff::data::load_fashion_mnist("/usr/share/datasets/fashion-mnist", "train");
///   auto parts = mdiff::data::validation_split(train, 0.1, /*seed=*/0);  // 54000 / 6000
/// \endcode
LabeledImages load_fashion_mnist(const std::string& dir, const std::string& split);

/// The ten Fashion-MNIST class names in label order ("t-shirt/top", "trouser", ..., "ankle boot").
///
/// Example:
/// \code
///   const auto& names = mdiff::data::fashion_mnist_classes();   // names[9] == "ankle boot"
/// \endcode
const std::vector<std::string>& fashion_mnist_classes();

/// The label of a class name in `classes`, ignoring case and treating '-', '_' and ' ' alike
/// ("Ankle_Boot" finds "ankle boot"; "tshirt" finds "t-shirt/top" by prefix when unique). An
/// unknown name is an error that lists the known ones.
///
/// Example:
/// \code
///   int64_t boot = mdiff::data::class_index(mdiff::data::fashion_mnist_classes(), "ankle boot");  // 9
/// \endcode
int64_t class_index(const std::vector<std::string>& classes, const std::string& name);

/// A data set cut in two.
///
/// Example:
/// \code
///   mdiff::data::TrainValidation parts = mdiff::data::validation_split(train, 0.1, 0);
///   train_on(parts.train); evaluate_on(parts.validation);
/// \endcode
struct TrainValidation {
  LabeledImages train;
  LabeledImages validation;
};

/// Splits `data` into a validation part of round(fraction * N) items, chosen by a permutation
/// drawn from `seed` (the same on every platform and run), and a training part of the rest. Both
/// parts keep the original order of their items. `fraction` must be in [0, 1].
///
/// Example:
/// \code
///   auto parts = mdiff::data::validation_split(train, 0.1, /*seed=*/7);
///   // parts.validation.size() == 6000 for the 60000-image training split
/// \endcode
TrainValidation validation_split(const LabeledImages& data, double fraction, uint64_t seed);

}  // namespace data
}  // namespace manifold_diffusion
