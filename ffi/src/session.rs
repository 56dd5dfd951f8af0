//! The session handle: a conversation's state in one block of memory.
//!
//! The memory of a session (caller-provided, or allocated by
//! `llamette_session_new`) is laid out as:
//!
//! ```text
//! [ llamette_session handle | text buffer | llamette_core::Session buffer ]
//!   rounded to 64             64          the core's required_bytes
//! ```
//!
//! The core `Session<'static>` inside the handle borrows the model (kept
//! alive by the handle's `Arc`), the cancel flag and the dispatch (fields of
//! the handle at a fixed address, reached only through shared references)
//! and the core buffer (caller memory, untouched by anyone else until free).

use core::cell::UnsafeCell;
use core::ffi::{c_char, c_void};
use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicBool, Ordering};
use std::alloc::Layout;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use llamette_core::parallel::ThreadPool;
use llamette_core::session::KvType;
use llamette_core::tokenizer::Decoder;
use llamette_core::{Model, Sampler, SamplerParams, Session, SessionParams, Tokenizer};

use crate::error::*;
use crate::model::{llamette_model, model_arc, model_ref};
use crate::parallel::{llamette_parallel, Dispatch, DispatchCell};

/// The memory given to `llamette_session_init` must be aligned to this many
/// bytes (64 is best: every region then starts on a cache line).
pub const LLAMETTE_SESSION_ALIGN: usize = 8;

/// Every region of the session memory starts at a multiple of this.
const REGION_ALIGN: usize = 64;

/// The most threads `llamette_session_set_threads` and `llamette_parallel`
/// accept.
const MAX_THREADS: u32 = 1024;

/// Element type of a session's KV cache (`llamette_session_params.kv_type`).
#[allow(non_camel_case_types)]
pub type llamette_kv_type = u32;
/// 32-bit floats: exact, 4 bytes per value.
pub const LLAMETTE_KV_F32: llamette_kv_type = 0;
/// 16-bit floats: half the memory, about 3 decimal digits.
pub const LLAMETTE_KV_F16: llamette_kv_type = 1;

/// How a session is sized.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct llamette_session_params {
    /// Positions the session can hold (prompt and generated tokens); 0 means
    /// the model's context length, which is also the maximum.
    pub context_length: u32,
    /// KV cache element type, `LLAMETTE_KV_F32` or `LLAMETTE_KV_F16`.
    pub kv_type: llamette_kv_type,
    /// Most prompt tokens a prefill runs together (each weight matrix is read
    /// once per batch); 0 means the default (32). A larger batch takes more
    /// session memory. A cancelled prefill keeps whole batches.
    pub batch: u32,
}

/// Sampler settings, used by `llamette_session_step` and
/// `llamette_session_generate`. `llamette_sampler_params_default` fills in
/// llama2.c's defaults. With `top_k = 0`, `min_p = 0` and
/// `repeat_penalty = 1` the sampler is llama2.c `run.c`'s, bit for bit.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct llamette_sampler_params {
    /// Divides the logits; 0 (or less, or NaN) means greedy: always the most
    /// likely token.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 keeps all.
    pub top_k: u32,
    /// Nucleus sampling: keep the most likely tokens whose mass first exceeds
    /// `top_p`; values outside (0, 1) keep all.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely; 0 keeps all.
    pub min_p: f32,
    /// Penalise the tokens among the last `repeat_last_n`: positive logits
    /// are divided by it, negative ones multiplied; 1 is off.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: u32,
    /// Seed of the random generator (xorshift, as llama2.c); 0 stands for a
    /// fixed non-zero constant. The generator is seeded at the first step
    /// after the session is made or reset and whenever `seed` differs from
    /// the previous step's; otherwise its state carries on.
    pub seed: u64,
}

impl From<&llamette_sampler_params> for SamplerParams {
    fn from(p: &llamette_sampler_params) -> SamplerParams {
        SamplerParams {
            temperature: p.temperature,
            top_k: p.top_k as usize,
            top_p: p.top_p,
            min_p: p.min_p,
            repeat_penalty: p.repeat_penalty,
            repeat_last_n: p.repeat_last_n as usize,
            seed: p.seed,
        }
    }
}

/// What one `llamette_session_step` produced.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct llamette_step_result {
    /// The sampled token. It is not yet in the KV cache: the next prefill,
    /// step or generate feeds it first.
    pub token: u32,
    /// Whether `token` is the end of a text (the tokenizer's BOS or EOS);
    /// then `text` is empty. Always false without a tokenizer.
    pub is_end: bool,
    /// The text this token completes: UTF-8, whole characters only (a
    /// character split over several tokens comes with the token that
    /// completes it), NUL-terminated. Owned by the session; valid until the
    /// next call on it. Empty without a tokenizer.
    pub text: *const c_char,
    /// Bytes of `text`, the NUL not counted.
    pub text_len: usize,
}

