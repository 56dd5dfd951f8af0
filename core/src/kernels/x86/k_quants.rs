//! The K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) on x86-64: one driver,
//! generic over a [`KQuant`] (a type on a kernel set), and each set's
//! unpacking of the five types ([`avx2`], [`avx512`]).
//!
//! # One super-block
//!
//! Every type is brought to the same shape: its 256 values as *unsigned*
//! bytes `u` (the stored bits, in value order, with the type's offset not
//! yet applied: Q3_K `0..8`, Q6_K `0..64`) and, per vector of values, the
//! sub-block scales as `i16` words. Then, for any type,
//!
//! - `vpmaddubsw` multiplies `u` (unsigned) by the activations (signed,
//!   `-127..=127`) and adds neighbours into `i16`: at most
//!   `2 * 63 * 127 = 16002` in magnitude (Q6_K, the widest), so it never
//!   saturates;
//! - `vpmaddwd` (AVX2, then an add) or `vpdpwssd` (AVX-512 VNNI) multiplies
//!   those by the scales and adds neighbours into `i32`: the sub-block scale
//!   is applied exactly, in integers;
//! - the type's offset and its minimums are per sub-block constants times
//!   the sum of the activations over the sub-block, which Q8_K keeps per 16
//!   values (`bsums`): one `vpmaddwd` of 16 coefficients by 16 sums.
//!   Q6_K's values are `u - 32`, so `isum = sum_j sc_j dot(u, a)_j - sum_j
//!   32 sc_j bsum_j` (the coefficients `-32 sc_j`, at most 4096 in
//!   magnitude); Q3_K's are `u - 4` (the sums are prepared times -4, at most
//!   8128); Q2_K, Q4_K and Q5_K have no offset and `msum = sum_j m_j
//!   bsum_j` (for Q4_K and Q5_K, the sums of each 32, at most 4064, are
//!   prepared with the activations).
//!
//! Every step is exact integer arithmetic well inside `i32` (the largest,
//! Q6_K's `sum_j sc_j dot(u, a)_j`, is below `256 * 63 * 127 * 128 <
//! 2^29`; a `vpmaddwd` of the sums at most `2 * 32 * 8128`), so `isum` and
//! `msum` are the reference's integers, whatever the order of the additions.
//! The floating-point part then is the reference's, operation for
//! operation: `acc = acc + (d * d_a) * isum`, then `acc = acc - (dmin *
//! d_a) * msum`, one running sum per (row, vector), super-blocks in order,
//! no fused multiply-add.
//!
//! # Matrix-vector and batched products
//!
//! The activations are first prepared once per call ([`KQuant::prep`]):
//! put in the order in which a set unpacks a type's values (the AVX-512
//! kernels read Q2_K..Q5_K's bits with whole 64-byte loads, which leave the
//! values of two distant sub-blocks in one vector), with the sums the type
//! needs.
//!
//! One vector ([`matvec`]): one row at a time (one sequential stream of
//! weights, see [`super`]), prefetched 8 KB ahead, eight super-blocks
//! reduced together to their sixteen integers ([`group`], AVX-512) or two
//! (AVX2, whose 16 registers would spill). A batch ([`matmul`]): each super-block of a row is unpacked
//! once and multiplied by up to eight vectors; their sums are reduced
//! together, vector `c` in lane `c` of one float vector, where the running
//! sums of the eight (row, vector) pairs advance side by side. Rows longer
//! than the prepared activations go by segments, each running sum kept in
//! `out` between them (stored and reloaded exactly).
//!
//! The reductions use unpacks and adds, not `vphaddd`, which costs two
//! shuffles more on AMD's cores; no closure touches a vector (a closure is
//! compiled without the caller's target features and may stay a call).
//!
//! # Safety
//! Every `unsafe fn` here requires the CPU features of the set its
//! [`KQuant`] belongs to, and arguments that passed `check_mat`.

// Vector lanes, chunks and super-blocks are indexed: the index is the
// position.
#![allow(clippy::needless_range_loop)]

use core::arch::x86_64::*;
use core::mem::MaybeUninit;
use core::ptr::read_unaligned;

use super::{prefetch, prefetch_ahead};
use crate::kernels::acts::Acts;
use crate::kernels::types::QK_K;

pub(super) mod avx2;
pub(super) mod avx512;

