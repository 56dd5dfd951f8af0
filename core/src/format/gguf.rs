//! GGUF v2/v3 reader over borrowed bytes.
//!
//! [`Gguf::parse`] walks the whole header once (every metadata value and every
//! tensor record) with bounds checks, so that later look-ups cannot fail on a
//! malformed file. Nothing is copied: strings, arrays and tensor data are
//! sub-slices of the input.
//!
//! Layout (all little-endian): magic `GGUF`, `u32` version, `u64` tensor count,
//! `u64` metadata count, the metadata key/value pairs, the tensor records
//! (name, `u32` dims, `u64` extents, `u32` type, `u64` offset), then the data
//! section at the next multiple of `general.alignment` (default 32).

use crate::error::{slice, Error, Name, Result};
use crate::tensor::TensorType;

/// `GGUF` read as a little-endian `u32`.
pub const MAGIC: u32 = 0x4655_4747;

/// The type tag of a metadata value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    fn from_u32(v: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match v {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Size in bytes of a fixed-size value, `None` for strings and arrays.
    fn fixed_size(self) -> Option<u64> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }
}

/// A metadata value, borrowed from the file.
#[derive(Debug, Clone, Copy, PartialEq)]
#[allow(missing_docs)]
pub enum Value<'a> {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    /// Raw bytes; GGUF says UTF-8 but this reader does not insist.
    String(&'a [u8]),
    Array(Array<'a>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value<'_> {
    /// The value as an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) if v >= 0 => Some(v as u64),
            Value::I16(v) if v >= 0 => Some(v as u64),
            Value::I32(v) if v >= 0 => Some(v as u64),
            Value::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }

    /// The value as a float, if it is any number.
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => self.as_u64().map(|v| v as f32),
        }
    }
}

/// An array value: `len` elements of type `elem`, whose encoded bytes are `data`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Array<'a> {
    /// Element type. `Array` for an array of arrays, whose elements are
    /// validated by `parse` but have no accessor: `data` holds them encoded.
    pub elem: ValueType,
    /// Number of elements.
    pub len: u64,
    /// The encoded elements, exactly as in the file.
    pub data: &'a [u8],
}

impl<'a> Array<'a> {
    /// Element `i` of an `F32` array.
    pub fn f32_at(&self, i: usize) -> Option<f32> {
        self.fixed_at::<4>(ValueType::F32, i)
            .map(f32::from_le_bytes)
    }

    /// Element `i` of an `I32` array.
    pub fn i32_at(&self, i: usize) -> Option<i32> {
        self.fixed_at::<4>(ValueType::I32, i)
            .map(i32::from_le_bytes)
    }

    fn fixed_at<const N: usize>(&self, ty: ValueType, i: usize) -> Option<[u8; N]> {
        if self.elem != ty {
            return None;
        }
        let start = i.checked_mul(N)?;
        let b = self.data.get(start..start.checked_add(N)?)?;
        b.try_into().ok()
    }

    /// The strings of a `String` array, in order.
    pub fn strings(&self) -> StringIter<'a> {
        StringIter {
            data: if self.elem == ValueType::String {
                self.data
            } else {
                &[]
            },
            pos: 0,
        }
    }
}

/// Iterator over the strings of a GGUF string array (already bounds-checked).
#[derive(Debug, Clone)]
pub struct StringIter<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> StringIter<'a> {
    /// Byte offset of the next string's length prefix within the array data.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for StringIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let mut r = Reader {
            bytes: self.data,
            pos: self.pos as u64,
        };
        let s = r.string("string").ok()?;
        self.pos = r.pos as usize;
        Some(s)
    }
}

/// One tensor record.
#[derive(Debug, Clone, Copy)]
pub struct TensorInfo<'a> {
    /// Its name.
    pub name: &'a [u8],
    /// Number of dimensions used (1 to 4).
    pub n_dims: u32,
    /// Extents, fastest-varying first (`dims[0]` is the row length); unused ones are 1.
    pub dims: [u64; 4],
    /// The raw GGML type number.
    pub raw_type: u32,
    /// The type, if this crate knows it.
    pub ty: Option<TensorType>,
    /// Offset of its data from the start of the file.
    pub offset: u64,
    /// Size of its data in bytes (0 when the type is unknown).
    pub size: u64,
    /// Offset of the record's type number in the file (for
    /// [`crate::repack`], which rewrites it in place).
    pub(crate) type_at: u64,
}

