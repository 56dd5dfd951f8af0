//! Reading model and tokenizer files: memory-mapped, or the embedded default.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

/// stories260K, compiled in (see models/README.md for its licence).
pub static DEFAULT_MODEL: &[u8] = include_bytes!("../../models/stories260K.bin");
/// Its tokenizer.
pub static DEFAULT_TOKENIZER: &[u8] = include_bytes!("../../models/tok512.bin");

/// The least a thread reads of a file that [`Input::open_in_huge_pages`]
/// reads on several threads: smaller files are read by one.
pub const MIN_COPY_PART: usize = 64 << 20;

/// Fills `buf` with the first `buf.len()` bytes of `file`, in parts of
/// at least `min_part` bytes (multiples of 2 MiB) read by up to `threads`
/// threads at once (one on targets without positioned reads).
fn read_in_parts(
    file: &mut File,
    buf: &mut [u8],
    threads: usize,
    min_part: usize,
) -> std::io::Result<()> {
    let parts = threads.min(buf.len() / min_part.max(1)).max(1);
    #[cfg(unix)]
    if parts > 1 {
        use std::os::unix::fs::FileExt;
        let part = buf.len().div_ceil(parts).next_multiple_of(2 << 20);
        let file = &*file;
        return std::thread::scope(|s| {
            let readers: Vec<_> = buf
                .chunks_mut(part)
                .enumerate()
                .map(|(i, chunk)| s.spawn(move || file.read_exact_at(chunk, (i * part) as u64)))
                .collect();
            let mut result = Ok(());
            for r in readers {
                let done = r
                    .join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("a reader panicked")));
                if result.is_ok() {
                    result = done;
                }
            }
            result
        });
    }
    let _ = parts;
    std::io::Read::read_exact(file, buf)
}

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
    /// The file, or a description such as `"<embedded model>"`, or a flag.
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
            // Before the first touch: pages the kernel reads in for this
            // mapping are then 2 MiB folios where it can (Linux 6.x, a
            // file system with large folios, such as ext4 or xfs), mapped
            // with 2 MiB entries: fewer TLB misses while streaming
            // gigabytes of weights. Pages already cached keep their size.
            #[cfg(target_os = "linux")]
            let _ = map.advise(memmap2::Advice::HugePage);
            Bytes::Mapped(map)
        };
        Ok(Input { name, bytes })
    }

    /// Reads `path` into anonymous memory that the kernel is asked to back
    /// with transparent huge pages (Linux): fewer TLB misses while streaming
    /// the weights, at the cost of a private copy (the file's size in RAM)
    /// and the time to read it. (A mapped file's pages are the page cache's:
    /// 2 MiB only where the kernel read the file in for such a mapping.)
    ///
    /// `threads` threads read it, each a part of at least
    /// [`MIN_COPY_PART`] bytes (Unix; elsewhere one thread reads it all):
    /// the copy is bound by page faults and the clearing of fresh pages,
    /// and each thread's first touches place its part's pages. TinyLlama
    /// F16 (2.2 GB) from the page cache, Zen 4, 7 alternating runs of a
    /// whole 1-token `bench`: median 0.65 s with one reading thread, 0.42 s
    /// with two; F16 decode at 2 threads, 22 alternating runs, median 17.2
    /// -> 24.8 tok/s (README, "What this machine changed").
    pub fn open_in_huge_pages(path: &Path, threads: usize) -> Result<Input, CliError> {
        let name = path.display().to_string();
        let mut file = File::open(path).map_err(|e| CliError::new(&name, e))?;
        let meta = file.metadata().map_err(|e| CliError::new(&name, e))?;
        if meta.is_dir() {
            return Err(CliError::new(&name, "is a directory"));
        }
        let len = usize::try_from(meta.len()).map_err(|_| CliError::new(&name, "too large"))?;
        if len == 0 {
            return Ok(Input {
                name,
                bytes: Bytes::Owned(Vec::new()),
            });
        }
        let mut anon = memmap2::MmapMut::map_anon(len).map_err(|e| CliError::new(&name, e))?;
        #[cfg(target_os = "linux")]
        {
            // Before the first touch, so that the pages are allocated huge.
            let _ = anon.advise(memmap2::Advice::HugePage);
        }
        // Read, not mapped and copied: the file's pages then stay in the
        // page cache only, so the process's peak memory is the copy alone.
        read_in_parts(&mut file, &mut anon, threads, MIN_COPY_PART)
            .map_err(|e| CliError::new(&name, e))?;
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

    /// Whether the bytes start with GGUF's magic.
    pub fn is_gguf(&self) -> bool {
        self.bytes.starts_with(b"GGUF")
    }
}

