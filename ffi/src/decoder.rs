//! The streaming detokenizer handle.

use core::ffi::c_char;
use std::sync::Arc;

use llamette_core::tokenizer::Decoder;

use crate::error::*;
use crate::model::{llamette_model, model_arc, model_ref};

/// A streaming detokenizer: token ids in, UTF-8 text out, a character split
/// over several tokens held back until it is complete. Made by
/// `llamette_decoder_new`, freed by `llamette_decoder_free`.
///
/// Keeps its model alive. Used by one thread at a time (any thread).
pub struct llamette_decoder {
    // Field order is drop order: `decoder` borrows the model's tokenizer.
    decoder: Decoder<'static, 'static>,
    model: Arc<llamette_model>,
}

/// Makes a decoder over the model's tokenizer, at the start of a text.
///
/// Text rules: `'▁'` becomes a space; a byte token adds its byte and bytes are
/// assembled into whole UTF-8 characters; invalid UTF-8 becomes U+FFFD;
/// control tokens (BOS, EOS, unknown) give no text; the piece right after a
/// BOS loses one leading space (llama2.c's rule, which also removes
/// SentencePiece's dummy prefix).
///
/// On success `*out_decoder` receives a new handle, to be released with
/// `llamette_decoder_free`; it holds a reference to the model.
///
/// Errors: `NULL_ARGUMENT`, `NO_TOKENIZER`. Thread safety: any thread.
///
/// # Safety
///
/// `model` is NULL or a live handle; `out_decoder` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llamette_decoder_new(
    model: *const llamette_model,
    out_decoder: *mut *mut llamette_decoder,
) -> llamette_status {
    boundary(|| {
        // SAFETY: the caller's contract.
        unsafe { model_ref(model, "model") }?.tok()?;
        let out = non_null_mut(out_decoder, "out_decoder")?;
        // SAFETY: checked non-NULL above; a live handle.
        let arc = unsafe { model_arc(model) };
        // SAFETY: the tokenizer lives inside the `Arc` allocation, which the
        // decoder handle keeps alive (`model` field, dropped after `decoder`).
        let tok: &'static llamette_core::Tokenizer<'static> =
            unsafe { &*(arc.tok()? as *const llamette_core::Tokenizer<'static>) };
        let d = Box::new(llamette_decoder {
            decoder: tok.decoder(),
            model: arc,
        });
        // SAFETY: checked non-NULL and writable.
        unsafe { out.write(Box::into_raw(d)) };
        Ok(())
    })
}

/// Writes the text of `text` through `emit` into `buf`, or reports the length.
///
/// # Safety
///
/// `buf` points to `capacity` writable bytes, or is NULL with 0.
unsafe fn emit_into(
    d: &mut llamette_decoder,
    what: &str,
    buf: *mut c_char,
    capacity: usize,
    out_len: *mut usize,
    run: impl Fn(&mut Decoder<'static, 'static>, &mut dyn FnMut(&str)) -> Result<(), Fail>,
) -> Result<(), Fail> {
    let out_len = non_null_mut(out_len, "out_len")?;
    if buf.is_null() && capacity != 0 {
        return Err(Fail::null("buf"));
    }
    check_len::<u8>(capacity, "capacity")?;
    // Measure on a copy, so that a failure leaves the decoder as it was.
    let mut probe = d.decoder.clone();
    let mut n = 0usize;
    run(&mut probe, &mut |s| n += s.len())?;
    if n > capacity {
        // SAFETY: checked non-NULL and writable.
        unsafe { out_len.write(n) };
        fail!(
            LLAMETTE_STATUS_BUFFER_TOO_SMALL,
            "{what}: {n} bytes needed, capacity {capacity}"
        );
    }
    let mut at = 0usize;
    if n > 0 {
        // SAFETY: `n <= capacity` writable bytes at a non-NULL `buf`.
        let out = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), n) };
        run(&mut d.decoder, &mut |s| {
            out[at..at + s.len()].copy_from_slice(s.as_bytes());
            at += s.len();
        })?;
    } else {
        run(&mut d.decoder, &mut |_| {})?;
    }
    // SAFETY: checked non-NULL and writable.
    unsafe { out_len.write(n) };
    Ok(())
}

/// Decodes one token: writes the text it completes to `buf` (UTF-8, whole
/// characters, no NUL) and its length to `*out_len`, which may be 0 (a
/// control token, or part of a character held back).
///
/// `llamette_model_info.max_token_text_bytes` bytes are always enough. When
/// `capacity` is too small the function returns `BUFFER_TOO_SMALL`, writes
/// the length needed to `*out_len`, and leaves the decoder unchanged.
///
/// Errors: `NULL_ARGUMENT`, `INVALID_ARGUMENT`, `UNKNOWN_TOKEN` (decoder
/// unchanged), `BUFFER_TOO_SMALL`. Thread safety: one thread at a time per
/// decoder.
///
/// # Safety
///
/// `decoder` is NULL or a live handle; `buf` points to `capacity` writable
/// bytes (or is NULL with 0); `out_len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn llamette_decoder_push(
    decoder: *mut llamette_decoder,
    token: u32,
    buf: *mut c_char,
    capacity: usize,
    out_len: *mut usize,
) -> llamette_status {
    boundary(|| {
        let d = non_null_mut(decoder, "decoder")?;
        // SAFETY: a live handle used by one thread at a time (the contract).
        let d = unsafe { &mut *d };
        // SAFETY: the caller's contract on `buf`.
        unsafe {
            emit_into(d, "decoded text", buf, capacity, out_len, |dec, emit| {
                dec.push(token, emit).map_err(|e| Fail::core("token", e))
            })
        }
    })
}

/// Ends the text: writes a character still held back (incomplete, so as
/// U+FFFD, 3 bytes) to `buf`, or nothing, and its length to `*out_len`. The
/// decoder is then at the start of a new text.
///
/// Errors and buffer rules as `llamette_decoder_push` (3 bytes always suffice).
///
/// # Safety
///
/// As `llamette_decoder_push`.
#[no_mangle]
pub unsafe extern "C" fn llamette_decoder_flush(
    decoder: *mut llamette_decoder,
    buf: *mut c_char,
    capacity: usize,
    out_len: *mut usize,
) -> llamette_status {
    boundary(|| {
        let d = non_null_mut(decoder, "decoder")?;
        // SAFETY: a live handle used by one thread at a time (the contract).
        let d = unsafe { &mut *d };
        // SAFETY: the caller's contract on `buf`.
        unsafe {
            emit_into(d, "flushed text", buf, capacity, out_len, |dec, emit| {
                dec.flush(emit);
                Ok(())
            })
        }
    })
}

/// Frees a decoder (and its reference to the model). `NULL` does nothing.
///
/// # Safety
///
/// `decoder` is NULL or a live handle, not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn llamette_decoder_free(decoder: *mut llamette_decoder) {
    boundary_value((), || {
        if !decoder.is_null() {
            // SAFETY: made by `Box::into_raw` in `llamette_decoder_new`.
            drop(unsafe { Box::from_raw(decoder) });
        }
    })
}

impl core::fmt::Debug for llamette_decoder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("llamette_decoder")
            .field("pending", &self.decoder.has_pending())
            .field("vocab", &self.model.info.vocab_size)
            .finish()
    }
}
