//! Chat (Llama 2's format, multi-turn prefills that reuse the KV cache) and
//! saved session states.

use core::ffi::{c_char, c_void};

use llamette_core::chat::{self, ChatOptions, ContextPolicy, Message, Role};
use llamette_core::chat_template::{self, ChatFormat};
use llamette_core::state;

use crate::error::*;
use crate::model::{llamette_model, model_ref};
use crate::session::{llamette_session, with_core};
use crate::sized::{read_in, Out, SizedStruct};

/// `llamette_chat_message.role`: the system prompt (first message only).
pub const LLAMETTE_ROLE_SYSTEM: u32 = 0;
/// `llamette_chat_message.role`: the person.
pub const LLAMETTE_ROLE_USER: u32 = 1;
/// `llamette_chat_message.role`: the model.
pub const LLAMETTE_ROLE_ASSISTANT: u32 = 2;

/// One message of a dialog (`LLAMETTE_CHAT_MESSAGE_INIT`). In an array,
/// every element's `struct_size` is `sizeof(llamette_chat_message)` (the
/// library steps through the array by the first element's size).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct llamette_chat_message {
    /// `sizeof(llamette_chat_message)`, set by the caller.
    pub struct_size: usize,
    /// `LLAMETTE_ROLE_*`.
    pub role: u32,
    /// UTF-8 text, `content_len` bytes (no NUL needed); NULL with 0.
    pub content: *const c_char,
    /// Bytes of `content`.
    pub content_len: usize,
}

impl Default for llamette_chat_message {
    /// As `LLAMETTE_CHAT_MESSAGE_INIT`: an empty system message.
    fn default() -> Self {
        llamette_chat_message {
            struct_size: core::mem::size_of::<Self>(),
            role: 0,
            content: core::ptr::null(),
            content_len: 0,
        }
    }
}

// SAFETY: repr(C), `struct_size` first, integers and a raw pointer.
unsafe impl SizedStruct for llamette_chat_message {
    const NAME: &'static str = "llamette_chat_message";
}

/// `llamette_chat_options.flags`: accept messages that contain the format's
/// own tags (`[INST]`, `[/INST]`, `<<SYS>>`, `<</SYS>>`). Off by default:
/// such a dialog is refused with `LLAMETTE_STATUS_REFUSED`.
pub const LLAMETTE_CHAT_ALLOW_SPECIAL_TAGS: u32 = 1;
/// `llamette_chat_options.flags`: use the built-in Llama 2 format even
/// where the model's file carries another chat template.
pub const LLAMETTE_CHAT_LLAMA2_FORMAT: u32 = 2;

/// A chat format (`llamette_model_chat_format`,
/// `llamette_chat_prefill_result.format`): Llama 2's, built in (Meta's
/// reference `chat_completion`, exactly).
pub const LLAMETTE_CHAT_FORMAT_LLAMA2: u32 = 1;
/// A chat format: the Jinja template of the model's GGUF file
/// (`tokenizer.chat_template`, when it is not Llama 2's), rendered as
/// Hugging Face's `apply_chat_template` renders it and tokenized with the
/// texts of control tokens (`<s>`, `</s>`) read as those tokens. The
/// injection guard then refuses messages containing `<s>`, `</s>`, or a
/// marker of a common template (`[INST]`, `<|user|>`, `<|im_start|>`, ...)
/// that the template uses; other markers are the host's to screen.
pub const LLAMETTE_CHAT_FORMAT_TEMPLATE: u32 = 2;

/// `llamette_chat_options.context_policy`: a dialog that does not fit is
/// `CONTEXT_FULL`, nothing changed (the default).
pub const LLAMETTE_CONTEXT_ERROR: u32 = 0;
/// `llamette_chat_options.context_policy`: drop the oldest user/assistant
/// pairs (the system prompt stays) until the dialog and `reserve` more
/// positions fit, and re-prefill what no longer matches the cache: every
/// token after the system prompt, up to the context length, once per turn
/// that overflows.
pub const LLAMETTE_CONTEXT_KEEP_SYSTEM_AND_LATEST: u32 = 1;

