#!/usr/bin/env bash
# Builds the Cortex-M firmware, runs it on QEMU's mps2-an386 (Cortex-M4F)
# and checks what it printed through semihosting:
#   - the F32 KV run's text is llama2.c's own greedy text
#     (../shared/testdata/stories260K.greedy.txt) byte for byte, and its
#     token ids are llama2.c's (stories260K.greedy.ids.txt);
#   - each run's text is what `llamette generate -t 0 -n 256 --batch 1
#     --kv f32|q8_0` prints on the host;
#   - it says how many generated tokens of the Q8_0 KV run equal llama2.c's.
# Exits non-zero on any difference, a failed build, a panic or fault in the
# firmware, or a run longer than the timeout.
#
# Usage: embedded/cortex-m/run.sh [LLAMETTE_CLI_BINARY]
# (without it, run.sh builds the CLI: cargo build --release -p llamette-cli).
# Needs qemu-system-arm and the thumbv7em-none-eabihf target.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
testdata="$root/../shared/testdata"
timeout_s=${QEMU_TIMEOUT:-300}

target_dir() {
    cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

if [ $# -ge 1 ]; then
    [ -x "$1" ] || { echo "run.sh: $1 is not an executable"; exit 1; }
    cli="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
else
    # From the root: the firmware directory's cargo config targets thumbv7em.
    cd "$root"
    cargo build --release -q -p llamette-cli
    cli="$(target_dir)/release/llamette"
fi

cd "$here"
cargo fmt --check
cargo build --release
elf="$(target_dir)/thumbv7em-none-eabihf/release/llamette-cortex-m"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# -icount shift=0: QEMU's virtual clock advances 1 ns per instruction, so
# the SysTick figures the firmware prints are deterministic emulated time.
status=0
timeout "$timeout_s" qemu-system-arm -machine mps2-an386 -cpu cortex-m4 \
    -nographic -monitor none -serial none \
    -semihosting-config enable=on,target=native -icount shift=0 \
    -kernel "$elf" >"$work/out" || status=$?
if [ "$status" -ne 0 ]; then
    cat "$work/out"
    echo "run.sh: qemu-system-arm exited with status $status (124: timed out after ${timeout_s} s)"
    exit 1
fi
# Everything but the texts and the ids, for the log.
LC_ALL=C awk '/^--- text /{t=1} !t && !/^ids /{print} /^--- end ---$/{t=0}' "$work/out"

# The text of one run: the lines between its marker and the end marker.
text() {
    LC_ALL=C awk -v start="--- text (kv $1) ---" \
        '$0 == start {f = 1; next} f && $0 == "--- end ---" {exit} f {print}' "$work/out"
}
ids() {
    grep "^ids (kv $1):" "$work/out" | cut -d: -f2
}

failed=0
check() { # what, file, expected file
    if cmp -s "$2" "$3"; then
        echo "ok: $1"
    else
        echo "FAILED: $1 (< expected, > firmware)"
        diff "$3" "$2" | head -20 || true
        failed=1
    fi
}

for kv in f32 q8_0; do
    text "$kv" >"$work/text-$kv"
    if ! "$cli" generate -t 0 -n 256 --batch 1 --kv "$kv" >"$work/host-$kv" 2>"$work/host.err"; then
        cat "$work/host.err"
        echo "run.sh: the host CLI failed"
        exit 1
    fi
    check "kv $kv text equals \`llamette generate -t 0 -n 256 --batch 1 --kv $kv\` on the host" \
        "$work/text-$kv" "$work/host-$kv"
done
check "kv f32 text equals llama2.c's (stories260K.greedy.txt)" \
    "$work/text-f32" "$testdata/stories260K.greedy.txt"

# Token ids: llama2.c's file holds the 256 tokens fed (BOS, then 255
# generated); the firmware prints BOS and every sampled token.
python3 - "$testdata/stories260K.greedy.ids.txt" "$(ids f32)" "$(ids q8_0)" <<'EOF' || failed=1
import sys
ref = open(sys.argv[1]).read().split()
f32, q8 = sys.argv[2].split(), sys.argv[3].split()
if f32[: len(ref)] != ref:
    print("FAILED: kv f32 token ids differ from llama2.c's (stories260K.greedy.ids.txt)")
    sys.exit(1)
print("ok: kv f32 token ids equal llama2.c's (stories260K.greedy.ids.txt)")
same = next((i for i, (a, b) in enumerate(zip(q8, ref)) if a != b), min(len(q8), len(ref)))
print(f"kv q8_0: the first {same - 1} of llama2.c's {len(ref) - 1} generated tokens are equal")
EOF

if [ "$failed" -ne 0 ]; then
    echo "run.sh: the firmware's output differs"
    exit 1
fi
echo "run.sh: the Cortex-M firmware prints the reference texts"
