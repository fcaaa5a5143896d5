#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/models/ema.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <unordered_map>

namespace manifold_diffusion {
namespace {

NamedTensors module_parameters(const torch::nn::Module& module) {
  NamedTensors out;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    out.emplace_back(item.key(), item.value());
  }
  return out;
}

NamedTensors module_buffers(const torch::nn::Module& module) {
  NamedTensors out;
  for (const auto& item : module.named_buffers(/*recurse=*/true)) {
    if (item.value().defined()) {
      out.emplace_back(item.key(), item.value());
    }
  }
  return out;
}

NamedTensors detached_copies(const NamedTensors& tensors) {
  NamedTensors out;
  out.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    out.emplace_back(name, t.detach().clone());
  }
  return out;
}

// The module's tensors in the reference's order; fails naming the first name or shape that differs.
std::vector<at::Tensor> match(const NamedTensors& reference, const NamedTensors& actual, const char* kind,
                              const char* who) {
  std::unordered_map<std::string, const at::Tensor*> by_name;
  for (const auto& [name, t] : actual) {
    by_name.emplace(name, &t);
  }
  std::vector<at::Tensor> out;
  out.reserve(reference.size());
  for (const auto& [name, ref] : reference) {
    const auto it = by_name.find(name);
    MD_CHECK_VALUE(it != by_name.end(), who, ": the module has no ", kind, " '", name, "', which the EMA holds");
    const at::Tensor& t = *it->second;
    MD_CHECK_VALUE(t.sizes() == ref.sizes(), who, ": ", kind, " '", name, "' has shape ", shape_string(t),
                   " in the module but ", shape_string(ref), " in the EMA");
    out.push_back(t);
  }
  if (actual.size() != reference.size()) {
    std::unordered_map<std::string, bool> known;
    for (const auto& [name, t] : reference) {
      known.emplace(name, true);
    }
    for (const auto& [name, t] : actual) {
      MD_CHECK_VALUE(known.count(name) != 0, who, ": the module's ", kind, " '", name, "' is not in the EMA (the EMA holds ",
                     reference.size(), " ", kind, "s, the module ", actual.size(), ")");
    }
    MD_CHECK_VALUE(false, who, ": the module has ", actual.size(), " ", kind, "s, the EMA ", reference.size(),
                   " (repeated names?)");
  }
  return out;
}

void copy_into(const std::vector<at::Tensor>& targets, const NamedTensors& sources) {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < targets.size(); ++i) {
    at::Tensor target = targets[i];
    target.copy_(sources[i].second);
  }
}

}  // namespace

EMA::EMA(const torch::nn::Module& module, EMAOptions options) : options_(options) {
  MD_CHECK_VALUE(options_.decay() >= 0 && options_.decay() <= 1, "EMAOptions: decay must be in [0, 1], got ",
                 options_.decay());
  MD_CHECK_VALUE(options_.update_every() >= 1, "EMAOptions: update_every must be >= 1, got ", options_.update_every());
  shadow_params_ = detached_copies(module_parameters(module));
  shadow_buffers_ = detached_copies(module_buffers(module));
}

double EMA::decay_at(int64_t k) const {
  MD_CHECK_VALUE(k >= 0, "EMA::decay_at: k must be >= 0, got ", k);
  if (!options_.warmup()) {
    return options_.decay();
  }
  const auto kd = static_cast<double>(k);
  return std::min(options_.decay(), (1 + kd) / (10 + kd));
}

void EMA::update(const torch::nn::Module& module) {
  const std::vector<at::Tensor> params = match(shadow_params_, module_parameters(module), "parameter", "EMA::update");
  const std::vector<at::Tensor> buffers = match(shadow_buffers_, module_buffers(module), "buffer", "EMA::update");
  ++num_steps_;
  if (num_steps_ % options_.update_every() != 0) {
    return;
  }
  const double decay = decay_at(num_updates_);
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i) {
    at::Tensor& shadow = shadow_params_[i].second;
    shadow.lerp_(params[i].detach().to(shadow.options()), 1 - decay);
  }
  for (size_t i = 0; i < buffers.size(); ++i) {
    shadow_buffers_[i].second.copy_(buffers[i]);
  }
  ++num_updates_;
}

