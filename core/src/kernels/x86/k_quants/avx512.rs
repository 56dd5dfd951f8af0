//! The K-quants with 512-bit vectors (AVX-512 BW and VNNI): a super-block
//! is four vectors of 64 values in value order; each vector's products go
//! through one `vpmaddubsw` and one `vpdpwssd`, which applies the scales of
//! the sub-blocks it holds (two of 32 values, or four of 16: one per
//! 128-bit lane). Bits are unpacked with variable word shifts
//! (`vpsrlvw`/`vpsllvw`: a different shift in each half of a vector) and
//! byte tests into masks; every shift is followed by a mask that keeps
//! only bits that came from the same byte (checked at each use).
//!
//! # Safety
//! As [`super`]: the CPU features of the `avx512` set.

use core::arch::x86_64::*;

use super::{k4_scales, q3_scales, KQuant};

/// A super-block unpacked: values (unsigned), scale words, and the 16
/// coefficients of the activation sums per 16 (minimums, or the offset
/// times the negated scales).
#[derive(Clone, Copy)]
pub(in crate::kernels::x86) struct W {
    v: [__m512i; 4],
    s: [__m512i; 4],
    coef: __m256i,
}

/// Words `w0` in the low half of a vector, `w1` in the high half.
const fn halves(w0: u16, w1: u16) -> [u16; 32] {
    let mut t = [w0; 32];
    let mut i = 16;
    while i < 32 {
        t[i] = w1;
        i += 1;
    }
    t
}

/// `vpermw` indices: word `2k` of the source in the low half, `2k + 1` in
/// the high half (the scales of 32-value sub-blocks `2k`, `2k + 1`).
static IDX32: [[u16; 32]; 4] = [halves(0, 1), halves(2, 3), halves(4, 5), halves(6, 7)];

/// `vpermw` indices: word `4k + l` of the source in 128-bit lane `l` (the
/// scales of 16-value sub-blocks `4k..4k + 4`).
static IDX16: [[u16; 32]; 4] = {
    let mut t = [[0u16; 32]; 4];
    let mut k = 0;
    while k < 4 {
        let mut i = 0;
        while i < 32 {
            t[k][i] = (4 * k + i / 8) as u16;
            i += 1;
        }
        k += 1;
    }
    t
};

/// `vpermw` indices: word `8 + i / 2` in word `i` (each of the minimums in
/// words 8..16 twice: a 32-value sub-block has two sums of 16).
static IDX_MINS: [u16; 16] = {
    let mut t = [0u16; 16];
    let mut i = 0;
    while i < 16 {
        t[i] = 8 + (i / 2) as u16;
        i += 1;
    }
    t
};

#[inline(always)]
unsafe fn idx(t: &[u16; 32]) -> __m512i {
    // SAFETY: 64 readable bytes; AVX-512F.
    unsafe { _mm512_loadu_si512(t.as_ptr() as *const _) }
}

/// 32 bytes at `p` in both halves of a vector.
#[inline(always)]
unsafe fn bcast(p: *const u8) -> __m512i {
    // SAFETY: the caller vouches for 32 bytes at p; AVX-512F.
    unsafe { _mm512_broadcast_i64x4(_mm256_loadu_si256(p as *const __m256i)) }
}

/// Per-half word shift counts `(s0, s1)`.
#[inline(always)]
unsafe fn counts(s0: u16, s1: u16) -> __m512i {
    // SAFETY: AVX-512F.
    unsafe {
        _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_set1_epi16(s0 as i16)),
            _mm256_set1_epi16(s1 as i16),
        )
    }
}

/// Bytes equal to `b0` in the low half of a vector, `b1` in the high half.
#[inline(always)]
unsafe fn bytes2(b0: u8, b1: u8) -> __m512i {
    // SAFETY: AVX-512F.
    unsafe {
        _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_set1_epi8(b0 as i8)),
            _mm256_set1_epi8(b1 as i8),
        )
    }
}

