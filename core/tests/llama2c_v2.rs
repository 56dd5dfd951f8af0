//! llama2.c "version 2" (int8 in groups, magic `ak42`, read by `runq.c`).
//!
//! No such file ships with the project, so this test makes one: it converts
//! `stories260K.bin` (version 0, fp32) exactly as llama2.c's `export.py`
//! (`version2_export` and `quantize_q80`) does, loads the result and checks
//! - that it is read as version 2, with the right shapes and group size;
//! - that its logits equal those of the same quantized weights expanded back
//!   to an fp32 version 0 file (so the reader places every int8 value and
//!   every scale where `runq.c` does: a tight tolerance);
//! - that its logits are close to the fp32 model's (the quantization error:
//!   a loose, measured tolerance);
//! - that truncated, malformed or mutated version 2 files give errors, never
//!   panics.

use std::panic::{catch_unwind, AssertUnwindSafe};

use llamette::model::Format;
use llamette::tensor::TensorType;
use llamette::{Error, Model, Session, SessionParams};

mod common;
use common::{as_bytes, greedy_ids, session_buf, shared, truncation_cuts};

/// The logits at each of the first `n` positions of `tokens`, fed one at a time.
fn logits(model: &Model, tokens: &[u32], n: usize) -> Vec<Vec<f32>> {
    let params = SessionParams::default();
    let mut buf = session_buf(model, &params);
    let mut s = Session::new(model, params, as_bytes(&mut buf)).unwrap();
    (0..n)
        .map(|pos| {
            s.feed(&tokens[pos..pos + 1]).unwrap();
            s.logits().unwrap().to_vec()
        })
        .collect()
}

