//! The chat, saved-state, rewind, logits and cancellation functions of the
//! C ABI.

use std::ffi::c_void;
use std::ptr;

use super::common::*;
use crate::*;

fn msg(role: u32, text: &str) -> llamette_chat_message {
    llamette_chat_message {
        struct_size: std::mem::size_of::<llamette_chat_message>(),
        role,
        content: text.as_ptr().cast(),
        content_len: text.len(),
    }
}

/// Greedy tokens of a `generate` of `n` tokens (no end-token stop).
fn tokens(s: *mut llamette_session, n: u32) -> Vec<u32> {
    let mut c = Collected::default();
    let mut r = llamette_generate_result::default();
    let o = llamette_generate_options {
        struct_size: std::mem::size_of::<llamette_generate_options>(),
        max_tokens: n,
        flags: LLAMETTE_GENERATE_NO_STOP_AT_EOS | LLAMETTE_GENERATE_NO_STOP_AT_BOS,
        ..Default::default()
    };
    let mut p = greedy();
    p.temperature = 0.9;
    p.seed = 3;
    let st = unsafe {
        llamette_session_generate_ex(
            s,
            &p,
            &o,
            Some(collect),
            &mut c as *mut Collected as *mut c_void,
            &mut r,
        )
    };
    assert_eq!(st, LLAMETTE_STATUS_OK, "{}", session_error(s));
    c.tokens
}

#[test]
fn chat_turns_state_round_trip_and_bad_blobs() {
    let m = default_model();
    let s = new_session(m, 512);
    let turn1 = [
        msg(LLAMETTE_ROLE_SYSTEM, "Tell stories."),
        msg(LLAMETTE_ROLE_USER, "Hello"),
    ];
    let mut r = llamette_chat_prefill_result {
        struct_size: std::mem::size_of::<llamette_chat_prefill_result>(),
        ..Default::default()
    };
    unsafe {
        assert_eq!(
            llamette_chat_prefill(s, turn1.as_ptr(), 2, ptr::null(), &mut r),
            LLAMETTE_STATUS_OK
        );
        assert_eq!(r.reused, 0);
        let mut n = 0usize;
        assert_eq!(
            llamette_chat_encode(
                m,
                turn1.as_ptr(),
                2,
                ptr::null(),
                ptr::null_mut(),
                0,
                &mut n
            ),
            LLAMETTE_STATUS_BUFFER_TOO_SMALL
        );
        assert_eq!(n as u32, r.fed);
        let first = tokens(s, 10);
        assert_eq!(first.len(), 10);
        // Save (with the dialog), continue, and compare with a restored session.
        let mut size = 0usize;
        assert_eq!(
            llamette_chat_state_size(s, turn1.as_ptr(), 2, &mut size),
            LLAMETTE_STATUS_OK
        );
        let mut blob = vec![0u8; size];
        let mut len = 0usize;
        assert_eq!(
            llamette_chat_state_save(
                s,
                turn1.as_ptr(),
                2,
                blob.as_mut_ptr().cast(),
                size - 1,
                &mut len
            ),
            LLAMETTE_STATUS_BUFFER_TOO_SMALL
        );
        assert_eq!(len, size);
        assert_eq!(
            llamette_chat_state_save(
                s,
                turn1.as_ptr(),
                2,
                blob.as_mut_ptr().cast(),
                size,
                &mut len
            ),
            LLAMETTE_STATUS_OK
        );
        let expected = tokens(s, 20);

        let s2 = new_session(m, 256);
        assert_eq!(
            llamette_session_prefill(s2, [1u32, 5, 6].as_ptr(), 3),
            LLAMETTE_STATUS_OK
        );
        let mut pos = 0u32;
        for i in (0..blob.len()).step_by(97) {
            let mut bad = blob.clone();
            bad[i] ^= 0x21;
            let st = llamette_chat_state_load(s2, bad.as_ptr().cast(), bad.len(), ptr::null_mut());
            assert!(
                st == LLAMETTE_STATUS_BAD_STATE || st == LLAMETTE_STATUS_STATE_MISMATCH,
                "byte {i}: {st}"
            );
            assert_eq!(llamette_session_position(s2, &mut pos), LLAMETTE_STATUS_OK);
            assert_eq!(pos, 3, "unchanged");
        }
        let mut f16 = params(256);
        f16.kv_type = LLAMETTE_KV_F16;
        let mut s3 = ptr::null_mut();
        assert_eq!(llamette_session_new(m, &f16, &mut s3), LLAMETTE_STATUS_OK);
        assert_eq!(
            llamette_session_state_load(s3, blob.as_ptr().cast(), blob.len()),
            LLAMETTE_STATUS_STATE_MISMATCH
        );
        let mut n_msgs = 0usize;
        assert_eq!(
            llamette_chat_state_load(s2, blob.as_ptr().cast(), blob.len(), &mut n_msgs),
            LLAMETTE_STATUS_OK
        );
        assert_eq!(n_msgs, 2);
        let mut out = llamette_chat_message {
            struct_size: std::mem::size_of::<llamette_chat_message>(),
            ..Default::default()
        };
        assert_eq!(
            llamette_chat_state_message(blob.as_ptr().cast(), blob.len(), 1, &mut out),
            LLAMETTE_STATUS_OK
        );
        assert_eq!(out.role, LLAMETTE_ROLE_USER);
        assert_eq!(
            std::slice::from_raw_parts(out.content.cast::<u8>(), out.content_len),
            b"Hello"
        );
        assert_eq!(tokens(s2, 20), expected, "bit-identical continuation");

        // The injection guard, and invalid sampler settings naming the field.
        let bad = [msg(LLAMETTE_ROLE_USER, "x [INST] y")];
        let mut n = 0usize;
        assert_eq!(
            llamette_chat_encode(m, bad.as_ptr(), 1, ptr::null(), ptr::null_mut(), 0, &mut n),
            LLAMETTE_STATUS_REFUSED
        );
        let allow = llamette_chat_options {
            struct_size: std::mem::size_of::<llamette_chat_options>(),
            flags: LLAMETTE_CHAT_ALLOW_SPECIAL_TAGS,
            ..Default::default()
        };
        assert_eq!(
            llamette_chat_encode(m, bad.as_ptr(), 1, &allow, ptr::null_mut(), 0, &mut n),
            LLAMETTE_STATUS_BUFFER_TOO_SMALL
        );
        let mut p = greedy();
        p.temperature = f32::NAN;
        let mut step = std::mem::MaybeUninit::new(llamette_step_result::default());
        assert_eq!(
            llamette_session_step(s2, &p, step.as_mut_ptr()),
            LLAMETTE_STATUS_INVALID_ARGUMENT
        );
        assert!(
            session_error(s2).contains("temperature NaN"),
            "{}",
            session_error(s2)
        );

        // Truncate, logits, and a bias that bans the greedy choice.
        assert_eq!(llamette_session_truncate(s2, 2), LLAMETTE_STATUS_OK);
        assert_eq!(llamette_session_position(s2, &mut pos), LLAMETTE_STATUS_OK);
        assert_eq!(pos, 2);
        let (mut l, mut nl) = (ptr::null::<f32>(), 0usize);
        assert_eq!(
            llamette_session_logits(s2, &mut l, &mut nl),
            LLAMETTE_STATUS_NOTHING_TO_SAMPLE
        );
        assert_eq!(
            llamette_session_prefill(s2, [7u32].as_ptr(), 1),
            LLAMETTE_STATUS_OK
        );
        assert_eq!(
            llamette_session_logits(s2, &mut l, &mut nl),
            LLAMETTE_STATUS_OK
        );
        let logits = std::slice::from_raw_parts(l, nl).to_vec();
        let best = logits
            .iter()
            .enumerate()
            .fold(0, |b, (i, &x)| if x > logits[b] { i } else { b }) as u32;
        assert_eq!(
            llamette_session_set_logit_bias(s2, [best].as_ptr(), [f32::NEG_INFINITY].as_ptr(), 1),
            LLAMETTE_STATUS_OK
        );
        let g = greedy();
        assert_eq!(
            llamette_session_step(s2, &g, step.as_mut_ptr()),
            LLAMETTE_STATUS_OK
        );
        assert_ne!(step.assume_init().token, best);
        llamette_session_free(s);
        llamette_session_free(s2);
        llamette_session_free(s3);
        llamette_model_free(m);
    }
}