/// Why `llamette_session_generate` stopped.
#[allow(non_camel_case_types)]
pub type llamette_stop_reason = u32;
/// The model produced an end token (BOS or EOS; not passed to the callback).
pub const LLAMETTE_STOP_END_TOKEN: llamette_stop_reason = 1;
/// `max_tokens` tokens were generated.
pub const LLAMETTE_STOP_MAX_TOKENS: llamette_stop_reason = 2;
/// The callback returned false.
pub const LLAMETTE_STOP_CALLBACK: llamette_stop_reason = 3;
/// The context is full: no room to feed the last sampled token.
pub const LLAMETTE_STOP_CONTEXT_FULL: llamette_stop_reason = 4;

/// What `llamette_session_generate` did.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct llamette_generate_result {
    /// Tokens passed to the callback.
    pub n_tokens: u32,
    /// Why it stopped, one of `LLAMETTE_STOP_*`.
    pub stop_reason: llamette_stop_reason,
}

/// Receives each generated token: `user_data` (as given to
/// `llamette_session_generate`), the token, and its text (as in
/// `llamette_step_result`: UTF-8, whole characters, NUL-terminated, possibly
/// empty, valid during the call) with its length. Returns true to go on,
/// false to stop.
///
/// It runs on the generating thread. It may call `llamette_session_cancel`
/// and functions on other handles; other calls on the same session return
/// `LLAMETTE_STATUS_BUSY`. It must not unwind (no C++ exception may leave it).
#[allow(non_camel_case_types)]
pub type llamette_token_callback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        token: u32,
        text: *const c_char,
        text_len: usize,
    ) -> bool,
>;

/// The mutable part of a session, used by one call at a time.
struct Core {
    session: Session<'static>,
    /// Text of the last sampled token, NUL-terminated (session memory).
    text: &'static mut [u8],
    decoder: Option<Decoder<'static, 'static>>,
    sampler: Sampler,
    /// The seed the sampler was seeded with, if it was.
    seeded: Option<u64>,
    /// A sampled token not fed yet.
    pending: Option<u32>,
    /// A panic left the state unknown: only reset and free work.
    poisoned: bool,
    error: ErrorBuf,
}

/// A session: one conversation with a model (its KV cache, positions,
/// sampler state), in one block of memory. Made by `llamette_session_init`
/// (caller memory) or `llamette_session_new` (allocated); freed by
/// `llamette_session_free`.
///
/// Thread safety: a session is used by one thread at a time (any thread);
/// a second call while one runs returns `LLAMETTE_STATUS_BUSY`.
/// `llamette_session_cancel` is the exception: any thread, any time. Any
/// number of sessions may share one model, each on its own thread.
pub struct llamette_session {
    // Field order is drop order: `core` borrows `cancel`, `dispatch`,
    // `model` and the memory; they go after it.
    core: UnsafeCell<Core>,
    busy: AtomicBool,
    cancel: AtomicBool,
    dispatch: DispatchCell,
    model: Arc<llamette_model>,
    /// The allocation to free, when `llamette_session_new` made it.
    owned: Option<Layout>,
}

// The handle sits at the start of memory aligned to LLAMETTE_SESSION_ALIGN.
const _: () = assert!(core::mem::align_of::<llamette_session>() <= LLAMETTE_SESSION_ALIGN);

/// Where things go in a session's memory.
#[derive(Debug, Clone, Copy)]
struct MemLayout {
    text_offset: usize,
    text_len: usize,
    core_offset: usize,
    core_len: usize,
    total: usize,
}

fn session_params(p: &llamette_session_params) -> Result<SessionParams, Fail> {
    let kv_type = match p.kv_type {
        LLAMETTE_KV_F32 => KvType::F32,
        LLAMETTE_KV_F16 => KvType::F16,
        other => fail!(
            LLAMETTE_STATUS_INVALID_ARGUMENT,
            "kv_type {other} is neither LLAMETTE_KV_F32 nor LLAMETTE_KV_F16"
        ),
    };
    Ok(SessionParams {
        context: p.context_length as usize,
        kv_type,
        batch: p.batch as usize,
    })
}

fn mem_layout(m: &llamette_model, p: &SessionParams) -> Result<MemLayout, Fail> {
    let head = core::mem::size_of::<llamette_session>().next_multiple_of(REGION_ALIGN);
    let text_len = m.info.max_token_text_bytes as usize + 1;
    let core_len = Session::required_bytes(&m.model, p).map_err(|e| Fail::core("session", e))?;
    let text_offset = head;
    let core_offset = text_offset + text_len.next_multiple_of(REGION_ALIGN);
    let total = core_offset
        .checked_add(core_len)
        .filter(|&t| t <= isize::MAX as usize)
        .ok_or_else(|| {
            Fail::new(
                LLAMETTE_STATUS_OUT_OF_MEMORY,
                format_args!("session memory size overflows"),
            )
        })?;
    Ok(MemLayout {
        text_offset,
        text_len,
        core_offset,
        core_len,
        total,
    })
}

