//! The `avx512` set: products by VNNI's `vpdpbusd` on 256-bit vectors (with
//! AVX-512VL's 32 registers, hence larger tiles), which takes unsigned x
//! signed bytes: Q8_0 weights are offset by 128 (`w ^ 0x80`) and the excess
//! `128 * sum(a)` is subtracted per block. 512-bit vectors serve the
//! matrix-vector products of the 4-bit 32-wide formats ([`z4`]), which they
//! take from compute-bound to memory-bound on AMD Zen 4 and 5, the K-quants
//! ([`kq::avx512`]), and the F16 and BF16 batched products ([`f16_mat`],
//! prefill), where one `__m512` holds exactly the sixteen partial sums of a
//! (row, vector).
//!
//! The AVX-512 intrinsics are stable since Rust 1.89, the crate's
//! `rust-version`.

use core::arch::x86_64::*;

use super::common::{self, TileOp};
use super::k_quants as kq;
use super::legacy;
use super::{
    avx512_supported as supported, prefetch, prefetch_bytes, run, run_kv_scores, run_quantize,
    run_quantize_k, x16, x16k, z4, Isa, Prefetch,
};
use crate::kernels::acts::Acts;
use crate::kernels::interleave::F16_HALF;
use crate::kernels::types::TensorType;
use crate::kernels::{Kernels, MatFn, ValueRows};

/// The AVX-512 (F, BW, VL, VNNI) kernel set.
pub(in crate::kernels) static AVX512: Kernels = TABLE;

/// [`AVX512`]'s table (the `amx` set starts from it).
pub(super) const TABLE: Kernels = Kernels {
    name: "avx512",
    kernel_for,
    fast_interleaved: true,
    fast_interleaved_k: &[TensorType::Q4_K, TensorType::Q5_K],
    transposed_q8: false,
    quantize,
    quantize_k,
    weighted_sum,
    kv_scores_q8_0,
};

/// This set's kernel for weights of type `ty`, if it has one.
fn kernel_for(ty: TensorType) -> Option<MatFn> {
    use TensorType::*;
    Some(match ty {
        F32 => |w, a, o| run(F32, supported, mat_f32, w, a, o),
        F16 => |w, a, o| run(F16, supported, mat_f16, w, a, o),
        BF16 => |w, a, o| run(BF16, supported, mat_bf16, w, a, o),
        Q8_0 => |w, a, o| run(Q8_0, supported, mat_q8_0, w, a, o),
        Q4_0 => |w, a, o| run(Q4_0, supported, mat_q4_0, w, a, o),
        Q8_0x16 => |w, a, o| run(Q8_0x16, supported, mat_q8_0x16, w, a, o),
        Q4_0x16 => |w, a, o| run(Q4_0x16, supported, mat_q4_0x16, w, a, o),
        Q4_Kx16 => |w, a, o| run(Q4_Kx16, supported, mat_q4_kx16, w, a, o),
        Q5_Kx16 => |w, a, o| run(Q5_Kx16, supported, mat_q5_kx16, w, a, o),
        F16x16 => |w, a, o| run(F16x16, supported, mat_f16x16, w, a, o),
        Q4_1 => |w, a, o| run(Q4_1, supported, mat_q4_1, w, a, o),
        Q5_0 => |w, a, o| run(Q5_0, supported, mat_q5_0, w, a, o),
        Q5_1 => |w, a, o| run(Q5_1, supported, mat_q5_1, w, a, o),
        IQ4_NL => |w, a, o| run(IQ4_NL, supported, mat_iq4_nl, w, a, o),
        Q2_K => |w, a, o| run(Q2_K, supported, mat_q2_k, w, a, o),
        Q3_K => |w, a, o| run(Q3_K, supported, mat_q3_k, w, a, o),
        Q4_K => |w, a, o| run(Q4_K, supported, mat_q4_k, w, a, o),
        Q5_K => |w, a, o| run(Q5_K, supported, mat_q5_k, w, a, o),
        Q6_K => |w, a, o| run(Q6_K, supported, mat_q6_k, w, a, o),
        _ => return None,
    })
}

/// The set's parameters and pair products.
pub(super) struct Avx512;

impl Isa for Avx512 {
    const FR: usize = 4;
    const FC: usize = 3;
    const QR: usize = 4;
    const QC: usize = 3;
    /// `vpdpbusd` needs the weights unsigned: `w + 128`, an excess of
    /// `128 * sum(a) = sum(a) << 7` per block.
    const Q8_SHIFT: i32 = 7;

