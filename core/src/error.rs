//! The one error type of the crate.
//!
//! Every fallible function returns [`Error`]. It is `Copy`, allocation-free and
//! prints a message a person can act on: which file section, tensor or buffer,
//! what was expected and what was found.

use core::fmt;

/// A short name copied out of a file (a tensor name, a metadata key) so that an
/// error can say *which* one without borrowing the file. Longer names are cut
/// (at a character boundary) and end in `...` when printed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Name {
    bytes: [u8; Name::CAP],
    len: u8,
    cut: bool,
}

impl Name {
    /// How many bytes of a name are kept.
    pub const CAP: usize = 64;

    /// Copies (a prefix of) `s`.
    pub fn new(s: &[u8]) -> Name {
        let mut bytes = [0u8; Name::CAP];
        let mut n = s.len().min(Name::CAP);
        // Do not cut a UTF-8 character in half.
        while n < s.len() && n > 0 && (s[n] & 0xC0) == 0x80 {
            n -= 1;
        }
        bytes[..n].copy_from_slice(&s[..n]);
        Name {
            bytes,
            len: n as u8,
            cut: n < s.len(),
        }
    }

    /// The kept bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.as_bytes().utf8_chunks() {
            f.write_str(chunk.valid())?;
            for b in chunk.invalid() {
                write!(f, "\\x{:02x}", b)?;
            }
        }
        if self.cut {
            f.write_str("...")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self)
    }
}

