//! A batch's attention runs in parallel over kv heads when there is enough
//! of it: the results stay bit-identical to one thread's.

use llamette::parallel::ThreadPool;
use llamette::session::KvType;
use llamette::{Model, Sampler, SamplerParams, Session, SessionParams};

mod common;
use common::{as_bytes, greedy_ids, session_buf, shared};

/// The bits of the logits after a 100-token prompt fed as one batch (its
/// attention is big enough to go parallel) and after each of 20 greedy
/// tokens fed one at a time (small enough to stay on the calling thread).
fn run(model: &Model, kv_type: KvType, threads: usize) -> Vec<u32> {
    let params = SessionParams {
        context: 128,
        batch: 128,
        kv_type,
    };
    let pool = ThreadPool::new(threads);
    let mut buf = session_buf(model, &params);
    let mut s = Session::new(model, params, as_bytes(&mut buf)).unwrap();
    s.set_parallel(&pool);
    s.feed(&greedy_ids()[..100]).unwrap();
    let mut bits: Vec<u32> = s.logits().unwrap().iter().map(|l| l.to_bits()).collect();
    let mut sampler = Sampler::new(SamplerParams::greedy(), 0);
    for _ in 0..20 {
        let t = s.sample(&mut sampler).unwrap();
        s.feed(&[t]).unwrap();
        bits.extend(s.logits().unwrap().iter().map(|l| l.to_bits()));
    }
    bits
}

#[test]
fn parallel_prefill_attention_does_not_depend_on_thread_count() {
    let bytes = shared("models/stories260K.gguf");
    let model = Model::load(&bytes).unwrap();
    // Grouped-query attention: several kv heads, each shared by several queries.
    let c = model.config;
    assert!(c.n_kv_heads > 1 && c.n_heads > c.n_kv_heads);
    for kv_type in [KvType::F32, KvType::F16, KvType::Q8_0] {
        let one = run(&model, kv_type, 1);
        for threads in [2, 3] {
            assert!(
                one == run(&model, kv_type, threads),
                "{kv_type:?} logits differ with {threads} threads"
            );
        }
    }
}
