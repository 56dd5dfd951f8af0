//! The generation loop: the one every front end (the C ABI, the CLI, the
//! bindings through the C ABI) runs.
//!
//! A [`Generator`] sits beside a [`Session`] and owns what a loop over it
//! needs between calls: the token sampled last and not fed yet (the
//! *pending* token), the seeded [`Sampler`], the UTF-8-safe [`Decoder`] (or
//! llama2.c `run.c`'s byte-exact printing) and the text held back while it
//! may still turn into a stop string. It allocates nothing.
//!
//! ```text
//! let mut g = Generator::new(Some(&tok), TextMode::Utf8);
//! g.feed(&mut session, &prompt)?;
//! let out = g.generate(&mut session, &params, &mut |_| {}, &mut |event| {
//!     if let Event::Text(t) = event { print(t) }
//!     true
//! })?;
//! // out.reason: EndToken, MaxTokens, StopString, ContextFull, Cancelled, Callback
//! ```
//!
//! One step feeds the pending token (one forward pass) and samples the next
//! from the logits, through an `adjust` hook that may change a copy of them
//! first (a logit bias, banned tokens). The sampled token becomes pending:
//! a session can always be continued, truncated or saved between steps.

use crate::error::{Error, Result};
use crate::sampler::{Sampler, SamplerParams};
use crate::session::Session;
use crate::tokenizer::{Decoder, Tokenizer};

/// The most stop strings one generation takes.
pub const MAX_STOP_STRINGS: usize = 8;
/// The longest stop string, in bytes.
pub const MAX_STOP_BYTES: usize = 64;

/// How generated tokens become text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextMode {
    /// Whole UTF-8 characters: a character spelled by several byte tokens
    /// comes with the token that completes it; control tokens give nothing;
    /// the piece after BOS loses its leading space. Every chunk is UTF-8.
    Utf8,
    /// Exactly the bytes llama2.c's `run.c` prints
    /// ([`Tokenizer::llama2c_piece`]): raw byte tokens, single unprintable
    /// bytes skipped, control tokens' raw pieces. Not always UTF-8.
    Llama2c,
}

/// Why a generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end token ([`GenerateParams::stop_at_eos`],
    /// [`GenerateParams::stop_at_bos`]); it is pending, and was not given
    /// to the caller.
    EndToken,
    /// [`GenerateParams::max_tokens`] tokens were generated.
    MaxTokens,
    /// The text completed one of [`GenerateParams::stop_strings`]; the text
    /// before it was emitted, the stop string and what follows it were not.
    StopString,
    /// The context is full: no room to feed the last sampled token.
    ContextFull,
    /// The host cancelled (the session's cancel flag); the pending token
    /// stays pending.
    Cancelled,
    /// The caller's callback asked to stop.
    Callback,
}

/// What one generation does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerateParams<'p> {
    /// The sampler's settings (checked with [`SamplerParams::validate`]).
    pub sampler: SamplerParams,
    /// The seed of the sampler's random generator: it is seeded at the
    /// first step, and again whenever `seed` differs from the last step's
    /// (0 is replaced by a fixed non-zero constant).
    pub seed: u64,
    /// Most tokens to generate; 0 means no limit (up to the context).
    pub max_tokens: usize,
    /// Stop when the model produces EOS (`</s>`).
    pub stop_at_eos: bool,
    /// Stop when the model produces BOS (llama2.c `run.c`'s rule).
    pub stop_at_bos: bool,
    /// Stop when the text contains one of these (at most
    /// [`MAX_STOP_STRINGS`], each 1 to [`MAX_STOP_BYTES`] bytes). A match
    /// split over several tokens is found; text that might still become a
    /// stop string is held back until it is known not to.
    pub stop_strings: &'p [&'p str],
}

impl Default for GenerateParams<'_> {
    /// llama2.c's sampler defaults, no token limit, stop at BOS and EOS, no
    /// stop strings.
    fn default() -> Self {
        GenerateParams {
            sampler: SamplerParams::default(),
            seed: 0,
            max_tokens: 0,
            stop_at_eos: true,
            stop_at_bos: true,
            stop_strings: &[],
        }
    }
}

impl GenerateParams<'_> {
    /// Checks the sampler settings and the stop strings.
    ///
    /// Errors: [`Error::InvalidParameter`] (a sampler setting),
    /// [`Error::InvalidArgument`] (too many, empty or too long stop strings).
    pub fn validate(&self) -> Result<()> {
        self.sampler.validate()?;
        if self.stop_strings.len() > MAX_STOP_STRINGS {
            return Err(Error::InvalidArgument {
                what: "at most 8 stop strings",
            });
        }
        for s in self.stop_strings {
            if s.is_empty() || s.len() > MAX_STOP_BYTES {
                return Err(Error::InvalidArgument {
                    what: "a stop string must be 1 to 64 bytes long",
                });
            }
        }
        Ok(())
    }
}

