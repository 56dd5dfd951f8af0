//! The K-quants with 512-bit vectors (AVX-512 BW and VNNI): a super-block
//! is four vectors of 64 values; each vector's products go through one
//! `vpmaddubsw` and one `vpdpwssd`, which applies the scales of the
//! sub-blocks it holds (two of 32 values, one per 256-bit half, or four of
//! 16: one per 128-bit lane).
//!
//! The bits are read with whole 64-byte loads where the layout allows, and
//! the activations are prepared in the order that leaves the values in:
//!
//! - Q4_K and Q5_K ([`K4_ORDER`]): the low nibbles of 64 bytes are
//!   sub-blocks `4j` and `4j + 2` (of 32 values), their high nibbles `4j +
//!   1` and `4j + 3`;
//! - Q2_K and Q3_K ([`K2_ORDER`]): bits `2j..2j + 2` of the 64 bytes are
//!   values `32j..32j + 32` and `128 + 32j..128 + 32j + 32`;
//! - Q6_K: value order, its high bits broadcast to both halves.
//!
//! Shifts are word shifts, each followed by a mask that keeps only bits
//! that came from the same byte (checked at each use); single bits are
//! tested into byte masks.
//!
//! # Safety
//! As [`super`]: the CPU features of the `avx512` set.

// Vector lanes, chunks and super-blocks are indexed: the index is the
// position.
#![allow(clippy::needless_range_loop)]

use core::arch::x86_64::*;

use super::{k4_scales, q3_scales, sums32, KQuant};

/// A super-block unpacked: values (unsigned), scale words, and the 16
/// coefficients of the prepared activation sums (minimums; Q6_K: its scales
/// times -32; Q3_K: its scales, the sums being prepared times -4).
#[derive(Clone, Copy)]
pub(in crate::kernels::x86) struct W {
    v: [__m512i; 4],
    s: [__m512i; 4],
    coef: __m256i,
}

/// One vector's super-block prepared: its 256 values in the type's order
/// and its 16 sums (or, for Q4_K and Q5_K, [`sums32`]).
#[derive(Clone, Copy)]
#[repr(C)]
pub(in crate::kernels::x86) struct A {
    q: [__m512i; 4],
    sums: __m256i,
}

/// One vector's super-block in value order, where it lies.
#[derive(Clone, Copy)]
pub(in crate::kernels::x86) struct Plain {
    q: *const i8,
    bsums: *const i16,
}

/// Which 32 values (in units of 32) go to the low and high halves of
/// prepared vector `k`, for Q4_K and Q5_K.
const K4_ORDER: [(usize, usize); 4] = [(0, 2), (1, 3), (4, 6), (5, 7)];

/// The same for Q2_K and Q3_K.
const K2_ORDER: [(usize, usize); 4] = [(0, 4), (1, 5), (2, 6), (3, 7)];

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

/// `vpermw` indices of the scale words of vector `k` in [`K4_ORDER`]
/// (32-value sub-blocks: one per half).
static IDX_K4: [[u16; 32]; 4] = {
    let mut t = [[0u16; 32]; 4];
    let mut k = 0;
    while k < 4 {
        t[k] = halves(K4_ORDER[k].0 as u16, K4_ORDER[k].1 as u16);
        k += 1;
    }
    t
};

/// `vpermw` indices of the scale words of vector `k` in [`K2_ORDER`]
/// (16-value sub-blocks: one per 128-bit lane, two per unit of 32).
static IDX_K2: [[u16; 32]; 4] = {
    let mut t = [[0u16; 32]; 4];
    let mut k = 0;
    while k < 4 {
        let mut i = 0;
        while i < 32 {
            let unit = if i < 16 { K2_ORDER[k].0 } else { K2_ORDER[k].1 };
            t[k][i] = (2 * unit + (i / 8) % 2) as u16;
            i += 1;
        }
        k += 1;
    }
    t
};

