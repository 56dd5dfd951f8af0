//! The 256-bit kernels both x86-64 sets share: F32/F16/BF16 tiles, groups
//! of 8 blocks of the 32-wide quantized types, and the Q8 activation
//! quantizer. Every function is generic over the set ([`Isa`]):
//! `#[inline(always)]` and without target features of its own, it is
//! compiled into each set's `#[target_feature]` entry point with that set's
//! instructions (its pair products and tile sizes); the quantized kernels
//! are also generic over the block format ([`Format`], implemented in
//! [`super::legacy`]).
//!
//! Layout of the quantized kernels. A group of 8 blocks is processed at once:
//! for each pair of blocks `(2p, 2p + 1)` one `__m256i` holds elements 0..16
//! of both blocks (low 128 bits: block `2p`) and another elements 16..32, so
//! that two dot-product instructions leave four `i32` partial sums per block.
//! Two unpack-and-add levels reduce the four pairs to one vector of the eight
//! exact block sums, in the block order `P = [0, 2, 4, 6, 1, 3, 5, 7]`; the
//! scales are gathered in the same order, and the float partial sums are put
//! back in natural order before the final reduction tree. The activations'
//! side of that layout (the pair shuffles, the scales and the sums in order
//! `P`) is prepared once per kernel call on the stack ([`Prep`]), not once
//! per row.
//!
//! # Safety
//! Every `unsafe fn` here requires that the CPU has the features of the set
//! `I` it is instantiated with, and that the kernel's arguments passed
//! `check_mat` (every pointer it derives stays inside them).

use core::arch::x86_64::*;
use core::mem::MaybeUninit;
use core::ptr::{copy_nonoverlapping, read_unaligned};

use super::{
    prefetch_ahead, prefetch_bytes, prefetch_line, Isa, Prefetch, PAGE_AHEAD, PLAIN_AHEAD,
};
use crate::kernels::acts::Acts;
use crate::kernels::types::QK;

/// A tile of a kernel: `run::<R, C>(r0, c0)` computes rows `r0..r0 + R`
/// times vectors `c0..c0 + C`. [`Isa::dispatch`] picks `R` and `C`.
pub(super) trait TileOp {
    /// Computes the tile.
    ///
    /// # Safety
    /// The CPU has the set's features; the tile is inside the arguments.
    unsafe fn run<const R: usize, const C: usize>(&mut self, r0: usize, c0: usize);
}

/// Runs `op` over every tile of `rows` rows x `n` vectors (at most `rmax` x
/// `cmax`), the vectors outermost.
///
/// # Safety
/// As [`TileOp::run`] for every tile.
#[inline(always)]
pub(super) unsafe fn over_tiles<I: Isa, T: TileOp>(
    rmax: usize,
    cmax: usize,
    rows: usize,
    n: usize,
    op: &mut T,
) {
    let mut c0 = 0;
    while c0 < n {
        let nc = (n - c0).min(cmax);
        let mut r0 = 0;
        while r0 < rows {
            let nr = (rows - r0).min(rmax);
            // SAFETY: the caller's promise, for this tile.
            unsafe { I::dispatch(op, nr, nc, r0, c0) };
            r0 += nr;
        }
        c0 += nc;
    }
}

/// The block order of the reduced block sums.
const P: [i32; 8] = [0, 2, 4, 6, 1, 3, 5, 7];
/// Its inverse.
pub(super) const PINV: [i32; 8] = [0, 4, 1, 5, 2, 6, 3, 7];

/// The fixed reduction tree of the scalar `reduce8` (and, after adding
/// lanes `j` and `j + 8`, of `reduce16`):
/// `((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7))`.
#[inline(always)]
pub(super) unsafe fn reduce8(v: __m256) -> f32 {
    // SAFETY: AVX (the caller's promise).
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let t = _mm_add_ps(s, _mm_shuffle_ps::<0b10_11_00_01>(s, s));
        _mm_cvtss_f32(_mm_add_ss(t, _mm_movehl_ps(t, t)))
    }
}

// ---- F32, F16 and BF16 ----

/// `acc + w * x`: fused (one rounding) for F16 and BF16 weights, a rounded product
/// then a rounded sum for F32 (as the scalar reference).
#[inline(always)]
unsafe fn madd<const K: FloatKind>(acc: __m256, w: __m256, x: __m256) -> __m256 {
    // SAFETY: AVX and FMA (the caller's promise).
    unsafe {
        if K != F32 {
            _mm256_fmadd_ps(w, x, acc)
        } else {
            _mm256_add_ps(acc, _mm256_mul_ps(w, x))
        }
    }
}

