//! Matrix products of the 4-bit 32-wide formats (Q4_0, Q4_1, Q5_0, Q5_1,
//! IQ4_NL) with 512-bit vectors, for the `avx512` set: on AMD Zen 4 and 5
//! the shared 256-bit kernel is bound by its instruction count, these by
//! memory ([`matvec`]) or by fewer instructions ([`matmul`]: a group of
//! blocks unpacked once for several vectors).
//!
//! A group of 8 blocks is read with three 64-byte loads (bytes `0..128` and
//! the group's last 64), and `vpermt2w` gathers each block's 16 bytes of
//! nibbles into one 128-bit lane: blocks 0..4 from the first two loads,
//! 4..8 from the last two (blocks of 16 to 32 bytes: blocks 0..4 end by
//! byte 128, blocks 4..8 start at byte 64 or later). The low nibbles (elements 0..16) and
//! the high ones (16..32) then meet the activations, prepared once per call
//! in the same layout, in four `vpdpbusd`; the fifth bits of Q5_0 and Q5_1
//! are gathered the same way and added as 16 under a byte mask; IQ4_NL's
//! nibbles look up its table (plus 128, unsigned) with `vpshufb`. The
//! scales are gathered by `vpermt2w` too. The eight exact block sums, the
//! scales, and the float arithmetic are those of the shared kernel
//! ([`common::mat_quant`]), lane for lane: the eight partial sums of the
//! reference, in the lane order [`ORDER`].
//!
//! The functions take the set's [`Isa`] as a type parameter `I` (always
//! `avx512::Avx512`), so that this file does not import the set that calls it.
//!
//! # Safety
//! Every `unsafe fn` here requires the `avx512` set's CPU features and
//! arguments that passed `check_mat`.

use core::arch::x86_64::*;
use core::mem::MaybeUninit;
use core::ptr::copy_nonoverlapping;

use super::common::{self, Format};
use super::{prefetch, prefetch_ahead, prefetch_line, Isa, Prefetch, PAGE_AHEAD, PLAIN_AHEAD};
use crate::kernels::acts::Acts;
use crate::kernels::types::legacy::IQ4NL_VALUES;
use crate::kernels::types::QK;

