//! aarch64 kernel sets: `neon` (AdvSIMD, always present on aarch64 Linux,
//! Android and Apple targets) and `dotprod` (NEON plus the dot product
//! extension's `sdot`).
//!
//! - [`common`]: the kernels both sets share, generic over the set's
//!   16-byte dot product ([`ArmIsa`]): F32, F16, BF16, and the tiles of
//!   the 32-wide quantized types;
//! - [`legacy`]: the 32-wide types other than Q8_0 and Q4_0 (Q4_1, Q5_0,
//!   Q5_1, IQ4_NL): how their blocks unpack to bytes;
//! - [`k_quants`]: Q2_K .. Q6_K (sub-block products with integer scales)
//!   and the Q8_K activation quantizer;
//! - [`neon`] and [`dotprod`]: each set's dot products and table;
//! - [`x16`]: the interleaved Q8_0/Q4_0 kernels (with `sdot` only: plain
//!   NEON would need another byte order, so the `neon` set keeps the scalar
//!   reference for them).
//!
//! Every kernel is reached through a safe entry point ([`run`]) that checks
//! its arguments; the tables are handed out by [`super::available`] /
//! [`super::active`] only when [`neon_supported`] / [`dotprod_supported`]
//! say the CPU has the set's features.

use core::arch::aarch64::{int16x8_t, int32x4_t, int8x16_t};

use super::acts::Acts;
use super::check_mat;
use super::types::{TensorType, QK};

mod common;
mod dotprod;
mod k_quants;
mod legacy;
mod neon;
mod x16;

pub(super) use dotprod::DOTPROD;
pub(super) use neon::NEON;

/// What distinguishes the two sets inside the shared kernels.
trait ArmIsa {
    /// `acc` plus, in each of its four lanes, the sum of four (dotprod) or
    /// of four interleaved (NEON) products of `w` and `a`, exactly.
    ///
    /// # Safety
    /// The CPU has the set's features.
    unsafe fn dot16(acc: int32x4_t, w: int8x16_t, a: int8x16_t) -> int32x4_t;

    /// A K-quant super-block's integer sub-block scales, eight of them, in
    /// the form this set multiplies by.
    type Scales: Copy;

    /// The running sums of one (row, vector) pair's scaled sub-block
    /// products in a super-block (see [`Self::sub16`]).
    type Sums: Copy;

    /// A super-block's sub-block scales in the order its sub-blocks are
    /// fed, each in `-128..=255`: `s[0]` for the first eight, `s[1]` for
    /// the next eight (zero when there are only eight), made
    /// [`Self::Scales`].
    ///
    /// # Safety
    /// The CPU has the set's features.
    unsafe fn scales(s: [int16x8_t; 2]) -> [Self::Scales; 2];

    /// Sums of no products yet.
    ///
    /// # Safety
    /// The CPU has the set's features.
    unsafe fn sums() -> Self::Sums;

    /// Feeds `sums` a sub-block of 32 values, to be multiplied by `s[L]`:
    /// the product of `(w0, w1)` and `(a0, a1)`. Exact if every `|w| <=
    /// 64` (NEON sums four products per `i16` lane: at most 4 * 64 * 127).
    ///
    /// A super-block feeds every sub-block once, those of each parity of
    /// their index (`L`, `8 + L` for the second half of the scales) in
    /// increasing order: the `dotprod` set sums them by parts along the two
    /// parities (see [`dotprod`]).
    ///
    /// # Safety
    /// The CPU has the set's features; `L < 8`.
    unsafe fn sub32<const L: i32>(
        sums: &mut Self::Sums,
        w0: int8x16_t,
        w1: int8x16_t,
        a0: int8x16_t,
        a1: int8x16_t,
        s: Self::Scales,
    );

    /// Feeds `sums` a sub-block of 16 values, to be multiplied by `s[L]`:
    /// the product of `w` and `a`. Exact for any weights (NEON sums two
    /// products per `i16` lane: at most 2 * 128 * 127). Fed as
    /// [`Self::sub32`].
    ///
    /// # Safety
    /// The CPU has the set's features; `L < 8`.
    unsafe fn sub16<const L: i32>(
        sums: &mut Self::Sums,
        w: int8x16_t,
        a: int8x16_t,
        s: Self::Scales,
    );

