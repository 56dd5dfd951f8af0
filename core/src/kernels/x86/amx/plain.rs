//! Plain Q8_0 and Q4_0 batches by tiles straight from the rows, for a
//! batch that carries its transposed Q8 copy ([`Acts::t`]).
//!
//! One tile product per block and 16 vectors: the first operand is the
//! block's values of the band's 16 rows (Q8_0: read where they lie, `rb`
//! bytes apart; Q4_0: the nibbles unpacked to signed bytes a few blocks
//! ahead), the second the 16 vectors' block from the transposed copy
//! (already in AMX's layout), so nothing is interleaved per band. The
//! result has a row of the band per tile row and a vector per lane; the
//! scaling is the reference's (block `k`'s `(d_w * d_a) * dot` into
//! partial sum `k % 8`, then `reduce8`'s tree), lane by lane: the same
//! bits as every other set.

use core::arch::x86_64::*;

use super::tiles::{Aligned, Tiles, LEAD, RING};
use crate::kernels::acts::{Acts, CHUNK};
use crate::kernels::interleave::{block_bytes, BAND};
use crate::kernels::types::QK;

/// Chunks of 16 vectors whose partial sums a pass over a band keeps (the
/// 32 vectors of a kernel call from `matmul`).
const PASS: usize = 2;

/// Whether [`mat`] takes these arguments: a transposed copy covering the
/// batch, whole bands, and row offsets within a band that fit an `i32`.
pub(super) fn fits(a: &Acts, rows: usize, q4: bool) -> bool {
    let nb = a.cols / QK;
    let chunks = a.n.div_ceil(CHUNK);
    let rb = nb * if q4 { 18 } else { 34 };
    rows.is_multiple_of(BAND)
        && a.t.q.len() >= chunks * CHUNK * a.cols
        && a.t.d.len() >= chunks * CHUNK * nb
        && BAND * rb < i32::MAX as usize
}

