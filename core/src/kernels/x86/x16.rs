//! The interleaved types ([`crate::kernels::interleave`]) with 512-bit vectors: lane `r`
//! of every vector is row `r` of a band of 16, so a block's dot products
//! are 8 `vpdpbusd` (each adds 4 products per row) with the activations'
//! 4-byte groups broadcast, and its scaling is one vector multiply; there
//! is no reduction across lanes at all. The arithmetic, lane by lane, is
//! the scalar reference's (block `k`'s `(d_w * d_a) * dot`, `dot` exact,
//! into partial sum `k % 8`, then `reduce8`): the plain types' numbers.

use core::arch::x86_64::*;
use core::mem::MaybeUninit;
use core::ptr::read_unaligned;

use super::amx::tiles::{self, Tiles};
use super::{prefetch, prefetch_ahead, Prefetch};
use crate::kernels::acts::Acts;
use crate::kernels::interleave::{block_bytes, checked_band_bytes, for_each_band, BAND};
use crate::kernels::types::QK;

/// How far ahead the one pass over a band that streams it from memory
/// prefetches its units: [`AHEAD`](super::AHEAD) bytes into L2 on Intel, and
/// [`NEAR`](super::NEAR) into L1 ([`prefetch_ahead`]; [`Prefetch`]:
/// whole-model decode with interleaved Q4_0 21.6 -> 25.2 tok/s at 1
/// thread, Q8_0 13.2 -> 14.9; prompts 4-7% faster), 0 (none) elsewhere
/// (on Zen 4 these kernels were faster from memory without; the decode
/// prefetches there, [`decode_ahead`]).
fn ahead() -> usize {
    prefetch().ahead(0)
}

/// How far ahead the decode's two streams ([`two_streams`]) prefetch
/// their units: as [`ahead`] on Intel; elsewhere
/// [`DECODE_AHEAD`](super::DECODE_AHEAD) bytes into L2 alone.
fn decode_ahead() -> usize {
    match prefetch() {
        Prefetch::L2 => ahead(),
        Prefetch::L1 => super::DECODE_AHEAD,
    }
}

/// Vectors per tile of a batch: each unit's nibbles, split once, serve
/// this many vectors.
const NC: usize = 4;

/// The eight partial sums of a tile's `C` vectors, 16 rows per lane.
type Sums<const C: usize> = [[__m512; 8]; C];

/// `rows` (whole bands) times every vector of `a`.
///
/// # Safety
/// The CPU has AVX-512 F, BW, VL, VNNI, F16C; `check_mat` accepted the
/// arguments; `rows` is a multiple of 16.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn mat<const Q4: bool>(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    let nb = a.cols / QK;
    let bb = block_bytes(Q4);
    if a.n == 1 && rows >= 2 * BAND {
        // SAFETY: this function's contract.
        unsafe { two_streams::<Q4>(w, a, out, rows) };
        return;
    }
    for_each_band(w, a, out, rows, nb * bb, NC, |band, c0, nc, o| {
        // SAFETY: `for_each_band` hands out bands, vectors and outputs
        // inside the checked arguments; the CPU has the features (this
        // function's contract).
        unsafe {
            match nc {
                1 => whole_band::<1, Q4>(band, nb, a, c0, o, rows),
                2 => whole_band::<2, Q4>(band, nb, a, c0, o, rows),
                3 => whole_band::<3, Q4>(band, nb, a, c0, o, rows),
                _ => whole_band::<4, Q4>(band, nb, a, c0, o, rows),
            }
        }
    });
}