/// The float weight types: [`F32`], [`F16`] or [`BF16`].
pub(super) type FloatKind = u8;
/// IEEE single precision weights.
pub(super) const F32: FloatKind = 0;
/// IEEE half precision weights.
pub(super) const F16: FloatKind = 1;
/// bfloat16 weights.
pub(super) const BF16: FloatKind = 2;

/// Eight bfloat16 values (16 bytes at `p`) as f32: the bits moved up.
#[inline(always)]
unsafe fn bf16x8(p: *const u8) -> __m256 {
    // SAFETY: the caller vouches for 16 bytes at p; AVX2.
    unsafe {
        let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(h))
    }
}

/// Iterations of a matrix-vector tile (`R` rows of `rb` bytes at `w`,
/// `step` bytes of each row per iteration) that prefetch the next tile
/// ([`prefetch_next`]), so that the prefetches stop at `end` (null: none).
#[inline(always)]
fn prefetch_iters<const R: usize>(w: *const u8, rb: usize, step: usize, end: *const u8) -> usize {
    if end.is_null() {
        return 0;
    }
    let next = w as usize + R * rb;
    (end as usize).saturating_sub(next).div_ceil(R * step)
}

/// Prefetches (into L1 or L2: [`Prefetch`]) the bytes of iteration `i` of the next tile (the
/// `R * step` bytes at `w + R * rb + i * R * step`): the next `R` rows,
/// contiguous, read as one sequential stream one tile ahead of the loads.
///
/// Why (F16, one vector, matrices larger than the caches, Zen 5, 1
/// thread, `kernel-table` medians): one row at a time is a single stream,
/// but its one chain of multiply-adds per lane cannot go faster than one
/// 32-byte chunk per FMA latency, and with rows of 5632 values (the
/// feed-forward's down projection) it read 53-59% of the probe; two rows
/// at once read 42-46% (two streams a row apart, which the hardware
/// prefetcher serves badly), and 91-100% with these prefetches. On AMD into L1
/// (`T0`) rather than L2 (`T1`), measured on whole models (`llamette
/// bench`, 48 tokens, 2026-12-05, 2 runs each): tinyllama-shaped F16 at 1
/// thread 36.9 -> 39.6 GB/s in huge pages and 34.4 -> 37.2 in the 4 KiB
/// pages of `--mmap` (2 threads: 69.5 -> 74.3, 60.5 -> 64-70), the 15M
/// shape's F32 decode 590 -> 633 tok/s (1 thread), 1025 -> 1076 (2); a
/// prefetch two or three tiles ahead was slower (33.6, 33.0 GB/s). On
/// Intel into L2 ([`Prefetch`]: F16 decode 6.7 -> 7.9 tok/s there).
#[inline(always)]
fn prefetch_next<const R: usize>(w: *const u8, rb: usize, step: usize, i: usize, policy: Prefetch) {
    prefetch_bytes(w.wrapping_add(R * rb + i * R * step), R * step, policy);
}

