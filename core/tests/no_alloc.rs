//! After `Session::new`, nothing allocates: a counting global allocator sees
//! zero allocations, on any thread, across tokenizing a prompt, a batched
//! prefill and 200 generated tokens, with one thread and with a pool of three.
//! (This file holds a single test so that no other test allocates meanwhile.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use llamette::session::KvType;
use llamette::{Bos, Model, Sampler, SamplerParams, Session, SessionParams};

mod common;
use common::as_bytes;

struct Counting;

/// Allocations made by any thread while `COUNTING` is set.
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

fn count() {
    if COUNTING.load(Ordering::SeqCst) {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCS.load(Ordering::SeqCst)
}

#[test]
fn no_allocation_after_session_creation() {
    use llamette::format::gguf::Gguf;
    use llamette::parallel::ThreadPool;
    use llamette::Tokenizer;

    let path = format!(
        "{}/../../shared/models/stories260K.gguf",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(path).unwrap();
    let model = Model::load(&bytes).unwrap();
    let gguf = Gguf::parse(&bytes).unwrap();
    let mut index = vec![0u32; Tokenizer::index_len(512)];
    let tok = Tokenizer::from_gguf(&gguf, &mut index).unwrap();
    let text = "Once upon a time, a little dog named Max found a big red ball.";
    let mut work = vec![0u32; Tokenizer::encode_work_len(text.len())];
    let pools = [ThreadPool::new(1), ThreadPool::new(3)];

    for (kv_type, pool) in [
        (KvType::F32, &pools[0]),
        (KvType::F16, &pools[1]),
        (KvType::Q8_0, &pools[1]),
    ] {
        let params = SessionParams {
            context: 256,
            kv_type,
            batch: 8,
        };
        let mut buf = vec![
            0u64;
            Session::required_bytes(&model, &params)
                .unwrap()
                .div_ceil(8)
        ];
        let mut s = Session::new(&model, params, as_bytes(&mut buf)).unwrap();
        s.set_parallel(pool);
        let mut samplers = [
            Sampler::new(
                SamplerParams {
                    ..Default::default()
                },
                42,
            ),
            Sampler::new(
                SamplerParams {
                    top_k: 40,
                    min_p: 0.05,
                    repeat_penalty: 1.1,
                    ..Default::default()
                },
                7,
            ),
            Sampler::new(SamplerParams::greedy(), 0),
        ];
        let mut text_out = [0u8; 4096];

        COUNTING.store(true, Ordering::SeqCst);
        let before = allocations();
        for sampler in samplers.iter_mut() {
            s.reset();
            let ids = tok.encode(text, Bos::Add, &mut work).unwrap();
            assert!(ids.len() > 8, "the prompt spans several batches");
            s.feed(ids).unwrap();
            for _ in 0..200 {
                let t = s.sample(sampler).unwrap();
                s.feed(&[t]).unwrap();
            }
            tok.decode(s.tokens(), &mut text_out).unwrap();
            // Errors do not allocate either.
            assert!(s.feed(&[0; 100]).is_err());
            assert!(s.feed(&[9999]).is_err());
        }
        let after = allocations();
        COUNTING.store(false, Ordering::SeqCst);
        assert_eq!(
            after - before,
            0,
            "allocations during inference ({kv_type:?})"
        );
    }
}
