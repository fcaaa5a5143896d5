#include <manifold_diffusion/io/png.h>

#include "data/data_test_util.h"
#include "test_util.h"

#include <ATen/ATen.h>

#include <zlib.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace {

using Bytes = std::vector<uint8_t>;
using mdiff_test::TempDir;
using mdiff_test::write_bytes;

void put32(Bytes& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>((v >> s) & 0xff));
}

Bytes chunk(const std::string& type, const Bytes& data) {
  Bytes b;
  put32(b, static_cast<uint32_t>(data.size()));
  Bytes body(type.begin(), type.end());
  body.insert(body.end(), data.begin(), data.end());
  b.insert(b.end(), body.begin(), body.end());
  put32(b, static_cast<uint32_t>(crc32(0, body.data(), static_cast<uInt>(body.size()))));
  return b;
}

Bytes ihdr(uint32_t w, uint32_t h, uint8_t depth, uint8_t color, uint8_t interlace = 0) {
  Bytes d;
  put32(d, w);
  put32(d, h);
  d.insert(d.end(), {depth, color, 0, 0, interlace});
  return chunk("IHDR", d);
}

Bytes deflate(const Bytes& raw) {
  uLongf n = compressBound(static_cast<uLong>(raw.size()));
  Bytes out(n);
  EXPECT_EQ(compress2(out.data(), &n, raw.data(), static_cast<uLong>(raw.size()), 9), Z_OK);
  out.resize(n);
  return out;
}

Bytes png(const std::vector<Bytes>& chunks) {
  Bytes b = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  for (const Bytes& c : chunks) b.insert(b.end(), c.begin(), c.end());
  return b;
}

// A whole file: IHDR, optional extra chunks (PLTE, tRNS), one IDAT over `raw`, IEND.
Bytes simple_png(const Bytes& header, const Bytes& raw, const std::vector<Bytes>& extra = {}) {
  std::vector<Bytes> chunks = {header};
  chunks.insert(chunks.end(), extra.begin(), extra.end());
  chunks.push_back(chunk("IDAT", deflate(raw)));
  chunks.push_back(chunk("IEND", {}));
  return png(chunks);
}

