#include <manifold_diffusion/core/file.h>
#include <manifold_diffusion/data/point_cloud.h>

#include "data/data_test_util.h"
#include "test_util.h"

#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace {

using mdiff_test::TempDir;
using mdiff_test::write_bytes;
using mdiff_test::write_text;

// An .npy file with the given version and header text (padded as numpy pads it) and `data_bytes`
// zero bytes of data.
void write_npy_raw(const std::string& path, const std::string& dict, size_t data_bytes, int major = 1) {
  const size_t prefix = major == 1 ? 10 : 12;
  std::string header = dict;
  const size_t total = (prefix + header.size() + 1 + 63) / 64 * 64;
  header.append(total - prefix - header.size() - 1, ' ');
  header.push_back('\n');
  std::vector<uint8_t> b = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(major), 0};
  for (size_t i = 0; i < prefix - 8; ++i) b.push_back(static_cast<uint8_t>((header.size() >> (8 * i)) & 0xff));
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data_bytes, 0);
  write_bytes(path, b);
}

TEST(DataPointCloud, CsvWithAndWithoutHeader) {
  TempDir dir;
  write_text(dir.file("a.csv"), "x,y,z\n1,2,3\r\n 4.5 , -6e-1,7\n\n");
  const at::Tensor a = mdiff::data::read_csv_points(dir.file("a.csv"));
  EXPECT_EQ(a.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::allclose(a, at::tensor({1.0, 2.0, 3.0, 4.5, -0.6, 7.0}, at::kFloat).reshape({2, 3})));
  write_text(dir.file("b.csv"), "0.125;1\n2;3\n");
  const at::Tensor b =
      mdiff::data::read_csv_points(dir.file("b.csv"), mdiff::data::CsvOptions().dtype(at::kDouble).delimiter(';'));
  EXPECT_EQ(b.scalar_type(), at::kDouble);
  EXPECT_TRUE(at::equal(b, at::tensor({0.125, 1.0, 2.0, 3.0}, at::kDouble).reshape({2, 2})));
}

TEST(DataPointCloud, CsvErrorsNameLineAndColumn) {
  TempDir dir;
  const std::string p = dir.file("bad.csv");
  write_text(p, "x,y\n1,2\n3,abc\n");
  MD_EXPECT_ERROR(mdiff::data::read_csv_points(p), "bad.csv", "line 3, column 2", "'abc' is not a number");
  write_text(p, "1,2\n3,4,5\n");
  MD_EXPECT_ERROR(mdiff::data::read_csv_points(p), "line 2 has 3 columns; expected 2");
  write_text(p, "a,b\nc,d\n");
  MD_EXPECT_ERROR(mdiff::data::read_csv_points(p), "line 2, column 1", "'c'");
  write_text(p, "1,2\n3,\n");
  MD_EXPECT_ERROR(mdiff::data::read_csv_points(p), "line 2, column 2", "'' is not a number");
  write_text(p, "1,2\n3,nan\n");
  MD_EXPECT_ERROR(mdiff::data::read_csv_points(p), "line 2, column 2", "not finite");
  write_text(p, "x,y\n");
  MD_EXPECT_ERROR(mdiff::data::read_csv_points(p), "no data rows");
  MD_EXPECT_ERROR(mdiff::data::read_csv_points(dir.file("absent.csv")), "absent.csv");
  MD_EXPECT_ERROR(mdiff::data::read_csv_points(p, mdiff::data::CsvOptions().dtype(at::kInt)), "dtype");
  write_text(p, "1,2\n3,1e300\n");
  MD_EXPECT_ERROR(mdiff::data::read_csv_points(p), "line 2, column 2", "does not fit in float32");
  EXPECT_EQ(mdiff::data::read_csv_points(p, mdiff::data::CsvOptions().dtype(at::kDouble))[1][1].item<double>(), 1e300);
  MD_EXPECT_ERROR(mdiff::data::read_csv_points(p, mdiff::data::CsvOptions().delimiter('\n')), "delimiter", "code 10");
  MD_EXPECT_ERROR(mdiff::data::read_csv_points(p, mdiff::data::CsvOptions().delimiter('5')), "delimiter", "code 53");
}

