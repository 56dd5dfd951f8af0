//! x86-64 kernel sets: `avx2` (AVX2, FMA, F16C) and `avx512` (AVX-512 F, BW,
//! VL and VNNI).
//!
//! Both sets share one source (the `x86_set!` macro below), compiled twice
//! with different target features; they differ in the int8 dot product of a
//! pair of blocks (`vpmaddubsw` + `vpmaddwd` with AVX2, `vpdpbusd` with VNNI),
//! in tile sizes (AVX-512VL has 32 vector registers), and in two extra paths
//! of the `avx512` set, with 512-bit vectors: its Q4_0 matrix-vector product
//! (`q4_matvec`), which takes it from compute-bound to memory-bound on AMD
//! Zen 4, and its F16 batched products (`f16_mat`, prefill), where one
//! `__m512` holds exactly the sixteen partial sums of a (row, vector). Elsewhere vectors are 256
//! bits wide: the structure the scalar reference fixes is two `__m256` per
//! (row, vector) for F32/F16 (sixteen partial sums) and one for Q8_0/Q4_0
//! (eight, one per block residue).
//!
//! Matrix-vector products (one activation vector) run one row at a time:
//! the rows are contiguous, so the weights are read as a single sequential
//! stream, which the hardware prefetcher follows at full bandwidth. Tiles of
//! several rows are several short streams, which it does not: on this
//! machine 4-row tiles reached only a third of the memory bandwidth on
//! matrices larger than the caches. The exception is the `avx512` F16
//! product, whose one row is a single chain of dependent multiply-adds
//! (latency-bound below 40 GB/s): it runs 4-row tiles and prefetches the
//! tiles ahead itself, as one sequential stream. Batched products (prefill)
//! use tiles of up to 4 rows x 3 vectors (4 x 6 for `avx512` F16).
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
//! `P`) is prepared once per kernel call on the stack (`Prep`), not once per
//! row.
//!
//! The interleaved types of [`crate::repack`] have their own kernels (file
//! `x86_x16.rs`, for both sets): 16 rows side by side, one per 32-bit lane,
//! so there is nothing to reduce or shuffle.
//!
//! Every function here is `unsafe` and compiled with `#[target_feature]`; the
//! tables are handed out by [`super::available`] / [`super::active`] only
//! when [`avx2_supported`] / [`avx512_supported`] say the CPU has them, so no
//! instruction the CPU lacks is ever executed.

use super::{check_mat, Acts, Kernels, ValueRows};
use crate::tensor::{BAND, QK};

/// The AVX2 + FMA + F16C kernel set.
pub(super) static AVX2: Kernels = Kernels {
    name: "avx2",
    f32: avx2_f32,
    f16: avx2_f16,
    q8_0: avx2_q8_0,
    q4_0: avx2_q4_0,
    q8_0x16: avx2_q8_0x16,
    q4_0x16: avx2_q4_0x16,
    fast_interleaved: true,
    quantize: avx2_quantize,
    weighted_sum: avx2_weighted_sum,
};

/// The AVX-512 (F, BW, VL, VNNI) kernel set.
pub(super) static AVX512: Kernels = Kernels {
    name: "avx512",
    f32: avx512_f32,
    f16: avx512_f16,
    q8_0: avx512_q8_0,
    q4_0: avx512_q4_0,
    q8_0x16: avx512_q8_0x16,
    q4_0x16: avx512_q4_0x16,
    fast_interleaved: true,
    quantize: avx512_quantize,
    weighted_sum: avx512_weighted_sum,
};

/// Whether this CPU runs the `avx2` set.
pub(super) fn avx2_supported() -> bool {
    #[cfg(feature = "std")]
    {
        std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(feature = "std"))]
    {
        cfg!(all(
            target_feature = "avx2",
            target_feature = "fma",
            target_feature = "f16c"
        ))
    }
}

/// Whether this CPU runs the `avx512` set.
pub(super) fn avx512_supported() -> bool {
    #[cfg(feature = "std")]
    {
        avx2_supported()
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(feature = "std"))]
    {
        avx2_supported()
            && cfg!(all(
                target_feature = "avx512f",
                target_feature = "avx512bw",
                target_feature = "avx512vl",
                target_feature = "avx512vnni"
            ))
    }
}

entries!(
    avx2_supported,
    avx2,
    avx2_f32,
    avx2_f16,
    avx2_q8_0,
    avx2_q4_0,
    avx2_quantize
);
entries!(
    avx512_supported,
    avx512,
    avx512_f32,
    avx512_f16,
    avx512_q8_0,
    avx512_q4_0,
    avx512_quantize
);

/// Runs `$tile::<R, C>` over every tile of `rows` rows x `a.n`
/// vectors, the vectors outermost.
macro_rules! over_tiles {
    ($rmax:expr, $cmax:expr, $rows:expr, $n:expr, $tile:ident, ($($arg:expr),*)) => {{
        let mut c0 = 0;
        while c0 < $n {
            let nc = ($n - c0).min($cmax);
            let mut r0 = 0;
            while r0 < $rows {
                let nr = ($rows - r0).min($rmax);
                macro_rules! go {
                    ($r:literal, $c:literal) => {
                        $tile::<$r, $c>(r0, c0, $($arg),*)
                    };
                }
                tiles!(nr, nc, go);
                r0 += nr;
            }
            c0 += nc;
        }
    }};
}

