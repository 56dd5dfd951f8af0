//! Llama 2's chat format, exactly as Meta's reference `chat_completion`
//! (`llama/generation.py` of the `llama` repository) builds it, and
//! conversations that reuse the KV cache from turn to turn.
//!
//! # The format
//!
//! A dialog is an optional system message, then user and assistant messages
//! alternating, ending with a user message. The system message is folded
//! into the first user message as `<<SYS>>\n{system}\n<</SYS>>\n\n{user}`.
//! Each finished user/assistant pair is encoded on its own as
//! `[INST] {user.strip()} [/INST] {answer.strip()} ` with BOS in front and
//! EOS after; the last user message as `[INST] {user.strip()} [/INST]` with
//! BOS only. `strip()` is Python's (Unicode whitespace, the ASCII
//! separators 0x1C-0x1F included); the folded first message is stripped as
//! a whole, as the reference does. Each piece is tokenized separately, so
//! `<s>` or `</s>` typed in a message is text, never a control token.
//!
//! Like the reference, a message that contains `[INST]`, `[/INST]`,
//! `<<SYS>>` or `<</SYS>>` is refused ([`Error::SpecialTagInMessage`]), a
//! guard against a user smuggling in turns of their own, unless the caller
//! sets [`ChatOptions::allow_special_tags`].
//!
//! Everything here is `no_std` and allocation-free: ids go into a caller
//! buffer of [`dialog_work_len`] entries. Models whose GGUF carries another
//! chat template (TinyLlama-Chat's, Mistral-Instruct's) are served by
//! [`crate::chat_template`] (feature `std`), which shares
//! [`prefill_ids`] with this module.
//!
//! # Conversations
//!
//! [`prefill_dialog`] brings a session to the end of a dialog's encoding,
//! ready to generate the answer: it encodes the whole dialog, keeps the
//! longest prefix the session already holds (the earlier turns, usually),
//! truncates the rest and feeds only what is new. So the logits after each
//! turn are those of a fresh session fed the whole dialog, bit for bit,
//! while each turn costs only its new tokens; an edited or regenerated turn
//! truncates the cache where the text changed. (An answer is re-encoded
//! from its stripped text, as the reference does; where that differs from
//! the tokens the model generated, typically a leading space, the answer's
//! tokens are fed again: a prefill of that many tokens.)

use crate::error::{Error, Result};
use crate::generate::Generator;
use crate::session::Session;
use crate::tokenizer::{Bos, Tokenizer};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Instructions for the whole conversation (first message only).
    System,
    /// The person.
    User,
    /// The model.
    Assistant,
}

/// One message of a dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'m> {
    /// Who wrote it.
    pub role: Role,
    /// What it says (UTF-8).
    pub content: &'m str,
}

impl<'m> Message<'m> {
    /// A message of `role` saying `content`.
    pub fn new(role: Role, content: &'m str) -> Self {
        Message { role, content }
    }
}

/// The format's own tags, which a message may not contain (unless allowed).
pub const SPECIAL_TAGS: [&str; 4] = ["[INST]", "[/INST]", "<<SYS>>", "<</SYS>>"];

const B_INST: &str = "[INST] ";
const E_INST_OPEN: &str = " [/INST]";
const B_SYS: &str = "<<SYS>>\n";
const E_SYS: &str = "\n<</SYS>>\n\n";

/// What to do when a dialog does not fit in the context
/// ([`prefill_dialog`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContextPolicy {
    /// Fail with [`Error::ContextFull`], changing nothing.
    #[default]
    Error,
    /// Drop the oldest user/assistant pairs (the system prompt stays,
    /// folded into the first pair kept) until the dialog and `reserve`
    /// more positions (room for the answer) fit, then re-prefill whatever
    /// no longer matches the cache: every token after the system prompt's
    /// prefix, up to the context length, once per turn that overflows.
    KeepSystemAndLatest {
        /// Positions to leave free for the answer.
        reserve: usize,
    },
}

/// Options of the chat format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChatOptions {
    /// Accept messages that contain the format's own tags
    /// ([`SPECIAL_TAGS`]). Off by default: such a dialog is refused.
    pub allow_special_tags: bool,
    /// What [`prefill_dialog`] does when the dialog does not fit.
    pub context_policy: ContextPolicy,
}

/// Python's `str.isspace()` for one character: Unicode white space and
/// the ASCII information separators 0x1C to 0x1F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` with no argument.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// The dialog split the way the format sees it: an optional system text,
/// then turns alternating user, assistant, ..., user.
#[derive(Clone, Copy)]
struct Dialog<'d, 'm> {
    system: Option<&'m str>,
    turns: &'d [Message<'m>],
    /// Index of `turns[0]` in the caller's slice (for error messages).
    first: usize,
}