/// A K-quant type on one kernel set: how a super-block is unpacked and
/// multiplied by one vector's prepared Q8_K super-block.
///
/// # Safety
/// The functions need the CPU features of the set; pointers must be valid
/// for the super-block (`BYTES` bytes), or 256 activations and 16 sums.
pub(super) trait KQuant {
    /// Bytes per super-block.
    const BYTES: usize;
    /// Whether the type has minimums (`dmin` and a second term).
    const MINS: bool;
    /// Offset of the f16 `d` in a super-block (followed by `dmin` when
    /// [`KQuant::MINS`]).
    const D_AT: usize;
    /// Whether [`matvec`] reduces eight super-blocks at once (fewer
    /// shuffles, but the eight sets of sums must stay in registers: with
    /// AVX-512's 32, not with AVX2's 16).
    const GROUP: bool;
    /// One vector's super-block, prepared.
    type A: Copy;
    /// A super-block's weights, unpacked (values and scale vectors).
    type W: Copy;
    /// Prepares the super-block of activations `q` (256) with sums `bsums`
    /// (16) for [`KQuant::dot`].
    unsafe fn prep(q: *const i8, bsums: *const i16) -> Self::A;
    /// Unpacks the super-block at `b`.
    unsafe fn unpack(b: *const u8) -> Self::W;
    /// `(isum, msum)`, each as eight `i32` lanes that add up to it (see
    /// the module documentation).
    unsafe fn dot(w: &Self::W, a: &Self::A) -> (__m256i, __m256i);
}

/// The f16 bits of `d` (and `dmin` above them) of the super-block at `b`.
#[inline(always)]
unsafe fn scale_bits<K: KQuant>(b: *const u8) -> u32 {
    // SAFETY: `d` (and `dmin`) lie inside the super-block.
    unsafe {
        if K::MINS {
            read_unaligned(b.add(K::D_AT) as *const u32)
        } else {
            u32::from(read_unaligned(b.add(K::D_AT) as *const u16))
        }
    }
}

/// `[d, dmin, 0, 0]` of the super-block at `b` (`dmin` 0 without
/// minimums).
#[inline(always)]
unsafe fn scales<K: KQuant>(b: *const u8) -> __m128 {
    // SAFETY: the caller's promise; F16C.
    unsafe { _mm_cvtph_ps(_mm_cvtsi32_si128(scale_bits::<K>(b) as i32)) }
}

/// `[d, dmin]` of the super-blocks at `b0` and `b1`, in this order.
#[inline(always)]
unsafe fn scales2<K: KQuant>(b0: *const u8, b1: *const u8) -> __m128 {
    // SAFETY: the caller's promise; F16C.
    unsafe {
        let (s0, s1) = (scale_bits::<K>(b0), scale_bits::<K>(b1));
        _mm_cvtph_ps(_mm_set_epi32(0, 0, s1 as i32, s0 as i32))
    }
}

/// Lanes `j` and `j + 2` of each 128-bit half of `i` and of `m` added:
/// `[i, m, i', m']` per half, `i + i'` (and `m + m'`) the half's sum.
#[inline(always)]
unsafe fn pairs(i: __m256i, m: __m256i) -> __m256i {
    // SAFETY: AVX2 (the caller's promise).
    unsafe { _mm256_add_epi32(_mm256_unpacklo_epi32(i, m), _mm256_unpackhi_epi32(i, m)) }
}

/// Two [`pairs`] results `[a, b, a', b' | ..]`, `[c, d, c', d' | ..]` to
/// `[a + a', b + b', c + c', d + d' | ..]`.
#[inline(always)]
unsafe fn quads(x: __m256i, y: __m256i) -> __m256i {
    // SAFETY: AVX2 (the caller's promise).
    unsafe { _mm256_add_epi32(_mm256_unpacklo_epi64(x, y), _mm256_unpackhi_epi64(x, y)) }
}

/// `[isum, msum, isum', msum']` with `isum + isum'` and `msum + msum'` the
/// sums of the lanes of `i` and `m`.
#[inline(always)]
unsafe fn fold(i: __m256i, m: __m256i) -> __m128i {
    // SAFETY: AVX2 (the caller's promise).
    unsafe {
        let h = pairs(i, m);
        _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h))
    }
}