TEST(DataPointCloud, CsvAndNpyDecodeFromMemory) {
  const at::Tensor a = mdiff::data::parse_csv_points("x,y\n0.5,1\n2,3\n");
  EXPECT_TRUE(at::equal(a, at::tensor({0.5f, 1.0f, 2.0f, 3.0f}).reshape({2, 2})));
  MD_EXPECT_ERROR(mdiff::data::parse_csv_points("1,2\n3,x\n"), "<memory> line 2, column 2", "'x' is not a number");
  MD_EXPECT_ERROR(mdiff::data::parse_csv_points(""), "<memory> holds no data rows");

  TempDir dir;
  const at::Tensor t = at::randn({3, 4}, at::kDouble);
  mdiff::data::write_npy(dir.file("t.npy"), t);
  const std::vector<uint8_t> bytes = mdiff::read_file_bytes(dir.file("t.npy"));
  EXPECT_TRUE(at::equal(mdiff::data::decode_npy(bytes), t));
  std::vector<uint8_t> cut(bytes.begin(), bytes.end() - 8);
  MD_EXPECT_ERROR(mdiff::data::decode_npy(cut), "<memory>", "needs 96 data bytes, the file holds 88");
  MD_EXPECT_ERROR(mdiff::data::decode_npy(std::vector<uint8_t>(bytes.begin(), bytes.begin() + 9)), "too short");
  std::vector<uint8_t> long_header = bytes;
  long_header[8] = 0xff;
  long_header[9] = 0xff;
  MD_EXPECT_ERROR(mdiff::data::decode_npy(long_header), "<memory>", "declares a header of 65535 bytes");
  MD_EXPECT_ERROR(mdiff::data::decode_npy(nullptr, 4), "data is null but size is 4");
}

TEST(DataPointCloud, NpyRoundTrip) {
  TempDir dir;
  const at::Tensor shapes[] = {at::randn({5, 3}, at::kFloat), at::randn({7}, at::kDouble),
                               at::randn({2, 3, 4}, at::kDouble).transpose(0, 2), at::zeros({0, 3}, at::kFloat),
                               at::full({}, 2.5, at::kDouble)};
  for (const at::Tensor& t : shapes) {
    mdiff::data::write_npy(dir.file("t.npy"), t);
    const at::Tensor r = mdiff::data::read_npy(dir.file("t.npy"));
    EXPECT_EQ(r.scalar_type(), t.scalar_type());
    EXPECT_EQ(r.sizes(), t.sizes());
    EXPECT_TRUE(at::equal(r, t));
  }
  MD_EXPECT_ERROR(mdiff::data::write_npy(dir.file("i.npy"), at::zeros({2}, at::kInt)), "float32 or float64");
}

TEST(DataPointCloud, NpyHandWritten) {
  TempDir dir;
  // What numpy 1.x writes for np.arange(6, dtype='<f8').reshape(2, 3), version 1.0 and 2.0.
  for (int major : {1, 2}) {
    const std::string p = dir.file("h.npy");
    std::string dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }";
    const size_t prefix = major == 1 ? 10 : 12;
    std::string header = dict;
    header.append((prefix + header.size() + 1 + 63) / 64 * 64 - prefix - header.size() - 1, ' ');
    header.push_back('\n');
    std::vector<uint8_t> b = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(major), 0};
    for (size_t i = 0; i < prefix - 8; ++i) b.push_back(static_cast<uint8_t>((header.size() >> (8 * i)) & 0xff));
    b.insert(b.end(), header.begin(), header.end());
    for (int i = 0; i < 6; ++i) {
      const double v = i;
      const auto* vb = reinterpret_cast<const uint8_t*>(&v);
      b.insert(b.end(), vb, vb + 8);
    }
    write_bytes(p, b);
    const at::Tensor r = mdiff::data::read_npy(p);
    EXPECT_TRUE(at::equal(r, at::arange(6, at::kDouble).reshape({2, 3})));
  }
  // Double quotes, no trailing comma, other key order.
  write_npy_raw(dir.file("q.npy"), "{\"shape\": (4,), \"fortran_order\": False, \"descr\": \"<f4\"}", 16);
  EXPECT_EQ(mdiff::data::read_npy(dir.file("q.npy")).sizes(), (std::vector<int64_t>{4}));
}