int paeth(int a, int b, int c) {
  const int p = a + b - c;
  const int pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

// Applies row filter `f` to unfiltered rows of `stride` bytes with `bpp` bytes per pixel.
Bytes filter_rows(const std::vector<Bytes>& rows, int bpp, int f) {
  Bytes out;
  for (size_t r = 0; r < rows.size(); ++r) {
    out.push_back(static_cast<uint8_t>(f));
    const Bytes& cur = rows[r];
    for (size_t i = 0; i < cur.size(); ++i) {
      const int a = i >= static_cast<size_t>(bpp) ? cur[i - bpp] : 0;
      const int b = r > 0 ? rows[r - 1][i] : 0;
      const int c = (r > 0 && i >= static_cast<size_t>(bpp)) ? rows[r - 1][i - bpp] : 0;
      const int pred = f == 1 ? a : f == 2 ? b : f == 3 ? (a + b) / 2 : f == 4 ? paeth(a, b, c) : 0;
      out.push_back(static_cast<uint8_t>(cur[i] - pred));
    }
  }
  return out;
}

// Rows of an 8-bit image [C, H, W] as interleaved bytes.
std::vector<Bytes> rows_of(const at::Tensor& chw) {
  const at::Tensor hwc = chw.permute({1, 2, 0}).contiguous();
  const int64_t h = hwc.size(0), stride = hwc.size(1) * hwc.size(2);
  const uint8_t* p = hwc.data_ptr<uint8_t>();
  std::vector<Bytes> rows;
  for (int64_t y = 0; y < h; ++y) rows.emplace_back(p + y * stride, p + (y + 1) * stride);
  return rows;
}

// Packs samples of `depth` < 8 bits, most significant first, into bytes.
Bytes pack(const std::vector<int>& values, int depth) {
  Bytes out((values.size() * depth + 7) / 8, 0);
  for (size_t i = 0; i < values.size(); ++i) {
    const size_t bit = i * depth;
    out[bit / 8] |= static_cast<uint8_t>(values[i] << (8 - depth - bit % 8));
  }
  return out;
}

at::Tensor random_image(int64_t c, int64_t h, int64_t w, int seed) {
  at::manual_seed(seed);
  return at::randint(0, 256, {c, h, w}, at::kLong).to(at::kByte);
}

const uint8_t kColorType[5] = {0, 0, 4, 2, 6};

TEST(PngRoundTrip, EncodeDecodeEveryChannelCount) {
  for (int64_t c = 1; c <= 4; ++c) {
    const at::Tensor img = random_image(c, 7, 13, static_cast<int>(c));
    const at::Tensor back = mdiff::io::decode_png(mdiff::io::encode_png(img));
    EXPECT_EQ(back.scalar_type(), at::kByte);
    EXPECT_EQ(back.sizes(), img.sizes());
    EXPECT_TRUE(at::equal(back, img)) << "C = " << c;
  }
  // Smooth images exercise the non-trivial filters the encoder picks.
  const at::Tensor ramp = at::arange(0, 64 * 48, at::kLong).remainder(251).to(at::kByte).reshape({1, 48, 64});
  EXPECT_TRUE(
      at::equal(mdiff::io::decode_png(mdiff::io::encode_png(ramp.expand({3, 48, 64}))), ramp.expand({3, 48, 64})));
  const at::Tensor hw = random_image(1, 5, 4, 9).squeeze(0);
  EXPECT_TRUE(at::equal(mdiff::io::decode_png(mdiff::io::encode_png(hw)), hw.unsqueeze(0)));
}

TEST(PngRoundTrip, WriteAndReadFile) {
  TempDir dir;
  const at::Tensor img = random_image(3, 9, 6, 4);
  mdiff::io::write_png(dir.file("a.png"), img);
  EXPECT_TRUE(at::equal(mdiff::io::read_png(dir.file("a.png")), img));
  // Overwriting replaces the file.
  const at::Tensor other = random_image(4, 2, 3, 5);
  mdiff::io::write_png(dir.file("a.png"), other);
  EXPECT_TRUE(at::equal(mdiff::io::read_png(dir.file("a.png")), other));
  // A non-contiguous view and a 1x1 image.
  mdiff::io::write_png(dir.file("t.png"), img.transpose(1, 2));
  EXPECT_TRUE(at::equal(mdiff::io::read_png(dir.file("t.png")), img.transpose(1, 2)));
  mdiff::io::write_png(dir.file("one.png"), random_image(1, 1, 1, 6));
  EXPECT_EQ(mdiff::io::read_png(dir.file("one.png")).sizes(), (std::vector<int64_t>{1, 1, 1}));
}

TEST(PngRoundTrip, RejectsBadImagesAndPaths) {
  TempDir dir;
  MD_EXPECT_ERROR(mdiff::io::encode_png(at::zeros({3, 4, 4})), "encode_png", "uint8", "Float");
  MD_EXPECT_ERROR(mdiff::io::encode_png(at::zeros({5, 4, 4}, at::kByte)), "1 to 4 channels", "[5, 4, 4]");
  MD_EXPECT_ERROR(mdiff::io::encode_png(at::zeros({1, 3, 4, 4}, at::kByte)), "[C, H, W] or [H, W]", "[1, 3, 4, 4]");
  MD_EXPECT_ERROR(mdiff::io::encode_png(at::zeros({3, 0, 4}, at::kByte)), "height and width");
  MD_EXPECT_ERROR(mdiff::io::encode_png(at::Tensor()), "encode_png");
  MD_EXPECT_ERROR(mdiff::io::write_png(dir.file("no/such/folder/x.png"), at::zeros({1, 2, 2}, at::kByte)), "write_png",
                  "x.png", "does not exist");
  MD_EXPECT_ERROR(mdiff::io::write_png(dir.file(""), at::zeros({1, 2, 2}, at::kByte)), "write_png", "directory");
  MD_EXPECT_ERROR(mdiff::io::write_png(dir.file("f.png"), at::zeros({2, 2}, at::kInt)), "write_png", "uint8");
  MD_EXPECT_ERROR(mdiff::io::read_png(dir.file("absent.png")), "read_png", "absent.png", "cannot open");
  // No temporary files are left behind.
  mdiff::io::write_png(dir.file("ok.png"), at::zeros({1, 2, 2}, at::kByte));
  int64_t count = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.file(""))) count += e.is_regular_file() ? 1 : 0;
  EXPECT_EQ(count, 1);
}

