#!/usr/bin/env bash
# Runs every test of the project. Needs: the Rust toolchain with the
# thumbv7em-none-eabihf target, clippy and rustfmt; python3 with the
# `sentencepiece` package (.ci/run installs all of it on a fresh Debian 12).
# ../shared (the test models and reference outputs) must sit beside the checkout.
set -euo pipefail
cd "$(dirname "$0")"

passed=0
failed=0
step() {
    local name=$1
    shift
    echo "==> $name"
    if "$@"; then
        passed=$((passed + 1))
    else
        echo "FAILED: $name"
        failed=$((failed + 1))
    fi
}

step "format" cargo fmt --all -- --check
step "clippy" cargo clippy --workspace --all-targets -- -D warnings
step "unit and integration tests" cargo test --workspace
step "no_std build for thumbv7em-none-eabihf" \
    cargo build -p llamette --no-default-features --target thumbv7em-none-eabihf
step "docs build without warnings" \
    env RUSTDOCFLAGS="-D warnings" cargo doc -p llamette --no-deps
cargo build --release -p llamette-cli
bin=target/release/llamette
step "tokenizer vs SentencePiece (GGUF vocabulary)" \
    python3 scripts/sp_compare.py -- "$bin" tokenize ../shared/models/ggml-vocab-llama-spm.gguf
step "tokenizer vs SentencePiece (llama2.c tokenizer.bin)" \
    python3 scripts/sp_compare.py -- "$bin" tokenize ../shared/models/llama2-tokenizer.bin
step "README's main command prints the reference text" \
    bash -c "cmp <($bin generate -t 0 -n 256 2>/dev/null) ../shared/testdata/stories260K.greedy.txt"

echo "test.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