/// What one [`Generator::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A token was sampled; its text (possibly none yet) went to `emit`.
    Token(u32),
    /// A token was sampled whose text completed a stop string: the text
    /// before the stop string went to `emit`. Generation should stop.
    StopString(u32),
    /// An end token was sampled (pending, no text).
    End(u32),
    /// The pending token does not fit in the context: nothing was done.
    ContextFull,
}

/// What [`Generator::generate`] reports to its callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'e> {
    /// Text, in the order generated. The text of a token comes before its
    /// [`Event::Token`]; text held back for a stop string may come with a
    /// later token, or after the last one when generation ends.
    Text(&'e [u8]),
    /// A generated token (end tokens are not reported). Return false to stop.
    Token(u32),
}

/// How a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Tokens reported through [`Event::Token`].
    pub n_tokens: usize,
    /// Why it stopped.
    pub reason: StopReason,
}

/// The state of a generation loop over a session (see the module
/// documentation). Allocation-free; `Clone`.
#[derive(Debug, Clone)]
pub struct Generator<'t, 'a> {
    tok: Option<&'t Tokenizer<'a>>,
    mode: TextMode,
    decoder: Option<Decoder<'t, 'a>>,
    sampler: Sampler,
    /// The seed the sampler was seeded with, if it was.
    seeded: Option<u64>,
    /// A sampled token not fed yet.
    pending: Option<u32>,
    /// Text not emitted yet because it may be the start of a stop string.
    held: [u8; MAX_STOP_BYTES],
    n_held: usize,
}

impl<'t, 'a> Generator<'t, 'a> {
    /// A generator that decodes with `tok` (no text without one) in `mode`.
    pub fn new(tok: Option<&'t Tokenizer<'a>>, mode: TextMode) -> Self {
        Generator {
            tok,
            mode,
            decoder: tok.map(|t| t.decoder()),
            sampler: Sampler::new(SamplerParams::greedy(), 0),
            seeded: None,
            pending: None,
            held: [0; MAX_STOP_BYTES],
            n_held: 0,
        }
    }

    /// The token sampled last and not fed yet (an end token too).
    pub fn pending(&self) -> Option<u32> {
        self.pending
    }

    /// The sampler (its settings are those of the last step).
    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    /// The seed the sampler was last seeded with (`None` before the first
    /// step, or after [`Generator::reset`]).
    pub fn seed(&self) -> Option<u64> {
        self.seeded
    }

    /// Whether token `id` ends a generation with `params`.
    pub fn is_end(&self, id: u32, params: &GenerateParams) -> bool {
        self.tok.is_some_and(|t| {
            (params.stop_at_eos && id == t.eos()) || (params.stop_at_bos && id == t.bos())
        })
    }

