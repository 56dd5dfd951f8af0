//! The K-quants: super-blocks of 256 values with quantized sub-block scales,
//! as ggml's `quantize_row_q{2,3,4,5,6}_K_ref` write them (which is what
//! `llama-quantize` writes without an importance matrix).
//!
//! Each super-block is quantized in three steps: a scale search per
//! sub-block (in the private `search` module), the sub-block scales
//! themselves quantized against the largest one (6 or 8 bits, or 4 bits for
//! Q2_K), then every value re-quantized against its sub-block's *quantized*
//! scale, so the levels agree with what a decoder reconstructs.
//!
//! Non-finite inputs never panic: they go through the same IEEE operations
//! as in ggml (giving infinite or NaN scales, and levels from ggml's
//! `nearest_int` of NaN, a bit trick that is defined for every input).
//! Where two NaNs meet, which payload survives is up to the compiler, here
//! as in ggml, so for rows containing NaN the bytes are deterministic but
//! not guaranteed to be ggml's.

use super::check_blocks;
use super::scalar::{f16_bits, f16_value, nearest_int, put_f16};
use super::search::{
    make_q3_quants_rmse, make_qkx2_quants, make_qx_quants_rmse, MinGrid, GROUP_MAX_EPS,
};
use crate::error::Result;

/// Values per super-block.
pub const QK_K: usize = 256;

/// Bytes of one Q2_K super-block: 16 scale/min nibble pairs, 64 bytes of
/// 2-bit levels, f16 `d` and `dmin`.
pub const Q2_K_BYTES: usize = 84;
/// Bytes of one Q3_K super-block: 32 bytes of high bits, 64 bytes of low 2
/// bits, 12 bytes of 6-bit scales, f16 `d`.
pub const Q3_K_BYTES: usize = 110;
/// Bytes of one Q4_K super-block: f16 `d` and `dmin`, 12 bytes of 6-bit
/// scales and mins, 128 bytes of nibbles.
pub const Q4_K_BYTES: usize = 144;
/// Bytes of one Q5_K super-block: as Q4_K plus 32 bytes of fifth bits.
pub const Q5_K_BYTES: usize = 176;
/// Bytes of one Q6_K super-block: 128 bytes of low nibbles, 64 of high 2
/// bits, 16 int8 scales, f16 `d`.
pub const Q6_K_BYTES: usize = 210;

/// Packs four rows of 2-bit levels: byte `l` of each 32-byte group holds
/// levels `l`, `l + 32`, `l + 64` and `l + 96` of its 128 values, low bits
/// first (the layout of Q2_K's and Q3_K's `qs`).
fn pack_2bit(levels: &[u8; QK_K], qs: &mut [u8]) {
    for (half, out) in levels.chunks_exact(128).zip(qs.chunks_exact_mut(32)) {
        for (l, o) in out.iter_mut().enumerate() {
            *o = half[l] | (half[l + 32] << 2) | (half[l + 64] << 4) | (half[l + 96] << 6);
        }
    }
}

/// Encodes `src` as GGUF Q2_K: per 16 values a 4-bit scale and a 4-bit
/// minimum (both relative to the super-block's f16 `d` and `dmin`), and
/// 2-bit levels, `x ≈ d·sc·q - dmin·m`.
///
/// `src.len()` must be a multiple of 256 and `dst.len()` exactly 84 bytes
/// per 256 values. An all-zero super-block encodes as all zero bytes.
pub fn quantize_q2_k(src: &[f32], dst: &mut [u8]) -> Result<()> {
    check_blocks(src, dst, QK_K, Q2_K_BYTES)?;
    for (x, y) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(Q2_K_BYTES)) {
        q2_k_block(x, y);
    }
    Ok(())
}