/// One kernel set's implementation, compiled with the target features
/// `$feat`. The invocation supplies, compiled with the same features:
/// - `prep_q8(x)`: what to do to raw Q8_0 weight bytes before `pair_q8`;
/// - `pair_q8(x1, x2, a1, a2)` / `pair_q4(...)`: the eight `i32` sums of
///   `x1 * a1 + x2 * a2` over groups of four bytes (the Q4_0 weights are
///   nibbles `0..=15`);
/// - `Q8_SHIFT`: `k` such that `pair_q8` summed over a block exceeds the
///   true dot product by `sum(a) << k` (0: no excess);
/// - `FR`/`FC` and `QR`/`QC`: the largest tiles (rows x vectors) of a batch
///   for the float and the quantized kernels, `FMV`/`QMV` the rows per tile
///   for one vector, and `tiles!`, which expands `$m!(R, C)` for the tile
///   shape `(nr, nc)` (every shape up to the largest);
/// - `q4_matvec(w, a, out, rows)`: an optional special Q4_0 matrix-vector
///   product (`None`: use the generic one).
/// - `f16_mat(w, a, out, rows)`: an optional special F16 kernel (`None`:
///   use the generic tiles).
macro_rules! x86_set {
    ($feat:tt, { $($prims:item)* }) => {
        use core::arch::x86_64::*;
        use core::mem::MaybeUninit;
        use core::ptr::{copy_nonoverlapping, read_unaligned};

        use crate::kernels::Acts;
        use crate::tensor::QK;

        $($prims)*

        /// The block order of the reduced block sums.
        const P: [i32; 8] = [0, 2, 4, 6, 1, 3, 5, 7];
        /// Its inverse.
        const PINV: [i32; 8] = [0, 4, 1, 5, 2, 6, 3, 7];

        /// The fixed reduction tree of the scalar `reduce8` (and, after
        /// adding lanes `j` and `j + 8`, of `reduce16`):
        /// `((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7))`.
        #[inline]
        #[target_feature(enable = $feat)]
        fn reduce8(v: __m256) -> f32 {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let t = _mm_add_ps(s, _mm_shuffle_ps::<0b10_11_00_01>(s, s));
            _mm_cvtss_f32(_mm_add_ss(t, _mm_movehl_ps(t, t)))
        }

        // ---- F32 and F16 ----

        /// `acc + w * x`: fused (one rounding) for F16 weights, a rounded
        /// product then a rounded sum for F32 (as the scalar reference).
        #[inline]
        #[target_feature(enable = $feat)]
        fn madd<const FUSED: bool>(acc: __m256, w: __m256, x: __m256) -> __m256 {
            if FUSED {
                _mm256_fmadd_ps(w, x, acc)
            } else {
                _mm256_add_ps(acc, _mm256_mul_ps(w, x))
            }
        }

        /// One tile of the float kernels: `R` rows from `w` (row `r` at
        /// `w + r * rb`, `cols` elements) times `C` vectors (vector `c` at
        /// `x + c * cols`); `out(r, c)` is stored at `o + c * ldo + r`.
        /// `F16` selects the weight type. Sixteen partial sums per (row,
        /// vector): lanes 0..8 in one register, 8..16 in another.
        ///
        /// # Safety
        /// The CPU has `$feat`; the rows, vectors and outputs are in bounds.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn tile_float<const R: usize, const C: usize, const F16: bool>(
            w: *const u8,
            rb: usize,
            x: *const f32,
            cols: usize,
            o: *mut f32,
            ldo: usize,
        ) {
            // SAFETY (whole body): offsets stay within the R rows of `rb`
            // bytes and the C vectors of `cols` values the caller vouches
            // for; loads are unaligned loads.
            unsafe {
                let load_w = |p: *const u8| -> (__m256, __m256) {
                    if F16 {
                        (
                            _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)),
                            _mm256_cvtph_ps(_mm_loadu_si128(p.add(16) as *const __m128i)),
                        )
                    } else {
                        (
                            _mm256_loadu_ps(p as *const f32),
                            _mm256_loadu_ps(p.add(32) as *const f32),
                        )
                    }
                };
                let eb = if F16 { 2 } else { 4 };
                let z = _mm256_setzero_ps();
                let mut acc = [[(z, z); C]; R];
                let n16 = cols / 16;
                for i in 0..n16 {
                    let mut xv = [(z, z); C];
                    for (c, xv) in xv.iter_mut().enumerate() {
                        let p = x.add(c * cols + 16 * i);
                        *xv = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
                    }
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let (w0, w1) = load_w(w.add(r * rb + 16 * eb * i));
                        for (acc, xv) in acc.iter_mut().zip(&xv) {
                            acc.0 = madd::<F16>(acc.0, w0, xv.0);
                            acc.1 = madd::<F16>(acc.1, w1, xv.1);
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
                        let (w0, w1) = load_w(wt.as_ptr());
                        for (acc, xt) in acc.iter_mut().zip(&xt) {
                            let x0 = _mm256_loadu_ps(xt.as_ptr());
                            let x1 = _mm256_loadu_ps(xt.as_ptr().add(8));
                            acc.0 = madd::<F16>(acc.0, w0, x0);
                            acc.1 = madd::<F16>(acc.1, w1, x1);
                        }
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    for (c, acc) in acc.iter().enumerate() {
                        *o.add(c * ldo + r) = reduce8(_mm256_add_ps(acc.0, acc.1));
                    }
                }
            }
        }

        /// A float tile at rows `r0..`, vectors `c0..`.
        ///
        /// # Safety
        /// As [`tile_float`], for the tile at `(r0, c0)` of a checked call.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn float_at<const R: usize, const C: usize, const F16: bool>(
            r0: usize,
            c0: usize,
            w: &[u8],
            a: &Acts,
            out: &mut [f32],
            rows: usize,
        ) {
            let rb = a.cols * if F16 { 2 } else { 4 };
            // SAFETY: the tile lies inside the checked slices.
            unsafe {
                tile_float::<R, C, F16>(
                    w.as_ptr().add(r0 * rb),
                    rb,
                    a.x.as_ptr().add(c0 * a.cols),
                    a.cols,
                    out.as_mut_ptr().add(c0 * rows + r0),
                    rows,
                )
            }
        }

        /// An F32 tile (see [`float_at`]).
        ///
        /// # Safety
        /// As [`float_at`].
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn f32_at<const R: usize, const C: usize>(
            r0: usize,
            c0: usize,
            w: &[u8],
            a: &Acts,
            out: &mut [f32],
            rows: usize,
        ) {
            // SAFETY: the caller's promise.
            unsafe { float_at::<R, C, false>(r0, c0, w, a, out, rows) }
        }

        /// An F16 tile (see [`float_at`]).
        ///
        /// # Safety
        /// As [`float_at`].
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn f16_at<const R: usize, const C: usize>(
            r0: usize,
            c0: usize,
            w: &[u8],
            a: &Acts,
            out: &mut [f32],
            rows: usize,
        ) {
            // SAFETY: the caller's promise.
            unsafe { float_at::<R, C, true>(r0, c0, w, a, out, rows) }
        }

        /// F32 weights (the `MatFn` contract, arguments checked).
        ///
        /// # Safety
        /// The CPU has `$feat`; `check_mat` accepted the arguments.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn mat_f32(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
            // SAFETY: see `tile_float`; every tile is inside the arguments.
            unsafe {
                if a.n == 1 {
                    over_tiles!(FMV, 1, rows, a.n, f32_at, (w, a, out, rows));
                } else {
                    over_tiles!(FR, FC, rows, a.n, f32_at, (w, a, out, rows));
                }
            }
        }

        /// F16 weights (the `MatFn` contract, arguments checked).
        ///
        /// # Safety
        /// The CPU has `$feat`; `check_mat` accepted the arguments.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn mat_f16(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
            // SAFETY: the caller's promise.
            if unsafe { f16_mat(w, a, out, rows) }.is_some() {
                return;
            }
            // SAFETY: see `tile_float`; every tile is inside the arguments.
            unsafe {
                if a.n == 1 {
                    over_tiles!(FMV, 1, rows, a.n, f16_at, (w, a, out, rows));
                } else {
                    over_tiles!(FR, FC, rows, a.n, f16_at, (w, a, out, rows));
                }
            }
        }

        // ---- Q8_0 and Q4_0 ----

        /// The scales of 8 blocks `bb` bytes apart from `p`, in order `P`.
        ///
        /// # Safety
        /// The CPU has `$feat`; the 8 blocks are readable.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn scales8(p: *const u8, bb: usize) -> __m256 {
            let h = |k: usize| -> u64 {
                // SAFETY: the caller vouches for the 8 blocks.
                let bits = unsafe { read_unaligned(p.add(k * bb) as *const u16) };
                bits as u64
            };
            let lo = h(0) | h(2) << 16 | h(4) << 32 | h(6) << 48;
            let hi = h(1) | h(3) << 16 | h(5) << 32 | h(7) << 48;
            _mm256_cvtph_ps(_mm_set_epi64x(hi as i64, lo as i64))
        }

        /// Reduces the pair sums of blocks (0, 1) and (2, 3) to four
        /// partial sums per block, interleaved.
        #[inline]
        #[target_feature(enable = $feat)]
        fn merge1(a: __m256i, b: __m256i) -> __m256i {
            _mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b))
        }

        /// The second level: the eight block sums, in order `P`.
        #[inline]
        #[target_feature(enable = $feat)]
        fn merge2(a: __m256i, b: __m256i) -> __m256i {
            _mm256_add_epi32(_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b))
        }

        /// The weights of blocks `k` and `k + 1` (`bb` bytes each, values
        /// from byte 2): elements 0..16 of both, then 16..32 of both.
        ///
        /// # Safety
        /// The CPU has `$feat`; both blocks are readable.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn pair_weights<const Q4: bool>(p: *const u8, bb: usize) -> (__m256i, __m256i) {
            // SAFETY: the caller vouches for both blocks.
            unsafe {
                if Q4 {
                    let lo = _mm_loadu_si128(p.add(2) as *const __m128i);
                    let hi = _mm_loadu_si128(p.add(bb + 2) as *const __m128i);
                    let y = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi);
                    let m = _mm256_set1_epi8(0x0f);
                    (_mm256_and_si256(y, m), _mm256_and_si256(_mm256_srli_epi16::<4>(y), m))
                } else {
                    let l0 = _mm_loadu_si128(p.add(2) as *const __m128i);
                    let l1 = _mm_loadu_si128(p.add(bb + 2) as *const __m128i);
                    let h0 = _mm_loadu_si128(p.add(18) as *const __m128i);
                    let h1 = _mm_loadu_si128(p.add(bb + 18) as *const __m128i);
                    (
                        prep_q8(_mm256_inserti128_si256::<1>(_mm256_castsi128_si256(l0), l1)),
                        prep_q8(_mm256_inserti128_si256::<1>(_mm256_castsi128_si256(h0), h1)),
                    )
                }
            }
        }

        /// The activations of blocks `2p` and `2p + 1` of a group at `q`,
        /// laid out as [`pair_weights`] lays out the weights.
        ///
        /// # Safety
        /// The CPU has `$feat`; the 64 bytes are readable.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn pair_acts(q: *const i8) -> (__m256i, __m256i) {
            // SAFETY: the caller vouches for the two blocks.
            let (lo, hi) = unsafe {
                (
                    _mm256_loadu_si256(q as *const __m256i),
                    _mm256_loadu_si256(q.add(32) as *const __m256i),
                )
            };
            (
                _mm256_permute2x128_si256::<0x20>(lo, hi),
                _mm256_permute2x128_si256::<0x31>(lo, hi),
            )
        }

        /// One vector's activations for one group of 8 blocks, prepared
        /// for [`group`]: the pair layout of [`pair_acts`] for the four
        /// pairs, the scales in order `P` and the sums times the excess of
        /// the weights' encoding (`8` for Q4_0, `2^Q8_SHIFT` for Q8_0), in
        /// order `P`.
        #[derive(Clone, Copy)]
        #[repr(C)]
        struct Prep {
            a: [(__m256i, __m256i); 4],
            da: __m256,
            corr: __m256i,
        }

        /// Prepared groups per kernel call (on the stack, 320 bytes each):
        /// enough for one vector of up to 96 * 256 = 24576 columns. Longer
        /// rows (or more vectors) prepare each group as they go.
        const PREP_GROUPS: usize = 96;

        /// Prepares group `k` (of `nb` blocks per vector) of vector `b`.
        ///
        /// # Safety
        /// The CPU has `$feat`; `a` holds quantized vector `b` (checked by
        /// `check_mat`).
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn prep<const Q4: bool>(a: &Acts, b: usize, k: usize, nb: usize) -> Prep {
            let first = b * nb + 8 * k;
            let n = (nb - 8 * k).min(8);
            // SAFETY (whole body): blocks first..first + n of the checked
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
                let shift = if Q4 { 3 } else { Q8_SHIFT };
                let corr = if shift != 0 {
                    let s = _mm256_loadu_si256(s as *const __m256i);
                    _mm256_sll_epi32(_mm256_permutevar8x32_epi32(s, perm), _mm_cvtsi32_si128(shift))
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

        /// Adds one group of 8 blocks to the partial sums `acc` (lanes in
        /// order `P`) of an `R` x `C` tile: row `r`'s group starts at
        /// `w[r]`, blocks are `bb` bytes.
        ///
        /// # Safety
        /// The CPU has `$feat`; every row pointer has 8 blocks behind it;
        /// the activation pointers are valid.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn group<const R: usize, const C: usize, const Q4: bool>(
            w: &[*const u8; R],
            acts: &[*const Prep; C],
            bb: usize,
            acc: &mut [[__m256; C]; R],
        ) {
            // SAFETY (whole body): all reads are within the 8 blocks the
            // caller vouches for.
            unsafe {
                let shift = if Q4 { 3 } else { Q8_SHIFT };
                let mut half = [[[_mm256_setzero_si256(); C]; R]; 2];
                for h in 0..2 {
                    let mut v = [[[_mm256_setzero_si256(); C]; R]; 2];
                    for j in 0..2 {
                        let p = 2 * h + j;
                        for r in 0..R {
                            let (x1, x2) = pair_weights::<Q4>(w[r].add(2 * p * bb), bb);
                            for c in 0..C {
                                let (a1, a2) = (*acts[c]).a[p];
                                v[j][r][c] = if Q4 {
                                    pair_q4(x1, x2, a1, a2)
                                } else {
                                    pair_q8(x1, x2, a1, a2)
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
                    for c in 0..C {
                        let mut dot = merge2(half[0][r][c], half[1][r][c]);
                        if shift != 0 {
                            dot = _mm256_sub_epi32(dot, (*acts[c]).corr);
                        }
                        let s = _mm256_mul_ps(dw, (*acts[c]).da);
                        let prod = _mm256_mul_ps(s, _mm256_cvtepi32_ps(dot));
                        acc[r][c] = _mm256_add_ps(acc[r][c], prod);
                    }
                }
            }
        }

        /// One tile of the quantized kernels at rows `r0..`, vectors `c0..`;
        /// `prepared`, if not empty, holds every group of vectors
        /// `c0..c0 + C` (group `k` of vector `c0 + c` at `c * groups + k`).
        ///
        /// # Safety
        /// The CPU has `$feat`; `check_mat` accepted the arguments and the
        /// tile is inside them.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn quant_at<const R: usize, const C: usize, const Q4: bool>(
            r0: usize,
            c0: usize,
            w: &[u8],
            a: &Acts,
            out: &mut [f32],
            rows: usize,
            prepared: &[Prep],
        ) {
            let bb = if Q4 { 18 } else { 34 };
            let nb = a.cols / QK;
            let groups = nb.div_ceil(8);
            let rb = nb * bb;
            let mut acc = [[_mm256_setzero_ps(); C]; R];
            // SAFETY (whole body): the pointers walk the tile's rows, whose
            // lengths `check_mat` checked; the last partial group reads
            // zero-padded copies instead.
            unsafe {
                let wp = w.as_ptr().add(r0 * rb);
                let mut wr = [wp; R];
                // SAFETY: `Prep` is plain vectors, for which zero bits are valid.
                let mut local: [Prep; C] = core::mem::zeroed();
                let mut wt = [[MaybeUninit::<u8>::uninit(); 8 * 34]; R];
                for k in 0..groups {
                    let n = (nb - 8 * k).min(8);
                    for r in 0..R {
                        wr[r] = wp.add(r * rb + 8 * k * bb);
                        if n < 8 {
                            // The last partial group, zero-padded: zero
                            // blocks have scale 0, so they add +0.
                            let t = wt[r].as_mut_ptr() as *mut u8;
                            t.write_bytes(0, 8 * 34);
                            copy_nonoverlapping(wr[r], t, n * bb);
                            wr[r] = t;
                        }
                    }
                    if prepared.is_empty() {
                        for (c, l) in local.iter_mut().enumerate() {
                            *l = prep::<Q4>(a, c0 + c, k, nb);
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
                    group::<R, C, Q4>(&wr, &ap, bb, &mut acc);
                }
                let pinv = _mm256_loadu_si256(PINV.as_ptr() as *const __m256i);
                let o = out.as_mut_ptr().add(c0 * rows + r0);
                for (r, acc) in acc.iter().enumerate() {
                    for (c, &acc) in acc.iter().enumerate() {
                        *o.add(c * rows + r) = reduce8(_mm256_permutevar8x32_ps(acc, pinv));
                    }
                }
            }
        }

        /// The quantized kernels' driver: vectors in chunks of `cmax`, each
        /// chunk's activations prepared once (when they fit), then every
        /// tile of rows (at most `rmax`).
        ///
        /// # Safety
        /// The CPU has `$feat`; `check_mat` accepted the arguments.
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn mat_quant<const Q4: bool>(
            w: &[u8],
            a: &Acts,
            out: &mut [f32],
            rows: usize,
            rmax: usize,
            cmax: usize,
        ) {
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
                            buf[c * groups + k].write(unsafe { prep::<Q4>(a, c0 + c, k, nb) });
                        }
                    }
                    // SAFETY: the first nc * groups entries were written above.
                    unsafe { core::slice::from_raw_parts(buf.as_ptr() as *const Prep, nc * groups) }
                } else {
                    &[]
                };
                let mut r0 = 0;
                while r0 < rows {
                    let nr = (rows - r0).min(rmax);
                    macro_rules! go {
                        ($r:literal, $c:literal) => {
                            // SAFETY: the tile is inside the checked arguments.
                            unsafe { quant_at::<$r, $c, Q4>(r0, c0, w, a, out, rows, prepared) }
                        };
                    }
                    tiles!(nr, nc, go);
                    r0 += nr;
                }
                c0 += nc;
            }
        }

        /// Q8_0 weights (the `MatFn` contract, arguments checked).
        ///
        /// # Safety
        /// The CPU has `$feat`; `check_mat` accepted the arguments.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn mat_q8_0(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
            let (rmax, cmax) = if a.n == 1 { (QMV, 1) } else { (QR, QC) };
            // SAFETY: the caller's promise.
            unsafe { mat_quant::<false>(w, a, out, rows, rmax, cmax) }
        }

        /// Q4_0 weights (the `MatFn` contract, arguments checked).
        ///
        /// # Safety
        /// The CPU has `$feat`; `check_mat` accepted the arguments.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn mat_q4_0(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
            // SAFETY: the caller's promise.
            if a.n == 1 && unsafe { q4_matvec(w, a, out, rows) }.is_some() {
                return;
            }
            let (rmax, cmax) = if a.n == 1 { (QMV, 1) } else { (QR, QC) };
            // SAFETY: the caller's promise.
            unsafe { mat_quant::<true>(w, a, out, rows, rmax, cmax) }
        }

        // ---- quantizing activations ----

        /// Bit-identical to `scalar::quantize` (lengths checked).
        ///
        /// # Safety
        /// The CPU has `$feat`; `d`, `sum` hold `x.len() / 32` blocks and `q`
        /// holds `x.len()` values.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn quantize(x: &[f32], d: &mut [f32], sum: &mut [i32], q: &mut [i8]) {
            let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
            let half = _mm256_set1_ps(0.5);
            let one = _mm256_set1_ps(1.0);
            let (lo, hi) = (_mm256_set1_ps(-127.0), _mm256_set1_ps(127.0));
            let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
            for b in 0..x.len() / QK {
                // SAFETY: block b is inside `x` and `q` (lengths checked).
                let v = unsafe {
                    let p = x.as_ptr().add(b * QK);
                    [
                        _mm256_loadu_ps(p),
                        _mm256_loadu_ps(p.add(8)),
                        _mm256_loadu_ps(p.add(16)),
                        _mm256_loadu_ps(p.add(24)),
                    ]
                };
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
                let p = _mm256_packs_epi16(
                    _mm256_packs_epi32(r[0], r[1]),
                    _mm256_packs_epi32(r[2], r[3]),
                );
                let p = _mm256_permutevar8x32_epi32(p, order);
                // SAFETY: block b is inside `q`.
                unsafe { _mm256_storeu_si256(q.as_mut_ptr().add(b * QK) as *mut __m256i, p) };
                d[b] = scale;
                sum[b] = _mm_cvtsi128_si32(s1);
            }
        }
    };
}

