# Third-party dependencies: LibTorch, Eigen3, fmt.

# A CUDA LibTorch compiles kernels for the architectures in TORCH_CUDA_ARCH_LIST (it ignores
# CMAKE_CUDA_ARCHITECTURES), and its own default list names GPUs that nvcc 13 no longer supports.
# Default to A100 (8.0) and H100/H200 (9.0); override with -DTORCH_CUDA_ARCH_LIST=... or the
# environment variable of the same name.
if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(TORCH_CUDA_ARCH_LIST "8.0;9.0" CACHE STRING "CUDA architectures for the kernels")
endif()
find_package(Torch REQUIRED)
find_package(Eigen3 3.3 REQUIRED NO_MODULE)
find_package(fmt REQUIRED)
# Header-only and used only inside the library's sources: consumers do not need it.
find_package(nlohmann_json 3.2 REQUIRED)

if(NOT Torch_VERSION)
  set(Torch_VERSION "unknown")
endif()

# LibTorch 2.x ships its own copy of the fmt headers in its include directory, which shadows the
# system fmt; header-only mode keeps whichever fmt the compiler sees self-consistent.
set(MD_FMT_TARGET fmt::fmt-header-only)

# PyPI's torch wheel keeps the CUDA libraries it was built against in sibling `nvidia/*/lib`
# folders, which Python preloads. A C++ program must be told where they are, at link time
# (-rpath-link) and at run time (-rpath), ahead of any other CUDA toolkit on the machine.
set(MD_TORCH_RUNTIME_DIRS "")
if(TORCH_INSTALL_PREFIX AND EXISTS "${TORCH_INSTALL_PREFIX}/../nvidia")
  file(GLOB MD_TORCH_RUNTIME_DIRS LIST_DIRECTORIES true "${TORCH_INSTALL_PREFIX}/../nvidia/*/lib")
endif()

# Does the LibTorch we found carry CUDA?
if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES OR CAFFE2_USE_CUDA OR USE_CUDA)
  set(MD_TORCH_HAS_CUDA ON)
else()
  set(MD_TORCH_HAS_CUDA OFF)
endif()
