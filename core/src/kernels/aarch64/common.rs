//! The kernels both aarch64 sets share, generic over the set ([`ArmIsa`]:
//! its 16-byte dot product). NEON is part of every aarch64 target, so these
//! plain `#[inline(always)]` functions use it directly; compiled into each
//! set's `#[target_feature]` entry point, they take that set's `dot16`.
//!
//! The sixteen float partial sums of the scalar reference are four
//! `float32x4_t` per (row, vector) (quantized rows: eight, in two); f16
//! weights are converted with `fcvtl`/`fcvtl2`, bf16 weights by a shift
//! (`shll`). Quantized blocks are reduced with pairwise adds, which keep the
//! blocks in natural order. The 32-wide quantized types share one tile
//! walker; what differs between them is how a block unpacks to signed bytes
//! ([`Block32`]) and whether it has a minimum.
//!
//! `sdot` and the f16 conversion are written as inline assembly: their
//! intrinsics (`vdotq_s32`, `vcvt_f32_f16`) are not stable in Rust 1.95.
//!
//! # Safety
//! Every `unsafe fn` here requires the CPU features of the set `I` it is
//! instantiated with, and arguments that passed `check_mat`.

use core::arch::aarch64::*;
use core::arch::asm;
use core::ptr::{copy_nonoverlapping, read_unaligned};

use super::{ArmIsa, Kernel};
use crate::kernels::acts::Acts;
use crate::kernels::types::QK;

/// Runs `$tile::<I, R, C, G...>(r0, c0, args...)` over every tile of
/// `$rows` rows x `$n` vectors (at most `$rmax` x `$cmax`), the vectors
/// outermost, with the further generic arguments `[G...]`: the tile shapes,
/// as const generics, are spelled out here once.
macro_rules! over_tiles {
    ($i:ty, $rmax:expr, $cmax:expr, $rows:expr, $n:expr, $tile:ident, [$($g:tt),*], ($($arg:expr),*)) => {{
        let mut c0 = 0;
        while c0 < $n {
            let nc = ($n - c0).min($cmax);
            let mut r0 = 0;
            while r0 < $rows {
                let nr = ($rows - r0).min($rmax);
                match (nr, nc) {
                    (4, 2) => $tile::<$i, 4, 2, $($g),*>(r0, c0, $($arg),*),
                    (3, 2) => $tile::<$i, 3, 2, $($g),*>(r0, c0, $($arg),*),
                    (2, 2) => $tile::<$i, 2, 2, $($g),*>(r0, c0, $($arg),*),
                    (1, 2) => $tile::<$i, 1, 2, $($g),*>(r0, c0, $($arg),*),
                    (4, 1) => $tile::<$i, 4, 1, $($g),*>(r0, c0, $($arg),*),
                    (3, 1) => $tile::<$i, 3, 1, $($g),*>(r0, c0, $($arg),*),
                    (2, 1) => $tile::<$i, 2, 1, $($g),*>(r0, c0, $($arg),*),
                    _ => $tile::<$i, 1, 1, $($g),*>(r0, c0, $($arg),*),
                }
                r0 += nr;
            }
            c0 += nc;
        }
    }};
}

/// Largest tiles (rows x vectors) for a batch: float tiles hold 4
/// registers per (row, vector), quantized tiles 2.
const FR: usize = 2;
const FC: usize = 2;
const QR: usize = 4;
const QC: usize = 2;
/// Rows per tile for one vector: one, so that the weights are read
/// as one sequential stream (as on x86-64, where several rows at
/// once defeat the hardware prefetcher).
const MV: usize = 1;

