//! Tokenizer tests against real vocabularies in `../shared/models`:
//! llama.cpp's test vectors for the Llama 2 SentencePiece vocabulary, the
//! llama2.c tokenizers, malformed inputs, and streaming decoding.

use llamette::error::Error;
use llamette::format::gguf::Gguf;
use llamette::tokenizer::{safe_printf_skips, Bos, TokenType, Tokenizer};

fn model_path(name: &str) -> String {
    format!(
        "{}/../../shared/models/{}",
        env!("CARGO_MANIFEST_DIR"),
        name
    )
}

fn read(name: &str) -> Vec<u8> {
    let p = model_path(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {p}: {e}"))
}

/// Loads a GGUF vocabulary (the bytes and the index are leaked: tests only).
fn gguf_tokenizer(name: &str) -> Tokenizer<'static> {
    let bytes: &'static [u8] = read(name).leak();
    let gguf: &'static Gguf<'static> = Box::leak(Box::new(Gguf::parse(bytes).unwrap()));
    let n = Tokenizer::gguf_token_count(gguf).unwrap();
    let index = vec![0u32; Tokenizer::index_len(n)].leak();
    Tokenizer::from_gguf(gguf, index).unwrap()
}

fn llama2c_tokenizer(name: &str, n: Option<u32>) -> Tokenizer<'static> {
    let bytes: &'static [u8] = read(name).leak();
    let count = match n {
        Some(n) => n,
        None => Tokenizer::llama2c_token_count(bytes).unwrap(),
    };
    let index = vec![0u32; Tokenizer::index_len(count)].leak();
    Tokenizer::from_llama2c(bytes, n, index).unwrap()
}

fn encode(tok: &Tokenizer<'_>, text: &str, bos: bool) -> Vec<u32> {
    let mut work = vec![0u32; Tokenizer::encode_work_len(text.len())];
    let bos = if bos { Bos::Add } else { Bos::None };
    let ids = tok.encode(text, bos, &mut work).unwrap().to_vec();
    assert!(ids.len() <= Tokenizer::max_tokens(text.len()));
    ids
}

fn decode(tok: &Tokenizer<'_>, ids: &[u32]) -> String {
    let mut s = String::new();
    let mut d = tok.decoder();
    for &id in ids {
        d.push(id, |c| s.push_str(c)).unwrap();
    }
    d.flush(|c| s.push_str(c));
    s
}

/// llama.cpp's test vectors: the inputs of `.inp` are separated by
/// `\n__ggml_vocab_test__\n` (each input is followed by one, so the text after
/// the last is empty); line `i` of `.out` holds the ids of input `i`, each
/// preceded by a space, without BOS.
fn vectors() -> Vec<(String, Vec<u32>)> {
    let inp = String::from_utf8(read("ggml-vocab-llama-spm.gguf.inp")).unwrap();
    let out = String::from_utf8(read("ggml-vocab-llama-spm.gguf.out")).unwrap();
    let mut texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    assert_eq!(texts.pop(), Some(""), "the .inp file ends with a separator");
    let lines: Vec<&str> = out.split('\n').collect();
    assert_eq!(lines.len(), texts.len() + 1, "one .out line per input");
    assert_eq!(lines[texts.len()], "");
    texts
        .iter()
        .zip(&lines)
        .map(|(t, l)| {
            let ids = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
            (t.to_string(), ids)
        })
        .collect()
}

#[test]
fn llama_spm_vectors_through_gguf() {
    let tok = gguf_tokenizer("ggml-vocab-llama-spm.gguf");
    assert_eq!(tok.n_tokens(), 32000);
    assert_eq!((tok.bos(), tok.eos(), tok.unk()), (1, 2, 0));
    assert!(tok.add_bos() && !tok.add_eos() && tok.add_space_prefix() && tok.byte_fallback());
    let vectors = vectors();
    assert_eq!(vectors.len(), 46);
    let mut failed = Vec::new();
    for (text, expected) in &vectors {
        let got = encode(&tok, text, false);
        if &got != expected {
            failed.push(format!("{text:?}: expected {expected:?}, got {got:?}"));
        }
        let with_bos = encode(&tok, text, true);
        assert_eq!(with_bos[0], 1);
        assert_eq!(&with_bos[1..], &got[..]);
    }
    assert!(
        failed.is_empty(),
        "{} of {} vectors failed:\n{}",
        failed.len(),
        vectors.len(),
        failed.join("\n")
    );
}