/// `rows` (whole bands, at least two) times one vector (decode), reading
/// the weights as two streams: band `b` of the first half side by side
/// with band `b + half`, a unit of one, then the same unit of the other
/// ([`pair`]). One core of the Intel development machine reads two streams
/// faster than one (whole-model decode, TinyLlama shape, medians of
/// alternating runs, 2026-12-06 12:55 UTC, turning every 4 units through
/// [`units`]: Q4_0 25.7 -> 27.5 tok/s and Q8_0 15.0 -> 15.5 at 1 thread, 5
/// runs; 47.8 -> 50.1 and 28.2 -> 29.1 at 2, 3 runs). Turning every unit
/// in one loop that keeps both bands' partial sums in registers ([`pair`])
/// rather than calling [`units`] for 4 units of each in turn (2026-12-06
/// 15:10-15:25, medians of alternating runs of 64 tokens): Q8_0 15.28 ->
/// 15.73 tok/s at 1 thread (7 runs; 15.31 -> 15.68 in 9 runs of an
/// earlier build), 28.31 -> 29.80 at 2 (5 runs); Q4_0 level (27.96 and
/// 28.24 at 1 thread, 9 runs; 51.18 and 51.05 at 2).
/// Variants measured (5 runs, against one stream's 26.9 and 15.6, Q4_0 and
/// Q8_0): turning every 8 units 28.4 and 15.6, every 16 27.2 and 15.3,
/// every 2 27.2 and 16.2, every 4 28.2 and 16.1; neighbouring bands `b`
/// and `b + 1` 26.9 and 15.7; with [`pair`], prefetching 4096 or 5120
/// bytes ahead into L2 and 2048 into L1 rather than 2560 and 1024, level.
/// Each band's blocks go to the same partial sums in the same order as in
/// one pass: the same bits.
///
/// # Safety
/// As [`mat`], and `a` holds one vector.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn two_streams<const Q4: bool>(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    let nb = a.cols / QK;
    let band_bytes = checked_band_bytes(w, out, 1, rows, nb * block_bytes(Q4));
    let bands = rows / BAND;
    let half = bands / 2;
    let (w, o) = (w.as_ptr(), out.as_mut_ptr());
    let pf = decode_ahead();
    for b in 0..half {
        let (x, y) = (b, b + half);
        let mut sx = [[_mm512_setzero_ps(); 8]; 1];
        let mut sy = [[_mm512_setzero_ps(); 8]; 1];
        // SAFETY: bands x and y (both below `bands`, nb units each) and
        // the vector's nb blocks are inside the arguments
        // `checked_band_bytes` checked; the CPU has the features (this
        // function's contract).
        unsafe {
            let (bx, by) = (w.add(x * band_bytes), w.add(y * band_bytes));
            pair::<Q4>(bx, by, nb, a, &mut sx, &mut sy, pf);
        }
        // SAFETY: outputs x * 16.. and y * 16.. + 16 are inside `out`
        // (checked); AVX-512F.
        unsafe {
            store::<1>(&sx, o.add(x * BAND), rows);
            store::<1>(&sy, o.add(y * BAND), rows);
        }
    }
    if bands % 2 == 1 {
        let b = bands - 1;
        // SAFETY: the last band and its outputs are inside the checked
        // arguments; the features (this function's contract).
        unsafe { whole_band::<1, Q4>(w.add(b * band_bytes), nb, a, 0, o.add(b * BAND), rows) };
    }
}

/// Two bands (`nb` units each, at `bx` and `by`) times one vector, unit
/// `k` of one, then unit `k` of the other, into the partial sums `sx` and
/// `sy` ([`unit`]: block `k` to sum `k % 8`, as [`units`] adds them).
///
/// # Safety
/// As [`mat`], and both bands and the vector's `nb` blocks are inside the
/// checked arguments.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[allow(clippy::too_many_arguments)]
unsafe fn pair<const Q4: bool>(
    bx: *const u8,
    by: *const u8,
    nb: usize,
    a: &Acts,
    sx: &mut Sums<1>,
    sy: &mut Sums<1>,
    ahead: usize,
) {
    let ub = BAND * block_bytes(Q4);
    // SAFETY: units 0..nb of both bands and blocks 0..nb of the vector
    // are inside the checked arguments; the features (the caller's
    // contract).
    unsafe {
        let mut k = 0;
        // Eight at a time, so that each partial sum stays in a register.
        while k + 8 <= nb {
            for u in 0..8 {
                unit::<1, Q4>(bx.add((k + u) * ub), k + u, u, nb, a, 0, sx, ahead);
                unit::<1, Q4>(by.add((k + u) * ub), k + u, u, nb, a, 0, sy, ahead);
            }
            k += 8;
        }
        for k in k..nb {
            unit::<1, Q4>(bx.add(k * ub), k, k % 8, nb, a, 0, sx, ahead);
            unit::<1, Q4>(by.add(k * ub), k, k % 8, nb, a, 0, sy, ahead);
        }
    }
}

