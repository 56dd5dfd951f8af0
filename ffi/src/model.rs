//! The model handle: the bytes (mapped, borrowed or embedded), the parsed
//! model, and the tokenizer with its index.

use core::ffi::c_char;
use core::ptr::NonNull;
use std::alloc::Layout;
use std::sync::Arc;

use llamette_core::chat_template::ChatFormat;
use llamette_core::format::gguf::Gguf;
use llamette_core::model::Format;
use llamette_core::tensor::TensorType;
use llamette_core::{Bos, Model, Tokenizer};
use memmap2::Mmap;

use crate::error::*;
use crate::sized::{Out, SizedStruct};

/// A token id that is no token ("none"): `UINT32_MAX`.
pub const LLAMETTE_NO_TOKEN: u32 = u32::MAX;

/// Which file format a model was read from (`llamette_model_info.format`).
#[allow(non_camel_case_types)]
pub type llamette_format = u32;
/// GGUF version 2.
pub const LLAMETTE_FORMAT_GGUF_V2: llamette_format = 1;
/// GGUF version 3.
pub const LLAMETTE_FORMAT_GGUF_V3: llamette_format = 2;
/// llama2.c "version 0" checkpoint (fp32, `run.c`).
pub const LLAMETTE_FORMAT_LLAMA2C_V0: llamette_format = 3;
/// llama2.c "version 2" checkpoint (Q8_0, `runq.c`).
pub const LLAMETTE_FORMAT_LLAMA2C_V2: llamette_format = 4;

/// What a model is: shapes, special tokens, sizes, the memory it holds.
/// Filled by `llamette_model_get_info`: initialise it with
/// `LLAMETTE_MODEL_INFO_INIT` (or set `struct_size`) first. Its first
/// version ended at `rope_theta`: a `struct_size` of
/// `offsetof(llamette_model_info, owned_bytes)` is accepted (the fields
/// appended since are then not written).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct llamette_model_info {
    /// `sizeof(llamette_model_info)`, set by the caller.
    pub struct_size: usize,
    /// The file format, one of `LLAMETTE_FORMAT_*`.
    pub format: llamette_format,
    /// Width of the residual stream.
    pub dim: u32,
    /// Width of the feed-forward hidden layer.
    pub hidden_dim: u32,
    /// Number of transformer blocks.
    pub n_layers: u32,
    /// Number of query heads.
    pub n_heads: u32,
    /// Number of key/value heads.
    pub n_kv_heads: u32,
    /// Width of one attention head (`dim / n_heads`).
    pub head_dim: u32,
    /// Number of tokens the model predicts over.
    pub vocab_size: u32,
    /// The longest context the model was trained for, in positions.
    pub context_length: u32,
    /// Number of tokens of the tokenizer (at least `vocab_size`); 0 without one.
    pub tokenizer_tokens: u32,
    /// The beginning-of-sequence token, or `LLAMETTE_NO_TOKEN` without a tokenizer.
    pub bos_token: u32,
    /// The end-of-sequence token, or `LLAMETTE_NO_TOKEN` without a tokenizer.
    pub eos_token: u32,
    /// The unknown token, or `LLAMETTE_NO_TOKEN` without a tokenizer.
    pub unk_token: u32,
    /// The most bytes of text one token can produce through a decoder push
    /// (`llamette_decoder_push`), NUL not included: an output buffer of this
    /// size is always large enough. 0 without a tokenizer.
    pub max_token_text_bytes: u32,
    /// Number of parameters.
    pub n_params: u64,
    /// Bytes of weights.
    pub weight_bytes: u64,
    /// Bytes of the model file (or memory).
    pub file_bytes: u64,
    /// Bytes of the tokenizer file (0 when it is the model's own file or absent).
    pub tokenizer_file_bytes: u64,
    /// Weight bytes one decode step reads.
    pub bytes_per_token: u64,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// RoPE frequency base.
    pub rope_theta: f32,
    /// Bytes of memory the library allocated to hold the model file (with
    /// `LLAMETTE_OPEN_FOR_SPEED`: the file's size); 0 when the model reads
    /// a mapped file, the caller's memory or the embedded model. Freed with
    /// the last handle using the model. (The tokenizer's index, a few
    /// hundred KiB at most, is not counted.)
    pub owned_bytes: u64,
    /// Matrices stored interleaved for the SIMD kernels (the layout
    /// `llamette_repack_in_place` writes): those `LLAMETTE_OPEN_FOR_SPEED`
    /// rewrote, or that the caller's bytes held already; 0 for a plain file.
    pub interleaved_matrices: u32,
}

impl Default for llamette_model_info {
    /// As `LLAMETTE_MODEL_INFO_INIT`: zeros, `struct_size` set.
    fn default() -> Self {
        llamette_model_info {
            struct_size: core::mem::size_of::<Self>(),
            format: 0,
            dim: 0,
            hidden_dim: 0,
            n_layers: 0,
            n_heads: 0,
            n_kv_heads: 0,
            head_dim: 0,
            vocab_size: 0,
            context_length: 0,
            tokenizer_tokens: 0,
            bos_token: 0,
            eos_token: 0,
            unk_token: 0,
            max_token_text_bytes: 0,
            n_params: 0,
            weight_bytes: 0,
            file_bytes: 0,
            tokenizer_file_bytes: 0,
            bytes_per_token: 0,
            rms_eps: 0.0,
            rope_theta: 0.0,
            owned_bytes: 0,
            interleaved_matrices: 0,
        }
    }
}