TEST(PngDecode, SixteenBitKeepsTheHighByte) {
  at::manual_seed(3);
  for (uint8_t color : {0, 2, 4, 6}) {
    const int64_t c = color == 0 ? 1 : color == 2 ? 3 : color == 4 ? 2 : 4;
    const at::Tensor v16 = at::randint(0, 65536, {c, 3, 5}, at::kLong);
    const at::Tensor hwc = v16.permute({1, 2, 0}).contiguous();
    std::vector<Bytes> rows;
    for (int64_t y = 0; y < 3; ++y) {
      Bytes row;
      for (int64_t i = 0; i < 5 * c; ++i) {
        const int64_t v = hwc[y].reshape({-1})[i].item<int64_t>();
        row.push_back(static_cast<uint8_t>(v >> 8));
        row.push_back(static_cast<uint8_t>(v & 0xff));
      }
      rows.push_back(row);
    }
    const Bytes file = simple_png(ihdr(5, 3, 16, color), filter_rows(rows, static_cast<int>(2 * c), 4));
    const at::Tensor got = mdiff::io::decode_png(file);
    EXPECT_TRUE(at::equal(got, v16.div(256, "floor").to(at::kByte))) << "colour type " << int(color);
  }
}

// Expected [C, H, W] from a palette and per-pixel indices.
at::Tensor palette_image(const std::vector<std::vector<int>>& idx, const Bytes& pal, const Bytes& alpha,
                         bool with_alpha) {
  const int64_t h = static_cast<int64_t>(idx.size()), w = static_cast<int64_t>(idx[0].size());
  const int64_t c = with_alpha ? 4 : 3;
  at::Tensor out = at::empty({c, h, w}, at::kByte);
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const int i = idx[y][x];
      for (int k = 0; k < 3; ++k) out[k][y][x] = pal[3 * i + k];
      if (with_alpha) out[3][y][x] = i < static_cast<int>(alpha.size()) ? alpha[i] : 255;
    }
  }
  return out;
}

TEST(PngDecode, PaletteWithAndWithoutTransparency) {
  const Bytes pal = {255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 8, 7};
  const Bytes alpha = {10, 20};
  const Bytes plte = chunk("PLTE", pal);
  const Bytes trns = chunk("tRNS", alpha);
  const std::vector<std::vector<int>> idx = {{0, 1, 2, 3, 0}, {3, 2, 1, 0, 1}, {1, 1, 3, 3, 2}};
  for (int depth : {8, 4, 2}) {
    std::vector<Bytes> rows;
    for (const auto& r : idx) {
      if (depth == 8) {
        rows.emplace_back(r.begin(), r.end());
      } else {
        rows.push_back(pack(r, depth));
      }
    }
    const Bytes raw = filter_rows(rows, 1, 1);
    const at::Tensor rgb = mdiff::io::decode_png(simple_png(ihdr(5, 3, static_cast<uint8_t>(depth), 3), raw, {plte}));
    EXPECT_TRUE(at::equal(rgb, palette_image(idx, pal, alpha, false))) << "depth " << depth;
    const at::Tensor rgba =
        mdiff::io::decode_png(simple_png(ihdr(5, 3, static_cast<uint8_t>(depth), 3), raw, {plte, trns}));
    EXPECT_TRUE(at::equal(rgba, palette_image(idx, pal, alpha, true))) << "depth " << depth;
  }
}