/// `[isum, msum, isum2, msum2]` from two [`fold`]s.
#[inline(always)]
unsafe fn join(x: __m128i, y: __m128i) -> __m128i {
    // SAFETY: SSE2.
    unsafe { _mm_add_epi32(_mm_unpacklo_epi64(x, y), _mm_unpackhi_epi64(x, y)) }
}

/// One super-block at `b` times prepared activations: [`fold`]ed
/// `(isum, msum)`.
#[inline(always)]
unsafe fn sb<K: KQuant>(b: *const u8, a: &K::A) -> __m128i {
    // SAFETY: the caller's promise.
    unsafe {
        let (i, m) = K::dot(&K::unpack(b), a);
        fold(i, m)
    }
}

/// Adds one super-block's terms to a running sum: `p = [(d d_a) isum,
/// (dmin d_a) msum, ..]`.
#[inline(always)]
unsafe fn step<K: KQuant>(acc: f32, p: __m128) -> f32 {
    // SAFETY: SSE3.
    unsafe {
        let acc = acc + _mm_cvtss_f32(p);
        if K::MINS {
            acc - _mm_cvtss_f32(_mm_movehdup_ps(p))
        } else {
            acc
        }
    }
}

/// Bytes ahead that [`matvec`] prefetches into L1 under
/// [`Prefetch::L1`](super::Prefetch) (AMD): none. On Intel
/// [`AHEAD`](super::AHEAD) bytes into L2 ([`Prefetch`](super::Prefetch):
/// Q4_K_M decode 21.7 -> 22.6 tok/s, Q6_K 17.1 -> 17.8). 8192 bytes into
/// L1 had measured a few percent more of the memory bandwidth on an
/// earlier AMD machine; on the AMD EPYC Zen 4 development machine
/// (2026-12-06, 1 thread, the 22 layers' products of a TinyLlama shape
/// alone, alternating runs) it cost: Q6_K 17.8-20.3 GB/s with it,
/// 21.1-24.1 without (4096 bytes 21.0-22.8, `prefetcht1` 1024-4096 bytes
/// 18.6-23.5), Q5_K 17.3-17.8 against 18.6-19.1.
const PF: usize = 0;

/// Super-blocks of one vector prepared at a time by [`matvec`] (32 * 256 =
/// 8192 columns; at most 32 * 320 bytes on the stack).
const SEG: usize = 32;

/// Adds eight super-blocks of a row (at `g`) times prepared activations
/// (`a`, scales `da`) to the running sum `acc`, prefetching the bytes
/// `ahead` further on two super-blocks at a time as it goes (one burst for
/// the eight was slower: Q6_K decode 15.0-15.2 -> 15.8-16.0 tok/s, mapped
/// Q4_K_M 17.9-18.4 -> 19.0-19.7, at 1 thread): their integers reduced
/// together ([`transpose`]), scaled in one vector, then added one after the
/// other in super-block order, as the reference does.
#[inline(always)]
unsafe fn group<K: KQuant>(
    mut acc: f32,
    g: *const u8,
    a: *const K::A,
    da: *const f32,
    ahead: usize,
    policy: super::Prefetch,
) -> f32 {
    // SAFETY: the caller vouches for the eight super-blocks, activations and
    // scales.
    unsafe {
        // Reduced two super-blocks at a time, to keep few registers live.
        let mut h = [_mm256_setzero_si256(); 4];
        for k in 0..4 {
            // The prefetches spread over the group, not in one burst.
            prefetch_ahead(
                g.wrapping_add(2 * k * K::BYTES),
                2 * K::BYTES,
                ahead,
                policy,
            );
            let (i0, m0) = K::dot(&K::unpack(g.add(2 * k * K::BYTES)), &*a.add(2 * k));
            let (i1, m1) = K::dot(
                &K::unpack(g.add((2 * k + 1) * K::BYTES)),
                &*a.add(2 * k + 1),
            );
            h[k] = quads(pairs(i0, m0), pairs(i1, m1));
        }
        // Lane l holds super-block ORDER[l] from here on.
        let (i, m) = finish(&h);
        let (mut dh, mut mh) = ([0u16; LANES], [0u16; LANES]);
        for l in 0..LANES {
            let bits = scale_bits::<K>(g.add(ORDER[l] * K::BYTES));
            dh[l] = bits as u16;
            mh[l] = (bits >> 16) as u16;
        }
        let order = _mm256_loadu_si256(ORDER_I32.as_ptr() as *const __m256i);
        let da = _mm256_permutevar8x32_ps(_mm256_loadu_ps(da), order);
        let d = _mm256_cvtph_ps(_mm_loadu_si128(dh.as_ptr() as *const __m128i));
        let mut p = [0f32; LANES];
        _mm256_storeu_ps(p.as_mut_ptr(), _mm256_mul_ps(_mm256_mul_ps(d, da), i));
        let mut q = [0f32; LANES];
        if K::MINS {
            let dm = _mm256_cvtph_ps(_mm_loadu_si128(mh.as_ptr() as *const __m128i));
            _mm256_storeu_ps(q.as_mut_ptr(), _mm256_mul_ps(_mm256_mul_ps(dm, da), m));
        }
        for k in 0..LANES {
            // Super-block k is in lane ORDER[k] (ORDER is its own inverse).
            acc += p[ORDER[k]];
            if K::MINS {
                acc -= q[ORDER[k]];
            }
        }
        acc
    }
}

