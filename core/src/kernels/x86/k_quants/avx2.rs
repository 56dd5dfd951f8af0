//! The K-quants with 256-bit vectors (AVX2): a super-block is eight vectors
//! of 32 values in value order; each vector's products go through one
//! `vpmaddubsw` and one `vpmaddwd` by its scale words (one 32-value
//! sub-block, or two of 16: one per 128-bit lane), then an add. Bits are
//! unpacked with word shifts; every shift is followed by a mask that keeps
//! only bits that came from the same byte (checked at each use).
//!
//! # Safety
//! As [`super`]: the CPU features of the `avx2` set.

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
    v: [__m256i; 8],
    s: [__m256i; 8],
    coef: __m256i,
}

/// One vector's super-block: its values where they lie (in value order)
/// and its 16 sums (or, for Q4_K and Q5_K, [`sums32`]).
#[derive(Clone, Copy)]
pub(in crate::kernels::x86) struct A {
    q: *const i8,
    sums: __m256i,
}

/// [`A`] with the 16 sums as they are.
#[inline(always)]
unsafe fn plain(q: *const i8, bsums: *const i16) -> A {
    // SAFETY: 16 sums at bsums; AVX.
    unsafe {
        A {
            q,
            sums: _mm256_loadu_si256(bsums as *const __m256i),
        }
    }
}

/// 32 bytes aligned for a vector load.
#[repr(C, align(32))]
struct Aligned([u8; 32]);

/// `vpshufb` indices that fill each 128-bit lane with word `c`.
static WORD: [Aligned; 8] = {
    let mut t = [const { Aligned([0u8; 32]) }; 8];
    let mut c = 0;
    while c < 8 {
        let mut i = 0;
        while i < 32 {
            t[c].0[i] = (2 * c + i % 2) as u8;
            i += 1;
        }
        c += 1;
    }
    t
};

/// Even bytes first, then odd ones.
static EVEN_ODD: [u8; 16] = [0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15];

#[inline(always)]
unsafe fn table128(t: &[u8; 16]) -> __m128i {
    // SAFETY: 16 bytes; SSE2.
    unsafe { _mm_loadu_si128(t.as_ptr() as *const __m128i) }
}

