//! After `Session::new`, nothing allocates: a counting global allocator sees
//! zero allocations across a prefill and 200 generated tokens.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use llamette::session::KvType;
use llamette::{Model, Sampler, SamplerParams, Session, SessionParams};

struct Counting;

thread_local! {
    /// Allocations made by this thread (other threads' are not ours to count).
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCS.with(|c| c.get())
}

#[test]
fn no_allocation_after_session_creation() {
    let path = format!(
        "{}/../../shared/models/stories260K.gguf",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(path).unwrap();
    let model = Model::load(&bytes).unwrap();
    for kv_type in [KvType::F32, KvType::F16] {
        let params = SessionParams {
            context: 256,
            kv_type,
            ..Default::default()
        };
        let mut buf = vec![
            0u64;
            Session::required_bytes(&model, &params)
                .unwrap()
                .div_ceil(8)
        ];
        let buf: &mut [u8] = bytemuck_bytes(&mut buf);
        let mut s = Session::new(&model, params, buf).unwrap();
        let mut samplers = [
            Sampler::new(SamplerParams {
                seed: 42,
                ..Default::default()
            }),
            Sampler::new(SamplerParams {
                seed: 7,
                top_k: 40,
                min_p: 0.05,
                repeat_penalty: 1.1,
                ..Default::default()
            }),
            Sampler::new(SamplerParams::greedy()),
        ];
        let prompt = [1u32, 403, 407, 261, 378, 1131 % 512];

        let before = allocations();
        for sampler in samplers.iter_mut() {
            s.reset();
            s.feed(&prompt).unwrap();
            for _ in 0..200 {
                let t = s.sample(sampler).unwrap();
                s.feed(&[t]).unwrap();
            }
            // Errors do not allocate either.
            assert!(s.feed(&[0; 100]).is_err());
            assert!(s.feed(&[9999]).is_err());
        }
        let after = allocations();
        assert_eq!(
            after - before,
            0,
            "allocations during inference ({kv_type:?})"
        );
    }
}

fn bytemuck_bytes(buf: &mut [u64]) -> &mut [u8] {
    bytemuck::cast_slice_mut(buf)
}
