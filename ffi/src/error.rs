//! Status codes, error messages and the panic boundary every export goes through.

use core::cell::RefCell;
use core::ffi::c_char;
use core::fmt::{self, Write as _};
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The result of every fallible `llamette_*` function: one of the
/// `LLAMETTE_STATUS_*` constants. The numbers are fixed and never reused.
/// `llamette_status_str` names them; after a failure, `llamette_last_error`
/// (and `llamette_session_last_error` for a session) says what went wrong.
#[allow(non_camel_case_types)]
pub type llamette_status = u32;

/// Success. Outputs have been written.
pub const LLAMETTE_STATUS_OK: llamette_status = 0;
/// A pointer argument that must not be NULL was NULL.
pub const LLAMETTE_STATUS_NULL_ARGUMENT: llamette_status = 1;
/// An argument is out of its documented range (a length larger than
/// `PTRDIFF_MAX`, an unknown KV type, an empty prefill, ...).
pub const LLAMETTE_STATUS_INVALID_ARGUMENT: llamette_status = 2;
/// A text argument (or a file path) is not valid UTF-8.
pub const LLAMETTE_STATUS_INVALID_UTF8: llamette_status = 3;
/// An output buffer is too small; where documented, the size needed has been
/// written to the length output.
pub const LLAMETTE_STATUS_BUFFER_TOO_SMALL: llamette_status = 4;
/// A caller buffer is not aligned as required (`LLAMETTE_SESSION_ALIGN`).
pub const LLAMETTE_STATUS_MISALIGNED: llamette_status = 5;
/// Memory could not be allocated.
pub const LLAMETTE_STATUS_OUT_OF_MEMORY: llamette_status = 6;
/// A file could not be opened, read or memory-mapped.
pub const LLAMETTE_STATUS_IO: llamette_status = 7;
/// The model (or tokenizer) bytes are malformed: truncated, not a known
/// format, inconsistent shapes or metadata.
pub const LLAMETTE_STATUS_BAD_FILE: llamette_status = 8;
/// A well-formed file this library does not run: another architecture, a
/// format version or tensor type it has no reader or kernel for; or a feature
/// this build of the library leaves out.
pub const LLAMETTE_STATUS_UNSUPPORTED: llamette_status = 9;
/// The tokenizer is malformed, or smaller than the model's vocabulary.
pub const LLAMETTE_STATUS_BAD_TOKENIZER: llamette_status = 10;
/// The model was opened without a tokenizer, and the function needs one.
pub const LLAMETTE_STATUS_NO_TOKENIZER: llamette_status = 11;
/// A token id is outside the vocabulary.
pub const LLAMETTE_STATUS_UNKNOWN_TOKEN: llamette_status = 12;
/// The session's context has no room for the tokens.
pub const LLAMETTE_STATUS_CONTEXT_FULL: llamette_status = 13;
/// A step was asked of a session that has no logits: nothing was prefilled
/// yet (or since a reset or a cancellation).
pub const LLAMETTE_STATUS_NOTHING_TO_SAMPLE: llamette_status = 14;
/// The call was cancelled with `llamette_session_cancel`.
pub const LLAMETTE_STATUS_CANCELLED: llamette_status = 15;
/// The session is in use: a call on it is already running (on another
/// thread, or this call was made from inside one of its callbacks).
pub const LLAMETTE_STATUS_BUSY: llamette_status = 16;
/// A bug: Rust code panicked. The panic was caught at the boundary; the
/// handle involved must be reset or freed.
pub const LLAMETTE_STATUS_PANIC: llamette_status = 17;
/// An error of the core library that has no status of its own yet.
pub const LLAMETTE_STATUS_ERROR: llamette_status = 18;
/// A saved session state is not one: truncated, corrupted (its checksum
/// fails), malformed. The session is unchanged.
pub const LLAMETTE_STATUS_BAD_STATE: llamette_status = 19;
/// A saved session state does not fit the session: another model, another
/// KV cache type or shape, a newer format version, more positions than the
/// context. The session is unchanged.
pub const LLAMETTE_STATUS_STATE_MISMATCH: llamette_status = 20;
/// A chat message contains the chat format's own tags (`[INST]`,
/// `[/INST]`, `<<SYS>>`, `<</SYS>>`): refused, as Meta's reference refuses
/// it (a prompt-injection guard), unless `LLAMETTE_CHAT_ALLOW_SPECIAL_TAGS`.
pub const LLAMETTE_STATUS_REFUSED: llamette_status = 21;
/// The model's chat template (`tokenizer.chat_template`, see
/// `llamette_model_chat_format`) could not be rendered: a syntax error,
/// something the template engine does not support, too much work, or an
/// exception the template raised (a role it does not accept: Mistral's
/// takes no system message). Nothing changed.
pub const LLAMETTE_STATUS_TEMPLATE: llamette_status = 22;
/// The host's `parallel_for` (`llamette_session_set_parallel`) broke its
/// contract: it skipped a task index, called one twice, or called one out
/// of range. The library ran every index exactly once itself, so nothing
/// was computed wrong, and stopped the call as a cancellation stops it
/// (what `LLAMETTE_STATUS_CANCELLED` keeps is kept); the message says what
/// the host did. The session stays usable: fix the pool, or go back to the
/// calling thread with `llamette_session_set_parallel(session, NULL)`.
pub const LLAMETTE_STATUS_BAD_PARALLEL_FOR: llamette_status = 23;

