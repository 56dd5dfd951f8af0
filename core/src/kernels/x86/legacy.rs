//! The 32-wide block formats of the shared quantized kernels
//! ([`common::mat_quant`]): Q8_0, Q4_0, and Q4_1, Q5_0, Q5_1, IQ4_NL (the
//! reference is [`crate::kernels::types::legacy`]).
//!
//! Each gives the values of two blocks in the pair layout of the kernels
//! and says how its products relate to the reference's exact block sums:
//!
//! - Q4_0, Q4_1: nibbles `0..16`, unsigned; Q4_0's values are `u - 8`;
//! - Q5_0, Q5_1: nibbles plus 16 where the block's fifth bit is set, `0..32`
//!   unsigned; Q5_0's values are `u - 16`;
//! - Q4_1, Q5_1: a minimum, `(m d_a) sum(a)` added per block;
//! - Q8_0: signed bytes; IQ4_NL: its table's signed values, looked up by
//!   `vpshufb`, then multiplied as Q8_0's.
//!
//! The products are exact (see each set's pair products: unsigned values of
//! at most 31 times activations in `-127..=127` give at most
//! `4 * 31 * 127 = 15748` per `i16` sum; signed ones go by their magnitude
//! with the activations' signs flipped, at most `2 * 128 * 127` per pair, or
//! through `vpdpbusd` offset by 128), so the block sums are the reference's
//! integers, and the kernels apply the reference's float operations to
//! them.

use core::arch::x86_64::*;
use core::ptr::{copy_nonoverlapping, read_unaligned};

use super::common::{self, Format};
use super::Isa;
use crate::kernels::types::legacy::IQ4NL_VALUES;

/// Elements 0..16 and 16..32 of blocks `k` (low 128 bits) and `k + 1`
/// (high), from the 16 nibble bytes at `p` and `p + bb`.
#[inline(always)]
unsafe fn nibbles(p: *const u8, bb: usize) -> (__m256i, __m256i) {
    // SAFETY: the caller vouches for 16 bytes at p and p + bb; AVX2.
    unsafe {
        let lo = _mm_loadu_si128(p as *const __m128i);
        let hi = _mm_loadu_si128(p.add(bb) as *const __m128i);
        let y = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi);
        let m = _mm256_set1_epi8(0x0f);
        (
            _mm256_and_si256(y, m),
            _mm256_and_si256(_mm256_srli_epi16::<4>(y), m),
        )
    }
}

/// Q5_0 and Q5_1's values: the nibbles at `p + QS`, plus 16 where bit `i`
/// of the little-endian `u32` at `p + QH` is set for element `i`.
#[inline(always)]
unsafe fn fives<I: Isa, const QH: usize, const QS: usize>(
    p: *const u8,
    bb: usize,
) -> (__m256i, __m256i) {
    // SAFETY: the caller vouches for both blocks and the CPU features.
    unsafe {
        let (x1, x2) = nibbles(p.add(QS), bb);
        let h0 = read_unaligned(p.add(QH) as *const u32);
        let h1 = read_unaligned(p.add(bb + QH) as *const u32);
        // The bits of elements 0..16 of both blocks, then 16..32.
        let b1 = (h0 & 0xffff) | h1 << 16;
        let b2 = h0 >> 16 | (h1 & 0xffff_0000);
        (I::add16(x1, b1), I::add16(x2, b2))
    }
}

/// GGUF's Q8_0.
pub(super) struct Q8_0;

impl Format for Q8_0 {
    const BYTES: usize = 34;
    const SIGNED: bool = true;
    const SHIFT: i32 = 0;
    const MIN: bool = false;
    const QS: usize = 0;
    const QH: usize = 0;
    const LOOKUP: bool = false;

    #[inline(always)]
    unsafe fn values<I: Isa>(p: *const u8, bb: usize) -> (__m256i, __m256i) {
        // SAFETY: the caller vouches for both blocks and the CPU features.
        unsafe {
            let ld = |o: usize| _mm_loadu_si128(p.add(o) as *const __m128i);
            let cat = |x, y| _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(x), y);
            (
                I::prep_q8(cat(ld(2), ld(bb + 2))),
                I::prep_q8(cat(ld(18), ld(bb + 18))),
            )
        }
    }
}

/// GGUF's Q4_0: nibbles, values `u - 8`.
pub(super) struct Q4_0;

impl Format for Q4_0 {
    const BYTES: usize = 18;
    const SIGNED: bool = false;
    const SHIFT: i32 = 3;
    const MIN: bool = false;
    const QS: usize = 2;
    const QH: usize = 0;
    const LOOKUP: bool = false;

    #[inline(always)]
    unsafe fn values<I: Isa>(p: *const u8, bb: usize) -> (__m256i, __m256i) {
        // SAFETY: the caller's promise.
        unsafe { nibbles(p.add(Self::QS), bb) }
    }
}

/// GGUF's Q4_1: nibbles and a minimum.
pub(super) struct Q4_1;

impl Format for Q4_1 {
    const BYTES: usize = 20;
    const SIGNED: bool = false;
    const SHIFT: i32 = 0;
    const MIN: bool = true;
    const QS: usize = 4;
    const QH: usize = 0;
    const LOOKUP: bool = false;

    #[inline(always)]
    unsafe fn values<I: Isa>(p: *const u8, bb: usize) -> (__m256i, __m256i) {
        // SAFETY: the caller's promise.
        unsafe { nibbles(p.add(Self::QS), bb) }
    }
}

/// GGUF's Q5_0: five bits, values `u - 16`.
pub(super) struct Q5_0;

