//! The K-quants: Q2_K, Q3_K, Q4_K, Q5_K and Q6_K, in super-blocks of 256
//! values, times Q8_K activations.
//!
//! A super-block has an f16 scale `d` (and, for Q2_K, Q4_K and Q5_K, an f16
//! `dmin`) and small integer scales (and minimums) per sub-block: 16
//! sub-blocks of 16 values for Q2_K, Q3_K and Q6_K, 8 of 32 for Q4_K and
//! Q5_K. Value `v` of a super-block belongs to sub-block `v / 16` (or
//! `v / 32`); the bit layouts, which interleave the values across bytes, are
//! unpacked by the `unpack_*` functions into plain arrays in value order.
//!
//! # Q8_K activations and the dot products
//!
//! The activations are quantized per super-block of 256 ([`quantize_q8k`],
//! ggml's `quantize_row_q8_K_ref`): one f32 scale, 256 int8 values and the
//! sum of each 16. A row's dot product then keeps every sub-block's scale as
//! an integer: per super-block, `isum = sum_j sc_j * sum(q_w q_a over
//! sub-block j)` and, for the types with minimums, `msum = sum_j m_j *
//! sum(q_a over sub-block j)` are exact `i32`s, and one running f32 sum per
//! row takes, in super-block order,
//!
//! ```text
//! acc = acc + (d * d_a) * isum      (then, with minimums)
//! acc = acc - (dmin * d_a) * msum
//! ```
//!
//! Every kernel set computes exactly this (any exact way to the integers,
//! then these float operations in this order), so their results are
//! bit-identical; an interleaved kernel that keeps one row per vector lane
//! computes the same too.

use bytemuck::{Pod, Zeroable};

use super::{f16_le, QK_K};
use crate::kernels::acts::Act;

/// GGUF's Q2_K block: `x = d * (sc & 15) * q - dmin * (sc >> 4)` per
/// sub-block of 16, `q` in `0..4`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ2K {
    /// Per sub-block: scale (low nibble) and minimum (high nibble).
    pub scales: [u8; 16],
    /// 2-bit values: byte `32 n + l`, bits `2 j..`: value `128 n + 32 j + l`
    /// (see [`unpack_q2_k`]).
    pub qs: [u8; 64],
    /// Super-block scale (f16 bits).
    pub d: [u8; 2],
    /// Super-block scale of the minimums (f16 bits).
    pub dmin: [u8; 2],
}

/// GGUF's Q3_K block: `x = d * (sc - 32) * q` per sub-block of 16, `q` in
/// `-4..4`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ3K {
    /// High bits: a clear bit subtracts 4 from the value.
    pub hmask: [u8; 32],
    /// Low 2 bits.
    pub qs: [u8; 64],
    /// Sixteen 6-bit scales, packed.
    pub scales: [u8; 12],
    /// Super-block scale (f16 bits).
    pub d: [u8; 2],
}

/// GGUF's Q4_K block: `x = d * sc * q - dmin * m` per sub-block of 32, `q`
/// in `0..16`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4K {
    /// Super-block scale (f16 bits).
    pub d: [u8; 2],
    /// Super-block scale of the minimums (f16 bits).
    pub dmin: [u8; 2],
    /// Eight 6-bit scales and eight 6-bit minimums, packed.
    pub scales: [u8; 12],
    /// Nibbles: byte `32 j + l` holds value `64 j + l` (low) and
    /// `64 j + 32 + l` (high).
    pub qs: [u8; 128],
}

/// GGUF's Q5_K block: Q4_K with a fifth bit per value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5K {
    /// Super-block scale (f16 bits).
    pub d: [u8; 2],
    /// Super-block scale of the minimums (f16 bits).
    pub dmin: [u8; 2],
    /// Eight 6-bit scales and eight 6-bit minimums, packed as in Q4_K.
    pub scales: [u8; 12],
    /// Fifth bits: bit `i` of byte `l` belongs to value `32 i + l`.
    pub qh: [u8; 32],
    /// Low nibbles, as Q4_K's.
    pub qs: [u8; 128],
}

