//! File formats: GGUF and llama2.c checkpoints, read zero-copy.

pub mod gguf;
pub(crate) mod gguf_model;
pub mod llama2c;