/// One band (16 rows of `nb` blocks at `band`) times vectors `c0..c0 + C`
/// of `a`; row `r` of vector `c0 + j` goes to `out[j * rows + r]`.
///
/// # Safety
/// As [`mat`], and the band, the vectors and the outputs are inside the
/// checked arguments.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn whole_band<const C: usize, const Q4: bool>(
    band: *const u8,
    nb: usize,
    a: &Acts,
    c0: usize,
    out: *mut f32,
    rows: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); 8]; C];
    // SAFETY: the caller's contract.
    unsafe {
        units::<C, Q4>(band, 0, nb, nb, a, c0, &mut acc, ahead());
        store::<C>(&acc, out, rows);
    }
}

/// Units `k0..k0 + n` of a band (unit `k0` at `units`; `k0` a multiple of
/// 8) times vectors `c0..c0 + C` of `a` (rows of `nb` blocks), added to the
/// partial sums `acc`: block `k` to sum `k % 8`, as the plain types add
/// them (and eight chains hide the add's latency). Each unit's bytes
/// `ahead` bytes further on are prefetched into L2 (0: none; see
/// [`ahead`]).
///
/// # Safety
/// As [`mat`], and the units and the vectors' blocks are inside the
/// checked arguments (or, for units, a buffer holding them).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[allow(clippy::too_many_arguments)]
unsafe fn units<const C: usize, const Q4: bool>(
    units: *const u8,
    k0: usize,
    n: usize,
    nb: usize,
    a: &Acts,
    c0: usize,
    acc: &mut Sums<C>,
    ahead: usize,
) {
    debug_assert!(k0.is_multiple_of(8));
    let ub = BAND * block_bytes(Q4);
    // SAFETY: units k0..k0 + n and the vectors' blocks are inside the
    // checked arguments; the features (the caller's contract).
    unsafe {
        let mut i = 0;
        // Eight at a time (unit k0 + i + u to sum u), so that each partial
        // sum stays in a register.
        while i + 8 <= n {
            for u in 0..8 {
                let k = k0 + i + u;
                unit::<C, Q4>(units.add((i + u) * ub), k, u, nb, a, c0, acc, ahead);
            }
            i += 8;
        }
        for u in 0..n - i {
            let k = k0 + i + u;
            unit::<C, Q4>(units.add((i + u) * ub), k, u, nb, a, c0, acc, ahead);
        }
    }
}

/// The unit at `unit` (block `k` of 16 rows) times block `k` of vectors
/// `c0..c0 + C` of `a` (rows of `nb` blocks), each `(d_w * d_a) * dot`
/// added to partial sum `u` of its vector's sums in `acc`; the unit's
/// bytes `ahead` bytes further on prefetched (0: none; see [`ahead`]).
///
/// # Safety
/// As [`mat`], and the unit and block `k` of the vectors are inside the
/// checked arguments (or, for the unit, a buffer holding it); `u < 8`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn unit<const C: usize, const Q4: bool>(
    unit: *const u8,
    k: usize,
    u: usize,
    nb: usize,
    a: &Acts,
    c0: usize,
    acc: &mut Sums<C>,
    ahead: usize,
) {
    let ub = BAND * block_bytes(Q4);
    let offset = if Q4 { -8 } else { -128 };
    // SAFETY: the unit, and block k of each vector (32 values, a scale and
    // a sum), are inside the checked arguments; the CPU has the features
    // (the caller's contract).
    unsafe {
        let mask = _mm512_set1_epi8(0x0f);
        prefetch_ahead(unit, ub, ahead, Prefetch::L2);
        let dw = _mm512_cvtph_ps(_mm256_loadu_si256(unit as *const __m256i));
        let vals = |c: usize| _mm512_loadu_si512(unit.add(32 + 64 * c) as *const _);
        // Q4_0: chunk c's low nibbles are elements 4c..4c+4 of each row,
        // its high nibbles elements 16+4c..16+4c+4.
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
            // Two chains of dot products, for the latency; the offset
            // times the block's sum comes first.
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
            acc[u] = _mm512_add_ps(acc[u], _mm512_mul_ps(s, dot));
        }
    }
}

