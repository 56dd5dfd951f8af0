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
//! scratch and the token history. Its start must be aligned to
//! [`Session::ALIGN`] bytes (64 is best: every region is placed at a multiple
//! of 64 from the start).

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

/// Where each region of the session buffer starts, and the total.
#[derive(Debug, Clone, Copy)]
struct Layout {
    context: usize,
    batch: usize,
    total: usize,
    regions: [(usize, usize); Region::COUNT],
}

/// The regions of the session buffer, in order.
#[derive(Debug, Clone, Copy)]
enum Region {
    X,
    Xb,
    Xb2,
    Hb,
    Hb2,
    Q,
    K,
    V,
    Rope,
    Att,
    Logits,
    Probs,
    Cand,
    KeyCache,
    ValueCache,
    QuantD,
    QuantSum,
    Quant,
    QuantKD,
    QuantKBsums,
    QuantKQ,
    Tokens,
}

impl Region {
    const COUNT: usize = 22;
}

/// Every region starts at a multiple of this many bytes from the buffer start.
const REGION_ALIGN: usize = 64;

impl Layout {
    fn new(model: &Model, params: &SessionParams) -> Result<Layout> {
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
        let geo = Geometry::new(params.kv_type, c, context);
        // Which activation quantizations the matrices take.
        let takes = |a: ActType| {
            model
                .layers()
                .iter()
                .flat_map(|l| l.tensors())
                .any(|(_, t)| t.ty.act_type() == a)
                || model.output.ty.act_type() == a
        };
        // Sizes in u64: the configuration's bounds keep every product far
        // below 2^64, and the total is checked against this target's usize.
        let (dim, hidden, kv_dim) = (c.dim as u64, c.hidden_dim as u64, c.kv_dim() as u64);
        let (vocab, ctx) = (c.vocab_size as u64, context as u64);
        let nb = batch as u64;
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
        let kv = geo.bytes();
        let kv_mul = (c.n_heads / c.n_kv_heads) as u64;
        let sizes: [u64; Region::COUNT] = [
            nb * dim * 4,
            nb * dim * 4,
            nb * dim * 4,
            nb * hidden * 4,
            nb * hidden * 4,
            nb * dim * 4,
            nb * kv_dim * 4,
            nb * kv_dim * 4,
            nb * c.head_dim() as u64 * 4,
            // Attention scores: a row per query head, and each kv head's
            // query scratch, so that the kv heads' tasks (which may run in
            // parallel) each have their own.
            c.n_kv_heads as u64 * (kv_mul * ctx + geo.query_scratch(kv_mul as usize) as u64) * 4,
            vocab * 4,
            vocab * 4,
            vocab * 8,
            kv,
            kv,
            nb * qn / 32 * 4,
            nb * qn / 32 * 4,
            nb * qn,
            nb * qkn / 256 * 4,
            nb * qkn / 16 * 2,
            nb * qkn,
            ctx * 4,
        ];
        let too_big = Error::BadConfig {
            reason: "the session would not fit in this target's address space",
            value: kv,
        };
        let mut regions = [(0, 0); Region::COUNT];
        let mut total = 0u64;
        for (r, &size) in regions.iter_mut().zip(&sizes) {
            let start = usize::try_from(total).map_err(|_| too_big)?;
            *r = (start, usize::try_from(size).map_err(|_| too_big)?);
            total += size.next_multiple_of(REGION_ALIGN as u64);
        }
        let total = usize::try_from(total).map_err(|_| too_big)?;
        if total > isize::MAX as usize {
            return Err(too_big);
        }
        Ok(Layout {
            context,
            batch,
            total,
            regions,
        })
    }
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

/// Splits `count` elements of `T` off the front of a region table entry.
fn carve<'a, T: bytemuck::Pod>(
    buf: &mut &'a mut [u8],
    region: (usize, usize),
    base: usize,
) -> &'a mut [T] {
    let (offset, size) = region;
    let rest = core::mem::take(buf);
    // Regions are laid out in increasing order: skip to this one's offset.
    let (_, rest) = rest.split_at_mut(offset - base);
    let (mine, rest) = rest.split_at_mut(size);
    *buf = rest;
    bytemuck::cast_slice_mut(mine)
}

impl<'a> Session<'a> {
    /// The buffer's start must be aligned to this many bytes.
    pub const ALIGN: usize = 8;

    /// The exact number of bytes a session needs for `model` and `params`.
    pub fn required_bytes(model: &Model, params: &SessionParams) -> Result<usize> {
        Layout::new(model, params).map(|l| l.total)
    }

    /// Creates a session in `buf` (at least [`Session::required_bytes`] long,
    /// aligned to [`Session::ALIGN`]). The buffer's content does not matter.
    pub fn new(
        model: &'a Model<'a>,
        params: SessionParams,
        buf: &'a mut [u8],
    ) -> Result<Session<'a>> {
        let layout = Layout::new(model, &params)?;
        if buf.len() < layout.total {
            return Err(Error::BufferTooSmall {
                what: "session buffer (bytes)",
                needed: layout.total,
                got: buf.len(),
            });
        }
        if !(buf.as_ptr() as usize).is_multiple_of(Session::ALIGN) {
            return Err(Error::BufferMisaligned {
                what: "session buffer",
                align: Session::ALIGN,
            });
        }
        // Choose the kernel set now (CPU detection, the LLAMETTE_KERNELS
        // variable under std), not during the first token: nothing may
        // allocate after this function.
        let _ = kernels::active();
        let mut rest: &'a mut [u8] = buf;
        let mut base = 0;
        let r = layout.regions;
        macro_rules! take {
            ($region:expr) => {{
                let region = r[$region as usize];
                let s = carve(&mut rest, region, base);
                base = region.0 + region.1;
                s
            }};
        }
        let x = take!(Region::X);
        let xb = take!(Region::Xb);
        let xb2 = take!(Region::Xb2);
        let hb = take!(Region::Hb);
        let hb2 = take!(Region::Hb2);
        let q = take!(Region::Q);
        let k = take!(Region::K);
        let v = take!(Region::V);
        let rope = take!(Region::Rope);
        let att = take!(Region::Att);
        let logits = take!(Region::Logits);
        let probs = take!(Region::Probs);
        let cand = take!(Region::Cand);
        let geo = Geometry::new(params.kv_type, &model.config, layout.context);
        let key_cache = KvCache::new(geo, take!(Region::KeyCache));
        let value_cache = KvCache::new(geo, take!(Region::ValueCache));
        let quant_d = take!(Region::QuantD);
        let quant_sum = take!(Region::QuantSum);
        let quant = take!(Region::Quant);
        let quant_kd = take!(Region::QuantKD);
        let quant_kbsums = take!(Region::QuantKBsums);
        let quant_kq = take!(Region::QuantKQ);
        let tokens = take!(Region::Tokens);
        let _ = base;
        Ok(Session {
            model,
            state: State {
                context: layout.context,
                batch: layout.batch,
                x,
                xb,
                xb2,
                hb,
                hb2,
                q,
                k,
                v,
                rope,
                att,
                logits,
                probs,
                cand,
                key_cache,
                value_cache,
                quant_d,
                quant_sum,
                quant,
                quant_kd,
                quant_kbsums,
                quant_kq,
            },
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