/// Everything that can go wrong in `llamette`.
///
/// Variants are never removed or renumbered; new ones may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The bytes end before `what` could be read: `needed` bytes from `offset`,
    /// but the input has only `len`.
    Truncated {
        /// The part of the file being read.
        what: &'static str,
        /// Where it starts.
        offset: u64,
        /// How many bytes it needs.
        needed: u64,
        /// How many bytes the input has in all.
        len: u64,
    },
    /// The input does not start with any magic number this crate reads.
    BadMagic {
        /// The first four bytes, little-endian.
        found: u32,
    },
    /// A known format in a version this crate does not read.
    UnsupportedVersion {
        /// "GGUF" or "llama2.c".
        format: &'static str,
        /// The version found.
        version: u32,
    },
    /// The model's architecture (GGUF `general.architecture`) is not `llama`.
    UnsupportedArchitecture {
        /// The architecture named in the file.
        found: Name,
    },
    /// A tensor has a type this crate has no kernel for.
    UnsupportedTensorType {
        /// The raw GGML type number.
        ty: u32,
        /// Its conventional name (`"Q4_K"`), or `"unknown"`.
        type_name: &'static str,
        /// The tensor that has it.
        tensor: Name,
    },
    /// A required metadata key is absent.
    MissingMetadata {
        /// The key.
        key: &'static str,
    },
    /// A metadata value is malformed, of the wrong type or out of range.
    BadMetadata {
        /// The key.
        key: Name,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A tensor the model needs is absent.
    MissingTensor {
        /// Its name.
        name: Name,
    },
    /// A tensor is malformed: wrong shape, outside the file, misaligned.
    BadTensor {
        /// Its name.
        tensor: Name,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The model's hyper-parameters are inconsistent or absurd.
    BadConfig {
        /// What is wrong.
        reason: &'static str,
        /// The offending value.
        value: u64,
    },
    /// The tokenizer file is malformed.
    BadTokenizer {
        /// What is wrong.
        reason: &'static str,
        /// The token id (or other index) concerned.
        index: u64,
    },
    /// The tokenizer has fewer tokens than the model's vocabulary.
    TokenizerTooSmall {
        /// Tokens in the tokenizer.
        tokenizer: u32,
        /// Vocabulary size of the model.
        model: u32,
    },
    /// A caller-provided buffer is too small.
    BufferTooSmall {
        /// What the buffer is for.
        what: &'static str,
        /// How many bytes (or elements, as `what` says) are needed.
        needed: usize,
        /// How many were given.
        got: usize,
    },
    /// A caller-provided buffer is not aligned as required.
    BufferMisaligned {
        /// What the buffer is for.
        what: &'static str,
        /// The alignment needed, in bytes.
        align: usize,
    },
    /// A token id outside the vocabulary.
    UnknownToken {
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab: u32,
    },
    /// The session's context is full: no room for more positions.
    ContextFull {
        /// Positions already used.
        pos: usize,
        /// Positions requested in addition.
        requested: usize,
        /// The session's context length.
        context: usize,
    },
    /// An argument is out of its documented range.
    InvalidArgument {
        /// Which argument, and what is expected.
        what: &'static str,
    },
    /// A step was asked of a session that has not been fed any token yet.
    NothingToSample,
    /// The work was cancelled by the host.
    Cancelled,
    /// A numeric parameter (a sampler setting) is outside its range.
    InvalidParameter {
        /// The parameter, e.g. `"temperature"`.
        name: &'static str,
        /// The value given.
        value: FloatValue,
        /// The range it must lie in, e.g. `"a finite number >= 0"`.
        expected: &'static str,
    },
    /// A dialog is not in the shape the chat format needs (roles out of
    /// order, no final user message, ...).
    BadDialog {
        /// What is wrong.
        reason: &'static str,
        /// The index of the message concerned.
        message: usize,
    },
    /// A message carries one of the chat format's own tags (`[INST]`,
    /// `<<SYS>>`, ...): refused, as Meta's reference refuses it, unless the
    /// caller allows it explicitly (a prompt-injection guard).
    SpecialTagInMessage {
        /// The tag found.
        tag: &'static str,
        /// The index of the message that carries it.
        message: usize,
    },
    /// A saved session state is malformed: wrong magic, truncated, a failed
    /// checksum, inconsistent sizes.
    BadState {
        /// What is wrong.
        reason: &'static str,
    },
    /// A saved session state is well formed but does not fit this session:
    /// another model, another KV cache type or shape, a newer format version.
    StateMismatch {
        /// What differs.
        what: &'static str,
        /// What the blob holds.
        found: u64,
        /// What this session has (or, for a version, the newest read).
        expected: u64,
    },
    /// The operating system refused to start a thread (a thread pool asked
    /// for more threads than it may have).
    ThreadSpawn {
        /// Threads asked for (the calling thread included).
        requested: usize,
        /// Threads running when the system refused (the calling thread
        /// included); they were stopped again.
        started: usize,
    },
    /// A chat template could not be rendered (syntax error, an exception
    /// raised by the template, an unknown filter).
    Template {
        /// What went wrong, as far as a fixed-size message can say.
        message: Name,
    },
}

/// A float kept by its bits, so that [`Error`] stays `Eq`; prints as the float.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FloatValue(pub u32);

impl FloatValue {
    /// Keeps `v`.
    pub fn new(v: f32) -> FloatValue {
        FloatValue(v.to_bits())
    }

    /// The float.
    pub fn get(self) -> f32 {
        f32::from_bits(self.0)
    }
}

impl fmt::Display for FloatValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

impl fmt::Debug for FloatValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Truncated {
                what,
                offset,
                needed,
                len,
            } => write!(
                f,
                "truncated input: {what} needs {needed} bytes at offset {offset}, but the input is {len} bytes long"
            ),
            Error::BadMagic { found } => write!(
                f,
                "unrecognised file: magic 0x{found:08x} is neither GGUF nor a llama2.c checkpoint"
            ),
            Error::UnsupportedVersion { format, version } => {
                write!(f, "unsupported {format} version {version}")
            }
            Error::UnsupportedArchitecture { found } => write!(
                f,
                "unsupported architecture \"{found}\" (only \"llama\" is supported)"
            ),
            Error::UnsupportedTensorType {
                ty,
                type_name,
                tensor,
            } => write!(
                f,
                "unsupported tensor type {type_name} ({ty}) in tensor {tensor} (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)"
            ),
            Error::MissingMetadata { key } => write!(f, "missing metadata key {key}"),
            Error::BadMetadata { key, reason } => write!(f, "bad metadata {key}: {reason}"),
            Error::MissingTensor { name } => write!(f, "missing tensor {name}"),
            Error::BadTensor { tensor, reason } => write!(f, "bad tensor {tensor}: {reason}"),
            Error::BadConfig { reason, value } => {
                write!(f, "bad model configuration: {reason} (value {value})")
            }
            Error::BadTokenizer { reason, index } => {
                write!(f, "bad tokenizer: {reason} (at {index})")
            }
            Error::TokenizerTooSmall { tokenizer, model } => write!(
                f,
                "the tokenizer has {tokenizer} tokens but the model's vocabulary has {model}"
            ),
            Error::BufferTooSmall { what, needed, got } => write!(
                f,
                "{what} is too small: {needed} needed, {got} given"
            ),
            Error::BufferMisaligned { what, align } => {
                write!(f, "{what} must be aligned to {align} bytes")
            }
            Error::UnknownToken { id, vocab } => write!(
                f,
                "unknown token id {id} (the vocabulary has {vocab} tokens)"
            ),
            Error::ContextFull {
                pos,
                requested,
                context,
            } => write!(
                f,
                "context full: {pos} positions used + {requested} requested > context length {context}"
            ),
            Error::InvalidArgument { what } => write!(f, "invalid argument: {what}"),
            Error::NothingToSample => {
                write!(f, "nothing to sample: feed at least one token first")
            }
            Error::Cancelled => write!(f, "cancelled"),
            Error::InvalidParameter {
                name,
                value,
                expected,
            } => write!(f, "invalid {name} {value}: it must be {expected}"),
            Error::BadDialog { reason, message } => {
                write!(f, "bad dialog at message {message}: {reason}")
            }
            Error::SpecialTagInMessage { tag, message } => write!(
                f,
                "message {message} contains the chat format's tag {tag:?}: refused (a prompt-injection guard; opt out explicitly to allow it)"
            ),
            Error::BadState { reason } => write!(f, "bad saved state: {reason}"),
            Error::StateMismatch {
                what,
                found,
                expected,
            } => write!(
                f,
                "saved state does not fit this session: {what} is {found} in the state, {expected} here"
            ),
            Error::Template { message } => write!(f, "chat template: {message}"),
            Error::ThreadSpawn { requested, started } => write!(
                f,
                "the system refused to start a thread: {started} of the {requested} threads asked for were running"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// The crate's result type.
pub type Result<T> = core::result::Result<T, Error>;

/// Builds a [`Error::Truncated`] check: `bytes[offset..offset + n]`, or the error.
pub(crate) fn slice<'a>(
    bytes: &'a [u8],
    offset: u64,
    n: u64,
    what: &'static str,
) -> Result<&'a [u8]> {
    let len = bytes.len() as u64;
    match offset.checked_add(n) {
        Some(end) if end <= len => Ok(&bytes[offset as usize..end as usize]),
        _ => Err(Error::Truncated {
            what,
            offset,
            needed: n,
            len,
        }),
    }
}
