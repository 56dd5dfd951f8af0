//! `struct_size`: every struct of the ABI is read and written only as far
//! as the caller's size covers; a size below the first version's is
//! `INVALID_ARGUMENT` before anything happens; a size larger than the
//! library knows (a newer caller) works, its unknown bytes untouched.

use std::ffi::c_void;
use std::mem::size_of;
use std::ptr;

use super::common::*;
use crate::*;

/// A struct as a newer caller would pass it: `T` and 16 more bytes of
/// fields this library does not know.
#[repr(C)]
#[derive(Clone, Copy)]
struct Newer<T> {
    inner: T,
    extra: [u8; 16],
}

impl<T: Default> Newer<T> {
    /// `T::default()` with `struct_size` set to the whole thing, the
    /// unknown bytes set to 0xAB.
    fn new() -> Newer<T> {
        let mut n = Newer {
            inner: T::default(),
            extra: [0xAB; 16],
        };
        // SAFETY: every struct of the ABI starts with its `struct_size`.
        unsafe {
            (&mut n.inner as *mut T)
                .cast::<usize>()
                .write(size_of::<Newer<T>>())
        };
        n
    }
}

/// Sets the `struct_size` of an ABI struct.
fn with_size<T>(mut v: T, size: usize) -> T {
    // SAFETY: every struct of the ABI starts with its `struct_size`.
    unsafe { (&mut v as *mut T).cast::<usize>().write(size) };
    v
}

fn assert_invalid_size(st: llamette_status, what: &str) {
    assert_eq!(st, LLAMETTE_STATUS_INVALID_ARGUMENT, "{what}");
    let e = last_error();
    assert!(e.contains("struct_size"), "{what}: {e}");
}

#[test]
fn model_info_sizes() {
    let m = default_model();
    let want = info(m);
    assert_eq!(want.struct_size, size_of::<llamette_model_info>());
    // Too small: refused, nothing written.
    let first_version = core::mem::offset_of!(llamette_model_info, owned_bytes);
    for size in [0, 8, first_version - 1] {
        let mut i = with_size(
            llamette_model_info {
                dim: 777,
                ..Default::default()
            },
            size,
        );
        assert_invalid_size(unsafe { llamette_model_get_info(m, &mut i) }, "model_info");
        assert_eq!((i.struct_size, i.dim), (size, 777));
    }
    // A newer caller: the known fields, the rest untouched.
    let mut n = Newer::<llamette_model_info>::new();
    assert_eq!(
        unsafe { llamette_model_get_info(m, &mut n.inner) },
        LLAMETTE_STATUS_OK
    );
    assert_eq!(n.inner.struct_size, size_of::<Newer<llamette_model_info>>());
    assert_eq!(n.inner.dim, want.dim);
    assert_eq!(n.inner.rope_theta, want.rope_theta);
    assert_eq!(n.extra, [0xAB; 16]);
    unsafe { llamette_model_free(m) };
}

