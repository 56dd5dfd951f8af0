//! Typed, borrowed views of weight tensors.
//!
//! A [`Tensor`] is a matrix of `rows` x `cols` elements stored row-major in
//! `data` (bytes, never copied, no alignment required). Quantized types store
//! each row as blocks (of 32 or 256 elements) in GGUF's own layouts (see
//! [`crate::kernels::types`]). llama2.c's "version 2" files keep int8
//! values and f32 group scales in two separate arrays: that is
//! [`TensorType::Q8Split`].

use crate::error::{Error, Name, Result};
use crate::kernels::interleave::BAND;
pub use crate::kernels::types::{ggml_type_name, TensorType};

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
        crate::kernels::dequantize_row(self.ty, self.data, self.scales, r, out)
    }
}