/// Weights of type `K` times the batch `a` (the `MatFn` contract,
/// arguments checked).
#[inline(always)]
pub(super) unsafe fn mat<K: KQuant>(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    if a.cols < QK_K {
        // Rows of no super-blocks: empty sums.
        out.fill(0.0);
        return;
    }
    // SAFETY: the caller's promise.
    unsafe {
        if a.n == 1 {
            matvec::<K>(w, a, out, rows)
        } else {
            matmul::<K>(w, a, out, rows)
        }
    }
}

/// Weights of type `K` times one vector (`a.n == 1`, at least one
/// super-block per row): one row after the other, super-blocks in order,
/// eight ([`group`], if `K::GROUP`) or two at a time (their integers
/// reduced and scaled together).
#[inline(always)]
unsafe fn matvec<K: KQuant>(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    let nsb = a.cols / QK_K;
    let rb = nsb * K::BYTES;
    let (q, bs, da) = (a.k.q.as_ptr(), a.k.bsums.as_ptr(), a.k.d.as_ptr());
    let mut buf = [const { MaybeUninit::<K::A>::uninit() }; SEG];
    let policy = prefetch();
    let ahead = policy.ahead(PF);
    let mut s0 = 0;
    // SAFETY: (for the whole body) row r and super-block s are inside the checked
    // weights, super-block s of the vector inside its checked Q8_K values,
    // sums and scales; buf[..ns] is written before it is read.
    unsafe {
        while s0 < nsb {
            let ns = (nsb - s0).min(SEG);
            for (s, b) in buf.iter_mut().enumerate().take(ns) {
                b.write(K::prep(q.add((s0 + s) * QK_K), bs.add((s0 + s) * 16)));
            }
            let ap = buf.as_ptr() as *const K::A;
            let dp = da.add(s0);
            for (r, o) in out.iter_mut().enumerate().take(rows) {
                let row = w.as_ptr().add(r * rb + s0 * K::BYTES);
                let mut acc = if s0 == 0 { 0f32 } else { *o };
                let mut s = 0;
                while K::GROUP && s + LANES <= ns {
                    let g = row.add(s * K::BYTES);
                    acc = group::<K>(acc, g, ap.add(s), dp.add(s), ahead, policy);
                    s += LANES;
                }
                while s + 2 <= ns {
                    let (b0, b1) = (row.add(s * K::BYTES), row.add((s + 1) * K::BYTES));
                    prefetch_ahead(b0, 2 * K::BYTES, ahead, policy);
                    // [isum, msum] of both super-blocks.
                    let x0 = sb::<K>(b0, &*ap.add(s));
                    let x1 = sb::<K>(b1, &*ap.add(s + 1));
                    let im = _mm_cvtepi32_ps(join(x0, x1));
                    let d = _mm_castpd_ps(_mm_load_sd(dp.add(s) as *const f64));
                    let dd = _mm_mul_ps(scales2::<K>(b0, b1), _mm_unpacklo_ps(d, d));
                    let p = _mm_mul_ps(dd, im);
                    acc = step::<K>(acc, p);
                    acc = step::<K>(acc, _mm_movehl_ps(p, p));
                    s += 2;
                }
                if s < ns {
                    let b = row.add(s * K::BYTES);
                    let x = sb::<K>(b, &*ap.add(s));
                    let im = _mm_cvtepi32_ps(join(x, x));
                    let dd = _mm_mul_ps(scales::<K>(b), _mm_set1_ps(*dp.add(s)));
                    acc = step::<K>(acc, _mm_mul_ps(dd, im));
                }
                *o = acc;
            }
            s0 += ns;
        }
    }
}

