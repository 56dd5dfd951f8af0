//! Q4_K, Q5_K and Q6_K batches by AMX tiles, band by band (Q4_K and Q5_K
//! also interleaved: [`crate::kernels::interleave`]'s units already hold
//! the bytes of 16 rows in the transposed order the tiles take).
//!
//! Each super-block of a band of 16 rows is prepared once for every vector
//! of the batch ([`KTiles::prepare`]): its values as bytes in AMX's layout
//! (row `g` of sub-block `j`'s weights: values `4g..4g+4` of the sub-block
//! in each of the 16 rows, transposed from the rows' bits by
//! [`x16::transpose`]), its integer scales and minimums and its float
//! scales one lane per row. Then, per 16 vectors, one tile product per
//! sub-block gives the 16 x 16 exact sub-block dot products, and the
//! reference's integers and floats follow lane by lane (row `r` in lane
//! `r`, see [`crate::kernels::types::k_quants`]): `isum = sum_j sc_j
//! dot_j` and `msum = sum_j m_j bsum_j` exact, then `acc = acc + (d * d_a)
//! * isum` and, with minimums, `acc = acc - (dmin * d_a) * msum`, the
//! running sums kept in `out`. The same bits as every other set.
//!
//! A super-block is prepared one super-block ahead of its use, into the
//! other of two buffers: a tile load of bytes just stored waits for them
//! (see [`super::tiles`]).

use core::arch::x86_64::*;

use super::super::x16;
use super::tiles::{Aligned, Tiles, M};
use crate::kernels::acts::Acts;
use crate::kernels::interleave::{k_at, BAND};
use crate::kernels::types::k_quants::scale_min_k4;
use crate::kernels::types::QK_K;

/// One super-block of a band of 16 rows, ready for the tiles.
#[repr(C, align(64))]
pub(super) struct SuperBlock {
    /// Sub-block `j`'s weights at `j * 16 * SUB` (AMX's layout, `SUB / 4`
    /// rows of 64 bytes).
    values: [u8; 16 * QK_K],
    /// Sub-block `j`'s scale of each row.
    sc: [[i32; 16]; 16],
    /// Sub-block `j`'s minimum of each row (types with minimums: 8).
    m: [[i32; 16]; 8],
    /// Each row's super-block scale.
    d: [f32; 16],
    /// Each row's super-block scale of the minimums.
    dmin: [f32; 16],
}

impl SuperBlock {
    const ZERO: SuperBlock = SuperBlock {
        values: [0; 16 * QK_K],
        sc: [[0; 16]; 16],
        m: [[0; 16]; 8],
        d: [0.0; 16],
        dmin: [0.0; 16],
    };

    /// Stores `v`, row `g` (64 bytes: 4 values of each of 16 rows) of
    /// sub-block `j` of `sub` values.
    ///
    /// # Safety
    /// `j * 16 * sub + 64 * (g + 1) <= 16 * 256`; AVX-512F.
    #[inline(always)]
    unsafe fn put(&mut self, sub: usize, j: usize, g: usize, v: __m512i) {
        debug_assert!(j * 16 * sub + 64 * (g + 1) <= self.values.len());
        // SAFETY: inside `values` (the caller's contract), 64-byte aligned
        // (the struct is, and every offset is a multiple of 64).
        unsafe {
            _mm512_store_si512(
                self.values.as_mut_ptr().add(j * 16 * sub + 64 * g) as *mut _,
                v,
            )
        }
    }
}

/// A K-quant type the tiles take.
pub(super) trait KTiles {
    /// Bytes per super-block.
    const BYTES: usize;
    /// Values per sub-block: 32 or 16 (the bytes each tile product sums).
    const SUB: usize;
    /// Whether the prepared values are signed bytes (else unsigned).
    const SIGNED: bool;
    /// Whether the type has minimums.
    const MINS: bool;
    /// Whether the weights are interleaved: super-block `s` of a band is
    /// then the unit at `16 * s * BYTES` (else the rows' at `s * BYTES`,
    /// `rb` apart).
    const X16: bool = false;
    /// Prepares the super-blocks at `blk + r * rb` of the 16 rows `r` (or,
    /// [`KTiles::X16`], the unit at `blk`).
    ///
    /// # Safety
    /// The 16 super-blocks are readable; AVX-512 F and BW.
    unsafe fn prepare(blk: *const u8, rb: usize, p: &mut SuperBlock);
}