impl<'d, 'm> Dialog<'d, 'm> {
    /// Checks roles and tags.
    fn new(messages: &'d [Message<'m>], opts: &ChatOptions) -> Result<Self> {
        if !opts.allow_special_tags {
            for (i, m) in messages.iter().enumerate() {
                if let Some(tag) = SPECIAL_TAGS.iter().find(|t| m.content.contains(*t)) {
                    return Err(Error::SpecialTagInMessage { tag, message: i });
                }
            }
        }
        let (system, first) = match messages.first() {
            None => {
                return Err(Error::BadDialog {
                    reason: "the dialog is empty",
                    message: 0,
                })
            }
            Some(m) if m.role == Role::System => (Some(m.content), 1),
            Some(_) => (None, 0),
        };
        let turns = &messages[first..];
        for (i, m) in turns.iter().enumerate() {
            let want = if i % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            if m.role != want {
                return Err(Error::BadDialog {
                    reason: "after an optional system message, roles must alternate user, assistant, user, ...",
                    message: first + i,
                });
            }
        }
        if turns.len().is_multiple_of(2) {
            return Err(Error::BadDialog {
                reason: "the last message must be from the user",
                message: messages.len().saturating_sub(1),
            });
        }
        Ok(Dialog {
            system,
            turns,
            first,
        })
    }

    /// The same dialog without its first `pairs` user/assistant pairs.
    fn drop_pairs(&self, pairs: usize) -> Self {
        Dialog {
            system: self.system,
            turns: &self.turns[2 * pairs..],
            first: self.first + 2 * pairs,
        }
    }

    /// Bytes of the text of piece `p` (turn `2p` and its answer).
    fn piece_len(&self, p: usize) -> usize {
        let mut n = B_INST.len() + self.turns[2 * p].content.len() + E_INST_OPEN.len();
        if p == 0 {
            if let Some(s) = self.system {
                n += B_SYS.len() + s.len() + E_SYS.len();
            }
        }
        if let Some(a) = self.turns.get(2 * p + 1) {
            n += 1 + a.content.len() + 1;
        }
        n
    }

    fn n_pieces(&self) -> usize {
        self.turns.len().div_ceil(2)
    }

    /// (most ids, longest piece in bytes).
    fn bounds(&self) -> (usize, usize) {
        let mut ids = 0usize;
        let mut longest = 0usize;
        for p in 0..self.n_pieces() {
            let n = self.piece_len(p);
            longest = longest.max(n);
            ids = ids
                .saturating_add(Tokenizer::max_tokens(n))
                .saturating_add(1);
        }
        (ids, longest)
    }
}

/// The `u32` entries [`encode_dialog`] needs in its buffer for `messages`
/// (room for every id, the text of the longest piece and the tokenizer's
/// scratch). It does not check the dialog.
pub fn dialog_work_len(messages: &[Message]) -> usize {
    let (system, turns) = match messages.first() {
        Some(m) if m.role == Role::System => (Some(m.content), &messages[1..]),
        _ => (None, messages),
    };
    // Pieces as `Dialog` would see them, without checking the roles.
    let mut ids = 0usize;
    let mut longest = 0usize;
    for (p, pair) in turns.chunks(2).enumerate() {
        let mut n = B_INST.len() + pair[0].content.len() + E_INST_OPEN.len();
        if p == 0 {
            if let Some(s) = system {
                n += B_SYS.len() + s.len() + E_SYS.len();
            }
        }
        if let Some(a) = pair.get(1) {
            n += 2 + a.content.len();
        }
        longest = longest.max(n);
        ids = ids
            .saturating_add(Tokenizer::max_tokens(n))
            .saturating_add(1);
    }
    work_len(ids, longest)
}

fn work_len(ids: usize, longest: usize) -> usize {
    ids.saturating_add(longest.div_ceil(4))
        .saturating_add(Tokenizer::encode_work_len(longest))
}

/// Encodes `messages` as Meta's reference `chat_completion` does (see the
/// module documentation) into the front of `work`, which needs
/// [`dialog_work_len`] entries; returns the number of ids.
///
/// Errors: [`Error::SpecialTagInMessage`] (unless allowed),
/// [`Error::BadDialog`] (empty, roles out of order, not ending with a user
/// message), [`Error::BufferTooSmall`].
pub fn encode_dialog(
    tok: &Tokenizer,
    messages: &[Message],
    opts: &ChatOptions,
    work: &mut [u32],
) -> Result<usize> {
    let d = Dialog::new(messages, opts)?;
    encode(tok, &d, work)
}