/// `vpermw` indices of the scale words of vector `k` in value order
/// (16-value sub-blocks `4k..4k + 4`).
static IDX_16: [[u16; 32]; 4] = {
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

/// The four scale vectors: words of `w` picked by `idx`.
#[inline(always)]
unsafe fn scale_vectors(idx: &[[u16; 32]; 4], w: __m256i) -> [__m512i; 4] {
    // SAFETY: AVX-512 BW (the caller's promise).
    unsafe {
        let wz = _mm512_castsi256_si512(w);
        let mut s = [_mm512_setzero_si512(); 4];
        for k in 0..4 {
            let i = _mm512_loadu_si512(idx[k].as_ptr() as *const _);
            s[k] = _mm512_permutexvar_epi16(i, wz);
        }
        s
    }
}

/// 64 bytes at `p`.
#[inline(always)]
unsafe fn load(p: *const u8) -> __m512i {
    // SAFETY: the caller vouches for 64 bytes at p; AVX-512F.
    unsafe { _mm512_loadu_si512(p as *const _) }
}

/// 32 bytes at `p` in both halves of a vector.
#[inline(always)]
unsafe fn bcast(p: *const u8) -> __m512i {
    // SAFETY: the caller vouches for 32 bytes at p; AVX-512F.
    unsafe { _mm512_broadcast_i64x4(_mm256_loadu_si256(p as *const __m256i)) }
}

/// Word counts `(s0, s1)` for the two halves of a vector.
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

/// Words shifted right by `n` (a constant once inlined).
#[inline(always)]
unsafe fn srl(x: __m512i, n: usize) -> __m512i {
    // SAFETY: AVX-512 BW.
    unsafe { _mm512_srl_epi16(x, _mm_cvtsi32_si128(n as i32)) }
}

/// Words shifted left by `n` (a constant once inlined).
#[inline(always)]
unsafe fn sll(x: __m512i, n: usize) -> __m512i {
    // SAFETY: AVX-512 BW.
    unsafe { _mm512_sll_epi16(x, _mm_cvtsi32_si128(n as i32)) }
}

/// `x + add` in the bytes where `x` has one of the bits of `bits`.
#[inline(always)]
unsafe fn add_where(v: __m512i, x: __m512i, bits: __m512i, add: i8) -> __m512i {
    // SAFETY: AVX-512 BW.
    unsafe {
        let k = _mm512_test_epi8_mask(x, bits);
        _mm512_mask_add_epi8(v, k, v, _mm512_set1_epi8(add))
    }
}

/// Prepared activations: the 64-byte vectors of `q` rearranged by `order`
/// in units of 32.
#[inline(always)]
unsafe fn arrange(q: *const i8, order: &[(usize, usize); 4], sums: __m256i) -> A {
    // SAFETY: 256 activations at q; AVX-512F.
    unsafe {
        let mut a = A {
            q: [_mm512_setzero_si512(); 4],
            sums,
        };
        for k in 0..4 {
            let lo = _mm256_loadu_si256(q.add(32 * order[k].0) as *const __m256i);
            let hi = _mm256_loadu_si256(q.add(32 * order[k].1) as *const __m256i);
            a.q[k] = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
        }
        a
    }
}

/// `vpmaddubsw` of vector `k` with the activations at `q`.
#[inline(always)]
unsafe fn pmadd(w: &W, k: usize, q: *const i8) -> __m512i {
    // SAFETY: 64 activations at q; AVX-512 BW.
    unsafe { _mm512_maddubs_epi16(w.v[k], _mm512_loadu_si512(q as *const _)) }
}

/// The products and scales of a super-block with its activations `q` (in
/// the order of `w`): eight `i32` lanes adding up to `sum_k sum(v_k * q_k
/// * s_k)`. (The first two scalings are `vpmaddwd`s, not `vpdpwssd`s into
/// zero, which LLVM would split into a `vpmaddwd` and an add of zero.)
#[inline(always)]
unsafe fn dot4(w: &W, q: *const i8) -> __m256i {
    // SAFETY: 256 activations at q; AVX-512 BW and VNNI.
    unsafe {
        let a0 = _mm512_madd_epi16(pmadd(w, 0, q), w.s[0]);
        let a1 = _mm512_madd_epi16(pmadd(w, 1, q.add(64)), w.s[1]);
        let a0 = _mm512_dpwssd_epi32(a0, pmadd(w, 2, q.add(128)), w.s[2]);
        let a1 = _mm512_dpwssd_epi32(a1, pmadd(w, 3, q.add(192)), w.s[3]);
        let a = _mm512_add_epi32(a0, a1);
        _mm256_add_epi32(_mm512_castsi512_si256(a), _mm512_extracti64x4_epi64::<1>(a))
    }
}

/// `(x & 0x0f) | h` bytewise, `h` already masked to other bits.
#[inline(always)]
unsafe fn low_nibble_or(x: __m512i, h: __m512i) -> __m512i {
    // SAFETY: AVX-512F. Truth table (A & C) | B with A = x, B = h,
    // C = 0x0f: 0xF0 & 0xAA | 0xCC = 0xEC.
    unsafe { _mm512_ternarylogic_epi32::<0xEC>(x, h, _mm512_set1_epi8(0x0f)) }
}

/// Q4_K and Q5_K's nibbles in [`K4_ORDER`]: the low nibbles of bytes
/// `64j..64j + 64`, then their high nibbles (a word shift by 4 moves a
/// byte's high nibble down; the next byte's bits land above, masked off).
#[inline(always)]
unsafe fn k4_nibbles(qs: *const u8) -> [__m512i; 4] {
    // SAFETY: 128 bytes at qs; AVX-512 BW.
    unsafe {
        let m4 = _mm512_set1_epi8(0x0f);
        let mut v = [_mm512_setzero_si512(); 4];
        for j in 0..2 {
            let x = load(qs.add(64 * j));
            v[2 * j] = _mm512_and_si512(x, m4);
            v[2 * j + 1] = _mm512_and_si512(_mm512_srli_epi16::<4>(x), m4);
        }
        v
    }
}

/// Q4_K and Q5_K's scale vectors (from the words `[scales | minimums]`).
#[inline(always)]
unsafe fn k4_words(b: *const u8) -> __m256i {
    // SAFETY: 16 bytes at b + 4; AVX2.
    unsafe { _mm256_cvtepu8_epi16(k4_scales(b.add(4))) }
}

/// Q4_K.
pub(in crate::kernels::x86) struct Q4K;

impl KQuant for Q4K {
    const BYTES: usize = 144;
    const MINS: bool = true;
    const GROUP: bool = true;
    const D_AT: usize = 0;
    type A = A;
    type W = W;

    #[inline(always)]
    unsafe fn prep(q: *const i8, bsums: *const i16) -> A {
        // SAFETY: the caller's promise.
        unsafe { arrange(q, &K4_ORDER, sums32(bsums)) }
    }

    #[inline(always)]
    unsafe fn unpack(b: *const u8) -> W {
        // SAFETY: 144 bytes at b; AVX-512 BW.
        unsafe {
            let words = k4_words(b);
            W {
                v: k4_nibbles(b.add(16)),
                s: scale_vectors(&IDX_K4, words),
                coef: words,
            }
        }
    }

    #[inline(always)]
    unsafe fn dot(w: &W, a: &A) -> (__m256i, __m256i) {
        // SAFETY: the caller's promise.
        unsafe {
            let q = a.q.as_ptr() as *const i8;
            (dot4(w, q), _mm256_madd_epi16(w.coef, a.sums))
        }
    }
}

/// Q5_K: Q4_K's nibbles, and the fifth bit of value `32 i + l` in bit `i`
/// of byte `l` of `qh`, added as 16 where a byte test finds it.
pub(in crate::kernels::x86) struct Q5K;

impl KQuant for Q5K {
    const BYTES: usize = 176;
    const MINS: bool = true;
    const GROUP: bool = true;
    const D_AT: usize = 0;
    type A = A;
    type W = W;

    #[inline(always)]
    unsafe fn prep(q: *const i8, bsums: *const i16) -> A {
        // SAFETY: the caller's promise.
        unsafe { arrange(q, &K4_ORDER, sums32(bsums)) }
    }

    #[inline(always)]
    unsafe fn unpack(b: *const u8) -> W {
        // SAFETY: 176 bytes at b; AVX-512 BW.
        unsafe {
            let words = k4_words(b);
            let mut v = k4_nibbles(b.add(48));
            let qh = bcast(b.add(16));
            for k in 0..4 {
                let (lo, hi) = K4_ORDER[k];
                v[k] = add_where(v[k], qh, bytes2(1 << lo, 1 << hi), 16);
            }
            W {
                v,
                s: scale_vectors(&IDX_K4, words),
                coef: words,
            }
        }
    }

    #[inline(always)]
    unsafe fn dot(w: &W, a: &A) -> (__m256i, __m256i) {
        // SAFETY: the caller's promise.
        unsafe {
            let q = a.q.as_ptr() as *const i8;
            (dot4(w, q), _mm256_madd_epi16(w.coef, a.sums))
        }
    }
}

/// Q6_K, in value order: per half `n` of 128 values, `ql[64n..64n + 64]`
/// holds the low nibbles of values `128n..128n + 64` and, in its high
/// nibbles, of `128n + 64..128n + 128`; byte `l` of `qh[32n..]` holds the
/// top two bits of values `128n + l + 32 i` in bits `2i..2i + 2`. Values
/// `u - 32`.
pub(in crate::kernels::x86) struct Q6K;

impl KQuant for Q6K {
    const BYTES: usize = 210;
    const MINS: bool = false;
    const GROUP: bool = true;
    const D_AT: usize = 208;
    type A = Plain;
    type W = W;

    #[inline(always)]
    unsafe fn prep(q: *const i8, bsums: *const i16) -> Plain {
        Plain { q, bsums }
    }

    #[inline(always)]
    unsafe fn unpack(b: *const u8) -> W {
        // SAFETY: 210 bytes at b; AVX-512 BW.
        unsafe {
            let sc = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(192) as *const __m128i));
            let mut v = [_mm512_setzero_si512(); 4];
            for n in 0..2 {
                let l = load(b.add(64 * n));
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
                s: scale_vectors(&IDX_16, sc),
                coef,
            }
        }
    }

    #[inline(always)]
    unsafe fn dot(w: &W, a: &Plain) -> (__m256i, __m256i) {
        // SAFETY: the caller's promise.
        unsafe {
            let c = _mm256_madd_epi16(w.coef, _mm256_loadu_si256(a.bsums as *const __m256i));
            (_mm256_add_epi32(dot4(w, a.q), c), _mm256_setzero_si256())
        }
    }
}

