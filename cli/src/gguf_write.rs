//! A streaming GGUF v3 writer: metadata and tensor records first, then each
//! tensor's data as a callback produces it, so that no model is ever held in
//! memory whole.

use std::io::{self, Write};

use llamette::format::gguf::Value;
use llamette::tensor::TensorType;

/// Alignment of the data section and of every tensor.
pub const ALIGNMENT: u64 = 32;

/// A metadata value to write.
pub enum Meta<'a> {
    /// `u32`.
    U32(u32),
    /// `f32`.
    F32(f32),
    /// A string.
    Str(Vec<u8>),
    /// A value copied from another GGUF file, arrays included.
    Copy(Value<'a>),
    /// An array of strings.
    StrArray(Vec<Vec<u8>>),
    /// An array of `f32`.
    F32Array(Vec<f32>),
    /// An array of `i32`.
    I32Array(Vec<i32>),
}

/// A tensor to write: `rows` x `cols` of `ty` (a vector when `rows` is 1 and
/// `vector` is set).
pub struct TensorSpec {
    /// Its GGUF name.
    pub name: String,
    /// Storage type.
    pub ty: TensorType,
    /// Number of rows.
    pub rows: u64,
    /// Elements per row.
    pub cols: u64,
    /// Written with one dimension.
    pub vector: bool,
}

impl TensorSpec {
    /// Bytes of its data.
    pub fn bytes(&self) -> u64 {
        self.rows * (self.cols / self.ty.block_len() as u64) * self.ty.block_bytes() as u64
    }
}

fn put_str(w: &mut impl Write, s: &[u8]) -> io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s)
}

/// GGUF's type code and encoding of a copied value.
fn put_value(w: &mut impl Write, v: &Value) -> io::Result<()> {
    let (code, bytes): (u32, Vec<u8>) = match *v {
        Value::U8(x) => (0, vec![x]),
        Value::I8(x) => (1, vec![x as u8]),
        Value::U16(x) => (2, x.to_le_bytes().to_vec()),
        Value::I16(x) => (3, x.to_le_bytes().to_vec()),
        Value::U32(x) => (4, x.to_le_bytes().to_vec()),
        Value::I32(x) => (5, x.to_le_bytes().to_vec()),
        Value::F32(x) => (6, x.to_le_bytes().to_vec()),
        Value::Bool(x) => (7, vec![x as u8]),
        Value::String(s) => {
            w.write_all(&8u32.to_le_bytes())?;
            return put_str(w, s);
        }
        Value::Array(a) => {
            use llamette::format::gguf::ValueType as T;
            let elem: u32 = match a.elem {
                T::U8 => 0,
                T::I8 => 1,
                T::U16 => 2,
                T::I16 => 3,
                T::U32 => 4,
                T::I32 => 5,
                T::F32 => 6,
                T::Bool => 7,
                T::String => 8,
                T::Array => 9,
                T::U64 => 10,
                T::I64 => 11,
                T::F64 => 12,
            };
            w.write_all(&9u32.to_le_bytes())?;
            w.write_all(&elem.to_le_bytes())?;
            w.write_all(&a.len.to_le_bytes())?;
            // The elements exactly as encoded in the source file.
            return w.write_all(a.data);
        }
        Value::U64(x) => (10, x.to_le_bytes().to_vec()),
        Value::I64(x) => (11, x.to_le_bytes().to_vec()),
        Value::F64(x) => (12, x.to_le_bytes().to_vec()),
    };
    w.write_all(&code.to_le_bytes())?;
    w.write_all(&bytes)
}

/// Counts bytes written, for alignment padding.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Counting<W> {
    fn pad(&mut self) -> io::Result<()> {
        let pad = self.written.next_multiple_of(ALIGNMENT) - self.written;
        self.write_all(&vec![0u8; pad as usize])
    }
}

/// Writes a GGUF v3 file. `data(i, out)` appends the encoded data of tensor
/// `i` (exactly `tensors[i].bytes()` bytes) to `out`, possibly in pieces: it
/// is called with a writer and must write the whole tensor.
pub fn write_gguf<W: Write>(
    w: W,
    meta: &[(String, Meta)],
    tensors: &[TensorSpec],
    mut data: impl FnMut(usize, &mut dyn Write) -> io::Result<()>,
) -> io::Result<W> {
    let mut w = Counting {
        inner: w,
        written: 0,
    };
    w.write_all(b"GGUF")?;
    w.write_all(&3u32.to_le_bytes())?;
    w.write_all(&(tensors.len() as u64).to_le_bytes())?;
    w.write_all(&(meta.len() as u64).to_le_bytes())?;
    for (key, value) in meta {
        put_str(&mut w, key.as_bytes())?;
        match value {
            Meta::U32(x) => put_value(&mut w, &Value::U32(*x))?,
            Meta::F32(x) => put_value(&mut w, &Value::F32(*x))?,
            Meta::Str(s) => put_value(&mut w, &Value::String(s))?,
            Meta::Copy(v) => put_value(&mut w, v)?,
            Meta::StrArray(items) => {
                w.write_all(&9u32.to_le_bytes())?;
                w.write_all(&8u32.to_le_bytes())?;
                w.write_all(&(items.len() as u64).to_le_bytes())?;
                for s in items {
                    put_str(&mut w, s)?;
                }
            }
            Meta::F32Array(items) => {
                w.write_all(&9u32.to_le_bytes())?;
                w.write_all(&6u32.to_le_bytes())?;
                w.write_all(&(items.len() as u64).to_le_bytes())?;
                for x in items {
                    w.write_all(&x.to_le_bytes())?;
                }
            }
            Meta::I32Array(items) => {
                w.write_all(&9u32.to_le_bytes())?;
                w.write_all(&5u32.to_le_bytes())?;
                w.write_all(&(items.len() as u64).to_le_bytes())?;
                for x in items {
                    w.write_all(&x.to_le_bytes())?;
                }
            }
        }
    }
    let mut offset = 0u64;
    for t in tensors {
        put_str(&mut w, t.name.as_bytes())?;
        if t.vector {
            w.write_all(&1u32.to_le_bytes())?;
            w.write_all(&t.cols.to_le_bytes())?;
        } else {
            w.write_all(&2u32.to_le_bytes())?;
            w.write_all(&t.cols.to_le_bytes())?;
            w.write_all(&t.rows.to_le_bytes())?;
        }
        let ty = t.ty.ggml_type().expect("only GGUF types are written");
        w.write_all(&ty.to_le_bytes())?;
        w.write_all(&offset.to_le_bytes())?;
        offset = (offset + t.bytes()).next_multiple_of(ALIGNMENT);
    }
    w.pad()?;
    for (i, t) in tensors.iter().enumerate() {
        let start = w.written;
        data(i, &mut w)?;
        if w.written - start != t.bytes() {
            return Err(io::Error::other(format!(
                "tensor {} wrote {} bytes, expected {}",
                t.name,
                w.written - start,
                t.bytes()
            )));
        }
        w.pad()?;
    }
    w.flush()?;
    Ok(w.inner)
}
