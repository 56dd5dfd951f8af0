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
use std::sync::{Arc, Mutex};

use llamette_core::generate::{Step, MAX_STOP_BYTES, MAX_STOP_STRINGS};
use llamette_core::parallel::ThreadPool;
use llamette_core::session::KvType;
use llamette_core::{
    Event, GenerateParams, Generator, Model, SamplerParams, Session, SessionParams, StopReason,
    TextMode, Tokenizer,
};

use crate::error::*;
use crate::model::{llamette_model, model_arc, model_ref, LLAMETTE_NO_TOKEN};
use crate::parallel::{llamette_parallel, Dispatch, DispatchCell};
use crate::sized::{read_in, Out, SizedStruct};

/// The memory given to `llamette_session_init` must be aligned to this many
/// bytes (64 is best: every region then starts on a cache line).
pub const LLAMETTE_SESSION_ALIGN: usize = 8;

/// Every region of the session memory starts at a multiple of this: the
/// core session's own alignment, so that its part starts where it would
/// align it anyway.
const REGION_ALIGN: usize = Session::ALIGN;

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
/// ggml's Q8_0 blocks (32 int8 values and an f16 scale): 34 bytes per 32
/// values, about a quarter of F32.
pub const LLAMETTE_KV_Q8_0: llamette_kv_type = 2;

/// How a session is sized. Initialise it with
/// `LLAMETTE_SESSION_PARAMS_INIT` (or set `struct_size`); also filled by
/// `llamette_session_params_for_budget`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct llamette_session_params {
    /// `sizeof(llamette_session_params)`, set by the caller.
    pub struct_size: usize,
    /// Positions the session can hold (prompt and generated tokens); 0 means
    /// the model's context length, which is also the maximum.
    pub context_length: u32,
    /// KV cache element type: `LLAMETTE_KV_F32`, `LLAMETTE_KV_F16` or
    /// `LLAMETTE_KV_Q8_0`.
    pub kv_type: llamette_kv_type,
    /// Most prompt tokens a prefill runs together (each weight matrix is read
    /// once per batch); 0 means the default (32). A larger batch takes more
    /// session memory. A cancelled prefill keeps whole batches.
    pub batch: u32,
}

impl Default for llamette_session_params {
    /// As `LLAMETTE_SESSION_PARAMS_INIT`: the model's context, an F32 KV
    /// cache, the default batch.
    fn default() -> Self {
        llamette_session_params {
            struct_size: core::mem::size_of::<Self>(),
            context_length: 0,
            kv_type: LLAMETTE_KV_F32,
            batch: 0,
        }
    }
}

// SAFETY: repr(C), `struct_size` first, plain integers.
unsafe impl SizedStruct for llamette_session_params {
    const NAME: &'static str = "llamette_session_params";
}

/// Sampler settings, used by `llamette_session_step` and
/// `llamette_session_generate`: llama2.c's defaults are
/// `LLAMETTE_SAMPLER_PARAMS_INIT` (and what
/// `llamette_sampler_params_default` writes). With `top_k = 0`,
/// `min_p = 0` and `repeat_penalty = 1` the sampler is llama2.c
/// `run.c`'s, bit for bit. `llamette_sampler_params_validate` checks the
/// settings as the functions that sample do.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct llamette_sampler_params {
    /// `sizeof(llamette_sampler_params)`, set by the caller.
    pub struct_size: usize,
    /// Divides the logits; 0 means greedy: always the most likely token.
    /// Negative, NaN or infinite is `INVALID_ARGUMENT`.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 keeps all.
    pub top_k: u32,
    /// Nucleus sampling: keep the most likely tokens whose mass first exceeds
    /// `top_p`; 0 and 1 keep all; outside [0, 1] (or NaN) is
    /// `INVALID_ARGUMENT`.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely; 0 keeps
    /// all; outside [0, 1] is `INVALID_ARGUMENT`.
    pub min_p: f32,
    /// Penalise the tokens among the last `repeat_last_n`: positive logits
    /// are divided by it, negative ones multiplied; 1 is off; not above 0
    /// (or not finite) is `INVALID_ARGUMENT`.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: u32,
    /// Seed of the random generator (xorshift, as llama2.c); 0 stands for a
    /// fixed non-zero constant. The generator is seeded at the first step
    /// after the session is made or reset and whenever `seed` differs from
    /// the previous step's; otherwise its state carries on.
    pub seed: u64,
}

impl Default for llamette_sampler_params {
    /// As `LLAMETTE_SAMPLER_PARAMS_INIT`: llama2.c's defaults.
    fn default() -> Self {
        let d = SamplerParams::default();
        llamette_sampler_params {
            struct_size: core::mem::size_of::<Self>(),
            temperature: d.temperature,
            top_k: d.top_k as u32,
            top_p: d.top_p,
            min_p: d.min_p,
            repeat_penalty: d.repeat_penalty,
            repeat_last_n: d.repeat_last_n as u32,
            seed: 0,
        }
    }
}

// SAFETY: repr(C), `struct_size` first, plain numbers.
unsafe impl SizedStruct for llamette_sampler_params {
    const NAME: &'static str = "llamette_sampler_params";
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
        }
    }
}

/// What one `llamette_session_step` produced. Set `struct_size`
/// (`LLAMETTE_STEP_RESULT_INIT`) before the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct llamette_step_result {
    /// `sizeof(llamette_step_result)`, set by the caller.
    pub struct_size: usize,
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