#[test]
fn session_params_sizes() {
    let m = default_model();
    let mut need = 0usize;
    let p = params(64);
    assert_eq!(
        unsafe { llamette_session_required_bytes(m, &p, &mut need) },
        LLAMETTE_STATUS_OK
    );
    let small = with_size(p, size_of::<llamette_session_params>() - 1);
    let mut n = 0usize;
    assert_invalid_size(
        unsafe { llamette_session_required_bytes(m, &small, &mut n) },
        "required_bytes",
    );
    let mut s = ptr::null_mut();
    assert_invalid_size(
        unsafe { llamette_session_new(m, &small, &mut s) },
        "session_new",
    );
    let mut mem = vec![0u64; need.div_ceil(8)];
    assert_invalid_size(
        unsafe { llamette_session_init(m, &small, mem.as_mut_ptr().cast(), need, &mut s) },
        "session_init",
    );
    assert!(s.is_null());
    // A newer caller's params: the same session (its unknown bytes, not
    // zero here, are not read).
    let mut big = Newer::<llamette_session_params>::new();
    big.inner.context_length = 64;
    assert_eq!(
        unsafe { llamette_session_required_bytes(m, &big.inner, &mut n) },
        LLAMETTE_STATUS_OK
    );
    assert_eq!(n, need);
    assert_eq!(
        unsafe { llamette_session_new(m, &big.inner, &mut s) },
        LLAMETTE_STATUS_OK
    );
    unsafe { llamette_session_free(s) };

    // params_for_budget writes only what the size covers.
    let mut out = with_size(params(5), 4);
    assert_invalid_size(
        unsafe { llamette_session_params_for_budget(m, LLAMETTE_KV_F32, 1 << 20, &mut out) },
        "params_for_budget",
    );
    assert_eq!((out.struct_size, out.context_length), (4, 5));
    let mut big = Newer::<llamette_session_params>::new();
    assert_eq!(
        unsafe { llamette_session_params_for_budget(m, LLAMETTE_KV_F32, 1 << 20, &mut big.inner) },
        LLAMETTE_STATUS_OK
    );
    assert!(big.inner.context_length > 0);
    assert_eq!(
        big.inner.struct_size,
        size_of::<Newer<llamette_session_params>>()
    );
    assert_eq!(big.extra, [0xAB; 16]);
    unsafe { llamette_model_free(m) };
}

#[test]
fn sampler_params_sizes() {
    // The defaults: written as far as the size covers.
    let mut d = with_size(llamette_sampler_params::default(), 0);
    d.temperature = 5.0;
    assert_invalid_size(
        unsafe { llamette_sampler_params_default(&mut d) },
        "sampler_params_default",
    );
    assert_eq!(d.temperature, 5.0);
    let mut big = Newer::<llamette_sampler_params>::new();
    big.inner.temperature = 5.0;
    assert_eq!(
        unsafe { llamette_sampler_params_default(&mut big.inner) },
        LLAMETTE_STATUS_OK
    );
    assert_eq!(big.inner.temperature, 1.0);
    assert_eq!(big.inner.top_p, 0.9);
    assert_eq!(big.extra, [0xAB; 16]);
    assert_eq!(
        llamette_sampler_params {
            struct_size: big.inner.struct_size,
            ..Default::default()
        },
        big.inner
    );

    // A step with too small params changes nothing; a newer caller's
    // params sample as the known fields say.
    let m = default_model();
    let s = new_session(m, 64);
    let bos = 1u32;
    assert_eq!(
        unsafe { llamette_session_prefill(s, &bos, 1) },
        LLAMETTE_STATUS_OK
    );
    let small = with_size(greedy(), size_of::<llamette_sampler_params>() - 4);
    let mut r = llamette_step_result::default();
    assert_eq!(
        unsafe { llamette_session_step(s, &small, &mut r) },
        LLAMETTE_STATUS_INVALID_ARGUMENT
    );
    assert!(
        session_error(s).contains("struct_size"),
        "{}",
        session_error(s)
    );
    let mut g = Newer::<llamette_sampler_params>::new();
    g.inner.temperature = 0.0;
    assert_eq!(
        unsafe { llamette_session_step(s, &g.inner, &mut r) },
        LLAMETTE_STATUS_OK
    );
    let first = r.token;
    // The same as a fresh session's greedy token.
    let s2 = new_session(m, 64);
    let mut r2 = llamette_step_result::default();
    unsafe {
        assert_eq!(llamette_session_prefill(s2, &bos, 1), LLAMETTE_STATUS_OK);
        assert_eq!(
            llamette_session_step(s2, &greedy(), &mut r2),
            LLAMETTE_STATUS_OK
        );
        llamette_session_free(s2);
        llamette_session_free(s);
        llamette_model_free(m);
    }
    assert_eq!(first, r2.token);
}

unsafe extern "C" fn count_tokens(
    u: *mut c_void,
    _t: u32,
    _x: *const std::ffi::c_char,
    _l: usize,
) -> bool {
    unsafe { *(u as *mut usize) += 1 };
    true
}