/// Static, NUL-terminated descriptions, indexed by status.
static STATUS_TEXT: [&str; 24] = [
    "ok\0",
    "a required pointer argument is NULL\0",
    "invalid argument\0",
    "text is not valid UTF-8\0",
    "buffer too small\0",
    "buffer misaligned\0",
    "out of memory\0",
    "input/output error\0",
    "malformed model or tokenizer file\0",
    "unsupported model, format or feature\0",
    "bad tokenizer\0",
    "the model has no tokenizer\0",
    "unknown token id\0",
    "context full\0",
    "nothing to sample: prefill first\0",
    "cancelled\0",
    "session busy: a call on it is already running\0",
    "internal error (panic caught)\0",
    "error\0",
    "bad saved state\0",
    "the saved state belongs to another model, KV type or version\0",
    "refused: a message contains the chat format's own tags\0",
    "the model's chat template could not be rendered\0",
    "the host's parallel_for skipped, repeated or invented task indices\0",
];

/// The static text of a status code.
pub(crate) fn status_text(status: u32) -> &'static str {
    STATUS_TEXT
        .get(status as usize)
        .copied()
        .unwrap_or("unknown status code\0")
}

/// A NUL-terminated error message in a fixed buffer: no allocation, cut at a
/// character boundary if longer.
#[derive(Clone)]
pub(crate) struct ErrorBuf {
    bytes: [u8; ErrorBuf::CAP],
    len: usize,
}

impl ErrorBuf {
    /// Bytes kept, the terminating NUL included.
    const CAP: usize = 512;

    pub(crate) const fn new() -> ErrorBuf {
        ErrorBuf {
            bytes: [0; ErrorBuf::CAP],
            len: 0,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
        self.bytes[0] = 0;
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only whole characters are ever copied in.
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }

    /// The message, NUL-terminated.
    pub(crate) fn as_ptr(&self) -> *const c_char {
        self.bytes.as_ptr().cast()
    }
}

impl fmt::Write for ErrorBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = ErrorBuf::CAP - 1 - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        self.bytes[self.len] = 0;
        Ok(())
    }
}

impl fmt::Debug for ErrorBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A failed call: its status and message.
#[derive(Debug, Clone)]
pub(crate) struct Fail {
    pub(crate) status: llamette_status,
    pub(crate) message: ErrorBuf,
}

impl Fail {
    pub(crate) fn new(status: llamette_status, message: fmt::Arguments<'_>) -> Fail {
        let mut m = ErrorBuf::new();
        let _ = m.write_fmt(message);
        Fail { status, message: m }
    }

    /// A NULL pointer argument.
    pub(crate) fn null(name: &str) -> Fail {
        Fail::new(
            LLAMETTE_STATUS_NULL_ARGUMENT,
            format_args!("argument `{name}` is NULL"),
        )
    }

    /// An error of the core library, with `context` (which input) in front.
    pub(crate) fn core(context: &str, e: llamette_core::Error) -> Fail {
        use llamette_core::Error as E;
        let status = match e {
            E::Truncated { .. }
            | E::BadMagic { .. }
            | E::MissingMetadata { .. }
            | E::BadMetadata { .. }
            | E::MissingTensor { .. }
            | E::BadTensor { .. }
            | E::BadConfig { .. } => LLAMETTE_STATUS_BAD_FILE,
            E::UnsupportedVersion { .. }
            | E::UnsupportedArchitecture { .. }
            | E::UnsupportedTensorType { .. } => LLAMETTE_STATUS_UNSUPPORTED,
            E::BadTokenizer { .. } | E::TokenizerTooSmall { .. } => LLAMETTE_STATUS_BAD_TOKENIZER,
            E::BufferTooSmall { .. } => LLAMETTE_STATUS_BUFFER_TOO_SMALL,
            E::BufferMisaligned { .. } => LLAMETTE_STATUS_MISALIGNED,
            E::UnknownToken { .. } => LLAMETTE_STATUS_UNKNOWN_TOKEN,
            E::ContextFull { .. } => LLAMETTE_STATUS_CONTEXT_FULL,
            E::InvalidArgument { .. } => LLAMETTE_STATUS_INVALID_ARGUMENT,
            E::NothingToSample => LLAMETTE_STATUS_NOTHING_TO_SAMPLE,
            E::Cancelled => LLAMETTE_STATUS_CANCELLED,
            E::InvalidParameter { .. } | E::BadDialog { .. } => LLAMETTE_STATUS_INVALID_ARGUMENT,
            E::SpecialTagInMessage { .. } => LLAMETTE_STATUS_REFUSED,
            E::BadState { .. } => LLAMETTE_STATUS_BAD_STATE,
            E::StateMismatch { .. } => LLAMETTE_STATUS_STATE_MISMATCH,
            E::Template { .. } => LLAMETTE_STATUS_TEMPLATE,
            _ => LLAMETTE_STATUS_ERROR,
        };
        if context.is_empty() {
            Fail::new(status, format_args!("{e}"))
        } else {
            Fail::new(status, format_args!("{context}: {e}"))
        }
    }

