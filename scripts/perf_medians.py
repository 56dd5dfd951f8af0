#!/usr/bin/env python3
"""Medians of the interleaved rounds of scripts/perf_table.sh.

    python3 scripts/perf_medians.py RAW.csv docs/perf.csv > table.md

Writes docs/perf.csv (engine,type,threads,test,tok_s: what
scripts/perf_chart.py draws) and prints README's table: medians, and each
llamette column's ratio to llama.cpp's median. When RAW.csv has the cores
column (perf_table.sh with CORES=...), also prints the 2-thread decode
medians by placement: the runs during which CPUs 0 and 1 stayed on separate
physical cores, and those during which they shared one, each engine against
llama.cpp's runs under the same placement.
"""
import csv
import statistics
import sys
from collections import defaultdict

NAMES = {"llamette": "llamette (default)", "llamette-mmap": "llamette --mmap", "llama.cpp": "llama.cpp"}
ORDER = ["llama.cpp", "llamette --mmap", "llamette (default)"]


def main(raw, out):
    runs = defaultdict(list)
    placed = defaultdict(list)
    for r in csv.DictReader(open(raw)):
        runs[(NAMES[r["engine"]], r["type"], r["threads"], r["test"])].append(float(r["tok_s"]))
        if r.get("cores") and r["threads"] == "2" and r["test"] == "tg64":
            placed[(NAMES[r["engine"]], r["type"], r["cores"])].append(float(r["tok_s"]))
    med = {k: statistics.median(v) for k, v in runs.items()}
    n = {k: len(v) for k, v in runs.items()}
    groups = sorted({(k[1], k[2]) for k in med}, key=lambda g: (["q4_0", "q8_0", "f16", "q4_k_m", "q6_k"].index(g[0]) if g[0] in ["q4_0", "q8_0", "f16", "q4_k_m", "q6_k"] else 9, g[1]))
    with open(out, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["engine", "type", "threads", "test", "tok_s"])
        for ty, th in groups:
            for test in ["pp128", "tg64"]:
                for e in ORDER:
                    if (e, ty, th, test) in med:
                        w.writerow([e, ty, th, test, f"{med[(e, ty, th, test)]:.2f}"])
    print("| weights | threads | decode tg64: llama.cpp | llamette `--mmap` | llamette (default) "
          "| prompt pp128: llama.cpp | llamette `--mmap` | llamette (default) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for ty, th in groups:
        cells = []
        for test in ["tg64", "pp128"]:
            base = med.get(("llama.cpp", ty, th, test))
            cells.append(f"{base:.1f}" if base else "-")
            for e in ORDER[1:]:
                v = med.get((e, ty, th, test))
                if v is None:
                    cells.append("-")
                elif base:
                    b = "**" if e == "llamette (default)" else ""
                    cells.append(f"{b}{v:.1f} ({v / base:.2f}x){b}")
                else:
                    cells.append(f"{v:.1f}")
        print(f"| {ty.upper()} | {th} | " + " | ".join(cells) + " |")
    counts = sorted(set(n.values()))
    print(f"\n(runs per cell: {', '.join(map(str, counts))})")
    if placed:
        by_placement(placed, [g[0] for g in groups if g[1] == "2"])


def by_placement(placed, types):
    """Prints the 2-thread decode medians by placement (runs in brackets)."""
    print("\n| weights | CPUs 0 and 1 | decode tg64, 2 threads: llama.cpp "
          "| llamette `--mmap` | llamette (default) |")
    print("| --- | --- | --- | --- | --- |")
    for ty in types:
        for cores in ["separate", "shared", "moved"]:
            base = placed.get(("llama.cpp", ty, cores))
            if not base and not any((e, ty, cores) in placed for e in ORDER):
                continue
            b = statistics.median(base) if base else None
            cells = [f"{b:.1f} [{len(base)}]" if base else "- [0]"]
            for e in ORDER[1:]:
                v = placed.get((e, ty, cores))
                if not v:
                    cells.append("- [0]")
                    continue
                m = statistics.median(v)
                ratio = f" ({m / b:.2f}x)" if b else ""
                cells.append(f"{m:.1f}{ratio} [{len(v)}]")
            print(f"| {ty.upper()} | {cores} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