/// GGUF's Q6_K block: `x = d * sc * q` per sub-block of 16, `q` in
/// `-32..32`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ6K {
    /// Low 4 bits.
    pub ql: [u8; 128],
    /// High 2 bits.
    pub qh: [u8; 64],
    /// Signed 8-bit scales.
    pub scales: [i8; 16],
    /// Super-block scale (f16 bits).
    pub d: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<BlockQ2K>() == 84);
const _: () = assert!(core::mem::size_of::<BlockQ3K>() == 110);
const _: () = assert!(core::mem::size_of::<BlockQ4K>() == 144);
const _: () = assert!(core::mem::size_of::<BlockQ5K>() == 176);
const _: () = assert!(core::mem::size_of::<BlockQ6K>() == 210);

/// A super-block's values in order (with any offset applied) and its
/// integer sub-block scales and minimums (`N` sub-blocks).
#[derive(Clone, Copy, Debug)]
pub struct Unpacked<const N: usize> {
    /// The 256 values.
    pub q: [i8; QK_K],
    /// Scale of each sub-block.
    pub sc: [i32; N],
    /// Minimum of each sub-block (zero for the types without).
    pub m: [i32; N],
}

/// Q2_K's values (`0..4`), scales and minimums.
pub fn unpack_q2_k(b: &BlockQ2K) -> Unpacked<16> {
    let mut u = Unpacked {
        q: [0; QK_K],
        sc: [0; 16],
        m: [0; 16],
    };
    for n in 0..2 {
        for j in 0..4 {
            for l in 0..32 {
                u.q[128 * n + 32 * j + l] = ((b.qs[32 * n + l] >> (2 * j)) & 3) as i8;
            }
        }
    }
    for (j, &s) in b.scales.iter().enumerate() {
        u.sc[j] = i32::from(s & 0x0f);
        u.m[j] = i32::from(s >> 4);
    }
    u
}

/// Q3_K's sixteen scales, each `0..64` (the value is `scale - 32`).
pub fn q3_k_scales(s: &[u8; 12]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for j in 0..4 {
        out[j] = (s[j] & 0x0f) | ((s[8 + j] & 3) << 4);
        out[j + 4] = (s[j + 4] & 0x0f) | (((s[8 + j] >> 2) & 3) << 4);
        out[j + 8] = (s[j] >> 4) | (((s[8 + j] >> 4) & 3) << 4);
        out[j + 12] = (s[j + 4] >> 4) | (((s[8 + j] >> 6) & 3) << 4);
    }
    out
}

/// Q3_K's values (`-4..4`) and scales (`-32..32`).
pub fn unpack_q3_k(b: &BlockQ3K) -> Unpacked<16> {
    let mut u = Unpacked {
        q: [0; QK_K],
        sc: [0; 16],
        m: [0; 16],
    };
    for n in 0..2 {
        for j in 0..4 {
            let bit = 1u8 << (4 * n + j);
            for l in 0..32 {
                let low = ((b.qs[32 * n + l] >> (2 * j)) & 3) as i8;
                let high = if b.hmask[l] & bit != 0 { 0 } else { 4 };
                u.q[128 * n + 32 * j + l] = low - high;
            }
        }
    }
    for (sc, s) in u.sc.iter_mut().zip(q3_k_scales(&b.scales)) {
        *sc = i32::from(s) - 32;
    }
    u
}

/// Scale and minimum `j` (each `0..64`) of Q4_K and Q5_K's packed 12 bytes
/// (ggml's `get_scale_min_k4`).
#[inline]
pub fn scale_min_k4(j: usize, s: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// Q4_K's values (`0..16`), scales and minimums.
pub fn unpack_q4_k(b: &BlockQ4K) -> Unpacked<8> {
    let mut u = Unpacked {
        q: [0; QK_K],
        sc: [0; 8],
        m: [0; 8],
    };
    for j in 0..4 {
        for l in 0..32 {
            let byte = b.qs[32 * j + l];
            u.q[64 * j + l] = (byte & 0x0f) as i8;
            u.q[64 * j + 32 + l] = (byte >> 4) as i8;
        }
    }
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &b.scales);
        u.sc[j] = i32::from(sc);
        u.m[j] = i32::from(m);
    }
    u
}

