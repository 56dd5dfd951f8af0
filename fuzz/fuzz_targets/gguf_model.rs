//! GGUF parse + `Model::load` + one step (and the file's vocabulary).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = llamette::format::gguf::Gguf::parse(data);
    llamette_fuzz::model_step(data);
});
