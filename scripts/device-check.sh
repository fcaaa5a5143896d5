#!/usr/bin/env bash
# GPU check, for a machine with PyTorch and nvcc but no network. Builds the library, the tests and
# the benchmarks against the torch that `python3` holds, with the CUDA kernels, runs the CUDA tests
# (every fused kernel against its CPU reference, CUDA-graph replay against eager sampling, bf16
# against fp32) and the CUDA benchmarks, and writes into $OUT (default out/device-check):
# results.txt (the summary), configure.log, build.log, tests.log, bench.txt.
# MD_DEVICE_TESTS: gtest filter (default '*_CUDA*'); MD_BENCH_FILTER: benchmark filter (default CUDA).
#
# Prepare on a machine with packages: ./scripts/gather-offline-deps.sh (fills .deps/offline).
# Environment: TORCH_CUDA_ARCH_LIST (default: the GPU's own), MD_JOBS (default: all cores).
set -uo pipefail
cd "$(dirname "$0")/.."

out="${OUT:-out/device-check}"
mkdir -p "$out"
results="$out/results.txt"
offline="$PWD/.deps/offline"
jobs="${MD_JOBS:-$(nproc)}"
log() { echo "$*" | tee -a "$results"; }
: > "$results"

torch_root="$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')" || {
  log "device-check: python3 cannot import torch"; exit 1; }
log "torch: $(python3 -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)')"
log "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1)"
log "nvcc: $(nvcc --version 2>/dev/null | tail -n 1)"

# CMake and Ninja: the machine's, or the wheels gathered beforehand.
if ! command -v cmake >/dev/null || ! command -v ninja >/dev/null; then
  python3 -m venv "$PWD/.deps/tools" && "$PWD/.deps/tools/bin/pip" install -q --no-index \
    --find-links "$offline/wheels" cmake ninja && export PATH="$PWD/.deps/tools/bin:$PATH"
fi
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
arch="${TORCH_CUDA_ARCH_LIST:-$(python3 -c 'import torch; c = torch.cuda.get_device_capability(); print(f"{c[0]}.{c[1]}")')}"
log "cmake: $(cmake --version | head -n 1), arch $arch"

start=$(date +%s)
cmake -S . -B build/device "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  "-DCMAKE_PREFIX_PATH=$torch_root;$torch_root/share/cmake;$offline/prefix" \
  -DMD_WITH_CUDA=ON "-DTORCH_CUDA_ARCH_LIST=$arch" -DMD_BUILD_EXAMPLES=OFF -DMD_INSTALL=OFF \
  "-DMD_GTEST_SOURCE_DIR=$offline/googletest" > "$out/configure.log" 2>&1 \
  || { log "configure failed (see configure.log)"; tail -n 30 "$out/configure.log"; exit 1; }
targets=(md_tests)
for b in md_bench_ops md_bench_models md_bench_samplers; do
  cmake --build build/device --target help 2>/dev/null | grep -q "$b" && targets+=("$b")
done
cmake --build build/device -j "$jobs" --target "${targets[@]}" > "$out/build.log" 2>&1 \
  || { log "build failed (see build.log)"; grep -E "error|Error" "$out/build.log" | head -n 40; exit 1; }
log "build: $(( $(date +%s) - start )) s (${targets[*]})"

# The CUDA tests: every fused kernel against its CPU reference, graph replay against eager,
# bf16 against fp32. MD_DEVICE_TESTS widens the filter (e.g. '*' for the whole suite).
status=0
./build/device/bin/md_tests --gtest_filter="${MD_DEVICE_TESTS:-*_CUDA*}" > "$out/tests.log" 2>&1 || status=1
log "tests: $(grep -E '^\[  (PASSED|FAILED|SKIPPED)  \] [0-9]+ test' "$out/tests.log" | tr '\n' ' ')"
grep -E '^\[ +(OK|FAILED|SKIPPED) |relative L2' "$out/tests.log" | tee -a "$results"
grep -B2 -A6 'Failure' "$out/tests.log" | head -n 60 | tee -a "$results"

: > "$out/bench.txt"
for b in md_bench_ops md_bench_models md_bench_samplers; do
  [[ -x build/device/bin/$b ]] || continue
  MD_BENCH_THREADS="${MD_BENCH_THREADS:-4}" timeout 240 ./build/device/bin/$b --benchmark_filter="${MD_BENCH_FILTER:-CUDA}" \
    --benchmark_min_time=0.1 >> "$out/bench.txt" 2>&1 || status=1
done
grep -E '^BM_' "$out/bench.txt" | sed -E 's/ +/ /g' | tee -a "$results"
log "device-check: $([[ $status == 0 ]] && echo passed || echo FAILED) in $(( $(date +%s) - start )) s"
exit $status
