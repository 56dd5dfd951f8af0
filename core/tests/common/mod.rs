//! Helpers shared by the integration tests (`mod common;` in each).
// Each test binary uses its own subset.
#![allow(dead_code)]

use llamette::{Model, Session, SessionParams};

/// A file of ../shared (the test models and reference outputs).
pub fn shared(path: &str) -> Vec<u8> {
    let p = format!("{}/../../shared/{}", env!("CARGO_MANIFEST_DIR"), path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// The tokens llama2.c's greedy stories260K run fed at each position.
pub fn greedy_ids() -> Vec<u32> {
    String::from_utf8(shared("testdata/stories260K.greedy.ids.txt"))
        .unwrap()
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect()
}

/// A zeroed, 8-byte-aligned buffer (as `Session::ALIGN` asks) of at least
/// `bytes` bytes; view it with [`as_bytes`].
pub fn aligned_buf(bytes: usize) -> Vec<u64> {
    vec![0u64; bytes.div_ceil(8)]
}

/// A buffer for a session of `model` with `params`.
pub fn session_buf(model: &Model, params: &SessionParams) -> Vec<u64> {
    aligned_buf(Session::required_bytes(model, params).unwrap())
}

/// The buffer as bytes.
pub fn as_bytes(buf: &mut [u64]) -> &mut [u8] {
    bytemuck::cast_slice_mut(buf)
}

/// Lengths to cut a file of `len` bytes at: every length below `first`
/// (inclusive), both sides of each `(name, start, end)` part's boundaries,
/// and 300 spread over the file; each less than `len`, once, in order.
pub fn truncation_cuts(len: usize, first: usize, parts: &[(&str, usize, usize)]) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..=first).collect();
    for &(_, start, end) in parts {
        cuts.extend([start.saturating_sub(1), start, start + 1, end - 1, end + 1]);
    }
    for i in 0..300 {
        cuts.push(i * len / 300);
    }
    cuts.retain(|&c| c < len);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// The GGUF file `bytes` rewritten with every tensor decoded to F32 (its
/// metadata copied as it is): the same model, without the quantization.
pub fn gguf_as_f32(bytes: &[u8]) -> Vec<u8> {
    use llamette::format::gguf::{Gguf, Value, ValueType};
    use llamette::tensor::Tensor;
    let g = Gguf::parse(bytes).unwrap();
    let tag = |v: &Value| -> u32 {
        match v {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::String(_) => 8,
            Value::Array(_) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    };
    let elem_tag = |t: ValueType| t as u32;
    let mut out = Vec::new();
    out.extend(b"GGUF");
    out.extend(3u32.to_le_bytes());
    out.extend(g.n_tensors.to_le_bytes());
    let meta: Vec<_> = g
        .metadata()
        .filter(|(k, _)| *k != b"general.alignment")
        .collect();
    out.extend((meta.len() as u64).to_le_bytes());
    for (k, v) in &meta {
        out.extend((k.len() as u64).to_le_bytes());
        out.extend(*k);
        out.extend(tag(v).to_le_bytes());
        match *v {
            Value::U8(x) => out.push(x),
            Value::I8(x) => out.extend(x.to_le_bytes()),
            Value::U16(x) => out.extend(x.to_le_bytes()),
            Value::I16(x) => out.extend(x.to_le_bytes()),
            Value::U32(x) => out.extend(x.to_le_bytes()),
            Value::I32(x) => out.extend(x.to_le_bytes()),
            Value::F32(x) => out.extend(x.to_le_bytes()),
            Value::Bool(x) => out.push(x as u8),
            Value::String(s) => {
                out.extend((s.len() as u64).to_le_bytes());
                out.extend(s);
            }
            Value::Array(a) => {
                out.extend(elem_tag(a.elem).to_le_bytes());
                out.extend(a.len.to_le_bytes());
                out.extend(a.data);
            }
            Value::U64(x) => out.extend(x.to_le_bytes()),
            Value::I64(x) => out.extend(x.to_le_bytes()),
            Value::F64(x) => out.extend(x.to_le_bytes()),
        }
    }
    // Tensors: records, then the data, each at a multiple of 32.
    let mut data = Vec::new();
    for t in g.tensors() {
        let t = t.unwrap();
        let ty = t.ty.unwrap();
        let (rows, cols) = ((t.n_elements() / t.dims[0]) as usize, t.dims[0] as usize);
        let view = Tensor::new(t.name, ty, rows, cols, g.tensor_data(&t), &[]).unwrap();
        out.extend((t.name.len() as u64).to_le_bytes());
        out.extend(t.name);
        out.extend(t.n_dims.to_le_bytes());
        for d in &t.dims[..t.n_dims as usize] {
            out.extend(d.to_le_bytes());
        }
        out.extend(0u32.to_le_bytes());
        data.resize(data.len().next_multiple_of(32), 0);
        out.extend((data.len() as u64).to_le_bytes());
        let mut row = vec![0f32; cols];
        for r in 0..rows {
            view.dequantize_row(r, &mut row);
            for v in &row {
                data.extend(v.to_le_bytes());
            }
        }
    }
    out.resize(out.len().next_multiple_of(32), 0);
    out.extend(data);
    out
}
