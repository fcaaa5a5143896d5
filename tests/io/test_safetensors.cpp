#include <manifold_diffusion/core/file.h>
#include <manifold_diffusion/io/safetensors.h>
#include <manifold_diffusion/models/ema.h>
#include <manifold_diffusion/models/unet.h>

#include "data/data_test_util.h"
#include "test_util.h"
#include "md_test_paths.h"

#include <ATen/ATen.h>

#include <cstring>
#include <string>
#include <vector>

namespace {

namespace mio = mdiff::io;
using Bytes = std::vector<uint8_t>;
using mdiff_test::TempDir;

// A file from a header text and `data_size` data bytes (0, 1, 2, ...).
Bytes file_of(const std::string& header, size_t data_size, uint64_t claimed_length = UINT64_MAX) {
  const uint64_t n = claimed_length == UINT64_MAX ? header.size() : claimed_length;
  Bytes b;
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(n >> (8 * i)));
  b.insert(b.end(), header.begin(), header.end());
  for (size_t i = 0; i < data_size; ++i) b.push_back(static_cast<uint8_t>(i));
  return b;
}

bool bit_equal(const at::Tensor& a, const at::Tensor& b) {
  // memcmp must not see the null data pointer of an empty tensor.
  return a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes() &&
         (a.numel() == 0 ||
          std::memcmp(a.contiguous().data_ptr(), b.contiguous().data_ptr(), a.numel() * a.element_size()) == 0);
}

TEST(Safetensors, RoundTripEveryDtypeBitExact) {
  at::manual_seed(0);
  // Values that a lossy path would change: NaN, infinities, denormals, -0, extreme integers.
  at::Tensor f32 = at::randn({3, 4});
  f32[0][0] = std::numeric_limits<float>::quiet_NaN();
  f32[0][1] = -std::numeric_limits<float>::infinity();
  f32[0][2] = -0.0f;
  f32[0][3] = std::numeric_limits<float>::denorm_min();
  const mio::TensorList tensors{
      {"f32", f32},
      {"f16", at::randn({5}).to(at::kHalf)},
      {"bf16", at::randn({2, 2, 2}).to(at::kBFloat16)},
      {"f64", at::randn({7}, at::kDouble) * 1e300},
      {"i64", at::tensor({std::numeric_limits<int64_t>::min(), int64_t{-1}, int64_t{0},
                          std::numeric_limits<int64_t>::max()})},
      {"i32", at::tensor({std::numeric_limits<int32_t>::min(), -1, 0, std::numeric_limits<int32_t>::max()})},
      {"i16", at::tensor({-32768, -1, 0, 32767}).to(at::kShort)},
      {"i8", at::tensor({-128, -1, 0, 127}).to(at::kChar)},
      {"u8", at::tensor({0, 1, 128, 255}).to(at::kByte)},
      {"bool", at::tensor({1, 0, 0, 1}).to(at::kBool)},
      {"scalar", at::scalar_tensor(3.5)},
      {"empty", at::zeros({0, 3})},
      {"strided", at::arange(12, at::kFloat).view({3, 4}).t()},  // non-contiguous: written row-major
  };
  const std::map<std::string, std::string> meta{{"format", "pt"}, {"note", "a \"quoted\" ünïcode value"}};
  const Bytes bytes = mio::encode_safetensors(tensors, meta);
  EXPECT_EQ(bytes[0] % 8, 0);  // header length padded to a multiple of 8, as the Python package does
  const mio::Safetensors st = mio::decode_safetensors(bytes);
  ASSERT_EQ(st.tensors.size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_EQ(st.tensors[i].first, tensors[i].first);  // the order given
    EXPECT_TRUE(bit_equal(st.tensors[i].second, tensors[i].second.contiguous())) << tensors[i].first;
  }
  EXPECT_EQ(st.metadata, meta);

  TempDir dir;
  mio::save_safetensors(dir.file("x.safetensors"), tensors, meta);
  const mio::Safetensors from_file = mio::load_safetensors(dir.file("x.safetensors"));
  ASSERT_EQ(from_file.tensors.size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_TRUE(bit_equal(from_file.tensors[i].second, tensors[i].second.contiguous())) << tensors[i].first;
  }
  EXPECT_EQ(from_file.metadata, meta);
  EXPECT_TRUE(from_file.contains("i64"));
  EXPECT_FALSE(from_file.contains("nope"));
  MD_EXPECT_ERROR(from_file.get("nope"), "no tensor named 'nope'");
}

