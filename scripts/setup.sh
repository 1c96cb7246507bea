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
"$VENV/bin/python" -m pip install -q -e ".[dev,sweep,eval]"
"$VENV/bin/python" -m pip check

# WordNet for METEOR: nltk.download cannot reach its host offline, so Debian's WordNet 3.0 packages are
# installed (as root; skipped otherwise) and copied into the venv's nltk_data, where nltk looks by itself.
# Without it METEOR is reported unavailable and every other metric still runs.
WORDNET_PKGS="wordnet-base wordnet-sense-index"
if [ ! -f /usr/share/wordnet/index.sense ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt_install() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends $WORDNET_PKGS >/dev/null 2>&1; }
  apt_install || { apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null 2>&1 && apt_install; } || true
fi
if [ -f "$VENV/nltk_data/corpora/wordnet/lexnames" ]; then
  :
elif [ -f /usr/share/wordnet/index.sense ]; then
  "$VENV/bin/python" -m medchat.evaluation.wordnet install "$VENV/nltk_data"
else
  echo "WordNet not installed (apt-get install $WORDNET_PKGS as root, then re-run): METEOR will be reported unavailable" >&2
fi
echo "medchat installed in $VENV"
