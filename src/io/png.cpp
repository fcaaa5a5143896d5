#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/io/png.h>

#include "io/file_util.h"

#include <ATen/ATen.h>

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace manifold_diffusion {
namespace io {
namespace {

constexpr uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
constexpr uint32_t kMaxChunkLength = 0x7fffffffu;  // the PNG limit: 2^31 - 1
constexpr size_t kZlibStep = size_t{1} << 30;      // zlib counts in 32-bit unsigned ints

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>((v >> s) & 0xff));
}

std::string chunk_name(const uint8_t* p) {
  std::string s;
  for (int i = 0; i < 4; ++i) {
    const bool letter = (p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' && p[i] <= 'z');
    if (letter) {
      s.push_back(static_cast<char>(p[i]));
    } else {
      static const char* hex = "0123456789ABCDEF";
      s += "\\x";
      s.push_back(hex[p[i] >> 4]);
      s.push_back(hex[p[i] & 15]);
    }
  }
  return s;
}

struct Header {
  int64_t width = 0;
  int64_t height = 0;
  int depth = 0;
  int color = 0;
  int interlace = 0;
};

int samples_per_pixel(int color) {
  switch (color) {
    case 0:
      return 1;
    case 2:
      return 3;
    case 3:
      return 1;
    case 4:
      return 2;
    case 6:
      return 4;
    default:
      return 0;
  }
}

bool depth_allowed(int color, int depth) {
  switch (color) {
    case 0:
      return depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16;
    case 3:
      return depth == 1 || depth == 2 || depth == 4 || depth == 8;
    case 2:
    case 4:
    case 6:
      return depth == 8 || depth == 16;
    default:
      return false;
  }
}

// A pass of the image: every pixel (x0 + i * dx, y0 + j * dy). The plain image is one pass.
struct Pass {
  int64_t x0, y0, dx, dy;
};
constexpr std::array<Pass, 7> kAdam7 = {
    {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4}, {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}}};

int64_t pass_extent(int64_t size, int64_t start, int64_t step) {
  return size > start ? (size - start + step - 1) / step : 0;
}

int64_t row_bytes(int64_t width, int bits_per_pixel) { return (width * bits_per_pixel + 7) / 8; }

// Inflates `in` into exactly `out.size()` bytes; any other outcome is an error naming `where`.
void inflate_exact(const std::vector<uint8_t>& in, std::vector<uint8_t>& out, const std::string& where) {
  z_stream zs;
  std::memset(&zs, 0, sizeof(zs));
  MD_CHECK(inflateInit(&zs) == Z_OK, where, ": cannot initialise zlib");
  struct Guard {
    z_stream* z;
    ~Guard() { inflateEnd(z); }
  } guard{&zs};
  size_t in_pos = 0;
  size_t out_pos = 0;
  int ret = Z_OK;
  for (;;) {
    if (zs.avail_in == 0 && in_pos < in.size()) {
      const size_t n = std::min(kZlibStep, in.size() - in_pos);
      zs.next_in = const_cast<Bytef*>(in.data() + in_pos);
      zs.avail_in = static_cast<uInt>(n);
      in_pos += n;
    }
    if (zs.avail_out == 0 && out_pos < out.size()) {
      const size_t n = std::min(kZlibStep, out.size() - out_pos);
      zs.next_out = out.data() + out_pos;
      zs.avail_out = static_cast<uInt>(n);
      out_pos += n;
    }
    const uInt before_in = zs.avail_in;
    const uInt before_out = zs.avail_out;
    if (before_out == 0) break;  // the image is complete
    ret = inflate(&zs, Z_NO_FLUSH);
    if (ret == Z_STREAM_END) break;
    MD_CHECK_VALUE(ret == Z_OK || ret == Z_BUF_ERROR, where,
                   ": corrupt zlib data in IDAT: ", zs.msg != nullptr ? zs.msg : "error code " + std::to_string(ret));
    const bool progress = zs.avail_in != before_in || zs.avail_out != before_out;
    if (!progress) break;  // input exhausted: the size check below reports it
  }
  const size_t produced = out_pos - zs.avail_out;
  MD_CHECK_VALUE(produced == out.size(), where, ": image data too short: the header needs ", out.size(),
                 " decompressed bytes, IDAT holds ", produced);
  if (ret != Z_STREAM_END) {
    // The buffer is full: the stream must end here, without another byte.
    uint8_t extra = 0;
    zs.next_out = &extra;
    zs.avail_out = 1;
    for (;;) {
      if (zs.avail_in == 0 && in_pos < in.size()) {
        const size_t n = std::min(kZlibStep, in.size() - in_pos);
        zs.next_in = const_cast<Bytef*>(in.data() + in_pos);
        zs.avail_in = static_cast<uInt>(n);
        in_pos += n;
      }
      const uInt before_in = zs.avail_in;
      ret = inflate(&zs, Z_NO_FLUSH);
      MD_CHECK_VALUE(zs.avail_out == 1, where, ": image data too long: IDAT decompresses to more than the ", out.size(),
                     " bytes the header needs");
      if (ret == Z_STREAM_END) break;
      MD_CHECK_VALUE(ret == Z_OK || ret == Z_BUF_ERROR, where,
                     ": corrupt zlib data in IDAT: ", zs.msg != nullptr ? zs.msg : "error code " + std::to_string(ret));
      MD_CHECK_VALUE(zs.avail_in != before_in || (zs.avail_in == 0 && in_pos < in.size()), where,
                     ": the zlib stream in IDAT is truncated (no end-of-stream marker)");
    }
  }
}

int paeth(int a, int b, int c) {
  const int p = a + b - c;
  const int pa = std::abs(p - a);
  const int pb = std::abs(p - b);
  const int pc = std::abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  if (pb <= pc) return b;
  return c;
}

// Undoes the row filters of one pass in place; `data` points at its first filter byte.
void unfilter(uint8_t* data, int64_t rows, int64_t stride, int64_t bpp, const std::string& where) {
  const uint8_t* prev = nullptr;
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* row = data + r * (stride + 1);
    const int filter = row[0];
    uint8_t* cur = row + 1;
    switch (filter) {
      case 0:
        break;
      case 1:
        for (int64_t i = bpp; i < stride; ++i) cur[i] = static_cast<uint8_t>(cur[i] + cur[i - bpp]);
        break;
      case 2:
        if (prev != nullptr) {
          for (int64_t i = 0; i < stride; ++i) cur[i] = static_cast<uint8_t>(cur[i] + prev[i]);
        }
        break;
      case 3:
        for (int64_t i = 0; i < stride; ++i) {
          const int left = i >= bpp ? cur[i - bpp] : 0;
          const int up = prev != nullptr ? prev[i] : 0;
          cur[i] = static_cast<uint8_t>(cur[i] + ((left + up) >> 1));
        }
        break;
      case 4:
        for (int64_t i = 0; i < stride; ++i) {
          const int left = i >= bpp ? cur[i - bpp] : 0;
          const int up = prev != nullptr ? prev[i] : 0;
          const int up_left = (prev != nullptr && i >= bpp) ? prev[i - bpp] : 0;
          cur[i] = static_cast<uint8_t>(cur[i] + paeth(left, up, up_left));
        }
        break;
      default:
        MD_CHECK_VALUE(false, where, ": unknown row filter type ", filter, " (expected 0..4)");
    }
    prev = cur;
  }
}

