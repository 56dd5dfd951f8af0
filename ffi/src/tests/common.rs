//! Helpers shared by the integration tests of the C ABI.

use std::ffi::{c_char, c_void, CStr};
use std::ptr;

use crate::*;

/// The reference text run.c prints for stories260K, `-t 0 -n 256`.
pub fn greedy_reference() -> Vec<u8> {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata/stories260K.greedy.txt"
    );
    std::fs::read(p).expect("../shared/testdata beside the checkout")
}

pub fn default_model() -> *mut llamette_model {
    let mut m = ptr::null_mut();
    assert_eq!(
        unsafe { llamette_model_open_default(&mut m) },
        LLAMETTE_STATUS_OK
    );
    assert!(!m.is_null());
    m
}

pub fn info(m: *const llamette_model) -> llamette_model_info {
    let mut i = llamette_model_info::default();
    assert_eq!(
        unsafe { llamette_model_get_info(m, &mut i) },
        LLAMETTE_STATUS_OK
    );
    i
}

pub fn greedy() -> llamette_sampler_params {
    // Only the size set: the library fills in the rest.
    let mut p = std::mem::MaybeUninit::<llamette_sampler_params>::zeroed();
    unsafe {
        p.as_mut_ptr()
            .cast::<usize>()
            .write(std::mem::size_of::<llamette_sampler_params>())
    };
    assert_eq!(
        unsafe { llamette_sampler_params_default(p.as_mut_ptr()) },
        LLAMETTE_STATUS_OK
    );
    let mut p = unsafe { p.assume_init() };
    assert_eq!(p, llamette_sampler_params::default());
    p.temperature = 0.0;
    p
}

pub fn params(context: u32) -> llamette_session_params {
    llamette_session_params {
        context_length: context,
        kv_type: LLAMETTE_KV_F32,
        batch: 0,
        ..Default::default()
    }
}

pub fn new_session(m: *const llamette_model, context: u32) -> *mut llamette_session {
    let mut s = ptr::null_mut();
    let p = params(context);
    assert_eq!(
        unsafe { llamette_session_new(m, &p, &mut s) },
        LLAMETTE_STATUS_OK,
        "{}",
        last_error()
    );
    s
}

pub fn last_error() -> String {
    unsafe { CStr::from_ptr(llamette_last_error()) }
        .to_string_lossy()
        .into_owned()
}

pub fn session_error(s: *const llamette_session) -> String {
    unsafe { CStr::from_ptr(llamette_session_last_error(s)) }
        .to_string_lossy()
        .into_owned()
}

/// Tokens and text collected by `collect`.
#[derive(Default, Debug)]
pub struct Collected {
    pub tokens: Vec<u32>,
    pub text: Vec<u8>,
}

pub unsafe extern "C" fn collect(
    user: *mut c_void,
    token: u32,
    text: *const c_char,
    len: usize,
) -> bool {
    let c = unsafe { &mut *(user as *mut Collected) };
    c.tokens.push(token);
    c.text
        .extend_from_slice(unsafe { std::slice::from_raw_parts(text.cast::<u8>(), len) });
    assert_eq!(unsafe { *text.add(len) }, 0, "text is NUL-terminated");
    true
}

/// run.c's greedy run: prefill BOS, generate to the end of a 256 context.
pub fn run_greedy(s: *mut llamette_session, bos: u32) -> (Collected, llamette_generate_result) {
    assert_eq!(
        unsafe { llamette_session_prefill(s, &bos, 1) },
        LLAMETTE_STATUS_OK
    );
    let mut c = Collected::default();
    let mut r = llamette_generate_result::default();
    let p = greedy();
    let st = unsafe {
        llamette_session_generate(
            s,
            &p,
            0,
            Some(collect),
            &mut c as *mut Collected as *mut c_void,
            &mut r,
        )
    };
    assert_eq!(st, LLAMETTE_STATUS_OK, "{}", session_error(s));
    (c, r)
}