// SAFETY: repr(C), `struct_size` first, plain numbers; the first version
// is a prefix of this one.
unsafe impl SizedStruct for llamette_model_info {
    const NAME: &'static str = "llamette_model_info";
    const MIN_SIZE: usize = core::mem::offset_of!(llamette_model_info, owned_bytes);
}

/// `llamette_model_open_file_ex` flag: load for speed, at the cost of
/// memory. The model file is copied into memory the library owns (on Linux
/// aligned and advised for transparent huge pages: fewer TLB misses while
/// the weights stream) and, where the kernels have fast paths for them
/// (`llamette_kernels_interleaved()`: x86-64 with AVX2 or AVX-512, aarch64
/// with the dot product extension), a GGUF file's Q8_0 and Q4_0 matrices
/// (and its Q4_K and Q5_K ones with AVX-512 VNNI, Q4_K with AVX2) are interleaved in
/// that copy (`llamette_repack_in_place`): about twice
/// the prompt speed and faster decoding. Where the kernels have no such
/// paths (plain NEON, the scalar kernels) the matrices keep the file's
/// layout (interleaved ones would be slower there); the copy is then made
/// on Linux only (for its huge pages), and elsewhere the file is mapped as
/// without the flag. So is it when a copy would gain nothing (no matrix to
/// interleave, no huge pages). `llamette_model_info.owned_bytes` says what
/// the copy costs (0: mapped), `interleaved_matrices` what was rewritten.
/// The logits are the mapped file's, bit for bit (the interleaved kernels
/// add in the plain types' order).
pub const LLAMETTE_OPEN_FOR_SPEED: u32 = 1;

/// Where bytes come from. Every variant gives the same address for as long
/// as it lives, even when moved.
pub(crate) enum Bytes {
    /// A read-only private map of a file.
    Mapped(Mmap),
    /// Caller memory (borrowed, not owned).
    Borrowed(*const u8, usize),
    /// Compiled into the library, or empty.
    Static(&'static [u8]),
    /// A copy in memory the library allocated (`LLAMETTE_OPEN_FOR_SPEED`).
    Owned(OwnedBytes),
}

/// Memory the library allocated for a model file's bytes.
pub(crate) struct OwnedBytes {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: plain owned memory; written only before the model that reads it
// is built and shared, read-only afterwards.
unsafe impl Send for OwnedBytes {}
// SAFETY: as above.
unsafe impl Sync for OwnedBytes {}

impl OwnedBytes {
    /// Where huge pages start (x86-64 and aarch64 Linux with 4 KiB pages).
    const HUGE_PAGE: usize = 2 << 20;

    /// A copy of `src` (not empty) in fresh memory: on Linux, a copy of at
    /// least 2 MiB starts on a 2 MiB boundary and is advised for
    /// transparent huge pages before it is first touched.
    fn copy_of(src: &[u8], name: &std::path::Path) -> Result<OwnedBytes, Fail> {
        let huge = cfg!(target_os = "linux") && src.len() >= OwnedBytes::HUGE_PAGE;
        let align = if huge { OwnedBytes::HUGE_PAGE } else { 64 };
        let oom = || {
            Fail::new(
                LLAMETTE_STATUS_OUT_OF_MEMORY,
                format_args!(
                    "{}: cannot allocate {} bytes to load it for speed",
                    name.display(),
                    src.len()
                ),
            )
        };
        let layout = Layout::from_size_align(src.len().max(1), align).map_err(|_| oom())?;
        // SAFETY: the size is not zero.
        let ptr = NonNull::new(unsafe { std::alloc::alloc(layout) }).ok_or_else(oom)?;
        #[cfg(target_os = "linux")]
        if huge {
            // SAFETY: the range is this allocation, starting on a page
            // boundary; the advice only changes how it is backed (a failure,
            // such as huge pages turned off, changes nothing).
            let _ = unsafe { libc::madvise(ptr.as_ptr().cast(), src.len(), libc::MADV_HUGEPAGE) };
        }
        // SAFETY: `src.len()` bytes, writable, and not overlapping `src`.
        unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), ptr.as_ptr(), src.len()) };
        Ok(OwnedBytes { ptr, layout })
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the whole allocation, initialised by `copy_of`, borrowed
        // mutably through `self`.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for OwnedBytes {
    fn drop(&mut self) {
        // SAFETY: allocated in `copy_of` with this layout; the model that
        // read it has been dropped (field order in `llamette_model`).
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

// SAFETY: `Borrowed` memory is read-only and, by the caller's contract,
// stays valid and unchanged until the model is freed; reading it from any
// thread is sound. The other variants are Send and Sync already.
unsafe impl Send for Bytes {}
// SAFETY: as above: only shared reads happen.
unsafe impl Sync for Bytes {}

impl Bytes {
    /// The bytes, with a lifetime as long as the owner of `self` keeps it.
    ///
    /// # Safety
    ///
    /// The slice must not be used after `self` is dropped.
    unsafe fn as_static(&self) -> &'static [u8] {
        match self {
            // SAFETY: the map's address does not change when the `Mmap` moves,
            // and it stays mapped until dropped (the caller's promise).
            Bytes::Mapped(m) => unsafe { core::slice::from_raw_parts(m.as_ptr(), m.len()) },
            // SAFETY: the caller of `llamette_model_open_memory` keeps the
            // memory valid; non-NULL and size-checked at open.
            Bytes::Borrowed(p, n) => unsafe { core::slice::from_raw_parts(*p, *n) },
            Bytes::Static(s) => s,
            // SAFETY: the allocation lives until `self` is dropped (the
            // caller's promise), initialised by `copy_of`.
            Bytes::Owned(o) => unsafe {
                core::slice::from_raw_parts(o.ptr.as_ptr(), o.layout.size())
            },
        }
    }

    fn len(&self) -> usize {
        match self {
            Bytes::Mapped(m) => m.len(),
            Bytes::Borrowed(_, n) => *n,
            Bytes::Static(s) => s.len(),
            Bytes::Owned(o) => o.layout.size(),
        }
    }
}

/// The tokenizer's index: a heap array the `Tokenizer` borrows for `'static`.
struct IndexBuf(NonNull<[u32]>);

// SAFETY: a plain owned array of u32; it is written only while the tokenizer
// is built, before the model is shared.
unsafe impl Send for IndexBuf {}
// SAFETY: as above.
unsafe impl Sync for IndexBuf {}

impl IndexBuf {
    /// A zeroed index of `len` entries, or `OUT_OF_MEMORY`.
    fn new(len: usize) -> Result<IndexBuf, Fail> {
        let mut v: Vec<u32> = Vec::new();
        if v.try_reserve_exact(len).is_err() {
            fail!(
                LLAMETTE_STATUS_OUT_OF_MEMORY,
                "tokenizer index: cannot allocate {len} entries"
            );
        }
        v.resize(len, 0);
        let b = v.into_boxed_slice();
        Ok(IndexBuf(NonNull::from(Box::leak(b))))
    }

