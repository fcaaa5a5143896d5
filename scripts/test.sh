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
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
# Paths relative to the checkout, so ccache hits across clones in different folders.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
jobs="${MD_JOBS:-$(nproc)}"

start=$(date +%s)
cmake --preset "$preset"
cmake --build --preset "$preset" -j "$jobs"
built=$(date +%s)
ctest --preset "$preset" -j "$jobs"
done_at=$(date +%s)
echo "test.sh: preset $preset built in $((built - start)) s, tested in $((done_at - built)) s"
