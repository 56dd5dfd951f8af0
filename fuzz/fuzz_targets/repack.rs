//! `repack_in_place` on a writable copy of any bytes; what it accepts
//! must still load and run.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    match llamette::repack::repack_in_place(&mut bytes) {
        Ok(_) => llamette_fuzz::model_step(&bytes),
        // Refused: the bytes must be as they were.
        Err(_) => assert_eq!(bytes, data),
    }
});
