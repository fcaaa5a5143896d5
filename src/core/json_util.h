#pragma once
// Private helpers for the Options <-> JSON round trips: every key is checked, unknown keys and
// values of the wrong type are errors that name them.

#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/core/enum.h>

#include <nlohmann/json.hpp>

#include <limits>
#include <set>
#include <type_traits>
#include <vector>
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
    const nlohmann::json& v = j_.at(key);
    MD_CHECK_VALUE(type_matches<T>(v), what_, ": '", key, "' must be ", type_name<T>(), ", got ", v.dump(), " (",
                   v.type_name(), ")");
    T value{};
    try {
      value = v.get<T>();
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
  // Strict types: no silent 1000.5 -> 1000, true -> 1 or string -> number conversions.
  template <typename T>
  static bool type_matches(const nlohmann::json& v) {
    if constexpr (std::is_same_v<T, bool>) {
      return v.is_boolean();
    } else if constexpr (std::is_integral_v<T>) {
      return v.is_number_integer() && (std::is_unsigned_v<T> || !v.is_number_unsigned() ||
                                       v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max()));
    } else if constexpr (std::is_floating_point_v<T>) {
      return v.is_number();
    } else if constexpr (std::is_same_v<T, std::string>) {
      return v.is_string();
    } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
      if (!v.is_array()) return false;
      for (const auto& e : v) {
        if (!type_matches<int64_t>(e)) return false;
      }
      return true;
    } else {
      return true;  // nlohmann::json and other structured values are checked by the caller
    }
  }
  template <typename T>
  static const char* type_name() {
    if constexpr (std::is_same_v<T, bool>) return "a boolean";
    else if constexpr (std::is_integral_v<T>) return "an integer";
    else if constexpr (std::is_floating_point_v<T>) return "a number";
    else if constexpr (std::is_same_v<T, std::string>) return "a string";
    else if constexpr (std::is_same_v<T, std::vector<int64_t>>) return "an array of integers";
    else return "a JSON value";
  }

  nlohmann::json j_;
  std::string what_;
  std::set<std::string> seen_;
};

}  // namespace detail
}  // namespace manifold_diffusion
