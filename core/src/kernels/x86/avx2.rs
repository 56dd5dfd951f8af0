//! The `avx2` set: products by `vpmaddubsw` (unsigned x signed bytes to
//! saturating `i16` pairs) and `vpmaddwd`; 16 vector registers.

use core::arch::x86_64::*;

use super::common::{self, TileOp};
use super::k_quants as kq;
use super::legacy;
use super::{
    avx2_supported as supported, run, run_kv_scores, run_quantize, run_quantize_k, x16, x16k, Isa,
};
use crate::kernels::acts::Acts;
use crate::kernels::types::TensorType;
use crate::kernels::{Kernels, MatFn, ValueRows};

/// The AVX2 + FMA + F16C kernel set.
pub(in crate::kernels) static AVX2: Kernels = Kernels {
    name: "avx2",
    kernel_for,
    fast_interleaved: true,
    fast_interleaved_k: &[TensorType::Q4_K],
    transposed_q8: false,
    quantize,
    quantize_k,
    weighted_sum,
    kv_scores_q8_0,
};

/// This set's kernel for weights of type `ty`, if it has one.
fn kernel_for(ty: TensorType) -> Option<MatFn> {
    use TensorType::*;
    Some(match ty {
        F32 => |w, a, o| run(F32, supported, mat_f32, w, a, o),
        F16 => |w, a, o| run(F16, supported, mat_f16, w, a, o),
        BF16 => |w, a, o| run(BF16, supported, mat_bf16, w, a, o),
        Q8_0 => |w, a, o| run(Q8_0, supported, mat_q8_0, w, a, o),
        Q4_0 => |w, a, o| run(Q4_0, supported, mat_q4_0, w, a, o),
        Q8_0x16 => |w, a, o| run(Q8_0x16, supported, mat_q8_0x16, w, a, o),
        Q4_0x16 => |w, a, o| run(Q4_0x16, supported, mat_q4_0x16, w, a, o),
        Q4_Kx16 => |w, a, o| run(Q4_Kx16, supported, mat_q4_kx16, w, a, o),
        Q5_Kx16 => |w, a, o| run(Q5_Kx16, supported, mat_q5_kx16, w, a, o),
        Q4_1 => |w, a, o| run(Q4_1, supported, mat_q4_1, w, a, o),
        Q5_0 => |w, a, o| run(Q5_0, supported, mat_q5_0, w, a, o),
        Q5_1 => |w, a, o| run(Q5_1, supported, mat_q5_1, w, a, o),
        IQ4_NL => |w, a, o| run(IQ4_NL, supported, mat_iq4_nl, w, a, o),
        Q2_K => |w, a, o| run(Q2_K, supported, mat_q2_k, w, a, o),
        Q3_K => |w, a, o| run(Q3_K, supported, mat_q3_k, w, a, o),
        Q4_K => |w, a, o| run(Q4_K, supported, mat_q4_k, w, a, o),
        Q5_K => |w, a, o| run(Q5_K, supported, mat_q5_k, w, a, o),
        Q6_K => |w, a, o| run(Q6_K, supported, mat_q6_k, w, a, o),
        _ => return None,
    })
}

/// The set's parameters and pair products.
pub(super) struct Avx2;

impl Isa for Avx2 {
    const FR: usize = 2;
    const FC: usize = 2;
    const QR: usize = 4;
    const QC: usize = 2;
    /// Signed weights: the sign trick needs them as they are.
    const Q8_SHIFT: i32 = 0;

    #[inline(always)]
    unsafe fn prep_q8(x: __m256i) -> __m256i {
        x
    }

    /// `|w| * (a * sign(w))`: at most 2 * 128 * 127 per `i16`, so
    /// `vpmaddubsw` never saturates (activations are in -127..=127).
    #[inline(always)]
    unsafe fn pair_q8(x1: __m256i, x2: __m256i, a1: __m256i, a2: __m256i) -> __m256i {
        // SAFETY: AVX2 (the caller's promise).
        unsafe {
            let ones = _mm256_set1_epi16(1);
            let p1 = _mm256_maddubs_epi16(_mm256_abs_epi8(x1), _mm256_sign_epi8(a1, x1));
            let p2 = _mm256_maddubs_epi16(_mm256_abs_epi8(x2), _mm256_sign_epi8(a2, x2));
            _mm256_add_epi32(_mm256_madd_epi16(p1, ones), _mm256_madd_epi16(p2, ones))
        }
    }

