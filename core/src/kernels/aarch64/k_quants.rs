//! The K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) times Q8_K activations, and
//! the Q8_K activation quantizer, for both aarch64 sets.
//!
//! # What is computed
//! Exactly the scalar reference ([`crate::kernels::types::k_quants`]): per
//! super-block of 256 values the exact integers `isum = sum_j sc_j *
//! dot_j` and (with minimums) `msum = sum_j m_j * bsum_j`, then one running
//! f32 sum per (row, vector), in super-block order,
//! `acc = acc + (d * d_a) * isum`, then `acc = acc - (dmin * d_a) * msum`,
//! written in plain scalar Rust as the reference writes it. Only the way to
//! the integers differs, and any exact way gives the same integers.
//!
//! # How
//! A super-block's values are unpacked into bytes 16 at a time, in value
//! order, with the high bits merged by shift-and-insert (`sli`/`sri`), never
//! through memory. Each sub-block's product with the activations is
//! multiplied by its integer scale once ([`ArmIsa::sub32`],
//! [`ArmIsa::sub16`]):
//! - `dotprod`: `sdot` (two for 32 values) into one running sum per parity
//!   of the sub-block's index, then one `mla` by lane by the difference of
//!   the scales along that parity: summation by parts, which needs no
//!   zeroed register per sub-block (see [`super::dotprod`]);
//! - `neon`: `smull`/`smlal2` into `i16` lanes (two products per lane, four
//!   for 32 values), then `smlal`/`smlal2` by the scale's `i16` lane into
//!   one of two accumulators (even and odd sub-blocks: two shorter chains).
//!
//! The `i32` lanes are summed once per super-block (`addv`). Offsets are
//! taken out of the loop: Q6_K's values are unpacked as `q + 32` in `0..64`
//! and `32 * sum_j sc_j bsum_j` is subtracted once (the `bsums` of Q8_K are
//! the sums of its values); Q3_K's are built signed directly (`-4..4`). The
//! minimums' `msum` is one widening multiply of the minimums by the
//! `bsums`.
//!
//! The scales are unpacked with vector table lookups and shifts (Q3_K,
//! Q4_K, Q5_K) or a widening (Q2_K, Q6_K), once per super-block and row,
//! and reused for every vector of a batch. Nothing is prepared per call:
//! the layouts already put each sub-block's values in the order of its
//! activations, and Q8_K carries the sums the minimums need.
//!
//! Instructions per super-block, one row times one vector, counted in the
//! compiled loop (rustc 1.95, `dotprod` / `neon`, loads and loop counting
//! included):
//! - Q4_K (144 bytes): 96 / 119, i.e. 0.67 / 0.83 per weight byte. The
//!   products: 16 `sdot`, 8 `mla` by lane and 4 `movi` (zeroing) / 32
//!   `smull`/`smlal(2)` and 16 `smlal(2)` by lane. Unpacking the nibbles:
//!   16 (`and`, `ushr`). Loads: 17 (`ldp` of 32 bytes). Scales and
//!   minimums: 10 (`tbl`, shifts, masks, widening), and 4 for the
//!   differences (`ext`, `sub`, widening to `i32`; `dotprod` only).
//!   `msum`: 4 (`addp`, `smull`, `smlal2`, `addv`). `isum`, `d`, `dmin` and
//!   the float update: 11; pointers and loop: 6.
//! - Q6_K (210 bytes): 118 / 156, i.e. 0.56 / 0.74 per weight byte. The
//!   products: 16 `sdot`, 16 `mla` by lane and 4 `movi` / 32
//!   `smull`/`smlal2` and 32 `smlal(2)` by lane. Unpacking: 36 (per 64
//!   values: `ushr`, twice `sli` and `and`, twice `and` and `usra`).
//!   Loads: 18. Scales: 6 to widen, 4 for the differences (`dotprod`). The
//!   offset: 6. `isum`, `d` and the float update: 6; pointers and loop: 6.
//!   (`neon` spills a few registers here: its by-lane `smlal` takes the
//!   scales in `v0..v15` only.)
//! - The others: Q2_K 112 / 139 (84 bytes), Q3_K 131 / 173 (110 bytes),
//!   Q5_K 128 / 159 (176 bytes).
//!
//! For a batch, the tiles are one row times up to [`KC`] vectors: each
//! 16-byte piece of weights is unpacked once and multiplied with every
//! vector of the tile while in registers (`dotprod`, four vectors: Q4_K
//! 281, Q6_K 380 instructions per super-block of weights).
//!
//! # Exactness (no overflow, no saturation)
//! Activations are in `-127..=127`, `bsums` in `-2032..=2032`. Per `i16`
//! lane (NEON): Q2_K `2 * 3 * 127`, Q3_K `2 * 4 * 127`, Q6_K `2 * 63 *
//! 127 = 16002`, Q4_K `4 * 15 * 127`, Q5_K `4 * 31 * 127 = 15748`, all
//! below 32767. Everything else is `i32` arithmetic, which wraps around
//! modulo 2^32 (`sdot`, `mla`, `smlal`, `add`, `addv`; nothing saturates),
//! so the integers come out exact whenever their true values fit an `i32`.
//! They do, by far: `|isum|` is at most the sum of the magnitudes of its
//! terms, Q6_K `256 * 63 * 127 * 128 + 32 * 16 * 128 * 2032` ≈ 3.96e8 (its
//! offset included), Q5_K `256 * 31 * 127 * 63` ≈ 6.3e7, Q4_K ≈ 3.1e7,
//! Q3_K `256 * 4 * 127 * 32` ≈ 4.2e6, Q2_K ≈ 1.5e6; `|msum|` at most `63 *
//! 16 * 2032` ≈ 2.0e6: all below 2^31. (In the `neon` set no intermediate
//! even wraps: each of its partial sums has the same bound. `dotprod`'s
//! summation by parts may wrap in between, which the modular argument
//! covers.)
//!
//! # The Q8_K quantizer
//! [`quantize_q8k`] is ggml's `quantize_row_q8_K_ref` as the reference
//! writes it: the largest magnitude by compare-and-select (so NaN lanes are
//! skipped, as the scalar `>` skips them; `fmaxnm` would not skip a
//! signalling NaN), the first value of that magnitude, then the same
//! `fmul`, `fadd` of 1.5 * 2^23, bit mask and clamp per value.