#[test]
fn llama2_tokenizer_bin_agrees_with_gguf() {
    let bin = llama2c_tokenizer("llama2-tokenizer.bin", None);
    let gguf = gguf_tokenizer("ggml-vocab-llama-spm.gguf");
    assert_eq!(bin.n_tokens(), 32000);
    for (text, expected) in vectors() {
        assert_eq!(encode(&bin, &text, false), expected, "{text:?}");
        assert_eq!(
            encode(&bin, &text, true),
            encode(&gguf, &text, true),
            "{text:?}"
        );
    }
    // A literal '▁' reads as a space in both (as in SentencePiece).
    for t in ["a\u{2581}b", "\u{2581}", "x \u{2581} y\u{2581}\u{2581}"] {
        assert_eq!(encode(&bin, t, false), encode(&gguf, t, false), "{t:?}");
        assert_eq!(
            encode(&gguf, t, false),
            encode(&gguf, &t.replace('\u{2581}', " "), false)
        );
    }
    // The same pieces, modulo the space spelling.
    for id in [0, 1, 2, 3, 100, 259, 29871, 31999] {
        let a = bin.piece(id).unwrap();
        let b = gguf.piece(id).unwrap();
        if id == 1 || id == 2 {
            assert_eq!(
                a,
                format!("\n{}\n", std::str::from_utf8(b).unwrap()).as_bytes()
            );
        } else {
            assert_eq!(
                a,
                std::str::from_utf8(b)
                    .unwrap()
                    .replace('\u{2581}', " ")
                    .as_bytes()
            );
        }
        assert_eq!(
            bin.token_type(id).unwrap(),
            gguf.token_type(id).unwrap(),
            "{id}"
        );
        assert_eq!(bin.score(id).unwrap(), gguf.score(id).unwrap(), "{id}");
    }
}

#[test]
fn stories260k_vocabularies_agree() {
    let bin = llama2c_tokenizer("tok512.bin", Some(512));
    let all = llama2c_tokenizer("tok512.bin", None);
    let gguf = gguf_tokenizer("stories260K.gguf");
    assert_eq!(bin.n_tokens(), 512);
    assert_eq!(all.n_tokens(), 512);
    assert_eq!(gguf.n_tokens(), 512);
    let ids = encode(&bin, "Tom and his dog", true);
    assert_eq!(ids[0], 1);
    assert_eq!(ids, encode(&gguf, "Tom and his dog", true));
    assert_eq!(decode(&bin, &ids), "Tom and his dog");
    assert_eq!(decode(&gguf, &ids), "Tom and his dog");
    for text in [
        "Once upon a time, there was a little girl named Lily.",
        "  spaces  and\ttabs\nand newlines\n\n",
        "caf\u{e9} \u{1F600} \u{4E2D}\u{6587} \u{2581}",
        "",
    ] {
        let a = encode(&bin, text, true);
        assert_eq!(a, encode(&gguf, text, true), "{text:?}");
        assert_eq!(decode(&bin, &a), text.replace('\u{2581}', " "));
        assert_eq!(decode(&gguf, &a), text.replace('\u{2581}', " "));
    }
    // Greedy run of run.c: its first ids decode to the published text's start.
    let greedy = String::from_utf8(read("../testdata/stories260K.greedy.ids.txt")).unwrap();
    let ids: Vec<u32> = greedy
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    let text = String::from_utf8(read("../testdata/stories260K.greedy.txt")).unwrap();
    let decoded = decode(&bin, &ids);
    assert!(
        text.starts_with(decoded.trim_end()),
        "{decoded:?} vs {text:?}"
    );
    // run.c's printing rule gives the same text byte for byte.
    let mut printed = Vec::new();
    for w in ids.windows(2) {
        bin.llama2c_piece(w[0], w[1], |b| printed.extend_from_slice(b))
            .unwrap();
    }
    assert!(
        text.as_bytes().starts_with(&printed),
        "{:?}",
        String::from_utf8_lossy(&printed)
    );
}

#[test]
fn byte_fallback_and_specials() {
    let tok = gguf_tokenizer("ggml-vocab-llama-spm.gguf");
    // Special-token spellings are plain text, never the special tokens.
    for t in ["<s>", "</s>", "<unk>", "<0x41>"] {
        let ids = encode(&tok, t, false);
        assert!(ids.len() > 1, "{t:?} -> {ids:?}");
        assert!(ids
            .iter()
            .all(|&i| !tok.is_control(i) && tok.byte_value(i).is_none()));
    }
    // A character outside the vocabulary falls back to its UTF-8 bytes.
    let ids = encode(&tok, "\u{10FFFF}", false);
    assert_eq!(ids, [29871, 247, 146, 194, 194]);
    assert_eq!(tok.byte_value(247), Some(0xF4));
    assert_eq!(tok.token_type(247).unwrap(), TokenType::Byte);
    assert_eq!(decode(&tok, &ids), " \u{10FFFF}");
    assert_eq!(tok.token_id(b"<0x0A>"), Some(13));
    assert_eq!(tok.token_id("\u{2581}Hello".as_bytes()), Some(15043));
    assert_eq!(tok.token_id(b"no such piece"), None);
    assert_eq!(
        tok.piece(32000),
        Err(Error::UnknownToken {
            id: 32000,
            vocab: 32000
        })
    );
    assert!(tok.score(u32::MAX).is_err());
    assert!(tok.token_type(32000).is_err());
}