TEST(DataPointCloud, NpyRejectsMalformedFiles) {
  TempDir dir;
  const std::string p = dir.file("bad.npy");
  auto dict = [](const std::string& descr, const std::string& fortran, const std::string& shape) {
    return "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': " + shape + ", }";
  };
  write_npy_raw(p, dict(">f4", "False", "(2,)"), 8);
  MD_EXPECT_ERROR(mdiff::data::read_npy(p), "bad.npy", "big-endian");
  write_npy_raw(p, dict("<f4", "True", "(2, 2)"), 16);
  MD_EXPECT_ERROR(mdiff::data::read_npy(p), "Fortran order");
  write_npy_raw(p, dict("|O", "False", "(2,)"), 16);
  MD_EXPECT_ERROR(mdiff::data::read_npy(p), "Python objects");
  write_npy_raw(p, dict("<i4", "False", "(2,)"), 8);
  MD_EXPECT_ERROR(mdiff::data::read_npy(p), "unsupported dtype '<i4'");
  write_npy_raw(p, dict("<f4", "False", "(2, 3)"), 20);
  MD_EXPECT_ERROR(mdiff::data::read_npy(p), "needs 24 data bytes, the file holds 20");
  write_npy_raw(p, dict("<f4", "False", "(2, 3)"), 28);
  MD_EXPECT_ERROR(mdiff::data::read_npy(p), "needs 24 data bytes, the file holds 28");
  write_npy_raw(p, dict("<f4", "False", "(4294967296, 4294967296, 4294967296)"), 0);
  MD_EXPECT_ERROR(mdiff::data::read_npy(p), "more than");
  write_npy_raw(p, dict("<f4", "False", "(2, -3)"), 0);
  MD_EXPECT_ERROR(mdiff::data::read_npy(p), "malformed header");
  write_npy_raw(p, "{'descr': '<f4', 'shape': (2,), }", 8);
  MD_EXPECT_ERROR(mdiff::data::read_npy(p), "missing key 'fortran_order'");
  write_npy_raw(p, "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }", 8);
  MD_EXPECT_ERROR(mdiff::data::read_npy(p), "True or False");
  write_npy_raw(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}", 8);
  MD_EXPECT_ERROR(mdiff::data::read_npy(p), "unexpected key 'extra'");
  write_npy_raw(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", 8);
  MD_EXPECT_ERROR(mdiff::data::read_npy(p), "malformed header");
  write_npy_raw(p, dict("<f4", "False", "(2,)"), 8, 3);
  MD_EXPECT_ERROR(mdiff::data::read_npy(p), "version 3.0");
  // A header length that points past the end of the file, and one beyond the limit.
  write_bytes(p, {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0xff, 0x7f, '{', '}'});
  MD_EXPECT_ERROR(mdiff::data::read_npy(p), "only 12 bytes");
  write_bytes(p, {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, 0xff, 0xff, 0xff, 0x7f, '{', '}'});
  MD_EXPECT_ERROR(mdiff::data::read_npy(p), "the limit is");
  write_bytes(p, {'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0, 0, 0});
  MD_EXPECT_ERROR(mdiff::data::read_npy(p), "bad magic");
  write_bytes(p, {0x93, 'N'});
  MD_EXPECT_ERROR(mdiff::data::read_npy(p), "too short");
  MD_EXPECT_ERROR(mdiff::data::read_npy(dir.file("absent.npy")), "absent.npy");
}

}  // namespace
