//! Saved session states: a session (with its generator) written into
//! caller bytes and restored into a fresh session, in this process or
//! another, so that generation continues with bit-identical tokens.
//!
//! [`saved_len`] is the exact size; [`save`] writes it; [`restore`] reads
//! it back. Only the positions in use are saved, not the whole cache.
//!
//! # The blob (version 1, little-endian)
//!
//! | bytes | what |
//! | --- | --- |
//! | 4 | magic `LMST` |
//! | 4 | format version (1) |
//! | 4 | header length (120) |
//! | 8 | fingerprint of the model file ([`model_fingerprint`]) |
//! | 4 + 4 | KV cache type (0 F32, 1 F16, 2 Q8_0) and bytes per stored row |
//! | 4 x 4 | layers, kv heads, head width, vocabulary size |
//! | 4 | positions saved (`pos`) |
//! | 4 | flags: 1 logits saved, 2 a pending token, 4 sampler seeded, 8 the decoder is after BOS |
//! | 4 | the pending token |
//! | 8 + 8 | the sampler's seed and random state |
//! | 24 | the sampler's settings (temperature, top-k, top-p, min-p, repetition penalty and window) |
//! | 4 + 4 | the decoder's held bytes: count, bytes |
//! | 8 | length of what follows, checksum excluded |
//! | 8 | length of the caller's extra bytes (`extra`) |
//! | extra | the caller's bytes (the chat keeps its dialog there) |
//! | 4 x pos | the tokens |
//! | 4 x vocab | the logits (when flag 1) |
//! | | keys, then values: per layer, per unit (a kv head, or a position's whole kv vector for a Q8_0 cache of narrow heads: see [`crate::kv`]), `pos` stored rows |
//! | 4 | CRC-32 (as zlib's) of everything before |
//!
//! A blob that is not one (magic, length, checksum, a field out of range)
//! is [`Error::BadState`]; one of a newer version, another model, another
//! KV type or shape, or more positions than the session holds is
//! [`Error::StateMismatch`]. Either way the session is left as it was: the
//! whole blob is checked before anything is written. A KV type added later
//! gets a new type number.

use crate::error::{Error, Result};
use crate::format::gguf::Gguf;
use crate::generate::{Generator, SavedGenerator};
use crate::kernels::types::{QK, QK_K};
use crate::kernels::{interleave, TensorType};
use crate::kv::Geometry;
use crate::model::{Format, Model};
use crate::sampler::SamplerParams;
use crate::session::{KvType, Session};

/// The blob's magic bytes.
pub const MAGIC: [u8; 4] = *b"LMST";
/// The format version written (and the newest read).
pub const VERSION: u32 = 1;
/// Bytes of the fixed header.
const HEADER: usize = 120;

const FLAG_LOGITS: u32 = 1;
const FLAG_PENDING: u32 = 2;
const FLAG_SEEDED: u32 = 4;
const FLAG_AFTER_BOS: u32 = 8;

fn kv_code(t: KvType) -> u32 {
    match t {
        KvType::F32 => 0,
        KvType::F16 => 1,
        KvType::Q8_0 => 2,
    }
}

/// Bytes of the saved KV rows of `pos` positions (keys and values).
fn kv_bytes(geo: &Geometry, pos: usize) -> u64 {
    2 * (geo.n_layers * geo.units) as u64 * pos as u64 * geo.row_bytes as u64
}

/// The exact number of bytes [`save`] writes for `session` and `gen` now,
/// with `extra` bytes of the caller's.
pub fn saved_len(session: &Session, gen: &Generator, extra: usize) -> usize {
    let _ = gen;
    let c = &session.model().config;
    let pos = session.pos();
    let logits = if session.logits().is_some() {
        4 * c.vocab_size
    } else {
        0
    };
    HEADER + extra + 4 * pos + logits + kv_bytes(session.kv_geometry(), pos) as usize + 4
}