/// Options of the chat functions; NULL means all zero (the defaults).
/// Initialise it with `LLAMETTE_CHAT_OPTIONS_INIT` (or set `struct_size =
/// sizeof(llamette_chat_options)`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct llamette_chat_options {
    /// `sizeof(llamette_chat_options)`, set by the caller.
    pub struct_size: usize,
    /// `LLAMETTE_CHAT_*` flags.
    pub flags: u32,
    /// `LLAMETTE_CONTEXT_*`.
    pub context_policy: u32,
    /// With `LLAMETTE_CONTEXT_KEEP_SYSTEM_AND_LATEST`: positions to keep
    /// free for the answer.
    pub reserve: u32,
}

impl Default for llamette_chat_options {
    /// As `LLAMETTE_CHAT_OPTIONS_INIT`: the defaults.
    fn default() -> Self {
        llamette_chat_options {
            struct_size: core::mem::size_of::<Self>(),
            flags: 0,
            context_policy: LLAMETTE_CONTEXT_ERROR,
            reserve: 0,
        }
    }
}

// SAFETY: repr(C), `struct_size` first, plain integers.
unsafe impl SizedStruct for llamette_chat_options {
    const NAME: &'static str = "llamette_chat_options";
}

/// What `llamette_chat_prefill` did. Set `struct_size` before the call
/// (`LLAMETTE_CHAT_PREFILL_RESULT_INIT`); the library writes only the
/// fields that size covers.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct llamette_chat_prefill_result {
    /// `sizeof(llamette_chat_prefill_result)`, set by the caller.
    pub struct_size: usize,
    /// Positions of the session kept (the prefix it already held).
    pub reused: u32,
    /// Tokens fed.
    pub fed: u32,
    /// Messages left out by the context policy (after the system prompt).
    pub dropped: u32,
    /// The chat format used, `LLAMETTE_CHAT_FORMAT_*`.
    pub format: u32,
}

impl Default for llamette_chat_prefill_result {
    /// As `LLAMETTE_CHAT_PREFILL_RESULT_INIT`.
    fn default() -> Self {
        llamette_chat_prefill_result {
            struct_size: core::mem::size_of::<Self>(),
            reused: 0,
            fed: 0,
            dropped: 0,
            format: 0,
        }
    }
}

// SAFETY: repr(C), `struct_size` first, plain integers.
unsafe impl SizedStruct for llamette_chat_prefill_result {
    const NAME: &'static str = "llamette_chat_prefill_result";
}

/// Reads the options (NULL: defaults).
///
/// # Safety
///
/// `p` is NULL or readable for its `struct_size`.
unsafe fn options(p: *const llamette_chat_options) -> Result<(ChatOptions, bool), Fail> {
    let o = if p.is_null() {
        llamette_chat_options::default()
    } else {
        // SAFETY: the caller's contract.
        unsafe { read_in(p, "options") }?
    };
    if o.flags & !(LLAMETTE_CHAT_ALLOW_SPECIAL_TAGS | LLAMETTE_CHAT_LLAMA2_FORMAT) != 0 {
        fail!(
            LLAMETTE_STATUS_INVALID_ARGUMENT,
            "options->flags: unknown flags {:#x}",
            o.flags
        );
    }
    let context_policy = match o.context_policy {
        LLAMETTE_CONTEXT_ERROR => ContextPolicy::Error,
        LLAMETTE_CONTEXT_KEEP_SYSTEM_AND_LATEST => ContextPolicy::KeepSystemAndLatest {
            reserve: o.reserve as usize,
        },
        other => fail!(
            LLAMETTE_STATUS_INVALID_ARGUMENT,
            "options->context_policy {other} is not a LLAMETTE_CONTEXT_* value"
        ),
    };
    Ok((
        ChatOptions {
            allow_special_tags: o.flags & LLAMETTE_CHAT_ALLOW_SPECIAL_TAGS != 0,
            context_policy,
        },
        o.flags & LLAMETTE_CHAT_LLAMA2_FORMAT != 0,
    ))
}

