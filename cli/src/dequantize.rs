//! `llamette dequantize FILE TENSOR OUT`: one tensor of a GGUF file decoded
//! to little-endian f32, for comparing the decoders with other tools (the
//! tests compare them with the Python `gguf` package's).

use std::io::Write;
use std::path::Path;

use llamette::format::gguf::Gguf;
use llamette::tensor::Tensor;

use crate::files::{CliError, Input};

/// Writes tensor `name` of the GGUF `file`, decoded, to `out`.
pub fn dequantize(file: &Path, name: &str, out: &Path) -> Result<(), CliError> {
    let input = Input::open(file)?;
    let g = Gguf::parse(&input.bytes).map_err(|e| input.err(e))?;
    let t = g
        .tensor(name.as_bytes())
        .ok_or_else(|| input.err(format!("no tensor {name}")))?;
    let ty = t.ty.ok_or_else(|| {
        input.err(format!(
            "tensor {name} has type {} ({}), which llamette does not read",
            llamette::tensor::ggml_type_name(t.raw_type),
            t.raw_type
        ))
    })?;
    let cols = t.dims[0] as usize;
    let rows = if cols == 0 {
        0
    } else {
        (t.n_elements() / t.dims[0]) as usize
    };
    let view =
        Tensor::new(t.name, ty, rows, cols, g.tensor_data(&t), &[]).map_err(|e| input.err(e))?;
    let mut bytes = Vec::with_capacity(rows * cols * 4);
    let mut row = vec![0f32; cols];
    for r in 0..rows {
        view.dequantize_row(r, &mut row);
        for v in &row {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    let err = |e: std::io::Error| CliError::new(out.display(), e);
    let mut f = std::fs::File::create(out).map_err(err)?;
    f.write_all(&bytes).map_err(err)?;
    Ok(())
}