/// Eight f16 values (bits) to two vectors of four f32 (`fcvtl`).
#[inline(always)]
pub(super) fn f16x8(h: uint16x8_t) -> (float32x4_t, float32x4_t) {
    let lo: float32x4_t;
    let hi: float32x4_t;
    // SAFETY: `fcvtl`/`fcvtl2` are base AdvSIMD instructions working
    // on registers only; `lo` and `hi` do not overlap the input.
    unsafe {
        asm!(
            "fcvtl {lo:v}.4s, {h:v}.4h",
            "fcvtl2 {hi:v}.4s, {h:v}.8h",
            h = in(vreg) h,
            lo = out(vreg) lo,
            hi = out(vreg) hi,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    (lo, hi)
}

/// `v`, through an empty inline assembly block (no instruction): LLVM
/// cannot see where it comes from, so it cannot rewrite what uses it (it
/// turns a `cmtst` whose mask is then masked again into `and`, `cmeq`,
/// `bic`: three instructions instead of two).
#[inline(always)]
pub(super) fn opaque(v: uint8x16_t) -> uint8x16_t {
    let mut v = v;
    // SAFETY: an empty template; the register is left as it is.
    unsafe {
        asm!(
            "/* {v:v} */",
            v = inout(vreg) v,
            options(pure, nomem, nostack, preserves_flags)
        )
    };
    v
}

/// The fixed reduction tree of the scalar `reduce8`:
/// `((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7))`.
#[inline(always)]
unsafe fn reduce8(lo: float32x4_t, hi: float32x4_t) -> f32 {
    // SAFETY: NEON (the caller's promise).
    unsafe {
        let s = vaddq_f32(lo, hi);
        let t = vpaddq_f32(s, s);
        vgetq_lane_f32::<0>(t) + vgetq_lane_f32::<1>(t)
    }
}

// ---- F32, F16 and BF16 ----

/// The float weight types, as `float_at`'s `KIND`.
const F32: u8 = 0;
const F16: u8 = 1;
const BF16: u8 = 2;

/// `acc + w * x`: fused (`fmla`, one rounding) for F16 and BF16 weights,
/// a rounded product then a rounded sum for F32 (as the scalar
/// reference).
#[inline(always)]
unsafe fn madd<const KIND: u8>(acc: float32x4_t, w: float32x4_t, x: float32x4_t) -> float32x4_t {
    // SAFETY: NEON (the caller's promise).
    unsafe {
        if KIND != F32 {
            vfmaq_f32(acc, w, x)
        } else {
            vaddq_f32(acc, vmulq_f32(w, x))
        }
    }
}

/// Eight bf16 values (bits) to two vectors of four f32: each shifted
/// into the top half of its lane (`shll`/`shll2`), which is exact.
#[inline(always)]
unsafe fn bf16x8(h: uint16x8_t) -> (float32x4_t, float32x4_t) {
    // SAFETY: NEON (the caller's promise).
    unsafe {
        (
            vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(h))),
            vreinterpretq_f32_u32(vshll_high_n_u16::<16>(h)),
        )
    }
}

