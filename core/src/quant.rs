//! Row quantizers: f32 rows into the stored weight types.
//!
//! These follow ggml's reference quantizers, so files written with them load
//! in llama.cpp and vice versa:
//! - Q8_0: `d = max|x| / 127`, `q = round(x / d)`;
//! - Q4_0: `m` is the element of largest magnitude (with its sign),
//!   `d = m / -8`, `q = min(15, trunc(x / d + 8.5))`, two per byte (element
//!   `j` in the low nibble, `j + 16` in the high one);
//! - F16: round to nearest even.
//!
//! [`quantize_row`] is the readable reference; [`quantize_row_fast`] writes
//! the same bytes faster (Q8_0 through the SIMD activation quantizer of the
//! active kernel set, Q4_0 in loops that vectorise).
//!
//! The other GGUF types are written byte for byte as llama.cpp's
//! `llama-quantize` writes them without an importance matrix (ggml of
//! February 2025): [`legacy`] (Q4_1, Q5_0, Q5_1), [`k_quants`] (Q2_K to
//! Q6_K), [`iq4_nl`], [`float`] (BF16, and F16 as ggml rounds NaN), all
//! reachable by type through [`quantize_row`]. [`ftype`] is llama.cpp's choice
//! of a type per tensor for a file type (Q4_K_M ...).

pub mod float;
pub mod ftype;
pub mod iq4_nl;
pub mod k_quants;
pub mod legacy;
mod scalar;
mod search;

pub use float::{f32_to_bf16, quantize_bf16, quantize_f16};
pub use ftype::{FileType, ModelInfo};
pub use iq4_nl::quantize_iq4_nl;
pub use k_quants::{quantize_q2_k, quantize_q3_k, quantize_q4_k, quantize_q5_k, quantize_q6_k};
pub use legacy::{quantize_q4_1, quantize_q5_0, quantize_q5_1};

use crate::error::{Error, Result};
use crate::kernels::{TensorType, QK};

/// Bytes that `n` elements take as `ty` (`n` a multiple of the block length).
pub fn row_bytes(ty: TensorType, n: usize) -> Result<usize> {
    if !n.is_multiple_of(ty.block_len()) {
        return Err(Error::InvalidArgument {
            what: "row length must be a multiple of the block length (32 for Q8_0 and Q4_0)",
        });
    }
    ty.bytes_for(n).ok_or(Error::InvalidArgument {
        what: "row too long",
    })
}

/// Checks that `dst` is exactly the bytes of `src` encoded as `ty`.
fn check_row(ty: TensorType, src: &[f32], dst: &[u8]) -> Result<()> {
    let need = row_bytes(ty, src.len())?;
    if dst.len() != need {
        return Err(Error::BufferTooSmall {
            what: "quantized row (bytes)",
            needed: need,
            got: dst.len(),
        });
    }
    Ok(())
}

/// Checks that `src` is whole blocks of `block_len` values and `dst`
/// exactly `block_bytes` per block.
fn check_blocks(src: &[f32], dst: &[u8], block_len: usize, block_bytes: usize) -> Result<()> {
    if !src.len().is_multiple_of(block_len) {
        return Err(Error::InvalidArgument {
            what: "row length must be a multiple of the type's block length",
        });
    }
    let need = (src.len() / block_len)
        .checked_mul(block_bytes)
        .ok_or(Error::InvalidArgument {
            what: "row too long",
        })?;
    if dst.len() != need {
        return Err(Error::BufferTooSmall {
            what: "quantized row (bytes)",
            needed: need,
            got: dst.len(),
        });
    }
    Ok(())
}

