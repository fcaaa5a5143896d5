#pragma once

/// \file
/// Which implementation of a fused op runs.
///
/// Every op in `mdiff::ops` has a plain-ATen reference (the test oracle) and native fast paths
/// (a vectorised CPU loop, and a CUDA kernel when the library was built with CUDA). `Auto` picks
/// the native path for the input's device; `Reference` forces the oracle.
///
/// Example:
/// \code
///   at::Tensor fast = mdiff::ops::q_sample(x0, noise, t, a, b);                          // Auto
///   at::Tensor ref  = mdiff::ops::q_sample(x0, noise, t, a, b, mdiff::ops::OpBackend::Reference);
///   mdiff::ops::OpBackend be = mdiff::enum_from_string<mdiff::ops::OpBackend>("native");
/// \endcode

#include <manifold_diffusion/core/enum.h>

namespace manifold_diffusion {
namespace ops {

using manifold_diffusion::operator<<;

/// Implementation choice for a fused op.
enum class OpBackend {
  Auto,       ///< Native path for the input's device.
  Reference,  ///< Plain ATen composition: slow, obviously correct, the oracle in tests.
  Native,     ///< The fused kernel (CPU loop or CUDA kernel).
};

}  // namespace ops

template <>
struct EnumTraits<ops::OpBackend> {
  static constexpr const char* type_name = "OpBackend";
  static constexpr EnumEntry<ops::OpBackend> entries[] = {
      {ops::OpBackend::Auto, "auto"},
      {ops::OpBackend::Reference, "reference"},
      {ops::OpBackend::Native, "native"},
      {ops::OpBackend::Native, "fused"},
  };
};

}  // namespace manifold_diffusion
