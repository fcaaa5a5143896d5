#!/usr/bin/env bash
# Installs what is needed, builds the demo program and runs the project's main job on its defaults.
# Extra arguments go to the program (see `build/release/bin/mdiff-demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
# Paths relative to the checkout, so ccache hits across clones in different folders.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
cmake --preset release >/dev/null
cmake --build --preset release --target mdiff-demo -j "${MD_JOBS:-$(nproc)}"
./build/release/bin/mdiff-demo --out out/demo "$@"