impl<'a> TensorInfo<'a> {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file.
#[derive(Debug, Clone, Copy)]
pub struct Gguf<'a> {
    bytes: &'a [u8],
    /// The GGUF version (2 or 3).
    pub version: u32,
    /// Number of metadata pairs.
    pub n_metadata: u64,
    /// Number of tensors.
    pub n_tensors: u64,
    /// Alignment of the data section and of each tensor.
    pub alignment: u64,
    /// Offset of the data section.
    pub data_offset: u64,
    metadata_start: u64,
    tensors_start: u64,
}

/// Upper bound on tensor dims accepted.
const MAX_DIMS: u32 = 4;

impl<'a> Gguf<'a> {
    /// Parses and validates the header, the metadata and the tensor records.
    pub fn parse(bytes: &'a [u8]) -> Result<Gguf<'a>> {
        let mut r = Reader { bytes, pos: 0 };
        let magic = r.u32("GGUF magic")?;
        if magic != MAGIC {
            return Err(Error::BadMagic { found: magic });
        }
        let version = r.u32("GGUF version")?;
        if !(2..=3).contains(&version) {
            return Err(Error::UnsupportedVersion {
                format: "GGUF",
                version,
            });
        }
        let n_tensors = r.u64("GGUF tensor count")?;
        let n_metadata = r.u64("GGUF metadata count")?;
        // Every record takes at least 8 bytes: reject absurd counts before looping.
        let len = bytes.len() as u64;
        if n_tensors > len / 8 {
            return Err(Error::BadConfig {
                reason: "GGUF tensor count exceeds what the file can hold",
                value: n_tensors,
            });
        }
        if n_metadata > len / 8 {
            return Err(Error::BadConfig {
                reason: "GGUF metadata count exceeds what the file can hold",
                value: n_metadata,
            });
        }
        let metadata_start = r.pos;
        let mut alignment = 32u64;
        for _ in 0..n_metadata {
            let key = r.string("metadata key")?;
            let value = r.value(key)?;
            if key == b"general.alignment" {
                alignment = match value.as_u64() {
                    Some(a) if a.is_power_of_two() && a <= 1 << 20 => a,
                    _ => {
                        return Err(Error::BadMetadata {
                            key: Name::new(key),
                            reason: "alignment must be a power of two up to 1 MiB",
                        })
                    }
                };
            }
        }
        let tensors_start = r.pos;
        for _ in 0..n_tensors {
            r.tensor_info()?;
        }
        let data_offset = align_up(r.pos, alignment).ok_or(Error::BadConfig {
            reason: "GGUF data offset overflows",
            value: r.pos,
        })?;
        let g = Gguf {
            bytes,
            version,
            n_metadata,
            n_tensors,
            alignment,
            data_offset,
            metadata_start,
            tensors_start,
        };
        // Second pass: every tensor of a known type lies inside the file, aligned.
        if n_tensors > 0 && data_offset > len {
            return Err(Error::Truncated {
                what: "GGUF data section",
                offset: data_offset,
                needed: 0,
                len,
            });
        }
        for t in g.tensors() {
            let t = t?;
            if t.ty.is_some() {
                if t.offset.checked_add(t.size).is_none_or(|e| e > len) {
                    return Err(Error::BadTensor {
                        tensor: Name::new(t.name),
                        reason: "its data lies outside the file",
                    });
                }
                if (t.offset - data_offset) % alignment != 0 {
                    return Err(Error::BadTensor {
                        tensor: Name::new(t.name),
                        reason: "its offset is not a multiple of general.alignment",
                    });
                }
            }
        }
        Ok(g)
    }

    /// The whole file.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Iterates over the metadata pairs in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&'a [u8], Value<'a>)> + 'a {
        let mut r = Reader {
            bytes: self.bytes,
            pos: self.metadata_start,
        };
        // parse() has validated every pair, so reading cannot fail here.
        (0..self.n_metadata).map_while(move |_| {
            let key = r.string("metadata key").ok()?;
            let value = r.value(key).ok()?;
            Some((key, value))
        })
    }

