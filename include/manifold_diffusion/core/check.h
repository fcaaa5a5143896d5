#pragma once

/// \file
/// Argument checking in LibTorch's style. Every public entry point of the library validates its
/// inputs with these helpers, so a bad call fails with a `c10::Error` (a `std::exception`) whose
/// message names the argument and shows the offending value, never with a crash or silent garbage.
///
/// Example:
/// \code
///   at::Tensor x0 = ...;
///   mdiff::check_dim(x0, "x0", 4);                 // "x0: expected 4 dimensions, got 3 (shape [2, 3, 4])"
///   mdiff::check_floating(x0, "x0");
///   mdiff::check_in_range(eta, 0.0, 1.0, "eta");   // "eta must be in [0, 1], got 1.5"
///   MD_CHECK(steps > 0, "steps must be positive, got ", steps);
/// \endcode

#include <manifold_diffusion/core/namespace.h>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <sstream>
#include <string>

/// Fails with c10::Error when `cond` is false; the remaining arguments are streamed into the message.
#define MD_CHECK(cond, ...) TORCH_CHECK(cond, __VA_ARGS__)
/// As MD_CHECK, but raises c10::ValueError (Python's ValueError when bound).
#define MD_CHECK_VALUE(cond, ...) TORCH_CHECK_VALUE(cond, __VA_ARGS__)
/// As MD_CHECK, but raises c10::TypeError: wrong dtype or type of an argument.
#define MD_CHECK_TYPE(cond, ...) TORCH_CHECK_TYPE(cond, __VA_ARGS__)
/// As MD_CHECK, but raises c10::IndexError: an index or timestep out of range.
#define MD_CHECK_INDEX(cond, ...) TORCH_CHECK_INDEX(cond, __VA_ARGS__)
/// An invariant of the library itself; a failure is a bug in manifold_diffusion, not in the caller.
#define MD_INTERNAL_ASSERT(cond, ...) TORCH_INTERNAL_ASSERT(cond, __VA_ARGS__)

namespace manifold_diffusion {

/// "[2, 3, 4]" for a shape, "undefined" for an undefined tensor.
std::string shape_string(const at::Tensor& t);

/// Names the public function whose arguments are being checked. While one is alive on this
/// thread, the argument checks below (check_defined, check_shape, check_finite, ...) start their
/// messages with "<function>: ", so that an error raised deep inside a call still says which
/// function refused which argument. The innermost context wins.
///
/// Example:
/// \code
///   at::Tensor my_op(const at::Tensor& x) {
///     mdiff::CheckContext context("my_op");
///     mdiff::check_dim(x, "x", 2);   // "my_op: x: expected 2 dimensions, got 3 (shape [1, 2, 3])"
///     ...
///   }
/// \endcode
class CheckContext {
 public:
  explicit CheckContext(std::string function);
  ~CheckContext();
  CheckContext(const CheckContext&) = delete;
  CheckContext& operator=(const CheckContext&) = delete;
  /// "<function>: " of the innermost context on this thread, or "".
  static std::string prefix();
  /// `name` prefixed with prefix(), unless it already starts with it.
  static std::string qualify(const char* name);

 private:
  std::string function_;
  const CheckContext* previous_;
};

/// `t` must be a defined tensor.
void check_defined(const at::Tensor& t, const char* name);
/// `t` must be defined and hold at least one element.
void check_non_empty(const at::Tensor& t, const char* name);
/// `t` must have exactly `dim` dimensions.
void check_dim(const at::Tensor& t, const char* name, int64_t dim);
/// `t` must have between `min_dim` and `max_dim` dimensions (inclusive).
void check_dim_between(const at::Tensor& t, const char* name, int64_t min_dim, int64_t max_dim);
/// `t` must have exactly the shape `expected`; an entry of -1 matches any size.
void check_shape(const at::Tensor& t, const char* name, at::IntArrayRef expected);
/// `a` and `b` must have the same shape.
void check_same_shape(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name);
/// `t` must have a floating-point dtype (float16, bfloat16, float32 or float64).
void check_floating(const at::Tensor& t, const char* name);
/// `t` must have an integral dtype (int32 or int64).
void check_index_dtype(const at::Tensor& t, const char* name);
/// `t` must have dtype `dtype`.
void check_dtype(const at::Tensor& t, const char* name, at::ScalarType dtype);
/// `a` and `b` must have the same dtype.
void check_same_dtype(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name);
/// `a` and `b` must live on the same device.
void check_same_device(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name);
/// Every element of `t` must be finite. Reads the data, which synchronises a GPU stream.
void check_finite(const at::Tensor& t, const char* name);
/// Every element of the integral tensor `t` must lie in [lo, hi). Synchronises a GPU stream.
void check_index_range(const at::Tensor& t, const char* name, int64_t lo, int64_t hi);

/// `value` must be finite and lie in the closed interval [lo, hi].
template <typename T>
void check_in_range(T value, T lo, T hi, const char* name) {
  const bool finite = !std::is_floating_point<T>::value || std::isfinite(static_cast<double>(value));
  MD_CHECK_VALUE(finite && value >= lo && value <= hi, name, " must be in [", lo, ", ", hi, "], got ", value);
}

/// `value` must be finite and strictly greater than zero.
template <typename T>
void check_positive(T value, const char* name) {
  const bool finite = !std::is_floating_point<T>::value || std::isfinite(static_cast<double>(value));
  MD_CHECK_VALUE(finite && value > T(0), name, " must be positive, got ", value);
}

/// `value` must be finite and >= 0.
template <typename T>
void check_non_negative(T value, const char* name) {
  const bool finite = !std::is_floating_point<T>::value || std::isfinite(static_cast<double>(value));
  MD_CHECK_VALUE(finite && value >= T(0), name, " must be non-negative, got ", value);
}

}  // namespace manifold_diffusion