/// One tile of the float kernels: `R` rows from `w` (row `r` at
/// `w + r * rb`, `cols` elements) times `C` vectors (vector `c` at
/// `x + c * cols`); `out(r, c)` is stored at `o + c * ldo + r * ro`. `K`
/// selects the weight type. Sixteen partial sums per (row, vector): lanes
/// 0..8 in one register, 8..16 in another. With one vector and `pf_end`
/// not null, the next tile (up to `pf_end`) is prefetched
/// ([`prefetch_next`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_float<const R: usize, const C: usize, const K: FloatKind>(
    w: *const u8,
    rb: usize,
    x: *const f32,
    cols: usize,
    o: *mut f32,
    ldo: usize,
    ro: usize,
    pf_end: *const u8,
    policy: Prefetch,
) {
    // SAFETY: (for the whole body) offsets stay within the R rows of `rb` bytes and
    // the C vectors of `cols` values the caller vouches for; loads are
    // unaligned loads.
    unsafe {
        let load_w = |p: *const u8| -> (__m256, __m256) {
            if K == F16 {
                (
                    _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)),
                    _mm256_cvtph_ps(_mm_loadu_si128(p.add(16) as *const __m128i)),
                )
            } else if K == BF16 {
                (bf16x8(p), bf16x8(p.add(16)))
            } else {
                (
                    _mm256_loadu_ps(p as *const f32),
                    _mm256_loadu_ps(p.add(32) as *const f32),
                )
            }
        };
        let eb = if K == F32 { 4 } else { 2 };
        let z = _mm256_setzero_ps();
        let mut acc = [[(z, z); C]; R];
        let n16 = cols / 16;
        let pf = if C == 1 {
            prefetch_iters::<R>(w, rb, 16 * eb, pf_end)
        } else {
            0
        };
        for i in 0..n16 {
            if i < pf {
                prefetch_next::<R>(w, rb, 16 * eb, i, policy);
            }
            let mut xv = [(z, z); C];
            for (c, xv) in xv.iter_mut().enumerate() {
                let p = x.add(c * cols + 16 * i);
                *xv = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let (w0, w1) = load_w(w.add(r * rb + 16 * eb * i));
                for (acc, xv) in acc.iter_mut().zip(&xv) {
                    acc.0 = madd::<K>(acc.0, w0, xv.0);
                    acc.1 = madd::<K>(acc.1, w1, xv.1);
                }
            }
        }
        let rem = cols % 16;
        if rem != 0 {
            // The last partial chunk, zero-padded: lanes past the end add
            // 0 * 0 = +0, which leaves a partial sum as it is.
            let mut xt = [[0f32; 16]; C];
            for (c, xt) in xt.iter_mut().enumerate() {
                copy_nonoverlapping(x.add(c * cols + 16 * n16), xt.as_mut_ptr(), rem);
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let mut wt = [0u8; 64];
                copy_nonoverlapping(w.add(r * rb + 16 * eb * n16), wt.as_mut_ptr(), rem * eb);
                let (w0, w1) = load_w(wt.as_ptr());
                for (acc, xt) in acc.iter_mut().zip(&xt) {
                    let x0 = _mm256_loadu_ps(xt.as_ptr());
                    let x1 = _mm256_loadu_ps(xt.as_ptr().add(8));
                    acc.0 = madd::<K>(acc.0, w0, x0);
                    acc.1 = madd::<K>(acc.1, w1, x1);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (c, acc) in acc.iter().enumerate() {
                *o.add(c * ldo + r * ro) = reduce8(_mm256_add_ps(acc.0, acc.1));
            }
        }
    }
}

/// The float kernels' tiles over checked arguments.
struct FloatTiles<'a, 'b, const K: FloatKind> {
    w: &'a [u8],
    a: &'a Acts<'b>,
    out: &'a mut [f32],
    rows: usize,
    /// The end of the matrix if one-vector tiles prefetch the next, else null.
    pf_end: *const u8,
    /// Where they prefetch it.
    policy: Prefetch,
}

impl<const K: FloatKind> TileOp for FloatTiles<'_, '_, K> {
    #[inline(always)]
    unsafe fn run<const R: usize, const C: usize>(&mut self, r0: usize, c0: usize) {
        let cols = self.a.cols;
        let rb = cols * if K == F32 { 4 } else { 2 };
        // SAFETY: the tile lies inside the checked slices.
        unsafe {
            tile_float::<R, C, K>(
                self.w.as_ptr().add(r0 * rb),
                rb,
                self.a.x.as_ptr().add(c0 * cols),
                cols,
                self.out.as_mut_ptr().add(c0 * self.rows + r0),
                self.rows,
                1,
                self.pf_end,
                self.policy,
            )
        }
    }
}

/// The longest row [`mat_float`] reads four at a time for one vector (on
/// AMD, F32 rows from memory in [`halves`]; longer F16 and BF16 rows
/// from memory too).
const SHORT_ROW: usize = 512;

/// The size from which [`mat_float`] prefetches a matrix of short rows
/// for one vector (smaller ones stay in L2 between tokens).
const STREAMED_BYTES: usize = 256 << 10;

