//! The GGML weight types this crate can write, with their GGUF numbers and
//! block geometry.

use crate::error::{Error, Result};

/// A GGML tensor type this crate can write (the number is GGUF's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    /// IEEE single precision.
    F32 = 0,
    /// IEEE half precision.
    F16 = 1,
    /// 32 values: f16 scale, 4-bit levels.
    Q4_0 = 2,
    /// 32 values: f16 scale and minimum, 4-bit levels.
    Q4_1 = 3,
    /// 32 values: f16 scale, 5-bit levels.
    Q5_0 = 6,
    /// 32 values: f16 scale and minimum, 5-bit levels.
    Q5_1 = 7,
    /// 32 values: f16 scale, 8-bit levels.
    Q8_0 = 8,
    /// 256 values: 2-bit levels, 4-bit scales and minimums.
    Q2_K = 10,
    /// 256 values: 3-bit levels, 6-bit scales.
    Q3_K = 11,
    /// 256 values: 4-bit levels, 6-bit scales and minimums.
    Q4_K = 12,
    /// 256 values: 5-bit levels, 6-bit scales and minimums.
    Q5_K = 13,
    /// 256 values: 6-bit levels, 8-bit scales.
    Q6_K = 14,
    /// 32 values: f16 scale, 4-bit indices into a non-linear table.
    IQ4_NL = 20,
    /// Brain float: the top half of an f32.
    BF16 = 30,
}

impl GgmlType {
    /// Every type, in GGUF number order.
    pub const ALL: [GgmlType; 14] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::IQ4_NL,
        GgmlType::BF16,
    ];

    /// The type with GGUF number `n`, if this crate writes it.
    pub fn from_number(n: u32) -> Option<GgmlType> {
        GgmlType::ALL.into_iter().find(|t| t.number() == n)
    }

    /// The GGUF type number.
    pub fn number(self) -> u32 {
        self as u32
    }

    /// ggml's name for it (`"Q4_K"`).
    pub fn name(self) -> &'static str {
        crate::tensor::ggml_type_name(self.number())
    }

    /// Values per block.
    pub fn block_len(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0
            | GgmlType::Q4_1
            | GgmlType::Q5_0
            | GgmlType::Q5_1
            | GgmlType::Q8_0
            | GgmlType::IQ4_NL => 32,
            GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => {
                256
            }
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q5_0 => 22,
            GgmlType::Q5_1 => 24,
            GgmlType::Q8_0 => 34,
            GgmlType::Q2_K => 84,
            GgmlType::Q3_K => 110,
            GgmlType::Q4_K => 144,
            GgmlType::Q5_K => 176,
            GgmlType::Q6_K => 210,
            GgmlType::IQ4_NL => 18,
        }
    }

    /// Whether ggml counts it as quantized (everything but the floats).
    pub fn is_quantized(self) -> bool {
        !matches!(self, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
    }

    /// Bytes of a row of `n` values: an error unless `n` is a multiple of
    /// [`block_len`](Self::block_len) (or the size overflows).
    pub fn row_bytes(self, n: usize) -> Result<usize> {
        if !n.is_multiple_of(self.block_len()) {
            return Err(Error::InvalidArgument {
                what: "row length must be a multiple of the type's block length",
            });
        }
        (n / self.block_len())
            .checked_mul(self.block_bytes())
            .ok_or(Error::InvalidArgument {
                what: "row too long",
            })
    }
}