/// The partial sums of `C` vectors reduced (`reduce8`, lane by lane) and
/// stored: 16 rows of vector `j` at `out + j * rows`.
///
/// # Safety
/// The outputs are inside the checked arguments; AVX-512F.
#[inline(always)]
unsafe fn store<const C: usize>(acc: &Sums<C>, out: *mut f32, rows: usize) {
    for (j, acc) in acc.iter().enumerate() {
        // SAFETY: the caller's contract.
        unsafe {
            let s = _mm512_add_ps(
                _mm512_add_ps(_mm512_add_ps(acc[0], acc[4]), _mm512_add_ps(acc[1], acc[5])),
                _mm512_add_ps(_mm512_add_ps(acc[2], acc[6]), _mm512_add_ps(acc[3], acc[7])),
            );
            _mm512_storeu_ps(out.add(j * rows), s);
        }
    }
}

/// Bytes of interleaved units that [`mat_plain`] keeps on the stack.
const SEGMENT_BYTES: usize = 18 << 10;
/// Vectors whose partial sums [`mat_plain`] keeps on the stack (512 bytes
/// each): the batch a kernel call gets from `matmul` (32) fits, so each
/// band is interleaved once per batch.
const VC: usize = 32;

/// Plain Q4_0 or Q8_0 rows times a batch (the `MatFn` contract), through
/// the interleaved tiles: each band of 16 rows is interleaved a segment of
/// blocks at a time into a buffer on the stack ([`interleave`]), and every
/// vector of a chunk of [`VC`] passes the segment before the next is made.
/// The interleaved layout changes no bit ([`crate::kernels::interleave`]):
/// the numbers are the plain kernels'. `None` (nothing done) unless `rows`
/// is a multiple of 16.
///
/// # Safety
/// As [`mat`], but the weights plain and `rows` any number.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn mat_plain<const Q4: bool>(
    w: &[u8],
    a: &Acts,
    out: &mut [f32],
    rows: usize,
) -> Option<()> {
    if !rows.is_multiple_of(BAND) {
        return None;
    }
    let bb = block_bytes(Q4);
    let ub = BAND * bb;
    // A multiple of 8 units, so that a segment starts a round of the
    // partial sums.
    let seg = SEGMENT_BYTES / ub / 8 * 8;
    let nb = a.cols / QK;
    let rb = nb * bb;
    let mut buf = [const { MaybeUninit::<u8>::uninit() }; SEGMENT_BYTES];
    let mut sums = [[[0f32; 16]; 8]; VC];
    // SAFETY: (for the whole body) band b's rows (16 rows of rb bytes at
    // w + 16 b rb) and vectors v0..v0 + nv are inside the checked
    // arguments; the units `interleave` writes into `buf` (at most `seg`,
    // SEGMENT_BYTES) are the only ones `units` reads; the partial sums go
    // through `sums` as plain floats; outputs out[c * rows + 16 b + r]
    // are inside the checked output. The CPU has the features.
    unsafe {
        for b in 0..rows / BAND {
            let band = w.as_ptr().add(b * BAND * rb);
            let mut v0 = 0;
            while v0 < a.n {
                let nv = (a.n - v0).min(VC);
                for s in &mut sums[..nv] {
                    *s = [[0.0; 16]; 8];
                }
                let mut k0 = 0;
                while k0 < nb {
                    let ns = (nb - k0).min(seg);
                    let units_ptr = buf.as_mut_ptr() as *mut u8;
                    for i in 0..ns {
                        interleave::<Q4>(band.add((k0 + i) * bb), rb, units_ptr.add(i * ub));
                    }
                    let mut c = 0;
                    while c < nv {
                        let nc = (nv - c).min(NC);
                        let sums = sums[c..].as_mut_ptr();
                        let c0 = v0 + c;
                        let units_ptr = units_ptr as *const u8;
                        match nc {
                            1 => segment::<1, Q4>(units_ptr, k0, ns, nb, a, c0, sums),
                            2 => segment::<2, Q4>(units_ptr, k0, ns, nb, a, c0, sums),
                            3 => segment::<3, Q4>(units_ptr, k0, ns, nb, a, c0, sums),
                            _ => segment::<4, Q4>(units_ptr, k0, ns, nb, a, c0, sums),
                        }
                        c += nc;
                    }
                    k0 += ns;
                }
                store_sums(
                    &sums[..nv],
                    out.as_mut_ptr().add(v0 * rows + b * BAND),
                    rows,
                );
                v0 += nv;
            }
        }
    }
    Some(())
}

