//! Helpers shared by the integration tests (`mod common;` in each).
// Each test binary uses its own subset.
#![allow(dead_code)]

use llamette::{Model, Session, SessionParams};

/// A file of ../shared (the test models and reference outputs).
pub fn shared(path: &str) -> Vec<u8> {
    let p = format!("{}/../../shared/{}", env!("CARGO_MANIFEST_DIR"), path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// The tokens llama2.c's greedy stories260K run fed at each position.
pub fn greedy_ids() -> Vec<u32> {
    String::from_utf8(shared("testdata/stories260K.greedy.ids.txt"))
        .unwrap()
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect()
}

/// A zeroed, 8-byte-aligned buffer (as `Session::ALIGN` asks) of at least
/// `bytes` bytes; view it with [`as_bytes`].
pub fn aligned_buf(bytes: usize) -> Vec<u64> {
    vec![0u64; bytes.div_ceil(8)]
}

/// A buffer for a session of `model` with `params`.
pub fn session_buf(model: &Model, params: &SessionParams) -> Vec<u64> {
    aligned_buf(Session::required_bytes(model, params).unwrap())
}

/// The buffer as bytes.
pub fn as_bytes(buf: &mut [u64]) -> &mut [u8] {
    bytemuck::cast_slice_mut(buf)
}

/// Lengths to cut a file of `len` bytes at: every length below `first`
/// (inclusive), both sides of each `(name, start, end)` part's boundaries,
/// and 300 spread over the file; each less than `len`, once, in order.
pub fn truncation_cuts(len: usize, first: usize, parts: &[(&str, usize, usize)]) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..=first).collect();
    for &(_, start, end) in parts {
        cuts.extend([start.saturating_sub(1), start, start + 1, end - 1, end + 1]);
    }
    for i in 0..300 {
        cuts.push(i * len / 300);
    }
    cuts.retain(|&c| c < len);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}