#[test]
fn decoding_round_trips() {
    let tok = gguf_tokenizer("ggml-vocab-llama-spm.gguf");
    let mut texts: Vec<String> = vectors().into_iter().map(|(t, _)| t).collect();
    texts.push("\u{1F469}\u{200D}\u{1F4BB} \u{10FFFF}\u{E000} mixed \u{0928}\u{092E}\u{0938}\u{094D}\u{0924}\u{0947}".into());
    texts.push(" leading and trailing  ".into());
    for text in &texts {
        let ids = encode(&tok, text, true);
        assert_eq!(&decode(&tok, &ids), text, "{ids:?}");
        // Without BOS the dummy prefix shows as a leading space.
        let ids = encode(&tok, text, false);
        let expected = if text.is_empty() {
            String::new()
        } else {
            format!(" {text}")
        };
        assert_eq!(decode(&tok, &ids), expected);
        // Into a buffer, exactly sized and too small.
        let mut buf = vec![0u8; expected.len()];
        assert_eq!(tok.decode(&ids, &mut buf).unwrap(), expected);
        if !expected.is_empty() {
            let mut small = vec![0u8; expected.len() - 1];
            assert_eq!(
                tok.decode(&ids, &mut small),
                Err(Error::BufferTooSmall {
                    what: "decoded text (bytes)",
                    needed: expected.len(),
                    got: expected.len() - 1
                })
            );
        }
    }
}

#[test]
fn split_character_is_emitted_once_whole() {
    let tok = gguf_tokenizer("ggml-vocab-llama-spm.gguf");
    // U+20AC (3 bytes E2 82 AC) as byte tokens: <0xE2> is id 0xE2 + 3.
    let bytes = [0xE2u32 + 3, 0x82 + 3, 0xAC + 3];
    let mut d = tok.decoder();
    let mut chunks: Vec<String> = Vec::new();
    for (k, &id) in bytes.iter().enumerate() {
        d.push(id, |c| chunks.push(c.to_string())).unwrap();
        assert_eq!(chunks.len(), if k < 2 { 0 } else { 1 }, "after byte {k}");
        assert_eq!(d.has_pending(), k < 2);
    }
    d.flush(|c| chunks.push(c.to_string()));
    assert_eq!(chunks, ["\u{20AC}"]);
    // Control tokens in between do not disturb the pending character.
    let mut s = String::new();
    let mut d = tok.decoder();
    for id in [0xE2 + 3, 2, 0x82 + 3, 0, 0xAC + 3] {
        d.push(id, |c| s.push_str(c)).unwrap();
    }
    d.flush(|c| s.push_str(c));
    assert_eq!(s, "\u{20AC}");
    // An interrupted character becomes U+FFFD, once; a dangling one at flush too.
    let hello = 15043; // "▁Hello"
    let mut s = String::new();
    let mut d = tok.decoder();
    for id in [0xE2 + 3, 0x82 + 3, hello, 0xF0 + 3] {
        d.push(id, |c| s.push_str(c)).unwrap();
    }
    assert_eq!(s, "\u{FFFD} Hello");
    d.flush(|c| s.push_str(c));
    assert_eq!(s, "\u{FFFD} Hello\u{FFFD}");
    // A lone continuation byte and an invalid lead byte.
    assert_eq!(
        decode(&tok, &[0x80 + 3, 0xFF + 3, 0x41 + 3]),
        "\u{FFFD}\u{FFFD}A"
    );
    // BOS strips one leading space, only of the piece right after it.
    assert_eq!(decode(&tok, &[1, hello, hello]), "Hello Hello");
    assert_eq!(decode(&tok, &[1, 29871, hello]), " Hello");
    assert_eq!(decode(&tok, &[hello, 1, hello]), " HelloHello");
    assert!(decode(&tok, &[1, 2, 0]).is_empty());
    // Out-of-range ids are errors.
    let mut d = tok.decoder();
    assert_eq!(
        d.push(32000, |_| {}),
        Err(Error::UnknownToken {
            id: 32000,
            vocab: 32000
        })
    );
}

#[test]
fn llama2c_printing_rule() {
    let tok = llama2c_tokenizer("llama2-tokenizer.bin", None);
    let piece = |prev, id| {
        let mut v = Vec::new();
        tok.llama2c_piece(prev, id, |b| v.extend_from_slice(b))
            .unwrap();
        v
    };
    assert_eq!(piece(1, 15043), b"Hello");
    assert_eq!(piece(5, 15043), b" Hello");
    assert_eq!(piece(5, 13), b"\n"); // <0x0A>
    assert_eq!(piece(5, 0xE2 + 3), b""); // a byte >= 0x80 is skipped
    assert_eq!(piece(5, 3), b""); // <0x00>
    assert_eq!(piece(5, 2), b"\n</s>\n");
    assert!(safe_printf_skips(b"\x07") && safe_printf_skips(b"") && safe_printf_skips(b"\xC3"));
    assert!(
        !safe_printf_skips(b"a") && !safe_printf_skips(b"\t") && !safe_printf_skips(b"\xC3\xA9")
    );
    let g = gguf_tokenizer("ggml-vocab-llama-spm.gguf");
    let mut v = Vec::new();
    g.llama2c_piece(5, 15043, |b| v.extend_from_slice(b))
        .unwrap();
    assert_eq!(v, b" Hello");
}

