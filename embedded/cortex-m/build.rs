//! Puts `memory.x` where the linker finds it and sizes the firmware's
//! static buffers exactly: the host build of `llamette` reads the same
//! model and tokenizer bytes the firmware embeds and writes
//! `Session::required_bytes` and `Tokenizer::index_len_for_vocab` into
//! `$OUT_DIR/sizes.rs`. The firmware checks the figures again on the target.

use std::{env, fs, path::PathBuf};

use llamette::session::KvType;
use llamette::{Model, Session, SessionParams, Tokenizer};

/// Must equal `STEPS` in `src/main.rs` (the firmware checks it).
const STEPS: usize = 256;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    fs::copy("memory.x", out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../../models/stories260K.bin");
    println!("cargo:rerun-if-changed=../../models/tok512.bin");

    let model_bytes = fs::read("../../models/stories260K.bin").unwrap();
    let tok_bytes = fs::read("../../models/tok512.bin").unwrap();
    let model = Model::load(&model_bytes).unwrap();
    let session = |kv_type| {
        let params = SessionParams {
            context: STEPS,
            kv_type,
            batch: 1,
        };
        Session::required_bytes(&model, &params).unwrap()
    };
    let (f32_bytes, q8_bytes) = (session(KvType::F32), session(KvType::Q8_0));
    let vocab = model.config.vocab_size as u32;
    let index_len = Tokenizer::index_len_for_vocab(&tok_bytes, vocab).unwrap();
    fs::write(
        out.join("sizes.rs"),
        format!(
            "/// Session bytes, F32 KV cache, {STEPS} positions, batch 1.\n\
             pub const SESSION_F32: usize = {f32_bytes};\n\
             /// Session bytes, Q8_0 KV cache, {STEPS} positions, batch 1.\n\
             pub const SESSION_Q8_0: usize = {q8_bytes};\n\
             /// The static session buffer: the larger of the two.\n\
             pub const SESSION_BUFFER: usize = {};\n\
             /// Tokenizer index entries (u32).\n\
             pub const TOKENIZER_INDEX: usize = {index_len};\n",
            f32_bytes.max(q8_bytes)
        ),
    )
    .unwrap();
}