    #[inline(always)]
    unsafe fn prep_q8(x: __m256i) -> __m256i {
        // SAFETY: AVX2 (the caller's promise).
        unsafe { _mm256_xor_si256(x, _mm256_set1_epi8(-128)) }
    }

    #[inline(always)]
    unsafe fn pair_q8(x1: __m256i, x2: __m256i, a1: __m256i, a2: __m256i) -> __m256i {
        // SAFETY: AVX-512 VL and VNNI (the caller's promise).
        unsafe {
            let s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), x1, a1);
            _mm256_dpbusd_epi32(s, x2, a2)
        }
    }

    #[inline(always)]
    unsafe fn pair_q4(x1: __m256i, x2: __m256i, a1: __m256i, a2: __m256i) -> __m256i {
        // SAFETY: AVX-512 VL and VNNI (the caller's promise).
        unsafe {
            let s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), x1, a1);
            _mm256_dpbusd_epi32(s, x2, a2)
        }
    }

    /// A byte mask: 16 added where set.
    #[inline(always)]
    unsafe fn add16(x: __m256i, bits: u32) -> __m256i {
        // SAFETY: AVX-512 BW and VL (the caller's promise).
        unsafe { _mm256_mask_add_epi8(x, bits, x, _mm256_set1_epi8(16)) }
    }

    #[inline(always)]
    unsafe fn dispatch<T: TileOp>(op: &mut T, nr: usize, nc: usize, r0: usize, c0: usize) {
        // SAFETY: the caller's promise, for the tile it names.
        unsafe {
            match (nr, nc) {
                (4, 3) => op.run::<4, 3>(r0, c0),
                (3, 3) => op.run::<3, 3>(r0, c0),
                (2, 3) => op.run::<2, 3>(r0, c0),
                (1, 3) => op.run::<1, 3>(r0, c0),
                (4, 2) => op.run::<4, 2>(r0, c0),
                (3, 2) => op.run::<3, 2>(r0, c0),
                (2, 2) => op.run::<2, 2>(r0, c0),
                (1, 2) => op.run::<1, 2>(r0, c0),
                (4, 1) => op.run::<4, 1>(r0, c0),
                (3, 1) => op.run::<3, 1>(r0, c0),
                (2, 1) => op.run::<2, 1>(r0, c0),
                _ => op.run::<1, 1>(r0, c0),
            }
        }
    }
}

/// F32 weights.
///
/// # Safety
/// The set's CPU features; checked arguments (see [`run`]).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn mat_f32(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe { common::mat_float::<Avx512, { common::F32 }>(w, a, out, rows) }
}

/// F16 weights: a batch through [`f16_mat`], one vector through the
/// shared 256-bit kernel.
///
/// # Safety
/// As [`mat_f32`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn mat_f16(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe {
        if f16_mat::<false, false>(w, a, out, rows).is_none() {
            common::mat_float::<Avx512, { common::F16 }>(w, a, out, rows)
        }
    }
}

/// BF16 weights: as [`mat_f16`].
///
/// # Safety
/// As [`mat_f32`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn mat_bf16(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe {
        if f16_mat::<true, false>(w, a, out, rows).is_none() {
            common::mat_float::<Avx512, { common::BF16 }>(w, a, out, rows)
        }
    }
}

/// Q8_0 weights: a batch of whole bands through the interleaved tiles
/// ([`x16::mat_plain`]), anything else through the shared kernel.
///
/// # Safety
/// As [`mat_f32`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn mat_q8_0(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe {
        if a.n == 1 || x16::mat_plain::<false>(w, a, out, rows).is_none() {
            legacy::mat::<Avx512, legacy::Q8_0>(w, a, out, rows)
        }
    }
}

/// Q4_0 weights: a batch of whole bands through the interleaved tiles
/// ([`x16::mat_plain`]), other batches through [`z4::matmul`], one vector
/// through [`z4::matvec`].
///
/// # Safety
/// As [`mat_f32`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn mat_q4_0(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe {
        if a.n > 1 {
            if x16::mat_plain::<true>(w, a, out, rows).is_none() {
                z4::matmul::<Avx512, legacy::Q4_0>(w, a, out, rows)
            }
        } else if z4::matvec::<Avx512, legacy::Q4_0>(w, a, out, rows).is_none() {
            legacy::mat::<Avx512, legacy::Q4_0>(w, a, out, rows)
        }
    }
}

/// Interleaved Q8_0 weights.
///
/// # Safety
/// As [`mat_f32`]; `check_mat` also checked that the rows are whole bands.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn mat_q8_0x16(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe { x16::mat::<false>(w, a, out, rows) }
}

