//! A session: one conversation's mutable state, carved from one caller buffer.
//!
//! ```text
//! let bytes = Session::required_bytes(&model, &params)?;   // exact
//! let mut buf = vec![0u8; bytes];                           // or a static, or flash-adjacent RAM
//! let mut s = Session::new(&model, params, &mut buf)?;      // nothing allocated from here on
//! s.feed(&prompt_tokens)?;
//! let next = s.sample(&mut sampler)?;
//! ```
//!
//! The buffer holds the KV cache, the activations, the logits, the sampler's
//! scratch and the token history, laid out once (`carve`). Any alignment
//! works: the session starts at the buffer's first multiple of
//! [`Session::ALIGN`] (64) bytes, and every region at a multiple of 64 from
//! there.

use core::sync::atomic::AtomicBool;

use crate::error::{Error, Result};
use crate::forward::{self, State};
use crate::kernels::{self, ActType};
pub use crate::kv::KvType;
use crate::kv::{Geometry, KvCache};
use crate::model::Model;
use crate::parallel::{Inline, Parallel};
use crate::sampler::Sampler;

/// How a session is sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionParams {
    /// Positions the session can hold; 0 means the model's full context.
    pub context: usize,
    /// KV cache element type.
    pub kv_type: KvType,
    /// Most prompt tokens run together (each weight matrix is read once per
    /// batch); 0 means the default, [`SessionParams::DEFAULT_BATCH`]. Costs
    /// about `batch * (6 dim + 2 hidden)` floats of the session buffer.
    pub batch: usize,
}

impl SessionParams {
    /// The batch size used when `batch` is 0.
    pub const DEFAULT_BATCH: usize = 32;

    /// The session that fits a memory budget: with the KV type `kv_type`,
    /// the largest context `model` allows whose session takes at most
    /// `budget_bytes` ([`Session::required_bytes`]), then the largest
    /// prompt batch (up to [`SessionParams::DEFAULT_BATCH`]) that still
    /// fits with it. The context comes first because it is what a
    /// conversation runs out of; a smaller batch only makes the prompt
    /// slower to read.
    ///
    /// Errors: [`Error::BufferTooSmall`] (naming the smallest session, one
    /// position with a batch of one) when not even that fits.
    pub fn max_context_for(
        model: &Model,
        kv_type: KvType,
        budget_bytes: usize,
    ) -> Result<SessionParams> {
        let with = |context: usize, batch: usize| SessionParams {
            context,
            kv_type,
            batch,
        };
        let fits =
            |p: SessionParams| Session::required_bytes(model, &p).is_ok_and(|n| n <= budget_bytes);
        let smallest = with(1, 1);
        if !fits(smallest) {
            return Err(Error::BufferTooSmall {
                what: "memory budget (bytes) for the smallest session",
                needed: Session::required_bytes(model, &smallest)?,
                got: budget_bytes,
            });
        }
        // The sizes grow with the context and with the batch: bisect each.
        let largest = |lo: usize, hi: usize, ok: &dyn Fn(usize) -> bool| {
            let (mut lo, mut hi) = (lo, hi);
            while lo < hi {
                let mid = lo + (hi - lo).div_ceil(2);
                if ok(mid) {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            lo
        };
        let context = largest(1, model.config.seq_len, &|c| fits(with(c, 1)));
        let max_batch = SessionParams::DEFAULT_BATCH.min(context);
        let batch = largest(1, max_batch, &|b| fits(with(context, b)));
        Ok(with(context, batch))
    }
}

/// Every region starts at a multiple of this many bytes from the
/// session's (aligned) start.
const REGION_ALIGN: usize = 64;

/// Regions carved from the session buffer, or (with no buffer) only
/// counted: [`carve`] describes the session's memory once, and the same
/// code both sizes it ([`Session::required_bytes`]) and hands it out
/// ([`Session::new`]), so the two cannot disagree.
struct Arena<'a> {
    /// The bytes not handed out yet (empty when counting).
    rest: &'a mut [u8],
    /// Whether this arena only counts.
    counting: bool,
    /// Bytes used so far, padding included.
    used: u64,
}

impl<'a> Arena<'a> {
    /// An arena that only counts.
    fn counter() -> Arena<'a> {
        Arena {
            rest: &mut [],
            counting: true,
            used: 0,
        }
    }

