#pragma once

/// \file
/// Device, dtype, thread and build helpers.
///
/// Example:
/// \code
///   c10::Device dev = mdiff::parse_device("auto");          // cuda:0 when a GPU is there, else cpu
///   c10::ScalarType dt = mdiff::parse_dtype("bf16");        // at::kBFloat16
///   int threads = mdiff::set_num_threads(0);                 // 0 = all hardware threads; returns the count set
///   fmt::print("{}\n", mdiff::describe_build());            // version, LibTorch, CUDA, threads
/// \endcode

#include <manifold_diffusion/core/namespace.h>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>

namespace manifold_diffusion {

/// True when this process can use at least one CUDA device.
bool cuda_available();

/// Number of visible CUDA devices (0 when CUDA is unavailable).
int cuda_device_count();

/// True when the library binary contains its CUDA kernels (built with MD_WITH_CUDA).
bool compiled_with_cuda_kernels();

/// True while the current CUDA stream is capturing a CUDA graph (always false without CUDA
/// kernels). Checks that read values back to the host are skipped then: a capture cannot wait.
///
/// Example:
/// \code
///   if (!mdiff::cuda_stream_capturing()) { MD_CHECK_VALUE(t.min().item<double>() >= 0, "..."); }
/// \endcode
bool cuda_stream_capturing();

/// cuda:0 when a CUDA device is available, cpu otherwise.
c10::Device default_device();

/// Parses "cpu", "cuda", "cuda:N" or "auto" (= default_device()). Fails clearly on a malformed name,
/// on a CUDA device when none is available, and on a CUDA index past the visible devices.
c10::Device parse_device(const std::string& name);

/// Parses float32|float|f32|fp32, float64|double|f64|fp64, float16|half|f16|fp16, bfloat16|bf16.
c10::ScalarType parse_dtype(const std::string& name);

/// Canonical name of a dtype as parse_dtype() accepts it: "float32", "bfloat16", ...
std::string dtype_name(c10::ScalarType dtype);

/// Sets LibTorch's intra-op thread count; `n <= 0` means every hardware thread. Returns the count in
/// force afterwards. Programs and benchmarks call this explicitly and report the value.
int set_num_threads(int n);

/// The intra-op thread count in force.
int num_threads();

/// Version of the LibTorch the library was compiled against, "major.minor.patch".
std::string torch_version();

/// One line describing the build and the runtime: library and LibTorch versions, CUDA, threads.
std::string describe_build();

}  // namespace manifold_diffusion
