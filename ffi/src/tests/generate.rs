//! Generation through the C ABI reproduces llama2.c's run.c, on any number
//! of threads and sessions.

use super::common::*;
use crate::*;
use std::ffi::c_void;
use std::ptr;

#[test]
fn greedy_text_matches_run_c() {
    let m = default_model();
    let i = info(m);
    let s = new_session(m, 256);
    let (c, r) = run_greedy(s, i.bos_token);
    assert_eq!(r.stop_reason, LLAMETTE_STOP_CONTEXT_FULL);
    assert_eq!(r.n_tokens, 256);
    let mut want = greedy_reference();
    assert_eq!(want.pop(), Some(b'\n'), "run.c ends with a newline");
    assert_eq!(
        String::from_utf8_lossy(&c.text),
        String::from_utf8_lossy(&want)
    );
    let mut pos = 0;
    assert_eq!(
        unsafe { llamette_session_position(s, &mut pos) },
        LLAMETTE_STATUS_OK
    );
    assert_eq!(pos, 256);
    unsafe {
        llamette_session_free(s);
        llamette_model_free(m);
    }
}

#[test]
fn sampled_text_with_prompt_matches_run_c() {
    // run.c -t 0.8 -p 0.9 -s 42 -n 200 -i "Tom and his dog"
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata/stories260K.t0.8-p0.9-s42.tom-and-his-dog.txt"
    );
    let want = std::fs::read(p).unwrap();
    let m = default_model();
    let prompt = "Tom and his dog";
    let mut ids = [0u32; 64];
    let mut n = 0;
    let st = unsafe {
        llamette_model_tokenize(
            m,
            prompt.as_ptr().cast(),
            prompt.len(),
            true,
            ids.as_mut_ptr(),
            64,
            &mut n,
        )
    };
    assert_eq!(st, LLAMETTE_STATUS_OK);
    let s = new_session(m, 200);
    assert_eq!(
        unsafe { llamette_session_prefill(s, ids.as_ptr(), n) },
        LLAMETTE_STATUS_OK
    );
    let mut sp = greedy();
    sp.temperature = 0.8;
    sp.top_p = 0.9;
    sp.seed = 42;
    let mut c = Collected::default();
    let mut r = llamette_generate_result::default();
    let st = unsafe {
        llamette_session_generate(
            s,
            &sp,
            0,
            Some(collect),
            &mut c as *mut Collected as *mut c_void,
            &mut r,
        )
    };
    assert_eq!(st, LLAMETTE_STATUS_OK);
    // run.c echoes the prompt, then the generated text, then a newline.
    let mut got = prompt.as_bytes().to_vec();
    got.extend_from_slice(&c.text);
    got.push(b'\n');
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
    unsafe {
        llamette_session_free(s);
        llamette_model_free(m);
    }
}

/// The greedy tokens of one session run on `setup`'s parallelism.
fn greedy_tokens(m: *const llamette_model, setup: impl FnOnce(*mut llamette_session)) -> Vec<u32> {
    let s = new_session(m, 256);
    setup(s);
    let (c, _) = run_greedy(s, 1);
    unsafe { llamette_session_free(s) };
    c.tokens
}

struct Ptr<T>(*mut T);
unsafe impl<T> Send for Ptr<T> {}
unsafe impl<T> Sync for Ptr<T> {}

