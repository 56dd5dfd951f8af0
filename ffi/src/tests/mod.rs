//! Tests of the C ABI, calling the `extern "C"` functions from Rust: what
//! the C and C++ tests of bindings/c check, plus what only Rust can see
//! (allocation counts). They are unit tests because the library is only a
//! `cdylib` and a `staticlib` (an `rlib` named `llamette` would collide with
//! the core crate's).
//!
//! Nearly every line here is an `unsafe` call into the C ABI made as a C
//! host makes it, with pointers taken just before from live Rust values (or
//! deliberately NULL or wrong, which is what the tests check): a `// SAFETY:`
//! comment on each of those ~150 blocks would repeat that sentence, so the
//! workspace's `undocumented_unsafe_blocks` is allowed in these tests only.
#![allow(clippy::undocumented_unsafe_blocks)]

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
