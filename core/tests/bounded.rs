//! Bounded resources on hostile tokenizer files: loading, encoding and
//! decoding take time about linear in what they read and allocate nothing.
//!
//! The time bounds are generous (tens of times what the code needs here on
//! a busy machine) and the quadratic or cubic versions these tests were
//! written against take far longer: 33 s to load the 2.5 MB vocabulary of
//! identical pieces, 15 s to encode 4 000 bytes against a 20 KB
//! USER_DEFINED piece.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use llamette::{Bos, Tokenizer};

/// Counts the allocations a thread makes while its `COUNTING` is set.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A llama2.c tokenizer: `<unk>`, `<s>`, `</s>`, then `pieces` (score 0).
fn llama2c(pieces: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut v = 16i32.to_le_bytes().to_vec();
    let specials = [b"<unk>".to_vec(), b"\n<s>\n".to_vec(), b"\n</s>\n".to_vec()];
    for p in specials.into_iter().chain(pieces) {
        v.extend_from_slice(&0f32.to_le_bytes());
        v.extend_from_slice(&(p.len() as i32).to_le_bytes());
        v.extend_from_slice(&p);
    }
    v
}

/// A GGUF vocabulary: `(piece, score, GGUF token type)` after `<unk>`,
/// `<s>`, `</s>` and the 256 byte tokens.
fn gguf(pieces: &[(Vec<u8>, f32, i32)]) -> Vec<u8> {
    let mut all: Vec<(Vec<u8>, f32, i32)> = vec![
        (b"<unk>".to_vec(), 0.0, 2),
        (b"<s>".to_vec(), 0.0, 3),
        (b"</s>".to_vec(), 0.0, 3),
    ];
    all.extend((0..256).map(|b| (format!("<0x{b:02X}>").into_bytes(), 0.0, 6)));
    all.extend_from_slice(pieces);
    let mut v = b"GGUF".to_vec();
    v.extend_from_slice(&3u32.to_le_bytes());
    v.extend_from_slice(&0u64.to_le_bytes());
    v.extend_from_slice(&3u64.to_le_bytes());
    let s = |v: &mut Vec<u8>, b: &[u8]| {
        v.extend_from_slice(&(b.len() as u64).to_le_bytes());
        v.extend_from_slice(b);
    };
    let arr = |v: &mut Vec<u8>, key: &str, ty: u32| {
        s(v, key.as_bytes());
        v.extend_from_slice(&9u32.to_le_bytes());
        v.extend_from_slice(&ty.to_le_bytes());
        v.extend_from_slice(&(all.len() as u64).to_le_bytes());
    };
    arr(&mut v, "tokenizer.ggml.tokens", 8);
    for (p, _, _) in &all {
        s(&mut v, p);
    }
    arr(&mut v, "tokenizer.ggml.scores", 6);
    for (_, sc, _) in &all {
        v.extend_from_slice(&sc.to_le_bytes());
    }
    arr(&mut v, "tokenizer.ggml.token_type", 5);
    for (_, _, t) in &all {
        v.extend_from_slice(&t.to_le_bytes());
    }
    v
}

/// Loads `bytes`, encodes and decodes `text` with nothing allocated
/// between the caller's buffers being made and the results; returns the
/// time of each of the three steps and the ids.
fn run(bytes: &[u8], text: &str) -> (Duration, Duration, Duration, Vec<u32>) {
    let index_len = Tokenizer::index_len_for(bytes).unwrap();
    // The index is linear in the file: at most 24 bytes per byte (the
    // USER_DEFINED automaton's 20), plus the byte table.
    assert!(
        index_len * 4 <= 24 * bytes.len() + 4096,
        "index of {index_len} entries for a {}-byte file",
        bytes.len()
    );
    let mut index = vec![0u32; index_len];
    let mut work = vec![0u32; Tokenizer::encode_work_len(text.len())];
    let mut out = vec![0u8; 64 * text.len() + 64];
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    let t0 = Instant::now();
    let tok = Tokenizer::load(bytes, &mut index).unwrap();
    let t1 = Instant::now();
    let ids = tok.encode(text, Bos::None, &mut work).unwrap();
    let t2 = Instant::now();
    let decoded_len = tok.decode(ids, &mut out).map(|s| s.len());
    let t3 = Instant::now();
    COUNTING.with(|c| c.set(false));
    assert_eq!(ALLOCATIONS.with(Cell::get), 0, "allocations");
    decoded_len.unwrap();
    (t1 - t0, t2 - t1, t3 - t2, ids.to_vec())
}

fn check(what: &str, took: Duration, bound_ms: u64) {
    eprintln!("{what}: {:.1} ms", took.as_secs_f64() * 1e3);
    assert!(
        took < Duration::from_millis(bound_ms),
        "{what} took {took:?} (bound {bound_ms} ms)"
    );
}

