//! SentencePiece BPE tokenizer with byte fallback, zero-copy and allocation-free.
//!
//! This is the tokenizer of Llama 2, implemented to give exactly the ids that
//! SentencePiece's `bpe_model.cc` gives (and llama.cpp's `llm_tokenizer_spm`),
//! over the vocabulary stored in a GGUF file (`tokenizer.ggml.*`) or in a
//! llama2.c `tokenizer.bin`.
//!
//! # Memory
//!
//! Nothing is copied and nothing is allocated:
//!
//! - pieces and scores are read from the file bytes where they lie;
//! - loading builds an *index* in caller memory, [`Tokenizer::index_len`]
//!   `u32` entries (`2 * n_tokens + 2^ceil(log2(n_tokens)) + 1 + 256`: 97 025
//!   entries, 379 KiB, for Llama 2's 32 000 tokens): one entry per token with
//!   its type (top 3 bits) and the offset of its record in the file (so pieces
//!   stay in the file, and the vocabulary may take up to 512 MiB), the token
//!   ids bucketed by a hash of their piece and sorted by piece inside each
//!   bucket (with where each bucket starts), and the id of the byte token of
//!   each of the 256 byte values; a GGUF vocabulary with USER_DEFINED pieces
//!   adds an automaton that finds them, 5 entries per byte of those pieces
//!   ([`Tokenizer::gguf_index_len`]);
//! - [`Tokenizer::encode`] works in a caller buffer of
//!   [`Tokenizer::encode_work_len`]`(text.len())` `u32` entries (`6 * (len + 1)`,
//!   24 bytes per byte of text) and leaves the token ids in its prefix. With
//!   `n = len + 1` (at most one symbol per byte, plus the dummy prefix) it holds
//!   six arrays of `n`: per symbol the heap key, the heap, the heap positions,
//!   `prev`, `start` and `next`; once merging is done the first four (`4n`
//!   entries) are free and receive the output, at most `3 * len + 4 <= 4n` ids
//!   ([`Tokenizer::max_tokens`]), while `start`/`next` are still read.
//!
//! # Encoding (what SentencePiece does for Llama 2)
//!
//! 1. Normalize: every `' '` becomes `'▁'` (U+2581), and a `'▁'` is prepended
//!    (the "dummy prefix", when `add_space_prefix` is set and the text is not
//!    empty). Llama 2's SentencePiece model uses the `identity` normalizer
//!    (no NFKC) and keeps runs of whitespace (`remove_extra_whitespaces` is
//!    false), so nothing else changes.
//! 2. Split into symbols, one per UTF-8 character (a USER_DEFINED piece that
//!    starts at a character is taken whole, longest first, and never merged).
//! 3. Repeatedly merge the adjacent pair whose concatenation is a piece of type
//!    NORMAL, USER_DEFINED or UNUSED with the highest score; ties go to the
//!    leftmost pair. CONTROL, UNKNOWN and BYTE pieces never take part, so the
//!    literal text `<s>` or `<0x41>` is never one token.
//! 4. Each final symbol becomes its piece's id (an UNUSED piece is split back
//!    into the two symbols it was merged from, as SentencePiece does); a symbol
//!    that is no piece becomes one byte token (`<0xNN>`) per UTF-8 byte, or, if
//!    the vocabulary has no byte tokens, `<unk>` (one for a run of unknown
//!    symbols, as SentencePiece merges them).
//!
//! The merge loop keeps a binary heap of the adjacent pairs that spell a piece,
//! keyed by that piece's score (then by position), with each symbol's place in
//! the heap so that a pair can be removed; a merge only looks up its two new
//! neighbouring pairs. Encoding `n` characters takes `O(n)` look-ups and
//! `O(n log n)` heap work, independent of the vocabulary size: about 2.4 ms
//! for 11 KB of English and under 5 ms for the worst 20 KB texts tried (all
//! spaces) on this machine, release build.
//!
//! # Hostile vocabularies
//!
//! Costs stay bounded whatever the file holds (`core/tests/bounded.rs`):
//!
//! - Loading is `O(S log n)` for `n` pieces of `S` bytes: ids are bucketed by
//!   hash (a counting sort) and sorted by piece inside each bucket, so
//!   identical pieces, or pieces crafted to share a hash, cost a comparison
//!   sort, not a quadratic probe sequence (2.5 MB of identical pieces: 36 s
//!   before, 26 ms now).
//! - A look-up is a binary search inside its bucket: `O(log n)` comparisons
//!   of at most the longest piece, even if every piece shares a bucket.
//! - Duplicate pieces: the first wins (see [`Tokenizer::token_id`]).
//! - USER_DEFINED pieces are found by an Aho-Corasick automaton run once
//!   over the text, right to left: `O(len)` whatever their number and length
//!   (a 20 KB piece against 4 000 bytes of text: 10 s before, 0.1 ms now).
//! - A merge looks up the concatenation of two symbols, reading it at most
//!   up to the longest piece `L`: encoding is `O(len * min(len, L))` in the
//!   worst case (20 000 bytes against the pieces `a`, `aa`, ..., 1 000 `a`s,
//!   a 500 KB file: 0.15 s), as in SentencePiece, and `O(len)` look-ups of
//!   short pieces for real vocabularies.
//!
//! llama2.c's `tokenizer.bin` has no token types and its pieces have `'▁'`
//! already replaced by `' '`: there ids 0, 1 and 2 are `<unk>`, `<s>` and
//! `</s>`, pieces spelled `<0xHH>` are byte tokens, every other piece is
//! NORMAL, and the text is compared with spaces left as spaces (and a literal
//! `'▁'` in the text read as a space, which is what SentencePiece does too).
//!
//! # Decoding
//!
//! [`Decoder`] turns ids back into text one token at a time, for streaming:
//! `'▁'` becomes `' '`, byte tokens become their byte, a UTF-8 character split
//! over several tokens is held back until it is complete and then emitted whole,
//! invalid UTF-8 becomes U+FFFD, and the piece right after BOS loses its leading
//! space (llama2.c's rule, which also reproduces SentencePiece's removal of the
//! dummy prefix). [`Tokenizer::decode`] does a whole sequence into a buffer.
//! For output identical to llama2.c's `run.c` (which prints each piece with
//! `safe_printf`, skipping single non-printable bytes such as the bytes of a
//! multi-byte character), use [`Tokenizer::llama2c_piece`].

use core::fmt;

use crate::error::{slice, Error, Name, Result};
use crate::format::gguf::{Array, Gguf, ValueType};

/// "No symbol" / "no token" marker inside index and work buffers.
const NONE: u32 = u32::MAX;
/// Bit of a symbol's start offset marking a symbol that never merges.
const FROZEN: u32 = 1 << 31;
/// Index entries keep the token type above this bit and the record offset below.
const TYPE_SHIFT: u32 = 29;
const OFFSET_MASK: u32 = (1 << TYPE_SHIFT) - 1;
/// Entries in the byte table of the index.
const BYTE_TABLE: usize = 256;
/// Deepest re-segmentation of UNUSED pieces followed (each level is shorter).
const MAX_RESEGMENT_DEPTH: u32 = 64;
/// `'▁'` (U+2581), SentencePiece's escaped space.
const SPACE_SYMBOL: &[u8] = "\u{2581}".as_bytes();
/// Candidates up to this many normalized bytes are looked up by slice comparison.
const LOOKUP_BUF: usize = 128;
/// U+FFFD, what invalid UTF-8 decodes to.
const REPLACEMENT: &str = "\u{FFFD}";

/// The type of a token, as SentencePiece (and GGUF's `tokenizer.ggml.token_type`) defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenType {
    /// An ordinary piece (GGUF type 1; type 0, "undefined", is read as this too).
    Normal,
    /// The unknown token `<unk>` (GGUF type 2).
    Unknown,
    /// A control token such as `<s>` or `</s>` (GGUF type 3): never produced
    /// from text, decodes to nothing.
    Control,
    /// A user-defined piece (GGUF type 4): matched whole in the text before
    /// merging, never merged further.
    UserDefined,
    /// An unused piece (GGUF type 5): merged like a normal piece, then split back.
    Unused,
    /// A byte token `<0xNN>` (GGUF type 6), used for byte fallback.
    Byte,
}

impl TokenType {
    fn from_gguf(v: i32) -> Option<TokenType> {
        Some(match v {
            0 | 1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => return None,
        })
    }

    fn code(self) -> u32 {
        match self {
            TokenType::Normal => 0,
            TokenType::Unknown => 1,
            TokenType::Control => 2,
            TokenType::UserDefined => 3,
            TokenType::Unused => 4,
            TokenType::Byte => 5,
        }
    }

    fn from_code(c: u32) -> TokenType {
        match c {
            1 => TokenType::Unknown,
            2 => TokenType::Control,
            3 => TokenType::UserDefined,
            4 => TokenType::Unused,
            5 => TokenType::Byte,
            _ => TokenType::Normal,
        }
    }

    /// Whether SentencePiece looks pieces of this type up when merging
    /// (its `pieces_` map; the others are `reserved_`).
    fn is_mergeable(self) -> bool {
        matches!(
            self,
            TokenType::Normal | TokenType::UserDefined | TokenType::Unused
        )
    }
}

/// Where the pieces and scores are.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// GGUF: `strings` is the data of `tokenizer.ggml.tokens` (each piece a
    /// `u64` length then its bytes), `scores` the `F32` array `tokenizer.ggml.scores`.
    Gguf {
        strings: &'a [u8],
        scores: Array<'a>,
    },
    /// llama2.c `tokenizer.bin`: each record an `f32` score, an `i32` length, the bytes.
    Llama2c { bytes: &'a [u8] },
}

/// A SentencePiece BPE vocabulary borrowed from a GGUF or llama2.c file, with
/// its look-up index in caller memory.
///
/// Build it with [`Tokenizer::load`] (either format, recognised by its
/// magic number; [`Tokenizer::from_gguf`] and [`Tokenizer::from_llama2c`]
/// read one format); encode with [`Tokenizer::encode`], decode with [`Tokenizer::decoder`] or
/// [`Tokenizer::decode`]. It is `Copy`: it only holds borrowed slices.
#[derive(Clone, Copy)]
pub struct Tokenizer<'a> {
    source: Source<'a>,
    /// Per token: `type << TYPE_SHIFT | offset of its record in the source`.
    entries: &'a [u32],
    /// Token ids grouped by the hash bucket of their piece and sorted by
    /// piece bytes (then id) inside a bucket; of identical pieces only the
    /// first mergeable and the first reserved one are kept (see
    /// [`Tokenizer::token_id`]).
    order: &'a [u32],
    /// Per bucket (a power of two of them, plus one): where its ids start
    /// in `order`; bucket `b` is `order[buckets[b]..buckets[b + 1]]`.
    buckets: &'a [u32],
    /// Per byte value: the id of its byte token, or `NONE`.
    byte_ids: &'a [u32],
    /// The automaton that finds USER_DEFINED pieces in a text (empty if
    /// the vocabulary has none).
    user: UserMatcher<'a>,
    bos: u32,
    eos: u32,
    unk: u32,
    add_space_prefix: bool,
    add_bos: bool,
    add_eos: bool,
    /// Whether there is at least one byte token (SentencePiece's `byte_fallback`).
    has_bytes: bool,
    /// Whether any piece is UNUSED (then final pieces may need re-segmenting).
    has_unused: bool,
    /// Longest piece in bytes.
    max_piece_len: usize,
}

impl fmt::Debug for Tokenizer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field(
                "format",
                &match self.source {
                    Source::Gguf { .. } => "GGUF",
                    Source::Llama2c { .. } => "llama2.c",
                },
            )
            .field("n_tokens", &self.n_tokens())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("unk", &self.unk)
            .field("add_space_prefix", &self.add_space_prefix)
            .field("byte_fallback", &self.has_bytes)
            .finish()
    }
}

/// Whether [`Tokenizer::encode`] puts the BOS token (`<s>`) in front of the
/// text's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bos {
    /// Begin with BOS, as a prompt that starts a sequence does (llama2.c's
    /// `run.c` and SentencePiece's `add_bos`).
    Add,
    /// Only the text's own tokens (a piece that continues a sequence).
    None,
}

/// Whether `bytes` start with GGUF's magic number (else they are read as a
/// llama2.c `tokenizer.bin`, which has none).
fn is_gguf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"GGUF")
}

/// Special ids and flags read before the index is finished.
struct Specials {
    bos: u32,
    eos: u32,
    unk: u32,
    add_space_prefix: bool,
    add_bos: bool,
    add_eos: bool,
}

