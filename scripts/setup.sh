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
"$VENV/bin/python" -m pip install -q -e ".[dev,app]"
# The web demo's browser test (tests/test_app.py) drives Debian's Chromium: Playwright cannot download its
# own browser builds here. Installed when we are root with apt; otherwise that test is skipped (except in CI).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium with apt-get; the browser test will not run" >&2
  else
    echo "note: chromium is not installed (needs root and apt-get): tests/test_app.py's browser test will be skipped" >&2
  fi
fi
"$VENV/bin/python" -m pip check
echo "medchat installed in $VENV"
