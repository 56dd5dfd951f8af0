//! The interleaved types ([`crate::kernels::interleave`]) with NEON and the dot product
//! extension: a band's 16 rows are four vectors of four `i32` lanes, one row
//! per lane; `sdot` adds, in each lane, the 4 products of that row's 4 bytes
//! of a chunk with the activations' 4-byte group broadcast to every lane.
//! Nothing is reduced across lanes. The arithmetic, lane by lane, is the
//! scalar reference's (block `k`'s `(d_w * d_a) * dot`, `dot` exact, into
//! partial sum `k % 8`, then `reduce8`): the plain types' numbers.
//!
//! Plain NEON (no `sdot`) would need another byte order, so the `neon` set
//! keeps the scalar reference for these types. The functions take the
//! set's [`ArmIsa`] as a type parameter (always `dotprod::DotProd`), so
//! that this file does not import the set that calls it.

use core::arch::aarch64::*;
use core::ptr::read_unaligned;

use super::common::f16x8;
use super::ArmIsa;
use crate::kernels::acts::Acts;
use crate::kernels::interleave::{block_bytes, for_each_band, BAND};
use crate::kernels::types::QK;

/// Vectors per tile of a batch.
const NC: usize = 2;

/// `rows` (whole bands) times every vector of `a`.
///
/// # Safety
/// The CPU has NEON and the dot product extension; `check_mat` accepted the
/// arguments; `rows` is a multiple of 16.
#[target_feature(enable = "neon,dotprod")]
pub(super) unsafe fn mat<I: ArmIsa, const Q4: bool>(
    w: &[u8],
    a: &Acts,
    out: &mut [f32],
    rows: usize,
) {
    let nb = a.cols / QK;
    let bb = block_bytes(Q4);
    for_each_band(w, a, out, rows, nb * bb, NC, |band, c0, nc, o| {
        // SAFETY: `for_each_band` hands out bands, vectors and outputs
        // inside the checked arguments; the CPU has the features (this
        // function's contract).
        unsafe {
            if nc == 1 {
                tile::<I, 1, Q4>(band, nb, a, c0, o, rows);
            } else {
                tile::<I, 2, Q4>(band, nb, a, c0, o, rows);
            }
        }
    });
}

/// One band (16 rows of `nb` blocks at `band`) times vectors `c0..c0 + C`
/// of `a`; row `r` of vector `c0 + j` goes to `out[j * rows + r]`.
///
/// # Safety
/// As [`mat`], and the band, the vectors and the outputs are inside the
/// checked arguments.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn tile<I: ArmIsa, const C: usize, const Q4: bool>(
    band: *const u8,
    nb: usize,
    a: &Acts,
    c0: usize,
    out: *mut f32,
    rows: usize,
) {
    let ub = BAND * block_bytes(Q4);
    let chunks = if Q4 { 4 } else { 8 };
    // Block k goes to partial sum k % 8, as the plain types add them.
    let mut acc = [[[vdupq_n_f32(0.0); 4]; 8]; C];
    let block = |k: usize, u: usize, acc: &mut [[[float32x4_t; 4]; 8]; C]| {
        // SAFETY: unit k of the band, and block k of each vector (32
        // values, a scale and a sum), are inside the checked arguments;
        // the CPU has the features (the caller's contract).
        unsafe {
            let unit = band.add(k * ub);
            let (d0, d1) = f16x8(vld1q_u16(unit as *const u16));
            let (d2, d3) = f16x8(vld1q_u16(unit.add(16) as *const u16));
            let dw = [d0, d1, d2, d3];
            // Rows 4 * quarter .. + 4 of chunk c.
            let vals = |c: usize, quarter: usize| vld1q_u8(unit.add(32 + 64 * c + 16 * quarter));
            for (j, acc) in acc.iter_mut().enumerate() {
                let blk = (c0 + j) * nb + k;
                let q = a.q.as_ptr().add(blk * QK) as *const i32;
                let group = |g: usize| vreinterpretq_s8_s32(vdupq_n_s32(read_unaligned(q.add(g))));
                let da = vdupq_n_f32(*a.d.as_ptr().add(blk));
                let offset = if Q4 { -8 * *a.sum.as_ptr().add(blk) } else { 0 };
                for (quarter, acc) in acc[u].iter_mut().enumerate() {
                    let mut dot = vdupq_n_s32(offset);
                    for c in 0..chunks {
                        let v = vals(c, quarter);
                        if Q4 {
                            // Low nibbles: elements 4c.., high: 16 + 4c...
                            let lo = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f)));
                            let hi = vreinterpretq_s8_u8(vshrq_n_u8::<4>(v));
                            dot = I::dot16(dot, lo, group(c));
                            dot = I::dot16(dot, hi, group(4 + c));
                        } else {
                            // Stored as q + 128: flip back to q.
                            let s = vreinterpretq_s8_u8(veorq_u8(v, vdupq_n_u8(0x80)));
                            dot = I::dot16(dot, s, group(c));
                        }
                    }
                    let s = vmulq_f32(dw[quarter], da);
                    *acc = vaddq_f32(*acc, vmulq_f32(s, vcvtq_f32_s32(dot)));
                }
            }
        }
    };
    let mut k = 0;
    while k + 8 <= nb {
        for u in 0..8 {
            block(k + u, u, &mut acc);
        }
        k += 8;
    }
    for u in 0..nb - k {
        block(k + u, u, &mut acc);
    }
    for (j, acc) in acc.iter().enumerate() {
        #[allow(clippy::needless_range_loop)] // a (sum, quarter) index reads best
        for quarter in 0..4 {
            // reduce8, lane by lane.
            let p = |u: usize| acc[u][quarter];
            let s = vaddq_f32(
                vaddq_f32(vaddq_f32(p(0), p(4)), vaddq_f32(p(1), p(5))),
                vaddq_f32(vaddq_f32(p(2), p(6)), vaddq_f32(p(3), p(7))),
            );
            // SAFETY: rows 4 * quarter.. of the band for vector c0 + j are
            // inside the checked arguments.
            unsafe { vst1q_f32(out.add(j * rows + 4 * quarter), s) };
        }
    }
}