impl<'a> Tokenizer<'a> {
    /// Number of `u32` entries of the index a vocabulary of `n_tokens` tokens
    /// needs, without USER_DEFINED pieces: `2 * n_tokens` (the per-token
    /// entries and the sorted ids), plus the power of two at least
    /// `n_tokens` and one more (the bucket starts), plus 256 (saturating).
    /// 97 025 entries for 32 000 tokens.
    ///
    /// This is the whole index of a llama2.c `tokenizer.bin` and of a GGUF
    /// vocabulary without USER_DEFINED pieces; a GGUF vocabulary with them
    /// needs [`Tokenizer::gguf_index_len`] (which [`Tokenizer::index_len_for`]
    /// gives too).
    pub fn index_len(n_tokens: u32) -> usize {
        (n_tokens as usize)
            .saturating_mul(2)
            .saturating_add(bucket_count(n_tokens as usize))
            .saturating_add(1)
            .saturating_add(BYTE_TABLE)
    }

    /// Number of `u32` entries of the index [`Tokenizer::from_gguf`] needs
    /// for this GGUF's vocabulary: [`Tokenizer::index_len`] of its token
    /// count, plus, when it has USER_DEFINED pieces, `5 * (u + 1) + 1`
    /// where `u` is their total length in bytes (the automaton that finds
    /// them in a text in linear time).
    ///
    /// Errors: those of [`Tokenizer::gguf_token_count`].
    pub fn gguf_index_len(gguf: &Gguf<'a>) -> Result<usize> {
        let n = Self::gguf_token_count(gguf)?;
        let tokens = gguf
            .get_array("tokenizer.ggml.tokens", ValueType::String)?
            .ok_or(Error::MissingMetadata {
                key: "tokenizer.ggml.tokens",
            })?;
        // A wrong type is reported by `from_gguf`; here it only means no
        // USER_DEFINED piece can be read.
        let types = gguf
            .get_array("tokenizer.ggml.token_type", ValueType::I32)
            .ok()
            .flatten();
        Ok(Self::index_len(n).saturating_add(user_matcher_len(tokens, types, n)))
    }

    /// Number of tokens in a GGUF file's vocabulary (the length of
    /// `tokenizer.ggml.tokens`), to size the index for [`Tokenizer::from_gguf`].
    ///
    /// Errors: [`Error::MissingMetadata`] without a vocabulary,
    /// [`Error::BadMetadata`] if it is not an array of strings,
    /// [`Error::BadTokenizer`] if it has 2^32 tokens or more.
    pub fn gguf_token_count(gguf: &Gguf<'a>) -> Result<u32> {
        let tokens = gguf
            .get_array("tokenizer.ggml.tokens", ValueType::String)?
            .ok_or(Error::MissingMetadata {
                key: "tokenizer.ggml.tokens",
            })?;
        u32::try_from(tokens.len).map_err(|_| Error::BadTokenizer {
            reason: "too many tokens",
            index: tokens.len,
        })
    }

    /// Reads the vocabulary of a GGUF file (a whole model, or a vocabulary-only
    /// file without tensors), building the index in `index`, which must hold at
    /// least [`Tokenizer::index_len`]`(n)` entries for the
    /// [`Tokenizer::gguf_token_count`] `n` (extra entries are left alone).
    ///
    /// Keys read: `tokenizer.ggml.model` (must be `"llama"` if present),
    /// `tokenizer.ggml.tokens` and `tokenizer.ggml.scores` (required),
    /// `tokenizer.ggml.token_type` (optional: without it, the BOS/EOS ids are
    /// CONTROL, the unknown id UNKNOWN, `<0xHH>` pieces BYTE, the rest NORMAL),
    /// `tokenizer.ggml.bos_token_id` (default 1), `eos_token_id` (2),
    /// `unknown_token_id` (the first UNKNOWN token, else 0),
    /// `add_space_prefix` (true), `add_bos_token` (true), `add_eos_token` (false).
    ///
    /// Errors: [`Error::BufferTooSmall`] for a short index, [`Error::MissingMetadata`],
    /// [`Error::BadMetadata`] for a key of the wrong type or another tokenizer model,
    /// [`Error::BadTokenizer`] for a scores or types array shorter than the tokens,
    /// an unknown token type, a BYTE token not spelled `<0xHH>`, or a special id
    /// outside the vocabulary.
    pub fn from_gguf(gguf: &Gguf<'a>, index: &'a mut [u32]) -> Result<Tokenizer<'a>> {
        if let Some(model) = gguf.get_str("tokenizer.ggml.model")? {
            if model != b"llama" {
                return Err(Error::BadMetadata {
                    key: Name::new(b"tokenizer.ggml.model"),
                    reason: "only the SentencePiece tokenizer (\"llama\") is supported",
                });
            }
        }
        let n = Self::gguf_token_count(gguf)?;
        let tokens = gguf
            .get_array("tokenizer.ggml.tokens", ValueType::String)?
            .ok_or(Error::MissingMetadata {
                key: "tokenizer.ggml.tokens",
            })?;
        let scores = gguf
            .get_array("tokenizer.ggml.scores", ValueType::F32)?
            .ok_or(Error::MissingMetadata {
                key: "tokenizer.ggml.scores",
            })?;
        if scores.len < n as u64 {
            return Err(Error::BadTokenizer {
                reason: "tokenizer.ggml.scores has fewer entries than tokenizer.ggml.tokens",
                index: scores.len,
            });
        }
        let types = gguf.get_array("tokenizer.ggml.token_type", ValueType::I32)?;
        if let Some(t) = types {
            if t.len < n as u64 {
                return Err(Error::BadTokenizer {
                    reason:
                        "tokenizer.ggml.token_type has fewer entries than tokenizer.ggml.tokens",
                    index: t.len,
                });
            }
        }
        if tokens.data.len() > OFFSET_MASK as usize {
            return Err(Error::BadTokenizer {
                reason: "the vocabulary takes more than 512 MiB",
                index: tokens.data.len() as u64,
            });
        }