    /// Unsigned values of at most 31 times activations in -127..=127: at
    /// most 2 * 31 * 127 per `vpmaddubsw` pair, 4 * 31 * 127 = 15748 per
    /// `i16` sum of two.
    #[inline(always)]
    unsafe fn pair_q4(x1: __m256i, x2: __m256i, a1: __m256i, a2: __m256i) -> __m256i {
        // SAFETY: AVX2 (the caller's promise).
        unsafe {
            let p = _mm256_add_epi16(_mm256_maddubs_epi16(x1, a1), _mm256_maddubs_epi16(x2, a2));
            _mm256_madd_epi16(p, _mm256_set1_epi16(1))
        }
    }

    /// The bits spread to bytes (`vpshufb` of the broadcast word, one test
    /// bit per byte), then 16 where set.
    #[inline(always)]
    unsafe fn add16(x: __m256i, bits: u32) -> __m256i {
        // SAFETY: AVX2 (the caller's promise).
        unsafe {
            let v = _mm256_set1_epi32(bits as i32);
            // Byte i of each 128-bit lane gets byte i / 8 of `bits` (low
            // lane) or 2 + i / 8 (high lane).
            let spread = _mm256_setr_epi64x(
                0,
                0x0101_0101_0101_0101,
                0x0202_0202_0202_0202,
                0x0303_0303_0303_0303,
            );
            let b = _mm256_shuffle_epi8(v, spread);
            // All bits but bit i % 8 set: all ones exactly where it is set.
            let others = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe);
            let set = _mm256_cmpeq_epi8(_mm256_or_si256(b, others), _mm256_set1_epi8(-1));
            _mm256_add_epi8(x, _mm256_and_si256(set, _mm256_set1_epi8(16)))
        }
    }

    #[inline(always)]
    unsafe fn dispatch<T: TileOp>(op: &mut T, nr: usize, nc: usize, r0: usize, c0: usize) {
        // SAFETY: the caller's promise, for the tile it names.
        unsafe {
            match (nr, nc) {
                (4, 2) => op.run::<4, 2>(r0, c0),
                (3, 2) => op.run::<3, 2>(r0, c0),
                (2, 2) => op.run::<2, 2>(r0, c0),
                (1, 2) => op.run::<1, 2>(r0, c0),
                (4, 1) => op.run::<4, 1>(r0, c0),
                (3, 1) => op.run::<3, 1>(r0, c0),
                (2, 1) => op.run::<2, 1>(r0, c0),
                _ => op.run::<1, 1>(r0, c0),
            }
        }
    }
}

/// F32 weights.
///
/// # Safety
/// AVX2, FMA, F16C; checked arguments (see [`run`]).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mat_f32(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe { common::mat_float::<Avx2, { common::F32 }>(w, a, out, rows) }
}

/// F16 weights.
///
/// # Safety
/// As [`mat_f32`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mat_f16(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe { common::mat_float::<Avx2, { common::F16 }>(w, a, out, rows) }
}

/// BF16 weights.
///
/// # Safety
/// As [`mat_f32`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mat_bf16(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe { common::mat_float::<Avx2, { common::BF16 }>(w, a, out, rows) }
}

/// Q8_0 weights (the shared kernel: through the interleaved tiles, as
/// Q4_0's batches go, a batch measured slower, 63 -> 58 tok/s).
///
/// # Safety
/// As [`mat_f32`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mat_q8_0(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe { legacy::mat::<Avx2, legacy::Q8_0>(w, a, out, rows) }
}

/// Q4_0 weights: a batch of whole bands through the interleaved tiles
/// ([`x16::avx2::mat_plain`]: tinyllama's 128-token prompt 77 -> 89
/// tok/s, 1 thread, on Zen 5), anything else through the shared kernel.
///
/// # Safety
/// As [`mat_f32`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mat_q4_0(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe {
        if a.n == 1 || x16::avx2::mat_plain::<true>(w, a, out, rows).is_none() {
            legacy::mat::<Avx2, legacy::Q4_0>(w, a, out, rows)
        }
    }
}

/// Interleaved Q8_0 weights.
///
/// # Safety
/// As [`mat_f32`]; `check_mat` also checked that the rows are whole bands.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mat_q8_0x16(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe { x16::avx2::mat::<false>(w, a, out, rows) }
}

