//! Q4_0 weights: blocks of 32 4-bit values with an f16 scale,
//! `x = d * (q - 8)`; byte `j` holds element `j` in its low nibble and
//! element `j + 16` in its high nibble.

use bytemuck::{Pod, Zeroable};

use super::{f16_le, reduce8, QK};
use crate::kernels::acts::Act;

/// GGUF's Q4_0 block.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_0 {
    /// Scale, IEEE half precision, little-endian.
    pub d: [u8; 2],
    /// Packed nibbles.
    pub qs: [u8; QK / 2],
}

const _: () = assert!(core::mem::size_of::<BlockQ4_0>() == 18);

/// The blocks of a row (`row.len()` a multiple of 18).
#[inline]
pub fn blocks(row: &[u8]) -> &[BlockQ4_0] {
    bytemuck::cast_slice(row)
}

/// A Q4_0 row's values, as ggml's `dequantize_row_q4_0`: `(q - 8) * d`.
pub fn dequantize(row: &[u8], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(QK).zip(blocks(row)) {
        let d = f16_le(b.d);
        for (j, &q) in b.qs.iter().enumerate() {
            o[j] = ((q & 0x0f) as i32 - 8) as f32 * d;
            o[j + QK / 2] = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// Q4_0 row times Q8 activations: block `b`'s exact dot product
/// `sum(nibble * q) - 8 sum(q)`, scaled by `d_w * d_a`, goes to partial sum
/// `b % 8`; then [`reduce8`].
pub fn dot(row: &[u8], a: &Act) -> f32 {
    let mut acc = [0f32; 8];
    for (b, blk) in blocks(row).iter().enumerate() {
        let (lo, hi) = a.q[b * QK..(b + 1) * QK].split_at(QK / 2);
        let mut dot = 0i32;
        for ((&w, &x0), &x1) in blk.qs.iter().zip(lo).zip(hi) {
            dot += (w & 0x0f) as i32 * x0 as i32 + (w >> 4) as i32 * x1 as i32;
        }
        acc[b % 8] += (f16_le(blk.d) * a.d[b]) * (dot - 8 * a.sum[b]) as f32;
    }
    reduce8(acc)
}