        let special = |key: &'static str, default: Option<u32>| -> Result<Option<u32>> {
            match gguf.get_u64(key)? {
                None => Ok(default),
                Some(v) if v < n as u64 => Ok(Some(v as u32)),
                Some(v) => Err(Error::BadTokenizer {
                    reason: match key {
                        "tokenizer.ggml.bos_token_id" => {
                            "the BOS token id is outside the vocabulary"
                        }
                        "tokenizer.ggml.eos_token_id" => {
                            "the EOS token id is outside the vocabulary"
                        }
                        _ => "the unknown token id is outside the vocabulary",
                    },
                    index: v,
                }),
            }
        };
        let bos = special("tokenizer.ggml.bos_token_id", Some(1))?.unwrap_or(1);
        let eos = special("tokenizer.ggml.eos_token_id", Some(2))?.unwrap_or(2);
        let unk = match special("tokenizer.ggml.unknown_token_id", None)? {
            Some(u) => u,
            None => types
                .and_then(|t| (0..n).find(|&i| t.i32_at(i as usize) == Some(2)))
                .unwrap_or(0),
        };
        let specials = Specials {
            bos,
            eos,
            unk,
            add_space_prefix: gguf
                .get_bool("tokenizer.ggml.add_space_prefix")?
                .unwrap_or(true),
            add_bos: gguf
                .get_bool("tokenizer.ggml.add_bos_token")?
                .unwrap_or(true),
            add_eos: gguf
                .get_bool("tokenizer.ggml.add_eos_token")?
                .unwrap_or(false),
        };

        let source = Source::Gguf {
            strings: tokens.data,
            scores,
        };
        let user_len = user_matcher_len(tokens, types, n);
        let (entries, rest) = split_index(index, n, user_len)?;
        let mut strings = tokens.strings();
        for (id, e) in entries.iter_mut().enumerate() {
            let offset = strings.position();
            // `Gguf::parse` validated every string of the array.
            strings.next().ok_or(Error::BadTokenizer {
                reason: "tokenizer.ggml.tokens ends early",
                index: id as u64,
            })?;
            let ty = match types {
                Some(t) => {
                    let raw = t.i32_at(id).ok_or(Error::BadTokenizer {
                        reason: "tokenizer.ggml.token_type ends early",
                        index: id as u64,
                    })?;
                    Some(TokenType::from_gguf(raw).ok_or(Error::BadTokenizer {
                        reason: "unknown token type in tokenizer.ggml.token_type (expected 0 to 6)",
                        index: id as u64,
                    })?)
                }
                None => None,
            };
            *e = pack(offset as u32, ty);
        }
        Self::finish(source, entries, rest, specials, user_len)
    }

    /// The number of `u32` entries of the index [`Tokenizer::load`] needs
    /// for `bytes`: a GGUF file with a vocabulary (a whole model or a
    /// vocabulary-only file), or a llama2.c `tokenizer.bin` read to its
    /// end. The format is recognised by the magic number, as
    /// [`crate::Model::load`] does.
    ///
    /// Errors: [`Error::Truncated`], [`Error::BadMagic`] and the other
    /// errors of [`Gguf::parse`] for a damaged GGUF, and those of
    /// [`Tokenizer::gguf_index_len`] and [`Tokenizer::llama2c_token_count`].
    pub fn index_len_for(bytes: &[u8]) -> Result<usize> {
        if is_gguf(bytes) {
            Tokenizer::gguf_index_len(&Gguf::parse(bytes)?)
        } else {
            Ok(Tokenizer::index_len(Tokenizer::llama2c_token_count(bytes)?))
        }
    }

    /// Reads a tokenizer from the bytes of a GGUF file (its
    /// `tokenizer.ggml.*` vocabulary) or of a llama2.c `tokenizer.bin`
    /// (read to its end), recognised by the magic number as
    /// [`crate::Model::load`] does. `index` needs
    /// [`Tokenizer::index_len_for`]`(bytes)` entries (extra ones are left
    /// alone).
    ///
    /// ```no_run
    /// # fn main() -> llamette::Result<()> {
    /// # let bytes: &[u8] = &[];
    /// use llamette::Tokenizer;
    /// let mut index = vec![0u32; Tokenizer::index_len_for(bytes)?];
    /// let tok = Tokenizer::load(bytes, &mut index)?;
    /// # let _ = tok; Ok(()) }
    /// ```
    ///
    /// To check the tokenizer against a model's vocabulary (and read a
    /// llama2.c file for exactly that many tokens, as llama2.c's `run.c`
    /// does), use [`Tokenizer::load_for_vocab`].
    ///
    /// Errors: those of [`Tokenizer::index_len_for`], [`Tokenizer::from_gguf`]
    /// and [`Tokenizer::from_llama2c`]; never a panic, whatever the bytes.
    pub fn load(bytes: &'a [u8], index: &'a mut [u32]) -> Result<Tokenizer<'a>> {
        if is_gguf(bytes) {
            Self::from_gguf(&Gguf::parse(bytes)?, index)
        } else {
            Self::from_llama2c(bytes, None, index)
        }
    }

    /// The number of tokens in the vocabulary of `bytes` (a GGUF file or a
    /// llama2.c `tokenizer.bin` read to its end), recognised as
    /// [`Tokenizer::load`] does: to compare with a model's vocabulary size
    /// before loading.
    ///
    /// Errors: as [`Tokenizer::index_len_for`].
    pub fn token_count_for(bytes: &[u8]) -> Result<u32> {
        if is_gguf(bytes) {
            Tokenizer::gguf_token_count(&Gguf::parse(bytes)?)
        } else {
            Tokenizer::llama2c_token_count(bytes)
        }
    }

    /// The number of index entries [`Tokenizer::load_for_vocab`] needs for
    /// `bytes` and a model of `n_tokens` tokens: as
    /// [`Tokenizer::index_len_for`], except that a llama2.c file is sized
    /// for `n_tokens` records.
    ///
    /// Errors: as [`Tokenizer::index_len_for`]; for a `tokenizer.bin` too
    /// short to hold `n_tokens` records (8 bytes at least each),
    /// [`Error::TokenizerTooSmall`] before anything is sized by it.
    pub fn index_len_for_vocab(bytes: &[u8], n_tokens: u32) -> Result<usize> {
        if is_gguf(bytes) {
            return Tokenizer::gguf_index_len(&Gguf::parse(bytes)?);
        }
        if n_tokens as u64 * 8 > bytes.len() as u64 {
            return Err(Error::TokenizerTooSmall {
                tokenizer: (bytes.len() / 8) as u32,
                model: n_tokens,
            });
        }
        Ok(Tokenizer::index_len(n_tokens))
    }

    /// [`Tokenizer::load`] for a model whose vocabulary has `n_tokens`
    /// tokens: a llama2.c file is read for exactly that many tokens (bytes
    /// after them are ignored, as llama2.c's `run.c` does), and a tokenizer
    /// with fewer tokens is [`Error::TokenizerTooSmall`]. `index` needs
    /// [`Tokenizer::index_len_for_vocab`]`(bytes, n_tokens)` entries.
    ///
    /// Errors: those of [`Tokenizer::load`], and [`Error::TokenizerTooSmall`].
    pub fn load_for_vocab(
        bytes: &'a [u8],
        n_tokens: u32,
        index: &'a mut [u32],
    ) -> Result<Tokenizer<'a>> {
        let t = if is_gguf(bytes) {
            Self::from_gguf(&Gguf::parse(bytes)?, index)?
        } else {
            Self::from_llama2c(bytes, Some(n_tokens), index)?
        };
        if t.n_tokens() < n_tokens {
            return Err(Error::TokenizerTooSmall {
                tokenizer: t.n_tokens(),
                model: n_tokens,
            });
        }
        Ok(t)
    }

    /// Counts the tokens of a llama2.c `tokenizer.bin` (records up to the end
    /// of the bytes), to size the index for `from_llama2c(bytes, None, ..)`.
    ///
    /// Errors: [`Error::Truncated`] if the header or a record is cut short,
    /// [`Error::BadTokenizer`] for a negative length.
    pub fn llama2c_token_count(bytes: &[u8]) -> Result<u32> {
        let mut pos = llama2c_header(bytes)?;
        let mut n = 0u32;
        while pos < bytes.len() as u64 {
            pos = llama2c_record(bytes, pos, n)?;
            n = n.checked_add(1).ok_or(Error::BadTokenizer {
                reason: "too many tokens",
                index: n as u64,
            })?;
        }
        Ok(n)
    }

    /// Reads a llama2.c `tokenizer.bin`: an `i32` max_token_length, then per
    /// token an `f32` score, an `i32` byte length and the piece bytes (spaces
    /// already as `' '`, bytes as `<0xHH>`, BOS and EOS as `"\n<s>\n"` and
    /// `"\n</s>\n"`).
    ///
    /// With `n_tokens = Some(n)` exactly `n` tokens are read (llama2.c reads the
    /// model's vocabulary size; bytes after them are ignored); with `None`,
    /// records are read up to the end. `index` needs
    /// [`Tokenizer::index_len`] of that count (see
    /// [`Tokenizer::llama2c_token_count`]).
    ///
    /// Ids 0, 1, 2 are UNKNOWN, CONTROL (BOS), CONTROL (EOS); `<0xHH>` pieces
    /// are BYTE tokens; all others NORMAL. A space prefix is added, BOS is added
    /// by default, as llama2.c does.
    ///
    /// Errors: [`Error::TokenizerTooSmall`] if the file holds fewer than `n`
    /// tokens, [`Error::Truncated`] for a record cut short,
    /// [`Error::BadTokenizer`] for a negative length, fewer than 3 tokens, or
    /// more than 512 MiB, [`Error::BufferTooSmall`] for a short index.
    pub fn from_llama2c(
        bytes: &'a [u8],
        n_tokens: Option<u32>,
        index: &'a mut [u32],
    ) -> Result<Tokenizer<'a>> {
        let header = llama2c_header(bytes)?;
        let n = match n_tokens {
            Some(n) => n,
            None => Self::llama2c_token_count(bytes)?,
        };
        if n < 3 {
            return Err(Error::BadTokenizer {
                reason: "a llama2.c tokenizer needs at least <unk>, <s> and </s>",
                index: n as u64,
            });
        }
        let (entries, rest) = split_index(index, n, 0)?;
        let mut pos = header;
        for (id, e) in entries.iter_mut().enumerate() {
            if pos == bytes.len() as u64 {
                return Err(Error::TokenizerTooSmall {
                    tokenizer: id as u32,
                    model: n,
                });
            }
            let next = llama2c_record(bytes, pos, id as u32)?;
            if pos > OFFSET_MASK as u64 {
                return Err(Error::BadTokenizer {
                    reason: "the vocabulary takes more than 512 MiB",
                    index: id as u64,
                });
            }
            *e = pack(pos as u32, None);
            pos = next;
        }
        let specials = Specials {
            bos: 1,
            eos: 2,
            unk: 0,
            add_space_prefix: true,
            add_bos: true,
            add_eos: false,
        };
        Self::finish(Source::Llama2c { bytes }, entries, rest, specials, 0)
    }

    /// Completes loading once `entries` hold the record offsets (and the types,
    /// if the file has them): infers missing types, checks BYTE pieces, fills
    /// the byte table, sorts the ids into the look-up index and builds the
    /// USER_DEFINED automaton in the last `user_len` entries of `rest`.
    ///
    /// Time: `O(S log n)` for `n` pieces of `S` bytes in all, whatever they
    /// hold (identical pieces, pieces whose hashes collide): the ids are
    /// bucketed by hash with a counting sort, then sorted inside each bucket
    /// by an `O(k log k)` comparison sort, where each comparison reads at
    /// most the shorter piece.
    fn finish(
        source: Source<'a>,
        entries: &'a mut [u32],
        rest: &'a mut [u32],
        s: Specials,
        user_len: usize,
    ) -> Result<Tokenizer<'a>> {
        let n = entries.len();
        for (what, id) in [("BOS", s.bos), ("EOS", s.eos), ("unknown", s.unk)] {
            if id as usize >= n {
                return Err(Error::BadTokenizer {
                    reason: match what {
                        "BOS" => "the BOS token id is outside the vocabulary",
                        "EOS" => "the EOS token id is outside the vocabulary",
                        _ => "the unknown token id is outside the vocabulary",
                    },
                    index: id as u64,
                });
            }
        }
        let n_buckets = bucket_count(n);
        let (order, rest) = rest.split_at_mut(n);
        let (buckets, rest) = rest.split_at_mut(n_buckets + 1);
        let (byte_ids, rest) = rest.split_at_mut(BYTE_TABLE);
        let user_area = &mut rest[..user_len];
        byte_ids.fill(NONE);
        buckets.fill(0);
        let mask = n_buckets - 1;
        let mut has_unused = false;
        let mut max_piece_len = 0usize;
        for (id, e) in entries.iter_mut().enumerate() {
            let id = id as u32;
            let piece = piece_of(source, *e);
            max_piece_len = max_piece_len.max(piece.len());
            buckets[hash(piece.iter().copied()) as usize & mask] += 1;
            let ty = if *e >> TYPE_SHIFT == UNTYPED {
                // No types in the file: infer them as llama.cpp and llama2.c do.
                let ty = if id == s.unk {
                    TokenType::Unknown
                } else if id == s.bos || id == s.eos {
                    TokenType::Control
                } else if parse_byte_piece(piece).is_some() {
                    TokenType::Byte
                } else {
                    TokenType::Normal
                };
                *e = pack(*e & OFFSET_MASK, Some(ty));
                ty
            } else {
                TokenType::from_code(*e >> TYPE_SHIFT)
            };
            match ty {
                TokenType::Byte => {
                    let b = parse_byte_piece(piece).ok_or(Error::BadTokenizer {
                        reason: "a BYTE token's piece is not <0xHH>",
                        index: id as u64,
                    })?;
                    if byte_ids[b as usize] == NONE {
                        byte_ids[b as usize] = id;
                    }
                }
                TokenType::Unused => has_unused = true,
                _ => {}
            }
        }
        let entries: &'a [u32] = entries;
        let piece = |id: u32| piece_of(source, entries[id as usize]);
        let mergeable =
            |id: u32| TokenType::from_code(entries[id as usize] >> TYPE_SHIFT).is_mergeable();

        // Counting sort by bucket: `buckets[b]` becomes the end of bucket
        // `b`, then (ids placed from the last) its start.
        let mut end = 0u32;
        for b in buckets[..n_buckets].iter_mut() {
            end += *b;
            *b = end;
        }
        buckets[n_buckets] = n as u32;
        for id in (0..n as u32).rev() {
            let b = hash(piece(id).iter().copied()) as usize & mask;
            buckets[b] -= 1;
            order[buckets[b] as usize] = id;
        }
        // Sort each bucket by piece, then id; keep of identical pieces only
        // the first mergeable and the first reserved one (first wins), so
        // that a look-up meets at most two entries with its piece.
        let mut kept = 0usize;
        for b in 0..n_buckets {
            let (start, stop) = (buckets[b] as usize, buckets[b + 1] as usize);
            buckets[b] = kept as u32;
            let ids = &mut order[start..stop];
            if ids.len() > 1 {
                ids.sort_unstable_by(|&x, &y| piece_order(piece(x), piece(y)).then(x.cmp(&y)));
            }
            let mut i = start;
            while i < stop {
                let p = piece(order[i]);
                let (mut have_mergeable, mut have_reserved) = (false, false);
                while i < stop && piece(order[i]) == p {
                    let id = order[i];
                    let have = if mergeable(id) {
                        &mut have_mergeable
                    } else {
                        &mut have_reserved
                    };
                    if !*have {
                        *have = true;
                        // `kept <= i`: this moves entries down, never over unread ones.
                        order[kept] = id;
                        kept += 1;
                    }
                    i += 1;
                }
            }
        }
        buckets[n_buckets] = kept as u32;
        order[kept..].fill(NONE);
        let order: &'a [u32] = order;
        let buckets: &'a [u32] = buckets;

        let user = UserMatcher::build(
            user_area,
            order[..kept].iter().copied().filter(|&id| {
                TokenType::from_code(entries[id as usize] >> TYPE_SHIFT) == TokenType::UserDefined
            }),
            piece,
        );
        let has_bytes = byte_ids.iter().any(|&b| b != NONE);
        Ok(Tokenizer {
            source,
            entries,
            order,
            buckets,
            byte_ids,
            user,
            bos: s.bos,
            eos: s.eos,
            unk: s.unk,
            add_space_prefix: s.add_space_prefix,
            add_bos: s.add_bos,
            add_eos: s.add_eos,
            has_bytes,
            has_unused,
            max_piece_len,
        })
    }

    // ------------------------------------------------------------------
    // Accessors
    // ------------------------------------------------------------------

    /// Number of tokens in the vocabulary.
    pub fn n_tokens(&self) -> u32 {
        self.entries.len() as u32
    }

    /// The BOS (beginning of sequence) id, `<s>`.
    pub fn bos(&self) -> u32 {
        self.bos
    }

    /// The EOS (end of sequence) id, `</s>`.
    pub fn eos(&self) -> u32 {
        self.eos
    }

    /// The unknown token's id, `<unk>`.
    pub fn unk(&self) -> u32 {
        self.unk
    }

    /// Whether the file asks for a BOS in front of a prompt (GGUF
    /// `tokenizer.ggml.add_bos_token`, default true; always true for llama2.c).
    /// [`Tokenizer::encode`] takes the choice as an argument.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether the file asks for an EOS after a prompt (GGUF
    /// `tokenizer.ggml.add_eos_token`, default false).
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// Whether encoding prepends a space to a non-empty text (GGUF
    /// `tokenizer.ggml.add_space_prefix`, default true).
    pub fn add_space_prefix(&self) -> bool {
        self.add_space_prefix
    }

    /// Whether unknown characters become byte tokens (the vocabulary has byte
    /// tokens) rather than `<unk>`.
    pub fn byte_fallback(&self) -> bool {
        self.has_bytes
    }

    /// The raw piece of token `id`, exactly as in the file: with `'▁'` for
    /// spaces in GGUF, `' '` in llama2.c files; byte tokens as `<0xHH>`;
    /// llama2.c's BOS/EOS as `"\n<s>\n"`/`"\n</s>\n"`. It may not be UTF-8.
    ///
    /// Errors: [`Error::UnknownToken`] if `id >= n_tokens()`.
    pub fn piece(&self, id: u32) -> Result<&'a [u8]> {
        Ok(piece_of(self.source, self.entry(id)?))
    }

    /// The score (merge priority) of token `id`.
    ///
    /// Errors: [`Error::UnknownToken`] if `id >= n_tokens()`.
    pub fn score(&self, id: u32) -> Result<f32> {
        self.entry(id)?;
        Ok(self.score_of(id))
    }

    /// The type of token `id`.
    ///
    /// Errors: [`Error::UnknownToken`] if `id >= n_tokens()`.
    pub fn token_type(&self, id: u32) -> Result<TokenType> {
        Ok(TokenType::from_code(self.entry(id)? >> TYPE_SHIFT))
    }

    /// The byte value of a byte token (`<0x0A>` gives `Some(10)`); `None` for
    /// any other token, including ids outside the vocabulary.
    pub fn byte_value(&self, id: u32) -> Option<u8> {
        let e = *self.entries.get(id as usize)?;
        if TokenType::from_code(e >> TYPE_SHIFT) == TokenType::Byte {
            parse_byte_piece(piece_of(self.source, e))
        } else {
            None
        }
    }

    /// Whether token `id` decodes to nothing: BOS, EOS, `<unk>` and every
    /// CONTROL or UNKNOWN token (and ids outside the vocabulary).
    pub fn is_control(&self, id: u32) -> bool {
        match self.entries.get(id as usize) {
            None => true,
            Some(&e) => {
                id == self.bos
                    || id == self.eos
                    || id == self.unk
                    || matches!(
                        TokenType::from_code(e >> TYPE_SHIFT),
                        TokenType::Control | TokenType::Unknown
                    )
            }
        }
    }

    /// The id of the token whose raw piece is exactly `piece` (any type; the
    /// lowest id if several), e.g. `token_id(b"<s>")`. Pieces of a GGUF
    /// vocabulary spell spaces `'▁'`, those of a llama2.c one `' '`.
    ///
    /// Duplicate pieces: the first wins. Of several tokens with the same
    /// piece, encoding uses the lowest id among the NORMAL, USER_DEFINED and
    /// UNUSED ones (and, where SentencePiece's `PieceToId` prefers reserved
    /// pieces, the lowest CONTROL, UNKNOWN or BYTE one); the others still
    /// decode, but no text encodes to them. (SentencePiece refuses such a
    /// model; llama.cpp lets the last one win.)
    pub fn token_id(&self, piece: &[u8]) -> Option<u32> {
        let run = self.find(hash(piece.iter().copied()), |p| piece_order(p, piece));
        run.first().copied()
    }

    fn entry(&self, id: u32) -> Result<u32> {
        self.entries
            .get(id as usize)
            .copied()
            .ok_or(Error::UnknownToken {
                id,
                vocab: self.n_tokens(),
            })
    }

    fn piece_unchecked(&self, id: u32) -> &'a [u8] {
        piece_of(
            self.source,
            self.entries.get(id as usize).copied().unwrap_or(0),
        )
    }

    fn type_unchecked(&self, id: u32) -> TokenType {
        TokenType::from_code(self.entries.get(id as usize).copied().unwrap_or(0) >> TYPE_SHIFT)
    }

    fn score_of(&self, id: u32) -> f32 {
        let s = match self.source {
            Source::Gguf { scores, .. } => scores.f32_at(id as usize),
            Source::Llama2c { bytes } => {
                let off =
                    (self.entries.get(id as usize).copied().unwrap_or(0) & OFFSET_MASK) as usize;
                bytes
                    .get(off..off + 4)
                    .and_then(|b| b.try_into().ok())
                    .map(f32::from_le_bytes)
            }
        };
        s.unwrap_or(0.0)
    }

    /// The space symbol of the vocabulary: `'▁'` for GGUF, `' '` for llama2.c.
    fn space(&self) -> &'static [u8] {
        match self.source {
            Source::Gguf { .. } => SPACE_SYMBOL,
            Source::Llama2c { .. } => b" ",
        }
    }

    // ------------------------------------------------------------------
    // Encoding
    // ------------------------------------------------------------------

    /// An upper bound on the number of ids [`Tokenizer::encode`] returns for a
    /// text of `text_len_bytes` bytes, BOS included: `3 * len + 4` (every byte
    /// a space that becomes the three byte tokens of `'▁'`, plus the dummy
    /// prefix and BOS).
    pub fn max_tokens(text_len_bytes: usize) -> usize {
        text_len_bytes.saturating_mul(3).saturating_add(4)
    }

    /// The number of `u32` entries [`Tokenizer::encode`] needs in `work` for a
    /// text of `text_len_bytes` bytes: `6 * (len + 1)` (saturating). It depends
    /// only on the length, and is at least [`Tokenizer::max_tokens`].
    pub fn encode_work_len(text_len_bytes: usize) -> usize {
        text_len_bytes.saturating_add(1).saturating_mul(6)
    }

    /// Encodes `text` as SentencePiece does (see the module documentation),
    /// with the BOS token in front for [`Bos::Add`], and returns the ids:
    /// they are written to the start of `work` (the rest of `work` is
    /// scratch space), and the slice returned is that prefix.
    ///
    /// An empty text gives no tokens (only the BOS if asked).
    ///
    /// Errors: [`Error::BufferTooSmall`] if `work` has fewer than
    /// [`Tokenizer::encode_work_len`]`(text.len())` entries;
    /// [`Error::InvalidArgument`] for a text of 2 GiB or more.
    pub fn encode<'w>(&self, text: &str, bos: Bos, work: &'w mut [u32]) -> Result<&'w [u32]> {
        let n = self.encode_into(text, bos == Bos::Add, work)?;
        Ok(&work[..n])
    }

    /// [`Tokenizer::encode`], returning the number of ids at the start of `work`.
    fn encode_into(&self, text: &str, bos: bool, work: &mut [u32]) -> Result<usize> {
        let len = text.len();
        let needed = Self::encode_work_len(len);
        if work.len() < needed {
            return Err(Error::BufferTooSmall {
                what: "tokenizer work buffer (u32 entries)",
                needed,
                got: work.len(),
            });
        }
        if len >= (FROZEN - 2) as usize {
            return Err(Error::InvalidArgument {
                what: "a text to encode must be shorter than 2 GiB",
            });
        }
        if len == 0 {
            if bos {
                work[0] = self.bos;
                return Ok(1);
            }
            return Ok(0);
        }
        let text = text.as_bytes();
        let n = len + 1;
        let (front, tail) = work[..6 * n].split_at_mut(4 * n);
        let (start, next) = tail.split_at_mut(n);
        let count;
        {
            let (key, r) = front.split_at_mut(n);
            let (heap, r) = r.split_at_mut(n);
            let (hpos, prev) = r.split_at_mut(n);
            let mut sy = Symbols {
                text,
                ext_end: n as u32,
                count: 0,
                start,
                next,
            };
            // `key` is free until the agenda starts: it holds the USER_DEFINED matches.
            let user: &[u32] = if self.user.is_empty() {
                &[]
            } else {
                key.fill(0);
                self.user_matches(&sy, key);
                &*key
            };
            self.split_symbols(&mut sy, prev, user);
            count = sy.count;
            let mut agenda = Agenda {
                heap,
                pos: hpos,
                key,
                len: 0,
            };
            agenda.pos.fill(NONE);
            let mut i = 0u32;
            while i != NONE {
                self.offer(&sy, &mut agenda, i);
                i = sy.next[i as usize];
            }
            self.merge(&mut sy, prev, &mut agenda);
        }
        // Emit: the first 4n entries are free now (they held the merge state);
        // `start` and `next` (with parent links for merged symbols) stay.
        let sy = Symbols {
            text,
            ext_end: n as u32,
            count,
            start,
            next,
        };
        let mut out = Out {
            buf: front,
            len: 0,
            prev_unk: false,
        };
        if bos {
            out.push(self.bos)?;
        }
        let mut i = 0u32;
        while i != NONE {
            let hi = sy.next[i as usize];
            let bound = if hi == NONE { sy.count } else { hi };
            self.emit(&sy, i, bound, &mut out, 0)?;
            i = hi;
        }
        Ok(out.len)
    }

    /// Splits the normalized text into initial symbols: the dummy prefix, then
    /// one per character (or per USER_DEFINED piece, frozen). `user` holds,
    /// per ext position, the normalized length of the longest USER_DEFINED
    /// piece starting there (see [`Tokenizer::user_matches`]), or is empty
    /// when the vocabulary has none.
    fn split_symbols(&self, sy: &mut Symbols<'_, '_>, prev: &mut [u32], user: &[u32]) {
        let mut p: u32 = if self.add_space_prefix { 0 } else { 1 };
        let mut count = 0usize;
        while p < sy.ext_end {
            let mut q = self.next_char(sy, p).0;
            let mut flags = 0;
            let want = user.get(p as usize).copied().unwrap_or(0) as usize;
            if want > 0 {
                // Walk to where the piece ends: each position is walked once,
                // as the next symbol starts there.
                let (mut end, mut len) = (p, 0usize);
                while len < want && end < sy.ext_end {
                    let (e, w) = self.next_char(sy, end);
                    end = e;
                    len += w;
                }
                if len == want {
                    q = end;
                    flags = FROZEN;
                }
            }
            sy.start[count] = p | flags;
            prev[count] = if count == 0 { NONE } else { count as u32 - 1 };
            sy.next[count] = count as u32 + 1;
            count += 1;
            p = q.min(sy.ext_end);
        }
        if count > 0 {
            sy.next[count - 1] = NONE;
        }
        sy.count = count as u32;
    }

    /// The ext position after the character at ext position `p`, and the
    /// length of its normalized bytes.
    fn next_char(&self, sy: &Symbols<'_, '_>, p: u32) -> (u32, usize) {
        if p == 0 {
            return (1, self.space().len());
        }
        let w = char_len(sy.text.get(p as usize - 1).copied().unwrap_or(0));
        let ch = sy
            .text
            .get(p as usize - 1..p as usize - 1 + w)
            .unwrap_or(&[]);
        let norm = if ch == b" " || ch == SPACE_SYMBOL {
            self.space().len()
        } else {
            w
        };
        (p + w as u32, norm)
    }

    /// Fills `best[p]`, for every ext position `p` where a character starts,
    /// with the normalized length of the longest USER_DEFINED piece that
    /// starts there (0 if none): one right-to-left pass of the automaton
    /// over the normalized text, `O(len)` steps whatever the pieces.
    fn user_matches(&self, sy: &Symbols<'_, '_>, best: &mut [u32]) {
        let narrow = matches!(self.source, Source::Llama2c { .. });
        let mut state = 0u32;
        let mut i = sy.text.len();
        while i > 0 {
            let mut s = i - 1;
            while s > 0 && sy.text[s] & 0xC0 == 0x80 {
                s -= 1;
            }
            let ch = &sy.text[s..i];
            let norm: &[u8] = if ch == b" " {
                self.space()
            } else if narrow && ch == SPACE_SYMBOL {
                b" "
            } else {
                ch
            };
            for &b in norm.iter().rev() {
                state = self.user.step(state, b);
            }
            if let Some(slot) = best.get_mut(s + 1) {
                *slot = self.user.longest(state);
            }
            i = s;
        }
        if self.add_space_prefix {
            for &b in self.space().iter().rev() {
                state = self.user.step(state, b);
            }
            if let Some(slot) = best.get_mut(0) {
                *slot = self.user.longest(state);
            }
        }
    }

    /// The longest USER_DEFINED piece starting at ext position `p`, as the ext
    /// position where it ends: the obvious way, `O(L^2)` per position for
    /// pieces of up to `L` bytes; the reference [`Tokenizer::user_matches`]
    /// is tested against.
    #[cfg(all(test, feature = "std"))]
    fn match_user_defined_naive(&self, sy: &Symbols<'_, '_>, p: u32) -> Option<u32> {
        let mut best = None;
        let mut q = p;
        let mut norm_len = 0usize;
        while q < sy.ext_end {
            // Advance q by one character and account for its normalized length.
            if q == 0 {
                norm_len += self.space().len();
                q = 1;
            } else {
                let b = sy.text.get(q as usize - 1).copied().unwrap_or(0);
                let w = char_len(b);
                let ch = sy
                    .text
                    .get(q as usize - 1..q as usize - 1 + w)
                    .unwrap_or(&[]);
                norm_len += if ch == b" " || ch == SPACE_SYMBOL {
                    self.space().len()
                } else {
                    w
                };
                q += w as u32;
            }
            if norm_len > self.max_piece_len {
                break;
            }
            if let Some(id) = self.lookup(sy, p, q, Lookup::Mergeable) {
                if self.type_unchecked(id) == TokenType::UserDefined {
                    best = Some(q);
                }
            }
        }
        best
    }

    /// Puts the pair of symbol `a` and the next one in the agenda if it
    /// spells a mergeable piece.
    fn offer(&self, sy: &Symbols<'_, '_>, agenda: &mut Agenda<'_>, a: u32) {
        let b = sy.next[a as usize];
        if b == NONE {
            return;
        }
        let (sa, sb) = (sy.start[a as usize], sy.start[b as usize]);
        if sa & FROZEN != 0 || sb & FROZEN != 0 {
            return;
        }
        if let Some(id) = self.lookup(sy, sa, sy.end(b), Lookup::Mergeable) {
            agenda.push(a, score_key(self.score_of(id)));
        }
    }

    /// The BPE merge loop: merge the best pair until no pair is a piece.
    fn merge(&self, sy: &mut Symbols<'_, '_>, prev: &mut [u32], agenda: &mut Agenda<'_>) {
        while agenda.len > 0 {
            let i = agenda.heap[0];
            let j = sy.next[i as usize];
            agenda.remove(i);
            if j == NONE {
                // Cannot happen: a symbol in the agenda has a right neighbour.
                continue;
            }
            agenda.remove(j);
            let k = sy.next[j as usize];
            sy.next[i as usize] = k;
            if k != NONE {
                prev[k as usize] = i;
            }
            // `j` is now inside `i`: its `next` becomes a link to its parent,
            // for re-segmenting UNUSED pieces.
            sy.next[j as usize] = i;
            self.offer(sy, agenda, i);
            let p = prev[i as usize];
            if p != NONE {
                agenda.remove(p);
                self.offer(sy, agenda, p);
            }
        }
    }

    /// Emits the ids of symbol `i` (covering symbol indices `i..bound`).
    fn emit(
        &self,
        sy: &Symbols<'_, '_>,
        i: u32,
        bound: u32,
        out: &mut Out<'_>,
        depth: u32,
    ) -> Result<()> {
        let s = sy.start[i as usize] & !FROZEN;
        let e = if bound >= sy.count {
            sy.ext_end
        } else {
            sy.start[bound as usize] & !FROZEN
        };
        match self.lookup(sy, s, e, Lookup::Final) {
            Some(id) => {
                if self.has_unused
                    && depth < MAX_RESEGMENT_DEPTH
                    && self.type_unchecked(id) == TokenType::Unused
                {
                    // The last symbol merged into `i` splits it in two.
                    if let Some(j) = (i + 1..bound).rev().find(|&j| sy.next[j as usize] == i) {
                        self.emit(sy, i, j, out, depth + 1)?;
                        return self.emit(sy, j, bound, out, depth + 1);
                    }
                }
                out.prev_unk = false;
                out.push(id)
            }
            None if self.has_bytes => {
                out.prev_unk = false;
                for b in self.norm(sy, s, e) {
                    let id = self.byte_ids[b as usize];
                    out.push(if id == NONE { self.unk } else { id })?;
                }
                Ok(())
            }
            None => {
                // SentencePiece merges a run of unknown symbols into one <unk>.
                if !out.prev_unk {
                    out.push(self.unk)?;
                }
                out.prev_unk = true;
                Ok(())
            }
        }
    }

    /// The normalized bytes of ext range `s..e`.
    fn norm<'t>(&self, sy: &Symbols<'t, '_>, s: u32, e: u32) -> Norm<'t> {
        let (pending, from) = if s == 0 {
            (self.space(), 0)
        } else {
            (&[][..], s as usize - 1)
        };
        let to = (e as usize).saturating_sub(1);
        Norm {
            pending,
            text: sy.text.get(from..to).unwrap_or(&[]),
            space: self.space(),
            narrow: matches!(self.source, Source::Llama2c { .. }),
        }
    }

    /// Finds the piece spelled by the normalized ext range `s..e`.
    fn lookup(&self, sy: &Symbols<'_, '_>, s: u32, e: u32, how: Lookup) -> Option<u32> {
        // Spell the candidate into a stack buffer; a candidate longer than
        // every piece matches none.
        let mut buf = [0u8; LOOKUP_BUF];
        let mut n = 0usize;
        for b in self.norm(sy, s, e) {
            if n == self.max_piece_len {
                return None;
            }
            if n == LOOKUP_BUF {
                // Only for vocabularies with pieces longer than the buffer.
                let norm = || self.norm(sy, s, e);
                let len = norm().count();
                return self.lookup_in(
                    hash(norm()),
                    |p| {
                        p.len()
                            .cmp(&len)
                            .then_with(|| p.iter().copied().cmp(norm()))
                    },
                    how,
                );
            }
            buf[n] = b;
            n += 1;
        }
        let key = &buf[..n];
        self.lookup_in(hash(key.iter().copied()), |p| piece_order(p, key), how)
    }

    /// Finds, among the pieces of hash `h` that `cmp` finds equal, the one
    /// `how` asks for.
    fn lookup_in(
        &self,
        h: u32,
        cmp: impl Fn(&[u8]) -> core::cmp::Ordering,
        how: Lookup,
    ) -> Option<u32> {
        let run = self.find(h, cmp);
        let is_mergeable = |id: &u32| self.type_unchecked(*id).is_mergeable();
        match how {
            Lookup::Mergeable => run.iter().copied().find(is_mergeable),
            // SentencePiece's PieceToId looks in the reserved pieces first.
            Lookup::Final => run
                .iter()
                .copied()
                .find(|id| !is_mergeable(id))
                .or(run.first().copied()),
        }
    }

    /// The ids (at most two: the first mergeable and the first reserved
    /// token) whose piece `cmp` finds equal (`cmp` orders pieces as
    /// [`piece_order`]), in the bucket of hash `h`: a binary search,
    /// `O(log n)` comparisons even when every piece fell into one bucket.
    #[inline]
    fn find(&self, h: u32, cmp: impl Fn(&[u8]) -> core::cmp::Ordering) -> &'a [u32] {
        let b = h as usize & self.buckets.len().saturating_sub(2);
        let (start, stop) = match (self.buckets.get(b), self.buckets.get(b + 1)) {
            (Some(&s), Some(&e)) => (s as usize, e as usize),
            _ => return &[],
        };
        let ids = self.order.get(start..stop).unwrap_or(&[]);
        let lo = if ids.len() <= 4 {
            // The usual bucket (fewer than one id on average): a scan.
            match ids
                .iter()
                .position(|&id| !cmp(self.piece_unchecked(id)).is_lt())
            {
                Some(k) => k,
                None => return &[],
            }
        } else {
            ids.partition_point(|&id| cmp(self.piece_unchecked(id)).is_lt())
        };
        let mut hi = lo;
        while hi < ids.len() && hi < lo + 2 && cmp(self.piece_unchecked(ids[hi])).is_eq() {
            hi += 1;
        }
        &ids[lo..hi]
    }

    // ------------------------------------------------------------------
    // Decoding
    // ------------------------------------------------------------------

    /// A streaming decoder over this vocabulary.
    pub fn decoder(&self) -> Decoder<'_, 'a> {
        Decoder::new(self)
    }

    /// Decodes `ids` into `out` and returns the text written (see [`Decoder`]
    /// for the rules; an incomplete character at the end becomes U+FFFD).
    ///
    /// Errors: [`Error::UnknownToken`] for an id outside the vocabulary,
    /// [`Error::BufferTooSmall`] (with the full length needed) if the text
    /// does not fit in `out`.
    pub fn decode<'o>(&self, ids: &[u32], out: &'o mut [u8]) -> Result<&'o str> {
        let mut len = 0usize;
        let mut fits = true;
        {
            let mut write = |s: &str| {
                let end = len + s.len();
                if fits && end <= out.len() {
                    out[len..end].copy_from_slice(s.as_bytes());
                } else {
                    fits = false;
                }
                len = end;
            };
            let mut d = self.decoder();
            for &id in ids {
                d.push(id, &mut write)?;
            }
            d.flush(&mut write);
        }
        if !fits {
            return Err(Error::BufferTooSmall {
                what: "decoded text (bytes)",
                needed: len,
                got: out.len(),
            });
        }
        // Every chunk written was a `&str`, so this cannot fail.
        core::str::from_utf8(&out[..len]).map_err(|_| Error::InvalidArgument {
            what: "decoded text is not UTF-8",
        })
    }

    /// What llama2.c's `run.c` prints for token `id` after token `prev`, for
    /// output byte-identical to it: the piece with one leading space removed
    /// when `prev` is BOS, a byte token as its raw byte, and nothing at all
    /// when the result is a single byte that is neither printable ASCII nor
    /// whitespace (`safe_printf`'s rule, see [`safe_printf_skips`]). Unlike
    /// [`Decoder`], control tokens print their raw piece (run.c prints
    /// `"\n</s>\n"` for EOS from a `tokenizer.bin`; a GGUF's EOS prints
    /// `"</s>"`), and the bytes of a multi-byte character split over byte
    /// tokens are all skipped, as run.c does. `'▁'` in a GGUF piece is printed
    /// as `' '`.
    ///
    /// `out` receives the bytes in one or more chunks; they need not be UTF-8.
    ///
    /// Errors: [`Error::UnknownToken`] if `id` is outside the vocabulary.
    pub fn llama2c_piece(&self, prev: u32, id: u32, mut out: impl FnMut(&[u8])) -> Result<()> {
        let mut piece = self.piece(id)?;
        if let Some(b) = self.byte_value(id) {
            if !safe_printf_skips(&[b]) {
                out(&[b]);
            }
            return Ok(());
        }
        if prev == self.bos {
            if let Some(rest) = piece.strip_prefix(self.space()) {
                piece = rest;
            } else if let Some(rest) = piece.strip_prefix(b" ") {
                piece = rest;
            }
        }
        if safe_printf_skips(piece) {
            return Ok(());
        }
        for_each_space_split(piece, self.space(), |chunk, space| {
            if !chunk.is_empty() {
                out(chunk);
            }
            if space {
                out(b" ");
            }
        });
        Ok(())
    }
}