/// Interleaved Q4_0 weights.
///
/// # Safety
/// As [`mat_q8_0x16`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn mat_q4_0x16(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe { x16::mat::<true>(w, a, out, rows) }
}

/// Interleaved Q4_K weights.
///
/// # Safety
/// As [`mat_q8_0x16`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn mat_q4_kx16(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe { x16k::mat::<false>(w, a, out, rows) }
}

/// Interleaved Q5_K weights.
///
/// # Safety
/// As [`mat_q8_0x16`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn mat_q5_kx16(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe { x16k::mat::<true>(w, a, out, rows) }
}

/// The 4-bit 32-wide kernels: `$name` runs one vector through
/// [`z4::matvec`] (512-bit; rows too long for it through the shared
/// kernel), a batch through [`z4::matmul`].
macro_rules! legacy_kernels {
    ($($name:ident: $f:ty,)*) => {$(
        /// 4-bit 32-wide weights (see [`legacy`] and [`z4`]).
        ///
        /// # Safety
        /// The set's CPU features; checked arguments (see [`run`]).
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn $name(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
            // SAFETY: this function's contract.
            unsafe {
                if a.n > 1 {
                    z4::matmul::<Avx512, $f>(w, a, out, rows)
                } else if z4::matvec::<Avx512, $f>(w, a, out, rows).is_none() {
                    legacy::mat::<Avx512, $f>(w, a, out, rows)
                }
            }
        }
    )*};
}

legacy_kernels! {
    mat_q4_1: legacy::Q4_1,
    mat_q5_0: legacy::Q5_0,
    mat_q5_1: legacy::Q5_1,
    mat_iq4_nl: legacy::Iq4Nl,
}

/// The K-quant kernels: `$name` runs `kq::mat` for `$k`.
macro_rules! k_quant_kernels {
    ($($name:ident: $k:ty,)*) => {$(
        /// K-quant weights (see [`kq`]).
        ///
        /// # Safety
        /// The set's CPU features; checked arguments (see [`run`]).
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        pub(super) unsafe fn $name(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
            // SAFETY: this function's contract.
            unsafe { kq::mat::<$k>(w, a, out, rows) }
        }
    )*};
}

k_quant_kernels! {
    mat_q2_k: kq::avx512::Q2K,
    mat_q3_k: kq::avx512::Q3K,
    mat_q4_k: kq::avx512::Q4K,
    mat_q5_k: kq::avx512::Q5K,
    mat_q6_k: kq::avx512::Q6K,
}

/// The Q8 activation quantizer.
fn quantize(x: &[f32], d: &mut [f32], sum: &mut [i32], q: &mut [i8]) {
    /// # Safety
    /// The set's CPU features; lengths checked.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn imp(x: &[f32], d: &mut [f32], sum: &mut [i32], q: &mut [i8]) {
        // SAFETY: this function's contract.
        unsafe { common::quantize(x, d, sum, q) }
    }
    run_quantize(supported, imp, x, d, sum, q)
}

/// The Q8_K activation quantizer.
fn quantize_k(x: &[f32], d: &mut [f32], bsums: &mut [i16], q: &mut [i8]) {
    /// # Safety
    /// The set's CPU features; lengths checked.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn imp(x: &[f32], d: &mut [f32], bsums: &mut [i16], q: &mut [i8]) {
        // SAFETY: this function's contract.
        unsafe { kq::quantize_q8k(x, d, bsums, q) }
    }
    run_quantize_k(supported, imp, x, d, bsums, q)
}

/// The scalar weighted sum, compiled for AVX-512.
fn weighted_sum(att: &[f32], v: ValueRows, out: &mut [f32]) {
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn imp(att: &[f32], v: ValueRows, out: &mut [f32]) {
        crate::kernels::scalar::weighted_sum_rows(att, v, out)
    }
    debug_assert!(supported());
    // SAFETY: the table holding this function is handed out only on CPUs
    // with the set's features; the body is safe code (it checks its slices).
    unsafe { imp(att, v, out) }
}

// ---- F16 with 512-bit vectors ----

/// Largest F16 tile (rows x vectors) of a batch: 24 accumulators, 3
/// activation vectors and a converted weight vector in 32 registers.
/// Eight rows by three vectors rather than four by six: each chunk of 16
/// then loads 3 activation vectors (from L2: a batch's activations do
/// not fit in L1) instead of 6 for the same 24 multiply-adds, and 8
/// weight chunks (from L1: the tile's rows stay there while the vectors
/// pass). `kernel-table --matmul --quick --cpu-time` (128 vectors, 2048
/// rows, Zen 5, 9 interleaved rounds): 80.6-84.9 -> 100.3-102.8 GMAC/s
/// with 2048 columns, 79.9 -> 96.2 with 5632; 6 x 4 gave 94.3-96.9 and
/// 88.3, 12 x 2 84.9 and 83.6.
const ZR: usize = 8;
const ZC: usize = 3;