TEST(Safetensors, EmptyFileAndNoMetadata) {
  const mio::Safetensors st = mio::decode_safetensors(mio::encode_safetensors({}));
  EXPECT_TRUE(st.tensors.empty());
  EXPECT_TRUE(st.metadata.empty());
}

TEST(Safetensors, EncodeRefusesBadInput) {
  MD_EXPECT_ERROR(mio::encode_safetensors({{"a", at::zeros({1})}, {"a", at::zeros({1})}}), "'a' is given twice");
  MD_EXPECT_ERROR(mio::encode_safetensors({{"", at::zeros({1})}}), "name is empty");
  MD_EXPECT_ERROR(mio::encode_safetensors({{"__metadata__", at::zeros({1})}}), "reserved");
  MD_EXPECT_ERROR(mio::encode_safetensors({{"c", at::zeros({1}, at::kComplexFloat)}}), "tensor 'c'", "ComplexFloat",
                  "not supported");
  MD_EXPECT_ERROR(mio::encode_safetensors({{"u", at::Tensor()}}), "u");
}

TEST(Safetensors, CorruptFilesGiveClearErrors) {
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  ASSERT_NO_THROW(mio::decode_safetensors(file_of(ok, 8)));

  // Truncated: fewer than 8 bytes, header cut, data cut, trailing bytes.
  MD_EXPECT_ERROR(mio::decode_safetensors(Bytes{1, 2, 3}), "too short for the 8-byte header length");
  Bytes cut = file_of(ok, 8);
  cut.resize(20);
  MD_EXPECT_ERROR(mio::decode_safetensors(cut), "header length", "truncated");
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(ok, 6)), "out of range");
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(ok, 12)), "cover 8 bytes", "holds 12");
  // Header length beyond the file, and beyond the limit (checked before allocating).
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(ok, 8, uint64_t{1} << 62)), "exceeds the limit of 100000000");
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(ok, 8, 1000)), "header length 1000 is larger than");
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(ok, 8), mio::SafetensorsReadOptions().max_header_bytes(16)),
                  "exceeds the limit of 16");
  // Bad JSON, not an object, duplicate names.
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(R"({"a":{"dtype":"F32")", 0)), "not valid JSON");
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of("[1, 2]", 0)), "must be a JSON object");
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(std::string("{\"\xff\":1}"), 0)), "not valid JSON");
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(
                      R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                      8)),
                  "key 'a' twice");
  // Missing and malformed fields.
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(R"({"a":{"dtype":"F32","shape":[2]}})", 8)), "tensor 'a'",
                  "missing 'data_offsets'");
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", 8)), "missing 'dtype'");
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", 8)), "missing 'shape'");
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(R"({"a":[1]})", 8)), "tensor 'a'", "expected an object");
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8)),
                  "non-negative integers");
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8)),
                  "non-negative integers");
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8)),
                  "data_offsets must be two");
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8)),
                  "end before they begin");
  MD_EXPECT_ERROR(
      mio::decode_safetensors(file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", 8)),
      "unknown field 'x'");
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(R"({"__metadata__":{"k":1}})", 0)), "value of 'k' must be a string");
  // Unknown dtype: named with the tensor.
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", 2)),
                  "tensor 'w'", "\"F8_E4M3\" is not supported", "F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL");
  // A BOOL byte other than 0 or 1 (the data bytes are 0, 1, 2).
  ASSERT_NO_THROW(mio::decode_safetensors(file_of(R"({"b":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})", 2)));
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(R"({"b":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})", 3)),
                  "BOOL tensor 'b'", "byte 2 at element 2");
  // Offsets out of range, size mismatch, overflow.
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", 8)),
                  "tensor 'a'", "out of range");
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)),
                  "span 8 bytes", "needs 12");
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(
                      R"({"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8)),
                  "overflows 64 bits");
  MD_EXPECT_ERROR(mio::decode_safetensors(
                      file_of(R"({"a":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]}})", 8)),
                  "overflows 64 bits");
  // No elements, but strides that overflow: [0, 2^62, 4].
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(
                      R"({"a":{"dtype":"F32","shape":[0,4611686018427387904,4],"data_offsets":[0,0]}})", 0)),
                  "overflows 64 bits");
  // Overlapping tensors, and a gap between them.
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(
                      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                      12)),
                  "tensor 'b'", "overlap");
  MD_EXPECT_ERROR(mio::decode_safetensors(file_of(
                      R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                      12)),
                  "tensor 'b'", "gap");
  // Out of order in the header is fine when the offsets tile the buffer: the result is in data order.
  const mio::Safetensors st = mio::decode_safetensors(file_of(
      R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8));
  ASSERT_EQ(st.tensors.size(), 2u);
  EXPECT_EQ(st.tensors[0].first, "a");
  EXPECT_EQ(st.tensors[1].first, "b");
}