/// Vectors per tile of a batch: one per lane of a float vector.
const LANES: usize = 8;

/// The vector (or super-block) in each lane after [`transpose`] (its own
/// inverse).
const ORDER: [usize; LANES] = [0, 1, 4, 5, 2, 3, 6, 7];

/// [`ORDER`] as `vpermps` indices.
static ORDER_I32: [i32; LANES] = [0, 1, 4, 5, 2, 3, 6, 7];

/// Super-blocks per segment of a batched product: the activations of a
/// segment are prepared once per tile of vectors (8 * 8 * 320 bytes on
/// the stack at most).
const MSEG: usize = 8;

/// The eight `(isum, msum)` lane sets of vectors `0..8` to
/// `(isum, msum)` with vector `ORDER[l]` in lane `l`.
#[inline(always)]
unsafe fn transpose(im: &[(__m256i, __m256i); LANES]) -> (__m256, __m256) {
    // SAFETY: AVX2 (the caller's promise).
    unsafe {
        // g[k]: vectors 2k and 2k + 1, [I, M, I', M'] per half.
        let mut g = [_mm256_setzero_si256(); 4];
        for k in 0..4 {
            g[k] = quads(
                pairs(im[2 * k].0, im[2 * k].1),
                pairs(im[2 * k + 1].0, im[2 * k + 1].1),
            );
        }
        finish(&g)
    }
}

/// The last steps of [`transpose`], from the sums of vectors `2k`, `2k + 1`
/// as `[I, M, I', M']` per half in `g[k]`.
#[inline(always)]
unsafe fn finish(g: &[__m256i; 4]) -> (__m256, __m256) {
    // SAFETY: AVX2 (the caller's promise).
    unsafe {
        // s[k]: the two halves added: [I0 M0 I1 M1 | I2 M2 I3 M3] for
        // vectors 4k..4k + 4.
        let mut s = [_mm256_setzero_ps(); 2];
        for k in 0..2 {
            let (x, y) = (g[2 * k], g[2 * k + 1]);
            s[k] = _mm256_castsi256_ps(_mm256_add_epi32(
                _mm256_permute2x128_si256::<0x20>(x, y),
                _mm256_permute2x128_si256::<0x31>(x, y),
            ));
        }
        let i = _mm256_shuffle_ps::<0b10_00_10_00>(s[0], s[1]);
        let m = _mm256_shuffle_ps::<0b11_01_11_01>(s[0], s[1]);
        (
            _mm256_cvtepi32_ps(_mm256_castps_si256(i)),
            _mm256_cvtepi32_ps(_mm256_castps_si256(m)),
        )
    }
}

