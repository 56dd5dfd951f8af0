#!/usr/bin/env python3
"""Compares llamette's decoding of every GGUF block type it reads with the
Python `gguf` package's `gguf.quants.dequantize` (an independent decoder,
which follows ggml's reference), bit for bit.

For each type it writes random blocks into a GGUF file with gguf's own
writer (ordinary scales, and every few blocks a special one: zeros,
negative zero, subnormal, the largest and smallest normal halves,
infinities and NaN), then asks `llamette dequantize` for each tensor and
compares the f32 bits (NaN compares equal to NaN, whatever its payload).

Usage: scripts/dequant_compare.py PATH/TO/llamette
Prints one line per type and exits non-zero on any difference.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

# Elements and bytes per block, and the byte offsets of each block's f16
# fields (scales, minimums), from ggml-common.h.
TYPES = {
    T.F16: (1, 2, []),
    T.BF16: (1, 2, []),
    T.Q8_0: (32, 34, [0]),
    T.Q4_0: (32, 18, [0]),
    T.Q4_1: (32, 20, [0, 2]),
    T.Q5_0: (32, 22, [0]),
    T.Q5_1: (32, 24, [0, 2]),
    T.IQ4_NL: (32, 18, [0]),
    T.Q2_K: (256, 84, [80, 82]),
    T.Q3_K: (256, 110, [108]),
    T.Q4_K: (256, 144, [0, 2]),
    T.Q5_K: (256, 176, [0, 2]),
    T.Q6_K: (256, 210, [208]),
}

# Half-precision bit patterns every few blocks get: +0, -0, the smallest and
# largest subnormals (both signs), the smallest normal, the largest finite
# (both signs), 1, +inf, -inf, a NaN.
SPECIAL = [0x0000, 0x8000, 0x0001, 0x03FF, 0x8001, 0x0400, 0x7BFF, 0xFBFF, 0x3C00,
           0x7C00, 0xFC00, 0x7E01]


def blocks(rng, ty, n_blocks):
    """Random bytes of n_blocks blocks of ty, with chosen f16 fields."""
    _, bb, fields = TYPES[ty]
    data = rng.integers(0, 256, size=(n_blocks, bb), dtype=np.uint8)
    if ty in (T.F16, T.BF16):
        return data
    for b in range(n_blocks):
        for k, at in enumerate(fields):
            if b % 4 == 3:
                h = SPECIAL[(b // 4 + k) % len(SPECIAL)]
            else:
                # An ordinary scale: sign, exponent 2^-14..2^0, any mantissa.
                h = (int(rng.integers(0, 2)) << 15) | (int(rng.integers(1, 16)) << 10) \
                    | int(rng.integers(0, 1024))
            data[b, at] = h & 0xFF
            data[b, at + 1] = h >> 8
    return data


def main():
    np.seterr(all="ignore")  # inf * 0 in the special blocks is meant
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    llamette = sys.argv[1]
    rng = np.random.default_rng(20261204)
    rows = 12
    failed = 0
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "blocks.gguf")
        writer = gguf.GGUFWriter(path, arch="llama")
        raws = {}
        for ty, (bl, bb, _) in TYPES.items():
            per_row = 8 if bl == 256 else 16
            if bl == 1:
                per_row = 512
            raw = blocks(rng, ty, rows * per_row).reshape(rows, per_row * bb)
            name = f"t.{ty.name}"
            raws[name] = (ty, raw)
            writer.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=ty)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        for name, (ty, raw) in raws.items():
            want = gguf.quants.dequantize(raw, ty).astype(np.float32).reshape(-1)
            out = os.path.join(tmp, name + ".f32")
            subprocess.run([llamette, "dequantize", path, name, out], check=True)
            got = np.fromfile(out, dtype="<f4")
            if got.shape != want.shape:
                print(f"{ty.name}: {got.shape[0]} values, gguf gives {want.shape[0]}")
                failed += 1
                continue
            same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
            n_blocks = raw.size // TYPES[ty][1]
            total += n_blocks
            if same.all():
                print(f"{ty.name}: {n_blocks} blocks, {got.size} values, all equal")
            else:
                i = int(np.argmin(same))
                print(f"{ty.name}: {int((~same).sum())} of {got.size} values differ; "
                      f"first at {i}: llamette {got[i]!r}, gguf {want[i]!r}")
                failed += 1
    print(f"dequant_compare: {len(TYPES) - failed} types equal, {failed} differ ({total} blocks)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
