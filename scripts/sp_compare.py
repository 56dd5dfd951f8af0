#!/usr/bin/env python3
"""Compare a tokenizer command with SentencePiece on many texts.

Usage:
    python3 scripts/sp_compare.py [options] -- CMD [ARGS...]

CMD is run once per text, with the text (UTF-8) on stdin; it must print the
token ids on stdout separated by whitespace (one line, no BOS), as
`llamette tokenize MODEL_OR_TOKENIZER` does. The ids are compared with
`SentencePieceProcessor.encode(text)` of the Llama 2 SentencePiece model
(default: ../shared/models/llama2-tokenizer.model next to the repository).

The texts: the JSON strings of scripts/sp_texts.txt (one per line, `#` lines
are comments), the inline ones below, and texts generated from a seeded RNG
(--seed, --generated): random mixes of ASCII, whitespace runs, accents, CJK,
emoji and ZWJ sequences, combining marks, control characters and rare
characters that need byte fallback, concatenations of random vocabulary
pieces, and a few long texts.

Without a `llamette` binary, the ignored test `tokenize_stdin` of
core/tests/tokenizer.rs does the same (slowly, one cargo run per text):
    LLAMETTE_TOKENIZER=../shared/models/llama2-tokenizer.bin \
    python3 scripts/sp_compare.py --prefix ids: -- cargo test -q -p llamette \
        --test tokenizer -- --ignored --nocapture tokenize_stdin

Prints each failure (text, expected, got; at most --show of them in full) and
a last line exactly `N passed, N failed`; exits 1 if anything failed (or the
command could not be run), 0 otherwise.

Apples to apples: the script reads the model's normalizer spec straight from
the protobuf (no protobuf package needed) and prints it. For Llama 2 it is
name=identity (no NFKC: the precompiled charsmap is empty),
add_dummy_prefix=true, remove_extra_whitespaces=false, escape_whitespaces=true,
and the trainer spec has byte_fallback=true: so `sp.encode(text)` is exactly
"replace ' ' by U+2581, prepend U+2581 to a non-empty text, BPE, byte
fallback", which is what llamette implements. The script warns if a model
uses another normalizer, as the comparison would then not be meaningful.
"""

import argparse
import json
import os
import random
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = os.path.normpath(
    os.path.join(HERE, "..", "..", "shared", "models", "llama2-tokenizer.model")
)
DEFAULT_TEXTS = os.path.join(HERE, "sp_texts.txt")

INLINE_TEXTS = [
    "",
    " ",
    "  ",
    "\n",
    "\t",
    "Hello world",
    " Hello world",
    "Hello world ",
    "   leading and trailing   ",
    "Tom and his dog",
    "<s> </s> <unk> <0x41> <pad>",
    "\u2581 literal lower one eighth block \u2581\u2581",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber stra\u00dfe",
    "\u4e2d\u6587\u5b57\u7b26\u548c\u65e5\u672c\u8a9e\u306e\u6587\u7ae0\u3001\ud55c\uad6d\uc5b4",
    "\U0001F600\U0001F469\u200d\U0001F4BB\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466 \U0001F1EB\U0001F1F7",
    "\U0010FFFF\U000E0001\ue000\uFFFD\uFEFF",
    "\x00\x01\x1b[31mred\x1b[0m\x7f",
    "def f(x):\n\treturn x ** 2  # comment\n",
]

