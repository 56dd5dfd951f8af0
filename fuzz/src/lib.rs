//! What the fuzz targets share: load a model, run one step, tokenize.
//!
//! Every function here must return normally for any input: an `Err` is
//! a fine answer, a panic, an abort or a sanitizer report is a finding.

use llamette::{Bos, Model, Sampler, SamplerParams, Session, SessionParams, Tokenizer};

/// The most session memory a fuzz input may ask for (a model whose
/// dimensions are huge needs a file as large, so this only trims the
/// context).
const MAX_SESSION_BYTES: usize = 64 << 20;

/// Loads `bytes` as a model and, if it loads, runs one token through it
/// and samples the next; then the same with a prompt of two tokens (the
/// batched prefill path).
pub fn model_step(bytes: &[u8]) {
    let Ok(model) = Model::load(bytes) else {
        return;
    };
    let vocab = model.config.vocab_size as u32;
    for prompt in [&[1u32][..], &[1, 2]] {
        let params = SessionParams {
            context: 4,
            batch: 2,
            ..Default::default()
        };
        let Ok(need) = Session::required_bytes(&model, &params) else {
            return;
        };
        if need > MAX_SESSION_BYTES {
            return;
        }
        let mut buf = vec![0u64; need.div_ceil(8)];
        let Ok(mut s) = Session::new(&model, params, bytemuck_cast(&mut buf)) else {
            return;
        };
        let prompt: Vec<u32> = prompt.iter().map(|&t| t % vocab.max(1)).collect();
        if s.feed(&prompt).is_ok() {
            let mut greedy = Sampler::new(SamplerParams::greedy(), 0);
            let _ = s.sample(&mut greedy);
        }
    }
    // A model's GGUF carries its vocabulary.
    tokenizer_round_trip(bytes, "Hello, world! \u{e9}\u{1F600}");
}

/// Loads `bytes` as a tokenizer (GGUF or llama2.c), encodes `text`,
/// decodes the ids, and decodes arbitrary ids.
pub fn tokenizer_round_trip(bytes: &[u8], text: &str) {
    let Ok(len) = Tokenizer::index_len_for(bytes) else {
        return;
    };
    // The index is linear in the file (checked by core/tests/bounded.rs);
    // this only keeps absurd token counts of tiny files out of memory.
    if len > 64 << 20 {
        return;
    }
    let mut index = vec![0u32; len];
    let Ok(tok) = Tokenizer::load(bytes, &mut index) else {
        return;
    };
    let mut work = vec![0u32; Tokenizer::encode_work_len(text.len())];
    let Ok(ids) = tok.encode(text, Bos::Add, &mut work) else {
        return;
    };
    assert!(ids.len() <= Tokenizer::max_tokens(text.len()));
    let mut out = vec![0u8; 16];
    match tok.decode(ids, &mut out) {
        Err(llamette::Error::BufferTooSmall { needed, .. }) => {
            let mut out = vec![0u8; needed];
            tok.decode(ids, &mut out).unwrap();
        }
        r => {
            r.unwrap();
        }
    }
    let mut d = tok.decoder();
    for &id in ids.iter().chain(&[0, 1, 2, u32::MAX, tok.n_tokens()]) {
        let _ = d.push(id, |s| assert!(core::str::from_utf8(s.as_bytes()).is_ok()));
        let _ = tok.llama2c_piece(1, id, |_| {});
    }
    d.flush(|_| {});
}

/// The session buffer as bytes (it is `u64`s for the alignment).
pub fn bytemuck_cast(buf: &mut [u64]) -> &mut [u8] {
    let len = buf.len() * 8;
    // SAFETY: u64s are plain bytes; the length covers the same memory.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), len) }
}