/// The format the chat functions use for `model` (Llama 2's when forced).
fn format_of(model: &llamette_model, force_llama2: bool) -> ChatFormat<'static> {
    if force_llama2 {
        ChatFormat::Llama2
    } else {
        model.chat_format
    }
}

fn format_code(f: ChatFormat) -> u32 {
    match f {
        ChatFormat::Llama2 => LLAMETTE_CHAT_FORMAT_LLAMA2,
        ChatFormat::Template(_) => LLAMETTE_CHAT_FORMAT_TEMPLATE,
    }
}

/// Writes the chat format the chat functions use for `model` with
/// `options` (NULL: the defaults) to `*out_format`:
/// `LLAMETTE_CHAT_FORMAT_LLAMA2` (no template in the file, Llama 2's own
/// template, a llama2.c file, or the `LLAMETTE_CHAT_LLAMA2_FORMAT` flag)
/// or `LLAMETTE_CHAT_FORMAT_TEMPLATE` (the GGUF's other
/// `tokenizer.chat_template`, e.g. TinyLlama-Chat's or Mistral-Instruct's).
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (bad options),
/// `NO_TOKENIZER`. Thread safety: any thread.
///
/// # Safety
///
/// `model` is NULL or a live handle, `options_ptr` NULL or readable for its
/// `struct_size`, `out_format` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llamette_model_chat_format(
    model: *const llamette_model,
    options_ptr: *const llamette_chat_options,
    out_format: *mut u32,
) -> llamette_status {
    boundary(|| {
        // SAFETY: the caller's contract.
        let m = unsafe { model_ref(model, "model") }?;
        let out = non_null_mut(out_format, "out_format")?;
        // SAFETY: the caller's contract.
        let (_, force) = unsafe { options(options_ptr) }?;
        m.tok()?;
        // SAFETY: non-NULL, writable.
        unsafe { out.write(format_code(format_of(m, force))) };
        Ok(())
    })
}

/// Reads the caller's messages (borrowing their text).
///
/// # Safety
///
/// `messages` is NULL (with 0) or `n` readable elements of the first
/// element's `struct_size` each, whose contents are readable.
unsafe fn messages<'m>(
    messages: *const llamette_chat_message,
    n: usize,
) -> Result<Vec<Message<'m>>, Fail> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let base = non_null(messages, "messages")?;
    // SAFETY: the first element is readable (the contract).
    let stride = unsafe { base.cast::<usize>().read_unaligned() };
    if stride < llamette_chat_message::MIN_SIZE {
        fail!(
            LLAMETTE_STATUS_INVALID_ARGUMENT,
            "messages[0].struct_size is {stride}: set it to sizeof(llamette_chat_message)"
        );
    }
    check_len::<u8>(n.saturating_mul(stride), "n_messages")?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        // SAFETY: element `i` lies at `i * stride` (checked to fit in
        // isize above), readable by the contract.
        let m = unsafe {
            read_in(
                base.cast::<u8>()
                    .add(i * stride)
                    .cast::<llamette_chat_message>(),
                "messages[]",
            )
        }?;
        if m.struct_size != stride {
            fail!(
                LLAMETTE_STATUS_INVALID_ARGUMENT,
                "messages[{i}].struct_size is {}, messages[0]'s {stride}",
                m.struct_size
            );
        }
        let role = match m.role {
            LLAMETTE_ROLE_SYSTEM => Role::System,
            LLAMETTE_ROLE_USER => Role::User,
            LLAMETTE_ROLE_ASSISTANT => Role::Assistant,
            other => fail!(
                LLAMETTE_STATUS_INVALID_ARGUMENT,
                "messages[{i}].role {other} is not a LLAMETTE_ROLE_*"
            ),
        };
        // SAFETY: the caller's contract on the content.
        let bytes =
            unsafe { input_slice(m.content.cast::<u8>(), m.content_len, "messages[].content") }?;
        let content = core::str::from_utf8(bytes).map_err(|e| {
            Fail::new(
                LLAMETTE_STATUS_INVALID_UTF8,
                format_args!("messages[{i}].content is not valid UTF-8 ({e})"),
            )
        })?;
        out.push(Message { role, content });
    }
    Ok(out)
}

