#!/usr/bin/env bash
# The second build: the library against PyPI's LibTorch 2.x with the CUDA kernels compiled and linked
# (nvcc from /usr/local/cuda), then the test suite on the CPU (CUDA tests skip without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
MD_TORCH_ROOT="$(./scripts/install-torch-pip.sh | tail -n 1)"
export MD_TORCH_ROOT
source scripts/ccache-env.sh
jobs="${MD_JOBS:-$(nproc)}"
echo "test-torch2: LibTorch at $MD_TORCH_ROOT"

start=$(date +%s)
# CI checks that the CUDA code compiles and links: one architecture (H100/H200) is enough here; the
# benchmarks are built and run by the GPU check (scripts/device-check.sh) and by hand. Set
# TORCH_CUDA_ARCH_LIST or MD_TORCH2_FULL=1 for all architectures and the benchmarks.
extra=(); ctest_extra=()
if [[ "${MD_TORCH2_FULL:-0}" != 1 ]]; then
  export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
  extra=(-DMD_BUILD_BENCHMARKS=OFF)
fi
cmake --preset torch2-cuda "${extra[@]}"
md_ccache_mark
# In stages, so that a CI run with a cold compiler cache still ends in time. With MD_CI_DEADLINE
# (epoch seconds, set by .ci/run) each stage after the library runs only when its cost fits before
# the deadline, and a skipped stage is printed with the command that runs it:
#   1. the library (LibTorch 2.x and the CUDA kernels compile and link): always;
#   2. the unit tests: MD_TORCH2_TESTS_COST seconds (default 420: their build and run, cold);
#   3. the programs, their end-to-end runs (the heavy ones) and the packaging test:
#      MD_TORCH2_PROGRAMS_COST seconds (default 300).
left() { if [[ -n "${MD_CI_DEADLINE:-}" ]]; then echo $(( MD_CI_DEADLINE - $(date +%s) )); else echo 999999; fi; }
cmake --build --preset torch2-cuda -j "$jobs" --target manifold_diffusion
tests=1 programs=1
if (( $(left) < ${MD_TORCH2_TESTS_COST:-420} )); then
  tests=0 programs=0
  echo "test-torch2.sh: the unit tests, programs and packaging test are skipped: $(left) s left before the CI deadline; run ./scripts/test-torch2.sh for them"
else
  cmake --build --preset torch2-cuda -j "$jobs" --target md_tests
  if (( $(left) < ${MD_TORCH2_PROGRAMS_COST:-300} + 120 )); then  # + the unit tests' run
    programs=0
    ctest_extra+=(-LE "programs|packaging|benchmark")
    echo "test-torch2.sh: the programs and packaging tests are skipped: $(left) s left before the CI deadline; run ./scripts/test-torch2.sh for them"
  else
    cmake --build --preset torch2-cuda -j "$jobs"
  fi
fi
md_ccache_report "test-torch2.sh"
built=$(date +%s)
if ((tests)); then ctest --preset torch2-cuda -j "$jobs" "${ctest_extra[@]}"; fi
done_at=$(date +%s)
echo "test-torch2.sh: built in $((built - start)) s, tested in $((done_at - built)) s (unit tests: $tests, programs: $programs)"
