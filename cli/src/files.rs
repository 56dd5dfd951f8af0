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

/// An error that names the file it is about.
#[derive(Debug)]
pub struct CliError {
    /// The file, or a description such as "<embedded model>".
    pub file: String,
    /// What is wrong.
    pub message: String,
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
        }
    }
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
