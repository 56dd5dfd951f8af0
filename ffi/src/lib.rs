//! # llamette-ffi: the C ABI of llamette
//!
//! Every host language (C, C++, C#, Swift) uses this surface, through the
//! header `include/llamette.h` that cbindgen generates from this crate
//! (`scripts/ffi-header.sh`). The conventions are those of rustls-ffi and
//! SQLite:
//!
//! - opaque handles (`llamette_model`, `llamette_session`,
//!   `llamette_decoder`), functions named `llamette_<object>_<verb>`;
//!   `_free(NULL)` does nothing;
//! - every fallible function returns a `llamette_status` (`LLAMETTE_STATUS_OK`
//!   is 0; the numbers never change) and writes its outputs only on success
//!   (the documented exception: the size needed after `BUFFER_TOO_SMALL`);
//!   `llamette_status_str` is static text, `llamette_last_error` the message
//!   of the calling thread's last failure, `llamette_session_last_error` a
//!   session's;
//! - every pointer argument is NULL-checked and every export runs inside a
//!   panic boundary: a panic becomes `LLAMETTE_STATUS_PANIC`, never an abort
//!   or an unwind into the host;
//! - buffers are `(pointer, length)` pairs; callbacks take `void *user_data`
//!   first and must not unwind;
//! - memory: `llamette_session_required_bytes` then `llamette_session_init` on
//!   caller memory (nothing allocated), or `llamette_session_new`;
//! - threads: a model is immutable and shared by any number of threads and
//!   sessions; a session is used by one thread at a time
//!   (`llamette_session_cancel` excepted); no thread is started unless asked
//!   (`llamette_session_set_threads`).
//!
//! ## Names
//!
//! The package is `llamette-ffi`; its library target is named `llamette`
//! because Cargo names the built file after it (`libllamette.so`, `.a`,
//! `.dylib`, `llamette.dll`: what `-lllamette`, pkg-config, C#'s
//! `DllImport("llamette")` and SwiftPM link), and Cargo has no separate
//! setting for the file name. So, in this crate's Rust source, the core
//! crate (also `llamette`) is imported as `llamette_core`, and `crate::`
//! is this C ABI. Nothing else sees the clash: this crate builds no rlib
//! (no Rust crate can depend on it, and its `.rlib` would collide with the
//! core's), no rustdoc (`doc = false`; its documentation is the header),
//! and its Rust tests are unit tests in `src/tests/`. Renaming the library
//! target would rename the C library every host links; a thin cdylib crate
//! re-exporting an `llamette_ffi` rlib would avoid the alias at the cost of
//! a second package in every build command.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
// No panic may reach the host: library code returns a status (the few
// deliberate panics are annotated where they are, and every export runs
// inside the panic boundary anyway).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![allow(non_camel_case_types)]
// `Fail` carries its message inline (512 bytes) so that a failing call
// allocates nothing; failures are rare and cheap enough to move.
#![allow(clippy::result_large_err)]

mod chat;
mod decoder;
mod error;
mod model;
mod parallel;
mod session;
mod sized;

use core::ffi::c_char;

pub use chat::*;
pub use decoder::*;
pub use error::{
    llamette_status, LLAMETTE_STATUS_BAD_FILE, LLAMETTE_STATUS_BAD_PARALLEL_FOR,
    LLAMETTE_STATUS_BAD_STATE, LLAMETTE_STATUS_BAD_TOKENIZER, LLAMETTE_STATUS_BUFFER_TOO_SMALL,
    LLAMETTE_STATUS_BUSY, LLAMETTE_STATUS_CANCELLED, LLAMETTE_STATUS_CONTEXT_FULL,
    LLAMETTE_STATUS_ERROR, LLAMETTE_STATUS_INVALID_ARGUMENT, LLAMETTE_STATUS_INVALID_UTF8,
    LLAMETTE_STATUS_IO, LLAMETTE_STATUS_MISALIGNED, LLAMETTE_STATUS_NOTHING_TO_SAMPLE,
    LLAMETTE_STATUS_NO_TOKENIZER, LLAMETTE_STATUS_NULL_ARGUMENT, LLAMETTE_STATUS_OK,
    LLAMETTE_STATUS_OUT_OF_MEMORY, LLAMETTE_STATUS_PANIC, LLAMETTE_STATUS_REFUSED,
    LLAMETTE_STATUS_STATE_MISMATCH, LLAMETTE_STATUS_TEMPLATE, LLAMETTE_STATUS_UNKNOWN_TOKEN,
    LLAMETTE_STATUS_UNSUPPORTED,
};
pub use model::*;
pub use parallel::{llamette_parallel, llamette_parallel_for_fn, llamette_task_fn};
pub use session::*;