/// The worst, over positions, of max |got - want| / max |want|.
fn worst_relative_error(got: &[Vec<f32>], want: &[Vec<f32>]) -> f32 {
    let mut worst = 0f32;
    for (g, w) in got.iter().zip(want) {
        let scale = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (g, w) in g.iter().zip(w) {
            worst = worst.max((g - w).abs() / scale);
        }
    }
    worst
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

// ---------------------------------------------------------------------------
// A llama2.c checkpoint in memory, and export.py's two writers.

/// Every weight of a llama2.c checkpoint, each matrix per layer.
#[derive(Clone)]
struct Checkpoint {
    /// dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
    /// (version 0's sign convention: negative vocab = separate classifier).
    header: [i32; 7],
    tok_embeddings: Vec<f32>,
    attention_norm: Vec<Vec<f32>>,
    wq: Vec<Vec<f32>>,
    wk: Vec<Vec<f32>>,
    wv: Vec<Vec<f32>>,
    wo: Vec<Vec<f32>>,
    ffn_norm: Vec<Vec<f32>>,
    w1: Vec<Vec<f32>>,
    w2: Vec<Vec<f32>>,
    w3: Vec<Vec<f32>>,
    norm: Vec<f32>,
    /// Version 0's legacy RoPE tables (freq_cis real and imaginary).
    freq_cis: Vec<f32>,
    /// The classifier, when not shared with the embedding.
    output: Option<Vec<f32>>,
}

fn put_f32s(out: &mut Vec<u8>, v: &[f32]) {
    for x in v {
        out.extend(x.to_le_bytes());
    }
}

impl Checkpoint {
    fn dims(&self) -> (usize, usize, usize, usize, usize) {
        let h = self.header.map(|v| v.unsigned_abs() as usize);
        let (dim, hidden, nl, nh, nkv) = (h[0], h[1], h[2], h[3], h[4]);
        (dim, hidden, nl, dim / nh * nkv, h[5])
    }

    /// Reads a version 0 file (`legacy_export`'s layout).
    fn read_v0(bytes: &[u8]) -> Checkpoint {
        let i32_at = |i: usize| i32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
        let header: [i32; 7] = std::array::from_fn(i32_at);
        let floats: Vec<f32> = bytes[28..]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let mut pos = 0;
        let mut take = |n: usize| {
            pos += n;
            floats[pos - n..pos].to_vec()
        };
        let h = header.map(|v| v.unsigned_abs() as usize);
        let (dim, hidden, nl, nh, nkv, vocab, seq) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6]);
        let kv = dim / nh * nkv;
        let tok_embeddings = take(vocab * dim);
        let mut layers = |n: usize| (0..nl).map(|_| take(n)).collect::<Vec<_>>();
        let attention_norm = layers(dim);
        let wq = layers(dim * dim);
        let wk = layers(kv * dim);
        let wv = layers(kv * dim);
        let wo = layers(dim * dim);
        let ffn_norm = layers(dim);
        let w1 = layers(hidden * dim);
        let w2 = layers(dim * hidden);
        let w3 = layers(hidden * dim);
        let norm = take(dim);
        let freq_cis = take(seq * (dim / nh));
        let output = (header[5] < 0).then(|| take(vocab * dim));
        assert_eq!(pos, floats.len(), "the whole file is read");
        Checkpoint {
            header,
            tok_embeddings,
            attention_norm,
            wq,
            wk,
            wv,
            wo,
            ffn_norm,
            w1,
            w2,
            w3,
            norm,
            freq_cis,
            output,
        }
    }

    /// Writes a version 0 file (`legacy_export`).
    fn write_v0(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for v in self.header {
            out.extend(v.to_le_bytes());
        }
        put_f32s(&mut out, &self.tok_embeddings);
        for group in [
            &self.attention_norm,
            &self.wq,
            &self.wk,
            &self.wv,
            &self.wo,
            &self.ffn_norm,
            &self.w1,
            &self.w2,
            &self.w3,
        ] {
            for w in group {
                put_f32s(&mut out, w);
            }
        }
        put_f32s(&mut out, &self.norm);
        put_f32s(&mut out, &self.freq_cis);
        if let Some(w) = &self.output {
            put_f32s(&mut out, w);
        }
        out
    }

    /// The matrices `version2_export` quantizes, in its order.
    fn matrices(&self) -> Vec<&[f32]> {
        let mut m: Vec<&[f32]> = vec![&self.tok_embeddings];
        for group in [
            &self.wq, &self.wk, &self.wv, &self.wo, &self.w1, &self.w2, &self.w3,
        ] {
            m.extend(group.iter().map(|w| w.as_slice()));
        }
        m.extend(self.output.as_deref());
        m
    }

    fn matrices_mut(&mut self) -> Vec<&mut Vec<f32>> {
        let mut m = vec![&mut self.tok_embeddings];
        for group in [
            &mut self.wq,
            &mut self.wk,
            &mut self.wv,
            &mut self.wo,
            &mut self.w1,
            &mut self.w2,
            &mut self.w3,
        ] {
            m.extend(group.iter_mut());
        }
        m.extend(self.output.as_mut());
        m
    }

    /// The group size: 64, halved until it divides both dim and hidden_dim
    /// (every row length of every matrix).
    ///
    /// export.py halves only until it divides dim; for stories260K that
    /// leaves 64, which does not divide hidden_dim = 172: runq.c would then
    /// drop the last 44 values of every w2 row's activation and
    /// llamette rejects the file (see `group_64_from_export_py_is_rejected`).
    fn group_size(&self) -> usize {
        let (dim, hidden, ..) = self.dims();
        let mut g = 64;
        while dim % g != 0 || hidden % g != 0 {
            g /= 2;
        }
        g
    }

    /// Writes a version 2 file exactly as `version2_export` does.
    fn write_v2(&self, group: usize) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(0x616b_3432u32.to_le_bytes()); // "ak42"
        out.extend(2i32.to_le_bytes());
        let mut header = self.header;
        header[5] = header[5].abs(); // p.vocab_size, always positive here
        for v in header {
            out.extend(v.to_le_bytes());
        }
        out.push(self.output.is_none() as u8); // shared_classifier
        out.extend((group as i32).to_le_bytes());
        out.resize(256, 0);
        for w in &self.attention_norm {
            put_f32s(&mut out, w);
        }
        for w in &self.ffn_norm {
            put_f32s(&mut out, w);
        }
        put_f32s(&mut out, &self.norm);
        for w in self.matrices() {
            let (q, s) = quantize_q80(w, group);
            out.extend(q.iter().map(|&q| q as u8));
            put_f32s(&mut out, &s);
        }
        out
    }

    /// The same checkpoint with every matrix replaced by its quantized
    /// values times their scales: what a version 2 file holds, in fp32.
    fn dequantized(&self, group: usize) -> Checkpoint {
        let mut c = self.clone();
        for w in c.matrices_mut() {
            let (q, s) = quantize_q80(w, group);
            for (i, x) in w.iter_mut().enumerate() {
                *x = q[i] as f32 * s[i / group];
            }
        }
        c
    }
}