fn work(len: usize) -> Result<Vec<u32>, Fail> {
    let mut v: Vec<u32> = Vec::new();
    if v.try_reserve_exact(len).is_err() {
        fail!(
            LLAMETTE_STATUS_OUT_OF_MEMORY,
            "chat work buffer of {len} entries"
        );
    }
    v.resize(len, 0);
    Ok(v)
}

/// Encodes a dialog into token ids in the model's chat format
/// (`llamette_model_chat_format`). Llama 2's is encoded exactly as Meta's
/// reference `chat_completion` does: the system prompt folded
/// into the first user message inside `<<SYS>>\n ... \n<</SYS>>\n\n`, each
/// finished user/assistant pair as `[INST] {user} [/INST] {answer} ` with
/// BOS and EOS, the last user message as `[INST] {user} [/INST]` with BOS,
/// every text stripped as Python's `strip()`, each piece tokenized on its
/// own (so `<s>` typed in a message is text, never a control token). A
/// template is rendered and tokenized as `LLAMETTE_CHAT_FORMAT_TEMPLATE`
/// says.
///
/// The ids go to `tokens[0..n]`, `n` to `*out_n_tokens`; with too small a
/// `capacity`, `BUFFER_TOO_SMALL` and the count needed in `*out_n_tokens`
/// (pass NULL and 0 to ask). Allocates its scratch.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT` (roles out of order: an
/// optional system message, then user and assistant alternating, ending
/// with a user message; bad `struct_size`s, roles, flags), `INVALID_UTF8`,
/// `REFUSED` (a message contains `[INST]`, `[/INST]`, `<<SYS>>` or
/// `<</SYS>>`, or with a template `<s>`, `</s>` and its markers, unless
/// `LLAMETTE_CHAT_ALLOW_SPECIAL_TAGS`), `TEMPLATE`, `NO_TOKENIZER`,
/// `BUFFER_TOO_SMALL`, `OUT_OF_MEMORY`. Thread safety: any thread.
///
/// # Safety
///
/// `messages` points to `n_messages` readable messages (or is NULL with
/// 0), `options` is NULL or readable, `tokens` NULL with 0 or `capacity`
/// writable entries, `out_n_tokens` writable.
#[no_mangle]
pub unsafe extern "C" fn llamette_chat_encode(
    model: *const llamette_model,
    messages_ptr: *const llamette_chat_message,
    n_messages: usize,
    options_ptr: *const llamette_chat_options,
    tokens: *mut u32,
    capacity: usize,
    out_n_tokens: *mut usize,
) -> llamette_status {
    boundary(|| {
        // SAFETY: the caller's contract.
        let m = unsafe { model_ref(model, "model") }?;
        let out_n = non_null_mut(out_n_tokens, "out_n_tokens")?;
        if tokens.is_null() && capacity != 0 {
            return Err(Fail::null("tokens"));
        }
        check_len::<u32>(capacity, "capacity")?;
        // SAFETY: the caller's contract.
        let (msgs, (opts, force)) =
            unsafe { (messages(messages_ptr, n_messages)?, options(options_ptr)?) };
        let tok = m.tok()?;
        let w = match format_of(m, force) {
            ChatFormat::Llama2 => {
                let mut w = work(chat::dialog_work_len(&msgs))?;
                let n = chat::encode_dialog(tok, &msgs, &opts, &mut w)
                    .map_err(|e| Fail::core("dialog", e))?;
                w.truncate(n);
                w
            }
            f => chat_template::encode_dialog_as(tok, f, &msgs, &opts)
                .map_err(|e| Fail::core("dialog", e))?,
        };
        let n = w.len();
        if n > capacity {
            // SAFETY: non-NULL, writable.
            unsafe { out_n.write(n) };
            fail!(
                LLAMETTE_STATUS_BUFFER_TOO_SMALL,
                "tokens: {n} ids needed, capacity {capacity}"
            );
        }
        // SAFETY: `n <= capacity` writable entries (non-NULL when n > 0).
        unsafe {
            if n > 0 {
                core::ptr::copy_nonoverlapping(w.as_ptr(), tokens, n);
            }
            out_n.write(n);
        }
        Ok(())
    })
}

