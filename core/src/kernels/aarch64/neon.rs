//! The `neon` set: the 16-byte dot product by `smull`/`smlal2` to `i16`
//! pairs (at most 2 * 128 * 127, no overflow), then `sadalp` into `i32`.

use core::arch::aarch64::*;

use super::{common, neon_supported as supported, run, run_quantize, ArmIsa};
use crate::kernels::acts::Acts;
use crate::kernels::types::{k_quants, TensorType};
use crate::kernels::{scalar, Kernels, MatFn};

/// The NEON kernel set.
pub(in crate::kernels) static NEON: Kernels = Kernels {
    name: "neon",
    kernel_for,
    // The interleaved layout suits `sdot` only: the scalar reference.
    fast_interleaved: false,
    quantize,
    quantize_k: k_quants::quantize_q8k,
    // NEON is the baseline of aarch64: the reference vectorises as it is.
    weighted_sum: scalar::weighted_sum,
    kv_scores_q8_0: scalar::kv_scores_q8_0,
};

/// This set's kernel for weights of type `ty`, if it has one.
fn kernel_for(ty: TensorType) -> Option<MatFn> {
    use TensorType::*;
    Some(match ty {
        F32 => |w, a, o| run(F32, supported, mat_f32, w, a, o),
        F16 => |w, a, o| run(F16, supported, mat_f16, w, a, o),
        Q8_0 => |w, a, o| run(Q8_0, supported, mat_q8_0, w, a, o),
        Q4_0 => |w, a, o| run(Q4_0, supported, mat_q4_0, w, a, o),
        _ => return None,
    })
}

/// The set's dot product.
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
}

/// F32 weights.
///
/// # Safety
/// NEON; checked arguments (see [`run`]).
#[target_feature(enable = "neon")]
unsafe fn mat_f32(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe { common::mat_f32::<Neon>(w, a, out, rows) }
}

/// F16 weights.
///
/// # Safety
/// As [`mat_f32`].
#[target_feature(enable = "neon")]
unsafe fn mat_f16(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe { common::mat_f16::<Neon>(w, a, out, rows) }
}

/// Q8_0 weights.
///
/// # Safety
/// As [`mat_f32`].
#[target_feature(enable = "neon")]
unsafe fn mat_q8_0(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe { common::mat_q8_0::<Neon>(w, a, out, rows) }
}

/// Q4_0 weights.
///
/// # Safety
/// As [`mat_f32`].
#[target_feature(enable = "neon")]
unsafe fn mat_q4_0(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe { common::mat_q4_0::<Neon>(w, a, out, rows) }
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