/// How a model file's weights are held in memory.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Layout {
    /// The fast layout ([`Layout::Repacked`]) when the file takes at most
    /// half of the memory available, else [`Layout::Mapped`].
    Auto,
    /// The file mapped read-only: no copy, shared with the page cache
    /// (`--mmap`).
    Mapped,
    /// Copied into anonymous memory backed by huge pages (bench's
    /// `--huge-pages`).
    HugePages,
    /// Copied into huge pages and its Q8_0/Q4_0 matrices (with AVX-512
    /// VNNI also Q4_K/Q5_K) interleaved for the SIMD kernels
    /// (`--repack`).
    Repacked,
}

impl Layout {
    /// The layout the flags ask for: `--mmap`, `--repack` or neither.
    pub fn from_flags(mmap: bool, repack: bool) -> Layout {
        match (mmap, repack) {
            (true, _) => Layout::Mapped,
            (false, true) => Layout::Repacked,
            (false, false) => Layout::Auto,
        }
    }
}

/// A model opened by [`open_model`].
pub struct LoadedModel {
    /// Its bytes.
    pub input: Input,
    /// Whether the bytes are a private copy (huge pages).
    pub copied: bool,
    /// Matrices interleaved, their bytes, and the seconds it took.
    pub interleaved: Option<(llamette::repack::Repacked, f64)>,
    /// What was done, for stderr once the model loaded (so that a file
    /// that is no model gets its one-line error alone).
    pub note: Option<String>,
}

/// Prints [`LoadedModel::note`] on stderr.
pub fn say(note: &Option<String>) {
    if let Some(n) = note {
        eprintln!("llamette: {n}");
    }
}

/// `MemAvailable` of `/proc/meminfo`, in bytes (`None` where unknown).
pub fn mem_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    info.lines().find_map(|l| kib_field(l, "MemAvailable:"))
}

/// The bytes of a `/proc` line `KEY: N kB` whose key is `key`.
fn kib_field(line: &str, key: &str) -> Option<u64> {
    let kib: u64 = line
        .strip_prefix(key)?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

/// Bytes of the mapping that holds `addr` that the kernel maps with 2 MiB
/// pages, from `/proc/self/smaps` (`FilePmdMapped` for a file,
/// `AnonHugePages` for anonymous memory); `None` where unknown (not Linux,
/// no such mapping). A mapped model's page cache is in 2 MiB pages only
/// where the kernel's readahead made 2 MiB folios of it, which depends on
/// how the file was read and how fragmented memory was then, and a decode
/// from 4 KiB pages is slower (whole-model mapped Q8_0 decode on the Intel
/// development machine, 2026-12-06: 12.2 tok/s with 231 MB of the file in
/// 2 MiB pages, 14.4 with 1.11 GB).
pub fn huge_page_bytes(addr: *const u8) -> Option<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let addr = addr as usize;
    // The mapping's lines: from its header to the next header.
    let mut lines = smaps
        .lines()
        .skip_while(|l| !mapping_range(l).is_some_and(|r| r.contains(&addr)));
    lines.next()?;
    let huge = lines
        .take_while(|l| mapping_range(l).is_none())
        .filter_map(|l| kib_field(l, "FilePmdMapped:").or_else(|| kib_field(l, "AnonHugePages:")))
        .sum();
    Some(huge)
}

/// The address range of a `/proc/self/smaps` header line (its first word,
/// `start-end` in hexadecimal); `None` for the other lines.
fn mapping_range(line: &str) -> Option<core::ops::Range<usize>> {
    let (lo, hi) = line.split_whitespace().next()?.split_once('-')?;
    Some(usize::from_str_radix(lo, 16).ok()?..usize::from_str_radix(hi, 16).ok()?)
}