/// The products and scales of a super-block with its activations: eight
/// `i32` lanes adding up to `sum_k sum(v_k * q_k * s_k)`.
#[inline(always)]
unsafe fn dot4(w: &W, q: *const i8) -> __m256i {
    // SAFETY: 256 activations at q; AVX-512 BW and VNNI.
    unsafe {
        let ld = |k: usize| _mm512_loadu_si512(q.add(64 * k) as *const _);
        let z = _mm512_setzero_si512();
        let p = |k: usize| _mm512_maddubs_epi16(w.v[k], ld(k));
        let a0 = _mm512_dpwssd_epi32(z, p(0), w.s[0]);
        let a1 = _mm512_dpwssd_epi32(z, p(1), w.s[1]);
        let a0 = _mm512_dpwssd_epi32(a0, p(2), w.s[2]);
        let a1 = _mm512_dpwssd_epi32(a1, p(3), w.s[3]);
        let a = _mm512_add_epi32(a0, a1);
        _mm256_add_epi32(_mm512_castsi512_si256(a), _mm512_extracti64x4_epi64::<1>(a))
    }
}

/// The sums of 16 activations times the coefficients: eight `i32` lanes.
#[inline(always)]
unsafe fn sums(w: &W, bsums: *const i16) -> __m256i {
    // SAFETY: 16 sums at bsums; AVX2.
    unsafe { _mm256_madd_epi16(w.coef, _mm256_loadu_si256(bsums as *const __m256i)) }
}

/// `(x & 0x0f) | h` bytewise, `h` already masked to other bits.
#[inline(always)]
unsafe fn low_nibble_or(x: __m512i, h: __m512i) -> __m512i {
    // SAFETY: AVX-512F. Truth table (A & C) | B with A = x, B = h,
    // C = 0x0f: 0xF0 & 0xAA | 0xCC = 0xEC.
    unsafe { _mm512_ternarylogic_epi32::<0xEC>(x, h, _mm512_set1_epi8(0x0f)) }
}

/// Q4_K: vector `k` is values `64k..64k + 64`: the low nibbles of bytes
/// `32k..32k + 32` (sub-block `2k`), then their high nibbles (`2k + 1`).
pub(in crate::kernels::x86) struct Q4K;

impl KQuant for Q4K {
    const BYTES: usize = 144;
    const MINS: bool = true;
    const D_AT: usize = 0;
    type W = W;

    #[inline(always)]
    unsafe fn unpack(b: *const u8) -> W {
        // SAFETY: 144 bytes at b; AVX-512 BW.
        unsafe {
            let words = _mm256_cvtepu8_epi16(k4_scales(b.add(4)));
            let wz = _mm512_castsi256_si512(words);
            let sh = counts(0, 4);
            let m4 = _mm512_set1_epi8(0x0f);
            // A word shift by 4 moves a byte's high nibble into its low
            // nibble; the bits from the next byte land above, masked off.
            let v = core::array::from_fn(|k| {
                _mm512_and_si512(_mm512_srlv_epi16(bcast(b.add(16 + 32 * k)), sh), m4)
            });
            W {
                v,
                s: core::array::from_fn(|k| _mm512_permutexvar_epi16(idx(&IDX32[k]), wz)),
                coef: _mm256_permutexvar_epi16(
                    _mm256_loadu_si256(IDX_MINS.as_ptr() as *const __m256i),
                    words,
                ),
            }
        }
    }

    #[inline(always)]
    unsafe fn dot(w: &W, q: *const i8, bsums: *const i16) -> (__m256i, __m256i) {
        // SAFETY: the caller's promise.
        unsafe { (dot4(w, q), sums(w, bsums)) }
    }
}

/// Q5_K: Q4_K's nibbles, and the fifth bit of value `32 j + l` in bit `j`
/// of byte `l` of `qh`, added as 16 where a byte test finds it.
pub(in crate::kernels::x86) struct Q5K;

impl KQuant for Q5K {
    const BYTES: usize = 176;
    const MINS: bool = true;
    const D_AT: usize = 0;
    type W = W;