/// F32, F16 or BF16 weights (the `MatFn` contract, arguments checked). For
/// one vector: short rows four at a time; long rows two at a time, each
/// pair prefetching the next ([`prefetch_next`]); on AMD, rows of a matrix
/// from memory in pairs half the matrix apart where measured faster
/// (short F32, long F16 and BF16: [`halves`]). Tiles of up to `I::FR` x `I::FC`
/// for a batch.
#[inline(always)]
pub(super) unsafe fn mat_float<I: Isa, const K: FloatKind>(
    w: &[u8],
    a: &Acts,
    out: &mut [f32],
    rows: usize,
) {
    let n = a.n;
    let eb = if K == F32 { 4 } else { 2 };
    // A matrix this small stays in the caches from token to token (a tiny
    // model's): prefetching it only costs instructions.
    let streamed = rows * a.cols * eb >= STREAMED_BYTES;
    let policy = super::prefetch();
    // On AMD, a matrix from memory whose rows are short F32 ones or long
    // F16 or BF16 ones: rows in pairs half the matrix apart ([`halves`]).
    // (Long F32 rows, TinyLlama-sized, not measured: two rows as below.)
    let long = a.cols > SHORT_ROW;
    if n == 1 && streamed && policy == Prefetch::L1 && (K == F32 && !long || K != F32 && long) {
        // SAFETY: this function's contract.
        unsafe { halves::<K>(w, a, out, rows) };
        return;
    }
    let (rmax, cmax, pf) = match n {
        // Short rows (a small model's): four at a time share the loads of
        // the vector and the loop (each row's sums as alone), the next four
        // prefetched when the matrix comes from memory (a classifier of
        // 32,000 short rows: the 15M shape's decode 391 -> 525 tok/s).
        1 if a.cols <= SHORT_ROW => (4, 1, streamed),
        // Long rows: two rows' chains (each row's sums as alone) and the
        // next pair prefetched: one row at a time without help reads about
        // half the bandwidth on long rows.
        1 => (2, 1, true),
        _ => (I::FR, I::FC, false),
    };
    let pf_end = if pf {
        w.as_ptr().wrapping_add(rows * a.cols * eb)
    } else {
        core::ptr::null()
    };
    let mut op = FloatTiles::<K> {
        w,
        a,
        out,
        rows,
        pf_end,
        policy,
    };
    // SAFETY: every tile is inside the checked arguments.
    unsafe { over_tiles::<I, _>(rmax, cmax, rows, n, &mut op) }
}

/// One vector times a matrix from memory, on AMD: row `r` of the first
/// half side by side with row `r + rows / 2` (an odd last row alone), each
/// row's sixteen partial sums as alone ([`tile_float`]). Two sequential
/// streams far apart, which the hardware prefetcher follows, and two
/// rows' chains of multiply-adds: one row's chains alone cannot read
/// faster than about 30 GB/s even from the caches (F16, Zen 4), and two
/// adjacent rows, or four, read less than one. (The `avx512` set reads
/// F16 and BF16 rows of more than 4096 values in tiles of 8 adjacent
/// rows instead: their vector does not stay in L1.)
///
/// Measured on Zen 4 (median tok/s of alternating runs): TinyLlama F16
/// under `--mmap` (`bench`, 5 runs), two adjacent rows with the next pair
/// prefetched 9.59, one row 10.26, these pairs 11.22 (2 threads: one row
/// 14.01, pairs 15.14); a C model of its products over the mapped file
/// (1 thread, GB/s): two adjacent rows prefetched 16-20, not prefetched
/// 14-15, one row 22.0-22.5, these pairs 23.6-24.5, four rows a quarter
/// apart 21.1-21.6. TinyLlama BF16 (two adjacent rows -> pairs): decode
/// 11.51 -> 12.80 (5 runs), under `--mmap` 10.49 -> 11.91 (3 runs), 2
/// threads 15.71 -> 16.37 (3 runs). The 15M shape's short F32 rows (greedy, 256 steps, 7-9
/// runs): one row 442, pairs 469 (1 thread); 2 threads 489 -> 527
/// (another run 486 -> 477). One row had replaced four with the next four
/// prefetched into L1 (390 -> 486 at 1 thread, 514 -> 673 at 2, in a
/// quieter hour).
///
/// # Safety
/// As [`mat_float`], for one vector.
#[inline(always)]
unsafe fn halves<const K: FloatKind>(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    let cols = a.cols;
    let rb = cols * if K == F32 { 4 } else { 2 };
    let h = rows / 2;
    let (w, x, o) = (w.as_ptr(), a.x.as_ptr(), out.as_mut_ptr());
    let none = core::ptr::null();
    // SAFETY: rows r and r + h (r < h) and the odd last row 2h are rows of
    // the checked matrix, and their outputs entries of `out`.
    unsafe {
        for r in 0..h {
            tile_float::<2, 1, K>(
                w.add(r * rb),
                h * rb,
                x,
                cols,
                o.add(r),
                0,
                h,
                none,
                Prefetch::L1,
            );
        }
        if rows % 2 == 1 {
            tile_float::<1, 1, K>(
                w.add(2 * h * rb),
                rb,
                x,
                cols,
                o.add(2 * h),
                0,
                1,
                none,
                Prefetch::L1,
            );
        }
    }
}

// ---- the 32-wide quantized types ----

