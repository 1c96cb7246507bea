#!/usr/bin/env bash
# Unsloth's own package folder for the GPU machine (Python 3.12, x86_64, CUDA 13), as one tarball:
#
#     bash bench/unsloth_site.sh            # -> .site/unsloth.tgz (about 21 MB)
#     # there: mkdir -p /tmp/usite && tar xzf .site/unsloth.tgz -C /tmp/usite, then UNSLOTH_SITE=/tmp/usite
#
# Unsloth 2026.10.9 pins trl<=1.15 and datasets<5, so it cannot share medchat's packages: bench/qlora_throughput.py
# runs its unsloth_* setups in a child process whose path puts this folder first. The GPU image already has torch
# 2.11, transformers 5.17 (Unsloth's ceiling), accelerate and triton. Left out: the wheel's `studio/` web app
# (80 of its 88 MB) and every bitsandbytes kernel library but CUDA 13.0's and the CPU one.
set -euo pipefail
top=$(git rev-parse --show-toplevel); cd "$top"
for d in /.whl/ /.site/; do grep -qx "$d" .git/info/exclude 2>/dev/null || echo "$d" >> .git/info/exclude; done
whl=.whl/unsloth; mkdir -p "$whl" .site
plat="--platform manylinux_2_34_x86_64 --platform manylinux_2_31_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
for req in unsloth==2026.10.9 unsloth_zoo==2026.10.9 trl==1.15.0 datasets==4.8.5 peft==0.21.2 bitsandbytes==0.50.2 \
           torchao==0.18.0 cut_cross_entropy==25.1.1 tyro==1.0.17 docstring_parser==0.18.0 shtab==1.13.0 \
           typeguard==4.6.1 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types typing-inspection \
           "typing-extensions>=4.16" msgspec==0.23.0 structlog==26.1.0 json5==0.17.3 nest_asyncio==1.6.0 \
           hf_transfer==0.1.9 certifi==2026.10.19.post1 dill==0.4.1 multiprocess==0.70.19 xxhash==4.1.0; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $plat -d "$whl" "$req"
done
tmp=$(mktemp -d)
python3 -m pip install -q --no-deps --no-compile --target "$tmp" --python-version 3.12 --implementation cp \
  --only-binary=:all: $plat "$whl"/*.whl
find "$tmp/bitsandbytes" -name 'libbitsandbytes_*.so' ! -name '*cuda130.so' ! -name '*cpu.so' -delete
rm -rf "$tmp/studio" "$tmp/bin"
tar czf .site/unsloth.tgz -C "$tmp" .
rm -rf "$tmp"
du -h .site/unsloth.tgz