    #[inline(always)]
    unsafe fn unpack(b: *const u8) -> W {
        // SAFETY: 176 bytes at b; AVX-512 BW.
        unsafe {
            let words = _mm256_cvtepu8_epi16(k4_scales(b.add(4)));
            let wz = _mm512_castsi256_si512(words);
            let sh = counts(0, 4);
            let m4 = _mm512_set1_epi8(0x0f);
            let qh = bcast(b.add(16));
            let sixteen = _mm512_set1_epi8(16);
            let v = core::array::from_fn(|k| {
                let lo = _mm512_and_si512(_mm512_srlv_epi16(bcast(b.add(48 + 32 * k)), sh), m4);
                let bits = bytes2(1 << (2 * k), 1 << (2 * k + 1));
                let h = _mm512_test_epi8_mask(qh, bits);
                _mm512_mask_add_epi8(lo, h, lo, sixteen)
            });
            W {
                v,
                s: core::array::from_fn(|k| _mm512_permutexvar_epi16(idx(&IDX32[k]), wz)),
                coef: _mm256_permutexvar_epi16(
                    _mm256_loadu_si256(IDX_MINS.as_ptr() as *const __m256i),
                    words,
                ),
            }
        }
    }

    #[inline(always)]
    unsafe fn dot(w: &W, q: *const i8, bsums: *const i16) -> (__m256i, __m256i) {
        // SAFETY: the caller's promise.
        unsafe { (dot4(w, q), sums(w, bsums)) }
    }
}

/// Q6_K: per half `n` of 128 values, `ql[64n..64n + 64]` holds the low
/// nibbles of values `128n..128n + 64` and, in its high nibbles, of
/// `128n + 64..128n + 128`; byte `l` of `qh[32n..]` holds the top two bits
/// of values `128n + l + 32 i` in bits `2i..2i + 2`. Values `u - 32`.
pub(in crate::kernels::x86) struct Q6K;

impl KQuant for Q6K {
    const BYTES: usize = 210;
    const MINS: bool = false;
    const D_AT: usize = 208;
    type W = W;

    #[inline(always)]
    unsafe fn unpack(b: *const u8) -> W {
        // SAFETY: 210 bytes at b; AVX-512 BW.
        unsafe {
            let sc = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(192) as *const __m128i));
            let sz = _mm512_castsi256_si512(sc);
            let mut v = [_mm512_setzero_si512(); 4];
            for n in 0..2 {
                let l = _mm512_loadu_si512(b.add(64 * n) as *const _);
                let h = bcast(b.add(128 + 32 * n));
                // Values 128n..+64: qh bits 0..2 (low half), 2..4 (high
                // half), masked first, then moved to bits 4..6 of their
                // own byte.
                let h0 = _mm512_sllv_epi16(_mm512_and_si512(h, bytes2(0x03, 0x0c)), counts(4, 2));
                // Values 128n + 64..: bits 4..6 (in place) and 6..8.
                let h1 = _mm512_srlv_epi16(_mm512_and_si512(h, bytes2(0x30, 0xc0)), counts(0, 2));
                v[2 * n] = low_nibble_or(l, h0);
                v[2 * n + 1] = low_nibble_or(_mm512_srli_epi16::<4>(l), h1);
            }
            // -32 * scale, at most 4096 in magnitude: an i16.
            let coef = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16::<5>(sc));
            W {
                v,
                s: core::array::from_fn(|k| _mm512_permutexvar_epi16(idx(&IDX16[k]), sz)),
                coef,
            }
        }
    }

    #[inline(always)]
    unsafe fn dot(w: &W, q: *const i8, bsums: *const i16) -> (__m256i, __m256i) {
        // SAFETY: the caller's promise.
        unsafe {
            let i = _mm256_add_epi32(dot4(w, q), sums(w, bsums));
            (i, _mm256_setzero_si256())
        }
    }
}