/// The block whose sums each lane of a group holds.
const ORDER: [usize; 8] = [0, 4, 1, 5, 2, 6, 3, 7];
/// Its inverse (the lane of each block).
const INV: [i32; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

/// Bytes ahead of the current group that [`matvec`] prefetches into L1
/// (into L2 on Intel: [`PLAIN_AHEAD`], see [`Prefetch`]; mapped Q4_0
/// decode 15.7 -> 17.9 tok/s there at [`AHEAD`](super::AHEAD); and
/// [`NEAR`](super::NEAR) bytes ahead into L1, [`prefetch_ahead`]).
const PREFETCH: usize = 4096;

/// Groups prepared per call (on the stack, 320 bytes each): rows of up to
/// 48 * 256 = 12288 values; longer ones go through the shared kernel.
const GROUPS: usize = common::PREP_GROUPS / 2;

/// The `vpermt2w` index of the word at byte `x` (even) of a group of
/// blocks of `bb` bytes: in the window of bytes `0..128` (loads at 0 and
/// 64) for blocks 0..4; for blocks 4..8, in the loads at 64 and at
/// `8 bb - 64` (the group's last 64 bytes).
const fn word(bb: usize, x: usize, high: bool) -> u16 {
    if !high {
        (x / 2) as u16
    } else if x < 128 {
        ((x - 64) / 2) as u16
    } else {
        (32 + (x - (8 * bb - 64)) / 2) as u16
    }
}

/// `vpermt2w` indices: word `i % 8` of the 16 bytes at `off` of block
/// `4 high + i / 8`.
const fn gather16(bb: usize, off: usize, high: bool) -> [u16; 32] {
    let first = if high { 4 } else { 0 };
    let mut t = [0u16; 32];
    let mut i = 0;
    while i < 32 {
        t[i] = word(bb, bb * (first + i / 8) + off + 2 * (i % 8), high);
        i += 1;
    }
    t
}

/// `vpermt2w` indices: of the `u32` at `off` of blocks `4 high + 0..4`,
/// words 0..4 the low words, 4..8 the high ones.
const fn gather_qh(bb: usize, off: usize, high: bool) -> [u16; 32] {
    let first = if high { 4 } else { 0 };
    let mut t = [0u16; 32];
    let mut i = 0;
    while i < 8 {
        t[i] = word(bb, bb * (first + i % 4) + off + 2 * (i / 4), high);
        i += 1;
    }
    t
}

/// Whether the f16 at `off` of all 8 blocks lies in bytes `0..128`.
const fn scales_in_a(bb: usize, off: usize) -> bool {
    7 * bb + off + 2 <= 128
}

/// `vpermt2w` indices: the f16 at `off` of each block in lane order
/// [`ORDER`], for blocks 4..8 (`high`) or 0..4 (the other lanes are taken
/// by a blend), or of all blocks from bytes `0..128` when they lie there.
const fn gather_scales(bb: usize, off: usize, high: bool) -> [u16; 32] {
    let all = scales_in_a(bb, off);
    let mut t = [0u16; 32];
    let mut j = 0;
    while j < 8 {
        let b = ORDER[j];
        if all {
            t[j] = word(bb, bb * b + off, false);
        } else if (b >= 4) == high {
            t[j] = word(bb, bb * b + off, high);
        }
        j += 1;
    }
    t
}

/// The index tables of a format.
trait Tables {
    const QS_A: [u16; 32];
    const QS_B: [u16; 32];
    const QH_A: [u16; 32];
    const QH_B: [u16; 32];
    const D_A: [u16; 32];
    const D_B: [u16; 32];
    const M_A: [u16; 32];
    const M_B: [u16; 32];
}

impl<F: Format> Tables for F {
    const QS_A: [u16; 32] = gather16(F::BYTES, F::QS, false);
    const QS_B: [u16; 32] = gather16(F::BYTES, F::QS, true);
    const QH_A: [u16; 32] = gather_qh(F::BYTES, F::QH, false);
    const QH_B: [u16; 32] = gather_qh(F::BYTES, F::QH, true);
    const D_A: [u16; 32] = gather_scales(F::BYTES, 0, false);
    const D_B: [u16; 32] = gather_scales(F::BYTES, 0, true);
    const M_A: [u16; 32] = gather_scales(F::BYTES, 2, false);
    const M_B: [u16; 32] = gather_scales(F::BYTES, 2, true);
}

#[inline(always)]
unsafe fn idx(t: &[u16; 32]) -> __m512i {
    // SAFETY: 64 readable bytes; AVX-512F.
    unsafe { _mm512_loadu_si512(t.as_ptr() as *const _) }
}

#[inline(always)]
unsafe fn load(p: *const u8) -> __m512i {
    // SAFETY: the caller vouches for 64 bytes at p; AVX-512F.
    unsafe { _mm512_loadu_si512(p as *const _) }
}

/// One vector's activations for one group: elements 0..16 of blocks 0..4
/// (a block per 128-bit lane), 16..32 of blocks 0..4, the same for blocks
/// 4..8; scales and the corrections of [`common::prep`] in lane order
/// [`ORDER`].
#[derive(Clone, Copy)]
#[repr(C)]
struct Prep {
    a: [__m512i; 4],
    da: __m256,
    corr: __m256i,
}

/// `x` in the low half, `y` in the high half.
#[inline(always)]
unsafe fn cat(x: __m256i, y: __m256i) -> __m512i {
    // SAFETY: AVX-512F.
    unsafe { _mm512_inserti64x4::<1>(_mm512_castsi256_si512(x), y) }
}

/// Prepares group `k` (of `nb` blocks) of vector `b` of `a`.
#[inline(always)]
unsafe fn prep<I: Isa, F: Format>(a: &Acts, b: usize, k: usize, nb: usize) -> Prep {
    // SAFETY: as `common::prep` (the same blocks, the same padding);
    // AVX-512F.
    unsafe {
        let p = common::prep::<I, F>(a, b, k, nb);
        // `prep` holds, for pair j: (elements 0..16 of blocks 2j, 2j+1),
        // (16..32 of them); scales and corrections in order P.
        let pinv = _mm256_loadu_si256(common::PINV.as_ptr() as *const __m256i);
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let nat_d = _mm256_permutevar8x32_ps(p.da, pinv);
        let nat_c = _mm256_permutevar8x32_epi32(p.corr, pinv);
        Prep {
            a: [
                cat(p.a[0].0, p.a[1].0),
                cat(p.a[0].1, p.a[1].1),
                cat(p.a[2].0, p.a[3].0),
                cat(p.a[2].1, p.a[3].1),
            ],
            da: _mm256_permutevar8x32_ps(nat_d, order),
            corr: _mm256_permutevar8x32_epi32(nat_c, order),
        }
    }
}

/// The f16 at `off` (the offset the `ta`/`tb` tables name) of each block
/// in lane order, as f32.
#[inline(always)]
unsafe fn scales(
    a: (__m512i, __m512i),
    b: (__m512i, __m512i),
    ta: &[u16; 32],
    tb: &[u16; 32],
    all_in_a: bool,
) -> __m256 {
    // SAFETY: AVX-512 BW and VL, F16C.
    unsafe {
        let sa = _mm512_castsi512_si128(_mm512_permutex2var_epi16(a.0, idx(ta), a.1));
        if all_in_a {
            return _mm256_cvtph_ps(sa);
        }
        let sb = _mm512_castsi512_si128(_mm512_permutex2var_epi16(b.0, idx(tb), b.1));
        // Lanes 1, 3, 5, 7 hold blocks 4..8.
        _mm256_cvtph_ps(_mm_mask_blend_epi16(0xaa, sa, sb))
    }
}

/// Adds 16 to the bytes of `x` whose bit is set in `bits`.
#[inline(always)]
unsafe fn add16(x: __m512i, bits: u64) -> __m512i {
    // SAFETY: AVX-512 BW.
    unsafe { _mm512_mask_add_epi8(x, bits, x, _mm512_set1_epi8(16)) }
}

/// One group of 8 blocks unpacked: elements 0..16 and 16..32 of blocks
/// 0..4 (a block per 128-bit lane), the same of blocks 4..8, as unsigned
/// bytes for `vpdpbusd`; the scales (and minimums) in lane order [`ORDER`].
#[derive(Clone, Copy)]
struct Group {
    v: [__m512i; 4],
    d: __m256,
    m: __m256,
}

/// Unpacks the group of 8 blocks of `F` at `p` (its `8 * F::BYTES` bytes
/// readable).
#[inline(always)]
unsafe fn unpack<F: Format>(p: *const u8) -> Group {
    // SAFETY: the three loads cover bytes 0..128 and 8 bb - 64..8 bb of
    // the group; AVX-512 BW, VL, VNNI and F16C.
    unsafe {
        let mid = load(p.add(64));
        let wa = (load(p), mid);
        let wbv = (mid, load(p.add(8 * F::BYTES - 64)));
        let xa = _mm512_permutex2var_epi16(wa.0, idx(&F::QS_A), wa.1);
        let xb = _mm512_permutex2var_epi16(wbv.0, idx(&F::QS_B), wbv.1);
        let m = _mm512_set1_epi8(0x0f);
        let mut la = _mm512_and_si512(xa, m);
        let mut ha = _mm512_and_si512(_mm512_srli_epi16::<4>(xa), m);
        let mut lb = _mm512_and_si512(xb, m);
        let mut hb = _mm512_and_si512(_mm512_srli_epi16::<4>(xb), m);
        if F::LOOKUP {
            // The table's values plus 128: unsigned bytes for vpdpbusd,
            // whose excess (128 times the activations' sum) is the
            // correction prepared with them.
            let t = _mm_xor_si128(
                _mm_loadu_si128(IQ4NL_VALUES.as_ptr() as *const __m128i),
                _mm_set1_epi8(-128),
            );
            let t = _mm512_broadcast_i32x4(t);
            la = _mm512_shuffle_epi8(t, la);
            ha = _mm512_shuffle_epi8(t, ha);
            lb = _mm512_shuffle_epi8(t, lb);
            hb = _mm512_shuffle_epi8(t, hb);
        }
        if F::QH != 0 {
            // The fifth bits: words [low halves of blocks 0..4, high
            // halves], as the byte masks of la and ha; then blocks 4..8.
            let ga = _mm512_castsi512_si128(_mm512_permutex2var_epi16(wa.0, idx(&F::QH_A), wa.1));
            let gb = _mm512_castsi512_si128(_mm512_permutex2var_epi16(wbv.0, idx(&F::QH_B), wbv.1));
            la = add16(la, _mm_cvtsi128_si64(ga) as u64);
            ha = add16(ha, _mm_extract_epi64::<1>(ga) as u64);
            lb = add16(lb, _mm_cvtsi128_si64(gb) as u64);
            hb = add16(hb, _mm_extract_epi64::<1>(gb) as u64);
        }
        let d = scales(wa, wbv, &F::D_A, &F::D_B, scales_in_a(F::BYTES, 0));
        let m = if F::MIN {
            scales(wa, wbv, &F::M_A, &F::M_B, scales_in_a(F::BYTES, 2))
        } else {
            _mm256_setzero_ps()
        };
        Group {
            v: [la, ha, lb, hb],
            d,
            m,
        }
    }
}

/// An unpacked group times prepared activations: each block's term of the
/// reference's partial sums, in lane order [`ORDER`].
#[inline(always)]
unsafe fn dot<I: Isa, F: Format>(g: &Group, a: &Prep) -> __m256 {
    // SAFETY: AVX-512 BW, VL and VNNI.
    unsafe {
        let z = _mm512_setzero_si512();
        let va = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(z, g.v[0], a.a[0]), g.v[1], a.a[1]);
        let vb = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(z, g.v[2], a.a[2]), g.v[3], a.a[3]);
        // 128-bit lane k of va: block k, 4 partial sums; of vb: block
        // 4 + k. Interleave, add, and keep one sum of each.
        let mm = _mm512_add_epi32(_mm512_unpacklo_epi32(va, vb), _mm512_unpackhi_epi32(va, vb));
        let t = _mm512_add_epi32(mm, _mm512_shuffle_epi32::<0b01_00_11_10>(mm));
        let pick = _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 0, 0, 0, 0, 0, 0, 0, 0);
        let mut dot = _mm512_castsi512_si256(_mm512_permutexvar_epi32(pick, t));
        if common::shift::<I, F>() != 0 {
            dot = _mm256_sub_epi32(dot, a.corr);
        }
        let mut prod = _mm256_mul_ps(_mm256_mul_ps(g.d, a.da), _mm256_cvtepi32_ps(dot));
        if F::MIN {
            let sum = _mm256_cvtepi32_ps(a.corr);
            prod = _mm256_add_ps(prod, _mm256_mul_ps(_mm256_mul_ps(g.m, a.da), sum));
        }
        prod
    }
}

