//! A session made on caller memory allocates nothing: not at init, not in
//! prefill, steps or generate (a counting global allocator proves it).

use super::common::*;
use crate::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ffi::c_void;
use std::ptr;

/// Counts the allocations of each thread (the unit tests of this binary run
/// concurrently; only the test's own thread matters).
struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
    /// Bytes allocated minus bytes freed by this thread.
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

/// Bytes this thread allocated and has not freed (what another thread
/// frees is counted there).
pub(super) fn live_bytes() -> isize {
    LIVE.with(Cell::get)
}

fn count(bytes: isize) {
    // `try_with`: no counting while the thread-locals are being torn down.
    if bytes > 0 {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
    }
    let _ = LIVE.try_with(|a| a.set(a.get() + bytes));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l.size() as isize);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        count(-(l.size() as isize));
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count(l.size() as isize);
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        let _ = LIVE.try_with(|a| a.set(a.get() + n as isize - l.size() as isize));
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn session_on_caller_memory_allocates_nothing() {
    let m = default_model();
    let p = params(256);
    let mut need = 0;
    assert_eq!(
        unsafe { llamette_session_required_bytes(m, &p, &mut need) },
        LLAMETTE_STATUS_OK
    );
    let mut mem = vec![0u64; need.div_ceil(8)];
    let g = greedy();
    let prompt = "Once upon a time";
    let mut ids = vec![0u32; 6 * (prompt.len() + 1)]; // enough to encode in place
    let mut c = Collected::default();
    c.tokens.reserve(1024);
    c.text.reserve(16384);
    let mut r = llamette_step_result {
        token: 0,
        is_end: false,
        text: ptr::null(),
        text_len: 0,
        ..Default::default()
    };
    let mut gr = llamette_generate_result::default();

    let before = allocs();
    let mut s = ptr::null_mut();
    let mut n = 0;
    unsafe {
        assert_eq!(
            llamette_session_init(m, &p, mem.as_mut_ptr().cast(), need, &mut s),
            LLAMETTE_STATUS_OK
        );
        let cap = ids.len();
        assert_eq!(
            llamette_model_tokenize(
                m,
                prompt.as_ptr().cast(),
                prompt.len(),
                true,
                ids.as_mut_ptr(),
                cap,
                &mut n
            ),
            LLAMETTE_STATUS_OK
        );
        assert_eq!(
            llamette_session_prefill(s, ids.as_ptr(), n),
            LLAMETTE_STATUS_OK
        );
        for _ in 0..100 {
            assert_eq!(llamette_session_step(s, &g, &mut r), LLAMETTE_STATUS_OK);
        }
        assert_eq!(
            llamette_session_generate(
                s,
                &g,
                100,
                Some(collect),
                &mut c as *mut Collected as *mut c_void,
                &mut gr
            ),
            LLAMETTE_STATUS_OK
        );
        assert_eq!(llamette_session_reset(s), LLAMETTE_STATUS_OK);
        llamette_session_free(s);
    }
    let after = allocs();
    assert_eq!(
        after - before,
        0,
        "allocations during init, tokenize, prefill, 100 steps, generate 100, reset, free"
    );
    assert_eq!(gr.n_tokens, 100);
    // The counter works: the convenience constructor does allocate.
    let before = allocs();
    let s = new_session(m, 256);
    assert!(allocs() > before);
    unsafe { llamette_session_free(s) };
    drop(mem);
    unsafe { llamette_model_free(m) };
}