    /// An arena over `buf`, which starts aligned to [`REGION_ALIGN`] and
    /// holds everything (checked by the caller against the count).
    fn over(buf: &'a mut [u8]) -> Arena<'a> {
        Arena {
            rest: buf,
            counting: false,
            used: 0,
        }
    }

    /// The next `count` elements of `T`, at the next multiple of
    /// [`REGION_ALIGN`] (empty when counting).
    fn take<T: bytemuck::Pod>(&mut self, count: u64) -> Result<&'a mut [T]> {
        let too_big = Error::BadConfig {
            reason: "the session would not fit in this target's address space",
            value: count,
        };
        let start = self.used.next_multiple_of(REGION_ALIGN as u64);
        let bytes = count
            .checked_mul(core::mem::size_of::<T>() as u64)
            .ok_or(too_big)?;
        let end = start.checked_add(bytes).ok_or(too_big)?;
        if end > isize::MAX as u64 {
            return Err(too_big);
        }
        let pad = (start - self.used) as usize;
        self.used = end;
        if self.counting {
            return Ok(&mut []);
        }
        let rest = core::mem::take(&mut self.rest);
        let (_, rest) = rest.split_at_mut(pad);
        let (mine, rest) = rest.split_at_mut(bytes as usize);
        self.rest = rest;
        Ok(bytemuck::cast_slice_mut(mine))
    }
}

/// The context and batch `params` ask of `model`, checked.
fn context_and_batch(model: &Model, params: &SessionParams) -> Result<(usize, usize)> {
    let c = &model.config;
    let context = match params.context {
        0 => c.seq_len,
        n if n > c.seq_len => {
            return Err(Error::InvalidArgument {
                what: "context is longer than the model's context length",
            })
        }
        n => n,
    };
    let batch = match params.batch {
        0 => SessionParams::DEFAULT_BATCH,
        n => n,
    }
    .min(context);
    Ok((context, batch))
}

/// The session's memory, described once: every buffer of the forward pass
/// ([`State`]) and the token history, carved from `arena` in this order.
fn carve<'a>(
    model: &Model,
    params: &SessionParams,
    arena: &mut Arena<'a>,
) -> Result<(State<'a>, &'a mut [u32])> {
    let c = &model.config;
    let (context, batch) = context_and_batch(model, params)?;
    // Which activation quantizations the matrices take.
    let takes = |a: ActType| {
        model
            .layers()
            .iter()
            .flat_map(|l| l.tensors())
            .any(|(_, t)| t.ty.act_type() == a)
            || model.output.ty.act_type() == a
    };
    // Counts in u64: the configuration's bounds keep every product far
    // below 2^64; the arena checks the total against this target.
    let (dim, hidden, kv_dim) = (c.dim as u64, c.hidden_dim as u64, c.kv_dim() as u64);
    let (vocab, ctx, nb) = (c.vocab_size as u64, context as u64, batch as u64);
    let qn = if takes(ActType::Q8) {
        dim.max(hidden)
    } else {
        0
    };
    let qkn = if takes(ActType::Q8K) {
        dim.max(hidden)
    } else {
        0
    };
    // Vectors of the transposed Q8 copy: the batch in whole chunks of 16,
    // none for a batch of 1 (one vector never uses it).
    let tn = if batch > 1 {
        nb.next_multiple_of(kernels::acts::CHUNK as u64)
    } else {
        0
    };
    let geo = Geometry::new(params.kv_type, c, context);
    let kv_mul = c.n_heads / c.n_kv_heads;
    let state = State {
        context,
        batch,
        x: arena.take(nb * dim)?,
        xb: arena.take(nb * dim)?,
        xb2: arena.take(nb * dim)?,
        hb: arena.take(nb * hidden)?,
        hb2: arena.take(nb * hidden)?,
        q: arena.take(nb * dim)?,
        k: arena.take(nb * kv_dim)?,
        v: arena.take(nb * kv_dim)?,
        rope: arena.take(nb * c.head_dim() as u64)?,
        // Attention scores: a row per query head, and each kv head's query
        // scratch, so that the kv heads' tasks (which may run in parallel)
        // each have their own.
        att: arena
            .take(c.n_kv_heads as u64 * (kv_mul as u64 * ctx + geo.query_scratch(kv_mul) as u64))?,
        logits: arena.take(vocab)?,
        probs: arena.take(vocab)?,
        cand: arena.take(vocab)?,
        key_cache: KvCache::new(geo, arena.take(geo.bytes())?),
        value_cache: KvCache::new(geo, arena.take(geo.bytes())?),
        quant_d: arena.take(nb * qn / 32)?,
        quant_sum: arena.take(nb * qn / 32)?,
        quant: arena.take(nb * qn)?,
        quant_kd: arena.take(nb * qkn / 256)?,
        quant_kbsums: arena.take(nb * qkn / 16)?,
        quant_kq: arena.take(nb * qkn)?,
        // The Q8 values again, transposed for the `amx` set's tiles (whole
        // chunks of 16 vectors): any CPU's session has the same size.
        quant_tq: arena.take(tn * qn)?,
        quant_td: arena.take(tn * qn / 32)?,
    };
    let tokens = arena.take(ctx)?;
    Ok((state, tokens))
}