#[test]
fn work_buffer_contract() {
    let tok = gguf_tokenizer("ggml-vocab-llama-spm.gguf");
    for text in ["", "a", "  ", "\u{10FFFF}\u{10FFFF}", "hello world"] {
        let need = Tokenizer::encode_work_len(text.len());
        let mut work = vec![0u32; need - 1];
        assert_eq!(
            tok.encode(text, Bos::Add, &mut work),
            Err(Error::BufferTooSmall {
                what: "tokenizer work buffer (u32 entries)",
                needed: need,
                got: need - 1
            })
        );
    }
    // The worst case for the output bound: spaces that have no piece of their own
    // come out as 3 byte tokens each in a vocabulary without '▁'; here they merge.
    let spaces = " ".repeat(100);
    assert!(encode(&tok, &spaces, true).len() <= Tokenizer::max_tokens(100));
    assert_eq!(Tokenizer::max_tokens(0), 4);
    assert_eq!(Tokenizer::encode_work_len(usize::MAX), usize::MAX);
    assert_eq!(encode(&tok, "", true), [1]);
    assert!(encode(&tok, "", false).is_empty());
}

#[test]
fn long_text_encodes_and_round_trips() {
    let tok = gguf_tokenizer("ggml-vocab-llama-spm.gguf");
    let base = "The quick brown fox jumps over the lazy dog. \u{4E2D}\u{6587} caf\u{e9} \u{1F600}\n\tcode: fn main() { x += 1; }  ";
    let mut text = String::new();
    while text.len() < 20_000 {
        text.push_str(base);
    }
    let t = std::time::Instant::now();
    let ids = encode(&tok, &text, true);
    eprintln!(
        "encoded {} bytes into {} tokens in {:?}",
        text.len(),
        ids.len(),
        t.elapsed()
    );
    assert_eq!(decode(&tok, &ids), text);
    // The first copy of `base` gives its own ids, but for the final spaces,
    // which merge with what follows.
    let one = encode(&tok, base, false);
    assert_eq!(&ids[1..one.len()], &one[..one.len() - 1]);
}

// ---------------------------------------------------------------------------
// Malformed inputs
// ---------------------------------------------------------------------------

fn llama2c_bytes(max_len: i32, tokens: &[(&[u8], f32)]) -> Vec<u8> {
    let mut v = max_len.to_le_bytes().to_vec();
    for (p, s) in tokens {
        v.extend_from_slice(&s.to_le_bytes());
        v.extend_from_slice(&(p.len() as i32).to_le_bytes());
        v.extend_from_slice(p);
    }
    v
}

fn try_llama2c(bytes: &[u8], n: Option<u32>) -> Result<u32, Error> {
    let count = match n {
        Some(n) => n,
        None => Tokenizer::llama2c_token_count(bytes)?,
    };
    let mut index = vec![0u32; Tokenizer::index_len(count)];
    let tok = Tokenizer::from_llama2c(bytes, n, &mut index)?;
    // Whatever loads must encode and decode without trouble.
    let mut work = vec![0u32; Tokenizer::encode_work_len(12)];
    tok.encode("hi there \u{e9}!", Bos::Add, &mut work)?;
    Ok(tok.n_tokens())
}

#[test]
fn truncated_llama2c_tokenizers_error() {
    let full = read("tok512.bin");
    assert_eq!(try_llama2c(&full, Some(512)), Ok(512));
    let mut n_ok = 0;
    for len in 0..full.len() {
        let cut = &full[..len];
        match try_llama2c(cut, Some(512)) {
            Err(Error::Truncated { .. }) | Err(Error::TokenizerTooSmall { .. }) => {}
            other => panic!("length {len}: {other:?}"),
        }
        match try_llama2c(cut, None) {
            Ok(n) => {
                assert!((3..512).contains(&n));
                n_ok += 1;
            }
            Err(Error::Truncated { .. }) | Err(Error::BadTokenizer { .. }) => {}
            other => panic!("length {len}: {other:?}"),
        }
    }
    // Cuts at a record boundary load the tokens before it (with None).
    assert_eq!(n_ok, 509);
    // More tokens asked than present.
    assert_eq!(
        try_llama2c(&full, Some(513)),
        Err(Error::TokenizerTooSmall {
            tokenizer: 512,
            model: 513
        })
    );
    // Fewer asked: the rest is ignored.
    assert_eq!(try_llama2c(&full, Some(300)), Ok(300));
}