/// Q2_K and Q3_K's two-bit fields in [`K2_ORDER`]: bits `2j..2j + 2` of the
/// 64 bytes at `qs` (the next byte's bits land above, masked off).
#[inline(always)]
unsafe fn k2_pairs(qs: *const u8) -> [__m512i; 4] {
    // SAFETY: 64 bytes at qs; AVX-512 BW.
    unsafe {
        let x = load(qs);
        let three = _mm512_set1_epi8(3);
        let mut v = [_mm512_setzero_si512(); 4];
        for j in 0..4 {
            v[j] = _mm512_and_si512(srl(x, 2 * j), three);
        }
        v
    }
}

/// Q3_K: bits `2j..2j + 2` of `qs`, plus 4 where bit `j` (values
/// `32j + l`) or `4 + j` (values `128 + 32j + l`) of `hmask[l]` is set.
/// Values `u - 4`: the scales meet the prepared sums times -4.
pub(in crate::kernels::x86) struct Q3K;

impl KQuant for Q3K {
    const BYTES: usize = 110;
    const MINS: bool = false;
    const GROUP: bool = true;
    const D_AT: usize = 108;
    type A = A;
    type W = W;

    #[inline(always)]
    unsafe fn prep(q: *const i8, bsums: *const i16) -> A {
        // SAFETY: the caller's promise.
        unsafe { arrange(q, &K2_ORDER, super::minus4(bsums)) }
    }