/// One conversation with a model.
///
/// A session borrows its model and its buffer; it never allocates. It is
/// `Send` but used by one thread at a time; many sessions may share a model.
pub struct Session<'a> {
    model: &'a Model<'a>,
    state: State<'a>,
    tokens: &'a mut [u32],
    pos: usize,
    has_logits: bool,
    par: &'a dyn Parallel,
    cancel: Option<&'a AtomicBool>,
}

impl core::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("pos", &self.pos)
            .field("context", &self.context())
            .finish_non_exhaustive()
    }
}

impl<'a> Session<'a> {
    /// The alignment the session gives its regions: a buffer of any
    /// alignment works; the session starts at its first multiple of this
    /// many bytes, and [`Session::required_bytes`] counts the slack.
    pub const ALIGN: usize = REGION_ALIGN;

    /// The number of bytes [`Session::new`] needs for `model` and
    /// `params`, exactly (one less is [`Error::BufferTooSmall`]), for a
    /// buffer of any alignment: the regions, plus `ALIGN - 1` bytes of slack
    /// for aligning the start.
    pub fn required_bytes(model: &Model, params: &SessionParams) -> Result<usize> {
        let mut counter = Arena::counter();
        carve(model, params, &mut counter)?;
        let total = counter
            .used
            .checked_add(Session::ALIGN as u64 - 1)
            .filter(|&n| n <= isize::MAX as u64)
            .ok_or(Error::BadConfig {
                reason: "the session would not fit in this target's address space",
                value: counter.used,
            })?;
        Ok(total as usize)
    }