/// Brings the session to the end of the dialog's encoding (as
/// `llamette_chat_encode`), ready to generate the assistant's answer with
/// `llamette_session_generate(_ex)`: the longest prefix the session
/// already holds is kept (the earlier turns: a new user turn costs only its
/// new tokens), the rest truncated, and only what is new is fed. The logits
/// are then those of a fresh session fed the whole dialog, bit for bit.
/// Pass the whole dialog each turn, the answers as generated (or edited:
/// the cache is truncated where the text changed).
///
/// `*out_result` (NULL allowed; set its `struct_size`) tells what was kept,
/// fed and dropped, and which chat format was used. Allocates scratch for
/// the encoding.
///
/// Errors: as `llamette_chat_encode`, `CONTEXT_FULL` (the dialog does not
/// fit, with `LLAMETTE_CONTEXT_ERROR`; nothing changed), `CANCELLED`,
/// `BUSY`. Thread safety: one thread at a time per session.
///
/// # Safety
///
/// `session` is NULL or a live handle; the rest as `llamette_chat_encode`;
/// `out_result` NULL or writable for its `struct_size`.
#[no_mangle]
pub unsafe extern "C" fn llamette_chat_prefill(
    session: *mut llamette_session,
    messages_ptr: *const llamette_chat_message,
    n_messages: usize,
    options_ptr: *const llamette_chat_options,
    out_result: *mut llamette_chat_prefill_result,
) -> llamette_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_core(session, |c, model, cancel_requested| {
            let msgs = messages(messages_ptr, n_messages)?;
            let (opts, force) = options(options_ptr)?;
            let tok = model.tok()?;
            let out = if out_result.is_null() {
                None
            } else {
                Some(Out::new(out_result, "out_result")?)
            };
            let format = format_of(model, force);
            let mut w = match format {
                ChatFormat::Llama2 => work(chat::dialog_work_len(&msgs))?,
                ChatFormat::Template(_) => Vec::new(),
            };
            if cancel_requested {
                fail!(LLAMETTE_STATUS_CANCELLED, "cancelled");
            }
            let p = match format {
                ChatFormat::Llama2 => {
                    chat::prefill_dialog(&mut c.gen, &mut c.session, tok, &msgs, &opts, &mut w)
                }
                f => chat_template::prefill_dialog_as(
                    &mut c.gen,
                    &mut c.session,
                    tok,
                    f,
                    &msgs,
                    &opts,
                ),
            }
            .map_err(|e| match e {
                llamette_core::Error::Cancelled => Fail::new(
                    LLAMETTE_STATUS_CANCELLED,
                    format_args!("cancelled at position {}", c.session.pos()),
                ),
                e => Fail::core("dialog", e),
            })?;
            if let Some(out) = out {
                out.write(&llamette_chat_prefill_result {
                    reused: p.reused as u32,
                    fed: p.fed as u32,
                    dropped: p.dropped as u32,
                    format: format_code(format),
                    ..Default::default()
                });
            }
            Ok(())
        })
    }
}

/// Writes the exact size of the session's saved state (with `messages`
/// kept in it, for `llamette_chat_state_save`; NULL and 0 for
/// `llamette_session_state_save`) to `*out_bytes`.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT`, `INVALID_UTF8`, `BUSY`.
///
/// # Safety
///
/// `session` is NULL or a live handle; `messages` as in
/// `llamette_chat_encode`; `out_bytes` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llamette_chat_state_size(
    session: *mut llamette_session,
    messages_ptr: *const llamette_chat_message,
    n_messages: usize,
    out_bytes: *mut usize,
) -> llamette_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_core(session, |c, _, _| {
            let out = non_null_mut(out_bytes, "out_bytes")?;
            let msgs = messages(messages_ptr, n_messages)?;
            let extra = if n_messages == 0 {
                0
            } else {
                chat::dialog_bytes_len(&msgs)
            };
            out.write(state::saved_len(&c.session, &c.gen, extra));
            Ok(())
        })
    }
}

