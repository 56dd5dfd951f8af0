#!/usr/bin/env python3
"""How fast could any engine decode here? Side by side, in interleaved rounds:
llama.cpp's decode (llama-bench tg64), llamette's default CLI path, and
`read-ceiling`'s loops over as many bytes as a token's weights, at 1 thread.

A token reads every weight once, so no engine decodes faster than the
machine's best read loop divided by the weights' bytes per token; this puts
that bound, and llamette, as ratios to llama.cpp measured in the same rounds.

Usage: scripts/ceiling.py LLAMETTE LLAMA_BENCH READ_CEILING ROUNDS MODEL_DIR [TYPE...]
  TYPE: Q4_0 Q8_0 (default) or others with MODEL_DIR/tl-TYPE.gguf
  READ_CEILING: target/release/read-ceiling
  (cargo build --release -p llamette-bench --bin read-ceiling).
Prints a markdown table of medians (and the ranges) on stdout.
"""

import csv
import io
import re
import statistics
import subprocess
import sys

# read-ceiling's loops that bound decode: the fastest plain read here, the
# one doing what a kernel does per line (2 vpdpbusd) with its prefetches,
# and the same over 2 and 4 streams (as a kernel reading 2 or 4 bands),
# and over 2 streams prefetched further ahead (the fastest read found).
LOOPS = {
    "read, prefetch L2 2560 and L1 1024 B ahead": "read loop",
    "2 vpdpbusd per line, prefetch L2 2560 and L1 1024 (the kernels' on Intel)": "kernel-like loop",
    "2 streams, 2 vpdpbusd per line, prefetch L2 2560 and L1 1024": "2 streams",
    "4 streams, 2 vpdpbusd per line, prefetch L2 2560 and L1 1024": "4 streams",
    "2 streams, 2 vpdpbusd per line, prefetch L2 4096 and L1 2048": "2 streams, 4/2 KiB ahead",
}


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, check=True)


def llamette(bin_, model):
    """(decode tok/s, MB of weights read per token)."""
    r = run([bin_, "bench", model, "--threads", "1", "--prompt-tokens", "1",
             "--gen-tokens", "64", "--no-probe"])
    text = r.stdout + r.stderr
    tok_s = float(re.search(r"^decode: .*? = ([0-9.]+) tok/s", text, re.M).group(1))
    mb = float(re.search(r"weights read per token: ([0-9.]+) MB", text).group(1))
    return tok_s, mb


def llama_cpp(bin_, model):
    r = run([bin_, "-m", model, "-t", "1", "-p", "0", "-n", "64", "-r", "1", "-o", "csv"])
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    return float(rows[-1]["avg_ts"])


def ceiling(bin_, mb):
    """GB/s of each loop in LOOPS over mb MB."""
    r = run([bin_, "--rounds", "1", "--mib", str(max(1, round(mb * 1e6 / 2**20)))])
    out = {}
    for line in r.stdout.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 2 and cells[0] in LOOPS:
            out[LOOPS[cells[0]]] = float(cells[1])
    return out


def fmt(v):
    return f"{statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})"


def main():
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    lm, lb, rc, rounds, d = sys.argv[1:6]
    types = sys.argv[6:] or ["Q4_0", "Q8_0"]
    res = {t: {"llama.cpp": [], "llamette": [], **{k: [] for k in LOOPS.values()}}
           for t in types}
    mb = {}
    for r in range(int(rounds)):
        for t in types:
            model = f"{d}/tl-{t}.gguf"
            steps = ["cpp", "lm", "loop"]
            for s in steps[r % 3:] + steps[: r % 3]:
                if s == "cpp":
                    res[t]["llama.cpp"].append(llama_cpp(lb, model))
                elif s == "lm":
                    tok, mb[t] = llamette(lm, model)
                    res[t]["llamette"].append(tok)
                elif t in mb:
                    for k, gbs in ceiling(rc, mb[t]).items():
                        res[t][k].append(gbs * 1e3 / mb[t])
        print(f"round {r + 1} done", file=sys.stderr)
    print("| weights | MB read per token | llama.cpp tg64 tok/s | llamette tok/s | "
          + " | ".join(f"{k}: tok/s bound" for k in LOOPS.values()) + " |")
    print("| --- " * (4 + len(LOOPS)) + "|")
    for t in types:
        v = res[t]
        base = statistics.median(v["llama.cpp"])
        cells = [f"{t}", f"{mb[t]:.0f}", fmt(v["llama.cpp"])]
        for k in ["llamette", *LOOPS.values()]:
            if v[k]:
                cells.append(f"{fmt(v[k])}, {statistics.median(v[k]) / base:.2f}x")
            else:
                cells.append("-")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
