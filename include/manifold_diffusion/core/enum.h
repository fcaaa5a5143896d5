#pragma once

/// \file
/// Enum <-> string conversion with fmt and iostream support.
///
/// An enum takes part by specialising `mdiff::EnumTraits`: a type name for messages and a table of
/// (value, name) entries. The first entry of a value is its canonical name; later entries for the
/// same value are accepted aliases when parsing. Parsing ignores case and treats '-' as '_'.
///
/// Example:
/// \code
///   enum class Color { Red, Green };
///   template <> struct mdiff::EnumTraits<Color> {
///     static constexpr const char* type_name = "Color";
///     static constexpr mdiff::EnumEntry<Color> entries[] = {
///         {Color::Red, "red"}, {Color::Green, "green"}, {Color::Green, "g"}};
///   };
///   mdiff::to_string(Color::Red);                  // "red"
///   mdiff::enum_from_string<Color>("GREEN");       // Color::Green
///   mdiff::enum_from_string<Color>("blue");        // throws: unknown Color 'blue'; expected one of: red, green
///   fmt::format("{}", Color::Green);               // "green"
/// \endcode

#include <manifold_diffusion/core/check.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstddef>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace manifold_diffusion {

/// One (value, name) pair of an enum's string table.
template <typename E>
struct EnumEntry {
  E value;
  const char* name;
};

/// Specialise for an enum to give it names; see the file comment.
template <typename E>
struct EnumTraits;

namespace detail {
template <typename E, typename = void>
struct has_enum_traits : std::false_type {};
template <typename E>
struct has_enum_traits<E, std::void_t<decltype(EnumTraits<E>::entries), decltype(EnumTraits<E>::type_name)>>
    : std::true_type {};

inline std::string normalize_enum_name(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    } else if (c == '-') {
      c = '_';
    }
  }
  return out;
}
}  // namespace detail

/// True when `E` has an `EnumTraits` specialisation.
template <typename E>
inline constexpr bool has_enum_traits_v = detail::has_enum_traits<E>::value;

/// The canonical name of `value` (the first table entry that matches).
template <typename E, typename = std::enable_if_t<has_enum_traits_v<E>>>
std::string to_string(E value) {
  for (const auto& entry : EnumTraits<E>::entries) {
    if (entry.value == value) {
      return entry.name;
    }
  }
  MD_CHECK_VALUE(false, "invalid ", EnumTraits<E>::type_name, " value ",
                 static_cast<long long>(static_cast<std::underlying_type_t<E>>(value)));
  return {};
}

/// The canonical names of every value, in table order.
template <typename E, typename = std::enable_if_t<has_enum_traits_v<E>>>
std::vector<std::string> enum_names() {
  std::vector<std::string> names;
  for (const auto& entry : EnumTraits<E>::entries) {
    bool seen = false;
    for (const auto& earlier : EnumTraits<E>::entries) {
      if (&earlier == &entry) {
        break;
      }
      seen = seen || earlier.value == entry.value;
    }
    if (!seen) {
      names.emplace_back(entry.name);
    }
  }
  return names;
}

/// The value whose name (or alias) is `name`, or nullopt.
template <typename E, typename = std::enable_if_t<has_enum_traits_v<E>>>
std::optional<E> try_enum_from_string(std::string_view name) {
  const std::string wanted = detail::normalize_enum_name(name);
  for (const auto& entry : EnumTraits<E>::entries) {
    if (detail::normalize_enum_name(entry.name) == wanted) {
      return entry.value;
    }
  }
  return std::nullopt;
}

/// The value whose name (or alias) is `name`; throws c10::ValueError listing the valid names otherwise.
template <typename E, typename = std::enable_if_t<has_enum_traits_v<E>>>
E enum_from_string(std::string_view name) {
  if (auto value = try_enum_from_string<E>(name)) {
    return *value;
  }
  MD_CHECK_VALUE(false, "unknown ", EnumTraits<E>::type_name, " '", std::string(name),
                 "'; expected one of: ", fmt::format("{}", fmt::join(enum_names<E>(), ", ")));
  return E{};
}

/// Streams the canonical name. Argument-dependent lookup finds it for enums declared directly in
/// `manifold_diffusion`; an enum in a nested namespace adds `using manifold_diffusion::operator<<;`
/// to that namespace.
template <typename E, typename = std::enable_if_t<has_enum_traits_v<E>>>
std::ostream& operator<<(std::ostream& os, E value) {
  return os << to_string(value);
}

}  // namespace manifold_diffusion

/// fmt support for every enum with EnumTraits: `fmt::format("{}", value)` prints the canonical name.
template <typename E>
struct fmt::formatter<E, char, std::enable_if_t<manifold_diffusion::has_enum_traits_v<E>>>
    : fmt::formatter<fmt::string_view> {
  template <typename FormatContext>
  auto format(E value, FormatContext& ctx) const -> decltype(ctx.out()) {
    const std::string name = manifold_diffusion::to_string(value);
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(name), ctx);
  }
};