/// Whether llama2.c's `safe_printf` prints nothing for `piece`: it is empty, or
/// it is a single byte that is neither printable ASCII (`isprint`, 0x20 to
/// 0x7E) nor whitespace (`isspace`: space, `\t`, `\n`, `\v`, `\f`, `\r`) in
/// the C locale. Bytes 0x80 and up are skipped, so run.c never prints a
/// character that was encoded as byte tokens.
pub fn safe_printf_skips(piece: &[u8]) -> bool {
    match piece {
        [] => true,
        [b] => !((0x20..=0x7E).contains(b) || matches!(b, b'\t' | b'\n' | 0x0B | 0x0C | b'\r')),
        _ => false,
    }
}

/// Which pieces a look-up may return.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// Only NORMAL, USER_DEFINED and UNUSED pieces (SentencePiece's `pieces_`).
    Mergeable,
    /// Any piece, reserved ones first (SentencePiece's `PieceToId`).
    Final,
}

/// The symbols of a text being encoded, in "ext" coordinates: position 0 is
/// the dummy prefix, position `i + 1` is byte `i` of the text.
struct Symbols<'t, 'w> {
    text: &'t [u8],
    /// `text.len() + 1`.
    ext_end: u32,
    /// The number of initial symbols.
    count: u32,
    /// Per symbol: its first ext position, `| FROZEN` for a USER_DEFINED symbol.
    start: &'w mut [u32],
    /// Per live symbol: the next live symbol or `NONE`; per merged (dead)
    /// symbol: the symbol it was merged into.
    next: &'w mut [u32],
}