/// Weights of a 4-bit format `F` times one vector (`a.n == 1`, arguments
/// checked), one row at a time; `None` (nothing done) when the rows are
/// too long for the prepared activations.
#[inline(always)]
pub(super) unsafe fn matvec<I: Isa, F: Format>(
    w: &[u8],
    a: &Acts,
    out: &mut [f32],
    rows: usize,
) -> Option<()> {
    const { assert!(F::QS != 0 && F::BYTES >= 16 && F::BYTES <= 32 && F::BYTES % 2 == 0) };
    let nb = a.cols / QK;
    let groups = nb.div_ceil(8);
    if groups > GROUPS {
        return None;
    }
    let bb = F::BYTES;
    let mut buf = [const { MaybeUninit::<Prep>::uninit() }; GROUPS];
    for (k, b) in buf.iter_mut().take(groups).enumerate() {
        // SAFETY: vector 0 is in the checked batch.
        b.write(unsafe { prep::<I, F>(a, 0, k, nb) });
    }
    // SAFETY: the first `groups` entries were written above.
    let prepared = unsafe { core::slice::from_raw_parts(buf.as_ptr() as *const Prep, groups) };
    let rb = nb * bb;
    let full = nb / 8;
    let policy = prefetch();
    let ahead = match policy {
        Prefetch::L1 => PREFETCH,
        Prefetch::L2 => PLAIN_AHEAD,
    };
    // SAFETY: AVX.
    let inv = unsafe { _mm256_loadu_si256(INV.as_ptr() as *const __m256i) };
    // The last partial group of a row, zero-padded (every row writes the
    // same leading bytes).
    let mut t = [0u8; 8 * 32 + 64];
    for (r, o) in out.iter_mut().enumerate().take(rows) {
        // SAFETY: row r is inside the checked weights; the last partial
        // group is read from a zero-padded copy (zero blocks have scale 0
        // and minimum 0, and meet zero activations: they add +0).
        unsafe {
            let mut acc = _mm256_setzero_ps();
            let row = w.as_ptr().add(r * rb);
            for (k, pa) in prepared.iter().enumerate() {
                let g = if k < full {
                    row.add(8 * bb * k)
                } else {
                    copy_nonoverlapping(row.add(8 * bb * k), t.as_mut_ptr(), (nb - 8 * k) * bb);
                    t.as_ptr()
                };
                prefetch_ahead(g, 8 * bb, ahead, policy);
                if policy == Prefetch::L2 {
                    prefetch_line(g.wrapping_add(PAGE_AHEAD), policy);
                }
                acc = _mm256_add_ps(acc, dot::<I, F>(&unpack::<F>(g), pa));
            }
            *o = common::reduce8(_mm256_permutevar8x32_ps(acc, inv));
        }
    }
    Some(())
}