impl Default for llamette_step_result {
    /// As `LLAMETTE_STEP_RESULT_INIT`.
    fn default() -> Self {
        llamette_step_result {
            struct_size: core::mem::size_of::<Self>(),
            token: 0,
            is_end: false,
            text: core::ptr::null(),
            text_len: 0,
        }
    }
}

// SAFETY: repr(C), `struct_size` first. It has a `bool`, but the library
// only writes this struct (`Out`), never reads one from the caller.
unsafe impl SizedStruct for llamette_step_result {
    const NAME: &'static str = "llamette_step_result";
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
/// The text completed one of the stop strings
/// (`llamette_generate_options.stop_strings`): the text before it was
/// passed to the callback, the stop string was not.
pub const LLAMETTE_STOP_STOP_STRING: llamette_stop_reason = 5;

/// `llamette_generate_options.flags`: do not stop at EOS (`</s>`).
pub const LLAMETTE_GENERATE_NO_STOP_AT_EOS: u32 = 1;
/// `llamette_generate_options.flags`: do not stop at BOS (`<s>`).
pub const LLAMETTE_GENERATE_NO_STOP_AT_BOS: u32 = 2;
/// The most stop strings `llamette_generate_options` takes.
pub const LLAMETTE_MAX_STOP_STRINGS: u32 = 8;
/// The longest stop string, in bytes.
pub const LLAMETTE_MAX_STOP_BYTES: u32 = 64;

/// What `llamette_session_generate_ex` does beyond sampling. Initialise
/// it with `LLAMETTE_GENERATE_OPTIONS_INIT` (or set `struct_size =
/// sizeof(llamette_generate_options)`): the library reads only the fields
/// that size covers (later versions append fields; a zero field keeps the
/// default).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct llamette_generate_options {
    /// `sizeof(llamette_generate_options)`, set by the caller.
    pub struct_size: usize,
    /// Most tokens to generate; 0: no limit (up to the context).
    pub max_tokens: u32,
    /// `LLAMETTE_GENERATE_*` flags; 0 stops at EOS and at BOS.
    pub flags: u32,
    /// Stop strings, each ended by a NUL byte (`"User:\0###\0"`), at
    /// most `LLAMETTE_MAX_STOP_STRINGS` of 1 to `LLAMETTE_MAX_STOP_BYTES`
    /// bytes of UTF-8; NULL with length 0 for none. A match split over
    /// several tokens is found; text that may still become a stop string
    /// is held back (passed on with a later token, or at the end with
    /// `LLAMETTE_NO_TOKEN`).
    pub stop_strings: *const c_char,
    /// Bytes of `stop_strings`, the NULs included.
    pub stop_strings_len: usize,
}

impl Default for llamette_generate_options {
    /// As `LLAMETTE_GENERATE_OPTIONS_INIT`.
    fn default() -> Self {
        llamette_generate_options {
            struct_size: core::mem::size_of::<Self>(),
            max_tokens: 0,
            flags: 0,
            stop_strings: core::ptr::null(),
            stop_strings_len: 0,
        }
    }
}

// SAFETY: repr(C), `struct_size` first, integers and a raw pointer.
unsafe impl SizedStruct for llamette_generate_options {
    const NAME: &'static str = "llamette_generate_options";
}

/// Adjusts the logits before each sampling (`llamette_session_set_logits_hook`):
/// `user_data` as given, the logits (a copy the sampler then uses:
/// `n_logits` floats, one per token; set one to `-INFINITY` to ban a
/// token), valid during the call. Runs on the generating thread, after the
/// logit bias; must not unwind.
#[allow(non_camel_case_types)]
pub type llamette_logits_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, logits: *mut f32, n_logits: usize)>;

/// What `llamette_session_generate` did. Set `struct_size`
/// (`LLAMETTE_GENERATE_RESULT_INIT`) before the call.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct llamette_generate_result {
    /// `sizeof(llamette_generate_result)`, set by the caller.
    pub struct_size: usize,
    /// Tokens passed to the callback.
    pub n_tokens: u32,
    /// Why it stopped, one of `LLAMETTE_STOP_*`.
    pub stop_reason: llamette_stop_reason,
}

impl Default for llamette_generate_result {
    /// As `LLAMETTE_GENERATE_RESULT_INIT`.
    fn default() -> Self {
        llamette_generate_result {
            struct_size: core::mem::size_of::<Self>(),
            n_tokens: 0,
            stop_reason: 0,
        }
    }
}