/// A 64-bit fingerprint of the model's file: FNV-1a over its header and
/// tensor table (a GGUF's bytes before the data section; a llama2.c
/// file's header), its length, and the first and last 4 KiB of its weights
/// (which tell apart two fine-tunes of one shape). Cheap: it reads neither
/// the whole file nor any tensor beyond those 8 KiB.
///
/// The same for a GGUF file and its copy interleaved by
/// [`crate::repack::repack_in_place`]: the fingerprint reads the
/// interleaved matrices' type numbers and bytes as they were plain, so a
/// state saved with one layout restores with the other.
///
/// Errors: those of [`Gguf::parse`] (not for a model that loaded).
pub fn model_fingerprint(model: &Model) -> Result<u64> {
    let bytes = model.bytes();
    let mut h = Fnv::new();
    let header = match model.format {
        Format::Gguf(_) => {
            let g = Gguf::parse(bytes)?;
            // The tensor records, type numbers as the plain types'.
            let mut pos = 0;
            for t in g.tensors() {
                let t = t?;
                if let Some(plain) = plain_type(t.raw_type) {
                    let at = t.type_at as usize;
                    h.write(&bytes[pos..at]);
                    h.write(&plain.to_le_bytes());
                    pos = at + 4;
                }
            }
            let data = (g.data_offset as usize).min(bytes.len());
            h.write(&bytes[pos.min(data)..data]);
            data
        }
        Format::Llama2cV0 => {
            h.write(&bytes[..28.min(bytes.len())]);
            28
        }
        Format::Llama2cV2 => {
            h.write(&bytes[..256.min(bytes.len())]);
            256
        }
    }
    .min(bytes.len());
    h.write(&(bytes.len() as u64).to_le_bytes());
    let weights = bytes.len() - header;
    for start in [header, bytes.len() - weights.min(4096)] {
        let len = (bytes.len() - start).min(4096);
        let mut buf = [0u8; 4096];
        buf[..len].copy_from_slice(&bytes[start..start + len]);
        if let Format::Gguf(_) = model.format {
            as_plain(bytes, start, &mut buf[..len])?;
        }
        h.write(&buf[..len]);
    }
    Ok(h.0)
}

/// The plain type number of an interleaved type's, else `None`.
fn plain_type(raw: u32) -> Option<u32> {
    use crate::kernels::types::{
        GGML_F16X16, GGML_Q4_0X16, GGML_Q4_KX16, GGML_Q5_KX16, GGML_Q8_0X16,
    };
    match raw {
        GGML_F16X16 => TensorType::F16.ggml_type(),
        GGML_Q4_0X16 => TensorType::Q4_0.ggml_type(),
        GGML_Q4_KX16 => TensorType::Q4_K.ggml_type(),
        GGML_Q5_KX16 => TensorType::Q5_K.ggml_type(),
        GGML_Q8_0X16 => TensorType::Q8_0.ggml_type(),
        _ => None,
    }
}