/// Reads row `r`'s f16 at byte `o` of its super-block as f32.
///
/// # Safety
/// The two bytes are readable.
#[inline(always)]
unsafe fn f16_at(blk: *const u8, rb: usize, r: usize, o: usize) -> f32 {
    // SAFETY: the caller's contract.
    let bits = unsafe { core::ptr::read_unaligned(blk.add(r * rb + o) as *const u16) };
    half::f16::from_bits(u16::from_le(bits)).to_f32()
}

/// The 32 bytes at `p + r * rb` of 16 rows `r`, as eight vectors: vector
/// `g` holds bytes `4g..4g+4` of each row.
///
/// # Safety
/// The 16 x 32 bytes are readable; AVX-512F.
#[inline(always)]
unsafe fn transpose32(p: *const u8, rb: usize) -> [__m512i; 8] {
    // SAFETY: the caller's contract.
    unsafe {
        let lo = x16::transpose(p, rb);
        let hi = x16::transpose(p.add(16), rb);
        [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]]
    }
}

/// [`transpose32`] of the bytes at `off` of the 16 super-blocks, or
/// (`X16`) the same vectors read from the unit at `blk` (`off` a multiple
/// of 4).
///
/// # Safety
/// The 16 x 32 bytes (or the unit's) are readable; AVX-512F.
#[inline(always)]
unsafe fn fetch32<const X16: bool>(blk: *const u8, rb: usize, off: usize) -> [__m512i; 8] {
    // SAFETY: the caller's contract; unit vector off / 4 + g holds bytes
    // off + 4g.. of each row (`interleave::k_at`).
    unsafe {
        if X16 {
            core::array::from_fn(|g| _mm512_loadu_si512(blk.add(64 * (off / 4 + g)) as *const _))
        } else {
            transpose32(blk.add(off), rb)
        }
    }
}

/// Q4_K and Q5_K's scales, minimums and super-block scales (both types
/// start with `d`, `dmin` and the 12 packed bytes), from plain rows or
/// (`X16`) a unit.
///
/// # Safety
/// The 16 rows' first 16 bytes (or the unit's first 256) are readable.
#[inline(always)]
unsafe fn k4_scales<const X16: bool>(blk: *const u8, rb: usize, p: &mut SuperBlock) {
    // SAFETY: every read is inside a row's first 16 bytes (or the unit's
    // first 256: bytes 0..16 of each row).
    unsafe {
        for r in 0..BAND {
            let at = |i: usize| if X16 { k_at(r, i) } else { r * rb + i };
            let f16 = |i: usize| {
                let bits = core::ptr::read_unaligned(blk.add(at(i)) as *const u16);
                half::f16::from_bits(u16::from_le(bits)).to_f32()
            };
            p.d[r] = f16(0);
            p.dmin[r] = f16(2);
            let scales: [u8; 12] = core::array::from_fn(|i| *blk.add(at(4 + i)));
            for j in 0..8 {
                let (sc, m) = scale_min_k4(j, &scales);
                p.sc[j][r] = i32::from(sc);
                p.m[j][r] = i32::from(m);
            }
        }
    }
}

/// Q4_K's and (`Q5`) Q5_K's super-blocks: the scales ([`k4_scales`]),
/// then the nibbles (at 16, Q5_K at 48): bytes `32t..32t+32` hold sub-block
/// `2t` (low) and `2t + 1` (high), value `l` in byte `32t + l`; Q5_K's
/// fifth bits (at 16): bit `i` of byte `l` belongs to value `32i + l`.
///
/// # Safety
/// The 16 super-blocks are readable; AVX-512 F and BW.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn prepare_k4<const Q5: bool, const X16: bool>(
    blk: *const u8,
    rb: usize,
    p: &mut SuperBlock,
) {
    // SAFETY: every read is inside one of the 16 super-blocks (or the unit).
    unsafe {
        k4_scales::<X16>(blk, rb, p);
        let high = if Q5 {
            fetch32::<X16>(blk, rb, 16)
        } else {
            [_mm512_setzero_si512(); 8]
        };
        let nibbles = if Q5 { 48 } else { 16 };
        let mask = _mm512_set1_epi8(0x0f);
        let one = _mm512_set1_epi8(1);
        // Bit i of each byte of h, moved to bit 4 (Q5_K; Q4_K: nothing).
        let bit = |h: __m512i, i: i32| {
            let b = _mm512_and_si512(_mm512_srl_epi16(h, _mm_cvtsi32_si128(i)), one);
            _mm512_slli_epi16::<4>(b)
        };
        for t in 0..4 {
            let chunks = fetch32::<X16>(blk, rb, nibbles + 32 * t);
            for (g, v) in chunks.into_iter().enumerate() {
                let lo = _mm512_and_si512(v, mask);
                let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), mask);
                let (lo, hi) = if Q5 {
                    let t2 = 2 * t as i32;
                    (
                        _mm512_or_si512(lo, bit(high[g], t2)),
                        _mm512_or_si512(hi, bit(high[g], t2 + 1)),
                    )
                } else {
                    (lo, hi)
                };
                p.put(32, 2 * t, g, lo);
                p.put(32, 2 * t + 1, g, hi);
            }
        }
    }
}

