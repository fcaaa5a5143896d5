#!/usr/bin/env bash
# The race against the Python stack: md_race (this library) and race.py (diffusers on PyTorch, the
# same Debian LibTorch build) run the same workloads alternately, and the comparison goes to
# OUT/race.json and a table on stdout.
#
#   benchmarks/peers/run.sh                      # 3 rounds, 2 threads, into out/race
#   benchmarks/peers/run.sh --threads 1 --out out/race-1t
#   benchmarks/peers/run.sh --quick              # a smoke run: few steps, one round
#
# It installs what is missing: Debian's python3-torch and python3-venv (apt-get, as root), a virtual
# environment with the pinned diffusers (benchmarks/peers/requirements.txt; reused when present;
# MD_RACE_VENV moves it), and md_race (cmake preset, --preset). It sets no thread or BLAS
# variables: both sides get the thread count by --threads, and the environment is printed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
threads=2
quick=0
rounds=3
out="out/race"
preset="release"
venv="${MD_RACE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/manifold_diffusion/race-venv}"

usage() { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    --rounds) rounds="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --preset) preset="$2"; shift 2 ;;
    --venv) venv="$2"; shift 2 ;;
    -h|--help) usage; echo "options: --threads N (2), --rounds N (3), --quick, --out DIR (out/race), --preset NAME (release), --venv DIR"; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$threads" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --threads must be a positive integer, got '$threads'" >&2; exit 2; }
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --rounds must be a positive integer, got '$rounds'" >&2; exit 2; }
if [[ $quick == 1 ]]; then rounds=1; fi
cd "$root"
mkdir -p "$out/raw"
rm -f "$out"/raw/*.json
exec > >(tee "$out/run.log") 2>&1

# 1. Debian's PyTorch (the LibTorch build the C++ side links) and venv.
if ! /usr/bin/python3 -c 'import torch, venv' >/dev/null 2>&1; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "== installing python3-torch python3-venv"
    apt-get install -y python3-torch python3-venv || { apt-get update && apt-get install -y python3-torch python3-venv; }
  else
    echo "run.sh: /usr/bin/python3 cannot import torch; install python3-torch and python3-venv (apt-get, as root)" >&2
    exit 1
  fi
fi

# 2. The virtual environment with the pinned diffusers, reused while requirements.txt is unchanged.
stamp="$venv/.md-race-requirements"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]] ||
   ! "$venv/bin/python" -c 'import diffusers' >/dev/null 2>&1; then
  echo "== virtual environment $venv"
  /usr/bin/python3 -m venv --system-site-packages "$venv"
  "$venv/bin/pip" install --quiet -r "$here/requirements.txt"
  echo "$want" > "$stamp"
fi

# 3. md_race.
bindir="$root/build/$preset/bin"
if [[ ! -f "$root/build/$preset/CMakeCache.txt" ]]; then
  echo "== configuring (cmake --preset $preset)"
  cmake --preset "$preset" >/dev/null
fi
echo "== building md_race"
cmake --build --preset "$preset" --target md_race -j2 | tail -n 1

# 4. What the run sees.
echo "== environment"
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "cpu: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) cores online"
echo "kernel: $(uname -sr)"
echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
for v in OMP_NUM_THREADS MKL_NUM_THREADS OPENBLAS_NUM_THREADS KMP_AFFINITY OMP_PROC_BIND GOMP_CPU_AFFINITY LD_PRELOAD; do
  echo "$v=${!v-(unset)}"
done
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
if awk -v l="${load_start%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
  echo "warning: the machine is busy (load ${load_start%% *} on $(nproc) cores): the timings will be noisy"
fi

# 5. The race: per round and workload, both sides in turn (which side goes first alternates by
# round). Each process warms up (2 DDIM steps, 1 optimiser step, one toy run) before timing.
declare -A reps=([sampling]=1 [training]=1 [toy]=3)
common=(--threads "$threads")
if [[ $quick == 1 ]]; then common+=(--quick); reps[toy]=1; fi
for r in $(seq 1 "$rounds"); do
  for w in sampling training toy; do
    if (( r % 2 == 1 )); then order=(ours theirs); else order=(theirs ours); fi
    for side in "${order[@]}"; do
      echo "== round $r/$rounds: $w, $side"
      args=("${common[@]}" --workload "$w" --reps "${reps[$w]}" --json "$out/raw/$side-$w-$r.json")
      if [[ $side == ours ]]; then
        "$bindir/md_race" "${args[@]}"
      else
        "$venv/bin/python" "$here/race.py" "${args[@]}"
      fi
    done
  done
done

# 6. The comparison.
/usr/bin/python3 "$here/summarize.py" --raw "$out/raw" --out "$out" --rounds "$rounds" --load-start "$load_start" \
  --load-end "$(cut -d' ' -f1-3 /proc/loadavg)"