/// Builds a session handle at the start of `mem`.
///
/// # Safety
///
/// `model` is a live handle; `mem` is aligned to `LLAMETTE_SESSION_ALIGN`,
/// holds `l.total` writable bytes that nobody else touches until the handle
/// is dropped in place.
unsafe fn construct(
    model: *const llamette_model,
    params: SessionParams,
    mem: *mut u8,
    l: MemLayout,
    owned: Option<Layout>,
) -> Result<*mut llamette_session, Fail> {
    // SAFETY: `l.total` writable bytes (the caller's promise). Zeroing makes
    // every byte initialised before slices of it are made.
    unsafe { core::ptr::write_bytes(mem, 0, l.total) };
    let p = mem as *mut llamette_session;
    // SAFETY: the regions lie inside `mem` and are disjoint from each other
    // and from the handle; they live until the handle is dropped.
    let (text, buf): (&'static mut [u8], &'static mut [u8]) = unsafe {
        (
            core::slice::from_raw_parts_mut(mem.add(l.text_offset), l.text_len),
            core::slice::from_raw_parts_mut(mem.add(l.core_offset), l.core_len),
        )
    };
    // SAFETY: a live handle (the caller's promise).
    let arc = unsafe { model_arc(model) };
    // SAFETY: the model lives in the `Arc` allocation, which the handle keeps
    // alive until after `core` (field order).
    let m: &'static Model<'static> = unsafe { &*(&arc.model as *const Model<'static>) };
    // SAFETY: `p` is aligned and writable; these fields need no drop when the
    // construction fails below (an atomic, and `Dispatch::Inline`).
    unsafe {
        addr_of_mut!((*p).cancel).write(AtomicBool::new(false));
        addr_of_mut!((*p).dispatch).write(DispatchCell::new());
    }
    let mut session = Session::new(m, params, buf).map_err(|e| Fail::core("session", e))?;
    // SAFETY: the fields were initialised above, stay at this address, and
    // are only ever reached through shared references.
    unsafe {
        session.set_cancel_flag(Some(&*addr_of!((*p).cancel)));
        session.set_parallel(&*addr_of!((*p).dispatch));
    }
    let decoder = arc.tokenizer.as_ref().map(|t| {
        // SAFETY: as `m`: the tokenizer lives in the `Arc` allocation.
        let t: &'static Tokenizer<'static> = unsafe { &*(t as *const Tokenizer<'static>) };
        t.decoder()
    });
    let core = Core {
        session,
        text,
        decoder,
        sampler: Sampler::new(SamplerParams::greedy()),
        seeded: None,
        pending: None,
        poisoned: false,
        error: ErrorBuf::new(),
    };
    // SAFETY: aligned, writable, and every field is written exactly once.
    unsafe {
        addr_of_mut!((*p).core).write(UnsafeCell::new(core));
        addr_of_mut!((*p).busy).write(AtomicBool::new(false));
        addr_of_mut!((*p).model).write(arc);
        addr_of_mut!((*p).owned).write(owned);
    }
    Ok(p)
}

/// Writes the number of bytes a session on `model` with `params` needs (the
/// handle, its text buffer, the KV cache, activations and logits) to
/// `*out_bytes`: the size to give `llamette_session_init`.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (a context longer than the
/// model's, an unknown KV type). Thread safety: any thread.
///
/// # Safety
///
/// Pointers are NULL or valid: `model` a live handle, `params` readable,
/// `out_bytes` writable.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_required_bytes(
    model: *const llamette_model,
    params: *const llamette_session_params,
    out_bytes: *mut usize,
) -> llamette_status {
    boundary(|| {
        // SAFETY: the caller's contract.
        let m = unsafe { model_ref(model, "model") }?;
        let params = non_null(params, "params")?;
        let out = non_null_mut(out_bytes, "out_bytes")?;
        // SAFETY: non-NULL and readable (the caller's contract).
        let sp = session_params(unsafe { &*params })?;
        let l = mem_layout(m, &sp)?;
        // SAFETY: non-NULL and writable.
        unsafe { out.write(l.total) };
        Ok(())
    })
}

/// Makes a session in caller memory, allocating nothing.
///
/// `memory` must hold at least `llamette_session_required_bytes` bytes,
/// aligned to `LLAMETTE_SESSION_ALIGN` (8; 64 is best); its content does not
/// matter (it is zeroed). `*out_session` receives a handle that points into
/// `memory`. Ownership: the memory stays the caller's, but must not be read,
/// written or freed until `llamette_session_free(*out_session)`; after that
/// it may be reused. The session keeps the model alive.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (a context longer than the
/// model's, an unknown KV type, a length over `PTRDIFF_MAX`),
/// `BUFFER_TOO_SMALL`, `MISALIGNED`. Thread safety: any thread; the model
/// may be in use by other threads.
///
/// # Safety
///
/// `model` is NULL or a live handle, `params` NULL or readable, `memory`
/// NULL or `memory_len` writable bytes, `out_session` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_init(
    model: *const llamette_model,
    params: *const llamette_session_params,
    memory: *mut c_void,
    memory_len: usize,
    out_session: *mut *mut llamette_session,
) -> llamette_status {
    boundary(|| {
        // SAFETY: the caller's contract.
        let m = unsafe { model_ref(model, "model") }?;
        let params = non_null(params, "params")?;
        let mem = non_null_mut(memory, "memory")?.cast::<u8>();
        let out = non_null_mut(out_session, "out_session")?;
        check_len::<u8>(memory_len, "memory_len")?;
        // SAFETY: non-NULL and readable.
        let sp = session_params(unsafe { &*params })?;
        let l = mem_layout(m, &sp)?;
        if memory_len < l.total {
            fail!(
                LLAMETTE_STATUS_BUFFER_TOO_SMALL,
                "session memory: {} bytes needed, {memory_len} given",
                l.total
            );
        }
        if !(mem as usize).is_multiple_of(LLAMETTE_SESSION_ALIGN) {
            fail!(
                LLAMETTE_STATUS_MISALIGNED,
                "session memory must be aligned to {LLAMETTE_SESSION_ALIGN} bytes"
            );
        }
        // SAFETY: checked above: a live model, aligned memory of `l.total`
        // bytes, which the caller hands over until free.
        let s = unsafe { construct(model, sp, mem, l, None) }?;
        // SAFETY: non-NULL and writable.
        unsafe { out.write(s) };
        Ok(())
    })
}

/// Makes a session in memory it allocates (`llamette_session_required_bytes`
/// of it, 64-byte aligned), for hosts that do not manage memory themselves.
/// `*out_session` receives a handle; `llamette_session_free` releases the
/// memory. The session keeps the model alive.
///
/// Errors: as `llamette_session_init`, and `OUT_OF_MEMORY`. Thread safety:
/// any thread.
///
/// # Safety
///
/// `model` is NULL or a live handle, `params` NULL or readable,
/// `out_session` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_new(
    model: *const llamette_model,
    params: *const llamette_session_params,
    out_session: *mut *mut llamette_session,
) -> llamette_status {
    boundary(|| {
        // SAFETY: the caller's contract.
        let m = unsafe { model_ref(model, "model") }?;
        let params = non_null(params, "params")?;
        let out = non_null_mut(out_session, "out_session")?;
        // SAFETY: non-NULL and readable.
        let sp = session_params(unsafe { &*params })?;
        let l = mem_layout(m, &sp)?;
        let layout = Layout::from_size_align(l.total, REGION_ALIGN).map_err(|_| {
            Fail::new(
                LLAMETTE_STATUS_OUT_OF_MEMORY,
                format_args!("session memory of {} bytes", l.total),
            )
        })?;
        // SAFETY: the size is non-zero (the handle alone is).
        let mem = unsafe { std::alloc::alloc(layout) };
        if mem.is_null() {
            fail!(
                LLAMETTE_STATUS_OUT_OF_MEMORY,
                "cannot allocate {} bytes of session memory",
                l.total
            );
        }
        // SAFETY: fresh memory of `l.total` bytes, aligned to 64.
        match unsafe { construct(model, sp, mem, l, Some(layout)) } {
            Ok(s) => {
                // SAFETY: non-NULL and writable.
                unsafe { out.write(s) };
                Ok(())
            }
            Err(e) => {
                // SAFETY: allocated above with this layout; nothing refers to it.
                unsafe { std::alloc::dealloc(mem, layout) };
                Err(e)
            }
        }
    })
}

/// Frees a session: its reference to the model, its thread pool (joined),
/// and its memory when `llamette_session_new` allocated it (memory given to
/// `llamette_session_init` is the caller's again). `NULL` does nothing.
/// Freeing a session while a call on it runs (from its own callback, say)
/// is refused: the session stays as it is.
///
/// # Safety
///
/// `session` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_free(session: *mut llamette_session) {
    boundary_value((), || {
        if session.is_null() {
            return;
        }
        // SAFETY: a live handle (the caller's contract).
        let s = unsafe { &*session };
        if s.busy.swap(true, Ordering::Acquire) {
            set_last_error(&Fail::new(
                LLAMETTE_STATUS_BUSY,
                format_args!("llamette_session_free: the session is in use; not freed"),
            ));
            return;
        }
        let owned = s.owned;
        // SAFETY: the handle was built in place by `construct`; nobody uses
        // it any more (the caller's contract, and the busy flag).
        unsafe { core::ptr::drop_in_place(session) };
        if let Some(layout) = owned {
            // SAFETY: allocated by `llamette_session_new` with this layout.
            unsafe { std::alloc::dealloc(session.cast::<u8>(), layout) };
        }
    })
}

