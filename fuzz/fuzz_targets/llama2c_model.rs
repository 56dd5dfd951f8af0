//! llama2.c checkpoint (version 0 fp32, version 2 `ak42` int8) load + one step.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // GGUF is the other target's.
    if data.starts_with(b"GGUF") {
        return;
    }
    llamette_fuzz::model_step(data);
});
