#pragma once

/// \file
/// PNG files: a validating decoder, an encoder, float-to-uint8 conversion and image grids.
///
/// Decoded images are uint8 tensors [C, H, W] with C = 1 (gray), 2 (gray + alpha), 3 (RGB) or
/// 4 (RGBA). The decoder treats its input as hostile: every chunk length is checked against the
/// bytes that remain, every CRC is verified, the header is validated, the pixel count is bounded
/// before anything is allocated, and the decompressed data must have exactly the size the header
/// implies. Guide: docs/io.md.

#include <manifold_diffusion/core/namespace.h>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <cstdint>
#include <string>
#include <vector>

namespace manifold_diffusion {
namespace io {

/// Limits applied while decoding a PNG.
///
/// Example:
/// \code
///   at::Tensor img = mdiff::io::read_png("photo.png", mdiff::io::PngReadOptions().max_pixels(4096 * 4096));
/// \endcode
struct PngReadOptions {
  /// Largest accepted width * height; checked before any pixel buffer is allocated.
  TORCH_ARG(int64_t, max_pixels) = int64_t{1} << 28;
};

/// Decodes the PNG held in `bytes` into a uint8 tensor [C, H, W]. Colour types 0 (gray, C = 1),
/// 2 (RGB, C = 3), 3 (palette: RGB, or RGBA when a tRNS chunk is present), 4 (gray + alpha,
/// C = 2) and 6 (RGBA, C = 4); bit depths 1, 2, 4, 8 and 16 (gray below 8 bits is scaled to
/// 0..255, 16 bits keep their high byte); all five row filters; Adam7 interlacing. Ancillary
/// chunks other than tRNS are skipped (so is tRNS for colour types 0 and 2); gamma and colour
/// profiles are not applied. Fails with a c10::Error saying what is wrong on a bad signature, a
/// chunk running past the end, a CRC mismatch, an invalid IHDR (zero size, a depth not allowed
/// for the colour type, unknown compression/filter/interlace method), width * height above
/// `options.max_pixels()`, a missing IHDR, PLTE (palette images), IDAT or IEND, an unknown
/// critical chunk, corrupt zlib data, decompressed data shorter or longer than the image needs,
/// an unknown row filter, and a palette index past the palette.
///
/// Example:
/// \code
///   std::vector<uint8_t> bytes = mdiff::io::encode_png(at::zeros({3, 8, 8}, at::kByte));
///   at::Tensor img = mdiff::io::decode_png(bytes);  // uint8 [3, 8, 8]
/// \endcode
at::Tensor decode_png(const std::vector<uint8_t>& bytes, const PngReadOptions& options = {});

/// Reads and decodes the PNG file at `path` (see decode_png); every error message names the file.
///
/// Example:
/// \code
///   at::Tensor img = mdiff::io::read_png("samples/0001.png");  // uint8 [C, H, W]
/// \endcode
at::Tensor read_png(const std::string& path, const PngReadOptions& options = {});

/// Encodes a uint8 image [C, H, W] (C in 1..4: gray, gray + alpha, RGB, RGBA) or [H, W] (gray) as an
/// 8-bit, non-interlaced PNG. Each row gets the filter that minimises the sum of absolute residuals.
///
/// Example:
/// \code
///   std::vector<uint8_t> bytes = mdiff::io::encode_png(mdiff::io::to_uint8_image(x0[0]));
/// \endcode
std::vector<uint8_t> encode_png(const at::Tensor& image);

/// Writes `image` (as encode_png accepts it) to `path`. The file is written next to its destination
/// under a temporary name and renamed into place, so a reader never sees a partial file. Fails,
/// naming the path, when the folder does not exist or cannot be written.
///
/// Example:
/// \code
///   mdiff::io::write_png("out/sample.png", mdiff::io::to_uint8_image(sample));  // sample float [3, 32, 32] in [-1, 1]
/// \endcode
void write_png(const std::string& path, const at::Tensor& image);

/// Maps a floating image from [lo, hi] to uint8 0..255: round((x - lo) / (hi - lo) * 255), clamped
/// to 0..255; NaN becomes 0. Any shape; the result is on the CPU. A uint8 input is returned as is.
///
/// Example:
/// \code
///   at::Tensor u8 = mdiff::io::to_uint8_image(samples);           // samples in [-1, 1]
///   at::Tensor u8b = mdiff::io::to_uint8_image(probs, 0.0, 1.0);  // values in [0, 1]
/// \endcode
at::Tensor to_uint8_image(const at::Tensor& x, double lo = -1.0, double hi = 1.0);

/// How make_grid lays out a batch of images.
///
/// Example:
/// \code
///   auto opts = mdiff::io::GridOptions().nrow(4).padding(1).pad_value(255);
/// \endcode
struct GridOptions {
  /// Images per row of the grid.
  TORCH_ARG(int64_t, nrow) = 8;
  /// Pixels between images and around the border.
  TORCH_ARG(int64_t, padding) = 2;
  /// uint8 value (0..255) of the padding pixels, in every channel.
  TORCH_ARG(int64_t, pad_value) = 0;
  /// Value of floating inputs that maps to 0 (see to_uint8_image).
  TORCH_ARG(double, lo) = -1.0;
  /// Value of floating inputs that maps to 255.
  TORCH_ARG(double, hi) = 1.0;
};

/// Tiles `images` [N, C, H, W] (C in 1..4; floating, mapped with options.lo()/hi(), or uint8) into
/// one uint8 image [C, rows * (H + p) + p, cols * (W + p) + p] with cols = min(nrow, N),
/// rows = ceil(N / cols), p = padding; images fill the grid row by row. A [C, H, W] input is one image.
///
/// Example:
/// \code
///   at::Tensor grid = mdiff::io::make_grid(samples, mdiff::io::GridOptions().nrow(8));  // samples [64, 1, 28, 28]
///   mdiff::io::write_png("grid.png", grid);
/// \endcode
at::Tensor make_grid(const at::Tensor& images, const GridOptions& options = {});

/// make_grid, then write_png.
///
/// Example:
/// \code
///   mdiff::io::save_image_grid("samples.png", sampler.sample(...), mdiff::io::GridOptions().nrow(8));
/// \endcode
void save_image_grid(const std::string& path, const at::Tensor& images, const GridOptions& options = {});

}  // namespace io
}  // namespace manifold_diffusion