/// Calls the macro `$go!(R, C)` with the literals of an F16 tile of `$nr`
/// rows (1 to [`ZR`]) and `$nc` vectors (1 to [`ZC`]).
macro_rules! by_shape {
    ($nr:expr, $nc:expr, $go:ident) => {
        match ($nr, $nc) {
            (8, 3) => $go!(8, 3),
            (8, 2) => $go!(8, 2),
            (8, _) => $go!(8, 1),
            (7, 3) => $go!(7, 3),
            (7, 2) => $go!(7, 2),
            (7, _) => $go!(7, 1),
            (6, 3) => $go!(6, 3),
            (6, 2) => $go!(6, 2),
            (6, _) => $go!(6, 1),
            (5, 3) => $go!(5, 3),
            (5, 2) => $go!(5, 2),
            (5, _) => $go!(5, 1),
            (4, 3) => $go!(4, 3),
            (4, 2) => $go!(4, 2),
            (4, _) => $go!(4, 1),
            (3, 3) => $go!(3, 3),
            (3, 2) => $go!(3, 2),
            (3, _) => $go!(3, 1),
            (2, 3) => $go!(2, 3),
            (2, 2) => $go!(2, 2),
            (2, _) => $go!(2, 1),
            (_, 3) => $go!(1, 3),
            (_, 2) => $go!(1, 2),
            (_, _) => $go!(1, 1),
        }
    };
}
/// One F16 tile with 512-bit vectors: `R` rows from `w` (row `r` at
/// `w + r * rb`, `cols` elements; with `IL`, the `R` = 8 rows of an
/// interleaved F16 half band at `w`, chunk `i` of row `r` at
/// [`il_chunk`]`(i) + 64 r`, `cols` a multiple of 32) times `C` vectors (vector `c` at
/// `x + c * cols`); `out(r, c)` is stored at `o + c * ldo + r`. With `pf`
/// not null, step `i` (16 values of each row) prefetches the `32 R`
/// bytes at `pf + 32 R i` into L2 (the next tile, for one vector). The
/// sixteen partial sums of a (row, vector) are the lanes of one
/// `__m512`: lane `j` takes elements `16 i + j` in order, by fused
/// multiply-adds, as in the scalar `dot_f16`.
///
/// # Safety
/// The CPU has the set's features; the rows, vectors and outputs are
/// in bounds.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn z16_tile<const R: usize, const C: usize, const BF: bool, const IL: bool>(
    w: *const u8,
    rb: usize,
    x: *const f32,
    cols: usize,
    o: *mut f32,
    ldo: usize,
    pf: *const u8,
) {
    // SAFETY: (for the whole body) offsets stay within the R rows of `rb`
    // bytes and the C vectors of `cols` values the caller vouches
    // for; the last partial chunk uses masked loads, which do not
    // touch the masked-off elements.
    unsafe {
        let z = _mm512_setzero_ps();
        let mut acc = [[z; C]; R];
        let n16 = cols / 16;
        for i in 0..n16 {
            if !pf.is_null() {
                prefetch_bytes(pf.wrapping_add(32 * R * i), 32 * R, Prefetch::L2);
            }
            let mut xv = [z; C];
            for (c, xv) in xv.iter_mut().enumerate() {
                *xv = _mm512_loadu_ps(x.add(c * cols + 16 * i));
            }
            // Chunk i of row 0, and the distance between rows.
            let (base, stride) = if IL {
                (w.add(il_chunk(i)), 64)
            } else {
                (w.add(32 * i), rb)
            };
            for (r, acc) in acc.iter_mut().enumerate() {
                let p = base.add(r * stride);
                let wv = widen::<BF>(_mm256_loadu_si256(p as *const __m256i));
                for (acc, &xv) in acc.iter_mut().zip(&xv) {
                    *acc = _mm512_fmadd_ps(wv, xv, *acc);
                }
            }
        }
        let rem = cols % 16;
        if rem != 0 {
            // The last partial chunk: only its `rem` lanes are
            // loaded and updated, the others keep their sums.
            let m: __mmask16 = (1 << rem) - 1;
            let mut xv = [z; C];
            for (c, xv) in xv.iter_mut().enumerate() {
                *xv = _mm512_maskz_loadu_ps(m, x.add(c * cols + 16 * n16));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let p = w.add(r * rb + 32 * n16) as *const i16;
                let wv = widen::<BF>(_mm256_maskz_loadu_epi16(m, p));
                for (acc, &xv) in acc.iter_mut().zip(&xv) {
                    *acc = _mm512_mask3_fmadd_ps(wv, xv, *acc, m);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (c, &acc) in acc.iter().enumerate() {
                *o.add(c * ldo + r) = reduce16(acc);
            }
        }
    }
}

/// The sum of a (row, vector)'s sixteen partial sums: lanes `j + 8` onto
/// lanes `j` (as the scalar `reduce16`), then the tree of `reduce8`.
///
/// # Safety
/// AVX-512F.
#[inline(always)]
unsafe fn reduce16(acc: __m512) -> f32 {
    // SAFETY: AVX-512F (the caller's promise).
    unsafe {
        let lo = _mm512_castps512_ps256(acc);
        let hi = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc));
        common::reduce8(_mm256_add_ps(lo, _mm256_castpd_ps(hi)))
    }
}

