//! The Llama 2 decoder.
//!
//! Read it like llama2.c's `run.c`: embed the token, then for every layer
//! RMSNorm, the q/k/v projections, RoPE, grouped-query attention over the KV
//! cache, the output projection and the residual; RMSNorm, the SwiGLU
//! feed-forward block and the residual; finally RMSNorm and the classifier.
//!
//! The one difference: `forward` runs a *batch* of consecutive tokens
//! (a prompt chunk during prefill, one token while generating). Every
//! activation buffer holds one row per token, so each weight matrix is read
//! once per batch, and every token's numbers are exactly those it would get
//! alone.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};
use crate::kernels::types::float::f16_bits_to_f32;
use crate::kernels::{self, Acts, QuantScratch, ValueRows};
use crate::math::{exp_fast, rmsnorm, softmax_fast};
use crate::matmul::{self, matvec};
use crate::model::Model;
use crate::parallel::{self, Inline, Parallel};
use crate::tensor::{Tensor, TensorType};

/// The KV cache storage of one session, laid out
/// `[layer][kv_head][position][head_dim]`: the keys of one head are a
/// contiguous matrix (one row per position), so attention scores are a
/// matrix-vector product through the same kernels as the weights.
pub(crate) enum KvCache<'a> {
    F32(&'a mut [f32]),
    F16(&'a mut [u16]),
}

impl KvCache<'_> {
    /// Stores the `head_dim`-wide slices of `v` (one per kv head) at
    /// position `t` of the layer starting at element `loff`.
    fn write(&mut self, loff: usize, ctx: usize, t: usize, v: &[f32], head_dim: usize) {
        for (g, part) in v.chunks_exact(head_dim).enumerate() {
            let at = loff + (g * ctx + t) * head_dim;
            match self {
                KvCache::F32(c) => c[at..at + head_dim].copy_from_slice(part),
                KvCache::F16(c) => {
                    for (o, &x) in c[at..at + head_dim].iter_mut().zip(part) {
                        *o = half::f16::from_f32(x).to_bits();
                    }
                }
            }
        }
    }

    /// Attention scores of the query heads `q` (`head_dim` each, sharing
    /// this kv head, which starts at element `at`) against positions
    /// `0..seen`: `att[j * seen + t] = dot(q_j, key t)`. The keys of a kv
    /// head are a `seen` x `head_dim` matrix: from [`KERNEL_HEAD_DIM`] up,
    /// this is a batched product through the SIMD kernels (each key row read
    /// once for all the heads that share it); below, where a call costs
    /// more than a row, plain loops.
    fn scores(&self, at: usize, seen: usize, q: &[f32], head_dim: usize, att: &mut [f32]) {
        let n_q = q.len() / head_dim;
        let keys = at..at + seen * head_dim;
        if head_dim < KERNEL_HEAD_DIM {
            for (t, key) in keys.step_by(head_dim).enumerate() {
                for (j, qj) in q.chunks_exact(head_dim).enumerate() {
                    att[j * seen + t] = match self {
                        KvCache::F32(c) => dot(qj, &c[key..key + head_dim]),
                        KvCache::F16(c) => dot_f16(qj, &c[key..key + head_dim]),
                    };
                }
            }
            return;
        }
        let (ty, data): (TensorType, &[u8]) = match self {
            KvCache::F32(c) => (TensorType::F32, bytemuck::cast_slice(&c[keys])),
            KvCache::F16(c) => (TensorType::F16, bytemuck::cast_slice(&c[keys])),
        };
        let keys = Tensor {
            ty,
            rows: seen,
            cols: head_dim,
            data,
            scales: &[],
        };
        matmul::matmul(
            &Inline,
            &mut att[..n_q * seen],
            &keys,
            &Acts::unquantized(q, n_q),
        );
    }

    /// `out = sum over t of att[t] * row t` of the head starting at `at`:
    /// through the SIMD set from [`KERNEL_HEAD_DIM`] up, inlined below.
    fn weighted_sum(&self, at: usize, att: &[f32], out: &mut [f32]) {
        let rows = at..at + att.len() * out.len();
        let v = match self {
            KvCache::F32(c) => ValueRows::F32(&c[rows]),
            KvCache::F16(c) => ValueRows::F16(&c[rows]),
        };
        if out.len() < KERNEL_HEAD_DIM {
            // Narrow heads: the same sums, inlined here (a call costs more).
            kernels::scalar::weighted_sum(att, v, out);
        } else {
            (kernels::active().weighted_sum)(att, v, out);
        }
    }
}

