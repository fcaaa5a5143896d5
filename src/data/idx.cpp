#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/core/random.h>
#include <manifold_diffusion/data/idx.h>

#include <ATen/ATen.h>

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

namespace manifold_diffusion {
namespace data {
namespace {

constexpr int64_t kMaxIdxDims = 8;
constexpr size_t kChunk = size_t{1} << 20;

// A byte source over a plain or a gzip-compressed file, or over bytes in memory (plain or gzip);
// read() returns fewer bytes only at the end. known_remaining() is the exact count of bytes left
// for plain sources (checked before the data is allocated) and -1 for gzip streams.
class ByteSource {
 public:
  explicit ByteSource(const std::string& path) : name_("'" + path + "'") {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    MD_CHECK(f != nullptr, "read_idx: cannot open '", path, "': ", std::strerror(errno));
    unsigned char magic[2] = {0, 0};
    const size_t got = std::fread(magic, 1, 2, f);
    std::fclose(f);
    if (got == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
      gz_ = gzopen(path.c_str(), "rb");
      MD_CHECK(gz_ != nullptr, "read_idx: cannot open gzip file '", path, "'");
      gzbuffer(gz_, 1 << 17);
    } else {
      file_ = std::fopen(path.c_str(), "rb");
      MD_CHECK(file_ != nullptr, "read_idx: cannot open '", path, "': ", std::strerror(errno));
      MD_CHECK(std::fseek(file_, 0, SEEK_END) == 0, "read_idx: cannot seek in '", path, "'");
      const long end = std::ftell(file_);
      MD_CHECK(end >= 0 && std::fseek(file_, 0, SEEK_SET) == 0, "read_idx: cannot seek in '", path, "'");
      remaining_ = static_cast<int64_t>(end);
    }
  }
  ByteSource(const uint8_t* data, size_t size) : name_("<memory>"), mem_(data), mem_size_(size) {
    MD_CHECK(data != nullptr || size == 0, "decode_idx: data is null but size is ", size);
    if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
      inflating_ = true;
      std::memset(&zs_, 0, sizeof(zs_));
      // 16 + MAX_WBITS: a gzip wrapper, not zlib's.
      MD_CHECK(inflateInit2(&zs_, 16 + MAX_WBITS) == Z_OK, "decode_idx: cannot initialise zlib");
      zs_.next_in = const_cast<Bytef*>(data);
    } else {
      remaining_ = static_cast<int64_t>(size);
    }
  }
  ~ByteSource() {
    if (gz_ != nullptr) gzclose(gz_);
    if (file_ != nullptr) std::fclose(file_);
    if (inflating_) inflateEnd(&zs_);
  }
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;

  const std::string& name() const { return name_; }
  int64_t known_remaining() const { return remaining_; }

  size_t read(void* dst, size_t n) {
    auto* out = static_cast<unsigned char*>(dst);
    size_t total = 0;
    while (total < n) {
      const size_t want = std::min(n - total, kChunk);
      size_t got = 0;
      if (gz_ != nullptr) {
        const int r = gzread(gz_, out + total, static_cast<unsigned>(want));
        if (r < 0) {
          int errnum = 0;
          const char* msg = gzerror(gz_, &errnum);
          MD_CHECK(false, "read_idx: ", name_, " is not a valid gzip stream: ", msg);
        }
        got = static_cast<size_t>(r);
      } else if (file_ != nullptr) {
        got = std::fread(out + total, 1, want, file_);
        MD_CHECK(!std::ferror(file_), "read_idx: error reading ", name_);
      } else if (inflating_) {
        got = inflate_some(out + total, want);
      } else {
        got = std::min(want, mem_size_ - mem_pos_);
        if (got > 0) std::memcpy(out + total, mem_ + mem_pos_, got);
        mem_pos_ += got;
      }
      if (remaining_ >= 0) remaining_ -= static_cast<int64_t>(got);
      total += got;
      if (got < want) break;
    }
    return total;
  }

