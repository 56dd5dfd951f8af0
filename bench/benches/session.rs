//! Criterion benchmarks of whole steps: one decode step (a token at a
//! position deep in the context) and a 128-token prefill, on
//! `$LLAMETTE_BENCH_MODEL` (any GGUF or llama2.c model, e.g. one written by
//! `llamette synth --shape tinyllama-1.1b --type q4_0`) or, by default, the
//! test model ../shared/models/stories260K.gguf.
//!
//! `cargo bench -p llamette-bench --bench session`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use llamette::{Model, Session, SessionParams};

fn model_bytes() -> (String, Vec<u8>) {
    let path = std::env::var("LLAMETTE_BENCH_MODEL").unwrap_or_else(|_| {
        format!(
            "{}/../../shared/models/stories260K.gguf",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (path, bytes)
}

fn session_steps(c: &mut Criterion) {
    let (path, bytes) = model_bytes();
    let model = Model::load(&bytes).unwrap();
    let name = std::path::Path::new(&path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let vocab = model.config.vocab_size as u32;
    let prompt: Vec<u32> = (0..128u32).map(|i| 3 + (i * 7919) % (vocab - 3)).collect();
    let params = SessionParams {
        context: 256.min(model.config.seq_len),
        batch: 128,
        ..Default::default()
    };
    let mut buf = vec![
        0u64;
        Session::required_bytes(&model, &params)
            .unwrap()
            .div_ceil(8)
    ];
    let mut s = Session::new(&model, params, bytemuck::cast_slice_mut(&mut buf)).unwrap();

    let mut g = c.benchmark_group(format!("session/{name}"));
    g.measurement_time(Duration::from_secs(5));
    g.sample_size(10);

    // A decode step at position 128: feed one token after a 128-token prompt.
    s.feed(&prompt).unwrap();
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode-step@128", |b| {
        b.iter(|| {
            s.feed(black_box(&[42])).unwrap();
            // Step back so every iteration runs at the same position.
            s.truncate(128);
        })
    });

    g.throughput(Throughput::Elements(prompt.len() as u64));
    g.bench_function("prefill-128", |b| {
        b.iter(|| {
            s.reset();
            s.feed(black_box(&prompt)).unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, session_steps);
criterion_main!(benches);