// The sample of channel `s` of pixel `x` in an unfiltered row, scaled to 0..255 (palette indices unscaled).
inline int sample_at(const uint8_t* row, int64_t x, int s, int spp, int depth, bool scale) {
  if (depth == 8) return row[x * spp + s];
  if (depth == 16) return row[(x * spp + s) * 2];
  const int64_t bit = x * depth;  // depth < 8 only for one-sample pixels
  const int v = (row[bit >> 3] >> (8 - depth - (bit & 7))) & ((1 << depth) - 1);
  return scale ? v * 255 / ((1 << depth) - 1) : v;
}

at::Tensor decode(const std::vector<uint8_t>& bytes, const PngReadOptions& options, const std::string& where) {
  check_positive(options.max_pixels(), "PngReadOptions::max_pixels");
  const size_t n = bytes.size();
  MD_CHECK_VALUE(n >= 8 && std::memcmp(bytes.data(), kSignature, 8) == 0, where,
                 ": not a PNG file (bad signature in the first 8 bytes)");
  Header h;
  bool have_header = false;
  bool have_end = false;
  bool idat_done = false;
  bool in_idat = false;
  std::vector<uint8_t> palette;  // RGB triples
  std::vector<uint8_t> alpha;    // palette alpha (tRNS)
  std::vector<uint8_t> compressed;
  size_t pos = 8;
  while (pos < n) {
    MD_CHECK_VALUE(n - pos >= 8, where, ": truncated chunk header at byte ", pos, " (", n - pos,
                   " bytes left, a chunk needs at least 12)");
    const uint32_t length = be32(bytes.data() + pos);
    const uint8_t* type = bytes.data() + pos + 4;
    const std::string name = chunk_name(type);
    MD_CHECK_VALUE(length <= kMaxChunkLength, where, ": chunk '", name, "' at byte ", pos, " declares length ", length,
                   ", above the PNG limit of 2^31 - 1");
    MD_CHECK_VALUE(uint64_t{length} + 12 <= n - pos, where, ": chunk '", name, "' at byte ", pos,
                   " is truncated: ", "it needs ", uint64_t{length} + 12, " bytes, ", n - pos, " are left");
    const uint8_t* data = type + 4;
    const uint32_t stored_crc = be32(data + length);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, type, 4);
    crc = crc32_z(crc, data, length);
    MD_CHECK_VALUE(static_cast<uint32_t>(crc) == stored_crc, where, ": CRC mismatch in chunk '", name, "' at byte ",
                   pos, " (the file is corrupt)");
    pos += size_t{length} + 12;

    if (!have_header) {
      MD_CHECK_VALUE(name == "IHDR", where, ": the first chunk must be IHDR, got '", name, "'");
    }
    if (in_idat && name != "IDAT") {
      in_idat = false;
      idat_done = true;
    }
    if (name == "IHDR") {
      MD_CHECK_VALUE(!have_header, where, ": more than one IHDR chunk");
      MD_CHECK_VALUE(length == 13, where, ": IHDR must be 13 bytes long, got ", length);
      h.width = be32(data);
      h.height = be32(data + 4);
      h.depth = data[8];
      h.color = data[9];
      h.interlace = data[12];
      MD_CHECK_VALUE(h.width > 0 && h.height > 0 && h.width <= kMaxChunkLength && h.height <= kMaxChunkLength, where,
                     ": invalid image size ", h.width, " x ", h.height, " (each side must be in 1..2^31 - 1)");
      MD_CHECK_VALUE(samples_per_pixel(h.color) > 0, where, ": invalid colour type ", h.color,
                     " (expected 0, 2, 3, 4 or 6)");
      MD_CHECK_VALUE(depth_allowed(h.color, h.depth), where, ": bit depth ", h.depth,
                     " is not allowed for colour type ", h.color);
      MD_CHECK_VALUE(data[10] == 0, where, ": unknown compression method ", static_cast<int>(data[10]));
      MD_CHECK_VALUE(data[11] == 0, where, ": unknown filter method ", static_cast<int>(data[11]));
      MD_CHECK_VALUE(h.interlace == 0 || h.interlace == 1, where, ": unknown interlace method ", h.interlace);
      MD_CHECK_VALUE(h.width * h.height <= options.max_pixels(), where, ": image of ", h.width, " x ", h.height, " = ",
                     h.width * h.height, " pixels exceeds the limit of ", options.max_pixels(),
                     " (PngReadOptions::max_pixels)");
      have_header = true;
    } else if (name == "PLTE") {
      MD_CHECK_VALUE(compressed.empty(), where, ": PLTE after IDAT");
      MD_CHECK_VALUE(palette.empty(), where, ": more than one PLTE chunk");
      MD_CHECK_VALUE(length % 3 == 0 && length >= 3 && length <= 768, where,
                     ": PLTE length must be a multiple of 3 in ", "3..768, got ", length);
      MD_CHECK_VALUE(h.color != 0 && h.color != 4, where, ": PLTE is not allowed for colour type ", h.color);
      palette.assign(data, data + length);
    } else if (name == "tRNS") {
      if (h.color == 3) {
        MD_CHECK_VALUE(!palette.empty(), where, ": tRNS before PLTE");
        MD_CHECK_VALUE(length <= palette.size() / 3, where, ": tRNS has ", length, " entries, the palette only ",
                       palette.size() / 3);
        alpha.assign(data, data + length);
      }
    } else if (name == "IDAT") {
      MD_CHECK_VALUE(!idat_done, where, ": IDAT chunks are not consecutive");
      in_idat = true;
      compressed.insert(compressed.end(), data, data + length);
    } else if (name == "IEND") {
      have_end = true;
      break;
    } else {
      MD_CHECK_VALUE((type[0] & 0x20) != 0, where, ": unknown critical chunk '", name, "'");
    }
  }
  MD_CHECK_VALUE(have_header, where, ": no IHDR chunk");
  MD_CHECK_VALUE(in_idat || idat_done, where, ": no IDAT chunk");
  MD_CHECK_VALUE(have_end, where, ": no IEND chunk (the file is truncated)");
  MD_CHECK_VALUE(h.color != 3 || !palette.empty(), where, ": palette image without a PLTE chunk");

  const int spp = samples_per_pixel(h.color);
  const int bits = spp * h.depth;
  const int64_t bpp = std::max(1, bits / 8);
  const std::vector<Pass> passes =
      h.interlace == 1 ? std::vector<Pass>(kAdam7.begin(), kAdam7.end()) : std::vector<Pass>{{0, 0, 1, 1}};
  int64_t expected = 0;
  for (const Pass& p : passes) {
    const int64_t pw = pass_extent(h.width, p.x0, p.dx);
    const int64_t ph = pass_extent(h.height, p.y0, p.dy);
    if (pw > 0 && ph > 0) expected += ph * (row_bytes(pw, bits) + 1);
  }
  std::vector<uint8_t> raw(static_cast<size_t>(expected));
  inflate_exact(compressed, raw, where);
  compressed = std::vector<uint8_t>();

  const bool is_palette = h.color == 3;
  const int64_t out_c = is_palette ? (alpha.empty() ? 3 : 4) : spp;
  const int64_t palette_size = static_cast<int64_t>(palette.size() / 3);
  at::Tensor out = at::empty({h.height, h.width, out_c}, at::kByte);
  uint8_t* dst = out.data_ptr<uint8_t>();
  size_t offset = 0;
  for (const Pass& p : passes) {
    const int64_t pw = pass_extent(h.width, p.x0, p.dx);
    const int64_t ph = pass_extent(h.height, p.y0, p.dy);
    if (pw == 0 || ph == 0) continue;
    const int64_t stride = row_bytes(pw, bits);
    uint8_t* pass_data = raw.data() + offset;
    unfilter(pass_data, ph, stride, bpp, where);
    offset += static_cast<size_t>(ph * (stride + 1));
    for (int64_t j = 0; j < ph; ++j) {
      const uint8_t* row = pass_data + j * (stride + 1) + 1;
      const int64_t y = p.y0 + j * p.dy;
      for (int64_t i = 0; i < pw; ++i) {
        uint8_t* px = dst + (y * h.width + p.x0 + i * p.dx) * out_c;
        if (is_palette) {
          const int idx = sample_at(row, i, 0, 1, h.depth, false);
          MD_CHECK_VALUE(idx < palette_size, where, ": palette index ", idx, " at pixel (", p.x0 + i * p.dx, ", ", y,
                         ") is past the palette of ", palette_size, " entries");
          px[0] = palette[3 * idx];
          px[1] = palette[3 * idx + 1];
          px[2] = palette[3 * idx + 2];
          if (out_c == 4) px[3] = idx < static_cast<int>(alpha.size()) ? alpha[idx] : 255;
        } else {
          for (int s = 0; s < spp; ++s) px[s] = static_cast<uint8_t>(sample_at(row, i, s, spp, h.depth, true));
        }
      }
    }
  }
  return out.permute({2, 0, 1}).contiguous();
}

