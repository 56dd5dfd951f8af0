//! Tests of the C ABI, calling the `extern "C"` functions from Rust: what
//! the C and C++ tests of bindings/c check, plus what only Rust can see
//! (allocation counts). They are unit tests because the library is only a
//! `cdylib` and a `staticlib` (an `rlib` named `llamette` would collide with
//! the core crate's).

mod budget;
mod chat;
mod common;
mod fast_load;
mod generate;
mod misuse;
mod no_alloc;
mod repack;
mod sized;
mod template;
