#!/usr/bin/env bash
# Training throughput of one process against a two-process job (scripts/launch.sh, Gloo on
# loopback) on this machine, with the same global batch, rounds alternating between the
# configurations so that both see the same machine state:
#   1p x 2t   one process, 2 intra-op threads
#   2p x 1t   two processes of 1 thread each (the global batch split in two)
#   1p x 1t   one process, 1 thread (the per-process baseline)
# for mdiff-train (the Fashion-MNIST UNet) and mdiff-toy (a small MLP on points).
#
#   scripts/distributed-throughput.sh [BIN_DIR]      (default build/release/bin)
#   MD_STEPS (default 30; mdiff-toy runs 5x as many), MD_BATCH (64; mdiff-toy: 2048), MD_ROUNDS (2), MD_OUT (out/distributed-throughput)
# Prints a table of images (points) per second, the median over the rounds, and writes
# $MD_OUT/results.json.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-build/release/bin}"
steps="${MD_STEPS:-30}"; batch="${MD_BATCH:-64}"; rounds="${MD_ROUNDS:-2}"
out="${MD_OUT:-out/distributed-throughput}"
mkdir -p "$out"
num() { sed -n "s/.*\"$2\": *\([-0-9.eE+]*\).*/\1/p" "$1" | head -1; }

train_args=(--steps "$steps" --batch "$batch" --num-samples 0 --sample-steps 2 --checkpoint-every 100000000 --workers 1
            --ema-decay 0.999)
toy_args=(--dataset swiss_roll --ambient-dim 8 --steps $((steps * 5)) --batch 2048 --n-train 20000 --hidden 256
          --blocks 4 --num-samples 100 --sample-steps 2)

run() {  # name program procs threads -> rate (examples per second of training)
  local name="$1" prog="$2" procs="$3" threads="$4" dir="$out/$1"
  rm -rf "$dir"
  local args=("${train_args[@]}"); local per=$batch
  if [[ "$prog" == mdiff-toy ]]; then args=("${toy_args[@]}"); per=2048; fi
  if (( procs == 1 )); then
    "$bin/$prog" --out "$dir" "${args[@]}" --threads "$threads" > "$out/$name.log" 2>&1
  else
    bash scripts/launch.sh -n "$procs" -- "$bin/$prog" --out "$dir" "${args[@]}" --threads "$threads" > "$out/$name.log" 2>&1
  fi
  [[ -s "$dir/metrics.json" ]] || { echo "distributed-throughput: $name failed:" >&2; tail -n 5 "$out/$name.log" >&2; exit 1; }
  local s t
  s=$(num "$dir/metrics.json" steps); t=$(num "$dir/metrics.json" train_seconds)
  awk -v s="$s" -v t="$t" -v b="$per" 'BEGIN { printf "%.1f", s * b / t }'
}

declare -A rates
configs=("mdiff-train 1 2" "mdiff-train 2 1" "mdiff-train 1 1" "mdiff-toy 1 2" "mdiff-toy 2 1" "mdiff-toy 1 1")
for (( r = 1; r <= rounds; r++ )); do
  for c in "${configs[@]}"; do
    read -r prog procs threads <<< "$c"
    rate=$(run "${prog}-${procs}p${threads}t-r$r" "$prog" "$procs" "$threads")
    rates["$c"]+="$rate "
    echo "round $r: $prog ${procs}p x ${threads}t: $rate examples/s" >&2
  done
done
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
echo "| program | 1 process x 2 threads | 2 processes x 1 thread | 1 process x 1 thread | 2p / 1p(2t) |"
echo "| --- | --- | --- | --- | --- |"
json="{"
for prog in mdiff-train mdiff-toy; do
  a=$(echo "${rates["$prog 1 2"]}" | median); b=$(echo "${rates["$prog 2 1"]}" | median); c=$(echo "${rates["$prog 1 1"]}" | median)
  ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }')
  echo "| $prog | $a | $b | $c | ${ratio}x |"
  json+="\"$prog\": {\"one_process_two_threads\": $a, \"two_processes_one_thread\": $b, \"one_process_one_thread\": $c, \"ratio\": $ratio}, "
done
json="${json%, }, \"steps\": $steps, \"batch\": $batch, \"rounds\": $rounds, \"nproc\": $(nproc)}"
echo "$json" > "$out/results.json"
echo "results: $out/results.json (examples per second of training, median of $rounds rounds)"