/// The scales of 8 blocks `bb` bytes apart from `p`, in order `P`.
#[inline(always)]
unsafe fn scales8(p: *const u8, bb: usize) -> __m256 {
    let h = |k: usize| -> u64 {
        // SAFETY: the caller vouches for the 8 blocks.
        let bits = unsafe { read_unaligned(p.add(k * bb) as *const u16) };
        bits as u64
    };
    let lo = h(0) | h(2) << 16 | h(4) << 32 | h(6) << 48;
    let hi = h(1) | h(3) << 16 | h(5) << 32 | h(7) << 48;
    // SAFETY: F16C (the caller's promise).
    unsafe { _mm256_cvtph_ps(_mm_set_epi64x(hi as i64, lo as i64)) }
}

/// Reduces the pair sums of blocks (0, 1) and (2, 3) to four partial sums
/// per block, interleaved.
#[inline(always)]
unsafe fn merge1(a: __m256i, b: __m256i) -> __m256i {
    // SAFETY: AVX2 (the caller's promise).
    unsafe { _mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b)) }
}

/// The second level: the eight block sums, in order `P`.
#[inline(always)]
unsafe fn merge2(a: __m256i, b: __m256i) -> __m256i {
    // SAFETY: AVX2 (the caller's promise).
    unsafe { _mm256_add_epi32(_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b)) }
}

/// A 32-wide block format of the quantized kernels (Q8_0, Q4_0 and the
/// others of [`super::legacy`]): where its values are and what has to be
/// done to the products of the pair instructions to get the reference's
/// block sums.
///
/// # Safety
/// [`Format::values`] needs the CPU features of `I` and two readable
/// blocks.
pub(super) trait Format {
    /// Bytes per block (at most 34).
    const BYTES: usize;
    /// Whether [`Format::values`] gives signed bytes, multiplied by
    /// [`Isa::pair_q8`] (after [`Isa::prep_q8`], which `values` applies),
    /// else unsigned ones, multiplied by [`Isa::pair_q4`].
    const SIGNED: bool;
    /// For unsigned values `u`: the value is `u - (1 << SHIFT)` (0: `u`).
    const SHIFT: i32;
    /// Whether the block has a minimum `m` (f16 at byte 2): the reference
    /// adds `(m * d_a) * sum(a)` to each block's scaled sum.
    const MIN: bool;
    /// For the 4-bit formats: the offset of their 16 bytes of nibbles
    /// (element `j` low, `j + 16` high); 0 for Q8_0.
    const QS: usize;
    /// For Q5_0 and Q5_1: the offset of the fifth bits (a little-endian
    /// `u32`, bit `i` for element `i`); else 0.
    const QH: usize;
    /// Whether the nibbles index IQ4_NL's table.
    const LOOKUP: bool;
    /// The values of blocks `k` and `k + 1` at `p` and `p + bb`: elements
    /// 0..16 of both (block `k` in the low 128 bits), then 16..32 of both.
    unsafe fn values<I: Isa>(p: *const u8, bb: usize) -> (__m256i, __m256i);
}

/// `k` such that the pair products of `F` on `I` summed over a block exceed
/// the true block sum by `sum(a) << k` (0: no excess).
#[inline(always)]
pub(super) fn shift<I: Isa, F: Format>() -> i32 {
    if F::SIGNED {
        I::Q8_SHIFT
    } else {
        F::SHIFT
    }
}

/// The activations of blocks `2p` and `2p + 1` of a group at `q`, laid out
/// as [`Format::values`] lays out the weights.
#[inline(always)]
unsafe fn pair_acts(q: *const i8) -> (__m256i, __m256i) {
    // SAFETY: the caller vouches for the two blocks and the CPU features.
    unsafe {
        let lo = _mm256_loadu_si256(q as *const __m256i);
        let hi = _mm256_loadu_si256(q.add(32) as *const __m256i);
        (
            _mm256_permute2x128_si256::<0x20>(lo, hi),
            _mm256_permute2x128_si256::<0x31>(lo, hi),
        )
    }
}

/// One vector's activations for one group of 8 blocks, prepared for
/// [`group`]: the pair layout of [`pair_acts`] for the four pairs, the
/// scales in order `P` and the sums times the excess of the weights'
/// encoding (`8` for Q4_0, `2^Q8_SHIFT` for Q8_0; the sums themselves for
/// the formats with a minimum), in order `P`.
#[derive(Clone, Copy)]
#[repr(C)]
pub(super) struct Prep {
    pub(super) a: [(__m256i, __m256i); 4],
    pub(super) da: __m256,
    pub(super) corr: __m256i,
}