#[test]
fn identical_pieces_load_in_linear_time() {
    // 2.5 MB of the piece "a" (9 bytes a record): 280 000 tokens.
    let bytes = llama2c(std::iter::repeat_n(b"a".to_vec(), 2_500_000 / 9));
    let (load, encode, _, ids) = run(&bytes, "a a aaa");
    check("llama2.c, 278k identical pieces: load", load, 3000);
    check("encode", encode, 100);
    // The first "a" (id 3) wins.
    assert!(ids.iter().all(|&i| i == 3 || i == 0), "{ids:?}");
    // The same as a GGUF vocabulary, the pieces USER_DEFINED and NORMAL.
    let pieces: Vec<(Vec<u8>, f32, i32)> = (0..150_000)
        .map(|i| (b"ab".to_vec(), 0.0, if i % 2 == 0 { 4 } else { 1 }))
        .collect();
    let bytes = gguf(&pieces);
    let text = "ab".repeat(5000);
    let (load, encode, _, ids) = run(&bytes, &text);
    check("GGUF, 150k identical pieces: load", load, 3000);
    check("encode 10 KB", encode, 200);
    // The dummy prefix as its three byte tokens, then the first "ab" (a
    // USER_DEFINED piece) 5 000 times.
    assert_eq!(ids[..3], [3 + 0xE2, 3 + 0x96, 3 + 0x81]);
    assert!(ids[3..].iter().all(|&i| i == 3 + 256), "{:?}", &ids[..8]);
}

/// FNV-1a over `bytes` from state `h` (the tokenizer's hash, before its
/// final mix: a collision here is one there).
fn fnv(mut h: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        h = (h ^ b as u32).wrapping_mul(0x0100_0193);
    }
    h
}

/// `2^stages` distinct pieces of `6 * stages` letters with one FNV-1a
/// hash (Joux's multicollision: a colliding pair of 6-letter blocks per
/// stage, found by the birthday paradox in about 80 000 tries).
fn colliding_pieces(stages: usize) -> Vec<Vec<u8>> {
    let mut h = 0x811C_9DC5u32;
    let mut pairs = Vec::new();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..stages {
        let mut seen: HashMap<u32, [u8; 6]> = HashMap::new();
        loop {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut block = [0u8; 6];
            for (i, b) in block.iter_mut().enumerate() {
                *b = b'a' + (x >> (8 * i)) as u8 % 26;
            }
            let next = fnv(h, &block);
            match seen.get(&next) {
                Some(other) if *other != block => {
                    pairs.push((*other, block));
                    h = next;
                    break;
                }
                _ => {
                    seen.insert(next, block);
                }
            }
        }
    }
    (0..1usize << stages)
        .map(|bits| {
            (0..stages)
                .flat_map(|s| {
                    if bits >> s & 1 == 0 {
                        pairs[s].0
                    } else {
                        pairs[s].1
                    }
                })
                .collect()
        })
        .collect()
}

#[test]
fn pieces_whose_hashes_collide_load_and_encode_in_n_log_n() {
    let pieces = colliding_pieces(14);
    let h = fnv(0x811C_9DC5, &pieces[0]);
    assert!(pieces.iter().all(|p| fnv(0x811C_9DC5, p) == h));
    // USER_DEFINED pieces, so that the text's look-ups are of whole pieces.
    let typed: Vec<(Vec<u8>, f32, i32)> = pieces.iter().map(|p| (p.clone(), 0.0, 4)).collect();
    let bytes = gguf(&typed);
    assert!(bytes.len() > 1_400_000);
    // A text of 4 000 of those pieces, each looked up in the one bucket.
    let text: String = (0..4000)
        .map(|i| std::str::from_utf8(&pieces[i * 31 % pieces.len()]).unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    let (load, encode, decode, ids) = run(&bytes, &text);
    check("GGUF, 16k colliding pieces: load", load, 3000);
    check("encode 340 KB of them", encode, 500);
    check("decode", decode, 200);
    let found: Vec<u32> = ids.into_iter().filter(|&i| i >= 259).collect();
    let want: Vec<u32> = (0..4000)
        .map(|i| 259 + (i * 31 % pieces.len()) as u32)
        .collect();
    assert_eq!(found, want);
}

#[test]
fn long_user_defined_pieces_encode_in_linear_time() {
    // A 20 KB piece that every run of 'a' almost matches, from either end.
    let mut a_then_b = vec![b'a'; 20_000];
    a_then_b.push(b'b');
    let mut b_then_a = vec![b'b'; 1];
    b_then_a.extend(std::iter::repeat_n(b'a', 20_000));
    let pieces = vec![
        (a_then_b, 0.0, 4),
        (b_then_a, 0.0, 4),
        (b"a".to_vec(), -1.0, 1),
        (b"aa".to_vec(), -2.0, 4),
    ];
    let bytes = gguf(&pieces);
    for len in [4_000, 16_000] {
        let text = "a".repeat(len);
        let (_, encode, _, ids) = run(&bytes, &text);
        check(
            &format!("20 KB USER_DEFINED piece, {len} bytes"),
            encode,
            1000,
        );
        // The dummy prefix is a byte token, then "aa" pieces (USER_DEFINED, frozen).
        assert_eq!(ids.len(), 3 + len / 2, "{:?}", &ids[..8]);
    }
    // And where it matches: the piece is taken whole.
    let text = format!("{}b", "a".repeat(20_000));
    let (_, encode, _, ids) = run(&bytes, &text);
    check("the 20 KB piece itself", encode, 1000);
    assert_eq!(ids[3..], [3 + 256]);
}

#[test]
fn merges_of_long_pieces_stay_bounded() {
    // "a", "aa", ..., 1 000 a's (500 KB): each merge makes a longer symbol,
    // whose look-ups read at most the longest piece.
    let pieces = (1..=1000).map(|k| vec![b'a'; k]);
    let bytes = llama2c(pieces);
    let text = "a".repeat(20_000);
    let (load, encode, _, ids) = run(&bytes, &text);
    check("staircase vocabulary: load", load, 1000);
    check("encode 20 000 a's", encode, 3000);
    assert!(ids.len() >= 20, "{}", ids.len());
}