    /// The array, borrowed for as long as `self` is not dropped.
    ///
    /// # Safety
    ///
    /// Call once; the borrow must end before `self` is dropped.
    unsafe fn as_static_mut(&mut self) -> &'static mut [u32] {
        // SAFETY: `Box::leak` gave this pointer; nothing else refers to it.
        unsafe { &mut *self.0.as_ptr() }
    }
}

impl Drop for IndexBuf {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `Box::leak` in `IndexBuf::new`, and
        // the tokenizer borrowing it has been dropped (field order in
        // `llamette_model`).
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// A model, opened by `llamette_model_open_file`, `llamette_model_open_memory`
/// or `llamette_model_open_default`; freed by `llamette_model_free`.
///
/// Immutable once opened: every function taking a `const llamette_model *`
/// may be called from any number of threads at the same time. The handle is
/// reference counted: each session and decoder made from it keeps it alive,
/// so it may be freed before them.
pub struct llamette_model {
    // Field order is drop order: the borrowers first, then what they borrow.
    pub(crate) tokenizer: Option<Tokenizer<'static>>,
    /// The chat format of the tokenizer's file (its `tokenizer.chat_template`).
    pub(crate) chat_format: ChatFormat<'static>,
    pub(crate) model: Model<'static>,
    pub(crate) info: llamette_model_info,
    /// Owned for `tokenizer`'s borrow.
    _index: Option<IndexBuf>,
    /// Owned (or mapped) for `tokenizer`'s borrow.
    _tokenizer_bytes: Option<Bytes>,
    /// Owned (or mapped) for `model`'s and `tokenizer`'s borrows.
    _bytes: Bytes,
}

impl llamette_model {
    /// Builds a model over `bytes` with the tokenizer from `tokenizer_bytes`,
    /// or from the model's own file when it is a GGUF with a vocabulary.
    fn open(bytes: Bytes, tokenizer_bytes: Option<Bytes>) -> Result<Arc<llamette_model>, Fail> {
        // SAFETY: the slices are stored in the returned struct next to the
        // `Bytes` that own them, and the struct's fields drop in order
        // (borrowers first).
        let data = unsafe { bytes.as_static() };
        let model = Model::load(data).map_err(|e| Fail::core("model", e))?;
        let vocab = model.config.vocab_size as u32;

        let (tok_data, own) = match &tokenizer_bytes {
            // SAFETY: as above.
            Some(t) => (Some(unsafe { t.as_static() }), false),
            None if data.starts_with(b"GGUF") => (Some(data), true),
            None => (None, false),
        };
        let mut index = None;
        let mut tokenizer = None;
        let mut chat_format = ChatFormat::Llama2;
        if let Some(t) = tok_data {
            let len = match Tokenizer::index_len_for_vocab(t, vocab) {
                Ok(n) => Some(n),
                // A GGUF model without a vocabulary has no tokenizer.
                Err(llamette_core::Error::MissingMetadata { .. }) if own => None,
                Err(e) => return Err(Fail::core("tokenizer", e)),
            };
            if let Some(len) = len {
                let mut buf = IndexBuf::new(len)?;
                // SAFETY: borrowed by `tokenizer`, stored beside `buf` and
                // dropped before it.
                let idx = unsafe { buf.as_static_mut() };
                let tok = Tokenizer::load_for_vocab(t, vocab, idx)
                    .map_err(|e| Fail::core("tokenizer", e))?;
                index = Some(buf);
                tokenizer = Some(tok);
                chat_format = ChatFormat::of_file(t).map_err(|e| Fail::core("tokenizer", e))?;
            }
        }

        let c = &model.config;
        let mut info = llamette_model_info {
            format: match model.format {
                Format::Gguf(2) => LLAMETTE_FORMAT_GGUF_V2,
                Format::Gguf(_) => LLAMETTE_FORMAT_GGUF_V3,
                Format::Llama2cV0 => LLAMETTE_FORMAT_LLAMA2C_V0,
                Format::Llama2cV2 => LLAMETTE_FORMAT_LLAMA2C_V2,
            },
            dim: c.dim as u32,
            hidden_dim: c.hidden_dim as u32,
            n_layers: c.n_layers as u32,
            n_heads: c.n_heads as u32,
            n_kv_heads: c.n_kv_heads as u32,
            head_dim: c.head_dim() as u32,
            vocab_size: vocab,
            context_length: c.seq_len as u32,
            tokenizer_tokens: 0,
            bos_token: LLAMETTE_NO_TOKEN,
            eos_token: LLAMETTE_NO_TOKEN,
            unk_token: LLAMETTE_NO_TOKEN,
            max_token_text_bytes: 0,
            n_params: model.n_params(),
            weight_bytes: model.weight_bytes(),
            file_bytes: bytes.len() as u64,
            tokenizer_file_bytes: tokenizer_bytes.as_ref().map_or(0, |b| b.len() as u64),
            bytes_per_token: model.bytes_per_token(),
            rms_eps: c.rms_eps,
            rope_theta: c.rope_theta,
            owned_bytes: match &bytes {
                Bytes::Owned(o) => o.layout.size() as u64,
                _ => 0,
            },
            interleaved_matrices: interleaved_matrices(data),
            ..Default::default()
        };
        if let Some(t) = &tokenizer {
            info.tokenizer_tokens = t.n_tokens();
            info.bos_token = t.bos();
            info.eos_token = t.eos();
            info.unk_token = t.unk();
            let longest = (0..t.n_tokens())
                .map(|id| t.piece(id).map_or(0, <[u8]>::len))
                .max()
                .unwrap_or(0);
            // A push emits at most the pending bytes (3) and the piece, each
            // byte at worst as U+FFFD (3 bytes).
            info.max_token_text_bytes = longest
                .saturating_add(3)
                .saturating_mul(3)
                .min(u32::MAX as usize) as u32;
        }
        Ok(Arc::new(llamette_model {
            tokenizer,
            chat_format,
            model,
            info,
            _index: index,
            _tokenizer_bytes: tokenizer_bytes,
            _bytes: bytes,
        }))
    }