/// The activations and caches of one session (llama2.c's `RunState`), with
/// room for `batch` tokens in every activation buffer (row `b` of `x` is
/// `x[b * dim..(b + 1) * dim]`).
pub(crate) struct State<'a> {
    pub context: usize,
    pub batch: usize,
    /// The residual stream.
    pub x: &'a mut [f32],
    pub xb: &'a mut [f32],
    pub xb2: &'a mut [f32],
    pub hb: &'a mut [f32],
    pub hb2: &'a mut [f32],
    pub q: &'a mut [f32],
    pub k: &'a mut [f32],
    pub v: &'a mut [f32],
    /// Per token: `cos` and `sin` of its rotation for each pair of a head.
    pub rope: &'a mut [f32],
    /// Attention scores: `context` for each query head, so that the tasks of
    /// different kv heads have their own.
    pub att: &'a mut [f32],
    pub logits: &'a mut [f32],
    /// Sampler scratch: probabilities and sort keys.
    pub probs: &'a mut [f32],
    pub cand: &'a mut [u64],
    /// `[layer][position][kv_dim]`.
    pub key_cache: KvCache<'a>,
    pub value_cache: KvCache<'a>,
    /// The quantizations of the activations being multiplied (fixed-point
    /// path): Q8 blocks of 32, Q8_K super-blocks of 256.
    pub quant_d: &'a mut [f32],
    pub quant_sum: &'a mut [i32],
    pub quant: &'a mut [i8],
    pub quant_kd: &'a mut [f32],
    pub quant_kbsums: &'a mut [i16],
    pub quant_kq: &'a mut [i8],
}

/// Head size from which attention scores go through the SIMD kernels
/// (stories260K's 8 is faster in plain loops; Llama 2's 64 and 128 are
/// faster through the kernels).
const KERNEL_HEAD_DIM: usize = 32;

/// Multiply-adds of a batch's attention scores above which its kv heads run
/// in parallel (below, waking threads costs more than it saves).
const PAR_ATTENTION_WORK: usize = 1 << 16;

/// `sum(a[i] * b[i])` in eight interleaved partial sums (which vectorise).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    // Zipped iterators, not indices: LLVM then keeps lanes 0..4 and 4..8 as
    // two vector accumulators (indexing made it shuffle lanes every step).
    for (x, y) in ac.zip(bc) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    for ((s, x), y) in acc.iter_mut().zip(ar).zip(br) {
        *s += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// [`dot`] with `b` in half precision.
fn dot_f16(a: &[f32], b: &[u16]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for ((s, x), &y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * f16_bits_to_f32(y);
        }
    }
    for ((s, x), &y) in acc.iter_mut().zip(ar).zip(br) {
        *s += x * f16_bits_to_f32(y);
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// One token's attention for the query heads that share a kv head (the
/// body of llama2.c's loop over heads, a kv group at a time). `q` holds the
/// group's queries, `head_dim` each; the kv head starts at element `at` of
/// the caches and the token sees its first `seen` positions, where `att`
/// holds `seen` scores per query. Head `j`'s scores
/// `q_j · key t / sqrt(head_dim)` are softmaxed and its output, in `out`
/// (as wide as `q`), is the sum over `t` of score `t` times value `t`.
fn attend_head(
    keys: &KvCache,
    values: &KvCache,
    at: usize,
    head_dim: usize,
    q: &[f32],
    att: &mut [f32],
    out: &mut [f32],
) {
    let seen = att.len() / (q.len() / head_dim);
    let scale = 1.0 / libm::sqrtf(head_dim as f32);
    keys.scores(at, seen, q, head_dim, att);
    for (scores, out) in att
        .chunks_exact_mut(seen)
        .zip(out.chunks_exact_mut(head_dim))
    {
        for a in scores.iter_mut() {
            *a *= scale;
        }
        softmax_fast(scores);
        values.weighted_sum(at, scores, out);
    }
}

/// [`rmsnorm`] of each of the first `n` rows of `x` (rows as wide as `weight`).
fn rmsnorm_rows(o: &mut [f32], x: &[f32], weight: &Tensor, eps: f32, n: usize) {
    let dim = weight.cols;
    for (o, x) in o.chunks_exact_mut(dim).zip(x.chunks_exact(dim)).take(n) {
        rmsnorm(o, x, weight.data, eps);
    }
}

/// The first `n` rows of `x` (`cols` wide) as the input of the matrices
/// `ws`: quantized once, into the scratch, in each form their types take
/// (the f32 values stay available for the others).
fn acts<'s>(
    x: &'s [f32],
    n: usize,
    cols: usize,
    ws: &[&Tensor],
    scratch: QuantScratch<'s>,
) -> Acts<'s> {
    let mut tys = [TensorType::F32; 3];
    for (t, w) in tys.iter_mut().zip(ws) {
        *t = w.ty;
    }
    kernels::quantize_batch(&x[..n * cols], n, &tys[..ws.len()], scratch)
}

