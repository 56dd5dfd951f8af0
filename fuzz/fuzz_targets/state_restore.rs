//! `state::restore` of saved states into a session of the embedded
//! stories260K. The input edits a valid blob (saved after a short
//! prompt): its first byte chooses a truncation and whether the CRC is
//! recomputed after the edits (so that the checks behind the checksum are
//! reached), the rest are (offset, xor) pairs. A refused blob must leave
//! the session and generator as they were.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use llamette::{state, Generator, Model, Session, SessionParams, TextMode};

static MODEL: &[u8] = include_bytes!("../../models/stories260K.bin");

fn model() -> &'static Model<'static> {
    static M: OnceLock<Model<'static>> = OnceLock::new();
    M.get_or_init(|| Model::load(MODEL).unwrap())
}

fn params() -> SessionParams {
    SessionParams {
        context: 16,
        ..Default::default()
    }
}

fn new_session(buf: &mut Vec<u64>) -> Session<'_> {
    let need = Session::required_bytes(model(), &params()).unwrap();
    buf.resize(need.div_ceil(8), 0);
    Session::new(model(), params(), llamette_fuzz::bytemuck_cast(buf)).unwrap()
}

/// A valid blob: 5 positions, a pending token, a sampler, extra bytes.
fn blob() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| {
        let mut buf = Vec::new();
        let mut s = new_session(&mut buf);
        let mut g = Generator::new(None, TextMode::Utf8);
        g.feed(&mut s, &[1, 20, 30, 40, 50]).unwrap();
        let extra = b"the caller's bytes";
        let mut out = vec![0u8; state::saved_len(&s, &g, extra.len())];
        let n = state::save(&mut s, &g, extra, &mut out).unwrap();
        out.truncate(n);
        out
    })
}

fuzz_target!(|data: &[u8]| {
    let mut b = blob().to_vec();
    let (head, edits) = data.split_first().map_or((0, &[][..]), |(h, r)| (*h, r));
    let len = b.len().max(1);
    for e in edits.chunks_exact(3) {
        let at = u16::from_le_bytes([e[0], e[1]]) as usize;
        if let Some(x) = b.get_mut(at % len) {
            *x ^= e[2];
        }
    }
    if head & 0x80 != 0 && b.len() >= 4 {
        let n = b.len() - 4;
        let crc = state::crc32(&b[..n]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
    }
    if head & 0x40 != 0 {
        let cut = (head & 0x3F) as usize * b.len() / 64;
        b.truncate(cut);
    }
    let mut buf = Vec::new();
    let mut s = new_session(&mut buf);
    let mut g = Generator::new(None, TextMode::Utf8);
    g.feed(&mut s, &[1, 7]).unwrap();
    let before_pos = s.pos();
    let before_logits = s.logits().map(<[f32]>::to_vec);
    match state::restore(&mut s, &mut g, &b) {
        Ok(_) => {
            // A restored session runs on.
            let _ = g.feed(&mut s, &[3]);
        }
        Err(_) => {
            assert_eq!(s.pos(), before_pos);
            assert_eq!(s.logits().map(<[f32]>::to_vec), before_logits);
        }
    }
});
