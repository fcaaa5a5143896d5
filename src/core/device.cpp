#include "md_build_config.h"

#include <manifold_diffusion/core/check.h>
#include <manifold_diffusion/core/device.h>
#include <manifold_diffusion/core/version.h>

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/version.h>

#ifdef MD_WITH_CUDA_KERNELS
#include <c10/cuda/CUDAGraphsC10Utils.h>
#endif

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <thread>

namespace manifold_diffusion {

std::string library_version_string() {
  return fmt::format("{}.{}.{}", MD_VERSION_MAJOR, MD_VERSION_MINOR, MD_VERSION_PATCH);
}

bool cuda_available() {
  return at::hasCUDA() && cuda_device_count() > 0;
}

int cuda_device_count() {
  if (!at::hasCUDA()) {
    return 0;
  }
  return static_cast<int>(at::detail::getCUDAHooks().getNumGPUs());
}

bool cuda_stream_capturing() {
#ifdef MD_WITH_CUDA_KERNELS
  return cuda_available() && c10::cuda::currentStreamCaptureStatusMayInitCtx() != c10::cuda::CaptureStatus::None;
#else
  return false;
#endif
}

bool compiled_with_cuda_kernels() {
#ifdef MD_WITH_CUDA_KERNELS
  return true;
#else
  return false;
#endif
}

c10::Device default_device() {
  return cuda_available() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
}

namespace {
std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}
}  // namespace

c10::Device parse_device(const std::string& name) {
  const std::string n = lower(name);
  if (n == "auto") {
    return default_device();
  }
  MD_CHECK_VALUE(n == "cpu" || n.rfind("cuda", 0) == 0, "device must be cpu, cuda, cuda:N or auto, got '",
                 name, "'");
  c10::Device device(c10::kCPU);
  try {
    device = c10::Device(n);
  } catch (const c10::Error&) {
    MD_CHECK_VALUE(false, "device must be cpu, cuda, cuda:N or auto, got '", name, "'");
  }
  if (device.is_cuda()) {
    MD_CHECK_VALUE(cuda_available(), "device '", name,
                   "' requested but no CUDA device is available (LibTorch has CUDA: ",
                   at::hasCUDA() ? "yes" : "no", ")");
    const int count = cuda_device_count();
    MD_CHECK_VALUE(!device.has_index() || device.index() < count, "device '", name, "' requested but only ",
                   count, " CUDA device(s) are visible");
  }
  return device;
}

c10::ScalarType parse_dtype(const std::string& name) {
  const std::string n = lower(name);
  if (n == "float32" || n == "float" || n == "f32" || n == "fp32") {
    return c10::kFloat;
  }
  if (n == "float64" || n == "double" || n == "f64" || n == "fp64") {
    return c10::kDouble;
  }
  if (n == "float16" || n == "half" || n == "f16" || n == "fp16") {
    return c10::kHalf;
  }
  if (n == "bfloat16" || n == "bf16") {
    return c10::kBFloat16;
  }
  MD_CHECK_VALUE(false, "dtype must be one of float32, float64, float16, bfloat16 (or f32, f64, f16, bf16), got '",
                 name, "'");
  return c10::kFloat;
}

std::string dtype_name(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::kFloat:
      return "float32";
    case c10::kDouble:
      return "float64";
    case c10::kHalf:
      return "float16";
    case c10::kBFloat16:
      return "bfloat16";
    case c10::kLong:
      return "int64";
    case c10::kInt:
      return "int32";
    case c10::kByte:
      return "uint8";
    case c10::kBool:
      return "bool";
    default:
      return c10::toString(dtype);
  }
}

int set_num_threads(int n) {
  if (n <= 0) {
    n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  at::set_num_threads(n);
  return at::get_num_threads();
}

int num_threads() {
  return at::get_num_threads();
}

std::string torch_version() {
  return fmt::format("{}.{}.{}", TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH);
}

std::string describe_build() {
  return fmt::format("manifold_diffusion {} | LibTorch {} | CUDA kernels: {} | CUDA devices: {} | threads: {}",
                     library_version_string(), torch_version(), compiled_with_cuda_kernels() ? "yes" : "no",
                     cuda_device_count(), num_threads());
}

}  // namespace manifold_diffusion