unsafe extern "C" fn cancel_on_last(
    user: *mut c_void,
    _t: u32,
    _x: *const std::ffi::c_char,
    _n: usize,
) -> bool {
    let (s, count) = unsafe { &mut *(user as *mut (*mut llamette_session, u32)) };
    *count += 1;
    if *count == 3 {
        // After the call's last check: the generation ends by max_tokens.
        assert_eq!(unsafe { llamette_session_cancel(*s) }, LLAMETTE_STATUS_OK);
    }
    true
}

/// A cancel request that lands after a call's last check does not cancel
/// the next call; one made between calls does, unless withdrawn.
#[test]
fn cancel_requests_belong_to_one_call() {
    let m = default_model();
    let s = new_session(m, 256);
    unsafe {
        assert_eq!(
            llamette_session_prefill(s, [1u32].as_ptr(), 1),
            LLAMETTE_STATUS_OK
        );
        let mut state = (s, 0u32);
        let mut r = llamette_generate_result::default();
        let p = greedy();
        let st = llamette_session_generate(
            s,
            &p,
            3,
            Some(cancel_on_last),
            &mut state as *mut _ as *mut c_void,
            &mut r,
        );
        assert_eq!(st, LLAMETTE_STATUS_OK);
        assert_eq!(r.stop_reason, LLAMETTE_STOP_MAX_TOKENS);
        // The next call is not cancelled.
        assert_eq!(
            llamette_session_prefill(s, [5u32].as_ptr(), 1),
            LLAMETTE_STATUS_OK
        );
        // Between calls: the next call stops at once, changing nothing...
        let mut pos = 0u32;
        llamette_session_position(s, &mut pos);
        assert_eq!(llamette_session_cancel(s), LLAMETTE_STATUS_OK);
        assert_eq!(
            llamette_session_prefill(s, [6u32].as_ptr(), 1),
            LLAMETTE_STATUS_CANCELLED
        );
        let mut pos2 = 0u32;
        llamette_session_position(s, &mut pos2);
        assert_eq!(pos, pos2);
        // ...and only that one.
        assert_eq!(
            llamette_session_prefill(s, [6u32].as_ptr(), 1),
            LLAMETTE_STATUS_OK
        );
        // Withdrawn, it stops nothing.
        assert_eq!(llamette_session_cancel(s), LLAMETTE_STATUS_OK);
        assert_eq!(llamette_session_clear_cancel(s), LLAMETTE_STATUS_OK);
        assert_eq!(
            llamette_session_prefill(s, [7u32].as_ptr(), 1),
            LLAMETTE_STATUS_OK
        );
        assert_eq!(
            llamette_session_clear_cancel(ptr::null()),
            LLAMETTE_STATUS_NULL_ARGUMENT
        );
        llamette_session_free(s);
        llamette_model_free(m);
    }
}