/// Q3_K: vector `k` is values `64k..64k + 64`, half `n = k / 2` of the
/// super-block: bits `2j..2j + 2` of `qs[32n..32n + 32]`, `j = 2 (k % 2)`
/// (low half) and `j + 1` (high half), plus 4 where bit `4n + j` of
/// `hmask` is set. Values `u - 4`.
pub(in crate::kernels::x86) struct Q3K;

impl KQuant for Q3K {
    const BYTES: usize = 110;
    const MINS: bool = false;
    const D_AT: usize = 108;
    type W = W;

    #[inline(always)]
    unsafe fn unpack(b: *const u8) -> W {
        // SAFETY: 110 bytes at b; AVX-512 BW.
        unsafe {
            let s8 = _mm_sub_epi8(q3_scales(b), _mm_set1_epi8(32));
            let sc = _mm256_cvtepi8_epi16(s8);
            let sz = _mm512_castsi256_si512(sc);
            let hm = bcast(b);
            let three = _mm512_set1_epi8(3);
            let four = _mm512_set1_epi8(4);
            let v = core::array::from_fn(|k| {
                let (n, j) = (k / 2, 2 * (k % 2));
                // Bits 2j.. of each byte to bits 0..2; the next byte's
                // bits land above, masked off.
                let x = _mm512_srlv_epi16(
                    bcast(b.add(32 + 32 * n)),
                    counts(2 * j as u16, 2 * j as u16 + 2),
                );
                let lo = _mm512_and_si512(x, three);
                let bit = 4 * n + j;
                let h = _mm512_test_epi8_mask(hm, bytes2(1 << bit, 1 << (bit + 1)));
                _mm512_mask_add_epi8(lo, h, lo, four)
            });
            // -4 * scale, at most 128 in magnitude.
            let coef = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16::<2>(sc));
            W {
                v,
                s: core::array::from_fn(|k| _mm512_permutexvar_epi16(idx(&IDX16[k]), sz)),
                coef,
            }
        }
    }

    #[inline(always)]
    unsafe fn dot(w: &W, q: *const i8, bsums: *const i16) -> (__m256i, __m256i) {
        // SAFETY: the caller's promise.
        unsafe {
            let i = _mm256_add_epi32(dot4(w, q), sums(w, bsums));
            (i, _mm256_setzero_si256())
        }
    }
}

/// Q2_K: vector `k` is values `64k..64k + 64`: bits `2j..2j + 2` of
/// `qs[32n..32n + 32]`, `n = k / 2`, `j = 2 (k % 2)` (low half) and `j + 1`
/// (high half); scales and minimums are the nibbles of `scales`.
pub(in crate::kernels::x86) struct Q2K;

impl KQuant for Q2K {
    const BYTES: usize = 84;
    const MINS: bool = true;
    const D_AT: usize = 80;
    type W = W;

    #[inline(always)]
    unsafe fn unpack(b: *const u8) -> W {
        // SAFETY: 84 bytes at b; AVX-512 BW.
        unsafe {
            let x = _mm_loadu_si128(b as *const __m128i);
            let m4 = _mm_set1_epi8(0x0f);
            let sc = _mm256_cvtepu8_epi16(_mm_and_si128(x, m4));
            let mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(x), m4));
            let sz = _mm512_castsi256_si512(sc);
            let three = _mm512_set1_epi8(3);
            let v = core::array::from_fn(|k| {
                let (n, j) = (k / 2, 2 * (k % 2) as u16);
                let x = _mm512_srlv_epi16(bcast(b.add(16 + 32 * n)), counts(2 * j, 2 * j + 2));
                _mm512_and_si512(x, three)
            });
            W {
                v,
                s: core::array::from_fn(|k| _mm512_permutexvar_epi16(idx(&IDX16[k]), sz)),
                coef: mins,
            }
        }
    }

    #[inline(always)]
    unsafe fn dot(w: &W, q: *const i8, bsums: *const i16) -> (__m256i, __m256i) {
        // SAFETY: the caller's promise.
        unsafe { (dot4(w, q), sums(w, bsums)) }
    }
}
