//! What each weight type is: its block layout and its scalar reference.
//!
//! One file per family of GGUF types. Each holds the type's `#[repr(C)]`
//! block struct (bytes only, so that a block can be read where it lies, at
//! any alignment; its size is asserted at compile time) and the readable
//! reference of everything a kernel set computes for it:
//!
//! - `dequantize_*`: a row of blocks to f32, bit-identical to ggml's
//!   `dequantize_row_*` (and to the Python `gguf` package's
//!   `gguf.quants.dequantize`, which the tests compare with);
//! - `dot_*`: a row times the activations the type takes, in the summation
//!   order every SIMD set reproduces bit for bit (see [`crate::kernels`]);
//! - for the activation types (Q8 blocks of 32, Q8_K super-blocks of 256),
//!   the quantizer of an f32 vector.
//!
//! | family | weight types | activations |
//! | --- | --- | --- |
//! | [`float`] | F32, F16, BF16 | f32 |
//! | [`q8_0`] | Q8_0 | Q8 (its own blocks, defined there) |
//! | [`q4_0`] | Q4_0 | Q8 |
//! | [`legacy`] | Q4_1, Q5_0, Q5_1, IQ4_NL | Q8 |
//! | [`k_quants`] | Q2_K, Q3_K, Q4_K, Q5_K, Q6_K | Q8_K (defined there) |
//! | [`split`] | llama2.c's int8 groups | f32 |
//!
//! The interleaved layouts of Q8_0 and Q4_0 are in
//! [`crate::kernels::interleave`].
//!
//! Nothing here depends on the rest of the crate but the activation structs
//! ([`crate::kernels::acts`]).

pub mod float;
pub mod k_quants;
pub mod legacy;
pub mod q4_0;
pub mod q8_0;
pub mod split;

// The block lengths are the activations' (which the weight types follow).
pub use super::acts::{QK, QK_K};

/// The storage type of a tensor (variants named as ggml names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum TensorType {
    /// IEEE single precision.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16: the top 16 bits of an f32.
    BF16,
    /// GGUF Q8_0: blocks of 32 int8 with an f16 scale (34 bytes).
    Q8_0,
    /// GGUF Q4_0: blocks of 32 4-bit values with an f16 scale (18 bytes).
    Q4_0,
    /// GGUF Q4_1: 4-bit values with an f16 scale and minimum (20 bytes).
    Q4_1,
    /// GGUF Q5_0: 5-bit values with an f16 scale (22 bytes).
    Q5_0,
    /// GGUF Q5_1: 5-bit values with an f16 scale and minimum (24 bytes).
    Q5_1,
    /// GGUF IQ4_NL: 4-bit indices into a fixed non-linear table, f16 scale
    /// (18 bytes).
    IQ4_NL,
    /// GGUF Q2_K: super-blocks of 256 2-bit values (84 bytes).
    Q2_K,
    /// GGUF Q3_K: super-blocks of 256 3-bit values (110 bytes).
    Q3_K,
    /// GGUF Q4_K: super-blocks of 256 4-bit values (144 bytes).
    Q4_K,
    /// GGUF Q5_K: super-blocks of 256 5-bit values (176 bytes).
    Q5_K,
    /// GGUF Q6_K: super-blocks of 256 6-bit values (210 bytes).
    Q6_K,
    /// llama2.c "version 2": int8 values in `data`, one f32 scale per
    /// `group` values in `scales`.
    Q8Split {
        /// Values per scale.
        group: u32,
    },
    /// Q8_0 rewritten in place for the SIMD kernels (see
    /// [`crate::kernels::interleave`]): bands of 16 rows, each block column
    /// of a band stored as the 16 scales, then the values 4 at a time, row
    /// after row, offset by 128. Same size as Q8_0.
    Q8_0x16,
    /// Q4_0 rewritten in place the same way.
    Q4_0x16,
    /// Q4_K rewritten in place for the SIMD kernels (see
    /// [`crate::kernels::interleave`]): bands of 16 rows, each super-block
    /// column of a band stored 4 bytes at a time, row after row. Same size
    /// as Q4_K.
    Q4_Kx16,
    /// Q5_K rewritten in place the same way.
    Q5_Kx16,
    /// F16 rewritten in place for the SIMD kernels (see
    /// [`crate::kernels::interleave`]): bands of 16 rows, each half band
    /// of 8 rows stored as its columns of 32 values, a column as the 8
    /// rows' 64 bytes, row after row. Same size as F16.
    F16x16,
}

/// The GGML type numbers llamette gives its interleaved types in a GGUF
/// header that [`crate::repack`] rewrote: `0x1000` plus the plain type's.
pub const GGML_Q8_0X16: u32 = 0x1000 + 8;
/// See [`GGML_Q8_0X16`].
pub const GGML_Q4_0X16: u32 = 0x1000 + 2;
/// See [`GGML_Q8_0X16`].
pub const GGML_Q4_KX16: u32 = 0x1000 + 12;
/// See [`GGML_Q8_0X16`].
pub const GGML_Q5_KX16: u32 = 0x1000 + 13;
/// See [`GGML_Q8_0X16`].
pub const GGML_F16X16: u32 = 0x1000 + 1;

