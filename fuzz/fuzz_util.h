// Shared by the libFuzzer targets: the contract every reader must keep on hostile bytes.
//
// A reader may accept the input or reject it with a c10::Error (the library's only error type).
// Anything else is a finding: a crash or sanitizer report (ASan, UBSan), a std::exception of any
// other type (a leaked parser error, std::bad_alloc from an unchecked size), or a time-out.
#pragma once

#include <c10/util/Exception.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <typeinfo>

namespace mdiff_fuzz {

/// Runs `fn`, treating c10::Error as the expected rejection and every other exception as a
/// finding (printed, then abort() so that libFuzzer saves the input).
template <typename Fn>
bool accepts(const char* what, Fn&& fn) {
  try {
    fn();
    return true;
  } catch (const c10::Error&) {
    return false;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: escaped a %s (not a c10::Error): %s\n", what, typeid(e).name(), e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "%s: escaped an exception of unknown type\n", what);
    std::abort();
  }
}

/// A property that must hold for accepted input; a violation is a finding.
inline void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "property violated: %s\n", what);
    std::abort();
  }
}

}  // namespace mdiff_fuzz