#[test]
fn bad_llama2c_values_error() {
    let base: [(&[u8], f32); 4] = [
        (b"<unk>", 0.0),
        (b"\n<s>\n", 0.0),
        (b"\n</s>\n", 0.0),
        (b"h", -1.0),
    ];
    assert_eq!(try_llama2c(&llama2c_bytes(6, &base), None), Ok(4));
    // Negative max_token_length.
    assert!(matches!(
        try_llama2c(&llama2c_bytes(-1, &base), None),
        Err(Error::BadTokenizer { .. })
    ));
    // Negative, huge and absurd piece lengths.
    for len in [-1i32, i32::MIN, i32::MAX, 1 << 20] {
        let mut b = llama2c_bytes(6, &base);
        let at = b.len() - 1 - 4; // the length of the last record ("h")
        b[at..at + 4].copy_from_slice(&len.to_le_bytes());
        let r = try_llama2c(&b, None);
        assert!(
            matches!(
                r,
                Err(Error::BadTokenizer { index: 3, .. }) | Err(Error::Truncated { .. })
            ),
            "{len}: {r:?}"
        );
        let r = try_llama2c(&b, Some(4));
        assert!(
            matches!(
                r,
                Err(Error::BadTokenizer { index: 3, .. }) | Err(Error::Truncated { .. })
            ),
            "{len}: {r:?}"
        );
    }
    // Too few tokens for the specials.
    assert!(matches!(
        try_llama2c(&llama2c_bytes(6, &base[..2]), None),
        Err(Error::BadTokenizer { .. })
    ));
    assert!(matches!(
        try_llama2c(&[], None),
        Err(Error::Truncated { .. })
    ));
    // A short index.
    let b = llama2c_bytes(6, &base);
    let need = Tokenizer::index_len(4);
    // Entries and sorted ids (4 + 4), 4 buckets and their end, the byte table.
    assert_eq!(need, 4 + 4 + 4 + 1 + 256);
    let mut index = vec![0u32; need - 1];
    assert_eq!(
        Tokenizer::from_llama2c(&b, Some(4), &mut index).err(),
        Some(Error::BufferTooSmall {
            what: "tokenizer index (u32 entries)",
            needed: need,
            got: need - 1
        })
    );
    // A vocabulary without byte tokens: unknown characters become one <unk> per run.
    let mut index = vec![0u32; Tokenizer::index_len(4)];
    let tok = Tokenizer::from_llama2c(&b, None, &mut index).unwrap();
    assert!(!tok.byte_fallback());
    let mut work = vec![0u32; Tokenizer::encode_work_len(8)];
    let ids = tok.encode("hxyhh h", Bos::None, &mut work).unwrap();
    assert_eq!(ids, [0, 3, 0, 3, 3, 0, 3]);
}

