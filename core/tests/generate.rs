//! The generation loop against llama2.c run.c's texts, stop strings, and
//! saved states against uninterrupted generation.

mod common;

use common::{as_bytes, session_buf, shared};
use llamette::session::KvType;
use llamette::state;
use llamette::tensor::TensorType;
use llamette::{
    Bos, Error, Event, GenerateParams, Generator, Model, SamplerParams, Session, SessionParams,
    StopReason, TextMode, Tokenizer,
};

struct Files {
    model: Vec<u8>,
    tok: Vec<u8>,
}

fn files() -> Files {
    Files {
        model: shared("models/stories260K.bin"),
        tok: shared("models/tok512.bin"),
    }
}

/// run.c's loop through the Generator: its stdout, for `prompt` and `steps`.
fn run_c(
    f: &Files,
    prompt: &str,
    sampler: (SamplerParams, u64),
    steps: usize,
    stops: &[&str],
) -> (Vec<u8>, StopReason) {
    let model = Model::load(&f.model).unwrap();
    let mut index = vec![0u32; Tokenizer::index_len_for_vocab(&f.tok, 512).unwrap()];
    let tok = Tokenizer::load_for_vocab(&f.tok, 512, &mut index).unwrap();
    let params = SessionParams {
        context: steps,
        ..Default::default()
    };
    let mut buf = session_buf(&model, &params);
    let mut s = Session::new(&model, params, as_bytes(&mut buf)).unwrap();
    let mut work = vec![0u32; Tokenizer::encode_work_len(prompt.len())];
    let ids = tok.encode(prompt, Bos::Add, &mut work).unwrap();
    let mut out = Vec::new();
    for p in ids.windows(2) {
        tok.llama2c_piece(p[0], p[1], |b| out.extend_from_slice(b))
            .unwrap();
    }
    let mut g = Generator::new(Some(&tok), TextMode::Llama2c);
    g.feed(&mut s, ids).unwrap();
    let gp = GenerateParams {
        sampler: sampler.0,
        seed: sampler.1,
        stop_at_eos: false,
        stop_strings: stops,
        ..Default::default()
    };
    let o = g
        .generate(&mut s, &gp, &mut |_| {}, &mut |e| {
            if let Event::Text(t) = e {
                out.extend_from_slice(t);
            }
            true
        })
        .unwrap();
    out.push(b'\n');
    (out, o.reason)
}

#[test]
fn llama2c_mode_prints_run_c_text() {
    let f = files();
    let (out, reason) = run_c(&f, "", (SamplerParams::greedy(), 0), 256, &[]);
    assert_eq!(out, shared("testdata/stories260K.greedy.txt"));
    assert_eq!(reason, StopReason::ContextFull);
    let sampler = SamplerParams {
        temperature: 0.8,
        top_p: 0.9,
        ..Default::default()
    };
    let (out, _) = run_c(&f, "Tom and his dog", (sampler, 42), 200, &[]);
    assert_eq!(
        out,
        shared("testdata/stories260K.t0.8-p0.9-s42.tom-and-his-dog.txt")
    );
}

#[test]
fn stop_strings_cut_run_c_text_before_the_match() {
    let f = files();
    let reference = shared("testdata/stories260K.greedy.txt");
    let text = String::from_utf8_lossy(&reference).into_owned();
    // Stop strings found in the reference text, some spanning tokens.
    for stop in ["Lily", "the park", ". He", "!\"", "xyz never"] {
        let (out, reason) = run_c(&f, "", (SamplerParams::greedy(), 0), 256, &[stop]);
        match text.find(stop) {
            Some(at) => {
                assert_eq!(reason, StopReason::StopString, "{stop:?}");
                assert_eq!(&out[..out.len() - 1], &text.as_bytes()[..at], "{stop:?}");
            }
            None => assert_eq!(out, reference, "{stop:?}"),
        }
    }
}

fn sampler() -> SamplerParams {
    SamplerParams {
        temperature: 0.9,
        top_p: 0.95,
        top_k: 40,
        repeat_penalty: 1.1,
        ..Default::default()
    }
}