    #[inline(always)]
    unsafe fn unpack(b: *const u8) -> W {
        // SAFETY: 110 bytes at b; AVX-512 BW.
        unsafe {
            let s8 = _mm_sub_epi8(q3_scales(b), _mm_set1_epi8(32));
            let sc = _mm256_cvtepi8_epi16(s8);
            // hmask's bits 4..8 moved down to 0..4 in the high half: bit j
            // of each byte is then the high bit of vector j in both halves
            // (the next byte's bits land above bit 3, masked off below).
            let hm = _mm512_srlv_epi16(bcast(b), counts(0, 4));
            let mut v = k2_pairs(b.add(32));
            let four = _mm512_set1_epi8(4);
            for j in 0..4 {
                // Bit j to bit 2 (up by at most 2, down by 1: within the
                // byte, the neighbours' bits outside bit 2), then `v | (h &
                // 4)`: truth table A | (B & C) = 0xF0 | (0xCC & 0xAA).
                let h = if j <= 2 {
                    sll(hm, 2 - j)
                } else {
                    srl(hm, j - 2)
                };
                v[j] = _mm512_ternarylogic_epi32::<0xF8>(v[j], h, four);
            }
            W {
                v,
                s: scale_vectors(&IDX_K2, sc),
                coef: sc,
            }
        }
    }

