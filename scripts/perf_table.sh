#!/usr/bin/env bash
# Side-by-side decode (tg64) and prompt (pp128) speed: llamette's default
# CLI path, llamette --mmap and llama.cpp's llama-bench, on the same GGUF
# files, at 1 and 2 threads, in interleaved rounds (every engine, type and
# thread count once per round, the order rotated from round to round), so
# that a noisy moment of a shared machine hits all of them alike. Decode
# starts from an empty context in both engines (llama-bench's tg64 test;
# llamette bench --decode-from-start), not after the prompt.
#
# Usage: scripts/perf_table.sh LLAMETTE LLAMA_BENCH ROUNDS RAW.csv MODEL_DIR
#   MODEL_DIR holds tl-Q4_0.gguf, tl-Q8_0.gguf, tl-f16.gguf
#   (llamette synth --shape tinyllama-1.1b --type q4_0|q8_0|f16 ...);
#   TYPES="Q4_K_M Q6_K" measures tl-Q4_K_M.gguf and tl-Q6_K.gguf instead.
# Appends engine,type,threads,test,round,tok_s rows to RAW.csv; then
# scripts/perf_medians.py RAW.csv > docs/perf.csv takes the medians.
# Prints on stderr how much of each mapped file the kernel maps with 2 MiB
# pages (the `--mmap` runs read 4 KiB pages elsewhere, which is slower:
# it depends on how the page cache was filled, see README).
#
# CORES=path/to/core-sharing (cargo build --release -p llamette-bench --bin
# core-sharing) runs it before and after every job and writes in the last
# column whether CPUs 0 and 1 were on one physical core ("shared"), on two
# ("separate") or moved in between ("moved"): on a virtual machine the
# host decides, and 2-thread decode depends on it (see core_sharing.rs).
set -euo pipefail
L=$1; LB=$2; R=$3; OUT=$4; D=$5
[ -s "$OUT" ] || echo "engine,type,threads,test,round,tok_s,cores" > "$OUT"
lm() { # label type threads round extra-flags...
    local label=$1 ty=$2 t=$3 r=$4; shift 4
    "$L" bench "$D/tl-$ty.gguf" --threads "$t" --prompt-tokens 128 --gen-tokens 64 --decode-from-start --no-probe "$@" 2>/dev/null |
        awk -v e="$label" -v ty="${ty,,}" -v t="$t" -v r="$r" '
            /^prompt:/ { for (i = 1; i <= NF; i++) if ($i == "tok/s") print e "," ty "," t ",pp128," r "," $(i - 1) }
            /^decode:/ { for (i = 1; i <= NF; i++) if ($i == "tok/s" && !d) { print e "," ty "," t ",tg64," r "," $(i - 1); d = 1 } }
            /^weights in 2 MiB pages:/ && e == "llamette-mmap" { print ty " " t "T round " r ": " $0 > "/dev/stderr" }'
}
lc() { # type threads round
    local ty=$1 t=$2 r=$3
    "$LB" -m "$D/tl-$ty.gguf" -t "$t" -p 128 -n 64 -r 1 -o csv 2>/dev/null |
        awk -F'"' -v ty="${ty,,}" -v t="$t" -v r="$r" '
            NR > 1 { np = $52; ng = $54; ts = $62
                     print "llama.cpp," ty "," t "," (np > 0 ? "pp128" : "tg64") "," r "," ts }'
}
for r in $(seq "$R"); do
    jobs=()
    for ty in ${TYPES:-Q4_0 Q8_0 F16}; do
        f=$ty; [ "$ty" = F16 ] && f=f16
        for t in 1 2; do
            jobs+=("lm llamette $f $t $r" "lm llamette-mmap $f $t $r --mmap" "lc $f $t $r")
        done
    done
    n=${#jobs[@]}
    for i in $(seq 0 $((n - 1))); do
        j=${jobs[$(( (i + r * 7) % n ))]}
        if [ -n "${CORES:-}" ]; then
            before=$("$CORES" | awk '{print $3}')
            rows=$($j)
            after=$("$CORES" | awk '{print $3}')
            [ "$before" = "$after" ] || before=moved
            [ -z "$rows" ] || echo "$rows" | sed "s/\$/,$before/" >> "$OUT"
        else
            $j | sed 's/$/,/' >> "$OUT"
        fi
    done
    echo "round $r done $(date -u +%T)" >&2
done
