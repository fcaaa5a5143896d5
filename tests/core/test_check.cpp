#include <manifold_diffusion/core/check.h>

#include "test_util.h"

#include <ATen/ATen.h>

#include <limits>

namespace {

TEST(Check, AcceptsValidTensors) {
  const at::Tensor x = at::zeros({2, 3, 4});
  EXPECT_NO_THROW(mdiff::check_defined(x, "x"));
  EXPECT_NO_THROW(mdiff::check_non_empty(x, "x"));
  EXPECT_NO_THROW(mdiff::check_dim(x, "x", 3));
  EXPECT_NO_THROW(mdiff::check_dim_between(x, "x", 2, 4));
  EXPECT_NO_THROW(mdiff::check_shape(x, "x", {2, -1, 4}));
  EXPECT_NO_THROW(mdiff::check_same_shape(x, "x", at::ones({2, 3, 4}), "y"));
  EXPECT_NO_THROW(mdiff::check_floating(x, "x"));
  EXPECT_NO_THROW(mdiff::check_dtype(x, "x", at::kFloat));
  EXPECT_NO_THROW(mdiff::check_finite(x, "x"));
  EXPECT_NO_THROW(mdiff::check_index_dtype(at::zeros({2}, at::kInt), "t"));
  EXPECT_NO_THROW(mdiff::check_index_range(at::tensor({0, 9}, at::kLong), "t", 0, 10));
}

TEST(Check, MessagesNameTheArgumentAndTheValue) {
  const at::Tensor x = at::zeros({2, 3, 4});
  MD_EXPECT_ERROR(mdiff::check_defined(at::Tensor(), "weights"), "weights", "undefined");
  MD_EXPECT_ERROR(mdiff::check_non_empty(at::zeros({0, 3}), "batch"), "batch", "[0, 3]");
  MD_EXPECT_ERROR(mdiff::check_dim(x, "x0", 4), "x0", "expected 4 dimensions", "got 3", "[2, 3, 4]");
  MD_EXPECT_ERROR(mdiff::check_dim_between(x, "x0", 4, 5), "x0", "between 4 and 5", "got 3");
  MD_EXPECT_ERROR(mdiff::check_shape(x, "x0", {2, 3, 5}), "x0", "[2, 3, 5]", "[2, 3, 4]");
  MD_EXPECT_ERROR(mdiff::check_shape(x, "x0", {2, 3}), "x0", "[2, 3]");
  MD_EXPECT_ERROR(mdiff::check_same_shape(x, "x0", at::zeros({2, 3}), "noise"), "x0", "noise", "[2, 3]");
  MD_EXPECT_ERROR(mdiff::check_floating(at::zeros({2}, at::kLong), "x0"), "x0", "floating", "Long");
  MD_EXPECT_ERROR(mdiff::check_index_dtype(x, "t"), "t", "integer", "Float");
  MD_EXPECT_ERROR(mdiff::check_dtype(x, "x", at::kDouble), "x", "Double", "Float");
  MD_EXPECT_ERROR(mdiff::check_same_dtype(x, "a", x.to(at::kDouble), "b"), "a", "b", "Float", "Double");
  MD_EXPECT_ERROR(mdiff::check_index_range(at::tensor({-1, 3}, at::kLong), "t", 0, 3), "t", "[0, 3)",
                  "min -1", "max 3");
}

TEST(Check, FiniteReportsCountAndFirstBadValue) {
  at::Tensor x = at::zeros({4, 5});
  x[1][2] = std::numeric_limits<float>::quiet_NaN();
  x[3][0] = std::numeric_limits<float>::infinity();
  MD_EXPECT_ERROR(mdiff::check_finite(x, "x_t"), "x_t", "2 non-finite of 20", "flat index 7", "nan");
  EXPECT_NO_THROW(mdiff::check_finite(at::zeros({3}, at::kLong), "ints"));
}

TEST(Check, ScalarRanges) {
  EXPECT_NO_THROW(mdiff::check_in_range(0.5, 0.0, 1.0, "eta"));
  EXPECT_NO_THROW(mdiff::check_in_range(1.0, 0.0, 1.0, "eta"));
  MD_EXPECT_ERROR(mdiff::check_in_range(1.5, 0.0, 1.0, "eta"), "eta must be in [0, 1], got 1.5");
  MD_EXPECT_ERROR(mdiff::check_in_range(std::numeric_limits<double>::quiet_NaN(), 0.0, 1.0, "eta"), "eta",
                  "nan");
  MD_EXPECT_ERROR(mdiff::check_positive(0, "steps"), "steps must be positive, got 0");
  MD_EXPECT_ERROR(mdiff::check_positive(std::numeric_limits<double>::infinity(), "sigma"), "sigma", "inf");
  MD_EXPECT_ERROR(mdiff::check_non_negative(-2, "warmup"), "warmup must be non-negative, got -2");
  EXPECT_NO_THROW(mdiff::check_non_negative(0, "warmup"));
}

TEST(Check, ErrorsAreTyped) {
  EXPECT_THROW(mdiff::check_dim(at::zeros({2}), "x", 2), c10::ValueError);
  EXPECT_THROW(mdiff::check_floating(at::zeros({2}, at::kLong), "x"), c10::TypeError);
  EXPECT_THROW(mdiff::check_index_range(at::tensor({5}, at::kLong), "t", 0, 5), c10::IndexError);
}

}  // namespace