void EMA::copy_to(torch::nn::Module& module) const {
  copy_into(match(shadow_params_, module_parameters(module), "parameter", "EMA::copy_to"), shadow_params_);
  copy_into(match(shadow_buffers_, module_buffers(module), "buffer", "EMA::copy_to"), shadow_buffers_);
}

void EMA::store(const torch::nn::Module& module) {
  const NamedTensors params = module_parameters(module);
  const NamedTensors buffers = module_buffers(module);
  (void)match(shadow_params_, params, "parameter", "EMA::store");
  (void)match(shadow_buffers_, buffers, "buffer", "EMA::store");
  stored_params_ = detached_copies(params);
  stored_buffers_ = detached_copies(buffers);
}

void EMA::restore(torch::nn::Module& module) {
  MD_CHECK_VALUE(has_stored() || (shadow_params_.empty() && shadow_buffers_.empty()),
                 "EMA::restore: no weights stored; call store() first");
  copy_into(match(stored_params_, module_parameters(module), "parameter", "EMA::restore"), stored_params_);
  copy_into(match(stored_buffers_, module_buffers(module), "buffer", "EMA::restore"), stored_buffers_);
  stored_params_.clear();
  stored_buffers_.clear();
}

NamedTensors EMA::named_state() const {
  NamedTensors out;
  out.reserve(shadow_params_.size() + shadow_buffers_.size() + 2);
  for (const auto& [name, t] : shadow_params_) {
    out.emplace_back("param." + name, t);
  }
  for (const auto& [name, t] : shadow_buffers_) {
    out.emplace_back("buffer." + name, t);
  }
  out.emplace_back("num_updates", at::scalar_tensor(num_updates_, at::kLong));
  out.emplace_back("num_steps", at::scalar_tensor(num_steps_, at::kLong));
  return out;
}

void EMA::load_named_state(const NamedTensors& state) {
  const char* who = "EMA::load_named_state";
  std::unordered_map<std::string, const at::Tensor*> by_name;
  for (const auto& [name, t] : state) {
    MD_CHECK_VALUE(by_name.emplace(name, &t).second, who, ": entry '", name, "' appears twice");
  }
  const NamedTensors expected = named_state();
  for (const auto& [name, ref] : expected) {
    const auto it = by_name.find(name);
    MD_CHECK_VALUE(it != by_name.end(), who, ": missing entry '", name, "'");
    check_defined(*it->second, name.c_str());
    MD_CHECK_VALUE(it->second->sizes() == ref.sizes(), who, ": entry '", name, "' has shape ",
                   shape_string(*it->second), ", expected ", shape_string(ref));
  }
  if (state.size() != expected.size()) {
    std::unordered_map<std::string, bool> known;
    for (const auto& [name, t] : expected) {
      known.emplace(name, true);
    }
    for (const auto& [name, t] : state) {
      MD_CHECK_VALUE(known.count(name) != 0, who, ": unexpected entry '", name, "'");
    }
  }
  const int64_t updates = by_name.at("num_updates")->item<int64_t>();
  const int64_t steps = by_name.at("num_steps")->item<int64_t>();
  MD_CHECK_VALUE(updates >= 0 && steps >= updates, who, ": num_updates (", updates, ") and num_steps (", steps,
                 ") must satisfy 0 <= num_updates <= num_steps");
  at::NoGradGuard no_grad;
  for (auto& [name, t] : shadow_params_) {
    t.copy_(*by_name.at("param." + name));
  }
  for (auto& [name, t] : shadow_buffers_) {
    t.copy_(*by_name.at("buffer." + name));
  }
  num_updates_ = updates;
  num_steps_ = steps;
}

void EMA::to(c10::Device device) {
  for (NamedTensors* list : {&shadow_params_, &shadow_buffers_, &stored_params_, &stored_buffers_}) {
    for (auto& [name, t] : *list) {
      t = t.to(device);
    }
  }
}

}  // namespace manifold_diffusion
