//! The core's unsafe code end to end, small enough for Miri
//! (`cargo +nightly miri test -p llamette --test miri`, run by test.sh):
//! session carving, the forward pass (a batched prefill and a decode
//! step) over every KV cache type, parallel regions (`for_each_chunk_pair`,
//! `for_each_strip`) on threads, saved states, the tokenizer. Natively it
//! is a quick smoke test.

use llamette::parallel::Parallel;
use llamette::session::KvType;
use llamette::{
    state, Bos, Generator, Model, Sampler, SamplerParams, Session, SessionParams, TextMode,
    Tokenizer,
};

/// A tiny llama2.c (version 0) model, random weights: dim 16, hidden 32,
/// 2 layers, 2 heads sharing 1 KV head, vocabulary 32, context 8. Small
/// enough that Miri runs its forward pass in seconds (stories260K takes
/// many minutes), with every code path of the big one.
fn tiny_model() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| {
        let (dim, hidden, layers, heads, kv_heads, vocab, seq) = (16, 32, 2, 2, 1, 32, 8);
        let head = dim / heads;
        let kv = kv_heads * head;
        let mut v = Vec::new();
        for x in [dim, hidden, layers, heads, kv_heads, vocab, seq] {
            v.extend_from_slice(&(x as i32).to_le_bytes());
        }
        let mut state = 0x2545_F491u32;
        let mut push = |n: usize, v: &mut Vec<u8>, norm: bool| {
            for _ in 0..n {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let x = if norm {
                    1.0
                } else {
                    (state % 2001) as f32 / 1000.0 - 1.0
                };
                v.extend_from_slice(&(x * 0.5f32).to_le_bytes());
            }
        };
        push(vocab * dim, &mut v, false);
        push(layers * dim, &mut v, true);
        push(layers * dim * dim, &mut v, false);
        push(layers * kv * dim, &mut v, false);
        push(layers * kv * dim, &mut v, false);
        push(layers * dim * dim, &mut v, false);
        push(layers * dim, &mut v, true);
        push(layers * hidden * dim, &mut v, false);
        push(layers * dim * hidden, &mut v, false);
        push(layers * hidden * dim, &mut v, false);
        push(dim, &mut v, true);
        push(seq * head, &mut v, false);
        v
    })
}
static TOK: &[u8] = include_bytes!("../../models/tok512.bin");

/// Runs each task on a thread of its own (scoped): the most interleaving
/// a region can see.
struct Threads;

// SAFETY: every index in 0..n_tasks is run exactly once, each on its own
// thread, and the scope joins them all before returning.
unsafe impl Parallel for Threads {
    fn n_threads(&self) -> usize {
        3
    }

    fn parallel_for(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        std::thread::scope(|s| {
            for i in 0..n_tasks {
                s.spawn(move || task(i));
            }
        });
    }
}

/// Feeds a 2-token prompt (a batched prefill), then one decode step;
/// returns the tokens sampled and the last logits.
fn run(kv_type: KvType, par: Option<&dyn Parallel>) -> (Vec<u32>, Vec<f32>) {
    let model = Model::load(tiny_model()).unwrap();
    let params = SessionParams {
        context: 4,
        batch: 2,
        kv_type,
    };
    let need = Session::required_bytes(&model, &params).unwrap();
    let mut buf = vec![0u64; need.div_ceil(8)];
    let mut s = Session::new(&model, params, bytemuck::cast_slice_mut(&mut buf)).unwrap();
    if let Some(p) = par {
        s.set_parallel(p);
    }
    s.feed(&[1, 13]).unwrap();
    let mut greedy = Sampler::new(SamplerParams::greedy(), 0);
    let mut out = Vec::new();
    for _ in 0..1 {
        let t = s.sample(&mut greedy).unwrap();
        out.push(t);
        s.feed(&[t]).unwrap();
    }
    (out, s.logits().unwrap().to_vec())
}

#[test]
fn forward_pass_inline_and_on_threads() {
    let (a, la) = run(KvType::F32, None);
    let (b, lb) = run(KvType::F32, Some(&Threads));
    assert_eq!(a, b);
    assert_eq!(la, lb);
}

#[test]
fn forward_pass_with_f16_and_q8_0_caches_on_threads() {
    for kv in [KvType::F16, KvType::Q8_0] {
        let (a, _) = run(kv, Some(&Threads));
        assert_eq!(a.len(), 1, "{kv:?}");
    }
}

#[test]
fn saved_state_round_trips_and_refuses_a_corrupt_blob() {
    let model = Model::load(tiny_model()).unwrap();
    let params = SessionParams {
        context: 5,
        ..Default::default()
    };
    let need = Session::required_bytes(&model, &params).unwrap();
    let mut b1 = vec![0u64; need.div_ceil(8)];
    let mut b2 = vec![0u64; need.div_ceil(8)];
    let mut s1 = Session::new(&model, params, bytemuck::cast_slice_mut(&mut b1)).unwrap();
    let mut g1 = Generator::new(None, TextMode::Utf8);
    g1.feed(&mut s1, &[1, 20]).unwrap();
    let mut blob = vec![0u8; state::saved_len(&s1, &g1, 3)];
    let n = state::save(&mut s1, &g1, b"abc", &mut blob).unwrap();
    let mut s2 = Session::new(&model, params, bytemuck::cast_slice_mut(&mut b2)).unwrap();
    let mut g2 = Generator::new(None, TextMode::Utf8);
    let mut bad = blob[..n].to_vec();
    bad[n / 2] ^= 1;
    assert!(state::restore(&mut s2, &mut g2, &bad).is_err());
    assert_eq!(s2.pos(), 0);
    assert_eq!(
        state::restore(&mut s2, &mut g2, &blob[..n]).unwrap(),
        b"abc"
    );
    assert_eq!(s1.logits(), s2.logits());
}

#[test]
fn tokenizer_round_trips() {
    let n = Tokenizer::llama2c_token_count(TOK).unwrap();
    let mut index = vec![0u32; Tokenizer::index_len(n)];
    let tok = Tokenizer::from_llama2c(TOK, None, &mut index).unwrap();
    let text = "Once upon a time, caf\u{e9} \u{1F600}";
    let mut work = vec![0u32; Tokenizer::encode_work_len(text.len())];
    let ids = tok.encode(text, Bos::Add, &mut work).unwrap();
    let mut out = vec![0u8; 64];
    assert_eq!(tok.decode(ids, &mut out).unwrap(), text);
}