    /// A caught panic.
    pub(crate) fn panic(payload: &(dyn Any + Send)) -> Fail {
        let what = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        Fail::new(
            LLAMETTE_STATUS_PANIC,
            format_args!("internal error: llamette panicked: {what}"),
        )
    }
}

/// `Err(Fail::new(..))` in one line.
macro_rules! fail {
    ($status:expr, $($arg:tt)*) => {
        return Err($crate::error::Fail::new($status, format_args!($($arg)*)))
    };
}
pub(crate) use fail;

/// A pointer argument that must not be NULL.
pub(crate) fn non_null<T>(p: *const T, name: &str) -> Result<*const T, Fail> {
    if p.is_null() {
        Err(Fail::null(name))
    } else {
        Ok(p)
    }
}

/// A mutable (output) pointer argument that must not be NULL.
pub(crate) fn non_null_mut<T>(p: *mut T, name: &str) -> Result<*mut T, Fail> {
    if p.is_null() {
        Err(Fail::null(name))
    } else {
        Ok(p)
    }
}

/// Checks a `(pointer, count)` pair of `T` elements and makes the slice.
/// `NULL` is allowed only with a count of 0 (and gives an empty slice).
///
/// # Safety
///
/// When `ptr` is not NULL it must point to `count` readable, initialised
/// elements that stay valid and unchanged for `'a`.
pub(crate) unsafe fn input_slice<'a, T>(
    ptr: *const T,
    count: usize,
    name: &str,
) -> Result<&'a [T], Fail> {
    if count == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Fail::null(name));
    }
    check_len::<T>(count, name)?;
    // SAFETY: non-NULL, and the caller promises `count` valid elements; the
    // byte size fits in isize (checked above), as `from_raw_parts` requires.
    Ok(unsafe { core::slice::from_raw_parts(ptr, count) })
}

/// Checks that `count` elements of `T` span at most `isize::MAX` bytes.
pub(crate) fn check_len<T>(count: usize, name: &str) -> Result<(), Fail> {
    let size = core::mem::size_of::<T>().max(1);
    if count > isize::MAX as usize / size {
        fail!(
            LLAMETTE_STATUS_INVALID_ARGUMENT,
            "`{name}` is too large ({count} elements)"
        );
    }
    Ok(())
}

thread_local! {
    /// The message of the most recent failed call on this thread.
    static LAST_ERROR: RefCell<ErrorBuf> = const { RefCell::new(ErrorBuf::new()) };
}

/// Records `fail` as this thread's last error.
pub(crate) fn set_last_error(fail: &Fail) {
    let _ = LAST_ERROR.try_with(|e| {
        if let Ok(mut e) = e.try_borrow_mut() {
            *e = fail.message.clone();
        }
    });
}

/// This thread's last error message (NUL-terminated; static empty text when
/// the thread-local is gone).
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR
        .try_with(|e| e.as_ptr() as *const ErrorBuf)
        .map(|p| {
            // SAFETY: the buffer lives as long as the thread; the pointer is
            // read through `ErrorBuf::as_ptr` without holding the borrow.
            unsafe { (*p).as_ptr() }
        })
        .unwrap_or(c"".as_ptr())
}

/// The panic boundary: runs `f`, turns its failure (or a panic) into a status
/// and records the message as this thread's last error.
pub(crate) fn boundary(f: impl FnOnce() -> Result<(), Fail>) -> llamette_status {
    let fail = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return LLAMETTE_STATUS_OK,
        Ok(Err(fail)) => fail,
        Err(payload) => Fail::panic(&*payload),
    };
    set_last_error(&fail);
    fail.status
}

/// Runs `f` and returns its value, or `default` if it panics: the boundary
/// of the few exports that return no status.
pub(crate) fn boundary_value<T>(default: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_texts_are_nul_terminated() {
        for s in 0..STATUS_TEXT.len() as u32 {
            assert!(status_text(s).ends_with('\0'));
        }
        assert_eq!(
            STATUS_TEXT.len() as u32,
            LLAMETTE_STATUS_BAD_PARALLEL_FOR + 1
        );
    }

    #[test]
    fn error_buf_cuts_at_char_boundary() {
        let mut b = ErrorBuf::new();
        let long = "é".repeat(600);
        let _ = b.write_str(&long);
        assert!(b.as_str().len() < ErrorBuf::CAP);
        assert!(b.as_str().chars().all(|c| c == 'é'));
        assert_eq!(b.bytes[b.len], 0);
    }
}
