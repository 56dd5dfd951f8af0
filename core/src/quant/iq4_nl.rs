//! IQ4_NL: blocks of 32 values, each a 4-bit index into a fixed non-linear
//! table of 16 levels, with one f16 scale per block.
//!
//! This is what `llama-quantize` writes (ggml's `quantize_iq4_nl`, which
//! searches 15 scales per block), not ggml's `quantize_row_iq4_nl_ref`
//! (which searches none): the two differ.

use super::check_blocks;
use super::scalar::{f16_bits, put_f16, signed_absmax};
use super::search::GROUP_MAX_EPS;
use crate::error::Result;

/// Values per block.
pub const QK4_NL: usize = 32;
/// Bytes of one IQ4_NL block: f16 `d`, 16 bytes of indices (`j` in the low
/// nibble, `j + 16` in the high one).
pub const IQ4_NL_BYTES: usize = 18;

/// The 16 levels (ggml's `kvalues_iq4nl`).
pub const IQ4_NL_VALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// Scales tried either side of the first guess (ggml's `ntry`).
const NTRY: i32 = 7;

/// Index of the level nearest `x` (`best_index_int8`): below the first or
/// above the last level clamps; otherwise a binary search, and of two
/// equally near levels the upper one. NaN gives the last index.
fn nearest_level(x: f32) -> u8 {
    let v = |i: usize| f32::from(IQ4_NL_VALUES[i]);
    if x <= v(0) {
        return 0;
    }
    if x >= v(15) {
        return 15;
    }
    let (mut lo, mut hi) = (0, 15);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if x < v(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    if x - v(hi - 1) < v(hi) - x {
        hi as u8 - 1
    } else {
        hi as u8
    }
}

/// The x²-weighted least-squares numerator and denominator for the levels
/// nearest `id·x`.
fn fit(x: &[f32], id: f32) -> (f32, f32) {
    let (mut sumqx, mut sumq2) = (0f32, 0f32);
    for &v in x {
        let q = f32::from(IQ4_NL_VALUES[usize::from(nearest_level(id * v))]);
        let w = v * v;
        sumqx += w * q * v;
        sumq2 += w * q * q;
    }
    (sumqx, sumq2)
}

/// Encodes `src` as GGUF IQ4_NL, as `llama-quantize` does without an
/// importance matrix: per 32 values, the scale that maps the element of
/// largest magnitude to level -127 and 15 nearby ones (`(-127 + i) / max`,
/// `i` in -7..=7) are tried, keeping the x²-weighted least-squares scale
/// `d` of the best fit; every value then gets the index of the level
/// nearest `x / d`.
///
/// `src.len()` must be a multiple of 32 and `dst.len()` exactly 18 bytes per
/// 32 values. A block below 1e-15 in magnitude gets `d = 0` and index 8
/// (level 1, the nearest to 0) everywhere.
pub fn quantize_iq4_nl(src: &[f32], dst: &mut [u8]) -> Result<()> {
    check_blocks(src, dst, QK4_NL, IQ4_NL_BYTES)?;
    for (x, y) in src
        .chunks_exact(QK4_NL)
        .zip(dst.chunks_exact_mut(IQ4_NL_BYTES))
    {
        let (amax, max) = signed_absmax(x);
        let mut d = 0f32;
        if amax >= GROUP_MAX_EPS {
            let first = f32::from(IQ4_NL_VALUES[0]);
            let (sumqx, sumq2) = fit(x, 1.0 / (-max / first));
            d = sumqx / sumq2;
            let mut best = d * sumqx;
            for step in -NTRY..=NTRY {
                let (sumqx, sumq2) = fit(x, (step + i32::from(IQ4_NL_VALUES[0])) as f32 / max);
                if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
                    d = sumqx / sumq2;
                    best = d * sumqx;
                }
            }
        }
        put_f16(&mut y[..2], f16_bits(d));
        // Levels against the unrounded scale, as ggml does.
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for j in 0..QK4_NL / 2 {
            y[2 + j] = nearest_level(id * x[j]) | (nearest_level(id * x[j + QK4_NL / 2]) << 4);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_level_ties_and_ends() {
        assert_eq!(nearest_level(-1000.0), 0);
        assert_eq!(nearest_level(1000.0), 15);
        assert_eq!(nearest_level(0.0), 8);
        assert_eq!(nearest_level(-5.0), 7); // -10 is nearer than 1
        assert_eq!(nearest_level(-4.5), 8); // halfway between -10 and 1
                                            // Exactly halfway between 1 and 13: the upper one.
        assert_eq!(nearest_level(7.0), 9);
        assert_eq!(nearest_level(6.9), 8);
        assert_eq!(nearest_level(f32::NAN), 15);
    }
}