/// Weights of type `K` times a batch (at least one super-block per row):
/// tiles of every row times up to [`LANES`] vectors; within a tile, each
/// super-block of a row is unpacked once for all its vectors.
#[inline(always)]
unsafe fn matmul<K: KQuant>(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    let nsb = a.cols / QK_K;
    let rb = nsb * K::BYTES;
    let (q, bs, d) = (a.k.q.as_ptr(), a.k.bsums.as_ptr(), a.k.d.as_ptr());
    let o = out.as_mut_ptr();
    let mut buf = [[const { MaybeUninit::<K::A>::uninit() }; MSEG]; LANES];
    let mut c0 = 0;
    // SAFETY: (for the whole body) vectors c0..c0 + nc are in the checked batch,
    // rows 0..rows and super-blocks 0..nsb in the checked weights, and
    // out[(c0 + c) * rows + r] in the checked output; buf[c][..ns] is
    // written for c < nc before it is read.
    unsafe {
        while c0 < a.n {
            let nc = (a.n - c0).min(LANES);
            let mut s0 = 0;
            while s0 < nsb {
                let ns = (nsb - s0).min(MSEG);
                // The activations of the segment, and their scales with
                // vector ORDER[l] in lane l (zero for lanes past the batch).
                for c in 0..nc {
                    let v = (c0 + c) * nsb + s0;
                    for s in 0..ns {
                        buf[c][s].write(K::prep(q.add((v + s) * QK_K), bs.add((v + s) * 16)));
                    }
                }
                let mut das = [_mm256_setzero_ps(); MSEG];
                for (s, da) in das.iter_mut().enumerate().take(ns) {
                    let mut t = [0f32; LANES];
                    for (l, t) in t.iter_mut().enumerate() {
                        if ORDER[l] < nc {
                            *t = *d.add((c0 + ORDER[l]) * nsb + s0 + s);
                        }
                    }
                    *da = _mm256_loadu_ps(t.as_ptr());
                }
                for r in 0..rows {
                    let row = w.as_ptr().add(r * rb);
                    let mut t = [0f32; LANES];
                    if s0 > 0 {
                        for (l, t) in t.iter_mut().enumerate() {
                            if ORDER[l] < nc {
                                *t = *o.add((c0 + ORDER[l]) * rows + r);
                            }
                        }
                    }
                    let mut acc = _mm256_loadu_ps(t.as_ptr());
                    for s in 0..ns {
                        let b = row.add((s0 + s) * K::BYTES);
                        let wv = K::unpack(b);
                        let z = _mm256_setzero_si256();
                        let mut im = [(z, z); LANES];
                        for c in 0..nc {
                            im[c] = K::dot(&wv, buf[c][s].assume_init_ref());
                        }
                        let (i, m) = transpose(&im);
                        let dd = scales::<K>(b);
                        let dv = _mm256_mul_ps(_mm256_broadcastss_ps(dd), das[s]);
                        acc = _mm256_add_ps(acc, _mm256_mul_ps(dv, i));
                        if K::MINS {
                            let dm = _mm256_broadcastss_ps(_mm_movehdup_ps(dd));
                            acc = _mm256_sub_ps(acc, _mm256_mul_ps(_mm256_mul_ps(dm, das[s]), m));
                        }
                    }
                    _mm256_storeu_ps(t.as_mut_ptr(), acc);
                    for (l, &t) in t.iter().enumerate() {
                        if ORDER[l] < nc {
                            *o.add((c0 + ORDER[l]) * rows + r) = t;
                        }
                    }
                }
                s0 += ns;
            }
            c0 += nc;
        }
    }
}

/// The activation sums of Q4_K and Q5_K's 32-value sub-blocks (pairs of
/// the 16 sums at `bsums`, at most 32 * 127 in magnitude) as words 8..16,
/// under words 0..8 of zeros: `vpmaddwd` with the words `[scales |
/// minimums]` leaves only `m_j * sum_j`.
#[inline(always)]
pub(super) unsafe fn sums32(bsums: *const i16) -> __m256i {
    // SAFETY: 16 sums at bsums; AVX2.
    unsafe {
        let b = _mm256_loadu_si256(bsums as *const __m256i);
        let s = _mm256_madd_epi16(b, _mm256_set1_epi16(1));
        let s16 = _mm_packs_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
        _mm256_inserti128_si256::<1>(_mm256_setzero_si256(), s16)
    }
}

/// The 16 sums at `bsums` times -4 (at most 4 * 16 * 127 = 8128 in
/// magnitude): Q3_K's offset, applied with its scales by `vpmaddwd`.
#[inline(always)]
pub(super) unsafe fn minus4(bsums: *const i16) -> __m256i {
    // SAFETY: 16 sums at bsums; AVX2.
    unsafe {
        let b = _mm256_loadu_si256(bsums as *const __m256i);
        _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16::<2>(b))
    }
}

