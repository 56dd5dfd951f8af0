//! Reading model and tokenizer files: memory-mapped, or the embedded default.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

/// stories260K, compiled in (see models/README.md for its licence).
pub static DEFAULT_MODEL: &[u8] = include_bytes!("../../models/stories260K.bin");
/// Its tokenizer.
pub static DEFAULT_TOKENIZER: &[u8] = include_bytes!("../../models/tok512.bin");

/// The bytes of a file, memory-mapped, or of an embedded one.
pub enum Bytes {
    /// A mapped file.
    Mapped(Mmap),
    /// A file copied into anonymous memory backed by huge pages.
    Anonymous(memmap2::MmapMut),
    /// A read file (for empty files, which cannot be mapped).
    Owned(Vec<u8>),
    /// Compiled into the binary.
    Static(&'static [u8]),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Anonymous(m) => m,
            Bytes::Owned(v) => v,
            Bytes::Static(s) => s,
        }
    }
}

/// An error that names the file (or flag) it is about.
#[derive(Debug)]
pub struct CliError {
    /// The file, or a description such as "<embedded model>", or a flag.
    pub file: String,
    /// What is wrong.
    pub message: String,
    /// The exit status: 2 for a usage error (a flag's value), 1 otherwise.
    pub code: u8,
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

impl CliError {
    /// An error about `file`.
    pub fn new(file: impl fmt::Display, message: impl fmt::Display) -> CliError {
        CliError {
            file: file.to_string(),
            message: message.to_string(),
            code: 1,
        }
    }

    /// A usage error about `flag` (exit status 2, as clap's own).
    pub fn usage(flag: impl fmt::Display, message: impl fmt::Display) -> CliError {
        CliError {
            code: 2,
            ..CliError::new(flag, message)
        }
    }
}

/// What a file that is not what was expected looks like it is, for
/// messages: `None` when it looks like a model (GGUF with tensors, or
/// llama2.c) or nothing recognisable.
pub fn identify(bytes: &[u8]) -> Option<&'static str> {
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    if bytes.starts_with(b"GGUF") {
        // A vocabulary-only GGUF: no tensors (the count follows the version).
        let tensors = bytes
            .get(8..16)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()));
        return (tensors == Some(0)).then_some(
            "a vocabulary-only GGUF (a tokenizer without weights): pass it as the tokenizer (-z) of a model",
        );
    }
    // llama2.c tokenizer.bin: max_token_length, then <unk>'s record.
    if u32_at(8) == Some(5) && bytes.get(12..17) == Some(b"<unk>") {
        return Some("a llama2.c tokenizer (tokenizer.bin), not a model");
    }
    // SentencePiece .model: a protobuf whose first field is a piece
    // message (tag 0x0A) holding a string (tag 0x0A).
    if bytes.first() == Some(&0x0A)
        && bytes
            .get(..64)
            .is_some_and(|h| h.windows(5).any(|w| w == b"<unk>"))
    {
        return Some(
            "a SentencePiece .model file (protobuf), which llamette does not read: use the model's GGUF vocabulary, or a llama2.c tokenizer.bin (llama2.c's tokenizer.py writes one)",
        );
    }
    // safetensors: a u64 header length, then a JSON object.
    if bytes.len() > 9 && bytes[8] == b'{' {
        return Some(
            "a safetensors file, which llamette does not read: convert the model to GGUF (llama.cpp's convert_hf_to_gguf.py)",
        );
    }
    // PyTorch checkpoints: a zip archive (torch.save) or a bare pickle.
    if bytes.starts_with(b"PK\x03\x04")
        || (bytes.first() == Some(&0x80) && bytes.get(1).is_some_and(|v| (2..=5).contains(v)))
    {
        return Some(
            "a PyTorch checkpoint (a zip or pickle), which llamette does not read: convert it to GGUF (llama.cpp's convert scripts) or to llama2.c's format (llama2.c's export.py)",
        );
    }
    None
}

/// A named input: where its bytes came from, for messages.
pub struct Input {
    /// The path, or `<embedded ...>`.
    pub name: String,
    /// Its bytes.
    pub bytes: Bytes,
}

impl Input {
    /// Maps `path` read-only.
    pub fn open(path: &Path) -> Result<Input, CliError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| CliError::new(&name, e))?;
        let meta = file.metadata().map_err(|e| CliError::new(&name, e))?;
        if meta.is_dir() {
            return Err(CliError::new(&name, "is a directory"));
        }
        let bytes = if meta.len() == 0 {
            Bytes::Owned(Vec::new())
        } else {
            // SAFETY: the map is read-only and private; the file is not
            // modified by this process. A file truncated by another process
            // while mapped would fault, as with any mapped reader (llama.cpp
            // and llama2.c alike); that is documented in the README.
            let map = unsafe { Mmap::map(&file) }.map_err(|e| CliError::new(&name, e))?;
            Bytes::Mapped(map)
        };
        Ok(Input { name, bytes })
    }

    /// Reads `path` into anonymous memory that the kernel is asked to back
    /// with transparent huge pages (Linux): fewer TLB misses while streaming
    /// the weights, at the cost of a private copy (the file's size in RAM)
    /// and the time to read it. Page-cache pages of a mapped file are 4 KiB.
    pub fn open_in_huge_pages(path: &Path) -> Result<Input, CliError> {
        let mapped = Input::open(path)?;
        let len = mapped.bytes.len();
        if len == 0 {
            return Ok(mapped);
        }
        let name = mapped.name.clone();
        let mut anon = memmap2::MmapMut::map_anon(len).map_err(|e| CliError::new(&name, e))?;
        #[cfg(target_os = "linux")]
        {
            // Before the first touch, so that the pages are allocated huge.
            let _ = anon.advise(memmap2::Advice::HugePage);
        }
        anon.copy_from_slice(&mapped.bytes);
        Ok(Input {
            name,
            bytes: Bytes::Anonymous(anon),
        })
    }

    /// The bytes, if this process owns a writable copy of them.
    pub fn bytes_mut(&mut self) -> Option<&mut [u8]> {
        match &mut self.bytes {
            Bytes::Anonymous(m) => Some(m),
            Bytes::Owned(v) => Some(v),
            Bytes::Mapped(_) | Bytes::Static(_) => None,
        }
    }

    /// The embedded default model.
    pub fn default_model() -> Input {
        Input {
            name: "<embedded stories260K.bin>".into(),
            bytes: Bytes::Static(DEFAULT_MODEL),
        }
    }

    /// The embedded default tokenizer.
    pub fn default_tokenizer() -> Input {
        Input {
            name: "<embedded tok512.bin>".into(),
            bytes: Bytes::Static(DEFAULT_TOKENIZER),
        }
    }

    /// Wraps a library error with this input's name.
    pub fn err(&self, e: impl fmt::Display) -> CliError {
        CliError::new(&self.name, e)
    }

    /// Asks the kernel to back the mapping with huge pages where it can
    /// (fewer TLB misses when streaming gigabytes of weights); a no-op
    /// elsewhere.
    pub fn advise_hugepages(&self) {
        #[cfg(target_os = "linux")]
        if let Bytes::Mapped(m) = &self.bytes {
            let _ = m.advise(memmap2::Advice::HugePage);
        }
    }

    /// Whether the bytes start with GGUF's magic.
    pub fn is_gguf(&self) -> bool {
        self.bytes.starts_with(b"GGUF")
    }
}

/// Optional path argument helper.
pub fn open_or(path: Option<&PathBuf>, default: fn() -> Input) -> Result<Input, CliError> {
    match path {
        Some(p) => Input::open(p),
        None => Ok(default()),
    }
}
