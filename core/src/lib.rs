//! # llamette
//!
//! An embeddable Llama 2 inference core: `#![no_std]`, no allocation, weights
//! borrowed from the caller's bytes, every mutable state in one caller buffer.
//!
//! The API, in the order a program uses it:
//! - [`Model::load`]: a GGUF or llama2.c file's bytes into a [`Model`]
//!   (zero-copy views; [`format`] reads the files' metadata);
//! - [`Tokenizer::load`]: SentencePiece BPE over a GGUF's or a llama2.c
//!   `tokenizer.bin`'s vocabulary (an index in caller memory);
//!   [`Tokenizer::encode`] with [`Bos`], [`Tokenizer::decode`];
//! - [`Session`]: the KV cache and scratch carved from one caller buffer,
//!   with [`Session::required_bytes`] telling its exact size;
//! - [`repack`]: optionally, interleave a writable GGUF's quantized (and F16) matrices
//!   in place for faster kernels;
//! - [`Sampler`]: greedy, temperature, top-k, top-p, min-p, repetition penalty;
//! - [`Generator`]: the generation loop (pending token, sampling, UTF-8-safe
//!   text, stop strings, stop reasons) every front end runs;
//! - [`chat`]: Llama 2's chat format (Meta's reference `chat_completion`)
//!   and multi-turn conversations that reuse the KV cache;
//! - [`chat_template`]: which format a model chats in, and the Jinja chat
//!   templates of GGUF files that are not Llama 2's (feature `std`);
//! - [`state`]: saving a session into caller bytes and restoring it;
//! - [`parallel`]: the threads a session may use (its own pool, or the host's).
//!
//! Two complete programs: `core/examples/generate.rs` (the README's
//! example) and `core/examples/no_std_static.rs` (no `std`, no allocator,
//! static buffers).
//!
//! ## The rooms, and which way they import
//!
//! Each layer uses only the layers below it (no file imports one above it,
//! and no two files import each other):
//!
//! 1. `error`, `math` (rmsnorm, softmax), `parallel`: depend on nothing.
//! 2. `kernels`: the weight types' block layouts (`kernels::types`) and the
//!    dot products over them, one kernel table per instruction set
//!    (`scalar` is the reference; `x86`, `aarch64` give its bits);
//!    `sampler` sits beside it.
//! 3. `tensor`, `quant`, `model`, `matmul`: a weight matrix, the
//!    quantizers that write the types, the model's views of its matrices,
//!    matrix products split over threads.
//! 4. `format` (GGUF, llama2.c: they build the [`Model`]), `kv` (the KV
//!    cache), `tokenizer`, `repack`, `forward` (the decoder itself: read it
//!    top to bottom like llama2.c's `run.c`).
//! 5. `session` (the caller's buffer, carved once), then `generate`,
//!    `chat`, `state`, `chat_template`.
//!
//! A new weight type is a file in `kernels/types/` (and its SIMD kernels);
//! a change to the transformer is `forward.rs`; a new way to pick tokens is
//! `sampler.rs` or `generate.rs`.
//!
//! `kernels`, `quant`, `matmul`, `math`, `kv` and `forward` are public for
//! the workspace's benchmarks, CLI and tests, and hidden from these docs:
//! they are not a stable API.
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_op_in_unsafe_fn)]
// A host must never see a panic it did not cause: library code returns typed
// errors (the few deliberate panics are annotated where they are).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod chat;
pub mod chat_template;
pub mod error;
pub mod format;
#[doc(hidden)]
pub mod forward;
pub mod generate;
#[doc(hidden)]
pub mod kernels;
#[doc(hidden)]
pub mod kv;
#[doc(hidden)]
pub mod math;
#[doc(hidden)]
pub mod matmul;
pub mod model;
pub mod parallel;
#[doc(hidden)]
pub mod quant;
pub mod repack;
pub mod sampler;
pub mod session;
pub mod state;
pub mod tensor;
pub mod tokenizer;

pub use error::{Error, Result};
pub use format::gguf::Gguf;
pub use generate::{Event, GenerateParams, Generator, Outcome, StopReason, TextMode};
pub use kernels::TensorType;
pub use kv::KvType;
pub use model::{Config, Model};
#[cfg(feature = "std")]
pub use parallel::ThreadPool;
pub use parallel::{Inline, Parallel};
pub use sampler::{Sampler, SamplerParams};
pub use session::{Session, SessionParams};
pub use tensor::Tensor;
pub use tokenizer::{Bos, Decoder, TokenType, Tokenizer};