fn q2_k_block(x: &[f32], y: &mut [u8]) {
    const GRID: MinGrid = MinGrid {
        nmax: 3,
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: true,
    };
    let mut levels = [0u8; QK_K];
    let mut scratch = [0u8; 16];
    let mut weights = [0f32; 16];
    let (mut scales, mut mins) = ([0f32; 16], [0f32; 16]);
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for (j, xs) in x.chunks_exact(16).enumerate() {
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = v.abs();
        }
        let (scale, min) = make_qkx2_quants(
            &GRID,
            xs,
            &weights,
            &mut levels[16 * j..16 * (j + 1)],
            &mut scratch,
        );
        (scales[j], mins[j]) = (scale, min);
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }

    // Scale and minimum nibbles, against the largest of each.
    let (packed, rest) = y.split_at_mut(16);
    let (qs, dm) = rest.split_at_mut(64);
    let mut d = 0;
    if max_scale > 0.0 {
        let iscale = 15.0 / max_scale;
        for (p, &s) in packed.iter_mut().zip(&scales) {
            *p = nearest_int(iscale * s) as u8;
        }
        d = f16_bits(max_scale / 15.0);
    } else {
        packed.fill(0);
    }
    let mut dmin = 0;
    if max_min > 0.0 {
        let iscale = 15.0 / max_min;
        for (p, &m) in packed.iter_mut().zip(&mins) {
            *p |= (nearest_int(iscale * m) << 4) as u8;
        }
        dmin = f16_bits(max_min / 15.0);
    }
    put_f16(&mut dm[..2], d);
    put_f16(&mut dm[2..], dmin);

    // Levels against the quantized scales.
    for (j, xs) in x.chunks_exact(16).enumerate() {
        let dl = f16_value(d) * (packed[j] & 0xf) as f32;
        if dl == 0.0 {
            continue;
        }
        let ml = f16_value(dmin) * (packed[j] >> 4) as f32;
        for (o, &v) in levels[16 * j..].iter_mut().zip(xs) {
            *o = nearest_int((v + ml) / dl).clamp(0, 3) as u8;
        }
    }
    pack_2bit(&levels, qs);
}

/// Encodes `src` as GGUF Q3_K: per 16 values a signed 6-bit scale (relative
/// to the super-block's f16 `d`), and 3-bit signed levels `-4 ..= 3` split
/// into 2 low bits and a high bit, `x ≈ d·sc·q`.
///
/// `src.len()` must be a multiple of 256 and `dst.len()` exactly 110 bytes
/// per 256 values.
pub fn quantize_q3_k(src: &[f32], dst: &mut [u8]) -> Result<()> {
    check_blocks(src, dst, QK_K, Q3_K_BYTES)?;
    for (x, y) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(Q3_K_BYTES)) {
        q3_k_block(x, y);
    }
    Ok(())
}

fn q3_k_block(x: &[f32], y: &mut [u8]) {
    let mut levels = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let (mut amax, mut max_scale) = (0f32, 0f32);
    for (j, xs) in x.chunks_exact(16).enumerate() {
        scales[j] = make_q3_quants_rmse(4, xs, &mut levels[16 * j..16 * (j + 1)]);
        let a = scales[j].abs();
        if a > amax {
            amax = a;
            max_scale = scales[j];
        }
    }

    let (hmask, rest) = y.split_at_mut(32);
    let (qs, rest) = rest.split_at_mut(64);
    let (packed, d_out) = rest.split_at_mut(12);
    // 6-bit scales (offset by 32): low nibbles of scales 0-7 then 8-15 in
    // bytes 0-7, the top 2 bits of scale j in byte 8 + j % 4 at bit 2 (j / 4).
    packed.fill(0);
    let mut d = 0;
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for (j, &s) in scales.iter().enumerate() {
            let l = (nearest_int(iscale * s) as i8).clamp(-32, 31) + 32;
            let l = l as u8;
            if j < 8 {
                packed[j] = l & 0xf;
            } else {
                packed[j - 8] |= (l & 0xf) << 4;
            }
            packed[8 + j % 4] |= (l >> 4) << (2 * (j / 4));
        }
        d = f16_bits(1.0 / iscale);
    }
    put_f16(d_out, d);

    for (j, xs) in x.chunks_exact(16).enumerate() {
        let low = if j < 8 {
            packed[j] & 0xf
        } else {
            packed[j - 8] >> 4
        };
        let high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        let sc = (low | (high << 4)) as i8 - 32;
        let dl = f16_value(d) * sc as f32;
        if dl == 0.0 {
            continue;
        }
        for (o, &v) in levels[16 * j..].iter_mut().zip(xs) {
            *o = nearest_int(v / dl).clamp(-4, 3) as i8 + 4;
        }
    }

    // High bit of value j in hmask[j % 32], bit j / 32; low 2 bits in qs.
    hmask.fill(0);
    let mut low = [0u8; QK_K];
    for (j, (&l, o)) in levels.iter().zip(low.iter_mut()).enumerate() {
        let mut l = l as u8;
        if l > 3 {
            hmask[j % 32] |= 1 << (j / 32);
            l -= 4;
        }
        *o = l;
    }
    pack_2bit(&low, qs);
}

