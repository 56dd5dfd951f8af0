//! The small numeric functions of the forward pass and the sampler: RMS
//! normalisation, softmax and a fast exponential.

/// `o = weight * x / rms(x)`, with `weight` the F32 norm vector's bytes
/// (little-endian, any alignment).
pub fn rmsnorm(o: &mut [f32], x: &[f32], weight: &[u8], eps: f32) {
    let mut ss = 0f32;
    for v in x {
        ss += v * v;
    }
    ss /= x.len() as f32;
    ss += eps;
    let inv = 1.0 / libm::sqrtf(ss);
    for ((o, &x), w) in o.iter_mut().zip(x).zip(weight.chunks_exact(4)) {
        *o = f32::from_le_bytes([w[0], w[1], w[2], w[3]]) * (inv * x);
    }
}

/// In-place softmax, exactly as llama2.c computes it (the sampler's).
pub fn softmax(x: &mut [f32]) {
    let max = x
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = libm::expf(*v - max);
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// In-place softmax with the fast exponential (attention scores).
pub fn softmax_fast(x: &mut [f32]) {
    let max = x
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    // The exponentials in a loop of their own, which vectorises, then the
    // sum in order.
    for v in x.iter_mut() {
        *v = exp_fast(*v - max);
    }
    let sum = x.iter().fold(0f32, |s, &v| s + v);
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// `e^x` to within 2 ulp for `x` in [-87, 88] (0 below, e^88 above), with no
/// branches or calls so that loops over it vectorise. Cephes' `expf`
/// polynomial after the usual reduction `x = n ln 2 + r`, `|r| <= ln(2) / 2`.
#[inline(always)]
pub fn exp_fast(x: f32) -> f32 {
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let underflow = x < -87.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let y = p * r * r + r + 1.0;
    // 2^n from the rounded integer's bits: n + 127 into the exponent field.
    let ni = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let scale = f32::from_bits(((ni + 127) << 23) as u32);
    if underflow {
        0.0
    } else {
        y * scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_fast_is_within_two_ulp_of_libm() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = libm::expf(x);
            let got = exp_fast(x);
            let ulp = f32::from_bits(want.to_bits() + 1) - want;
            worst = worst.max((got - want).abs() / ulp);
            x += 0.000_97;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp_fast(-1000.0), 0.0);
        assert_eq!(exp_fast(0.0), 1.0);
        assert!(exp_fast(1000.0).is_finite());
    }
}
