//! The 16-bit float types as ggml writes them: BF16
//! (`ggml_compute_fp32_to_bf16`) and F16 (`GGML_FP32_TO_FP16`).

use super::check_blocks;
use super::scalar::f16_bits;
use crate::error::Result;

/// `ggml_compute_fp32_to_bf16`: the top 16 bits of the f32, rounded to
/// nearest even (so large finite values may round to infinity); a NaN keeps
/// its sign and top payload bits and is forced quiet (bit 6 set), so it
/// never becomes an infinity. Subnormals are kept, not flushed.
pub fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if bits & 0x7fff_ffff > 0x7f80_0000 {
        return ((bits >> 16) | 64) as u16;
    }
    (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// Encodes `src` as GGUF BF16 ([`f32_to_bf16`] each, little-endian):
/// `dst.len()` must be exactly `2 * src.len()`.
pub fn quantize_bf16(src: &[f32], dst: &mut [u8]) -> Result<()> {
    check_blocks(src, dst, 1, 2)?;
    for (o, &x) in dst.chunks_exact_mut(2).zip(src) {
        o.copy_from_slice(&f32_to_bf16(x).to_le_bytes());
    }
    Ok(())
}

/// Encodes `src` as GGUF F16 as ggml does (round to nearest even, overflow
/// to infinity, subnormals kept, every NaN to `0x7e00` with its sign):
/// `dst.len()` must be exactly `2 * src.len()`.
///
/// [`super::quantize_row`]'s F16 differs only for NaN, whose payload it
/// keeps.
pub fn quantize_f16(src: &[f32], dst: &mut [u8]) -> Result<()> {
    check_blocks(src, dst, 1, 2)?;
    for (o, &x) in dst.chunks_exact_mut(2).zip(src) {
        o.copy_from_slice(&f16_bits(x).to_le_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_special_values() {
        for (x, want) in [
            (0.0f32, 0x0000u16),
            (-0.0, 0x8000),
            (1.0, 0x3f80),
            (-2.0, 0xc000),
            (f32::INFINITY, 0x7f80),
            (-f32::INFINITY, 0xff80),
            // The quiet NaN keeps its bits; a signalling one is quietened.
            (f32::NAN, 0x7fc0),
            (f32::from_bits(0xffc0_0000), 0xffc0),
            (f32::from_bits(0x7f80_0001), 0x7fc0),
            (f32::from_bits(0x7f81_0000), 0x7fc1),
            // A NaN whose payload is only in the low bits stays a NaN.
            (f32::from_bits(0x7f80_0100), 0x7fc0),
            // Ties to even: 0x3f80_8000 is halfway, 0x3f80 is even.
            (f32::from_bits(0x3f80_8000), 0x3f80),
            (f32::from_bits(0x3f81_8000), 0x3f82),
            (f32::from_bits(0x3f80_8001), 0x3f81),
            (f32::from_bits(0x3f80_7fff), 0x3f80),
            // The largest finite f32 rounds to infinity.
            (f32::MAX, 0x7f80),
            (-f32::MAX, 0xff80),
            // Subnormals round like any other value.
            (f32::from_bits(0x0000_8000), 0x0000),
            (f32::from_bits(0x0001_8000), 0x0002),
            (f32::from_bits(0x8000_c000), 0x8001),
        ] {
            assert_eq!(f32_to_bf16(x), want, "{:#010x}", x.to_bits());
        }
    }

    #[test]
    fn rows_are_little_endian_and_checked() {
        let mut out = [0u8; 4];
        quantize_bf16(&[1.0, -2.0], &mut out).unwrap();
        assert_eq!(out, [0x80, 0x3f, 0x00, 0xc0]);
        quantize_f16(&[1.0, f32::NAN], &mut out).unwrap();
        assert_eq!(out, [0x00, 0x3c, 0x00, 0x7e]);
        assert!(quantize_bf16(&[1.0], &mut out).is_err());
        assert!(quantize_f16(&[1.0; 3], &mut out).is_err());
        quantize_bf16(&[], &mut []).unwrap();
    }
}
