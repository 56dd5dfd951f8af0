//! F32, F16 and BF16 weights, times f32 activations.
//!
//! The dot products keep sixteen interleaved partial sums (element `i` goes
//! to sum `i % 16`, so that a SIMD row has two or more independent chains of
//! additions), combined by [`reduce16`]. F32 rows update a sum as
//! `acc + w * x` (a rounded product, then a rounded sum: cheap for FPUs
//! without fused multiply-add); F16 and BF16 rows as `fma(w, x, acc)` (one
//! rounding), which every SIMD set has in hardware: half the floating-point
//! operations, which is what prefill's products of these types are bound by.

use super::reduce16;

/// Element `i` of a little-endian f32 array stored as bytes.
#[inline]
pub fn f32_at(bytes: &[u8], i: usize) -> f32 {
    let b = &bytes[4 * i..4 * i + 4];
    f32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// IEEE half to single precision.
#[inline]
pub fn f16_to_f32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// bfloat16 to single precision (exact: the bits are the top half of an f32).
#[inline]
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// The value of the half-precision bits `h`, exactly as [`f16_to_f32`], but
/// without branches, so that loops over it vectorise. No float operand is
/// subnormal, so flush-to-zero and denormals-are-zero modes do not change it.
#[inline(always)]
pub fn f16_bits_to_f32(h: u16) -> f32 {
    let h = u32::from(h);
    // Exponent and mantissa in their f32 places, the exponent rebiased.
    let bits = (h & 0x7fff) << 13;
    let normal = bits + (112 << 23);
    // Zero and subnormals: 2^-14 * (1 + m / 1024) - 2^-14 is exactly m * 2^-24.
    let small = (f32::from_bits(normal + (1 << 23)) - f32::from_bits(113 << 23)).to_bits();
    let mag = if bits < 0x0080_0000 { small } else { normal };
    // Infinities, and NaNs made quiet.
    let nan = if bits > 0x0f80_0000 { 0x0040_0000 } else { 0 };
    let mag = if bits >= 0x0f80_0000 {
        (normal + (112 << 23)) | nan
    } else {
        mag
    };
    f32::from_bits(((h & 0x8000) << 16) | mag)
}

/// An F32 row's values.
pub fn dequantize_f32(row: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(row.chunks_exact(4)) {
        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

/// An F16 row's values.
pub fn dequantize_f16(row: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(row.chunks_exact(2)) {
        *o = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    }
}

/// A BF16 row's values.
pub fn dequantize_bf16(row: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(row.chunks_exact(2)) {
        *o = bf16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    }
}

/// `reduce16` of sixteen partial sums where element `i` of the row goes to
/// sum `i % 16`, updated by `step(acc, w, x)`; `w(i)` decodes weight `i`
/// from its `eb` bytes. Sixteen elements at a time, so that the sums stay in
/// registers on every target (the order of each sum's updates is the same).
#[inline(always)]
fn dot16(
    row: &[u8],
    x: &[f32],
    eb: usize,
    w: impl Fn(&[u8]) -> f32,
    step: impl Fn(f32, f32, f32) -> f32,
) -> f32 {
    let mut acc = [0f32; 16];
    let whole = x.len() / 16 * 16;
    for (ws, xs) in row.chunks_exact(16 * eb).zip(x.chunks_exact(16)) {
        for ((acc, wb), &x) in acc.iter_mut().zip(ws.chunks_exact(eb)).zip(xs) {
            *acc = step(*acc, w(wb), x);
        }
    }
    let rest = row[whole * eb..].chunks_exact(eb).zip(&x[whole..]);
    for (acc, (wb, &x)) in acc.iter_mut().zip(rest) {
        *acc = step(*acc, w(wb), x);
    }
    reduce16(acc)
}

/// F32 row times f32 activations: `acc[i % 16] += w * x`, then [`reduce16`].
pub fn dot_f32(row: &[u8], x: &[f32]) -> f32 {
    dot16(
        row,
        x,
        4,
        |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        |acc, w, x| acc + w * x,
    )
}

/// F16 row times f32 activations: `acc[i % 16] = fma(w, x, acc[i % 16])`,
/// then [`reduce16`].
pub fn dot_f16(row: &[u8], x: &[f32]) -> f32 {
    dot16(
        row,
        x,
        2,
        |b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
        |acc, w, x| libm::fmaf(w, x, acc),
    )
}

/// BF16 row times f32 activations, as [`dot_f16`].
pub fn dot_bf16(row: &[u8], x: &[f32]) -> f32 {
    dot16(
        row,
        x,
        2,
        |b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]])),
        |acc, w, x| libm::fmaf(w, x, acc),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_bits_to_f32_is_exact() {
        for h in 0..=u16::MAX {
            let want = half::f16::from_bits(h).to_f32();
            assert_eq!(f16_bits_to_f32(h).to_bits(), want.to_bits(), "{h:#06x}");
        }
    }

    #[test]
    fn bf16_is_the_top_half() {
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        assert_eq!(bf16_to_f32(0xc000), -2.0);
        assert!(bf16_to_f32(0x7fc1).is_nan());
    }
}