/// Clears the busy flag when a call ends, even by a panic.
struct Busy<'a>(&'a AtomicBool);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The boundary of the session functions: checks the handle, takes the busy
/// flag, runs `f`, and records a failure in the session too.
///
/// # Safety
///
/// `session` is NULL or a live handle.
unsafe fn with_session(
    session: *mut llamette_session,
    allow_poisoned: bool,
    f: impl FnOnce(&mut Core, &llamette_session) -> Result<(), Fail>,
) -> llamette_status {
    boundary(|| {
        let p = non_null_mut(session, "session")?;
        // SAFETY: a live handle; shared access only (mutable state is in
        // `core`'s UnsafeCell).
        let s = unsafe { &*p };
        if s.busy.swap(true, Ordering::Acquire) {
            fail!(
                LLAMETTE_STATUS_BUSY,
                "the session is in use by another call (another thread, or a callback of this session)"
            );
        }
        let _busy = Busy(&s.busy);
        let core = s.core.get();
        let r = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: the busy flag makes this the only access to `core`.
            let c = unsafe { &mut *core };
            if c.poisoned && !allow_poisoned {
                fail!(
                    LLAMETTE_STATUS_PANIC,
                    "the session panicked earlier: reset or free it"
                );
            }
            f(c, s)
        }));
        // SAFETY: as above; the closure's borrow has ended.
        let c = unsafe { &mut *core };
        let fail = match r {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(fail)) => fail,
            Err(payload) => {
                c.poisoned = true;
                Fail::panic(&*payload)
            }
        };
        c.error = fail.message.clone();
        Err(fail)
    })
}