/// Encodes `src` as `ty` into `dst`, which must be exactly
/// [`row_bytes`]`(ty, src.len())` long: the bytes llama.cpp's
/// `llama-quantize` writes without an importance matrix.
///
/// F32 is copied; F16 and BF16 are rounded to nearest even
/// ([`quantize_f16`], [`quantize_bf16`]); Q8_0 and Q4_0 follow ggml's
/// reference quantizers (below); the others go through their `quantize_*`
/// function.
///
/// Q8_0 and Q4_0 agree with ggml on finite rows (the Q4_0 file of the
/// llama.cpp tests is identical) but not in every corner of non-finite
/// ones: Q8_0 ignores a NaN that ggml's `MAX` would keep as the block
/// maximum when it comes last, and Q4_0 saturates the levels of a block
/// whose inverse scale overflows (largest magnitude below about 1e-44)
/// where ggml's x86-64 conversion gives level 0.
pub fn quantize_row(ty: TensorType, src: &[f32], dst: &mut [u8]) -> Result<()> {
    check_row(ty, src, dst)?;
    match ty {
        TensorType::F32 => {
            for (d, &x) in dst.chunks_exact_mut(4).zip(src) {
                d.copy_from_slice(&x.to_le_bytes());
            }
        }
        TensorType::F16 => return quantize_f16(src, dst),
        TensorType::BF16 => return quantize_bf16(src, dst),
        TensorType::Q4_1 => return quantize_q4_1(src, dst),
        TensorType::Q5_0 => return quantize_q5_0(src, dst),
        TensorType::Q5_1 => return quantize_q5_1(src, dst),
        TensorType::Q2_K => return quantize_q2_k(src, dst),
        TensorType::Q3_K => return quantize_q3_k(src, dst),
        TensorType::Q4_K => return quantize_q4_k(src, dst),
        TensorType::Q5_K => return quantize_q5_k(src, dst),
        TensorType::Q6_K => return quantize_q6_k(src, dst),
        TensorType::IQ4_NL => return quantize_iq4_nl(src, dst),
        TensorType::Q8_0 => {
            for (blk, xs) in dst.chunks_exact_mut(34).zip(src.chunks_exact(QK)) {
                let amax = xs.iter().fold(0f32, |m, x| m.max(x.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                blk[..2].copy_from_slice(&half::f16::from_f32(d).to_bits().to_le_bytes());
                for (q, &x) in blk[2..].iter_mut().zip(xs) {
                    *q = libm::roundf(x * id) as i8 as u8;
                }
            }
        }
        TensorType::Q4_0 => {
            for (blk, xs) in dst.chunks_exact_mut(18).zip(src.chunks_exact(QK)) {
                let mut max = 0f32;
                for &x in xs {
                    if x.abs() > max.abs() {
                        max = x;
                    }
                }
                let d = max / -8.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                blk[..2].copy_from_slice(&half::f16::from_f32(d).to_bits().to_le_bytes());
                let q = |x: f32| ((x * id + 8.5) as i32).clamp(0, 15) as u8;
                for j in 0..QK / 2 {
                    blk[2 + j] = q(xs[j]) | (q(xs[j + QK / 2]) << 4);
                }
            }
        }
        TensorType::Q8Split { .. } => {
            return Err(Error::InvalidArgument {
                what: "llama2.c's split int8 layout is read-only",
            })
        }
        TensorType::Q8_0x16
        | TensorType::Q4_0x16
        | TensorType::Q4_Kx16
        | TensorType::Q5_Kx16
        | TensorType::F16x16 => {
            return Err(Error::InvalidArgument {
                what: "interleaved layouts are made by repack, not row by row",
            })
        }
    }
    Ok(())
}

/// [`quantize_row`], bit for bit, faster: Q8_0 through the active kernel
/// set's activation quantizer (the same `d = max|x| / 127`, `q = round(x /
/// d)`, rounding half away from zero), Q4_0 in two vectorisable passes per
/// block (the largest magnitude, then the first element that has it, for
/// its sign); the other types as the reference.
pub fn quantize_row_fast(ty: TensorType, src: &[f32], dst: &mut [u8]) -> Result<()> {
    match ty {
        TensorType::Q8_0 | TensorType::Q4_0 => {}
        _ => return quantize_row(ty, src, dst),
    }
    check_row(ty, src, dst)?;
    if ty == TensorType::Q8_0 {
        // A few blocks at a time through the SIMD quantizer.
        const CHUNK: usize = 16;
        let quantize = crate::kernels::active().quantize;
        for (xs, out) in src.chunks(CHUNK * QK).zip(dst.chunks_mut(CHUNK * 34)) {
            let nb = xs.len() / QK;
            let (mut d, mut sum, mut q) = ([0f32; CHUNK], [0i32; CHUNK], [0i8; CHUNK * QK]);
            quantize(xs, &mut d[..nb], &mut sum[..nb], &mut q[..xs.len()]);
            for (b, blk) in out.chunks_exact_mut(34).enumerate() {
                blk[..2].copy_from_slice(&half::f16::from_f32(d[b]).to_bits().to_le_bytes());
                for (o, &v) in blk[2..].iter_mut().zip(&q[b * QK..(b + 1) * QK]) {
                    *o = v as u8;
                }
            }
        }
        return Ok(());
    }
    for (blk, xs) in dst.chunks_exact_mut(18).zip(src.chunks_exact(QK)) {
        // The reference keeps the first element of largest magnitude: find
        // the magnitude (NaN never wins a `>`, so skip it), then that element.
        let amax = xs
            .iter()
            .fold(0f32, |m, x| if x.abs() > m { x.abs() } else { m });
        let max = xs.iter().copied().find(|x| x.abs() == amax).unwrap_or(0.0);
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        blk[..2].copy_from_slice(&half::f16::from_f32(d).to_bits().to_le_bytes());
        let mut q = [0u8; QK];
        for (q, &x) in q.iter_mut().zip(xs) {
            *q = ((x * id + 8.5) as i32).clamp(0, 15) as u8;
        }
        for j in 0..QK / 2 {
            blk[2 + j] = q[j] | (q[j + QK / 2] << 4);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Tensor;

    fn roundtrip(ty: TensorType, src: &[f32]) -> ([f32; 64], usize) {
        let mut bytes = [0u8; 256];
        let n = row_bytes(ty, src.len()).unwrap();
        quantize_row(ty, src, &mut bytes[..n]).unwrap();
        let t = Tensor::new(b"t", ty, 1, src.len(), &bytes[..n], &[]).unwrap();
        let mut out = [0f32; 64];
        t.dequantize_row(0, &mut out[..src.len()]);
        (out, n)
    }

    #[test]
    fn quantizers_round_trip_within_their_step() {
        let src: [f32; 64] = core::array::from_fn(|i| ((i as f32) * 0.37).sin() * 3.0);
        for (ty, bytes, step) in [
            (TensorType::F32, 256, 0.0),
            (TensorType::F16, 128, 3.0 / 1024.0),
            (TensorType::Q8_0, 68, 3.0 / 127.0),
            (TensorType::Q4_0, 36, 3.0 / 8.0),
        ] {
            let (out, n) = roundtrip(ty, &src);
            assert_eq!(n, bytes, "{ty:?}");
            // Half a quantization step, plus the f16 rounding of the scale
            // (relative 2^-11, times at most |x| <= 3). Q4_0 maps -8..7, so
            // the extreme opposite the largest magnitude clips by up to a step.
            let half_steps = if ty == TensorType::Q4_0 { 2.0 } else { 1.0 };
            let tol = step * 0.5 * half_steps + 3.0 / 2048.0 + 1e-6;
            for (a, b) in src.iter().zip(&out) {
                assert!((a - b).abs() <= tol, "{ty:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn q4_0_layout_matches_ggml() {
        // Block: elements 0..16 = -8..8 step 1 scaled, 16..32 = 0.
        let mut src = [0f32; 32];
        src[0] = -8.0; // the largest magnitude: d = -8 / -8 = 1
        src[1] = 7.0;
        src[16] = 3.0;
        let mut blk = [0u8; 18];
        quantize_row(TensorType::Q4_0, &src, &mut blk).unwrap();
        assert_eq!(
            half::f16::from_bits(u16::from_le_bytes([blk[0], blk[1]])).to_f32(),
            1.0
        );
        assert_eq!(blk[2], 11 << 4); // x0 = -8 -> 0 (low nibble), x16 = 3 -> 11 (high)
        assert_eq!(blk[3] & 0x0f, 15); // x1 = 7 -> 15
    }

    /// Rows of ordinary values, ties of magnitude with both signs, zeros,
    /// NaN, infinities, subnormals and huge values: the fast quantizer
    /// writes the reference's bytes, with every kernel set.
    #[test]
    fn fast_quantizer_writes_the_reference_bytes() {
        let mut seed = 12345u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        let specials = [
            0.0,
            -0.0,
            f32::NAN,
            f32::INFINITY,
            -f32::INFINITY,
            1e-40,
            -3e38,
            0.5,
            -0.5,
        ];
        let mut rows = [[0f32; 96]; 12];
        for (i, row) in rows.iter_mut().enumerate() {
            for (j, x) in row.iter_mut().enumerate() {
                *x = match i {
                    0..=5 => next() * 4.0,
                    // Equal magnitudes of both signs: the first one decides.
                    6 => [2.0, -2.0, 1.0][j % 3],
                    7 => [-2.0, 2.0, 1.0][j % 3],
                    8 => 0.0,
                    _ => specials[(j * 7 + i) % specials.len()] * (j % 5) as f32,
                };
            }
        }
        for set in crate::kernels::available() {
            assert!(crate::kernels::force(set.name));
            for ty in [TensorType::Q8_0, TensorType::Q4_0, TensorType::F16] {
                for (i, row) in rows.iter().enumerate() {
                    let n = row_bytes(ty, row.len()).unwrap();
                    let (mut want, mut got) = ([0u8; 192], [0u8; 192]);
                    quantize_row(ty, row, &mut want[..n]).unwrap();
                    quantize_row_fast(ty, row, &mut got[..n]).unwrap();
                    assert_eq!(want[..n], got[..n], "{} {ty:?} row {i}", set.name);
                }
            }
        }
        crate::kernels::force(crate::kernels::available().last().unwrap().name);
    }

    #[test]
    fn bad_lengths_are_errors() {
        let mut out = [0u8; 34];
        assert!(quantize_row(TensorType::Q8_0, &[0.0; 31], &mut out).is_err());
        assert!(quantize_row(TensorType::Q8_0, &[0.0; 32], &mut out[..33]).is_err());
    }
}