TEST(PngDecode, LowBitGrayIsScaledTo255) {
  for (int depth : {1, 2, 4}) {
    const int levels = 1 << depth;
    std::vector<std::vector<int>> values;
    std::vector<Bytes> rows;
    at::Tensor expected = at::empty({1, 4, 11}, at::kByte);
    for (int y = 0; y < 4; ++y) {
      std::vector<int> r;
      for (int x = 0; x < 11; ++x) {
        const int v = (x * 7 + y * 3) % levels;
        r.push_back(v);
        expected[0][y][x] = v * 255 / (levels - 1);
      }
      rows.push_back(pack(r, depth));
    }
    for (int f = 0; f <= 4; ++f) {
      const at::Tensor got =
          mdiff::io::decode_png(simple_png(ihdr(11, 4, static_cast<uint8_t>(depth), 0), filter_rows(rows, 1, f)));
      EXPECT_TRUE(at::equal(got, expected)) << "depth " << depth << " filter " << f;
    }
  }
}

TEST(PngDecode, EveryFilterType) {
  for (int64_t c = 1; c <= 4; ++c) {
    const at::Tensor img = random_image(c, 6, 7, 20 + static_cast<int>(c));
    const std::vector<Bytes> rows = rows_of(img);
    for (int f = 0; f <= 4; ++f) {
      const Bytes file = simple_png(ihdr(7, 6, 8, kColorType[c]), filter_rows(rows, static_cast<int>(c), f));
      EXPECT_TRUE(at::equal(mdiff::io::decode_png(file), img)) << "C = " << c << " filter " << f;
    }
  }
}

TEST(PngDecode, Adam7InterlaceMatchesThePlainImage) {
  const int64_t starts[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};
  for (int64_t c : {1, 3, 4}) {
    for (const auto& hw : std::vector<std::pair<int64_t, int64_t>>{{13, 11}, {1, 1}, {3, 9}, {8, 8}}) {
      const int64_t h = hw.first, w = hw.second;
      const at::Tensor img = random_image(c, h, w, static_cast<int>(c * 100 + h));
      Bytes raw;
      for (int p = 0; p < 7; ++p) {
        const int64_t x0 = starts[p][0], y0 = starts[p][1], dx = starts[p][2], dy = starts[p][3];
        if (x0 >= w || y0 >= h) continue;  // empty passes contribute nothing
        const at::Tensor sub = img.slice(1, y0, h, dy).slice(2, x0, w, dx);
        const Bytes part = filter_rows(rows_of(sub), static_cast<int>(c), p % 5);
        raw.insert(raw.end(), part.begin(), part.end());
      }
      const at::Tensor inter = mdiff::io::decode_png(
          simple_png(ihdr(static_cast<uint32_t>(w), static_cast<uint32_t>(h), 8, kColorType[c], 1), raw));
      const at::Tensor plain = mdiff::io::decode_png(
          simple_png(ihdr(static_cast<uint32_t>(w), static_cast<uint32_t>(h), 8, kColorType[c], 0),
                     filter_rows(rows_of(img), static_cast<int>(c), 2)));
      EXPECT_TRUE(at::equal(inter, img)) << "C = " << c << ", " << h << " x " << w;
      EXPECT_TRUE(at::equal(inter, plain)) << "C = " << c << ", " << h << " x " << w;
    }
  }
  // Interlaced 1-bit gray: sub-byte rows per pass.
  const int64_t h = 5, w = 10;
  at::Tensor bits = at::randint(0, 2, {1, h, w}, at::kLong);
  Bytes raw;
  for (int p = 0; p < 7; ++p) {
    const int64_t x0 = starts[p][0], y0 = starts[p][1], dx = starts[p][2], dy = starts[p][3];
    if (x0 >= w || y0 >= h) continue;
    const at::Tensor sub = bits.slice(1, y0, h, dy).slice(2, x0, w, dx);
    std::vector<Bytes> rows;
    for (int64_t y = 0; y < sub.size(1); ++y) {
      std::vector<int> r;
      for (int64_t x = 0; x < sub.size(2); ++x) r.push_back(static_cast<int>(sub[0][y][x].item<int64_t>()));
      rows.push_back(pack(r, 1));
    }
    const Bytes part = filter_rows(rows, 1, 4);
    raw.insert(raw.end(), part.begin(), part.end());
  }
  const at::Tensor got = mdiff::io::decode_png(simple_png(ihdr(10, 5, 1, 0, 1), raw));
  EXPECT_TRUE(at::equal(got, bits.mul(255).to(at::kByte)));
}