    /// The tokenizer, or `NO_TOKENIZER`.
    pub(crate) fn tok(&self) -> Result<&Tokenizer<'static>, Fail> {
        self.tokenizer.as_ref().ok_or_else(|| {
            Fail::new(
                LLAMETTE_STATUS_NO_TOKENIZER,
                format_args!("the model was opened without a tokenizer"),
            )
        })
    }
}

/// Borrows the model behind a handle pointer.
///
/// # Safety
///
/// `p` is NULL or a live handle from `llamette_model_open_*`.
pub(crate) unsafe fn model_ref<'a>(
    p: *const llamette_model,
    name: &str,
) -> Result<&'a llamette_model, Fail> {
    let p = non_null(p, name)?;
    // SAFETY: a live handle (the caller's contract) is an `Arc` pointee.
    Ok(unsafe { &*p })
}

/// A new reference to the model behind a handle pointer.
///
/// # Safety
///
/// `p` is a live, non-NULL handle.
pub(crate) unsafe fn model_arc(p: *const llamette_model) -> Arc<llamette_model> {
    // SAFETY: `p` came from `Arc::into_raw` and is alive, so its count is at
    // least 1; incrementing first keeps the handle's own reference intact.
    unsafe {
        Arc::increment_strong_count(p);
        Arc::from_raw(p)
    }
}

fn publish(model: Arc<llamette_model>, out: *mut *mut llamette_model) {
    // SAFETY (of the caller): `out` was NULL-checked and is writable.
    let raw = Arc::into_raw(model) as *mut llamette_model;
    // SAFETY: checked non-NULL by every caller before any work.
    unsafe { out.write(raw) };
}

/// Reads a path argument.
///
/// # Safety
///
/// `p` is non-NULL and NUL-terminated.
unsafe fn path_arg(p: *const c_char, name: &str) -> Result<std::path::PathBuf, Fail> {
    // SAFETY: the caller's contract.
    let bytes = unsafe { core::ffi::CStr::from_ptr(p) }.to_bytes();
    #[cfg(unix)]
    {
        let _ = name;
        use std::os::unix::ffi::OsStrExt;
        Ok(std::ffi::OsStr::from_bytes(bytes).into())
    }
    #[cfg(not(unix))]
    {
        match core::str::from_utf8(bytes) {
            Ok(s) => Ok(s.into()),
            Err(_) => Err(Fail::new(
                LLAMETTE_STATUS_INVALID_UTF8,
                format_args!("`{name}` is not valid UTF-8"),
            )),
        }
    }
}

/// How many matrices of a GGUF file are in the interleaved layout.
fn interleaved_matrices(data: &[u8]) -> u32 {
    let Ok(g) = Gguf::parse(data) else {
        return 0; // a llama2.c file
    };
    g.tensors()
        .filter_map(Result::ok)
        .filter(|t| t.ty.is_some_and(TensorType::is_interleaved))
        .count() as u32
}