void append_chunk(std::vector<uint8_t>& out, const char* type, const std::vector<uint8_t>& data) {
  put_be32(out, static_cast<uint32_t>(data.size()));
  const size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  const uLong crc = crc32_z(crc32(0L, Z_NULL, 0), out.data() + start, out.size() - start);
  put_be32(out, static_cast<uint32_t>(crc));
}

// The image as uint8 [H, W, C] on the CPU, after checking what encode_png accepts.
at::Tensor check_image(const at::Tensor& image, const char* caller) {
  check_defined(image, caller);
  MD_CHECK_TYPE(image.scalar_type() == at::kByte, caller, ": image must be uint8, got ", image.scalar_type(),
                " (convert floating images with to_uint8_image)");
  MD_CHECK_VALUE(image.dim() == 2 || image.dim() == 3, caller, ": image must be [C, H, W] or [H, W], got shape ",
                 shape_string(image));
  at::Tensor chw = image.dim() == 2 ? image.unsqueeze(0) : image;
  MD_CHECK_VALUE(chw.size(0) >= 1 && chw.size(0) <= 4, caller, ": image must have 1 to 4 channels, got shape ",
                 shape_string(image));
  MD_CHECK_VALUE(chw.size(1) > 0 && chw.size(2) > 0 && chw.size(1) <= kMaxChunkLength && chw.size(2) <= kMaxChunkLength,
                 caller, ": image height and width must be in 1..2^31 - 1, got shape ", shape_string(image));
  return chw.detach().to(at::kCPU).permute({1, 2, 0}).contiguous();
}

}  // namespace

