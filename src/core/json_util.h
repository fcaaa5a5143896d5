#pragma once
// Private helpers for the Options <-> JSON round trips: every key is checked, unknown keys and
// values of the wrong type are errors that name them.

#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/core/enum.h>

#include <nlohmann/json.hpp>

#include <set>
#include <string>

namespace manifold_diffusion {
namespace detail {

class JsonReader {
 public:
  JsonReader(const std::string& text, std::string what) : what_(std::move(what)) {
    try {
      j_ = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      MD_CHECK_VALUE(false, what_, ": invalid JSON: ", e.what());
    }
    MD_CHECK_VALUE(j_.is_object(), what_, ": expected a JSON object, got ", j_.type_name());
  }

  /// Calls `set(value)` when `key` is present.
  template <typename T, typename Setter>
  void read(const char* key, Setter&& set) {
    seen_.insert(key);
    if (!j_.contains(key)) {
      return;
    }
    T value{};
    try {
      value = j_.at(key).get<T>();
    } catch (const nlohmann::json::exception& e) {
      MD_CHECK_VALUE(false, what_, ": bad value for '", key, "': ", j_.at(key).dump(), " (", e.what(), ")");
    }
    set(value);
  }

  /// As read(), for an enum with EnumTraits given by name.
  template <typename E, typename Setter>
  void read_enum(const char* key, Setter&& set) {
    read<std::string>(key, [&](const std::string& name) { set(enum_from_string<E>(name)); });
  }

  /// Rejects keys that no read() asked for.
  void finish() const {
    for (const auto& item : j_.items()) {
      MD_CHECK_VALUE(seen_.count(item.key()) > 0, what_, ": unknown key '", item.key(), "'");
    }
  }

 private:
  nlohmann::json j_;
  std::string what_;
  std::set<std::string> seen_;
};

}  // namespace detail
}  // namespace manifold_diffusion
