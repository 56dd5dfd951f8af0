#!/usr/bin/env python3
"""Draws docs/perf.svg, a grouped bar chart of tokens/s, from a CSV of
medians with columns: engine,type,threads,test,tok_s (test is tg64 or pp128).

    python3 scripts/perf_chart.py docs/perf.csv docs/perf.svg

Plain SVG, no plotting library needed.
"""
import csv
import sys
from collections import OrderedDict

COLORS = {"llama.cpp": "#9e9e9e", "llamette --mmap": "#64b5f6", "llamette (default)": "#1565c0"}


def main(src, dst):
    rows = list(csv.DictReader(open(src)))
    engines = list(OrderedDict.fromkeys(r["engine"] for r in rows))
    panels = [("tg64", "decode (tg64), tokens/s"), ("pp128", "prompt (pp128), tokens/s")]
    groups = list(OrderedDict.fromkeys((r["type"], r["threads"]) for r in rows))
    value = {(r["engine"], r["type"], r["threads"], r["test"]): float(r["tok_s"]) for r in rows}

    bar, gap, left, top, height = 14, 18, 60, 40, 220
    group_w = len(engines) * bar + gap
    panel_w = left + len(groups) * group_w + 20
    width, total_h = panel_w * len(panels), top + height + 80
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_h}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{total_h}" fill="white"/>',
    ]
    for p, (test, title) in enumerate(panels):
        x0 = p * panel_w
        vals = [value.get((e, t, th, test), 0) for e in engines for (t, th) in groups]
        vmax = max(vals) * 1.15 if vals and max(vals) > 0 else 1
        out.append(f'<text x="{x0 + left}" y="20" font-size="13" font-weight="bold">{title}</text>')
        out.append(
            f'<line x1="{x0 + left}" y1="{top + height}" x2="{x0 + panel_w - 20}" '
            f'y2="{top + height}" stroke="black"/>'
        )
        for tick in range(0, 6):
            v = vmax * tick / 5
            y = top + height - height * tick / 5
            out.append(f'<text x="{x0 + left - 6}" y="{y + 4}" text-anchor="end">{v:.0f}</text>')
            out.append(
                f'<line x1="{x0 + left}" y1="{y}" x2="{x0 + panel_w - 20}" y2="{y}" '
                f'stroke="#e0e0e0"/>'
            )
        for g, (t, th) in enumerate(groups):
            gx = x0 + left + g * group_w + gap / 2
            for e_i, e in enumerate(engines):
                v = value.get((e, t, th, test))
                if v is None:
                    continue
                h = height * v / vmax
                x = gx + e_i * bar
                out.append(
                    f'<rect x="{x}" y="{top + height - h}" width="{bar - 2}" height="{h}" '
                    f'fill="{COLORS.get(e, "#444")}"><title>{e} {t} {th}T: {v:.1f}</title></rect>'
                )
            label = f"{t.upper()} {th}T"
            out.append(
                f'<text x="{gx + len(engines) * bar / 2}" y="{top + height + 14}" '
                f'text-anchor="middle">{label}</text>'
            )
    ly = top + height + 40
    for i, e in enumerate(engines):
        lx = left + i * 170
        out.append(f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{COLORS.get(e, "#444")}"/>')
        out.append(f'<text x="{lx + 16}" y="{ly + 10}">{e}</text>')
    out.append("</svg>")
    open(dst, "w").write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