fn encode(tok: &Tokenizer, d: &Dialog, work: &mut [u32]) -> Result<usize> {
    let (max_ids, longest) = d.bounds();
    let needed = work_len(max_ids, longest);
    if work.len() < needed {
        return Err(Error::BufferTooSmall {
            what: "chat work buffer (u32 entries)",
            needed,
            got: work.len(),
        });
    }
    let (ids, rest) = work.split_at_mut(max_ids);
    let (text, scratch) = rest.split_at_mut(longest.div_ceil(4));
    let text: &mut [u8] = bytemuck::cast_slice_mut(text);
    let mut n = 0;
    for p in 0..d.n_pieces() {
        let len = write_piece(d, p, text);
        // Every part written is a `&str`, and strip cuts at characters.
        let s = core::str::from_utf8(&text[..len]).map_err(|_| Error::InvalidArgument {
            what: "chat text is not UTF-8",
        })?;
        let piece = tok.encode(s, Bos::Add, scratch)?;
        let k = piece.len();
        ids[n..n + k].copy_from_slice(piece);
        n += k;
        if d.turns.get(2 * p + 1).is_some() {
            ids[n] = tok.eos();
            n += 1;
        }
    }
    Ok(n)
}

/// Writes the text of piece `p` into `buf` (large enough: `piece_len`) and
/// returns its length.
fn write_piece(d: &Dialog, p: usize, buf: &mut [u8]) -> usize {
    let mut n = 0;
    let put = |buf: &mut [u8], n: &mut usize, s: &str| {
        buf[*n..*n + s.len()].copy_from_slice(s.as_bytes());
        *n += s.len();
    };
    put(buf, &mut n, B_INST);
    // The user text, with the system prompt folded in, stripped as a whole.
    let start = n;
    if p == 0 {
        if let Some(s) = d.system {
            put(buf, &mut n, B_SYS);
            put(buf, &mut n, s);
            put(buf, &mut n, E_SYS);
        }
    }
    put(buf, &mut n, d.turns[2 * p].content);
    let (a, b) = {
        let whole = core::str::from_utf8(&buf[start..n]).unwrap_or("");
        let stripped = py_strip(whole);
        let a = stripped.as_ptr() as usize - whole.as_ptr() as usize;
        (start + a, start + a + stripped.len())
    };
    buf.copy_within(a..b, start);
    n = start + (b - a);
    put(buf, &mut n, E_INST_OPEN);
    if let Some(answer) = d.turns.get(2 * p + 1) {
        put(buf, &mut n, " ");
        put(buf, &mut n, py_strip(answer.content));
        put(buf, &mut n, " ");
    }
    n
}

/// What [`prefill_dialog`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefill {
    /// Positions of the session kept (the prefix it already held).
    pub reused: usize,
    /// Tokens fed.
    pub fed: usize,
    /// Messages left out by [`ContextPolicy::KeepSystemAndLatest`]: the
    /// first `dropped` messages after the system prompt.
    pub dropped: usize,
}

/// Brings `session` (with its generator) to the end of the encoding of
/// `messages`, ready to generate the assistant's answer: keeps the longest
/// prefix the session already holds, truncates the rest and feeds only
/// what is new (at least one token, so that there are logits). `work`
/// needs [`dialog_work_len`] entries.
///
/// Everything is checked before the session changes: a refused dialog,
/// one that does not fit (with [`ContextPolicy::Error`]), a short buffer.
/// Cancelled while feeding, the session keeps what was fed.
///
/// Errors: those of [`encode_dialog`], [`Error::ContextFull`] (the dialog
/// alone is longer than the context, or with the policy even its last
/// user message and `reserve` are), [`Error::Cancelled`].
pub fn prefill_dialog(
    gen: &mut Generator,
    session: &mut Session,
    tok: &Tokenizer,
    messages: &[Message],
    opts: &ChatOptions,
    work: &mut [u32],
) -> Result<Prefill> {
    let full = Dialog::new(messages, opts)?;
    let context = session.context();
    let mut dropped = 0;
    let n = loop {
        let d = full.drop_pairs(dropped);
        let n = encode(tok, &d, work)?;
        let fits = match opts.context_policy {
            ContextPolicy::Error => n <= context,
            ContextPolicy::KeepSystemAndLatest { reserve } => n.saturating_add(reserve) <= context,
        };
        if fits {
            break n;
        }
        if matches!(opts.context_policy, ContextPolicy::Error) || d.turns.len() == 1 {
            return Err(Error::ContextFull {
                pos: 0,
                requested: n,
                context,
            });
        }
        dropped += 1;
    };
    let (reused, fed) = prefill_ids(gen, session, &work[..n])?;
    Ok(Prefill {
        reused,
        fed,
        dropped: 2 * dropped,
    })
}