/// The AVX2 set: products by `vpmaddubsw` (unsigned x signed bytes to
/// saturating `i16` pairs) and `vpmaddwd`.
mod avx2 {
    x86_set!("avx2,fma,f16c", {
        /// Largest float tile (rows x vectors) for a batch: 16 registers.
        const FR: usize = 2;
        const FC: usize = 2;
        /// Largest quantized tile for a batch.
        const QR: usize = 4;
        const QC: usize = 2;
        /// Rows per tile for one vector: one row at a time keeps the
        /// weights one sequential stream, which the hardware prefetcher
        /// follows at full bandwidth (several rows at once are several
        /// short streams, which it does not).
        const FMV: usize = 1;
        const QMV: usize = 1;

        /// Expands `$m!(R, C)` for the tile shape `(nr, nc)`.
        macro_rules! tiles {
            ($nr:expr, $nc:expr, $m:ident) => {
                match ($nr, $nc) {
                    (4, 2) => $m!(4, 2),
                    (3, 2) => $m!(3, 2),
                    (2, 2) => $m!(2, 2),
                    (1, 2) => $m!(1, 2),
                    (4, 1) => $m!(4, 1),
                    (3, 1) => $m!(3, 1),
                    (2, 1) => $m!(2, 1),
                    _ => $m!(1, 1),
                }
            };
        }

        /// No special Q4_0 matrix-vector product.
        ///
        /// # Safety
        /// None needed.
        #[inline]
        unsafe fn q4_matvec(_: &[u8], _: &Acts, _: &mut [f32], _: usize) -> Option<()> {
            None
        }

        /// No special F16 kernel.
        ///
        /// # Safety
        /// None needed.
        #[inline]
        unsafe fn f16_mat(_: &[u8], _: &Acts, _: &mut [f32], _: usize) -> Option<()> {
            None
        }

        /// Signed weights: the sign trick needs them as they are.
        const Q8_SHIFT: i32 = 0;

        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        fn prep_q8(x: __m256i) -> __m256i {
            x
        }

        /// `|w| * (a * sign(w))`: at most 2 * 128 * 127 per `i16`, so
        /// `vpmaddubsw` never saturates (activations are in -127..=127).
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        fn pair_q8(x1: __m256i, x2: __m256i, a1: __m256i, a2: __m256i) -> __m256i {
            let ones = _mm256_set1_epi16(1);
            let p1 = _mm256_maddubs_epi16(_mm256_abs_epi8(x1), _mm256_sign_epi8(a1, x1));
            let p2 = _mm256_maddubs_epi16(_mm256_abs_epi8(x2), _mm256_sign_epi8(a2, x2));
            _mm256_add_epi32(_mm256_madd_epi16(p1, ones), _mm256_madd_epi16(p2, ones))
        }

        /// Nibbles times activations: at most 4 * 15 * 128 per `i16` sum.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        fn pair_q4(x1: __m256i, x2: __m256i, a1: __m256i, a2: __m256i) -> __m256i {
            let p = _mm256_add_epi16(_mm256_maddubs_epi16(x1, a1), _mm256_maddubs_epi16(x2, a2));
            _mm256_madd_epi16(p, _mm256_set1_epi16(1))
        }
    });
}

