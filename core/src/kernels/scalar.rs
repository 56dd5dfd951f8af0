//! The scalar reference kernels: plain Rust, any target, any alignment.
//!
//! Every faster kernel set is tested against these and gives bit-identical
//! results: the SIMD sets reproduce exactly the structure written here
//! (interleaved partial sums updated without fused multiply-add for F32,
//! with it for F16, fixed
//! reduction trees [`reduce16`] and [`reduce8`], exact `i32` block dot
//! products).

use super::{check_mat, Act, Acts, Kernels, ValueRows};
use crate::repack::value_at;
use crate::tensor::{BAND, QK};

/// The scalar kernel set.
pub static KERNELS: Kernels = Kernels {
    name: "scalar",
    f32: mat_f32,
    f16: mat_f16,
    q8_0: mat_q8_0,
    q4_0: mat_q4_0,
    q8_0x16: mat_q8_0x16,
    q4_0x16: mat_q4_0x16,
    fast_interleaved: false,
    quantize,
    weighted_sum,
};

/// IEEE half to single precision.
#[inline]
pub fn f16_to_f32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// Element `i` of a little-endian f32 array stored as bytes.
#[inline]
pub fn f32_at(bytes: &[u8], i: usize) -> f32 {
    let b = &bytes[4 * i..4 * i + 4];
    f32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Sums eight partial sums in the fixed tree order every kernel set uses:
/// `((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7))`.
#[inline]
pub fn reduce8(a: [f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
}

/// Sums sixteen partial sums: lanes `j` and `j + 8` first, then [`reduce8`].
#[inline]
pub fn reduce16(a: [f32; 16]) -> f32 {
    let mut t = [0f32; 8];
    for (j, t) in t.iter_mut().enumerate() {
        *t = a[j] + a[j + 8];
    }
    reduce8(t)
}

/// F32 row times f32 activations: element `i` goes to partial sum `i % 16`
/// (sixteen, so that a SIMD row has two independent chains of additions).
pub fn dot_f32(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    for (i, (w, &x)) in row.chunks_exact(4).zip(x).enumerate() {
        let w = f32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        acc[i % 16] += w * x;
    }
    reduce16(acc)
}

/// F16 row times f32 activations: element `i` goes to partial sum `i % 16`,
/// updated by a *fused* multiply-add (`fma(w, x, acc)`, one rounding), which
/// every SIMD set has in hardware: half the floating-point operations of a
/// product and a sum, which is what prefill's F16 matrix products are bound
/// by. (F32 rows keep the unfused form, cheap for FPUs without FMA.)
pub fn dot_f16(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    for (i, (w, &x)) in row.chunks_exact(2).zip(x).enumerate() {
        let w = f16_to_f32(u16::from_le_bytes([w[0], w[1]]));
        acc[i % 16] = libm::fmaf(w, x, acc[i % 16]);
    }
    reduce16(acc)
}

/// Q8_0 row times int8 activation blocks: block `b`'s exact dot product,
/// scaled by `d_w * d_a`, goes to partial sum `b % 8`.
pub fn dot_q8_0(row: &[u8], a: &Act) -> f32 {
    let mut acc = [0f32; 8];
    for (b, blk) in row.chunks_exact(34).enumerate() {
        let d = f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
        let q = &a.q[b * QK..(b + 1) * QK];
        let mut dot = 0i32;
        for (&w, &x) in blk[2..].iter().zip(q) {
            dot += (w as i8) as i32 * x as i32;
        }
        acc[b % 8] += (d * a.d[b]) * dot as f32;
    }
    reduce8(acc)
}

/// Q4_0 row times int8 activation blocks: block `b`'s exact dot product
/// `sum(nibble * q) - 8 sum(q)`, scaled by `d_w * d_a`, goes to partial sum
/// `b % 8`.
pub fn dot_q4_0(row: &[u8], a: &Act) -> f32 {
    let mut acc = [0f32; 8];
    for (b, blk) in row.chunks_exact(18).enumerate() {
        let d = f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
        // Byte j holds element j (low nibble) and element j + 16 (high).
        let (lo, hi) = a.q[b * QK..(b + 1) * QK].split_at(QK / 2);
        let mut dot = 0i32;
        for ((&w, &x0), &x1) in blk[2..].iter().zip(lo).zip(hi) {
            dot += (w & 0x0f) as i32 * x0 as i32 + (w >> 4) as i32 * x1 as i32;
        }
        acc[b % 8] += (d * a.d[b]) * (dot - 8 * a.sum[b]) as f32;
    }
    reduce8(acc)
}

/// Applies a row kernel to every (row, vector) pair: the [`MatFn`] contract,
/// `out[c * rows + r] = dot(row r, vector c)`.
///
/// [`MatFn`]: super::MatFn
fn mat_rows(
    w: &[u8],
    a: &Acts,
    out: &mut [f32],
    rows: usize,
    rb: usize,
    dot: fn(&[u8], &Act) -> f32,
) {
    for c in 0..a.n {
        let act = a.get(c);
        for (r, o) in out[c * rows..(c + 1) * rows].iter_mut().enumerate() {
            *o = dot(&w[r * rb..(r + 1) * rb], &act);
        }
    }
}

/// F32 weights times f32 activations (the [`MatFn`](super::MatFn) contract).
pub fn mat_f32(w: &[u8], a: &Acts, out: &mut [f32]) {
    let rows = check_mat(w, a, out, 1, 4, false);
    mat_rows(w, a, out, rows, a.cols * 4, |row, a| dot_f32(row, a.x));
}

/// F16 weights times f32 activations (the [`MatFn`](super::MatFn) contract).
pub fn mat_f16(w: &[u8], a: &Acts, out: &mut [f32]) {
    let rows = check_mat(w, a, out, 1, 2, false);
    mat_rows(w, a, out, rows, a.cols * 2, |row, a| dot_f16(row, a.x));
}

/// Q8_0 weights times int8 activations (the [`MatFn`](super::MatFn) contract).
pub fn mat_q8_0(w: &[u8], a: &Acts, out: &mut [f32]) {
    let rows = check_mat(w, a, out, QK, 34, true);
    mat_rows(w, a, out, rows, a.cols / QK * 34, dot_q8_0);
}

/// Q4_0 weights times int8 activations (the [`MatFn`](super::MatFn) contract).
pub fn mat_q4_0(w: &[u8], a: &Acts, out: &mut [f32]) {
    let rows = check_mat(w, a, out, QK, 18, true);
    mat_rows(w, a, out, rows, a.cols / QK * 18, dot_q4_0);
}

/// Interleaved Q8_0 ([`TensorType::Q8_0x16`]) or Q4_0 weights times int8
/// activations: row `r` sums its blocks in order, `acc + (d_w * d_a) * dot`,
/// with `dot` the block's exact dot product (values `byte - 128` for Q8_0,
/// `nibble - 8` for Q4_0, the offset taken out as `offset * sum(q)`).
///
/// [`TensorType::Q8_0x16`]: crate::tensor::TensorType::Q8_0x16
fn mat_x16(w: &[u8], a: &Acts, out: &mut [f32], rows: usize, q4: bool) {
    assert!(
        rows.is_multiple_of(BAND),
        "kernel: rows are not whole bands"
    );
    let nb = a.cols / QK;
    let ub = BAND * if q4 { 18 } else { 34 };
    let offset = if q4 { 8 } else { 128 };
    for c in 0..a.n {
        let act = a.get(c);
        let out = &mut out[c * rows..(c + 1) * rows];
        for (band, out) in w.chunks_exact(nb * ub).zip(out.chunks_exact_mut(BAND)) {
            for (r, o) in out.iter_mut().enumerate() {
                let mut acc = 0f32;
                for (k, unit) in band.chunks_exact(ub).enumerate() {
                    let d = f16_to_f32(u16::from_le_bytes([unit[2 * r], unit[2 * r + 1]]));
                    let q = &act.q[k * QK..(k + 1) * QK];
                    let mut dot = -offset * act.sum[k];
                    for i in 0..ub / BAND - 2 {
                        let v = unit[value_at(r, i)] as i32;
                        if q4 {
                            // Byte i holds element i (low nibble) and i + 16.
                            dot += (v & 0x0f) * q[i] as i32 + (v >> 4) * q[i + QK / 2] as i32;
                        } else {
                            dot += v * q[i] as i32;
                        }
                    }
                    acc += (d * act.d[k]) * dot as f32;
                }
                *o = acc;
            }
        }
    }
}

/// Interleaved Q8_0 weights times int8 activations (the
/// [`MatFn`](super::MatFn) contract).
pub fn mat_q8_0x16(w: &[u8], a: &Acts, out: &mut [f32]) {
    let rows = check_mat(w, a, out, QK, 34, true);
    mat_x16(w, a, out, rows, false);
}

/// Interleaved Q4_0 weights times int8 activations (the
/// [`MatFn`](super::MatFn) contract).
pub fn mat_q4_0x16(w: &[u8], a: &Acts, out: &mut [f32]) {
    let rows = check_mat(w, a, out, QK, 18, true);
    mat_x16(w, a, out, rows, true);
}

/// llama2.c "version 2" row (int8 + f32 group scales) times f32 activations.
/// `r` is the row's index, to find its scales.
pub fn dot_q8_split(row: &[u8], scales: &[u8], r: usize, group: u32, x: &[f32]) -> f32 {
    let g = group as usize;
    let first = r * row.len() / g;
    let mut sum = 0f32;
    for (k, (w, x)) in row.chunks_exact(g).zip(x.chunks_exact(g)).enumerate() {
        let mut acc = 0f32;
        for (&w, &x) in w.iter().zip(x) {
            acc += (w as i8) as f32 * x;
        }
        sum += acc * f32_at(scales, first + k);
    }
    sum
}

/// Attention's weighted sum of value rows: `out[i] = sum over t of att[t] *
/// v[t][i]`, with `v` the `att.len()` rows of `out.len()` values. Each
/// element is summed in order of `t` as `acc + a * v` (a rounded product,
/// then a rounded sum), so any vector width gives the same bits.
#[inline]
pub fn weighted_sum(att: &[f32], v: ValueRows, out: &mut [f32]) {
    weighted_sum_rows(att, v, out)
}

/// [`weighted_sum`]'s body, inlined into the SIMD sets' wrappers, where the
/// compiler vectorises it with their vector width.
#[inline(always)]
pub(crate) fn weighted_sum_rows(att: &[f32], v: ValueRows, out: &mut [f32]) {
    match v {
        ValueRows::F32(v) => weighted_sum_of(att, v, out, |x: &f32| *x),
        ValueRows::F16(v) => weighted_sum_of(att, v, out, |h: &u16| f16_bits_to_f32(*h)),
    }
}

/// [`weighted_sum`] over rows of `T`, decoded by `get`: 16 outputs at a
/// time stay in registers while the rows go by.
#[inline(always)]
fn weighted_sum_of<T>(att: &[f32], v: &[T], out: &mut [f32], get: impl Fn(&T) -> f32) {
    let n = out.len();
    assert!(v.len() >= att.len() * n, "weighted_sum: values too short");
    let mut chunks = out.chunks_exact_mut(16);
    for (c, chunk) in chunks.by_ref().enumerate() {
        let mut acc = [0f32; 16];
        for (t, &a) in att.iter().enumerate() {
            let row: &[T; 16] = v[t * n + 16 * c..][..16].try_into().unwrap();
            for (acc, x) in acc.iter_mut().zip(row) {
                *acc += a * get(x);
            }
        }
        chunk.copy_from_slice(&acc);
    }
    let rest = chunks.into_remainder();
    let first = n - rest.len();
    rest.fill(0.0);
    for (t, &a) in att.iter().enumerate() {
        for (o, x) in rest.iter_mut().zip(&v[t * n + first..t * n + n]) {
            *o += a * get(x);
        }
    }
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

/// Quantizes blocks of 32 activations: `d = max|x| / 127`, `q = round(x / d)`
/// (rounding half away from zero; NaN becomes 0), and `sum = sum(q)`.
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
            s += *o as i32;
        }
        d[b] = scale;
        sum[b] = s;
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
    fn f16_bits_to_f32_is_exact() {
        for h in 0..=u16::MAX {
            let want = half::f16::from_bits(h).to_f32();
            assert_eq!(f16_bits_to_f32(h).to_bits(), want.to_bits(), "{h:#06x}");
        }
    }

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