/// Consumes a pending cancellation request.
fn check_cancel(s: &llamette_session) -> Result<(), Fail> {
    if s.cancel.swap(false, Ordering::AcqRel) {
        fail!(LLAMETTE_STATUS_CANCELLED, "cancelled");
    }
    Ok(())
}

/// Feeds `tokens` through the core, turning a cancellation into a status
/// (and consuming the request).
fn feed(c: &mut Core, s: &llamette_session, tokens: &[u32]) -> Result<(), Fail> {
    c.session.feed(tokens).map_err(|e| {
        if e == llamette_core::Error::Cancelled {
            s.cancel.store(false, Ordering::Release);
            Fail::new(
                LLAMETTE_STATUS_CANCELLED,
                format_args!("cancelled at position {}", c.session.pos()),
            )
        } else {
            Fail::core("", e)
        }
    })
}

/// Feeds the pending sampled token, if any.
fn feed_pending(c: &mut Core, s: &llamette_session) -> Result<(), Fail> {
    if let Some(t) = c.pending {
        if c.session.pos() >= c.session.context() {
            fail!(
                LLAMETTE_STATUS_CONTEXT_FULL,
                "context full: all {} positions are used; no room for the last sampled token",
                c.session.context()
            );
        }
        feed(c, s, &[t])?;
        c.pending = None;
    }
    Ok(())
}

/// A fresh decoder, primed so that a token after BOS loses its leading space.
fn restart_decoder(c: &mut Core, m: &llamette_model) {
    if let Some(d) = &mut c.decoder {
        d.flush(|_| {});
        if let (Some(t), Some(&last)) = (&m.tokenizer, c.session.tokens().last()) {
            if last == t.bos() {
                let _ = d.push(last, |_| {});
            }
        }
    }
}

/// Feeds the pending token, samples the next one and decodes its text into
/// `c.text`; returns the token and its text length.
fn step_inner(
    c: &mut Core,
    s: &llamette_session,
    params: &llamette_sampler_params,
) -> Result<(u32, usize), Fail> {
    check_cancel(s)?;
    feed_pending(c, s)?;
    let sp = SamplerParams::from(params);
    if c.seeded != Some(params.seed) {
        c.sampler = Sampler::new(sp);
        c.seeded = Some(params.seed);
    } else {
        c.sampler.params = sp;
    }
    let token = c
        .session
        .sample(&mut c.sampler)
        .map_err(|e| Fail::core("", e))?;
    c.pending = Some(token);
    let mut n = 0usize;
    if let Some(d) = &mut c.decoder {
        let text = &mut *c.text;
        // The text buffer holds `max_token_text_bytes` + NUL, the most one
        // push can emit.
        d.push(token, |piece| {
            let end = n + piece.len();
            text[n..end].copy_from_slice(piece.as_bytes());
            n = end;
        })
        .map_err(|e| Fail::core("", e))?;
    }
    c.text[n] = 0;
    Ok((token, n))
}