/// One float tile at rows `r0..`, vectors `c0..` (`KIND` is the weight
/// type: [`F32`], [`F16`] or [`BF16`]). Sixteen partial sums per (row,
/// vector), in four registers of four lanes.
///
/// # Safety
/// The CPU has the set's features; `check_mat` accepted the arguments and the
/// tile is inside them.
#[inline(always)]
unsafe fn float_at<I: ArmIsa, const R: usize, const C: usize, const KIND: u8>(
    r0: usize,
    c0: usize,
    w: &[u8],
    a: &Acts,
    out: &mut [f32],
    rows: usize,
) {
    let cols = a.cols;
    let eb = if KIND == F32 { 4 } else { 2 };
    let rb = cols * eb;
    // SAFETY: (for the whole body) the pointers stay within the tile's rows
    // and vectors, whose lengths `check_mat` checked; the weights are
    // read as bytes (no alignment needed).
    unsafe {
        let load_w = |p: *const u8| -> [float32x4_t; 4] {
            if KIND == F16 {
                let (a, b) = f16x8(vreinterpretq_u16_u8(vld1q_u8(p)));
                let (c, d) = f16x8(vreinterpretq_u16_u8(vld1q_u8(p.add(16))));
                [a, b, c, d]
            } else if KIND == BF16 {
                let (a, b) = bf16x8(vreinterpretq_u16_u8(vld1q_u8(p)));
                let (c, d) = bf16x8(vreinterpretq_u16_u8(vld1q_u8(p.add(16))));
                [a, b, c, d]
            } else {
                [
                    vreinterpretq_f32_u8(vld1q_u8(p)),
                    vreinterpretq_f32_u8(vld1q_u8(p.add(16))),
                    vreinterpretq_f32_u8(vld1q_u8(p.add(32))),
                    vreinterpretq_f32_u8(vld1q_u8(p.add(48))),
                ]
            }
        };
        let load_x = |p: *const f32| -> [float32x4_t; 4] {
            [
                vld1q_f32(p),
                vld1q_f32(p.add(4)),
                vld1q_f32(p.add(8)),
                vld1q_f32(p.add(12)),
            ]
        };
        let w = w.as_ptr().add(r0 * rb);
        let x = a.x.as_ptr().add(c0 * cols);
        let z = vdupq_n_f32(0.0);
        let mut acc = [[[z; 4]; C]; R];
        let n16 = cols / 16;
        for i in 0..n16 {
            let mut xv = [[z; 4]; C];
            for (c, xv) in xv.iter_mut().enumerate() {
                *xv = load_x(x.add(c * cols + 16 * i));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let wv = load_w(w.add(r * rb + 16 * eb * i));
                for (acc, xv) in acc.iter_mut().zip(&xv) {
                    for j in 0..4 {
                        acc[j] = madd::<KIND>(acc[j], wv[j], xv[j]);
                    }
                }
            }
        }
        let rem = cols % 16;
        if rem != 0 {
            // The last partial chunk, zero-padded: lanes past the
            // end add 0 * 0 = +0, which leaves a partial sum as it is.
            let mut xt = [[0f32; 16]; C];
            for (c, xt) in xt.iter_mut().enumerate() {
                copy_nonoverlapping(x.add(c * cols + 16 * n16), xt.as_mut_ptr(), rem);
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let mut wt = [0u8; 64];
                copy_nonoverlapping(w.add(r * rb + 16 * eb * n16), wt.as_mut_ptr(), rem * eb);
                let wv = load_w(wt.as_ptr());
                for (acc, xt) in acc.iter_mut().zip(&xt) {
                    let xv = load_x(xt.as_ptr());
                    for j in 0..4 {
                        acc[j] = madd::<KIND>(acc[j], wv[j], xv[j]);
                    }
                }
            }
        }
        let o = out.as_mut_ptr().add(c0 * rows + r0);
        for (r, acc) in acc.iter().enumerate() {
            for (c, acc) in acc.iter().enumerate() {
                // reduce16: lanes j and j + 8 first.
                let lo = vaddq_f32(acc[0], acc[2]);
                let hi = vaddq_f32(acc[1], acc[3]);
                *o.add(c * rows + r) = reduce8(lo, hi);
            }
        }
    }
}

/// F32 (`KIND` [`F32`]), F16 ([`F16`]) or BF16 ([`BF16`]) weights.
pub(super) struct Float<const KIND: u8>;

/// F32 weights.
pub(super) type F32Rows = Float<{ F32 }>;
/// F16 weights.
pub(super) type F16Rows = Float<{ F16 }>;
/// BF16 weights.
pub(super) type Bf16Rows = Float<{ BF16 }>;

impl<const KIND: u8> Kernel for Float<KIND> {
    #[inline(always)]
    unsafe fn mat<I: ArmIsa>(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
        // SAFETY: every tile is inside the checked arguments.
        unsafe {
            if a.n == 1 {
                over_tiles!(I, MV, 1, rows, a.n, float_at, [KIND], (w, a, out, rows))
            } else {
                over_tiles!(I, FR, FC, rows, a.n, float_at, [KIND], (w, a, out, rows))
            }
        }
    }
}

// ---- the 32-wide quantized types ----

/// A 32-wide block type (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL) as the
/// shared tiles see it: its size, its f16 scale at byte 0 and, for the
/// types with a minimum, its f16 minimum at byte 2, and how its values
/// unpack to signed bytes.
///
/// The tiles compute, per block `b` and as the scalar references do,
/// `acc[b % 8] += (d_w * d_a) * dot` (no minimum) or
/// `acc[b % 8] += (d_w * d_a) * dot + (m_w * d_a) * sum_a` (minimum), with
/// `dot` the exact sum of [`Block32::values`] times the activations. For the
/// types with an offset (Q4_0: `q - 8`, Q5_0: `q - 16`) the values carry it,
/// so that `dot` is the reference's `dot - offset * sum_a` without the
/// subtraction.
pub(super) trait Block32 {
    /// Bytes per block.
    const BYTES: usize;
    /// Whether the block has a minimum (f16 at byte 2).
    const MIN: bool;