#[inline(always)]
unsafe fn load(p: *const u8) -> __m256i {
    // SAFETY: the caller vouches for 32 bytes at p; AVX.
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

/// Words shifted right by `n` (a constant once inlined).
#[inline(always)]
unsafe fn srl(x: __m256i, n: usize) -> __m256i {
    // SAFETY: AVX2.
    unsafe { _mm256_srl_epi16(x, _mm_cvtsi32_si128(n as i32)) }
}

/// Words shifted left by `n`.
#[inline(always)]
unsafe fn sll(x: __m256i, n: usize) -> __m256i {
    // SAFETY: AVX2.
    unsafe { _mm256_sll_epi16(x, _mm_cvtsi32_si128(n as i32)) }
}

/// Words `c` of each 128-bit lane of `w` filling their lanes, `c` in
/// `0..8`.
#[inline(always)]
unsafe fn spread(w: __m256i) -> [__m256i; 8] {
    // SAFETY: AVX2.
    unsafe {
        let mut s = [_mm256_setzero_si256(); 8];
        for c in 0..8 {
            // A volatile load: LLVM would turn a constant vpshufb into a
            // shift and a lane-crossing broadcast, two shuffles for one.
            let idx = core::ptr::read_volatile(&WORD[c] as *const Aligned as *const __m256i);
            s[c] = _mm256_shuffle_epi8(w, idx);
        }
        s
    }
}

/// `vpmaddubsw` then `vpmaddwd` of vector `c`.
#[inline(always)]
unsafe fn product(w: &W, c: usize, q: *const i8) -> __m256i {
    // SAFETY: 32 activations at q; AVX2.
    unsafe {
        let x = _mm256_maddubs_epi16(w.v[c], load(q as *const u8));
        _mm256_madd_epi16(x, w.s[c])
    }
}

/// The products and scales of a super-block with its activations: eight
/// `i32` lanes adding up to `sum_c sum(v_c * q_c * s_c)`.
#[inline(always)]
unsafe fn dot8(w: &W, q: *const i8) -> __m256i {
    // SAFETY: 256 activations at q; AVX2.
    unsafe {
        let mut a0 = product(w, 0, q);
        let mut a1 = product(w, 1, q.add(32));
        for c in (2..8).step_by(2) {
            a0 = _mm256_add_epi32(a0, product(w, c, q.add(32 * c)));
            a1 = _mm256_add_epi32(a1, product(w, c + 1, q.add(32 * c + 32)));
        }
        _mm256_add_epi32(a0, a1)
    }
}

/// The prepared sums times the coefficients: eight `i32` lanes.
#[inline(always)]
unsafe fn sums(w: &W, a: &A) -> __m256i {
    // SAFETY: AVX2.
    unsafe { _mm256_madd_epi16(w.coef, a.sums) }
}

/// Q4_K and Q5_K's scale vectors (each sub-block's scale filling a vector)
/// and the words `[scales | minimums]` (for [`sums32`]).
#[inline(always)]
unsafe fn k4(b: *const u8) -> ([__m256i; 8], __m256i) {
    // SAFETY: 16 bytes at b + 4; AVX2.
    unsafe {
        let words = _mm256_cvtepu8_epi16(k4_scales(b.add(4)));
        let sc = _mm256_permute2x128_si256::<0x00>(words, words);
        (spread(sc), words)
    }
}

/// Nibbles of 128 bytes at `qs`: vector `2j` the low nibbles of bytes
/// `32j..32j + 32`, `2j + 1` their high nibbles (a word shift by 4 brings
/// each byte's high nibble down; the next byte's bits land above, masked
/// off).
#[inline(always)]
unsafe fn nibbles(qs: *const u8) -> [__m256i; 8] {
    // SAFETY: 128 bytes at qs; AVX2.
    unsafe {
        let m4 = _mm256_set1_epi8(0x0f);
        let mut v = [_mm256_setzero_si256(); 8];
        for j in 0..4 {
            let x = load(qs.add(32 * j));
            v[2 * j] = _mm256_and_si256(x, m4);
            v[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16::<4>(x), m4);
        }
        v
    }
}

/// Q4_K: vector `c` is sub-block `c`, values `32c..32c + 32`.
pub(in crate::kernels::x86) struct Q4K;

impl KQuant for Q4K {
    const BYTES: usize = 144;
    const MINS: bool = true;
    const GROUP: bool = false;
    const D_AT: usize = 0;
    type A = A;
    type W = W;

    #[inline(always)]
    unsafe fn prep(q: *const i8, bsums: *const i16) -> A {
        // SAFETY: the caller's promise.
        unsafe {
            A {
                q,
                sums: sums32(bsums),
            }
        }
    }

    #[inline(always)]
    unsafe fn unpack(b: *const u8) -> W {
        // SAFETY: 144 bytes at b; AVX2.
        unsafe {
            let (s, coef) = k4(b);
            W {
                v: nibbles(b.add(16)),
                s,
                coef,
            }
        }
    }

    #[inline(always)]
    unsafe fn dot(w: &W, a: &A) -> (__m256i, __m256i) {
        // SAFETY: the caller's promise.
        unsafe { (dot8(w, a.q), sums(w, a)) }
    }
}

/// Q5_K: Q4_K's nibbles, and the fifth bit of value `32c + l` in bit `c`
/// of byte `l` of `qh`, moved to bit 4.
pub(in crate::kernels::x86) struct Q5K;

impl KQuant for Q5K {
    const BYTES: usize = 176;
    const MINS: bool = true;
    const GROUP: bool = false;
    const D_AT: usize = 0;
    type A = A;
    type W = W;

    #[inline(always)]
    unsafe fn prep(q: *const i8, bsums: *const i16) -> A {
        // SAFETY: the caller's promise.
        unsafe {
            A {
                q,
                sums: sums32(bsums),
            }
        }
    }

    #[inline(always)]
    unsafe fn unpack(b: *const u8) -> W {
        // SAFETY: 176 bytes at b; AVX2.
        unsafe {
            let (s, coef) = k4(b);
            let mut v = nibbles(b.add(48));
            let qh = load(b.add(16));
            // Bits 0..4 of each byte, moved up by 4 (bits 4..8 of the byte
            // below land in the low nibble, masked off below), then bit
            // 4 + c down to 4; bits 4..8 are moved down from qh itself.
            let qh4 = _mm256_slli_epi16::<4>(qh);
            let m = _mm256_set1_epi8(0x10);
            for (c, v) in v.iter_mut().enumerate() {
                let h = if c < 4 { srl(qh4, c) } else { srl(qh, c - 4) };
                *v = _mm256_or_si256(*v, _mm256_and_si256(h, m));
            }
            W { v, s, coef }
        }
    }

    #[inline(always)]
    unsafe fn dot(w: &W, a: &A) -> (__m256i, __m256i) {
        // SAFETY: the caller's promise.
        unsafe { (dot8(w, a.q), sums(w, a)) }
    }
}

/// `(l & m4) | (h & m30)`.
#[inline(always)]
unsafe fn nibble_or(l: __m256i, h: __m256i, m4: __m256i, m30: __m256i) -> __m256i {
    // SAFETY: AVX2.
    unsafe { _mm256_or_si256(_mm256_and_si256(l, m4), _mm256_and_si256(h, m30)) }
}

/// Q6_K: vector `c` holds values `32c..32c + 32` (sub-blocks `2c`,
/// `2c + 1`): per half `n`, the low then high nibbles of `ql[64n..]` and
/// `ql[64n + 32..]`, the top bits from byte `l` of `qh[32n..]`, bits
/// `2i..2i + 2` for values `128n + 32i + l`. Values `u - 32`.
pub(in crate::kernels::x86) struct Q6K;

impl KQuant for Q6K {
    const BYTES: usize = 210;
    const MINS: bool = false;
    const GROUP: bool = false;
    const D_AT: usize = 208;
    type A = A;
    type W = W;

    #[inline(always)]
    unsafe fn prep(q: *const i8, bsums: *const i16) -> A {
        // SAFETY: the caller's promise.
        unsafe { plain(q, bsums) }
    }

    #[inline(always)]
    unsafe fn unpack(b: *const u8) -> W {
        // SAFETY: 210 bytes at b; AVX2.
        unsafe {
            let raw = _mm_loadu_si128(b.add(192) as *const __m128i);
            let e = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(raw, table128(&EVEN_ODD)));
            let m4 = _mm256_set1_epi8(0x0f);
            let m30 = _mm256_set1_epi8(0x30);
            let mut v = [_mm256_setzero_si256(); 8];
            for n in 0..2 {
                let l0 = load(b.add(64 * n));
                let l1 = load(b.add(64 * n + 32));
                let h = load(b.add(128 + 32 * n));
                // Two bits of qh moved to bits 4..6 of their own byte: the
                // bits that cross into the next byte, or come from it,
                // fall outside 0x30.
                let h0 = _mm256_slli_epi16::<4>(h);
                let h1 = _mm256_slli_epi16::<2>(h);
                let h3 = _mm256_srli_epi16::<2>(h);
                let l2 = _mm256_srli_epi16::<4>(l0);
                let l3 = _mm256_srli_epi16::<4>(l1);
                v[4 * n] = nibble_or(l0, h0, m4, m30);
                v[4 * n + 1] = nibble_or(l1, h1, m4, m30);
                v[4 * n + 2] = nibble_or(l2, h, m4, m30);
                v[4 * n + 3] = nibble_or(l3, h3, m4, m30);
            }
            // -32 * scale, at most 4096 in magnitude: an i16.
            let sc = _mm256_cvtepi8_epi16(raw);
            let coef = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16::<5>(sc));
            W {
                v,
                s: spread(e),
                coef,
            }
        }
    }

    #[inline(always)]
    unsafe fn dot(w: &W, a: &A) -> (__m256i, __m256i) {
        // SAFETY: the caller's promise.
        unsafe {
            let i = _mm256_add_epi32(dot8(w, a.q), sums(w, a));
            (i, _mm256_setzero_si256())
        }
    }
}

