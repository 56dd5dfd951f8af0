//! `llamette_repack_in_place`: argument checks, untouched bytes on error,
//! and a model that opens afterwards.

use super::common::*;
use crate::*;
use std::ptr;

fn shared_file(name: &str) -> Vec<u8> {
    let p = format!("{}/../../shared/models/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(p).expect("../shared/models beside the checkout")
}

#[test]
fn repack_checks_arguments_and_leaves_bad_files_alone() {
    let mut n = 7usize;
    assert_eq!(
        unsafe { llamette_repack_in_place(ptr::null_mut(), 10, &mut n) },
        LLAMETTE_STATUS_NULL_ARGUMENT
    );
    assert_eq!(n, 7, "the count is untouched on error");
    let mut b = [0u8; 4];
    assert_eq!(
        unsafe { llamette_repack_in_place(b.as_mut_ptr(), usize::MAX, &mut n) },
        LLAMETTE_STATUS_INVALID_ARGUMENT
    );
    // A GGUF cut short: an error, and not one byte changed.
    let file = shared_file("stories260K.gguf");
    let mut cut = file[..file.len() / 2].to_vec();
    let before = cut.clone();
    let st = unsafe { llamette_repack_in_place(cut.as_mut_ptr(), cut.len(), &mut n) };
    assert_eq!(st, LLAMETTE_STATUS_BAD_FILE, "{}", last_error());
    assert!(cut == before);
    assert_eq!(n, 7);
}

#[test]
fn repacked_memory_opens_and_generates() {
    // stories260K.gguf is F32: nothing to interleave, and the same text.
    let mut file = shared_file("stories260K.gguf");
    let mut n = 7usize;
    let st = unsafe { llamette_repack_in_place(file.as_mut_ptr(), file.len(), &mut n) };
    assert_eq!(st, LLAMETTE_STATUS_OK, "{}", last_error());
    assert_eq!(n, 0);
    let mut m = ptr::null_mut();
    let st =
        unsafe { llamette_model_open_memory(file.as_ptr(), file.len(), ptr::null(), 0, &mut m) };
    assert_eq!(st, LLAMETTE_STATUS_OK, "{}", last_error());
    let i = info(m);
    let s = new_session(m, 256);
    let (c, _) = run_greedy(s, i.bos_token);
    let mut want = greedy_reference();
    want.pop();
    assert_eq!(c.text, want);
    assert!(llamette_kernels_interleaved() <= 1);
    unsafe {
        llamette_session_free(s);
        llamette_model_free(m);
    }
}