    #[inline(always)]
    unsafe fn dot(w: &W, a: &A) -> (__m256i, __m256i) {
        // SAFETY: the caller's promise.
        unsafe {
            let q = a.q.as_ptr() as *const i8;
            let c = _mm256_madd_epi16(w.coef, a.sums);
            (_mm256_add_epi32(dot4(w, q), c), _mm256_setzero_si256())
        }
    }
}

/// Q2_K: bits `2j..2j + 2` of `qs`; scales and minimums are the nibbles of
/// `scales`.
pub(in crate::kernels::x86) struct Q2K;

impl KQuant for Q2K {
    const BYTES: usize = 84;
    const MINS: bool = true;
    const GROUP: bool = true;
    const D_AT: usize = 80;
    type A = A;
    type W = W;

    #[inline(always)]
    unsafe fn prep(q: *const i8, bsums: *const i16) -> A {
        // SAFETY: the caller's promise.
        unsafe {
            let sums = _mm256_loadu_si256(bsums as *const __m256i);
            arrange(q, &K2_ORDER, sums)
        }
    }

    #[inline(always)]
    unsafe fn unpack(b: *const u8) -> W {
        // SAFETY: 84 bytes at b; AVX-512 BW.
        unsafe {
            let x = _mm_loadu_si128(b as *const __m128i);
            let m4 = _mm_set1_epi8(0x0f);
            let sc = _mm256_cvtepu8_epi16(_mm_and_si128(x, m4));
            let mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(x), m4));
            W {
                v: k2_pairs(b.add(16)),
                s: scale_vectors(&IDX_K2, sc),
                coef: mins,
            }
        }
    }

    #[inline(always)]
    unsafe fn dot(w: &W, a: &A) -> (__m256i, __m256i) {
        // SAFETY: the caller's promise.
        unsafe {
            let q = a.q.as_ptr() as *const i8;
            (dot4(w, q), _mm256_madd_epi16(w.coef, a.sums))
        }
    }
}
