#!/usr/bin/env bash
# Runs the libFuzzer target `parse_gguf` on a stable toolchain, without cargo-fuzz:
# the same SanitizerCoverage codegen flags cargo-fuzz passes (stable `-C` options),
# minus the nightly-only AddressSanitizer (the parser has no unsafe code).
#   crates/compute/fuzz/run-stable.sh [SECONDS]   (default 60)
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
target="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
  cargo build --release --target "$target" --bin parse_gguf
mkdir -p corpus/parse_gguf
"$CARGO_TARGET_DIR/$target/release/parse_gguf" corpus/parse_gguf seeds -max_total_time="$seconds"