impl Symbols<'_, '_> {
    /// One past the last ext position of live symbol `i`.
    fn end(&self, i: u32) -> u32 {
        match self.next[i as usize] {
            NONE => self.ext_end,
            j => self.start[j as usize] & !FROZEN,
        }
    }
}

/// Where encoded ids go: the front of the work buffer.
struct Out<'w> {
    buf: &'w mut [u32],
    len: usize,
    /// Whether the last id came from an unknown symbol (not byte fallback).
    prev_unk: bool,
}

impl Out<'_> {
    fn push(&mut self, id: u32) -> Result<()> {
        // The work-length contract makes this impossible to exceed; never panic anyway.
        let slot = self.buf.get_mut(self.len).ok_or(Error::BufferTooSmall {
            what: "tokenizer output",
            needed: self.len + 1,
            got: self.len,
        })?;
        *slot = id;
        self.len += 1;
        Ok(())
    }
}

/// A binary max-heap of symbols ordered by the score of the pair they start
/// (then by position, leftmost first), with each symbol's place in `pos` so
/// that any symbol can be removed.
struct Agenda<'w> {
    heap: &'w mut [u32],
    /// Per symbol: its place in `heap`, or `NONE`.
    pos: &'w mut [u32],
    /// Per symbol in the heap: the [`score_key`] of its pair.
    key: &'w mut [u32],
    len: usize,
}