use core::arch::aarch64::*;
use core::arch::asm;
use core::array::from_fn;
use core::marker::PhantomData;
use core::ptr::read_unaligned;

use super::common::{nibbles, opaque};
use super::{ArmIsa, Kernel};
use crate::kernels::acts::Acts;
use crate::kernels::types::QK_K;

/// Vectors per tile of a batch.
const KC: usize = 4;

/// A K-quant super-block type as the shared row loop sees it.
pub(super) trait SuperBlock {
    /// Bytes per super-block.
    const BYTES: usize;
    /// Byte offset of the f16 `d`.
    const D: usize;
    /// Byte offset of the f16 `dmin`, for the types with minimums.
    const DMIN: Option<usize>;

    /// The exact `(isum, msum)` of the super-block at `b` (`msum` 0 for
    /// the types without minimums) with each of `C` activation
    /// super-blocks: 256 values at `q[c]`, 16 sums at `bs[c]`.
    ///
    /// # Safety
    /// The CPU has the features of `I`'s set; the super-block and the
    /// activations are readable.
    unsafe fn sums<I: ArmIsa, const C: usize>(
        b: *const u8,
        q: &[*const i8; C],
        bs: &[*const i16; C],
    ) -> [(i32, i32); C];
}

/// The f16 at `p` (little-endian) as f32, by `fcvt` (exact).
///
/// # Safety
/// The 2 bytes at `p` are readable.
#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller vouches for the 2 bytes.
    let h = u16::from_le(unsafe { read_unaligned(p as *const u16) });
    let x: f32;
    // SAFETY: `fcvt` from half to single precision is a base
    // floating-point instruction (no FP16 extension needed); registers
    // only.
    unsafe {
        asm!(
            "fcvt {x:s}, {h:h}",
            h = in(vreg) h,
            x = lateout(vreg) x,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    x
}

/// The weights of the K-quant `K` (the `MatFn` contract).
pub(super) struct KQuant<K>(PhantomData<K>);

impl<K: SuperBlock> Kernel for KQuant<K> {
    #[inline(always)]
    unsafe fn mat<I: ArmIsa>(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
        let mut c0 = 0;
        while c0 < a.n {
            let nc = (a.n - c0).min(KC);
            // SAFETY: vectors `c0..c0 + nc` and every row are inside the
            // checked arguments.
            unsafe {
                match nc {
                    4 => rows_times::<I, K, 4>(w, a, out, rows, c0),
                    3 => rows_times::<I, K, 3>(w, a, out, rows, c0),
                    2 => rows_times::<I, K, 2>(w, a, out, rows, c0),
                    _ => rows_times::<I, K, 1>(w, a, out, rows, c0),
                }
            }
            c0 += nc;
        }
    }
}

/// Every row times vectors `c0..c0 + C`, one row at a time (the weights
/// read as one stream), each super-block unpacked once for the `C`
/// vectors.
///
/// # Safety
/// The CPU has the features of `I`'s set; `check_mat` accepted the
/// arguments; `c0 + C <= a.n`.
#[inline(always)]
unsafe fn rows_times<I: ArmIsa, K: SuperBlock, const C: usize>(
    w: &[u8],
    a: &Acts,
    out: &mut [f32],
    rows: usize,
    c0: usize,
) {
    let nb = a.cols / QK_K;
    let rb = nb * K::BYTES;
    // SAFETY: (for the whole body) row `r` is inside `w` and super-block `s` of
    // vector `c0 + c` inside the Q8_K activations (`check_mat` checked
    // `rows * rb` weight bytes, `n * cols` values, `n * cols / 256`
    // scales and `n * cols / 16` sums); `out` holds `n * rows` outputs.
    unsafe {
        for r in 0..rows {
            let row = w.as_ptr().add(r * rb);
            let mut acc = [0f32; C];
            for s in 0..nb {
                let b = row.add(s * K::BYTES);
                let at = |c: usize| (c0 + c) * nb + s;
                let q: [*const i8; C] = from_fn(|c| a.k.q.as_ptr().add(at(c) * QK_K));
                let bs: [*const i16; C] = from_fn(|c| a.k.bsums.as_ptr().add(at(c) * 16));
                let sums = K::sums::<I, C>(b, &q, &bs);
                let d = f16_at(b.add(K::D));
                let dmin = K::DMIN.map(|o| f16_at(b.add(o)));
                for (c, (acc, (isum, msum))) in acc.iter_mut().zip(sums).enumerate() {
                    let da = *a.k.d.as_ptr().add(at(c));
                    // The reference's operations, in its order.
                    *acc += (d * da) * isum as f32;
                    if let Some(dmin) = dmin {
                        *acc -= (dmin * da) * msum as f32;
                    }
                }
            }
            for (c, acc) in acc.iter().enumerate() {
                *out.as_mut_ptr().add((c0 + c) * rows + r) = *acc;
            }
        }
    }
}

/// The total of the scaled products fed to `sums` (exact: see the module
/// documentation).
///
/// # Safety
/// The CPU has the features of `I`'s set.
#[inline(always)]
unsafe fn total<I: ArmIsa>(sums: I::Sums) -> i32 {
    // SAFETY: the caller's promise.
    unsafe { vaddvq_s32(I::lanes(sums)) }
}

/// `sum_j m[j] * (bs[2 j] + bs[2 j + 1])`: the minimums of 8 sub-blocks
/// of 32 times the sums of their activations (each pair at most 4064 in
/// magnitude, an `i16`).
///
/// # Safety
/// The CPU has NEON; the 16 sums at `bs` are readable.
#[inline(always)]
unsafe fn mins_by_32(m: int16x8_t, bs: *const i16) -> i32 {
    // SAFETY: the caller vouches for the 16 sums.
    unsafe {
        let b = vld1q_s16_x2(bs);
        let p = vpaddq_s16(b.0, b.1);
        let t = vmull_s16(vget_low_s16(m), vget_low_s16(p));
        vaddvq_s32(vmlal_high_s16(t, m, p))
    }
}

/// `sum_j s[j] * bs[j]` over 16 sub-blocks of 16 (`s0` the first eight
/// factors, `s1` the last), as four lanes.
///
/// # Safety
/// The CPU has NEON; the 16 sums at `bs` are readable.
#[inline(always)]
unsafe fn times_bsums(s0: int16x8_t, s1: int16x8_t, bs: *const i16) -> int32x4_t {
    // SAFETY: the caller vouches for the 16 sums.
    unsafe {
        let b = vld1q_s16_x2(bs);
        let t = vmull_s16(vget_low_s16(s0), vget_low_s16(b.0));
        let t = vmlal_high_s16(t, s0, b.0);
        let t = vmlal_s16(t, vget_low_s16(s1), vget_low_s16(b.1));
        vmlal_high_s16(t, s1, b.1)
    }
}

/// The 16 bytes at `p`.
///
/// # Safety
/// The CPU has NEON; the 16 bytes are readable.
#[inline(always)]
unsafe fn load(p: *const u8) -> uint8x16_t {
    // SAFETY: the caller's promise.
    unsafe { vld1q_u8(p) }
}

/// `u8` lanes as `i8`.
#[inline(always)]
unsafe fn s8(v: uint8x16_t) -> int8x16_t {
    // SAFETY: NEON (the caller's promise).
    unsafe { vreinterpretq_s8_u8(v) }
}

/// Four sub-blocks of 16 values `v[k]` (`k = 0..4`, the values `32 k`
/// apart, sub-blocks `L0..L3` of the scales `s`) times each vector's
/// activations at `q[c] + off + 32 k`.
///
/// # Safety
/// The CPU has the features of `I`'s set; the activations are readable.
#[inline(always)]
unsafe fn four16<
    I: ArmIsa,
    const C: usize,
    const L0: i32,
    const L1: i32,
    const L2: i32,
    const L3: i32,
>(
    v: [uint8x16_t; 4],
    q: &[*const i8; C],
    off: usize,
    s: I::Scales,
    acc: &mut [I::Sums; C],
) {
    // SAFETY: the caller vouches for the activations and the features.
    unsafe {
        for (c, acc) in acc.iter_mut().enumerate() {
            let a = |k: usize| vld1q_s8(q[c].add(off + 32 * k));
            I::sub16::<L0>(acc, s8(v[0]), a(0), s);
            I::sub16::<L1>(acc, s8(v[1]), a(1), s);
            I::sub16::<L2>(acc, s8(v[2]), a(2), s);
            I::sub16::<L3>(acc, s8(v[3]), a(3), s);
        }
    }
}

// ---- Q2_K ----

/// Q2_K: scales (low nibble) and minimums (high nibble) of 16 sub-blocks
/// of 16 at 0, 2-bit values at 16 (byte `32 n + l`, bits `2 j`: value
/// `128 n + 32 j + l`), `d` at 80, `dmin` at 82.
pub(super) struct Q2K;

/// One half (`l` in `16 h..16 h + 16`) of a Q2_K 128-value half
/// super-block `n`: its four sub-blocks `8 n + 2 j + h`.
///
/// # Safety
/// As [`four16`]; the 16 bytes at `qs` are readable.
#[inline(always)]
unsafe fn q2_k_quarter<
    I: ArmIsa,
    const C: usize,
    const L0: i32,
    const L1: i32,
    const L2: i32,
    const L3: i32,
>(
    qs: *const u8,
    q: &[*const i8; C],
    off: usize,
    s: I::Scales,
    acc: &mut [I::Sums; C],
) {
    // SAFETY: the caller's promise.
    unsafe {
        let x = load(qs);
        let three = vdupq_n_u8(3);
        let v = [
            vandq_u8(x, three),
            vandq_u8(vshrq_n_u8::<2>(x), three),
            vandq_u8(vshrq_n_u8::<4>(x), three),
            vshrq_n_u8::<6>(x),
        ];
        four16::<I, C, L0, L1, L2, L3>(v, q, off, s, acc);
    }
}

impl SuperBlock for Q2K {
    const BYTES: usize = 84;
    const D: usize = 80;
    const DMIN: Option<usize> = Some(82);

    #[inline(always)]
    unsafe fn sums<I: ArmIsa, const C: usize>(
        b: *const u8,
        q: &[*const i8; C],
        bs: &[*const i16; C],
    ) -> [(i32, i32); C] {
        // SAFETY: the caller vouches for the super-block (84 bytes) and
        // the activations.
        unsafe {
            let sm = load(b);
            let sc = vandq_u8(sm, vdupq_n_u8(0x0f));
            let m = vshrq_n_u8::<4>(sm);
            let wide = |v: uint8x16_t| {
                (
                    vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(v))),
                    vreinterpretq_s16_u16(vmovl_high_u8(v)),
                )
            };
            let (sc0, sc1) = wide(sc);
            let (m0, m1) = wide(m);
            let [s0, s1] = I::scales([sc0, sc1]);
            let mut acc = [I::sums(); C];
            let qs = b.add(16);
            q2_k_quarter::<I, C, 0, 2, 4, 6>(qs, q, 0, s0, &mut acc);
            q2_k_quarter::<I, C, 1, 3, 5, 7>(qs.add(16), q, 16, s0, &mut acc);
            q2_k_quarter::<I, C, 0, 2, 4, 6>(qs.add(32), q, 128, s1, &mut acc);
            q2_k_quarter::<I, C, 1, 3, 5, 7>(qs.add(48), q, 144, s1, &mut acc);
            from_fn(|c| {
                let msum = vaddvq_s32(times_bsums(m0, m1, bs[c]));
                (total::<I>(acc[c]), msum)
            })
        }
    }
}