/// Q4_K and Q5_K's packed 6-bit scales and minimums (the 12 bytes at `p`,
/// 16 readable): bytes `0..8` of the result are the scales of sub-blocks
/// `0..8`, bytes `8..16` their minimums (the reference's `scale_min_k4`,
/// all at once).
#[inline(always)]
pub(super) unsafe fn k4_scales(p: *const u8) -> __m128i {
    // SAFETY: 16 readable bytes at p; AVX2.
    unsafe {
        // Dwords u0, u1, u2 of the 12 bytes. Sub-blocks 0..4: the low 6
        // bits of u0 (scales) and u1 (minimums); 4..8: a nibble of u2 (low:
        // scales, high: minimums) and the top 2 bits of u0 (scales) or u1
        // (minimums) as bits 4..6.
        let x = _mm_loadu_si128(p as *const __m128i);
        // [u0, u2, u1, u2 >> 4]
        let a = _mm_srlv_epi32(
            _mm_shuffle_epi32::<0b10_01_10_00>(x),
            _mm_set_epi32(4, 0, 0, 0),
        );
        // [u0, u0, u1, u1] >> 2: each byte's bits 6..8 at 4..6 (the next
        // byte's bits land at 6..8, masked off).
        let b = _mm_srli_epi32::<2>(_mm_shuffle_epi32::<0b01_01_00_00>(x));
        let (m6, m4, m30) = (0x3f3f_3f3f, 0x0f0f_0f0f, 0x3030_3030);
        _mm_or_si128(
            _mm_and_si128(a, _mm_set_epi32(m4, m6, m4, m6)),
            _mm_and_si128(b, _mm_set_epi32(m30, 0, m30, 0)),
        )
    }
}

/// Q3_K's sixteen 6-bit scales, each `0..64` (the 12 bytes at `b + 96` of
/// the super-block at `b`), byte `j` for sub-block `j` (the reference's
/// `q3_k_scales`, all at once).
#[inline(always)]
pub(super) unsafe fn q3_scales(b: *const u8) -> __m128i {
    // SAFETY: the 110 bytes of the super-block at b; AVX2.
    unsafe {
        // The 16 bytes ending where the super-block's scales end, moved
        // down to dwords a0, a1, a2 of the scales.
        let x = _mm_bsrli_si128::<2>(_mm_loadu_si128(b.add(94) as *const __m128i));
        // Low nibbles of a0 and a1 (sub-blocks 0..8), then their high
        // nibbles (8..16).
        let lo = _mm_srlv_epi32(
            _mm_shuffle_epi32::<0b01_00_01_00>(x),
            _mm_set_epi32(4, 4, 0, 0),
        );
        // Bits 2i..2i + 2 of a2's bytes to bits 4..6 for the group of four
        // i: up by 4 and 2, then in place and down by 2 (bits crossing
        // from a neighbouring byte fall outside 4..6, masked off).
        let h = _mm_shuffle_epi32::<0b10_10_10_10>(x);
        let h = _mm_srlv_epi32(
            _mm_sllv_epi32(h, _mm_set_epi32(0, 0, 2, 4)),
            _mm_set_epi32(2, 0, 0, 0),
        );
        _mm_or_si128(
            _mm_and_si128(lo, _mm_set1_epi8(0x0f)),
            _mm_and_si128(h, _mm_set1_epi8(0x30)),
        )
    }
}