/// `get_scale_min_k4`: scale and minimum `j` (0..8) of Q4_K/Q5_K's 12-byte
/// packing.
fn scale_min_k4(j: usize, packed: &[u8]) -> (u8, u8) {
    if j < 4 {
        (packed[j] & 63, packed[j + 4] & 63)
    } else {
        (
            (packed[j + 4] & 0xf) | ((packed[j - 4] >> 6) << 4),
            (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4),
        )
    }
}

/// The part Q4_K and Q5_K share: per 32 values a 6-bit scale and 6-bit
/// minimum relative to f16 `d` and `dmin`, written to `head` (`d`, `dmin`,
/// 12 bytes of scales and mins), and the levels `0 ..= nmax` of all 256
/// values against the quantized scales.
fn scale_min_block(x: &[f32], grid: &MinGrid, head: &mut [u8], levels: &mut [u8; QK_K]) {
    let mut scratch = [0u8; 32];
    let mut weights = [0f32; 32];
    let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for (j, xs) in x.chunks_exact(32).enumerate() {
        let mut sum_x2 = 0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = libm::sqrtf(sum_x2 / 32.0);
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        let (scale, min) = make_qkx2_quants(
            grid,
            xs,
            &weights,
            &mut levels[32 * j..32 * (j + 1)],
            &mut scratch,
        );
        (scales[j], mins[j]) = (scale, min);
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }

    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let (dm, packed) = head.split_at_mut(4);
    // Scales and mins 0-3 in bytes 0-3 and 4-7 (6 bits); 4-7 as nibbles in
    // bytes 8-11, their top 2 bits in the top bits of bytes 0-3 and 4-7.
    for j in 0..8 {
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    let d = f16_bits(max_scale / 63.0);
    let dmin = f16_bits(max_min / 63.0);
    put_f16(&mut dm[..2], d);
    put_f16(&mut dm[2..], dmin);

    for (j, xs) in x.chunks_exact(32).enumerate() {
        let (sc, m) = scale_min_k4(j, packed);
        let dl = f16_value(d) * sc as f32;
        if dl == 0.0 {
            continue;
        }
        let ml = f16_value(dmin) * m as f32;
        for (o, &v) in levels[32 * j..].iter_mut().zip(xs) {
            *o = nearest_int((v + ml) / dl).clamp(0, grid.nmax) as u8;
        }
    }
}

/// Encodes `src` as GGUF Q4_K: per 32 values a 6-bit scale and a 6-bit
/// minimum (relative to the super-block's f16 `d` and `dmin`), and 4-bit
/// levels, `x ≈ d·sc·q - dmin·m`.
///
/// `src.len()` must be a multiple of 256 and `dst.len()` exactly 144 bytes
/// per 256 values.
pub fn quantize_q4_k(src: &[f32], dst: &mut [u8]) -> Result<()> {
    const GRID: MinGrid = MinGrid {
        nmax: 15,
        rmin: -1.0,
        rdelta: 0.1,
        nstep: 20,
        use_mad: false,
    };
    check_blocks(src, dst, QK_K, Q4_K_BYTES)?;
    let mut levels = [0u8; QK_K];
    for (x, y) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(Q4_K_BYTES)) {
        let (head, qs) = y.split_at_mut(16);
        scale_min_block(x, &GRID, head, &mut levels);
        // Each 32 bytes: values 0-31 of a 64 in the low nibbles, 32-63 high.
        for (pair, out) in levels.chunks_exact(64).zip(qs.chunks_exact_mut(32)) {
            for (l, o) in out.iter_mut().enumerate() {
                *o = pair[l] | (pair[l + 32] << 4);
            }
        }
    }
    Ok(())
}

