#include <manifold_diffusion/data/idx.h>

#include "data/data_test_util.h"
#include "test_util.h"

#include <ATen/ATen.h>

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

namespace {

using mdiff_test::TempDir;
using mdiff_test::write_bytes;

std::vector<uint8_t> idx_header(uint8_t type, const std::vector<uint32_t>& dims) {
  std::vector<uint8_t> b = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>((d >> s) & 0xff));
  }
  return b;
}

// The IDX encoding of `t`: header, then the elements in big-endian byte order.
std::vector<uint8_t> idx_bytes(const at::Tensor& t, uint8_t type) {
  std::vector<uint32_t> dims(t.sizes().begin(), t.sizes().end());
  std::vector<uint8_t> b = idx_header(type, dims);
  const at::Tensor c = t.contiguous();
  const auto* p = static_cast<const uint8_t*>(c.data_ptr());
  const int64_t w = c.element_size();
  for (int64_t i = 0; i < c.numel(); ++i) {
    for (int64_t k = w - 1; k >= 0; --k) b.push_back(p[i * w + k]);  // little-endian host to big-endian
  }
  return b;
}

void write_gz(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb1");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  gzclose(f);
}

struct Case {
  at::ScalarType dtype;
  uint8_t code;
};

TEST(DataIdx, RoundTripsEveryTypePlainAndGzipped) {
  TempDir dir;
  const Case cases[] = {{at::kByte, 0x08}, {at::kChar, 0x09}, {at::kShort, 0x0B},
                        {at::kInt, 0x0C},  {at::kFloat, 0x0D}, {at::kDouble, 0x0E}};
  for (const Case& c : cases) {
    at::Tensor t = at::arange(-30, 30, at::kDouble).mul(c.dtype == at::kFloat || c.dtype == at::kDouble ? 1.25 : 1.0);
    if (c.dtype == at::kByte) t = t.add(30);
    if (c.dtype == at::kShort || c.dtype == at::kInt) t = t.mul(301);
    t = t.to(c.dtype).reshape({3, 4, 5});
    const std::vector<uint8_t> bytes = idx_bytes(t, c.code);
    const std::string plain = dir.file("plain.idx");
    const std::string gz = dir.file("packed.idx.gz");
    write_bytes(plain, bytes);
    write_gz(gz, bytes);
    for (const std::string& path : {plain, gz}) {
      const at::Tensor r = mdiff::data::read_idx(path);
      EXPECT_EQ(r.scalar_type(), c.dtype) << path;
      EXPECT_EQ(r.sizes(), t.sizes()) << path;
      EXPECT_TRUE(at::equal(r, t)) << path << " dtype " << c.dtype;
    }
  }
}

TEST(DataIdx, ReadsLargeGzipInChunks) {
  TempDir dir;
  const at::Tensor t = at::arange(0, 600 * 1000, at::kInt).reshape({600, 1000});
  write_gz(dir.file("big.gz"), idx_bytes(t, 0x0C));
  EXPECT_TRUE(at::equal(mdiff::data::read_idx(dir.file("big.gz")), t));
}

