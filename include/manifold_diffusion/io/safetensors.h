#pragma once
/// \file
/// safetensors files (https://github.com/huggingface/safetensors): named tensors and a string map of
/// metadata, read with every offset and size checked before anything is allocated, written
/// atomically.
///
/// Format: an 8-byte little-endian header length N, N bytes of JSON
/// `{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ..., "__metadata__": {...}}`,
/// then the tensor bytes (little-endian, row-major), which the offsets must cover exactly.
///
/// Example:
/// \code
///   namespace mio = mdiff::io;
///   mio::save_safetensors("weights.safetensors", {{"w", at::randn({3, 4})}, {"b", at::zeros({4})}},
///                         {{"format", "pt"}});
///   mio::Safetensors st = mio::load_safetensors("weights.safetensors");
///   at::Tensor w = st.get("w");                  // float32 [3, 4]
///   std::string format = st.metadata.at("format");
/// \endcode

#include <manifold_diffusion/core/namespace.h>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace torch {
namespace nn {
class Module;
}  // namespace nn
}  // namespace torch

namespace manifold_diffusion {

class EMA;

namespace io {

/// Named tensors, in order.
using TensorList = std::vector<std::pair<std::string, at::Tensor>>;

/// The contents of a safetensors file: CPU tensors in the order of their data in the file (the
/// order save_safetensors() was given), and the `__metadata__` map (empty when absent).
///
/// Example:
/// \code
///   mdiff::io::Safetensors st = mdiff::io::load_safetensors("model.safetensors");
///   for (const auto& [name, t] : st.tensors) fmt::print("{} {}\n", name, t.sizes());
///   if (st.contains("ema.weight")) at::Tensor w = st.get("ema.weight");
/// \endcode
struct Safetensors {
  TensorList tensors;
  std::map<std::string, std::string> metadata;

  /// Whether a tensor of this name is present.
  bool contains(const std::string& name) const;
  /// The tensor of this name; a missing name is an error that names it.
  const at::Tensor& get(const std::string& name) const;
};

/// Limits that reading applies before allocating.
///
/// Example:
/// \code
///   auto st = mdiff::io::load_safetensors("x.safetensors", mdiff::io::SafetensorsReadOptions().max_header_bytes(1 << 20));
/// \endcode
struct SafetensorsReadOptions {
  /// Largest accepted JSON header, in bytes (the reference implementation's limit, 100 MB).
  TORCH_ARG(int64_t, max_header_bytes) = 100000000;
};

/// Parses safetensors bytes. Dtypes F32, F16, BF16, F64, I64, I32, I16, I8, U8 and BOOL are read
/// (bit-exact; a BOOL byte other than 0 or 1 is an error); any other dtype is an error naming the
/// tensor and the dtype. Checked, in order: the 8-byte length against
/// the buffer and max_header_bytes; the header is a well-formed JSON object without duplicate keys;
/// every entry is an object with exactly `dtype`, `shape` (non-negative integers) and
/// `data_offsets` ([begin, end], begin <= end); `__metadata__` maps strings to strings;
/// end - begin == numel * itemsize (overflow-checked); sorted by begin, the entries cover the data
/// bytes exactly (no gap, no overlap, nothing left over). Messages start with `decode_safetensors:`.
///
/// Example:
/// \code
///   std::vector<uint8_t> bytes = mdiff::io::encode_safetensors({{"x", at::ones({2})}});
///   mdiff::io::Safetensors st = mdiff::io::decode_safetensors(bytes);
/// \endcode
Safetensors decode_safetensors(const std::vector<uint8_t>& bytes, const SafetensorsReadOptions& options = {});
/// As above, over `size` bytes at `data`.
Safetensors decode_safetensors(const uint8_t* data, size_t size, const SafetensorsReadOptions& options = {});

/// Reads a safetensors file with the checks of decode_safetensors(); the header is checked before
/// the tensor data is read, and each tensor is read straight into its own storage. Every message
/// names the file.
///
/// Example:
/// \code
///   at::Tensor w = mdiff::io::load_safetensors("model.safetensors").get("conv_in.weight");
/// \endcode
Safetensors load_safetensors(const std::string& path, const SafetensorsReadOptions& options = {});

/// The safetensors bytes of `tensors` (any device and layout; written as contiguous CPU data in the
/// given order) and `metadata`. Names must be unique, non-empty and not `__metadata__`; dtypes F32,
/// F16, BF16, F64, I64, I32, I16, I8, U8 or BOOL (others are an error naming the tensor). The header is padded with spaces
/// to a multiple of 8 bytes, as the Python package does.
///
/// Example:
/// \code
///   std::vector<uint8_t> bytes = mdiff::io::encode_safetensors({{"x", at::arange(4)}}, {{"step", "10"}});
/// \endcode
std::vector<uint8_t> encode_safetensors(const TensorList& tensors, const std::map<std::string, std::string>& metadata = {});

/// encode_safetensors(), written atomically (a temporary file renamed into place: readers see the
/// old or the complete new file).
///
/// Example:
/// \code
///   mdiff::io::save_safetensors("out/x.safetensors", {{"x", x}}, {{"format", "pt"}});
/// \endcode
void save_safetensors(const std::string& path, const TensorList& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// Saves the parameters and buffers of `module` by their names (as named_parameters() and
/// named_buffers() give them), with metadata `format: pt` added unless given.
///
/// Example:
/// \code
///   mdiff::UNet net(mdiff::UNetOptions(1, 1));
///   mdiff::io::save_module_safetensors("unet.safetensors", *net);
///   mdiff::io::load_module_safetensors("unet.safetensors", *net);
/// \endcode
void save_module_safetensors(const std::string& path, const torch::nn::Module& module,
                             std::map<std::string, std::string> metadata = {});

/// Copies the tensors of a safetensors file into the parameters and buffers of `module` by name
/// (converted to their dtype and device); a missing or extra name, or a shape mismatch, is an error
/// naming it and the file. Returns the file's metadata.
std::map<std::string, std::string> load_module_safetensors(const std::string& path, torch::nn::Module& module);

/// Saves the EMA's shadow weights under the module's own names, so the file loads into the module
/// with load_module_safetensors() (the averaged weights, for sampling).
///
/// Example:
/// \code
///   mdiff::EMA ema(*net);
///   mdiff::io::save_ema_safetensors("unet-ema.safetensors", ema);
///   mdiff::io::load_module_safetensors("unet-ema.safetensors", *net);   // net now holds the EMA weights
/// \endcode
void save_ema_safetensors(const std::string& path, const EMA& ema, std::map<std::string, std::string> metadata = {});

}  // namespace io
}  // namespace manifold_diffusion