/// The partial sums of vectors `0..sums.len()` (16 rows each) reduced
/// and stored, vector `j`'s at `out + j * rows`.
///
/// # Safety
/// The outputs are inside the checked arguments; AVX-512F.
#[inline(always)]
unsafe fn store_sums(sums: &[[[f32; 16]; 8]], out: *mut f32, rows: usize) {
    for (j, s) in sums.iter().enumerate() {
        // SAFETY: the caller's contract.
        unsafe {
            let acc = [s.map(|p| _mm512_loadu_ps(p.as_ptr()))];
            store::<1>(&acc, out.add(j * rows), rows);
        }
    }
}

/// Interleaved rows (whole bands) times a batch through AMX tiles
/// ([`Tiles`]): band by band, each unit's values multiplied by 16
/// vectors at a time, chunks of [`VC`] vectors summed on the stack; the
/// numbers are [`mat`]'s.
///
/// # Safety
/// As [`mat`], and AMX is granted ([`super::amx`]'s `granted`).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn mat_amx<const Q4: bool>(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    let nb = a.cols / QK;
    let band_bytes = checked_band_bytes(w, out, a.n, rows, nb * block_bytes(Q4));
    let mut sums = [[[0f32; 16]; 8]; VC];
    let mut tiles = Tiles::new();
    // SAFETY: band b (band_bytes at w + b band_bytes), vectors v0..v0 + nv
    // and the outputs out[c * rows + 16 b + r] are inside the arguments
    // (`checked_band_bytes` and `check_mat`); the partial sums go through
    // `sums` (nv <= VC entries); AMX is granted and the CPU has the
    // features (this function's contract).
    unsafe {
        for b in 0..rows / BAND {
            let band = w.as_ptr().add(b * band_bytes);
            let mut v0 = 0;
            while v0 < a.n {
                let nv = (a.n - v0).min(VC);
                for s in &mut sums[..nv] {
                    *s = [[0.0; 16]; 8];
                }
                let mut c = 0;
                while c < nv {
                    let m = (nv - c).min(tiles::M);
                    // The first pass streams the band from memory.
                    let ahead = if c == 0 { ahead() } else { 0 };
                    let s = sums[c..].as_mut_ptr();
                    tiles.units::<Q4>(band, 0, nb, nb, a, v0 + c, m, s, ahead);
                    c += m;
                }
                store_sums(
                    &sums[..nv],
                    out.as_mut_ptr().add(v0 * rows + b * BAND),
                    rows,
                );
                v0 += nv;
            }
        }
    }
}

/// [`units`] with the partial sums of the `C` vectors loaded from and
/// stored back to `sums` (`C` entries).
///
/// # Safety
/// As [`units`], and `sums` has `C` entries.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[allow(clippy::too_many_arguments)]
unsafe fn segment<const C: usize, const Q4: bool>(
    units_ptr: *const u8,
    k0: usize,
    n: usize,
    nb: usize,
    a: &Acts,
    c0: usize,
    sums: *mut [[f32; 16]; 8],
) {
    // SAFETY: the caller's contract.
    unsafe {
        let mut acc: Sums<C> = core::array::from_fn(|j| {
            let s = &*sums.add(j);
            s.map(|p| _mm512_loadu_ps(p.as_ptr()))
        });
        units::<C, Q4>(units_ptr, k0, n, nb, a, c0, &mut acc, 0);
        for (j, acc) in acc.iter().enumerate() {
            let s = &mut *sums.add(j);
            for (p, &v) in s.iter_mut().zip(acc) {
                _mm512_storeu_ps(p.as_mut_ptr(), v);
            }
        }
    }
}

