//! Numeric kernels and their one dispatch point.
//!
//! The forward pass calls only the functions of this module. Each weight type
//! has a row kernel (`dot` of one weight row with the activation vector); the
//! set of row kernels in use is a [`Kernels`] table chosen once by
//! [`active`]. The scalar table is the reference every SIMD table is tested
//! against.
//!
//! Quantized weights (Q8_0, Q4_0) take the fixed-point path: the activation
//! vector is first quantized to int8 blocks of 32 ([`quantize_acts`]); each
//! block's dot product accumulates in `i32`, then one float multiply per block
//! applies the two scales.

pub mod scalar;

use crate::parallel::Parallel;
use crate::tensor::{Tensor, TensorType, QK};

/// An activation vector, with its int8 quantization when the weights need one.
#[derive(Debug, Clone, Copy)]
pub struct Act<'a> {
    /// The activations.
    pub x: &'a [f32],
    /// Per block of 32: the scale (`x ~ d * q`); empty when not quantized.
    pub d: &'a [f32],
    /// Per block of 32: the sum of its `q` (for Q4_0's offset of 8).
    pub sum: &'a [i32],
    /// The quantized activations, `x.len()` of them.
    pub q: &'a [i8],
}

/// A table of row kernels: one implementation set (scalar, AVX2, NEON ...).
#[derive(Debug, Clone, Copy)]
pub struct Kernels {
    /// Name of the set, e.g. `"scalar"`.
    pub name: &'static str,
    /// F32 row (little-endian bytes, any alignment) times f32 activations.
    pub dot_f32: fn(row: &[u8], x: &[f32]) -> f32,
    /// F16 row times f32 activations.
    pub dot_f16: fn(row: &[u8], x: &[f32]) -> f32,
    /// Q8_0 row times int8 activation blocks.
    pub dot_q8_0: fn(row: &[u8], a: &Act) -> f32,
    /// Q4_0 row times int8 activation blocks.
    pub dot_q4_0: fn(row: &[u8], a: &Act) -> f32,
    /// Quantizes activations to int8 blocks of 32 (`x.len()` a multiple of 32).
    pub quantize: fn(x: &[f32], d: &mut [f32], sum: &mut [i32], q: &mut [i8]),
}

/// The kernel set in use: chosen once, the same for the whole process.
pub fn active() -> &'static Kernels {
    &scalar::KERNELS
}

/// Whether weights of type `ty` consume quantized activations.
pub fn wants_quantized(ty: TensorType) -> bool {
    matches!(ty, TensorType::Q8_0 | TensorType::Q4_0)
}

/// Quantizes `x` into the given scratch (which must hold `x.len()` values and
/// `x.len() / 32` blocks) and returns the activation with its quantization.
pub fn quantize_acts<'a>(
    x: &'a [f32],
    d: &'a mut [f32],
    sum: &'a mut [i32],
    q: &'a mut [i8],
) -> Act<'a> {
    let nb = x.len() / QK;
    let (d, sum, q) = (&mut d[..nb], &mut sum[..nb], &mut q[..x.len()]);
    (active().quantize)(x, d, sum, q);
    Act { x, d, sum, q }
}

/// `out[r] = dot(w.row(r), a)` for every row of `w`, split across `par`.
///
/// `a` must carry its quantization if `w` is Q8_0 or Q4_0
/// (see [`wants_quantized`]).
pub fn matvec(par: &dyn Parallel, out: &mut [f32], w: &Tensor, a: &Act) {
    assert_eq!(out.len(), w.rows, "matvec: output length");
    assert_eq!(a.x.len(), w.cols, "matvec: input length");
    let k = active();
    let rb = w.row_bytes();
    let row_kernel = |r: usize| -> f32 {
        let row = &w.data[r * rb..(r + 1) * rb];
        match w.ty {
            TensorType::F32 => (k.dot_f32)(row, a.x),
            TensorType::F16 => (k.dot_f16)(row, a.x),
            TensorType::Q8_0 => (k.dot_q8_0)(row, a),
            TensorType::Q4_0 => (k.dot_q4_0)(row, a),
            TensorType::Q8Split { group } => scalar::dot_q8_split(row, w.scales, r, group, a.x),
        }
    };
    // Small products are not worth waking threads for.
    let n_tasks = par.n_threads().min(w.rows * w.cols / 4096).max(1);
    if n_tasks == 1 {
        for (r, o) in out.iter_mut().enumerate() {
            *o = row_kernel(r);
        }
        return;
    }
    let rows_per_task = w.rows.div_ceil(n_tasks);
    let shared = SharedRows {
        ptr: out.as_mut_ptr(),
        len: out.len(),
    };
    par.parallel_for(n_tasks, &|t| {
        let start = (t * rows_per_task).min(shared.len);
        let end = ((t + 1) * rows_per_task).min(shared.len);
        // SAFETY: tasks get disjoint ranges [start, end) within `out`.
        let chunk = unsafe { shared.rows(start, end) };
        for (i, o) in chunk.iter_mut().enumerate() {
            *o = row_kernel(start + i);
        }
    });
}

/// The output of a parallel matvec, written by tasks on disjoint rows.
struct SharedRows {
    ptr: *mut f32,
    len: usize,
}

impl SharedRows {
    /// The rows `start..end` of the output.
    ///
    /// # Safety
    /// `start <= end <= len`, and no two live slices may overlap.
    #[allow(clippy::mut_from_ref)]
    unsafe fn rows(&self, start: usize, end: usize) -> &mut [f32] {
        // SAFETY: the caller keeps the range inside the exclusively borrowed
        // output and disjoint from every other task's; `parallel_for` returns
        // only after every task has finished, so the borrow outlives them.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.add(start), end - start) }
    }
}

// SAFETY: the pointer is only used to write disjoint row ranges (see matvec).
unsafe impl Sync for SharedRows {}

/// Decodes row `r` of `t` into `out` (`out.len() == t.cols`).
pub fn dequantize_row(t: &Tensor, r: usize, out: &mut [f32]) {
    let rb = t.row_bytes();
    let row = &t.data[r * rb..(r + 1) * rb];
    match t.ty {
        TensorType::F32 => {
            for (o, b) in out.iter_mut().zip(row.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        TensorType::F16 => {
            for (o, b) in out.iter_mut().zip(row.chunks_exact(2)) {
                *o = scalar::f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        TensorType::Q8_0 => {
            for (o, blk) in out.chunks_exact_mut(QK).zip(row.chunks_exact(34)) {
                let d = scalar::f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
                for (o, &q) in o.iter_mut().zip(&blk[2..]) {
                    *o = d * (q as i8) as f32;
                }
            }
        }
        TensorType::Q4_0 => {
            for (o, blk) in out.chunks_exact_mut(QK).zip(row.chunks_exact(18)) {
                let d = scalar::f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
                for (j, &b) in blk[2..].iter().enumerate() {
                    o[j] = d * ((b & 0x0f) as i32 - 8) as f32;
                    o[j + QK / 2] = d * ((b >> 4) as i32 - 8) as f32;
                }
            }
        }
        TensorType::Q8Split { group } => {
            let g = group as usize;
            for (i, (o, &q)) in out.iter_mut().zip(row).enumerate() {
                let s = scalar::f32_at(t.scales, (r * t.cols + i) / g);
                *o = (q as i8) as f32 * s;
            }
        }
    }
}