/// What a weight type multiplies: the activations as they are, or quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActType {
    /// The f32 activations.
    F32,
    /// Int8 blocks of 32 with an f32 scale and the block's sum
    /// ([`q8_0::quantize`]).
    Q8,
    /// Int8 super-blocks of 256 with an f32 scale and sums per 16
    /// ([`k_quants::quantize_q8k`]).
    Q8K,
}

/// Every plain GGUF type this crate reads, with its GGML number.
pub const GGML_TYPES: [(u32, TensorType); 14] = [
    (0, TensorType::F32),
    (1, TensorType::F16),
    (2, TensorType::Q4_0),
    (3, TensorType::Q4_1),
    (6, TensorType::Q5_0),
    (7, TensorType::Q5_1),
    (8, TensorType::Q8_0),
    (10, TensorType::Q2_K),
    (11, TensorType::Q3_K),
    (12, TensorType::Q4_K),
    (13, TensorType::Q5_K),
    (14, TensorType::Q6_K),
    (20, TensorType::IQ4_NL),
    (30, TensorType::BF16),
];

impl TensorType {
    /// The type for a GGML type number, if supported.
    pub fn from_ggml(ty: u32) -> Option<TensorType> {
        match ty {
            GGML_Q8_0X16 => Some(TensorType::Q8_0x16),
            GGML_Q4_0X16 => Some(TensorType::Q4_0x16),
            GGML_Q4_KX16 => Some(TensorType::Q4_Kx16),
            GGML_Q5_KX16 => Some(TensorType::Q5_Kx16),
            GGML_F16X16 => Some(TensorType::F16x16),
            _ => GGML_TYPES.iter().find(|(n, _)| *n == ty).map(|&(_, t)| t),
        }
    }

    /// The GGML type number (`None` for llama2.c's split layout).
    pub fn ggml_type(self) -> Option<u32> {
        match self {
            TensorType::Q8_0x16 => Some(GGML_Q8_0X16),
            TensorType::Q4_0x16 => Some(GGML_Q4_0X16),
            TensorType::Q4_Kx16 => Some(GGML_Q4_KX16),
            TensorType::Q5_Kx16 => Some(GGML_Q5_KX16),
            TensorType::F16x16 => Some(GGML_F16X16),
            _ => GGML_TYPES.iter().find(|(_, t)| *t == self).map(|&(n, _)| n),
        }
    }

    /// Elements per block.
    pub fn block_len(self) -> usize {
        use TensorType::*;
        match self {
            F32 | F16 | BF16 | Q8Split { .. } => 1,
            Q8_0 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | IQ4_NL | Q8_0x16 | Q4_0x16 | F16x16 => QK,
            Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | Q4_Kx16 | Q5_Kx16 => QK_K,
        }
    }

    /// Bytes per block in `data`.
    pub fn block_bytes(self) -> usize {
        use core::mem::size_of;
        use TensorType::*;
        match self {
            F32 => 4,
            F16 | BF16 => 2,
            F16x16 => 2 * QK,
            Q8Split { .. } => 1,
            Q8_0 | Q8_0x16 => size_of::<q8_0::BlockQ8_0>(),
            Q4_0 | Q4_0x16 => size_of::<q4_0::BlockQ4_0>(),
            Q4_1 => size_of::<legacy::BlockQ4_1>(),
            Q5_0 => size_of::<legacy::BlockQ5_0>(),
            Q5_1 => size_of::<legacy::BlockQ5_1>(),
            IQ4_NL => size_of::<legacy::BlockIq4Nl>(),
            Q2_K => size_of::<k_quants::BlockQ2K>(),
            Q3_K => size_of::<k_quants::BlockQ3K>(),
            Q4_K | Q4_Kx16 => size_of::<k_quants::BlockQ4K>(),
            Q5_K | Q5_Kx16 => size_of::<k_quants::BlockQ5K>(),
            Q6_K => size_of::<k_quants::BlockQ6K>(),
        }
    }

    /// Bytes of `data` for `n` elements (`n` a multiple of the block length).
    pub fn bytes_for(self, n: usize) -> Option<usize> {
        (n / self.block_len()).checked_mul(self.block_bytes())
    }

    /// Whether ggml counts it as quantized (everything but F32, F16, BF16
    /// and interleaved F16).
    pub fn is_quantized(self) -> bool {
        !matches!(
            self,
            TensorType::F32 | TensorType::F16 | TensorType::BF16 | TensorType::F16x16
        )
    }

    /// Whether the type is one of the interleaved layouts (rows in bands of
    /// [`crate::kernels::interleave::BAND`]).
    pub fn is_interleaved(self) -> bool {
        matches!(
            self,
            TensorType::Q8_0x16
                | TensorType::Q4_0x16
                | TensorType::Q4_Kx16
                | TensorType::Q5_Kx16
                | TensorType::F16x16
        )
    }