#[test]
fn result_structs_are_checked_before_any_work() {
    let m = default_model();
    let s = new_session(m, 64);
    let bos = 1u32;
    let g = greedy();
    let mut pos = 0u32;
    unsafe {
        assert_eq!(llamette_session_prefill(s, &bos, 1), LLAMETTE_STATUS_OK);
        // A step result too small: nothing sampled (the next good step
        // feeds nothing: the position stays 1).
        let mut r = with_size(llamette_step_result::default(), 8);
        assert_invalid_size(llamette_session_step(s, &g, &mut r), "step_result");
        assert_eq!(r.struct_size, 8);
        // A generate result too small: the callback never runs.
        let mut calls = 0usize;
        let mut gr = with_size(llamette_generate_result::default(), 12);
        assert_invalid_size(
            llamette_session_generate(
                s,
                &g,
                5,
                Some(count_tokens),
                &mut calls as *mut usize as *mut c_void,
                &mut gr,
            ),
            "generate_result",
        );
        assert_eq!(calls, 0);
        assert_eq!(llamette_session_position(s, &mut pos), LLAMETTE_STATUS_OK);
        assert_eq!(pos, 1);
        // Newer callers' results: the known fields, the rest untouched.
        let mut r = Newer::<llamette_step_result>::new();
        assert_eq!(
            llamette_session_step(s, &g, &mut r.inner),
            LLAMETTE_STATUS_OK
        );
        assert_eq!(r.extra, [0xAB; 16]);
        assert!(!r.inner.text.is_null());
        let mut gr = Newer::<llamette_generate_result>::new();
        assert_eq!(
            llamette_session_generate(
                s,
                &g,
                5,
                Some(count_tokens),
                &mut calls as *mut usize as *mut c_void,
                &mut gr.inner,
            ),
            LLAMETTE_STATUS_OK
        );
        assert_eq!((gr.inner.n_tokens, calls), (5, 5));
        assert_eq!(gr.extra, [0xAB; 16]);
        // Generate options too small.
        let o = with_size(llamette_generate_options::default(), 8);
        let mut gr = llamette_generate_result::default();
        assert_invalid_size(
            llamette_session_generate_ex(
                s,
                &g,
                &o,
                Some(count_tokens),
                &mut calls as *mut usize as *mut c_void,
                &mut gr,
            ),
            "generate_options",
        );
        assert_eq!(calls, 5);
        llamette_session_free(s);
        llamette_model_free(m);
    }
}

unsafe extern "C" fn inline_for(_u: *mut c_void, n: u32, task: llamette_task_fn, ctx: *mut c_void) {
    for i in 0..n {
        unsafe { task.unwrap()(ctx, i) };
    }
}

#[test]
fn parallel_and_chat_struct_sizes() {
    let m = default_model();
    let s = new_session(m, 256);
    let par = with_size(
        llamette_parallel {
            n_threads: 2,
            parallel_for: Some(inline_for),
            ..Default::default()
        },
        size_of::<llamette_parallel>() - 1,
    );
    unsafe {
        assert_invalid_size(llamette_session_set_parallel(s, &par), "parallel");
        let mut big = Newer::<llamette_parallel>::new();
        big.inner.n_threads = 2;
        big.inner.parallel_for = Some(inline_for);
        assert_eq!(
            llamette_session_set_parallel(s, &big.inner),
            LLAMETTE_STATUS_OK
        );
    }
    let (c, _) = run_greedy(s, 1);
    let mut want = greedy_reference();
    want.pop();
    assert_eq!(c.text, want);

    // Chat: options below their first version, a prefill result too small
    // (checked before anything is fed).
    let text = "Hello";
    let dialog = [llamette_chat_message {
        role: LLAMETTE_ROLE_USER,
        content: text.as_ptr().cast(),
        content_len: text.len(),
        ..Default::default()
    }];
    let mut n = 0usize;
    let small = with_size(llamette_chat_options::default(), 8);
    let mut pos = 0u32;
    unsafe {
        assert_eq!(llamette_session_reset(s), LLAMETTE_STATUS_OK);
        assert_invalid_size(
            llamette_chat_encode(m, dialog.as_ptr(), 1, &small, ptr::null_mut(), 0, &mut n),
            "chat_options",
        );
        let mut pr = with_size(llamette_chat_prefill_result::default(), 8);
        assert_invalid_size(
            llamette_chat_prefill(s, dialog.as_ptr(), 1, ptr::null(), &mut pr),
            "chat_prefill_result",
        );
        assert_eq!(llamette_session_position(s, &mut pos), LLAMETTE_STATUS_OK);
        assert_eq!(pos, 0, "nothing fed");
        let mut pr = Newer::<llamette_chat_prefill_result>::new();
        assert_eq!(
            llamette_chat_prefill(s, dialog.as_ptr(), 1, ptr::null(), &mut pr.inner),
            LLAMETTE_STATUS_OK
        );
        assert!(pr.inner.fed > 0);
        assert_eq!(pr.extra, [0xAB; 16]);
        llamette_session_free(s);
        llamette_model_free(m);
    }
}

