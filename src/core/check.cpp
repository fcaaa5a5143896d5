#include <manifold_diffusion/core/check.h>

#include <ATen/ATen.h>

namespace manifold_diffusion {

std::string shape_string(const at::Tensor& t) {
  if (!t.defined()) {
    return "undefined";
  }
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

namespace {
thread_local const CheckContext* t_context = nullptr;
}  // namespace

CheckContext::CheckContext(std::string function) : function_(std::move(function)), previous_(t_context) {
  t_context = this;
}

CheckContext::~CheckContext() { t_context = previous_; }

std::string CheckContext::prefix() {
  return t_context != nullptr ? t_context->function_ + ": " : std::string();
}

std::string CheckContext::qualify(const char* name) {
  // Names that already start with the function ("to_uint8_image: x") are left as they are.
  const std::string p = prefix();
  const std::string n = name != nullptr ? name : "";
  if (p.empty() || n.rfind(p, 0) == 0) return n;
  return p + n;
}

void check_defined(const at::Tensor& t, const char* name) {
  MD_CHECK_VALUE(t.defined(), CheckContext::qualify(name), ": expected a defined tensor, got an undefined one");
}

void check_non_empty(const at::Tensor& t, const char* name) {
  check_defined(t, name);
  MD_CHECK_VALUE(t.numel() > 0, CheckContext::qualify(name), ": expected a non-empty tensor, got shape ", shape_string(t));
}

void check_dim(const at::Tensor& t, const char* name, int64_t dim) {
  check_defined(t, name);
  MD_CHECK_VALUE(t.dim() == dim, CheckContext::qualify(name), ": expected ", dim, " dimensions, got ", t.dim(), " (shape ",
                 shape_string(t), ")");
}

void check_dim_between(const at::Tensor& t, const char* name, int64_t min_dim, int64_t max_dim) {
  check_defined(t, name);
  MD_CHECK_VALUE(t.dim() >= min_dim && t.dim() <= max_dim, CheckContext::qualify(name), ": expected between ", min_dim, " and ",
                 max_dim, " dimensions, got ", t.dim(), " (shape ", shape_string(t), ")");
}

void check_shape(const at::Tensor& t, const char* name, at::IntArrayRef expected) {
  check_defined(t, name);
  bool ok = t.dim() == static_cast<int64_t>(expected.size());
  for (int64_t i = 0; ok && i < t.dim(); ++i) {
    ok = expected[i] < 0 || expected[i] == t.size(i);
  }
  MD_CHECK_VALUE(ok, CheckContext::qualify(name), ": expected shape ", expected, " (-1 = any), got ", shape_string(t));
}

void check_same_shape(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name) {
  check_defined(a, a_name);
  check_defined(b, b_name);
  MD_CHECK_VALUE(a.sizes() == b.sizes(), CheckContext::qualify(a_name), " and ", b_name, " must have the same shape, got ",
                 shape_string(a), " and ", shape_string(b));
}

void check_floating(const at::Tensor& t, const char* name) {
  check_defined(t, name);
  MD_CHECK_TYPE(at::isFloatingType(t.scalar_type()), CheckContext::qualify(name),
                ": expected a floating-point tensor (float16, bfloat16, float32 or float64), got ",
                t.scalar_type());
}

void check_index_dtype(const at::Tensor& t, const char* name) {
  check_defined(t, name);
  MD_CHECK_TYPE(t.scalar_type() == at::kLong || t.scalar_type() == at::kInt, CheckContext::qualify(name),
                ": expected an integer tensor (int64 or int32), got ", t.scalar_type());
}

void check_dtype(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  check_defined(t, name);
  MD_CHECK_TYPE(t.scalar_type() == dtype, CheckContext::qualify(name), ": expected dtype ", dtype, ", got ", t.scalar_type());
}

void check_same_dtype(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name) {
  check_defined(a, a_name);
  check_defined(b, b_name);
  MD_CHECK_TYPE(a.scalar_type() == b.scalar_type(), CheckContext::qualify(a_name), " and ", b_name,
                " must have the same dtype, got ", a.scalar_type(), " and ", b.scalar_type());
}

void check_same_device(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name) {
  check_defined(a, a_name);
  check_defined(b, b_name);
  MD_CHECK_VALUE(a.device() == b.device(), CheckContext::qualify(a_name), " and ", b_name,
                 " must be on the same device, got ", a.device(), " and ", b.device());
}

void check_finite(const at::Tensor& t, const char* name) {
  check_defined(t, name);
  if (!at::isFloatingType(t.scalar_type()) || t.numel() == 0) {
    return;
  }
  const at::Tensor bad = at::logical_not(at::isfinite(t));
  const int64_t n_bad = bad.sum().item<int64_t>();
  if (n_bad == 0) {
    return;
  }
  const int64_t first = bad.reshape({-1}).nonzero().select(1, 0).select(0, 0).item<int64_t>();
  const double value = t.reshape({-1}).select(0, first).item<double>();
  MD_CHECK_VALUE(false, CheckContext::qualify(name), ": expected finite values, found ", n_bad, " non-finite of ", t.numel(),
                 " (first at flat index ", first, ": ", value, ")");
}

void check_index_range(const at::Tensor& t, const char* name, int64_t lo, int64_t hi) {
  check_index_dtype(t, name);
  if (t.numel() == 0) {
    return;
  }
  const int64_t mn = t.min().item<int64_t>();
  const int64_t mx = t.max().item<int64_t>();
  MD_CHECK_INDEX(mn >= lo && mx < hi, CheckContext::qualify(name), ": expected values in [", lo, ", ", hi, "), got min ", mn,
                 " and max ", mx);
}

}  // namespace manifold_diffusion