/// Sixteen F16 (or, with `BF`, BF16) values as f32.
#[inline(always)]
unsafe fn widen<const BF: bool>(h: __m256i) -> __m512 {
    // SAFETY: AVX-512F (the caller's promise).
    unsafe {
        if BF {
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        } else {
            _mm512_cvtph_ps(h)
        }
    }
}

/// F16 (or, with `BF`, BF16) weights times a batch with 512-bit vectors (the `MatFn`
/// contract; plain rows on Intel through [`f16_conv`]): tiles of up to `ZR` rows x `ZC` vectors, the rows
/// outermost (a tile's rows stay in L1 while the vectors pass). With
/// `IL`, interleaved F16 ([`TensorType::F16x16`]): a tile is a half band,
/// whose rows' bytes are as contiguous as plain rows'.
/// One vector: on AMD, plain rows longer than [`LONG_X`] in the same
/// tiles of 8 rows, each step loading 16 values of the vector once for
/// the 8 rows and prefetching its share of the next tile into L2
/// ([`z16_tile`]'s `pf`): one sequential stream. `None` otherwise, and
/// the generic [`common::mat_float`] reads it (two adjacent rows at a
/// time, or on AMD, from memory, rows in pairs half the matrix apart).
/// The vector of such long rows does not stay in L1 beside a stream of
/// weights: read once per row (as those pairs do), it costs a third of
/// the bandwidth. A C model of TinyLlama's F16 products over the mapped
/// file (Zen 4, 1 thread, 2-3 rounds, GB/s of the down projection's 2048
/// rows of 5632 values): one row 15.0-16.7, pairs half apart 17.9-18.3,
/// pairs with a non-temporal prefetch 512-2048 bytes ahead 18.0-18.7, one
/// row with the vector's index wrapped at 2048 values (wrong sums: the
/// vector's footprint alone) 24.4-26.7, these tiles 26.7-27.4 (prefetched
/// into L1 instead: 13.9-14.6; 4 rows: 25.2-25.3). On the rows of 2048
/// values the pairs stay faster (27.7-30.8 against 25.4-27.0). Whole model
/// (`bench`, median tok/s of alternating runs): TinyLlama F16 `--mmap`
/// 11.50 -> 12.48 at 1 thread (7 runs), 14.88 -> 22.77 at 2 (5 runs, two
/// clusters); BF16 (plain by default) 12.06 -> 13.28 (5 runs).
///
/// # Safety
/// The CPU has the set's features; `check_mat` accepted the arguments.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn f16_mat<const BF: bool, const IL: bool>(
    w: &[u8],
    a: &Acts,
    out: &mut [f32],
    rows: usize,
) -> Option<()> {
    if a.n == 1 && (IL || prefetch() == Prefetch::L2 || a.cols <= LONG_X) {
        return None;
    }
    if !IL && prefetch() == Prefetch::L2 {
        // SAFETY: this function's contract.
        unsafe { f16_conv::<BF>(w, a, out, rows) };
        return Some(());
    }
    let rb = 2 * a.cols;
    // The next tile's rows (those after this call's too: the matrix's next
    // rows, which `matmul` hands to the next call) are prefetched while
    // the vectors pass the current tile, spread over its steps: without,
    // a tile's first vectors wait on memory, in 4 KiB pages most. Into
    // L2: an interleaved half band's prompt was slower into L1 (see
    // [`mat_f16x16`]), and so were plain rows' (Zen 4, `bench --mmap`
    // tl-f16.gguf, 128-token prompt, 5 alternating runs, median tok/s:
    // 1 thread 45.43 into L1 -> 49.99 into L2, 2 threads 87.35 -> 96.28).
    let policy = Prefetch::L2;
    let steps = a.n.div_ceil(ZC);
    let pf_step = (ZR * rb).div_ceil(steps).next_multiple_of(64);
    let mut r0 = 0;
    while r0 < rows {
        let nr = (rows - r0).min(ZR);
        let next = w.as_ptr().wrapping_add((r0 + nr) * rb);
        // One vector: the tile's steps prefetch the next tile, a share
        // each, rather than all of it at once (12.11 against 11.79 tok/s,
        // `--mmap` F16, 5 runs).
        let step_pf = if a.n == 1 { next } else { core::ptr::null() };
        let mut c0 = 0;
        while c0 < a.n {
            if step_pf.is_null() {
                prefetch_bytes(next.wrapping_add(c0 / ZC * pf_step), pf_step, policy);
            }
            let nc = (a.n - c0).min(ZC);
            // SAFETY: the tile (rows r0..r0 + nr, vectors c0..c0 +
            // nc) is inside the checked arguments.
            let (wp, xp, op) = unsafe {
                (
                    w.as_ptr().add(r0 * rb),
                    a.x.as_ptr().add(c0 * a.cols),
                    out.as_mut_ptr().add(c0 * rows + r0),
                )
            };
            macro_rules! go {
                ($r:literal, $c:literal) => {
                    // SAFETY: the tile is inside the checked arguments.
                    unsafe { z16_tile::<$r, $c, BF, IL>(wp, rb, xp, a.cols, op, rows, step_pf) }
                };
            }
            by_shape!(nr, nc, go);
            c0 += nc;
        }
        r0 += nr;
    }
    Some(())
}

