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
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    # A100 (sm_80) and H100/H200 (sm_90) as machine code, plus PTX for newer GPUs.
    set(CMAKE_CUDA_ARCHITECTURES "80-real;90")
  endif()
  enable_language(CUDA)
  # Newer LibTorch headers require C++20 (its target says so); compile our kernels to match.
  get_target_property(_md_torch_features torch INTERFACE_COMPILE_FEATURES)
  if(_md_torch_features MATCHES "cxx_std_20")
    set(CMAKE_CUDA_STANDARD 20)
  else()
    set(CMAKE_CUDA_STANDARD 17)
  endif()
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
endif()