/// Rewrites `buf`, the bytes of the GGUF file `bytes` from `start`, where
/// it overlaps interleaved matrices, as the plain matrices' bytes.
fn as_plain(bytes: &[u8], start: usize, buf: &mut [u8]) -> Result<()> {
    let g = Gguf::parse(bytes)?;
    for t in g.tensors() {
        let t = t?;
        // The plain byte at offset `i` of the tensor's data.
        let plain: fn(&[u8], usize, usize) -> u8 = match t.ty {
            Some(TensorType::Q4_0x16) => |d, cols, i| interleave::plain_byte(d, cols / QK, true, i),
            Some(TensorType::Q8_0x16) => {
                |d, cols, i| interleave::plain_byte(d, cols / QK, false, i)
            }
            Some(TensorType::Q4_Kx16) => {
                |d, cols, i| interleave::plain_byte_k(d, cols / QK_K, false, i)
            }
            Some(TensorType::Q5_Kx16) => {
                |d, cols, i| interleave::plain_byte_k(d, cols / QK_K, true, i)
            }
            Some(TensorType::F16x16) => |d, cols, i| interleave::plain_byte_f16(d, cols / QK, i),
            _ => continue,
        };
        let (off, size) = (t.offset as usize, t.size as usize);
        let lo = off.max(start);
        let hi = (off + size).min(start + buf.len());
        let data = &bytes[off.min(bytes.len())..(off + size).min(bytes.len())];
        let cols = t.dims[0] as usize;
        for i in lo..hi.min(off + data.len()) {
            buf[i - start] = plain(data, cols, i - off);
        }
    }
    Ok(())
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= x as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`), eight bytes at a time.
pub fn crc32(data: &[u8]) -> u32 {
    static T: [[u32; 256]; 8] = crc_tables();
    let mut c = !0u32;
    let mut chunks = data.chunks_exact(8);
    for b in &mut chunks {
        let lo = c ^ u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let hi = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        c = T[7][(lo & 0xff) as usize]
            ^ T[6][((lo >> 8) & 0xff) as usize]
            ^ T[5][((lo >> 16) & 0xff) as usize]
            ^ T[4][(lo >> 24) as usize]
            ^ T[3][(hi & 0xff) as usize]
            ^ T[2][((hi >> 8) & 0xff) as usize]
            ^ T[1][((hi >> 16) & 0xff) as usize]
            ^ T[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        c = T[0][((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

const fn crc_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut s = 1;
        while s < 8 {
            let p = t[s - 1][i];
            t[s][i] = t[0][(p & 0xff) as usize] ^ (p >> 8);
            s += 1;
        }
        i += 1;
    }
    t
}

/// Writes the state of `session` and `gen`, and the caller's `extra`
/// bytes (kept as they are, returned by [`restore`]), into the front of
/// `out` (at least [`saved_len`] bytes) and returns its length.
///
/// Errors: [`Error::BufferTooSmall`] (nothing written).
pub fn save(session: &mut Session, gen: &Generator, extra: &[u8], out: &mut [u8]) -> Result<usize> {
    let len = saved_len(session, gen, extra.len());
    if out.len() < len {
        return Err(Error::BufferTooSmall {
            what: "saved state (bytes)",
            needed: len,
            got: out.len(),
        });
    }
    let fingerprint = model_fingerprint(session.model())?;
    let c = session.model().config;
    let g = gen.saved();
    let kv = session.kv_type();
    let parts = session.saved_parts();
    let pos = *parts.pos;
    let mut w = Writer { out, at: 0 };
    w.bytes(&MAGIC);
    w.u32(VERSION);
    w.u32(HEADER as u32);
    w.u64(fingerprint);
    w.u32(kv_code(kv));
    w.u32(parts.keys.geometry().row_bytes as u32);
    for v in [c.n_layers, c.n_kv_heads, c.head_dim(), c.vocab_size, pos] {
        w.u32(v as u32);
    }
    let mut flags = 0;
    if *parts.has_logits {
        flags |= FLAG_LOGITS;
    }
    if g.pending.is_some() {
        flags |= FLAG_PENDING;
    }
    if g.seeded.is_some() {
        flags |= FLAG_SEEDED;
    }
    if g.after_bos {
        flags |= FLAG_AFTER_BOS;
    }
    w.u32(flags);
    w.u32(g.pending.unwrap_or(0));
    w.u64(g.seeded.unwrap_or(0));
    w.u64(g.rng);
    let p = g.sampler;
    w.u32(p.temperature.to_bits());
    w.u32(p.top_k.min(u32::MAX as usize) as u32);
    w.u32(p.top_p.to_bits());
    w.u32(p.min_p.to_bits());
    w.u32(p.repeat_penalty.to_bits());
    w.u32(p.repeat_last_n.min(u32::MAX as usize) as u32);
    w.u32(g.decoder_len as u32);
    w.bytes(&g.decoder_bytes);
    w.u64((len - HEADER - 4) as u64);
    w.u64(extra.len() as u64);
    debug_assert_eq!(w.at, HEADER);
    w.bytes(extra);
    for &t in &parts.tokens[..pos] {
        w.u32(t);
    }
    if *parts.has_logits {
        for &l in parts.logits.iter() {
            w.u32(l.to_bits());
        }
    }
    for cache in [parts.keys, parts.values] {
        let geo = *cache.geometry();
        for l in 0..geo.n_layers {
            for u in 0..geo.units {
                w.bytes(cache.unit_rows_mut(l, u, pos));
            }
        }
    }
    let crc = crc32(&w.out[..w.at]);
    w.u32(crc);
    debug_assert_eq!(w.at, len);
    Ok(len)
}

struct Writer<'o> {
    out: &'o mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, b: &[u8]) {
        self.out[self.at..self.at + b.len()].copy_from_slice(b);
        self.at += b.len();
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u32_at(b, at) as u64 | (u32_at(b, at + 4) as u64) << 32
}

/// What the blob's header says.
struct Header {
    extra: usize,
    pos: usize,
    flags: u32,
    gen: SavedGenerator,
}

/// Checks a blob against `session` completely (nothing is changed).
fn check(session: &Session, blob: &[u8]) -> Result<Header> {
    let bad = |reason| Err(Error::BadState { reason });
    let mismatch = |what, found: u64, expected: u64| {
        Err(Error::StateMismatch {
            what,
            found,
            expected,
        })
    };
    let payload = check_frame(blob)?;
    let fingerprint = model_fingerprint(session.model())?;
    if u64_at(blob, 12) != fingerprint {
        return mismatch("the model (fingerprint)", u64_at(blob, 12), fingerprint);
    }
    let kv = session.kv_type();
    if u32_at(blob, 20) != kv_code(kv) {
        return mismatch(
            "the KV cache type (0 F32, 1 F16, 2 Q8_0)",
            u32_at(blob, 20) as u64,
            kv_code(kv) as u64,
        );
    }
    let geo = *session.kv_geometry();
    if u32_at(blob, 24) as u64 != geo.row_bytes as u64 {
        return mismatch(
            "bytes per stored KV row",
            u32_at(blob, 24) as u64,
            geo.row_bytes as u64,
        );
    }
    let c = &session.model().config;
    for (i, (what, want)) in [
        ("layers", c.n_layers),
        ("kv heads", c.n_kv_heads),
        ("head width", c.head_dim()),
        ("vocabulary size", c.vocab_size),
    ]
    .into_iter()
    .enumerate()
    {
        let found = u32_at(blob, 28 + 4 * i);
        if found as usize != want {
            return mismatch(what, found as u64, want as u64);
        }
    }
    let pos = u32_at(blob, 44) as usize;
    if pos > session.context() {
        return mismatch(
            "positions (more than this session's context)",
            pos as u64,
            session.context() as u64,
        );
    }
    let flags = u32_at(blob, 48);
    if flags & !(FLAG_LOGITS | FLAG_PENDING | FLAG_SEEDED | FLAG_AFTER_BOS) != 0 {
        return bad("unknown flags");
    }
    let logits = if flags & FLAG_LOGITS != 0 {
        c.vocab_size as u64 * 4
    } else {
        0
    };
    let kv_bytes = kv_bytes(&geo, pos);
    let extra = u64_at(blob, 112);
    if Some(payload) != (4 * pos as u64 + logits + kv_bytes).checked_add(extra) {
        return bad("its length does not match its positions");
    }
    let extra = extra as usize;
    if flags & FLAG_LOGITS != 0 && pos == 0 {
        return bad("logits without positions");
    }
    let vocab = c.vocab_size as u32;
    let tokens = &blob[HEADER + extra..HEADER + extra + 4 * pos];
    if tokens.chunks_exact(4).any(|t| u32_at(t, 0) >= vocab) {
        return bad("a token id outside the vocabulary");
    }
    let pending = (flags & FLAG_PENDING != 0).then(|| u32_at(blob, 52));
    if pending.is_some_and(|t| t >= vocab) {
        return bad("a pending token outside the vocabulary");
    }
    let f = |at| f32::from_bits(u32_at(blob, at));
    let sampler = SamplerParams {
        temperature: f(72),
        top_k: u32_at(blob, 76) as usize,
        top_p: f(80),
        min_p: f(84),
        repeat_penalty: f(88),
        repeat_last_n: u32_at(blob, 92) as usize,
    };
    if sampler.validate().is_err() {
        return bad("sampler settings out of range");
    }
    let decoder_len = u32_at(blob, 96) as usize;
    if decoder_len > 3 {
        return bad("decoder state out of range");
    }
    let mut decoder_bytes = [0u8; 4];
    decoder_bytes.copy_from_slice(&blob[100..104]);
    Ok(Header {
        extra,
        pos,
        flags,
        gen: SavedGenerator {
            pending,
            seeded: (flags & FLAG_SEEDED != 0).then_some(u64_at(blob, 56)),
            rng: u64_at(blob, 64),
            sampler,
            decoder_bytes,
            decoder_len,
            after_bos: flags & FLAG_AFTER_BOS != 0,
        },
    })
}

/// The caller's extra bytes of a blob that fits `session` (all of it
/// checked as [`restore`] does, nothing changed).
///
/// Errors: as [`restore`].
pub fn peek_extra<'b>(session: &Session, blob: &'b [u8]) -> Result<&'b [u8]> {
    let h = check(session, blob)?;
    Ok(&blob[HEADER..HEADER + h.extra])
}

/// The caller's extra bytes of a blob, checking its magic, version, length
/// and checksum but not whether it fits a session.
///
/// Errors: [`Error::BadState`], [`Error::StateMismatch`] (a newer version).
pub fn extra_of(blob: &[u8]) -> Result<&[u8]> {
    check_frame(blob)?;
    let extra = u64_at(blob, 112);
    if extra > (blob.len() - HEADER - 4) as u64 {
        return Err(Error::BadState {
            reason: "its length does not match its header (truncated?)",
        });
    }
    Ok(&blob[HEADER..HEADER + extra as usize])
}

/// Checks magic, version, length and checksum; returns the payload length.
fn check_frame(blob: &[u8]) -> Result<u64> {
    let bad = |reason| Err(Error::BadState { reason });
    if blob.len() < 12 || blob[..4] != MAGIC {
        return bad("not a llamette session state (magic)");
    }
    let version = u32_at(blob, 4);
    if version > VERSION {
        return Err(Error::StateMismatch {
            what: "the format version",
            found: version as u64,
            expected: VERSION as u64,
        });
    }
    if version == 0 || u32_at(blob, 8) as usize != HEADER || blob.len() < HEADER + 4 {
        return bad("truncated or malformed header");
    }
    let payload = u64_at(blob, 104);
    if payload != (blob.len() - HEADER - 4) as u64 {
        return bad("its length does not match its header (truncated?)");
    }
    let (body, tail) = blob.split_at(blob.len() - 4);
    if crc32(body) != u32_at(tail, 0) {
        return bad("checksum mismatch (corrupted)");
    }
    Ok(payload)
}

/// Restores a state [`save`] wrote (in any process, for the same model
/// file and KV type) into `session` and `gen`, replacing what they held,
/// and returns the caller's extra bytes saved with it. The session may
/// have another context length, if it is long enough.
///
/// Errors: [`Error::BadState`], [`Error::StateMismatch`]; the session and
/// the generator are then unchanged.
pub fn restore<'b>(session: &mut Session, gen: &mut Generator, blob: &'b [u8]) -> Result<&'b [u8]> {
    let h = check(session, blob)?;
    let parts = session.saved_parts();
    let pos = h.pos;
    let extra = &blob[HEADER..HEADER + h.extra];
    let mut at = HEADER + h.extra;
    for t in parts.tokens[..pos].iter_mut() {
        *t = u32_at(blob, at);
        at += 4;
    }
    *parts.has_logits = h.flags & FLAG_LOGITS != 0;
    if *parts.has_logits {
        for l in parts.logits.iter_mut() {
            *l = f32::from_bits(u32_at(blob, at));
            at += 4;
        }
    }
    for cache in [parts.keys, parts.values] {
        let geo = *cache.geometry();
        for l in 0..geo.n_layers {
            for u in 0..geo.units {
                let rows = cache.unit_rows_mut(l, u, pos);
                rows.copy_from_slice(&blob[at..at + rows.len()]);
                at += rows.len();
            }
        }
    }
    *parts.pos = pos;
    gen.restore(&h.gen);
    Ok(extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_known_values() {
        // zlib.crc32(b"123456789") and b"" (the standard check values).
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }
}