/// Q3_K: vector `c` is values `32c..32c + 32`, `c = 4n + j`: bits
/// `2j..2j + 2` of `qs[32n..]`, plus 4 where bit `c` of `hmask` is set.
/// Values `u - 4`: the scales meet the prepared sums times -4.
pub(in crate::kernels::x86) struct Q3K;

impl KQuant for Q3K {
    const BYTES: usize = 110;
    const MINS: bool = false;
    const GROUP: bool = false;
    const D_AT: usize = 108;
    type A = A;
    type W = W;

    #[inline(always)]
    unsafe fn prep(q: *const i8, bsums: *const i16) -> A {
        // SAFETY: the caller's promise.
        unsafe {
            A {
                q,
                sums: super::minus4(bsums),
            }
        }
    }

    #[inline(always)]
    unsafe fn unpack(b: *const u8) -> W {
        // SAFETY: 110 bytes at b; AVX2.
        unsafe {
            let s8 = _mm_sub_epi8(q3_scales(b), _mm_set1_epi8(32));
            let e = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s8, table128(&EVEN_ODD)));
            let sc = _mm256_cvtepi8_epi16(s8);
            let hm = load(b);
            let three = _mm256_set1_epi8(3);
            let four = _mm256_set1_epi8(4);
            let mut v = [_mm256_setzero_si256(); 8];
            for n in 0..2 {
                let x = load(b.add(32 + 32 * n));
                for j in 0..4 {
                    let c = 4 * n + j;
                    // Bits 2j.. down to 0 (the next byte's bits land
                    // above, masked off); bit c of hmask to bit 2: up by
                    // at most 2 or down by at most 5, within its byte.
                    let lo = _mm256_and_si256(srl(x, 2 * j), three);
                    let h = if c <= 2 {
                        sll(hm, 2 - c)
                    } else {
                        srl(hm, c - 2)
                    };
                    v[c] = _mm256_or_si256(lo, _mm256_and_si256(h, four));
                }
            }
            W {
                v,
                s: spread(e),
                coef: sc,
            }
        }
    }

    #[inline(always)]
    unsafe fn dot(w: &W, a: &A) -> (__m256i, __m256i) {
        // SAFETY: the caller's promise.
        unsafe {
            let i = _mm256_add_epi32(dot8(w, a.q), sums(w, a));
            (i, _mm256_setzero_si256())
        }
    }
}

