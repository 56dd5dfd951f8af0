//! Bad input to the model readers and to the session gives a typed
//! [`llamette::Error`]: never a panic, never an absurd allocation, never a hang.
//!
//! - truncation of the real GGUF and llama2.c files at every length up to
//!   4096, at every tensor and record boundary +-1 and at a few hundred more;
//! - hand-made malformed GGUF files, built by the small writer below so that
//!   each case says exactly what is wrong, plus byte patches of the real file;
//! - malformed llama2.c headers;
//! - seeded random mutations of the real headers (no panic, and a model that
//!   still loads must run);
//! - session buffer sizes, context length and bad `feed` arguments.

use std::panic::{catch_unwind, AssertUnwindSafe};

use llamette::format::gguf::Gguf;
use llamette::{Error, Model, Session, SessionParams};

mod common;
use common::{aligned_buf, as_bytes, shared, truncation_cuts};

// ---------------------------------------------------------------------------
// Shared helpers

fn gguf_file() -> Vec<u8> {
    shared("models/stories260K.gguf")
}

fn bin_file() -> Vec<u8> {
    shared("models/stories260K.bin")
}

/// Runs `f`, turning a panic into a test failure that says which input did it.
fn no_panic<T>(what: impl FnOnce() -> String, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => panic!("PANIC on {}", what()),
    }
}

/// The variant's name, for tallies and messages.
fn kind(e: &Error) -> &'static str {
    match e {
        Error::Truncated { .. } => "Truncated",
        Error::BadMagic { .. } => "BadMagic",
        Error::UnsupportedVersion { .. } => "UnsupportedVersion",
        Error::UnsupportedArchitecture { .. } => "UnsupportedArchitecture",
        Error::UnsupportedTensorType { .. } => "UnsupportedTensorType",
        Error::MissingMetadata { .. } => "MissingMetadata",
        Error::BadMetadata { .. } => "BadMetadata",
        Error::MissingTensor { .. } => "MissingTensor",
        Error::BadTensor { .. } => "BadTensor",
        Error::BadConfig { .. } => "BadConfig",
        Error::InvalidArgument { .. } => "InvalidArgument",
        _ => "other",
    }
}

/// The error of loading `bytes`, which must fail (without panicking).
fn load_err(label: &str, bytes: &[u8]) -> Error {
    let r = no_panic(|| label.to_string(), || Model::load(bytes).map(|_| ()));
    match r {
        Ok(()) => panic!("{label}: loaded, but it should have failed"),
        Err(e) => {
            // Every error prints without panicking.
            let _ = e.to_string();
            e
        }
    }
}