 private:
  // Inflates up to n bytes; concatenated gzip members are read one after another, like gzread.
  size_t inflate_some(unsigned char* out, size_t n) {
    size_t produced = 0;
    while (produced < n && !inflate_done_) {
      const size_t consumed = static_cast<size_t>(zs_.next_in - mem_);
      zs_.avail_in = static_cast<uInt>(std::min<size_t>(mem_size_ - consumed, kChunk));
      zs_.next_out = out + produced;
      zs_.avail_out = static_cast<uInt>(n - produced);
      const int r = inflate(&zs_, Z_NO_FLUSH);
      produced = static_cast<size_t>(zs_.next_out - out);
      if (r == Z_STREAM_END) {
        const size_t used = static_cast<size_t>(zs_.next_in - mem_);
        if (used < mem_size_ && mem_size_ - used >= 2 && mem_[used] == 0x1f && mem_[used + 1] == 0x8b) {
          MD_CHECK(inflateReset(&zs_) == Z_OK, "decode_idx: cannot reset zlib");
          continue;
        }
        MD_CHECK(used == mem_size_, "decode_idx: ", mem_size_ - used, " bytes of garbage after the gzip stream");
        inflate_done_ = true;
      } else if (r == Z_BUF_ERROR && zs_.avail_in == 0) {
        MD_CHECK(false, "decode_idx: the gzip stream is truncated");
      } else {
        MD_CHECK(r == Z_OK, "decode_idx: not a valid gzip stream: ", zs_.msg != nullptr ? zs_.msg : "zlib error ",
                 zs_.msg != nullptr ? "" : std::to_string(r));
      }
    }
    return produced;
  }