/// A GGUF metadata value for the writer below.
enum V<'a> {
    Str(&'a [u8]),
    U32(u32),
    Bool(bool),
    Strs(Vec<&'a [u8]>),
    F32s(Vec<f32>),
    I32s(Vec<i32>),
}

fn gguf_bytes(kvs: &[(&str, V<'_>)]) -> Vec<u8> {
    let mut v = b"GGUF".to_vec();
    v.extend_from_slice(&3u32.to_le_bytes());
    v.extend_from_slice(&0u64.to_le_bytes());
    v.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    let s = |v: &mut Vec<u8>, b: &[u8]| {
        v.extend_from_slice(&(b.len() as u64).to_le_bytes());
        v.extend_from_slice(b);
    };
    for (k, val) in kvs {
        s(&mut v, k.as_bytes());
        match val {
            V::Str(b) => {
                v.extend_from_slice(&8u32.to_le_bytes());
                s(&mut v, b);
            }
            V::U32(x) => {
                v.extend_from_slice(&4u32.to_le_bytes());
                v.extend_from_slice(&x.to_le_bytes());
            }
            V::Bool(x) => {
                v.extend_from_slice(&7u32.to_le_bytes());
                v.push(*x as u8);
            }
            V::Strs(a) => {
                v.extend_from_slice(&9u32.to_le_bytes());
                v.extend_from_slice(&8u32.to_le_bytes());
                v.extend_from_slice(&(a.len() as u64).to_le_bytes());
                for b in a {
                    s(&mut v, b);
                }
            }
            V::F32s(a) => {
                v.extend_from_slice(&9u32.to_le_bytes());
                v.extend_from_slice(&6u32.to_le_bytes());
                v.extend_from_slice(&(a.len() as u64).to_le_bytes());
                for x in a {
                    v.extend_from_slice(&x.to_le_bytes());
                }
            }
            V::I32s(a) => {
                v.extend_from_slice(&9u32.to_le_bytes());
                v.extend_from_slice(&5u32.to_le_bytes());
                v.extend_from_slice(&(a.len() as u64).to_le_bytes());
                for x in a {
                    v.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
    }
    v
}

fn try_gguf(bytes: &[u8]) -> Result<u32, Error> {
    let g = Gguf::parse(bytes)?;
    let n = Tokenizer::gguf_token_count(&g)?;
    let mut index = vec![0u32; Tokenizer::index_len(n)];
    let tok = Tokenizer::from_gguf(&g, &mut index)?;
    let mut work = vec![0u32; Tokenizer::encode_work_len(12)];
    tok.encode("hi there \u{e9}!", Bos::Add, &mut work)?;
    Ok(tok.n_tokens())
}

fn small_vocab<'a>(edit: impl FnOnce(&mut Vec<(&'a str, V<'a>)>)) -> Vec<u8> {
    let pieces: Vec<&[u8]> = vec![
        b"<unk>",
        b"<s>",
        b"</s>",
        b"<0x41>",
        "\u{2581}".as_bytes(),
        b"h",
        b"i",
        "\u{2581}h".as_bytes(),
    ];
    let mut kvs = vec![
        ("tokenizer.ggml.model", V::Str(b"llama")),
        ("tokenizer.ggml.tokens", V::Strs(pieces)),
        (
            "tokenizer.ggml.scores",
            V::F32s(vec![0.0, 0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -0.5]),
        ),
        (
            "tokenizer.ggml.token_type",
            V::I32s(vec![2, 3, 3, 6, 1, 1, 1, 1]),
        ),
        ("tokenizer.ggml.bos_token_id", V::U32(1)),
        ("tokenizer.ggml.eos_token_id", V::U32(2)),
        ("tokenizer.ggml.unknown_token_id", V::U32(0)),
        ("tokenizer.ggml.add_space_prefix", V::Bool(true)),
    ];
    edit(&mut kvs);
    gguf_bytes(&kvs)
}

fn set<'a>(kvs: &mut Vec<(&'a str, V<'a>)>, key: &'a str, v: V<'a>) {
    kvs.retain(|(k, _)| *k != key);
    kvs.push((key, v));
}

#[test]
fn bad_gguf_vocabularies_error() {
    assert_eq!(try_gguf(&small_vocab(|_| {})), Ok(8));
    // Optional keys may be absent.
    let minimal = small_vocab(|kv| {
        kv.retain(|(k, _)| *k == "tokenizer.ggml.tokens" || *k == "tokenizer.ggml.scores")
    });
    assert_eq!(try_gguf(&minimal), Ok(8));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "other model",
            small_vocab(|kv| set(kv, "tokenizer.ggml.model", V::Str(b"gpt2"))),
        ),
        (
            "model not a string",
            small_vocab(|kv| set(kv, "tokenizer.ggml.model", V::U32(1))),
        ),
        (
            "no tokens",
            small_vocab(|kv| kv.retain(|(k, _)| *k != "tokenizer.ggml.tokens")),
        ),
        (
            "tokens not strings",
            small_vocab(|kv| set(kv, "tokenizer.ggml.tokens", V::I32s(vec![1, 2, 3]))),
        ),
        (
            "no scores",
            small_vocab(|kv| kv.retain(|(k, _)| *k != "tokenizer.ggml.scores")),
        ),
        (
            "scores short",
            small_vocab(|kv| set(kv, "tokenizer.ggml.scores", V::F32s(vec![0.0; 7]))),
        ),
        (
            "scores wrong type",
            small_vocab(|kv| set(kv, "tokenizer.ggml.scores", V::I32s(vec![0; 8]))),
        ),
        (
            "types short",
            small_vocab(|kv| set(kv, "tokenizer.ggml.token_type", V::I32s(vec![1; 7]))),
        ),
        (
            "types wrong type",
            small_vocab(|kv| set(kv, "tokenizer.ggml.token_type", V::F32s(vec![1.0; 8]))),
        ),
        (
            "type 7",
            small_vocab(|kv| {
                set(
                    kv,
                    "tokenizer.ggml.token_type",
                    V::I32s(vec![2, 3, 3, 6, 1, 1, 1, 7]),
                )
            }),
        ),
        (
            "type -1",
            small_vocab(|kv| {
                set(
                    kv,
                    "tokenizer.ggml.token_type",
                    V::I32s(vec![2, 3, 3, 6, 1, 1, 1, -1]),
                )
            }),
        ),
        (
            "byte not <0xHH>",
            small_vocab(|kv| {
                set(
                    kv,
                    "tokenizer.ggml.token_type",
                    V::I32s(vec![2, 3, 3, 6, 6, 1, 1, 1]),
                )
            }),
        ),
        (
            "bos out of range",
            small_vocab(|kv| set(kv, "tokenizer.ggml.bos_token_id", V::U32(8))),
        ),
        (
            "eos out of range",
            small_vocab(|kv| set(kv, "tokenizer.ggml.eos_token_id", V::U32(u32::MAX))),
        ),
        (
            "unk out of range",
            small_vocab(|kv| set(kv, "tokenizer.ggml.unknown_token_id", V::U32(100))),
        ),
        (
            "bos not an integer",
            small_vocab(|kv| set(kv, "tokenizer.ggml.bos_token_id", V::Str(b"1"))),
        ),
        (
            "add_space_prefix not a bool",
            small_vocab(|kv| set(kv, "tokenizer.ggml.add_space_prefix", V::U32(1))),
        ),
        (
            "empty vocabulary",
            small_vocab(|kv| {
                set(kv, "tokenizer.ggml.tokens", V::Strs(vec![]));
                set(kv, "tokenizer.ggml.scores", V::F32s(vec![]));
                set(kv, "tokenizer.ggml.token_type", V::I32s(vec![]));
            }),
        ),
    ];
    for (what, bytes) in &cases {
        let r = try_gguf(bytes);
        assert!(
            matches!(
                r,
                Err(Error::BadTokenizer { .. })
                    | Err(Error::BadMetadata { .. })
                    | Err(Error::MissingMetadata { .. })
            ),
            "{what}: {r:?}"
        );
    }
    // Every truncation of a valid vocabulary fails cleanly (in the GGUF reader).
    let full = small_vocab(|_| {});
    for len in 0..full.len() {
        assert!(try_gguf(&full[..len]).is_err(), "length {len}");
    }
    // A short index.
    let g = Gguf::parse(&full).unwrap();
    let mut index = vec![0u32; 10];
    assert_eq!(
        Tokenizer::from_gguf(&g, &mut index).err(),
        Some(Error::BufferTooSmall {
            what: "tokenizer index (u32 entries)",
            needed: Tokenizer::index_len(8),
            got: 10
        })
    );
}

#[test]
fn small_gguf_vocabulary_encodes() {
    let bytes = small_vocab(|_| {});
    let g = Gguf::parse(&bytes).unwrap();
    let mut index = vec![0u32; Tokenizer::index_len(8)];
    let tok = Tokenizer::from_gguf(&g, &mut index).unwrap();
    let mut work = vec![0u32; 64];
    // "hih" -> ▁h i h ; 'A' (not a piece) -> <0x41>; 'B' has no byte token -> <unk>.
    let ids = tok.encode("hih AB", Bos::Add, &mut work).unwrap();
    assert_eq!(ids, [1, 7, 6, 5, 4, 3, 0]);
    // Without the space prefix.
    let bytes = small_vocab(|kv| set(kv, "tokenizer.ggml.add_space_prefix", V::Bool(false)));
    let g = Gguf::parse(&bytes).unwrap();
    let mut index = vec![0u32; Tokenizer::index_len(8)];
    let tok = Tokenizer::from_gguf(&g, &mut index).unwrap();
    let ids = tok.encode("h h", Bos::None, &mut work).unwrap();
    assert_eq!(ids, [5, 7]);
}

/// Prints the ids of stdin's text, space-separated, without BOS, for
/// `scripts/sp_compare.py`: set `LLAMETTE_TOKENIZER` to a GGUF or llama2.c
/// tokenizer file (absolute, or relative to the workspace root) and run
/// `cargo test -p llamette --test tokenizer -- --ignored --nocapture tokenize_stdin`
/// (the harness's own lines go to stdout too; the ids are on the line starting with `ids:`).
#[test]
#[ignore]
fn tokenize_stdin() {
    use std::io::Read;
    let path = std::env::var("LLAMETTE_TOKENIZER").expect("set LLAMETTE_TOKENIZER");
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).unwrap();
    // Relative paths are relative to the workspace root (tests run in core/).
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    let bytes: &'static [u8] = std::fs::read(&path).unwrap().leak();
    let index = vec![0u32; Tokenizer::index_len_for(bytes).unwrap()].leak();
    let tok = Tokenizer::load(bytes, index).unwrap();
    let ids = encode(&tok, &text, false);
    let s: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    println!("ids:{}", s.join(" "));
}

/// `Tokenizer::load` over `bytes`, sized by `Tokenizer::index_len_for`;
/// whatever loads must encode.
fn try_load(bytes: &[u8]) -> Result<u32, Error> {
    let mut index = vec![0u32; Tokenizer::index_len_for(bytes)?];
    let tok = Tokenizer::load(bytes, &mut index)?;
    assert_eq!(Tokenizer::token_count_for(bytes), Ok(tok.n_tokens()));
    let mut work = vec![0u32; Tokenizer::encode_work_len(12)];
    tok.encode("hi there \u{e9}!", Bos::Add, &mut work)?;
    Ok(tok.n_tokens())
}

#[test]
fn load_recognises_either_format() {
    let bin: &[u8] = include_bytes!("../../models/tok512.bin");
    let gguf = small_vocab(|_| {});
    assert_eq!(try_load(bin), Ok(512));
    assert_eq!(try_load(&gguf), Ok(8));
    // The same index sizes and ids as the per-format loaders.
    assert_eq!(Tokenizer::index_len_for(bin), Ok(Tokenizer::index_len(512)));
    let g = Gguf::parse(&gguf).unwrap();
    assert_eq!(
        Tokenizer::index_len_for(&gguf),
        Tokenizer::gguf_index_len(&g)
    );
    for (bytes, text) in [(bin, "Once upon a time"), (&gguf[..], "hih hi")] {
        let mut index = vec![0u32; Tokenizer::index_len_for(bytes).unwrap()];
        let tok = Tokenizer::load(bytes, &mut index).unwrap();
        let mut index2 = vec![0u32; Tokenizer::index_len_for(bytes).unwrap()];
        let tok2 = if bytes.starts_with(b"GGUF") {
            Tokenizer::from_gguf(&g, &mut index2).unwrap()
        } else {
            Tokenizer::from_llama2c(bytes, None, &mut index2).unwrap()
        };
        let mut w1 = vec![0u32; Tokenizer::encode_work_len(text.len())];
        let mut w2 = w1.clone();
        for bos in [Bos::Add, Bos::None] {
            assert_eq!(
                tok.encode(text, bos, &mut w1).unwrap(),
                tok2.encode(text, bos, &mut w2).unwrap()
            );
        }
        assert_eq!(tok.encode(text, Bos::Add, &mut w1).unwrap()[0], tok.bos());
        assert_ne!(tok.encode(text, Bos::None, &mut w1).unwrap()[0], tok.bos());
    }
    // A short index is a typed error.
    let mut index = vec![0u32; Tokenizer::index_len(512) - 1];
    assert!(matches!(
        Tokenizer::load(bin, &mut index),
        Err(Error::BufferTooSmall { .. })
    ));
}

#[test]
fn load_for_vocab_checks_the_model() {
    let bin: &[u8] = include_bytes!("../../models/tok512.bin");
    let mut index = vec![0u32; Tokenizer::index_len_for_vocab(bin, 512).unwrap()];
    assert_eq!(
        Tokenizer::load_for_vocab(bin, 512, &mut index).map(|t| t.n_tokens()),
        Ok(512)
    );
    // Fewer asked: the rest is ignored (run.c's reading).
    let mut index = vec![0u32; Tokenizer::index_len_for_vocab(bin, 300).unwrap()];
    assert_eq!(
        Tokenizer::load_for_vocab(bin, 300, &mut index).map(|t| t.n_tokens()),
        Ok(300)
    );
    // More asked than the file holds.
    let mut index = vec![0u32; Tokenizer::index_len(513)];
    assert_eq!(
        Tokenizer::load_for_vocab(bin, 513, &mut index).err(),
        Some(Error::TokenizerTooSmall {
            tokenizer: 512,
            model: 513
        })
    );
    // Far more than the bytes could hold: refused before sizing.
    assert!(matches!(
        Tokenizer::index_len_for_vocab(bin, u32::MAX),
        Err(Error::TokenizerTooSmall { .. })
    ));
    // A GGUF vocabulary smaller than the model's.
    let gguf = small_vocab(|_| {});
    let mut index = vec![0u32; Tokenizer::index_len_for_vocab(&gguf, 9).unwrap()];
    assert_eq!(
        Tokenizer::load_for_vocab(&gguf, 9, &mut index).err(),
        Some(Error::TokenizerTooSmall {
            tokenizer: 8,
            model: 9
        })
    );
}

#[test]
fn load_refuses_truncated_and_garbage_input() {
    let bin: &[u8] = include_bytes!("../../models/tok512.bin");
    let gguf = small_vocab(|_| {});
    // Every cut of the GGUF is an error (its header promises more).
    for len in 0..gguf.len() {
        let r = try_load(&gguf[..len]);
        assert!(r.is_err(), "GGUF cut at {len}: {r:?}");
    }
    // A cut of tokenizer.bin loads the records before it when it falls on
    // a record boundary, else is an error.
    for len in 0..bin.len() {
        match try_load(&bin[..len]) {
            Ok(n) => assert!((3..512).contains(&n), "cut at {len}: {n} tokens"),
            Err(Error::Truncated { .. }) | Err(Error::BadTokenizer { .. }) => {}
            Err(e) => panic!("tokenizer.bin cut at {len}: {e:?}"),
        }
    }
    assert!(try_load(&[]).is_err());
    assert!(try_load(b"GGUF").is_err());
    // Garbage, with and without GGUF's magic, and bit flips of real files:
    // an error or a tokenizer, never a panic.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..2000 {
        let len = (next() % 600) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 2 == 0 && len >= 8 {
            b[..4].copy_from_slice(b"GGUF");
            b[4..8].copy_from_slice(&3u32.to_le_bytes());
        }
        let _ = try_load(&b);
        for src in [bin, &gguf[..]] {
            let mut b = src.to_vec();
            for _ in 0..1 + round % 4 {
                let i = (next() % b.len() as u64) as usize;
                b[i] ^= 1 << (next() % 8);
            }
            let _ = try_load(&b);
        }
    }
}
