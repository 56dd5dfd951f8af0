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
use crate::kernels::{self, Acts, QuantScratch};
use crate::kv::KvCache;
use crate::math::{exp_fast, rmsnorm, softmax_fast};
use crate::matmul;
use crate::model::Model;
use crate::parallel::{self, Parallel};
use crate::tensor::{Tensor, TensorType};

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
    /// Attention scores: `context` for each query head, and the scratch of
    /// [`crate::kv::Geometry::query_scratch`] for each kv head, so that the tasks of
    /// different kv heads have their own.
    pub att: &'a mut [f32],
    pub logits: &'a mut [f32],
    /// Sampler scratch: probabilities and sort keys.
    pub probs: &'a mut [f32],
    pub cand: &'a mut [u64],
    /// The keys and values of every position so far (see [`crate::kv`]).
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
    /// The Q8 values transposed for the `amx` set (empty for batches of 1).
    pub quant_tq: &'a mut [i8],
    /// Their scales.
    pub quant_td: &'a mut [f32],
}

/// Multiply-adds of a batch's attention scores above which its kv heads run
/// in parallel (below, waking threads costs more than it saves).
const PAR_ATTENTION_WORK: usize = 1 << 16;

/// One token's attention for the query heads that share a kv head (the
/// body of llama2.c's loop over heads, a kv group at a time). `q` holds the
/// group's queries, `head_dim` each; they read kv head `head` (layer, kv
/// head) of the caches and the token sees its first `seen` positions, where
/// `att` holds `seen` scores per query (and `scratch` is the task's room
/// for quantized queries). Head `j`'s scores `q_j · key t / sqrt(head_dim)`
/// are softmaxed and its output, in `out` (as wide as `q`), is the sum over
/// `t` of score `t` times value `t`.
fn attend_head(
    keys: &KvCache,
    values: &KvCache,
    head: (usize, usize),
    q: &[f32],
    att: &mut [f32],
    scratch: &mut [f32],
    out: &mut [f32],
) {
    let head_dim = keys.geometry().head_dim;
    let seen = att.len() / (q.len() / head_dim);
    let scale = 1.0 / libm::sqrtf(head_dim as f32);
    keys.scores(head, seen, q, att, scratch);
    for (scores, out) in att
        .chunks_exact_mut(seen)
        .zip(out.chunks_exact_mut(head_dim))
    {
        for a in scores.iter_mut() {
            *a *= scale;
        }
        softmax_fast(scores);
        values.weighted_sum(head, scores, out);
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

/// `out[b] = w @ a[b]` for every row `b` of `a`, for each `(out, w)`, in
/// one parallel region. One token streams each weight row once; a batch
/// reads each row once for all its tokens. Both give the same bits for a
/// token.
fn project(par: &dyn Parallel, jobs: &mut [(&mut [f32], &Tensor)], a: &Acts) {
    for (out, w) in jobs.iter_mut() {
        *out = &mut core::mem::take(out)[..a.n * w.rows];
    }
    matmul::products(par, jobs, a);
}

/// Runs `tokens` at positions `pos..pos + tokens.len()` (at most
/// `s.batch` of them), writing their keys and values into the cache; with
/// `want_logits`, leaves the logits after the last token in `s.logits`.
///
/// Returns [`Error::Cancelled`] (before the next layer, or at the end)
/// when `cancel` is set; the cache then holds partial entries for these
/// positions, which the next run at the same positions overwrites.
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
                tq: &mut *s.quant_tq,
                td: &mut *s.quant_td,
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
        project(par, &mut [(s.q, &w.wq), (s.k, &w.wk), (s.v, &w.wv)], &a);

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
            s.key_cache.write(l, pos + b, k);
            s.value_cache.write(l, pos + b, v);
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
            let (att, scratch) = att.split_at_mut(kv_mul * ctx);
            for (b, out) in out.chunks_exact_mut(group).enumerate() {
                let seen = pos + b + 1;
                let q = &q[b * dim + g * group..b * dim + (g + 1) * group];
                attend_head(
                    keys,
                    values,
                    (l, g),
                    q,
                    &mut att[..kv_mul * seen],
                    scratch,
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
            (s.att, kv_mul * ctx + keys.geometry().query_scratch(kv_mul)),
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
        project(par, &mut [(s.xb2, &w.wo)], &a);
        for (x, d) in s.x[..n * dim].iter_mut().zip(s.xb2.iter()) {
            *x += d;
        }

        if cancelled() {
            return Err(Error::Cancelled);
        }
        // Feed-forward: w2(silu(w1(x)) * w3(x)).
        rmsnorm_rows(s.xb, s.x, &w.ffn_norm, c.rms_eps, n);
        let a = acts(s.xb, n, dim, &[&w.w1, &w.w3], quant!());
        project(par, &mut [(s.hb, &w.w1), (s.hb2, &w.w3)], &a);
        for (h, &g) in s.hb[..n * hidden].iter_mut().zip(s.hb2.iter()) {
            let silu = *h / (1.0 + exp_fast(-*h));
            *h = silu * g;
        }
        let a = acts(s.hb, n, hidden, &[&w.w2], quant!());
        project(par, &mut [(s.xb, &w.w2)], &a);
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
        project(par, &mut [(s.logits, &model.output)], &a);
    }
    // A request that came during the last layer's feed-forward or the
    // classifier stops the run too, so a raised flag always means a stopped
    // run (the C ABI raises it when a host's parallel_for breaks its
    // contract, and then reports the call as failed).
    if cancelled() {
        return Err(Error::Cancelled);
    }
    Ok(())
}