/// The longest row [`f16_mat`] leaves to [`common::mat_float`] for one
/// vector on AMD: 4096 f32 values, 16 KiB, half of Zen 4's L1 data cache.
const LONG_X: usize = 4096;

/// Where chunk `i` (16 values) of a half band's first row is, from the
/// half band's first byte ([`TensorType::F16x16`]: units of 32 values,
/// 8 rows of 64 bytes each; row `r`'s chunk is `64 r` bytes further).
#[inline(always)]
fn il_chunk(i: usize) -> usize {
    i / 2 * (F16_HALF * 64) + i % 2 * 32
}

// A batch's tile of rows is exactly an interleaved F16 half band.
const _: () = assert!(ZR == F16_HALF);

/// Interleaved F16 weights ([`TensorType::F16x16`], the `MatFn` contract).
///
/// One vector: a half band (8 rows) at a time, its rows' chains side by
/// side, so the weights are read as one sequential stream, which the
/// hardware prefetcher follows (plain F16 reads two rows at once, two
/// streams: one row's 16 chains of multiply-adds alone read about 30 GB/s
/// even from the caches).
/// Row `r`'s sixteen partial sums are the lanes of register `r`; each
/// takes its elements in order by fused multiply-adds and ends in
/// [`reduce16`]: the plain F16 row's numbers. Measured (22 TinyLlama
/// layers' shapes and the classifier, 1 thread, Zen 4, a C model of both
/// loops, alternating rounds): two plain rows with the next pair
/// prefetched 22.7-23.0 GB/s, 16 rows side by side 28.4-28.8 (in other
/// runs 25.7-29.9, and 8 rows, this layout, 25.9-29.3); software
/// prefetches 1-4 KiB ahead made it slower (20.2-21.5).
///
/// A batch: [`f16_mat`]'s [`z16_tile`]s of a half band by 3 vectors (8 rows' contiguous
/// bytes, as plain F16's tiles), the next half band prefetched into L2
/// while the vectors pass. Measured (whole model, 1 thread, 128-token
/// prompt in batches of 32, 5 alternating runs, median prompt tok/s):
/// plain F16 43.67; this layout with the next half band prefetched into L1
/// (as plain F16's tiles then did) 40.83, not prefetched 43.08, into L2 45.89 (2
/// threads, 3 runs: plain 86.55, into L2 88.70). Tiles of 8 rows out of
/// units of 16 rows (an earlier layout) were slower still with batches of
/// 32: 41-43 against plain's 44-49 GMAC/s in `kernel-table`.
///
/// [`crate::repack`] no longer interleaves F16 (it did on AMD until
/// 2026-12-07): since plain F16 reads rows in pairs and long rows in tiles
/// of 8, it decodes as fast from huge pages and prompts faster (TinyLlama,
/// Zen 4, median tok/s of alternating runs, interleaved -> plain: decode
/// 14.16 -> 14.00 at 1 thread and 16.75 -> 16.80 at 2, prompt 47.97 ->
/// 51.19 and 92.60 -> 98.54). This kernel reads bytes that hold the type.
///
/// # Safety
/// The CPU has the set's features; `check_mat` accepted the arguments
/// (`rows` whole bands, `cols` a multiple of 32).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn mat_f16x16(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    let cols = a.cols;
    let half_bytes = F16_HALF * 2 * cols;
    // SAFETY: this function's contract (for a batch).
    if unsafe { f16_mat::<false, true>(w, a, out, rows) }.is_some() {
        return;
    }
    for h in 0..rows / F16_HALF {
        // SAFETY: half band h is inside the checked weights, its 8
        // outputs inside `out`, the vector `cols` long.
        unsafe {
            f16x16_half(
                w.as_ptr().add(h * half_bytes),
                a.x.as_ptr(),
                cols / 32,
                out.as_mut_ptr().add(F16_HALF * h),
            )
        };
    }
}

