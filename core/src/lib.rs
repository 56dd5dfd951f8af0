//! # llamette
//!
//! An embeddable Llama 2 inference core: `#![no_std]`, no allocation, weights
//! borrowed from the caller's bytes, every mutable state in one caller buffer.
//!
//! The pieces, in the order a program uses them:
//! - [`format`]: read a GGUF or llama2.c file into a [`Model`] (zero-copy views);
//! - [`tokenizer`]: SentencePiece BPE over the file's vocabulary;
//! - [`Session`]: the KV cache and scratch carved from one caller buffer,
//!   with [`Session::required_bytes`] telling its exact size;
//! - [`repack`]: optionally, interleave a writable GGUF's quantized matrices
//!   in place for faster kernels;
//! - [`sampler`]: greedy, temperature, top-k, top-p, min-p, repetition penalty;
//! - [`generate`]: the generation loop (pending token, sampling, UTF-8-safe
//!   text, stop strings, stop reasons) every front end runs;
//! - [`chat`]: Llama 2's chat format (Meta's reference `chat_completion`)
//!   and multi-turn conversations that reuse the KV cache;
//! - [`chat_template`]: which format a model chats in, and the Jinja chat
//!   templates of GGUF files that are not Llama 2's (feature `std`);
//! - [`state`]: saving a session into caller bytes and restoring it;
//! - [`forward`]: the decoder itself, read it top to bottom like llama2.c's `run.c`.
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod chat;
pub mod chat_template;
pub mod error;
pub mod format;
pub mod forward;
pub mod generate;
pub mod kernels;
pub mod kv;
pub mod math;
pub mod matmul;
pub mod model;
pub mod parallel;
pub mod quant;
pub mod repack;
pub mod sampler;
pub mod session;
pub mod state;
pub mod tensor;
pub mod tokenizer;

pub use error::{Error, Result};
pub use generate::{Event, GenerateParams, Generator, Outcome, StopReason, TextMode};
pub use model::{Config, Model};
pub use sampler::{Sampler, SamplerParams};
pub use session::{Session, SessionParams};
pub use tokenizer::{Decoder, TokenType, Tokenizer};