TEST(Safetensors, FileErrorsNameTheFile) {
  TempDir dir;
  MD_EXPECT_ERROR(mio::load_safetensors(dir.file("missing.safetensors")), "missing.safetensors", "cannot open");
  mdiff_test::write_bytes(dir.file("bad.safetensors"),
                          file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8, uint64_t{1} << 40));
  MD_EXPECT_ERROR(mio::load_safetensors(dir.file("bad.safetensors")), "bad.safetensors", "exceeds the limit");
  mdiff_test::write_bytes(dir.file("short.safetensors"),
                          file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4));
  MD_EXPECT_ERROR(mio::load_safetensors(dir.file("short.safetensors")), "short.safetensors", "out of range");
  MD_EXPECT_ERROR(mio::save_safetensors(dir.file("nodir/x.safetensors"), {{"a", at::zeros({1})}}), "x.safetensors");
}

TEST(Safetensors, ModuleAndEmaState) {
  TempDir dir;
  mdiff::UNet a(mdiff::UNetOptions(1, 1).base_channels(8).channel_mult({1}).num_res_blocks(1).norm_groups(4)
                    .zero_init_output(false));
  mdiff::UNet b(mdiff::UNetOptions(1, 1).base_channels(8).channel_mult({1}).num_res_blocks(1).norm_groups(4)
                    .zero_init_output(false));
  mio::save_module_safetensors(dir.file("a.safetensors"), *a, {{"step", "7"}});
  const auto meta = mio::load_module_safetensors(dir.file("a.safetensors"), *b);
  EXPECT_EQ(meta.at("step"), "7");
  EXPECT_EQ(meta.at("format"), "pt");
  a->eval();
  b->eval();
  const at::Tensor x = at::randn({2, 1, 8, 8});
  const at::Tensor t = at::tensor({3, 500});
  EXPECT_TRUE(at::equal(a(x, t), b(x, t)));

  mdiff::EMA ema(*a);
  {
    at::NoGradGuard g;
    for (auto& p : a->parameters()) p.add_(1.0);
  }
  ema.update(*a);  // with warm-up, decay 0 at the first update: the shadow now equals a
  mio::save_ema_safetensors(dir.file("ema.safetensors"), ema);
  mio::load_module_safetensors(dir.file("ema.safetensors"), *b);
  ema.copy_to(*a);
  EXPECT_TRUE(at::equal(a(x, t), b(x, t)));

  mdiff::UNet other(mdiff::UNetOptions(1, 1).base_channels(8).channel_mult({1, 1}).num_res_blocks(1).norm_groups(4));
  MD_EXPECT_ERROR(mio::load_module_safetensors(dir.file("a.safetensors"), *other), "a.safetensors");
}

TEST(Safetensors, ReadsAFileWrittenByPython) {
  // tests/golden/make_golden.py writes it with the safetensors package (safetensors.torch.save_file).
  const mio::Safetensors st = mio::load_safetensors(std::string(MD_TEST_GOLDEN_DIR) + "/python.safetensors");
  EXPECT_EQ(st.metadata.at("written_by"), "safetensors.torch.save_file");
  EXPECT_TRUE(at::equal(st.get("f32"), at::arange(6, at::kFloat).view({2, 3}) / 4));
  EXPECT_TRUE(at::equal(st.get("f64"), at::arange(3, at::kDouble) - 1.5));
  EXPECT_TRUE(at::equal(st.get("f16"), (at::arange(4, at::kFloat) / 8).to(at::kHalf)));
  EXPECT_TRUE(at::equal(st.get("bf16"), (at::arange(4, at::kFloat) * -3).to(at::kBFloat16)));
  EXPECT_TRUE(at::equal(st.get("i64"), at::tensor({-(int64_t{1} << 40), int64_t{0}, int64_t{7}})));
  EXPECT_EQ(st.get("scalar").dim(), 0);
  EXPECT_EQ(st.get("scalar").item<float>(), 2.5f);
  EXPECT_EQ(st.get("empty").sizes(), at::IntArrayRef({0, 2}));
  // Ours encodes the same tensors and metadata to the same bytes when given in the same order.
  const std::vector<uint8_t> original = mdiff::read_file_bytes(std::string(MD_TEST_GOLDEN_DIR) + "/python.safetensors");
  EXPECT_EQ(mio::encode_safetensors(st.tensors, st.metadata).size(), original.size());
}

}  // namespace