/// Prepared groups per kernel call (on the stack, 320 bytes each): enough
/// for one vector of up to 96 * 256 = 24576 columns. Longer rows (or more
/// vectors) prepare each group as they go.
pub(super) const PREP_GROUPS: usize = 96;

/// Prepares group `k` (of `nb` blocks per vector) of vector `b`; `a` holds
/// the quantized vector `b` (checked by `check_mat`).
#[inline(always)]
pub(super) unsafe fn prep<I: Isa, F: Format>(a: &Acts, b: usize, k: usize, nb: usize) -> Prep {
    let first = b * nb + 8 * k;
    let n = (nb - 8 * k).min(8);
    // SAFETY: (for the whole body) blocks first..first + n of the checked
    // activations; a partial group reads zero-padded copies.
    unsafe {
        let (mut qt, mut dt, mut st) = ([0i8; 8 * QK], [0f32; 8], [0i32; 8]);
        let (q, d, s) = if n == 8 {
            (
                a.q.as_ptr().add(first * QK),
                a.d.as_ptr().add(first),
                a.sum.as_ptr().add(first),
            )
        } else {
            // Zero blocks add (0 * 0) * 0 = +0: no change.
            copy_nonoverlapping(a.q.as_ptr().add(first * QK), qt.as_mut_ptr(), n * QK);
            copy_nonoverlapping(a.d.as_ptr().add(first), dt.as_mut_ptr(), n);
            copy_nonoverlapping(a.sum.as_ptr().add(first), st.as_mut_ptr(), n);
            (qt.as_ptr(), dt.as_ptr(), st.as_ptr())
        };
        let perm = _mm256_loadu_si256(P.as_ptr() as *const __m256i);
        let shift = shift::<I, F>();
        let corr = if shift != 0 || F::MIN {
            let s = _mm256_loadu_si256(s as *const __m256i);
            _mm256_sll_epi32(
                _mm256_permutevar8x32_epi32(s, perm),
                _mm_cvtsi32_si128(shift),
            )
        } else {
            _mm256_setzero_si256()
        };
        Prep {
            a: [
                pair_acts(q),
                pair_acts(q.add(64)),
                pair_acts(q.add(128)),
                pair_acts(q.add(192)),
            ],
            da: _mm256_permutevar8x32_ps(_mm256_loadu_ps(d), perm),
            corr,
        }
    }
}

/// Adds one group of 8 blocks to the partial sums `acc` (lanes in order
/// `P`) of an `R` x `C` tile: row `r`'s group starts at `w[r]`, blocks are
/// `bb` bytes.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // (row, vector) indices read best here
pub(super) unsafe fn group<I: Isa, const R: usize, const C: usize, F: Format>(
    w: &[*const u8; R],
    acts: &[*const Prep; C],
    bb: usize,
    acc: &mut [[__m256; C]; R],
) {
    // SAFETY: (for the whole body) all reads are within the 8 blocks the caller
    // vouches for.
    unsafe {
        let shift = shift::<I, F>();
        let mut half = [[[_mm256_setzero_si256(); C]; R]; 2];
        for h in 0..2 {
            let mut v = [[[_mm256_setzero_si256(); C]; R]; 2];
            for j in 0..2 {
                let p = 2 * h + j;
                for r in 0..R {
                    let (x1, x2) = F::values::<I>(w[r].add(2 * p * bb), bb);
                    for c in 0..C {
                        let (a1, a2) = (*acts[c]).a[p];
                        v[j][r][c] = if F::SIGNED {
                            I::pair_q8(x1, x2, a1, a2)
                        } else {
                            I::pair_q4(x1, x2, a1, a2)
                        };
                    }
                }
            }
            for r in 0..R {
                for c in 0..C {
                    half[h][r][c] = merge1(v[0][r][c], v[1][r][c]);
                }
            }
        }
        for r in 0..R {
            let dw = scales8(w[r], bb);
            let mw = if F::MIN {
                scales8(w[r].add(2), bb)
            } else {
                _mm256_setzero_ps()
            };
            for c in 0..C {
                let mut dot = merge2(half[0][r][c], half[1][r][c]);
                if shift != 0 {
                    dot = _mm256_sub_epi32(dot, (*acts[c]).corr);
                }
                let s = _mm256_mul_ps(dw, (*acts[c]).da);
                let mut prod = _mm256_mul_ps(s, _mm256_cvtepi32_ps(dot));
                if F::MIN {
                    // (m * d_a) * sum(a), added to the block's term before
                    // the partial sum (the reference's order).
                    let m = _mm256_mul_ps(mw, (*acts[c]).da);
                    let sum = _mm256_cvtepi32_ps((*acts[c]).corr);
                    prod = _mm256_add_ps(prod, _mm256_mul_ps(m, sum));
                }
                acc[r][c] = _mm256_add_ps(acc[r][c], prod);
            }
        }
    }
}