/// Saves the session (the KV cache positions in use, the position, the
/// pending token, the sampler's and decoder's state) and `messages` (the
/// dialog, to resume the chat) into `buf`: a versioned, checksummed blob
/// that names its model (a fingerprint of the file's header and tensor
/// table, alike whether the file was opened for speed or mapped).
/// `*out_len` receives its length; with too small a `capacity`,
/// `BUFFER_TOO_SMALL` and the size needed in `*out_len`. Restore it with
/// `llamette_chat_state_load` into a fresh session on the same model file
/// (opened either way) and KV type, in any process: generation then
/// continues with the same tokens as if it had never stopped.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT`, `INVALID_UTF8`,
/// `BUFFER_TOO_SMALL`, `BUSY`. Allocates nothing but the message list.
///
/// # Safety
///
/// As `llamette_chat_state_size`; `buf` NULL with 0 or `capacity` writable
/// bytes; `out_len` writable.
#[no_mangle]
pub unsafe extern "C" fn llamette_chat_state_save(
    session: *mut llamette_session,
    messages_ptr: *const llamette_chat_message,
    n_messages: usize,
    buf: *mut c_void,
    capacity: usize,
    out_len: *mut usize,
) -> llamette_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_core(session, |c, _, _| {
            let out_len = non_null_mut(out_len, "out_len")?;
            if buf.is_null() && capacity != 0 {
                return Err(Fail::null("buf"));
            }
            check_len::<u8>(capacity, "capacity")?;
            let msgs = messages(messages_ptr, n_messages)?;
            let extra_len = if n_messages == 0 {
                0
            } else {
                chat::dialog_bytes_len(&msgs)
            };
            let len = state::saved_len(&c.session, &c.gen, extra_len);
            if len > capacity {
                out_len.write(len);
                fail!(
                    LLAMETTE_STATUS_BUFFER_TOO_SMALL,
                    "saved state: {len} bytes needed, capacity {capacity}"
                );
            }
            // SAFETY: `len <= capacity` writable bytes (non-NULL: len > 0).
            let out = core::slice::from_raw_parts_mut(buf.cast::<u8>(), len);
            // The dialog goes in front, then the state is written around it:
            // the extra bytes are copied from a separate buffer.
            let mut extra = vec![0u8; extra_len];
            if extra_len > 0 {
                chat::write_dialog(&msgs, &mut extra).map_err(|e| Fail::core("messages", e))?;
            }
            let n =
                state::save(&mut c.session, &c.gen, &extra, out).map_err(|e| Fail::core("", e))?;
            out_len.write(n);
            Ok(())
        })
    }
}

/// Restores a blob of `llamette_chat_state_save` (or
/// `llamette_session_state_save`) into the session, replacing its
/// positions, pending token and sampler state; `*out_n_messages` (NULL
/// allowed) receives the number of saved messages, read with
/// `llamette_chat_state_message`. The session may be fresh, in another
/// process, of another context length if long enough.
///
/// Errors: `NULL_ARGUMENT`, `BAD_STATE` (not a state: truncated, corrupted,
/// malformed), `STATE_MISMATCH` (another model file, KV cache type or
/// shape, a newer format version, more positions than the context),
/// `BUSY`. On any error the session is unchanged.
///
/// # Safety
///
/// `session` is NULL or a live handle; `data` NULL with 0 or `len`
/// readable bytes; `out_n_messages` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llamette_chat_state_load(
    session: *mut llamette_session,
    data: *const c_void,
    len: usize,
    out_n_messages: *mut usize,
) -> llamette_status {
    // SAFETY: the caller's contract.
    unsafe {
        with_core(session, |c, _, _| {
            let blob = input_slice(data.cast::<u8>(), len, "data")?;
            // Check the dialog before the session changes.
            let extra = state::peek_extra(&c.session, blob).map_err(|e| Fail::core("", e))?;
            let count = if extra.is_empty() {
                0
            } else {
                chat::read_dialog(extra).map_err(|e| Fail::core("", e))?.0
            };
            state::restore(&mut c.session, &mut c.gen, blob).map_err(|e| Fail::core("", e))?;
            c.text_clear();
            if !out_n_messages.is_null() {
                out_n_messages.write(count);
            }
            Ok(())
        })
    }
}

