#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/core/file.h>
#include <manifold_diffusion/core/version.h>
#include <manifold_diffusion/training/checkpoint.h>

#include <torch/nn/module.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

namespace manifold_diffusion {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// StateFile

namespace {

constexpr const char* kKindKey = "mdiff.kind";
constexpr const char* kFormatKey = "mdiff.format";
constexpr const char* kVersionKey = "mdiff.library_version";

bool parse_int64(const std::string& text, int64_t& out) {
  const char* end = text.data() + text.size();
  const auto r = std::from_chars(text.data(), end, out);
  return !text.empty() && r.ec == std::errc() && r.ptr == end;
}

// A zip file's local header: LibTorch's archives (torch::save, OutputArchive).
bool is_zip(const uint8_t* data, size_t size) {
  return size >= 4 && data[0] == 'P' && data[1] == 'K' && data[2] == 3 && data[3] == 4;
}

void refuse_archive(const std::string& what, const std::string& kind, int64_t format) {
  MD_CHECK(false, what, " is a LibTorch archive, the file format of manifold_diffusion 0.1; this version reads ",
           kind, " files as safetensors (format ", format,
           ") and does not parse archives (a damaged one can crash LibTorch's parser); write it again with this version");
}

StateFile checked(io::Safetensors&& st, const std::string& kind, int64_t format, const std::string& what) {
  const auto k = st.metadata.find(kKindKey);
  MD_CHECK(k != st.metadata.end(), what, " is a safetensors file but not a manifold_diffusion ", kind,
           " file (no '", kKindKey, "' metadata)");
  MD_CHECK(k->second == kind, what, " is a manifold_diffusion '", k->second, "' file, not a '", kind, "' file");
  const auto f = st.metadata.find(kFormatKey);
  int64_t got = 0;
  MD_CHECK(f != st.metadata.end() && parse_int64(f->second, got), what, ": missing or malformed '", kFormatKey,
           "' metadata");
  MD_CHECK(got == format, what, ": ", kind, " format ", got, " is not supported (this version reads format ", format,
           ")");
  StateFile out(kind, format);
  out.metadata = std::move(st.metadata);
  out.tensors = std::move(st.tensors);
  for (const auto& [name, t] : out.tensors) {
    const auto slash = name.find('/');
    MD_CHECK(slash != std::string::npos && slash > 0 && slash + 1 < name.size(), what, ": tensor '", name,
             "' is not of the form <section>/<name>");
  }
  return out;
}

}  // namespace

StateFile::StateFile(std::string kind_, int64_t format_) : kind(std::move(kind_)), format(format_) {
  MD_CHECK_VALUE(!kind.empty(), "StateFile: kind must not be empty");
  MD_CHECK_VALUE(format >= 1, "StateFile: format must be >= 1, got ", format);
  what_ = kind + " file";
}

void StateFile::add_section(const std::string& section, const NamedTensors& list) {
  MD_CHECK_VALUE(!section.empty() && section.find('/') == std::string::npos,
                 "StateFile::add_section: a section name must be non-empty and without '/', got '", section, "'");
  MD_CHECK_VALUE(!has_section(section), "StateFile::add_section: section '", section, "' is already there");
  for (const auto& [name, t] : list) {
    MD_CHECK_VALUE(!name.empty(), "StateFile::add_section: section '", section, "' has an empty tensor name");
    tensors.emplace_back(section + "/" + name, t);
  }
}

NamedTensors StateFile::section(const std::string& section) const {
  const std::string prefix = section + "/";
  NamedTensors out;
  for (const auto& [name, t] : tensors) {
    if (name.compare(0, prefix.size(), prefix) == 0) out.emplace_back(name.substr(prefix.size()), t);
  }
  return out;
}

bool StateFile::has_section(const std::string& section) const {
  const std::string prefix = section + "/";
  return std::any_of(tensors.begin(), tensors.end(),
                     [&](const auto& p) { return p.first.compare(0, prefix.size(), prefix) == 0; });
}

int64_t StateFile::metadata_int(const std::string& key) const {
  const auto it = metadata.find(key);
  MD_CHECK(it != metadata.end(), what_, ": no '", key, "' metadata");
  int64_t v = 0;
  MD_CHECK(parse_int64(it->second, v), what_, ": metadata '", key, "' is not an integer: '", it->second, "'");
  return v;
}

std::vector<uint8_t> StateFile::encode() const {
  MD_CHECK_VALUE(!kind.empty() && format >= 1, "StateFile::encode: no kind or format set");
  std::map<std::string, std::string> meta = metadata;
  meta["format"] = "pt";  // what Python's safetensors.torch expects
  meta[kKindKey] = kind;
  meta[kFormatKey] = std::to_string(format);
  meta[kVersionKey] = version_string();
  return io::encode_safetensors(tensors, meta);
}

void StateFile::save(const std::string& path) const {
  const std::vector<uint8_t> bytes = encode();
  write_file_atomically(path, bytes.data(), bytes.size());
}

StateFile StateFile::decode(const uint8_t* data, size_t size, const std::string& kind, int64_t format,
                            const std::string& what) {
  MD_CHECK_VALUE(data != nullptr || size == 0, what, ": data is null");
  if (is_zip(data, size)) refuse_archive(what, kind, format);
  io::Safetensors st;
  try {
    st = io::decode_safetensors(data, size);
  } catch (const c10::Error& e) {
    MD_CHECK(false, what, ": ", e.what_without_backtrace());
  }
  StateFile out = checked(std::move(st), kind, format, what);
  out.what_ = what;
  return out;
}

namespace {

// The safetensors file at `path`, read once; a LibTorch archive is refused by its magic first.
io::Safetensors read_refusing_archives(const std::string& path, const std::string& kind, int64_t format,
                                       const std::string& what) {
  std::error_code ec;
  MD_CHECK(fs::is_regular_file(path, ec), what, " does not exist or is not a file");
  {
    std::ifstream in(path, std::ios::binary);
    MD_CHECK(in.good(), what, ": cannot open: ", std::strerror(errno));
    uint8_t magic[4] = {0, 0, 0, 0};
    in.read(reinterpret_cast<char*>(magic), 4);
    if (is_zip(magic, static_cast<size_t>(in.gcount()))) refuse_archive(what, kind, format);
  }
  try {
    return io::load_safetensors(path);
  } catch (const c10::Error& e) {
    MD_CHECK(false, what, ": ", e.what_without_backtrace());
  }
  return {};  // not reached
}

}  // namespace

StateFile StateFile::load(const std::string& path, const std::string& kind, int64_t format, const std::string& what) {
  StateFile out = checked(read_refusing_archives(path, kind, format, what), kind, format, what);
  out.what_ = what;
  return out;
}

int64_t StateFile::values(const std::string& name) const {
  int64_t n = 0;
  for (const auto& [tensor_name, t] : section(name)) n += t.numel();
  return n;
}

std::string ema_entry_module_name(const std::string& name) {
  if (name.rfind("param.", 0) == 0) return name.substr(6);
  if (name.rfind("buffer.", 0) == 0) return "buffer:" + name.substr(7);
  return "";
}

// ---------------------------------------------------------------------------------------------
// Checkpoint files

std::string checkpoint_path(const std::string& dir, int64_t step) {
  MD_CHECK_VALUE(step >= 0, "checkpoint step must be >= 0, got ", step);
  char name[64];
  std::snprintf(name, sizeof(name), "ckpt-%08lld.safetensors", static_cast<long long>(step));
  return (fs::path(dir) / name).string();
}

std::vector<CheckpointFile> list_checkpoints(const std::string& dir) {
  std::vector<CheckpointFile> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  static const std::regex pattern(R"(ckpt-(\d{1,18})\.(safetensors|pt))");
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    std::smatch m;
    if (entry.is_regular_file(ec) && std::regex_match(name, m, pattern)) {
      out.push_back({entry.path().string(), std::stoll(m[1].str()), m[2].str() == "pt"});
    }
  }
  // For one step, a 0.1 file (.pt) sorts before the current one, so the newest readable file is last.
  std::sort(out.begin(), out.end(), [](const CheckpointFile& a, const CheckpointFile& b) {
    return a.step != b.step ? a.step < b.step : a.legacy > b.legacy;
  });
  return out;
}