TEST(DataIdx, RejectsCorruptFiles) {
  TempDir dir;
  const std::string p = dir.file("bad.idx");
  const at::Tensor t = at::arange(0, 12, at::kByte).reshape({3, 4});
  std::vector<uint8_t> good = idx_bytes(t, 0x08);

  MD_EXPECT_ERROR(mdiff::data::read_idx(dir.file("absent.idx")), "absent.idx", "cannot open");

  std::vector<uint8_t> b = good;
  b[0] = 1;
  write_bytes(p, b);
  MD_EXPECT_ERROR(mdiff::data::read_idx(p), "bad.idx", "magic");

  b = good;
  b[2] = 0x0A;
  write_bytes(p, b);
  MD_EXPECT_ERROR(mdiff::data::read_idx(p), "bad.idx", "type code 0x0A");

  b = good;
  b[3] = 0;
  write_bytes(p, b);
  MD_EXPECT_ERROR(mdiff::data::read_idx(p), "0 dimensions", "1 to 8");
  b[3] = 9;
  write_bytes(p, b);
  MD_EXPECT_ERROR(mdiff::data::read_idx(p), "9 dimensions");

  b = good;
  b.pop_back();
  write_bytes(p, b);
  MD_EXPECT_ERROR(mdiff::data::read_idx(p), "bad.idx", "truncated", "needs 12 data bytes, got 11");
  write_gz(p, b);
  MD_EXPECT_ERROR(mdiff::data::read_idx(p), "truncated", "needs 12 data bytes, got 11");

  b = good;
  b.push_back(7);
  b.push_back(7);
  write_bytes(p, b);
  MD_EXPECT_ERROR(mdiff::data::read_idx(p), "bad.idx", "trailing", "needs 12 data bytes, got 14");

  write_bytes(p, {0, 0, 8});
  MD_EXPECT_ERROR(mdiff::data::read_idx(p), "too short");
  write_bytes(p, {0, 0, 8, 3, 0, 0, 0, 1});
  MD_EXPECT_ERROR(mdiff::data::read_idx(p), "truncated in its header");

  // Sizes whose product overflows 64 bits, or exceeds the element limit, fail before allocating.
  write_bytes(p, idx_header(0x0E, {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}));
  MD_EXPECT_ERROR(mdiff::data::read_idx(p), "exceeds the limit", "2147483648");
  write_bytes(p, idx_header(0x08, {65536, 65536}));
  MD_EXPECT_ERROR(mdiff::data::read_idx(p), "more than the limit");
  write_bytes(p, idx_header(0x08, {100}));
  MD_EXPECT_ERROR(mdiff::data::read_idx(p, mdiff::data::IdxOptions().max_elements(50)), "exceeds the limit of 50");

  // A gzip magic followed by garbage.
  write_bytes(p, {0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13});
  MD_EXPECT_ERROR(mdiff::data::read_idx(p), "bad.idx");
}