/// Tokens of `n` more steps.
fn continue_for(g: &mut Generator, s: &mut Session, n: usize) -> Vec<u32> {
    let p = GenerateParams {
        sampler: sampler(),
        seed: 7,
        max_tokens: n,
        stop_at_bos: false,
        stop_at_eos: false,
        ..Default::default()
    };
    let mut toks = Vec::new();
    g.generate(s, &p, &mut |_| {}, &mut |e| {
        if let Event::Token(t) = e {
            toks.push(t);
        }
        true
    })
    .unwrap();
    toks
}

#[test]
fn saved_state_continues_bit_identically_and_bad_blobs_change_nothing() {
    let f = files();
    let model = Model::load(&f.model).unwrap();
    let mut index = vec![0u32; Tokenizer::index_len_for_vocab(&f.tok, 512).unwrap()];
    let tok = Tokenizer::load_for_vocab(&f.tok, 512, &mut index).unwrap();
    for kv_type in [KvType::F32, KvType::F16, KvType::Q8_0] {
        let params = SessionParams {
            context: 300,
            kv_type,
            batch: 0,
        };
        let mut buf = session_buf(&model, &params);
        let mut a = Session::new(&model, params, as_bytes(&mut buf)).unwrap();
        let mut ga = Generator::new(Some(&tok), TextMode::Utf8);
        ga.feed(&mut a, &[1, 403, 407, 261]).unwrap();
        continue_for(&mut ga, &mut a, 20);
        let mut blob = vec![0u8; state::saved_len(&a, &ga, 5)];
        let n = state::save(&mut a, &ga, b"extra", &mut blob).unwrap();
        assert_eq!(n, blob.len());
        // One byte short: a typed error.
        assert!(matches!(
            state::save(&mut a, &ga, b"extra", &mut vec![0u8; n - 1]),
            Err(Error::BufferTooSmall { .. })
        ));
        let expected = continue_for(&mut ga, &mut a, 40);

        // A fresh session of another context length, restored.
        let params_b = SessionParams {
            context: 100,
            ..params
        };
        let mut buf_b = session_buf(&model, &params_b);
        let mut b = Session::new(&model, params_b, as_bytes(&mut buf_b)).unwrap();
        let mut gb = Generator::new(Some(&tok), TextMode::Utf8);
        gb.feed(&mut b, &[1, 5, 6]).unwrap();
        let before = (
            b.tokens().to_vec(),
            b.logits().unwrap().to_vec(),
            gb.pending(),
        );
        let unchanged = |b: &Session, gb: &Generator| {
            assert_eq!(b.tokens(), &before.0[..]);
            assert_eq!(b.logits().unwrap(), &before.1[..]);
            assert_eq!(gb.pending(), before.2);
        };
        // Corrupted: every byte flipped in turn (a sample of positions
        // covering the header, the tokens, the logits and the caches).
        let step = (blob.len() / 997).max(1);
        for i in (0..blob.len()).step_by(step).chain(0..120) {
            let mut bad = blob.clone();
            bad[i] ^= 0x5a;
            let e = state::restore(&mut b, &mut gb, &bad).unwrap_err();
            assert!(
                matches!(e, Error::BadState { .. } | Error::StateMismatch { .. }),
                "byte {i}: {e:?}"
            );
            unchanged(&b, &gb);
        }
        // Truncated anywhere.
        for len in (0..blob.len()).step_by(step) {
            assert!(matches!(
                state::restore(&mut b, &mut gb, &blob[..len]),
                Err(Error::BadState { .. })
            ));
            unchanged(&b, &gb);
        }
        // A newer version (checksum fixed up so that only the version differs).
        let mut newer = blob.clone();
        newer[4] = 2;
        let end = newer.len() - 4;
        let crc = state::crc32(&newer[..end]);
        newer[end..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            state::restore(&mut b, &mut gb, &newer),
            Err(Error::StateMismatch {
                what: "the format version",
                found: 2,
                expected: 1
            })
        ));
        unchanged(&b, &gb);
        // Another KV type.
        let other_kv = SessionParams {
            kv_type: if kv_type == KvType::F32 {
                KvType::F16
            } else {
                KvType::F32
            },
            ..params_b
        };
        let mut buf_c = session_buf(&model, &other_kv);
        let mut c = Session::new(&model, other_kv, as_bytes(&mut buf_c)).unwrap();
        let mut gc = Generator::new(Some(&tok), TextMode::Utf8);
        assert!(matches!(
            state::restore(&mut c, &mut gc, &blob),
            Err(Error::StateMismatch { .. })
        ));
        assert_eq!(c.pos(), 0);
        // Another model file (the same weights as a GGUF: another file).
        let gguf = shared("models/stories260K.gguf");
        let other = Model::load(&gguf).unwrap();
        let mut buf_d = session_buf(&other, &params_b);
        let mut d = Session::new(&other, params_b, as_bytes(&mut buf_d)).unwrap();
        let mut gd = Generator::new(Some(&tok), TextMode::Utf8);
        assert!(matches!(
            state::restore(&mut d, &mut gd, &blob),
            Err(Error::StateMismatch {
                what: "the model (fingerprint)",
                ..
            })
        ));
        // A session too short for the positions saved.
        let short = SessionParams {
            context: 10,
            ..params
        };
        let mut buf_e = session_buf(&model, &short);
        let mut e = Session::new(&model, short, as_bytes(&mut buf_e)).unwrap();
        assert!(matches!(
            state::restore(&mut e, &mut gd, &blob),
            Err(Error::StateMismatch { .. })
        ));

        // The good blob: continuing gives the same tokens, bit for bit.
        assert_eq!(state::restore(&mut b, &mut gb, &blob).unwrap(), b"extra");
        assert_eq!(b.pos(), 23, "4 fed + 20 generated, the last pending");
        let got = continue_for(&mut gb, &mut b, 40);
        assert_eq!(got, expected, "{kv_type:?}");
    }
}

