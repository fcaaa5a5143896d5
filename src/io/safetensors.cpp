#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/io/safetensors.h>
#include <manifold_diffusion/models/ema.h>
#include <manifold_diffusion/training/checkpoint.h>

#include "io/file_util.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <set>

namespace manifold_diffusion {
namespace io {
namespace {

constexpr const char* kMetadataKey = "__metadata__";

bool little_endian_host() {
  const uint16_t one = 1;
  uint8_t first = 0;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

struct DtypeEntry {
  const char* name;
  at::ScalarType type;
  uint64_t size;
};

constexpr DtypeEntry kDtypes[] = {
    {"F32", at::kFloat, 4},  {"F16", at::kHalf, 2}, {"BF16", at::kBFloat16, 2}, {"F64", at::kDouble, 8},
    {"I64", at::kLong, 8},   {"I32", at::kInt, 4},  {"I16", at::kShort, 2},     {"I8", at::kChar, 1},
    {"U8", at::kByte, 1},    {"BOOL", at::kBool, 1},
};
constexpr const char* kDtypeList = "F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL";

const DtypeEntry* dtype_by_name(const std::string& name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

const DtypeEntry* dtype_by_type(at::ScalarType type) {
  for (const auto& d : kDtypes) {
    if (type == d.type) return &d;
  }
  return nullptr;
}

// One tensor entry of a parsed header.
struct Entry {
  std::string name;
  const DtypeEntry* dtype = nullptr;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};

struct Header {
  std::vector<Entry> entries;  // sorted by begin
  std::map<std::string, std::string> metadata;
  uint64_t data_size = 0;  // bytes the entries cover
};

// The JSON header, checked; `data_size` is the number of bytes after the header.
Header parse_header(const char* text, size_t size, uint64_t data_size, const std::string& who) {
  // Duplicate keys (which nlohmann would silently overwrite) are found during parsing.
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  const nlohmann::json::parser_callback_t cb = [&](int /*depth*/, nlohmann::json::parse_event_t event,
                                                  nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::object_start) {
      open_objects.emplace_back();
    } else if (event == E::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == E::key && !open_objects.empty() && duplicate.empty()) {
      const std::string key = parsed.get<std::string>();
      if (!open_objects.back().insert(key).second) duplicate = key;
    }
    return true;
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text, text + size, cb);
  } catch (const nlohmann::json::exception& e) {
    MD_CHECK_VALUE(false, who, ": the header is not valid JSON: ", e.what());
  }
  MD_CHECK_VALUE(duplicate.empty(), who, ": the header has the key '", duplicate, "' twice");
  MD_CHECK_VALUE(j.is_object(), who, ": the header must be a JSON object, got ", j.type_name());

  Header h;
  for (const auto& item : j.items()) {
    const std::string& name = item.key();
    const nlohmann::json& v = item.value();
    if (name == kMetadataKey) {
      MD_CHECK_VALUE(v.is_object(), who, ": '__metadata__' must be an object of strings, got ", v.type_name());
      for (const auto& m : v.items()) {
        MD_CHECK_VALUE(m.value().is_string(), who, ": '__metadata__' value of '", m.key(), "' must be a string, got ",
                       m.value().dump());
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    MD_CHECK_VALUE(v.is_object(), who, ": tensor '", name, "': expected an object with dtype, shape and data_offsets, got ",
                   v.type_name());
    for (const auto& field : v.items()) {
      MD_CHECK_VALUE(field.key() == "dtype" || field.key() == "shape" || field.key() == "data_offsets", who, ": tensor '",
                     name, "': unknown field '", field.key(), "'");
    }
    for (const char* field : {"dtype", "shape", "data_offsets"}) {
      MD_CHECK_VALUE(v.contains(field), who, ": tensor '", name, "': missing '", field, "'");
    }
    Entry e;
    e.name = name;
    const nlohmann::json& dt = v.at("dtype");
    MD_CHECK_VALUE(dt.is_string(), who, ": tensor '", name, "': dtype must be a string, got ", dt.dump());
    e.dtype = dtype_by_name(dt.get<std::string>());
    MD_CHECK_VALUE(e.dtype != nullptr, who, ": tensor '", name, "': dtype ", dt.dump(),
                   " is not supported (supported: ", kDtypeList, ")");
    const nlohmann::json& shape = v.at("shape");
    MD_CHECK_VALUE(shape.is_array(), who, ": tensor '", name, "': shape must be an array, got ", shape.dump());
    uint64_t numel = 1;
    uint64_t extent = 1;
    bool overflow = false;
    for (const auto& d : shape) {
      MD_CHECK_VALUE(d.is_number_unsigned(), who, ": tensor '", name, "': shape must hold non-negative integers, got ",
                     shape.dump());
      const uint64_t n = d.get<uint64_t>();
      MD_CHECK_VALUE(n <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), who, ": tensor '", name,
                     "': shape entry ", n, " is too large");
      overflow = overflow || __builtin_mul_overflow(numel, n, &numel);
      // The strides multiply the non-zero extents even when another extent is 0.
      overflow = overflow || (n > 0 && __builtin_mul_overflow(extent, n, &extent));
      e.shape.push_back(static_cast<int64_t>(n));
    }
    uint64_t bytes = 0;
    overflow = overflow || __builtin_mul_overflow(numel, e.dtype->size, &bytes) ||
               extent > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / e.dtype->size;
    MD_CHECK_VALUE(!overflow, who, ": tensor '", name, "': shape ", shape.dump(), " overflows 64 bits");
    const nlohmann::json& off = v.at("data_offsets");
    MD_CHECK_VALUE(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(), who,
                   ": tensor '", name, "': data_offsets must be two non-negative integers [begin, end], got ", off.dump());
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    MD_CHECK_VALUE(e.begin <= e.end, who, ": tensor '", name, "': data_offsets [", e.begin, ", ", e.end,
                   "] end before they begin");
    MD_CHECK_VALUE(e.end <= data_size, who, ": tensor '", name, "': data_offsets [", e.begin, ", ", e.end,
                   "] are out of range: the data holds ", data_size, " bytes");
    MD_CHECK_VALUE(e.end - e.begin == bytes, who, ": tensor '", name, "': data_offsets [", e.begin, ", ", e.end,
                   "] span ", e.end - e.begin, " bytes, but ", dt.get<std::string>(), " of shape ", shape.dump(), " needs ",
                   bytes);
    h.entries.push_back(std::move(e));
  }
  // As the reference implementation: sorted by offset, each tensor starts where the previous ends.
  std::stable_sort(h.entries.begin(), h.entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  for (const Entry& e : h.entries) {
    MD_CHECK_VALUE(e.begin == pos, who, ": tensor '", e.name, "': data_offsets [", e.begin, ", ", e.end, "] ",
                   e.begin < pos ? "overlap the previous tensor" : "leave a gap after the previous tensor",
                   " (which ends at ", pos, ")");
    pos = e.end;
  }
  MD_CHECK_VALUE(pos == data_size, who, ": the tensors cover ", pos, " bytes of data, but the file holds ", data_size,
                 " after the header");
  h.data_size = pos;
  return h;
}

// Reads the 8-byte length and checks it against the total size and the limit.
uint64_t header_length(const uint8_t* prefix, uint64_t total, const SafetensorsReadOptions& options,
                       const std::string& who) {
  MD_CHECK_VALUE(total >= 8, who, ": ", total, " bytes are too short for the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | prefix[i];
  MD_CHECK_VALUE(options.max_header_bytes() >= 0, "SafetensorsReadOptions: max_header_bytes must be >= 0, got ",
                 options.max_header_bytes());
  MD_CHECK_VALUE(n <= static_cast<uint64_t>(options.max_header_bytes()), who, ": header length ", n,
                 " exceeds the limit of ", options.max_header_bytes(), " bytes (SafetensorsReadOptions::max_header_bytes)");
  MD_CHECK_VALUE(n <= total - 8, who, ": header length ", n, " is larger than the ", total - 8,
                 " bytes after the length (the file is truncated or corrupt)");
  return n;
}

// Builds the tensors of a checked header; `read(offset, dst, size)` copies data bytes.
Safetensors materialise(Header&& h, const std::function<void(uint64_t, void*, uint64_t)>& read) {
  MD_CHECK(little_endian_host(), "safetensors: big-endian hosts are not supported");
  Safetensors out;
  out.metadata = std::move(h.metadata);
  out.tensors.reserve(h.entries.size());
  for (Entry& e : h.entries) {
    at::Tensor t = at::empty(e.shape, at::TensorOptions().dtype(e.dtype->type));
    if (e.end > e.begin) read(e.begin, t.data_ptr(), e.end - e.begin);
    if (e.dtype->type == at::kBool && e.end > e.begin) {
      // A bool byte other than 0 or 1 is undefined behaviour in every kernel that reads it.
      const auto* bytes = static_cast<const uint8_t*>(t.data_ptr());
      const uint64_t n = e.end - e.begin;
      for (uint64_t i = 0; i < n; ++i) {
        MD_CHECK_VALUE(bytes[i] <= 1, "safetensors: BOOL tensor '", e.name, "' holds byte ", static_cast<int>(bytes[i]),
                       " at element ", i, " (only 0 and 1 are booleans)");
      }
    }
    out.tensors.emplace_back(std::move(e.name), std::move(t));
  }
  return out;
}

}  // namespace

bool Safetensors::contains(const std::string& name) const {
  return std::any_of(tensors.begin(), tensors.end(), [&](const auto& p) { return p.first == name; });
}

const at::Tensor& Safetensors::get(const std::string& name) const {
  for (const auto& p : tensors) {
    if (p.first == name) return p.second;
  }
  MD_CHECK_INDEX(false, "Safetensors::get: no tensor named '", name, "' (", tensors.size(), " tensors)");
  return tensors.front().second;  // not reached
}

Safetensors decode_safetensors(const uint8_t* data, size_t size, const SafetensorsReadOptions& options) {
  const std::string who = "decode_safetensors";
  MD_CHECK_VALUE(data != nullptr || size == 0, who, ": data is null");
  const uint64_t n = header_length(data, size, options, who);
  const uint64_t data_size = size - 8 - n;
  Header h = parse_header(reinterpret_cast<const char*>(data + 8), n, data_size, who);
  const uint8_t* base = data + 8 + n;
  return materialise(std::move(h), [&](uint64_t offset, void* dst, uint64_t len) { std::memcpy(dst, base + offset, len); });
}

Safetensors decode_safetensors(const std::vector<uint8_t>& bytes, const SafetensorsReadOptions& options) {
  return decode_safetensors(bytes.data(), bytes.size(), options);
}

Safetensors load_safetensors(const std::string& path, const SafetensorsReadOptions& options) {
  const std::string who = "load_safetensors: '" + path + "'";
  std::error_code ec;
  MD_CHECK(!std::filesystem::is_directory(path, ec), who, ": is a directory, not a file");
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  MD_CHECK(f != nullptr, who, ": cannot open: ", std::strerror(errno));
  MD_CHECK(std::fseek(f.get(), 0, SEEK_END) == 0, who, ": cannot seek: ", std::strerror(errno));
  const long end = std::ftell(f.get());
  MD_CHECK(end >= 0, who, ": cannot tell the size: ", std::strerror(errno));
  const auto total = static_cast<uint64_t>(end);
  auto read_at = [&](uint64_t offset, void* dst, uint64_t len) {
    MD_CHECK(std::fseek(f.get(), static_cast<long>(offset), SEEK_SET) == 0, who, ": cannot seek to byte ", offset, ": ",
             std::strerror(errno));
    MD_CHECK(std::fread(dst, 1, len, f.get()) == len, who, ": cannot read ", len, " bytes at byte ", offset,
             " (the file changed or is unreadable)");
  };
  uint8_t prefix[8] = {0};
  if (total >= 8) read_at(0, prefix, 8);
  const uint64_t n = header_length(prefix, total, options, who);
  std::string header(n, '\0');
  if (n > 0) read_at(8, &header[0], n);
  Header h = parse_header(header.data(), header.size(), total - 8 - n, who);
  const uint64_t base = 8 + n;
  return materialise(std::move(h), [&](uint64_t offset, void* dst, uint64_t len) { read_at(base + offset, dst, len); });
}

std::vector<uint8_t> encode_safetensors(const TensorList& tensors, const std::map<std::string, std::string>& metadata) {
  MD_CHECK(little_endian_host(), "safetensors: big-endian hosts are not supported");
  const char* who = "encode_safetensors";
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    header[kMetadataKey] = nlohmann::ordered_json(metadata);
  }
  std::vector<at::Tensor> data;
  data.reserve(tensors.size());
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    MD_CHECK_VALUE(!name.empty(), who, ": a tensor name is empty");
    MD_CHECK_VALUE(name != kMetadataKey, who, ": '__metadata__' is reserved and cannot name a tensor");
    MD_CHECK_VALUE(names.insert(name).second, who, ": the name '", name, "' is given twice");
    check_defined(tensor, name.c_str());
    const DtypeEntry* dt = dtype_by_type(tensor.scalar_type());
    MD_CHECK_TYPE(dt != nullptr, who, ": tensor '", name, "': dtype ", tensor.scalar_type(),
                  " is not supported (supported: float32, float16, bfloat16, float64, int64, int32, int16, int8, uint8, bool)");
    MD_CHECK_VALUE(!tensor.is_sparse() && !tensor.is_quantized(), who, ": tensor '", name, "' must be dense");
    at::Tensor t = tensor.detach().to(at::kCPU).contiguous();
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * dt->size;
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = dt->name;
    entry["shape"] = t.sizes().vec();
    entry["data_offsets"] = {offset, offset + bytes};
    header[name] = std::move(entry);
    offset += bytes;
    data.push_back(std::move(t));
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::vector<uint8_t> out(8 + text.size() + offset);
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
  std::memcpy(out.data() + 8, text.data(), text.size());
  uint8_t* p = out.data() + 8 + text.size();
  for (const at::Tensor& t : data) {
    const size_t bytes = t.numel() * t.element_size();
    if (bytes > 0) std::memcpy(p, t.data_ptr(), bytes);
    p += bytes;
  }
  return out;
}

void save_safetensors(const std::string& path, const TensorList& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<uint8_t> bytes;
  try {
    bytes = encode_safetensors(tensors, metadata);
  } catch (const c10::Error& e) {
    MD_CHECK(false, "save_safetensors: '", path, "': ", e.what_without_backtrace());
  }
  detail::write_file_atomically(path, bytes.data(), bytes.size(), "save_safetensors");
}

void save_module_safetensors(const std::string& path, const torch::nn::Module& module,
                             std::map<std::string, std::string> metadata) {
  metadata.emplace("format", "pt");
  save_safetensors(path, module_state(module), metadata);
}

std::map<std::string, std::string> load_module_safetensors(const std::string& path, torch::nn::Module& module) {
  Safetensors st = load_safetensors(path);
  load_module_state(module, st.tensors, "load_module_safetensors: '" + path + "'");
  return st.metadata;
}

void save_ema_safetensors(const std::string& path, const EMA& ema, std::map<std::string, std::string> metadata) {
  TensorList all = ema.shadow_parameters();
  const NamedTensors& buffers = ema.shadow_buffers();
  all.insert(all.end(), buffers.begin(), buffers.end());
  metadata.emplace("format", "pt");
  save_safetensors(path, all, metadata);
}

}  // namespace io
}  // namespace manifold_diffusion