/// Q5_K's values (`0..32`), scales and minimums.
pub fn unpack_q5_k(b: &BlockQ5K) -> Unpacked<8> {
    let mut u = Unpacked {
        q: [0; QK_K],
        sc: [0; 8],
        m: [0; 8],
    };
    for j in 0..4 {
        for l in 0..32 {
            let byte = b.qs[32 * j + l];
            let h = b.qh[l];
            u.q[64 * j + l] = ((byte & 0x0f) | (((h >> (2 * j)) & 1) << 4)) as i8;
            u.q[64 * j + 32 + l] = ((byte >> 4) | (((h >> (2 * j + 1)) & 1) << 4)) as i8;
        }
    }
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &b.scales);
        u.sc[j] = i32::from(sc);
        u.m[j] = i32::from(m);
    }
    u
}

/// Q6_K's values (`-32..32`) and scales.
pub fn unpack_q6_k(b: &BlockQ6K) -> Unpacked<16> {
    let mut u = Unpacked {
        q: [0; QK_K],
        sc: [0; 16],
        m: [0; 16],
    };
    for n in 0..2 {
        let (ql, qh) = (&b.ql[64 * n..], &b.qh[32 * n..]);
        for l in 0..32 {
            let v = |low: u8, shift: u32| (low | (((qh[l] >> shift) & 3) << 4)) as i8 - 32;
            u.q[128 * n + l] = v(ql[l] & 0x0f, 0);
            u.q[128 * n + 32 + l] = v(ql[l + 32] & 0x0f, 2);
            u.q[128 * n + 64 + l] = v(ql[l] >> 4, 4);
            u.q[128 * n + 96 + l] = v(ql[l + 32] >> 4, 6);
        }
    }
    for (sc, &s) in u.sc.iter_mut().zip(&b.scales) {
        *sc = i32::from(s);
    }
    u
}

/// The super-blocks of a row of `T` (`row.len()` a multiple of its size).
#[inline]
fn blocks<T: Pod>(row: &[u8]) -> &[T] {
    bytemuck::cast_slice(row)
}

/// A Q2_K row's values, as ggml: `(d * sc) * q - dmin * m`.
pub fn dequantize_q2_k(row: &[u8], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(QK_K).zip(blocks::<BlockQ2K>(row)) {
        let (d, dmin) = (f16_le(b.d), f16_le(b.dmin));
        let u = unpack_q2_k(b);
        for (v, o) in o.iter_mut().enumerate() {
            let (dl, ml) = (d * u.sc[v / 16] as f32, dmin * u.m[v / 16] as f32);
            *o = dl * f32::from(u.q[v]) - ml;
        }
    }
}

/// A Q3_K row's values, as ggml: `(d * (sc - 32)) * q`.
pub fn dequantize_q3_k(row: &[u8], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(QK_K).zip(blocks::<BlockQ3K>(row)) {
        let d = f16_le(b.d);
        let u = unpack_q3_k(b);
        for (v, o) in o.iter_mut().enumerate() {
            *o = (d * u.sc[v / 16] as f32) * f32::from(u.q[v]);
        }
    }
}

/// Q4_K or Q5_K values from their unpacked super-block.
fn dequantize_k4(d: f32, dmin: f32, u: &Unpacked<8>, out: &mut [f32]) {
    for (v, o) in out.iter_mut().enumerate() {
        let (d1, m1) = (d * u.sc[v / 32] as f32, dmin * u.m[v / 32] as f32);
        *o = d1 * f32::from(u.q[v]) - m1;
    }
}

/// A Q4_K row's values, as ggml: `(d * sc) * q - dmin * m`.
pub fn dequantize_q4_k(row: &[u8], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(QK_K).zip(blocks::<BlockQ4K>(row)) {
        dequantize_k4(f16_le(b.d), f16_le(b.dmin), &unpack_q4_k(b), o);
    }
}