    /// The block's 32 values, elements `0..16` and `16..32`, each in
    /// `-128..=127` as the set's dot products need (see [`ArmIsa::dot16`]).
    ///
    /// # Safety
    /// The CPU has NEON; the block's `BYTES` bytes at `p` are readable.
    unsafe fn values(p: *const u8) -> (int8x16_t, int8x16_t);
}

/// Q8_0 blocks: the values as they are (`-128..=127`).
pub(super) struct Q80;

impl Block32 for Q80 {
    const BYTES: usize = 34;
    const MIN: bool = false;

    #[inline(always)]
    unsafe fn values(p: *const u8) -> (int8x16_t, int8x16_t) {
        // SAFETY: the caller vouches for the block.
        unsafe {
            (
                vld1q_s8(p.add(2) as *const i8),
                vld1q_s8(p.add(18) as *const i8),
            )
        }
    }
}

/// Q4_0 blocks: the nibbles minus 8 (`-8..8`).
pub(super) struct Q40;

impl Block32 for Q40 {
    const BYTES: usize = 18;
    const MIN: bool = false;

    #[inline(always)]
    unsafe fn values(p: *const u8) -> (int8x16_t, int8x16_t) {
        // SAFETY: the caller vouches for the block.
        unsafe {
            let (lo, hi) = nibbles(vld1q_u8(p.add(2)));
            let eight = vdupq_n_s8(8);
            (vsubq_s8(lo, eight), vsubq_s8(hi, eight))
        }
    }
}

/// The low nibbles (elements `0..16` of a 32-wide block) and the high ones
/// (`16..32`) of 16 bytes, as bytes `0..16`.
#[inline(always)]
pub(super) unsafe fn nibbles(b: uint8x16_t) -> (int8x16_t, int8x16_t) {
    // SAFETY: NEON (the caller's promise).
    unsafe {
        (
            vreinterpretq_s8_u8(vandq_u8(b, vdupq_n_u8(0x0f))),
            vreinterpretq_s8_u8(vshrq_n_u8::<4>(b)),
        )
    }
}

/// The scales of 8 blocks `bb` bytes apart from `p`, in order.
///
/// # Safety
/// The CPU has the set's features; the 8 blocks are readable.
#[inline(always)]
unsafe fn scales8(p: *const u8, bb: usize) -> (float32x4_t, float32x4_t) {
    let h = |k: usize| -> u64 {
        // SAFETY: the caller vouches for the 8 blocks.
        let bits = unsafe { read_unaligned(p.add(k * bb) as *const u16) };
        u16::from_le(bits) as u64
    };
    let lo = h(0) | h(1) << 16 | h(2) << 32 | h(3) << 48;
    let hi = h(4) | h(5) << 16 | h(6) << 32 | h(7) << 48;
    // SAFETY: NEON (the caller's promise).
    unsafe {
        f16x8(vreinterpretq_u16_u64(vcombine_u64(
            vcreate_u64(lo),
            vcreate_u64(hi),
        )))
    }
}

/// `[f(0), .., f(7)]`, unrolled by construction (LLVM keeps a loop, and
/// the array in memory, when the body is large).
#[inline(always)]
fn eight<T>(mut f: impl FnMut(usize) -> T) -> [T; 8] {
    [f(0), f(1), f(2), f(3), f(4), f(5), f(6), f(7)]
}

/// Where a quantized tile reads one group of 8 blocks: for each row
/// the group's first block, for each vector its values, scales and
/// sums.
struct Group<const R: usize, const C: usize> {
    w: [*const u8; R],
    q: [*const i8; C],
    d: [*const f32; C],
    s: [*const i32; C],
}