/// export.py's `quantize_q80`: per group of `group` consecutive values
/// (row-major), `scale = max|w| / 127` and `q = round(w / scale)`, in f32.
/// `torch.round` rounds halves to even.
fn quantize_q80(w: &[f32], group: usize) -> (Vec<i8>, Vec<f32>) {
    assert_eq!(w.len() % group, 0);
    let mut q = Vec::with_capacity(w.len());
    let mut s = Vec::with_capacity(w.len() / group);
    for g in w.chunks_exact(group) {
        let wmax = g.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = wmax / 127.0;
        // An all-zero group: torch gives 0/0 = NaN, and NaN.to(int8) is 0 on
        // the usual platforms; stories260K has no such group.
        q.extend(g.iter().map(|&v| {
            if scale == 0.0 {
                0
            } else {
                (v / scale).round_ties_even() as i8
            }
        }));
        s.push(scale);
    }
    (q, s)
}

fn v0_file() -> Vec<u8> {
    shared("models/stories260K.bin")
}

fn v2_file() -> (Checkpoint, usize, Vec<u8>) {
    let c = Checkpoint::read_v0(&v0_file());
    let g = c.group_size();
    let v2 = c.write_v2(g);
    (c, g, v2)
}

/// `(what, start, end)` of every part of a version 2 file, in order.
fn v2_layout(c: &Checkpoint, group: usize) -> Vec<(&'static str, usize, usize)> {
    let (dim, hidden, nl, kv, vocab) = c.dims();
    let mut parts = vec![("llama2.c header", 0, 256)];
    let mut pos = 256;
    let mut push = |what, n| {
        parts.push((what, pos, pos + n));
        pos += n;
    };
    for _ in 0..nl {
        push("rms_att_weight", 4 * dim);
    }
    for _ in 0..nl {
        push("rms_ffn_weight", 4 * dim);
    }
    push("rms_final_weight", 4 * dim);
    let mut q8 = |what, n: usize| {
        push(what, n); // int8 values
        push(what, n / group * 4); // their scales
    };
    q8("q_tokens", vocab * dim);
    for (what, n) in [
        ("wq", dim * dim),
        ("wk", kv * dim),
        ("wv", kv * dim),
        ("wo", dim * dim),
        ("w1", hidden * dim),
        ("w2", dim * hidden),
        ("w3", hidden * dim),
    ] {
        for _ in 0..nl {
            q8(what, n);
        }
    }
    if c.output.is_some() {
        q8("wcls", vocab * dim);
    }
    parts
}

// ---------------------------------------------------------------------------

/// The quantizer follows torch: halves round to even, the largest value of
/// a group becomes +-127.
#[test]
fn quantize_q80_matches_export_py() {
    let (q, s) = quantize_q80(&[127.0, 0.5, 1.5, -2.5, -63.5, 0.25, 0.75, 3.25], 4);
    assert_eq!(s, [1.0, 0.5]);
    assert_eq!(q, [127, 0, 2, -2, -127, 0, 2, 6]);

    // On the real weights: every group reaches 127 and is within half a step.
    let c = Checkpoint::read_v0(&v0_file());
    let g = c.group_size();
    assert_eq!(g, 4, "64 halved until it divides dim 64 and hidden_dim 172");
    for w in c.matrices() {
        let (q, s) = quantize_q80(w, g);
        for ((wg, qg), &s) in w.chunks_exact(g).zip(q.chunks_exact(g)).zip(&s) {
            assert!(s > 0.0, "no all-zero group");
            assert_eq!(qg.iter().map(|q| q.unsigned_abs()).max(), Some(127));
            for (&w, &q) in wg.iter().zip(qg) {
                assert!((w - q as f32 * s).abs() <= 0.5 * s * 1.0001, "{w} {q} {s}");
            }
        }
    }
}

#[test]
fn v2_loads_with_the_right_layout() {
    let (c, g, v2) = v2_file();
    let layout = v2_layout(&c, g);
    assert_eq!(layout.last().unwrap().2, v2.len(), "layout covers the file");

    let m = Model::load(&v2).unwrap();
    assert_eq!(m.format, Format::Llama2cV2);
    assert_eq!(m.format.name(), "llama2.c version 2 (int8)");
    let v0 = v0_file();
    let m0 = Model::load(&v0).unwrap();
    assert_eq!(m.config, m0.config);
    assert!(m.tied_output);
    assert_eq!(m.n_params(), m0.n_params());
    let q8 = TensorType::Q8Split { group: g as u32 };
    assert_eq!(m.token_embd.ty, q8);
    for l in m.layers() {
        for (role, t) in l.tensors() {
            let want = if role.ends_with("norm") {
                TensorType::F32
            } else {
                q8
            };
            assert_eq!(t.ty, want, "{role}");
        }
    }
    // Every weight byte is used: int8 values + f32 scales + f32 norms.
    assert_eq!(m.weight_bytes() as usize, v2.len() - 256);
}

