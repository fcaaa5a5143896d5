# Sourced by the build scripts: one compiler cache for every preset and checkout.
#   CCACHE_DIR      default ~/.cache/ccache
#   CCACHE_BASEDIR  default the checkout, so that paths are relative and clones in other folders hit
#   CCACHE_MAXSIZE  default 12G: four presets (release, sanitize, tsan, torch2-cuda) need about 8 GB
#   CCACHE_NOHASHDIR default set (hash_dir = false): the sanitizer presets compile with line tables
#                   (-g), and ccache would otherwise hash the build folder into every such object.
#                   Measured: it is not enough. A fresh clone's sanitize build still hit 0 times in 126
#                   with it (the clang precompiled header is the suspect); the GCC presets hit across
#                   clones (110 of 125 for torch2-cuda).
# md_ccache_mark / md_ccache_report LABEL print the hits and misses of the builds in between.
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-12G}"
# (ccache reads booleans from the presence of CCACHE_X or CCACHE_NOX; "false" is an error.)
[[ -n "${CCACHE_HASHDIR:-}" ]] || export CCACHE_NOHASHDIR=1

_md_ccache_counts() {
  command -v ccache >/dev/null || { echo "0 0"; return; }
  { ccache --print-stats 2>/dev/null || true; } |
    awk '$1 == "direct_cache_hit" || $1 == "preprocessed_cache_hit" { h += $2 } $1 == "cache_miss" { m += $2 }
         END { print h + 0, m + 0 }'
}
md_ccache_mark() { _md_ccache_before=$(_md_ccache_counts); }
md_ccache_report() {
  local now h0 m0 h1 m1
  now=$(_md_ccache_counts)
  read -r h0 m0 <<<"${_md_ccache_before:-0 0}"
  read -r h1 m1 <<<"$now"
  echo "$1: ccache $((h1 - h0)) hits, $((m1 - m0)) misses (cache $CCACHE_DIR, max $CCACHE_MAXSIZE)"
}
