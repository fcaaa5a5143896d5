#!/usr/bin/env bash
# Installs PyPI's torch wheel (LibTorch 2.x built with CUDA) into a virtual environment, for the
# second build of the library (preset torch2-cuda). Idempotent: does nothing when the wanted version
# is already there. Prints the LibTorch root (MD_TORCH_ROOT) on its last line.
#
#   MD_TORCH_VENV   where the environment lives     (default /opt/mdiff/torch-venv)
#   MD_TORCH_SPEC   what pip installs               (default torch==2.15.0)
set -euo pipefail

venv="${MD_TORCH_VENV:-/opt/mdiff/torch-venv}"
spec="${MD_TORCH_SPEC:-torch==2.15.0}"
want="${spec#torch==}"

have=""
if [[ -x "$venv/bin/python" ]]; then
  have="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true)"
fi
if [[ -z "$have" || ( "$spec" == torch==* && "${have%%+*}" != "$want" ) ]]; then
  start=$(date +%s)
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --disable-pip-version-check -q "$spec" >&2
  end=$(date +%s)
  echo "install-torch-pip: installed $spec in $((end - start)) s ($(du -sh "$venv" | cut -f1) on disk)" >&2
fi
"$venv/bin/python" - <<'PY'
import os, torch
print(os.path.dirname(torch.__file__))
PY