// ---- Q3_K ----

/// Q3_K: high bits at 0 (bit `4 n + j` of byte `l`: value `128 n + 32 j +
/// l`; a clear bit subtracts 4), low 2 bits at 32 (as Q2_K's), sixteen
/// 6-bit scales packed at 96, `d` at 108.
pub(super) struct Q3K;

/// One half (`l` in `16 h..16 h + 16`) of a Q3_K 128-value half
/// super-block `n`: `low | (h ? 0 : 0xfc)`, i.e. `low - 4` where the high
/// bit is clear, made by one `sli` (`j = 3`: `sri`) of the `cmtst` mask of
/// the inverted high bits `nh` (`B0..B3` the bits tested).
///
/// # Safety
/// As [`four16`]; the 16 bytes at `qs` are readable.
#[inline(always)]
unsafe fn q3_k_quarter<
    I: ArmIsa,
    const C: usize,
    const L0: i32,
    const L1: i32,
    const L2: i32,
    const L3: i32,
    const B0: u8,
>(
    qs: *const u8,
    nh: uint8x16_t,
    q: &[*const i8; C],
    off: usize,
    s: I::Scales,
    acc: &mut [I::Sums; C],
) {
    // SAFETY: the caller's promise.
    unsafe {
        let x = load(qs);
        let mask = |bit: u8| vtstq_u8(nh, vdupq_n_u8(bit));
        // `sli(a, m, 2)` is `m << 2 | a & 3`; `sri(m, x, 6)` is
        // `m & 0xfc | x >> 6`.
        let v = [
            vsliq_n_u8::<2>(x, mask(B0)),
            vsliq_n_u8::<2>(vshrq_n_u8::<2>(x), mask(B0 << 1)),
            vsliq_n_u8::<2>(vshrq_n_u8::<4>(x), mask(B0 << 2)),
            vsriq_n_u8::<6>(mask(B0 << 3), x),
        ];
        four16::<I, C, L0, L1, L2, L3>(v, q, off, s, acc);
    }
}

