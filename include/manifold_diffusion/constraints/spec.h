#pragma once
/// \file
/// `NAME[:key=value,...]` constraint specifications, as the programs' --train-constraint and
/// --sample-constraint flags take them.

#include <cstdint>
#include <map>
#include <set>
#include <string>

namespace manifold_diffusion {

/// A parsed constraint specification. Every getter records the key it read, so that
/// check_all_used() can reject misspelt keys with a message that lists the known ones.
///
/// Example:
/// \code
///   auto spec = mdiff::ConstraintSpec::parse("dps:scale=0.5,noise=poisson");
///   double s = spec.get_double("scale", 1.0);            // 0.5
///   std::string noise = spec.get_string("noise", "gaussian");
///   spec.check_all_used();                               // throws on e.g. "scael=0.5"
/// \endcode
class ConstraintSpec {
 public:
  /// Parses "name" or "name:k=v,k=v". Throws c10::Error naming the text on empty names, missing
  /// '=', empty keys or repeated keys.
  static ConstraintSpec parse(const std::string& text);

  const std::string& name() const { return name_; }
  const std::string& text() const { return text_; }
  bool has(const std::string& key) const { return values_.count(key) != 0; }

  /// Typed getters: the value of `key`, or `fallback` when absent. A value that does not parse as
  /// the type is an error naming the key and the value.
  double get_double(const std::string& key, double fallback) const;
  int64_t get_int(const std::string& key, int64_t fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;

  /// Throws when a key was never read by a getter (unknown option for this constraint).
  void check_all_used() const;

 private:
  std::string text_;
  std::string name_;
  std::map<std::string, std::string> values_;
  mutable std::set<std::string> used_;
};

}  // namespace manifold_diffusion