# Character pools for generated texts (no surrogates: they are not UTF-8).
POOLS = {
    "ascii": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "digits": "0123456789",
    "punct": "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
    "space": " " * 6 + "\t\n\r\u00a0\u3000\u2009\u2581",
    "accents": "\u00e0\u00e1\u00e2\u00e3\u00e4\u00e5\u00e6\u00e7\u00e8\u00e9\u00ea\u00eb\u00ec\u00ed\u00ee\u00ef\u00f1\u00f2\u00f3\u00f4\u00f5\u00f6\u00f8\u00f9\u00fa\u00fb\u00fc\u00fd\u00ff\u0100\u0107\u010d\u0111\u0119\u011f\u0131\u0142\u0144\u0151\u0153\u015b\u0161\u017c\u017e",
    "greek_cyrillic": "\u03b1\u03b2\u03b3\u03b4\u03b5\u03bb\u03bc\u03c0\u03c3\u03c9\u0410\u0411\u0412\u0430\u0431\u0432\u0433\u0434\u0435\u0436\u0437\u0438\u043a\u043b\u043c\u043d\u043e\u043f\u0440\u0441\u0442\u0443\u044f",
    "cjk": "\u4e00\u4e8c\u4e09\u4eba\u5927\u5c0f\u4e2d\u6587\u65e5\u672c\u8a9e\u3042\u3044\u3046\u30a2\u30a4\u30a6\ud55c\uad6d\uc5b4\u9f8d\u9a6c\u7684\u662f",
    "arabic_hebrew_indic": "\u0627\u0644\u0639\u0631\u0628\u064a\u0629\u05e9\u05dc\u05d5\u05dd\u0928\u092e\u0938\u094d\u0924\u0947\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35",
    "emoji": "\U0001F600\U0001F602\U0001F60D\U0001F44D\U0001F3FD\U0001F680\u2764\ufe0f\U0001F525\u2705\U0001F389",
    "zwj": "\u200d\u200c\ufe0f\U0001F3FB",
    "combining": "\u0301\u0300\u0308\u0327\u0303\u20dd",
    "control": "\x00\x01\x02\x07\x08\x0b\x0c\x1b\x7f\x85",
    "rare": "\U0010FFFF\U000E0041\ue123\U000F0000\u2fff\U0001D54F\U00013000\U0001F9FF\ufffd\ufeff\u061c",
}


def read_model_spec(path):
    """Parses the few fields of the ModelProto we care about, by hand."""
    data = open(path, "rb").read()

    def varint(b, i):
        r = s = 0
        while True:
            x = b[i]
            i += 1
            r |= (x & 0x7F) << s
            s += 7
            if x < 0x80:
                return r, i

    def fields(b):
        i = 0
        while i < len(b):
            key, i = varint(b, i)
            f, t = key >> 3, key & 7
            if t == 0:
                v, i = varint(b, i)
            elif t == 1:
                v, i = b[i : i + 8], i + 8
            elif t == 5:
                v, i = b[i : i + 4], i + 4
            elif t == 2:
                n, i = varint(b, i)
                v, i = b[i : i + n], i + n
            else:
                raise ValueError("unsupported wire type %d" % t)
            yield f, v

    spec = {
        "normalizer": "nmt_nfkc",  # proto defaults
        "precompiled_charsmap_bytes": 0,
        "add_dummy_prefix": True,
        "remove_extra_whitespaces": True,
        "escape_whitespaces": True,
        "model_type": 1,
        "byte_fallback": False,
        "treat_whitespace_as_suffix": False,
    }
    for f, v in fields(data):
        if f == 2:  # trainer_spec
            for ff, vv in fields(v):
                if ff == 3:
                    spec["model_type"] = vv
                elif ff == 35:
                    spec["byte_fallback"] = bool(vv)
                elif ff == 24:
                    spec["treat_whitespace_as_suffix"] = bool(vv)
        elif f == 3:  # normalizer_spec
            for ff, vv in fields(v):
                if ff == 1:
                    spec["normalizer"] = vv.decode()
                elif ff == 2:
                    spec["precompiled_charsmap_bytes"] = len(vv)
                elif ff == 3:
                    spec["add_dummy_prefix"] = bool(vv)
                elif ff == 4:
                    spec["remove_extra_whitespaces"] = bool(vv)
                elif ff == 5:
                    spec["escape_whitespaces"] = bool(vv)
    spec["model_type"] = {1: "UNIGRAM", 2: "BPE", 3: "WORD", 4: "CHAR"}.get(
        spec["model_type"], spec["model_type"]
    )
    return spec


def load_texts(path):
    texts = []
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.rstrip("\n")
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                try:
                    t = json.loads(line)
                except json.JSONDecodeError as e:
                    sys.exit("%s:%d: not a JSON string: %s" % (path, n, e))
                if not isinstance(t, str):
                    sys.exit("%s:%d: not a JSON string" % (path, n))
                texts.append(t)
    return texts