/// Q2_K: vector `c` is values `32c..32c + 32`, `c = 4n + j`: bits
/// `2j..2j + 2` of `qs[32n..]`; scales and minimums are the nibbles of
/// `scales`.
pub(in crate::kernels::x86) struct Q2K;

impl KQuant for Q2K {
    const BYTES: usize = 84;
    const MINS: bool = true;
    const GROUP: bool = false;
    const D_AT: usize = 80;
    type A = A;
    type W = W;

    #[inline(always)]
    unsafe fn prep(q: *const i8, bsums: *const i16) -> A {
        // SAFETY: the caller's promise.
        unsafe { plain(q, bsums) }
    }

    #[inline(always)]
    unsafe fn unpack(b: *const u8) -> W {
        // SAFETY: 84 bytes at b; AVX2.
        unsafe {
            let x = _mm_loadu_si128(b as *const __m128i);
            let m4 = _mm_set1_epi8(0x0f);
            let sc = _mm_and_si128(x, m4);
            let mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(x), m4));
            let e = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(sc, table128(&EVEN_ODD)));
            let three = _mm256_set1_epi8(3);
            let mut v = [_mm256_setzero_si256(); 8];
            for n in 0..2 {
                let x = load(b.add(16 + 32 * n));
                for j in 0..4 {
                    v[4 * n + j] = _mm256_and_si256(srl(x, 2 * j), three);
                }
            }
            W {
                v,
                s: spread(e),
                coef: mins,
            }
        }
    }

    #[inline(always)]
    unsafe fn dot(w: &W, a: &A) -> (__m256i, __m256i) {
        // SAFETY: the caller's promise.
        unsafe { (dot8(w, a.q), sums(w, a)) }
    }
}
