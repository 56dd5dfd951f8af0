//! The interleaved types ([`crate::kernels::interleave`]) with 512-bit vectors: lane `r`
//! of every vector is row `r` of a band of 16, so a block's dot products
//! are 8 `vpdpbusd` (each adds 4 products per row) with the activations'
//! 4-byte groups broadcast, and its scaling is one vector multiply; there
//! is no reduction across lanes at all. The arithmetic, lane by lane, is
//! the scalar reference's (`acc + (d_w * d_a) * dot`, `dot` exact).

use core::arch::x86_64::*;
use core::ptr::read_unaligned;

use crate::kernels::acts::Acts;
use crate::kernels::interleave::{for_each_band, BAND};
use crate::kernels::types::QK;

/// Vectors per tile of a batch: each unit's nibbles, split once, serve
/// this many vectors.
const NC: usize = 4;

/// `rows` (whole bands) times every vector of `a`.
///
/// # Safety
/// The CPU has AVX-512 F, BW, VL, VNNI, F16C; `check_mat` accepted the
/// arguments; `rows` is a multiple of 16.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn mat<const Q4: bool>(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    let nb = a.cols / QK;
    let bb = if Q4 { 18 } else { 34 };
    for_each_band(w, a, out, rows, bb, NC, |band, c0, nc, o| {
        // SAFETY: `for_each_band` hands out bands, vectors and outputs
        // inside the checked arguments; the CPU has the features (this
        // function's contract).
        unsafe {
            match nc {
                1 => tile::<1, Q4>(band, nb, a, c0, o, rows),
                2 => tile::<2, Q4>(band, nb, a, c0, o, rows),
                3 => tile::<3, Q4>(band, nb, a, c0, o, rows),
                _ => tile::<4, Q4>(band, nb, a, c0, o, rows),
            }
        }
    });
}

/// One band (16 rows of `nb` blocks at `band`) times vectors
/// `c0..c0 + C` of `a`; row `r` of vector `c0 + j` goes to
/// `out[j * rows + r]`.
///
/// # Safety
/// As [`mat`], and the band, the vectors and the outputs are inside the
/// checked arguments.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile<const C: usize, const Q4: bool>(
    band: *const u8,
    nb: usize,
    a: &Acts,
    c0: usize,
    out: *mut f32,
    rows: usize,
) {
    let ub = BAND * if Q4 { 18 } else { 34 };
    let offset = if Q4 { -8 } else { -128 };
    let mask = _mm512_set1_epi8(0x0f);
    let mut acc = [_mm512_setzero_ps(); C];
    // SAFETY: (for the whole body) unit k of the band, and block k of each
    // vector (32 values, a scale and a sum), are inside the checked
    // arguments.
    unsafe {
        for k in 0..nb {
            let unit = band.add(k * ub);
            let dw = _mm512_cvtph_ps(_mm256_loadu_si256(unit as *const __m256i));
            let vals = |c: usize| _mm512_loadu_si512(unit.add(32 + 64 * c) as *const _);
            // Q4_0: chunk c's low nibbles are elements 4c..4c+4 of each
            // row, its high nibbles elements 16+4c..16+4c+4.
            let mut lo = [_mm512_setzero_si512(); 4];
            let mut hi = [_mm512_setzero_si512(); 4];
            if Q4 {
                for c in 0..4 {
                    let v = vals(c);
                    lo[c] = _mm512_and_si512(v, mask);
                    hi[c] = _mm512_and_si512(_mm512_srli_epi16::<4>(v), mask);
                }
            }
            for (j, acc) in acc.iter_mut().enumerate() {
                let blk = (c0 + j) * nb + k;
                let q = a.q.as_ptr().add(blk * QK) as *const i32;
                let group = |g: usize| _mm512_set1_epi32(read_unaligned(q.add(g)));
                // Two chains of dot products, for the latency; the
                // offset times the block's sum comes first.
                let mut d0 = _mm512_set1_epi32(offset * *a.sum.as_ptr().add(blk));
                let mut d1 = _mm512_setzero_si512();
                if Q4 {
                    for c in 0..4 {
                        d0 = _mm512_dpbusd_epi32(d0, lo[c], group(c));
                        d1 = _mm512_dpbusd_epi32(d1, hi[c], group(4 + c));
                    }
                } else {
                    for c in (0..8).step_by(2) {
                        d0 = _mm512_dpbusd_epi32(d0, vals(c), group(c));
                        d1 = _mm512_dpbusd_epi32(d1, vals(c + 1), group(c + 1));
                    }
                }
                let dot = _mm512_cvtepi32_ps(_mm512_add_epi32(d0, d1));
                let s = _mm512_mul_ps(dw, _mm512_set1_ps(*a.d.as_ptr().add(blk)));
                *acc = _mm512_add_ps(*acc, _mm512_mul_ps(s, dot));
            }
        }
        for (j, acc) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.add(j * rows), *acc);
        }
    }
}

