//! The interleaved Q4_K and Q5_K
//! ([`TensorType::Q4_Kx16`](crate::kernels::TensorType::Q4_Kx16),
//! [`TensorType::Q5_Kx16`](crate::kernels::TensorType::Q5_Kx16), laid out by
//! [`interleave_rows_k`](crate::kernels::interleave::interleave_rows_k))
//! with 512-bit vectors: lane `r` of every vector is row `r` of a band of
//! 16, as in [`super::x16`], so nothing is reduced across lanes, and the
//! six-bit scales of 16 rows are unpacked together.
//!
//! One unit (16 rows' super-block `s`) times one vector:
//!
//! - each 64-byte vector of nibbles holds 4 bytes of every row: its low
//!   nibbles are 4 values of sub-block `2k`, its high nibbles the same 4 of
//!   sub-block `2k + 1` (Q5_K: plus 16 where a byte test finds the value's
//!   fifth bit); one `vpdpbusd` each, with the 4 activations broadcast,
//!   adds their products to a row's lane;
//! - sixteen values of a Q4_K sub-block sum to at most `16 * 15 * 127 =
//!   30480` in magnitude (eight of Q5_K's to `8 * 31 * 127 = 31496`), so
//!   each such partial sum is exact as the low `i16` word of its lane (the
//!   high word its sign), and a `vpdpwssd` with the sub-block's scale in
//!   the low word (0 in the high) adds `scale * sum`, exactly;
//! - the minimums: a `vpdpwssd` of each row's pair `(m_2i, m_2i+1)` by the
//!   sums of the activations of the two sub-blocks.
//!
//! So `isum` and `msum` are the reference's integers, and each lane then
//! does the reference's floating-point steps in its order, super-block
//! after super-block: `acc + (d * d_a) * isum`, then that minus
//! `(dmin * d_a) * msum` (no fused multiply-add). The numbers are the plain
//! Q4_K and Q5_K kernels'.
//!
//! A batch goes `NC` vectors at a time through each unit: its nibbles and
//! scales are unpacked once for them.
//!
//! # Safety
//! Every function needs AVX-512 F, BW, VL, VNNI and F16C.

use core::arch::x86_64::*;
use core::ptr::read_unaligned;

use super::k_quants::sums32;
use super::{prefetch, prefetch_ahead, Prefetch};
use crate::kernels::acts::Acts;
use crate::kernels::interleave::{for_each_band, k_bytes, BAND};
use crate::kernels::types::QK_K;

/// Vectors per tile of a batch.
const NC: usize = 4;

/// How far ahead the first pass over a band prefetches its units into L2
/// ([`Prefetch`]: on Intel, as the other interleaved kernels; elsewhere
/// none for Q4_K, [`Q5_AHEAD`] for Q5_K). A unit's 36 lines are prefetched a few at a time as its vectors
/// are read, not in one burst when it starts (measured, whole-model Q4_K_M
/// decode at 1 thread, 3 alternating runs: 20.0-20.2 tok/s with the burst,
/// 22.3-22.7 spread; other distances, spread: 1536 bytes 20.7, 3584 21.2-21.5,
/// 4608 20.5-20.6, 6912 20.8-21.2). On Intel the same lines are prefetched
/// [`NEAR`](super::NEAR) bytes ahead into L1 too ([`prefetch_ahead`]).
fn ahead<const Q5: bool>() -> usize {
    match prefetch() {
        Prefetch::L1 if Q5 => Q5_AHEAD,
        p => p.ahead(0),
    }
}

/// How far ahead interleaved Q5_K prefetches under [`Prefetch::L1`] (AMD):
/// into L2, and [`NEAR`](super::NEAR) bytes ahead into L1
/// ([`prefetch_ahead`]). A unit's reads alternate between its fifth bits
/// and its nibbles, and without software prefetch a core of the AMD EPYC
/// Zen 4 development machine streamed them at a third of its bandwidth
/// (`kernel-table --quick --matvec`, 2026-12-06: 9.3 GB/s from memory
/// against 28.2 from L2; TinyLlama-shaped Q5_K_M decode 0.71x llama.cpp
/// at 1 thread). The 22 layers' products alone (Q5_Kx16, 1 thread, two
/// runs each): none 10.0-11.4 GB/s, 1024 bytes 11.6-11.7, 1536 21.0-21.5,
/// 2048 21.1-22.9, 2560 20.3-20.6, 3072 15.0-20.5, 4096 18.2-19.0.
/// Interleaved Q4_K streams well without (26.6-28.7 GB/s; 14.1-23.3 with
/// these distances), so it does not prefetch there.
const Q5_AHEAD: usize = 2048;

