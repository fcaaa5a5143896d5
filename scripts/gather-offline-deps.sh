#!/usr/bin/env bash
# Gathers, on a machine with Debian's packages, what scripts/device-check.sh needs on a GPU machine
# that has PyTorch and nvcc but no network: Eigen, fmt, nlohmann-json, zlib and Google Benchmark as a
# relocatable prefix,
# GoogleTest's sources, and CMake/Ninja wheels in case that machine lacks them. Output: .deps/offline
# (about 45 MB; ignored by git, carried to the GPU machine next to the working tree).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh

out=.deps/offline
rm -rf "$out"
mkdir -p "$out/prefix/include" "$out/prefix/lib/x86_64-linux-gnu/cmake" "$out/prefix/share/eigen3" "$out/wheels"
arch=lib/x86_64-linux-gnu

cp -a /usr/include/eigen3 "$out/prefix/include/"
cp -a /usr/share/eigen3/cmake "$out/prefix/share/eigen3/"
cp -a /usr/include/fmt "$out/prefix/include/"
cp -a /usr/$arch/cmake/fmt "$out/prefix/$arch/cmake/"
cp -a /usr/$arch/libfmt.so* "$out/prefix/$arch/"
cp -a /usr/include/benchmark "$out/prefix/include/"
cp -a /usr/$arch/cmake/benchmark "$out/prefix/$arch/cmake/"
cp -a /usr/$arch/libbenchmark*.so* /usr/$arch/libbenchmark_main.a "$out/prefix/$arch/"
mkdir -p "$out/prefix/share/cmake"
cp -a /usr/include/nlohmann "$out/prefix/include/"
cp -a /usr/share/cmake/nlohmann_json "$out/prefix/share/cmake/"
cp -a /usr/include/zlib.h /usr/include/zconf.h "$out/prefix/include/"
cp -a /usr/$arch/libz.so* "$out/prefix/$arch/"
cp -a /usr/src/googletest "$out/googletest"
python3 -m pip download --disable-pip-version-check -q --only-binary :all: -d "$out/wheels" cmake ninja
du -sh "$out"
