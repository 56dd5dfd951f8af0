//! Typed, borrowed views of weight tensors.
//!
//! A [`Tensor`] is a matrix of `rows` x `cols` elements stored row-major in
//! `data` (bytes, never copied, no alignment required). Quantized types store
//! each row as blocks of 32 elements, in GGUF's own layouts ([`BlockQ8_0`],
//! [`BlockQ4_0`]). llama2.c's "version 2" files keep int8 values and f32
//! group scales in two separate arrays: that is [`TensorType::Q8Split`].

use crate::error::{Error, Name, Result};

/// Elements per quantization block (Q8_0, Q4_0 and the activation blocks).
pub const QK: usize = 32;

/// GGUF's Q8_0 block: `x[i] = d * qs[i]`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8_0 {
    /// Scale, IEEE half precision bits.
    pub d: u16,
    /// Quantized values.
    pub qs: [i8; QK],
}

/// GGUF's Q4_0 block: `x[i] = d * (nibble(i) - 8)`; byte `j` holds element `j`
/// in its low nibble and element `j + 16` in its high nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4_0 {
    /// Scale, IEEE half precision bits.
    pub d: u16,
    /// Packed nibbles.
    pub qs: [u8; QK / 2],
}

const _: () = assert!(core::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(core::mem::size_of::<BlockQ4_0>() == 18);

/// The storage type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    /// IEEE single precision.
    F32,
    /// IEEE half precision.
    F16,
    /// GGUF Q8_0: blocks of 32 int8 with an f16 scale (34 bytes).
    Q8_0,
    /// GGUF Q4_0: blocks of 32 4-bit values with an f16 scale (18 bytes).
    Q4_0,
    /// llama2.c "version 2": int8 values in `data`, one f32 scale per
    /// `group` values in `scales`.
    Q8Split {
        /// Values per scale.
        group: u32,
    },
    /// Q8_0 rewritten in place for the SIMD kernels (see [`crate::repack`]):
    /// bands of 16 rows, each block column of a band stored as the 16
    /// scales, then the values 4 at a time, row after row, offset by 128.
    /// Same size as Q8_0; only in memory that [`crate::repack`] rewrote.
    Q8_0x16,
    /// Q4_0 rewritten in place the same way (see [`crate::repack`]).
    Q4_0x16,
}

/// Rows per band of the interleaved types ([`TensorType::Q8_0x16`],
/// [`TensorType::Q4_0x16`]).
pub const BAND: usize = 16;

/// The GGML type numbers llamette gives its interleaved types in a GGUF
/// header that [`crate::repack`] rewrote: `0x1000` plus the plain type's.
pub const GGML_Q8_0X16: u32 = 0x1000 + 8;
/// See [`GGML_Q8_0X16`].
pub const GGML_Q4_0X16: u32 = 0x1000 + 2;

impl TensorType {
    /// The type for a GGML type number, if supported.
    pub fn from_ggml(ty: u32) -> Option<TensorType> {
        match ty {
            0 => Some(TensorType::F32),
            1 => Some(TensorType::F16),
            2 => Some(TensorType::Q4_0),
            8 => Some(TensorType::Q8_0),
            GGML_Q8_0X16 => Some(TensorType::Q8_0x16),
            GGML_Q4_0X16 => Some(TensorType::Q4_0x16),
            _ => None,
        }
    }

    /// The GGML type number (`None` for llama2.c's split layout).
    pub fn ggml_type(self) -> Option<u32> {
        match self {
            TensorType::F32 => Some(0),
            TensorType::F16 => Some(1),
            TensorType::Q4_0 => Some(2),
            TensorType::Q8_0 => Some(8),
            TensorType::Q8_0x16 => Some(GGML_Q8_0X16),
            TensorType::Q4_0x16 => Some(GGML_Q4_0X16),
            TensorType::Q8Split { .. } => None,
        }
    }

    /// Elements per block.
    pub fn block_len(self) -> usize {
        match self {
            TensorType::F32 | TensorType::F16 | TensorType::Q8Split { .. } => 1,
            TensorType::Q8_0 | TensorType::Q4_0 => QK,
            TensorType::Q8_0x16 | TensorType::Q4_0x16 => QK,
        }
    }

