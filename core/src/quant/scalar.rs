//! The scalar conversions ggml's quantizers rely on, reproduced bit for bit.
//!
//! ggml's reference quantizers are plain C on `float`: every operation is a
//! single IEEE f32 operation (x86-64 SSE, no FMA contraction), so Rust f32
//! arithmetic written in the same order gives the same bits. What needs care
//! are the conversions, collected here.

/// ggml's `nearest_int`: adds 1.5 * 2^23 and reads the low mantissa bits.
///
/// For |x| < 2^22 this is `x` rounded to nearest, ties to even. Outside that
/// range (and for NaN or infinities) it is whatever the bit pattern gives,
/// as in ggml (where an `assert` compiled out in release builds guards it):
/// a number in `-2^22 ..= 2^22 - 1`, never a panic.
#[inline]
pub(crate) fn nearest_int(x: f32) -> i32 {
    let biased = x + 12_582_912.0;
    (biased.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// C's `(int)x` for a float as x86-64 computes it (`cvttss2si`): toward
/// zero, and `i32::MIN` (the "integer indefinite") for NaN and for values
/// outside the `int` range, where C leaves the result undefined.
///
/// ggml's legacy quantizers convert straight to 8-bit integers
/// (`(int8_t)(x + 8.5f)`); compilers do that through this 32-bit
/// conversion and keep the low byte, which callers get with `as i8` / `as
/// u8`. Rust's own `as` saturates instead, which would differ off range.
#[inline]
pub(crate) fn c_float_to_int(x: f32) -> i32 {
    // -2^31 is representable; the next f32 below it is -2^31 - 256.
    if x > -2_147_483_904.0 && x < 2_147_483_648.0 {
        x as i32
    } else {
        i32::MIN
    }
}

/// `GGML_FP32_TO_FP16` (ggml's portable conversion, the one its reference
/// quantizers use on x86-64): round to nearest even, overflow to infinity,
/// subnormals kept, and every NaN to the quiet NaN `0x7e00` with the sign
/// of the input (the payload is dropped).
#[inline]
pub(crate) fn f16_bits(x: f32) -> u16 {
    if x.is_nan() {
        ((x.to_bits() >> 16) as u16 & 0x8000) | 0x7e00
    } else {
        half::f16::from_f32(x).to_bits()
    }
}

/// `GGML_FP16_TO_FP32`: exact.
#[inline]
pub(crate) fn f16_value(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// Writes a `ggml_half` at `out[0..2]`, little-endian.
#[inline]
pub(crate) fn put_f16(out: &mut [u8], bits: u16) {
    out[..2].copy_from_slice(&bits.to_le_bytes());
}

/// The element of largest magnitude (the first of equal ones) and that
/// magnitude: ggml's `if (fabsf(x) > amax) { amax = fabsf(x); max = x; }`
/// scan from `amax = max = 0`, so NaN never wins and an all-NaN or all-zero
/// group gives `(0, 0)`.
#[inline]
pub(crate) fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        let a = v.abs();
        if a > amax {
            amax = a;
            max = v;
        }
    }
    (amax, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        for (x, want) in [
            (0.5f32, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (-2.5, -2),
            (0.49999997, 0),
            (3.7, 4),
            (-3.7, -4),
            (-0.0, 0),
            (4_194_303.0, 4_194_303),
            (-4_194_303.0, -4_194_303),
        ] {
            assert_eq!(nearest_int(x), want, "{x}");
        }
        // Off range: deterministic, in range, no panic.
        for x in [f32::NAN, f32::INFINITY, -f32::INFINITY, 1e30, -1e30] {
            let q = nearest_int(x);
            assert!((-(1 << 22)..(1 << 22)).contains(&q), "{x} -> {q}");
        }
    }

    #[test]
    fn c_conversion_is_x86_truncation() {
        assert_eq!(c_float_to_int(8.9), 8);
        assert_eq!(c_float_to_int(-8.9), -8);
        assert_eq!(c_float_to_int(-2_147_483_648.0), i32::MIN);
        assert_eq!(c_float_to_int(2_147_483_520.0), 2_147_483_520);
        assert_eq!(c_float_to_int(f32::NAN), i32::MIN);
        assert_eq!(c_float_to_int(f32::INFINITY), i32::MIN);
        assert_eq!(c_float_to_int(3e9), i32::MIN);
        // (int8_t) of 200.0f: the low byte of 200, i.e. -56.
        assert_eq!(c_float_to_int(200.0) as i8, -56);
    }

    #[test]
    fn f16_conversion_matches_ggml() {
        assert_eq!(f16_bits(1.0), 0x3c00);
        assert_eq!(f16_bits(-0.0), 0x8000);
        assert_eq!(f16_bits(65504.0), 0x7bff);
        assert_eq!(f16_bits(65520.0), 0x7c00); // rounds up to infinity
        assert_eq!(f16_bits(1e-8), 0x0000); // below half the smallest subnormal
        assert_eq!(f16_bits(6e-8), 0x0001); // smallest subnormal, ~5.96e-8
        assert_eq!(f16_bits(f32::NAN), 0x7e00);
        assert_eq!(f16_bits(-f32::NAN), 0xfe00);
        assert_eq!(f16_bits(f32::from_bits(0x7f80_0001)), 0x7e00);
        // Ties to even: 1 + 2^-11 is halfway between 1 and 1 + 2^-10.
        assert_eq!(f16_bits(1.0 + 1.0 / 2048.0), 0x3c00);
        assert_eq!(f16_bits(1.0 + 3.0 / 2048.0), 0x3c02);
        assert_eq!(f16_value(0x3555), f16_value(f16_bits(f16_value(0x3555))));
    }

    #[test]
    fn absmax_keeps_the_first_and_skips_nan() {
        assert_eq!(signed_absmax(&[1.0, -2.0, 2.0]), (2.0, -2.0));
        assert_eq!(signed_absmax(&[f32::NAN, -1.0]), (1.0, -1.0));
        assert_eq!(signed_absmax(&[0.0, -0.0]), (0.0, 0.0));
    }
}