/// The AVX-512 set: products by VNNI's `vpdpbusd` on 256-bit vectors (with
/// AVX-512VL's 32 registers), which takes unsigned x signed bytes: Q8_0
/// weights are offset by 128 (`w ^ 0x80`) and the excess `128 * sum(a)` is
/// subtracted per block.
///
/// The AVX-512 intrinsics are stable since Rust 1.89; the crate's declared
/// `rust-version` is older, hence the `allow` (remove it with the bump).
#[allow(clippy::incompatible_msrv)]
mod avx512 {
    x86_set!("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", {
        /// Largest float tile (rows x vectors) for a batch: 32 registers.
        const FR: usize = 4;
        const FC: usize = 3;
        /// Largest quantized tile for a batch.
        const QR: usize = 4;
        const QC: usize = 3;
        /// Rows per tile for one vector (see the AVX2 set).
        const FMV: usize = 1;
        const QMV: usize = 1;

        /// Expands `$m!(R, C)` for the tile shape `(nr, nc)`.
        macro_rules! tiles {
            ($nr:expr, $nc:expr, $m:ident) => {
                match ($nr, $nc) {
                    (4, 4) => $m!(4, 4),
                    (3, 4) => $m!(3, 4),
                    (2, 4) => $m!(2, 4),
                    (1, 4) => $m!(1, 4),
                    (4, 3) => $m!(4, 3),
                    (3, 3) => $m!(3, 3),
                    (2, 3) => $m!(2, 3),
                    (1, 3) => $m!(1, 3),
                    (4, 2) => $m!(4, 2),
                    (3, 2) => $m!(3, 2),
                    (2, 2) => $m!(2, 2),
                    (1, 2) => $m!(1, 2),
                    (4, 1) => $m!(4, 1),
                    (3, 1) => $m!(3, 1),
                    (2, 1) => $m!(2, 1),
                    _ => $m!(1, 1),
                }
            };
        }

        // ---- Q4_0 matrix-vector product with 512-bit vectors ----

        /// Word indices (`vpermt2w`) of Q4_0 blocks 0..4 values in 128 bytes
        /// from the group start: block `k`'s 8 words start at word `9k + 1`.
        static Z4_QS_A: [u16; 32] = {
            let mut t = [0u16; 32];
            let mut i = 0;
            while i < 32 {
                t[i] = (9 * (i / 8) + 1 + i % 8) as u16;
                i += 1;
            }
            t
        };

        /// The same for blocks 4..8, from the loads at bytes 64 (words
        /// 32..64, indices 0..32) and 80 (words 40..72, indices 32..64).
        static Z4_QS_B: [u16; 32] = {
            let mut t = [0u16; 32];
            let mut i = 0;
            while i < 32 {
                let w = 9 * (4 + i / 8) + 1 + i % 8;
                t[i] = if w < 64 { w - 32 } else { 32 + w - 40 } as u16;
                i += 1;
            }
            t
        };

        /// Word indices of the 8 scales, in order `Z4_ORDER`.
        static Z4_SCALES: [u16; 32] = {
            let mut t = [0u16; 32];
            let mut j = 0;
            while j < 8 {
                t[j] = 9 * Z4_ORDER[j] as u16;
                j += 1;
            }
            t
        };

        /// Bytes ahead of the current group that [`q4_matvec`] prefetches.
        const Z4_PREFETCH: usize = 4096;

        /// The block order of the reduced sums of [`z4_group`].
        const Z4_ORDER: [usize; 8] = [0, 4, 1, 5, 2, 6, 3, 7];
        /// Its inverse.
        const Z4_INV: [i32; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

        /// One vector's activations for one group, laid out for
        /// [`z4_group`]: elements 0..16 of blocks 0..4, 16..32 of blocks
        /// 0..4, the same for blocks 4..8; scales and `8 * sum` in order
        /// `Z4_ORDER`.
        #[derive(Clone, Copy)]
        #[repr(C)]
        struct Z4Prep {
            a: [__m512i; 4],
            da: __m256,
            corr: __m256i,
        }

        /// Prepares group `k` of vector `b` for [`z4_group`].
        ///
        /// # Safety
        /// As `prep`.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn z4_prep(a: &Acts, b: usize, k: usize, nb: usize) -> Z4Prep {
            // SAFETY: as `prep` (the same blocks, the same padding).
            unsafe {
                let p = prep::<true>(a, b, k, nb);
                // `prep` holds, for pair j: (elements 0..16 of blocks 2j,
                // 2j+1), (16..32 of them); order P scales.
                let lo = |j: usize| p.a[j].0;
                let hi = |j: usize| p.a[j].1;
                let cat =
                    |x: __m256i, y: __m256i| _mm512_inserti64x4::<1>(_mm512_castsi256_si512(x), y);
                // Scales and corrections: order P to natural to Z4_ORDER.
                let pinv = _mm256_loadu_si256(PINV.as_ptr() as *const __m256i);
                let nat_d = _mm256_permutevar8x32_ps(p.da, pinv);
                let nat_c = _mm256_permutevar8x32_epi32(p.corr, pinv);
                let z = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
                Z4Prep {
                    a: [
                        cat(lo(0), lo(1)),
                        cat(hi(0), hi(1)),
                        cat(lo(2), lo(3)),
                        cat(hi(2), hi(3)),
                    ],
                    da: _mm256_permutevar8x32_ps(nat_d, z),
                    corr: _mm256_permutevar8x32_epi32(nat_c, z),
                }
            }
        }

        /// The 8 block dot products (order `Z4_ORDER`) of one Q4_0 group at
        /// `p` (144 readable bytes) with prepared activations.
        ///
        /// # Safety
        /// The CPU has the set's features; the group is readable.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn z4_group(p: *const u8, a: &Z4Prep) -> (__m256i, __m256) {
            // SAFETY: the three loads cover bytes 0..144 of the group.
            unsafe {
                let ld = |o: usize| _mm512_loadu_si512(p.add(o) as *const _);
                let idx = |t: &[u16; 32]| _mm512_loadu_si512(t.as_ptr() as *const _);
                let (z0, z1, z2) = (ld(0), ld(64), ld(80));
                // Blocks 0..4 and 4..8: the 16 value bytes of each, in the
                // order of [`prep`]'s halves... as pairs (0, 1), (2, 3) of
                // each 256-bit half.
                let xa = _mm512_permutex2var_epi16(z0, idx(&Z4_QS_A), z1);
                let xb = _mm512_permutex2var_epi16(z1, idx(&Z4_QS_B), z2);
                let m = _mm512_set1_epi8(0x0f);
                let nib = |x: __m512i| {
                    (
                        _mm512_and_si512(x, m),
                        _mm512_and_si512(_mm512_srli_epi16::<4>(x), m),
                    )
                };
                let (la, ha) = nib(xa);
                let (lb, hb) = nib(xb);
                let z = _mm512_setzero_si512();
                let va = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(z, la, a.a[0]), ha, a.a[1]);
                let vb = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(z, lb, a.a[2]), hb, a.a[3]);
                // 128-bit chunk k of va: block k, 4 partial sums; of vb:
                // block 4 + k.
                let mm =
                    _mm512_add_epi32(_mm512_unpacklo_epi32(va, vb), _mm512_unpackhi_epi32(va, vb));
                let t = _mm512_add_epi32(mm, _mm512_shuffle_epi32::<0b01_00_11_10>(mm));
                let pick = _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 0, 0, 0, 0, 0, 0, 0, 0);
                let d = _mm512_castsi512_si256(_mm512_permutexvar_epi32(pick, t));
                let dw = _mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_permutex2var_epi16(
                    z0,
                    idx(&Z4_SCALES),
                    z1,
                )));
                (d, dw)
            }
        }

        /// Q4_0 matrix-vector product, one row at a time, 512-bit vectors;
        /// `None` when the row is too long for the prepared activations.
        ///
        /// # Safety
        /// The CPU has the set's features; `check_mat` accepted the
        /// arguments and `a.n == 1`.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn q4_matvec(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) -> Option<()> {
            let nb = a.cols / QK;
            let groups = nb.div_ceil(8);
            if groups > PREP_GROUPS / 2 {
                return None;
            }
            let mut buf = [MaybeUninit::<Z4Prep>::uninit(); PREP_GROUPS / 2];
            for (k, b) in buf.iter_mut().take(groups).enumerate() {
                // SAFETY: vector 0 is in the checked batch.
                b.write(unsafe { z4_prep(a, 0, k, nb) });
            }
            // SAFETY: the first `groups` entries were written above.
            let prepared =
                unsafe { core::slice::from_raw_parts(buf.as_ptr() as *const Z4Prep, groups) };
            let rb = nb * 18;
            let full = nb / 8;
            let inv = _mm256_setr_epi32(
                Z4_INV[0], Z4_INV[1], Z4_INV[2], Z4_INV[3], Z4_INV[4], Z4_INV[5], Z4_INV[6],
                Z4_INV[7],
            );
            for (r, o) in out.iter_mut().enumerate().take(rows) {
                let mut acc = _mm256_setzero_ps();
                // SAFETY: row r is inside the checked weights; the last
                // partial group is read from a zero-padded copy.
                unsafe {
                    let row = w.as_ptr().add(r * rb);
                    let mut t = [0u8; 8 * 18 + 64];
                    for (k, pa) in prepared.iter().enumerate() {
                        let g = if k < full {
                            row.add(144 * k)
                        } else {
                            copy_nonoverlapping(
                                row.add(144 * k),
                                t.as_mut_ptr(),
                                (nb - 8 * k) * 18,
                            );
                            t.as_ptr()
                        };
                        if Z4_PREFETCH > 0 {
                            let f = (g as *const i8).wrapping_add(Z4_PREFETCH);
                            _mm_prefetch::<_MM_HINT_T0>(f);
                            _mm_prefetch::<_MM_HINT_T0>(f.wrapping_add(64));
                            _mm_prefetch::<_MM_HINT_T0>(f.wrapping_add(128));
                        }
                        let (d, dw) = z4_group(g, pa);
                        let dot = _mm256_sub_epi32(d, pa.corr);
                        let s = _mm256_mul_ps(dw, pa.da);
                        acc = _mm256_add_ps(acc, _mm256_mul_ps(s, _mm256_cvtepi32_ps(dot)));
                    }
                }
                *o = reduce8(_mm256_permutevar8x32_ps(acc, inv));
            }
            Some(())
        }

        // ---- F16 with 512-bit vectors ----

        /// Largest F16 tile (rows x vectors) of a batch: 24 accumulators, 6
        /// activation vectors and a converted weight vector in 32 registers.
        const ZR: usize = 4;
        const ZC: usize = 6;
        /// One F16 tile with 512-bit vectors: `R` rows from `w` (row `r` at
        /// `w + r * rb`, `cols` elements) times `C` vectors (vector `c` at
        /// `x + c * cols`); `out(r, c)` is stored at `o + c * ldo + r`. The
        /// sixteen partial sums of a (row, vector) are the lanes of one
        /// `__m512`: lane `j` takes elements `16 i + j` in order, by fused
        /// multiply-adds, as in the scalar `dot_f16`.
        ///
        /// # Safety
        /// The CPU has the set's features; the rows, vectors and outputs are
        /// in bounds.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn z16_tile<const R: usize, const C: usize>(
            w: *const u8,
            rb: usize,
            x: *const f32,
            cols: usize,
            o: *mut f32,
            ldo: usize,
        ) {
            // SAFETY (whole body): offsets stay within the R rows of `rb`
            // bytes and the C vectors of `cols` values the caller vouches
            // for; the last partial chunk uses masked loads, which do not
            // touch the masked-off elements.
            unsafe {
                let z = _mm512_setzero_ps();
                let mut acc = [[z; C]; R];
                let n16 = cols / 16;
                for i in 0..n16 {
                    let mut xv = [z; C];
                    for (c, xv) in xv.iter_mut().enumerate() {
                        *xv = _mm512_loadu_ps(x.add(c * cols + 16 * i));
                    }
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let p = w.add(r * rb + 32 * i) as *const __m256i;
                        let wv = _mm512_cvtph_ps(_mm256_loadu_si256(p));
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
                        let wv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
                        for (acc, &xv) in acc.iter_mut().zip(&xv) {
                            *acc = _mm512_mask3_fmadd_ps(wv, xv, *acc, m);
                        }
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    for (c, &acc) in acc.iter().enumerate() {
                        // Lanes j + 8 onto lanes j (as `reduce16`), then
                        // the tree of `reduce8`.
                        let lo = _mm512_castps512_ps256(acc);
                        let hi = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc));
                        let s = _mm256_add_ps(lo, _mm256_castpd_ps(hi));
                        *o.add(c * ldo + r) = reduce8(s);
                    }
                }
            }
        }

        /// F16 weights times a batch with 512-bit vectors (the `MatFn`
        /// contract): tiles of up to `ZR` rows x `ZC` vectors, the rows
        /// outermost (a tile's rows stay in L1 while the vectors pass).
        /// `None` for one vector: the generic path reads one row at a time,
        /// a single sequential stream, which the hardware prefetcher follows
        /// at full bandwidth (several rows at once measured slower on
        /// matrices larger than the caches: 25 against 31.6 GB/s).
        ///
        /// # Safety
        /// The CPU has the set's features; `check_mat` accepted the arguments.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn f16_mat(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) -> Option<()> {
            if a.n == 1 {
                return None;
            }
            let rb = 2 * a.cols;
            let mut r0 = 0;
            while r0 < rows {
                let nr = (rows - r0).min(ZR);
                let mut c0 = 0;
                while c0 < a.n {
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
                            unsafe { z16_tile::<$r, $c>(wp, rb, xp, a.cols, op, rows) }
                        };
                    }
                    macro_rules! by_cols {
                        ($r:literal) => {
                            match nc {
                                6 => go!($r, 6),
                                5 => go!($r, 5),
                                4 => go!($r, 4),
                                3 => go!($r, 3),
                                2 => go!($r, 2),
                                _ => go!($r, 1),
                            }
                        };
                    }
                    match nr {
                        4 => by_cols!(4),
                        3 => by_cols!(3),
                        2 => by_cols!(2),
                        _ => by_cols!(1),
                    }
                    c0 += nc;
                }
                r0 += nr;
            }
            Some(())
        }

        /// `vpdpbusd` needs the weights unsigned: `w + 128`, an excess of
        /// `128 * sum(a) = sum(a) << 7` per block.
        const Q8_SHIFT: i32 = 7;

        #[inline]
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        fn prep_q8(x: __m256i) -> __m256i {
            _mm256_xor_si256(x, _mm256_set1_epi8(-128))
        }

        #[inline]
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        fn pair_q8(x1: __m256i, x2: __m256i, a1: __m256i, a2: __m256i) -> __m256i {
            let s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), x1, a1);
            _mm256_dpbusd_epi32(s, x2, a2)
        }

        #[inline]
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        fn pair_q4(x1: __m256i, x2: __m256i, a1: __m256i, a2: __m256i) -> __m256i {
            let s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), x1, a1);
            _mm256_dpbusd_epi32(s, x2, a2)
        }
    });
}