/// Q4_K: values `0..16`, 8 sub-blocks of 32, minimums.
pub(super) struct Q4K;

impl KTiles for Q4K {
    const BYTES: usize = 144;
    const SUB: usize = 32;
    const SIGNED: bool = false;
    const MINS: bool = true;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn prepare(blk: *const u8, rb: usize, p: &mut SuperBlock) {
        // SAFETY: the caller's contract.
        unsafe { prepare_k4::<false, false>(blk, rb, p) }
    }
}

/// Interleaved Q4_K.
pub(super) struct Q4KX16;

impl KTiles for Q4KX16 {
    const BYTES: usize = Q4K::BYTES;
    const SUB: usize = Q4K::SUB;
    const SIGNED: bool = Q4K::SIGNED;
    const MINS: bool = Q4K::MINS;
    const X16: bool = true;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn prepare(blk: *const u8, rb: usize, p: &mut SuperBlock) {
        // SAFETY: the caller's contract.
        unsafe { prepare_k4::<false, true>(blk, rb, p) }
    }
}

/// Q5_K: Q4_K with a fifth bit, values `0..32`.
pub(super) struct Q5K;

impl KTiles for Q5K {
    const BYTES: usize = 176;
    const SUB: usize = 32;
    const SIGNED: bool = false;
    const MINS: bool = true;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn prepare(blk: *const u8, rb: usize, p: &mut SuperBlock) {
        // SAFETY: the caller's contract.
        unsafe { prepare_k4::<true, false>(blk, rb, p) }
    }
}

/// Interleaved Q5_K.
pub(super) struct Q5KX16;

impl KTiles for Q5KX16 {
    const BYTES: usize = Q5K::BYTES;
    const SUB: usize = Q5K::SUB;
    const SIGNED: bool = Q5K::SIGNED;
    const MINS: bool = Q5K::MINS;
    const X16: bool = true;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn prepare(blk: *const u8, rb: usize, p: &mut SuperBlock) {
        // SAFETY: the caller's contract.
        unsafe { prepare_k4::<true, true>(blk, rb, p) }
    }
}

/// Q6_K: values `-32..32` (stored plus 32), 16 sub-blocks of 16, signed
/// 8-bit scales, no minimums.
pub(super) struct Q6K;

impl KTiles for Q6K {
    const BYTES: usize = 210;
    const SUB: usize = 16;
    const SIGNED: bool = true;
    const MINS: bool = false;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn prepare(blk: *const u8, rb: usize, p: &mut SuperBlock) {
        // SAFETY: every read is inside one of the 16 super-blocks (ql at
        // 0, qh at 128, scales at 192, d at 208).
        unsafe {
            for r in 0..BAND {
                p.d[r] = f16_at(blk, rb, r, 208);
                for j in 0..16 {
                    p.sc[j][r] = i32::from(*blk.add(r * rb + 192 + j) as i8);
                }
            }
            let mask = _mm512_set1_epi8(0x0f);
            let three = _mm512_set1_epi8(3);
            let offset = _mm512_set1_epi8(32);
            // Half n holds values 128n + 32c + l: low 4 bits from ql byte
            // 64n + l (c = 0: low nibble, c = 2: high) or 64n + 32 + l (c =
            // 1, 3), high 2 bits from qh byte 32n + l, bits 2c..2c+2.
            for n in 0..2 {
                let ql = [
                    transpose32(blk.add(64 * n), rb),
                    transpose32(blk.add(64 * n + 32), rb),
                ];
                let qh = transpose32(blk.add(128 + 32 * n), rb);
                for c in 0..4 {
                    for g in 0..8 {
                        let l = ql[c % 2][g];
                        let low = if c < 2 {
                            _mm512_and_si512(l, mask)
                        } else {
                            _mm512_and_si512(_mm512_srli_epi16::<4>(l), mask)
                        };
                        let shift = _mm_cvtsi32_si128(2 * c as i32);
                        let h = _mm512_and_si512(_mm512_srl_epi16(qh[g], shift), three);
                        let v = _mm512_or_si512(low, _mm512_slli_epi16::<4>(h));
                        // Values 32c + 4g.. of the half: sub-block 8n + 2c
                        // (g < 4) or the next, row g % 4 of its weights.
                        p.put(16, 8 * n + 2 * c + g / 4, g % 4, _mm512_sub_epi8(v, offset));
                    }
                }
            }
        }
    }
}