/// Writes the interleaved unit of one block column of 16 plain rows (row
/// `r`'s block at `blk + r * rb`) to `unit` ([`crate::kernels::interleave`]:
/// the 16 scales, then the values 4 bytes of a row at a time; Q8_0's
/// values plus 128).
///
/// # Safety
/// The 16 blocks are readable, `unit` has a unit's bytes writable; the CPU
/// has AVX-512F.
#[inline(always)]
unsafe fn interleave<const Q4: bool>(blk: *const u8, rb: usize, unit: *mut u8) {
    // SAFETY: every read is inside one of the 16 blocks (its bytes 0..2
    // and 2..18, Q8_0 also 18..34); every write inside the unit.
    unsafe {
        for r in 0..BAND {
            let d = read_unaligned(blk.add(r * rb) as *const u16);
            core::ptr::write_unaligned(unit.add(2 * r) as *mut u16, d);
        }
        let halves = if Q4 { 1 } else { 2 };
        for h in 0..halves {
            let chunks = transpose(blk.add(2 + 16 * h), rb);
            for (c, v) in chunks.into_iter().enumerate() {
                let v = if Q4 {
                    v
                } else {
                    _mm512_xor_si512(v, _mm512_set1_epi8(-128))
                };
                _mm512_storeu_si512(unit.add(32 + 64 * (4 * h + c)) as *mut _, v);
            }
        }
    }
}