#[test]
fn v2_logits_match_the_same_weights_in_fp32() {
    let (c, g, v2) = v2_file();
    let ids = greedy_ids();
    let m2 = Model::load(&v2).unwrap();
    let got = logits(&m2, &ids, 16);

    // The quantized weights expanded to fp32, as a version 0 file: the same
    // model up to float rounding (q * s * x summed per group in llamette's
    // kernel, (q * s) * x over the whole row here).
    let deq = c.dequantized(g).write_v0();
    let m_deq = Model::load(&deq).unwrap();
    assert_eq!(m_deq.format, Format::Llama2cV0);
    let want = logits(&m_deq, &ids, 16);
    let exact = worst_relative_error(&got, &want);
    eprintln!("v2 vs its own weights in fp32: worst relative logit error {exact:e}");
    assert!(exact < 1e-5, "{exact}");
}

#[test]
fn v2_logits_close_to_fp32() {
    let (_, _, v2) = v2_file();
    let ids = greedy_ids();
    let m2 = Model::load(&v2).unwrap();
    let v0 = v0_file();
    let m0 = Model::load(&v0).unwrap();
    let got = logits(&m2, &ids, 16);
    let want = logits(&m0, &ids, 16);
    let err = worst_relative_error(&got, &want);
    let same_argmax = got
        .iter()
        .zip(&want)
        .filter(|(g, w)| argmax(g) == argmax(w))
        .count();
    eprintln!(
        "v2 (int8, groups of 4) vs fp32: worst relative logit error {err:e}, \
         same argmax at {same_argmax} of 16 positions"
    );
    // Group-of-4 int8 weights are within max|w|/254 of the fp32 ones (at most
    // 0.4% of the group's largest value); through 5 layers and the
    // classifier that moves the logits by under 1% of their largest
    // magnitude (measured 7.5e-3, same argmax at all 16 positions). 2e-2
    // leaves room for kernels that sum in another order and is still far
    // below what a misplaced tensor or scale gives (O(1)); the exact
    // placement is checked at 1e-5 by the test above.
    assert!(err < 2e-2, "worst relative error {err}");
    assert!(same_argmax >= 15, "{same_argmax}");
}

/// Separate classifier (shared flag 0, wcls after w3): the same logits.
#[test]
fn v2_with_separate_classifier() {
    let mut c = Checkpoint::read_v0(&v0_file());
    let g = c.group_size();
    let tied = c.write_v2(g);
    c.output = Some(c.tok_embeddings.clone());
    c.header[5] = -c.header[5];
    let untied = c.write_v2(g);
    assert_eq!(untied[36], 0);
    assert_eq!(untied.len(), v2_layout(&c, g).last().unwrap().2);
    let m = Model::load(&untied).unwrap();
    assert!(!m.tied_output);
    let ids = greedy_ids();
    let mt = Model::load(&tied).unwrap();
    assert_eq!(logits(&m, &ids, 4), logits(&mt, &ids, 4));

    // Flag 0 but no classifier in the file.
    let mut b = tied.clone();
    b[36] = 0;
    match Model::load(&b) {
        Err(Error::Truncated { what: "wcls", .. }) => {}
        r => panic!("{:?}", r.map(|m| m.format)),
    }
}

#[test]
fn v2_truncated_anywhere_is_an_error() {
    let (c, g, v2) = v2_file();
    let layout = v2_layout(&c, g);
    let cuts = truncation_cuts(v2.len(), 1024, &layout);
    for &cut in &cuts {
        let r = catch_unwind(|| Model::load(&v2[..cut]).map(|_| ()));
        let e = match r {
            Err(_) => panic!("PANIC on v2 cut at {cut}"),
            Ok(Ok(())) => panic!("v2 cut at {cut} loaded"),
            Ok(Err(e)) => e,
        };
        let Error::Truncated { what, len, .. } = e else {
            panic!("v2 cut at {cut}: {e:?}");
        };
        assert_eq!(len, cut as u64);
        let want = match cut {
            0..=3 => "file magic",
            4..=7 => "llama2.c version",
            8..=40 => "llama2.c header",
            // The rest of the 256-byte header is padding: the first read
            // after the flags is the first norm, at 256.
            41..=255 => "rms_att_weight",
            _ => layout.iter().find(|p| p.2 > cut).unwrap().0,
        };
        assert_eq!(what, want, "cut at {cut}");
    }
    eprintln!("v2: {} truncation lengths", cuts.len());
}