/// Adds one group of 8 blocks of type `B` to the partial sums `acc` of
/// an `R` x `C` tile: each row's 8 blocks are unpacked once, then
/// multiplied with the `C` vectors.
///
/// # Safety
/// The CPU has the set's features; every pointer of `g` has 8 blocks behind it.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // (row, vector) indices read best here
unsafe fn group<I: ArmIsa, const R: usize, const C: usize, B: Block32>(
    g: &Group<R, C>,
    acc: &mut [[(float32x4_t, float32x4_t); C]; R],
) {
    let bb = B::BYTES;
    // SAFETY: (for the whole body) all reads are within the 8 blocks the
    // caller vouches for.
    unsafe {
        for r in 0..R {
            let (dw0, dw1) = scales8(g.w[r], bb);
            let (mw0, mw1) = if B::MIN {
                scales8(g.w[r].add(2), bb)
            } else {
                (dw0, dw1)
            };
            let wv = eight(|k| B::values(g.w[r].add(k * bb)));
            for c in 0..C {
                let v = eight(|k| {
                    let q = g.q[c].add(k * QK);
                    let (a0, a1) = (vld1q_s8(q), vld1q_s8(q.add(16)));
                    I::dot16(I::dot16(vdupq_n_s32(0), wv[k].0, a0), wv[k].1, a1)
                });
                let d0 = vpaddq_s32(vpaddq_s32(v[0], v[1]), vpaddq_s32(v[2], v[3]));
                let d1 = vpaddq_s32(vpaddq_s32(v[4], v[5]), vpaddq_s32(v[6], v[7]));
                let (da0, da1) = (vld1q_f32(g.d[c]), vld1q_f32(g.d[c].add(4)));
                let mut p0 = vmulq_f32(vmulq_f32(dw0, da0), vcvtq_f32_s32(d0));
                let mut p1 = vmulq_f32(vmulq_f32(dw1, da1), vcvtq_f32_s32(d1));
                if B::MIN {
                    let s0 = vcvtq_f32_s32(vld1q_s32(g.s[c]));
                    let s1 = vcvtq_f32_s32(vld1q_s32(g.s[c].add(4)));
                    p0 = vaddq_f32(p0, vmulq_f32(vmulq_f32(mw0, da0), s0));
                    p1 = vaddq_f32(p1, vmulq_f32(vmulq_f32(mw1, da1), s1));
                }
                acc[r][c].0 = vaddq_f32(acc[r][c].0, p0);
                acc[r][c].1 = vaddq_f32(acc[r][c].1, p1);
            }
        }
    }
}

/// One quantized tile of type `B` at rows `r0..`, vectors `c0..`.
///
/// # Safety
/// The CPU has the set's features; `check_mat` accepted the arguments and the
/// tile is inside them.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // (row, vector) indices read best here
unsafe fn quant_at<I: ArmIsa, const R: usize, const C: usize, B: Block32>(
    r0: usize,
    c0: usize,
    w: &[u8],
    a: &Acts,
    out: &mut [f32],
    rows: usize,
) {
    let bb = B::BYTES;
    let nb = a.cols / QK;
    let rb = nb * bb;
    // SAFETY: NEON (the caller's promise).
    let z = unsafe { vdupq_n_f32(0.0) };
    let mut acc = [[(z, z); C]; R];
    // SAFETY: (for the whole body) the pointers walk the tile's rows and
    // vectors, whose lengths `check_mat` checked (the sums only for
    // the types with a minimum, the only ones to read them); the last
    // partial group reads zero-padded copies instead.
    unsafe {
        let wp = w.as_ptr().add(r0 * rb);
        let mut g = Group::<R, C> {
            w: [wp; R],
            q: [a.q.as_ptr(); C],
            d: [a.d.as_ptr(); C],
            s: [a.sum.as_ptr(); C],
        };
        let full = nb / 8;
        for k in 0..full {
            for r in 0..R {
                g.w[r] = wp.add(r * rb + 8 * k * bb);
            }
            for c in 0..C {
                let b = (c0 + c) * nb + 8 * k;
                g.q[c] = a.q.as_ptr().add(b * QK);
                g.d[c] = a.d.as_ptr().add(b);
                g.s[c] = a.sum.as_ptr().add(b);
            }
            group::<I, R, C, B>(&g, &mut acc);
        }
        let rem = nb % 8;
        if rem != 0 {
            // Zero blocks add (0 * 0) * dot (+ (0 * 0) * 0) = +0: no
            // change, whatever their values (their activations are 0, so
            // `dot` is 0 too; a partial sum is never -0, as it starts at
            // +0 and an exact cancellation rounds to +0).
            let mut wt = [[0u8; 8 * 34]; R];
            let mut qt = [[0i8; 8 * QK]; C];
            let mut dt = [[0f32; 8]; C];
            let mut st = [[0i32; 8]; C];
            for r in 0..R {
                copy_nonoverlapping(wp.add(r * rb + 8 * full * bb), wt[r].as_mut_ptr(), rem * bb);
                g.w[r] = wt[r].as_ptr();
            }
            for c in 0..C {
                let b = (c0 + c) * nb + 8 * full;
                copy_nonoverlapping(a.q.as_ptr().add(b * QK), qt[c].as_mut_ptr(), rem * QK);
                copy_nonoverlapping(a.d.as_ptr().add(b), dt[c].as_mut_ptr(), rem);
                if B::MIN {
                    copy_nonoverlapping(a.sum.as_ptr().add(b), st[c].as_mut_ptr(), rem);
                }
                g.q[c] = qt[c].as_ptr();
                g.d[c] = dt[c].as_ptr();
                g.s[c] = st[c].as_ptr();
            }
            group::<I, R, C, B>(&g, &mut acc);
        }
        let o = out.as_mut_ptr().add(c0 * rows + r0);
        for (r, acc) in acc.iter().enumerate() {
            for (c, acc) in acc.iter().enumerate() {
                *o.add(c * rows + r) = reduce8(acc.0, acc.1);
            }
        }
    }
}