/// Reads a model file for speed (`LLAMETTE_OPEN_FOR_SPEED`): a copy in
/// memory the library owns, its matrices interleaved where the kernels
/// gain from it; the mapped file where a copy would gain nothing.
fn load_for_speed(path: &std::path::Path) -> Result<Bytes, Fail> {
    let mapped = map_file(path)?;
    let Bytes::Mapped(map) = &mapped else {
        return Ok(mapped); // an empty file
    };
    let interleave = llamette_core::kernels::active().fast_interleaved;
    let huge_pages = cfg!(target_os = "linux");
    if !interleave && !huge_pages {
        return Ok(mapped);
    }
    let mut copy = OwnedBytes::copy_of(map, path)?;
    let mut rewritten = 0;
    if interleave {
        rewritten = llamette_core::repack::repack_in_place(copy.as_mut_slice())
            .map_err(|e| Fail::core("model", e))?
            .tensors;
    }
    if rewritten == 0 && !huge_pages {
        return Ok(mapped); // nothing to interleave: the copy buys nothing
    }
    Ok(Bytes::Owned(copy))
}

/// Memory-maps `path` read-only.
fn map_file(path: &std::path::Path) -> Result<Bytes, Fail> {
    let io =
        |e: std::io::Error| Fail::new(LLAMETTE_STATUS_IO, format_args!("{}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        fail!(LLAMETTE_STATUS_IO, "{}: is a directory", path.display());
    }
    if meta.len() == 0 {
        // An empty file cannot be mapped; it is (un)readable all the same.
        return Ok(Bytes::Static(&[]));
    }
    // SAFETY: a read-only private map. A file truncated or changed by another
    // process while mapped may fault or give changed bytes, as with every
    // mapped reader; the header documents it.
    let map = unsafe { Mmap::map(&file) }.map_err(io)?;
    // Before the first touch: pages the kernel reads in for this mapping
    // are then 2 MiB folios where it can (Linux 6.x, a file system with
    // large folios, such as ext4 or xfs), mapped with 2 MiB entries: fewer
    // TLB misses while streaming the weights. A failure changes nothing.
    #[cfg(target_os = "linux")]
    let _ = map.advise(memmap2::Advice::HugePage);
    Ok(Bytes::Mapped(map))
}

/// Opens a model file (GGUF, or a llama2.c `.bin`), memory-mapped read-only.
///
/// `model_path` is a NUL-terminated path (UTF-8 on Windows, bytes elsewhere).
/// `tokenizer_path` may be NULL: a GGUF model then uses its own vocabulary,
/// and a llama2.c model has no tokenizer (the tokenizer functions return
/// `LLAMETTE_STATUS_NO_TOKENIZER`; sessions work on token ids). Otherwise it
/// names a llama2.c `tokenizer.bin` or a GGUF file (a vocabulary-only GGUF
/// too), which must cover the model's vocabulary.
///
/// On success `*out_model` receives a new handle, to be released with
/// `llamette_model_free`. The files are mapped until the last handle using
/// them (the model, its sessions and decoders) is freed; they must not be
/// truncated or modified meanwhile. (`llamette_model_open_file_ex` with
/// `LLAMETTE_OPEN_FOR_SPEED` loads the model for speed instead.)
///
/// Errors: `NULL_ARGUMENT`, `IO` (cannot open or map), `BAD_FILE`,
/// `UNSUPPORTED`, `BAD_TOKENIZER`, `OUT_OF_MEMORY`, `INVALID_UTF8` (path, on
/// Windows). Thread safety: may be called from any thread.
///
/// # Safety
///
/// The paths are NULL or NUL-terminated strings; `out_model` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llamette_model_open_file(
    model_path: *const c_char,
    tokenizer_path: *const c_char,
    out_model: *mut *mut llamette_model,
) -> llamette_status {
    // SAFETY: the caller's contract.
    unsafe { llamette_model_open_file_ex(model_path, tokenizer_path, 0, out_model) }
}

/// Opens a model file as `llamette_model_open_file` does, the way `flags`
/// says: 0 maps it read-only, nothing copied (the same as
/// `llamette_model_open_file`: the least memory, pages shared with other
/// processes mapping the file); `LLAMETTE_OPEN_FOR_SPEED` loads it for
/// speed, into memory the library owns (its size in
/// `llamette_model_info.owned_bytes`, freed with the last handle using the
/// model; see the flag for what it does on which CPU). The file may then
/// change or go once this returns, unless it was mapped after all
/// (`owned_bytes` 0). The tokenizer file, if any, is mapped either way.
///
/// Errors: as `llamette_model_open_file`, and `INVALID_ARGUMENT` (unknown
/// flags), `OUT_OF_MEMORY` (no memory for the copy). Thread safety: any
/// thread.
///
/// # Safety
///
/// The paths are NULL or NUL-terminated strings; `out_model` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llamette_model_open_file_ex(
    model_path: *const c_char,
    tokenizer_path: *const c_char,
    flags: u32,
    out_model: *mut *mut llamette_model,
) -> llamette_status {
    boundary(|| {
        let model_path = non_null(model_path, "model_path")?;
        let out = non_null_mut(out_model, "out_model")?;
        if flags & !LLAMETTE_OPEN_FOR_SPEED != 0 {
            fail!(
                LLAMETTE_STATUS_INVALID_ARGUMENT,
                "flags {flags:#x}: unknown flags {:#x} (LLAMETTE_OPEN_FOR_SPEED is {LLAMETTE_OPEN_FOR_SPEED})",
                flags & !LLAMETTE_OPEN_FOR_SPEED
            );
        }
        // SAFETY: non-NULL; the caller's contract says NUL-terminated.
        let path = unsafe { path_arg(model_path, "model_path") }?;
        let tok_path = if tokenizer_path.is_null() {
            None
        } else {
            // SAFETY: as above.
            Some(unsafe { path_arg(tokenizer_path, "tokenizer_path") }?)
        };
        let bytes = if flags & LLAMETTE_OPEN_FOR_SPEED != 0 {
            load_for_speed(&path)?
        } else {
            map_file(&path)?
        };
        let tok = tok_path.as_deref().map(map_file).transpose()?;
        let m = llamette_model::open(bytes, tok)?;
        publish(m, out);
        Ok(())
    })
}