/// Runs the model over `tokens` (the prompt, or any further input) at the
/// next positions. A token sampled by the last step is fed first. Afterwards
/// the session can step.
///
/// Everything is checked first: an empty input (`INVALID_ARGUMENT`), an id
/// outside the vocabulary (`UNKNOWN_TOKEN`) or too many tokens for the
/// context (`CONTEXT_FULL`) fail without changing anything. When cancelled
/// (`CANCELLED`), the tokens before `llamette_session_position` were
/// processed and kept; prefill the rest to go on.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (`n_tokens` 0, `tokens` NULL
/// or not), `UNKNOWN_TOKEN`, `CONTEXT_FULL`, `CANCELLED`, `BUSY`. Thread
/// safety: one thread at a time per session. Allocates nothing.
///
/// # Safety
///
/// `session` is NULL or a live handle; `tokens` is NULL or points to
/// `n_tokens` readable ids.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_prefill(
    session: *mut llamette_session,
    tokens: *const u32,
    n_tokens: usize,
) -> llamette_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_session(session, false, |c, s| {
            if n_tokens == 0 {
                fail!(
                    LLAMETTE_STATUS_INVALID_ARGUMENT,
                    "prefill needs at least one token"
                );
            }
            let tokens = non_null(tokens, "tokens")?;
            let room = (c.session.context() - c.session.pos())
                .saturating_sub(usize::from(c.pending.is_some()));
            if n_tokens > room {
                fail!(
                    LLAMETTE_STATUS_CONTEXT_FULL,
                    "context full: {} positions used{} + {n_tokens} tokens > context length {}",
                    c.session.pos(),
                    if c.pending.is_some() {
                        " + 1 sampled"
                    } else {
                        ""
                    },
                    c.session.context()
                );
            }
            // SAFETY: non-NULL; `n_tokens` readable ids (the caller's
            // contract); `n_tokens <= context <= 2^24`, so the size fits.
            let tokens = core::slice::from_raw_parts(tokens, n_tokens);
            let vocab = s.model.info.vocab_size;
            if let Some(&id) = tokens.iter().find(|&&t| t >= vocab) {
                fail!(
                    LLAMETTE_STATUS_UNKNOWN_TOKEN,
                    "unknown token id {id} (the vocabulary has {vocab} tokens)"
                );
            }
            check_cancel(s)?;
            feed_pending(c, s)?;
            if let Some(d) = &mut c.decoder {
                d.flush(|_| {});
            }
            feed(c, s, tokens)?;
            restart_decoder(c, &s.model);
            Ok(())
        })
    }
}

/// Samples the next token from the current prediction with `params`, after
/// feeding the token the previous step sampled (so a step runs one forward
/// pass, the first step after a prefill none). The new token and its text go
/// to `*out_result`; the token is fed by the next prefill, step or generate.
///
/// A session of context length N can step until N tokens are in the cache:
/// then the step returns `CONTEXT_FULL` (changing nothing).
///
/// Errors: `NULL_ARGUMENT`, `NOTHING_TO_SAMPLE` (no prefill yet, or since a
/// reset or a cancellation), `CONTEXT_FULL`, `CANCELLED` (the previous token
/// stays pending), `BUSY`. Thread safety: one thread at a time per session.
/// Allocates nothing.
///
/// # Safety
///
/// `session` is NULL or a live handle; `params` NULL or readable;
/// `out_result` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_step(
    session: *mut llamette_session,
    params: *const llamette_sampler_params,
    out_result: *mut llamette_step_result,
) -> llamette_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_session(session, false, |c, s| {
            let params = non_null(params, "params")?;
            let out = non_null_mut(out_result, "out_result")?;
            // SAFETY: non-NULL, readable.
            let params = *params;
            let (token, n) = step_inner(c, s, &params)?;
            out.write(llamette_step_result {
                token,
                is_end: s.model.is_end(token),
                text: c.text.as_ptr().cast(),
                text_len: n,
            });
            Ok(())
        })
    }
}