/// FNV-1a, 64 bits: the hash `state::model_fingerprint` is defined with.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in parts.iter().flat_map(|p| p.iter()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A state saved with a plain Q4_0 GGUF file (llama.cpp's) restores into a
/// session of its copy interleaved in memory, and the reverse, and both
/// continue with the same tokens: the fingerprint reads interleaved
/// matrices as plain ones. For the plain file it is what it always was (the
/// definition, computed here): header, length, first and last 4 KiB of the
/// weights.
///
/// The same for llama.cpp's Q4_K_M and Q5_K_M files, whose Q4_K and Q5_K matrices are
/// interleaved where the kernels read them fast (`fast_interleaved_k`), and
/// for its F16 file with every F16 matrix interleaved
/// ([`TensorType::F16x16`]): `repack_in_place` no longer makes that layout,
/// but bytes saved by an older build may hold it.
#[test]
fn saved_state_names_the_model_whatever_its_layout() {
    let repack = |b: &mut [u8]| llamette::repack::repack_in_place(b).unwrap().tensors;
    state_crosses_layouts("t256-Q4_0.gguf", 14, repack);
    let fast = llamette::kernels::active().fast_interleaved_k;
    if fast.contains(&TensorType::Q4_K) {
        state_crosses_layouts("t256-Q4_K_M.gguf", 12, repack);
    }
    if fast.contains(&TensorType::Q5_K) {
        state_crosses_layouts("t256-Q5_K_M.gguf", 12, repack);
    }
    assert_eq!(
        repack(&mut shared("testdata/llamacpp-quants/t256-f16.gguf")),
        0
    );
    state_crosses_layouts("t256-f16.gguf", 15, interleave_f16_matrices);
}