/// One half band of interleaved F16 times one vector: `nc` units of 32
/// values from `half`, the vector at `x`, the 8 rows' results to `o`.
///
/// # Safety
/// The CPU has the set's features; the half band (`nc` units of 512
/// bytes), the vector (`32 nc` values) and the 8 outputs are in bounds.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn f16x16_half(half: *const u8, x: *const f32, nc: usize, o: *mut f32) {
    // SAFETY: (for the whole body) unit k is the 512 bytes at half + 512
    // k, values 32 k .. 32 k + 32 of the vector are in it; loads are
    // unaligned loads.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); F16_HALF];
        for k in 0..nc {
            let u = half.add(il_chunk(2 * k));
            let x0 = _mm512_loadu_ps(x.add(32 * k));
            let x1 = _mm512_loadu_ps(x.add(32 * k + 16));
            for (r, acc) in acc.iter_mut().enumerate() {
                let p = u.add(64 * r);
                let w0 = _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i));
                let w1 = _mm512_cvtph_ps(_mm256_loadu_si256(p.add(32) as *const __m256i));
                *acc = _mm512_fmadd_ps(w1, x1, _mm512_fmadd_ps(w0, x0, *acc));
            }
        }
        for (r, &acc) in acc.iter().enumerate() {
            *o.add(r) = reduce16(acc);
        }
    }
}

/// Columns of a segment of [`f16_conv`]: a row tile's segment converted
/// to f32 takes `ZR * ZSEG * 4` = 8 KiB.
const ZSEG: usize = 256;
/// Vectors of a pass of [`f16_conv`] (the default prefill batch): their
/// partial sums for a row tile, `ZR * ZV` registers' worth (16 KiB), wait
/// on the stack between segments.
const ZV: usize = 32;

/// F16 (or BF16) weights times a batch, each row tile's weights converted
/// to f32 once per segment of [`ZSEG`] columns for all the vectors of a
/// pass (up to [`ZV`]), instead of once per tile of [`ZC`] vectors: the
/// conversion takes the ports the multiply-adds need on Intel. Each
/// (row, vector)'s sixteen partial sums take the same elements in the
/// same order as in [`z16_tile`], so the results are its bits.
///
/// # Safety
/// The CPU has the set's features; `check_mat` accepted the arguments.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn f16_conv<const BF: bool>(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    let cols = a.cols;
    let rb = 2 * cols;
    let z = _mm512_setzero_ps();
    let mut wf = [[0f32; ZSEG]; ZR];
    let mut sums = [[z; ZV]; ZR];
    let mut v0 = 0;
    while v0 < a.n {
        let nv = (a.n - v0).min(ZV);
        let mut r0 = 0;
        while r0 < rows {
            let nr = (rows - r0).min(ZR);
            for s in sums.iter_mut().take(nr) {
                s[..nv].fill(z);
            }
            let mut s0 = 0;
            while s0 < cols {
                let ns = (cols - s0).min(ZSEG);
                // SAFETY: rows r0..r0 + nr, columns s0..s0 + ns are inside
                // the checked weights (the last partial chunk by masked
                // loads); the prefetched next segment is a hint.
                unsafe {
                    for (r, wf) in wf.iter_mut().enumerate().take(nr) {
                        let row = w.as_ptr().add((r0 + r) * rb + 2 * s0);
                        let next = if s0 + ns < cols {
                            row.wrapping_add(2 * ns)
                        } else {
                            w.as_ptr().wrapping_add((r0 + nr + r) * rb)
                        };
                        prefetch_bytes(next, 2 * ZSEG, Prefetch::L1);
                        let mut i = 0;
                        while i + 16 <= ns {
                            let h = _mm256_loadu_si256(row.add(2 * i) as *const __m256i);
                            _mm512_storeu_ps(wf.as_mut_ptr().add(i), widen::<BF>(h));
                            i += 16;
                        }
                        if i < ns {
                            let m: __mmask16 = (1 << (ns - i)) - 1;
                            let h = _mm256_maskz_loadu_epi16(m, row.add(2 * i) as *const i16);
                            _mm512_storeu_ps(wf.as_mut_ptr().add(i), widen::<BF>(h));
                        }
                    }
                }
                let mut c0 = 0;
                while c0 < nv {
                    let nc = (nv - c0).min(ZC);
                    // SAFETY: vectors v0 + c0.. and columns s0..s0 + ns are
                    // inside the checked activations; `wf` and `sums` hold
                    // the tile.
                    let (wp, xp, sp) = unsafe {
                        (
                            wf.as_ptr() as *const f32,
                            a.x.as_ptr().add((v0 + c0) * cols + s0),
                            (sums.as_mut_ptr() as *mut __m512).add(c0),
                        )
                    };
                    macro_rules! go {
                        ($r:literal, $c:literal) => {
                            // SAFETY: as above.
                            unsafe { conv_tile::<$r, $c>(wp, xp, cols, ns, sp) }
                        };
                    }
                    by_shape!(nr, nc, go);
                    c0 += nc;
                }
                s0 += ns;
            }
            for (r, s) in sums.iter().enumerate().take(nr) {
                for (v, &acc) in s.iter().enumerate().take(nv) {
                    // SAFETY: AVX-512F (this function's contract).
                    out[(v0 + v) * rows + r0 + r] = unsafe { reduce16(acc) };
                }
            }
            r0 += nr;
        }
        v0 += nv;
    }
}