/// Q3_K's sixteen scales (`-32..32`, as `i16`, sub-blocks `0..8` and
/// `8..16`) from the packed 12 bytes at `p + 2` (16 bytes read from `p`).
///
/// Scale `j < 4` is `s[j] & 15 | (s[8 + j] & 3) << 4`, `j + 4`: `s[j + 4] &
/// 15 | (s[8 + j] >> 2 & 3) << 4`, `j + 8`: `s[j] >> 4 | (s[8 + j] >> 4 &
/// 3) << 4`, `j + 12`: `s[j + 4] >> 4 | (s[8 + j] >> 6) << 4`, minus 32.
///
/// # Safety
/// The CPU has NEON; the 16 bytes at `p` are readable.
#[inline(always)]
unsafe fn q3_k_scales(p: *const u8) -> (int16x8_t, int16x8_t) {
    const LOW: [u8; 16] = [2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5, 6, 7, 8, 9];
    const LOW_SHIFT: [i8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, -4, -4, -4, -4, -4, -4, -4, -4];
    const HIGH: [u8; 16] = [
        10, 11, 12, 13, 10, 11, 12, 13, 10, 11, 12, 13, 10, 11, 12, 13,
    ];
    const HIGH_SHIFT: [i8; 16] = [4, 4, 4, 4, 2, 2, 2, 2, 0, 0, 0, 0, -2, -2, -2, -2];
    // SAFETY: the caller vouches for the 16 bytes; the constants are
    // 16-byte arrays.
    unsafe {
        let v = load(p);
        let low = vqtbl1q_u8(v, vld1q_u8(LOW.as_ptr()));
        let low = vandq_u8(
            vshlq_u8(low, vld1q_s8(LOW_SHIFT.as_ptr())),
            vdupq_n_u8(0x0f),
        );
        let high = vqtbl1q_u8(v, vld1q_u8(HIGH.as_ptr()));
        let high = vandq_u8(
            vshlq_u8(high, vld1q_s8(HIGH_SHIFT.as_ptr())),
            vdupq_n_u8(0x30),
        );
        let sc = vsubq_s8(s8(vorrq_u8(low, high)), vdupq_n_s8(32));
        (vmovl_s8(vget_low_s8(sc)), vmovl_high_s8(sc))
    }
}