/// Opens a model from caller memory, zero-copy: the weights are read where
/// they lie.
///
/// `data`/`len` hold a GGUF or llama2.c `.bin` file; `tokenizer_data` and
/// `tokenizer_len` a tokenizer file, or NULL and 0 (then as in
/// `llamette_model_open_file` with a NULL tokenizer path). No alignment is
/// required.
///
/// Ownership: the memory stays the caller's. It must stay valid and unchanged
/// until the last handle using it (the model and every session and decoder
/// made from it) is freed. On success `*out_model` receives a new handle, to
/// be released with `llamette_model_free`.
///
/// Errors: `NULL_ARGUMENT` (`data` or `out_model` NULL, or `tokenizer_data`
/// NULL with a non-zero length), `INVALID_ARGUMENT` (a length over
/// `PTRDIFF_MAX`), `BAD_FILE` (an empty or malformed file), `UNSUPPORTED`,
/// `BAD_TOKENIZER`, `OUT_OF_MEMORY`. Thread safety: any thread.
///
/// # Safety
///
/// `data` points to `len` readable bytes, `tokenizer_data` to
/// `tokenizer_len` readable bytes (when not NULL), kept as said above.
#[no_mangle]
pub unsafe extern "C" fn llamette_model_open_memory(
    data: *const u8,
    len: usize,
    tokenizer_data: *const u8,
    tokenizer_len: usize,
    out_model: *mut *mut llamette_model,
) -> llamette_status {
    boundary(|| {
        let data = non_null(data, "data")?;
        let out = non_null_mut(out_model, "out_model")?;
        check_len::<u8>(len, "len")?;
        let tok = if tokenizer_data.is_null() {
            if tokenizer_len != 0 {
                return Err(Fail::null("tokenizer_data"));
            }
            None
        } else {
            check_len::<u8>(tokenizer_len, "tokenizer_len")?;
            Some(Bytes::Borrowed(tokenizer_data, tokenizer_len))
        };
        let m = llamette_model::open(Bytes::Borrowed(data, len), tok)?;
        publish(m, out);
        Ok(())
    })
}

/// Rewrites a GGUF file held in the caller's *writable* memory so that the
/// SIMD kernels read its Q8_0 and Q4_0 matrices faster (16 rows side by
/// side: about twice the prompt speed, and faster generation, on x86-64
/// and on aarch64 with the dot product extension; with AVX-512 VNNI also
/// its Q4_K and Q5_K matrices, with AVX2 its Q4_K ones), in
/// place, using no other memory. Open it afterwards with
/// `llamette_model_open_memory` on the same bytes.
///
/// The bytes are then no longer a standard GGUF file (only llamette reads
/// them; the header marks the rewritten matrices). The call is idempotent;
/// a llama2.c file is left as it is; on an error nothing is changed.
/// Worth it only where `llamette_kernels_interleaved()` is non-zero (elsewhere
/// the rewritten matrices are slower); the bytes are made for this machine
/// (Q4_K and Q5_K are rewritten only where its kernels read them faster,
/// and elsewhere they are slower than the plain ones). The logits stay the original file's,
/// bit for bit (the interleaved kernels add in the plain types' order).
///
/// `*out_matrices` (if not NULL) receives the number of matrices rewritten.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (a length over `PTRDIFF_MAX`),
/// `BAD_FILE`, `UNSUPPORTED`. Thread safety: any thread, while no other
/// call reads or writes these bytes (no model may be open on them).
///
/// # Safety
///
/// `data` points to `len` readable and writable bytes; `out_matrices` is
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llamette_repack_in_place(
    data: *mut u8,
    len: usize,
    out_matrices: *mut usize,
) -> llamette_status {
    boundary(|| {
        let data = non_null_mut(data, "data")?;
        check_len::<u8>(len, "len")?;
        // SAFETY: non-NULL, `len` readable and writable bytes that nothing
        // else uses during the call (the caller's contract), length checked.
        let bytes = unsafe { core::slice::from_raw_parts_mut(data, len) };
        let done =
            llamette_core::repack::repack_in_place(bytes).map_err(|e| Fail::core("model", e))?;
        if !out_matrices.is_null() {
            // SAFETY: non-NULL and writable by the contract.
            unsafe { *out_matrices = done.tensors };
        }
        Ok(())
    })
}

