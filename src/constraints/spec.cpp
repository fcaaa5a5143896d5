#include <manifold_diffusion/constraints/spec.h>

#include <manifold_diffusion/core/check.h>

#include <cerrno>
#include <cstdlib>
#include <sstream>

namespace manifold_diffusion {

namespace {
std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}
}  // namespace

ConstraintSpec ConstraintSpec::parse(const std::string& text) {
  ConstraintSpec spec;
  spec.text_ = text;
  const auto colon = text.find(':');
  spec.name_ = trim(text.substr(0, colon));
  MD_CHECK_VALUE(!spec.name_.empty(), "constraint spec '", text, "': empty name (expected NAME[:key=value,...])");
  if (colon == std::string::npos) return spec;
  const std::string rest = text.substr(colon + 1);
  MD_CHECK_VALUE(!trim(rest).empty(), "constraint spec '", text, "': nothing after ':'");
  std::stringstream ss(rest);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto eq = item.find('=');
    MD_CHECK_VALUE(eq != std::string::npos, "constraint spec '", text, "': '", item, "' is not key=value");
    const std::string key = trim(item.substr(0, eq));
    const std::string value = trim(item.substr(eq + 1));
    MD_CHECK_VALUE(!key.empty(), "constraint spec '", text, "': empty key in '", item, "'");
    MD_CHECK_VALUE(!value.empty(), "constraint spec '", text, "': empty value for '", key, "'");
    MD_CHECK_VALUE(spec.values_.emplace(key, value).second, "constraint spec '", text, "': key '", key,
                   "' given twice");
  }
  return spec;
}

double ConstraintSpec::get_double(const std::string& key, double fallback) const {
  used_.insert(key);
  auto it = values_.find(key);
  if (it == values_.end()) return fallback;
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(it->second.c_str(), &end);
  MD_CHECK_VALUE(end != it->second.c_str() && *end == '\0' && errno == 0, "constraint '", name_, "': ", key, "='",
                 it->second, "' is not a number");
  return v;
}

int64_t ConstraintSpec::get_int(const std::string& key, int64_t fallback) const {
  used_.insert(key);
  auto it = values_.find(key);
  if (it == values_.end()) return fallback;
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(it->second.c_str(), &end, 10);
  MD_CHECK_VALUE(end != it->second.c_str() && *end == '\0' && errno == 0, "constraint '", name_, "': ", key, "='",
                 it->second, "' is not an integer");
  return static_cast<int64_t>(v);
}

bool ConstraintSpec::get_bool(const std::string& key, bool fallback) const {
  used_.insert(key);
  auto it = values_.find(key);
  if (it == values_.end()) return fallback;
  const std::string& v = it->second;
  if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
  if (v == "0" || v == "false" || v == "no" || v == "off") return false;
  MD_CHECK_VALUE(false, "constraint '", name_, "': ", key, "='", v, "' is not a boolean (true/false)");
  return fallback;
}

std::string ConstraintSpec::get_string(const std::string& key, const std::string& fallback) const {
  used_.insert(key);
  auto it = values_.find(key);
  return it == values_.end() ? fallback : it->second;
}

void ConstraintSpec::check_all_used() const {
  std::string unknown;
  for (const auto& kv : values_) {
    if (!used_.count(kv.first)) unknown += (unknown.empty() ? "" : ", ") + kv.first;
  }
  if (unknown.empty()) return;
  std::string known;
  for (const auto& k : used_) known += (known.empty() ? "" : ", ") + k;
  MD_CHECK_VALUE(false, "constraint '", name_, "': unknown option(s) ", unknown, " (known: ",
                 known.empty() ? "none" : known, ")");
}

}  // namespace manifold_diffusion