// SAFETY: repr(C), `struct_size` first, plain integers.
unsafe impl SizedStruct for llamette_generate_result {
    const NAME: &'static str = "llamette_generate_result";
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
pub(crate) struct Core {
    pub(crate) session: Session<'static>,
    /// Text of the last sampled token, NUL-terminated (session memory).
    text: &'static mut [u8],
    /// The generation loop: pending token, sampler, decoder, stop strings.
    pub(crate) gen: Generator<'static, 'static>,
    /// Added to the logits before sampling (`llamette_session_set_logit_bias`).
    bias: Vec<(u32, f32)>,
    /// Called with the logits before sampling.
    hook: Option<(
        unsafe extern "C" fn(*mut c_void, *mut f32, usize),
        *mut c_void,
    )>,
    /// A panic left the state unknown: only reset and free work.
    poisoned: bool,
    error: ErrorBuf,
}

/// Which call a cancellation request is for: each call on the session
/// gets its own number, and a request only ever stops the call that was
/// running when it was made (or, made between calls, the next one).
#[derive(Debug, Default)]
struct CancelState {
    /// The number the next call gets.
    next_call: u64,
    /// The call running, if one is.
    running: Option<u64>,
    /// The call a request is for.
    target: Option<u64>,
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
    /// Polled by the core once per layer: set only while the call a
    /// request is for runs.
    cancel: AtomicBool,
    calls: Mutex<CancelState>,
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
        LLAMETTE_KV_Q8_0 => KvType::Q8_0,
        other => fail!(
            LLAMETTE_STATUS_INVALID_ARGUMENT,
            "kv_type {other} is none of LLAMETTE_KV_F32, LLAMETTE_KV_F16, LLAMETTE_KV_Q8_0"
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
    // A token's text, plus text held back for a stop string, plus the NUL.
    let text_len = m.info.max_token_text_bytes as usize + MAX_STOP_BYTES + 1;
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
    // SAFETY: `p` is aligned and writable; `cancel` needs no drop when the
    // construction fails below, `dispatch` is dropped there. The cancel
    // flag and the dispatch are fields of the handle: the flag outlives the
    // dispatch that raises it.
    unsafe {
        addr_of_mut!((*p).cancel).write(AtomicBool::new(false));
        addr_of_mut!((*p).dispatch).write(DispatchCell::new());
        (*addr_of!((*p).dispatch)).set_stop_flag(addr_of!((*p).cancel));
    }
    // SAFETY: aligned and writable; dropped below on failure.
    unsafe { addr_of_mut!((*p).calls).write(Mutex::new(CancelState::default())) };
    let mut session = match Session::new(m, params, buf) {
        Ok(s) => s,
        Err(e) => {
            // SAFETY: written above; nothing else refers to them. `cancel`
            // needs no drop.
            unsafe {
                core::ptr::drop_in_place(addr_of_mut!((*p).calls));
                core::ptr::drop_in_place(addr_of_mut!((*p).dispatch));
            }
            return Err(Fail::core("session", e));
        }
    };
    // SAFETY: the fields were initialised above, stay at this address, and
    // are only ever reached through shared references.
    unsafe {
        session.set_cancel_flag(Some(&*addr_of!((*p).cancel)));
        session.set_parallel(&*addr_of!((*p).dispatch));
    }
    let tok = arc.tokenizer.as_ref().map(|t| {
        // SAFETY: as `m`: the tokenizer lives in the `Arc` allocation.
        let t: &'static Tokenizer<'static> = unsafe { &*(t as *const Tokenizer<'static>) };
        t
    });
    let core = Core {
        session,
        text,
        gen: Generator::new(tok, TextMode::Utf8),
        bias: Vec::new(),
        hook: None,
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
/// model's, an unknown KV type, a `struct_size` below the first
/// version's). Thread safety: any thread.
///
/// # Safety
///
/// Pointers are NULL or valid: `model` a live handle, `params` readable
/// for its `struct_size`, `out_bytes` writable.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_required_bytes(
    model: *const llamette_model,
    params: *const llamette_session_params,
    out_bytes: *mut usize,
) -> llamette_status {
    boundary(|| {
        // SAFETY: the caller's contract.
        let m = unsafe { model_ref(model, "model") }?;
        // SAFETY: NULL or readable for its size (the caller's contract).
        let params = unsafe { read_in(params, "params") }?;
        let out = non_null_mut(out_bytes, "out_bytes")?;
        let sp = session_params(&params)?;
        let l = mem_layout(m, &sp)?;
        // SAFETY: non-NULL and writable.
        unsafe { out.write(l.total) };
        Ok(())
    })
}

/// Fills `*out_params` with the session that fits `budget_bytes` of memory
/// (what `llamette_session_required_bytes` would say for it) on `model`
/// with the KV type `kv_type`: the largest context, then the largest prompt
/// batch (up to the default 32) that fits with it. For a memory budget
/// rather than a context length: a phone's or a microcontroller's.
///
/// `out_params->struct_size` must be set: the fields it covers are
/// written (its own `struct_size` is left as it is).
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (an unknown KV type, a
/// `struct_size` below the first version's), `BUFFER_TOO_SMALL` (not even
/// one position with a batch of one fits; the message names the bytes
/// that would). Thread safety: any thread.
///
/// # Safety
///
/// Pointers are NULL or valid: `model` a live handle, `out_params`
/// writable for its `struct_size`.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_params_for_budget(
    model: *const llamette_model,
    kv_type: llamette_kv_type,
    budget_bytes: usize,
    out_params: *mut llamette_session_params,
) -> llamette_status {
    boundary(|| {
        // SAFETY: the caller's contract.
        let m = unsafe { model_ref(model, "model") }?;
        // SAFETY: NULL, or writable for its size (the caller's contract).
        let out = unsafe { Out::new(out_params, "out_params") }?;
        let probe = llamette_session_params {
            context_length: 1,
            kv_type,
            batch: 1,
            ..Default::default()
        };
        let sp = session_params(&probe)?;
        // What the handle and its text buffer add to the core session.
        let l = mem_layout(m, &sp)?;
        let overhead = l.total - l.core_len;
        let core_budget = budget_bytes.checked_sub(overhead).ok_or_else(|| {
            Fail::new(
                LLAMETTE_STATUS_BUFFER_TOO_SMALL,
                format_args!(
                    "a budget of {budget_bytes} bytes is below the smallest session ({} bytes)",
                    l.total
                ),
            )
        })?;
        let p = SessionParams::max_context_for(&m.model, sp.kv_type, core_budget)
            .map_err(|e| Fail::core("budget", e))?;
        let params = llamette_session_params {
            context_length: p.context as u32,
            kv_type,
            batch: p.batch as u32,
            ..Default::default()
        };
        // SAFETY: checked by `Out::new`, still writable.
        unsafe { out.write(&params) };
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
/// model's, an unknown KV type, a `struct_size` below the first version's,
/// a length over `PTRDIFF_MAX`), `BUFFER_TOO_SMALL`, `MISALIGNED`. Thread safety: any thread; the model
/// may be in use by other threads.
///
/// # Safety
///
/// `model` is NULL or a live handle, `params` NULL or readable for its
/// `struct_size`, `memory` NULL or `memory_len` writable bytes,
/// `out_session` NULL or writable.
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
        // SAFETY: NULL or readable for its size (the caller's contract).
        let params = unsafe { read_in(params, "params") }?;
        let mem = non_null_mut(memory, "memory")?.cast::<u8>();
        let out = non_null_mut(out_session, "out_session")?;
        check_len::<u8>(memory_len, "memory_len")?;
        let sp = session_params(&params)?;
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
/// `model` is NULL or a live handle, `params` NULL or readable for its
/// `struct_size`, `out_session` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_new(
    model: *const llamette_model,
    params: *const llamette_session_params,
    out_session: *mut *mut llamette_session,
) -> llamette_status {
    boundary(|| {
        // SAFETY: the caller's contract.
        let m = unsafe { model_ref(model, "model") }?;
        // SAFETY: NULL or readable for its size (the caller's contract).
        let params = unsafe { read_in(params, "params") }?;
        let out = non_null_mut(out_session, "out_session")?;
        let sp = session_params(&params)?;
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

/// A call's number for cancellation; ends it (even by a panic), dropping a
/// request made for it that it did not act on.
struct Call<'a> {
    s: &'a llamette_session,
    id: u64,
}

impl<'a> Call<'a> {
    fn begin(s: &'a llamette_session) -> Call<'a> {
        let mut c = s.calls.lock().unwrap_or_else(|e| e.into_inner());
        let id = c.next_call;
        c.next_call += 1;
        c.running = Some(id);
        s.cancel.store(c.target == Some(id), Ordering::Release);
        Call { s, id }
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        let mut c = self.s.calls.lock().unwrap_or_else(|e| e.into_inner());
        c.running = None;
        if c.target == Some(self.id) {
            c.target = None;
        }
        self.s.cancel.store(false, Ordering::Release);
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
        let call = Call::begin(s);
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
        drop(call);
        // A host pool that broke its contract stopped the call (through the
        // cancel flag) whatever it returned: the session is as a cancelled
        // call leaves it, and usable.
        let fault = s.dispatch.take_fault();
        // SAFETY: as above; the closure's borrow has ended.
        let c = unsafe { &mut *core };
        let fail = match (r, fault) {
            (Err(payload), _) => {
                c.poisoned = true;
                Fail::panic(&*payload)
            }
            (Ok(_), Some(fault)) => {
                Fail::new(LLAMETTE_STATUS_BAD_PARALLEL_FOR, format_args!("{fault}"))
            }
            (Ok(Ok(())), None) => return Ok(()),
            (Ok(Err(fail)), None) => fail,
        };
        c.error = fail.message.clone();
        Err(fail)
    })
}

/// [`with_session`] for the other modules: `f` gets the core, the model,
/// and whether a cancellation request is pending for this call.
///
/// # Safety
///
/// `session` is NULL or a live handle.
pub(crate) unsafe fn with_core(
    session: *mut llamette_session,
    f: impl FnOnce(&mut Core, &llamette_model, bool) -> Result<(), Fail>,
) -> llamette_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_session(session, false, |c, s| {
            f(c, &s.model, s.cancel.load(Ordering::Acquire))
        })
    }
}

impl Core {
    /// Empties the text of the last token.
    pub(crate) fn text_clear(&mut self) {
        self.text[0] = 0;
    }
}

/// Fails with `CANCELLED` when a request is pending for this call.
fn check_cancel(s: &llamette_session) -> Result<(), Fail> {
    if s.cancel.load(Ordering::Acquire) {
        fail!(LLAMETTE_STATUS_CANCELLED, "cancelled");
    }
    Ok(())
}

/// A core error as a status, a cancellation with the position reached.
fn core_fail(c: &Core, e: llamette_core::Error) -> Fail {
    core_fail_pos(c.session.pos(), e)
}

fn core_fail_pos(pos: usize, e: llamette_core::Error) -> Fail {
    if e == llamette_core::Error::Cancelled {
        Fail::new(
            LLAMETTE_STATUS_CANCELLED,
            format_args!("cancelled at position {pos}"),
        )
    } else {
        Fail::core("", e)
    }
}

/// The logit bias, then the host's hook, applied to a copy of the logits.
fn adjust(
    bias: &[(u32, f32)],
    hook: Option<(
        unsafe extern "C" fn(*mut c_void, *mut f32, usize),
        *mut c_void,
    )>,
    logits: &mut [f32],
) {
    for &(t, b) in bias {
        if let Some(l) = logits.get_mut(t as usize) {
            *l += b;
        }
    }
    if let Some((f, user)) = hook {
        // SAFETY: the host's hook with the host's user_data (the contract
        // of llamette_session_set_logits_hook).
        unsafe { f(user, logits.as_mut_ptr(), logits.len()) };
    }
}

/// Reads the sampler settings, checked.
///
/// # Safety
///
/// `params` is NULL or readable.
unsafe fn sampler_params(
    params: *const llamette_sampler_params,
) -> Result<(SamplerParams, u64), Fail> {
    // SAFETY: NULL or readable for its size (the caller's contract).
    let p = unsafe { read_in(params, "params") }?;
    let sp = SamplerParams::from(&p);
    sp.validate().map_err(|e| Fail::core("params", e))?;
    Ok((sp, p.seed))
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
            // Before making a slice of the caller's length.
            let pending = usize::from(c.gen.pending().is_some());
            if n_tokens > (c.session.context() - c.session.pos()).saturating_sub(pending) {
                fail!(
                    LLAMETTE_STATUS_CONTEXT_FULL,
                    "context full: {} positions used{} + {n_tokens} tokens > context length {}",
                    c.session.pos(),
                    if pending == 1 { " + 1 sampled" } else { "" },
                    c.session.context()
                );
            }
            // SAFETY: non-NULL; `n_tokens` readable ids (the caller's
            // contract), size checked.
            let tokens = core::slice::from_raw_parts(tokens, n_tokens);
            check_cancel(s)?;
            c.gen
                .feed(&mut c.session, tokens)
                .map_err(|e| match e {
                    llamette_core::Error::ContextFull { pos, requested, context } => Fail::new(
                        LLAMETTE_STATUS_CONTEXT_FULL,
                        format_args!(
                            "context full: {pos} positions used + {requested} tokens (the last sampled one included) > context length {context}"
                        ),
                    ),
                    e => core_fail(c, e),
                })
        })
    }
}

/// Samples the next token from the current prediction with `params`, after
/// feeding the token the previous step sampled (so a step runs one forward
/// pass, the first step after a prefill none). The new token and its text go
/// to `*out_result`; the token is fed by the next prefill, step or generate.
/// The logit bias and the logits hook apply.
///
/// A session of context length N can step until N tokens are in the cache:
/// then the step returns `CONTEXT_FULL` (changing nothing).
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (a sampler setting out of
/// range: NaN or negative temperature, top_p or min_p outside [0, 1], a
/// repetition penalty not above 0, the message naming it; a `struct_size`
/// of `params` or `out_result` below the first version's),
/// `NOTHING_TO_SAMPLE` (no prefill yet, or since a reset or a
/// cancellation), `CONTEXT_FULL`, `CANCELLED` (the previous token stays
/// pending), `BUSY`. Thread safety: one thread at a time per session.
/// Allocates nothing.
///
/// # Safety
///
/// `session` is NULL or a live handle; `params` NULL or readable for its
/// `struct_size`; `out_result` NULL or writable for its `struct_size`.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_step(
    session: *mut llamette_session,
    params: *const llamette_sampler_params,
    out_result: *mut llamette_step_result,
) -> llamette_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_session(session, false, |c, s| {
            let (sp, seed) = sampler_params(params)?;
            let out = Out::new(out_result, "out_result")?;
            check_cancel(s)?;
            let gp = GenerateParams {
                sampler: sp,
                seed,
                ..Default::default()
            };
            let (bias, hook) = (&c.bias, c.hook);
            let text = &mut *c.text;
            let mut n = 0usize;
            let step = c
                .gen
                .step(
                    &mut c.session,
                    &gp,
                    &mut |l| adjust(bias, hook, l),
                    &mut |t| {
                        // At most `max_token_text_bytes` (no stop strings).
                        text[n..n + t.len()].copy_from_slice(t);
                        n += t.len();
                    },
                )
                .map_err(|e| core_fail_pos(c.session.pos(), e))?;
            c.text[n] = 0;
            let (token, is_end) = match step {
                Step::ContextFull => fail!(
                    LLAMETTE_STATUS_CONTEXT_FULL,
                    "context full: all {} positions are used; no room for the last sampled token",
                    c.session.context()
                ),
                Step::End(t) => (t, true),
                Step::Token(t) | Step::StopString(t) => (t, false),
            };
            out.write(&llamette_step_result {
                token,
                is_end,
                text: c.text.as_ptr().cast(),
                text_len: n,
                ..Default::default()
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
/// generation can be resumed. `llamette_session_generate_ex` adds stop
/// strings and the choice of end tokens.
///
/// Errors: `NULL_ARGUMENT` (a NULL callback too), `INVALID_ARGUMENT` (a
/// sampler setting out of range, a `struct_size` below the first
/// version's), `NOTHING_TO_SAMPLE`, `CONTEXT_FULL` (full
/// before the first token), `CANCELLED` (the tokens given to the callback
/// so far stay in the session), `BUSY`. Thread safety: one thread at a
/// time per session; the callback runs on this thread.
///
/// # Safety
///
/// `session` is NULL or a live handle; `params` NULL or readable for its
/// `struct_size`; `out_result` NULL or writable for its `struct_size`;
/// `callback` is safe to call with `user_data`.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_generate(
    session: *mut llamette_session,
    params: *const llamette_sampler_params,
    max_tokens: u32,
    callback: llamette_token_callback,
    user_data: *mut c_void,
    out_result: *mut llamette_generate_result,
) -> llamette_status {
    let options = llamette_generate_options {
        max_tokens,
        ..Default::default()
    };
    // SAFETY: the caller's contract; `options` is readable.
    unsafe {
        llamette_session_generate_ex(session, params, &options, callback, user_data, out_result)
    }
}

/// Splits NUL-ended stop strings.
fn stop_strings<'b>(bytes: &'b [u8], out: &mut [&'b str; MAX_STOP_STRINGS]) -> Result<usize, Fail> {
    if bytes.is_empty() {
        return Ok(0);
    }
    let Some(body) = bytes.strip_suffix(b"\0") else {
        fail!(
            LLAMETTE_STATUS_INVALID_ARGUMENT,
            "stop_strings must end with a NUL byte"
        );
    };
    let mut n = 0;
    for part in body.split(|&b| b == 0) {
        if n == MAX_STOP_STRINGS {
            fail!(
                LLAMETTE_STATUS_INVALID_ARGUMENT,
                "at most {MAX_STOP_STRINGS} stop strings"
            );
        }
        let s = core::str::from_utf8(part).map_err(|_| {
            Fail::new(
                LLAMETTE_STATUS_INVALID_UTF8,
                format_args!("stop string {n} is not UTF-8"),
            )
        })?;
        if s.is_empty() || s.len() > MAX_STOP_BYTES {
            fail!(
                LLAMETTE_STATUS_INVALID_ARGUMENT,
                "stop string {n} is {} bytes long: 1 to {MAX_STOP_BYTES} allowed",
                s.len()
            );
        }
        out[n] = s;
        n += 1;
    }
    Ok(n)
}

/// As `llamette_session_generate`, with `options` (NULL: the defaults):
/// a token limit, stop strings (the text before a stop string reaches the
/// callback, the stop string never does; stop reason
/// `LLAMETTE_STOP_STOP_STRING`) and which end tokens stop. Text held back
/// while it might become a stop string comes with a later token, or, when
/// generation ends, in one last call with `token = LLAMETTE_NO_TOKEN`.
///
/// Errors: as `llamette_session_generate`, and `INVALID_ARGUMENT` (bad
/// `struct_size`, too many, empty or long stop strings), `INVALID_UTF8`.
///
/// # Safety
///
/// As `llamette_session_generate`; `options` is NULL or readable for its
/// `struct_size`, its `stop_strings` NULL or `stop_strings_len` readable
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_generate_ex(
    session: *mut llamette_session,
    params: *const llamette_sampler_params,
    options: *const llamette_generate_options,
    callback: llamette_token_callback,
    user_data: *mut c_void,
    out_result: *mut llamette_generate_result,
) -> llamette_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_session(session, false, |c, s| {
            let (sp, seed) = sampler_params(params)?;
            let Some(callback) = callback else {
                return Err(Fail::null("callback"));
            };
            let out = Out::new(out_result, "out_result")?;
            let o = if options.is_null() {
                llamette_generate_options::default()
            } else {
                read_in(options, "options")?
            };
            let stop_bytes = input_slice(
                o.stop_strings.cast::<u8>(),
                o.stop_strings_len,
                "options->stop_strings",
            )?;
            let mut stops = [""; MAX_STOP_STRINGS];
            let n_stops = stop_strings(stop_bytes, &mut stops)?;
            let gp = GenerateParams {
                sampler: sp,
                seed,
                max_tokens: o.max_tokens as usize,
                stop_at_eos: o.flags & LLAMETTE_GENERATE_NO_STOP_AT_EOS == 0,
                stop_at_bos: o.flags & LLAMETTE_GENERATE_NO_STOP_AT_BOS == 0,
                stop_strings: &stops[..n_stops],
            };
            check_cancel(s)?;
            let (bias, hook) = (&c.bias, c.hook);
            let text = &mut *c.text;
            let mut n = 0usize;
            let outcome = c
                .gen
                .generate(
                    &mut c.session,
                    &gp,
                    &mut |l| adjust(bias, hook, l),
                    &mut |e| match e {
                        Event::Text(t) => {
                            // A token's text plus held-back text: within the buffer.
                            text[n..n + t.len()].copy_from_slice(t);
                            n += t.len();
                            true
                        }
                        Event::Token(t) => {
                            text[n] = 0;
                            let len = n;
                            n = 0;
                            // SAFETY: the host's callback with the host's
                            // user_data; the text is NUL-terminated and valid
                            // during the call.
                            callback(user_data, t, text.as_ptr().cast(), len)
                        }
                    },
                )
                .map_err(|e| core_fail_pos(c.session.pos(), e))?;
            if n > 0 {
                text[n] = 0;
                // SAFETY: as above: the held-back text, without a token.
                callback(user_data, LLAMETTE_NO_TOKEN, text.as_ptr().cast(), n);
            }
            let reason = match outcome.reason {
                StopReason::EndToken => LLAMETTE_STOP_END_TOKEN,
                StopReason::MaxTokens => LLAMETTE_STOP_MAX_TOKENS,
                StopReason::Callback => LLAMETTE_STOP_CALLBACK,
                StopReason::StopString => LLAMETTE_STOP_STOP_STRING,
                StopReason::ContextFull if outcome.n_tokens == 0 => fail!(
                    LLAMETTE_STATUS_CONTEXT_FULL,
                    "context full: all {} positions are used",
                    c.session.context()
                ),
                StopReason::ContextFull => LLAMETTE_STOP_CONTEXT_FULL,
                StopReason::Cancelled => fail!(
                    LLAMETTE_STATUS_CANCELLED,
                    "cancelled at position {}",
                    c.session.pos()
                ),
            };
            out.write(&llamette_generate_result {
                n_tokens: outcome.n_tokens as u32,
                stop_reason: reason,
                ..Default::default()
            });
            Ok(())
        })
    }
}

/// Forgets every position and the pending token, reseeds the sampler at the
/// next step, withdraws a cancellation request and clears a panic: the
/// session is as new (its memory, thread setting, host pool, logit bias and
/// logits hook stay).
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
            c.gen.reset(&mut c.session);
            c.poisoned = false;
            c.text[0] = 0;
            c.error.clear();
            clear_cancel(s);
            Ok(())
        })
    }
}

/// Forgets the positions from `position` on (nothing if `position` is not
/// less than `llamette_session_position`) and the pending token: a rewind,
/// to regenerate an answer or edit the end of a conversation without
/// recomputing its beginning. The next call needs a prefill (the logits are
/// gone). The sampler keeps its state.
///
/// Errors: `NULL_ARGUMENT`, `BUSY`. Thread safety: one thread at a time.
///
/// # Safety
///
/// `session` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_truncate(
    session: *mut llamette_session,
    position: u32,
) -> llamette_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_session(session, false, |c, _| {
            let pos = (position as usize).min(c.session.pos());
            c.gen.truncate(&mut c.session, pos);
            c.text[0] = 0;
            Ok(())
        })
    }
}

