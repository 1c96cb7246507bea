#!/usr/bin/env bash
# Creates ./.venv with medchat (editable) and what its tests need. Safe to re-run.
#   bash scripts/setup.sh                 # what `make train` / `make test` run the first time
#   TORCH_SPEC="torch==2.11.0" bash scripts/setup.sh   # bring your own torch build (e.g. a CUDA one)
# torch is installed first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build
# onto a CPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

pick_python() {
  for py in "${PYTHON:-}" python3 python3.12 python3.11 python3.10; do
    [ -n "$py" ] && command -v "$py" >/dev/null 2>&1 || continue
    if "$py" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 12)))'; then
      echo "$py"; return
    fi
  done
  echo "medchat needs Python 3.10-3.12; set PYTHON=/path/to/python3.x" >&2; exit 1
}

if [ ! -x "$VENV/bin/python" ]; then
  "$(pick_python)" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
"$VENV/bin/python" -c 'import torch' 2>/dev/null || "$VENV/bin/python" -m pip install -q "$TORCH_SPEC"
EXTRAS=dev
# On a machine with an NVIDIA GPU also the GPU extras (Liger kernels); CPU machines and CI skip them.
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then EXTRAS=dev,gpu; fi
"$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]"
"$VENV/bin/python" -m pip check
echo "medchat installed in $VENV"
