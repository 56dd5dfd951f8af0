#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default: $FUZZ_SECONDS, else 30),
# one job at a time, with cargo-fuzz on the nightly toolchain (libFuzzer,
# AddressSanitizer, debug assertions). Prints each target's executions and
# exits 1 if any target found something (a crash file in fuzz/artifacts/).
#
#   fuzz/run.sh            # CI: 30 s per target
#   fuzz/run.sh 3600       # a longer local run (an hour per target)
#   FUZZ_TARGETS="tokenizer decoder" fuzz/run.sh 600
#
# Seed corpora are made here from the small models (never committed):
# the embedded stories260K and tok512 (models/), a Q8_0 GGUF quantized from
# them by the llamette binary ($LLAMETTE_BIN, default target/release/llamette
# under $CARGO_TARGET_DIR or the repository), and, when ../shared is beside
# the checkout, stories260K.gguf and llama.cpp's t256 quantized files.
# Corpora grow in fuzz/corpus/<target>/ across runs.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-${FUZZ_SECONDS:-30}}
targets=(${FUZZ_TARGETS:-gguf_model llama2c_model tokenizer decoder repack state_restore})
shared=../../shared
target_dir=${CARGO_TARGET_DIR:-../target}
bin=${LLAMETTE_BIN:-$target_dir/release/llamette}

seed() {
    local t=$1
    shift
    mkdir -p "corpus/$t"
    for f in "$@"; do
        if [ -f "$f" ]; then cp -n "$f" "corpus/$t/" 2>/dev/null || true; fi
    done
}
mkdir -p seeds
if [ -x "$bin" ] && [ ! -s seeds/stories260K-q8_0.gguf ]; then
    "$bin" quantize ../models/stories260K.bin seeds/stories260K-q8_0.gguf --type q8_0 \
        -z ../models/tok512.bin >/dev/null 2>&1 || rm -f seeds/stories260K-q8_0.gguf
fi
quants=()
for q in Q4_0 Q8_0 Q4_K_M Q6_K; do quants+=("$shared/testdata/llamacpp-quants/t256-$q.gguf"); done
seed gguf_model seeds/stories260K-q8_0.gguf "$shared/models/stories260K.gguf" "${quants[@]}"
seed llama2c_model ../models/stories260K.bin
seed tokenizer ../models/tok512.bin seeds/stories260K-q8_0.gguf
seed decoder
seed repack seeds/stories260K-q8_0.gguf "$shared/testdata/llamacpp-quants/t256-Q4_0.gguf"
seed state_restore

found=0
summary=()
for t in "${targets[@]}"; do
    log=$(mktemp)
    # -rss_limit_mb: a model step of the seeds needs far less; more is a finding.
    if ! cargo +nightly fuzz run -O "$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=20 \
        -print_final_stats=1 >"$log" 2>&1; then
        found=1
        tail -n 40 "$log"
        summary+=("$t: FINDING (see fuzz/artifacts/$t/)")
    else
        runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
        summary+=("$t: $runs executions in ${secs} s, $cov, corpus $(ls "corpus/$t" | wc -l) inputs, no finding")
    fi
    rm -f "$log"
done
printf 'fuzz: %s\n' "${summary[@]}"
exit $found