    /// The value of metadata `key`, if present.
    pub fn get(&self, key: &str) -> Option<Value<'a>> {
        self.metadata()
            .find(|(k, _)| *k == key.as_bytes())
            .map(|(_, v)| v)
    }

    /// Metadata `key` as an unsigned integer; absent is `Ok(None)`, a non-integer an error.
    pub fn get_u64(&self, key: &'static str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or(Error::BadMetadata {
                key: Name::new(key.as_bytes()),
                reason: "expected a non-negative integer",
            }),
        }
    }

    /// Metadata `key` as a float; absent is `Ok(None)`, a non-number an error.
    pub fn get_f32(&self, key: &'static str) -> Result<Option<f32>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f32().map(Some).ok_or(Error::BadMetadata {
                key: Name::new(key.as_bytes()),
                reason: "expected a number",
            }),
        }
    }

    /// Metadata `key` as a string; absent is `Ok(None)`, a non-string an error.
    pub fn get_str(&self, key: &'static str) -> Result<Option<&'a [u8]>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(Error::BadMetadata {
                key: Name::new(key.as_bytes()),
                reason: "expected a string",
            }),
        }
    }

    /// Metadata `key` as a bool; absent is `Ok(None)`, a non-bool an error.
    pub fn get_bool(&self, key: &'static str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(Error::BadMetadata {
                key: Name::new(key.as_bytes()),
                reason: "expected a bool",
            }),
        }
    }

    /// Metadata `key` as an array of `elem`; absent is `Ok(None)`, anything else an error.
    pub fn get_array(&self, key: &'static str, elem: ValueType) -> Result<Option<Array<'a>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) if a.elem == elem => Ok(Some(a)),
            Some(_) => Err(Error::BadMetadata {
                key: Name::new(key.as_bytes()),
                reason: "expected an array of another element type",
            }),
        }
    }

    /// Iterates over the tensor records in file order (offsets made absolute).
    pub fn tensors(&self) -> impl Iterator<Item = Result<TensorInfo<'a>>> + 'a {
        let mut r = Reader {
            bytes: self.bytes,
            pos: self.tensors_start,
        };
        let data_offset = self.data_offset;
        (0..self.n_tensors).map(move |_| {
            let mut t = r.tensor_info()?;
            t.offset = t.offset.checked_add(data_offset).ok_or(Error::BadTensor {
                tensor: Name::new(t.name),
                reason: "offset overflows",
            })?;
            Ok(t)
        })
    }

    /// The record of tensor `name`, if present.
    pub fn tensor(&self, name: &[u8]) -> Option<TensorInfo<'a>> {
        self.tensors()
            .filter_map(|t| t.ok())
            .find(|t| t.name == name)
    }

    /// The data of a tensor whose type is known (bounds were checked by `parse`).
    ///
    /// Empty for a tensor of unknown type (its size is unknown, so `parse`
    /// did not check its offset, which may lie anywhere) and for a record
    /// that does not describe data inside this file.
    pub fn tensor_data(&self, t: &TensorInfo<'a>) -> &'a [u8] {
        let range = usize::try_from(t.offset).ok().zip(
            t.offset
                .checked_add(t.size)
                .and_then(|e| usize::try_from(e).ok()),
        );
        range
            .and_then(|(start, end)| self.bytes.get(start..end))
            .unwrap_or(&[])
    }
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    Some(x.checked_add(a - 1)? / a * a)
}