/// Encodes `src` as GGUF Q5_K: as Q4_K with 5-bit levels, the fifth bits
/// in 32 bytes of `qh` (value `l` of the `i`-th 64 at byte `l % 32`, bit
/// `2 i + l / 32`).
///
/// `src.len()` must be a multiple of 256 and `dst.len()` exactly 176 bytes
/// per 256 values.
pub fn quantize_q5_k(src: &[f32], dst: &mut [u8]) -> Result<()> {
    const GRID: MinGrid = MinGrid {
        nmax: 31,
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: false,
    };
    check_blocks(src, dst, QK_K, Q5_K_BYTES)?;
    let mut levels = [0u8; QK_K];
    for (x, y) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(Q5_K_BYTES)) {
        let (head, rest) = y.split_at_mut(16);
        let (qh, qs) = rest.split_at_mut(32);
        scale_min_block(x, &GRID, head, &mut levels);
        qh.fill(0);
        for (i, (pair, out)) in levels
            .chunks_exact(64)
            .zip(qs.chunks_exact_mut(32))
            .enumerate()
        {
            for (l, o) in out.iter_mut().enumerate() {
                let (mut lo, mut hi) = (pair[l], pair[l + 32]);
                if lo > 15 {
                    lo -= 16;
                    qh[l] |= 1 << (2 * i);
                }
                if hi > 15 {
                    hi -= 16;
                    qh[l] |= 2 << (2 * i);
                }
                *o = lo | (hi << 4);
            }
        }
    }
    Ok(())
}

/// Encodes `src` as GGUF Q6_K: per 16 values a signed 8-bit scale (relative
/// to the super-block's f16 `d`), and 6-bit levels `-32 ..= 31` split into
/// low nibbles and high 2 bits, `x ≈ d·sc·q`.
///
/// `src.len()` must be a multiple of 256 and `dst.len()` exactly 210 bytes
/// per 256 values. A super-block whose sub-block scales are all below
/// 1e-15 in magnitude encodes as all zero bytes.
pub fn quantize_q6_k(src: &[f32], dst: &mut [u8]) -> Result<()> {
    check_blocks(src, dst, QK_K, Q6_K_BYTES)?;
    for (x, y) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(Q6_K_BYTES)) {
        q6_k_block(x, y);
    }
    Ok(())
}

fn q6_k_block(x: &[f32], y: &mut [u8]) {
    let mut levels = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let (mut max_abs_scale, mut max_scale) = (0f32, 0f32);
    for (j, xs) in x.chunks_exact(16).enumerate() {
        scales[j] = make_qx_quants_rmse(32, xs, &mut levels[16 * j..16 * (j + 1)]);
        let a = scales[j].abs();
        if a > max_abs_scale {
            max_abs_scale = a;
            max_scale = scales[j];
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        y.fill(0);
        return;
    }

    let (ql, rest) = y.split_at_mut(128);
    let (qh, rest) = rest.split_at_mut(64);
    let (packed, d_out) = rest.split_at_mut(16);
    let iscale = -128.0 / max_scale;
    let d = f16_bits(1.0 / iscale);
    put_f16(d_out, d);
    for (p, &s) in packed.iter_mut().zip(&scales) {
        *p = nearest_int(iscale * s).min(127) as u8;
    }

    for (j, xs) in x.chunks_exact(16).enumerate() {
        let dl = f16_value(d) * packed[j] as i8 as f32;
        if dl == 0.0 {
            continue;
        }
        for (o, &v) in levels[16 * j..].iter_mut().zip(xs) {
            *o = nearest_int(v / dl).clamp(-32, 31) as i8 + 32;
        }
    }

    // Per 128 values: low nibbles of 0-31 | 64-95 and 32-63 | 96-127 in 64
    // bytes of ql; the high 2 bits of l, l+32, l+64, l+96 in one qh byte.
    for ((quarter, ql), qh) in levels
        .chunks_exact(128)
        .zip(ql.chunks_exact_mut(64))
        .zip(qh.chunks_exact_mut(32))
    {
        let q = |i: usize| quarter[i] as u8;
        for l in 0..32 {
            ql[l] = (q(l) & 0xf) | ((q(l + 64) & 0xf) << 4);
            ql[l + 32] = (q(l + 32) & 0xf) | ((q(l + 96) & 0xf) << 4);
            qh[l] = (q(l) >> 4)
                | ((q(l + 32) >> 4) << 2)
                | ((q(l + 64) >> 4) << 4)
                | ((q(l + 96) >> 4) << 6);
        }
    }
}
