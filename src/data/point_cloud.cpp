#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/data/point_cloud.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace manifold_diffusion {
namespace data {
namespace {

constexpr size_t kMaxNpyHeader = size_t{1} << 20;
constexpr int64_t kMaxNpyDims = 32;
constexpr int64_t kMaxNpyElements = int64_t{1} << 40;
constexpr char kNpyMagic[] = "\x93NUMPY";

std::string trim(const std::string& s) {
  size_t a = 0;
  size_t b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return s.substr(a, b - a);
}

bool parse_double(const std::string& field, double* out) {
  const std::string t = trim(field);
  if (t.empty()) return false;
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(t.c_str(), &end);
  if (end != t.c_str() + t.size()) return false;
  *out = v;
  return true;
}

std::vector<std::string> split_fields(const std::string& line, char delim) {
  std::vector<std::string> fields;
  size_t start = 0;
  while (true) {
    const size_t pos = line.find(delim, start);
    if (pos == std::string::npos) {
      fields.push_back(line.substr(start));
      break;
    }
    fields.push_back(line.substr(start, pos - start));
    start = pos + 1;
  }
  return fields;
}

uint64_t little_endian(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

bool host_is_little_endian() {
  const uint16_t one = 1;
  unsigned char first = 0;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

// The Python-literal dict of an .npy header: {'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }
class NpyHeaderParser {
 public:
  NpyHeaderParser(const std::string& text, const std::string& path) : s_(text), path_(path) {}

  void parse(std::string* descr, bool* fortran, std::vector<int64_t>* shape) {
    bool have_descr = false;
    bool have_fortran = false;
    bool have_shape = false;
    expect('{');
    while (true) {
      skip_space();
      if (peek() == '}') break;
      const std::string key = parse_string();
      expect(':');
      if (key == "descr") {
        *descr = parse_string();
        have_descr = true;
      } else if (key == "fortran_order") {
        *fortran = parse_bool();
        have_fortran = true;
      } else if (key == "shape") {
        *shape = parse_shape();
        have_shape = true;
      } else {
        fail("unexpected key '" + key + "'");
      }
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      skip_space();
      if (peek() != '}') fail("expected ',' or '}'");
    }
    ++pos_;
    skip_space();
    if (pos_ != s_.size()) fail("unexpected text after the closing '}'");
    if (!have_descr) fail("missing key 'descr'");
    if (!have_fortran) fail("missing key 'fortran_order'");
    if (!have_shape) fail("missing key 'shape'");
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    C10_THROW_ERROR(ValueError, "read_npy: " + path_ + " has a malformed header (" + what + " at offset " +
                                    std::to_string(pos_) + "): " + s_);
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t')) ++pos_;
  }
  void expect(char c) {
    skip_space();
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  std::string parse_string() {
    skip_space();
    const char quote = peek();
    if (quote != '\'' && quote != '"') fail("expected a quoted string");
    const size_t end = s_.find(quote, pos_ + 1);
    if (end == std::string::npos) fail("unterminated string");
    std::string out = s_.substr(pos_ + 1, end - pos_ - 1);
    pos_ = end + 1;
    return out;
  }
  bool parse_bool() {
    skip_space();
    if (s_.compare(pos_, 4, "True") == 0) {
      pos_ += 4;
      return true;
    }
    if (s_.compare(pos_, 5, "False") == 0) {
      pos_ += 5;
      return false;
    }
    fail("expected True or False");
  }
  std::vector<int64_t> parse_shape() {
    std::vector<int64_t> shape;
    expect('(');
    while (true) {
      skip_space();
      if (peek() == ')') break;
      if (!std::isdigit(static_cast<unsigned char>(peek()))) fail("expected a non-negative integer in the shape");
      int64_t v = 0;
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        if (v > (kMaxNpyElements - 9) / 10) fail("shape entry too large");
        v = v * 10 + (s_[pos_] - '0');
        ++pos_;
      }
      shape.push_back(v);
      if (static_cast<int64_t>(shape.size()) > kMaxNpyDims) fail("more than 32 dimensions");
      skip_space();
      if (peek() == ',') {
        ++pos_;
      } else if (peek() != ')') {
        fail("expected ',' or ')' in the shape");
      }
    }
    ++pos_;
    return shape;
  }

  const std::string& s_;
  const std::string& path_;
  size_t pos_ = 0;
};

}  // namespace

namespace {

void check_csv_options(const CsvOptions& options) {
  MD_CHECK_TYPE(options.dtype() == at::kFloat || options.dtype() == at::kDouble,
                "read_csv_points: dtype must be float32 or float64, got ", options.dtype());
  const auto d = static_cast<unsigned char>(options.delimiter());
  MD_CHECK_VALUE(d != '\n' && d != '\r' && d != '\0' && !std::isdigit(d) && d != '.' && d != '-' && d != '+',
                 "read_csv_points: delimiter must not be a line break, NUL, digit, '.', '-' or '+', got code ",
                 static_cast<int>(d));
}

// The rows of a CSV stream; `where` names the source in errors ("'path'" or "<memory>").
at::Tensor parse_csv_stream(std::istream& in, const std::string& where, const CsvOptions& options) {
  std::vector<double> values;
  int64_t columns = -1;
  int64_t rows = 0;
  int64_t line_no = 0;
  bool first_content_line = true;
  std::string line;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (trim(line).empty()) continue;
    const std::vector<std::string> fields = split_fields(line, options.delimiter());
    std::vector<double> row(fields.size());
    size_t bad = fields.size();
    for (size_t c = 0; c < fields.size(); ++c) {
      if (!parse_double(fields[c], &row[c])) {
        bad = c;
        break;
      }
    }
    if (first_content_line) {
      first_content_line = false;
      if (bad != fields.size()) continue;  // a header line
    }
    MD_CHECK_VALUE(bad == fields.size(), "read_csv_points: ", where, " line ", line_no, ", column ", bad + 1, ": '",
                   trim(fields[bad]), "' is not a number");
    if (columns < 0) columns = static_cast<int64_t>(fields.size());
    MD_CHECK_VALUE(static_cast<int64_t>(fields.size()) == columns, "read_csv_points: ", where, " line ", line_no,
                   " has ", fields.size(), " columns; expected ", columns, " like the first data line");
    for (size_t c = 0; c < row.size(); ++c) {
      MD_CHECK_VALUE(std::isfinite(row[c]), "read_csv_points: ", where, " line ", line_no, ", column ", c + 1,
                     ": value ", row[c], " is not finite");
      MD_CHECK_VALUE(options.dtype() != at::kFloat || std::fabs(row[c]) <= std::numeric_limits<float>::max(),
                     "read_csv_points: ", where, " line ", line_no, ", column ", c + 1, ": value ", row[c],
                     " does not fit in float32 (use CsvOptions().dtype(at::kDouble))");
    }
    values.insert(values.end(), row.begin(), row.end());
    ++rows;
  }
  MD_CHECK_VALUE(rows > 0, "read_csv_points: ", where, " holds no data rows");
  return at::tensor(values, at::kDouble).reshape({rows, columns}).to(options.dtype());
}

}  // namespace

at::Tensor read_csv_points(const std::string& path, const CsvOptions& options) {
  check_csv_options(options);
  std::ifstream in(path);
  MD_CHECK(in.good(), "read_csv_points: cannot open '", path, "'");
  return parse_csv_stream(in, "'" + path + "'", options);
}

at::Tensor parse_csv_points(const std::string& text, const CsvOptions& options) {
  check_csv_options(options);
  std::istringstream in(text);
  return parse_csv_stream(in, "<memory>", options);
}

namespace {

// A random-access byte source of known size: a file or a buffer in memory.
struct NpySource {
  std::string where;  // "'path'" or "<memory>"
  int64_t size = 0;
  std::function<bool(int64_t offset, void* dst, size_t n)> read_at;
};

at::Tensor read_npy_from(const NpySource& src) {
  const std::string& where = src.where;
  const int64_t file_size = src.size;
  unsigned char pre[8];
  MD_CHECK_VALUE(file_size >= 10 && src.read_at(0, pre, 8), "read_npy: ", where,
                 " is too short for an .npy header (", file_size, " bytes)");
  MD_CHECK_VALUE(std::memcmp(pre, kNpyMagic, 6) == 0, "read_npy: ", where, " is not an .npy file (bad magic)");
  const int major = pre[6];
  const int minor = pre[7];
  MD_CHECK_VALUE((major == 1 || major == 2) && minor == 0, "read_npy: ", where, " has .npy format version ", major,
                 ".", minor, "; supported: 1.0 and 2.0");
  const int len_bytes = major == 1 ? 2 : 4;
  unsigned char len_raw[4] = {0, 0, 0, 0};
  MD_CHECK_VALUE(file_size >= 8 + len_bytes && src.read_at(8, len_raw, static_cast<size_t>(len_bytes)), "read_npy: ",
                 where, " is truncated in its header length");
  const uint64_t header_len = little_endian(len_raw, len_bytes);
  const int64_t data_offset = 8 + len_bytes + static_cast<int64_t>(header_len);
  MD_CHECK_VALUE(header_len <= kMaxNpyHeader, "read_npy: ", where, " declares a header of ", header_len,
                 " bytes; the limit is ", kMaxNpyHeader);
  MD_CHECK_VALUE(data_offset <= file_size, "read_npy: ", where, " declares a header of ", header_len,
                 " bytes but the file has only ", file_size, " bytes");
  std::string header(static_cast<size_t>(header_len), '\0');
  MD_CHECK_VALUE(header_len == 0 || src.read_at(8 + len_bytes, &header[0], static_cast<size_t>(header_len)),
                 "read_npy: ", where, " could not read its header");
  while (!header.empty() && (header.back() == '\n' || header.back() == ' ')) header.pop_back();
  for (char c : header) {
    MD_CHECK_VALUE(c >= 0x20 && c < 0x7f, "read_npy: ", where, " has a non-ASCII or control character in its header");
  }

  std::string descr;
  bool fortran = false;
  std::vector<int64_t> shape;
  NpyHeaderParser(header, where).parse(&descr, &fortran, &shape);
  MD_CHECK_VALUE(!fortran, "read_npy: ", where, " is in Fortran order ('fortran_order': True); only C order is supported");
  at::ScalarType dtype = at::kFloat;
  int64_t width = 4;
  if (descr == "<f4") {
    dtype = at::kFloat;
  } else if (descr == "<f8") {
    dtype = at::kDouble;
    width = 8;
  } else if (!descr.empty() && descr[0] == '>') {
    MD_CHECK_TYPE(false, "read_npy: ", where, " holds big-endian data ('", descr, "'); supported: '<f4' and '<f8'");
  } else if (descr.find('O') != std::string::npos) {
    MD_CHECK_TYPE(false, "read_npy: ", where, " holds Python objects ('", descr, "'); supported: '<f4' and '<f8'");
  } else {
    MD_CHECK_TYPE(false, "read_npy: ", where, " has unsupported dtype '", descr, "'; supported: '<f4' and '<f8'");
  }

  int64_t numel = 1;
  for (int64_t d : shape) {
    MD_CHECK_VALUE(d == 0 || numel <= kMaxNpyElements / d, "read_npy: ", where, " has shape ", c10::IntArrayRef(shape),
                   " with more than ", kMaxNpyElements, " elements");
    numel *= d;
  }
  const int64_t expected = numel * width;
  const int64_t actual = file_size - data_offset;
  MD_CHECK_VALUE(actual == expected, "read_npy: ", where, ": shape ", c10::IntArrayRef(shape), " of '", descr,
                 "' needs ", expected, " data bytes, the file holds ", actual);
  at::Tensor out = at::empty(shape, at::TensorOptions().dtype(dtype));
  MD_CHECK(expected == 0 || src.read_at(data_offset, out.data_ptr(), static_cast<size_t>(expected)),
           "read_npy: error reading the data of ", where);
  if (!host_is_little_endian() && width > 1) {
    auto* b = static_cast<unsigned char*>(out.data_ptr());
    for (int64_t i = 0; i < numel; ++i) std::reverse(b + i * width, b + (i + 1) * width);
  }
  return out;
}

}  // namespace

at::Tensor read_npy(const std::string& path) {
  auto in = std::make_shared<std::ifstream>(path, std::ios::binary);
  MD_CHECK(in->good(), "read_npy: cannot open '", path, "'");
  in->seekg(0, std::ios::end);
  const auto size = static_cast<int64_t>(in->tellg());
  MD_CHECK(size >= 0, "read_npy: cannot seek in '", path, "'");
  NpySource src{"'" + path + "'", size, [in](int64_t offset, void* dst, size_t n) {
                  in->clear();
                  in->seekg(offset, std::ios::beg);
                  return static_cast<bool>(in->read(static_cast<char*>(dst), static_cast<std::streamsize>(n)));
                }};
  return read_npy_from(src);
}

at::Tensor decode_npy(const uint8_t* data, size_t size) {
  MD_CHECK(data != nullptr || size == 0, "decode_npy: data is null but size is ", size);
  NpySource src{"<memory>", static_cast<int64_t>(size), [data, size](int64_t offset, void* dst, size_t n) {
                  if (offset < 0 || static_cast<size_t>(offset) > size || n > size - static_cast<size_t>(offset)) {
                    return false;
                  }
                  if (n > 0) std::memcpy(dst, data + offset, n);
                  return true;
                }};
  return read_npy_from(src);
}

at::Tensor decode_npy(const std::vector<uint8_t>& bytes) { return decode_npy(bytes.data(), bytes.size()); }

void write_npy(const std::string& path, const at::Tensor& tensor) {
  check_defined(tensor, "write_npy: tensor");
  MD_CHECK_TYPE(tensor.scalar_type() == at::kFloat || tensor.scalar_type() == at::kDouble,
                "write_npy: tensor must be float32 or float64, got ", tensor.scalar_type());
  MD_CHECK_VALUE(tensor.dim() <= kMaxNpyDims, "write_npy: tensor has ", tensor.dim(), " dimensions; at most ",
                 kMaxNpyDims, " are supported");
  at::Tensor t = tensor.detach().to(at::kCPU).contiguous();
  const int64_t width = t.element_size();
  std::ostringstream dict;
  dict << "{'descr': '<f" << width << "', 'fortran_order': False, 'shape': (";
  for (int64_t i = 0; i < t.dim(); ++i) dict << t.size(i) << (t.dim() == 1 || i + 1 < t.dim() ? "," : "");
  dict << "), }";
  std::string header = dict.str();
  // Pad with spaces so that the data starts on a multiple of 64 bytes; the header ends in '\n'.
  int major = 1;
  size_t prefix = 10;
  if (header.size() + 1 + prefix > 65535) {
    major = 2;
    prefix = 12;
  }
  const size_t total = (prefix + header.size() + 1 + 63) / 64 * 64;
  header.append(total - prefix - header.size() - 1, ' ');
  header.push_back('\n');

  std::ofstream out(path, std::ios::binary);
  MD_CHECK(out.good(), "write_npy: cannot open '", path, "' for writing");
  out.write(kNpyMagic, 6);
  const char version[2] = {static_cast<char>(major), 0};
  out.write(version, 2);
  const uint64_t len = header.size();
  for (size_t i = 0; i < prefix - 8; ++i) out.put(static_cast<char>((len >> (8 * i)) & 0xff));
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  if (host_is_little_endian() || width == 1) {
    out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * width));
  } else {
    std::vector<char> buf(static_cast<size_t>(t.numel() * width));
    std::memcpy(buf.data(), t.data_ptr(), buf.size());
    for (int64_t i = 0; i < t.numel(); ++i) std::reverse(buf.begin() + i * width, buf.begin() + (i + 1) * width);
    out.write(buf.data(), static_cast<std::streamsize>(buf.size()));
  }
  out.close();
  MD_CHECK(!out.fail(), "write_npy: error writing '", path, "'");
}

}  // namespace data
}  // namespace manifold_diffusion