    /// Bytes per block in `data`.
    pub fn block_bytes(self) -> usize {
        match self {
            TensorType::F32 => 4,
            TensorType::F16 => 2,
            TensorType::Q8_0 | TensorType::Q8_0x16 => 34,
            TensorType::Q4_0 | TensorType::Q4_0x16 => 18,
            TensorType::Q8Split { .. } => 1,
        }
    }

    /// Bytes of `data` for `n` elements (`n` a multiple of the block length).
    pub fn bytes_for(self, n: usize) -> Option<usize> {
        (n / self.block_len()).checked_mul(self.block_bytes())
    }

    /// Whether the type is one of the interleaved layouts (rows in bands of
    /// [`BAND`]).
    pub fn is_interleaved(self) -> bool {
        matches!(self, TensorType::Q8_0x16 | TensorType::Q4_0x16)
    }

    /// Its conventional name.
    pub fn name(self) -> &'static str {
        match self {
            TensorType::F32 => "F32",
            TensorType::F16 => "F16",
            TensorType::Q8_0 => "Q8_0",
            TensorType::Q4_0 => "Q4_0",
            TensorType::Q8_0x16 => "Q8_0 (interleaved x16)",
            TensorType::Q4_0x16 => "Q4_0 (interleaved x16)",
            TensorType::Q8Split { .. } => "Q8 (llama2.c groups)",
        }
    }
}

/// The conventional name of a GGML type number, for error messages.
pub fn ggml_type_name(ty: u32) -> &'static str {
    match ty {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        _ => "unknown",
    }
}

/// A borrowed `rows` x `cols` matrix (a vector is one row).
#[derive(Debug, Clone, Copy)]
pub struct Tensor<'a> {
    /// Storage type.
    pub ty: TensorType,
    /// Number of rows (output features).
    pub rows: usize,
    /// Elements per row (input features).
    pub cols: usize,
    /// The encoded elements, row-major.
    pub data: &'a [u8],
    /// f32 group scales for [`TensorType::Q8Split`]; empty otherwise.
    pub scales: &'a [u8],
}

impl<'a> Tensor<'a> {
    /// An empty placeholder (0 x 0).
    pub const EMPTY: Tensor<'static> = Tensor {
        ty: TensorType::F32,
        rows: 0,
        cols: 0,
        data: &[],
        scales: &[],
    };

    /// Checks that `data` (and `scales`) hold exactly `rows` x `cols` elements of `ty`.
    pub fn new(
        name: &[u8],
        ty: TensorType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
        scales: &'a [u8],
    ) -> Result<Tensor<'a>> {
        let bad = |reason| Error::BadTensor {
            tensor: Name::new(name),
            reason,
        };
        if !cols.is_multiple_of(ty.block_len()) {
            return Err(bad("row length is not a multiple of the block size"));
        }
        let n = rows.checked_mul(cols).ok_or(bad("size overflows"))?;
        let bytes = ty.bytes_for(n).ok_or(bad("size overflows"))?;
        if data.len() != bytes {
            return Err(bad("data size does not match its shape"));
        }
        if let TensorType::Q8Split { group } = ty {
            let g = group as usize;
            if g == 0 || !cols.is_multiple_of(g) {
                return Err(bad("row length is not a multiple of the group size"));
            }
            if scales.len() != n / g * 4 {
                return Err(bad("scale count does not match its shape"));
            }
        } else if !scales.is_empty() {
            return Err(bad("unexpected scales"));
        }
        if ty.is_interleaved() && !rows.is_multiple_of(BAND) {
            return Err(bad(
                "interleaved tensor's row count is not a multiple of 16",
            ));
        }
        Ok(Tensor {
            ty,
            rows,
            cols,
            data,
            scales,
        })
    }

    /// Bytes of one row in `data`.
    pub fn row_bytes(&self) -> usize {
        self.cols / self.ty.block_len() * self.ty.block_bytes()
    }

    /// Weight bytes read by one pass over the tensor (`data` plus `scales`).
    pub fn n_bytes(&self) -> usize {
        self.data.len() + self.scales.len()
    }

    /// Decodes row `r` into `out` (`out.len() == cols`).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        crate::kernels::dequantize_row(self, r, out)
    }
}