/// The sizes and offsets C sees (bindings/c and the C# layout test check
/// the header against the compiler); here: every struct starts with its
/// size, and none has a field a caller could not cover.
#[test]
fn every_struct_starts_with_its_size() {
    fn check<T: crate::sized::SizedStruct>() {
        let d = T::default();
        // SAFETY: every struct of the ABI starts with its `struct_size`.
        let size = unsafe { (&d as *const T).cast::<usize>().read() };
        assert_eq!(size, size_of::<T>(), "{}", T::NAME);
        assert!(T::MIN_SIZE >= size_of::<usize>() && T::MIN_SIZE <= size_of::<T>());
    }
    check::<llamette_model_info>();
    check::<llamette_session_params>();
    check::<llamette_sampler_params>();
    check::<llamette_step_result>();
    check::<llamette_generate_result>();
    check::<llamette_generate_options>();
    check::<llamette_parallel>();
    check::<llamette_chat_message>();
    check::<llamette_chat_options>();
    check::<llamette_chat_prefill_result>();
}

/// `llamette_sampler_params_validate`: the checks of the sampling
/// functions, the field named first in the message.
#[test]
fn sampler_params_validate_names_the_field() {
    let ok = llamette_sampler_params::default();
    assert_eq!(
        unsafe { llamette_sampler_params_validate(&ok) },
        LLAMETTE_STATUS_OK
    );
    type Set = fn(&mut llamette_sampler_params);
    let cases: [(&str, Set); 9] = [
        ("temperature", |p| p.temperature = f32::NAN),
        ("temperature", |p| p.temperature = -0.5),
        ("temperature", |p| p.temperature = f32::INFINITY),
        ("top_p", |p| p.top_p = 1.5),
        ("top_p", |p| p.top_p = f32::NAN),
        ("min_p", |p| p.min_p = 2.0),
        ("min_p", |p| p.min_p = -0.1),
        ("repeat_penalty", |p| p.repeat_penalty = 0.0),
        ("repeat_penalty", |p| p.repeat_penalty = -1.0),
    ];
    for (field, set) in cases {
        let mut p = llamette_sampler_params::default();
        set(&mut p);
        assert_eq!(
            unsafe { llamette_sampler_params_validate(&p) },
            LLAMETTE_STATUS_INVALID_ARGUMENT,
            "{field}"
        );
        let e = last_error();
        assert!(e.starts_with(&format!("invalid {field} ")), "{field}: {e}");
    }
    assert_eq!(
        unsafe { llamette_sampler_params_validate(ptr::null()) },
        LLAMETTE_STATUS_NULL_ARGUMENT
    );
    let small = with_size(ok, 4);
    assert_invalid_size(
        unsafe { llamette_sampler_params_validate(&small) },
        "validate",
    );
}
