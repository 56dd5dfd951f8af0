#!/usr/bin/env bash
# Runs every test of the project. Needs: the Rust toolchain with clippy,
# rustfmt and the thumbv7em-none-eabihf, aarch64 and Windows targets; qemu-user,
# qemu-system-arm, the aarch64 and mingw-w64 cross compilers, Wine, valgrind, pkg-config and
# cbindgen 0.29.4; Mono (mono-devel) and NUnit 2.6 (nunit-console);
# debootstrap (Swift runs in a cached Debian 13 chroot unless `swift` is on
# PATH); python3 with the `sentencepiece`, `gguf` and `jinja2` packages. .ci/run installs
# all of it on a fresh Debian 12.
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
step "every block type's decoding vs the Python gguf package (gguf.quants.dequantize)" \
    python3 scripts/dequant_compare.py "$bin"
step "chat format vs Meta's reference encoding with sentencepiece (GGUF vocabulary)" \
    python3 scripts/chat_reference.py --check -- "$bin" tokenize ../shared/models/ggml-vocab-llama-spm.gguf --chat
step "chat format vs Meta's reference encoding with sentencepiece (llama2.c tokenizer.bin)" \
    python3 scripts/chat_reference.py --check -- "$bin" tokenize ../shared/models/llama2-tokenizer.bin --chat
step "chat templates (TinyLlama-Chat's, Mistral-Instruct's) vs jinja2 and sentencepiece, on GGUFs made here" \
    python3 scripts/chat_template_reference.py --check target/chat-templates -- "$bin" tokenize {gguf} --chat
chat_runs() {
    local synth=target/chat-synth-15m-q8_0.gguf out
    out=$(printf 'Hello\nTell me more\n' | "$bin" chat -n 16) || return 1
    [ "$(grep -c '' <<<"$out")" -ge 2 ] || return 1
    [ -s "$synth" ] || "$bin" synth --shape 15m --type q8_0 "$synth" >/dev/null || return 1
    out=$(printf 'Hello\nTell me more\n' | "$bin" chat "$synth" -n 8 --system "Be brief.") || return 1
    [ "$(grep -c '' <<<"$out")" -ge 2 ] || return 1
    # The same model with a tokenizer file carrying TinyLlama-Chat's template
    # (made by the chat-template step): the template is used, and said so.
    local err=target/chat-template-run.err
    out=$(printf 'Hello\nTell me more\n' |
        "$bin" chat "$synth" -z target/chat-templates/vocab-tinyllama-chat.gguf -n 8 --system "Be brief." 2>"$err") ||
        { cat "$err"; return 1; }
    grep -q "chat format: the file's chat template" "$err" && [ "$(grep -c '' <<<"$out")" -ge 2 ] &&
        ! grep -q "refused" "$err" || { cat "$err"; return 1; }
}
step "llamette chat: two turns on the embedded model, on a synthetic Llama 2 vocabulary model, and with TinyLlama-Chat's template" chat_runs
step "aarch64 kernels under qemu" scripts/test-aarch64.sh
step "clippy for aarch64 (the NEON kernels the host build does not compile)" \
    cargo clippy -p llamette --target aarch64-unknown-linux-gnu --all-targets -- -D warnings
step "microcontroller: stories260K on an emulated Cortex-M4F (QEMU mps2-an386), llama2.c's text with an F32 KV cache, the CLI's with Q8_0" \
    embedded/cortex-m/run.sh "$bin"
step "C ABI: header, exports, C/C++ tests (valgrind, ASan+UBSan), Windows DLL under Wine, mobile static libs" \
    env LLAMETTE_REQUIRE_WINE=1 bindings/c/test.sh
step "C# binding under Mono: run.c's texts, cancellation, errors, lifetimes, threads (NUnit 2.6)" \
    bindings/csharp/test.sh
step "Swift binding: SwiftPM package, XCTest via swift test (Debian 13 chroot with swiftlang when swift is not on PATH)" \
    bindings/swift/test.sh
# Their cancellation and streaming tests race with the generating thread:
# once more with a busy loop on every core, as apps run beside other work.
step "C# and Swift suites again under load (a busy loop on every core)" \
    scripts/under-load.sh bash -c "bindings/csharp/test.sh && bindings/swift/test.sh"
# Miri over the core's unsafe code: the parallel and kernel unit tests, the
# tokenizer's, and tests/miri.rs end to end (session carving, the forward pass
# over every KV type, inline and on threads, saved states). libm's
# soft-float code runs under Miri (core/Cargo.toml), so the forward pass can
# be checked. (kv's and the tokenizer heap's unit tests take Miri minutes
# each: the KV types run end to end in tests/miri.rs instead.)
miri_leg() {
    cargo +nightly miri test -p llamette --test miri &&
        cargo +nightly miri test -p llamette --lib -- parallel:: kernels:: \
            tokenizer::tests::decoder tokenizer::tests::merges
}
step "Miri: parallel regions, session carving, forward pass, KV types, saved states, tokenizer" miri_leg
step "fuzz: every cargo-fuzz target for ${FUZZ_SECONDS:-30} s (fuzz/run.sh)" \
    env LLAMETTE_BIN="$PWD/$bin" fuzz/run.sh "${FUZZ_SECONDS:-30}"
step "README's main command prints the reference text" \
    bash -c "cmp <($bin generate -t 0 -n 256 2>/dev/null) ../shared/testdata/stories260K.greedy.txt"

echo "test.sh: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