impl SuperBlock for Q3K {
    const BYTES: usize = 110;
    const D: usize = 108;
    const DMIN: Option<usize> = None;

    #[inline(always)]
    unsafe fn sums<I: ArmIsa, const C: usize>(
        b: *const u8,
        q: &[*const i8; C],
        _bs: &[*const i16; C],
    ) -> [(i32, i32); C] {
        // SAFETY: the caller vouches for the super-block (110 bytes: the
        // scales are read as bytes 94..110) and the activations.
        unsafe {
            let (sc0, sc1) = q3_k_scales(b.add(94));
            let [s0, s1] = I::scales([sc0, sc1]);
            // Hidden from LLVM, which would otherwise test `h & bit == 0`
            // with two instructions per vector instead of one `cmtst`.
            let nh0 = opaque(vmvnq_u8(load(b)));
            let nh1 = opaque(vmvnq_u8(load(b.add(16))));
            let mut acc = [I::sums(); C];
            let qs = b.add(32);
            q3_k_quarter::<I, C, 0, 2, 4, 6, 0x01>(qs, nh0, q, 0, s0, &mut acc);
            q3_k_quarter::<I, C, 1, 3, 5, 7, 0x01>(qs.add(16), nh1, q, 16, s0, &mut acc);
            q3_k_quarter::<I, C, 0, 2, 4, 6, 0x10>(qs.add(32), nh0, q, 128, s1, &mut acc);
            q3_k_quarter::<I, C, 1, 3, 5, 7, 0x10>(qs.add(48), nh1, q, 144, s1, &mut acc);
            from_fn(|c| (total::<I>(acc[c]), 0))
        }
    }
}

// ---- Q4_K and Q5_K ----

/// Q4_K and Q5_K's eight scales and eight minimums (`0..64`, as `i16`)
/// from the packed 12 bytes at `p` (16 bytes read).
///
/// Lanes `0..8` of the bytes built are the scales, `8..16` the minimums:
/// `j < 4`: `s[j] & 63`, `s[j + 4] & 63`; `j >= 4`: `s[j + 4] & 15 |
/// (s[j - 4] >> 6) << 4`, `s[j + 4] >> 4 | (s[j] >> 6) << 4`.
///
/// # Safety
/// The CPU has NEON; the 16 bytes at `p` are readable.
#[inline(always)]
unsafe fn k4_scales(p: *const u8) -> (int16x8_t, int16x8_t) {
    const LOW: [u8; 16] = [0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11];
    const LOW_SHIFT: [i8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -4, -4, -4, -4];
    const LOW_MASK: [u8; 16] = [
        63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 15, 15, 15, 15,
    ];
    /// Out-of-range indices make `tbl` give 0.
    const HIGH: [u8; 16] = [
        255, 255, 255, 255, 0, 1, 2, 3, 255, 255, 255, 255, 4, 5, 6, 7,
    ];
    // SAFETY: the caller vouches for the 16 bytes; the constants are
    // 16-byte arrays.
    unsafe {
        let v = load(p);
        let low = vqtbl1q_u8(v, vld1q_u8(LOW.as_ptr()));
        let low = vandq_u8(
            vshlq_u8(low, vld1q_s8(LOW_SHIFT.as_ptr())),
            vld1q_u8(LOW_MASK.as_ptr()),
        );
        let high = vqtbl1q_u8(v, vld1q_u8(HIGH.as_ptr()));
        let high = vandq_u8(vshrq_n_u8::<2>(high), vdupq_n_u8(0x30));
        let sm = vorrq_u8(low, high);
        (
            vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(sm))),
            vreinterpretq_s16_u16(vmovl_high_u8(sm)),
        )
    }
}