/// Writes a pointer to the logits predicting the next token (after a
/// prefill or step: one float per vocabulary entry, before the logit bias
/// and the hook) to `*out_logits` and their count to `*out_n`. They belong
/// to the session and stay valid until its next call.
///
/// Errors: `NULL_ARGUMENT`, `NOTHING_TO_SAMPLE` (no logits: nothing fed
/// since the session was made, reset, truncated or cancelled; or a step
/// left a token pending, whose logits come with the next prefill or step),
/// `BUSY`.
///
/// # Safety
///
/// `session` is NULL or a live handle; the outputs NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_logits(
    session: *mut llamette_session,
    out_logits: *mut *const f32,
    out_n: *mut usize,
) -> llamette_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_session(session, false, |c, _| {
            let out_l = non_null_mut(out_logits, "out_logits")?;
            let out_n = non_null_mut(out_n, "out_n")?;
            let l = match (c.gen.pending(), c.session.logits()) {
                (None, Some(l)) => l,
                _ => fail!(
                    LLAMETTE_STATUS_NOTHING_TO_SAMPLE,
                    "no logits: prefill first (a token sampled by a step is fed by the next call)"
                ),
            };
            out_l.write(l.as_ptr());
            out_n.write(l.len());
            Ok(())
        })
    }
}

