//! The `neon` set: the 16-byte dot product by `smull`/`smlal2` to `i16`
//! pairs (at most 2 * 128 * 127, no overflow), then `sadalp` into `i32`.

use core::arch::aarch64::*;

use super::common::{Bf16Rows, F16Rows, F32Rows, Quant32, Q40, Q80};
use super::legacy::{Iq4Nl, Q41, Q50, Q51};
use super::{common, neon_supported as supported, run, run_quantize};
use super::{ArmIsa, Kernel};
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
