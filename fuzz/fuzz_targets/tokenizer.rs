//! Tokenizer load (GGUF vocabulary or llama2.c tokenizer.bin) + encode +
//! decode. The input's last two bytes give the length of the text, taken
//! from the end; the rest is the vocabulary file.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (file, text) = match data.len() {
        0..=1 => (data, &[][..]),
        n => {
            let k = u16::from_le_bytes([data[n - 2], data[n - 1]]) as usize;
            let body = &data[..n - 2];
            let k = k.min(body.len());
            body.split_at(body.len() - k)
        }
    };
    let text = String::from_utf8_lossy(text);
    llamette_fuzz::tokenizer_round_trip(file, &text);
});
