//! Sessions sized by a memory budget, and the Q8_0 KV cache, through the C ABI.

use std::ptr;

use super::common::*;
use crate::*;

#[test]
fn params_for_a_budget_fit_it_and_run() {
    let m = default_model();
    for kv in [LLAMETTE_KV_F32, LLAMETTE_KV_F16, LLAMETTE_KV_Q8_0] {
        for budget in [120_000usize, 250_000, 1 << 20] {
            let mut p = params(0);
            let st = unsafe { llamette_session_params_for_budget(m, kv, budget, &mut p) };
            assert_eq!(st, LLAMETTE_STATUS_OK, "kv {kv} budget {budget}");
            assert_eq!(p.kv_type, kv);
            assert!(p.context_length >= 1 && p.batch >= 1);
            let mut need = 0usize;
            assert_eq!(
                unsafe { llamette_session_required_bytes(m, &p, &mut need) },
                LLAMETTE_STATUS_OK
            );
            assert!(need <= budget, "kv {kv} budget {budget}: {need}");
            let mut mem = vec![0u64; budget.div_ceil(8)];
            let mut s = ptr::null_mut();
            assert_eq!(
                unsafe { llamette_session_init(m, &p, mem.as_mut_ptr().cast(), budget, &mut s) },
                LLAMETTE_STATUS_OK
            );
            let prompt = [1u32, 403, 407];
            assert_eq!(
                unsafe { llamette_session_prefill(s, prompt.as_ptr(), prompt.len()) },
                LLAMETTE_STATUS_OK
            );
            unsafe { llamette_session_free(s) };
        }
    }
    // Too small: a typed error, the output untouched.
    let mut p = params(7);
    let st = unsafe { llamette_session_params_for_budget(m, LLAMETTE_KV_Q8_0, 1000, &mut p) };
    assert_eq!(st, LLAMETTE_STATUS_BUFFER_TOO_SMALL);
    assert_eq!(p.context_length, 7);
    // NULLs and an unknown KV type.
    assert_eq!(
        unsafe { llamette_session_params_for_budget(ptr::null(), 0, 1 << 20, &mut p) },
        LLAMETTE_STATUS_NULL_ARGUMENT
    );
    assert_eq!(
        unsafe { llamette_session_params_for_budget(m, 0, 1 << 20, ptr::null_mut()) },
        LLAMETTE_STATUS_NULL_ARGUMENT
    );
    assert_eq!(
        unsafe { llamette_session_params_for_budget(m, 99, 1 << 20, &mut p) },
        LLAMETTE_STATUS_INVALID_ARGUMENT
    );
    unsafe { llamette_model_free(m) };
}
