# Compiler settings shared by every target of the project.

if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
  set(CMAKE_BUILD_TYPE Release CACHE STRING "Build type" FORCE)
endif()

# The static library and the executables share one precompiled header, and GCC only accepts a
# header compiled with the same code-model flags: every object of ours is compiled with -fPIC.
set(CMAKE_POSITION_INDEPENDENT_CODE OFF)
add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fPIC> $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-fPIC>)
set(CMAKE_EXPORT_COMPILE_COMMANDS ON)

if(MD_USE_CCACHE)
  find_program(MD_CCACHE_PROGRAM ccache)
  if(MD_CCACHE_PROGRAM)
    # Precompiled headers need these sloppiness settings to get cache hits.
    set(_md_launcher "${CMAKE_COMMAND}" -E env
        "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime"
        "${MD_CCACHE_PROGRAM}")
    set(CMAKE_CXX_COMPILER_LAUNCHER ${_md_launcher})
    set(CMAKE_CUDA_COMPILER_LAUNCHER ${_md_launcher})
  endif()
endif()

# Warnings for our own code only (dependencies are included as system headers).
add_library(md_warnings INTERFACE)
target_compile_options(md_warnings INTERFACE
  $<$<COMPILE_LANG_AND_ID:CXX,GNU,Clang>:-Wall -Wextra -Wno-unused-parameter>
  $<$<AND:$<BOOL:${MD_WARNINGS_AS_ERRORS}>,$<COMPILE_LANG_AND_ID:CXX,GNU,Clang>>:-Werror>
  # GCC 12 at -O3 in C++20 mode reports impossible memcpy bounds inside std::string's own code
  # (GCC bug 105329); keep the warning, but not as an error.
  $<$<AND:$<COMPILE_LANG_AND_ID:CXX,GNU>,$<VERSION_GREATER_EQUAL:$<CXX_COMPILER_VERSION>,12>,$<VERSION_LESS:$<CXX_COMPILER_VERSION>,13>>:-Wno-error=stringop-overflow>)

if(MD_SANITIZE)
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=${MD_SANITIZE}>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-omit-frame-pointer>)
  if(MD_SANITIZE MATCHES "undefined")
    add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fno-sanitize-recover=undefined>)
  endif()
  add_link_options(-fsanitize=${MD_SANITIZE})
endif()

# MD_FUZZ: every object of ours carries libFuzzer's coverage instrumentation, so the fuzz targets
# (fuzz/) link against the same library that the test suite runs on. Needs clang.
if(MD_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "MD_FUZZ=ON needs clang (libFuzzer), but the C++ compiler is ${CMAKE_CXX_COMPILER_ID} "
                        "${CMAKE_CXX_COMPILER}; configure with -DCMAKE_CXX_COMPILER=clang++-14 (preset 'sanitize')")
  endif()
  # Relative to the build folder, where Ninja and Make run the compiler: an absolute path would make
  # every command line differ between checkouts, and ccache would never hit across clones.
  # (Ninja runs every command in the top build folder; other generators get the absolute path.)
  set(_md_ignorelist "${CMAKE_CURRENT_LIST_DIR}/fuzz-coverage-ignorelist.txt")
  if(CMAKE_GENERATOR MATCHES "Ninja")
    file(RELATIVE_PATH _md_ignorelist "${CMAKE_BINARY_DIR}" "${_md_ignorelist}")
  endif()
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=fuzzer-no-link>
    "$<$<COMPILE_LANGUAGE:CXX>:-fsanitize-coverage-ignorelist=${_md_ignorelist}>")
endif()

# Clang stamps precompiled headers with their build time, which defeats ccache.
if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  add_compile_options("SHELL:-Xclang -fno-pch-timestamp")
endif()

# md_pch_apply(<target>): reuse the library's precompiled header (src/md_pch.h).
function(md_pch_apply target)
  if(MD_USE_PCH)
    target_precompile_headers(${target} REUSE_FROM manifold_diffusion)
  endif()
endfunction()
