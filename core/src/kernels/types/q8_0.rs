//! Q8_0 weights, and the Q8 activation blocks that the 32-wide types take.
//!
//! A Q8_0 block is 32 int8 values and an f16 scale: `x = d * q`. The Q8
//! activations are the same idea in f32 with the block's sum kept (for the
//! types whose values have an offset or a minimum): see [`quantize`].

use bytemuck::{Pod, Zeroable};

use super::{f16_le, reduce8, QK};
use crate::kernels::acts::Act;

/// GGUF's Q8_0 block: `x[i] = d * qs[i]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_0 {
    /// Scale, IEEE half precision, little-endian.
    pub d: [u8; 2],
    /// Quantized values.
    pub qs: [i8; QK],
}

const _: () = assert!(core::mem::size_of::<BlockQ8_0>() == 34);

/// The blocks of a row (`row.len()` a multiple of 34).
#[inline]
pub fn blocks(row: &[u8]) -> &[BlockQ8_0] {
    bytemuck::cast_slice(row)
}

/// A Q8_0 row's values, as ggml's `dequantize_row_q8_0`: `q * d`.
pub fn dequantize(row: &[u8], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(QK).zip(blocks(row)) {
        let d = f16_le(b.d);
        for (o, &q) in o.iter_mut().zip(&b.qs) {
            *o = f32::from(q) * d;
        }
    }
}

/// Q8_0 row times Q8 activations: block `b`'s exact `i32` dot product,
/// scaled by `d_w * d_a`, goes to partial sum `b % 8`; then [`reduce8`].
pub fn dot(row: &[u8], a: &Act) -> f32 {
    let mut acc = [0f32; 8];
    for (b, blk) in blocks(row).iter().enumerate() {
        let q = &a.q[b * QK..(b + 1) * QK];
        let dot: i32 = blk
            .qs
            .iter()
            .zip(q)
            .map(|(&w, &x)| i32::from(w) * i32::from(x))
            .sum();
        acc[b % 8] += (f16_le(blk.d) * a.d[b]) * dot as f32;
    }
    reduce8(acc)
}

/// Quantizes activations to Q8 blocks of 32: `d = max|x| / 127`,
/// `q = round(x / d)` (rounding half away from zero; NaN becomes 0) and
/// `sum = sum(q)`. `x.len()` must be a multiple of 32; `d` and `sum` hold
/// `x.len() / 32` blocks and `q` holds `x.len()` values.
pub fn quantize(x: &[f32], d: &mut [f32], sum: &mut [i32], q: &mut [i8]) {
    assert_eq!(x.len() % QK, 0, "quantize: length is not a multiple of 32");
    let nb = x.len() / QK;
    assert!(
        d.len() >= nb && sum.len() >= nb && q.len() >= x.len(),
        "quantize: scratch too short"
    );
    for (b, (xs, qs)) in x.chunks_exact(QK).zip(q.chunks_exact_mut(QK)).enumerate() {
        let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = amax / 127.0;
        let inv = if scale != 0.0 { 1.0 / scale } else { 0.0 };
        let mut s = 0i32;
        for (o, &v) in qs.iter_mut().zip(xs) {
            let r = libm::roundf(v * inv) as i32;
            *o = r.clamp(-127, 127) as i8;
            s += i32::from(*o);
        }
        d[b] = scale;
        sum[b] = s;
    }
}
