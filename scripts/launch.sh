#!/usr/bin/env bash
# Starts the processes of a data-parallel job on this machine, the way torchrun does: each gets
# RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT, and the library's
# programs (mdiff-train, mdiff-toy) read them.
#
#   scripts/launch.sh [options] -- PROGRAM [ARGS...]
#     -n, --nproc N        processes on this machine (default 2)
#     --nnodes M           machines in the job (default 1)
#     --node-rank K        this machine's index, 0 .. M-1 (default 0)
#     --master-addr A      address of the machine of rank 0 (default 127.0.0.1)
#     --master-port P      its TCPStore port (default: a free port on one machine, else 29500)
#     --grace S            seconds the others get to stop by themselves after one process fails,
#                          before SIGTERM and then SIGKILL (default 30)
#
# Every line a process prints is prefixed with "[rank R] ". The script exits with the status of the
# first process that failed (0 when all succeeded); Ctrl-C or SIGTERM is passed on to every process.
# Example, two CPU processes sharing a global batch of 256:
#   scripts/launch.sh -n 2 -- build/release/bin/mdiff-toy --out out/toy2 --batch 256 --threads 1
set -uo pipefail

nproc=2; nnodes=1; node_rank=0; addr=127.0.0.1; port=""; grace=30
usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
die() { echo "launch.sh: $*" >&2; exit 2; }
is_int() { [[ "$1" =~ ^[0-9]+$ ]]; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    -n|--nproc) nproc="${2:-}"; shift 2 ;;
    --nnodes) nnodes="${2:-}"; shift 2 ;;
    --node-rank) node_rank="${2:-}"; shift 2 ;;
    --master-addr) addr="${2:-}"; shift 2 ;;
    --master-port) port="${2:-}"; shift 2 ;;
    --grace) grace="${2:-}"; shift 2 ;;
    -h|--help) usage 0 ;;
    --) shift; break ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[[ $# -ge 1 ]] || die "no program given (scripts/launch.sh [options] -- PROGRAM [ARGS...])"
is_int "$nproc" && (( nproc >= 1 )) || die "--nproc must be a positive integer, got '$nproc'"
is_int "$nnodes" && (( nnodes >= 1 )) || die "--nnodes must be a positive integer, got '$nnodes'"
is_int "$node_rank" && (( node_rank < nnodes )) || die "--node-rank must be in [0, $nnodes), got '$node_rank'"
is_int "$grace" || die "--grace must be a number of seconds, got '$grace'"
[[ -n "$addr" ]] || die "--master-addr is empty"
if [[ -z "$port" ]]; then
  if (( nnodes == 1 )); then
    # A port nothing listens on (the TCPStore of rank 0 binds it).
    for _ in $(seq 1 50); do
      port=$(( 20000 + RANDOM % 40000 ))
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
    done
  else
    port=29500
  fi
fi
is_int "$port" && (( port >= 1 && port <= 65535 )) || die "--master-port must be in [1, 65535], got '$port'"
command -v "$1" >/dev/null 2>&1 || [[ -x "$1" ]] || die "program '$1' not found"

world=$(( nproc * nnodes ))
pids=(); filters=()
declare -A live
fifos="$(mktemp -d)"
stop_all() {  # signal: to the processes still running
  for p in "${!live[@]}"; do kill "-$1" "$p" 2>/dev/null; done
}
on_signal() {  # exit status
  stop_all TERM
  for _ in $(seq 1 50); do
    local left=0
    for p in "${!live[@]}"; do kill -0 "$p" 2>/dev/null && left=1; done
    (( left )) || break
    sleep 0.1
  done
  stop_all KILL
  wait 2>/dev/null
  rm -rf "$fifos"
  exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

for (( i = 0; i < nproc; i++ )); do
  rank=$(( node_rank * nproc + i ))
  # Each process writes into a FIFO read by its own prefixing filter; both are children of this
  # script, so it can signal the one and wait for the other to flush.
  mkfifo "$fifos/$rank"
  sed -u "s/^/[rank $rank] /" < "$fifos/$rank" &
  filters+=($!)
  RANK=$rank WORLD_SIZE=$world LOCAL_RANK=$i LOCAL_WORLD_SIZE=$nproc MASTER_ADDR=$addr MASTER_PORT=$port \
    "$@" > "$fifos/$rank" 2>&1 &
  pids+=($!)
  live[$!]=1
done

# Poll the processes (a finished one is a zombie until reaped, so look at its state in /proc).
finished() { local st; st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1); [[ -z "$st" || "$st" == Z ]]; }
status=0
deadline=""
while (( ${#live[@]} > 0 )); do
  for p in "${!live[@]}"; do
    finished "$p" || continue
    wait "$p"; code=$?
    unset "live[$p]"
    if (( code != 0 && status == 0 )); then
      status=$code
      echo "launch.sh: a process (pid $p) exited with status $code; the others get ${grace} s to stop" >&2
      deadline=$(( $(date +%s) + grace ))
    fi
  done
  if [[ -n "$deadline" ]] && (( ${#live[@]} > 0 && $(date +%s) >= deadline )); then
    echo "launch.sh: ${#live[@]} process(es) still running ${grace} s after a failure; terminating them" >&2
    stop_all TERM; sleep 3; stop_all KILL
    deadline=""
  fi
  sleep 0.2
done
wait "${filters[@]}" 2>/dev/null  # the prefixing filters end once their process's output closes
rm -rf "$fifos"
exit "$status"
