//! The `neon` set: the 16-byte dot product by `smull`/`smlal2` to `i16`
//! pairs (at most 2 * 128 * 127, no overflow), then `sadalp` into `i32`;
//! the K-quants' scaled sub-block products by `smull`/`smlal(2)` into `i16`
//! lanes, then `smlal`/`smlal2` by the scale's `i16` lane into `i32`.

use core::arch::aarch64::*;
use core::arch::asm;

use super::common::{Bf16Rows, F16Rows, F32Rows, Quant32, Q40, Q80};
use super::k_quants::{self, KQuant, Q2K, Q3K, Q4K, Q5K, Q6K};
use super::legacy::{Iq4Nl, Q41, Q50, Q51};
use super::{common, neon_supported as supported, run, run_quantize, run_quantize_k};
use super::{ArmIsa, Kernel};
use crate::kernels::acts::Acts;
use crate::kernels::types::TensorType;
use crate::kernels::{scalar, Kernels, MatFn};

/// The NEON kernel set.
pub(in crate::kernels) static NEON: Kernels = Kernels {
    name: "neon",
    kernel_for,
    // The interleaved layout suits `sdot` only: the scalar reference.
    fast_interleaved: false,
    fast_interleaved_k: &[],
    transposed_q8: false,
    quantize,
    quantize_k,
    // NEON is the baseline of aarch64: the reference vectorises as it is.
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
        _ => return None,
    })
}

/// The set's dot products.
pub(super) struct Neon;

impl ArmIsa for Neon {
    #[inline(always)]
    unsafe fn dot16(acc: int32x4_t, w: int8x16_t, a: int8x16_t) -> int32x4_t {
        // SAFETY: NEON (the caller's promise).
        unsafe {
            let p = vmull_s8(vget_low_s8(w), vget_low_s8(a));
            let p = vmlal_high_s8(p, w, a);
            vpadalq_s16(acc, p)
        }
    }

    /// The scales as they are: `smlal` multiplies by an `i16` lane.
    type Scales = int16x8_t;

    /// Two accumulators (the sub-blocks of even and odd index), two
    /// shorter chains of dependent multiply-adds than one.
    type Sums = [int32x4_t; 2];

    #[inline(always)]
    unsafe fn scales(s: [int16x8_t; 2]) -> [int16x8_t; 2] {
        s
    }

    #[inline(always)]
    unsafe fn sums() -> [int32x4_t; 2] {
        // SAFETY: NEON (the caller's promise).
        unsafe { [vdupq_n_s32(0); 2] }
    }

    #[inline(always)]
    unsafe fn sub32<const L: i32>(
        sums: &mut [int32x4_t; 2],
        w0: int8x16_t,
        w1: int8x16_t,
        a0: int8x16_t,
        a1: int8x16_t,
        s: int16x8_t,
    ) {
        // SAFETY: NEON (the caller's promise); `L < 8`.
        unsafe {
            // Four products per `i16` lane, at most 4 * 64 * 127.
            let p = vmull_s8(vget_low_s8(w0), vget_low_s8(a0));
            let p = vmlal_high_s8(p, w0, a0);
            let p = vmlal_s8(p, vget_low_s8(w1), vget_low_s8(a1));
            let p = vmlal_high_s8(p, w1, a1);
            let k = (L % 2) as usize;
            sums[k] = smlal_lane::<L>(sums[k], p, s);
        }
    }

    #[inline(always)]
    unsafe fn sub16<const L: i32>(
        sums: &mut [int32x4_t; 2],
        w: int8x16_t,
        a: int8x16_t,
        s: int16x8_t,
    ) {
        // SAFETY: NEON (the caller's promise); `L < 8`.
        unsafe {
            // Two products per `i16` lane, at most 2 * 128 * 127.
            let p = vmull_s8(vget_low_s8(w), vget_low_s8(a));
            let p = vmlal_high_s8(p, w, a);
            let k = (L % 2) as usize;
            sums[k] = smlal_lane::<L>(sums[k], p, s);
        }
    }

    #[inline(always)]
    unsafe fn lanes(sums: [int32x4_t; 2]) -> int32x4_t {
        // SAFETY: NEON (the caller's promise).
        unsafe { vaddq_s32(sums[0], sums[1]) }
    }
}

/// `acc + p[0..4] * s[L] + p[4..8] * s[L]`, widening (`smlal`, `smlal2`
/// by lane). Written as inline assembly: with the intrinsics, LLVM factors
/// out the scale and emits `sshll`, `saddw2`, `dup`, `ushll` and a vector
/// `mla` per sub-block instead, and merges the accumulators into one chain.
///
/// # Safety
/// NEON.
#[inline(always)]
unsafe fn smlal_lane<const L: i32>(acc: int32x4_t, p: int16x8_t, s: int16x8_t) -> int32x4_t {
    const { assert!(0 <= L && L < 8) };
    let mut acc = acc;
    // SAFETY: `smlal`/`smlal2` (by element) are base AdvSIMD instructions
    // (NEON: the caller's promise); registers only (the element form of
    // 16-bit lanes takes `v0..v15`: `vreg_low16`); the lane is in `0..8`.
    unsafe {
        asm!(
            "smlal {acc:v}.4s, {p:v}.4h, {s:v}.h[{lane}]",
            "smlal2 {acc:v}.4s, {p:v}.8h, {s:v}.h[{lane}]",
            acc = inout(vreg) acc,
            p = in(vreg) p,
            s = in(vreg_low16) s,
            lane = const L,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// The kernel `K` with this set's dot products.
///
/// # Safety
/// NEON; checked arguments (see [`run`]).
#[target_feature(enable = "neon")]
unsafe fn mat<K: Kernel>(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe { K::mat::<Neon>(w, a, out, rows) }
}

/// The Q8 activation quantizer.
fn quantize(x: &[f32], d: &mut [f32], sum: &mut [i32], q: &mut [i8]) {
    /// # Safety
    /// NEON; lengths checked.
    #[target_feature(enable = "neon")]
    unsafe fn imp(x: &[f32], d: &mut [f32], sum: &mut [i32], q: &mut [i8]) {
        // SAFETY: this function's contract.
        unsafe { common::quantize(x, d, sum, q) }
    }
    run_quantize(supported, imp, x, d, sum, q)
}

/// The Q8_K activation quantizer.
fn quantize_k(x: &[f32], d: &mut [f32], bsums: &mut [i16], q: &mut [i8]) {
    /// # Safety
    /// NEON; lengths checked.
    #[target_feature(enable = "neon")]
    unsafe fn imp(x: &[f32], d: &mut [f32], bsums: &mut [i16], q: &mut [i8]) {
        // SAFETY: this function's contract.
        unsafe { k_quants::quantize_q8k(x, d, bsums, q) }
    }
    run_quantize_k(supported, imp, x, d, bsums, q)
}
