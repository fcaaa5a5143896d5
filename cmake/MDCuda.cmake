# MD_WITH_CUDA: AUTO turns the CUDA kernels on when the LibTorch found was built with CUDA and a
# CUDA compiler is present; ON insists (and fails clearly otherwise); OFF never builds them.

include(CheckLanguage)
set(MD_CUDA_ENABLED OFF)
string(TOUPPER "${MD_WITH_CUDA}" _md_cuda_mode)
if(NOT _md_cuda_mode MATCHES "^(AUTO|ON|OFF|TRUE|FALSE|1|0|YES|NO)$")
  message(FATAL_ERROR "MD_WITH_CUDA must be ON, OFF or AUTO, got '${MD_WITH_CUDA}'")
endif()

if(_md_cuda_mode STREQUAL "AUTO" OR _md_cuda_mode MATCHES "^(ON|TRUE|1|YES)$")
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS "/usr/local/cuda/bin/nvcc")
    set(CMAKE_CUDA_COMPILER "/usr/local/cuda/bin/nvcc")
  endif()
  check_language(CUDA)
  if(MD_TORCH_HAS_CUDA AND CMAKE_CUDA_COMPILER)
    set(MD_CUDA_ENABLED ON)
  elseif(NOT _md_cuda_mode STREQUAL "AUTO")
    message(FATAL_ERROR "MD_WITH_CUDA=${MD_WITH_CUDA} but "
      "LibTorch has CUDA: ${MD_TORCH_HAS_CUDA}, CUDA compiler: '${CMAKE_CUDA_COMPILER}'")
  endif()
endif()

if(MD_CUDA_ENABLED)
  # LibTorch's CMake adds the -gencode flags for TORCH_CUDA_ARCH_LIST (see MDDependencies.cmake);
  # CMake must not add a second set.
  set(CMAKE_CUDA_ARCHITECTURES OFF)
  enable_language(CUDA)
  # Newer LibTorch targets require C++20, which CMake < 3.26 does not know how to ask of nvcc 13.
  foreach(_std 17 20)
    if(NOT CMAKE_CUDA${_std}_STANDARD_COMPILE_OPTION)
      set(CMAKE_CUDA${_std}_STANDARD_COMPILE_OPTION "-std=c++${_std}")
      set(CMAKE_CUDA${_std}_EXTENSION_COMPILE_OPTION "-std=c++${_std}")
    endif()
  endforeach()
endif()