/// Reads message `index` of a saved state (as `llamette_chat_state_load`
/// counted them) into `*out_message` (set its `struct_size`), its content
/// pointing into `data`. Checks the blob's checksum, not its model.
///
/// Errors: `NULL_ARGUMENT`, `BAD_STATE`, `INVALID_ARGUMENT` (an index past
/// the last message). Thread safety: any thread.
///
/// # Safety
///
/// `data` NULL with 0 or `len` readable bytes; `out_message` NULL or
/// writable for its `struct_size`.
#[no_mangle]
pub unsafe extern "C" fn llamette_chat_state_message(
    data: *const c_void,
    len: usize,
    index: usize,
    out_message: *mut llamette_chat_message,
) -> llamette_status {
    boundary(|| {
        // SAFETY: NULL or writable for its size (the caller's contract).
        let out = unsafe { Out::new(out_message, "out_message") }?;
        // SAFETY: the caller's contract.
        let blob = unsafe { input_slice(data.cast::<u8>(), len, "data") }?;
        let extra = state::extra_of(blob).map_err(|e| Fail::core("", e))?;
        let (count, mut it) = if extra.is_empty() {
            (0, None)
        } else {
            let (n, it) = chat::read_dialog(extra).map_err(|e| Fail::core("", e))?;
            (n, Some(it))
        };
        let Some(m) = it.as_mut().and_then(|it| it.nth(index)) else {
            fail!(
                LLAMETTE_STATUS_INVALID_ARGUMENT,
                "message {index} of {count}"
            );
        };
        let r = llamette_chat_message {
            role: match m.role {
                Role::System => LLAMETTE_ROLE_SYSTEM,
                Role::User => LLAMETTE_ROLE_USER,
                Role::Assistant => LLAMETTE_ROLE_ASSISTANT,
            },
            content: m.content.as_ptr().cast(),
            content_len: m.content.len(),
            ..Default::default()
        };
        // SAFETY: checked by `Out::new`, writable for its size.
        unsafe { out.write(&r) };
        Ok(())
    })
}

/// `llamette_chat_state_size` without messages: the size of the session's
/// saved state.
///
/// # Safety
///
/// As `llamette_chat_state_size`.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_state_size(
    session: *mut llamette_session,
    out_bytes: *mut usize,
) -> llamette_status {
    // SAFETY: the caller's contract.
    unsafe { llamette_chat_state_size(session, core::ptr::null(), 0, out_bytes) }
}

/// `llamette_chat_state_save` without messages: saves the session (see
/// there) into `buf`.
///
/// # Safety
///
/// As `llamette_chat_state_save`.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_state_save(
    session: *mut llamette_session,
    buf: *mut c_void,
    capacity: usize,
    out_len: *mut usize,
) -> llamette_status {
    // SAFETY: the caller's contract.
    unsafe { llamette_chat_state_save(session, core::ptr::null(), 0, buf, capacity, out_len) }
}

/// `llamette_chat_state_load`, ignoring saved messages: restores the
/// session from a saved state (see there; the session is unchanged on any
/// error).
///
/// # Safety
///
/// As `llamette_chat_state_load`.
#[no_mangle]
pub unsafe extern "C" fn llamette_session_state_load(
    session: *mut llamette_session,
    data: *const c_void,
    len: usize,
) -> llamette_status {
    // SAFETY: the caller's contract.
    unsafe { llamette_chat_state_load(session, data, len, core::ptr::null_mut()) }
}
