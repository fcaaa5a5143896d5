#pragma once

/// \file
/// The library's namespace and its documented short alias.
///
/// Example:
/// \code
///   #include <manifold_diffusion/core/namespace.h>
///   namespace md = mdiff;  // mdiff is manifold_diffusion
/// \endcode

namespace manifold_diffusion {}

/// Short alias used throughout the documentation and the examples.
namespace mdiff = manifold_diffusion;