/// Interleaved Q4_K (or, `Q5`, Q5_K) weights (`rows` whole bands) times
/// every vector of `a` (the `MatFn` contract).
///
/// # Safety
/// The CPU has the features of this module; `check_mat` accepted the
/// arguments; `rows` is a multiple of 16.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn mat<const Q5: bool>(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    let nsb = a.cols / QK_K;
    for_each_band(w, a, out, rows, nsb * k_bytes(Q5), NC, |band, c0, nc, o| {
        // SAFETY: `for_each_band` hands out bands, vectors and outputs
        // inside the checked arguments; the CPU has the features (this
        // function's contract).
        unsafe {
            let pf = if c0 == 0 { ahead::<Q5>() } else { 0 };
            match nc {
                1 => whole_band::<1, Q5>(band, nsb, a, c0, o, rows, pf),
                2 => whole_band::<2, Q5>(band, nsb, a, c0, o, rows, pf),
                3 => whole_band::<3, Q5>(band, nsb, a, c0, o, rows, pf),
                _ => whole_band::<4, Q5>(band, nsb, a, c0, o, rows, pf),
            }
        }
    });
}

/// A `vpshufb` control that applies `c` (the byte indices for the first
/// dword, with 0x80 for a zero) to every dword of a 128-bit lane.
#[inline(always)]
unsafe fn per_dword(c: u32) -> __m512i {
    // SAFETY: AVX-512F.
    unsafe {
        // Dword p of a lane is its bytes 4p..4p + 4: add 4p to each index.
        let add = |p: u32| (c + 0x0404_0404 * p) as i32;
        _mm512_broadcast_i32x4(_mm_setr_epi32(add(0), add(1), add(2), add(3)))
    }
}

/// `vpshufb` control: byte `j` of each dword, zero-extended to the dword
/// (a sub-block's scale as the word pair `[scale, 0]`).
#[inline(always)]
unsafe fn byte_of_dword(j: u32) -> __m512i {
    // SAFETY: AVX-512F. Only byte 0's index matters (0x80 + 4p keeps the
    // zeroing bit).
    unsafe { per_dword(0x8080_8000 | j) }
}

/// `vpshufb` control: bytes `2i` and `2i + 1` of each dword, as words (a
/// pair of minimums).
#[inline(always)]
unsafe fn pair_of_dword(i: u32) -> __m512i {
    // SAFETY: AVX-512F.
    unsafe { per_dword(0x8000_8000 | ((2 * i + 1) << 16) | (2 * i)) }
}

/// The activations' sums of the 8 sub-blocks of 32 of the super-block
/// whose 16 sums are at `bsums`, as word pairs `(B_2i, B_2i+1)`: `[B0 B1,
/// B2 B3, B4 B5, B6 B7]` (the words of [`sums32`], as the minimums' pairs
/// take them).
///
/// # Safety
/// 16 sums at `bsums`; AVX2.
#[inline(always)]
unsafe fn sum_pairs(bsums: *const i16) -> [i32; 4] {
    // SAFETY: the caller's promise.
    unsafe {
        let mut bp = [0i32; 4];
        let words = _mm256_extracti128_si256::<1>(sums32(bsums));
        _mm_storeu_si128(bp.as_mut_ptr() as *mut __m128i, words);
        bp
    }
}