impl Format for Q5_0 {
    const BYTES: usize = 22;
    const SIGNED: bool = false;
    const SHIFT: i32 = 4;
    const MIN: bool = false;
    const QS: usize = 6;
    const QH: usize = 2;
    const LOOKUP: bool = false;

    #[inline(always)]
    unsafe fn values<I: Isa>(p: *const u8, bb: usize) -> (__m256i, __m256i) {
        // SAFETY: the caller's promise.
        unsafe { fives::<I, { Self::QH }, { Self::QS }>(p, bb) }
    }
}

/// GGUF's Q5_1: five bits and a minimum.
pub(super) struct Q5_1;

impl Format for Q5_1 {
    const BYTES: usize = 24;
    const SIGNED: bool = false;
    const SHIFT: i32 = 0;
    const MIN: bool = true;
    const QS: usize = 8;
    const QH: usize = 4;
    const LOOKUP: bool = false;

    #[inline(always)]
    unsafe fn values<I: Isa>(p: *const u8, bb: usize) -> (__m256i, __m256i) {
        // SAFETY: the caller's promise.
        unsafe { fives::<I, { Self::QH }, { Self::QS }>(p, bb) }
    }
}

/// GGUF's IQ4_NL: nibbles indexing a table of signed values.
pub(super) struct Iq4Nl;

impl Format for Iq4Nl {
    const BYTES: usize = 18;
    const SIGNED: bool = true;
    const SHIFT: i32 = 0;
    const MIN: bool = false;
    const QS: usize = 2;
    const QH: usize = 0;
    const LOOKUP: bool = true;

    #[inline(always)]
    unsafe fn values<I: Isa>(p: *const u8, bb: usize) -> (__m256i, __m256i) {
        // SAFETY: the caller vouches for both blocks and the CPU features.
        unsafe {
            let t = _mm_loadu_si128(IQ4NL_VALUES.as_ptr() as *const __m128i);
            let t = _mm256_broadcastsi128_si256(t);
            let (x1, x2) = nibbles(p.add(Self::QS), bb);
            (
                I::prep_q8(_mm256_shuffle_epi8(t, x1)),
                I::prep_q8(_mm256_shuffle_epi8(t, x2)),
            )
        }
    }
}

/// The kernel of a format on a set: [`common::mat_quant`].
///
/// # Safety
/// As [`common::mat_quant`].
#[inline(always)]
pub(super) unsafe fn mat<I: Isa, F: Format>(
    w: &[u8],
    a: &crate::kernels::acts::Acts,
    out: &mut [f32],
    rows: usize,
) {
    // SAFETY: the caller's promise.
    unsafe { common::mat_quant::<I, F>(w, a, out, rows) }
}

// ---- attention against a Q8_0 key cache ----

/// Attention scores against a Q8_0 key cache (the reference is
/// `scalar::kv_scores_q8_0`; lengths checked by the caller): 8 key rows at
/// a time through [`common::group`], one row per lane: the group's "8 blocks" are
/// block `b` of 8 consecutive rows (`nb * 34` bytes apart), and the query's
/// block `b` is the activation of every lane. Lane `t` accumulates
/// `acc + (d_k * d_q) * dot` block after block, as the reference does.
#[inline(always)]
pub(super) unsafe fn kv_scores<I: Isa>(
    keys: &[u8],
    nb: usize,
    qd: &[f32],
    qsum: &[i32],
    qs: &[i8],
    out: &mut [f32],
) {
    let rb = nb * 34;
    // SAFETY: (for the whole body) the CPU features are the caller's promise; rows
    // t0..t0 + n of `keys` and the query's nb blocks are inside the checked
    // slices; partial groups read zero-padded copies.
    unsafe {
        let pinv = _mm256_loadu_si256(common::PINV.as_ptr() as *const __m256i);
        let mut t0 = 0;
        while t0 < out.len() {
            let n = (out.len() - t0).min(8);
            let mut acc = [[_mm256_setzero_ps(); 1]; 1];
            let mut tmp = [0u8; 8 * 34];
            for b in 0..nb {
                let v = _mm256_loadu_si256(qs.as_ptr().add(32 * b) as *const __m256i);
                let pair = (
                    _mm256_permute2x128_si256::<0x00>(v, v),
                    _mm256_permute2x128_si256::<0x11>(v, v),
                );
                let corr = if I::Q8_SHIFT != 0 {
                    _mm256_set1_epi32(qsum[b] << I::Q8_SHIFT)
                } else {
                    _mm256_setzero_si256()
                };
                let prep = common::Prep {
                    a: [pair; 4],
                    da: _mm256_set1_ps(qd[b]),
                    corr,
                };
                let first = keys.as_ptr().add(t0 * rb + 34 * b);
                let (w, bb) = if n == 8 {
                    (first, rb)
                } else {
                    // Zero blocks have scale 0: their lanes stay +0.
                    for k in 0..n {
                        copy_nonoverlapping(first.add(k * rb), tmp.as_mut_ptr().add(34 * k), 34);
                    }
                    (tmp.as_ptr(), 34)
                };
                common::group::<I, 1, 1, Q8_0>(&[w], &[&prep as *const common::Prep], bb, &mut acc);
            }
            let mut lanes = [0f32; 8];
            _mm256_storeu_ps(
                lanes.as_mut_ptr(),
                _mm256_permutevar8x32_ps(acc[0][0], pinv),
            );
            out[t0..t0 + n].copy_from_slice(&lanes[..n]);
            t0 += n;
        }
    }
}