/// The scalar weighted sum, compiled for AVX2 (the compiler's vectors
/// widen; the operations, element by element, stay the same).
fn avx2_weighted_sum(att: &[f32], v: ValueRows, out: &mut [f32]) {
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn imp(att: &[f32], v: ValueRows, out: &mut [f32]) {
        super::scalar::weighted_sum_rows(att, v, out)
    }
    debug_assert!(avx2_supported());
    // SAFETY: the table holding this function is handed out only on CPUs
    // with AVX2; the body is safe code (it checks its slices).
    unsafe { imp(att, v, out) }
}

/// The scalar weighted sum, compiled for AVX-512.
fn avx512_weighted_sum(att: &[f32], v: ValueRows, out: &mut [f32]) {
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn imp(att: &[f32], v: ValueRows, out: &mut [f32]) {
        super::scalar::weighted_sum_rows(att, v, out)
    }
    debug_assert!(avx512_supported());
    // SAFETY: as for AVX2 above, with AVX-512.
    unsafe { imp(att, v, out) }
}

/// Interleaved Q8_0 weights, AVX2 (the `MatFn` contract).
fn avx2_q8_0x16(w: &[u8], a: &Acts, out: &mut [f32]) {
    let rows = check_mat(w, a, out, QK, 34, true);
    assert!(
        rows.is_multiple_of(BAND),
        "kernel: rows are not whole bands"
    );
    debug_assert!(avx2_supported());
    // SAFETY: as for the AVX-512 kernels below.
    unsafe { x16::avx2::mat::<false>(w, a, out, rows) }
}