    /// Creates a session in `buf` (at least [`Session::required_bytes`]
    /// long, any alignment). The buffer's content does not matter.
    pub fn new(
        model: &'a Model<'a>,
        params: SessionParams,
        buf: &'a mut [u8],
    ) -> Result<Session<'a>> {
        let needed = Session::required_bytes(model, &params)?;
        if buf.len() < needed {
            return Err(Error::BufferTooSmall {
                what: "session buffer (bytes)",
                needed,
                got: buf.len(),
            });
        }
        // Choose the kernel set now (CPU detection, the LLAMETTE_KERNELS
        // variable under std), not during the first token: nothing may
        // allocate after this function.
        let _ = kernels::active();
        let skip = (Session::ALIGN - buf.as_ptr() as usize % Session::ALIGN) % Session::ALIGN;
        let mut arena = Arena::over(&mut buf[skip..]);
        let (state, tokens) = carve(model, &params, &mut arena)?;
        Ok(Session {
            model,
            state,
            tokens,
            pos: 0,
            has_logits: false,
            par: &Inline,
            cancel: None,
        })
    }

    /// The model.
    pub fn model(&self) -> &'a Model<'a> {
        self.model
    }

    /// Positions this session can hold.
    pub fn context(&self) -> usize {
        self.state.context
    }

    /// Positions used so far (the next token goes at this position).
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The tokens fed so far, one per position.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens[..self.pos]
    }

    /// Runs matrix products through `par` from now on.
    pub fn set_parallel(&mut self, par: &'a dyn Parallel) {
        self.par = par;
    }

    /// Checks `flag` at least once per layer; when it is set, the current
    /// [`Session::feed`] stops with [`Error::Cancelled`]. The flag is not
    /// cleared by the session.
    pub fn set_cancel_flag(&mut self, flag: Option<&'a AtomicBool>) {
        self.cancel = flag;
    }

    /// Forgets the positions from `pos` on (nothing happens if `pos` is not
    /// less than [`Session::pos`]); feeding continues at `pos`. The logits
    /// are gone until the next feed. Use it to edit the end of a
    /// conversation without recomputing its beginning.
    pub fn truncate(&mut self, pos: usize) {
        if pos < self.pos {
            self.pos = pos;
            self.has_logits = false;
        }
    }

    /// Forgets every position: the session is as new.
    pub fn reset(&mut self) {
        self.pos = 0;
        self.has_logits = false;
    }

    /// Runs the model over `tokens` at the next positions. Afterwards
    /// [`Session::logits`] holds the prediction for the position after the
    /// last one.
    ///
    /// Checks everything first: an empty slice, an unknown id or too many
    /// tokens for the context is an error that changes nothing. When
    /// cancelled, the tokens processed so far are kept (see [`Session::pos`])
    /// and there are no logits until the next successful feed.
    pub fn feed(&mut self, tokens: &[u32]) -> Result<()> {
        if tokens.is_empty() {
            return Err(Error::InvalidArgument {
                what: "feed needs at least one token",
            });
        }
        let vocab = self.model.config.vocab_size;
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::UnknownToken {
                id,
                vocab: vocab as u32,
            });
        }
        if tokens.len() > self.context() - self.pos {
            return Err(Error::ContextFull {
                pos: self.pos,
                requested: tokens.len(),
                context: self.context(),
            });
        }
        self.has_logits = false;
        let chunks = tokens.chunks(self.state.batch);
        let n_chunks = chunks.len();
        for (i, chunk) in chunks.enumerate() {
            let last = i + 1 == n_chunks;
            forward::forward(
                self.model,
                &mut self.state,
                chunk,
                self.pos,
                last,
                self.par,
                self.cancel,
            )?;
            self.tokens[self.pos..self.pos + chunk.len()].copy_from_slice(chunk);
            self.pos += chunk.len();
        }
        self.has_logits = true;
        Ok(())
    }

    /// The logits predicting the next token, after a successful feed.
    pub fn logits(&self) -> Option<&[f32]> {
        self.has_logits.then_some(&*self.state.logits)
    }

    /// Draws the next token from the current logits (does not feed it).
    pub fn sample(&mut self, sampler: &mut Sampler) -> Result<u32> {
        if !self.has_logits {
            return Err(Error::NothingToSample);
        }
        let s = &mut self.state;
        Ok(sampler.sample(s.logits, &self.tokens[..self.pos], s.probs, s.cand))
    }
}

/// What the generation loop ([`crate::generate`]) and saved states
/// ([`crate::state`]) need beyond feeding and sampling.
impl<'a> Session<'a> {
    /// [`Session::sample`] with a hook that adjusts a copy of the logits
    /// first (see [`Sampler::sample_adjusted`]): a logit bias, banned tokens.
    pub fn sample_adjusted(
        &mut self,
        sampler: &mut Sampler,
        adjust: impl FnOnce(&mut [f32]),
    ) -> Result<u32> {
        if !self.has_logits {
            return Err(Error::NothingToSample);
        }
        let s = &mut self.state;
        Ok(sampler.sample_adjusted(s.logits, adjust, &self.tokens[..self.pos], s.probs, s.cand))
    }

    /// Where the KV cache keeps its rows.
    pub(crate) fn kv_geometry(&self) -> &Geometry {
        self.state.key_cache.geometry()
    }

    /// The element type of the KV cache.
    pub fn kv_type(&self) -> KvType {
        self.state.key_cache.geometry().kv_type
    }

    /// Everything a saved state holds, for [`crate::state`]: the token
    /// history, the position, the logits (with whether they are valid) and
    /// the two caches.
    pub(crate) fn saved_parts(&mut self) -> SavedParts<'_, 'a> {
        SavedParts {
            tokens: self.tokens,
            pos: &mut self.pos,
            has_logits: &mut self.has_logits,
            logits: self.state.logits,
            keys: &mut self.state.key_cache,
            values: &mut self.state.value_cache,
        }
    }
}

/// The parts of a session a saved state reads and writes.
pub(crate) struct SavedParts<'s, 'a> {
    pub tokens: &'s mut [u32],
    pub pos: &'s mut usize,
    pub has_logits: &'s mut bool,
    pub logits: &'s mut [f32],
    pub keys: &'s mut KvCache<'a>,
    pub values: &'s mut KvCache<'a>,
}