TEST(PngDecode, SplitIdatAndAncillaryChunks) {
  const at::Tensor img = random_image(3, 4, 5, 77);
  const Bytes z = deflate(filter_rows(rows_of(img), 3, 0));
  const size_t half = z.size() / 2;
  const Bytes file =
      png({ihdr(5, 4, 8, 2), chunk("tEXt", {'a', 0, 'b'}), chunk("IDAT", Bytes(z.begin(), z.begin() + half)),
           chunk("IDAT", Bytes(z.begin() + half, z.end())), chunk("IEND", {})});
  EXPECT_TRUE(at::equal(mdiff::io::decode_png(file), img));
}

TEST(PngDecode, RejectsMalformedFiles) {
  const at::Tensor img = random_image(1, 3, 4, 1);
  const Bytes raw = filter_rows(rows_of(img), 1, 0);
  const Bytes good = simple_png(ihdr(4, 3, 8, 0), raw);
  ASSERT_TRUE(at::equal(mdiff::io::decode_png(good), img));
  auto decode = [](const Bytes& b) { return mdiff::io::decode_png(b); };

  // Truncated at several points.
  MD_EXPECT_ERROR(decode(Bytes()), "decode_png", "signature");
  MD_EXPECT_ERROR(decode(Bytes(good.begin(), good.begin() + 5)), "signature");
  MD_EXPECT_ERROR(decode(Bytes(good.begin(), good.begin() + 8)), "no IHDR");
  MD_EXPECT_ERROR(decode(Bytes(good.begin(), good.begin() + 12)), "truncated chunk header at byte 8");
  MD_EXPECT_ERROR(decode(Bytes(good.begin(), good.begin() + 20)), "chunk 'IHDR' at byte 8 is truncated",
                  "needs 25 bytes, 12 are left");
  MD_EXPECT_ERROR(decode(Bytes(good.begin(), good.begin() + 45)), "chunk 'IDAT' at byte 33 is truncated");
  MD_EXPECT_ERROR(decode(Bytes(good.begin(), good.end() - 12)), "no IEND");
  MD_EXPECT_ERROR(decode(Bytes(good.begin(), good.end() - 3)), "chunk 'IEND'", "truncated");

  Bytes b = good;
  b[1] = 'Q';
  MD_EXPECT_ERROR(decode(b), "not a PNG file", "signature");
  b = good;
  b[17] ^= 0x01;  // a byte of the IHDR width, CRC left as it was
  MD_EXPECT_ERROR(decode(b), "CRC mismatch in chunk 'IHDR' at byte 8");
  b = good;
  b[b.size() - 20] ^= 0x40;  // inside IDAT
  MD_EXPECT_ERROR(decode(b), "CRC mismatch in chunk 'IDAT'");

  // Header fields.
  MD_EXPECT_ERROR(decode(simple_png(ihdr(0, 3, 8, 0), raw)), "invalid image size 0 x 3");
  MD_EXPECT_ERROR(decode(simple_png(ihdr(4, 0, 8, 0), raw)), "invalid image size 4 x 0");
  MD_EXPECT_ERROR(decode(simple_png(ihdr(0x80000000u, 1, 8, 0), raw)), "invalid image size");
  MD_EXPECT_ERROR(decode(simple_png(ihdr(1 << 20, 1 << 20, 8, 0), raw)), "1048576 x 1048576",
                  "exceeds the limit of 268435456", "max_pixels");
  MD_EXPECT_ERROR(mdiff::io::decode_png(good, mdiff::io::PngReadOptions().max_pixels(11)),
                  "12 pixels exceeds the limit of 11");
  MD_EXPECT_ERROR(mdiff::io::decode_png(good, mdiff::io::PngReadOptions().max_pixels(0)),
                  "max_pixels must be positive");
  MD_EXPECT_ERROR(decode(simple_png(ihdr(4, 3, 4, 2), raw)), "bit depth 4 is not allowed for colour type 2");
  MD_EXPECT_ERROR(decode(simple_png(ihdr(4, 3, 16, 3), raw)), "bit depth 16 is not allowed for colour type 3");
  MD_EXPECT_ERROR(decode(simple_png(ihdr(4, 3, 8, 5), raw)), "invalid colour type 5");
  MD_EXPECT_ERROR(decode(simple_png(ihdr(4, 3, 8, 0, 2), raw)), "unknown interlace method 2");
  Bytes hd;
  put32(hd, 4);
  put32(hd, 3);
  hd.insert(hd.end(), {8, 0, 1, 0, 0});
  MD_EXPECT_ERROR(decode(simple_png(chunk("IHDR", hd), raw)), "unknown compression method 1");
  hd.pop_back();
  MD_EXPECT_ERROR(decode(simple_png(chunk("IHDR", hd), raw)), "IHDR must be 13 bytes long, got 12");

  // Chunk structure.
  MD_EXPECT_ERROR(decode(png({chunk("IDAT", deflate(raw)), ihdr(4, 3, 8, 0), chunk("IEND", {})})),
                  "first chunk must be IHDR, got 'IDAT'");
  MD_EXPECT_ERROR(decode(png({ihdr(4, 3, 8, 0), chunk("IEND", {})})), "no IDAT");
  MD_EXPECT_ERROR(decode(simple_png(ihdr(4, 3, 8, 0), raw, {chunk("ABCD", {1})})), "unknown critical chunk 'ABCD'");
  Bytes huge = png({ihdr(4, 3, 8, 0)});
  put32(huge, 0xFFFFFFF0u);
  huge.insert(huge.end(), {'I', 'D', 'A', 'T', 0, 0, 0, 0});
  MD_EXPECT_ERROR(decode(huge), "declares length 4294967280", "2^31 - 1");
  Bytes longer = png({ihdr(4, 3, 8, 0)});
  put32(longer, 1000);
  longer.insert(longer.end(), {'I', 'D', 'A', 'T', 1, 2, 3, 4, 5, 6, 7, 8});
  MD_EXPECT_ERROR(decode(longer), "chunk 'IDAT' at byte 33 is truncated", "needs 1012 bytes");
  const Bytes z = deflate(raw);
  MD_EXPECT_ERROR(decode(png({ihdr(4, 3, 8, 0), chunk("IDAT", Bytes(z.begin(), z.begin() + 4)), chunk("tEXt", {'a', 0}),
                              chunk("IDAT", Bytes(z.begin() + 4, z.end())), chunk("IEND", {})})),
                  "not consecutive");

  // Compressed data.
  MD_EXPECT_ERROR(decode(png({ihdr(4, 3, 8, 0), chunk("IDAT", {1, 2, 3, 4, 5, 6}), chunk("IEND", {})})),
                  "corrupt zlib data in IDAT");
  MD_EXPECT_ERROR(decode(png({ihdr(4, 3, 8, 0), chunk("IDAT", Bytes(z.begin(), z.end() - 4)), chunk("IEND", {})})),
                  "truncated (no end-of-stream marker)");
  MD_EXPECT_ERROR(decode(simple_png(ihdr(4, 3, 8, 0), Bytes(raw.begin(), raw.end() - 5))),
                  "image data too short: the header needs 15 decompressed bytes, IDAT holds 10");
  Bytes extra = raw;
  extra.insert(extra.end(), {0, 1, 2, 3, 4});
  MD_EXPECT_ERROR(decode(simple_png(ihdr(4, 3, 8, 0), extra)), "image data too long", "more than the 15 bytes");
  Bytes bad_filter = raw;
  bad_filter[5] = 7;  // the filter byte of the second row
  MD_EXPECT_ERROR(decode(simple_png(ihdr(4, 3, 8, 0), bad_filter)), "unknown row filter type 7");

  // Palettes.
  const Bytes pal_raw = filter_rows({{0, 1}, {1, 5}}, 1, 0);
  const Bytes plte = chunk("PLTE", {1, 2, 3, 4, 5, 6});
  MD_EXPECT_ERROR(decode(simple_png(ihdr(2, 2, 8, 3), pal_raw, {plte})), "palette index 5 at pixel (1, 1)",
                  "palette of 2 entries");
  MD_EXPECT_ERROR(decode(simple_png(ihdr(2, 2, 8, 3), pal_raw)), "palette image without a PLTE chunk");
  MD_EXPECT_ERROR(decode(simple_png(ihdr(2, 2, 8, 3), pal_raw, {chunk("PLTE", {1, 2, 3, 4})})),
                  "PLTE length must be a multiple of 3");
  MD_EXPECT_ERROR(decode(simple_png(ihdr(2, 2, 8, 3), pal_raw, {plte, chunk("tRNS", {1, 2, 3})})),
                  "tRNS has 3 entries, the palette only 2");

  // From a file, the message names it.
  TempDir dir;
  b = good;
  b[17] ^= 0x01;
  write_bytes(dir.file("broken.png"), b);
  MD_EXPECT_ERROR(mdiff::io::read_png(dir.file("broken.png")), "read_png", "broken.png", "CRC mismatch");
  MD_EXPECT_ERROR(mdiff::io::read_png(dir.file("")), "read_png", "is a directory");
}

