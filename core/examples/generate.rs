//! Generates a story: the library used from Rust, as README.md shows it
//! (its "Using the library" block is the part of this file between the
//! `README` markers; `core/tests/readme.rs` checks that they agree).
//!
//! ```sh
//! cargo run --release -p llamette --example generate -- [MODEL [TOKENIZER [PROMPT]]]
//! ```
//!
//! MODEL is a GGUF file (its own vocabulary is the tokenizer, unless
//! TOKENIZER is given) or a llama2.c checkpoint; the default is the
//! embedded stories260K with its tok512.bin.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../models");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model_path = args.first().cloned();
    let model_bytes = std::fs::read(
        model_path
            .clone()
            .unwrap_or_else(|| format!("{dir}/stories260K.bin")),
    )?;
    let vocab_bytes = match (args.get(1), model_path) {
        (Some(t), _) => std::fs::read(t)?,
        (None, Some(_)) => model_bytes.clone(),
        (None, None) => std::fs::read(format!("{dir}/tok512.bin"))?,
    };
    let prompt = args.get(2).map_or("Once upon a time", String::as_str);
    generate(&model_bytes, &vocab_bytes, prompt)?;
    println!();
    Ok(())
}

// README begin
use llamette::{
    Bos, Event, GenerateParams, Generator, Model, Session, SessionParams, TextMode, Tokenizer,
};

/// `model`, `vocab`: a GGUF's bytes (both the same), or a llama2.c checkpoint's
/// and its tokenizer.bin's (from an mmap, include_bytes!, flash ...).
fn generate(model: &[u8], vocab: &[u8], prompt: &str) -> llamette::Result<()> {
    let model = Model::load(model)?; // zero-copy views of the weights
    let mut index = vec![0u32; Tokenizer::index_len_for(vocab)?];
    let tok = Tokenizer::load(vocab, &mut index)?; // either format, recognised
    let params = SessionParams::default(); // the model's whole context
    let mut memory = vec![0u8; Session::required_bytes(&model, &params)?]; // any alignment
    let mut session = Session::new(&model, params, &mut memory)?; // no allocation from here on
    let mut work = vec![0u32; Tokenizer::encode_work_len(prompt.len())];
    let mut gen = Generator::new(Some(&tok), TextMode::Utf8); // sampler, UTF-8 text, stops
    gen.feed(&mut session, tok.encode(prompt, Bos::Add, &mut work)?)?;
    let params = GenerateParams {
        seed: 42,
        max_tokens: 100,
        ..Default::default()
    };
    print!("{prompt}");
    gen.generate(&mut session, &params, &mut |_logits| {}, &mut |e| {
        if let Event::Text(t) = e {
            print!("{}", String::from_utf8_lossy(t)); // whole characters
        }
        true // false stops
    })?;
    Ok(())
}
// README end