/// Major version of this header (and library).
pub const LLAMETTE_VERSION_MAJOR: u32 = 0;
/// Minor version.
pub const LLAMETTE_VERSION_MINOR: u32 = 1;
/// Patch version.
pub const LLAMETTE_VERSION_PATCH: u32 = 0;
/// `MAJOR * 1000000 + MINOR * 1000 + PATCH`, as `llamette_version()` returns
/// for the library actually linked (SQLite's `SQLITE_VERSION_NUMBER` scheme).
pub const LLAMETTE_VERSION_NUMBER: u32 = 1000;

/// Parses a decimal `u32` at compile time.
const fn parse_u32(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut n = 0u32;
    while i < b.len() {
        assert!(b[i].is_ascii_digit());
        n = n * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    n
}

// The header's macros are literals (cbindgen copies them); they must follow
// Cargo.toml: a version bump that forgets them does not compile.
const _: () = {
    assert!(LLAMETTE_VERSION_MAJOR == parse_u32(env!("CARGO_PKG_VERSION_MAJOR")));
    assert!(LLAMETTE_VERSION_MINOR == parse_u32(env!("CARGO_PKG_VERSION_MINOR")));
    assert!(LLAMETTE_VERSION_PATCH == parse_u32(env!("CARGO_PKG_VERSION_PATCH")));
    assert!(
        LLAMETTE_VERSION_NUMBER
            == LLAMETTE_VERSION_MAJOR * 1_000_000
                + LLAMETTE_VERSION_MINOR * 1000
                + LLAMETTE_VERSION_PATCH
    );
};

/// The version of the library linked at run time:
/// `major * 1000000 + minor * 1000 + patch` (compare with
/// `LLAMETTE_VERSION_NUMBER`, the header's). Thread safety: any thread.
#[no_mangle]
pub extern "C" fn llamette_version() -> u32 {
    LLAMETTE_VERSION_NUMBER
}

/// The version of the library linked at run time as static text,
/// "MAJOR.MINOR.PATCH".
#[no_mangle]
pub extern "C" fn llamette_version_string() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// A short static description of a status code (NUL-terminated, never
/// NULL; "unknown status code" for numbers this library does not know).
/// Thread safety: any thread.
#[no_mangle]
pub extern "C" fn llamette_status_str(status: u32) -> *const c_char {
    error::status_text(status).as_ptr().cast()
}

/// The message of the most recent failed `llamette_*` call on the calling
/// thread, saying what went wrong and with which argument, file or token
/// (NUL-terminated UTF-8; "" if none failed). Successful calls leave it
/// alone. Owned by the library: valid until the next failing call on this
/// thread, or the thread's end. Thread safety: per thread by design (a model
/// is shared between threads, so its errors are reported here).
#[no_mangle]
pub extern "C" fn llamette_last_error() -> *const c_char {
    error::boundary_value(c"".as_ptr(), error::last_error_ptr)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod version_tests {
    use super::*;

    #[test]
    fn version_string_matches() {
        // SAFETY: static NUL-terminated text.
        let s = unsafe { core::ffi::CStr::from_ptr(llamette_version_string()) };
        assert_eq!(s.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
        assert_eq!(llamette_version(), LLAMETTE_VERSION_NUMBER);
    }
}