/// Opens the model at `path` (the embedded model when `None`, which is
/// read-only and stays as it is) in `layout`, with a note of how (none
/// when the flags asked for the mapped file) for [`say`].
///
/// [`Layout::Auto`] copies and interleaves when the file's size is at most
/// half of `MemAvailable` (the copy then costs memory the user can spare),
/// and maps it otherwise, or when the available memory is unknown.
/// Interleaving changes no bit of the numbers (the kernels add in the plain
/// types' order), so the text printed is the same in every layout, and a
/// saved conversation (`chat --state`) names its model alike in every
/// layout (`llamette::state::model_fingerprint`).
///
/// `threads` is the `--threads` flag: a copy is read by that many threads
/// (0 or none: one per core, at most `MAX_AUTO_THREADS` (8), as the
/// pool's automatic choice; see [`Input::open_in_huge_pages`]).
pub fn open_model(
    path: Option<&PathBuf>,
    layout: Layout,
    threads: Option<usize>,
) -> Result<LoadedModel, CliError> {
    let Some(path) = path else {
        return Ok(LoadedModel {
            input: Input::default_model(),
            copied: false,
            interleaved: None,
            note: None,
        });
    };
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let avail = match layout {
        Layout::Auto => mem_available(),
        _ => None,
    };
    let mut note = None;
    let (copy, interleave) = match layout {
        Layout::Mapped => (false, false),
        Layout::HugePages => (true, false),
        Layout::Repacked => (true, true),
        Layout::Auto => {
            let fits = avail.is_some_and(|a| size <= a / 2);
            if !fits {
                let why = match avail {
                    Some(a) => format!(
                        "its {} MiB are more than half of the {} MiB available",
                        mib(size),
                        mib(a)
                    ),
                    None => "the available memory is unknown".into(),
                };
                note = Some(format!(
                    "mapped the model file ({why}); --repack copies and interleaves it anyway"
                ));
            }
            let fast = llamette::kernels::active().fast_interleaved;
            (fits, fits && fast)
        }
    };
    if !copy {
        return Ok(LoadedModel {
            input: Input::open(path)?,
            copied: false,
            interleaved: None,
            note,
        });
    }
    let readers = match threads {
        Some(n) if n > 0 => n,
        _ => {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(crate::MAX_AUTO_THREADS))
        }
    };
    let mut input = Input::open_in_huge_pages(path, readers)?;
    let name = input.name.clone();
    let mut interleaved = None;
    if interleave {
        if let Some(bytes) = input.bytes_mut() {
            let t0 = std::time::Instant::now();
            match llamette::repack::repack_in_place(bytes) {
                Ok(done) => interleaved = Some((done, t0.elapsed().as_secs_f64())),
                Err(e) if layout == Layout::Repacked => return Err(CliError::new(&name, e)),
                // A file that does not parse is left as it is, for
                // `Model::load` to say what it is.
                Err(_) => {}
            }
        }
    }
    let what = match interleaved {
        Some((done, _)) if done.tensors > 0 => {
            format!("copied and interleaved {} matrices", done.tensors)
        }
        Some(_) => "copied into huge pages, no matrix to interleave".into(),
        None => "copied into huge pages".into(),
    };
    let note = match layout {
        Layout::Auto => {
            let avail = avail.map_or(String::new(), |a| format!(" of {} MiB available", mib(a)));
            format!(
                "loaded for speed: {what} ({} MiB{avail}); --mmap maps the file instead",
                mib(size)
            )
        }
        _ => format!("{what} ({} MiB)", mib(size)),
    };
    Ok(LoadedModel {
        input,
        copied: true,
        interleaved,
        note: Some(note),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of `len` bytes that differ from part to part.
    fn file_of(len: usize, tag: &str) -> (PathBuf, Vec<u8>) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 31 + i / 4099) as u8).collect();
        let path =
            std::env::temp_dir().join(format!("llamette-parts-{tag}-{}", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        (path, bytes)
    }

    #[test]
    fn a_file_read_in_parts_is_the_file() {
        // 5 MiB and a bit in parts of at least 1 MiB: 3 threads read parts
        // of 2, 2 and 1 MiB and a bit; 1 thread, and more threads than
        // parts, read the same bytes.
        let (path, want) = file_of((5 << 20) + 123, "whole");
        for threads in [1, 2, 3, 8] {
            let mut buf = vec![0u8; want.len()];
            let mut f = File::open(&path).unwrap();
            read_in_parts(&mut f, &mut buf, threads, 1 << 20).unwrap();
            assert!(buf == want, "{threads} threads");
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_file_shorter_than_the_buffer_is_an_error() {
        let (path, _) = file_of(3 << 20, "short");
        for threads in [1, 3] {
            let mut buf = vec![0u8; 5 << 20];
            let mut f = File::open(&path).unwrap();
            let e = read_in_parts(&mut f, &mut buf, threads, 1 << 20).unwrap_err();
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof,
                "{threads} threads"
            );
        }
        std::fs::remove_file(&path).unwrap();
    }
}