/// Non-zero when the kernels in use have fast paths for the matrices
/// `llamette_repack_in_place` writes (x86-64 with AVX2 or AVX-512, aarch64
/// with the dot product extension; not plain NEON nor the scalar kernels).
///
/// Thread safety: any thread.
#[no_mangle]
pub extern "C" fn llamette_kernels_interleaved() -> u32 {
    llamette_core::kernels::active().fast_interleaved as u32
}

#[cfg(feature = "default-model")]
mod embedded {
    /// Bytes aligned to 64, as a mapped file would be.
    #[repr(C, align(64))]
    pub struct Aligned<T: ?Sized>(pub T);

    /// stories260K (Karpathy's tinyllamas, MIT; see models/README.md).
    pub static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!("../../models/stories260K.bin"));
    /// Its tokenizer, tok512.bin.
    pub static TOKENIZER: &Aligned<[u8]> = &Aligned(*include_bytes!("../../models/tok512.bin"));
}

/// Opens the model compiled into the library: stories260K (a 260K-parameter
/// llama2.c model trained on TinyStories, 512-token vocabulary) with its
/// tokenizer. Nothing is read from disk and nothing is copied.
///
/// On success `*out_model` receives a new handle, to be released with
/// `llamette_model_free`.
///
/// Errors: `NULL_ARGUMENT`; `UNSUPPORTED` when the library was built without
/// the `default-model` feature. Thread safety: any thread.
///
/// # Safety
///
/// `out_model` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llamette_model_open_default(
    out_model: *mut *mut llamette_model,
) -> llamette_status {
    boundary(|| {
        let out = non_null_mut(out_model, "out_model")?;
        #[cfg(feature = "default-model")]
        {
            let m = llamette_model::open(
                Bytes::Static(&embedded::MODEL.0),
                Some(Bytes::Static(&embedded::TOKENIZER.0)),
            )?;
            publish(m, out);
            Ok(())
        }
        #[cfg(not(feature = "default-model"))]
        {
            let _ = out;
            fail!(
                LLAMETTE_STATUS_UNSUPPORTED,
                "this library was built without the embedded default model"
            )
        }
    })
}

/// Releases the caller's reference to a model. The model's memory (and its
/// file mapping) goes when its last session and decoder are freed too.
/// `llamette_model_free(NULL)` does nothing.
///
/// Thread safety: any thread, but not concurrently with another call that
/// uses this same reference.
///
/// # Safety
///
/// `model` is NULL or a handle from `llamette_model_open_*` not freed yet.
#[no_mangle]
pub unsafe extern "C" fn llamette_model_free(model: *mut llamette_model) {
    boundary_value((), || {
        if !model.is_null() {
            // SAFETY: the handle came from `Arc::into_raw` (the caller's contract).
            drop(unsafe { Arc::from_raw(model as *const llamette_model) });
        }
    })
}