// Recomputes the CRC of every chunk that lies inside `b`, so a corruption reaches the parser.
void fix_crcs(Bytes& b) {
  size_t pos = 8;
  while (pos + 12 <= b.size()) {
    const uint64_t len =
        (uint64_t{b[pos]} << 24) | (uint64_t{b[pos + 1]} << 16) | (uint64_t{b[pos + 2]} << 8) | b[pos + 3];
    if (len > b.size() - pos - 12) return;
    const uint32_t crc = static_cast<uint32_t>(crc32(0, b.data() + pos + 4, static_cast<uInt>(len + 4)));
    for (int k = 0; k < 4; ++k) b[pos + 8 + len + k] = static_cast<uint8_t>(crc >> (24 - 8 * k));
    pos += len + 12;
  }
}

// Every truncation and many random corruptions of valid files either decode or fail with a
// c10::Error: never a crash, a hang or another exception.
TEST(PngDecode, SurvivesTruncationAndRandomCorruption) {
  const Bytes pal = {255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 8, 7};
  std::vector<Bytes> rows;
  for (int y = 0; y < 9; ++y) {
    std::vector<int> r;
    for (int x = 0; x < 13; ++x) r.push_back((x + y) % 4);
    rows.push_back(pack(r, 2));
  }
  std::vector<Bytes> files = {mdiff::io::encode_png(random_image(4, 9, 13, 5)),
                              simple_png(ihdr(13, 9, 2, 3), filter_rows(rows, 1, 4), {chunk("PLTE", pal)})};
  // An interlaced one.
  const at::Tensor img = random_image(3, 9, 13, 6);
  Bytes raw;
  const int64_t starts[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};
  for (const auto& p : starts) {
    const Bytes part = filter_rows(rows_of(img.slice(1, p[1], 9, p[3]).slice(2, p[0], 13, p[2])), 3, 3);
    raw.insert(raw.end(), part.begin(), part.end());
  }
  files.push_back(simple_png(ihdr(13, 9, 8, 2, 1), raw));
  uint64_t state = 12345;
  auto next = [&state] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return state >> 33;
  };
  int64_t decoded = 0, rejected = 0;
  for (const Bytes& good : files) {
    for (size_t n = 0; n < good.size(); ++n) {
      const std::string msg =
          mdiff_test::error_message([&] { mdiff::io::decode_png(Bytes(good.begin(), good.begin() + n)); });
      EXPECT_NE(msg.find("decode_png"), std::string::npos) << "length " << n;
    }
    for (int trial = 0; trial < 1500; ++trial) {
      Bytes b = good;
      const int flips = 1 + static_cast<int>(next() % 4);
      for (int k = 0; k < flips; ++k) b[8 + next() % (b.size() - 8)] = static_cast<uint8_t>(next());
      if (trial % 2 == 0) fix_crcs(b);
      try {
        const at::Tensor t = mdiff::io::decode_png(b, mdiff::io::PngReadOptions().max_pixels(1 << 16));
        EXPECT_EQ(t.scalar_type(), at::kByte);
        ++decoded;
      } catch (const c10::Error&) {
        ++rejected;
      }
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_EQ(decoded + rejected, 3 * 1500);
}

TEST(PngImages, ToUint8ImageMapsAndClamps) {
  const at::Tensor x = at::tensor({-1.0, 1.0, 0.0, 2.0, -3.0, std::nan(""), 0.5});
  const at::Tensor u = mdiff::io::to_uint8_image(x);
  EXPECT_EQ(u.scalar_type(), at::kByte);
  const std::vector<int64_t> expected = {0, 255, 128, 255, 0, 0, 191};
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(u[static_cast<int64_t>(i)].item<int64_t>(), expected[i]) << i;
  EXPECT_EQ(mdiff::io::to_uint8_image(at::tensor({0.5f}), 0.0, 1.0).item<int64_t>(), 128);
  const at::Tensor b = at::tensor({3, 4}, at::kByte);
  EXPECT_TRUE(at::equal(mdiff::io::to_uint8_image(b), b));
  MD_EXPECT_ERROR(mdiff::io::to_uint8_image(x, 1.0, 1.0), "lo < hi", "lo = 1, hi = 1");
  MD_EXPECT_ERROR(mdiff::io::to_uint8_image(at::tensor({1, 2}, at::kInt)), "to_uint8_image: x");
}

TEST(PngImages, MakeGridPlacesImagesRowByRow) {
  const at::Tensor images =
      at::arange(1, 6, at::kLong).to(at::kByte).reshape({5, 1, 1, 1}).expand({5, 1, 2, 3}).contiguous();
  const at::Tensor grid = mdiff::io::make_grid(images, mdiff::io::GridOptions().nrow(2).padding(1).pad_value(200));
  ASSERT_EQ(grid.sizes(), (std::vector<int64_t>{1, 10, 9}));
  EXPECT_EQ(grid[0][0][0].item<int64_t>(), 200);
  EXPECT_EQ(grid[0][1][1].item<int64_t>(), 1);
  EXPECT_EQ(grid[0][2][3].item<int64_t>(), 1);
  EXPECT_EQ(grid[0][1][5].item<int64_t>(), 2);
  EXPECT_EQ(grid[0][4][1].item<int64_t>(), 3);
  EXPECT_EQ(grid[0][7][1].item<int64_t>(), 5);
  EXPECT_EQ(grid[0][7][5].item<int64_t>(), 200);  // the empty cell
  EXPECT_EQ(grid[0][3][1].item<int64_t>(), 200);  // padding between rows
  // Floating images in [-1, 1]; a single [C, H, W] image.
  const at::Tensor f = at::full({2, 3, 4, 4}, 1.0);
  const at::Tensor g = mdiff::io::make_grid(f, mdiff::io::GridOptions().padding(0));
  EXPECT_EQ(g.sizes(), (std::vector<int64_t>{3, 4, 8}));
  EXPECT_EQ(g.min().item<int64_t>(), 255);
  EXPECT_EQ(mdiff::io::make_grid(f[0]).sizes(), (std::vector<int64_t>{3, 8, 8}));
  TempDir dir;
  mdiff::io::save_image_grid(dir.file("grid.png"), images, mdiff::io::GridOptions().nrow(5).padding(0));
  EXPECT_TRUE(at::equal(mdiff::io::read_png(dir.file("grid.png")),
                        mdiff::io::make_grid(images, mdiff::io::GridOptions().nrow(5).padding(0))));
  MD_EXPECT_ERROR(mdiff::io::make_grid(at::zeros({2, 5, 4, 4})), "1 to 4 channels");
  MD_EXPECT_ERROR(mdiff::io::make_grid(at::zeros({4, 4})), "[N, C, H, W]");
  MD_EXPECT_ERROR(mdiff::io::make_grid(f, mdiff::io::GridOptions().nrow(0)), "nrow must be positive");
  MD_EXPECT_ERROR(mdiff::io::make_grid(f, mdiff::io::GridOptions().pad_value(300)), "pad_value must be in [0, 255]");
  MD_EXPECT_ERROR(mdiff::io::make_grid(at::zeros({1, 1, 2, 2}, at::kInt)), "floating or uint8");
}

}  // namespace