/// Two sub-blocks of 32 (`L0` from `lo`, `L1` from `hi`, the values 32
/// apart) times each vector's activations at `q[c] + off`.
///
/// # Safety
/// The CPU has the features of `I`'s set; every value is at most 64 in
/// magnitude; the activations are readable.
#[inline(always)]
unsafe fn two32<I: ArmIsa, const C: usize, const L0: i32, const L1: i32>(
    lo: [int8x16_t; 2],
    hi: [int8x16_t; 2],
    q: &[*const i8; C],
    off: usize,
    s: I::Scales,
    acc: &mut [I::Sums; C],
) {
    // SAFETY: the caller vouches for the activations and the features.
    unsafe {
        for (c, acc) in acc.iter_mut().enumerate() {
            let a = vld1q_s8_x4(q[c].add(off));
            I::sub32::<L0>(acc, lo[0], lo[1], a.0, a.1, s);
            I::sub32::<L1>(acc, hi[0], hi[1], a.2, a.3, s);
        }
    }
}

/// Q4_K: `d` at 0, `dmin` at 2, scales and minimums packed at 4, nibbles
/// at 16 (byte `32 j + l`: value `64 j + l` low, `64 j + 32 + l` high).
pub(super) struct Q4K;

/// Sub-blocks `L0 = 2 j` and `L1 = 2 j + 1` of Q4_K (their 32 bytes at
/// `qs`): the low and high nibbles.
///
/// # Safety
/// As [`two32`]; the 32 bytes at `qs` are readable.
#[inline(always)]
unsafe fn q4_k_pair<I: ArmIsa, const C: usize, const L0: i32, const L1: i32>(
    qs: *const u8,
    q: &[*const i8; C],
    off: usize,
    s: I::Scales,
    acc: &mut [I::Sums; C],
) {
    // SAFETY: the caller's promise.
    unsafe {
        let x = vld1q_u8_x2(qs);
        let (lo0, hi0) = nibbles(x.0);
        let (lo1, hi1) = nibbles(x.1);
        two32::<I, C, L0, L1>([lo0, lo1], [hi0, hi1], q, off, s, acc);
    }
}

impl SuperBlock for Q4K {
    const BYTES: usize = 144;
    const D: usize = 0;
    const DMIN: Option<usize> = Some(2);

    #[inline(always)]
    unsafe fn sums<I: ArmIsa, const C: usize>(
        b: *const u8,
        q: &[*const i8; C],
        bs: &[*const i16; C],
    ) -> [(i32, i32); C] {
        // SAFETY: the caller vouches for the super-block (144 bytes: the
        // scales are read as bytes 4..20) and the activations.
        unsafe {
            let (sc, m) = k4_scales(b.add(4));
            let [s, _] = I::scales([sc, vdupq_n_s16(0)]);
            let mut acc = [I::sums(); C];
            let qs = b.add(16);
            q4_k_pair::<I, C, 0, 1>(qs, q, 0, s, &mut acc);
            q4_k_pair::<I, C, 2, 3>(qs.add(32), q, 64, s, &mut acc);
            q4_k_pair::<I, C, 4, 5>(qs.add(64), q, 128, s, &mut acc);
            q4_k_pair::<I, C, 6, 7>(qs.add(96), q, 192, s, &mut acc);
            from_fn(|c| (total::<I>(acc[c]), mins_by_32(m, bs[c])))
        }
    }
}

/// Q5_K: Q4_K's fields, then the fifth bits at 16 (bit `i` of byte `l`:
/// value `32 i + l`), the nibbles at 48.
pub(super) struct Q5K;