def generated_texts(sp, seed, count):
    rng = random.Random(seed)
    names = sorted(POOLS)
    texts = []
    for k in range(count):
        kind = k % 4
        if kind == 3:
            # Concatenated vocabulary pieces (stress merges across pieces).
            n = rng.randint(1, 40)
            ids = [rng.randrange(3, sp.get_piece_size()) for _ in range(n)]
            t = "".join(sp.id_to_piece(i).replace("\u2581", " ") for i in ids)
            # Byte pieces read back as their <0xNN> spelling: keep some, decode others.
            t = t if rng.random() < 0.5 else sp.decode(ids)
        else:
            n = rng.choice([1, 2, 3, 5, 10, 30, 100, 300])
            weights = [rng.random() ** 3 for _ in names]
            t = "".join(
                rng.choice(POOLS[rng.choices(names, weights)[0]]) for _ in range(n)
            )
        texts.append(t)
    # A few long ones (up to ~20 KB).
    for _ in range(3):
        parts = []
        while sum(len(p) for p in parts) < 6000:
            pool = POOLS[rng.choice(names)] + POOLS["ascii"] + "    "
            parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 12))))
            parts.append(rng.choice([" ", "  ", "\n", ", ", ". "]))
        texts.append("".join(parts))
    return texts


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        usage="%(prog)s [options] -- CMD [ARGS...]",
    )
    ap.add_argument("--model", default=DEFAULT_MODEL, help="SentencePiece .model (ground truth)")
    ap.add_argument("--texts", default=DEFAULT_TEXTS, help="file of JSON strings, one per line")
    ap.add_argument("--seed", type=int, default=1234, help="seed of the generated texts")
    ap.add_argument("--generated", type=int, default=400, help="how many texts to generate")
    ap.add_argument("--show", type=int, default=10, help="failures to print in full")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per command run")
    ap.add_argument(
        "--prefix",
        help="read the ids from the last stdout line starting with PREFIX (for commands "
        "that print other lines too, like the ignored `tokenize_stdin` test of "
        "core/tests/tokenizer.rs, which prints `ids:...`)",
    )
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        ap.error("missing the command: -- CMD [ARGS...]")

    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=args.model)
    spec = read_model_spec(args.model)
    print("model %s: %d pieces, spec %s" % (args.model, sp.get_piece_size(), spec))
    if spec["normalizer"] != "identity" or spec["precompiled_charsmap_bytes"]:
        print("warning: the model normalizes text (%s); llamette does not" % spec["normalizer"])
    if spec["remove_extra_whitespaces"] or not spec["add_dummy_prefix"]:
        print("warning: whitespace handling differs from Llama 2's")

    texts = INLINE_TEXTS + load_texts(args.texts) + generated_texts(sp, args.seed, args.generated)
    passed = failed = 0
    for text in texts:
        expected = sp.encode(text)
        try:
            r = subprocess.run(
                cmd,
                input=text.encode("utf-8"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                timeout=args.timeout,
            )
            if r.returncode != 0:
                got = "exit status %d: %s" % (r.returncode, r.stderr.decode("utf-8", "replace").strip())
            else:
                out = r.stdout
                if args.prefix is not None:
                    p = args.prefix.encode()
                    lines = [l[len(p):] for l in out.splitlines() if l.startswith(p)]
                    out = lines[-1] if lines else b"<no line starting with the prefix>"
                try:
                    got = [int(x) for x in out.split()]
                except ValueError:
                    got = "unparsable output: %r" % r.stdout[:200]
        except (OSError, subprocess.TimeoutExpired) as e:
            got = "could not run: %s" % e
        if got == expected:
            passed += 1
        else:
            failed += 1
            if failed <= args.show:
                shown = text if len(text) <= 300 else text[:300] + "..."
                print("FAIL %r\n  expected %s\n  got      %s" % (shown, expected, got))
                if isinstance(got, list):
                    i = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got)))
                    print("  first difference at %d: expected %r, got %r" % (
                        i,
                        [sp.id_to_piece(x) for x in expected[i : i + 4]],
                        [sp.id_to_piece(x) if 0 <= x < sp.get_piece_size() else x for x in got[i : i + 4]],
                    ))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