/// Generates tokens, calling `callback(user_data, token, text, text_len)` for
/// each, as llama2.c's `run.c` loop does: step, stop at an end token (BOS or
/// EOS, not passed to the callback), when `max_tokens` tokens were generated
/// (0: no limit), when the callback returns false, or when the context is
/// full. `*out_result` receives the count and the reason.
///
/// Needs a prefill first (or a previous step/generate). The last token
/// generated (or the end token) stays pending, fed by the next call, so
/// generation can be resumed.
///
/// Errors: `NULL_ARGUMENT` (a NULL callback too), `NOTHING_TO_SAMPLE`,
/// `CONTEXT_FULL` (full before the first token), `CANCELLED` (the tokens
/// given to the callback so far stay in the session), `BUSY`. Thread safety:
/// one thread at a time per session; the callback runs on this thread.
///
/// # Safety
///
/// `session` is NULL or a live handle; `params` NULL or readable;
/// `out_result` NULL or writable; `callback` is safe to call with
/// `user_data`.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_generate(
    session: *mut llamette_session,
    params: *const llamette_sampler_params,
    max_tokens: u32,
    callback: llamette_token_callback,
    user_data: *mut c_void,
    out_result: *mut llamette_generate_result,
) -> llamette_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_session(session, false, |c, s| {
            let params = non_null(params, "params")?;
            let Some(callback) = callback else {
                return Err(Fail::null("callback"));
            };
            let out = non_null_mut(out_result, "out_result")?;
            // SAFETY: non-NULL, readable.
            let params = *params;
            let mut n = 0u32;
            let reason = loop {
                if max_tokens != 0 && n >= max_tokens {
                    break LLAMETTE_STOP_MAX_TOKENS;
                }
                if c.pending.is_some() && c.session.pos() >= c.session.context() {
                    if n == 0 {
                        fail!(
                            LLAMETTE_STATUS_CONTEXT_FULL,
                            "context full: all {} positions are used",
                            c.session.context()
                        );
                    }
                    break LLAMETTE_STOP_CONTEXT_FULL;
                }
                let (token, len) = step_inner(c, s, &params)?;
                if s.model.is_end(token) {
                    break LLAMETTE_STOP_END_TOKEN;
                }
                n += 1;
                // SAFETY: the host's callback with the host's user_data; the
                // text is NUL-terminated and valid during the call.
                if !callback(user_data, token, c.text.as_ptr().cast(), len) {
                    break LLAMETTE_STOP_CALLBACK;
                }
            };
            out.write(llamette_generate_result {
                n_tokens: n,
                stop_reason: reason,
            });
            Ok(())
        })
    }
}

/// Forgets every position and the pending token, reseeds the sampler at the
/// next step, clears a cancellation request and a panic: the session is as
/// new (its memory, thread setting and host pool stay).
///
/// Errors: `NULL_ARGUMENT`, `BUSY`. Thread safety: one thread at a time.
///
/// # Safety
///
/// `session` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_reset(session: *mut llamette_session) -> llamette_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_session(session, true, |c, s| {
            c.session.reset();
            c.pending = None;
            c.seeded = None;
            c.poisoned = false;
            if let Some(d) = &mut c.decoder {
                d.flush(|_| {});
            }
            c.text[0] = 0;
            c.error.clear();
            s.cancel.store(false, Ordering::Release);
            Ok(())
        })
    }
}

/// Writes the number of positions in the KV cache (tokens fed; a token
/// sampled by the last step is not counted until it is fed) to `*out_position`.
///
/// Errors: `NULL_ARGUMENT`, `BUSY`. Thread safety: one thread at a time.
///
/// # Safety
///
/// `session` is NULL or a live handle; `out_position` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_position(
    session: *mut llamette_session,
    out_position: *mut u32,
) -> llamette_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_session(session, true, |c, _| {
            let out = non_null_mut(out_position, "out_position")?;
            out.write(c.session.pos() as u32);
            Ok(())
        })
    }
}

/// Writes the session's context length (positions it can hold) to
/// `*out_context_length`.
///
/// Errors: `NULL_ARGUMENT`, `BUSY`. Thread safety: one thread at a time.
///
/// # Safety
///
/// `session` is NULL or a live handle; `out_context_length` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_context_length(
    session: *mut llamette_session,
    out_context_length: *mut u32,
) -> llamette_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_session(session, true, |c, _| {
            let out = non_null_mut(out_context_length, "out_context_length")?;
            out.write(c.session.context() as u32);
            Ok(())
        })
    }
}

/// Asks the call running on the session (prefill, step or generate) to stop:
/// it returns `CANCELLED` within one transformer layer of work. If no call is
/// running, the next one stops at once. The request is consumed by the call
/// it stops (or by `llamette_session_reset`).
///
/// Errors: `NULL_ARGUMENT`. Thread safety: any thread, at any time while the
/// session is alive (it only sets an atomic flag); also from the callback.
///
/// # Safety
///
/// `session` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_cancel(
    session: *const llamette_session,
) -> llamette_status {
    boundary(|| {
        let p = non_null(session, "session")?;
        // SAFETY: a live handle; the flag is an atomic reached through a
        // shared reference.
        unsafe { &*addr_of!((*p).cancel) }.store(true, Ordering::Release);
        Ok(())
    })
}

