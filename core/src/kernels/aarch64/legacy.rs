//! The other 32-wide types (Q4_1, Q5_0, Q5_1, IQ4_NL) for the shared tiles
//! of [`super::common`]: how a block unpacks to signed bytes. The block
//! layouts are those of [`crate::kernels::types::legacy`].
//!
//! Per block of 32 values (18 to 24 bytes) the unpacking costs: Q4_1 two
//! instructions (`and`, `ushr`), IQ4_NL four (the nibbles, then two `tbl`
//! into the value table), Q5_0 and Q5_1 about ten (the nibbles; the fifth
//! bits spread to bytes by `tbl` and `cmtst`, then merged). The dot
//! products and the float arithmetic are [`super::common`]'s, as for Q8_0
//! and Q4_0.
//!
//! Instructions per group of 8 blocks (256 values), one row times one
//! vector, counted in the compiled loop (rustc 1.95, `dotprod` / `neon`,
//! loads and the float update included): Q4_1 114 / 146 (160 bytes),
//! Q5_0 155 / 192 (176 bytes), Q5_1 186 / 210 (192 bytes), IQ4_NL 106 /
//! 136 (144 bytes); for comparison Q4_0 106 / 142 and Q8_0 78 / 109. The
//! f16 scales are gathered with scalar loads and `orr`s, which run on the
//! load and integer pipes these loops otherwise leave idle.
//!
//! # Exactness
//! Every value fits a signed byte: Q4_1 `0..16`, Q5_1 `0..32`, Q5_0
//! `-16..16` (the offset applied, as the reference's exact
//! `dot - 16 * sum_a`), IQ4_NL `-127..=113`; so each set's 16-byte dot
//! product is exact (see [`super::ArmIsa::dot16`]).

use core::arch::aarch64::*;
use core::ptr::read_unaligned;

use super::common::{nibbles, opaque, Block32};
use crate::kernels::types::legacy::IQ4NL_VALUES;

/// The fifth bits of a Q5 block (bit `i` of the little-endian `qh` for
/// element `i`) as byte masks: `0xff` where the bit is set, elements
/// `0..16` and `16..32`.
///
/// # Safety
/// The CPU has NEON; the 4 bytes at `qh` are readable.
#[inline(always)]
unsafe fn fifth_bits(qh: *const u8) -> (uint8x16_t, uint8x16_t) {
    /// Byte `k` of each half takes byte `k / 8` of `qh` (`2 + k / 8` for
    /// the second half) ...
    const SPREAD: [u8; 32] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, //
        2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
    ];
    /// ... and tests its bit `k % 8`.
    const BITS: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    // SAFETY: the caller vouches for the 4 bytes; the constants are
    // readable arrays of 16 and 32 bytes.
    unsafe {
        let h = vreinterpretq_u8_u32(vdupq_n_u32(u32::from_le(read_unaligned(qh as *const u32))));
        let bits = vld1q_u8(BITS.as_ptr());
        // Opaque: the callers mask these masks again.
        (
            opaque(vtstq_u8(vqtbl1q_u8(h, vld1q_u8(SPREAD.as_ptr())), bits)),
            opaque(vtstq_u8(
                vqtbl1q_u8(h, vld1q_u8(SPREAD.as_ptr().add(16))),
                bits,
            )),
        )
    }
}

/// Q4_1 blocks (`d`, `m`, 16 bytes of nibbles): the nibbles `0..16`.
pub(super) struct Q41;

impl Block32 for Q41 {
    const BYTES: usize = 20;
    const MIN: bool = true;

    #[inline(always)]
    unsafe fn values(p: *const u8) -> (int8x16_t, int8x16_t) {
        // SAFETY: the caller vouches for the block.
        unsafe { nibbles(vld1q_u8(p.add(4))) }
    }
}

/// Q5_0 blocks (`d`, `qh`, 16 bytes of nibbles): `(q | h << 4) - 16`,
/// in `-16..16`, made as `q | (h ? 0 : 0xf0)` (`0xf0 | q` is `q - 16`).
pub(super) struct Q50;

impl Block32 for Q50 {
    const BYTES: usize = 22;
    const MIN: bool = false;

    #[inline(always)]
    unsafe fn values(p: *const u8) -> (int8x16_t, int8x16_t) {
        // SAFETY: the caller vouches for the block.
        unsafe {
            let (h0, h1) = fifth_bits(p.add(2));
            let (q0, q1) = nibbles(vld1q_u8(p.add(6)));
            let f0 = vdupq_n_u8(0xf0);
            (
                vorrq_s8(q0, vreinterpretq_s8_u8(vbicq_u8(f0, h0))),
                vorrq_s8(q1, vreinterpretq_s8_u8(vbicq_u8(f0, h1))),
            )
        }
    }
}

/// Q5_1 blocks (`d`, `m`, `qh`, 16 bytes of nibbles): `q | h << 4`, in
/// `0..32`.
pub(super) struct Q51;

impl Block32 for Q51 {
    const BYTES: usize = 24;
    const MIN: bool = true;

    #[inline(always)]
    unsafe fn values(p: *const u8) -> (int8x16_t, int8x16_t) {
        // SAFETY: the caller vouches for the block.
        unsafe {
            let (h0, h1) = fifth_bits(p.add(4));
            let (q0, q1) = nibbles(vld1q_u8(p.add(8)));
            let x10 = vdupq_n_u8(0x10);
            (
                vorrq_s8(q0, vreinterpretq_s8_u8(vandq_u8(h0, x10))),
                vorrq_s8(q1, vreinterpretq_s8_u8(vandq_u8(h1, x10))),
            )
        }
    }
}

/// IQ4_NL blocks (`d`, 16 bytes of indices): `IQ4NL_VALUES[q]`, looked up
/// with `tbl`.
pub(super) struct Iq4Nl;

impl Block32 for Iq4Nl {
    const BYTES: usize = 18;
    const MIN: bool = false;

    #[inline(always)]
    unsafe fn values(p: *const u8) -> (int8x16_t, int8x16_t) {
        // SAFETY: the caller vouches for the block; the table is 16 bytes.
        unsafe {
            let table = vld1q_s8(IQ4NL_VALUES.as_ptr());
            let (i0, i1) = nibbles(vld1q_u8(p.add(2)));
            (
                vqtbl1q_s8(table, vreinterpretq_u8_s8(i0)),
                vqtbl1q_s8(table, vreinterpretq_u8_s8(i1)),
            )
        }
    }
}