    /// Feeds the pending token, if any, then `tokens` (which may be empty),
    /// and starts the text anew after them (a character half decoded is
    /// dropped; after BOS the next piece loses its leading space).
    ///
    /// Everything is checked first: an unknown id or too little room for
    /// the pending token and `tokens` is an error that changes nothing.
    /// Cancelled, the tokens fed so far stay fed (see [`Session::feed`]).
    pub fn feed(&mut self, session: &mut Session, tokens: &[u32]) -> Result<()> {
        let vocab = session.model().config.vocab_size;
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::UnknownToken {
                id,
                vocab: vocab as u32,
            });
        }
        let extra = usize::from(self.pending.is_some());
        if tokens.len() + extra > session.context() - session.pos() {
            return Err(Error::ContextFull {
                pos: session.pos(),
                requested: tokens.len() + extra,
                context: session.context(),
            });
        }
        self.feed_pending(session)?;
        if !tokens.is_empty() {
            session.feed(tokens)?;
        }
        self.restart_text(session);
        Ok(())
    }

    /// Forgets the positions from `pos` on and the pending token, and
    /// starts the text anew: to regenerate an answer or edit the end of a
    /// conversation. The sampler keeps its state.
    pub fn truncate(&mut self, session: &mut Session, pos: usize) {
        self.pending = None;
        session.truncate(pos);
        self.restart_text(session);
    }

    /// Forgets everything: the session is as new and the sampler is
    /// reseeded at the next step.
    pub fn reset(&mut self, session: &mut Session) {
        session.reset();
        self.pending = None;
        self.seeded = None;
        self.restart_text(session);
    }

    /// A fresh decoder, primed so that a token after BOS loses its leading
    /// space; no text held back.
    fn restart_text(&mut self, session: &Session) {
        self.n_held = 0;
        if let (Some(t), Some(d)) = (self.tok, &mut self.decoder) {
            *d = t.decoder();
            if let Some(&last) = session.tokens().last() {
                if last == t.bos() {
                    let _ = d.push(last, |_| {});
                }
            }
        }
    }

    fn feed_pending(&mut self, session: &mut Session) -> Result<()> {
        if let Some(t) = self.pending {
            session.feed(&[t])?;
            self.pending = None;
        }
        Ok(())
    }

    /// Takes the sampler settings; reseeds when the seed changed.
    fn configure(&mut self, p: &GenerateParams) {
        self.sampler.params = p.sampler;
        if self.seeded != Some(p.seed) {
            self.sampler.reseed(p.seed);
            self.seeded = Some(p.seed);
        }
    }

    /// One step: feeds the pending token (a forward pass), samples the next
    /// one with `adjust` applied to a copy of the logits, and passes its
    /// text to `emit` (through the stop-string check). The new token is
    /// pending afterwards.
    ///
    /// Errors: [`Error::InvalidParameter`], [`Error::InvalidArgument`]
    /// (nothing changed), [`Error::NothingToSample`] (no feed yet),
    /// [`Error::Cancelled`] (the pending token stays pending).
    pub fn step(
        &mut self,
        session: &mut Session,
        params: &GenerateParams,
        adjust: &mut dyn FnMut(&mut [f32]),
        emit: &mut dyn FnMut(&[u8]),
    ) -> Result<Step> {
        params.validate()?;
        if self.pending.is_some() && session.pos() >= session.context() {
            return Ok(Step::ContextFull);
        }
        if self.pending.is_none() && session.logits().is_none() {
            return Err(Error::NothingToSample);
        }
        self.feed_pending(session)?;
        self.configure(params);
        let prev = session.tokens().last().copied();
        let token = session.sample_adjusted(&mut self.sampler, |l| adjust(l))?;
        self.pending = Some(token);
        if self.is_end(token, params) {
            return Ok(Step::End(token));
        }
        let Some(tok) = self.tok else {
            return Ok(Step::Token(token));
        };
        let mut stopped = false;
        let mut text = |piece: &[u8]| {
            if !stopped {
                stopped = push_checked(
                    &mut self.held,
                    &mut self.n_held,
                    params.stop_strings,
                    piece,
                    emit,
                );
            }
        };
        match (self.mode, &mut self.decoder) {
            (TextMode::Utf8, Some(d)) => d.push(token, |s| text(s.as_bytes()))?,
            _ => tok.llama2c_piece(prev.unwrap_or(u32::MAX), token, &mut text)?,
        }
        Ok(if stopped {
            Step::StopString(token)
        } else {
            Step::Token(token)
        })
    }

    /// Emits the text held back for a stop string (at the end of a
    /// generation that did not stop at one).
    pub fn flush_held(&mut self, emit: &mut dyn FnMut(&[u8])) {
        if self.n_held > 0 {
            emit(&self.held[..self.n_held]);
            self.n_held = 0;
        }
    }

    /// Generates until a stop (see [`StopReason`]): each token's text and
    /// then the token go to `on_event`, which returns false to stop.
    /// Text held back for a stop string is emitted at the end. Needs a feed
    /// first (or an earlier step).
    ///
    /// Errors: as [`Generator::step`], except that a cancellation is the
    /// stop reason [`StopReason::Cancelled`].
    pub fn generate(
        &mut self,
        session: &mut Session,
        params: &GenerateParams,
        adjust: &mut dyn FnMut(&mut [f32]),
        on_event: &mut dyn FnMut(Event) -> bool,
    ) -> Result<Outcome> {
        params.validate()?;
        let mut n = 0;
        let reason = loop {
            if params.max_tokens != 0 && n >= params.max_tokens {
                break StopReason::MaxTokens;
            }
            let step = self.step(session, params, adjust, &mut |t| {
                on_event(Event::Text(t));
            });
            match step {
                Err(Error::Cancelled) => break StopReason::Cancelled,
                Err(e) => return Err(e),
                Ok(Step::ContextFull) => break StopReason::ContextFull,
                Ok(Step::End(_)) => break StopReason::EndToken,
                Ok(Step::StopString(t)) => {
                    n += 1;
                    on_event(Event::Token(t));
                    break StopReason::StopString;
                }
                Ok(Step::Token(t)) => {
                    n += 1;
                    if !on_event(Event::Token(t)) {
                        break StopReason::Callback;
                    }
                }
            }
        };
        if reason != StopReason::StopString {
            self.flush_held(&mut |t| {
                on_event(Event::Text(t));
            });
        }
        Ok(Outcome {
            n_tokens: n,
            reason,
        })
    }

    /// The state a saved session carries: the pending token, the sampler's
    /// seed (if seeded) and random state, the decoder's bytes of a character
    /// not complete yet and whether the last token was BOS.
    pub(crate) fn saved(&self) -> SavedGenerator {
        let (pending_bytes, n_pending, after_bos) = match &self.decoder {
            Some(d) => d.saved(),
            None => ([0; 4], 0, false),
        };
        SavedGenerator {
            pending: self.pending,
            seeded: self.seeded,
            rng: self.sampler.rng_state(),
            sampler: self.sampler.params,
            decoder_bytes: pending_bytes,
            decoder_len: n_pending,
            after_bos,
        }
    }

    /// Restores what [`Generator::saved`] gave (already checked).
    pub(crate) fn restore(&mut self, s: &SavedGenerator) {
        self.pending = s.pending;
        self.seeded = s.seeded;
        self.sampler = Sampler::new(s.sampler, 0);
        self.sampler.set_rng_state(s.rng);
        self.n_held = 0;
        if let (Some(t), Some(d)) = (self.tok, &mut self.decoder) {
            *d = t.decoder();
            d.restore(s.decoder_bytes, s.decoder_len, s.after_bos);
        }
    }
}

