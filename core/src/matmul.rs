//! Matrix products of weight tensors with activations, split across the
//! host's threads: the layer between the forward pass and the kernels.
//!
//! [`matvec`] multiplies one activation vector (decoding), [`matmul`] a
//! batch (prefill), [`products`] several matrices that read the same
//! activations (q, k and v; the gate and the up projection) in one parallel
//! region. Each hands whole rows to the active kernel set
//! ([`crate::kernels`]), so a result never depends on the thread count, on
//! whether a token came alone or in a batch, nor on which matrices shared a
//! region.

use crate::kernels::{self, types::split, Act, Acts, Kernels, TensorType};
use crate::parallel::{self, Parallel, Strip, StripJob, MAX_STRIP_JOBS};
use crate::tensor::Tensor;

/// Tasks per thread of a parallel product: one, each thread's rows one
/// long run of the matrix. Four (so that a thread slowed down by something
/// else on its core is helped out by the others, which claim its remaining
/// tasks) measured slower on small models and no faster on TinyLlama,
/// even on a busy shared machine. Zen 4, 2 threads, median tok/s of
/// alternating runs, four -> one: the 15M shape (greedy, 256 steps, 9
/// runs, three times) 494 -> 544, 493 -> 562, 495 -> 552; TinyLlama
/// (`bench`, 5 runs) decode Q4_0 54.4 -> 54.2, Q8_0 30.4 -> 31.5, F16 16.5
/// -> 16.5, Q4_K_M 52.3 -> 51.9, prompts within 2%. (On F16 before the
/// row pairs of the AMD float kernels: 1, 2, 4 and 8 alike.)
const TASKS_PER_THREAD: usize = 1;

/// Rows per task are rounded up to a multiple of this (the largest row tile
/// of the batched kernels, and the band of the interleaved types), so that
/// tasks do not split tiles or bands.
const ROW_GRAIN: usize = kernels::interleave::BAND;

/// Rows of weights per kernel call for a batch.
const MM_ROWS: usize = 16;
/// Activation vectors per kernel call for a batch: the default prefill
/// batch, so that a call's rows pass every vector of it at once (the
/// `avx512` set's plain Q8_0/Q4_0 batches interleave each band once, not
/// twice). 24 -> 32, tinyllama prompt at 1 thread, 2 alternating runs:
/// `--mmap` Q4_0 80 -> 86 tok/s, Q8_0 71 -> 77, F16 48 -> 51, Q4_K_M 57 ->
/// 60, Q6_K 57 -> 59; interleaved Q8_0 at 2 threads 181 -> 172 (Intel Xeon).
const MM_ACTS: usize = 32;

/// The least work (weights times vectors) per task of a parallel product:
/// below it, waking a thread and waiting for it costs more than it saves.
/// Measured on a quiet 2-core machine (greedy, 256 steps, 2 threads,
/// medians): stories260K runs at 24 400 tok/s with 2 threads against
/// 26 000 with 1 (at 65 536, where its matrices run inline, 27 200 with
/// both), the 15M shape at 652 against 400 (625 at 65 536, 520 at 2^18).
/// 4096 -> 16384 (stories260K's one-token products then run inline but
/// for its classifier, 512 x 64; every product of the 15M shape is still
/// split), Zen 4, 2 threads, 7 alternating runs, median tok/s: stories260K
/// 12 100 -> 17 091 (run.c 8 500 in those runs; in a 31-round table just
/// before, 14 077 at 2 threads against 17 712 at 1). 16384 -> 32768: its
/// classifier runs inline too, so a token of it wakes no thread (2
/// threads run as 1); the 15M shape's smallest product, 288 x 288, still
/// splits in two. stories260K at 2 threads, 15 alternating runs: 15 789
/// (10 550-17 139) -> 17 358 (15 670-17 623) tok/s, run.c 9 107. A batch's
/// products are split as before (the work counts every vector): an
/// 8-token prefill of stories260K splits its w1, w3 and w2.
const MIN_TASK_WORK: usize = 32768;

/// How a product of `w` with `n` vectors is split on `par`: rows per task
/// and tasks. Small products are not worth waking threads for.
fn split_rows(par: &dyn Parallel, w: &Tensor, n: usize) -> (usize, usize) {
    let threads = match par.n_threads() {
        0 | 1 => 1,
        t => t * TASKS_PER_THREAD,
    };
    let n_tasks = threads
        .min(w.rows * w.cols * n / MIN_TASK_WORK)
        .min(w.rows.div_ceil(ROW_GRAIN))
        .max(1);
    if n_tasks == 1 {
        return (w.rows.max(1), 1);
    }
    let per_task = w.rows.div_ceil(n_tasks).next_multiple_of(ROW_GRAIN);
    (per_task, w.rows.div_ceil(per_task))
}

/// `out[r] = dot(w.row(r), a)` for every row of `w`, split across `par`.
///
/// `a` must carry the quantization `w`'s type takes
/// ([`TensorType::act_type`]).
pub fn matvec(par: &dyn Parallel, out: &mut [f32], w: &Tensor, a: &Act) {
    matvec_with(kernels::active(), par, out, w, a)
}