std::vector<uint8_t> gzip_bytes(const std::vector<uint8_t>& raw) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::vector<uint8_t> out(deflateBound(&zs, static_cast<uLong>(raw.size())) + 32);
  zs.next_in = const_cast<Bytef*>(raw.data());
  zs.avail_in = static_cast<uInt>(raw.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

TEST(DataIdx, DecodesBytesInMemoryLikeFiles) {
  const at::Tensor t = at::arange(-6, 6, at::kShort).mul(1000).reshape({2, 3, 2});
  const std::vector<uint8_t> plain = idx_bytes(t, 0x0B);
  EXPECT_TRUE(at::equal(mdiff::data::decode_idx(plain), t));
  EXPECT_TRUE(at::equal(mdiff::data::decode_idx(gzip_bytes(plain)), t));
  // Two gzip members, split inside the data, are read in turn (as gzread does for files).
  const std::vector<uint8_t> head(plain.begin(), plain.begin() + 9);
  const std::vector<uint8_t> tail(plain.begin() + 9, plain.end());
  std::vector<uint8_t> two = gzip_bytes(head);
  const std::vector<uint8_t> second = gzip_bytes(tail);
  two.insert(two.end(), second.begin(), second.end());
  EXPECT_TRUE(at::equal(mdiff::data::decode_idx(two), t));

  std::vector<uint8_t> b = plain;
  b.pop_back();
  MD_EXPECT_ERROR(mdiff::data::decode_idx(b), "<memory>", "truncated", "needs 24 data bytes, got 23");
  MD_EXPECT_ERROR(mdiff::data::decode_idx(gzip_bytes(b)), "<memory>", "truncated", "needs 24 data bytes, got 23");
  std::vector<uint8_t> cut = gzip_bytes(plain);
  cut.resize(cut.size() - 6);
  MD_EXPECT_ERROR(mdiff::data::decode_idx(cut), "gzip stream is truncated");
  std::vector<uint8_t> junk = gzip_bytes(plain);
  junk.push_back(0);
  junk.push_back(1);
  MD_EXPECT_ERROR(mdiff::data::decode_idx(junk), "2 bytes of garbage after the gzip stream");
  MD_EXPECT_ERROR(mdiff::data::decode_idx(nullptr, 3), "data is null but size is 3");
  MD_EXPECT_ERROR(mdiff::data::decode_idx(std::vector<uint8_t>{}), "too short");
}

// A header that promises 2^31 float64 elements over a few bytes of data must fail without
// allocating the 16 GiB it describes, plain or gzip-compressed: the data's size is checked (plain)
// or the buffer grows with what actually arrives (gzip).
TEST(DataIdx, AHugeHeaderOverShortDataFailsWithoutAllocatingIt) {
  std::vector<uint8_t> b = idx_header(0x0E, {2, 1024, 1024, 1024});
  for (int i = 0; i < 64; ++i) b.push_back(static_cast<uint8_t>(i));
  const auto opts = mdiff::data::IdxOptions().max_elements(int64_t{1} << 31);
  MD_EXPECT_ERROR(mdiff::data::decode_idx(b, opts), "truncated", "needs 17179869184 data bytes, got 64");
  MD_EXPECT_ERROR(mdiff::data::decode_idx(gzip_bytes(b), opts), "truncated", "needs 17179869184 data bytes, got 64");
  TempDir dir;
  write_bytes(dir.file("huge.idx"), b);
  MD_EXPECT_ERROR(mdiff::data::read_idx(dir.file("huge.idx"), opts), "huge.idx", "truncated", "got 64");
  write_gz(dir.file("huge.idx.gz"), b);
  MD_EXPECT_ERROR(mdiff::data::read_idx(dir.file("huge.idx.gz"), opts), "huge.idx.gz", "truncated", "got 64");
}

TEST(DataIdx, ValidationSplitIsSeedStableAndDisjoint) {
  mdiff::data::LabeledImages d;
  d.images = at::arange(0, 100, at::kFloat).reshape({100, 1, 1, 1});
  d.labels = at::arange(0, 100, at::kLong);
  const auto a = mdiff::data::validation_split(d, 0.2, 5);
  const auto b = mdiff::data::validation_split(d, 0.2, 5);
  const auto c = mdiff::data::validation_split(d, 0.2, 6);
  EXPECT_EQ(a.validation.size(), 20);
  EXPECT_EQ(a.train.size(), 80);
  EXPECT_TRUE(at::equal(a.validation.labels, b.validation.labels));
  EXPECT_FALSE(at::equal(a.validation.labels, c.validation.labels));
  const at::Tensor all = std::get<0>(at::sort(at::cat({a.train.labels, a.validation.labels})));
  EXPECT_TRUE(at::equal(all, d.labels));
  EXPECT_TRUE(at::equal(a.validation.images.flatten().to(at::kLong), a.validation.labels));
  EXPECT_EQ(mdiff::data::validation_split(d, 0.0, 1).validation.size(), 0);
  MD_EXPECT_ERROR(mdiff::data::validation_split(d, 1.5, 1), "fraction", "1.5");
}

TEST(DataIdx, FashionMnistErrors) {
  TempDir dir;
  MD_EXPECT_ERROR(mdiff::data::load_fashion_mnist(dir.file(""), "valid"), "split", "valid");
  MD_EXPECT_ERROR(mdiff::data::load_fashion_mnist(dir.file("nowhere"), "test"),
                  "nowhere/t10k-images-idx3-ubyte.gz");
}

TEST(DataIdx, FashionMnistTestSplit) {
  if (!std::filesystem::exists(mdiff::data::kFashionMnistDir)) {
    GTEST_SKIP() << "no Fashion-MNIST at " << mdiff::data::kFashionMnistDir;
  }
  const auto test = mdiff::data::load_fashion_mnist(mdiff::data::kFashionMnistDir, "test");
  EXPECT_EQ(test.images.sizes(), (std::vector<int64_t>{10000, 1, 28, 28}));
  EXPECT_EQ(test.images.scalar_type(), at::kFloat);
  EXPECT_EQ(test.labels.sizes(), (std::vector<int64_t>{10000}));
  EXPECT_EQ(test.labels.scalar_type(), at::kLong);
  EXPECT_GE(test.images.min().item<float>(), -1.0f);
  EXPECT_LE(test.images.max().item<float>(), 1.0f);
  EXPECT_EQ(test.images.min().item<float>(), -1.0f);
  EXPECT_EQ(test.images.max().item<float>(), 1.0f);
  const at::Tensor counts = at::bincount(test.labels);
  EXPECT_EQ(counts.size(0), 10);
  EXPECT_TRUE(at::equal(counts, at::full({10}, 1000, at::kLong)));
}

}  // namespace

TEST(FashionMnistClasses, NamesAndLookup) {
  const auto& c = mdiff::data::fashion_mnist_classes();
  ASSERT_EQ(c.size(), 10u);
  EXPECT_EQ(mdiff::data::class_index(c, "ankle boot"), 9);
  EXPECT_EQ(mdiff::data::class_index(c, "Ankle_Boot"), 9);
  EXPECT_EQ(mdiff::data::class_index(c, "T-shirt"), 0);
  EXPECT_EQ(mdiff::data::class_index(c, "sneaker"), 7);
  MD_EXPECT_ERROR(mdiff::data::class_index(c, "s"), "ambiguous", "'s'");
  MD_EXPECT_ERROR(mdiff::data::class_index(c, "hat"), "unknown class name 'hat'", "ankle boot");
}