void prune_checkpoints(const std::string& dir, int64_t keep) {
  MD_CHECK_VALUE(keep >= 1, "keep_last must be >= 1, got ", keep);
  std::vector<CheckpointFile> files = list_checkpoints(dir);
  files.erase(std::remove_if(files.begin(), files.end(), [](const CheckpointFile& c) { return c.legacy; }), files.end());
  std::error_code ec;
  for (size_t i = 0; i + static_cast<size_t>(keep) < files.size(); ++i) fs::remove(files[i].path, ec);
  // Temporary files left by a killed writer of another process.
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    const auto tmp = name.find(".tmp.");
    if (name.rfind("ckpt-", 0) == 0 && tmp != std::string::npos) {
      const std::string pid = name.substr(tmp + 5);
      const std::string own = std::to_string(::getpid()) + ".";
      if (pid.rfind(own, 0) != 0) fs::remove(entry.path(), ec);
    }
  }
}

void write_named_tensors(torch::serialize::OutputArchive& archive, const std::string& key,
                         const NamedTensors& tensors) {
  torch::serialize::OutputArchive sub;
  c10::List<std::string> names;
  for (size_t i = 0; i < tensors.size(); ++i) {
    names.push_back(tensors[i].first);
    sub.write("t" + std::to_string(i), tensors[i].second.detach().cpu());
  }
  sub.write("names", c10::IValue(names));
  archive.write(key, sub);
}