/// Vectors per tile of [`matmul`]: each group of a row is unpacked once
/// for this many.
const MC: usize = 8;
/// Rows per tile of [`matmul`] (their running sums stay on the stack).
const MR: usize = 16;
/// Groups per segment of [`matmul`] (8 * 256 = 2048 columns): the
/// activations of a segment are prepared once per tile (8 * 8 * 320
/// bytes on the stack).
const MG: usize = 8;

/// Weights of a 4-bit format `F` times a batch (the `MatFn` contract,
/// arguments checked): tiles of [`MR`] rows x [`MC`] vectors, each group of
/// 8 blocks of a row unpacked once for the tile's vectors; the activations
/// prepared once per tile and segment of [`MG`] groups. Lane for lane the
/// arithmetic of [`matvec`], so each vector's results are its matvec's.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // (row, vector, group) indices read best here
pub(super) unsafe fn matmul<I: Isa, F: Format>(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    const { assert!(F::QS != 0 && F::BYTES >= 16 && F::BYTES <= 32 && F::BYTES % 2 == 0) };
    let nb = a.cols / QK;
    let groups = nb.div_ceil(8);
    let bb = F::BYTES;
    let rb = nb * bb;
    let full = nb / 8;
    let mut buf = [[const { MaybeUninit::<Prep>::uninit() }; MG]; MC];
    let mut t = [0u8; 8 * 32 + 64];
    let o = out.as_mut_ptr();
    // SAFETY: (for the whole body) vectors c0..c0 + nc are in the checked batch,
    // rows r0..r0 + nr and their groups in the checked weights (the last
    // partial group of a row is read from the zero-padded copy `t`),
    // out[(c0 + c) * rows + r] in the checked output; buf[c][..ng] is
    // written for c < nc before it is read. AVX (this function's contract).
    unsafe {
        let inv = _mm256_loadu_si256(INV.as_ptr() as *const __m256i);
        let mut c0 = 0;
        while c0 < a.n {
            let nc = (a.n - c0).min(MC);
            let mut r0 = 0;
            while r0 < rows {
                let nr = (rows - r0).min(MR);
                let mut acc = [[_mm256_setzero_ps(); MC]; MR];
                let mut k0 = 0;
                while k0 < groups {
                    let ng = (groups - k0).min(MG);
                    for c in 0..nc {
                        for k in 0..ng {
                            buf[c][k].write(prep::<I, F>(a, c0 + c, k0 + k, nb));
                        }
                    }
                    for r in 0..nr {
                        let row = w.as_ptr().add((r0 + r) * rb);
                        for k in k0..k0 + ng {
                            let g = if k < full {
                                row.add(8 * bb * k)
                            } else {
                                copy_nonoverlapping(
                                    row.add(8 * bb * k),
                                    t.as_mut_ptr(),
                                    (nb - 8 * k) * bb,
                                );
                                t.as_ptr()
                            };
                            let wg = unpack::<F>(g);
                            for c in 0..nc {
                                let d = dot::<I, F>(&wg, buf[c][k - k0].assume_init_ref());
                                acc[r][c] = _mm256_add_ps(acc[r][c], d);
                            }
                        }
                    }
                    k0 += ng;
                }
                for r in 0..nr {
                    for c in 0..nc {
                        let v = _mm256_permutevar8x32_ps(acc[r][c], inv);
                        *o.add((c0 + c) * rows + r0 + r) = common::reduce8(v);
                    }
                }
                r0 += nr;
            }
            c0 += nc;
        }
    }
}