/// Plain Q8_0 (`Q4` false) or Q4_0 rows times a batch (see the module
/// documentation).
///
/// # Safety
/// AMX is granted ([`super::granted`]) and the CPU has the `avx512` set's
/// features; `check_mat` accepted the arguments; [`fits`] holds.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn mat<const Q4: bool>(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    let nb = a.cols / QK;
    let bb = block_bytes(Q4);
    let rb = nb * bb;
    let chunks = a.n.div_ceil(CHUNK);
    let mut tiles = Tiles::new();
    let mut sums = [[[[0f32; 16]; 8]; BAND]; PASS];
    let mut dots = Aligned([[[0i32; 16]; BAND]; 2]);
    let dots = dots.0.as_mut_ptr();
    let mut ring = Aligned([[0u8; 512]; RING]);
    let ring = ring.0.as_mut_ptr() as *mut u8;
    let mut scales = Aligned([0f32; 16]);
    // Row r's block k starts r rb + k bb bytes into the band.
    let offsets = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
        _mm512_set1_epi32(rb as i32),
    );
    let mask = _mm_set1_epi8(0x0f);
    let eight = _mm_set1_epi8(8);
    // SAFETY: (for the whole body) band b's 16 rows (rb bytes each at w +
    // 16 b rb) and the transposed copy's chunks (`fits`) are inside the
    // arguments; every tile product reads 16 rows of 32 bytes (the rows'
    // block k, or a ring slot) and 512 bytes of the copy, and writes 16
    // rows of `dots`; the gather reads each row's block k's first 4
    // bytes (inside the row: a block has at least 18); the outputs
    // out[v * rows + 16 b + r], v < a.n, are inside the checked output.
    // AMX is granted and the CPU has the features (this function's
    // contract).
    unsafe {
        for b in 0..rows / BAND {
            let band = w.as_ptr().add(b * BAND * rb);
            // Q4_0: block k's nibbles of the 16 rows, as signed bytes, row
            // r's 32 values at 32 r of ring slot k % RING.
            let unpack = |k: usize| {
                let slot = ring.add(512 * (k % RING));
                for r in 0..BAND {
                    let x = _mm_loadu_si128(band.add(r * rb + k * bb + 2) as *const __m128i);
                    let lo = _mm_sub_epi8(_mm_and_si128(x, mask), eight);
                    let hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16::<4>(x), mask), eight);
                    _mm_storeu_si128(slot.add(32 * r) as *mut __m128i, lo);
                    _mm_storeu_si128(slot.add(32 * r + 16) as *mut __m128i, hi);
                }
            };
            let mut p0 = 0;
            while p0 < chunks {
                let pc = (chunks - p0).min(PASS);
                for s in &mut sums[..pc] {
                    *s = [[[0.0; 16]; 8]; BAND];
                }
                // Step i: block i / pc, chunk p0 + i % pc, into dots[i % 2].
                let issue = |i: usize, tiles: &mut Tiles| {
                    let (k, c) = (i / pc, p0 + i % pc);
                    let (rows_at, stride) = if Q4 {
                        (ring.add(512 * (k % RING)) as *const u8, 32)
                    } else {
                        (band.add(k * bb + 2), rb)
                    };
                    let t = a.t.q.as_ptr().add((c * nb + k) * 512) as *const u8;
                    let d = dots.add(i % 2) as *mut [i32; 16];
                    tiles.product::<true>(i % 2, BAND, QK, rows_at as *const i8, stride, t, d);
                };
                if Q4 {
                    for k in 0..nb.min(LEAD) {
                        unpack(k);
                    }
                }
                let steps = nb * pc;
                if steps > 0 {
                    issue(0, &mut tiles);
                }
                for i in 0..steps {
                    let (k, c) = (i / pc, i % pc);
                    if Q4 && c == 0 && k + LEAD < nb {
                        unpack(k + LEAD);
                    }
                    if i + 1 < steps {
                        issue(i + 1, &mut tiles);
                    }
                    let raw = _mm512_i32gather_epi32::<1>(offsets, band.add(k * bb) as *const i32);
                    let dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(raw));
                    _mm512_store_ps(scales.0.as_mut_ptr(), dw);
                    let da = _mm512_loadu_ps(a.t.d.as_ptr().add(((p0 + c) * nb + k) * CHUNK));
                    let u = k % 8;
                    let dots = &*dots.add(i % 2);
                    for (r, row) in dots.iter().enumerate() {
                        let dot = _mm512_cvtepi32_ps(_mm512_load_si512(row.as_ptr() as *const _));
                        let s = _mm512_mul_ps(_mm512_set1_ps(scales.0[r]), da);
                        let p = sums[c][r][u].as_mut_ptr();
                        let acc = _mm512_loadu_ps(p);
                        _mm512_storeu_ps(p, _mm512_add_ps(acc, _mm512_mul_ps(s, dot)));
                    }
                }
                for (c, s) in sums[..pc].iter().enumerate() {
                    let v0 = (p0 + c) * CHUNK;
                    let nv = (a.n - v0).min(CHUNK);
                    for (r, s) in s.iter().enumerate() {
                        let p = |u: usize| _mm512_loadu_ps(s[u].as_ptr());
                        let t = _mm512_add_ps(
                            _mm512_add_ps(_mm512_add_ps(p(0), p(4)), _mm512_add_ps(p(1), p(5))),
                            _mm512_add_ps(_mm512_add_ps(p(2), p(6)), _mm512_add_ps(p(3), p(7))),
                        );
                        let mut lanes = [0f32; 16];
                        _mm512_storeu_ps(lanes.as_mut_ptr(), t);
                        for (v, &x) in lanes[..nv].iter().enumerate() {
                            *out.as_mut_ptr().add((v0 + v) * rows + b * BAND + r) = x;
                        }
                    }
                }
                p0 += pc;
            }
        }
    }
}