    /// The activations the type's kernels multiply.
    pub fn act_type(self) -> ActType {
        use TensorType::*;
        match self {
            F32 | F16 | BF16 | F16x16 | Q8Split { .. } => ActType::F32,
            Q8_0 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | IQ4_NL | Q8_0x16 | Q4_0x16 => ActType::Q8,
            Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | Q4_Kx16 | Q5_Kx16 => ActType::Q8K,
        }
    }

    /// Its conventional name.
    pub fn name(self) -> &'static str {
        use TensorType::*;
        match self {
            Q8_0x16 => "Q8_0 (interleaved x16)",
            Q4_0x16 => "Q4_0 (interleaved x16)",
            Q4_Kx16 => "Q4_K (interleaved x16)",
            Q5_Kx16 => "Q5_K (interleaved x16)",
            F16x16 => "F16 (interleaved x16)",
            Q8Split { .. } => "Q8 (llama2.c groups)",
            _ => ggml_type_name(self.ggml_type().unwrap_or(u32::MAX)),
        }
    }
}

/// The conventional name of a GGML type number, for error messages.
pub fn ggml_type_name(ty: u32) -> &'static str {
    const NAMES: [&str; 31] = [
        "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
        "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL",
        "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16",
    ];
    match ty {
        4 | 5 => "unknown",
        34 => "TQ1_0",
        35 => "TQ2_0",
        _ => NAMES.get(ty as usize).copied().unwrap_or("unknown"),
    }
}

/// IEEE half-precision bits (little-endian bytes) to f32.
#[inline]
pub fn f16_le(b: [u8; 2]) -> f32 {
    half::f16::from_bits(u16::from_le_bytes(b)).to_f32()
}

/// Decodes one row of `ty` (`row` exactly its bytes) into `out`, bit for
/// bit as ggml's `dequantize_row_*` (F32/F16/BF16: the exact values).
/// The interleaved and llama2.c split types need more than a row's bytes:
/// see [`crate::kernels::dequantize_row`].
///
/// # Panics
/// If `ty` is one of those, or the lengths do not match.
pub fn dequantize_row(ty: TensorType, row: &[u8], out: &mut [f32]) {
    use TensorType::*;
    assert_eq!(
        ty.bytes_for(out.len()),
        Some(row.len()),
        "dequantize_row: row bytes do not match the output length"
    );
    match ty {
        F32 => float::dequantize_f32(row, out),
        F16 => float::dequantize_f16(row, out),
        BF16 => float::dequantize_bf16(row, out),
        Q8_0 => q8_0::dequantize(row, out),
        Q4_0 => q4_0::dequantize(row, out),
        Q4_1 => legacy::dequantize_q4_1(row, out),
        Q5_0 => legacy::dequantize_q5_0(row, out),
        Q5_1 => legacy::dequantize_q5_1(row, out),
        IQ4_NL => legacy::dequantize_iq4_nl(row, out),
        Q2_K => k_quants::dequantize_q2_k(row, out),
        Q3_K => k_quants::dequantize_q3_k(row, out),
        Q4_K => k_quants::dequantize_q4_k(row, out),
        Q5_K => k_quants::dequantize_q5_k(row, out),
        Q6_K => k_quants::dequantize_q6_k(row, out),
        // The documented contract (# Panics): `kernels::dequantize_row`
        // sends these types to their own decoders, never here.
        #[allow(clippy::panic)]
        Q8Split { .. } | Q8_0x16 | Q4_0x16 | Q4_Kx16 | Q5_Kx16 | F16x16 => {
            panic!("dequantize_row: {} needs its tensor", ty.name())
        }
    }
}

/// Sums eight partial sums in the fixed tree order every kernel set uses:
/// `((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7))`.
#[inline]
pub fn reduce8(a: [f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
}

/// Sums sixteen partial sums: lanes `j` and `j + 8` first, then [`reduce8`].
#[inline]
pub fn reduce16(a: [f32; 16]) -> f32 {
    let mut t = [0f32; 8];
    for (j, t) in t.iter_mut().enumerate() {
        *t = a[j] + a[j + 8];
    }
    reduce8(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ggml_numbers_round_trip() {
        for (n, t) in GGML_TYPES {
            assert_eq!(TensorType::from_ggml(n), Some(t));
            assert_eq!(t.ggml_type(), Some(n));
            assert_eq!(ggml_type_name(n), t.name());
        }
        assert_eq!(TensorType::from_ggml(15), None); // Q8_K: activations only
        assert_eq!(ggml_type_name(12), "Q4_K");
        assert_eq!(ggml_type_name(999), "unknown");
    }

    #[test]
    fn block_sizes_are_ggml_s() {
        use TensorType::*;
        for (t, bytes) in [
            (Q8_0, 34),
            (Q4_0, 18),
            (Q4_1, 20),
            (Q5_0, 22),
            (Q5_1, 24),
            (IQ4_NL, 18),
            (Q2_K, 84),
            (Q3_K, 110),
            (Q4_K, 144),
            (Q5_K, 176),
            (Q6_K, 210),
        ] {
            assert_eq!(t.block_bytes(), bytes, "{t:?}");
        }
    }
}
