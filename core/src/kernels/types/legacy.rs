//! The other 32-wide GGUF types: Q4_1, Q5_0, Q5_1 and IQ4_NL, all times Q8
//! activation blocks.
//!
//! In every block, byte `j` of `qs` holds element `j` in its low nibble and
//! element `j + 16` in its high nibble; Q5_0 and Q5_1 keep the fifth bit of
//! element `i` in bit `i` of `qh` (little-endian). The dot products are
//! exact `i32` block sums scaled per block into partial sum `b % 8`, as for
//! Q8_0 and Q4_0; the types with a minimum (`x = d q + m`) add
//! `(m_w * d_a) * sum(q_a)` per block.

use bytemuck::{Pod, Zeroable};

use super::{f16_le, reduce8, QK};
use crate::kernels::acts::Act;

/// GGUF's Q4_1 block: `x = d * q + m`, `q` in `0..16`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_1 {
    /// Scale (f16 bits, little-endian).
    pub d: [u8; 2],
    /// Minimum (f16 bits, little-endian).
    pub m: [u8; 2],
    /// Packed nibbles.
    pub qs: [u8; QK / 2],
}

/// GGUF's Q5_0 block: `x = d * (q - 16)`, `q` in `0..32`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_0 {
    /// Scale (f16 bits, little-endian).
    pub d: [u8; 2],
    /// Fifth bits: bit `i` of this little-endian `u32` belongs to element `i`.
    pub qh: [u8; 4],
    /// Packed low nibbles.
    pub qs: [u8; QK / 2],
}

/// GGUF's Q5_1 block: `x = d * q + m`, `q` in `0..32`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_1 {
    /// Scale (f16 bits, little-endian).
    pub d: [u8; 2],
    /// Minimum (f16 bits, little-endian).
    pub m: [u8; 2],
    /// Fifth bits, as in [`BlockQ5_0`].
    pub qh: [u8; 4],
    /// Packed low nibbles.
    pub qs: [u8; QK / 2],
}

/// GGUF's IQ4_NL block: `x = d * IQ4NL_VALUES[q]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockIq4Nl {
    /// Scale (f16 bits, little-endian).
    pub d: [u8; 2],
    /// Packed 4-bit indices.
    pub qs: [u8; QK / 2],
}

const _: () = assert!(core::mem::size_of::<BlockQ4_1>() == 20);
const _: () = assert!(core::mem::size_of::<BlockQ5_0>() == 22);
const _: () = assert!(core::mem::size_of::<BlockQ5_1>() == 24);
const _: () = assert!(core::mem::size_of::<BlockIq4Nl>() == 18);

/// The non-linear values of IQ4_NL (ggml's `kvalues_iq4nl`).
pub const IQ4NL_VALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// The 32 values `0..16` of a block's nibbles, in element order.
#[inline]
fn nibbles(qs: &[u8; QK / 2]) -> [u8; QK] {
    let mut v = [0u8; QK];
    for (j, &b) in qs.iter().enumerate() {
        v[j] = b & 0x0f;
        v[j + QK / 2] = b >> 4;
    }
    v
}

/// The 32 values `0..32` of a 5-bit block, in element order.
#[inline]
fn fives(qs: &[u8; QK / 2], qh: [u8; 4]) -> [u8; QK] {
    let mut v = nibbles(qs);
    let h = u32::from_le_bytes(qh);
    for (i, v) in v.iter_mut().enumerate() {
        *v |= (((h >> i) & 1) << 4) as u8;
    }
    v
}

/// `sum(w[i] * q[i])` over a block, exactly.
#[inline]
fn block_dot(w: impl IntoIterator<Item = i32>, q: &[i8]) -> i32 {
    w.into_iter().zip(q).map(|(w, &q)| w * i32::from(q)).sum()
}

/// A Q4_1 row's values, as ggml: `q * d + m`.
pub fn dequantize_q4_1(row: &[u8], out: &mut [f32]) {
    let blocks: &[BlockQ4_1] = bytemuck::cast_slice(row);
    for (o, b) in out.chunks_exact_mut(QK).zip(blocks) {
        let (d, m) = (f16_le(b.d), f16_le(b.m));
        for (o, q) in o.iter_mut().zip(nibbles(&b.qs)) {
            *o = f32::from(q) * d + m;
        }
    }
}

