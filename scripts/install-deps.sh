#!/usr/bin/env bash
# Installs everything manifold_diffusion needs to build, test and run on Debian 12, as root.
# Idempotent: when every package is already there it only checks (well under a second).
#
#   ./scripts/install-deps.sh            # build, test and run dependencies
#   ./scripts/install-deps.sh --docs     # also Doxygen, for the API reference
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config git
  # LibTorch 1.13 (CPU) with a threaded OpenBLAS and the c10d/Gloo headers
  libtorch-dev libopenblas0-pthread libgloo-dev
  # libraries
  libeigen3-dev libfmt-dev libcli11-dev nlohmann-json3-dev libpng-dev zlib1g-dev
  # sanitizers and fuzzing (the sanitize and tsan presets): clang with its runtimes
  clang-14 libclang-rt-14-dev
  # tests and benchmarks
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  # data
  dataset-fashion-mnist
)
if [[ "${1:-}" == "--docs" ]]; then
  packages+=(doxygen)
fi

missing=()
for p in "${packages[@]}"; do
  if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]]; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ "$(id -u)" != 0 ]]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
