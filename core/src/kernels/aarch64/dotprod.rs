//! The `dotprod` set: NEON with the dot product extension, one `sdot` per
//! 16 bytes.
//!
//! # K-quant sub-blocks: summation by parts
//! A K-quant super-block needs `sum_P s_P dot_P` over its sub-blocks `P`
//! (`s_P` the integer scale, `dot_P` the sub-block's product with the
//! activations). `sdot` only accumulates, so computing each `dot_P` alone
//! would take a zeroed register (a `movi`) per sub-block. Instead the
//! sub-blocks of each parity of `P` run through one `sdot` sum `T`, and
//! after sub-block `P` the set adds `T * (s_P - s_{P + 2})` (`mla` by
//! lane; `s` is 0 past the last sub-block). Sub-block `P`'s product is in
//! every `T` from `P` on, so it is multiplied by `(s_P - s_{P + 2}) +
//! (s_{P + 2} - s_{P + 4}) + ... = s_P`: the same sum, with four zeroed
//! registers per super-block (the two `T` and two accumulators) instead of
//! one per sub-block, and the differences made once per super-block and
//! row (an `ext` and a `sub` per eight scales).
//! `sdot`, `mla` and `addv` wrap around modulo 2^32, so the result is
//! exact whenever the true sum fits an `i32`, which the K-quants' does
//! (see `k_quants`).

use core::arch::aarch64::*;
use core::arch::asm;

use super::common::{Bf16Rows, F16Rows, F32Rows, Quant32, Q40, Q80};
use super::k_quants::{self, KQuant, Q2K, Q3K, Q4K, Q5K, Q6K};
use super::legacy::{Iq4Nl, Q41, Q50, Q51};
use super::{common, dotprod_supported as supported, run, run_quantize, run_quantize_k, x16};
use super::{ArmIsa, Kernel};
use crate::kernels::acts::Acts;
use crate::kernels::types::TensorType;
use crate::kernels::{scalar, Kernels, MatFn};

/// The NEON + dotprod kernel set.
pub(in crate::kernels) static DOTPROD: Kernels = Kernels {
    name: "dotprod",
    kernel_for,
    fast_interleaved: true,
    fast_interleaved_k: &[],
    transposed_q8: false,
    quantize,
    quantize_k,
    weighted_sum: scalar::weighted_sum,
    kv_scores_q8_0: scalar::kv_scores_q8_0,
};

/// This set's kernel for weights of type `ty`, if it has one.
fn kernel_for(ty: TensorType) -> Option<MatFn> {
    use TensorType::*;
    Some(match ty {
        F32 => |w, a, o| run(F32, supported, mat::<F32Rows>, w, a, o),
        F16 => |w, a, o| run(F16, supported, mat::<F16Rows>, w, a, o),
        BF16 => |w, a, o| run(BF16, supported, mat::<Bf16Rows>, w, a, o),
        Q8_0 => |w, a, o| run(Q8_0, supported, mat::<Quant32<Q80>>, w, a, o),
        Q4_0 => |w, a, o| run(Q4_0, supported, mat::<Quant32<Q40>>, w, a, o),
        Q4_1 => |w, a, o| run(Q4_1, supported, mat::<Quant32<Q41>>, w, a, o),
        Q5_0 => |w, a, o| run(Q5_0, supported, mat::<Quant32<Q50>>, w, a, o),
        Q5_1 => |w, a, o| run(Q5_1, supported, mat::<Quant32<Q51>>, w, a, o),
        IQ4_NL => |w, a, o| run(IQ4_NL, supported, mat::<Quant32<Iq4Nl>>, w, a, o),
        Q2_K => |w, a, o| run(Q2_K, supported, mat::<KQuant<Q2K>>, w, a, o),
        Q3_K => |w, a, o| run(Q3_K, supported, mat::<KQuant<Q3K>>, w, a, o),
        Q4_K => |w, a, o| run(Q4_K, supported, mat::<KQuant<Q4K>>, w, a, o),
        Q5_K => |w, a, o| run(Q5_K, supported, mat::<KQuant<Q5K>>, w, a, o),
        Q6_K => |w, a, o| run(Q6_K, supported, mat::<KQuant<Q6K>>, w, a, o),
        Q8_0x16 => |w, a, o| run(Q8_0x16, supported, mat_q8_0x16, w, a, o),
        Q4_0x16 => |w, a, o| run(Q4_0x16, supported, mat_q4_0x16, w, a, o),
        _ => return None,
    })
}

/// The set's dot product.
pub(super) struct DotProd;