/// The quantized kernels' tiles over checked arguments; `prepared`, if not
/// empty, holds every group of the current vectors `c0..` (group `k` of
/// vector `c0 + c` at `c * groups + k`).
struct QuantTiles<'a, 'b, I, F> {
    w: &'a [u8],
    a: &'a Acts<'b>,
    out: &'a mut [f32],
    rows: usize,
    prepared: &'a [Prep],
    isa: core::marker::PhantomData<(I, F)>,
}

impl<I: Isa, F: Format> TileOp for QuantTiles<'_, '_, I, F> {
    #[inline(always)]
    unsafe fn run<const R: usize, const C: usize>(&mut self, r0: usize, c0: usize) {
        const { assert!(F::BYTES <= 34) };
        let bb = F::BYTES;
        let a = self.a;
        let nb = a.cols / QK;
        let groups = nb.div_ceil(8);
        let rb = nb * bb;
        let prepared = self.prepared;
        // One vector: on Intel each group [`PLAIN_AHEAD`] bytes ahead into
        // L2 (mapped Q8_0 decode 10.1 -> 12.3 tok/s there at `AHEAD`);
        // elsewhere none.
        let policy = super::prefetch();
        // SAFETY: (for the whole body) the pointers walk the tile's rows, whose
        // lengths `check_mat` checked; the last partial group reads
        // zero-padded copies instead.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); C]; R];
            let wp = self.w.as_ptr().add(r0 * rb);
            let mut wr = [wp; R];
            // `Prep` is plain vectors, for which zero bits are valid.
            let mut local: [Prep; C] = core::mem::zeroed();
            let mut wt = [[MaybeUninit::<u8>::uninit(); 8 * 34]; R];
            for k in 0..groups {
                let n = (nb - 8 * k).min(8);
                for r in 0..R {
                    wr[r] = wp.add(r * rb + 8 * k * bb);
                    if n < 8 {
                        // The last partial group, zero-padded: zero blocks
                        // have scale 0, so they add +0.
                        let t = wt[r].as_mut_ptr() as *mut u8;
                        t.write_bytes(0, 8 * 34);
                        copy_nonoverlapping(wr[r], t, n * bb);
                        wr[r] = t;
                    }
                }
                if C == 1 && policy == Prefetch::L2 {
                    for w in &wr {
                        prefetch_ahead(*w, 8 * bb, PLAIN_AHEAD, policy);
                        prefetch_line(w.wrapping_add(PAGE_AHEAD), policy);
                    }
                }
                if prepared.is_empty() {
                    for (c, l) in local.iter_mut().enumerate() {
                        *l = prep::<I, F>(a, c0 + c, k, nb);
                    }
                }
                let mut ap = [core::ptr::null::<Prep>(); C];
                for (c, ap) in ap.iter_mut().enumerate() {
                    *ap = if prepared.is_empty() {
                        &local[c]
                    } else {
                        prepared.as_ptr().add(c * groups + k)
                    };
                }
                group::<I, R, C, F>(&wr, &ap, bb, &mut acc);
            }
            let pinv = _mm256_loadu_si256(PINV.as_ptr() as *const __m256i);
            let o = self.out.as_mut_ptr().add(c0 * self.rows + r0);
            for (r, acc) in acc.iter().enumerate() {
                for (c, &acc) in acc.iter().enumerate() {
                    *o.add(c * self.rows + r) = reduce8(_mm256_permutevar8x32_ps(acc, pinv));
                }
            }
        }
    }
}