/// The logits after feeding `tokens` one at a time to a fresh session.
fn logits_after(model: &Model, tokens: &[u32], context: usize) -> Vec<f32> {
    let params = SessionParams {
        context,
        ..Default::default()
    };
    let mut buf = aligned_buf(Session::required_bytes(model, &params).unwrap());
    let mut s = Session::new(model, params, as_bytes(&mut buf)).unwrap();
    for t in tokens {
        s.feed(std::slice::from_ref(t)).unwrap();
    }
    s.logits().unwrap().to_vec()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Position of the record of tensor `name` in a GGUF file: `(start of its
/// name-length prefix, position of its n_dims field)`.
fn tensor_record(bytes: &[u8], name: &[u8]) -> (usize, usize) {
    let mut needle = (name.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(name);
    // The tensor records follow the metadata: take the last occurrence.
    let start = bytes
        .windows(needle.len())
        .rposition(|w| w == needle.as_slice())
        .unwrap_or_else(|| panic!("no tensor record {}", String::from_utf8_lossy(name)));
    (start, start + needle.len())
}

/// Offsets of a tensor record's fields from its n_dims position.
struct RecordFields {
    n_dims: usize,
    dims: usize,
    ty: usize,
    offset: usize,
}

fn record_fields(bytes: &[u8], name: &[u8]) -> RecordFields {
    let (_, n_dims) = tensor_record(bytes, name);
    let nd = get_u32(bytes, n_dims) as usize;
    RecordFields {
        n_dims,
        dims: n_dims + 4,
        ty: n_dims + 4 + 8 * nd,
        offset: n_dims + 8 + 8 * nd,
    }
}

// ---------------------------------------------------------------------------
// A tiny GGUF writer: each malformed case below is this file's model with one
// thing changed.

/// GGUF metadata value type tags.
mod tag {
    pub const U8: u32 = 0;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
}

/// A metadata value as written.
#[derive(Clone, Debug)]
enum Val {
    U8(u8),
    U32(u32),
    I32(i32),
    U64(u64),
    F32(f32),
    /// The raw byte of a bool (GGUF allows only 0 and 1).
    Bool(u8),
    Str(Vec<u8>),
    /// An array: the element type tag, then elements of that type.
    Arr(u32, Vec<Val>),
    /// Any type tag followed by any payload bytes.
    Raw(u32, Vec<u8>),
}

impl Val {
    fn str(s: &str) -> Val {
        Val::Str(s.as_bytes().to_vec())
    }

    fn tag(&self) -> u32 {
        match self {
            Val::U8(_) => tag::U8,
            Val::U32(_) => tag::U32,
            Val::I32(_) => tag::I32,
            Val::U64(_) => tag::U64,
            Val::F32(_) => tag::F32,
            Val::Bool(_) => tag::BOOL,
            Val::Str(_) => tag::STRING,
            Val::Arr(..) => tag::ARRAY,
            Val::Raw(t, _) => *t,
        }
    }

    /// The value's bytes after its type tag.
    fn payload(&self, out: &mut Vec<u8>) {
        match self {
            Val::U8(v) | Val::Bool(v) => out.push(*v),
            Val::U32(v) => out.extend(v.to_le_bytes()),
            Val::I32(v) => out.extend(v.to_le_bytes()),
            Val::U64(v) => out.extend(v.to_le_bytes()),
            Val::F32(v) => out.extend(v.to_le_bytes()),
            Val::Str(s) => {
                out.extend((s.len() as u64).to_le_bytes());
                out.extend(s);
            }
            Val::Arr(elem, items) => {
                out.extend(elem.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for v in items {
                    v.payload(out);
                }
            }
            Val::Raw(_, bytes) => out.extend(bytes),
        }
    }
}

/// An array header claiming `len` elements of type `elem`, followed by `body`.
fn raw_array(elem: u32, len: u64, body: &[u8]) -> Val {
    let mut b = elem.to_le_bytes().to_vec();
    b.extend(len.to_le_bytes());
    b.extend(body);
    Val::Raw(tag::ARRAY, b)
}

#[derive(Clone, Debug)]
struct TensorRec {
    name: Vec<u8>,
    /// Extents, fastest-varying first; `dims.len()` is written as n_dims.
    dims: Vec<u64>,
    /// GGML type number.
    ty: u32,
    /// Offset written in the record; `None` = where the writer puts the data.
    offset: Option<u64>,
    data: Vec<u8>,
}

#[derive(Clone, Debug)]
struct GgufWriter {
    magic: [u8; 4],
    version: u32,
    /// Written instead of the real counts when set.
    n_tensors: Option<u64>,
    n_kv: Option<u64>,
    kv: Vec<(Vec<u8>, Val)>,
    tensors: Vec<TensorRec>,
    /// Where the writer places the data section and each tensor.
    alignment: u64,
}

impl GgufWriter {
    /// stories260K, rebuilt from its GGUF: the `llama.*` keys written out
    /// here, every tensor (record and data) copied from the file.
    fn stories260k() -> GgufWriter {
        let file = gguf_file();
        let g = Gguf::parse(&file).unwrap();
        let tensors = g
            .tensors()
            .map(|t| {
                let t = t.unwrap();
                TensorRec {
                    name: t.name.to_vec(),
                    dims: t.dims[..t.n_dims as usize].to_vec(),
                    ty: t.raw_type,
                    offset: None,
                    data: g.tensor_data(&t).to_vec(),
                }
            })
            .collect();
        let kv = vec![
            ("general.architecture", Val::str("llama")),
            ("llama.context_length", Val::U32(2048)),
            ("llama.embedding_length", Val::U32(64)),
            ("llama.feed_forward_length", Val::U32(172)),
            ("llama.attention.head_count", Val::U32(8)),
            ("llama.attention.head_count_kv", Val::U32(4)),
            ("llama.block_count", Val::U32(5)),
            ("llama.rope.dimension_count", Val::U32(8)),
            ("llama.attention.layer_norm_rms_epsilon", Val::F32(1e-5)),
        ];
        GgufWriter {
            magic: *b"GGUF",
            version: 3,
            n_tensors: None,
            n_kv: None,
            kv: kv
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
            tensors,
            alignment: 32,
        }
    }

    /// Sets (or adds) metadata `key`.
    fn set(mut self, key: &str, v: Val) -> Self {
        match self.kv.iter_mut().find(|(k, _)| k == key.as_bytes()) {
            Some((_, old)) => *old = v,
            None => self.kv.push((key.as_bytes().to_vec(), v)),
        }
        self
    }

    fn remove(mut self, key: &str) -> Self {
        let n = self.kv.len();
        self.kv.retain(|(k, _)| k != key.as_bytes());
        assert_eq!(self.kv.len(), n - 1, "no key {key}");
        self
    }

    fn tensor(&mut self, name: &str) -> &mut TensorRec {
        self.tensors
            .iter_mut()
            .find(|t| t.name == name.as_bytes())
            .unwrap_or_else(|| panic!("no tensor {name}"))
    }

    fn edit(mut self, name: &str, f: impl FnOnce(&mut TensorRec)) -> Self {
        f(self.tensor(name));
        self
    }

    fn remove_tensor(mut self, name: &str) -> Self {
        let n = self.tensors.len();
        self.tensors.retain(|t| t.name != name.as_bytes());
        assert_eq!(self.tensors.len(), n - 1, "no tensor {name}");
        self
    }

    fn push_tensor(mut self, t: TensorRec) -> Self {
        self.tensors.push(t);
        self
    }

    fn build(&self) -> Vec<u8> {
        let align = |x: u64| x.div_ceil(self.alignment) * self.alignment;
        let mut out = Vec::new();
        out.extend(self.magic);
        out.extend(self.version.to_le_bytes());
        out.extend(
            self.n_tensors
                .unwrap_or(self.tensors.len() as u64)
                .to_le_bytes(),
        );
        out.extend(self.n_kv.unwrap_or(self.kv.len() as u64).to_le_bytes());
        for (k, v) in &self.kv {
            out.extend((k.len() as u64).to_le_bytes());
            out.extend(k);
            out.extend(v.tag().to_le_bytes());
            v.payload(&mut out);
        }
        // Each tensor's data at the next aligned offset of the data section.
        let mut at = Vec::new();
        let mut pos = 0u64;
        for t in &self.tensors {
            pos = align(pos);
            at.push(pos);
            pos += t.data.len() as u64;
        }
        for (t, &auto) in self.tensors.iter().zip(&at) {
            out.extend((t.name.len() as u64).to_le_bytes());
            out.extend(&t.name);
            out.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(t.ty.to_le_bytes());
            out.extend(t.offset.unwrap_or(auto).to_le_bytes());
        }
        let base = align(out.len() as u64) as usize;
        out.resize(base, 0);
        for (t, &auto) in self.tensors.iter().zip(&at) {
            out.resize(base + auto as usize, 0);
            out.extend(&t.data);
        }
        out
    }
}

fn f32_tensor(name: &str, dims: &[u64]) -> TensorRec {
    let n: u64 = dims.iter().product();
    TensorRec {
        name: name.as_bytes().to_vec(),
        dims: dims.to_vec(),
        ty: 0,
        offset: None,
        data: vec![0; 4 * n as usize],
    }
}

fn base() -> GgufWriter {
    GgufWriter::stories260k()
}

fn name_is(n: &llamette::error::Name, want: &str) -> bool {
    n.to_string() == want
}

// ---------------------------------------------------------------------------
// The writer itself is right: its rebuild of stories260K runs exactly like the
// original file, in GGUF v3 and v2, with general.alignment 64.

#[test]
fn writer_rebuild_matches_the_real_file() {
    let real = gguf_file();
    let real = Model::load(&real).unwrap();
    let want = logits_after(&real, &[1, 403, 407], 8);
    for w in [
        base(),
        GgufWriter {
            version: 2,
            ..base()
        },
        GgufWriter {
            alignment: 64,
            ..base().set("general.alignment", Val::U32(64))
        },
    ] {
        let bytes = w.build();
        let m = Model::load(&bytes).unwrap();
        assert_eq!(m.config, real.config);
        assert_eq!(m.format, llamette::model::Format::Gguf(w.version));
        assert_eq!(logits_after(&m, &[1, 403, 407], 8), want);
    }
    // Without output.weight the classifier is tied to the embedding.
    let bytes = base().remove_tensor("output.weight").build();
    let m = Model::load(&bytes).unwrap();
    assert!(m.tied_output);
    assert_eq!(logits_after(&m, &[1, 403, 407], 8), want);
}

// ---------------------------------------------------------------------------
// Truncation

#[test]
fn gguf_truncated_anywhere_is_an_error() {
    let file = gguf_file();
    let g = Gguf::parse(&file).unwrap();
    let tensors: Vec<_> = g.tensors().map(|t| t.unwrap()).collect();
    let data_offset = g.data_offset as usize;

    let mut cuts: Vec<usize> = (0..=4096).collect();
    let mut near = |x: usize| cuts.extend([x.saturating_sub(1), x, x + 1]);
    near(data_offset);
    for t in &tensors {
        near(t.offset as usize);
        near((t.offset + t.size) as usize);
        let (rec, _) = tensor_record(&file, t.name);
        near(rec);
    }
    for (key, _) in g.metadata() {
        near(find(&file, key).unwrap() - 8);
    }
    for i in 0..300 {
        cuts.push(i * file.len() / 300);
    }
    cuts.retain(|&c| c < file.len());
    cuts.sort_unstable();
    cuts.dedup();

    let mut tally = std::collections::BTreeMap::<&str, usize>::new();
    for &cut in &cuts {
        let bytes = &file[..cut];
        let e = load_err(&format!("GGUF cut at {cut}"), bytes);
        *tally.entry(kind(&e)).or_default() += 1;
        let pe = no_panic(
            || format!("Gguf::parse cut at {cut}"),
            || Gguf::parse(bytes).err(),
        );
        // Interleaving in place: an error leaves the bytes as they were; an
        // F32 model has nothing to rewrite.
        let mut copy = bytes.to_vec();
        match no_panic(
            || format!("repack cut at {cut}"),
            || llamette::repack::repack_in_place(&mut copy),
        ) {
            Ok(done) => assert_eq!(done.tensors, 0, "cut {cut}"),
            Err(_) => assert!(
                copy == bytes,
                "cut {cut}: a failed repack changed the bytes"
            ),
        }
        if cut < data_offset {
            // The header itself is cut short.
            match e {
                Error::Truncated { len, .. } => assert_eq!(len, cut as u64, "cut {cut}"),
                Error::BadConfig { reason, .. } => {
                    assert!(reason.contains("count exceeds"), "cut {cut}: {e}")
                }
                _ => panic!("cut at {cut}: unexpected {e:?}"),
            }
            if cut >= 4 {
                // (Below 4 bytes Model::load names the "file magic" itself.)
                assert_eq!(pe, Some(e), "cut {cut}: parse and load disagree");
            }
        } else {
            // The header is whole: the first tensor in record order whose data
            // does not fit is named.
            let first = tensors
                .iter()
                .find(|t| t.offset + t.size > cut as u64)
                .unwrap();
            match e {
                Error::BadTensor { tensor, reason } => {
                    assert!(name_is(&tensor, std::str::from_utf8(first.name).unwrap()));
                    assert!(reason.contains("outside the file"), "{e}");
                }
                _ => panic!("cut at {cut}: unexpected {e:?}"),
            }
        }
    }
    eprintln!("GGUF: {} truncation lengths: {tally:?}", cuts.len());
    assert!(Model::load(&file).is_ok());
}

/// `(name, start, end)` of every part of a llama2.c version 0 file, in order.
fn bin_layout(file: &[u8]) -> Vec<(&'static str, usize, usize)> {
    let h: Vec<usize> = (0..7).map(|i| get_u32(file, 4 * i) as usize).collect();
    let (dim, hidden, nl, nh, nkv, vocab, seq) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6]);
    let hd = dim / nh;
    let kv = hd * nkv;
    let mut parts = vec![("llama2.c header", 0, 28)];
    let mut pos = 28;
    let mut push = |name, n_floats: usize| {
        parts.push((name, pos, pos + 4 * n_floats));
        pos += 4 * n_floats;
    };
    push("token_embedding_table", vocab * dim);
    let per_layer: [(&str, usize); 9] = [
        ("rms_att_weight", dim),
        ("wq", dim * dim),
        ("wk", kv * dim),
        ("wv", kv * dim),
        ("wo", dim * dim),
        ("rms_ffn_weight", dim),
        ("w1", hidden * dim),
        ("w2", dim * hidden),
        ("w3", hidden * dim),
    ];
    for (name, n) in per_layer {
        for _ in 0..nl {
            push(name, n);
        }
    }
    push("rms_final_weight", dim);
    push("freq_cis tables", seq * hd);
    parts
}

#[test]
fn llama2c_truncated_anywhere_is_an_error() {
    let file = bin_file();
    let layout = bin_layout(&file);
    assert_eq!(
        layout.last().unwrap().2,
        file.len(),
        "layout covers the file"
    );

    let cuts = truncation_cuts(file.len(), 4096, &layout);

    for &cut in &cuts {
        let e = load_err(&format!("llama2.c cut at {cut}"), &file[..cut]);
        let Error::Truncated { what, len, .. } = e else {
            panic!("cut at {cut}: unexpected {e:?}");
        };
        assert_eq!(len, cut as u64);
        // It names the part that is cut (the magic check comes first).
        let want = match cut {
            0..=3 => "file magic",
            _ => {
                let part = layout.iter().find(|p| p.2 > cut).unwrap();
                part.0
            }
        };
        assert_eq!(what, want, "cut at {cut}");
    }
    eprintln!("llama2.c: {} truncation lengths", cuts.len());
    assert!(Model::load(&file).is_ok());
}

// ---------------------------------------------------------------------------
// GGUF header, by patching the real file

#[test]
fn gguf_bad_magic_and_versions() {
    let file = gguf_file();

    let mut b = file.clone();
    b[3] = b'G'; // "GGUG"
    let e = Gguf::parse(&b).unwrap_err();
    assert_eq!(e, Error::BadMagic { found: 0x4755_4747 });
    // Model::load sees no GGUF magic and tries llama2.c, whose first word
    // cannot be a dimension.
    assert!(matches!(load_err("GGUG", &b), Error::BadMagic { .. }));

    for version in [0, 1, 4, u32::MAX] {
        let mut b = file.clone();
        put_u32(&mut b, 4, version);
        let want = Error::UnsupportedVersion {
            format: "GGUF",
            version,
        };
        assert_eq!(Gguf::parse(&b).unwrap_err(), want);
        assert_eq!(load_err("version", &b), want);
    }
    // Version 2 has the same layout: it loads.
    let mut b = file.clone();
    put_u32(&mut b, 4, 2);
    assert_eq!(
        Model::load(&b).unwrap().format,
        llamette::model::Format::Gguf(2)
    );

    for len in 0..24 {
        let e = Gguf::parse(&file[..len]).unwrap_err();
        assert!(matches!(e, Error::Truncated { .. }), "{len}: {e:?}");
    }
}

#[test]
fn gguf_absurd_counts() {
    let file = gguf_file();
    for (field, at) in [("tensor count", 8), ("metadata count", 16)] {
        for n in [u64::MAX, 1 << 40, 1 << 32, file.len() as u64] {
            let mut b = file.clone();
            put_u64(&mut b, at, n);
            let e = load_err(field, &b);
            match e {
                Error::BadConfig { value, .. } => assert_eq!(value, n, "{field}"),
                _ => panic!("{field} {n}: {e:?}"),
            }
        }
    }
    // A count that fits the file's size but not its content: the reader runs
    // off the real records into the tensor data and stops there.
    for (field, at) in [("tensor count", 8), ("metadata count", 16)] {
        let mut b = file.clone();
        put_u64(&mut b, at, 49);
        let e = load_err(field, &b);
        assert!(
            matches!(
                e,
                Error::Truncated { .. } | Error::BadTensor { .. } | Error::BadMetadata { .. }
            ),
            "{field}: {e:?}"
        );
    }
}

#[test]
fn gguf_bad_tensor_records_in_the_real_file() {
    let file = gguf_file();
    let g = Gguf::parse(&file).unwrap();
    let embd = g.tensor(b"token_embd.weight").unwrap();
    let f = record_fields(&file, b"token_embd.weight");
    let bad = |e: &Error, want: &str| match e {
        Error::BadTensor { tensor, reason } => {
            assert!(name_is(tensor, "token_embd.weight"), "{e}");
            assert!(reason.contains(want), "{e}");
        }
        _ => panic!("expected BadTensor ({want}), got {e:?}"),
    };

    for n_dims in [0, 5, u32::MAX] {
        let mut b = file.clone();
        put_u32(&mut b, f.n_dims, n_dims);
        bad(&load_err("n_dims", &b), "dimension count");
    }

    // Extents whose product overflows u64.
    let mut b = file.clone();
    put_u64(&mut b, f.dims, 1 << 32);
    put_u64(&mut b, f.dims + 8, 1 << 32);
    bad(&load_err("extents", &b), "element count overflows");

    // Extents whose byte size overflows (2^62 F32 elements).
    let mut b = file.clone();
    put_u64(&mut b, f.dims, 1 << 31);
    put_u64(&mut b, f.dims + 8, 1 << 31);
    bad(&load_err("byte size", &b), "byte size overflows");

    // Data outside the file: just past its end, far away, and so far that
    // offset + data section overflows.
    for off in [file.len() as u64 - g.data_offset, 1 << 40, u64::MAX - 31] {
        let mut b = file.clone();
        put_u64(&mut b, f.offset, off);
        let e = load_err("offset", &b);
        if off > u64::MAX - g.data_offset {
            bad(&e, "offset overflows");
        } else {
            bad(&e, "outside the file");
        }
    }

    // Misaligned (inside the file, but not a multiple of 32).
    let mut b = file.clone();
    put_u64(&mut b, f.offset, embd.offset - g.data_offset + 4);
    bad(&load_err("misaligned", &b), "general.alignment");

    // A type this crate has no kernel for: named by type and by tensor.
    let mut b = file.clone();
    put_u32(&mut b, f.ty, 16);
    let e = load_err("IQ2_XXS", &b);
    match e {
        Error::UnsupportedTensorType {
            ty: 16,
            type_name: "IQ2_XXS",
            tensor,
        } => assert!(name_is(&tensor, "token_embd.weight")),
        _ => panic!("IQ2_XXS: {e:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("IQ2_XXS") && msg.contains("token_embd.weight"),
        "{msg}"
    );

    // A K-quant whose rows (64 values) are not whole super-blocks of 256.
    let mut b = file.clone();
    put_u32(&mut b, f.ty, 12);
    match load_err("Q4_K 64", &b) {
        Error::BadTensor { tensor, reason } => {
            assert!(name_is(&tensor, "token_embd.weight"));
            assert!(reason.contains("block size"), "{reason}");
        }
        e => panic!("Q4_K 64: {e:?}"),
    }

    // An unknown type number.
    let mut b = file.clone();
    put_u32(&mut b, f.ty, 1000);
    match load_err("type 1000", &b) {
        Error::UnsupportedTensorType {
            ty: 1000,
            type_name: "unknown",
            ..
        } => {}
        e => panic!("type 1000: {e:?}"),
    }

    // Q8_0 on a row of 172 (not a multiple of 32).
    let down = record_fields(&file, b"blk.0.ffn_down.weight");
    let mut b = file.clone();
    put_u32(&mut b, down.ty, 8);
    match load_err("Q8_0 172", &b) {
        Error::BadTensor { tensor, reason } => {
            assert!(name_is(&tensor, "blk.0.ffn_down.weight"));
            assert!(reason.contains("block size"), "{reason}");
        }
        e => panic!("Q8_0 172: {e:?}"),
    }

    // F16 instead of F32: a smaller, still aligned tensor that loads as a view;
    // but a norm must be F32.
    let norm = record_fields(&file, b"blk.0.attn_norm.weight");
    let mut b = file.clone();
    put_u32(&mut b, norm.ty, 1);
    match load_err("F16 norm", &b) {
        Error::BadTensor { reason, .. } => assert!(reason.contains("F32"), "{reason}"),
        e => panic!("F16 norm: {e:?}"),
    }
}

/// A tensor of an unknown type is not bounds-checked by `parse` (its size is
/// unknown), so reading its data must not index outside the file.
#[test]
fn unknown_type_tensor_data_outside_the_file_does_not_panic() {
    let file = gguf_file();
    let f = record_fields(&file, b"blk.4.ffn_norm.weight");
    let mut b = file.clone();
    put_u32(&mut b, f.ty, 16);
    put_u64(&mut b, f.offset, 1 << 40);
    let g = Gguf::parse(&b).unwrap();
    let t = g.tensor(b"blk.4.ffn_norm.weight").unwrap();
    assert_eq!(t.ty, None);
    let data = no_panic(|| "tensor_data".into(), || g.tensor_data(&t).len());
    assert_eq!(data, 0);
    assert!(matches!(
        load_err("IQ2_XXS far away", &b),
        Error::UnsupportedTensorType { ty: 16, .. }
    ));
}

// ---------------------------------------------------------------------------
// GGUF metadata, with the writer

#[test]
fn gguf_absurd_string_and_array_lengths() {
    let kv_key = "test.value";
    let cases: Vec<(&str, Val)> = vec![
        ("string of 2^40 bytes", raw_string(1 << 40)),
        ("string of u64::MAX bytes", raw_string(u64::MAX)),
        ("u8 array of 2^40", raw_array(tag::U8, 1 << 40, &[])),
        ("u32 array of u64::MAX", raw_array(tag::U32, u64::MAX, &[])),
        ("u64 array of 2^61", raw_array(tag::U64, 1 << 61, &[])),
        ("string array of 2^40", raw_array(tag::STRING, 1 << 40, &[])),
        (
            "string array of u64::MAX",
            raw_array(tag::STRING, u64::MAX, &[]),
        ),
        (
            "array array of 2^40",
            raw_array(tag::ARRAY, 1 << 40, &[0; 64]),
        ),
        (
            "string array with one absurd string",
            raw_array(
                tag::STRING,
                2,
                &[
                    1, 0, 0, 0, 0, 0, 0, 0, b'a', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                ],
            ),
        ),
    ];
    for (what, v) in cases {
        let bytes = base().set(kv_key, v).build();
        let e = no_panic(|| what.into(), || Gguf::parse(&bytes).unwrap_err());
        assert!(
            matches!(e, Error::Truncated { .. } | Error::BadMetadata { .. }),
            "{what}: {e:?}"
        );
        assert_eq!(load_err(what, &bytes), e);
    }

    // A key whose length prefix is absurd.
    let mut bytes = base().set("zzz", Val::U8(0)).build();
    let at = find(&bytes, b"zzz").unwrap() - 8;
    for n in [1 << 40, u64::MAX] {
        put_u64(&mut bytes, at, n);
        assert!(matches!(
            load_err("key length", &bytes),
            Error::Truncated {
                what: "metadata key",
                ..
            }
        ));
    }

    // A tensor name whose length prefix is absurd.
    let mut bytes = base().build();
    let (rec, _) = tensor_record(&bytes, b"output.weight");
    put_u64(&mut bytes, rec, u64::MAX);
    assert!(matches!(
        load_err("name length", &bytes),
        Error::Truncated {
            what: "tensor name",
            ..
        }
    ));
}

fn raw_string(len: u64) -> Val {
    let mut b = len.to_le_bytes().to_vec();
    b.extend(b"abc");
    Val::Raw(tag::STRING, b)
}

#[test]
fn gguf_nested_arrays() {
    let u8s = || Val::Arr(tag::U8, vec![Val::U8(1), Val::U8(2)]);
    let nest = |v: Val, n: usize| (0..n).fold(v, |v, _| Val::Arr(tag::ARRAY, vec![v]));
    // Arrays of arrays are legal GGUF; this reader takes up to three levels.
    for depth in 1..=2 {
        let bytes = base().set("test.nested", nest(u8s(), depth)).build();
        let g = Gguf::parse(&bytes).unwrap();
        assert!(matches!(
            g.get("test.nested"),
            Some(llamette::format::gguf::Value::Array(_))
        ));
        assert!(Model::load(&bytes).is_ok(), "depth {depth}");
    }
    for depth in [3, 10, 60] {
        let bytes = base().set("test.nested", nest(u8s(), depth)).build();
        match load_err("nested", &bytes) {
            Error::BadMetadata { key, reason } => {
                assert!(name_is(&key, "test.nested"));
                assert!(reason.contains("nested"), "{reason}");
            }
            e => panic!("depth {depth}: {e:?}"),
        }
    }
    // Deep nesting in a single run of bytes: array headers all the way down.
    let mut deep = Vec::new();
    for _ in 0..100_000 {
        deep.extend(tag::ARRAY.to_le_bytes());
        deep.extend(1u64.to_le_bytes());
    }
    let bytes = base().set("test.deep", Val::Raw(tag::ARRAY, deep)).build();
    assert!(matches!(
        load_err("deep", &bytes),
        Error::BadMetadata { .. }
    ));
    // The wrong element type for a known key.
    let bytes = base()
        .set("general.alignment", Val::Arr(tag::U32, vec![Val::U32(32)]))
        .build();
    assert!(matches!(
        load_err("alignment array", &bytes),
        Error::BadMetadata { .. }
    ));
}

#[test]
fn gguf_bad_value_types() {
    let bad_meta = |what: &str, w: GgufWriter, key: &str, reason: &str| {
        let bytes = w.build();
        match load_err(what, &bytes) {
            Error::BadMetadata { key: k, reason: r } => {
                assert!(name_is(&k, key), "{what}: key {k}");
                assert!(r.contains(reason), "{what}: {r}");
            }
            e => panic!("{what}: {e:?}"),
        }
    };
    for byte in [2, 0xff] {
        bad_meta(
            "bool byte",
            base().set("test.flag", Val::Bool(byte)),
            "test.flag",
            "bool",
        );
        bad_meta(
            "bool in an array",
            base().set(
                "test.flags",
                Val::Arr(tag::BOOL, vec![Val::Bool(1), Val::Bool(byte)]),
            ),
            "test.flags",
            "bool",
        );
    }
    // Bools 0 and 1 are fine.
    let bytes = base()
        .set("test.flag", Val::Bool(1))
        .set("test.off", Val::Bool(0))
        .build();
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!(g.get_bool("test.flag"), Ok(Some(true)));
    assert_eq!(g.get_bool("test.off"), Ok(Some(false)));

    for t in [13, 100, u32::MAX] {
        bad_meta(
            "value type",
            base().set("test.x", Val::Raw(t, vec![0; 16])),
            "test.x",
            "unknown value type",
        );
        bad_meta(
            "array element type",
            base().set("test.x", raw_array(t, 1, &[0; 16])),
            "test.x",
            "unknown array element type",
        );
    }
    // The tag of a required key replaced by an unknown one: the same error,
    // before the key is ever looked up.
    bad_meta(
        "unknown type on a required key",
        base().set("llama.block_count", Val::Raw(77, vec![5, 0, 0, 0])),
        "llama.block_count",
        "unknown value type",
    );
    // Well-formed values of the wrong type for the keys the model reads.
    bad_meta(
        "dim as a string",
        base().set("llama.embedding_length", Val::str("64")),
        "llama.embedding_length",
        "integer",
    );
    bad_meta(
        "negative head count",
        base().set("llama.attention.head_count", Val::I32(-8)),
        "llama.attention.head_count",
        "integer",
    );
    bad_meta(
        "epsilon as a string",
        base().set("llama.attention.layer_norm_rms_epsilon", Val::str("1e-5")),
        "llama.attention.layer_norm_rms_epsilon",
        "number",
    );
    bad_meta(
        "architecture as a number",
        base().set("general.architecture", Val::U32(1)),
        "general.architecture",
        "string",
    );
    for a in [0, 3, 1 << 30] {
        bad_meta(
            "alignment",
            base().set("general.alignment", Val::U64(a)),
            "general.alignment",
            "power of two",
        );
    }
    bad_meta(
        "partial rotary",
        base().set("llama.rope.dimension_count", Val::U32(4)),
        "llama.rope.dimension_count",
        "rotary",
    );
}

#[test]
fn gguf_architecture_and_missing_keys() {
    for arch in ["gpt2", "llama ", "LLAMA", ""] {
        let bytes = base().set("general.architecture", Val::str(arch)).build();
        match load_err(arch, &bytes) {
            Error::UnsupportedArchitecture { found } => assert!(name_is(&found, arch)),
            e => panic!("{arch}: {e:?}"),
        }
    }
    // A very long, non-UTF-8 architecture is cut in the message.
    let mut long = vec![0xffu8; 3];
    long.extend([b'x'; 300]);
    let bytes = base().set("general.architecture", Val::Str(long)).build();
    let e = load_err("long arch", &bytes);
    assert!(matches!(e, Error::UnsupportedArchitecture { .. }));
    assert!(e.to_string().contains("\\xff\\xff\\xffxxx"), "{e}");
    assert!(e.to_string().contains("..."), "{e}");

    for key in [
        "general.architecture",
        "llama.embedding_length",
        "llama.feed_forward_length",
        "llama.block_count",
        "llama.attention.head_count",
        "llama.context_length",
    ] {
        let bytes = base().remove(key).build();
        assert_eq!(load_err(key, &bytes), Error::MissingMetadata { key });
    }
    // Optional keys have defaults.
    for key in [
        "llama.attention.head_count_kv",
        "llama.rope.dimension_count",
        "llama.attention.layer_norm_rms_epsilon",
    ] {
        let bytes = base().remove(key).build();
        let r = Model::load(&bytes);
        if key == "llama.attention.head_count_kv" {
            // n_kv_heads defaults to n_heads (8): wk's shape no longer fits.
            assert!(matches!(r, Err(Error::BadTensor { .. })), "{key}: {r:?}");
        } else {
            assert!(r.is_ok(), "{key}: {r:?}");
        }
    }
}

#[test]
fn gguf_absurd_dimensions() {
    let bad_config = |what: &str, key: &str, v: Val| {
        let bytes = base().set(key, v).build();
        let e = load_err(what, &bytes);
        assert!(
            matches!(e, Error::BadConfig { .. } | Error::BadMetadata { .. }),
            "{what}: {e:?}"
        );
        e
    };
    bad_config("dim 0", "llama.embedding_length", Val::U32(0));
    bad_config("dim 2^20", "llama.embedding_length", Val::U32(1 << 20));
    bad_config("dim u64::MAX", "llama.embedding_length", Val::U64(u64::MAX));
    bad_config("hidden 0", "llama.feed_forward_length", Val::U32(0));
    bad_config("n_heads 0", "llama.attention.head_count", Val::U32(0));
    bad_config("n_heads 7", "llama.attention.head_count", Val::U32(7));
    bad_config(
        "n_heads 64 (odd head dim 1)",
        "llama.attention.head_count",
        Val::U32(64),
    );
    bad_config("n_kv_heads 0", "llama.attention.head_count_kv", Val::U32(0));
    bad_config("n_kv_heads 3", "llama.attention.head_count_kv", Val::U32(3));
    bad_config(
        "n_kv_heads 16",
        "llama.attention.head_count_kv",
        Val::U32(16),
    );
    bad_config("n_layers 0", "llama.block_count", Val::U32(0));
    bad_config(
        "n_layers 10^9",
        "llama.block_count",
        Val::U32(1_000_000_000),
    );
    bad_config("n_layers 129", "llama.block_count", Val::U32(129));
    bad_config("context 0", "llama.context_length", Val::U32(0));
    bad_config("context 2^40", "llama.context_length", Val::U64(1 << 40));
    bad_config("vocab 0", "llama.vocab_size", Val::U32(0));
    bad_config("vocab 2^40", "llama.vocab_size", Val::U64(1 << 40));
    bad_config(
        "vocab 2^32 + 512",
        "llama.vocab_size",
        Val::U64((1 << 32) + 512),
    );
    bad_config(
        "n_kv_heads 2^32 + 4",
        "llama.attention.head_count_kv",
        Val::U64((1 << 32) + 4),
    );
    for eps in [0.0, -1e-5, 1.0, f32::NAN, f32::INFINITY] {
        bad_config(
            "epsilon",
            "llama.attention.layer_norm_rms_epsilon",
            Val::F32(eps),
        );
    }
    for theta in [0.0, 1.0, -10000.0, f32::NAN, f32::INFINITY] {
        bad_config("rope base", "llama.rope.freq_base", Val::F32(theta));
    }
    // A context longer than stories260K was trained for is not an error, and
    // a vocabulary that disagrees with the tensors is a shape error.
    let bytes = base()
        .set("llama.context_length", Val::U32(1 << 20))
        .build();
    assert!(Model::load(&bytes).is_ok());
    let bytes = base().set("llama.vocab_size", Val::U32(511)).build();
    assert!(matches!(
        load_err("vocab 511", &bytes),
        Error::BadTensor { .. }
    ));
    // Fewer layers declared than the file has, and more.
    let bytes = base().set("llama.block_count", Val::U32(4)).build();
    match load_err("4 layers", &bytes) {
        Error::BadTensor { tensor, reason } => {
            assert!(tensor.to_string().starts_with("blk.4."), "{tensor}");
            assert!(reason.contains("block_count"), "{reason}");
        }
        e => panic!("4 layers: {e:?}"),
    }
    let bytes = base().set("llama.block_count", Val::U32(6)).build();
    match load_err("6 layers", &bytes) {
        Error::MissingTensor { name } => assert!(name_is(&name, "blk.5.attn_norm.weight")),
        e => panic!("6 layers: {e:?}"),
    }
}

#[test]
fn gguf_missing_duplicated_and_misshapen_tensors() {
    // Without token_embd (and without a tokenizer) nothing says how large the
    // vocabulary is.
    let bytes = base().remove_tensor("token_embd.weight").build();
    assert_eq!(
        load_err("no vocab", &bytes),
        Error::MissingMetadata {
            key: "llama.vocab_size"
        }
    );
    for name in ["token_embd.weight", "output_norm.weight"] {
        let bytes = base()
            .set("llama.vocab_size", Val::U32(512))
            .remove_tensor(name)
            .build();
        match load_err(name, &bytes) {
            Error::MissingTensor { name: n } => assert!(name_is(&n, name), "{n}"),
            e => panic!("{name}: {e:?}"),
        }
    }
    for layer in [0, 3, 4] {
        for role in [
            "attn_norm",
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_norm",
            "ffn_gate",
            "ffn_down",
            "ffn_up",
        ] {
            let name = format!("blk.{layer}.{role}.weight");
            let bytes = base().remove_tensor(&name).build();
            let e = load_err(&name, &bytes);
            match e {
                Error::MissingTensor { name: n } => assert!(name_is(&n, &name), "{n} != {name}"),
                _ => panic!("{name}: {e:?}"),
            }
            assert!(e.to_string().contains(&name));
        }
    }

    // Duplicates: the second copy is named.
    for name in ["token_embd.weight", "output.weight", "blk.2.ffn_up.weight"] {
        let mut w = base();
        let copy = w.tensor(name).clone();
        let bytes = w.push_tensor(copy).build();
        match load_err(name, &bytes) {
            Error::BadTensor { tensor, reason } => {
                assert!(name_is(&tensor, name));
                assert!(reason.contains("twice"), "{reason}");
            }
            e => panic!("duplicate {name}: {e:?}"),
        }
    }

    // Wrong shapes (data sized to match, so only the shape is wrong).
    let shape_cases: [(&str, &[u64]); 7] = [
        ("blk.1.attn_k.weight", &[64, 64]),
        ("blk.1.attn_q.weight", &[64, 32]),
        ("blk.0.ffn_down.weight", &[64, 172]),
        ("token_embd.weight", &[64, 511]),
        ("output.weight", &[64, 513]),
        ("output_norm.weight", &[32]),
        ("blk.0.attn_norm.weight", &[64, 2]),
    ];
    for (name, dims) in shape_cases {
        let bytes = base()
            .remove_tensor(name)
            .push_tensor(f32_tensor(name, dims))
            .build();
        let e = load_err(name, &bytes);
        assert!(matches!(e, Error::BadTensor { .. }), "{name}: {e:?}");
    }
    // A 3-D tensor, and an empty one.
    let bytes = base()
        .remove_tensor("blk.0.attn_q.weight")
        .push_tensor(f32_tensor("blk.0.attn_q.weight", &[64, 32, 2]))
        .build();
    assert!(matches!(load_err("3-D", &bytes), Error::BadTensor { .. }));
    let bytes = base()
        .remove_tensor("blk.0.attn_q.weight")
        .push_tensor(f32_tensor("blk.0.attn_q.weight", &[64, 0]))
        .build();
    assert!(matches!(load_err("empty", &bytes), Error::BadTensor { .. }));

    // A layer index beyond block_count, and names that are not layer tensors.
    let bytes = base()
        .push_tensor(f32_tensor("blk.999.attn_q.weight", &[64, 64]))
        .build();
    assert!(matches!(
        load_err("blk.999", &bytes),
        Error::BadTensor { .. }
    ));
    let bytes = base()
        .push_tensor(f32_tensor("rope_freqs.weight", &[4]))
        .push_tensor(f32_tensor("blk.0.unknown_role.weight", &[4]))
        .push_tensor(f32_tensor(
            "blk.00000000000000000000001.attn_q.weight",
            &[4],
        ))
        .push_tensor(f32_tensor("blk..attn_q.weight", &[4]))
        .push_tensor(f32_tensor("blk.0.attn_q", &[4]))
        .build();
    assert!(Model::load(&bytes).is_ok(), "unknown tensors are ignored");

    // An unsupported type on a layer tensor, through the writer.
    let bytes = base()
        .edit("blk.3.attn_output.weight", |t| {
            t.ty = 23;
            t.data = vec![0; 136];
        })
        .build();
    let e = load_err("IQ4_XS", &bytes);
    assert!(
        matches!(
            e,
            Error::UnsupportedTensorType {
                ty: 23,
                type_name: "IQ4_XS",
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("IQ4_XS") && msg.contains("blk.3.attn_output.weight"),
        "{msg}"
    );

    // A Q6_K layer tensor of the right size for its elements, but whose rows
    // are not whole super-blocks.
    let bytes = base()
        .edit("blk.3.attn_output.weight", |t| {
            t.ty = 14;
            t.data = vec![0; 210];
        })
        .build();
    assert!(
        matches!(load_err("Q6_K", &bytes), Error::BadTensor { .. }),
        "a Q6_K tensor of rows shorter than 256 loaded"
    );

    // A tensor offset pointing outside the file, through the writer.
    let bytes = base()
        .edit("blk.0.attn_v.weight", |t| t.offset = Some(1 << 30))
        .build();
    assert!(matches!(
        load_err("offset", &bytes),
        Error::BadTensor { .. }
    ));
}

#[test]
fn vocab_only_gguf_is_not_a_model() {
    let bytes = shared("models/ggml-vocab-llama-spm.gguf");
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!(g.n_tensors, 0);
    let e = load_err("vocab-only", &bytes);
    assert!(
        matches!(
            e,
            Error::MissingMetadata { .. } | Error::MissingTensor { .. }
        ),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------
// llama2.c headers

#[test]
fn llama2c_bad_headers() {
    let file = bin_file();
    let with = |field: usize, v: i32| {
        let mut b = file.clone();
        b[4 * field..4 * field + 4].copy_from_slice(&v.to_le_bytes());
        b
    };
    const DIM: usize = 0;
    const HIDDEN: usize = 1;
    const LAYERS: usize = 2;
    const HEADS: usize = 3;
    const KV_HEADS: usize = 4;
    const VOCAB: usize = 5;
    const SEQ: usize = 6;

    // The first word is the only thing that says "llama2.c": a dimension that
    // cannot be one means an unrecognised file.
    for dim in [0, -64, -1, i32::MIN, 1 << 17] {
        assert!(
            matches!(load_err("dim", &with(DIM, dim)), Error::BadMagic { .. }),
            "dim {dim}"
        );
    }
    let config = |what: &str, field: usize, v: i32| {
        let e = load_err(what, &with(field, v));
        assert!(matches!(e, Error::BadConfig { .. }), "{what} = {v}: {e:?}");
    };
    for v in [0, -1, i32::MIN] {
        config("hidden_dim", HIDDEN, v);
        config("n_layers", LAYERS, v);
        config("n_heads", HEADS, v);
        config("n_kv_heads", KV_HEADS, v);
        config("seq_len", SEQ, v);
    }
    config("vocab 0", VOCAB, 0);
    config("vocab i32::MIN", VOCAB, i32::MIN);
    config("vocab 2^24 + 1", VOCAB, (1 << 24) + 1);
    config("vocab -(2^24 + 1)", VOCAB, -(1 << 24) - 1);
    config("n_heads 3", HEADS, 3);
    config("n_heads 7", HEADS, 7);
    config("n_heads 64 (head dim 1)", HEADS, 64);
    config("n_kv_heads 3", KV_HEADS, 3);
    config("n_kv_heads 16", KV_HEADS, 16);
    config("n_layers 129", LAYERS, 129);
    config("n_layers i32::MAX", LAYERS, i32::MAX);
    config("hidden 2^18 + 1", HIDDEN, (1 << 18) + 1);
    config("seq_len 2^24 + 1", SEQ, (1 << 24) + 1);

    // Plausible headers the file is too short for.
    let short = |what: &str, field: usize, v: i32| {
        let e = load_err(what, &with(field, v));
        assert!(matches!(e, Error::Truncated { .. }), "{what}: {e:?}");
    };
    short("vocab 2^24", VOCAB, 1 << 24);
    short("vocab -512 (separate classifier)", VOCAB, -512);
    short("n_layers 6", LAYERS, 6);
    short("n_layers 128", LAYERS, 128);
    short("hidden 2^18", HIDDEN, 1 << 18);
    short("seq_len 2^24", SEQ, 1 << 24);
    short("dim 65536", DIM, 1 << 16);
    short("seq_len 513", SEQ, 513);
    // Fewer layers than the file holds: the weights are misread but every
    // view lies inside the file, so this loads. That is the format's limit:
    // llama2.c version 0 has no tensor names to check against.
    assert!(Model::load(&with(LAYERS, 4)).is_ok());

    // The ak42 magic (0x616b3432 as a little-endian u32, as export.py and
    // runq.c write and read it) with a bad version.
    for v in [0i32, 1, 3, -1] {
        let mut b = 0x616b_3432u32.to_le_bytes().to_vec();
        b.extend(v.to_le_bytes());
        b.extend(&file[..]);
        let e = load_err("ak42 version", &b);
        assert_eq!(
            e,
            Error::UnsupportedVersion {
                format: "llama2.c",
                version: v as u32
            }
        );
    }
}

// ---------------------------------------------------------------------------
// Random mutations

/// xorshift64*: a small, seedable generator.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// If `bytes` parse as GGUF, reads every value through the public accessors
/// (what a tokenizer or an `info` command does with a file that loads).
fn walk_gguf(bytes: &[u8]) {
    use llamette::format::gguf::Value;
    let Ok(g) = Gguf::parse(bytes) else {
        return;
    };
    for (key, v) in g.metadata() {
        let _ = llamette::error::Name::new(key).to_string();
        if let Value::Array(a) = v {
            let n = a.strings().count();
            assert!(n as u64 <= a.len);
            for i in (0..a.len.min(600) as usize).chain([usize::MAX / 4, usize::MAX]) {
                let _ = (a.f32_at(i), a.i32_at(i));
            }
        }
    }
    for t in g.tensors() {
        let Ok(t) = t else { continue };
        let data = g.tensor_data(&t);
        assert!(data.len() as u64 == t.size || t.ty.is_none());
    }
    for key in ["tokenizer.ggml.tokens", "tokenizer.ggml.scores"] {
        let _ = g.get(key);
    }
    let _ = g.get_u64("tokenizer.ggml.bos_token_id");
    let _ = g.get_array(
        "tokenizer.ggml.scores",
        llamette::format::gguf::ValueType::F32,
    );
}

/// Loads `bytes`; if that works, runs one token through a session of
/// context 8 (or the model's, if shorter). Returns whether the model loaded.
fn load_and_run(bytes: &[u8]) -> Result<bool, Error> {
    walk_gguf(bytes);
    let model = match Model::load(bytes) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.to_string();
            return Err(e);
        }
    };
    let params = SessionParams {
        context: model.config.seq_len.min(8),
        ..Default::default()
    };
    let need = Session::required_bytes(&model, &params).unwrap();
    // The tensors lie in a 1 MB file and the context is 8: the session is small.
    assert!(
        need < 64 << 20,
        "session of {need} bytes for {:?}",
        model.config
    );
    let mut buf = aligned_buf(need);
    let mut s = Session::new(&model, params, as_bytes(&mut buf)).unwrap();
    let token = 1.min(model.config.vocab_size as u32 - 1);
    s.feed(&[token]).unwrap();
    assert_eq!(s.logits().unwrap().len(), model.config.vocab_size);
    let _ = (
        model.n_params(),
        model.weight_bytes(),
        model.bytes_per_token(),
    );
    Ok(true)
}

/// Applies seeded mutations to `file[..region]` (biased towards `hot`),
/// checking that loading (also after interleaving in place) never panics. Returns (loaded, error tallies).
fn mutate(
    name: &str,
    file: &[u8],
    region: usize,
    hot: std::ops::Range<usize>,
    seeds: std::ops::Range<u64>,
) -> (usize, std::collections::BTreeMap<&'static str, usize>) {
    let mut buf = file.to_vec();
    let mut loaded = 0;
    let mut tally = std::collections::BTreeMap::new();
    let interesting: [u64; 12] = [
        0,
        1,
        2,
        3,
        0x7f,
        0xff,
        0xffff_ffff,
        0x8000_0000,
        1 << 32,
        1 << 40,
        u64::MAX,
        file.len() as u64,
    ];
    for seed in seeds {
        let mut rng = Rng::new(seed);
        let mut saved: Vec<(usize, Vec<u8>)> = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let pos = if rng.below(2) == 0 {
                rng.below(region)
            } else {
                hot.start + rng.below(hot.len())
            };
            let width = [1, 4, 8][rng.below(3)].min(buf.len() - pos);
            saved.push((pos, buf[pos..pos + width].to_vec()));
            match rng.below(4) {
                0 => buf[pos] ^= 1 << rng.below(8),
                1 => buf[pos] = rng.next() as u8,
                2 => {
                    let v = interesting[rng.below(interesting.len())];
                    buf[pos..pos + width].copy_from_slice(&v.to_le_bytes()[..width]);
                }
                _ => {
                    // Small arithmetic on a little-endian field.
                    let mut v = [0u8; 8];
                    v[..width].copy_from_slice(&buf[pos..pos + width]);
                    let d = rng.below(17) as u64;
                    let v = u64::from_le_bytes(v).wrapping_add(d).wrapping_sub(8);
                    buf[pos..pos + width].copy_from_slice(&v.to_le_bytes()[..width]);
                }
            }
        }
        let r = catch_unwind(AssertUnwindSafe(|| load_and_run(&buf)));
        match r {
            Ok(Ok(_)) => loaded += 1,
            Ok(Err(e)) => *tally.entry(kind(&e)).or_insert(0) += 1,
            Err(_) => panic!("{name}: PANIC with mutation seed {seed}"),
        }
        // The same file interleaved in place, then loaded and run: an error
        // at either step, never a panic.
        let mut copy = buf.clone();
        let r = catch_unwind(AssertUnwindSafe(|| {
            llamette::repack::repack_in_place(&mut copy).and_then(|_| load_and_run(&copy))
        }));
        assert!(
            r.is_ok(),
            "{name}: PANIC in repack with mutation seed {seed}"
        );
        for (pos, old) in saved.into_iter().rev() {
            buf[pos..pos + old.len()].copy_from_slice(&old);
        }
    }
    assert_eq!(buf, file, "mutations were undone");
    (loaded, tally)
}

/// How many mutated files each loop tries: a few thousand, or
/// `LLAMETTE_MUTATIONS` for a longer hunt.
fn n_mutations(default: u64) -> u64 {
    std::env::var("LLAMETTE_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn gguf_random_mutations() {
    let file = gguf_file();
    // Half of the mutations land in the llama.* keys and tensor records,
    // the rest anywhere in the first 16 KB (tokenizer arrays included).
    let hot = find(&file, b"tokenizer.ggml.model").unwrap() - 8;
    let g = Gguf::parse(&file).unwrap();
    let hot = hot..g.data_offset as usize;
    let n = n_mutations(5000);
    let (loaded, tally) = mutate("GGUF", &file, 16 * 1024, hot, 1..n + 1);
    eprintln!("GGUF: {n} mutated files, {loaded} loaded and ran; errors {tally:?}");
    assert!(loaded > 0 && loaded < n as usize);
}

#[test]
fn llama2c_random_mutations() {
    let file = bin_file();
    let n = n_mutations(3000);
    let (loaded, tally) = mutate("llama2.c", &file, 4096, 0..28, 1..n + 1);
    eprintln!("llama2.c: {n} mutated files, {loaded} loaded and ran; errors {tally:?}");
    assert!(loaded > 0 && loaded < n as usize);
}

// ---------------------------------------------------------------------------
// Session

#[test]
fn session_buffer_sizes() {
    let file = gguf_file();
    let model = Model::load(&file).unwrap();
    for context in [0, 1, 8, 2048] {
        let params = SessionParams {
            context,
            ..Default::default()
        };
        let need = Session::required_bytes(&model, &params).unwrap();
        let mut buf = aligned_buf(need + 64);
        let bytes = as_bytes(&mut buf);

        // One byte short: both numbers in the error and its message.
        let e = Session::new(&model, params, &mut bytes[..need - 1]).unwrap_err();
        assert_eq!(
            e,
            Error::BufferTooSmall {
                what: "session buffer (bytes)",
                needed: need,
                got: need - 1
            }
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&need.to_string()) && msg.contains(&(need - 1).to_string()),
            "{msg}"
        );
        assert!(Session::new(&model, params, &mut []).is_err());

        // Exactly the size, at any alignment: works, with the same logits;
        // one byte less at any alignment: the error.
        let mut first: Option<Vec<f32>> = None;
        for off in [0, 1, 3, 8, 31, 63] {
            let e = Session::new(&model, params, &mut bytes[off..off + need - 1]).unwrap_err();
            assert!(matches!(e, Error::BufferTooSmall { .. }), "{e:?}");
            let mut s = Session::new(&model, params, &mut bytes[off..off + need]).unwrap();
            s.feed(&[1]).unwrap();
            assert_eq!(s.pos(), 1);
            let l = s.logits().unwrap().to_vec();
            match &first {
                None => first = Some(l),
                Some(f) => assert!(*f == l, "offset {off}: other logits"),
            }
        }
    }
    // Longer than the model's context.
    for context in [2049, usize::MAX] {
        let params = SessionParams {
            context,
            ..Default::default()
        };
        let e = Session::required_bytes(&model, &params).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
        let mut buf = aligned_buf(1 << 16);
        let e = Session::new(&model, params, as_bytes(&mut buf)).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    }
}

#[test]
fn session_bad_feeds_change_nothing() {
    let file = gguf_file();
    let model = Model::load(&file).unwrap();
    let vocab = model.config.vocab_size as u32;
    let params = SessionParams {
        context: 8,
        ..Default::default()
    };
    let mut buf = aligned_buf(Session::required_bytes(&model, &params).unwrap());
    let mut s = Session::new(&model, params, as_bytes(&mut buf)).unwrap();

    /// `feed(tokens)` fails with `want` and changes neither the position
    /// nor the logits.
    fn check_rejected(s: &mut Session, tokens: &[u32], want: Error) {
        let pos = s.pos();
        let before = s.logits().map(|l| l.to_vec());
        assert_eq!(s.feed(tokens).unwrap_err(), want, "{tokens:?}");
        assert_eq!(s.pos(), pos);
        assert_eq!(s.logits().map(|l| l.to_vec()), before);
    }

    check_rejected(&mut s, &[vocab], Error::UnknownToken { id: vocab, vocab });
    check_rejected(
        &mut s,
        &[1, 2, u32::MAX],
        Error::UnknownToken {
            id: u32::MAX,
            vocab,
        },
    );
    check_rejected(
        &mut s,
        &[],
        Error::InvalidArgument {
            what: "feed needs at least one token",
        },
    );
    check_rejected(
        &mut s,
        &[1; 9],
        Error::ContextFull {
            pos: 0,
            requested: 9,
            context: 8,
        },
    );
    // Still usable: the same logits as a fresh session.
    let tokens = [1, 403, 407, 261, 378];
    s.feed(&tokens[..1]).unwrap();
    assert_eq!(s.logits().unwrap(), logits_after(&model, &tokens[..1], 8));

    // Errors after some positions leave those positions and logits alone.
    s.feed(&tokens[1..4]).unwrap();
    check_rejected(
        &mut s,
        &[1; 5],
        Error::ContextFull {
            pos: 4,
            requested: 5,
            context: 8,
        },
    );
    check_rejected(
        &mut s,
        &[2, vocab + 7],
        Error::UnknownToken {
            id: vocab + 7,
            vocab,
        },
    );
    check_rejected(
        &mut s,
        &[],
        Error::InvalidArgument {
            what: "feed needs at least one token",
        },
    );
    s.feed(&tokens[4..]).unwrap();
    assert_eq!(s.pos(), 5);
    assert_eq!(s.tokens(), &tokens);
    assert_eq!(s.logits().unwrap(), logits_after(&model, &tokens, 8));

    // Fill the context exactly, then one more is refused.
    s.feed(&[5, 6, 7]).unwrap();
    assert_eq!(s.pos(), 8);
    check_rejected(
        &mut s,
        &[1],
        Error::ContextFull {
            pos: 8,
            requested: 1,
            context: 8,
        },
    );
    s.reset();
    s.feed(&tokens[..1]).unwrap();
    assert_eq!(s.logits().unwrap(), logits_after(&model, &tokens[..1], 8));
}

// ---------------------------------------------------------------------------
// Interleaved (repacked) quantized models

/// stories260K with every matrix whose rows are whole blocks re-encoded as
/// `ty` (Q8_0 or Q4_0) by the reference quantizer.
fn quantized_stories260k(ty: llamette::tensor::TensorType) -> Vec<u8> {
    let mut w = base();
    for t in &mut w.tensors {
        if t.dims.len() != 2 || t.dims[0] % 32 != 0 {
            continue;
        }
        let cols = t.dims[0] as usize;
        let rb = llamette::quant::row_bytes(ty, cols).unwrap();
        let mut data = vec![0u8; t.data.len() / 4 / cols * rb];
        for (src, dst) in t.data.chunks_exact(4 * cols).zip(data.chunks_exact_mut(rb)) {
            let row: Vec<f32> = src
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            llamette::quant::quantize_row(ty, &row, dst).unwrap();
        }
        t.data = data;
        t.ty = ty.ggml_type().unwrap();
    }
    w.build()
}

/// Greedy tokens and the logits after each, for `steps` tokens after BOS.
fn greedy_run(bytes: &[u8], steps: usize) -> (Vec<u32>, Vec<f32>) {
    let model = Model::load(bytes).unwrap();
    let params = SessionParams {
        context: steps + 1,
        ..Default::default()
    };
    let mut buf = aligned_buf(Session::required_bytes(&model, &params).unwrap());
    let mut s = Session::new(&model, params, as_bytes(&mut buf)).unwrap();
    let mut sampler = llamette::Sampler::new(llamette::SamplerParams::greedy(), 0);
    let (mut tokens, mut logits) = (vec![1u32], Vec::new());
    s.feed(&[1]).unwrap();
    for _ in 0..steps {
        logits.extend_from_slice(s.logits().unwrap());
        let t = s.sample(&mut sampler).unwrap();
        tokens.push(t);
        s.feed(&[t]).unwrap();
    }
    (tokens, logits)
}

/// llama.cpp's own Q4_K_M and Q5_K_M files (2 layers of 256): their 12
/// Q4_K or Q5_K matrices are interleaved where this machine's kernels read
/// the interleaved K-quants fast (`fast_interleaved_k`), and the model then gives
/// the plain file's greedy tokens and logits bit for bit; on other
/// machines nothing is rewritten.
#[test]
fn repacked_k_quant_models_match_the_plain_ones() {
    use llamette::tensor::TensorType;
    for (file, ty) in [
        ("t256-Q4_K_M.gguf", TensorType::Q4_K),
        ("t256-Q5_K_M.gguf", TensorType::Q5_K),
    ] {
        let plain = shared(&format!("testdata/llamacpp-quants/{file}"));
        let mut packed = plain.clone();
        let done = llamette::repack::repack_in_place(&mut packed).unwrap();
        let fast = llamette::kernels::active().fast_interleaved_k.contains(&ty);
        assert_eq!(done.tensors, if fast { 12 } else { 0 }, "{file}");
        assert_eq!(packed != plain, fast);
        let (want_tokens, want_logits) = greedy_run(&plain, 48);
        let (tokens, logits) = greedy_run(&packed, 48);
        assert_eq!(tokens, want_tokens, "{file}");
        assert!(logits == want_logits, "{file}");
        eprintln!(
            "{file}: {} matrices interleaved, same 48 tokens and logits",
            done.tensors
        );
    }
}

/// A quantized model interleaved in place gives the plain model's greedy
/// tokens and logits, bit for bit (the interleaved kernels add the blocks
/// in the plain types' order), so any misplaced byte of the layout shows.
#[test]
fn repacked_quantized_model_matches_the_plain_one() {
    use llamette::tensor::TensorType;
    for ty in [TensorType::Q8_0, TensorType::Q4_0] {
        let plain = quantized_stories260k(ty);
        let mut packed = plain.clone();
        let done = llamette::repack::repack_in_place(&mut packed).unwrap();
        // The embedding, the classifier and q, k, v, o of 5 layers.
        assert_eq!(done.tensors, 22, "{ty:?}");
        assert_eq!(
            llamette::repack::repack_in_place(&mut packed.clone())
                .unwrap()
                .tensors,
            0
        );
        let (want_tokens, want_logits) = greedy_run(&plain, 64);
        let scale = want_logits.iter().fold(0f32, |m, l| m.max(l.abs()));
        let (tokens, logits) = greedy_run(&packed, 64);
        assert_eq!(tokens, want_tokens, "{ty:?}");
        let worst = logits
            .iter()
            .zip(&want_logits)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        eprintln!(
            "{ty:?}: 22 matrices interleaved; worst logit difference {worst:e} (scale {scale})"
        );
        assert!(logits == want_logits, "{ty:?}: {worst} vs scale {scale}");
    }
}

/// Random mutations of a quantized model's header, each file also
/// interleaved in place (the mutation harness does both): never a panic.
#[test]
fn quantized_gguf_random_mutations() {
    let file = quantized_stories260k(llamette::tensor::TensorType::Q4_0);
    let g = Gguf::parse(&file).unwrap();
    // Half of the mutations in the header (keys and tensor records).
    let hot = 0..g.data_offset as usize;
    let n = n_mutations(1500);
    let (loaded, tally) = mutate("GGUF Q4_0", &file, 16 * 1024, hot, 1..n + 1);
    eprintln!("GGUF Q4_0: {n} mutated files, {loaded} loaded and ran; errors {tally:?}");
    assert!(loaded > 0);
}