/// The weights of a 32-wide type `B` (the `MatFn` contract): one row at a
/// time for a single vector, tiles of up to 4 rows x 2 vectors for a batch.
pub(super) struct Quant32<B>(core::marker::PhantomData<B>);

impl<B: Block32> Kernel for Quant32<B> {
    #[inline(always)]
    unsafe fn mat<I: ArmIsa>(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
        // SAFETY: every tile is inside the checked arguments.
        unsafe {
            if a.n == 1 {
                over_tiles!(I, MV, 1, rows, a.n, quant_at, [B], (w, a, out, rows))
            } else {
                over_tiles!(I, QR, QC, rows, a.n, quant_at, [B], (w, a, out, rows))
            }
        }
    }
}

// ---- quantizing activations ----

/// Bit-identical to `scalar::quantize` (lengths checked).
///
/// # Safety
/// The CPU has the set's features; `d`, `sum` hold `x.len() / 32` blocks and `q`
/// holds `x.len()` values.
#[inline(always)]
pub(super) unsafe fn quantize(x: &[f32], d: &mut [f32], sum: &mut [i32], q: &mut [i8]) {
    // SAFETY: (for the whole body) NEON (the caller's promise); every block b is
    // inside `x` and `q` (lengths checked by the caller).
    unsafe {
        for b in 0..x.len() / QK {
            let mut v = [vdupq_n_f32(0.0); 8];
            for (k, v) in v.iter_mut().enumerate() {
                *v = vld1q_f32(x.as_ptr().add(b * QK + 4 * k));
            }
            // `fmaxnm` skips NaN, as `f32::max` does in the scalar fold.
            let mut m = vdupq_n_f32(0.0);
            for &v in &v {
                m = vmaxnmq_f32(m, vabsq_f32(v));
            }
            let amax = vmaxnmvq_f32(m);
            let scale = amax / 127.0;
            let inv = if scale != 0.0 { 1.0 / scale } else { 0.0 };
            // `fcvtas` rounds half away from zero, saturates and maps NaN
            // to 0: exactly `roundf(x) as i32`.
            let (lo, hi) = (vdupq_n_s32(-127), vdupq_n_s32(127));
            let mut r = [vdupq_n_s32(0); 8];
            for (r, &v) in r.iter_mut().zip(&v) {
                let t = vmulq_f32(v, vdupq_n_f32(inv));
                *r = vmaxq_s32(vminq_s32(vcvtaq_s32_f32(t), hi), lo);
            }
            let mut s = vdupq_n_s32(0);
            for &r in &r {
                s = vaddq_s32(s, r);
            }
            for h in 0..2 {
                let r = &r[4 * h..4 * h + 4];
                let r01 = vcombine_s16(vqmovn_s32(r[0]), vqmovn_s32(r[1]));
                let r23 = vcombine_s16(vqmovn_s32(r[2]), vqmovn_s32(r[3]));
                let p = vcombine_s8(vqmovn_s16(r01), vqmovn_s16(r23));
                vst1q_s8(q.as_mut_ptr().add(b * QK + 16 * h), p);
            }
            d[b] = scale;
            sum[b] = vaddvq_s32(s);
        }
    }
}