/// A generator's part of a saved state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SavedGenerator {
    pub pending: Option<u32>,
    pub seeded: Option<u64>,
    pub rng: u64,
    pub sampler: SamplerParams,
    pub decoder_bytes: [u8; 4],
    pub decoder_len: usize,
    pub after_bos: bool,
}

/// Passes `piece` on to `emit` through the stop-string check: text that is
/// (or may become) a stop string is held back in `held`. Returns true when
/// a stop string is complete (the text before it was emitted, the rest is
/// dropped).
fn push_checked(
    held: &mut [u8; MAX_STOP_BYTES],
    n_held: &mut usize,
    stops: &[&str],
    piece: &[u8],
    emit: &mut dyn FnMut(&[u8]),
) -> bool {
    if stops.is_empty() {
        if !piece.is_empty() {
            emit(piece);
        }
        return false;
    }
    // The text to look at is `held[..h]` followed by `piece`.
    let h = *n_held;
    let len = h + piece.len();
    let at = |i: usize| if i < h { held[i] } else { piece[i - h] };
    let emit_range = |emit: &mut dyn FnMut(&[u8]), a: usize, b: usize| {
        if a < h.min(b) {
            emit(&held[a..h.min(b)]);
        }
        if b > h {
            let s = a.max(h) - h;
            emit(&piece[s..b - h]);
        }
    };
    // The first position where a stop string starts (whole) or where the
    // rest of the text is the beginning of one.
    for i in 0..len {
        let rest = len - i;
        for s in stops {
            let s = s.as_bytes();
            let k = rest.min(s.len());
            if (0..k).all(|j| at(i + j) == s[j]) {
                if k == s.len() {
                    emit_range(emit, 0, i);
                    *n_held = 0;
                    return true;
                }
                // A partial match runs to the end of the text: hold it.
                emit_range(emit, 0, i);
                let mut tmp = [0u8; MAX_STOP_BYTES];
                for (j, b) in tmp[..rest].iter_mut().enumerate() {
                    *b = at(i + j);
                }
                held[..rest].copy_from_slice(&tmp[..rest]);
                *n_held = rest;
                return false;
            }
        }
    }
    emit_range(emit, 0, len);
    *n_held = 0;
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    /// Feeds `pieces` through the stop check; returns the emitted text and
    /// the index of the piece that completed a stop string.
    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<u8>, Option<usize>) {
        let mut held = [0u8; MAX_STOP_BYTES];
        let mut n = 0;
        let mut out = Vec::new();
        for (i, p) in pieces.iter().enumerate() {
            if push_checked(&mut held, &mut n, stops, p.as_bytes(), &mut |t| {
                out.extend_from_slice(t)
            }) {
                return (out, Some(i));
            }
        }
        out.extend_from_slice(&held[..n]);
        (out, None)
    }

    #[test]
    fn stop_string_split_over_pieces_is_found_and_not_emitted() {
        let (out, at) = run(&["User:"], &["Hello", " U", "se", "r: more"]);
        assert_eq!(out, b"Hello ");
        assert_eq!(at, Some(3));
        let (out, at) = run(&["\n\n", "###"], &["a", "#", "#b", "\n", "\n"]);
        assert_eq!(out, b"a##b");
        assert_eq!(at, Some(4));
    }

    #[test]
    fn partial_matches_are_released_when_they_fail() {
        let (out, at) = run(&["User:"], &["Us", "e", "ful"]);
        assert_eq!(out, b"Useful");
        assert_eq!(at, None);
        // Held at the end of the text: released by the final flush.
        let (out, at) = run(&["User:"], &["a Use"]);
        assert_eq!(out, b"a Use");
        assert_eq!(at, None);
        // An overlapping restart: "aab" inside "aaab".
        let (out, at) = run(&["aab"], &["a", "a", "a", "b"]);
        assert_eq!(out, b"a");
        assert_eq!(at, Some(3));
    }
}
