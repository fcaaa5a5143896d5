# Third-party dependencies: LibTorch, Eigen3, fmt.

find_package(Torch REQUIRED)
find_package(Eigen3 3.3 REQUIRED NO_MODULE)
find_package(fmt REQUIRED)

if(NOT Torch_VERSION)
  set(Torch_VERSION "unknown")
endif()

# LibTorch 2.x ships its own copy of the fmt headers in its include directory, which shadows the
# system fmt; header-only mode keeps whichever fmt the compiler sees self-consistent.
set(MD_FMT_TARGET fmt::fmt-header-only)

# Does the LibTorch we found carry CUDA?
if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES OR CAFFE2_USE_CUDA OR USE_CUDA)
  set(MD_TORCH_HAS_CUDA ON)
else()
  set(MD_TORCH_HAS_CUDA OFF)
endif()