/// A Q5_K row's values, as ggml: `(d * sc) * q - dmin * m`.
pub fn dequantize_q5_k(row: &[u8], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(QK_K).zip(blocks::<BlockQ5K>(row)) {
        dequantize_k4(f16_le(b.d), f16_le(b.dmin), &unpack_q5_k(b), o);
    }
}

/// A Q6_K row's values, as ggml: `(d * sc) * q`.
pub fn dequantize_q6_k(row: &[u8], out: &mut [f32]) {
    for (o, b) in out.chunks_exact_mut(QK_K).zip(blocks::<BlockQ6K>(row)) {
        let d = f16_le(b.d);
        let u = unpack_q6_k(b);
        for (v, o) in o.iter_mut().enumerate() {
            *o = (d * u.sc[v / 16] as f32) * f32::from(u.q[v]);
        }
    }
}

/// One super-block's exact sums: `(isum, msum)` (see the module
/// documentation), with sub-blocks of `QK_K / N` values and the activation
/// values `q` and sums per 16 `bsums`.
#[inline]
fn sums<const N: usize>(u: &Unpacked<N>, q: &[i8], bsums: &[i16]) -> (i32, i32) {
    let len = QK_K / N;
    let (mut isum, mut msum) = (0i32, 0i32);
    for j in 0..N {
        let w = &u.q[j * len..(j + 1) * len];
        let dot: i32 = w
            .iter()
            .zip(&q[j * len..])
            .map(|(&w, &x)| i32::from(w) * i32::from(x))
            .sum();
        isum += u.sc[j] * dot;
        let qsum: i32 = bsums[j * len / 16..(j + 1) * len / 16]
            .iter()
            .map(|&s| i32::from(s))
            .sum();
        msum += u.m[j] * qsum;
    }
    (isum, msum)
}

/// The dot product of a row of super-blocks with Q8_K activations, given
/// each super-block's `(d, dmin, unpacked)`; `MINS` for the types with
/// minimums.
#[inline]
fn dot_k<'r, const N: usize, const MINS: bool, T: Pod + 'r>(
    row: &'r [u8],
    a: &Act,
    get: impl Fn(&T) -> (f32, f32, Unpacked<N>),
) -> f32 {
    let mut acc = 0f32;
    for (s, b) in blocks::<T>(row).iter().enumerate() {
        let (d, dmin, u) = get(b);
        acc = step::<N, MINS>(acc, d, dmin, &u, a, s);
    }
    acc
}

/// Adds super-block `s` of a row (scales `d`, `dmin`, values `u`) times
/// super-block `s` of the activations to the running sum `acc`.
#[inline]
fn step<const N: usize, const MINS: bool>(
    acc: f32,
    d: f32,
    dmin: f32,
    u: &Unpacked<N>,
    a: &Act,
    s: usize,
) -> f32 {
    let (isum, msum) = sums(u, &a.k.q[s * QK_K..], &a.k.bsums[s * 16..]);
    let da = a.k.d[s];
    let acc = acc + (d * da) * isum as f32;
    if MINS {
        acc - (dmin * da) * msum as f32
    } else {
        acc
    }
}

/// [`dot_q4_k`] one super-block at a time: adds super-block `s` of a row
/// (the Q4_K block `b`, 144 bytes) times super-block `s` of `a` to `acc`.
/// The interleaved Q4_K's reference ([`TensorType::Q4_Kx16`](super::TensorType::Q4_Kx16)).
pub fn step_q4_k(acc: f32, b: &[u8], a: &Act, s: usize) -> f32 {
    let b: &BlockQ4K = bytemuck::from_bytes(b);
    step::<8, true>(acc, f16_le(b.d), f16_le(b.dmin), &unpack_q4_k(b), a, s)
}

/// [`step_q4_k`] for Q5_K ([`dot_q5_k`] one super-block at a time; `b`
/// 176 bytes).
pub fn step_q5_k(acc: f32, b: &[u8], a: &Act, s: usize) -> f32 {
    let b: &BlockQ5K = bytemuck::from_bytes(b);
    step::<8, true>(acc, f16_le(b.d), f16_le(b.dmin), &unpack_q5_k(b), a, s)
}