/// Weights of a 32-wide format `F` (the `MatFn` contract, arguments checked): vectors
/// in chunks of `I::QC` (one at a time for a single vector), each chunk's
/// activations prepared once when they fit, then every tile of rows (one
/// row at a time for a single vector, see [`mat_float`]).
#[inline(always)]
pub(super) unsafe fn mat_quant<I: Isa, F: Format>(
    w: &[u8],
    a: &Acts,
    out: &mut [f32],
    rows: usize,
) {
    let (rmax, cmax) = if a.n == 1 { (1, 1) } else { (I::QR, I::QC) };
    let nb = a.cols / QK;
    let groups = nb.div_ceil(8);
    let mut buf = [MaybeUninit::<Prep>::uninit(); PREP_GROUPS];
    let mut c0 = 0;
    while c0 < a.n {
        let nc = (a.n - c0).min(cmax);
        let prepared: &[Prep] = if nc * groups <= PREP_GROUPS && rows > 1 {
            for c in 0..nc {
                for k in 0..groups {
                    // SAFETY: vector c0 + c is in the checked batch.
                    buf[c * groups + k].write(unsafe { prep::<I, F>(a, c0 + c, k, nb) });
                }
            }
            // SAFETY: the first nc * groups entries were written above.
            unsafe { core::slice::from_raw_parts(buf.as_ptr() as *const Prep, nc * groups) }
        } else {
            &[]
        };
        let mut op = QuantTiles::<I, F> {
            w,
            a,
            out: &mut *out,
            rows,
            prepared,
            isa: core::marker::PhantomData,
        };
        let mut r0 = 0;
        while r0 < rows {
            let nr = (rows - r0).min(rmax);
            // SAFETY: the tile is inside the checked arguments.
            unsafe { I::dispatch(&mut op, nr, nc, r0, c0) };
            r0 += nr;
        }
        c0 += nc;
    }
}

// ---- quantizing activations ----

/// Bit-identical to the scalar Q8 quantizer; `d`, `sum` hold `x.len() / 32`
/// blocks and `q` holds `x.len()` values (checked by the caller).
#[inline(always)]
pub(super) unsafe fn quantize(x: &[f32], d: &mut [f32], sum: &mut [i32], q: &mut [i8]) {
    // SAFETY: (for the whole body) the CPU features are the caller's promise; every
    // block b is inside `x` and `q` (lengths checked by the caller).
    unsafe {
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let half = _mm256_set1_ps(0.5);
        let one = _mm256_set1_ps(1.0);
        let (lo, hi) = (_mm256_set1_ps(-127.0), _mm256_set1_ps(127.0));
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for b in 0..x.len() / QK {
            let p = x.as_ptr().add(b * QK);
            let v = [
                _mm256_loadu_ps(p),
                _mm256_loadu_ps(p.add(8)),
                _mm256_loadu_ps(p.add(16)),
                _mm256_loadu_ps(p.add(24)),
            ];
            // max(|v|, m) returns m when |v| is NaN: NaN is skipped, as
            // `f32::max` skips it in the scalar fold.
            let mut m = _mm256_setzero_ps();
            for v in v {
                m = _mm256_max_ps(_mm256_and_ps(v, abs), m);
            }
            let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
            let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            let amax = _mm_cvtss_f32(_mm_max_ss(m2, _mm_shuffle_ps::<1>(m2, m2)));
            let scale = amax / 127.0;
            let inv = if scale != 0.0 { 1.0 / scale } else { 0.0 };
            let iv = _mm256_set1_ps(inv);
            let mut r = [_mm256_setzero_si256(); 4];
            for (r, v) in r.iter_mut().zip(v) {
                // roundf: truncate, then step away from zero when the
                // dropped fraction is at least one half (all exact).
                let t = _mm256_mul_ps(v, iv);
                let tr = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(t);
                let frac = _mm256_and_ps(_mm256_sub_ps(t, tr), abs);
                let up = _mm256_cmp_ps::<_CMP_GE_OQ>(frac, half);
                let step = _mm256_or_ps(_mm256_andnot_ps(abs, t), one);
                let y = _mm256_add_ps(tr, _mm256_and_ps(up, step));
                // NaN becomes 0 and infinities clamp, as `as i32` and
                // `clamp` do in the scalar code.
                let y = _mm256_and_ps(y, _mm256_cmp_ps::<_CMP_ORD_Q>(y, y));
                let y = _mm256_min_ps(_mm256_max_ps(y, lo), hi);
                *r = _mm256_cvtps_epi32(y);
            }
            let s = _mm256_add_epi32(_mm256_add_epi32(r[0], r[1]), _mm256_add_epi32(r[2], r[3]));
            let s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
            let s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
            let s1 = _mm_add_epi32(s2, _mm_shuffle_epi32::<1>(s2));
            let pk = _mm256_packs_epi16(
                _mm256_packs_epi32(r[0], r[1]),
                _mm256_packs_epi32(r[2], r[3]),
            );
            let pk = _mm256_permutevar8x32_epi32(pk, order);
            _mm256_storeu_si256(q.as_mut_ptr().add(b * QK) as *mut __m256i, pk);
            d[b] = scale;
            sum[b] = _mm_cvtsi128_si32(s1);
        }
    }
}