/// Sets a logit bias, added to the logits before every sampling of this
/// session (step and generate): `biases[i]` to token `tokens[i]`;
/// `-INFINITY` bans a token. The arrays are copied (this call allocates);
/// `n = 0` removes the bias. Replaces an earlier bias.
///
/// Errors: `NULL_ARGUMENT`, `UNKNOWN_TOKEN`, `INVALID_ARGUMENT` (a NaN or
/// `+INFINITY` bias), `OUT_OF_MEMORY`, `BUSY`; the bias is then unchanged.
///
/// # Safety
///
/// `session` is NULL or a live handle; `tokens` and `biases` NULL or `n`
/// readable entries each.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_set_logit_bias(
    session: *mut llamette_session,
    tokens: *const u32,
    biases: *const f32,
    n: usize,
) -> llamette_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_session(session, false, |c, s| {
            let t = input_slice(tokens, n, "tokens")?;
            let b = input_slice(biases, n, "biases")?;
            let vocab = s.model.info.vocab_size;
            let mut v: Vec<(u32, f32)> = Vec::new();
            if v.try_reserve_exact(n).is_err() {
                fail!(LLAMETTE_STATUS_OUT_OF_MEMORY, "logit bias of {n} entries");
            }
            for (&t, &b) in t.iter().zip(b) {
                if t >= vocab {
                    fail!(
                        LLAMETTE_STATUS_UNKNOWN_TOKEN,
                        "unknown token id {t} (the vocabulary has {vocab} tokens)"
                    );
                }
                if b.is_nan() || b == f32::INFINITY {
                    fail!(
                        LLAMETTE_STATUS_INVALID_ARGUMENT,
                        "the bias of token {t} is {b}: a finite number or -INFINITY"
                    );
                }
                v.push((t, b));
            }
            c.bias = v;
            Ok(())
        })
    }
}