/// Sub-blocks `L0 = 2 j` and `L1 = 2 j + 1` of Q5_K (their 32 bytes of
/// nibbles at `qs`), with `h` the fifth bits shifted right by `2 j`: low
/// nibble `| (h & 1) << 4` (`sli`), high nibble `| (h << 3) & 0x10`
/// (`sri`).
///
/// # Safety
/// As [`two32`]; the 32 bytes at `qs` are readable.
#[inline(always)]
unsafe fn q5_k_pair<I: ArmIsa, const C: usize, const L0: i32, const L1: i32>(
    qs: *const u8,
    h: [uint8x16_t; 2],
    q: &[*const i8; C],
    off: usize,
    s: I::Scales,
    acc: &mut [I::Sums; C],
) {
    // SAFETY: the caller's promise.
    unsafe {
        let x = vld1q_u8_x2(qs);
        let (one, x10) = (vdupq_n_u8(1), vdupq_n_u8(0x10));
        let lo = |x: uint8x16_t, h: uint8x16_t| s8(vsliq_n_u8::<4>(x, vandq_u8(h, one)));
        let hi = |x: uint8x16_t, h: uint8x16_t| {
            s8(vsriq_n_u8::<4>(vandq_u8(vshlq_n_u8::<3>(h), x10), x))
        };
        two32::<I, C, L0, L1>(
            [lo(x.0, h[0]), lo(x.1, h[1])],
            [hi(x.0, h[0]), hi(x.1, h[1])],
            q,
            off,
            s,
            acc,
        );
    }
}

impl SuperBlock for Q5K {
    const BYTES: usize = 176;
    const D: usize = 0;
    const DMIN: Option<usize> = Some(2);

    #[inline(always)]
    unsafe fn sums<I: ArmIsa, const C: usize>(
        b: *const u8,
        q: &[*const i8; C],
        bs: &[*const i16; C],
    ) -> [(i32, i32); C] {
        // SAFETY: the caller vouches for the super-block (176 bytes) and
        // the activations.
        unsafe {
            let (sc, m) = k4_scales(b.add(4));
            let [s, _] = I::scales([sc, vdupq_n_s16(0)]);
            let mut acc = [I::sums(); C];
            let qh = vld1q_u8_x2(b.add(16));
            let mut h = [qh.0, qh.1];
            let next = |h: [uint8x16_t; 2]| [vshrq_n_u8::<2>(h[0]), vshrq_n_u8::<2>(h[1])];
            let qs = b.add(48);
            q5_k_pair::<I, C, 0, 1>(qs, h, q, 0, s, &mut acc);
            h = next(h);
            q5_k_pair::<I, C, 2, 3>(qs.add(32), h, q, 64, s, &mut acc);
            h = next(h);
            q5_k_pair::<I, C, 4, 5>(qs.add(64), h, q, 128, s, &mut acc);
            h = next(h);
            q5_k_pair::<I, C, 6, 7>(qs.add(96), h, q, 192, s, &mut acc);
            from_fn(|c| (total::<I>(acc[c]), mins_by_32(m, bs[c])))
        }
    }
}

// ---- Q6_K ----

/// Q6_K: low 4 bits at 0, high 2 bits at 128, sixteen `i8` scales at 192,
/// `d` at 208 (see [`crate::kernels::types::k_quants::unpack_q6_k`]).
pub(super) struct Q6K;

/// One half (`l` in `16 h..16 h + 16`) of a Q6_K 128-value half
/// super-block `n` (`ql` its low bits, `qh` its high bits): sub-blocks
/// `8 n + 2 k + h`, values `q + 32` in `0..64`. With `t = qh >> 2`:
/// `k = 0`: `(sli(ql_a, qh) & 0x3f`, `k = 1`: `sli(ql_b, t) & 0x3f`,
/// `k = 2`: `sri(qh & 0x30, ql_a)`, `k = 3`: `sri(t & 0x30, ql_b)`.
///
/// # Safety
/// As [`four16`]; `ql..ql + 48` and `qh..qh + 16` are readable.
#[inline(always)]
unsafe fn q6_k_quarter<
    I: ArmIsa,
    const C: usize,
    const L0: i32,
    const L1: i32,
    const L2: i32,
    const L3: i32,
>(
    ql: *const u8,
    qh: *const u8,
    q: &[*const i8; C],
    off: usize,
    s: I::Scales,
    acc: &mut [I::Sums; C],
) {
    // SAFETY: the caller's promise.
    unsafe {
        let (la, lb, h) = (load(ql), load(ql.add(32)), load(qh));
        let (m3f, m30) = (vdupq_n_u8(0x3f), vdupq_n_u8(0x30));
        let t = vshrq_n_u8::<2>(h);
        let v = [
            vandq_u8(vsliq_n_u8::<4>(la, h), m3f),
            vandq_u8(vsliq_n_u8::<4>(lb, t), m3f),
            vsriq_n_u8::<4>(vandq_u8(h, m30), la),
            vsriq_n_u8::<4>(vandq_u8(t, m30), lb),
        ];
        four16::<I, C, L0, L1, L2, L3>(v, q, off, s, acc);
    }
}

impl SuperBlock for Q6K {
    const BYTES: usize = 210;
    const D: usize = 208;
    const DMIN: Option<usize> = None;