    /// Four lanes whose sum is that of the scaled products fed, modulo
    /// 2^32 (exact when it fits an `i32`).
    ///
    /// # Safety
    /// The CPU has the set's features.
    unsafe fn lanes(sums: Self::Sums) -> int32x4_t;
}

/// A weight type's kernel, written once for both sets: each set's
/// `#[target_feature]` entry point instantiates it with its [`ArmIsa`].
trait Kernel {
    /// The `MatFn` contract with `rows` computed by `check_mat`.
    ///
    /// # Safety
    /// The CPU has the features of `I`'s set; `check_mat` accepted the
    /// arguments.
    unsafe fn mat<I: ArmIsa>(w: &[u8], a: &Acts, out: &mut [f32], rows: usize);
}

/// Whether this CPU runs the `neon` set.
pub(super) fn neon_supported() -> bool {
    #[cfg(feature = "std")]
    {
        std::arch::is_aarch64_feature_detected!("neon")
    }
    #[cfg(not(feature = "std"))]
    {
        cfg!(target_feature = "neon")
    }
}

/// Whether this CPU runs the `dotprod` set.
pub(super) fn dotprod_supported() -> bool {
    #[cfg(feature = "std")]
    {
        neon_supported() && std::arch::is_aarch64_feature_detected!("dotprod")
    }
    #[cfg(not(feature = "std"))]
    {
        cfg!(all(target_feature = "neon", target_feature = "dotprod"))
    }
}

/// A kernel implementation: the `MatFn` contract with `rows` already
/// computed by `check_mat`; needs its set's CPU features.
type Imp = unsafe fn(w: &[u8], a: &Acts, out: &mut [f32], rows: usize);

/// The safe entry point of a kernel for weights of type `ty`: checks the
/// arguments, then runs `imp`.
#[inline(always)]
fn run(ty: TensorType, supported: fn() -> bool, imp: Imp, w: &[u8], a: &Acts, out: &mut [f32]) {
    let rows = check_mat(w, a, out, ty);
    debug_assert!(supported());
    // SAFETY: the table holding the calling kernel is handed out only on
    // CPUs where `supported()` holds (see `kernels::active`), which is what
    // `imp` needs; `check_mat` checked every slice length it reads.
    unsafe { imp(w, a, out, rows) }
}

/// A Q8 activation quantizer's implementation (lengths checked); needs its
/// set's CPU features.
type QuantizeImp = unsafe fn(x: &[f32], d: &mut [f32], sum: &mut [i32], q: &mut [i8]);

/// The safe entry point of a Q8 activation quantizer: checks the lengths,
/// then runs `imp`.
#[inline(always)]
fn run_quantize(
    supported: fn() -> bool,
    imp: QuantizeImp,
    x: &[f32],
    d: &mut [f32],
    sum: &mut [i32],
    q: &mut [i8],
) {
    assert_eq!(x.len() % QK, 0, "quantize: length is not a multiple of 32");
    let nb = x.len() / QK;
    assert!(
        d.len() >= nb && sum.len() >= nb && q.len() >= x.len(),
        "quantize: scratch too short"
    );
    debug_assert!(supported());
    // SAFETY: as in `run`; the lengths are checked above.
    unsafe { imp(x, d, sum, q) }
}

/// A Q8_K activation quantizer's implementation (lengths checked); needs
/// its set's CPU features.
type QuantizeKImp = unsafe fn(x: &[f32], d: &mut [f32], bsums: &mut [i16], q: &mut [i8]);

/// The safe entry point of a Q8_K activation quantizer: checks the lengths
/// (as the scalar one does), then runs `imp`.
#[inline(always)]
fn run_quantize_k(
    supported: fn() -> bool,
    imp: QuantizeKImp,
    x: &[f32],
    d: &mut [f32],
    bsums: &mut [i16],
    q: &mut [i8],
) {
    super::types::k_quants::check_q8k_lengths(x, d, bsums, q);
    debug_assert!(supported());
    // SAFETY: as in `run`; the lengths are checked above.
    unsafe { imp(x, d, bsums, q) }
}
