#pragma once
// Helpers shared by the tests.

#include <manifold_diffusion/core/device.h>

#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <functional>
#include <string>

namespace mdiff_test {

/// Runs `fn`, expects a c10::Error, and returns its message (without backtrace) for inspection.
inline std::string error_message(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  ADD_FAILURE() << "expected a c10::Error, none was thrown";
  return {};
}

/// Same shape and dtype, and max |got - want| <= tol * (1 + max |want|), compared in float64.
inline void expect_max_close(const at::Tensor& got, const at::Tensor& want, double tol, const std::string& what) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  ASSERT_EQ(got.scalar_type(), want.scalar_type()) << what;
  if (got.numel() == 0) {
    return;
  }
  const double diff = (got.to(at::kDouble) - want.to(at::kDouble)).abs().max().item<double>();
  EXPECT_LE(diff, tol * (1 + want.to(at::kDouble).abs().max().item<double>())) << what << " max diff " << diff;
}

}  // namespace mdiff_test

/// Expects `stmt` to throw a c10::Error whose message contains every one of the given substrings.
#define MD_EXPECT_ERROR(stmt, ...)                                                    \
  do {                                                                                \
    const std::string md_msg_ = mdiff_test::error_message([&] { (void)(stmt); });     \
    for (const char* md_part_ : {__VA_ARGS__}) {                                      \
      EXPECT_NE(md_msg_.find(md_part_), std::string::npos)                            \
          << "message \"" << md_msg_ << "\" lacks \"" << md_part_ << "\"";            \
    }                                                                                 \
  } while (0)

/// Skips a CUDA test at run time when no GPU is visible.
#define MD_SKIP_WITHOUT_CUDA()                                                         \
  do {                                                                                \
    if (!mdiff::cuda_available()) {                                                   \
      GTEST_SKIP() << "no CUDA device";                                               \
    }                                                                                 \
  } while (0)