/// Rows (a multiple of 16) of `K` times a batch, band by band (see the
/// module documentation).
///
/// # Safety
/// AMX is granted ([`super::granted`]) and the CPU has the `avx512` set's
/// features; `check_mat` accepted the arguments; `rows` is a multiple of
/// 16.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn bands<K: KTiles>(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    let nsb = a.cols / QK_K;
    let rb = nsb * K::BYTES;
    let cols = a.cols;
    let subs = QK_K / K::SUB;
    let mut tiles = Tiles::new();
    let mut prepared = [SuperBlock::ZERO, SuperBlock::ZERO];
    let mut dots = Aligned([[[0i32; 16]; M]; 16]);
    // SAFETY: (for the whole body) band b's rows (16 rows of rb bytes at
    // w + 16 b rb) and every vector's Q8_K values, scales and sums are
    // inside the checked arguments, and so are the outputs out[v * rows +
    // 16 b + r]; each tile product reads m rows of `K::SUB` activation
    // bytes (`cols` apart) and a prepared sub-block (16 `K::SUB` bytes),
    // and writes m rows of `dots[j]`. AMX is granted and the CPU has the
    // features (this function's contract).
    unsafe {
        for b in 0..rows / BAND {
            let band = w.as_ptr().add(b * BAND * rb);
            let out_band = out.as_mut_ptr().add(b * BAND);
            for v in 0..a.n {
                _mm512_storeu_ps(out_band.add(v * rows), _mm512_setzero_ps());
            }
            // Super-block s of the band: the rows' (rb apart) or a unit.
            let step = if K::X16 { BAND * K::BYTES } else { K::BYTES };
            if nsb > 0 {
                K::prepare(band, rb, &mut prepared[0]);
            }
            for s in 0..nsb {
                if s + 1 < nsb {
                    K::prepare(band.add((s + 1) * step), rb, &mut prepared[(s + 1) % 2]);
                }
                let p = &prepared[s % 2];
                let d = _mm512_loadu_ps(p.d.as_ptr());
                let dmin = _mm512_loadu_ps(p.dmin.as_ptr());
                let mut c0 = 0;
                while c0 < a.n {
                    let m = (a.n - c0).min(M);
                    for (j, dots) in dots.0[..subs].iter_mut().enumerate() {
                        let q = a.k.q.as_ptr().add(c0 * cols + s * QK_K + K::SUB * j);
                        let w = p.values.as_ptr().add(j * 16 * K::SUB);
                        let dots = dots.as_mut_ptr();
                        if K::SIGNED {
                            tiles.product::<true>(j % 2, m, K::SUB, q, cols, w, dots);
                        } else {
                            tiles.product::<false>(j % 2, m, K::SUB, q, cols, w, dots);
                        }
                    }
                    for v in 0..m {
                        let vv = c0 + v;
                        let mut isum = _mm512_setzero_si512();
                        for j in 0..subs {
                            let dot = _mm512_load_si512(dots.0[j][v].as_ptr() as *const _);
                            let sc = _mm512_load_si512(p.sc[j].as_ptr() as *const _);
                            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(dot, sc));
                        }
                        let da = _mm512_set1_ps(*a.k.d.as_ptr().add(vv * nsb + s));
                        let o = out_band.add(vv * rows);
                        let mut acc = _mm512_loadu_ps(o);
                        let x = _mm512_mul_ps(_mm512_mul_ps(d, da), _mm512_cvtepi32_ps(isum));
                        acc = _mm512_add_ps(acc, x);
                        if K::MINS {
                            // The activations' sums per 32 (two of 16).
                            let bsums = a.k.bsums.as_ptr().add(vv * (cols / 16) + s * 16);
                            let mut msum = _mm512_setzero_si512();
                            for j in 0..8 {
                                let pair =
                                    i32::from(*bsums.add(2 * j)) + i32::from(*bsums.add(2 * j + 1));
                                let mins = _mm512_load_si512(p.m[j].as_ptr() as *const _);
                                let t = _mm512_mullo_epi32(mins, _mm512_set1_epi32(pair));
                                msum = _mm512_add_epi32(msum, t);
                            }
                            let y =
                                _mm512_mul_ps(_mm512_mul_ps(dmin, da), _mm512_cvtepi32_ps(msum));
                            acc = _mm512_sub_ps(acc, y);
                        }
                        _mm512_storeu_ps(o, acc);
                    }
                    c0 += m;
                }
            }
        }
    }
}
