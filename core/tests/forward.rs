//! The forward pass against llama2.c's own numbers (../shared/testdata).

use llamette::session::KvType;
use llamette::{Model, Sampler, SamplerParams, Session, SessionParams};

mod common;
use common::{as_bytes, greedy_ids, session_buf, shared};

fn reference_logits() -> Vec<f32> {
    shared("testdata/stories260K.greedy.logits-pos0-15.f32")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// Feeds the reference tokens one at a time and compares the logits at
/// positions 0..16 with llama2.c's.
fn check_logits(file: &str, kv_type: KvType, tol: f32) {
    let bytes = shared(file);
    let model = Model::load(&bytes).unwrap();
    let params = SessionParams {
        context: 0,
        kv_type,
        ..Default::default()
    };
    let mut buf = session_buf(&model, &params);
    let mut s = Session::new(&model, params, as_bytes(&mut buf)).unwrap();
    let ids = greedy_ids();
    let want = reference_logits();
    let vocab = model.config.vocab_size;
    assert_eq!(vocab, 512);
    let mut worst = 0f32;
    for pos in 0..16 {
        s.feed(&ids[pos..pos + 1]).unwrap();
        let got = s.logits().unwrap();
        let want = &want[pos * vocab..(pos + 1) * vocab];
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (g, w) in got.iter().zip(want) {
            worst = worst.max((g - w).abs() / scale);
        }
    }
    assert!(worst < tol, "{file}: worst relative error {worst} >= {tol}");
    eprintln!("{file} ({kv_type:?}): worst relative logit error {worst:e}");
}

#[test]
fn logits_match_llama2c_bin() {
    check_logits("models/stories260K.bin", KvType::F32, 1e-4);
}

#[test]
fn logits_match_llama2c_gguf() {
    check_logits("models/stories260K.gguf", KvType::F32, 1e-4);
}

#[test]
fn logits_close_with_f16_kv_cache() {
    check_logits("models/stories260K.gguf", KvType::F16, 1e-2);
}

#[test]
fn logits_close_with_q8_0_kv_cache() {
    // Measured 4.8e-2: the narrow heads (8 values) share a scale per 32.
    check_logits("models/stories260K.gguf", KvType::Q8_0, 1e-1);
}

/// The whole greedy run reproduces llama2.c's token sequence.
#[test]
fn greedy_tokens_match_llama2c() {
    let bytes = shared("models/stories260K.bin");
    let model = Model::load(&bytes).unwrap();
    let params = SessionParams::default();
    let mut buf = session_buf(&model, &params);
    let mut s = Session::new(&model, params, as_bytes(&mut buf)).unwrap();
    let ids = greedy_ids();
    let mut sampler = Sampler::new(SamplerParams::greedy(), 0);
    s.feed(&ids[..1]).unwrap();
    for (pos, &want) in ids.iter().enumerate().skip(1) {
        let next = s.sample(&mut sampler).unwrap();
        assert_eq!(next, want, "token at position {pos}");
        s.feed(&[next]).unwrap();
    }
}

/// Tokens and logits are bit-identical for 1, 2 and 3 threads. stories260K's
/// one-token products are too small to split (see `MIN_TASK_WORK` in
/// `matmul.rs`): only its 3-token prefill runs on the threads. The
/// llama.cpp-quantized dim-256 files split every one-token product, so
/// they check the split decode (F16, and Q4_K/Q6_K with Q8_K activations);
/// the pool's region count shows that they did.
#[test]
fn results_do_not_depend_on_thread_count() {
    use llamette::parallel::ThreadPool;
    for (file, splits_decode) in [
        ("models/stories260K.gguf", false),
        ("testdata/llamacpp-quants/t256-f16.gguf", true),
        ("testdata/llamacpp-quants/t256-Q4_K_M.gguf", true),
    ] {
        let bytes = shared(file);
        let model = Model::load(&bytes).unwrap();
        let params = SessionParams {
            context: 128,
            ..Default::default()
        };
        // Tokens, logits' bits, and the regions run after the prefill.
        let run = |threads: usize| -> (Vec<u32>, Vec<u32>, u64) {
            let pool = ThreadPool::new(threads);
            let mut buf = session_buf(&model, &params);
            let mut s = Session::new(&model, params, as_bytes(&mut buf)).unwrap();
            s.set_parallel(&pool);
            let mut sampler = Sampler::new(SamplerParams::default(), 5);
            let mut logit_bits = Vec::new();
            s.feed(&[1, 403, 407]).unwrap();
            let after_prefill = pool.stats().regions;
            while s.pos() < 100 {
                logit_bits.extend(s.logits().unwrap().iter().map(|l| l.to_bits()));
                let t = s.sample(&mut sampler).unwrap();
                s.feed(&[t]).unwrap();
            }
            let decode_regions = pool.stats().regions - after_prefill;
            (s.tokens().to_vec(), logit_bits, decode_regions)
        };
        let one = run(1);
        for threads in [2, 3] {
            let other = run(threads);
            assert_eq!(one.0, other.0, "{file}: tokens with {threads} threads");
            assert!(
                one.1 == other.1,
                "{file}: logits differ with {threads} threads"
            );
            // 97 one-token forwards: none split, or every one of them.
            if splits_decode {
                assert!(other.2 >= 97, "{file}: {} regions", other.2);
            } else {
                assert_eq!(other.2, 0, "{file}: {} regions", other.2);
            }
        }
    }
}

/// Prefill in batches (of 32, and of 7 to cut the prompt unevenly) gives
/// bit-identical logits to feeding one token at a time, and so does
/// everything generated after it.
#[test]
fn batched_prefill_matches_token_by_token() {
    let bytes = shared("models/stories260K.gguf");
    let model = Model::load(&bytes).unwrap();
    let ids = greedy_ids();
    let prompt = &ids[..75];
    let run = |batch: usize, one_by_one: bool| -> Vec<u32> {
        let params = SessionParams {
            context: 128,
            batch,
            ..Default::default()
        };
        let mut buf = session_buf(&model, &params);
        let mut s = Session::new(&model, params, as_bytes(&mut buf)).unwrap();
        if one_by_one {
            for t in prompt {
                s.feed(&[*t]).unwrap();
            }
        } else {
            s.feed(prompt).unwrap();
        }
        let mut bits: Vec<u32> = s.logits().unwrap().iter().map(|l| l.to_bits()).collect();
        let mut sampler = Sampler::new(SamplerParams::greedy(), 0);
        for _ in 0..20 {
            let t = s.sample(&mut sampler).unwrap();
            s.feed(&[t]).unwrap();
            bits.extend(s.logits().unwrap().iter().map(|l| l.to_bits()));
        }
        bits
    };
    let reference = run(1, true);
    assert!(reference == run(32, false), "batch 32");
    assert!(reference == run(7, false), "batch 7");
    assert!(reference == run(128, false), "batch 128");
}

/// Truncating and feeding again gives the same logits as never having fed
/// the dropped tokens.
#[test]
fn truncate_then_feed_matches_a_fresh_session() {
    let bytes = shared("models/stories260K.gguf");
    let model = Model::load(&bytes).unwrap();
    let params = SessionParams {
        context: 64,
        ..Default::default()
    };
    let ids = greedy_ids();
    let mut buf = session_buf(&model, &params);
    let mut s = Session::new(&model, params, as_bytes(&mut buf)).unwrap();
    s.feed(&ids[..40]).unwrap();
    s.truncate(20);
    assert_eq!(s.pos(), 20);
    assert!(s.logits().is_none());
    s.feed(&[7, 8, 9]).unwrap();
    let got: Vec<u32> = s.logits().unwrap().iter().map(|l| l.to_bits()).collect();

    let mut buf2 = session_buf(&model, &params);
    let mut fresh = Session::new(&model, params, as_bytes(&mut buf2)).unwrap();
    fresh.feed(&ids[..20]).unwrap();
    fresh.feed(&[7, 8, 9]).unwrap();
    let want: Vec<u32> = fresh
        .logits()
        .unwrap()
        .iter()
        .map(|l| l.to_bits())
        .collect();
    assert!(got == want);
    assert_eq!(s.tokens(), fresh.tokens());
}