at::Tensor decode_png(const std::vector<uint8_t>& bytes, const PngReadOptions& options) {
  return decode(bytes, options, "decode_png");
}

at::Tensor read_png(const std::string& path, const PngReadOptions& options) {
  const std::vector<uint8_t> bytes = detail::read_file_bytes(path, "read_png");
  return decode(bytes, options, "read_png: '" + path + "'");
}

std::vector<uint8_t> encode_png(const at::Tensor& image) {
  const at::Tensor hwc = check_image(image, "encode_png");
  const int64_t height = hwc.size(0);
  const int64_t width = hwc.size(1);
  const int64_t c = hwc.size(2);
  static constexpr uint8_t kColorType[5] = {0, 0, 4, 2, 6};
  const int64_t stride = width * c;
  const uint8_t* src = hwc.data_ptr<uint8_t>();
  std::vector<uint8_t> filtered(static_cast<size_t>(height * (stride + 1)));
  std::vector<uint8_t> candidate(static_cast<size_t>(stride));
  for (int64_t y = 0; y < height; ++y) {
    const uint8_t* cur = src + y * stride;
    const uint8_t* prev = y > 0 ? cur - stride : nullptr;
    uint8_t* out = filtered.data() + y * (stride + 1);
    int64_t best_cost = -1;
    for (int f = 0; f < 5; ++f) {
      int64_t cost = 0;
      for (int64_t i = 0; i < stride; ++i) {
        const int left = i >= c ? cur[i - c] : 0;
        const int up = prev != nullptr ? prev[i] : 0;
        const int up_left = (prev != nullptr && i >= c) ? prev[i - c] : 0;
        int pred = 0;
        switch (f) {
          case 1:
            pred = left;
            break;
          case 2:
            pred = up;
            break;
          case 3:
            pred = (left + up) >> 1;
            break;
          case 4:
            pred = paeth(left, up, up_left);
            break;
          default:
            break;
        }
        const auto v = static_cast<uint8_t>(cur[i] - pred);
        candidate[static_cast<size_t>(i)] = v;
        cost += v < 128 ? v : 256 - v;
      }
      if (best_cost < 0 || cost < best_cost) {
        best_cost = cost;
        out[0] = static_cast<uint8_t>(f);
        std::copy(candidate.begin(), candidate.end(), out + 1);
      }
    }
  }

  std::vector<uint8_t> idat(compressBound(static_cast<uLong>(filtered.size())));
  uLongf idat_size = static_cast<uLongf>(idat.size());
  MD_CHECK(compress2(idat.data(), &idat_size, filtered.data(), static_cast<uLong>(filtered.size()), 6) == Z_OK,
           "encode_png: zlib compression failed");
  idat.resize(idat_size);

  std::vector<uint8_t> png(kSignature, kSignature + 8);
  std::vector<uint8_t> ihdr;
  put_be32(ihdr, static_cast<uint32_t>(width));
  put_be32(ihdr, static_cast<uint32_t>(height));
  ihdr.insert(ihdr.end(), {8, kColorType[c], 0, 0, 0});
  append_chunk(png, "IHDR", ihdr);
  // Chunks hold at most 2^31 - 1 bytes: split the compressed stream.
  for (size_t off = 0; off < idat.size() || off == 0; off += kMaxChunkLength) {
    const size_t len = std::min<size_t>(kMaxChunkLength, idat.size() - off);
    append_chunk(png, "IDAT",
                 std::vector<uint8_t>(idat.begin() + static_cast<std::ptrdiff_t>(off),
                                      idat.begin() + static_cast<std::ptrdiff_t>(off + len)));
    if (off + len >= idat.size()) break;
  }
  append_chunk(png, "IEND", {});
  return png;
}

