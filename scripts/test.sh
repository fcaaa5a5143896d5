#!/usr/bin/env bash
# Installs the dependencies, configures, builds and runs the whole test suite with ctest.
#
#   ./scripts/test.sh                  # release preset (system LibTorch 1.13)
#   ./scripts/test.sh debug            # any configure preset of CMakePresets.json: debug, sanitize, ...
# Environment: MD_JOBS (build jobs, default: number of cores).
set -euo pipefail
cd "$(dirname "$0")/.."

preset="${1:-release}"
./scripts/install-deps.sh
source scripts/ccache-env.sh
jobs="${MD_JOBS:-$(nproc)}"

start=$(date +%s)
cmake --preset "$preset"
md_ccache_mark
cmake --build --preset "$preset" -j "$jobs"
md_ccache_report "test.sh ($preset)"
built=$(date +%s)
ctest --preset "$preset" -j "$jobs"
done_at=$(date +%s)
echo "test.sh: preset $preset built in $((built - start)) s, tested in $((done_at - built)) s"