/// Q2_K row times Q8_K activations (see the module documentation).
pub fn dot_q2_k(row: &[u8], a: &Act) -> f32 {
    dot_k::<16, true, BlockQ2K>(row, a, |b| (f16_le(b.d), f16_le(b.dmin), unpack_q2_k(b)))
}

/// Q3_K row times Q8_K activations (see the module documentation).
pub fn dot_q3_k(row: &[u8], a: &Act) -> f32 {
    dot_k::<16, false, BlockQ3K>(row, a, |b| (f16_le(b.d), 0.0, unpack_q3_k(b)))
}

/// Q4_K row times Q8_K activations (see the module documentation).
pub fn dot_q4_k(row: &[u8], a: &Act) -> f32 {
    dot_k::<8, true, BlockQ4K>(row, a, |b| (f16_le(b.d), f16_le(b.dmin), unpack_q4_k(b)))
}

/// Q5_K row times Q8_K activations (see the module documentation).
pub fn dot_q5_k(row: &[u8], a: &Act) -> f32 {
    dot_k::<8, true, BlockQ5K>(row, a, |b| (f16_le(b.d), f16_le(b.dmin), unpack_q5_k(b)))
}

/// Q6_K row times Q8_K activations (see the module documentation).
pub fn dot_q6_k(row: &[u8], a: &Act) -> f32 {
    dot_k::<16, false, BlockQ6K>(row, a, |b| (f16_le(b.d), 0.0, unpack_q6_k(b)))
}

/// ggml's `nearest_int`: round half to even, by adding 1.5 * 2^23 (exact
/// for `|x| < 2^22`; the activations here stay within 127).
#[inline]
pub fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// The length contract of every Q8_K quantizer (the reference and the SIMD
/// ones): panics, as documented at [`quantize_q8k`], when it is broken.
#[allow(clippy::panic)] // a documented contract of the callers' sizes
pub(crate) fn check_q8k_lengths(x: &[f32], d: &[f32], bsums: &[i16], q: &[i8]) {
    assert_eq!(
        x.len() % QK_K,
        0,
        "quantize_q8k: length is not a multiple of 256"
    );
    let nb = x.len() / QK_K;
    assert!(
        d.len() >= nb && bsums.len() >= 16 * nb && q.len() >= x.len(),
        "quantize_q8k: scratch too short"
    );
}

/// Quantizes activations to Q8_K super-blocks (ggml's
/// `quantize_row_q8_K_ref`): per 256 values, `max` is the first value of
/// largest magnitude, `q = round_half_even(-127 / max * x)` clamped to
/// `-127..=127`, `d = 1 / (-127 / max)`, and `bsums` the sums of each 16
/// `q`. A super-block of zeros (or NaNs) gets `d = 0` and zeros.
/// `x.len()` must be a multiple of 256; `d` holds `x.len() / 256` scales,
/// `bsums` `x.len() / 16` sums and `q` `x.len()` values.
pub fn quantize_q8k(x: &[f32], d: &mut [f32], bsums: &mut [i16], q: &mut [i8]) {
    check_q8k_lengths(x, d, bsums, q);
    for (s, (xs, qs)) in x
        .chunks_exact(QK_K)
        .zip(q.chunks_exact_mut(QK_K))
        .enumerate()
    {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in xs {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        let sums = &mut bsums[16 * s..16 * s + 16];
        if amax == 0.0 {
            d[s] = 0.0;
            qs.fill(0);
            sums.fill(0);
            continue;
        }
        let iscale = -127.0 / max;
        for (o, &v) in qs.iter_mut().zip(xs) {
            *o = nearest_int(iscale * v).clamp(-127, 127) as i8;
        }
        for (sum, chunk) in sums.iter_mut().zip(qs.chunks_exact(16)) {
            *sum = chunk.iter().map(|&v| i16::from(v)).sum();
        }
        d[s] = 1.0 / iscale;
    }
}