impl ArmIsa for DotProd {
    #[inline(always)]
    unsafe fn dot16(acc: int32x4_t, w: int8x16_t, a: int8x16_t) -> int32x4_t {
        let mut acc = acc;
        // SAFETY: `sdot` exists (the caller's promise: the CPU has the dot
        // product extension); registers only. The directive lets the
        // assembler take `sdot` even where this function is not inlined
        // into a `dotprod` one (unoptimised builds).
        unsafe {
            asm!(
                ".arch_extension dotprod",
                "sdot {acc:v}.4s, {w:v}.16b, {a:v}.16b",
                acc = inout(vreg) acc,
                w = in(vreg) w,
                a = in(vreg) a,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
        acc
    }

    /// The differences of the scales along each parity (see the module
    /// documentation), widened to `i32` for `mla` by lane.
    type Scales = (int32x4_t, int32x4_t);

    /// The running `sdot` sums of the even and odd sub-blocks, then the
    /// two accumulators of their `mla`s.
    type Sums = [int32x4_t; 4];

    #[inline(always)]
    unsafe fn scales(s: [int16x8_t; 2]) -> [(int32x4_t, int32x4_t); 2] {
        // SAFETY: NEON (the caller's promise).
        unsafe {
            // `s[P] - s[P + 2]`, zero past the end: at most 383 in
            // magnitude, an `i16`.
            let d0 = vsubq_s16(s[0], vextq_s16::<2>(s[0], s[1]));
            let d1 = vsubq_s16(s[1], vextq_s16::<2>(s[1], vdupq_n_s16(0)));
            let wide = |d: int16x8_t| (vmovl_s16(vget_low_s16(d)), vmovl_high_s16(d));
            [wide(d0), wide(d1)]
        }
    }

    #[inline(always)]
    unsafe fn sums() -> [int32x4_t; 4] {
        // SAFETY: NEON (the caller's promise).
        unsafe { [vdupq_n_s32(0); 4] }
    }

    #[inline(always)]
    unsafe fn sub32<const L: i32>(
        sums: &mut [int32x4_t; 4],
        w0: int8x16_t,
        w1: int8x16_t,
        a0: int8x16_t,
        a1: int8x16_t,
        s: (int32x4_t, int32x4_t),
    ) {
        let k = (L % 2) as usize;
        // SAFETY: the CPU has the set's features (the caller's promise).
        unsafe {
            sums[k] = Self::dot16(Self::dot16(sums[k], w0, a0), w1, a1);
            sums[2 + k] = mla_lane::<L>(sums[2 + k], sums[k], s);
        }
    }

    #[inline(always)]
    unsafe fn sub16<const L: i32>(
        sums: &mut [int32x4_t; 4],
        w: int8x16_t,
        a: int8x16_t,
        s: (int32x4_t, int32x4_t),
    ) {
        let k = (L % 2) as usize;
        // SAFETY: the CPU has the set's features (the caller's promise).
        unsafe {
            sums[k] = Self::dot16(sums[k], w, a);
            sums[2 + k] = mla_lane::<L>(sums[2 + k], sums[k], s);
        }
    }

    #[inline(always)]
    unsafe fn lanes(sums: [int32x4_t; 4]) -> int32x4_t {
        // SAFETY: NEON (the caller's promise).
        unsafe { vaddq_s32(sums[2], sums[3]) }
    }
}

/// `acc + t * s[L]`, `s` the eight scales in two vectors: one `mla` by
/// lane. Written as inline assembly: with the intrinsic, LLVM moves the
/// scales' widening past the lane broadcast and emits `dup`, `ushll` and a
/// vector `mla` per sub-block instead.
///
/// # Safety
/// NEON.
#[inline(always)]
unsafe fn mla_lane<const L: i32>(
    acc: int32x4_t,
    t: int32x4_t,
    s: (int32x4_t, int32x4_t),
) -> int32x4_t {
    const { assert!(0 <= L && L < 8) };
    let mut acc = acc;
    let s = if L < 4 { s.0 } else { s.1 };
    // SAFETY: `mla` (by element) is a base AdvSIMD instruction (NEON: the
    // caller's promise); registers only; the lane is in `0..4`.
    unsafe {
        asm!(
            "mla {acc:v}.4s, {t:v}.4s, {s:v}.s[{lane}]",
            acc = inout(vreg) acc,
            t = in(vreg) t,
            s = in(vreg) s,
            lane = const L % 4,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// The kernel `K` with this set's dot products.
///
/// # Safety
/// NEON and dotprod; checked arguments (see [`run`]).
#[target_feature(enable = "neon,dotprod")]
unsafe fn mat<K: Kernel>(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe { K::mat::<DotProd>(w, a, out, rows) }
}

/// Interleaved Q8_0 weights.
///
/// # Safety
/// As [`mat`]; `check_mat` also checked that the rows are whole bands.
#[target_feature(enable = "neon,dotprod")]
unsafe fn mat_q8_0x16(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe { x16::mat::<DotProd, false>(w, a, out, rows) }
}

/// Interleaved Q4_0 weights.
///
/// # Safety
/// As [`mat_q8_0x16`].
#[target_feature(enable = "neon,dotprod")]
unsafe fn mat_q4_0x16(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe { x16::mat::<DotProd, true>(w, a, out, rows) }
}

/// The Q8 activation quantizer.
fn quantize(x: &[f32], d: &mut [f32], sum: &mut [i32], q: &mut [i8]) {
    /// # Safety
    /// NEON and dotprod; lengths checked.
    #[target_feature(enable = "neon,dotprod")]
    unsafe fn imp(x: &[f32], d: &mut [f32], sum: &mut [i32], q: &mut [i8]) {
        // SAFETY: this function's contract.
        unsafe { common::quantize(x, d, sum, q) }
    }
    run_quantize(supported, imp, x, d, sum, q)
}

/// The Q8_K activation quantizer.
fn quantize_k(x: &[f32], d: &mut [f32], bsums: &mut [i16], q: &mut [i8]) {
    /// # Safety
    /// NEON and dotprod; lengths checked.
    #[target_feature(enable = "neon,dotprod")]
    unsafe fn imp(x: &[f32], d: &mut [f32], bsums: &mut [i16], q: &mut [i8]) {
        // SAFETY: this function's contract.
        unsafe { k_quants::quantize_q8k(x, d, bsums, q) }
    }
    run_quantize_k(supported, imp, x, d, bsums, q)
}
