#include <manifold_diffusion/core/device.h>
#include <manifold_diffusion/core/version.h>

#include "test_util.h"
#include "md_test_paths.h"

#include <ATen/Parallel.h>

namespace {

TEST(Device, ParsesCpuAndAuto) {
  EXPECT_EQ(mdiff::parse_device("cpu"), c10::Device(c10::kCPU));
  EXPECT_EQ(mdiff::parse_device("CPU"), c10::Device(c10::kCPU));
  EXPECT_EQ(mdiff::parse_device("auto"), mdiff::default_device());
  EXPECT_EQ(mdiff::default_device().is_cuda(), mdiff::cuda_available());
}

TEST(Device, RejectsMalformedNames) {
  MD_EXPECT_ERROR(mdiff::parse_device("gpu"), "cpu, cuda, cuda:N or auto", "'gpu'");
  MD_EXPECT_ERROR(mdiff::parse_device("cuda:x"), "'cuda:x'");
  MD_EXPECT_ERROR(mdiff::parse_device(""), "''");
}

TEST(Device, CudaRequestsAreCheckedAgainstWhatIsThere) {
  if (mdiff::cuda_available()) {
    EXPECT_TRUE(mdiff::parse_device("cuda").is_cuda());
    MD_EXPECT_ERROR(mdiff::parse_device("cuda:99"), "cuda:99", "visible");
  } else {
    MD_EXPECT_ERROR(mdiff::parse_device("cuda"), "'cuda'", "no CUDA device is available");
    MD_EXPECT_ERROR(mdiff::parse_device("cuda:1"), "'cuda:1'", "no CUDA device is available");
  }
}

TEST(Device, DtypeNamesRoundTrip) {
  for (auto dt : {c10::kFloat, c10::kDouble, c10::kHalf, c10::kBFloat16}) {
    EXPECT_EQ(mdiff::parse_dtype(mdiff::dtype_name(dt)), dt);
  }
  EXPECT_EQ(mdiff::parse_dtype("bf16"), c10::kBFloat16);
  EXPECT_EQ(mdiff::parse_dtype("Half"), c10::kHalf);
  EXPECT_EQ(mdiff::parse_dtype("double"), c10::kDouble);
  EXPECT_EQ(mdiff::dtype_name(c10::kLong), "int64");
  MD_EXPECT_ERROR(mdiff::parse_dtype("float8"), "'float8'", "float32, float64, float16, bfloat16");
}

TEST(Device, ThreadCountIsSetAndReported) {
  const int before = mdiff::num_threads();
  EXPECT_EQ(mdiff::set_num_threads(1), 1);
  EXPECT_EQ(at::get_num_threads(), 1);
  EXPECT_GE(mdiff::set_num_threads(0), 1);
  mdiff::set_num_threads(before);
  EXPECT_EQ(mdiff::num_threads(), before);
}

TEST(Device, BuildDescriptionCarriesVersions) {
  const std::string line = mdiff::describe_build();
  EXPECT_NE(line.find("manifold_diffusion " + mdiff::version_string()), std::string::npos) << line;
  EXPECT_NE(line.find("LibTorch " + mdiff::torch_version()), std::string::npos) << line;
  EXPECT_EQ(mdiff::library_version_string(), mdiff::version_string());
  EXPECT_EQ(mdiff::version_string(), MD_TEST_PROJECT_VERSION);  // CMake's project() version
  EXPECT_EQ(MD_VERSION, MD_VERSION_MAJOR * 10000 + MD_VERSION_MINOR * 100 + MD_VERSION_PATCH);
}

}  // namespace