/// Brings `session` to the end of `ids` (a dialog's encoding, in any
/// format): keeps the longest prefix the session already holds, truncates
/// the rest and feeds what is new (at least the last token, for its
/// logits). Returns (positions kept, tokens fed).
///
/// Errors: [`Error::InvalidArgument`] for no ids, [`Error::ContextFull`],
/// [`Error::UnknownToken`] (an id past the model's vocabulary: a tokenizer
/// larger than the model), all checked first, the session unchanged;
/// [`Error::Cancelled`] (what was fed stays).
pub fn prefill_ids(
    gen: &mut Generator,
    session: &mut Session,
    ids: &[u32],
) -> Result<(usize, usize)> {
    let n = ids.len();
    if n == 0 {
        return Err(Error::InvalidArgument {
            what: "a dialog encodes to at least one token",
        });
    }
    if n > session.context() {
        return Err(Error::ContextFull {
            pos: 0,
            requested: n,
            context: session.context(),
        });
    }
    // Checked before the truncation, so that the session stays as it was.
    let vocab = session.model().config.vocab_size;
    if let Some(&id) = ids.iter().find(|&&t| t as usize >= vocab) {
        return Err(Error::UnknownToken {
            id,
            vocab: vocab as u32,
        });
    }
    let held = session.tokens();
    let mut common = ids.iter().zip(held).take_while(|(a, b)| a == b).count();
    if common == n {
        // Nothing new: feed the last token again for its logits.
        common = n - 1;
    }
    gen.truncate(session, common);
    gen.feed(session, &ids[common..])?;
    Ok((common, n - common))
}

/// Checks a dialog's shape (an optional system message, then user and
/// assistant alternating, ending with a user message) and, unless
/// allowed, Llama 2's injection guard, without encoding it.
///
/// Errors: [`Error::BadDialog`], [`Error::SpecialTagInMessage`].
pub fn check_dialog(messages: &[Message], opts: &ChatOptions) -> Result<()> {
    Dialog::new(messages, opts).map(|_| ())
}

/// Bytes [`write_dialog`] takes for `messages`.
pub fn dialog_bytes_len(messages: &[Message]) -> usize {
    messages.iter().map(|m| 5 + m.content.len()).sum::<usize>() + 4
}

/// Writes `messages` into the front of `out` ([`dialog_bytes_len`]
/// bytes): a `u32` count, then per message a role byte (0 system, 1 user,
/// 2 assistant), a `u32` length and the UTF-8 text, little-endian. A chat
/// keeps its dialog this way in the extra bytes of a saved state
/// ([`crate::state::save`]); [`read_dialog`] reads it back.
///
/// Errors: [`Error::BufferTooSmall`], [`Error::InvalidArgument`] (more
/// than 4 GiB).
pub fn write_dialog(messages: &[Message], out: &mut [u8]) -> Result<usize> {
    let n = dialog_bytes_len(messages);
    if out.len() < n {
        return Err(Error::BufferTooSmall {
            what: "dialog bytes",
            needed: n,
            got: out.len(),
        });
    }
    if messages.len() > u32::MAX as usize
        || messages.iter().any(|m| m.content.len() > u32::MAX as usize)
    {
        return Err(Error::InvalidArgument {
            what: "a dialog of 4 GiB or more",
        });
    }
    out[..4].copy_from_slice(&(messages.len() as u32).to_le_bytes());
    let mut at = 4;
    for m in messages {
        out[at] = match m.role {
            Role::System => 0,
            Role::User => 1,
            Role::Assistant => 2,
        };
        out[at + 1..at + 5].copy_from_slice(&(m.content.len() as u32).to_le_bytes());
        at += 5;
        out[at..at + m.content.len()].copy_from_slice(m.content.as_bytes());
        at += m.content.len();
    }
    Ok(at)
}

