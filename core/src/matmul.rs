//! Matrix products of weight tensors with activations, split across the
//! host's threads: the layer between the forward pass and the kernels.
//!
//! [`matvec`] multiplies one activation vector (decoding), [`matmul`] a
//! batch (prefill); both hand whole rows to the active kernel set
//! ([`crate::kernels`]), so a result never depends on the thread count nor
//! on whether a token came alone or in a batch.

use crate::kernels::{self, types::split, Act, Acts, Kernels, TensorType};
use crate::parallel::{self, Parallel, Strip};
use crate::tensor::Tensor;

/// Tasks per thread of a parallel product. More than one, so that a thread
/// slowed down by something else on its core (a shared machine) is helped
/// out by the others, which claim its remaining tasks; few enough that each
/// task is still a long sequential stream of weight rows.
const TASKS_PER_THREAD: usize = 4;

/// How many tasks to split a product into on `par` (before the limits for
/// small products).
fn tasks_for(par: &dyn Parallel) -> usize {
    match par.n_threads() {
        0 | 1 => 1,
        n => n * TASKS_PER_THREAD,
    }
}

/// Rows per task are rounded up to a multiple of this (the largest row tile
/// of the batched kernels, and the band of the interleaved types), so that
/// tasks do not split tiles or bands.
const ROW_GRAIN: usize = kernels::interleave::BAND;

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
    let rb = w.row_bytes();
    let acts = Acts::one(a);
    let kernel = k.mat(w.ty);
    let rows = |start: usize, end: usize, out: &mut [f32]| match kernel {
        Some(f) => f(&w.data[start * rb..end * rb], &acts, out),
        None => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = split_row(w, start + i, a.x);
            }
        }
    };
    // Small products are not worth waking threads for.
    let n_tasks = tasks_for(par).min(w.rows * w.cols / 4096).max(1);
    if n_tasks == 1 {
        rows(0, w.rows, out);
        return;
    }
    let per_task = w.rows.div_ceil(n_tasks).next_multiple_of(ROW_GRAIN);
    let n_tasks = w.rows.div_ceil(per_task);
    parallel::for_each_strip(par, out, w.rows, per_task, n_tasks, &|_, strip| {
        let (start, end) = (strip.start(), strip.end());
        rows(start, end, strip.vector(0));
    });
}

/// Row `r` of a llama2.c "version 2" tensor times `x`.
fn split_row(w: &Tensor, r: usize, x: &[f32]) -> f32 {
    let rb = w.row_bytes();
    let TensorType::Q8Split { group } = w.ty else {
        unreachable!("split_row on {}", w.ty.name())
    };
    split::dot(&w.data[r * rb..(r + 1) * rb], w.scales, r, group, x)
}

/// Rows of weights per kernel call in [`matmul`].
const MM_ROWS: usize = 16;
/// Activation vectors per kernel call in [`matmul`] (a multiple of the
/// kernels' tiles of 2 and 3 vectors).
const MM_ACTS: usize = 24;

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
    let n = acts.n;
    assert_eq!(out.len(), n * w.rows, "matmul: output length");
    if n == 0 || w.rows == 0 {
        return;
    }
    assert_eq!(acts.cols, w.cols, "matmul: input length");
    let rb = w.row_bytes();
    let kernel = k.mat(w.ty);
    // A strip of rows for every vector, one tile of rows at a time: the tile
    // stays in cache while the vectors stream past it.
    let rows = |strip: &mut Strip| {
        let (start, end) = (strip.start(), strip.end());
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
    };
    let n_tasks = tasks_for(par)
        .min(w.rows * w.cols * n / 4096)
        .min(w.rows.div_ceil(ROW_GRAIN))
        .max(1);
    let per_task = if n_tasks == 1 {
        w.rows
    } else {
        w.rows.div_ceil(n_tasks).next_multiple_of(ROW_GRAIN)
    };
    let n_tasks = w.rows.div_ceil(per_task);
    parallel::for_each_strip(par, out, w.rows, per_task, n_tasks, &|_, strip| rows(strip));
}
