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
# The library and the unit tests first. With MD_CI_DEADLINE (epoch seconds, set by .ci/run), the
# programs (examples, their end-to-end runs and the packaging test) follow only when about
# MD_TORCH2_PROGRAMS_COST seconds (default 420: their build, their runs and the unit tests) remain;
# otherwise this says so and runs the unit tests alone.
cmake --build --preset torch2-cuda -j "$jobs" --target manifold_diffusion md_tests
programs=1
if [[ -n "${MD_CI_DEADLINE:-}" ]] && (( $(date +%s) + ${MD_TORCH2_PROGRAMS_COST:-420} > MD_CI_DEADLINE )); then
  programs=0
  ctest_extra+=(-LE "programs|packaging|benchmark")
  echo "test-torch2.sh: the programs and packaging tests are skipped: $(( MD_CI_DEADLINE - $(date +%s) )) s left before the CI deadline; run ./scripts/test-torch2.sh for them"
else
  cmake --build --preset torch2-cuda -j "$jobs"
fi
md_ccache_report "test-torch2.sh"
built=$(date +%s)
ctest --preset torch2-cuda -j "$jobs" "${ctest_extra[@]}"
done_at=$(date +%s)
echo "test-torch2.sh: built in $((built - start)) s, tested in $((done_at - built)) s (programs: $programs)"