/// Runs the session's matrix products on the built-in thread pool:
/// `n_threads` threads in all, the calling thread included (`n_threads - 1`
/// are started and kept, idle between calls, until the session is freed or
/// this is called again). 1 runs everything on the calling thread (the
/// default: no thread is started); 0 means one thread per available core.
/// The generated tokens do not depend on the number of threads.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (more than 1024), `BUSY`.
/// Thread safety: one thread at a time per session.
///
/// # Safety
///
/// `session` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_set_threads(
    session: *mut llamette_session,
    n_threads: u32,
) -> llamette_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_session(session, false, |_, s| {
            if n_threads > MAX_THREADS {
                fail!(
                    LLAMETTE_STATUS_INVALID_ARGUMENT,
                    "n_threads must be at most {MAX_THREADS}, got {n_threads}"
                );
            }
            let d = match n_threads {
                1 => Dispatch::Inline,
                n => Dispatch::Pool(ThreadPool::new(n as usize)),
            };
            // SAFETY: the busy flag is held: no parallel region runs.
            s.dispatch.set(d);
            Ok(())
        })
    }
}

/// Runs the session's matrix products through the host's thread pool: each
/// parallel region calls `parallel->parallel_for` (see
/// `llamette_parallel_for_fn`). The struct is copied; `user_data` must stay
/// valid until the session is freed or another setting replaces it, and be
/// safe to use from the threads the host runs tasks on. NULL returns to the
/// calling thread alone. A task that panics, or a `parallel_for` that skips
/// tasks, makes the call fail with `PANIC`.
///
/// Errors: `NULL_ARGUMENT` (`session`, or a NULL `parallel_for`),
/// `INVALID_ARGUMENT` (`n_threads` 0 or more than 1024), `BUSY`. Thread
/// safety: one thread at a time per session.
///
/// # Safety
///
/// `session` is NULL or a live handle; `parallel` NULL or readable, its
/// function safe to call as documented.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_set_parallel(
    session: *mut llamette_session,
    parallel: *const llamette_parallel,
) -> llamette_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_session(session, false, |_, s| {
            let d = if parallel.is_null() {
                Dispatch::Inline
            } else {
                // SAFETY: non-NULL, readable.
                let p = *parallel;
                let Some(f) = p.parallel_for else {
                    return Err(Fail::null("parallel->parallel_for"));
                };
                if p.n_threads == 0 || p.n_threads > MAX_THREADS {
                    fail!(
                        LLAMETTE_STATUS_INVALID_ARGUMENT,
                        "parallel->n_threads must be 1 to {MAX_THREADS}, got {}",
                        p.n_threads
                    );
                }
                Dispatch::Host {
                    user_data: p.user_data,
                    n_threads: p.n_threads as usize,
                    parallel_for: f,
                }
            };
            // SAFETY: the busy flag is held: no parallel region runs.
            s.dispatch.set(d);
            Ok(())
        })
    }
}

/// The message of the most recent failed call on this session
/// (NUL-terminated UTF-8; empty if none failed since it was made or reset).
/// Owned by the session: valid until its next call. Returns "" for NULL.
///
/// Thread safety: call it from the thread that made the failed call, before
/// using the session again (it is not synchronised with a running call).
///
/// # Safety
///
/// `session` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_last_error(
    session: *const llamette_session,
) -> *const c_char {
    boundary_value(c"".as_ptr(), || {
        if session.is_null() {
            return c"".as_ptr();
        }
        // SAFETY: a live handle not in use by a call (the contract).
        unsafe { (*(*session).core.get()).error.as_ptr() }
    })
}

/// Fills `*out_params` with llama2.c's defaults: temperature 1, top-p 0.9,
/// top-k 0, min-p 0, repetition penalty 1 over 64 tokens, seed 0. Set
/// `temperature = 0` for greedy decoding.
///
/// Errors: `NULL_ARGUMENT`.
///
/// # Safety
///
/// `out_params` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llamette_sampler_params_default(
    out_params: *mut llamette_sampler_params,
) -> llamette_status {
    boundary(|| {
        let out = non_null_mut(out_params, "out_params")?;
        let d = SamplerParams::default();
        // SAFETY: non-NULL, writable.
        unsafe {
            out.write(llamette_sampler_params {
                temperature: d.temperature,
                top_k: d.top_k as u32,
                top_p: d.top_p,
                min_p: d.min_p,
                repeat_penalty: d.repeat_penalty,
                repeat_last_n: d.repeat_last_n as u32,
                seed: d.seed,
            })
        };
        Ok(())
    })
}

impl core::fmt::Debug for llamette_session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("llamette_session")
            .field("busy", &self.busy.load(Ordering::Relaxed))
            .field("cancel", &self.cancel.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