/// Writes the model's description to `*out_info`: the fields its
/// `struct_size` covers (set it first; `LLAMETTE_MODEL_INFO_INIT` does).
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (a `struct_size` below the
/// first version's). Thread safety: any thread.
///
/// # Safety
///
/// `model` is NULL or a live handle; `out_info` is NULL or writable for
/// its `struct_size`.
#[no_mangle]
pub unsafe extern "C" fn llamette_model_get_info(
    model: *const llamette_model,
    out_info: *mut llamette_model_info,
) -> llamette_status {
    boundary(|| {
        // SAFETY: the caller's contract.
        let m = unsafe { model_ref(model, "model") }?;
        // SAFETY: NULL or writable for its size (the caller's contract).
        let out = unsafe { Out::new(out_info, "out_info") }?;
        // SAFETY: checked by `Out::new`.
        unsafe { out.write(&m.info) };
        Ok(())
    })
}

/// Encodes UTF-8 `text` (`text_len` bytes, no NUL needed) into token ids, as
/// SentencePiece does for Llama 2, with the BOS token first if `add_bos`.
///
/// The ids go to `tokens[0..n]` and `*out_n_tokens` receives `n`. When
/// `capacity` is too small, the function returns `BUFFER_TOO_SMALL`, writes
/// the number of ids needed to `*out_n_tokens` and nothing to `tokens`: call
/// with `tokens = NULL, capacity = 0` to ask for the size. At most
/// `3 * text_len + 4` ids come out.
///
/// Memory: encoding needs `6 * (text_len + 1)` entries of scratch; when
/// `capacity` is at least that, `tokens` serves as the scratch and nothing is
/// allocated, otherwise a scratch array is allocated for the call.
///
/// Errors: `NULL_ARGUMENT` (`model`, `out_n_tokens`, `text` with a non-zero
/// length, `tokens` with a non-zero capacity), `INVALID_ARGUMENT` (a length
/// over `PTRDIFF_MAX`), `INVALID_UTF8`, `NO_TOKENIZER`, `BUFFER_TOO_SMALL`,
/// `OUT_OF_MEMORY`. Thread safety: any thread.
///
/// # Safety
///
/// `text` points to `text_len` readable bytes (or is NULL with 0), `tokens` to
/// `capacity` writable `uint32_t` (or is NULL with 0), `out_n_tokens` is
/// writable.
#[no_mangle]
pub unsafe extern "C" fn llamette_model_tokenize(
    model: *const llamette_model,
    text: *const c_char,
    text_len: usize,
    add_bos: bool,
    tokens: *mut u32,
    capacity: usize,
    out_n_tokens: *mut usize,
) -> llamette_status {
    boundary(|| {
        // SAFETY: the caller's contract.
        let m = unsafe { model_ref(model, "model") }?;
        let out_n = non_null_mut(out_n_tokens, "out_n_tokens")?;
        // SAFETY: the caller's contract.
        let text = unsafe { input_slice(text.cast::<u8>(), text_len, "text") }?;
        if tokens.is_null() && capacity != 0 {
            return Err(Fail::null("tokens"));
        }
        check_len::<u32>(capacity, "capacity")?;
        let text = core::str::from_utf8(text).map_err(|e| {
            Fail::new(
                LLAMETTE_STATUS_INVALID_UTF8,
                format_args!("text is not valid UTF-8 ({e})"),
            )
        })?;
        let tok = m.tok()?;
        let bos = if add_bos { Bos::Add } else { Bos::None };
        let work_len = Tokenizer::encode_work_len(text.len());
        let n;
        if capacity >= work_len {
            // SAFETY: non-NULL (capacity > 0), `capacity` writable entries,
            // size checked above.
            let out = unsafe { core::slice::from_raw_parts_mut(tokens, capacity) };
            // The ids land at the front; the rest is scratch (documented).
            n = tok
                .encode(text, bos, out)
                .map_err(|e| Fail::core("text", e))?
                .len();
        } else {
            let mut work: Vec<u32> = Vec::new();
            if work.try_reserve_exact(work_len).is_err() {
                fail!(
                    LLAMETTE_STATUS_OUT_OF_MEMORY,
                    "cannot allocate {work_len} entries of tokenizer scratch"
                );
            }
            work.resize(work_len, 0);
            n = tok
                .encode(text, bos, &mut work)
                .map_err(|e| Fail::core("text", e))?
                .len();
            if n > capacity {
                // SAFETY: checked non-NULL and writable.
                unsafe { out_n.write(n) };
                fail!(
                    LLAMETTE_STATUS_BUFFER_TOO_SMALL,
                    "tokens: {n} ids needed, capacity {capacity}"
                );
            }
            if n > 0 {
                // SAFETY: `n <= capacity` entries are writable, `tokens`
                // non-NULL (capacity >= n > 0); `work` does not overlap it.
                unsafe { core::ptr::copy_nonoverlapping(work.as_ptr(), tokens, n) };
            }
        }
        // SAFETY: checked non-NULL and writable.
        unsafe { out_n.write(n) };
        Ok(())
    })
}

/// Writes the text of one token to `buf`: the piece with `'▁'` as a space, a
/// byte token (`<0x0A>`) as its raw byte (so the result may not be UTF-8 on
/// its own), nothing for control tokens (BOS, EOS, unknown). For streaming
/// text that never splits a UTF-8 character use a decoder
/// (`llamette_decoder_new`).
///
/// `*out_len` receives the byte count (no NUL is written). When `capacity` is
/// too small the function returns `BUFFER_TOO_SMALL`, writes the length
/// needed to `*out_len` and nothing to `buf` (pass NULL and 0 to ask).
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT`, `NO_TOKENIZER`,
/// `UNKNOWN_TOKEN`, `BUFFER_TOO_SMALL`. Thread safety: any thread.
///
/// # Safety
///
/// `buf` points to `capacity` writable bytes (or is NULL with 0); `out_len`
/// is writable.
#[no_mangle]
pub unsafe extern "C" fn llamette_model_token_to_piece(
    model: *const llamette_model,
    token: u32,
    buf: *mut c_char,
    capacity: usize,
    out_len: *mut usize,
) -> llamette_status {
    boundary(|| {
        // SAFETY: the caller's contract.
        let m = unsafe { model_ref(model, "model") }?;
        let out_len = non_null_mut(out_len, "out_len")?;
        if buf.is_null() && capacity != 0 {
            return Err(Fail::null("buf"));
        }
        check_len::<u8>(capacity, "capacity")?;
        let tok = m.tok()?;
        // Two passes: measure, then write (the text is a pure function of the id).
        let emit = |put: &mut dyn FnMut(&[u8])| -> Result<(), Fail> {
            if let Some(b) = tok.byte_value(token) {
                put(&[b]);
            } else if !tok.is_control(token) || token >= tok.n_tokens() {
                let mut d = tok.decoder();
                d.push(token, |s| put(s.as_bytes()))
                    .map_err(|e| Fail::core("token", e))?;
                d.flush(|s| put(s.as_bytes()));
            }
            Ok(())
        };
        let mut n = 0usize;
        emit(&mut |b| n += b.len())?;
        if n > capacity {
            // SAFETY: checked non-NULL and writable.
            unsafe { out_len.write(n) };
            fail!(
                LLAMETTE_STATUS_BUFFER_TOO_SMALL,
                "piece of token {token}: {n} bytes needed, capacity {capacity}"
            );
        }
        if n > 0 {
            // SAFETY: `n <= capacity` writable bytes at non-NULL `buf`
            // (non-NULL because capacity >= n > 0), size checked above.
            let out = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), n) };
            let mut at = 0usize;
            emit(&mut |b| {
                out[at..at + b.len()].copy_from_slice(b);
                at += b.len();
            })?;
        }
        // SAFETY: checked non-NULL and writable.
        unsafe { out_len.write(n) };
        Ok(())
    })
}