NamedTensors read_named_tensors(torch::serialize::InputArchive& archive, const std::string& key) {
  torch::serialize::InputArchive sub;
  MD_CHECK(archive.try_read(key, sub), "checkpoint has no entry '", key, "'");
  c10::IValue names;
  MD_CHECK(sub.try_read("names", names) && names.isList(), "checkpoint entry '", key, "' has no name list");
  NamedTensors out;
  const auto list = names.toListRef();
  for (size_t i = 0; i < list.size(); ++i) {
    MD_CHECK(list[i].isString(), "checkpoint entry '", key, "': name ", i, " is not a string");
    at::Tensor t;
    MD_CHECK(sub.try_read("t" + std::to_string(i), t), "checkpoint entry '", key, "' lacks tensor ", i, " ('",
             list[i].toStringRef(), "')");
    out.emplace_back(list[i].toStringRef(), t);
  }
  return out;
}

void save_archive_atomically(torch::serialize::OutputArchive& archive, const std::string& path) {
  std::ostringstream buffer;
  archive.save_to(buffer);
  const std::string bytes = buffer.str();
  write_file_atomically(path, bytes.data(), bytes.size());
}

NamedTensors module_state(const torch::nn::Module& module) {
  NamedTensors out;
  for (const auto& p : module.named_parameters(true)) out.emplace_back(p.key(), p.value().detach());
  for (const auto& b : module.named_buffers(true)) out.emplace_back("buffer:" + b.key(), b.value().detach());
  return out;
}

void load_module_state(torch::nn::Module& module, const NamedTensors& source, const std::string& what) {
  std::map<std::string, at::Tensor> by_name(source.begin(), source.end());
  std::set<std::string> used;
  torch::NoGradGuard no_grad;
  std::vector<std::pair<at::Tensor, const at::Tensor*>> plan;
  auto check = [&](const std::string& name, const at::Tensor& dst) {
    const auto it = by_name.find(name);
    MD_CHECK(it != by_name.end(), what, ": no saved value for '", name, "' (the model differs from the saved one)");
    MD_CHECK(it->second.sizes() == dst.sizes(), what, ": '", name, "' has shape ", it->second.sizes(),
             " but the model expects ", dst.sizes());
    MD_CHECK(!at::isFloatingType(dst.scalar_type()) || at::isFloatingType(it->second.scalar_type()), what, ": '", name,
             "' holds ", it->second.scalar_type(), " values but the model's tensor is ", dst.scalar_type());
    used.insert(name);
    plan.emplace_back(dst, &it->second);
  };
  for (const auto& p : module.named_parameters(true)) check(p.key(), p.value());
  for (const auto& b : module.named_buffers(true)) check("buffer:" + b.key(), b.value());
  for (const auto& kv : by_name) {
    MD_CHECK(used.count(kv.first), what, ": saved value '", kv.first, "' has no place in the model");
  }
  // Every name and shape matched: copy (in place, so optimisers and EMA keep their references).
  for (auto& [dst, src] : plan) dst.copy_(*src);
}

void guard_archive_read(const std::string& what, const std::function<void()>& fn) {
  try {
    fn();
  } catch (const c10::Error& e) {
    const std::string msg = e.what_without_backtrace();
    if (msg.rfind(what, 0) == 0) throw;
    MD_CHECK(false, what, ": ", msg);
  } catch (const std::exception& e) {
    MD_CHECK(false, what, " is corrupt or not readable by this LibTorch: ", e.what());
  }
}

int64_t load_weights(const std::string& checkpoint, torch::nn::Module& module, bool ema) {
  const std::string what = "load_weights: '" + checkpoint + "'";
  io::Safetensors st = read_refusing_archives(checkpoint, kTrainerCheckpointKind, kTrainerCheckpointFormat, what);
  if (st.metadata.count(kKindKey) == 0) {
    // Weights alone, under the module's own names (save_module_safetensors, save_ema_safetensors).
    load_module_state(module, st.tensors, what);
    const auto it = st.metadata.find("step");
    int64_t step = -1;
    MD_CHECK(it == st.metadata.end() || parse_int64(it->second, step), what, ": metadata 'step' is not an integer: '",
             it->second, "'");
    return step;
  }
  const StateFile f = checked(std::move(st), kTrainerCheckpointKind, kTrainerCheckpointFormat, what);
  const int64_t step = f.metadata_int("step");
  if (!ema) {
    load_module_state(module, f.section("model"), what);
    return step;
  }
  MD_CHECK(f.has_section("ema"), what,
           " holds no EMA weights (trained with ema_decay 0); load the trained weights instead");
  NamedTensors renamed;
  for (auto& [name, t] : f.section("ema")) {
    const std::string own = ema_entry_module_name(name);
    if (!own.empty()) renamed.emplace_back(own, t);
  }
  load_module_state(module, renamed, what + " (EMA weights)");
  return step;
}

}  // namespace manifold_diffusion