/// A Q5_0 row's values, as ggml: `(q - 16) * d`.
pub fn dequantize_q5_0(row: &[u8], out: &mut [f32]) {
    let blocks: &[BlockQ5_0] = bytemuck::cast_slice(row);
    for (o, b) in out.chunks_exact_mut(QK).zip(blocks) {
        let d = f16_le(b.d);
        for (o, q) in o.iter_mut().zip(fives(&b.qs, b.qh)) {
            *o = (i32::from(q) - 16) as f32 * d;
        }
    }
}

/// A Q5_1 row's values, as ggml: `q * d + m`.
pub fn dequantize_q5_1(row: &[u8], out: &mut [f32]) {
    let blocks: &[BlockQ5_1] = bytemuck::cast_slice(row);
    for (o, b) in out.chunks_exact_mut(QK).zip(blocks) {
        let (d, m) = (f16_le(b.d), f16_le(b.m));
        for (o, q) in o.iter_mut().zip(fives(&b.qs, b.qh)) {
            *o = f32::from(q) * d + m;
        }
    }
}

/// An IQ4_NL row's values, as ggml: `d * IQ4NL_VALUES[q]`.
pub fn dequantize_iq4_nl(row: &[u8], out: &mut [f32]) {
    let blocks: &[BlockIq4Nl] = bytemuck::cast_slice(row);
    for (o, b) in out.chunks_exact_mut(QK).zip(blocks) {
        let d = f16_le(b.d);
        for (o, q) in o.iter_mut().zip(nibbles(&b.qs)) {
            *o = d * f32::from(IQ4NL_VALUES[q as usize]);
        }
    }
}

/// Q4_1 row times Q8 activations: per block `b`,
/// `acc[b % 8] += (d_w * d_a) * sum(q_w q_a) + (m_w * d_a) * sum(q_a)`
/// (the two products rounded, added, then added to the partial sum);
/// then [`reduce8`].
pub fn dot_q4_1(row: &[u8], a: &Act) -> f32 {
    let blocks: &[BlockQ4_1] = bytemuck::cast_slice(row);
    let mut acc = [0f32; 8];
    for (b, blk) in blocks.iter().enumerate() {
        let dot = block_dot(nibbles(&blk.qs).map(i32::from), &a.q[b * QK..]);
        let (d, m) = (f16_le(blk.d) * a.d[b], f16_le(blk.m) * a.d[b]);
        acc[b % 8] += d * dot as f32 + m * a.sum[b] as f32;
    }
    reduce8(acc)
}

/// Q5_0 row times Q8 activations: block `b`'s exact
/// `sum(q_w q_a) - 16 sum(q_a)`, scaled by `d_w * d_a`, into partial sum
/// `b % 8`; then [`reduce8`].
pub fn dot_q5_0(row: &[u8], a: &Act) -> f32 {
    let blocks: &[BlockQ5_0] = bytemuck::cast_slice(row);
    let mut acc = [0f32; 8];
    for (b, blk) in blocks.iter().enumerate() {
        let dot = block_dot(fives(&blk.qs, blk.qh).map(i32::from), &a.q[b * QK..]);
        acc[b % 8] += (f16_le(blk.d) * a.d[b]) * (dot - 16 * a.sum[b]) as f32;
    }
    reduce8(acc)
}

/// Q5_1 row times Q8 activations, as [`dot_q4_1`] with 5-bit values.
pub fn dot_q5_1(row: &[u8], a: &Act) -> f32 {
    let blocks: &[BlockQ5_1] = bytemuck::cast_slice(row);
    let mut acc = [0f32; 8];
    for (b, blk) in blocks.iter().enumerate() {
        let dot = block_dot(fives(&blk.qs, blk.qh).map(i32::from), &a.q[b * QK..]);
        let (d, m) = (f16_le(blk.d) * a.d[b], f16_le(blk.m) * a.d[b]);
        acc[b % 8] += d * dot as f32 + m * a.sum[b] as f32;
    }
    reduce8(acc)
}

/// IQ4_NL row times Q8 activations: block `b`'s exact
/// `sum(IQ4NL_VALUES[q_w] q_a)`, scaled by `d_w * d_a`, into partial sum
/// `b % 8`; then [`reduce8`].
pub fn dot_iq4_nl(row: &[u8], a: &Act) -> f32 {
    let blocks: &[BlockIq4Nl] = bytemuck::cast_slice(row);
    let mut acc = [0f32; 8];
    for (b, blk) in blocks.iter().enumerate() {
        let w = nibbles(&blk.qs).map(|q| i32::from(IQ4NL_VALUES[q as usize]));
        let dot = block_dot(w, &a.q[b * QK..]);
        acc[b % 8] += (f16_le(blk.d) * a.d[b]) * dot as f32;
    }
    reduce8(acc)
}
