#!/usr/bin/env bash
# The second build: the library against PyPI's LibTorch 2.x with the CUDA kernels compiled and linked
# (nvcc from /usr/local/cuda), then the test suite on the CPU (CUDA tests skip without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
MD_TORCH_ROOT="$(./scripts/install-torch-pip.sh | tail -n 1)"
export MD_TORCH_ROOT
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
# Paths relative to the checkout, so ccache hits across clones in different folders.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
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
cmake --build --preset torch2-cuda -j "$jobs"
built=$(date +%s)
ctest --preset torch2-cuda -j "$jobs" "${ctest_extra[@]}"
done_at=$(date +%s)
echo "test-torch2.sh: built in $((built - start)) s, tested in $((done_at - built)) s"