impl Agenda<'_> {
    /// Whether symbol `a`'s pair goes before symbol `b`'s: higher score, then
    /// further left (SentencePiece's `SymbolPairComparator`).
    #[inline]
    fn before(&self, a: u32, b: u32) -> bool {
        let (ka, kb) = (self.key[a as usize], self.key[b as usize]);
        ka > kb || (ka == kb && a < b)
    }

    fn place(&mut self, k: usize, sym: u32) {
        self.heap[k] = sym;
        self.pos[sym as usize] = k as u32;
    }

    fn sift_up(&mut self, mut k: usize) {
        let sym = self.heap[k];
        while k > 0 {
            let parent = (k - 1) / 2;
            let p = self.heap[parent];
            if !self.before(sym, p) {
                break;
            }
            self.place(k, p);
            k = parent;
        }
        self.place(k, sym);
    }

    fn sift_down(&mut self, mut k: usize) {
        let sym = self.heap[k];
        loop {
            let l = 2 * k + 1;
            if l >= self.len {
                break;
            }
            let r = l + 1;
            let c = if r < self.len && self.before(self.heap[r], self.heap[l]) {
                r
            } else {
                l
            };
            if !self.before(self.heap[c], sym) {
                break;
            }
            let child = self.heap[c];
            self.place(k, child);
            k = c;
        }
        self.place(k, sym);
    }

    /// Adds `sym` (not in the heap) with key `key`.
    fn push(&mut self, sym: u32, key: u32) {
        self.key[sym as usize] = key;
        let k = self.len;
        self.len += 1;
        self.place(k, sym);
        self.sift_up(k);
    }

    /// Removes `sym` if it is in the heap.
    fn remove(&mut self, sym: u32) {
        let k = self.pos[sym as usize];
        if k == NONE {
            return;
        }
        let k = k as usize;
        self.pos[sym as usize] = NONE;
        self.len -= 1;
        if k == self.len {
            return;
        }
        let last = self.heap[self.len];
        self.place(k, last);
        self.sift_down(k);
        let k = self.pos[last as usize] as usize;
        self.sift_up(k);
    }
}

/// The normalized bytes of a range of text: an optional pending expansion
/// (the dummy prefix), then the text with `' '` as the space symbol (and, for
/// llama2.c vocabularies, `'▁'` as `' '`).
#[derive(Clone)]
struct Norm<'t> {
    pending: &'static [u8],
    text: &'t [u8],
    space: &'static [u8],
    /// llama2.c vocabulary: the space symbol is `' '` and `'▁'` maps to it.
    narrow: bool,
}

impl Iterator for Norm<'_> {
    type Item = u8;

    #[inline]
    fn next(&mut self) -> Option<u8> {
        if let Some((&b, rest)) = self.pending.split_first() {
            self.pending = rest;
            return Some(b);
        }
        let (&b, rest) = self.text.split_first()?;
        self.text = rest;
        if b == b' ' {
            if let Some((&first, more)) = self.space.split_first() {
                self.pending = more;
                return Some(first);
            }
        } else if self.narrow && b == SPACE_SYMBOL[0] && rest.starts_with(&SPACE_SYMBOL[1..]) {
            self.text = &rest[SPACE_SYMBOL.len() - 1..];
            return Some(b' ');
        }
        Some(b)
    }
}

/// Streaming, allocation-free detokenizer: push ids one at a time, get text
/// chunks through a callback.
///
/// Rules:
/// - a normal piece is emitted with `'▁'` as `' '`; the piece right after BOS
///   loses one leading space (llama2.c run.c's `if (prev_token == 1 && piece[0]
///   == ' ') piece++`, which also undoes SentencePiece's dummy prefix);
/// - a byte token contributes its raw byte; bytes are assembled into UTF-8
///   characters, and a character split over several tokens is held until it is
///   complete, then emitted whole, once;
/// - bytes that cannot form valid UTF-8 are emitted as U+FFFD (one per maximal
///   invalid sequence, as [`core::str::from_utf8`]'s `error_len` splits them);
/// - BOS, EOS, `<unk>` and CONTROL/UNKNOWN tokens emit nothing (and leave an
///   incomplete character pending);
/// - [`Decoder::flush`] at the end emits a pending incomplete character as U+FFFD.
///
/// Every chunk passed to the callback is a `&str`, so always valid UTF-8.
#[derive(Debug, Clone)]
pub struct Decoder<'t, 'a> {
    tok: &'t Tokenizer<'a>,
    /// Bytes of an incomplete UTF-8 character.
    pending: [u8; 4],
    n_pending: usize,
    /// Whether the last id pushed was BOS.
    after_bos: bool,
}

impl<'t, 'a> Decoder<'t, 'a> {
    /// A decoder at the start of a text.
    pub fn new(tok: &'t Tokenizer<'a>) -> Self {
        Decoder {
            tok,
            pending: [0; 4],
            n_pending: 0,
            after_bos: false,
        }
    }

    /// Decodes one id, calling `emit` with zero or more text chunks.
    ///
    /// Errors: [`Error::UnknownToken`] for an id outside the vocabulary (the
    /// decoder's state is unchanged).
    pub fn push(&mut self, id: u32, mut emit: impl FnMut(&str)) -> Result<()> {
        let tok = self.tok;
        let mut piece = tok.piece(id)?;
        let was_after_bos = self.after_bos;
        self.after_bos = id == tok.bos;
        if tok.is_control(id) {
            return Ok(());
        }
        if let Some(b) = tok.byte_value(id) {
            self.feed(&[b], &mut emit);
            return Ok(());
        }
        if was_after_bos {
            if let Some(rest) = piece.strip_prefix(tok.space()) {
                piece = rest;
            } else if let Some(rest) = piece.strip_prefix(b" ") {
                piece = rest;
            }
        }
        for_each_space_split(piece, tok.space(), |chunk, space| {
            self.feed(chunk, &mut emit);
            if space {
                self.feed(b" ", &mut emit);
            }
        });
        Ok(())
    }

    /// Ends the text: an incomplete character still pending is emitted as
    /// U+FFFD. The decoder can then be reused for a new text.
    pub fn flush(&mut self, mut emit: impl FnMut(&str)) {
        if self.n_pending > 0 {
            self.n_pending = 0;
            emit(REPLACEMENT);
        }
        self.after_bos = false;
    }

    /// Whether an incomplete UTF-8 character is being held back.
    pub fn has_pending(&self) -> bool {
        self.n_pending > 0
    }

    /// The state a saved session carries: the bytes of an incomplete
    /// character, their count, and whether the last id was BOS.
    pub(crate) fn saved(&self) -> ([u8; 4], usize, bool) {
        (self.pending, self.n_pending, self.after_bos)
    }

    /// Restores what [`Decoder::saved`] gave (`n_pending` at most 3).
    pub(crate) fn restore(&mut self, pending: [u8; 4], n_pending: usize, after_bos: bool) {
        self.pending = pending;
        self.n_pending = n_pending.min(3);
        self.after_bos = after_bos;
    }