/// Sets a hook called with (a copy of) the logits before every sampling of
/// this session, after the logit bias (see `llamette_logits_fn`); NULL
/// removes it. `user_data` must stay valid until the hook is replaced or
/// the session freed.
///
/// Errors: `NULL_ARGUMENT`, `BUSY`.
///
/// # Safety
///
/// `session` is NULL or a live handle; `hook` safe to call with
/// `user_data` on the threads that use the session.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_set_logits_hook(
    session: *mut llamette_session,
    hook: llamette_logits_fn,
    user_data: *mut c_void,
) -> llamette_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_session(session, false, |c, _| {
            c.hook = hook.map(|f| (f, user_data));
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

/// Asks the call running on the session (prefill, step, generate, a chat
/// prefill) to stop: it returns `CANCELLED` within one transformer layer of
/// work. A request made while no call runs stops the next call at once.
/// Each call has its own request: one made during a call never reaches a
/// later call, even if it arrives after that call's last check (it is
/// dropped when the call ends); `llamette_session_clear_cancel` withdraws a
/// request made between calls.
///
/// Errors: `NULL_ARGUMENT`. Thread safety: any thread, at any time while the
/// session is alive (it takes a short lock, never held during a call); also
/// from the callback.
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
        // SAFETY: a live handle; `calls` and `cancel` are reached through a
        // shared reference.
        let s = unsafe { &*p };
        let mut c = s.calls.lock().unwrap_or_else(|e| e.into_inner());
        let target = c.running.unwrap_or(c.next_call);
        c.target = Some(target);
        if c.running.is_some() {
            s.cancel.store(true, Ordering::Release);
        }
        Ok(())
    })
}