/// A bounds-checked little-endian cursor.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: u64,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8]> {
        let s = slice(self.bytes, self.pos, n, what)?;
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let (offset, len) = (self.pos, self.bytes.len() as u64);
        // `take` returns exactly N bytes, so the `None` arm is never taken.
        match self.take(N as u64, what)?.first_chunk::<N>() {
            Some(a) => Ok(*a),
            None => Err(Error::Truncated {
                what,
                offset,
                needed: N as u64,
                len,
            }),
        }
    }

    fn u32(&mut self, what: &'static str) -> Result<u32> {
        self.array::<4>(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64> {
        self.array::<8>(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: &'static str) -> Result<&'a [u8]> {
        let n = self.u64(what)?;
        self.take(n, what)
    }

    fn value(&mut self, key: &[u8]) -> Result<Value<'a>> {
        let raw = self.u32("metadata value type")?;
        let ty = ValueType::from_u32(raw).ok_or(Error::BadMetadata {
            key: Name::new(key),
            reason: "unknown value type",
        })?;
        self.value_of(ty, key, 0)
    }

    fn value_of(&mut self, ty: ValueType, key: &[u8], depth: u32) -> Result<Value<'a>> {
        const W: &str = "metadata value";
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(W)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(W)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(W)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(W)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(W)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(W)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(W)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(W)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(W)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(W)?)),
            ValueType::Bool => match self.array::<1>(W)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => {
                    return Err(Error::BadMetadata {
                        key: Name::new(key),
                        reason: "a bool must be 0 or 1",
                    })
                }
            },
            ValueType::String => Value::String(self.string("metadata string")?),
            ValueType::Array => {
                if depth > 2 {
                    return Err(Error::BadMetadata {
                        key: Name::new(key),
                        reason: "arrays nested too deeply",
                    });
                }
                let raw = self.u32("array element type")?;
                let elem = ValueType::from_u32(raw).ok_or(Error::BadMetadata {
                    key: Name::new(key),
                    reason: "unknown array element type",
                })?;
                let len = self.u64("array length")?;
                let start = self.pos;
                match elem.fixed_size() {
                    Some(size) => {
                        let n = len.checked_mul(size).ok_or(Error::BadMetadata {
                            key: Name::new(key),
                            reason: "array length overflows",
                        })?;
                        let data = self.take(n, "metadata array")?;
                        // A bool is 0 or 1 in an array too (as for a single value).
                        if elem == ValueType::Bool && data.iter().any(|&b| b > 1) {
                            return Err(Error::BadMetadata {
                                key: Name::new(key),
                                reason: "a bool must be 0 or 1",
                            });
                        }
                    }
                    None => {
                        // Each element needs at least 8 bytes (a length or a type tag).
                        let left = self.bytes.len() as u64 - self.pos;
                        if len > left / 8 {
                            return Err(Error::Truncated {
                                what: "metadata array",
                                offset: self.pos,
                                needed: len.saturating_mul(8),
                                len: self.bytes.len() as u64,
                            });
                        }
                        for _ in 0..len {
                            self.value_of(elem, key, depth + 1)?;
                        }
                    }
                }
                Value::Array(Array {
                    elem,
                    len,
                    data: &self.bytes[start as usize..self.pos as usize],
                })
            }
        })
    }

    fn tensor_info(&mut self) -> Result<TensorInfo<'a>> {
        let name = self.string("tensor name")?;
        let n_dims = self.u32("tensor dimension count")?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(Error::BadTensor {
                tensor: Name::new(name),
                reason: "dimension count must be 1 to 4",
            });
        }
        let mut dims = [1u64; 4];
        let mut n_elements = 1u64;
        for d in dims.iter_mut().take(n_dims as usize) {
            *d = self.u64("tensor extent")?;
            n_elements = n_elements.checked_mul(*d).ok_or(Error::BadTensor {
                tensor: Name::new(name),
                reason: "element count overflows",
            })?;
        }
        let type_at = self.pos;
        let raw_type = self.u32("tensor type")?;
        let offset = self.u64("tensor offset")?;
        let ty = TensorType::from_ggml(raw_type);
        let mut size = 0;
        if let Some(ty) = ty {
            if dims[0] % ty.block_len() as u64 != 0 {
                return Err(Error::BadTensor {
                    tensor: Name::new(name),
                    reason: "row length is not a multiple of the type's block size",
                });
            }
            size = (n_elements / ty.block_len() as u64)
                .checked_mul(ty.block_bytes() as u64)
                .ok_or(Error::BadTensor {
                    tensor: Name::new(name),
                    reason: "byte size overflows",
                })?;
        }
        Ok(TensorInfo {
            name,
            n_dims,
            dims,
            raw_type,
            ty,
            offset,
            size,
            type_at,
        })
    }
}