/// Interleaved Q4_0 weights.
///
/// # Safety
/// As [`mat_q8_0x16`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mat_q4_0x16(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe { x16::avx2::mat::<true>(w, a, out, rows) }
}

/// Interleaved Q4_K weights.
///
/// # Safety
/// As [`mat_q8_0x16`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mat_q4_kx16(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe { x16k::avx2::mat::<false>(w, a, out, rows) }
}

/// Interleaved Q5_K weights.
///
/// # Safety
/// As [`mat_q8_0x16`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mat_q5_kx16(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe { x16k::avx2::mat::<true>(w, a, out, rows) }
}

/// The other 32-wide kernels: `$name` runs `legacy::mat` for `$f`.
macro_rules! legacy_kernels {
    ($($name:ident: $f:ty,)*) => {$(
        /// 32-wide weights (see [`legacy`]).
        ///
        /// # Safety
        /// The set's CPU features; checked arguments (see [`run`]).
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $name(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
            // SAFETY: this function's contract.
            unsafe { legacy::mat::<Avx2, $f>(w, a, out, rows) }
        }
    )*};
}

legacy_kernels! {
    mat_q4_1: legacy::Q4_1,
    mat_q5_0: legacy::Q5_0,
    mat_q5_1: legacy::Q5_1,
    mat_iq4_nl: legacy::Iq4Nl,
}

/// The K-quant kernels: `$name` runs `kq::mat` for `$k`.
macro_rules! k_quant_kernels {
    ($($name:ident: $k:ty,)*) => {$(
        /// K-quant weights (see [`kq`]).
        ///
        /// # Safety
        /// The set's CPU features; checked arguments (see [`run`]).
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $name(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
            // SAFETY: this function's contract.
            unsafe { kq::mat::<$k>(w, a, out, rows) }
        }
    )*};
}

k_quant_kernels! {
    mat_q2_k: kq::avx2::Q2K,
    mat_q3_k: kq::avx2::Q3K,
    mat_q4_k: kq::avx2::Q4K,
    mat_q5_k: kq::avx2::Q5K,
    mat_q6_k: kq::avx2::Q6K,
}

/// The Q8 activation quantizer.
fn quantize(x: &[f32], d: &mut [f32], sum: &mut [i32], q: &mut [i8]) {
    /// # Safety
    /// AVX2, FMA, F16C; lengths checked.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn imp(x: &[f32], d: &mut [f32], sum: &mut [i32], q: &mut [i8]) {
        // SAFETY: this function's contract.
        unsafe { common::quantize(x, d, sum, q) }
    }
    run_quantize(supported, imp, x, d, sum, q)
}

/// The Q8_K activation quantizer.
fn quantize_k(x: &[f32], d: &mut [f32], bsums: &mut [i16], q: &mut [i8]) {
    /// # Safety
    /// The set's CPU features; lengths checked.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn imp(x: &[f32], d: &mut [f32], bsums: &mut [i16], q: &mut [i8]) {
        // SAFETY: this function's contract.
        unsafe { kq::quantize_q8k(x, d, bsums, q) }
    }
    run_quantize_k(supported, imp, x, d, bsums, q)
}

/// The scalar weighted sum, compiled for AVX2 (the compiler's vectors
/// widen; the operations, element by element, stay the same).
fn weighted_sum(att: &[f32], v: ValueRows, out: &mut [f32]) {
    #[target_feature(enable = "avx2,fma,f16c")]
    fn imp(att: &[f32], v: ValueRows, out: &mut [f32]) {
        crate::kernels::scalar::weighted_sum_rows(att, v, out)
    }
    debug_assert!(supported());
    // SAFETY: the table holding this function is handed out only on CPUs
    // with AVX2; the body is safe code (it checks its slices).
    unsafe { imp(att, v, out) }
}

/// Attention scores against a Q8_0 key cache.
fn kv_scores_q8_0(keys: &[u8], nb: usize, qd: &[f32], qsum: &[i32], qs: &[i8], out: &mut [f32]) {
    /// # Safety
    /// The set's CPU features; lengths checked.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn imp(keys: &[u8], nb: usize, qd: &[f32], qsum: &[i32], qs: &[i8], out: &mut [f32]) {
        // SAFETY: this function's contract.
        unsafe { legacy::kv_scores::<Avx2>(keys, nb, qd, qsum, qs, out) }
    }
    run_kv_scores(supported, imp, keys, nb, qd, qsum, qs, out)
}
