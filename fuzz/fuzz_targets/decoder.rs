//! The streaming decoder over the embedded tok512 vocabulary: any id
//! sequence gives valid UTF-8, the same text pushed one id at a time as
//! decoded at once, and a character split over byte tokens once.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use llamette::Tokenizer;

static TOK512: &[u8] = include_bytes!("../../models/tok512.bin");

fn tokenizer() -> &'static Tokenizer<'static> {
    static TOK: OnceLock<Tokenizer<'static>> = OnceLock::new();
    TOK.get_or_init(|| {
        let n = Tokenizer::llama2c_token_count(TOK512).unwrap();
        let index = vec![0u32; Tokenizer::index_len(n)].leak();
        Tokenizer::from_llama2c(TOK512, None, index).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let tok = tokenizer();
    // Ids from pairs of bytes; a few beyond the vocabulary.
    let ids: Vec<u32> = data
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32 % 520)
        .collect();
    let mut streamed = String::new();
    let mut d = tok.decoder();
    let mut ok = Vec::new();
    for &id in &ids {
        if d.push(id, |s| streamed.push_str(s)).is_ok() {
            ok.push(id);
        }
    }
    d.flush(|s| streamed.push_str(s));
    // A short buffer says how much is needed, and that is enough.
    let mut out = vec![0u8; streamed.len() / 2];
    let whole = match tok.decode(&ok, &mut out) {
        Ok(s) => s.to_string(),
        Err(llamette::Error::BufferTooSmall { needed, .. }) => {
            assert_eq!(needed, streamed.len());
            let mut out = vec![0u8; needed];
            tok.decode(&ok, &mut out).unwrap().to_string()
        }
        Err(e) => panic!("{e}"),
    };
    assert_eq!(whole, streamed);
    // llama2.c's printing never fails inside the vocabulary.
    let mut prev = tok.bos();
    for &id in &ok {
        tok.llama2c_piece(prev, id, |_| {}).unwrap();
        prev = id;
    }
});