  std::string name_;
  gzFile gz_ = nullptr;
  std::FILE* file_ = nullptr;
  const uint8_t* mem_ = nullptr;
  size_t mem_size_ = 0;
  size_t mem_pos_ = 0;
  bool inflating_ = false;
  bool inflate_done_ = false;
  z_stream zs_{};
  int64_t remaining_ = -1;
};

uint32_t big_endian_u32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

struct IdxType {
  at::ScalarType dtype;
  int64_t size;
};

IdxType idx_type(unsigned char code, const std::string& where) {
  switch (code) {
    case 0x08: return {at::kByte, 1};
    case 0x09: return {at::kChar, 1};
    case 0x0B: return {at::kShort, 2};
    case 0x0C: return {at::kInt, 4};
    case 0x0D: return {at::kFloat, 4};
    case 0x0E: return {at::kDouble, 8};
    default: break;
  }
  char hex[8];
  std::snprintf(hex, sizeof(hex), "0x%02X", static_cast<unsigned>(code));
  MD_CHECK_VALUE(false, "read_idx: ", where, " has unknown IDX type code ", hex,
                 "; expected 0x08 (uint8), 0x09 (int8), 0x0B (int16), 0x0C (int32), 0x0D (float32) or 0x0E (float64)");
  return {};
}

bool host_is_little_endian() {
  const uint16_t one = 1;
  unsigned char first = 0;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

void swap_bytes(unsigned char* data, int64_t count, int64_t width) {
  for (int64_t i = 0; i < count; ++i) std::reverse(data + i * width, data + (i + 1) * width);
}

LabeledImages subset(const LabeledImages& d, const std::vector<int64_t>& idx) {
  const at::Tensor index = at::tensor(at::ArrayRef<int64_t>(idx), at::kLong);
  return {d.images.index_select(0, index), d.labels.index_select(0, index)};
}

// Reads one IDX stream. The data tensor is allocated only once the header's byte count is known to
// be there: plain sources know what is left; a gzip stream is inflated into a buffer that grows
// with what arrives, so a short stream with a huge header never allocates the huge tensor.
at::Tensor read_idx_from(ByteSource& src, const IdxOptions& options) {
  check_positive(options.max_elements(), "IdxOptions::max_elements");
  const std::string where = src.name();
  unsigned char magic[4];
  const size_t got_magic = src.read(magic, 4);
  MD_CHECK_VALUE(got_magic == 4, "read_idx: ", where, " is too short for an IDX header (", got_magic, " bytes)");
  MD_CHECK_VALUE(magic[0] == 0 && magic[1] == 0, "read_idx: ", where,
                 " is not an IDX file: the magic must start with bytes 00 00, got ", static_cast<int>(magic[0]), " ",
                 static_cast<int>(magic[1]));
  const IdxType type = idx_type(magic[2], where);
  const int64_t ndim = magic[3];
  MD_CHECK_VALUE(ndim >= 1 && ndim <= kMaxIdxDims, "read_idx: ", where, " has ", ndim, " dimensions; expected 1 to ",
                 kMaxIdxDims);

  std::vector<unsigned char> dims_raw(static_cast<size_t>(4 * ndim));
  const size_t got_dims = src.read(dims_raw.data(), dims_raw.size());
  MD_CHECK_VALUE(got_dims == dims_raw.size(), "read_idx: ", where, " is truncated in its header: expected ", ndim,
                 " sizes (", dims_raw.size(), " bytes), got ", got_dims, " bytes");
  std::vector<int64_t> sizes(static_cast<size_t>(ndim));
  int64_t numel = 1;
  for (int64_t i = 0; i < ndim; ++i) {
    const int64_t d = big_endian_u32(dims_raw.data() + 4 * i);
    sizes[static_cast<size_t>(i)] = d;
    MD_CHECK_VALUE(d <= options.max_elements(), "read_idx: ", where, ": size ", d, " of dimension ", i,
                   " exceeds the limit of ", options.max_elements(), " elements");
    // numel <= max_elements and d <= max_elements keep the product below 2^62: no overflow.
    numel *= d;
    MD_CHECK_VALUE(numel <= options.max_elements(), "read_idx: ", where, ": shape ",
                   c10::IntArrayRef(sizes.data(), static_cast<size_t>(i + 1)), " already holds more than the limit of ",
                   options.max_elements(), " elements");
  }

  const int64_t expected = numel * type.size;
  const int64_t known = src.known_remaining();
  if (known >= 0) {
    MD_CHECK_VALUE(known >= expected, "read_idx: ", where, " is truncated: shape ", c10::IntArrayRef(sizes), " needs ",
                   expected, " data bytes, got ", known);
    MD_CHECK_VALUE(known == expected, "read_idx: ", where, " has trailing data: shape ", c10::IntArrayRef(sizes),
                   " needs ", expected, " data bytes, got ", known);
  }
  at::Tensor out;
  int64_t got = 0;
  if (known >= 0) {
    out = at::empty(sizes, at::TensorOptions().dtype(type.dtype));
    got = static_cast<int64_t>(src.read(out.data_ptr(), static_cast<size_t>(expected)));
  } else {
    std::vector<unsigned char> buffer;
    while (got < expected) {
      const int64_t capacity = std::min(expected, std::max<int64_t>(int64_t{1} << 20, 2 * got));
      buffer.resize(static_cast<size_t>(capacity));
      const auto n = static_cast<int64_t>(src.read(buffer.data() + got, static_cast<size_t>(capacity - got)));
      got += n;
      if (got < capacity) break;
    }
    if (got == expected) {
      out = at::empty(sizes, at::TensorOptions().dtype(type.dtype));
      if (expected > 0) std::memcpy(out.data_ptr(), buffer.data(), static_cast<size_t>(expected));
    }
  }
  MD_CHECK_VALUE(got == expected, "read_idx: ", where, " is truncated: shape ", c10::IntArrayRef(sizes), " needs ",
                 expected, " data bytes, got ", got);
  std::vector<unsigned char> scratch(4096);
  int64_t trailing = 0;
  for (size_t n = src.read(scratch.data(), scratch.size()); n > 0 && trailing < (int64_t{1} << 26);
       n = src.read(scratch.data(), scratch.size())) {
    trailing += static_cast<int64_t>(n);
  }
  MD_CHECK_VALUE(trailing == 0, "read_idx: ", where, " has trailing data: shape ", c10::IntArrayRef(sizes), " needs ",
                 expected, " data bytes, got ", expected + trailing, trailing >= (int64_t{1} << 26) ? " or more" : "");
  if (type.size > 1 && host_is_little_endian()) swap_bytes(static_cast<unsigned char*>(out.data_ptr()), numel, type.size);
  return out;
}

}  // namespace

at::Tensor read_idx(const std::string& path, const IdxOptions& options) {
  check_positive(options.max_elements(), "IdxOptions::max_elements");
  ByteSource src(path);
  return read_idx_from(src, options);
}

at::Tensor decode_idx(const uint8_t* data, size_t size, const IdxOptions& options) {
  check_positive(options.max_elements(), "IdxOptions::max_elements");
  ByteSource src(data, size);
  return read_idx_from(src, options);
}

at::Tensor decode_idx(const std::vector<uint8_t>& bytes, const IdxOptions& options) {
  return decode_idx(bytes.data(), bytes.size(), options);
}

int64_t LabeledImages::size() const { return images.defined() ? images.size(0) : 0; }

LabeledImages load_fashion_mnist(const std::string& dir, const std::string& split) {
  MD_CHECK_VALUE(split == "train" || split == "test", "load_fashion_mnist: split must be \"train\" or \"test\", got \"",
                 split, "\"");
  const std::string prefix = dir + "/" + (split == "train" ? "train" : "t10k");
  const std::string image_path = prefix + "-images-idx3-ubyte.gz";
  const std::string label_path = prefix + "-labels-idx1-ubyte.gz";
  for (const std::string& p : {image_path, label_path}) {
    std::FILE* f = std::fopen(p.c_str(), "rb");
    MD_CHECK(f != nullptr, "load_fashion_mnist: missing file '", p, "' (install the dataset-fashion-mnist package)");
    std::fclose(f);
  }
  const at::Tensor images = read_idx(image_path);
  const at::Tensor labels = read_idx(label_path);
  const int64_t n = split == "train" ? 60000 : 10000;
  MD_CHECK_VALUE(images.scalar_type() == at::kByte && images.dim() == 3 && images.size(0) == n &&
                     images.size(1) == 28 && images.size(2) == 28,
                 "load_fashion_mnist: '", image_path, "' should hold uint8 [", n, ", 28, 28], got ", images.scalar_type(),
                 " ", images.sizes());
  MD_CHECK_VALUE(labels.scalar_type() == at::kByte && labels.dim() == 1 && labels.size(0) == n,
                 "load_fashion_mnist: '", label_path, "' should hold uint8 [", n, "], got ", labels.scalar_type(), " ",
                 labels.sizes());
  LabeledImages out;
  out.images = images.to(at::kFloat).div_(127.5).sub_(1.0).unsqueeze(1).contiguous();
  out.labels = labels.to(at::kLong);
  MD_CHECK_VALUE(out.labels.max().item<int64_t>() <= 9, "load_fashion_mnist: '", label_path,
                 "' holds labels above 9 (max ", out.labels.max().item<int64_t>(), ")");
  return out;
}

TrainValidation validation_split(const LabeledImages& data, double fraction, uint64_t seed) {
  check_in_range(fraction, 0.0, 1.0, "validation_split: fraction");
  check_defined(data.images, "validation_split: data.images");
  check_defined(data.labels, "validation_split: data.labels");
  const int64_t n = data.images.size(0);
  MD_CHECK_VALUE(data.labels.dim() == 1 && data.labels.size(0) == n, "validation_split: data.labels must have shape [",
                 n, "], got ", shape_string(data.labels));
  const auto n_val = static_cast<int64_t>(std::llround(fraction * static_cast<double>(n)));
  // Fisher-Yates driven by SplitMix64: the same permutation on every platform and LibTorch version.
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  uint64_t state = mix_seed(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    state = mix_seed(state);
    const auto j = static_cast<int64_t>(state % static_cast<uint64_t>(i + 1));
    std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(j)]);
  }
  std::vector<int64_t> val(perm.begin(), perm.begin() + n_val);
  std::vector<int64_t> train(perm.begin() + n_val, perm.end());
  std::sort(val.begin(), val.end());
  std::sort(train.begin(), train.end());
  return {subset(data, train), subset(data, val)};
}

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> names{"t-shirt/top", "trouser", "pullover", "dress", "coat",
                                              "sandal",      "shirt",   "sneaker",  "bag",   "ankle boot"};
  return names;
}

namespace {
std::string fold_class_name(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (c == '-' || c == '_' || c == ' ' || c == '/') continue;
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}
}  // namespace

int64_t class_index(const std::vector<std::string>& classes, const std::string& name) {
  const std::string key = fold_class_name(name);
  MD_CHECK_VALUE(!key.empty(), "class_index: empty class name");
  int64_t prefix_match = -1;
  int64_t prefix_count = 0;
  for (size_t i = 0; i < classes.size(); ++i) {
    const std::string c = fold_class_name(classes[i]);
    if (c == key) return static_cast<int64_t>(i);
    if (c.rfind(key, 0) == 0) {
      prefix_match = static_cast<int64_t>(i);
      ++prefix_count;
    }
  }
  if (prefix_count == 1) return prefix_match;
  std::string known;
  for (const auto& c : classes) known += (known.empty() ? "'" : ", '") + c + "'";
  MD_CHECK_VALUE(false, "unknown class name '", name, "'", prefix_count > 1 ? " (ambiguous)" : "", "; known: ", known);
  return -1;
}

}  // namespace data
}  // namespace manifold_diffusion