#[test]
fn v2_bad_headers() {
    let (_, _, v2) = v2_file();
    let with = |at: usize, bytes: &[u8]| {
        let mut b = v2.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        b
    };
    let err = |b: &[u8]| match catch_unwind(|| Model::load(b).map(|_| ())) {
        Err(_) => panic!("PANIC"),
        Ok(r) => r.unwrap_err(),
    };
    for v in [0i32, 1, 3, -2] {
        assert_eq!(
            err(&with(4, &v.to_le_bytes())),
            Error::UnsupportedVersion {
                format: "llama2.c",
                version: v as u32
            }
        );
    }
    assert!(matches!(err(&with(36, &[2])), Error::BadConfig { .. }));
    for group in [0i32, -4, 3, 5, 8, 64, i32::MIN] {
        match err(&with(37, &group.to_le_bytes())) {
            Error::BadConfig { reason, .. } => assert!(reason.contains("group"), "{reason}"),
            e => panic!("group {group}: {e:?}"),
        }
    }
    // dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab, seq_len at 8..36.
    for (field, v) in [
        (0, 0i32),
        (0, -64),
        (1, 0),
        (2, 129),
        (3, 3),
        (4, 3),
        (5, 0),
        (6, -1),
    ] {
        let e = err(&with(8 + 4 * field, &v.to_le_bytes()));
        assert!(
            matches!(e, Error::BadConfig { .. }),
            "field {field} = {v}: {e:?}"
        );
    }
    for (field, v) in [(2, 6i32), (5, 1 << 20), (1, 176)] {
        let e = err(&with(8 + 4 * field, &v.to_le_bytes()));
        assert!(
            matches!(e, Error::Truncated { .. }),
            "field {field} = {v}: {e:?}"
        );
    }
}

/// export.py's own group size for this model would be 64 (it halves only
/// until the group divides dim): 64 does not divide hidden_dim = 172, so the
/// w2 rows cannot be split into groups; llamette says so instead of
/// computing wrong numbers.
#[test]
fn group_64_from_export_py_is_rejected() {
    let c = Checkpoint::read_v0(&v0_file());
    let v2 = c.write_v2(64);
    match Model::load(&v2) {
        Err(Error::BadConfig { reason, value: 64 }) => {
            assert!(reason.contains("divide"), "{reason}")
        }
        r => panic!("{:?}", r.map(|m| m.format)),
    }
}

/// xorshift64*, for seeded mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random changes to the header and the first weights: never a panic; a
/// file that still loads runs one token.
#[test]
fn v2_random_mutations() {
    let (_, _, v2) = v2_file();
    let mut buf = v2.clone();
    let n = 3000u64;
    let mut loaded = 0;
    for seed in 1..=n {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut saved = Vec::new();
        for _ in 0..1 + rng.below(3) {
            // Mostly the 41 meaningful header bytes, sometimes the norms.
            let pos = if rng.below(4) == 0 {
                rng.below(2048)
            } else {
                rng.below(41)
            };
            saved.push((pos, buf[pos]));
            buf[pos] = match rng.below(3) {
                0 => buf[pos] ^ (1 << rng.below(8)),
                1 => rng.next() as u8,
                _ => [0, 1, 0x7f, 0x80, 0xff][rng.below(5)],
            };
        }
        let r = catch_unwind(AssertUnwindSafe(|| {
            let Ok(m) = Model::load(&buf) else {
                return false;
            };
            let params = SessionParams {
                context: m.config.seq_len.min(8),
                ..Default::default()
            };
            let need = Session::required_bytes(&m, &params).unwrap();
            assert!(need < 64 << 20, "{need} bytes for {:?}", m.config);
            let mut sbuf = session_buf(&m, &params);
            let mut s = Session::new(&m, params, as_bytes(&mut sbuf)).unwrap();
            s.feed(&[0]).unwrap();
            true
        }));
        match r {
            Ok(ok) => loaded += ok as usize,
            Err(_) => panic!("PANIC with v2 mutation seed {seed}"),
        }
        for (pos, b) in saved.into_iter().rev() {
            buf[pos] = b;
        }
    }
    assert_eq!(buf, v2);
    eprintln!("v2: {n} mutated files, {loaded} loaded and ran");
    assert!(loaded > 0);
}