/// `out[b] = w @ a[b]` for every row `b` of `a`. One token streams each
/// weight row once (`matvec`); a batch reads each row once for all its
/// tokens (`matmul`). Both give the same bits for a token.
fn project(par: &dyn Parallel, out: &mut [f32], w: &Tensor, a: &Acts) {
    let out = &mut out[..a.n * w.rows];
    if a.n == 1 {
        matvec(par, out, w, &a.get(0));
    } else {
        matmul::matmul(par, out, w, a);
    }
}

/// Runs `tokens` at positions `pos..pos + tokens.len()` (at most
/// `s.batch` of them), writing their keys and values into the cache; with
/// `want_logits`, leaves the logits after the last token in `s.logits`.
///
/// Returns [`Error::Cancelled`] (before the next layer) when `cancel` is
/// set; the cache then holds partial entries for these positions, which
/// the next run at the same positions overwrites.
pub(crate) fn forward(
    model: &Model,
    s: &mut State,
    tokens: &[u32],
    pos: usize,
    want_logits: bool,
    par: &dyn Parallel,
    cancel: Option<&AtomicBool>,
) -> Result<()> {
    let c = &model.config;
    let (dim, hidden, head_dim) = (c.dim, c.hidden_dim, c.head_dim());
    let kv_dim = c.kv_dim();
    let kv_mul = c.n_heads / c.n_kv_heads;
    let ctx = s.context;
    let n = tokens.len();
    debug_assert!(n >= 1 && n <= s.batch && pos + n <= ctx);
    let cancelled = || cancel.is_some_and(|f| f.load(Ordering::Relaxed));
    macro_rules! quant {
        () => {
            QuantScratch {
                d: &mut *s.quant_d,
                sum: &mut *s.quant_sum,
                q: &mut *s.quant,
                kd: &mut *s.quant_kd,
                kbsums: &mut *s.quant_kbsums,
                kq: &mut *s.quant_kq,
            }
        };
    }

    // The tokens' embeddings, and their RoPE angles: pair i of every head
    // of token b turns by (pos + b) * theta^(-2i / head_dim).
    for (b, &t) in tokens.iter().enumerate() {
        model
            .token_embd
            .dequantize_row(t as usize, &mut s.x[b * dim..(b + 1) * dim]);
        let rope = &mut s.rope[b * head_dim..(b + 1) * head_dim];
        for (i, cs) in rope.chunks_exact_mut(2).enumerate() {
            let freq = 1.0 / libm::powf(c.rope_theta, (2 * i) as f32 / head_dim as f32);
            let val = (pos + b) as f32 * freq;
            cs[0] = libm::cosf(val);
            cs[1] = libm::sinf(val);
        }
    }

    for (l, w) in model.layers().iter().enumerate() {
        if cancelled() {
            return Err(Error::Cancelled);
        }
        // Attention: q, k, v of the normalised input.
        rmsnorm_rows(s.xb, s.x, &w.attn_norm, c.rms_eps, n);
        let a = acts(s.xb, n, dim, &[&w.wq, &w.wk, &w.wv], quant!());
        project(par, s.q, &w.wq, &a);
        project(par, s.k, &w.wk, &a);
        project(par, s.v, &w.wv, &a);

        let loff = l * ctx * kv_dim;
        for b in 0..n {
            // RoPE: rotate each adjacent pair (2i, 2i+1) of every head of q and k.
            let rope = &s.rope[b * head_dim..(b + 1) * head_dim];
            let q = &mut s.q[b * dim..(b + 1) * dim];
            let k = &mut s.k[b * kv_dim..(b + 1) * kv_dim];
            for i in (0..dim).step_by(2) {
                let hd = i % head_dim;
                let (fcr, fci) = (rope[hd], rope[hd + 1]);
                let (q0, q1) = (q[i], q[i + 1]);
                q[i] = q0 * fcr - q1 * fci;
                q[i + 1] = q0 * fci + q1 * fcr;
                if i < kv_dim {
                    let (k0, k1) = (k[i], k[i + 1]);
                    k[i] = k0 * fcr - k1 * fci;
                    k[i + 1] = k0 * fci + k1 * fcr;
                }
            }
            let v = &s.v[b * kv_dim..(b + 1) * kv_dim];
            s.key_cache.write(loff, ctx, pos + b, k, head_dim);
            s.value_cache.write(loff, ctx, pos + b, v, head_dim);
        }

        // Grouped-query attention: query heads g * kv_mul .. (g + 1) * kv_mul
        // read kv head g, whose keys are one contiguous row per position.
        // One task per kv head, each with its own `kv_mul * ctx` scores of
        // `s.att` and its own part of `s.xb2` for its heads' outputs (all
        // tokens, `group` values each), copied into the tokens' rows of
        // `s.xb` after.
        let group = kv_mul * head_dim;
        let (keys, values, q) = (&s.key_cache, &s.value_cache, &*s.q);
        let kv_head = |g: usize, att: &mut [f32], out: &mut [f32]| {
            let at = loff + g * ctx * head_dim;
            for (b, out) in out.chunks_exact_mut(group).enumerate() {
                let seen = pos + b + 1;
                let q = &q[b * dim + g * group..b * dim + (g + 1) * group];
                attend_head(
                    keys,
                    values,
                    at,
                    head_dim,
                    q,
                    &mut att[..kv_mul * seen],
                    out,
                );
            }
        };
        // Waking threads pays only for enough multiply-adds (as many again
        // for the weighted sums).
        let parallel = par.n_threads() > 1 && n * (pos + n) * dim >= PAR_ATTENTION_WORK;
        parallel::for_each_chunk_pair(
            par,
            parallel,
            c.n_kv_heads,
            (s.att, kv_mul * ctx),
            (s.xb2, n * group),
            &kv_head,
        );
        for (b, row) in s.xb.chunks_exact_mut(dim).take(n).enumerate() {
            for (g, heads) in row.chunks_exact_mut(group).enumerate() {
                heads.copy_from_slice(&s.xb2[(g * n + b) * group..(g * n + b + 1) * group]);
            }
        }

        // Output projection and residual.
        let a = acts(s.xb, n, dim, &[&w.wo], quant!());
        project(par, s.xb2, &w.wo, &a);
        for (x, d) in s.x[..n * dim].iter_mut().zip(s.xb2.iter()) {
            *x += d;
        }

        if cancelled() {
            return Err(Error::Cancelled);
        }
        // Feed-forward: w2(silu(w1(x)) * w3(x)).
        rmsnorm_rows(s.xb, s.x, &w.ffn_norm, c.rms_eps, n);
        let a = acts(s.xb, n, dim, &[&w.w1, &w.w3], quant!());
        project(par, s.hb, &w.w1, &a);
        project(par, s.hb2, &w.w3, &a);
        for (h, &g) in s.hb[..n * hidden].iter_mut().zip(s.hb2.iter()) {
            let silu = *h / (1.0 + exp_fast(-*h));
            *h = silu * g;
        }
        let a = acts(s.hb, n, hidden, &[&w.w2], quant!());
        project(par, s.xb, &w.w2, &a);
        for (x, d) in s.x[..n * dim].iter_mut().zip(s.xb.iter()) {
            *x += d;
        }
    }

    if want_logits {
        // Final norm of the last token (into xb: x stays untouched) and the classifier.
        let last = (n - 1) * dim..n * dim;
        rmsnorm(
            &mut s.xb[..dim],
            &s.x[last],
            model.output_norm.data,
            c.rms_eps,
        );
        let a = acts(s.xb, 1, dim, &[&model.output], quant!());
        project(par, s.logits, &model.output, &a);
    }
    Ok(())
}