/// [`matvec`] with the kernel set `k` (one of [`kernels::available`]).
pub fn matvec_with(k: &Kernels, par: &dyn Parallel, out: &mut [f32], w: &Tensor, a: &Act) {
    assert_eq!(out.len(), w.rows, "matvec: output length");
    assert_eq!(a.x.len(), w.cols, "matvec: input length");
    products_with(k, par, &mut [(out, w)], &Acts::one(a));
}

/// The batched product for prefill: `out[b * w.rows + r] = dot(w.row(r),
/// vector b of acts)` for every row `r` and every vector `b`, reading each
/// weight row once for the whole batch, split across `par`.
///
/// `out.len()` must be `acts.n * w.rows` and `acts.cols == w.cols`; `acts`
/// must carry the quantization `w`'s type takes
/// ([`kernels::quantize_batch`]). Each result is bit-identical to what
/// [`matvec`] gives for that vector alone (with the same kernel set).
pub fn matmul(par: &dyn Parallel, out: &mut [f32], w: &Tensor, acts: &Acts) {
    matmul_with(kernels::active(), par, out, w, acts)
}

/// [`matmul`] with the kernel set `k` (one of [`kernels::available`]).
pub fn matmul_with(k: &Kernels, par: &dyn Parallel, out: &mut [f32], w: &Tensor, acts: &Acts) {
    products_with(k, par, &mut [(out, w)], acts);
}

/// `out = w @ acts` (as [`matmul`]) for every `(out, w)` of `jobs` (at most
/// four), in one parallel region: one wake-up of the threads and one wait
/// for all, instead of one per matrix. The results are those of separate
/// products.
pub fn products(par: &dyn Parallel, jobs: &mut [(&mut [f32], &Tensor)], acts: &Acts) {
    products_with(kernels::active(), par, jobs, acts)
}

/// [`products`] with the kernel set `k`.
pub fn products_with(
    k: &Kernels,
    par: &dyn Parallel,
    jobs: &mut [(&mut [f32], &Tensor)],
    acts: &Acts,
) {
    assert!(jobs.len() <= MAX_STRIP_JOBS, "products: too many matrices");
    let n_jobs = jobs.len();
    let mut ws: [&Tensor; MAX_STRIP_JOBS] = [&Tensor::EMPTY; MAX_STRIP_JOBS];
    let mut strips: [StripJob; MAX_STRIP_JOBS] = Default::default();
    let mut inline = true;
    for ((out, w), (slot, strip)) in jobs.iter_mut().zip(ws.iter_mut().zip(&mut strips)) {
        assert_eq!(out.len(), acts.n * w.rows, "product: output length");
        if acts.n > 0 && w.rows > 0 {
            assert_eq!(acts.cols, w.cols, "product: input length");
        }
        let (per_task, n_tasks) = split_rows(par, w, acts.n);
        inline &= n_tasks == 1;
        *slot = w;
        let n_tasks = if out.is_empty() { 0 } else { n_tasks };
        *strip = StripJob {
            out,
            rows: w.rows,
            per_task,
            n_tasks,
        };
    }
    let strips = &mut strips[..n_jobs];
    let body = |j: usize, _t: usize, strip: &mut Strip| rows_into(k, ws[j], acts, strip);
    // Products too small to split run here, without waking the threads.
    let par = if inline { &parallel::Inline } else { par };
    parallel::for_each_strip(par, strips, &body);
}

/// Rows `strip.start()..strip.end()` of `w` times every vector of `acts`,
/// into the strip: one vector straight through the kernel (a single
/// sequential stream of rows); a batch one tile of rows at a time, the tile
/// in cache while the vectors stream past it.
fn rows_into(k: &Kernels, w: &Tensor, acts: &Acts, strip: &mut Strip) {
    let (start, end) = (strip.start(), strip.end());
    let rb = w.row_bytes();
    let kernel = k.mat(w.ty);
    let n = acts.n;
    if n == 1 {
        let out = strip.vector(0);
        match kernel {
            Some(f) => f(&w.data[start * rb..end * rb], acts, out),
            None => {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = split_row(w, start + i, acts.x);
                }
            }
        }
        return;
    }
    let mut tile = [0f32; MM_ROWS * MM_ACTS];
    for r0 in (start..end).step_by(MM_ROWS) {
        let r1 = (r0 + MM_ROWS).min(end);
        let nr = r1 - r0;
        for b0 in (0..n).step_by(MM_ACTS) {
            let b1 = (b0 + MM_ACTS).min(n);
            let t = &mut tile[..nr * (b1 - b0)];
            match kernel {
                Some(f) => f(&w.data[r0 * rb..r1 * rb], &acts.range(b0, b1), t),
                None => {
                    for b in b0..b1 {
                        let x = acts.get(b).x;
                        for r in r0..r1 {
                            t[(b - b0) * nr + r - r0] = split_row(w, r, x);
                        }
                    }
                }
            }
            for b in b0..b1 {
                let o = &mut strip.vector(b)[r0 - start..r1 - start];
                o.copy_from_slice(&t[(b - b0) * nr..(b - b0 + 1) * nr]);
            }
        }
    }
}

/// Row `r` of a llama2.c "version 2" tensor times `x`.
fn split_row(w: &Tensor, r: usize, x: &[f32]) -> f32 {
    let rb = w.row_bytes();
    let TensorType::Q8Split { group } = w.ty else {
        unreachable!("split_row on {}", w.ty.name())
    };
    split::dot(&w.data[r * rb..(r + 1) * rb], w.scales, r, group, x)
}
