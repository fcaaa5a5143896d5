#pragma once

/// \file
/// Point clouds from CSV and `.npy` files. Readers treat their input as hostile: every size is
/// checked against the file before it is trusted, and errors name the file and, for CSV, the line
/// and column. Guide: docs/data.md.

#include <manifold_diffusion/core/namespace.h>

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>
#include <torch/arg.h>

#include <cstdint>
#include <string>
#include <vector>

namespace manifold_diffusion {
namespace data {

/// Options of read_csv_points().
///
/// Example:
/// \code
///   auto opts = mdiff::data::CsvOptions().dtype(at::kDouble).delimiter(';');
///   at::Tensor pts = mdiff::data::read_csv_points("cloud.csv", opts);
/// \endcode
struct CsvOptions {
  /// dtype of the result (float32 or float64); values are parsed as double first.
  TORCH_ARG(c10::ScalarType, dtype) = c10::kFloat;
  /// Field separator.
  TORCH_ARG(char, delimiter) = ',';
};

/// Reads a numeric CSV file into an [N, C] tensor. The first line may be a header (it is skipped
/// when any of its fields is not a number); blank lines are skipped; every other line must hold
/// exactly C finite numbers, C being the count of the first data line. Errors name the file, the
/// 1-based line and column, and the offending text.
///
/// Example:
/// \code
///   // x,y,z
///   // 0.1,0.2,0.3
///   // 1.0,2.0,3.0
///   at::Tensor pts = mdiff::data::read_csv_points("cloud.csv");   // float32 [2, 3]
/// \endcode
at::Tensor read_csv_points(const std::string& path, const CsvOptions& options = {});

/// read_csv_points() on text in memory; errors name the source `<memory>`.
///
/// Example:
/// \code
///   at::Tensor pts = mdiff::data::parse_csv_points("x,y\n0.5,1\n2,3\n");   // float32 [2, 2]
/// \endcode
at::Tensor parse_csv_points(const std::string& text, const CsvOptions& options = {});

/// Reads a `.npy` file (format version 1.0 or 2.0) holding little-endian float32 ('<f4') or
/// float64 ('<f8') data in C order. Refuses big-endian, Fortran-order, object and other dtypes,
/// headers longer than 1 MiB or otherwise malformed, more than 32 dimensions, and data whose length
/// differs from what the shape needs.
///
/// Example:
/// \code
///   // numpy: np.save("cloud.npy", pts.astype(np.float32))
///   at::Tensor pts = mdiff::data::read_npy("cloud.npy");   // float32, numpy's shape
/// \endcode
at::Tensor read_npy(const std::string& path);

/// read_npy() on bytes in memory, with the same checks (the data is validated against the shape
/// before anything is allocated); errors name the source `<memory>`.
///
/// Example:
/// \code
///   std::vector<uint8_t> bytes = mdiff::read_file_bytes("cloud.npy");
///   at::Tensor pts = mdiff::data::decode_npy(bytes);
/// \endcode
at::Tensor decode_npy(const std::vector<uint8_t>& bytes);
/// decode_npy() over a raw buffer (`data` may be null only when `size` is 0).
at::Tensor decode_npy(const uint8_t* data, size_t size);

/// Writes a float32 or float64 tensor (any device, any layout: it is copied to contiguous CPU
/// memory) as a `.npy` file in C order, version 1.0 (2.0 when the header needs it).
///
/// Example:
/// \code
///   mdiff::data::write_npy("samples.npy", samples);   // np.load("samples.npy") in Python
/// \endcode
void write_npy(const std::string& path, const at::Tensor& tensor);

}  // namespace data
}  // namespace manifold_diffusion
