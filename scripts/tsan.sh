#!/usr/bin/env bash
# ThreadSanitizer run of the concurrency tests (tests/concurrency): one UNet or MLP denoiser, one
# sampler and one sampling constraint shared by several threads. Builds the library with clang
# -fsanitize=thread (preset 'tsan': the library and one small test executable, about 5 minutes
# from a cold cache on 2 cores) and fails on any report.
#
#   ./scripts/tsan.sh
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
source scripts/ccache-env.sh
jobs="${MD_JOBS:-$(nproc)}"
start=$(date +%s)
cmake --preset tsan >/dev/null
cmake --build --preset tsan -j "$jobs" --target md_concurrency_tests
built=$(date +%s)
ctest --preset tsan
echo "tsan.sh: built in $((built - start)) s, tested in $(($(date +%s) - built)) s"
