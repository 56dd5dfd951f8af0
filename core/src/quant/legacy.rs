//! The legacy 32-value block types Q4_1, Q5_0 and Q5_1, as ggml's
//! `quantize_row_q{4_1,5_0,5_1}_ref` write them. (Q4_0 and Q8_0 are in
//! [`super::quantize_row`].)
//!
//! Levels are C float-to-integer conversions of `x/d + offset`,
//! truncating toward zero (so the `+ 0.5` rounds half up). They leave the
//! integer range only for non-finite input, where C leaves the result
//! undefined; here they follow x86-64's scalar conversion, so a NaN value
//! gets level 0 (its block's minimum for Q4_1 and Q5_1, `-16 d` for Q5_0).
//! An infinity makes its block's scale `d` infinite. Nothing panics.

use super::check_blocks;
use super::scalar::{c_float_to_int, f16_bits, put_f16, signed_absmax};
use crate::error::Result;

/// Values per block.
pub const QK: usize = 32;
/// Bytes of one Q4_1 block: f16 `d`, f16 `m`, 16 bytes of nibbles.
pub const Q4_1_BYTES: usize = 20;
/// Bytes of one Q5_0 block: f16 `d`, 4 bytes of fifth bits, 16 of nibbles.
pub const Q5_0_BYTES: usize = 22;
/// Bytes of one Q5_1 block: f16 `d`, f16 `m`, 4 bytes of fifth bits, 16 of
/// nibbles.
pub const Q5_1_BYTES: usize = 24;

/// The smallest and largest value, from `FLT_MAX` / `-FLT_MAX` with strict
/// comparisons (NaN never taken; an all-NaN block gives `(FLT_MAX,
/// -FLT_MAX)`).
fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// Packs 5-bit levels: low nibbles as Q4 (`j` low, `j + 16` high), the
/// fifth bit of level `j` at bit `j` of the little-endian `qh` word.
fn pack_5bit(levels: &[u8; QK], qh: &mut [u8], qs: &mut [u8]) {
    let mut bits = 0u32;
    for (j, o) in qs.iter_mut().enumerate() {
        let (a, b) = (levels[j], levels[j + QK / 2]);
        *o = (a & 0xf) | ((b & 0xf) << 4);
        bits |= u32::from((a & 0x10) >> 4) << j;
        bits |= u32::from((b & 0x10) >> 4) << (j + QK / 2);
    }
    qh.copy_from_slice(&bits.to_le_bytes());
}

/// Encodes `src` as GGUF Q4_1: per 32 values `d = (max - min) / 15`, the
/// minimum `m`, and `q = min(15, trunc((x - m)/d + 0.5))`, `x ≈ d·q + m`.
///
/// `src.len()` must be a multiple of 32 and `dst.len()` exactly 20 bytes per
/// 32 values. A constant block gets `d = 0` and levels 0.
pub fn quantize_q4_1(src: &[f32], dst: &mut [u8]) -> Result<()> {
    check_blocks(src, dst, QK, Q4_1_BYTES)?;
    for (x, y) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(Q4_1_BYTES)) {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(&mut y[0..2], f16_bits(d));
        put_f16(&mut y[2..4], f16_bits(min));
        let level = |v: f32| (c_float_to_int((v - min) * id + 0.5) as i8).min(15) as u8;
        for j in 0..QK / 2 {
            y[4 + j] = level(x[j]) | (level(x[j + QK / 2]) << 4);
        }
    }
    Ok(())
}

/// Encodes `src` as GGUF Q5_0: per 32 values `d = max / -16` where `max` is
/// the (first) element of largest magnitude with its sign, and `q = min(31,
/// trunc(x/d + 16.5))`, `x ≈ d·(q - 16)`.
///
/// `src.len()` must be a multiple of 32 and `dst.len()` exactly 22 bytes per
/// 32 values. An all-zero block encodes as `d = -0.0` (`0 / -16`) and
/// levels 16.
pub fn quantize_q5_0(src: &[f32], dst: &mut [u8]) -> Result<()> {
    check_blocks(src, dst, QK, Q5_0_BYTES)?;
    let mut levels = [0u8; QK];
    for (x, y) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(Q5_0_BYTES)) {
        let (_, max) = signed_absmax(x);
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(&mut y[0..2], f16_bits(d));
        for (l, &v) in levels.iter_mut().zip(x) {
            *l = (c_float_to_int(v * id + 16.5) as i8).min(31) as u8;
        }
        let (qh, qs) = y[2..].split_at_mut(4);
        pack_5bit(&levels, qh, qs);
    }
    Ok(())
}

/// Encodes `src` as GGUF Q5_1: per 32 values `d = (max - min) / 31`, the
/// minimum `m`, and `q = trunc((x - m)/d + 0.5)`, `x ≈ d·q + m`.
///
/// `src.len()` must be a multiple of 32 and `dst.len()` exactly 24 bytes per
/// 32 values. A constant block gets `d = 0` and levels 0.
pub fn quantize_q5_1(src: &[f32], dst: &mut [u8]) -> Result<()> {
    check_blocks(src, dst, QK, Q5_1_BYTES)?;
    let mut levels = [0u8; QK];
    for (x, y) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(Q5_1_BYTES)) {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(&mut y[0..2], f16_bits(d));
        put_f16(&mut y[2..4], f16_bits(min));
        for (l, &v) in levels.iter_mut().zip(x) {
            *l = c_float_to_int((v - min) * id + 0.5) as u8;
        }
        let (qh, qs) = y[4..].split_at_mut(4);
        pack_5bit(&levels, qh, qs);
    }
    Ok(())
}
