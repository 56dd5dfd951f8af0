#!/usr/bin/env bash
# README's small-model table: llamette against llama2.c's run.c on
# stories260K and the 15M shape, greedy, 256 steps, at 1 and 2 threads, in
# interleaved rounds; medians of each program's own figure (run.c's
# "achieved tok/s", llamette's "tok/s decoding").
#
# Usage: scripts/small_table.sh LLAMETTE RUNC ROUNDS RAW.txt MODEL_DIR
#   RUNC: run.c built by you, e.g. gcc -Ofast -march=native -fopenmp run.c -lm
#         (OMP_NUM_THREADS sets its threads)
#   MODEL_DIR holds 15m-f32.gguf (llamette synth --shape 15m --type f32) and
#         15m-f32.bin (scripts/gguf_to_llama2c.py 15m-f32.gguf 15m-f32.bin)
# stories260K and the tokenizers come from ../shared/models.
set -euo pipefail
L=$1; RUNC=$2; R=$3; OUT=$4; D=$5
S=$(cd "$(dirname "$0")/../../shared/models" && pwd)
: > "$OUT"
runc() { # model tokenizer threads
    OMP_NUM_THREADS=$3 "$RUNC" "$1" -z "$2" -t 0 -n 256 2>&1 | grep -oP 'achieved tok/s: \K[0-9.]+'
}
lm() { # threads [model]
    local t=$1; shift
    "$L" generate "$@" -t 0 -n 256 --threads "$t" 2>&1 >/dev/null | grep -oP '[0-9.]+(?= tok/s decoding)'
}
for r in $(seq "$R"); do
    for t in 1 2; do
        echo "run.c 260K $t $(runc "$S/stories260K.bin" "$S/tok512.bin" "$t")" >> "$OUT"
        echo "llamette 260K $t $(lm "$t")" >> "$OUT"
        echo "run.c 15M $t $(runc "$D/15m-f32.bin" "$S/llama2-tokenizer.bin" "$t")" >> "$OUT"
        echo "llamette 15M $t $(lm "$t" "$D/15m-f32.gguf")" >> "$OUT"
    done
done
python3 - "$OUT" <<'EOF'
import collections, statistics, sys
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    p = line.split()
    if len(p) == 4:
        d[tuple(p[:3])].append(float(p[3]))
print("| model | llamette, 1 thread | run.c, 1 thread | ratio | llamette, 2 threads | run.c, 2 threads | ratio |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for m in ["260K", "15M"]:
    cells = [m]
    for t in ["1", "2"]:
        a = statistics.median(d[("llamette", m, t)])
        b = statistics.median(d[("run.c", m, t)])
        cells += [f"{a:.0f}", f"{b:.0f}", f"{a / b:.2f}x"]
    print("| " + " | ".join(cells) + " |")
print(f"(runs per cell: {len(d[('llamette', '15M', '1')])})")
EOF