/// The same with AVX2 (no `vpdpbusd`, 16 registers): a band is two halves
/// of 8 rows, one per 32-bit lane of a 256-bit vector. A 4-byte group's
/// products go through `vpmaddubsw` (pairs, in `i16`) and `vpmaddwd` (pairs
/// of pairs, in `i32`), exactly: Q4_0's nibbles times activations sum to at
/// most 8 * 15 * 127 = 15240 per `i16` lane over a whole block, and Q8_0
/// multiplies `|q|` by the activations with `q`'s sign (at most
/// 2 * 128 * 127 = 32512 per pair), then widens at once.
pub(super) mod avx2 {
    use core::arch::x86_64::*;
    use core::ptr::read_unaligned;

    use crate::kernels::acts::Acts;
    use crate::kernels::interleave::{for_each_band, BAND};
    use crate::kernels::types::QK;

    /// Vectors per tile of a batch.
    const NC: usize = 2;

    /// `rows` (whole bands) times every vector of `a`.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA, F16C; `check_mat` accepted the arguments;
    /// `rows` is a multiple of 16.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(in crate::kernels) unsafe fn mat<const Q4: bool>(
        w: &[u8],
        a: &Acts,
        out: &mut [f32],
        rows: usize,
    ) {
        let nb = a.cols / QK;
        let bb = if Q4 { 18 } else { 34 };
        for_each_band(w, a, out, rows, bb, NC, |band, c0, nc, o| {
            for half in 0..2 {
                // SAFETY: `for_each_band` hands out bands, vectors and
                // outputs inside the checked arguments (rows 8 * half.. of
                // the band are 8 * half further); the CPU has the features
                // (this function's contract).
                unsafe {
                    let o = o.add(8 * half);
                    if nc == 1 {
                        tile::<1, Q4>(band, half, nb, a, c0, o, rows);
                    } else {
                        tile::<2, Q4>(band, half, nb, a, c0, o, rows);
                    }
                }
            }
        });
    }

    /// Rows `8 * half..` of one band times vectors `c0..c0 + C` of `a`;
    /// row `r` of the half, vector `c0 + j`, goes to `out[j * rows + r]`.
    ///
    /// # Safety
    /// As [`mat`], and the band, the vectors and the outputs are inside the
    /// checked arguments.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile<const C: usize, const Q4: bool>(
        band: *const u8,
        half: usize,
        nb: usize,
        a: &Acts,
        c0: usize,
        out: *mut f32,
        rows: usize,
    ) {
        let ub = BAND * if Q4 { 18 } else { 34 };
        let mask = _mm256_set1_epi8(0x0f);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); C];
        // SAFETY: (for the whole body) unit k of the band, and block k of each
        // vector (32 values, a scale and a sum), are inside the checked
        // arguments.
        unsafe {
            for k in 0..nb {
                let unit = band.add(k * ub);
                let dw = _mm256_cvtph_ps(_mm_loadu_si128(unit.add(16 * half) as *const __m128i));
                let vals =
                    |c: usize| _mm256_loadu_si256(unit.add(32 + 64 * c + 32 * half) as *const _);
                let mut lo = [_mm256_setzero_si256(); 4];
                let mut hi = [_mm256_setzero_si256(); 4];
                if Q4 {
                    for c in 0..4 {
                        let v = vals(c);
                        lo[c] = _mm256_and_si256(v, mask);
                        hi[c] = _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask);
                    }
                }
                for (j, acc) in acc.iter_mut().enumerate() {
                    let blk = (c0 + j) * nb + k;
                    let q = a.q.as_ptr().add(blk * QK) as *const i32;
                    let group = |g: usize| _mm256_set1_epi32(read_unaligned(q.add(g)));
                    let dot = if Q4 {
                        let mut s16 = _mm256_setzero_si256();
                        for c in 0..4 {
                            s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(lo[c], group(c)));
                            s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(hi[c], group(4 + c)));
                        }
                        let offset = _mm256_set1_epi32(-8 * *a.sum.as_ptr().add(blk));
                        _mm256_add_epi32(offset, _mm256_madd_epi16(s16, ones))
                    } else {
                        let mut s32 = _mm256_setzero_si256();
                        for c in 0..8 {
                            // Stored as q + 128: flip back to q.
                            let w = _mm256_xor_si256(vals(c), _mm256_set1_epi8(-128));
                            let p = _mm256_maddubs_epi16(
                                _mm256_abs_epi8(w),
                                _mm256_sign_epi8(group(c), w),
                            );
                            s32 = _mm256_add_epi32(s32, _mm256_madd_epi16(p, ones));
                        }
                        s32
                    };
                    let s = _mm256_mul_ps(dw, _mm256_set1_ps(*a.d.as_ptr().add(blk)));
                    *acc = _mm256_add_ps(*acc, _mm256_mul_ps(s, _mm256_cvtepi32_ps(dot)));
                }
            }
            for (j, acc) in acc.iter().enumerate() {
                _mm256_storeu_ps(out.add(j * rows), *acc);
            }
        }
    }
}
