#pragma once
// Helpers shared by the backbones' sources: input normalisation for timesteps and class labels,
// zero initialisation, and reading options from JSON. Private to the library.

#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/core/device.h>

#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

namespace manifold_diffusion {
namespace detail {

/// t as a tensor of shape [batch] on `device`: a 0-dim t is repeated over the batch. Keeps t's dtype.
inline at::Tensor batch_timesteps(const at::Tensor& t, int64_t batch, c10::Device device, const char* who) {
  check_defined(t, "t");
  MD_CHECK_TYPE(t.is_floating_point() || at::isIntegralType(t.scalar_type(), /*includeBool=*/false), who,
                ": t: expected an integral or floating dtype, got ", t.scalar_type());
  MD_CHECK_VALUE(t.dim() == 0 || (t.dim() == 1 && t.size(0) == batch), who, ": t: expected shape [", batch,
                 "] (the batch of x) or a 0-dim tensor, got shape ", shape_string(t));
  at::Tensor out = t.dim() == 0 ? t.reshape({1}).expand({batch}) : t;
  return out.to(device);
}

/// Class labels as int64 indices of an embedding table with num_classes + 1 rows: labels in
/// [0, num_classes) stay, -1 and num_classes become num_classes (the null class), an undefined
/// tensor means the null class for every sample.
inline at::Tensor class_indices(const at::Tensor& labels, int64_t num_classes, int64_t batch, c10::Device device,
                                const char* who) {
  if (!labels.defined()) {
    return at::full({batch}, num_classes, at::TensorOptions().dtype(at::kLong).device(device));
  }
  MD_CHECK_VALUE(num_classes > 0, who, ": class_labels given, but the model is unconditional (num_classes = 0)");
  MD_CHECK_TYPE(at::isIntegralType(labels.scalar_type(), /*includeBool=*/false), who,
                ": class_labels: expected an integral dtype (int64), got ", labels.scalar_type());
  MD_CHECK_VALUE(labels.dim() == 1 && labels.size(0) == batch, who, ": class_labels: expected shape [", batch,
                 "] (the batch of x), got shape ", shape_string(labels));
  // (A CUDA graph capture cannot read values back; the eager warm-up calls before it checked them.)
  if (batch > 0 && !(labels.is_cuda() && cuda_stream_capturing())) {
    const int64_t lo = labels.min().item<int64_t>();
    const int64_t hi = labels.max().item<int64_t>();
    MD_CHECK_INDEX(lo >= -1 && hi <= num_classes, who, ": class_labels: expected values in [-1, ", num_classes,
                   "] (", num_classes, " classes; -1 and ", num_classes, " are the null class), got min ", lo,
                   " and max ", hi);
  }
  const at::Tensor l = labels.to(device, at::kLong);
  return at::where(l < 0, at::full_like(l, num_classes), l);
}

/// Sets a module's weight and bias to zero (the zero-initialised output layers).
template <typename Layer>
void zero_parameters(Layer& layer) {
  at::NoGradGuard no_grad;
  layer->weight.zero_();
  if (layer->bias.defined()) {
    layer->bias.zero_();
  }
}

inline nlohmann::json parse_json_object(const std::string& text, const char* what) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    MD_CHECK_VALUE(false, what, ": invalid JSON: ", e.what());
  }
  MD_CHECK_VALUE(j.is_object(), what, ": expected a JSON object, got ", j.type_name());
  return j;
}

/// j[key] as T. Integer fields reject fractional numbers, which nlohmann would truncate.
template <typename T>
T json_get(const nlohmann::json& j, const std::string& key, const char* what) {
  const nlohmann::json& v = j.at(key);
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    MD_CHECK_VALUE(v.is_number_integer(), what, ": bad value for '", key, "': expected an integer, got ", v.dump());
  } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
    bool ok = v.is_array();
    for (const auto& e : v) ok = ok && e.is_number_integer();
    MD_CHECK_VALUE(ok, what, ": bad value for '", key, "': expected an array of integers, got ", v.dump());
  }
  try {
    return v.get<T>();
  } catch (const nlohmann::json::exception& e) {
    MD_CHECK_VALUE(false, what, ": bad value for '", key, "': ", j.at(key).dump(), " (", e.what(), ")");
  }
  return T{};
}

}  // namespace detail
}  // namespace manifold_diffusion