/// The 16 bytes at `p + r * rb` of 16 rows `r`, as four vectors: vector
/// `c` holds bytes `4c..4c+4` of row 0, then of row 1, ... row 15.
///
/// # Safety
/// The 16 x 16 bytes are readable; the CPU has AVX-512F.
#[inline(always)]
pub(super) unsafe fn transpose(p: *const u8, rb: usize) -> [__m512i; 4] {
    // SAFETY: the caller's contract.
    unsafe {
        let row = |r: usize| _mm_loadu_si128(p.add(r * rb) as *const __m128i);
        // z[i]: rows 4i..4i+4, one per 128-bit lane (dword 4j + c is row
        // 4i + j's dword c).
        let z: [__m512i; 4] = core::array::from_fn(|i| {
            let v = _mm512_castsi128_si512(row(4 * i));
            let v = _mm512_inserti32x4::<1>(v, row(4 * i + 1));
            let v = _mm512_inserti32x4::<2>(v, row(4 * i + 2));
            _mm512_inserti32x4::<3>(v, row(4 * i + 3))
        });
        // From two such vectors (rows 0..8 of 16), dwords c and c + 1 of
        // the 8 rows: dword p is row p % 8's dword c + p / 8.
        let pick = |c: i32| {
            let s = |p: i32| (p % 8 / 4) * 16 + (p % 4) * 4 + c + p / 8;
            _mm512_setr_epi32(
                s(0),
                s(1),
                s(2),
                s(3),
                s(4),
                s(5),
                s(6),
                s(7),
                s(8),
                s(9),
                s(10),
                s(11),
                s(12),
                s(13),
                s(14),
                s(15),
            )
        };
        let (p01, p23) = (pick(0), pick(2));
        let lo01 = _mm512_permutex2var_epi32(z[0], p01, z[1]);
        let lo23 = _mm512_permutex2var_epi32(z[0], p23, z[1]);
        let hi01 = _mm512_permutex2var_epi32(z[2], p01, z[3]);
        let hi23 = _mm512_permutex2var_epi32(z[2], p23, z[3]);
        // Chunk c: the 8 rows of `lo` then the 8 of `hi` (256-bit halves).
        [
            _mm512_shuffle_i64x2::<0b01_00_01_00>(lo01, hi01),
            _mm512_shuffle_i64x2::<0b11_10_11_10>(lo01, hi01),
            _mm512_shuffle_i64x2::<0b01_00_01_00>(lo23, hi23),
            _mm512_shuffle_i64x2::<0b11_10_11_10>(lo23, hi23),
        ]
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
    use core::mem::MaybeUninit;
    use core::ptr::read_unaligned;

    use super::super::{prefetch_ahead, Prefetch};
    use super::{ahead, SEGMENT_BYTES, VC};
    use crate::kernels::acts::Acts;
    use crate::kernels::interleave::{block_bytes, for_each_band, BAND};
    use crate::kernels::types::QK;

    /// Vectors per tile of a batch.
    const NC: usize = 2;

    /// The eight partial sums of a tile's `C` vectors, 8 rows per lane.
    type Sums<const C: usize> = [[__m256; 8]; C];

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
        let bb = block_bytes(Q4);
        for_each_band(w, a, out, rows, nb * bb, NC, |band, c0, nc, o| {
            for half in 0..2 {
                // The first pass over the band streams it from memory.
                let pf = if half == 0 { ahead() } else { 0 };
                // SAFETY: `for_each_band` hands out bands, vectors and
                // outputs inside the checked arguments (rows 8 * half.. of
                // the band are 8 * half further); the CPU has the features
                // (this function's contract).
                unsafe {
                    let o = o.add(8 * half);
                    if nc == 1 {
                        let mut acc = [[_mm256_setzero_ps(); 8]; 1];
                        units::<1, Q4>(band, half, 0, nb, nb, a, c0, &mut acc, pf);
                        store::<1>(&acc, o, rows);
                    } else {
                        let mut acc = [[_mm256_setzero_ps(); 8]; 2];
                        units::<2, Q4>(band, half, 0, nb, nb, a, c0, &mut acc, pf);
                        store::<2>(&acc, o, rows);
                    }
                }
            }
        });
    }

    /// Rows `8 * half..` of units `k0..k0 + n` of a band (unit `k0` at
    /// `units`; `k0` a multiple of 8) times vectors `c0..c0 + C` of `a`
    /// (rows of `nb` blocks), added to the partial sums `acc`: block `k`
    /// to sum `k % 8`, as the plain types add them; `ahead`: as in the
    /// 512-bit [`super::units`].
    ///
    /// # Safety
    /// As [`mat`], and the units and the vectors' blocks are inside the
    /// checked arguments (or, for units, a buffer holding them).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn units<const C: usize, const Q4: bool>(
        units: *const u8,
        half: usize,
        k0: usize,
        n: usize,
        nb: usize,
        a: &Acts,
        c0: usize,
        acc: &mut Sums<C>,
        ahead: usize,
    ) {
        debug_assert!(k0.is_multiple_of(8));
        let ub = BAND * block_bytes(Q4);
        let mask = _mm256_set1_epi8(0x0f);
        let ones = _mm256_set1_epi16(1);
        let block = |i: usize, u: usize, acc: &mut Sums<C>| {
            // SAFETY: unit i, and block k0 + i of each vector (32 values,
            // a scale and a sum), are inside the checked arguments; the
            // CPU has the features (the caller's contract).
            unsafe {
                let unit = units.add(i * ub);
                prefetch_ahead(unit, ub, ahead, Prefetch::L2);
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
                    let blk = (c0 + j) * nb + k0 + i;
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
                    acc[u] = _mm256_add_ps(acc[u], _mm256_mul_ps(s, _mm256_cvtepi32_ps(dot)));
                }
            }
        };
        let mut i = 0;
        while i + 8 <= n {
            for u in 0..8 {
                block(i + u, u, acc);
            }
            i += 8;
        }
        for u in 0..n - i {
            block(i + u, u, acc);
        }
    }

    /// The partial sums of `C` vectors reduced (`reduce8`, lane by lane)
    /// and stored: 8 rows of vector `j` at `out + j * rows`.
    ///
    /// # Safety
    /// The outputs are inside the checked arguments; AVX.
    #[inline(always)]
    unsafe fn store<const C: usize>(acc: &Sums<C>, out: *mut f32, rows: usize) {
        for (j, acc) in acc.iter().enumerate() {
            // SAFETY: the caller's contract.
            unsafe {
                let s = _mm256_add_ps(
                    _mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[1], acc[5])),
                    _mm256_add_ps(_mm256_add_ps(acc[2], acc[6]), _mm256_add_ps(acc[3], acc[7])),
                );
                _mm256_storeu_ps(out.add(j * rows), s);
            }
        }
    }

    /// Plain Q4_0 or Q8_0 rows times a batch through the interleaved
    /// tiles, as [`super::mat_plain`] (the units interleaved by scalar
    /// copies of 4 bytes). The `avx2` set uses it for Q4_0 only. `None` (nothing done) unless `rows` is a
    /// multiple of 16.
    ///
    /// # Safety
    /// As [`mat`], but the weights plain and `rows` any number.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(in crate::kernels) unsafe fn mat_plain<const Q4: bool>(
        w: &[u8],
        a: &Acts,
        out: &mut [f32],
        rows: usize,
    ) -> Option<()> {
        if !rows.is_multiple_of(BAND) {
            return None;
        }
        let bb = block_bytes(Q4);
        let ub = BAND * bb;
        let seg = SEGMENT_BYTES / ub / 8 * 8;
        let nb = a.cols / QK;
        let rb = nb * bb;
        let mut buf = [const { MaybeUninit::<u8>::uninit() }; SEGMENT_BYTES];
        let mut sums = [[[0f32; 16]; 8]; VC];
        // SAFETY: (for the whole body) as in `super::mat_plain`; each half
        // reads and writes its 8 lanes of `sums` (floats 8 * half..).
        unsafe {
            for b in 0..rows / BAND {
                let band = w.as_ptr().add(b * BAND * rb);
                let mut v0 = 0;
                while v0 < a.n {
                    let nv = (a.n - v0).min(VC);
                    for s in &mut sums[..nv] {
                        *s = [[0.0; 16]; 8];
                    }
                    let mut k0 = 0;
                    while k0 < nb {
                        let ns = (nb - k0).min(seg);
                        let units_ptr = buf.as_mut_ptr() as *mut u8;
                        for i in 0..ns {
                            interleave::<Q4>(band.add((k0 + i) * bb), rb, units_ptr.add(i * ub));
                        }
                        let units_ptr = units_ptr as *const u8;
                        for half in 0..2 {
                            let mut c = 0;
                            while c < nv {
                                let nc = (nv - c).min(NC);
                                let sums = sums[c..].as_mut_ptr();
                                let c0 = v0 + c;
                                if nc == 1 {
                                    segment::<1, Q4>(units_ptr, half, k0, ns, nb, a, c0, sums);
                                } else {
                                    segment::<2, Q4>(units_ptr, half, k0, ns, nb, a, c0, sums);
                                }
                                c += nc;
                            }
                        }
                        k0 += ns;
                    }
                    for (j, s) in sums[..nv].iter().enumerate() {
                        for half in 0..2 {
                            let acc = [s.map(|p| _mm256_loadu_ps(p.as_ptr().add(8 * half)))];
                            let o = out.as_mut_ptr().add((v0 + j) * rows + b * BAND + 8 * half);
                            store::<1>(&acc, o, rows);
                        }
                    }
                    v0 += nv;
                }
            }
        }
        Some(())
    }

    /// [`units`] with the partial sums of the `C` vectors (lanes `8 *
    /// half..`) loaded from and stored back to `sums` (`C` entries).
    ///
    /// # Safety
    /// As [`units`], and `sums` has `C` entries.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn segment<const C: usize, const Q4: bool>(
        units_ptr: *const u8,
        half: usize,
        k0: usize,
        n: usize,
        nb: usize,
        a: &Acts,
        c0: usize,
        sums: *mut [[f32; 16]; 8],
    ) {
        // SAFETY: the caller's contract.
        unsafe {
            let mut acc: Sums<C> = core::array::from_fn(|j| {
                let s = &*sums.add(j);
                s.map(|p| _mm256_loadu_ps(p.as_ptr().add(8 * half)))
            });
            units::<C, Q4>(units_ptr, half, k0, n, nb, a, c0, &mut acc, 0);
            for (j, acc) in acc.iter().enumerate() {
                let s = &mut *sums.add(j);
                for (p, &v) in s.iter_mut().zip(acc) {
                    _mm256_storeu_ps(p.as_mut_ptr().add(8 * half), v);
                }
            }
        }
    }

    /// [`super::interleave`] by scalar copies: the scales, then each
    /// row's values 4 bytes at a time (Q8_0's plus 128).
    ///
    /// # Safety
    /// As [`super::interleave`] (no CPU feature needed).
    #[inline(always)]
    unsafe fn interleave<const Q4: bool>(blk: *const u8, rb: usize, unit: *mut u8) {
        let chunks = if Q4 { 4 } else { 8 };
        let flip = if Q4 { 0 } else { 0x8080_8080u32 };
        // SAFETY: every read is inside one of the 16 blocks, every write
        // inside the unit.
        unsafe {
            for r in 0..BAND {
                let b = blk.add(r * rb);
                let d = read_unaligned(b as *const u16);
                core::ptr::write_unaligned(unit.add(2 * r) as *mut u16, d);
                for c in 0..chunks {
                    let v = read_unaligned(b.add(2 + 4 * c) as *const u32) ^ flip;
                    core::ptr::write_unaligned(unit.add(32 + 64 * c + 4 * r) as *mut u32, v);
                }
            }
        }
    }
}