void write_png(const std::string& path, const at::Tensor& image) {
  check_image(image, "write_png");
  const std::vector<uint8_t> bytes = encode_png(image);
  detail::write_file_atomically(path, bytes.data(), bytes.size(), "write_png");
}

at::Tensor to_uint8_image(const at::Tensor& x, double lo, double hi) {
  CheckContext check_context("to_uint8_image");
  check_defined(x, "to_uint8_image: x");
  if (x.scalar_type() == at::kByte) return x.to(at::kCPU);
  check_floating(x, "to_uint8_image: x");
  MD_CHECK_VALUE(std::isfinite(lo) && std::isfinite(hi) && lo < hi,
                 "to_uint8_image: need finite lo < hi, got lo = ", lo, ", hi = ", hi);
  at::Tensor t = x.detach().to(at::kCPU, at::kDouble);
  t = at::nan_to_num(t, lo, hi, lo);
  return t.sub(lo).mul_(255.0 / (hi - lo)).round_().clamp_(0, 255).to(at::kByte);
}

at::Tensor make_grid(const at::Tensor& images, const GridOptions& options) {
  CheckContext check_context("make_grid");
  check_defined(images, "make_grid: images");
  MD_CHECK_VALUE(images.dim() == 3 || images.dim() == 4,
                 "make_grid: images must be [N, C, H, W] or [C, H, W], got shape ", shape_string(images));
  check_positive(options.nrow(), "GridOptions::nrow");
  check_non_negative(options.padding(), "GridOptions::padding");
  check_in_range<int64_t>(options.pad_value(), 0, 255, "GridOptions::pad_value");
  const at::Tensor batch = images.dim() == 3 ? images.unsqueeze(0) : images;
  MD_CHECK_VALUE(batch.size(0) > 0 && batch.size(2) > 0 && batch.size(3) > 0,
                 "make_grid: images must not be empty, got shape ", shape_string(images));
  MD_CHECK_VALUE(batch.size(1) >= 1 && batch.size(1) <= 4, "make_grid: images must have 1 to 4 channels, got shape ",
                 shape_string(images));
  MD_CHECK_TYPE(batch.scalar_type() == at::kByte || at::isFloatingType(batch.scalar_type()),
                "make_grid: images must be floating or uint8, got ", batch.scalar_type());
  const at::Tensor u8 = to_uint8_image(batch, options.lo(), options.hi());
  const int64_t n = u8.size(0);
  const int64_t c = u8.size(1);
  const int64_t h = u8.size(2);
  const int64_t w = u8.size(3);
  const int64_t p = options.padding();
  const int64_t cols = std::min(options.nrow(), n);
  const int64_t rows = (n + cols - 1) / cols;
  at::Tensor grid = at::full({c, rows * (h + p) + p, cols * (w + p) + p}, options.pad_value(), at::kByte);
  for (int64_t k = 0; k < n; ++k) {
    const int64_t y = p + (k / cols) * (h + p);
    const int64_t x = p + (k % cols) * (w + p);
    grid.narrow(1, y, h).narrow(2, x, w).copy_(u8[k]);
  }
  return grid;
}

void save_image_grid(const std::string& path, const at::Tensor& images, const GridOptions& options) {
  write_png(path, make_grid(images, options));
}

}  // namespace io
}  // namespace manifold_diffusion
