#!/usr/bin/env bash
# The project's main job: trains a small class-conditional UNet on Fashion-MNIST (Debian's
# dataset-fashion-mnist) for a bounded time, samples a grid per class, and reports feature-FD
# against the test set. The feature classifier is trained once (about 2 minutes here) and cached.
#
#   ./scripts/demo.sh                          # defaults: <= 10 minutes on a 2-core machine
#   MD_DEMO_SECONDS=1800 ./scripts/demo.sh     # a longer training budget
#   ./scripts/demo.sh --guidance 2             # extra arguments go to mdiff-train
# Environment: MD_DEMO_OUT (output folder, default out/demo), MD_DEMO_SECONDS (training time
# limit, default 330), MD_DEMO_STEPS (step budget, default 1500), MD_THREADS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
# Paths relative to the checkout, so ccache hits across clones in different folders.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
cmake --preset release >/dev/null
cmake --build --preset release --target mdiff-train mdiff-sample -j "${MD_JOBS:-$(nproc)}"

out="${MD_DEMO_OUT:-out/demo}"
start=$(date +%s)
./build/release/bin/mdiff-train --out "$out" \
  --steps "${MD_DEMO_STEPS:-1500}" --time-limit "${MD_DEMO_SECONDS:-330}" \
  --base-channels 16 --channel-mult 1,2,2 --attention 7 --batch 64 --lr 2e-3 --warmup 100 \
  --checkpoint-every 250 --preview-every 500 --num-samples 1000 \
  --threads "${MD_THREADS:-2}" "$@"
# One more picture from the saved checkpoint: a row of each of three classes, by name.
./build/release/bin/mdiff-sample --run "$out" --out "$out/prompts" --num-samples 24 --nrow 8 \
  --prompt "ankle boot" --prompt "trouser" --prompt "bag" --threads "${MD_THREADS:-2}" >/dev/null
echo "demo: finished in $(( $(date +%s) - start )) s"
echo "demo: samples per class: $(realpath "$out/samples.png")"
echo "demo: metrics:           $(realpath "$out/metrics.json")"
echo "demo: output folder:     $(realpath "$out")"