#[test]
fn eight_threads_with_a_session_each_match_one_thread() {
    let m = default_model();
    let one = greedy_tokens(m, |_| {});
    assert_eq!(one.len(), 256);
    let shared = Ptr(m);
    let results: Vec<Vec<u32>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let shared = &shared;
                scope.spawn(move || {
                    let m = shared.0;
                    if i % 2 == 0 {
                        // A session in caller memory.
                        let p = params(256);
                        let mut need = 0;
                        assert_eq!(
                            unsafe { llamette_session_required_bytes(m, &p, &mut need) },
                            LLAMETTE_STATUS_OK
                        );
                        let mut mem = vec![0u64; need.div_ceil(8)];
                        let mut s = ptr::null_mut();
                        let st = unsafe {
                            llamette_session_init(m, &p, mem.as_mut_ptr().cast(), need, &mut s)
                        };
                        assert_eq!(st, LLAMETTE_STATUS_OK);
                        let (c, _) = run_greedy(s, 1);
                        unsafe { llamette_session_free(s) };
                        drop(mem);
                        c.tokens
                    } else {
                        greedy_tokens(m, |_| {})
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &results {
        assert_eq!(r, &one);
    }
    unsafe { llamette_model_free(m) };
}

/// A host pool: each region's tasks split between the calling thread and
/// one scoped thread.
unsafe extern "C" fn two_thread_for(
    _user: *mut c_void,
    n: u32,
    task: llamette_task_fn,
    ctx: *mut c_void,
) {
    let task = task.unwrap();
    let ctx = Ptr(ctx);
    std::thread::scope(|s| {
        let ctx = &ctx;
        s.spawn(move || {
            for i in (1..n).step_by(2) {
                unsafe { task(ctx.0, i) };
            }
        });
        for i in (0..n).step_by(2) {
            unsafe { task(ctx.0, i) };
        }
    });
}

#[test]
fn thread_count_and_host_pool_do_not_change_tokens() {
    let m = default_model();
    let one = greedy_tokens(m, |_| {});
    for n in [0, 2, 3] {
        let t = greedy_tokens(m, |s| {
            assert_eq!(
                unsafe { llamette_session_set_threads(s, n) },
                LLAMETTE_STATUS_OK
            )
        });
        assert_eq!(t, one, "{n} threads");
    }
    let par = llamette_parallel {
        user_data: ptr::null_mut(),
        n_threads: 2,
        parallel_for: Some(two_thread_for),
        ..Default::default()
    };
    let t = greedy_tokens(m, |s| {
        assert_eq!(
            unsafe { llamette_session_set_parallel(s, &par) },
            LLAMETTE_STATUS_OK
        )
    });
    assert_eq!(t, one, "host pool");
    unsafe { llamette_model_free(m) };
}

#[test]
fn steps_equal_generate_and_seeded_sampling_repeats() {
    let m = default_model();
    let one = greedy_tokens(m, |_| {});
    let s = new_session(m, 256);
    let bos = 1u32;
    assert_eq!(
        unsafe { llamette_session_prefill(s, &bos, 1) },
        LLAMETTE_STATUS_OK
    );
    let g = greedy();
    let mut toks = Vec::new();
    let mut r = llamette_step_result {
        token: 0,
        is_end: false,
        text: ptr::null(),
        text_len: 0,
        ..Default::default()
    };
    while unsafe { llamette_session_step(s, &g, &mut r) } == LLAMETTE_STATUS_OK {
        toks.push(r.token);
    }
    assert_eq!(toks, one);
    // The same seed after a reset gives the same draw; the generator state
    // carries on between steps with the same seed.
    let mut sp = g;
    sp.temperature = 1.0;
    sp.seed = 7;
    let mut runs = Vec::new();
    for _ in 0..2 {
        assert_eq!(unsafe { llamette_session_reset(s) }, LLAMETTE_STATUS_OK);
        assert_eq!(
            unsafe { llamette_session_prefill(s, &bos, 1) },
            LLAMETTE_STATUS_OK
        );
        let mut t = Vec::new();
        for _ in 0..30 {
            assert_eq!(
                unsafe { llamette_session_step(s, &sp, &mut r) },
                LLAMETTE_STATUS_OK
            );
            t.push(r.token);
        }
        runs.push(t);
    }
    assert_eq!(runs[0], runs[1]);
    unsafe {
        llamette_session_free(s);
        llamette_model_free(m);
    }
}