    #[inline(always)]
    unsafe fn sums<I: ArmIsa, const C: usize>(
        b: *const u8,
        q: &[*const i8; C],
        bs: &[*const i16; C],
    ) -> [(i32, i32); C] {
        // SAFETY: the caller vouches for the super-block (210 bytes) and
        // the activations.
        unsafe {
            let sc = vld1q_s8(b.add(192) as *const i8);
            let (sc0, sc1) = (vmovl_s8(vget_low_s8(sc)), vmovl_high_s8(sc));
            let [s0, s1] = I::scales([sc0, sc1]);
            let mut acc = [I::sums(); C];
            let (ql, qh) = (b, b.add(128));
            q6_k_quarter::<I, C, 0, 2, 4, 6>(ql, qh, q, 0, s0, &mut acc);
            q6_k_quarter::<I, C, 1, 3, 5, 7>(ql.add(16), qh.add(16), q, 16, s0, &mut acc);
            q6_k_quarter::<I, C, 0, 2, 4, 6>(ql.add(64), qh.add(32), q, 128, s1, &mut acc);
            q6_k_quarter::<I, C, 1, 3, 5, 7>(ql.add(80), qh.add(48), q, 144, s1, &mut acc);
            from_fn(|c| {
                // The values were `q + 32`: take `32 sum_j sc_j bsum_j`
                // away.
                let offset = vshlq_n_s32::<5>(times_bsums(sc0, sc1, bs[c]));
                (vaddvq_s32(vsubq_s32(I::lanes(acc[c]), offset)), 0)
            })
        }
    }
}

// ---- quantizing activations to Q8_K ----

/// Bit-identical to the scalar `quantize_q8k` (lengths checked).
///
/// # Safety
/// The CPU has NEON; `x.len()` is a multiple of 256, `d` holds `x.len() /
/// 256` scales, `bsums` `x.len() / 16` sums and `q` `x.len()` values.
#[inline(always)]
pub(super) unsafe fn quantize_q8k(x: &[f32], d: &mut [f32], bsums: &mut [i16], q: &mut [i8]) {
    // SAFETY: (for the whole body) NEON (the caller's promise); super-block `s`
    // is inside `x`, `q`, `d` and `bsums` (lengths checked by the
    // caller).
    unsafe {
        for s in 0..x.len() / QK_K {
            let xs = x.as_ptr().add(s * QK_K);
            // The largest magnitude, NaN skipped: a lane takes `|v|` only
            // if it is greater (as the scalar `>`), so no lane is ever NaN
            // and `fmaxv` of the lanes is exact.
            let mut m = [vdupq_n_f32(0.0); 4];
            for i in 0..QK_K / 4 {
                let v = vabsq_f32(vld1q_f32(xs.add(4 * i)));
                let m = &mut m[i % 4];
                *m = vbslq_f32(vcgtq_f32(v, *m), v, *m);
            }
            let amax = vmaxvq_f32(vmaxq_f32(vmaxq_f32(m[0], m[1]), vmaxq_f32(m[2], m[3])));
            let (qs, sums) = (q.as_mut_ptr().add(s * QK_K), bsums.as_mut_ptr().add(16 * s));
            if amax == 0.0 {
                *d.as_mut_ptr().add(s) = 0.0;
                for i in 0..QK_K / 16 {
                    vst1q_s8(qs.add(16 * i), vdupq_n_s8(0));
                    *sums.add(i) = 0;
                }
                continue;
            }
            // The first value of that magnitude (the one the scalar scan
            // keeps).
            let mut max = amax;
            let target = vdupq_n_f32(amax);
            for i in 0..QK_K / 4 {
                let v = vld1q_f32(xs.add(4 * i));
                if vmaxvq_u32(vceqq_f32(vabsq_f32(v), target)) != 0 {
                    for k in 0..4 {
                        let v = *xs.add(4 * i + k);
                        if v.abs() == amax {
                            max = v;
                            break;
                        }
                    }
                    break;
                }
            }
            let iscale = -127.0 / max;
            let scale = vdupq_n_f32(iscale);
            let magic = vdupq_n_f32(12_582_912.0);
            let mantissa = vdupq_n_u32(0x007f_ffff);
            let half = vdupq_n_s32(0x0040_0000);
            let (lo, hi) = (vdupq_n_s32(-127), vdupq_n_s32(127));
            for i in 0..QK_K / 16 {
                let mut r = [vdupq_n_s32(0); 4];
                for (k, r) in r.iter_mut().enumerate() {
                    let v = vld1q_f32(xs.add(16 * i + 4 * k));
                    // nearest_int: (iscale * v + 1.5 * 2^23)'s low 23 bits
                    // minus 2^22, then clamped.
                    let t = vaddq_f32(vmulq_f32(scale, v), magic);
                    let n = vreinterpretq_s32_u32(vandq_u32(vreinterpretq_u32_f32(t), mantissa));
                    *r = vmaxq_s32(vminq_s32(vsubq_s32(n, half), hi), lo);
                }
                let r01 = vcombine_s16(vmovn_s32(r[0]), vmovn_s32(r[1]));
                let r23 = vcombine_s16(vmovn_s32(r[2]), vmovn_s32(r[3]));
                let p = vcombine_s8(vmovn_s16(r01), vmovn_s16(r23));
                vst1q_s8(qs.add(16 * i), p);
                *sums.add(i) = vaddlvq_s8(p);
            }
            *d.as_mut_ptr().add(s) = 1.0 / iscale;
        }
    }
}