/// Narrow access to the caches for saved states ([`crate::state`]): the
/// element type and the bytes of the rows of one kv head.
impl KvCache<'_> {
    /// The element type.
    pub(crate) fn kv_type(&self) -> crate::session::KvType {
        match self {
            KvCache::F32(_) => crate::session::KvType::F32,
            KvCache::F16(_) => crate::session::KvType::F16,
        }
    }

    /// Bytes per element.
    pub(crate) fn elem_bytes(&self) -> usize {
        match self {
            KvCache::F32(_) => 4,
            KvCache::F16(_) => 2,
        }
    }

    /// The bytes of positions `0..n` of kv head `g` of layer `l`, in a
    /// session of `ctx` positions with `n_kv` heads of `head_dim` values
    /// (the layout is `[layer][kv_head][position][head_dim]`).
    pub(crate) fn head_rows_mut(
        &mut self,
        (l, g, n): (usize, usize, usize),
        (ctx, n_kv, head_dim): (usize, usize, usize),
    ) -> &mut [u8] {
        let at = ((l * n_kv + g) * ctx) * head_dim;
        let range = at..at + n * head_dim;
        match self {
            KvCache::F32(c) => bytemuck::cast_slice_mut(&mut c[range]),
            KvCache::F16(c) => bytemuck::cast_slice_mut(&mut c[range]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention scores through either path (plain loops for narrow heads,
    /// the SIMD kernels for wide ones), against f64 dot products, for F32
    /// and F16 caches: `att[j * seen + t] = q_j . key t` of the right head.
    #[test]
    fn scores_match_exact_dot_products() {
        let mut seed = 99u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        for head_dim in [8, 48, 64] {
            let (ctx, n_kv, n_q, seen) = (40, 3, 2, 37);
            let mut f32_cache = [0f32; 3 * 40 * 64];
            let mut f16_cache = [0u16; 3 * 40 * 64];
            for (a, b) in f32_cache.iter_mut().zip(f16_cache.iter_mut()) {
                *b = half::f16::from_f32(next()).to_bits();
                *a = half::f16::from_bits(*b).to_f32();
            }
            let q: [f32; 2 * 64] = core::array::from_fn(|_| next());
            let q = &q[..n_q * head_dim];
            let len = n_kv * ctx * head_dim;
            let reference = f32_cache;
            let caches = [
                KvCache::F32(&mut f32_cache[..len]),
                KvCache::F16(&mut f16_cache[..len]),
            ];
            for cache in &caches {
                for g in 0..n_kv {
                    let at = g * ctx * head_dim;
                    let mut att = [f32::NAN; 2 * 37];
                    cache.scores(at, seen, q, head_dim, &mut att);
                    for j in 0..n_q {
                        for t in 0..seen {
                            let key = &reference[at + t * head_dim..at + (t + 1) * head_dim];
                            let qj = &q[j * head_dim..(j + 1) * head_dim];
                            let exact: f64 =
                                qj.iter().zip(key).map(|(&a, &b)| a as f64 * b as f64).sum();
                            let got = att[j * seen + t] as f64;
                            assert!(
                                (got - exact).abs() <= 1e-5,
                                "head_dim {head_dim} kv {g} q {j} t {t}: {got} vs {exact}"
                            );
                        }
                    }
                }
            }
        }
    }
}
