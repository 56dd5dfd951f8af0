//! The GGUF files llama.cpp's quantizer wrote (../shared/testdata/
//! llamacpp-quants: one random-weight model in F16 and in every legacy and
//! K-quant file type, each file mixing the types llama.cpp chose per
//! tensor) load and run: every kernel set gives the same bits, and each
//! file's logits stay close to the F16 model's, as close as its bits allow.

use std::sync::Mutex;

use llamette::kernels;
use llamette::{Model, Sampler, SamplerParams, Session, SessionParams};

mod common;
use common::{as_bytes, session_buf, shared};

/// Forcing a kernel set is process-wide.
static FORCED: Mutex<()> = Mutex::new(());

const FILES: [&str; 11] = [
    "Q2_K", "Q3_K_L", "Q3_K_M", "Q4_0", "Q4_1", "Q4_K_M", "Q4_K_S", "Q5_0", "Q5_1", "Q5_K_M",
    "Q6_K",
];

fn file(name: &str) -> Vec<u8> {
    shared(&format!("testdata/llamacpp-quants/t256-{name}.gguf"))
}

/// The logits after each of `steps` positions of a fixed prompt (teacher
/// forcing: the same tokens whatever the model predicts).
fn logits(model: &Model, prompt: &[u32]) -> Vec<Vec<f32>> {
    let params = SessionParams {
        context: 64,
        ..Default::default()
    };
    let mut buf = session_buf(model, &params);
    let mut s = Session::new(model, params, as_bytes(&mut buf)).unwrap();
    let mut out = Vec::new();
    for &t in prompt {
        s.feed(&[t]).unwrap();
        out.push(s.logits().unwrap().to_vec());
    }
    out
}

fn prompt() -> Vec<u32> {
    // BOS, then ids spread over the 512-token vocabulary.
    let mut p = vec![1u32];
    p.extend((0..31).map(|i| (i * 37 + 11) % 512));
    p
}

/// Cosine similarity of two vectors.
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

/// Each file against the same model with its weights decoded to F32
/// (`gguf_as_f32`): what is left is the quantization of the activations
/// (Q8 blocks of 32, Q8_K super-blocks of 256), which moves the logits
/// very little; a wrong scale, offset or bit in any kernel moves them a lot.
#[test]
fn every_file_runs_like_its_weights_decoded_to_f32() {
    for name in FILES {
        let bytes = file(name);
        let model = Model::load(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = logits(&model, &prompt());
        let f32_bytes = common::gguf_as_f32(&bytes);
        let f32_model = Model::load(&f32_bytes).unwrap();
        let want = logits(&f32_model, &prompt());
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, w)| cosine(g, w))
            .fold(1f64, f64::min);
        eprintln!("{name}: worst cosine similarity to its F32 decoding {worst:.6}");
        // Measured: 0.99981 to 0.99991 over these files.
        assert!(worst >= 0.9995, "{name}: {worst}");
    }
}

#[test]
fn every_file_is_close_to_the_f16_model() {
    let reference_bytes = file("f16");
    let reference = logits(&Model::load(&reference_bytes).unwrap(), &prompt());
    for name in FILES {
        let bytes = file(name);
        let model = Model::load(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = logits(&model, &prompt());
        let worst = got
            .iter()
            .zip(&reference)
            .map(|(g, r)| cosine(g, r))
            .fold(1f64, f64::min);
        eprintln!("{name}: worst cosine similarity to F16 over 32 positions {worst:.5}");
        // Measured: Q2_K 0.927, the 3- and 4-bit types 0.978 to 0.987, the
        // 5- and 6-bit types 0.993 to 0.998.
        let bound = match name {
            "Q2_K" => 0.90,
            "Q5_0" | "Q5_1" | "Q5_K_M" | "Q6_K" => 0.99,
            _ => 0.97,
        };
        assert!(worst >= bound, "{name}: {worst} < {bound}");
    }
}

/// Every kernel set gives the same logits, bit for bit, and so the same
/// greedy tokens, for every file (a batch prompt, then tokens one by one).
#[test]
fn every_kernel_set_gives_the_same_bits() {
    let _g = FORCED.lock().unwrap_or_else(|e| e.into_inner());
    for name in FILES {
        let bytes = file(name);
        let model = Model::load(&bytes).unwrap();
        let mut first: Option<(Vec<u32>, Vec<u32>)> = None;
        for k in kernels::available() {
            assert!(kernels::force(k.name));
            let params = SessionParams {
                context: 64,
                ..Default::default()
            };
            let mut buf = session_buf(&model, &params);
            let mut s = Session::new(&model, params, as_bytes(&mut buf)).unwrap();
            let mut sampler = Sampler::new(SamplerParams::greedy(), 0);
            s.feed(&prompt()[..20]).unwrap();
            let mut bits: Vec<u32> = s.logits().unwrap().iter().map(|l| l.to_bits()).collect();
            let mut tokens = Vec::new();
            for _ in 0..12 {
                let t = s.sample(&mut sampler).unwrap();
                tokens.push(t);
                s.feed(&[t]).unwrap();
                bits.extend(s.logits().unwrap().iter().map(|l| l.to_bits()));
            }
            match &first {
                None => first = Some((tokens, bits)),
                Some((t0, b0)) => {
                    assert_eq!(
                        &tokens, t0,
                        "{name}: {} tokens differ from scalar's",
                        k.name
                    );
                    assert!(
                        *b0 == bits,
                        "{name}: {} logits differ from scalar's",
                        k.name
                    );
                }
            }
        }
    }
    kernels::force(kernels::available().last().unwrap().name);
}