    /// Feeds raw bytes through the UTF-8 assembler.
    fn feed(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(&str)) {
        // First complete (or reject) a pending character.
        while self.n_pending > 0 && !bytes.is_empty() {
            let mut buf = [0u8; 4];
            let k = self.n_pending;
            buf[..k].copy_from_slice(&self.pending[..k]);
            let m = (4 - k).min(bytes.len());
            buf[k..k + m].copy_from_slice(&bytes[..m]);
            let buf = &buf[..k + m];
            match core::str::from_utf8(buf) {
                Ok(s) => {
                    // The whole buffer is valid: the pending character completed
                    // and possibly more characters followed. Emit the first one only.
                    let w = s.chars().next().map_or(buf.len(), char::len_utf8);
                    emit(s.get(..w).unwrap_or(REPLACEMENT));
                    bytes = bytes.get(w.saturating_sub(k)..).unwrap_or(&[]);
                    self.n_pending = 0;
                }
                Err(e) if e.valid_up_to() > 0 => {
                    let w = e.valid_up_to();
                    // The first character is complete (it has at least k bytes).
                    let s = core::str::from_utf8(&buf[..w]).unwrap_or(REPLACEMENT);
                    let w = s.chars().next().map_or(w, char::len_utf8);
                    emit(s.get(..w).unwrap_or(REPLACEMENT));
                    bytes = bytes.get(w.saturating_sub(k)..).unwrap_or(&[]);
                    self.n_pending = 0;
                }
                Err(e) => match e.error_len() {
                    None => {
                        // Still incomplete: all of `bytes` joins the pending ones.
                        self.pending[..k + m].copy_from_slice(buf);
                        self.n_pending = k + m;
                        return;
                    }
                    Some(l) => {
                        emit(REPLACEMENT);
                        bytes = bytes.get(l.saturating_sub(k)..).unwrap_or(&[]);
                        self.n_pending = 0;
                    }
                },
            }
        }
        // Then everything that follows.
        while !bytes.is_empty() {
            match core::str::from_utf8(bytes) {
                Ok(s) => {
                    emit(s);
                    return;
                }
                Err(e) => {
                    let (valid, rest) = bytes.split_at(e.valid_up_to());
                    if !valid.is_empty() {
                        emit(core::str::from_utf8(valid).unwrap_or(REPLACEMENT));
                    }
                    match e.error_len() {
                        Some(l) => {
                            emit(REPLACEMENT);
                            bytes = rest.get(l..).unwrap_or(&[]);
                        }
                        None => {
                            // An incomplete character at the end (at most 3 bytes).
                            let k = rest.len().min(3);
                            self.pending[..k].copy_from_slice(&rest[..k]);
                            self.n_pending = k;
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Calls `f(chunk, followed_by_space)` for the parts of `piece` between
/// occurrences of `space` (when `space` is `' '` there is nothing to replace).
fn for_each_space_split(piece: &[u8], space: &[u8], mut f: impl FnMut(&[u8], bool)) {
    if space == b" " {
        f(piece, false);
        return;
    }
    let mut rest = piece;
    let mut i = 0;
    while i + space.len() <= rest.len() {
        if rest[i..].starts_with(space) {
            f(&rest[..i], true);
            rest = &rest[i + space.len()..];
            i = 0;
        } else {
            i += 1;
        }
    }
    f(rest, false);
}

/// Index entry of a token: its type code (or `UNTYPED`) and record offset.
fn pack(offset: u32, ty: Option<TokenType>) -> u32 {
    let code = ty.map_or(UNTYPED, TokenType::code);
    (code << TYPE_SHIFT) | (offset & OFFSET_MASK)
}

/// Type code of an entry whose type is to be inferred.
const UNTYPED: u32 = 7;

/// The order of pieces in a bucket: by length, then bytes (a length
/// comparison settles most look-ups of text that is no piece).
#[inline]
fn piece_order(a: &[u8], b: &[u8]) -> core::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Number of hash buckets for `n` tokens: the power of two at least `n`
/// (at least 1; saturating).
fn bucket_count(n: usize) -> usize {
    n.max(1)
        .checked_next_power_of_two()
        .unwrap_or(1 << (usize::BITS - 1))
}

/// FNV-1a, with a final mix so that the low bits (the slot) depend on all bytes.
fn hash(bytes: impl Iterator<Item = u8>) -> u32 {
    let mut h: u32 = 0x811C_9DC5;
    for b in bytes {
        h = (h ^ b as u32).wrapping_mul(0x0100_0193);
    }
    h ^ (h >> 16)
}

/// A `u32` that orders like the score (`-0.0` equal to `0.0`, NaN lowest),
/// so that the merge heap compares integers.
fn score_key(score: f32) -> u32 {
    let f = if score.is_nan() {
        f32::NEG_INFINITY
    } else if score == 0.0 {
        0.0
    } else {
        score
    };
    let b = f.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// Splits `index` into the per-token entries and the rest (sorted ids,
/// buckets, byte table and `user_len` entries for the USER_DEFINED
/// automaton), checking its length.
fn split_index(index: &mut [u32], n: u32, user_len: usize) -> Result<(&mut [u32], &mut [u32])> {
    let needed = Tokenizer::index_len(n).saturating_add(user_len);
    if index.len() < needed {
        return Err(Error::BufferTooSmall {
            what: "tokenizer index (u32 entries)",
            needed,
            got: index.len(),
        });
    }
    Ok(index[..needed].split_at_mut(n as usize))
}

/// Index entries the USER_DEFINED automaton of a GGUF vocabulary needs:
/// 0 without USER_DEFINED pieces, else `5 * (u + 1) + 1` for `u` bytes of
/// them (counting only the non-empty, valid UTF-8 ones: the others can
/// never match a text).
fn user_matcher_len(tokens: Array<'_>, types: Option<Array<'_>>, n: u32) -> usize {
    let Some(types) = types else {
        return 0;
    };
    let mut total = 0usize;
    for (id, piece) in tokens.strings().take(n as usize).enumerate() {
        if types.i32_at(id) == Some(4) && UserMatcher::eligible(piece) {
            total = total.saturating_add(piece.len());
        }
    }
    if total == 0 {
        0
    } else {
        UserMatcher::area_len(total)
    }
}

/// An Aho-Corasick automaton over the *reversed* USER_DEFINED pieces, in
/// index memory: run right to left over a text, its state after position
/// `p` gives the longest piece that starts at `p` (SentencePiece's
/// `PrefixMatcher`, which walks a trie from every position, takes
/// `O(len * L)` for pieces of `L` bytes; this takes `O(len)`).
///
/// Nodes are numbered breadth-first, so the children of node `v` are
/// `child[v]..child[v + 1]`, sorted by their `label` byte. `fail[v]` is the
/// node of the longest proper suffix of `v`'s string that is in the trie,
/// `out[v]` the length of the longest piece that is a suffix of it.
#[derive(Clone, Copy, Default)]
struct UserMatcher<'a> {
    child: &'a [u32],
    label: &'a [u32],
    fail: &'a [u32],
    out: &'a [u32],
}

impl<'a> UserMatcher<'a> {
    /// Entries the automaton needs for `total` bytes of pieces: at most
    /// `total + 1` nodes, five arrays of that (one of them scratch for the
    /// build) and one more child start.
    fn area_len(total: usize) -> usize {
        total.saturating_add(1).saturating_mul(5).saturating_add(1)
    }

    /// Whether a USER_DEFINED piece can ever match a text: a match starts
    /// and ends at characters of a UTF-8 text, so it is non-empty UTF-8.
    fn eligible(piece: &[u8]) -> bool {
        !piece.is_empty() && core::str::from_utf8(piece).is_ok()
    }

    fn is_empty(&self) -> bool {
        self.child.is_empty()
    }

    /// Builds the automaton of the pieces of `ids` (distinct pieces, as
    /// the deduplicated index gives them) in `area`, which
    /// [`UserMatcher::area_len`] of their lengths sized. `O(u log u)` for
    /// `u` bytes of pieces.
    fn build(
        area: &'a mut [u32],
        ids: impl Iterator<Item = u32>,
        piece: impl Fn(u32) -> &'a [u8],
    ) -> UserMatcher<'a> {
        if area.is_empty() {
            return UserMatcher::default();
        }
        let cap = (area.len() - 1) / 5;
        let (child, r) = area.split_at_mut(cap + 1);
        let (label, r) = r.split_at_mut(cap);
        let (fail, r) = r.split_at_mut(cap);
        let (out, sorted) = r.split_at_mut(cap);
        // The eligible pieces, sorted by their reversed bytes.
        let mut k = 0usize;
        for id in ids {
            if UserMatcher::eligible(piece(id)) && k < sorted.len() {
                sorted[k] = id;
                k += 1;
            }
        }
        let sorted = &mut sorted[..k];
        sorted.sort_unstable_by(|&a, &b| piece(a).iter().rev().cmp(piece(b).iter().rev()));
        let len = |i: u32| piece(sorted[i as usize]).len();
        // Byte `d` of a reversed piece (`d < len`).
        let rev = |i: u32, d: usize| {
            let p = piece(sorted[i as usize]);
            p[p.len() - 1 - d]
        };
        // Breadth-first: a node at depth `d` covers the sorted pieces
        // `fail[v]..out[v]` (scratch use of those arrays) whose reversed
        // bytes start with its string; its children split them by byte `d`.
        fail[0] = 0;
        out[0] = k as u32;
        label[0] = 0;
        let (mut next, mut v, mut depth, mut level_end) = (1usize, 0usize, 0usize, 1usize);
        while v < next {
            if v == level_end {
                depth += 1;
                level_end = next;
            }
            let (lo, hi) = (fail[v], out[v]);
            child[v] = next as u32;
            let mut i = lo;
            // Pieces are distinct: at most one ends here, and sorts first.
            let terminal = i < hi && len(i) == depth;
            if terminal {
                i += 1;
            }
            while i < hi && next < cap {
                let c = rev(i, depth);
                let mut j = i + 1;
                while j < hi && rev(j, depth) == c {
                    j += 1;
                }
                label[next] = c as u32;
                fail[next] = i;
                out[next] = j;
                next += 1;
                i = j;
            }
            fail[v] = 0;
            out[v] = if terminal { depth as u32 } else { 0 };
            v += 1;
        }
        child[next] = next as u32;
        let nodes = next;
        // Failure links, breadth-first: a node's comes from its parent's,
        // whose depth is smaller, so it is final when needed.
        for v in 0..nodes {
            for c in child[v] as usize..child[v + 1] as usize {
                let f = if v == 0 {
                    0
                } else {
                    goto(child, label, fail, fail[v], label[c] as u8)
                };
                fail[c] = f;
                if out[c] == 0 {
                    out[c] = out[f as usize];
                }
            }
        }
        UserMatcher {
            child: &child[..nodes + 1],
            label: &label[..nodes],
            fail: &fail[..nodes],
            out: &out[..nodes],
        }
    }

    /// The state after reading byte `b` (right to left) in state `v`.
    #[inline]
    fn step(&self, v: u32, b: u8) -> u32 {
        goto(self.child, self.label, self.fail, v, b)
    }

    /// The length of the longest piece that ends the string of state `v`
    /// (read right to left: that starts where the pass stands).
    #[inline]
    fn longest(&self, v: u32) -> u32 {
        self.out.get(v as usize).copied().unwrap_or(0)
    }
}

/// The child of node `v` labelled `b`, if any (binary search of the
/// sorted labels).
#[inline]
fn child_of(child: &[u32], label: &[u32], v: u32, b: u8) -> Option<u32> {
    let (lo, hi) = (
        *child.get(v as usize)? as usize,
        *child.get(v as usize + 1)? as usize,
    );
    let labels = label.get(lo..hi)?;
    labels
        .binary_search(&(b as u32))
        .ok()
        .map(|k| (lo + k) as u32)
}

/// The automaton's transition: follow failure links from `v` until a node
/// has a child labelled `b` (the root has no failure).
#[inline]
fn goto(child: &[u32], label: &[u32], fail: &[u32], mut v: u32, b: u8) -> u32 {
    loop {
        if let Some(c) = child_of(child, label, v, b) {
            return c;
        }
        if v == 0 {
            return 0;
        }
        v = fail.get(v as usize).copied().unwrap_or(0);
    }
}

/// The piece of an index entry (validated at load; empty if somehow not).
fn piece_of(source: Source<'_>, entry: u32) -> &[u8] {
    let off = (entry & OFFSET_MASK) as usize;
    match source {
        Source::Gguf { strings, .. } => {
            let len = strings
                .get(off..off + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes) as usize;
            strings
                .get(off + 8..(off + 8).saturating_add(len))
                .unwrap_or(&[])
        }
        Source::Llama2c { bytes } => {
            let len = bytes
                .get(off + 4..off + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, i32::from_le_bytes)
                .max(0) as usize;
            bytes
                .get(off + 8..(off + 8).saturating_add(len))
                .unwrap_or(&[])
        }
    }
}

/// Reads the llama2.c tokenizer header, returning where the records start.
fn llama2c_header(bytes: &[u8]) -> Result<u64> {
    let h = slice(bytes, 0, 4, "llama2.c tokenizer header (max_token_length)")?;
    let max_len = i32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    if max_len < 0 {
        return Err(Error::BadTokenizer {
            reason: "negative max_token_length in the llama2.c tokenizer header",
            index: 0,
        });
    }
    Ok(4)
}

/// Checks the llama2.c record of token `id` at `pos`, returning where the next starts.
fn llama2c_record(bytes: &[u8], pos: u64, id: u32) -> Result<u64> {
    let h = slice(
        bytes,
        pos,
        8,
        "llama2.c tokenizer record (score and length)",
    )?;
    let len = i32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if len < 0 {
        return Err(Error::BadTokenizer {
            reason: "negative piece length in the llama2.c tokenizer",
            index: id as u64,
        });
    }
    slice(bytes, pos + 8, len as u64, "llama2.c tokenizer piece")?;
    Ok(pos + 8 + len as u64)
}

/// The byte of a piece spelled `<0xHH>` (either case of hex digits).
fn parse_byte_piece(piece: &[u8]) -> Option<u8> {
    match piece {
        [b'<', b'0', b'x', h, l, b'>'] => Some(hex(*h)? << 4 | hex(*l)?),
        _ => None,
    }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Length of the UTF-8 character starting with byte `b` (of valid UTF-8).
fn char_len(b: u8) -> usize {
    match b {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xFF => 4,
        // A continuation byte cannot start a character of a `&str`.
        _ => 1,
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec;
    use std::vec::Vec;

    /// A llama2.c tokenizer file: `<unk>`, `<s>`, `</s>`, then `pieces`.
    fn l2c(pieces: &[(&str, f32)]) -> Vec<u8> {
        let mut v = 8i32.to_le_bytes().to_vec();
        for (p, s) in [("<unk>", 0.0), ("\n<s>\n", 0.0), ("\n</s>\n", 0.0)]
            .iter()
            .chain(pieces)
        {
            v.extend_from_slice(&s.to_le_bytes());
            v.extend_from_slice(&(p.len() as i32).to_le_bytes());
            v.extend_from_slice(p.as_bytes());
        }
        v
    }

    fn with_tok<R>(pieces: &[(&str, f32)], f: impl FnOnce(&Tokenizer<'_>) -> R) -> R {
        let bytes = l2c(pieces);
        let n = Tokenizer::llama2c_token_count(&bytes).unwrap();
        let mut index = vec![0u32; Tokenizer::index_len(n)];
        let tok = Tokenizer::from_llama2c(&bytes, None, &mut index).unwrap();
        f(&tok)
    }

    fn enc(tok: &Tokenizer<'_>, text: &str) -> Vec<u32> {
        let mut work = vec![0u32; Tokenizer::encode_work_len(text.len())];
        tok.encode(text, Bos::None, &mut work).unwrap().to_vec()
    }

    fn dec(tok: &Tokenizer<'_>, ids: &[u32]) -> String {
        let mut s = String::new();
        let mut d = tok.decoder();
        for &id in ids {
            d.push(id, |c| s.push_str(c)).unwrap();
        }
        d.flush(|c| s.push_str(c));
        s
    }

    #[test]
    fn score_keys_order_like_scores() {
        let xs = [
            f32::NEG_INFINITY,
            -1e9,
            -1.0,
            -1e-30,
            0.0,
            1e-30,
            1.0,
            f32::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(score_key(w[0]) < score_key(w[1]), "{w:?}");
        }
        assert_eq!(score_key(-0.0), score_key(0.0));
        assert!(score_key(f32::NAN) <= score_key(f32::NEG_INFINITY));
    }

    #[test]
    fn byte_pieces_parse() {
        assert_eq!(parse_byte_piece(b"<0x0A>"), Some(10));
        assert_eq!(parse_byte_piece(b"<0xff>"), Some(255));
        assert_eq!(parse_byte_piece(b"<0xFG>"), None);
        assert_eq!(parse_byte_piece(b"<0x0A"), None);
        assert_eq!(parse_byte_piece(b"<0x0A>>"), None);
        assert_eq!(parse_byte_piece(b""), None);
    }

    #[test]
    fn space_split() {
        let mut parts = Vec::new();
        for_each_space_split(
            "\u{2581}a\u{2581}\u{2581}b\u{2581}".as_bytes(),
            SPACE_SYMBOL,
            |c, s| parts.push((String::from_utf8(c.to_vec()).unwrap(), s)),
        );
        let expected = [
            ("", true),
            ("a", true),
            ("", true),
            ("b", true),
            ("", false),
        ];
        let expected: Vec<(String, bool)> = expected
            .iter()
            .map(|(a, b)| (String::from(*a), *b))
            .collect();
        assert_eq!(parts, expected);
    }

    #[test]
    fn normalization_spells_spaces() {
        let text = "a b\u{2581}c".as_bytes();
        let mk = |space: &'static [u8], narrow| Norm {
            pending: space,
            text,
            space,
            narrow,
        };
        let wide: Vec<u8> = mk(SPACE_SYMBOL, false).collect();
        assert_eq!(wide, "\u{2581}a\u{2581}b\u{2581}c".as_bytes());
        let narrow: Vec<u8> = mk(b" ", true).collect();
        assert_eq!(narrow, b" a b c");
    }

    #[test]
    fn merges_pick_highest_score_then_leftmost() {
        // "aaa": the pairs (a,a) tie, so the leftmost merges: [aa][a].
        with_tok(&[(" ", -5.0), ("a", -5.0), ("aa", -1.0)], |t| {
            assert_eq!(enc(t, "aaa"), [3, 5, 4]);
        });
        // "abc": "bc" scores higher than "ab", so [a][bc] even though "ab" is left.
        with_tok(
            &[
                ("a", -9.0),
                ("b", -9.0),
                ("c", -9.0),
                ("ab", -2.0),
                ("bc", -1.0),
            ],
            |t| {
                // No " " piece and no byte tokens: the space prefix is <unk>.
                assert_eq!(enc(t, "abc"), [0, 3, 7]);
            },
        );
        // A merge makes a new pair with its left neighbour.
        with_tok(
            &[
                (" ", 0.0),
                ("x", 0.0),
                ("y", 0.0),
                ("z", 0.0),
                ("yz", -1.0),
                ("xyz", -2.0),
                (" xyz", -3.0),
            ],
            |t| assert_eq!(enc(t, "xyz"), [9]),
        );
    }

    #[test]
    fn unknown_runs_without_byte_tokens() {
        with_tok(&[(" ", 0.0), ("a", 0.0)], |t| {
            assert!(!t.byte_fallback());
            assert_eq!(enc(t, "a\u{e9}\u{e9}a \u{1F600}"), [3, 4, 0, 4, 3, 0]);
            assert_eq!(dec(t, &[1, 3, 4, 0, 4]), "aa");
        });
    }

    #[test]
    fn control_and_byte_spellings_do_not_merge() {
        // "<0x41>" is a byte token and "<s>" the BOS: the text "<s>" stays characters.
        with_tok(
            &[
                ("<", 0.0),
                ("s", 0.0),
                (">", 0.0),
                ("<s", 0.0),
                ("<0x41>", 0.0),
                (" ", 0.0),
            ],
            |t| {
                assert_eq!(t.byte_value(7), Some(0x41));
                assert_eq!(t.token_type(1).unwrap(), TokenType::Control);
                assert_eq!(t.token_type(0).unwrap(), TokenType::Unknown);
                assert_eq!(enc(t, "<s>"), [8, 6, 5]);
                // 'A' is not a piece: byte fallback to <0x41>; 'B' has no byte token: <unk>.
                assert_eq!(enc(t, "AB"), [8, 7, 0]);
            },
        );
    }

    #[test]
    fn degenerate_vocabularies_do_not_panic() {
        // Empty pieces, NaN and infinite scores, duplicates.
        with_tok(
            &[
                ("", f32::NAN),
                ("a", f32::NAN),
                ("a", 1.0),
                ("aa", f32::INFINITY),
                ("aa", f32::NAN),
                (" ", -0.0),
            ],
            |t| {
                let ids = enc(t, "aaaa a");
                assert_eq!(dec(t, &ids), " aaaa a");
                assert_eq!(t.token_id(b"aa"), Some(6));
                assert_eq!(t.token_id(b""), Some(3));
            },
        );
    }

    #[test]
    fn agenda_is_a_heap() {
        // Random pushes/removes against a naive maximum.
        let n = 64;
        let mut heap = vec![0u32; n];
        let mut pos = vec![NONE; n];
        let mut key = vec![0u32; n];
        let mut a = Agenda {
            heap: &mut heap,
            pos: &mut pos,
            key: &mut key,
            len: 0,
        };
        let mut live = vec![None; n];
        let mut x = 12345u32;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let sym = x % n as u32;
            if live[sym as usize].is_some() {
                a.remove(sym);
                live[sym as usize] = None;
            } else {
                let k = (x >> 8) % 7;
                a.push(sym, k);
                live[sym as usize] = Some(k);
            }
            let best = live
                .iter()
                .enumerate()
                .filter_map(|(i, k)| k.map(|k| (k, core::cmp::Reverse(i))))
                .max();
            assert_eq!(a.len, live.iter().filter(|k| k.is_some()).count());
            if let Some((_, core::cmp::Reverse(i))) = best {
                assert_eq!(a.heap[0], i as u32);
            }
        }
    }

    #[test]
    fn decoder_assembles_utf8() {
        // Byte tokens: ids 3.. are <0x00>..; then "é" and " x".
        let mut pieces: Vec<(String, f32)> = (0..256)
            .map(|b| (std::format!("<0x{b:02X}>"), 0.0))
            .collect();
        pieces.push(("\u{e9}".into(), 0.0));
        pieces.push((" x".into(), 0.0));
        let refs: Vec<(&str, f32)> = pieces.iter().map(|(p, s)| (p.as_str(), *s)).collect();
        with_tok(&refs, |t| {
            let b = |x: u8| x as u32 + 3;
            let e_acute = 259;
            let x = 260;
            // A 4-byte character, byte by byte.
            let mut chunks = Vec::new();
            let mut d = t.decoder();
            for &id in &[b(0xF0), b(0x9F), b(0x98), b(0x80)] {
                d.push(id, |c| chunks.push(String::from(c))).unwrap();
            }
            assert_eq!(chunks, ["\u{1F600}"]);
            // Truncated sequences followed by text, invalid bytes, overlong forms, surrogates.
            assert_eq!(dec(t, &[b(0xF0), b(0x9F), e_acute]), "\u{FFFD}\u{e9}");
            assert_eq!(dec(t, &[b(0xC0), b(0x80)]), "\u{FFFD}\u{FFFD}");
            assert_eq!(
                dec(t, &[b(0xED), b(0xA0), b(0x80)]),
                "\u{FFFD}\u{FFFD}\u{FFFD}"
            );
            assert_eq!(dec(t, &[b(0xE2), b(0x28), b(0xA1)]), "\u{FFFD}(\u{FFFD}");
            assert_eq!(dec(t, &[b(0xE2), b(0x82)]), "\u{FFFD}");
            assert_eq!(dec(t, &[b(b'a'), b(0xE2), x]), "a\u{FFFD} x");
            // BOS removes the leading space of the next piece only.
            assert_eq!(dec(t, &[1, x, x]), "x x");
            assert_eq!(dec(t, &[1, b(b' '), x]), "  x");
            // Control tokens print nothing.
            assert_eq!(dec(t, &[0, 1, 2]), "");
        });
    }

    /// A GGUF vocabulary: `(piece, score, GGUF token type)`; BOS 1, EOS 2, unk 0.
    fn gguf_vocab(pieces: &[(Vec<u8>, f32, i32)]) -> Vec<u8> {
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
            v.extend_from_slice(&(pieces.len() as u64).to_le_bytes());
        };
        arr(&mut v, "tokenizer.ggml.tokens", 8);
        for (p, _, _) in pieces {
            s(&mut v, p);
        }
        arr(&mut v, "tokenizer.ggml.scores", 6);
        for (_, sc, _) in pieces {
            v.extend_from_slice(&sc.to_le_bytes());
        }
        arr(&mut v, "tokenizer.ggml.token_type", 5);
        for (_, _, t) in pieces {
            v.extend_from_slice(&t.to_le_bytes());
        }
        v
    }

    /// The look-ups and the USER_DEFINED automaton agree with the obvious
    /// algorithms (a scan of every token; every end tried from every
    /// start) on random small vocabularies, with duplicates, and texts.
    #[test]
    fn index_and_user_matches_agree_with_naive_search() {
        let alphabet = ["a", "b", " ", "\u{2581}", "\u{e9}"];
        let mut x = 0x2545_F491u32;
        let mut rnd = move |n: u32| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x % n
        };
        for round in 0..300 {
            let mut pieces: Vec<(Vec<u8>, f32, i32)> = vec![
                (b"<unk>".to_vec(), 0.0, 2),
                (b"<s>".to_vec(), 0.0, 3),
                (b"</s>".to_vec(), 0.0, 3),
            ];
            for _ in 0..1 + rnd(40) {
                let len = 1 + rnd(if round % 3 == 0 { 12 } else { 4 });
                let mut p = Vec::new();
                for _ in 0..len {
                    let c = alphabet[rnd(alphabet.len() as u32) as usize];
                    p.extend_from_slice(if c == " " { SPACE_SYMBOL } else { c.as_bytes() });
                }
                if rnd(5) == 0 {
                    p.truncate(p.len() - 1); // sometimes not UTF-8, or empty
                }
                let ty = [1, 1, 4, 4, 3, 5][rnd(6) as usize];
                pieces.push((p, -(rnd(100) as f32), ty));
            }
            for _ in 0..rnd(6) {
                let k = rnd(pieces.len() as u32) as usize;
                let mut dup = pieces[k].clone();
                dup.2 = [1, 4, 3, 5][rnd(4) as usize];
                pieces.push(dup);
            }
            let bytes = gguf_vocab(&pieces);
            let g = Gguf::parse(&bytes).unwrap();
            let mut index = vec![0u32; Tokenizer::gguf_index_len(&g).unwrap()];
            let tok = Tokenizer::from_gguf(&g, &mut index).unwrap();
            let ty = |id: usize| TokenType::from_gguf(pieces[id].2).unwrap();
            for (p, _, _) in &pieces {
                let naive_first = pieces.iter().position(|q| &q.0 == p).map(|i| i as u32);
                assert_eq!(tok.token_id(p), naive_first, "round {round}");
                let naive_mergeable = (0..pieces.len())
                    .find(|&i| &pieces[i].0 == p && ty(i).is_mergeable())
                    .map(|i| i as u32);
                let naive_final = (0..pieces.len())
                    .find(|&i| &pieces[i].0 == p && !ty(i).is_mergeable())
                    .map(|i| i as u32)
                    .or(naive_mergeable);
                let h = hash(p.iter().copied());
                assert_eq!(
                    tok.lookup_in(h, |q| piece_order(q, p), Lookup::Mergeable),
                    naive_mergeable
                );
                assert_eq!(
                    tok.lookup_in(h, |q| piece_order(q, p), Lookup::Final),
                    naive_final
                );
            }
            for _ in 0..5 {
                let mut text = String::new();
                for _ in 0..rnd(30) {
                    text.push_str(alphabet[rnd(alphabet.len() as u32) as usize]);
                }
                let n = text.len() + 1;
                let (mut start, mut next) = (vec![0u32; n], vec![0u32; n]);
                let sy = Symbols {
                    text: text.as_bytes(),
                    ext_end: n as u32,
                    count: 0,
                    start: &mut start,
                    next: &mut next,
                };
                let mut best = vec![0u32; n];
                tok.user_matches(&sy, &mut best);
                let mut p = 0u32;
                while p < sy.ext_end {
                    let naive = tok.match_user_defined_naive(&sy, p);
                    let fast = match best[p as usize] as usize {
                        0 => None,
                        want => {
                            let (mut q, mut len) = (p, 0);
                            while len < want {
                                let (e, w) = tok.next_char(&sy, q);
                                q = e;
                                len += w;
                            }
                            Some(q)
                        }
                    };
                    assert_eq!(fast, naive, "round {round}, text {text:?}, position {p}");
                    p = tok.next_char(&sy, p).0;
                }
                // And encoding does not panic.
                let _ = enc(&tok, &text);
            }
        }
    }

    #[test]
    fn every_truncation_of_a_small_file_errors() {
        let bytes = l2c(&[("a", 0.0), ("bc", -1.0)]);
        for len in 0..bytes.len() {
            let cut = &bytes[..len];
            let mut index = vec![0u32; Tokenizer::index_len(5)];
            assert!(
                Tokenizer::from_llama2c(cut, Some(5), &mut index).is_err(),
                "{len}"
            );
            match Tokenizer::llama2c_token_count(cut) {
                Ok(n) => {
                    let mut index = vec![0u32; Tokenizer::index_len(n)];
                    let r = Tokenizer::from_llama2c(cut, None, &mut index);
                    assert_eq!(r.is_ok(), n >= 3, "{len}");
                }
                Err(e) => assert!(matches!(e, Error::Truncated { .. }), "{len}: {e:?}"),
            }
        }
    }
}
