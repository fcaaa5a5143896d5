#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/core/file.h>
#include <manifold_diffusion/training/checkpoint.h>

#include <torch/nn/module.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
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

std::string checkpoint_path(const std::string& dir, int64_t step) {
  MD_CHECK_VALUE(step >= 0, "checkpoint step must be >= 0, got ", step);
  char name[64];
  std::snprintf(name, sizeof(name), "ckpt-%08lld.pt", static_cast<long long>(step));
  return (fs::path(dir) / name).string();
}

std::vector<CheckpointFile> list_checkpoints(const std::string& dir) {
  std::vector<CheckpointFile> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  static const std::regex pattern(R"(ckpt-(\d{1,18})\.pt)");
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    std::smatch m;
    if (entry.is_regular_file(ec) && std::regex_match(name, m, pattern)) {
      out.push_back({entry.path().string(), std::stoll(m[1].str())});
    }
  }
  std::sort(out.begin(), out.end(), [](const CheckpointFile& a, const CheckpointFile& b) { return a.step < b.step; });
  return out;
}

void prune_checkpoints(const std::string& dir, int64_t keep) {
  MD_CHECK_VALUE(keep >= 1, "keep_last must be >= 1, got ", keep);
  const auto files = list_checkpoints(dir);
  std::error_code ec;
  for (size_t i = 0; i + static_cast<size_t>(keep) < files.size(); ++i) fs::remove(files[i].path, ec);
  // Temporary files left by a killed writer of another process.
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("ckpt-", 0) == 0 && name.find(".pt.tmp.") != std::string::npos) {
      const std::string pid = name.substr(name.find(".pt.tmp.") + 8);
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
  std::error_code ec;
  MD_CHECK(fs::is_regular_file(checkpoint, ec), "load_weights: checkpoint '", checkpoint, "' does not exist");
  const std::string what = "checkpoint '" + checkpoint + "'";
  int64_t step_value = 0;
  guard_archive_read("load_weights: " + what, [&] {
    torch::serialize::InputArchive ar;
    ar.load_from(checkpoint, c10::Device(c10::kCPU));
    c10::IValue step;
    MD_CHECK(ar.try_read("step", step) && step.isInt(), "load_weights: '", checkpoint, "' has no step entry");
    step_value = step.toInt();
    if (!ema) {
      load_module_state(module, read_named_tensors(ar, "model"), what);
      return;
    }
    torch::serialize::InputArchive probe;
    MD_CHECK(ar.try_read("ema", probe), "load_weights: '", checkpoint,
             "' holds no EMA weights (trained with ema_decay 0); load the trained weights instead");
    NamedTensors renamed;
    for (auto& [name, t] : read_named_tensors(ar, "ema")) {
      if (name.rfind("param.", 0) == 0) renamed.emplace_back(name.substr(6), t);
      else if (name.rfind("buffer.", 0) == 0) renamed.emplace_back("buffer:" + name.substr(7), t);
    }
    load_module_state(module, renamed, what + " (EMA weights)");
  });
  return step_value;
}

}  // namespace manifold_diffusion