/// The Q8_K activation quantizer, bit-identical to the reference's
/// [`crate::kernels::types::k_quants::quantize_q8k`] (the same float
/// operations on each value; the search for the first value of largest
/// magnitude gives the same value); lengths checked by the caller.
#[inline(always)]
pub(super) unsafe fn quantize_q8k(x: &[f32], d: &mut [f32], bsums: &mut [i16], q: &mut [i8]) {
    // SAFETY: (for the whole body) super-block s is inside x and q, its sums
    // inside bsums and its scale inside d (checked by the caller); AVX2.
    unsafe {
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for s in 0..x.len() / QK_K {
            let p = x.as_ptr().add(s * QK_K);
            // max(|v|, m) returns m when |v| is NaN: NaN is skipped, as the
            // scalar `|v| > amax` skips it.
            let mut m = _mm256_setzero_ps();
            for k in 0..32 {
                m = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(p.add(8 * k)), abs), m);
            }
            let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
            let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            let amax = _mm_cvtss_f32(_mm_max_ss(m2, _mm_shuffle_ps::<1>(m2, m2)));
            let sums = bsums.as_mut_ptr().add(16 * s);
            let qs = q.as_mut_ptr().add(s * QK_K);
            if amax == 0.0 {
                *d.as_mut_ptr().add(s) = 0.0;
                core::ptr::write_bytes(qs, 0, QK_K);
                core::ptr::write_bytes(sums, 0, 16);
                continue;
            }
            // The reference keeps the first value whose magnitude exceeds
            // all before it: the first of magnitude amax.
            let target = _mm256_set1_ps(amax);
            let mut first = 0;
            for k in 0..32 {
                let eq = _mm256_cmp_ps::<_CMP_EQ_OQ>(
                    _mm256_and_ps(_mm256_loadu_ps(p.add(8 * k)), abs),
                    target,
                );
                let bits = _mm256_movemask_ps(eq);
                if bits != 0 {
                    first = 8 * k + bits.trailing_zeros() as usize;
                    break;
                }
            }
            let iscale = -127.0 / *p.add(first);
            let iv = _mm256_set1_ps(iscale);
            let magic = _mm256_set1_ps(12_582_912.0);
            let (lo, hi) = (_mm256_set1_epi32(-127), _mm256_set1_epi32(127));
            // 128 values at a time: 16 vectors of i32, then 8 sums of 16.
            for h in 0..2 {
                let mut r = [_mm256_setzero_si256(); 16];
                for (k, r) in r.iter_mut().enumerate() {
                    // nearest_int: add 1.5 * 2^23, keep the mantissa.
                    let v = _mm256_add_ps(
                        _mm256_mul_ps(iv, _mm256_loadu_ps(p.add(8 * (16 * h + k)))),
                        magic,
                    );
                    let n = _mm256_sub_epi32(
                        _mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x007f_ffff)),
                        _mm256_set1_epi32(0x0040_0000),
                    );
                    *r = _mm256_min_epi32(_mm256_max_epi32(n, lo), hi);
                }
                for j in 0..4 {
                    let pk = _mm256_packs_epi16(
                        _mm256_packs_epi32(r[4 * j], r[4 * j + 1]),
                        _mm256_packs_epi32(r[4 * j + 2], r[4 * j + 3]),
                    );
                    let pk = _mm256_permutevar8x32_epi32(pk, order);
                    _mm256_storeu_si256(qs.add(128 * h + 32 * j) as *mut __m256i, pk);
                }
                // t[g]: the 16 values of group g in 8 lanes; then the lanes
                // added pairwise, twice, and the two halves.
                let mut t = [_mm256_setzero_si256(); 8];
                for g in 0..8 {
                    t[g] = _mm256_add_epi32(r[2 * g], r[2 * g + 1]);
                }
                let mut u = [_mm256_setzero_si256(); 4];
                for k in 0..4 {
                    u[k] = pairs(t[2 * k], t[2 * k + 1]);
                }
                let k0 = quads(u[0], u[1]);
                let k1 = quads(u[2], u[3]);
                let g = _mm256_add_epi32(
                    _mm256_permute2x128_si256::<0x20>(k0, k1),
                    _mm256_permute2x128_si256::<0x31>(k0, k1),
                );
                // At most 16 * 127 in magnitude: the packing is exact.
                let g16 =
                    _mm_packs_epi32(_mm256_castsi256_si128(g), _mm256_extracti128_si256::<1>(g));
                _mm_storeu_si128(sums.add(8 * h) as *mut __m128i, g16);
            }
            *d.as_mut_ptr().add(s) = 1.0 / iscale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::types::k_quants::{q3_k_scales, scale_min_k4};

    #[test]
    fn scale_decoders_match_the_reference() {
        if !super::super::avx2_supported() {
            return;
        }
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..2000 {
            // Scales at 4 (Q4_K) and 96 (Q3_K) of a 110-byte super-block.
            let mut blk = [0u8; 110];
            for v in &mut blk {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *v = x as u8;
            }
            let mut got = [0u8; 16];
            let s: [u8; 12] = blk[4..16].try_into().unwrap();
            // SAFETY: 16 readable bytes at 4; the CPU has AVX2.
            unsafe { _mm_storeu_si128(got.as_mut_ptr() as *mut _, k4_scales(blk.as_ptr().add(4))) };
            for j in 0..8 {
                assert_eq!(scale_min_k4(j, &s), (got[j], got[8 + j]));
            }
            let s: [u8; 12] = blk[96..108].try_into().unwrap();
            // SAFETY: a whole super-block; the CPU has AVX2.
            unsafe { _mm_storeu_si128(got.as_mut_ptr() as *mut _, q3_scales(blk.as_ptr())) };
            assert_eq!(got, q3_k_scales(&s));
        }
    }
}