/// One band (16 rows of `nsb` super-blocks at `band`) times vectors
/// `c0..c0 + C` of `a`; row `r` of vector `c0 + j` goes to `out[j * rows +
/// r]`. Units are prefetched `pf` bytes ahead into L2 (0: not at all).
///
/// # Safety
/// As [`mat`], and the band, the vectors and the outputs are inside the
/// checked arguments.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn whole_band<const C: usize, const Q5: bool>(
    band: *const u8,
    nsb: usize,
    a: &Acts,
    c0: usize,
    out: *mut f32,
    rows: usize,
    pf: usize,
) {
    let m4 = _mm512_set1_epi8(0x0f);
    let unit_bytes = BAND * k_bytes(Q5);
    // The first vector of nibbles (after Q5_K's 8 of fifth bits).
    let qs = if Q5 { 12 } else { 4 };
    // Chunks (4 values of each row) per exact partial sum (see the module
    // documentation).
    let span = if Q5 { 2 } else { 4 };
    let mut acc = [_mm512_setzero_ps(); C];
    // SAFETY: (for the whole body) unit s of the band (unit_bytes at band
    // + s unit_bytes) and super-block s of vectors c0..c0 + C (256 values, 16
    // sums, a scale) are inside the checked arguments; out[j * rows..][..16]
    // is inside the checked output. The CPU has the features.
    unsafe {
        for s in 0..nsb {
            let u = band.add(s * unit_bytes);
            // The header and scales (and fifth bits); the nibbles below.
            prefetch_ahead(u, qs * 64, pf, Prefetch::L2);
            let v = |g: usize| _mm512_loadu_si512(u.add(64 * g) as *const _);
            // Dword g of every row's super-block: g = 0 is [d | dmin],
            // 1..4 the packed scales, then (Q5_K) 8 of fifth bits and the
            // nibbles.
            let hdr = v(0);
            let d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(hdr));
            let dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(hdr)));
            // The reference's `scale_min_k4` for the 16 rows: bytes j of
            // (sc_lo, sc_hi) are the scales of sub-blocks j and 4 + j,
            // of (m_lo, m_hi) their minimums.
            let (u0, u1, u2) = (v(1), v(2), v(3));
            let (m6, m30) = (_mm512_set1_epi8(0x3f), _mm512_set1_epi8(0x30));
            // (a & 0x0f) | (b & 0x30), b = u >> 2: bits 6..8 of each byte
            // at 4..6 (the next byte's bits land at 6..8, masked off).
            let top = |a: __m512i, u: __m512i| {
                _mm512_or_si512(
                    _mm512_and_si512(a, m4),
                    _mm512_and_si512(_mm512_srli_epi32::<2>(u), m30),
                )
            };
            let sc_lo = _mm512_and_si512(u0, m6);
            let sc_hi = top(u2, u0);
            let m_lo = _mm512_and_si512(u1, m6);
            let m_hi = top(_mm512_srli_epi32::<4>(u2), u1);
            let mut sc = [_mm512_setzero_si512(); 8];
            for j in 0..4 {
                sc[j] = _mm512_shuffle_epi8(sc_lo, byte_of_dword(j as u32));
                sc[4 + j] = _mm512_shuffle_epi8(sc_hi, byte_of_dword(j as u32));
            }
            let mins = [
                _mm512_shuffle_epi8(m_lo, pair_of_dword(0)),
                _mm512_shuffle_epi8(m_lo, pair_of_dword(1)),
                _mm512_shuffle_epi8(m_hi, pair_of_dword(0)),
                _mm512_shuffle_epi8(m_hi, pair_of_dword(1)),
            ];
            // isum in two chains per vector (low nibbles, high nibbles).
            let mut il = [_mm512_setzero_si512(); C];
            let mut ih = [_mm512_setzero_si512(); C];
            for k in 0..4 {
                for h in 0..2 {
                    // Nibble vectors 8k + 4h + c: bytes 32k + 16h + 4c of
                    // each row's nibbles, values 64k + 16h + 4c (low) and
                    // 64k + 32 + 16h + 4c (high); their fifth bits (Q5_K)
                    // are bits 2k and 2k + 1 of the same bytes of qh.
                    let at = qs + 8 * k + 4 * h;
                    prefetch_ahead(u.wrapping_add(64 * at), 4 * 64, pf, Prefetch::L2);
                    let mut lo = [_mm512_setzero_si512(); 4];
                    let mut hi = [_mm512_setzero_si512(); 4];
                    for c in 0..4 {
                        let x = v(qs + 8 * k + 4 * h + c);
                        lo[c] = _mm512_and_si512(x, m4);
                        hi[c] = _mm512_and_si512(_mm512_srli_epi16::<4>(x), m4);
                        if Q5 {
                            let qh = v(4 + 4 * h + c);
                            let sixteen = _mm512_set1_epi8(16);
                            let bl =
                                _mm512_test_epi8_mask(qh, _mm512_set1_epi8((1u8 << (2 * k)) as i8));
                            let bh =
                                _mm512_test_epi8_mask(qh, _mm512_set1_epi8((2u8 << (2 * k)) as i8));
                            lo[c] = _mm512_mask_add_epi8(lo[c], bl, lo[c], sixteen);
                            hi[c] = _mm512_mask_add_epi8(hi[c], bh, hi[c], sixteen);
                        }
                    }
                    for j in 0..C {
                        let q = a.k.q.as_ptr().add(((c0 + j) * nsb + s) * QK_K);
                        let group =
                            |i: usize| _mm512_set1_epi32(read_unaligned(q.add(i) as *const i32));
                        for c0 in (0..4).step_by(span) {
                            let mut sl = _mm512_setzero_si512();
                            let mut sh = _mm512_setzero_si512();
                            for c in c0..c0 + span {
                                let i = 64 * k + 16 * h + 4 * c;
                                sl = _mm512_dpbusd_epi32(sl, lo[c], group(i));
                                sh = _mm512_dpbusd_epi32(sh, hi[c], group(i + 32));
                            }
                            il[j] = _mm512_dpwssd_epi32(il[j], sl, sc[2 * k]);
                            ih[j] = _mm512_dpwssd_epi32(ih[j], sh, sc[2 * k + 1]);
                        }
                    }
                }
            }
            for j in 0..C {
                let blk = (c0 + j) * nsb + s;
                // The activations' sums of the 8 sub-blocks of 32, as word
                // pairs (B_2i, B_2i+1): [B0 B1, B2 B3, B4 B5, B6 B7].
                let bp = sum_pairs(a.k.bsums.as_ptr().add(16 * blk));
                let mut msum = _mm512_setzero_si512();
                for i in 0..4 {
                    msum = _mm512_dpwssd_epi32(msum, mins[i], _mm512_set1_epi32(bp[i]));
                }
                let isum = _mm512_add_epi32(il[j], ih[j]);
                let da = _mm512_set1_ps(*a.k.d.as_ptr().add(blk));
                let t = _mm512_add_ps(
                    acc[j],
                    _mm512_mul_ps(_mm512_mul_ps(d, da), _mm512_cvtepi32_ps(isum)),
                );
                acc[j] = _mm512_sub_ps(
                    t,
                    _mm512_mul_ps(_mm512_mul_ps(dmin, da), _mm512_cvtepi32_ps(msum)),
                );
            }
        }
        for (j, acc) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.add(j * rows), *acc);
        }
    }
}