/// Interleaves every F16 matrix of the GGUF file in `bytes` into
/// [`TensorType::F16x16`] in place, as `repack_in_place` did on AMD until
/// 2026-12-07, and returns how many. The type number is found from the
/// GGUF layout of a tensor record: name (u64 length, bytes), `n_dims`
/// (u32), the dimensions (u64 each), then the type (u32).
fn interleave_f16_matrices(bytes: &mut [u8]) -> usize {
    let mut jobs = Vec::new();
    {
        let g = llamette::Gguf::parse(bytes).unwrap();
        let header = &bytes[..g.data_offset as usize];
        for t in g.tensors() {
            let t = t.unwrap();
            if t.ty != Some(TensorType::F16) || t.n_dims != 2 {
                continue;
            }
            let mut record = (t.name.len() as u64).to_le_bytes().to_vec();
            record.extend_from_slice(t.name);
            let at = header
                .windows(record.len())
                .position(|w| w == record)
                .unwrap();
            let type_at = at + record.len() + 4 + 8 * t.n_dims as usize;
            let (cols, rows) = (t.dims[0] as usize, t.dims[1] as usize);
            jobs.push((type_at, t.offset as usize, t.size as usize, rows, cols));
        }
    }
    for &(type_at, offset, size, rows, cols) in &jobs {
        let data = &mut bytes[offset..offset + size];
        let ty = llamette::repack::interleave(data, TensorType::F16, rows, cols).unwrap();
        assert_eq!(ty, TensorType::F16x16);
        assert_eq!(bytes[type_at..type_at + 4], 1u32.to_le_bytes()); // GGML's F16
        bytes[type_at..type_at + 4].copy_from_slice(&ty.ggml_type().unwrap().to_le_bytes());
    }
    jobs.len()
}

/// [`saved_state_names_the_model_whatever_its_layout`] for one of
/// llama.cpp's files, of which `pack` interleaves `n` matrices in memory.
fn state_crosses_layouts(file: &str, n: usize, pack: impl Fn(&mut [u8]) -> usize) {
    let plain = shared(&format!("testdata/llamacpp-quants/{file}"));
    let mut packed = plain.clone();
    assert_eq!(pack(&mut packed), n);
    let (a, b) = (Model::load(&plain).unwrap(), Model::load(&packed).unwrap());
    let data = llamette::Gguf::parse(&plain).unwrap().data_offset as usize;
    let len = plain.len();
    let want = fnv(&[
        &plain[..data],
        &(len as u64).to_le_bytes(),
        &plain[data..data + 4096],
        &plain[len - 4096..],
    ]);
    // The interleaved bytes differ in the header and in the last 4 KiB.
    assert_ne!(plain[..data], packed[..data]);
    assert_ne!(plain[len - 4096..], packed[len - 4096..]);
    assert_eq!(state::model_fingerprint(&a).unwrap(), want);
    assert_eq!(state::model_fingerprint(&b).unwrap(), want);
    let other_file = shared("testdata/llamacpp-quants/t256-Q4_1.gguf");
    let other = Model::load(&other_file).unwrap();
    assert_ne!(state::model_fingerprint(&other).unwrap(), want);

    let params = SessionParams {
        context: 64,
        kv_type: KvType::F16,
        batch: 0,
    };
    for (from, to) in [(&a, &b), (&b, &a)] {
        let mut buf = session_buf(from, &params);
        let mut s = Session::new(from, params, as_bytes(&mut buf)).unwrap();
        let mut g = Generator::new(None, TextMode::Utf8);
        g.feed(&mut s, &[1, 300, 301, 302]).unwrap();
        continue_for(&mut g, &mut s, 8);
        let mut blob = vec![0u8; state::saved_len(&s, &g, 0)];
        state::save(&mut s, &g, &[], &mut blob).unwrap();
        let expected = continue_for(&mut g, &mut s, 16);
        let mut buf2 = session_buf(to, &params);
        let mut s2 = Session::new(to, params, as_bytes(&mut buf2)).unwrap();
        let mut g2 = Generator::new(None, TextMode::Utf8);
        state::restore(&mut s2, &mut g2, &blob).unwrap();
        assert_eq!(continue_for(&mut g2, &mut s2, 16), expected);
    }
}