fn clear_cancel(s: &llamette_session) {
    let mut c = s.calls.lock().unwrap_or_else(|e| e.into_inner());
    c.target = None;
    // The flag also stops a call whose host pool broke its contract: that
    // stop is not the host's to withdraw.
    if !s.dispatch.has_fault() {
        s.cancel.store(false, Ordering::Release);
    }
}

/// Withdraws a cancellation request not acted upon yet: one made between
/// calls (which would stop the next call), or one for the call running
/// now. For hosts whose cancellation source may fire after a call
/// returned (a CancellationToken, a task cancelled late).
///
/// Errors: `NULL_ARGUMENT`. Thread safety: any thread, any time.
///
/// # Safety
///
/// `session` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_clear_cancel(
    session: *const llamette_session,
) -> llamette_status {
    boundary(|| {
        let p = non_null(session, "session")?;
        // SAFETY: as in llamette_session_cancel.
        clear_cancel(unsafe { &*p });
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
/// calling thread alone. A `parallel_for` that skips a task index, calls
/// one twice or out of range makes the call that ran it stop (as a
/// cancellation stops it) and return `BAD_PARALLEL_FOR`; the library runs
/// every index exactly once itself meanwhile, and the session stays usable.
///
/// Errors: `NULL_ARGUMENT` (`session`, or a NULL `parallel_for`),
/// `INVALID_ARGUMENT` (`n_threads` 0 or more than 1024, a `struct_size`
/// below the first version's), `BUSY`. Thread
/// safety: one thread at a time per session.
///
/// # Safety
///
/// `session` is NULL or a live handle; `parallel` NULL or readable for its
/// `struct_size`, its function safe to call as documented.
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
                // SAFETY: non-NULL, readable for its size (the contract).
                let p = read_in(parallel, "parallel")?;
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
/// top-k 0, min-p 0, repetition penalty 1 over 64 tokens, seed 0 (the
/// values of `LLAMETTE_SAMPLER_PARAMS_INIT`). Set `out_params->struct_size`
/// first: the fields it covers are written. Set `temperature = 0` for
/// greedy decoding.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (`struct_size` below the
/// first version's).
///
/// # Safety
///
/// `out_params` is NULL, or its `struct_size` is set and that many bytes
/// are writable.
#[no_mangle]
pub unsafe extern "C" fn llamette_sampler_params_default(
    out_params: *mut llamette_sampler_params,
) -> llamette_status {
    boundary(|| {
        // SAFETY: NULL, or writable for its size (the caller's contract).
        let out = unsafe { Out::new(out_params, "out_params") }?;
        // SAFETY: checked by `Out::new`.
        unsafe { out.write(&llamette_sampler_params::default()) };
        Ok(())
    })
}

/// Checks sampler settings as `llamette_session_step` and the generate
/// functions do, without a session: for hosts that check their options
/// before they feed a prompt (the C# and Swift bindings do).
///
/// Errors: `NULL_ARGUMENT`; `INVALID_ARGUMENT` for a `struct_size` below
/// the first version's, or a setting out of range (NaN, infinite or
/// negative `temperature`; `top_p` or `min_p` outside [0, 1] or NaN;
/// `repeat_penalty` not above 0 or not finite). The message of an out of
/// range setting reads `invalid <field> <value>: it must be <range>`,
/// `<field>` being the field's name in this header (`temperature`,
/// `top_p`, `min_p`, `repeat_penalty`). Thread safety: any thread.
///
/// # Safety
///
/// `params` is NULL or readable for its `struct_size`.
#[no_mangle]
pub unsafe extern "C" fn llamette_sampler_params_validate(
    params: *const llamette_sampler_params,
) -> llamette_status {
    boundary(|| {
        // SAFETY: NULL or readable for its size (the caller's contract).
        let p = unsafe { read_in(params, "params") }?;
        SamplerParams::from(&p)
            .validate()
            .map_err(|e| Fail::core("", e))
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