/// The interleaved Q4_K and Q5_K with 256-bit vectors (AVX2, no VNNI): each
/// 64-byte vector of a unit is two halves of 8 rows. `vpmaddubsw` sums two
/// products per word; four of them added (a 16-value partial sum of a
/// sub-block's pairs) stay within `i16`: at most `4 * 2 * 31 * 127 =
/// 31496`, Q5_K's values included; then `vpmaddwd` with the sub-block's
/// scale in both words of each row's dword adds `scale * sum` exactly. The
/// rest is [`super`]'s, lane by lane: the same bits.
pub(super) mod avx2 {
    use core::arch::x86_64::*;
    use core::ptr::read_unaligned;

    use super::super::{prefetch_ahead, Prefetch};
    use super::{ahead, sum_pairs};
    use crate::kernels::acts::Acts;
    use crate::kernels::interleave::{for_each_band, k_bytes, BAND};
    use crate::kernels::types::QK_K;

    /// Vectors per tile of a batch.
    const NC: usize = 2;

    /// Interleaved Q4_K (or, `Q5`, Q5_K) weights times every vector of `a`.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA, F16C; `check_mat` accepted the arguments;
    /// `rows` is a multiple of 16.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(in crate::kernels) unsafe fn mat<const Q5: bool>(
        w: &[u8],
        a: &Acts,
        out: &mut [f32],
        rows: usize,
    ) {
        let nsb = a.cols / QK_K;
        for_each_band(w, a, out, rows, nsb * k_bytes(Q5), NC, |band, c0, nc, o| {
            // SAFETY: `for_each_band` hands out bands, vectors and outputs
            // inside the checked arguments; the CPU has the features (this
            // function's contract).
            unsafe {
                let pf = if c0 == 0 { ahead::<Q5>() } else { 0 };
                for half in 0..2 {
                    // The second half rereads the units from the caches.
                    let pf = if half == 0 { pf } else { 0 };
                    match nc {
                        1 => half_band::<1, Q5>(band, half, nsb, a, c0, o, rows, pf),
                        _ => half_band::<2, Q5>(band, half, nsb, a, c0, o, rows, pf),
                    }
                }
            }
        });
    }

    /// A `vpshufb` control that applies `c` (byte indices of the first
    /// dword, 0x80 for a zero) to every dword of a 128-bit lane.
    #[inline(always)]
    unsafe fn per_dword(c: u32) -> __m256i {
        // SAFETY: AVX.
        unsafe {
            let add = |p: u32| (c + 0x0404_0404 * p) as i32;
            let l = _mm_setr_epi32(add(0), add(1), add(2), add(3));
            _mm256_set_m128i(l, l)
        }
    }

    /// 8 f16 in the low words of the dwords of `x`, as f32.
    #[inline(always)]
    unsafe fn low_halves(x: __m256i) -> __m256 {
        // SAFETY: AVX2, F16C.
        unsafe {
            let w = _mm256_and_si256(x, _mm256_set1_epi32(0xffff));
            let p = _mm256_packus_epi32(w, w); // words 0..4 | 4..8 per lane
            let p = _mm256_permute4x64_epi64::<0b1000>(p);
            _mm256_cvtph_ps(_mm256_castsi256_si128(p))
        }
    }

    /// Rows `8 half..8 half + 8` of one band times vectors `c0..c0 + C`
    /// (see [`super::whole_band`]).
    ///
    /// # Safety
    /// As [`mat`], and the band, the vectors and the outputs are inside the
    /// checked arguments.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    // Vector j indexes its sums and its activations alike.
    #[allow(clippy::needless_range_loop)]
    unsafe fn half_band<const C: usize, const Q5: bool>(
        band: *const u8,
        half: usize,
        nsb: usize,
        a: &Acts,
        c0: usize,
        out: *mut f32,
        rows: usize,
        pf: usize,
    ) {
        let m4 = _mm256_set1_epi8(0x0f);
        let unit_bytes = BAND * k_bytes(Q5);
        let qs = if Q5 { 12 } else { 4 };
        let mut acc = [_mm256_setzero_ps(); C];
        // SAFETY: (for the whole body) unit s of the band and super-block
        // s of vectors c0..c0 + C are inside the checked arguments;
        // out[j * rows + 8 half..][..8] is inside the checked output. The
        // CPU has the features.
        unsafe {
            for s in 0..nsb {
                let u = band.add(s * unit_bytes);
                prefetch_ahead(u, qs * 64, pf, Prefetch::L2);
                // Half `half` of vector g: dword g of rows 8 half.. .
                let v = |g: usize| _mm256_loadu_si256(u.add(64 * g + 32 * half) as *const __m256i);
                let hdr = v(0);
                let d = low_halves(hdr);
                let dmin = low_halves(_mm256_srli_epi32::<16>(hdr));
                let (u0, u1, u2) = (v(1), v(2), v(3));
                let (m6, m30) = (_mm256_set1_epi8(0x3f), _mm256_set1_epi8(0x30));
                let top = |a: __m256i, u: __m256i| {
                    _mm256_or_si256(
                        _mm256_and_si256(a, m4),
                        _mm256_and_si256(_mm256_srli_epi32::<2>(u), m30),
                    )
                };
                let sc_lo = _mm256_and_si256(u0, m6);
                let sc_hi = top(u2, u0);
                let m_lo = _mm256_and_si256(u1, m6);
                let m_hi = top(_mm256_srli_epi32::<4>(u2), u1);
                // Scale j in both words of each row's dword.
                let sc: [__m256i; 8] = core::array::from_fn(|j| {
                    let b = (j % 4) as u32;
                    let src = if j < 4 { sc_lo } else { sc_hi };
                    _mm256_shuffle_epi8(src, per_dword(0x8000_8000 | (b << 16) | b))
                });
                // Minimum pairs (m_2i, m_2i+1) as words.
                let mins: [__m256i; 4] = core::array::from_fn(|i| {
                    let b = 2 * (i % 2) as u32;
                    let src = if i < 2 { m_lo } else { m_hi };
                    _mm256_shuffle_epi8(src, per_dword(0x8000_8000 | ((b + 1) << 16) | b))
                });
                let mut isum = [_mm256_setzero_si256(); C];
                for k in 0..4 {
                    for h in 0..2 {
                        let at = qs + 8 * k + 4 * h;
                        prefetch_ahead(u.wrapping_add(64 * at), 4 * 64, pf, Prefetch::L2);
                        let mut lo = [_mm256_setzero_si256(); 4];
                        let mut hi = [_mm256_setzero_si256(); 4];
                        for c in 0..4 {
                            let x = v(qs + 8 * k + 4 * h + c);
                            lo[c] = _mm256_and_si256(x, m4);
                            hi[c] = _mm256_and_si256(_mm256_srli_epi16::<4>(x), m4);
                            if Q5 {
                                // Bits 2k and 2k + 1 of qh to bit 4.
                                let qh = v(4 + 4 * h + c);
                                let sixteen = _mm256_set1_epi8(16);
                                let bit = |i: u32| {
                                    let t = _mm256_srl_epi16(qh, _mm_cvtsi32_si128(i as i32));
                                    _mm256_and_si256(_mm256_slli_epi16::<4>(t), sixteen)
                                };
                                lo[c] = _mm256_or_si256(lo[c], bit(2 * k as u32));
                                hi[c] = _mm256_or_si256(hi[c], bit(2 * k as u32 + 1));
                            }
                        }
                        for j in 0..C {
                            let q = a.k.q.as_ptr().add(((c0 + j) * nsb + s) * QK_K);
                            let group = |i: usize| {
                                _mm256_set1_epi32(read_unaligned(q.add(i) as *const i32))
                            };
                            let mut sl = _mm256_setzero_si256();
                            let mut sh = _mm256_setzero_si256();
                            for c in 0..4 {
                                let i = 64 * k + 16 * h + 4 * c;
                                sl = _mm256_add_epi16(sl, _mm256_maddubs_epi16(lo[c], group(i)));
                                sh = _mm256_add_epi16(
                                    sh,
                                    _mm256_maddubs_epi16(hi[c], group(i + 32)),
                                );
                            }
                            let t = _mm256_add_epi32(
                                _mm256_madd_epi16(sl, sc[2 * k]),
                                _mm256_madd_epi16(sh, sc[2 * k + 1]),
                            );
                            isum[j] = _mm256_add_epi32(isum[j], t);
                        }
                    }
                }
                for j in 0..C {
                    let blk = (c0 + j) * nsb + s;
                    let bp = sum_pairs(a.k.bsums.as_ptr().add(16 * blk));
                    let mut msum = _mm256_setzero_si256();
                    for i in 0..4 {
                        let t = _mm256_madd_epi16(mins[i], _mm256_set1_epi32(bp[i]));
                        msum = _mm256_add_epi32(msum, t);
                    }
                    let da = _mm256_set1_ps(*a.k.d.as_ptr().add(blk));
                    let t = _mm256_add_ps(
                        acc[j],
                        _mm256_mul_ps(_mm256_mul_ps(d, da), _mm256_cvtepi32_ps(isum[j])),
                    );
                    acc[j] = _mm256_sub_ps(
                        t,
                        _mm256_mul_ps(_mm256_mul_ps(dmin, da), _mm256_cvtepi32_ps(msum)),
                    );
                }
            }
            for (j, acc) in acc.iter().enumerate() {
                _mm256_storeu_ps(out.add(j * rows + 8 * half), *acc);
            }
        }
    }
}
