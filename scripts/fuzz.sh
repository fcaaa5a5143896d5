#!/usr/bin/env bash
# Runs the libFuzzer targets (fuzz/) for a bounded time each, from the seed corpus in
# fuzz/corpus/<target>, and prints the executions, coverage and findings of each.
#
#   ./scripts/fuzz.sh                         # every target, 60 s each
#   ./scripts/fuzz.sh --seconds 600 fuzz_png  # one target, longer
#   ./scripts/fuzz.sh --regenerate-corpus     # rewrite fuzz/corpus (make_corpus.py + the library's seeds)
#
# Builds the targets with the 'sanitize' preset (clang, ASan + UBSan) unless --no-build. New inputs
# go to build/sanitize/fuzz/corpus/<target>; a finding (crash, sanitizer report, escaped exception,
# out-of-memory, time-out) is saved under build/sanitize/fuzz/findings/ and makes the script fail.
# Replay one with: build/sanitize/bin/<target> <file>.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
build=1
regenerate=0
targets=()
while (($#)); do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    --regenerate-corpus) regenerate=1; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    fuzz_*) targets+=("$1"); shift ;;
    *) echo "fuzz.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || ((seconds < 1)); then
  echo "fuzz.sh: --seconds must be a positive integer, got '$seconds'" >&2; exit 2
fi
all=(fuzz_idx fuzz_npy fuzz_csv fuzz_png fuzz_safetensors fuzz_json_config fuzz_checkpoint)
((${#targets[@]})) || targets=("${all[@]}")
for t in "${targets[@]}"; do
  [[ " ${all[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target '$t'; known: ${all[*]}" >&2; exit 2; }
done

bin=build/sanitize/bin
if ((build)); then
  source scripts/ccache-env.sh
  [[ -f build/sanitize/CMakeCache.txt ]] || cmake --preset sanitize >/dev/null
  cmake --build --preset sanitize -j "${MD_JOBS:-$(nproc)}" --target "${targets[@]}"
fi

# The library's errors are c10::Error; LibTorch's CPU kernels are not instrumented.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:detect_odr_violation=0:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$PWD/fuzz/lsan.supp}"

if ((regenerate)); then
  # The regress-* seeds are past findings: they stay.
  [[ -d fuzz/corpus ]] && find fuzz/corpus -type f ! -name 'regress-*' -delete
  python3 fuzz/make_corpus.py
  mkdir -p fuzz/corpus/fuzz_checkpoint
  MD_FUZZ_WRITE_SEED=fuzz/corpus/fuzz_json_config "$bin/fuzz_json_config" -runs=0 >/dev/null 2>&1
  MD_FUZZ_WRITE_SEED=fuzz/corpus/fuzz_checkpoint/small_mlp.safetensors "$bin/fuzz_checkpoint" -runs=0 >/dev/null 2>&1
  echo "fuzz.sh: corpus regenerated: $(find fuzz/corpus -type f | wc -l) files, $(du -sb fuzz/corpus | cut -f1) bytes"
fi

out=build/sanitize/fuzz
mkdir -p "$out/findings" "$out/logs"
status=0
printf '%-18s %8s %12s %10s %8s %8s  %s\n' target seconds executions exec/s corpus cover result
for t in "${targets[@]}"; do
  mkdir -p "$out/corpus/$t"
  log="$out/logs/$t.log"
  rc=0
  "$bin/$t" "$out/corpus/$t" "fuzz/corpus/$t" -max_total_time="$seconds" -print_final_stats=1 \
    -timeout=25 -rss_limit_mb=3072 -max_len=65536 -artifact_prefix="$out/findings/$t-" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cover=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1 | cut -d' ' -f2)
  corpus=$(find "$out/corpus/$t" -type f | wc -l)
  result=ok
  if ((rc != 0)); then
    result="FINDING (exit $rc), see $log"
    status=1
  fi
  printf '%-18s %8s %12s %10s %8s %8s  %s\n' "$t" "$seconds" "${execs:-?}" "${rate:-?}" "$corpus" "${cover:-?}" "$result"
done
if ((status)); then
  echo "fuzz.sh: findings saved under $out/findings:" >&2
  ls -1 "$out/findings" >&2 || true
  for t in "${targets[@]}"; do
    if grep -qE 'ERROR: (AddressSanitizer|libFuzzer|LeakSanitizer)|runtime error|escaped|property violated' "$out/logs/$t.log"; then
      echo "---- $t" >&2
      grep -E -m 1 -A 30 'ERROR: (AddressSanitizer|libFuzzer|LeakSanitizer)|runtime error|escaped|property violated' "$out/logs/$t.log" >&2
    fi
  done
fi
exit "$status"