/// Interleaved Q4_0 weights, AVX2 (the `MatFn` contract).
fn avx2_q4_0x16(w: &[u8], a: &Acts, out: &mut [f32]) {
    let rows = check_mat(w, a, out, QK, 18, true);
    assert!(
        rows.is_multiple_of(BAND),
        "kernel: rows are not whole bands"
    );
    debug_assert!(avx2_supported());
    // SAFETY: as for the AVX-512 kernels below.
    unsafe { x16::avx2::mat::<true>(w, a, out, rows) }
}

/// Interleaved Q8_0 weights, AVX-512 (the `MatFn` contract).
fn avx512_q8_0x16(w: &[u8], a: &Acts, out: &mut [f32]) {
    let rows = check_mat(w, a, out, QK, 34, true);
    assert!(
        rows.is_multiple_of(BAND),
        "kernel: rows are not whole bands"
    );
    debug_assert!(avx512_supported());
    // SAFETY: as for the plain kernels (`entries!`): the table holding this
    // function is handed out only on CPUs with the set's features, and
    // `check_mat` checked the slices; the rows are whole bands.
    unsafe { x16::mat::<false>(w, a, out, rows) }
}

/// Interleaved Q4_0 weights, AVX-512 (the `MatFn` contract).
fn avx512_q4_0x16(w: &[u8], a: &Acts, out: &mut [f32]) {
    let rows = check_mat(w, a, out, QK, 18, true);
    assert!(
        rows.is_multiple_of(BAND),
        "kernel: rows are not whole bands"
    );
    debug_assert!(avx512_supported());
    // SAFETY: as for the Q8_0 kernel above.
    unsafe { x16::mat::<true>(w, a, out, rows) }
}

#[path = "x86_x16.rs"]
mod x16;