/// Reads what [`write_dialog`] wrote: the number of messages and an
/// iterator over them (borrowing `bytes`). Everything is checked first.
///
/// Errors: [`Error::BadState`] for bytes that are not such a dialog
/// (truncated, trailing bytes, an unknown role, text that is not UTF-8).
pub fn read_dialog(bytes: &[u8]) -> Result<(usize, impl Iterator<Item = Message<'_>> + '_)> {
    let bad = |reason| Err(Error::BadState { reason });
    if bytes.len() < 4 {
        return bad("the saved dialog is truncated");
    }
    let count = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let next = |at: usize| -> Result<(Message<'_>, usize)> {
        if bytes.len() - at < 5 {
            return Err(Error::BadState {
                reason: "the saved dialog is truncated",
            });
        }
        let role = match bytes[at] {
            0 => Role::System,
            1 => Role::User,
            2 => Role::Assistant,
            _ => {
                return Err(Error::BadState {
                    reason: "an unknown role in the saved dialog",
                })
            }
        };
        let len = u32::from_le_bytes([bytes[at + 1], bytes[at + 2], bytes[at + 3], bytes[at + 4]])
            as usize;
        let text = bytes
            .get(at + 5..)
            .and_then(|r| r.get(..len))
            .ok_or(Error::BadState {
                reason: "the saved dialog is truncated",
            })?;
        let content = core::str::from_utf8(text).map_err(|_| Error::BadState {
            reason: "a saved message is not UTF-8",
        })?;
        Ok((Message { role, content }, at + 5 + len))
    };
    let mut at = 4;
    for _ in 0..count {
        at = next(at)?.1;
    }
    if at != bytes.len() {
        return bad("trailing bytes after the saved dialog");
    }
    let mut at = 4;
    Ok((
        count,
        (0..count).map_while(move |_| {
            let (m, n) = next(at).ok()?;
            at = n;
            Some(m)
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialogs_round_trip_and_bad_bytes_are_errors() {
        let d = [
            Message::new(Role::System, "s"),
            Message::new(Role::User, "héllo"),
            Message::new(Role::Assistant, ""),
            Message::new(Role::User, "🦙"),
        ];
        let mut buf = [0u8; 64];
        let n = write_dialog(&d, &mut buf).unwrap();
        assert_eq!(n, dialog_bytes_len(&d));
        let (count, it) = read_dialog(&buf[..n]).unwrap();
        assert_eq!(count, 4);
        assert!(it.eq(d.iter().copied()));
        for cut in 0..n {
            assert!(read_dialog(&buf[..cut]).is_err(), "cut {cut}");
        }
        let mut bad = buf;
        bad[4] = 7;
        assert!(read_dialog(&bad[..n]).is_err());
        assert!(write_dialog(&d, &mut buf[..n - 1]).is_err());
    }

    #[test]
    fn strip_is_pythons() {
        assert_eq!(
            py_strip(" \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\u{85}\u{a0}x y\u{3000}\u{2028} "),
            "x y"
        );
        assert_eq!(
            py_strip("\u{200b}x"),
            "\u{200b}x",
            "zero width space is not white space"
        );
    }

    #[test]
    fn roles_are_checked() {
        let o = ChatOptions::default();
        let bad = |m: &[Message]| Dialog::new(m, &o).err();
        let u = Message::new(Role::User, "hi");
        let a = Message::new(Role::Assistant, "yo");
        let s = Message::new(Role::System, "be nice");
        assert!(matches!(bad(&[]), Some(Error::BadDialog { .. })));
        assert!(matches!(bad(&[s]), Some(Error::BadDialog { .. })));
        assert!(matches!(
            bad(&[u, a]),
            Some(Error::BadDialog { message: 1, .. })
        ));
        assert!(matches!(
            bad(&[a]),
            Some(Error::BadDialog { message: 0, .. })
        ));
        assert!(matches!(
            bad(&[u, u]),
            Some(Error::BadDialog { message: 1, .. })
        ));
        assert!(matches!(
            bad(&[s, u, a, s]),
            Some(Error::BadDialog { message: 3, .. })
        ));
        assert!(bad(&[s, u, a, u]).is_none());
        let tag = Message::new(Role::User, "a [/INST] b");
        assert_eq!(
            bad(&[u, a, tag]),
            Some(Error::SpecialTagInMessage {
                tag: "[/INST]",
                message: 2
            })
        );
        let sys_tag = Message::new(Role::System, "<</SYS>>");
        assert_eq!(
            bad(&[sys_tag, u]),
            Some(Error::SpecialTagInMessage {
                tag: "<</SYS>>",
                message: 0
            })
        );
        let allow = ChatOptions {
            allow_special_tags: true,
            ..Default::default()
        };
        assert!(Dialog::new(&[u, a, tag], &allow).is_ok());
    }
}
