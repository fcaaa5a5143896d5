#pragma once

/// \file
/// Version of manifold_diffusion. The numbers below are the single source of truth:
/// the build reads them from this file.
///
/// Example:
/// \code
///   #include <manifold_diffusion/core/version.h>
///   static_assert(MD_VERSION >= 100, "needs manifold_diffusion >= 0.1.0");
///   std::string v = mdiff::version_string();  // "0.2.0"
/// \endcode

#define MD_VERSION_MAJOR 0
#define MD_VERSION_MINOR 2
#define MD_VERSION_PATCH 0

/// Single comparable number: major * 10000 + minor * 100 + patch.
#define MD_VERSION (MD_VERSION_MAJOR * 10000 + MD_VERSION_MINOR * 100 + MD_VERSION_PATCH)

#include <manifold_diffusion/core/namespace.h>

#include <string>

namespace manifold_diffusion {

/// The library version as "major.minor.patch", taken from the headers the caller compiled against.
inline std::string version_string() {
  return std::to_string(MD_VERSION_MAJOR) + "." + std::to_string(MD_VERSION_MINOR) + "." +
         std::to_string(MD_VERSION_PATCH);
}

/// The version the library binary was built with; differs from version_string() only
/// when headers and binary come from different releases.
std::string library_version_string();

}  // namespace manifold_diffusion