/// One tile of [`f16_conv`]: `R` converted rows of a segment (row `r` at
/// `w + r * ZSEG`, `ns` columns) times `C` vectors (vector `c` at
/// `x + c * cols`, from the segment's first column), added to the sums at
/// `s + r * ZV + c`; the last partial chunk updates only its lanes.
///
/// # Safety
/// The CPU has the set's features; the rows, vectors and sums are in
/// bounds.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn conv_tile<const R: usize, const C: usize>(
    w: *const f32,
    x: *const f32,
    cols: usize,
    ns: usize,
    s: *mut __m512,
) {
    // SAFETY: (for the whole body) offsets stay within the tile the caller
    // vouches for; the last partial chunk uses masked loads.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); C]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            for (c, acc) in acc.iter_mut().enumerate() {
                *acc = *s.add(r * ZV + c);
            }
        }
        let n16 = ns / 16;
        for i in 0..n16 {
            let mut xv = [_mm512_setzero_ps(); C];
            for (c, xv) in xv.iter_mut().enumerate() {
                *xv = _mm512_loadu_ps(x.add(c * cols + 16 * i));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let wv = _mm512_loadu_ps(w.add(r * ZSEG + 16 * i));
                for (acc, &xv) in acc.iter_mut().zip(&xv) {
                    *acc = _mm512_fmadd_ps(wv, xv, *acc);
                }
            }
        }
        let rem = ns % 16;
        if rem != 0 {
            let m: __mmask16 = (1 << rem) - 1;
            let mut xv = [_mm512_setzero_ps(); C];
            for (c, xv) in xv.iter_mut().enumerate() {
                *xv = _mm512_maskz_loadu_ps(m, x.add(c * cols + 16 * n16));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let wv = _mm512_maskz_loadu_ps(m, w.add(r * ZSEG + 16 * n16));
                for (acc, &xv) in acc.iter_mut().zip(&xv) {
                    *acc = _mm512_mask3_fmadd_ps(wv, xv, *acc, m);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (c, &acc) in acc.iter().enumerate() {
                *s.add(r * ZV + c) = acc;
            }
        }
    }
}

/// Attention scores against a Q8_0 key cache.
fn kv_scores_q8_0(keys: &[u8], nb: usize, qd: &[f32], qsum: &[i32], qs: &[i8], out: &mut [f32]) {
    /// # Safety
    /// The set's CPU features; lengths checked.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn imp(keys: &[u8], nb: usize, qd: &[f32], qsum: &[i32], qs: &[i8], out: &mut [f32]) {
        // SAFETY: this function's contract.
        unsafe { legacy::kv_scores::<Avx512>(keys, nb, qd, qsum, qs, out) }
    }
    run_kv_scores(supported, imp, keys, nb, qd, qsum, qs, out)
}
