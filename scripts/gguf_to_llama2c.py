#!/usr/bin/env python3
"""Write an F32 Llama GGUF (e.g. `llamette synth --shape 15m --type f32`) as
a llama2.c "version 0" checkpoint, the format llama2.c's run.c reads, so
that both programs can run the same weights (README's small-model table).

Usage: scripts/gguf_to_llama2c.py IN.gguf OUT.bin

Needs the `gguf` Python package. Only F32 tensors; GGUF's llama q/k rows are
already in the layout run.c's RoPE expects (pairs of adjacent values), so
the matrices are written as they are. The two RoPE tables run.c skips are
written as zeros; the classifier is written after them when the GGUF has
an `output.weight` (vocab_size negative in the header, run.c's convention).
"""

import struct
import sys

import numpy as np
from gguf import GGUFReader, GGMLQuantizationType


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    r = GGUFReader(sys.argv[1])

    def field(name):
        return r.fields[name].parts[-1][0]

    dim = int(field("llama.embedding_length"))
    hidden = int(field("llama.feed_forward_length"))
    layers = int(field("llama.block_count"))
    heads = int(field("llama.attention.head_count"))
    kv_heads = int(field("llama.attention.head_count_kv"))
    seq_len = int(field("llama.context_length"))
    tensors = {t.name: t for t in r.tensors}

    def get(name):
        t = tensors[name]
        if t.tensor_type != GGMLQuantizationType.F32:
            sys.exit(f"{name} is {t.tensor_type.name}: only F32 models can be written")
        return np.asarray(t.data, dtype="<f4").reshape(-1)

    emb = get("token_embd.weight")
    vocab = emb.size // dim
    shared = "output.weight" not in tensors
    with open(sys.argv[2], "wb") as f:
        f.write(struct.pack("<7i", dim, hidden, layers, heads, kv_heads,
                            vocab if shared else -vocab, seq_len))
        f.write(emb.tobytes())
        per_layer = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                     "ffn_norm", "ffn_gate", "ffn_down", "ffn_up"]
        for name in per_layer:
            for l in range(layers):
                f.write(get(f"blk.{l}.{name}.weight").tobytes())
        f.write(get("output_norm.weight").tobytes())
        head_size = dim // heads
        f.write(np.zeros(2 * seq_len * head_size // 2, dtype="<f4").tobytes())
        if not shared:
            f.write(get("output.weight").tobytes())


if __name__ == "__main__":
    main()
