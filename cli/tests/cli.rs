//! The `llamette` binary against references this project did not write:
//! llama2.c's published outputs and llama.cpp's tokenizer vectors.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn shared(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared")
        .join(rel)
}

fn llamette(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_llamette"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run llamette");
    // The program may exit (on a bad file) before reading its input.
    match child.stdin.take().unwrap().write_all(stdin) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r.unwrap(),
    }
    child.wait_with_output().unwrap()
}

fn run_ok(args: &[&str]) -> Vec<u8> {
    let out = llamette(args, b"");
    assert!(
        out.status.success(),
        "llamette {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

fn greedy_reference() -> Vec<u8> {
    std::fs::read(shared("testdata/stories260K.greedy.txt")).unwrap()
}

#[test]
fn greedy_from_llama2c_bin_matches_run_c() {
    let model = shared("models/stories260K.bin");
    let tok = shared("models/tok512.bin");
    let out = run_ok(&[
        "generate",
        path(&model),
        "-z",
        path(&tok),
        "-t",
        "0",
        "-n",
        "256",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&greedy_reference())
    );
}

#[test]
fn greedy_from_gguf_matches_run_c() {
    let model = shared("models/stories260K.gguf");
    let out = run_ok(&["generate", path(&model), "-t", "0", "-n", "256"]);
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&greedy_reference())
    );
}

#[test]
fn greedy_from_embedded_model_matches_run_c() {
    let out = run_ok(&["generate", "-t", "0", "-n", "256"]);
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&greedy_reference())
    );
}

#[test]
fn seeded_top_p_sampling_matches_run_c() {
    let want = std::fs::read(shared(
        "testdata/stories260K.t0.8-p0.9-s42.tom-and-his-dog.txt",
    ))
    .unwrap();
    let model = shared("models/stories260K.bin");
    let tok = shared("models/tok512.bin");
    for model_args in [vec![path(&model), "-z", path(&tok)], vec![]] {
        let mut args = vec!["generate"];
        args.extend(model_args);
        args.extend([
            "-t",
            "0.8",
            "-p",
            "0.9",
            "-s",
            "42",
            "-n",
            "200",
            "-i",
            "Tom and his dog",
        ]);
        let out = run_ok(&args);
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&want),
            "{args:?}"
        );
    }
}

#[test]
fn statistics_go_to_stderr() {
    let out = llamette(&["generate", "-t", "0", "-n", "16"], b"");
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tok/s"), "{err}");
    assert!(err.contains("session memory"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("tok/s"));
}

/// llama.cpp's test vectors: inputs separated by `__ggml_vocab_test__` lines.
fn vocab_vectors() -> Vec<(String, String)> {
    let inp = std::fs::read_to_string(shared("models/ggml-vocab-llama-spm.gguf.inp")).unwrap();
    let out = std::fs::read_to_string(shared("models/ggml-vocab-llama-spm.gguf.out")).unwrap();
    let mut inputs: Vec<String> = inp
        .split("\n__ggml_vocab_test__\n")
        .map(str::to_string)
        .collect();
    // The file ends with a separator: the last split is empty.
    assert_eq!(inputs.pop().as_deref(), Some(""));
    let outputs: Vec<String> = out.lines().map(|l| l.trim().to_string()).collect();
    assert_eq!(inputs.len(), outputs.len());
    inputs.into_iter().zip(outputs).collect()
}

#[test]
fn tokenize_passes_every_llama_cpp_vector() {
    let vocab = shared("models/ggml-vocab-llama-spm.gguf");
    let vectors = vocab_vectors();
    assert!(vectors.len() >= 40, "only {} vectors", vectors.len());
    let mut failed = Vec::new();
    for (text, want) in &vectors {
        let out = llamette(&["tokenize", path(&vocab)], text.as_bytes());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = String::from_utf8(out.stdout).unwrap();
        if got.trim_end_matches('\n') != want {
            failed.push(format!("{text:?}: want {want:?}, got {got:?}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} failed:\n{}",
        failed.len(),
        vectors.len(),
        failed.join("\n")
    );
}

#[test]
fn tokenize_bos_flag_and_llama2c_tokenizer() {
    let vocab = shared("models/ggml-vocab-llama-spm.gguf");
    let bin = shared("models/llama2-tokenizer.bin");
    let plain = llamette(&["tokenize", path(&vocab)], b"Hello world");
    let with_bos = llamette(&["tokenize", path(&vocab), "--bos"], b"Hello world");
    let from_bin = llamette(&["tokenize", path(&bin)], b"Hello world");
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "15043 3186\n");
    assert_eq!(String::from_utf8_lossy(&with_bos.stdout), "1 15043 3186\n");
    assert_eq!(plain.stdout, from_bin.stdout);
}

fn assert_clean_failure(out: &Output, file_hint: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains(file_hint), "the message names the file: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("RUST_BACKTRACE"), "{err}");
}

#[test]
fn malformed_models_fail_cleanly_through_the_cli() {
    let dir = std::env::temp_dir().join(format!("llamette-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let gguf = std::fs::read(shared("models/stories260K.gguf")).unwrap();
    let bin = std::fs::read(shared("models/stories260K.bin")).unwrap();
    let tok = shared("models/tok512.bin");
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for len in [
        0,
        3,
        4,
        8,
        23,
        24,
        100,
        4000,
        14_175,
        14_176,
        200_000,
        gguf.len() - 1,
    ] {
        cases.push((format!("gguf-cut-{len}.gguf"), gguf[..len].to_vec()));
    }
    for len in [4, 27, 28, 1000, bin.len() - 1] {
        cases.push((format!("bin-cut-{len}.bin"), bin[..len].to_vec()));
    }
    let mut bad_magic = gguf.clone();
    bad_magic[..4].copy_from_slice(b"GGUX");
    cases.push(("bad-magic.gguf".into(), bad_magic));
    let mut huge_count = gguf.clone();
    huge_count[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    cases.push(("huge-tensor-count.gguf".into(), huge_count));
    let mut bad_dim = bin.clone();
    bad_dim[..4].copy_from_slice(&(-64i32).to_le_bytes());
    cases.push(("negative-dim.bin".into(), bad_dim));

    for (name, bytes) in &cases {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        for args in [
            vec!["generate", path(&p), "-z", path(&tok), "-n", "8"],
            vec!["info", path(&p)],
        ] {
            let out = llamette(&args, b"");
            assert_clean_failure(&out, name);
        }
    }
    // Missing file, directory, a tokenizer too small for the model.
    let missing = dir.join("does-not-exist.gguf");
    assert_clean_failure(
        &llamette(&["info", path(&missing)], b""),
        "does-not-exist.gguf",
    );
    assert_clean_failure(&llamette(&["info", path(&dir)], b""), "llamette-cli-test");
    let short_tok = dir.join("short-tok.bin");
    let tok_bytes = std::fs::read(&tok).unwrap();
    std::fs::write(&short_tok, &tok_bytes[..tok_bytes.len() / 2]).unwrap();
    let model = shared("models/stories260K.bin");
    assert_clean_failure(
        &llamette(&["generate", path(&model), "-z", path(&short_tok)], b""),
        "short-tok.bin",
    );
    assert_clean_failure(
        &llamette(&["tokenize", path(&short_tok)], b"x"),
        "short-tok.bin",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tokenize_rejects_invalid_utf8() {
    let vocab = shared("models/ggml-vocab-llama-spm.gguf");
    let out = llamette(&["tokenize", path(&vocab)], b"ab\xffcd");
    assert_clean_failure(&out, "stdin");
}

#[test]
fn info_describes_the_model() {
    let out = run_ok(&["info", path(&shared("models/stories260K.gguf"))]);
    let text = String::from_utf8(out).unwrap();
    for needle in [
        "format: GGUF v3",
        "dim 64, hidden 172, layers 5, heads 8, kv heads 4",
        "vocab 512",
        "F32 x48",
        "session memory for the full context",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("llamette-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn quantize_to_f32_gguf_round_trips_exactly() {
    let dir = temp_dir("quant-f32");
    let out = dir.join("s.gguf");
    let model = shared("models/stories260K.bin");
    let tok = shared("models/tok512.bin");
    run_ok(&[
        "quantize",
        path(&model),
        path(&out),
        "--type",
        "f32",
        "-z",
        path(&tok),
    ]);
    // The GGUF carries a tokenizer rebuilt from tokenizer.bin: no -z needed.
    let text = run_ok(&["generate", path(&out), "-t", "0", "-n", "256"]);
    assert_eq!(
        String::from_utf8_lossy(&text),
        String::from_utf8_lossy(&greedy_reference())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn quantize_writes_each_type() {
    let dir = temp_dir("quant-types");
    let model = shared("models/stories260K.gguf");
    for (ty, name) in [("f16", "F16 x"), ("q8_0", "Q8_0 x"), ("q4_0", "Q4_0 x")] {
        let out = dir.join(format!("s-{ty}.gguf"));
        run_ok(&["quantize", path(&model), path(&out), "--type", ty]);
        let info = String::from_utf8(run_ok(&["info", path(&out)])).unwrap();
        assert!(info.contains(name), "{ty}: {info}");
        let text = run_ok(&["generate", path(&out), "-t", "0", "-n", "40"]);
        // Quantized weights still tell the same story's opening.
        assert!(
            String::from_utf8_lossy(&text).starts_with("Once upon a time"),
            "{ty}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `llamette quantize` of llama.cpp's random F16 test model writes, for
/// every file type llama.cpp's quantizer wrote from it, the same tensors in
/// the same order with the same types and bytes, and the same
/// `general.file_type`.
#[test]
fn quantize_writes_what_llama_quantize_writes() {
    use llamette::format::gguf::Gguf;
    let dir = temp_dir("quant-llamacpp");
    let src = shared("testdata/llamacpp-quants/t256-f16.gguf");
    for name in [
        "Q2_K", "Q3_K_L", "Q3_K_M", "Q4_0", "Q4_1", "Q4_K_M", "Q4_K_S", "Q5_0", "Q5_1", "Q5_K_M",
        "Q6_K",
    ] {
        let out = dir.join(format!("t256-{name}.gguf"));
        let ty = name.to_lowercase();
        run_ok(&["quantize", path(&src), path(&out), "--type", &ty]);
        let ours = std::fs::read(&out).unwrap();
        let reference = std::fs::read(shared(&format!(
            "testdata/llamacpp-quants/t256-{name}.gguf"
        )))
        .unwrap();
        let (a, b) = (
            Gguf::parse(&ours).unwrap(),
            Gguf::parse(&reference).unwrap(),
        );
        assert_eq!(
            a.get_u64("general.file_type").unwrap(),
            b.get_u64("general.file_type").unwrap(),
            "{name}"
        );
        let (ta, tb): (Vec<_>, Vec<_>) = (
            a.tensors().map(|t| t.unwrap()).collect(),
            b.tensors().map(|t| t.unwrap()).collect(),
        );
        assert_eq!(ta.len(), tb.len(), "{name}");
        for (x, y) in ta.iter().zip(&tb) {
            let n = String::from_utf8_lossy(y.name);
            assert_eq!(x.name, y.name, "{name}: tensor order");
            assert_eq!(x.raw_type, y.raw_type, "{name}: type of {n}");
            assert_eq!(x.dims, y.dims, "{name}: shape of {n}");
            assert!(
                a.tensor_data(x) == b.tensor_data(y),
                "{name}: bytes of {n} differ"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The default layout (a model that fits in half the available memory is
/// copied and its quantized matrices interleaved) and `--repack` print
/// exactly what the mapped file (`--mmap`) prints: the interleaved kernels
/// add in the plain types' order. stderr says which layout was taken.
#[test]
fn every_layout_tells_the_same_story() {
    let dir = temp_dir("repack");
    let model = shared("models/stories260K.gguf");
    for ty in ["q8_0", "q4_0"] {
        let file = dir.join(format!("s-{ty}.gguf"));
        run_ok(&["quantize", path(&model), path(&file), "--type", ty]);
        let args = ["generate", path(&file), "-t", "0", "-n", "256"];
        let mapped = llamette(&[&args[..], &["--mmap"]].concat(), b"");
        let err = String::from_utf8_lossy(&mapped.stderr);
        assert!(mapped.status.success(), "{err}");
        assert!(
            !err.contains("interleaved") && !err.contains("loaded for speed"),
            "{ty}: {err}"
        );
        // Every quantized matrix with a multiple of 16 rows: the embedding,
        // the classifier, and q, k, v, o of 5 layers (w1 and w3 have 172).
        for (flag, needle) in [
            (None, "loaded for speed: copied and interleaved 22 matrices"),
            (Some("--repack"), "copied and interleaved 22 matrices"),
        ] {
            let out = llamette(&[&args[..], flag.as_slice()].concat(), b"");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{err}");
            // This machine's memory may be short: then the file is mapped,
            // and says so.
            assert!(
                err.contains(needle) || (flag.is_none() && err.contains("mapped the model file")),
                "{ty} {flag:?}: {err}"
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&mapped.stdout),
                "{ty} {flag:?}"
            );
        }
    }
    // --mmap and --repack contradict each other.
    let file = dir.join("s-q8_0.gguf");
    let out = llamette(&["generate", path(&file), "--mmap", "--repack"], b"");
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Without `--threads`, the thread count is chosen by the model's size
/// and said on stderr; with it, nothing is said.
#[test]
fn the_thread_count_is_chosen_and_said() {
    let out = llamette(&["generate", "-t", "0", "-n", "16"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("llamette: 1 thread (a small model") && err.contains("--threads N to choose"),
        "{err}"
    );
    let out = llamette(&["generate", "-t", "0", "-n", "16", "--threads", "2"], b"");
    let two = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{two}");
    assert!(!two.contains("to choose"), "{two}");
}

#[test]
fn quantize_refuses_to_overwrite_its_input() {
    let dir = temp_dir("quant-self");
    let copy = dir.join("m.gguf");
    std::fs::copy(shared("models/stories260K.gguf"), &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    let link = dir.join("link.gguf");
    std::os::unix::fs::symlink(&copy, &link).unwrap();
    for target in [&copy, &link] {
        let out = llamette(
            &["quantize", path(&copy), path(target), "--type", "q8_0"],
            b"",
        );
        assert_clean_failure(&out, "refusing to overwrite");
    }
    assert_eq!(std::fs::read(&copy).unwrap(), before);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn synth_and_bench_run_on_a_small_shape() {
    let dir = temp_dir("synth");
    let out = dir.join("15m-q4.gguf");
    let vocab = shared("models/ggml-vocab-llama-spm.gguf");
    run_ok(&[
        "synth",
        "--shape",
        "15m",
        "--type",
        "q4_0",
        path(&out),
        "--vocab",
        path(&vocab),
    ]);
    let info = String::from_utf8(run_ok(&["info", path(&out)])).unwrap();
    assert!(
        info.contains("dim 288, hidden 768, layers 6, heads 6, kv heads 6"),
        "{info}"
    );
    assert!(info.contains("vocab 32000"), "{info}");
    let report = String::from_utf8(run_ok(&[
        "bench",
        path(&out),
        "--prompt-tokens",
        "8",
        "--gen-tokens",
        "8",
        "--no-probe",
    ]))
    .unwrap();
    for needle in [
        "prompt: 8 tokens",
        "decode: 8 tokens",
        "after the 8-token prompt",
        "GB/s",
    ] {
        assert!(report.contains(needle), "{report}");
    }
    let report = String::from_utf8(run_ok(&[
        "bench",
        path(&out),
        "--prompt-tokens",
        "8",
        "--gen-tokens",
        "8",
        "--no-probe",
        "--repack",
    ]))
    .unwrap();
    // 6 layers x 7 matrices, the embedding and the classifier.
    for needle in ["interleaved 44 matrices", "decode: 8 tokens"] {
        assert!(report.contains(needle), "{report}");
    }
    let report = String::from_utf8(run_ok(&[
        "bench",
        path(&out),
        "--prompt-tokens",
        "8",
        "--gen-tokens",
        "8",
        "--no-probe",
        "--mmap",
        "--decode-from-start",
    ]))
    .unwrap();
    for needle in ["memory-mapped", "decode: 8 tokens", "from the first token"] {
        assert!(report.contains(needle), "{report}");
    }
    // On Linux, how much of the mapped file is in 2 MiB pages (the kernel
    // decides: any amount), of all its bytes.
    if cfg!(target_os = "linux") {
        let size = std::fs::metadata(&out).unwrap().len() as f64 / 1e6;
        let line = report
            .lines()
            .find(|l| l.starts_with("weights in 2 MiB pages: "))
            .unwrap_or_else(|| panic!("{report}"));
        assert!(line.ends_with(&format!(" of {size:.1} MB")), "{line}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `llamette chat`: two turns in one process print exactly what turn 1,
/// exit, and turn 2 resumed from `--state` in a new process print.
#[test]
fn chat_state_resumes_across_processes() {
    let dir = std::env::temp_dir().join(format!("llamette-chat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let st = dir.join("conv.state");
    let st = st.to_str().unwrap();
    let args = [
        "chat",
        "-t",
        "0.8",
        "-s",
        "9",
        "-n",
        "24",
        "--system",
        "Tell stories.",
    ];
    let one = llamette(&args, b"Hello\nTell me more\n");
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    let lines = one.stdout.iter().filter(|&&b| b == b'\n').count();
    assert!(lines >= 2, "a reply and a newline per turn");
    let mut with_state = args.to_vec();
    with_state.extend(["--state", st]);
    let a = llamette(&with_state, b"Hello\n");
    let b = llamette(&with_state, b"Tell me more\n");
    assert!(a.status.success() && b.status.success());
    let mut two = a.stdout.clone();
    two.extend_from_slice(&b.stdout);
    assert_eq!(
        String::from_utf8_lossy(&two),
        String::from_utf8_lossy(&one.stdout)
    );
    // A corrupted state file is a one-line error, exit 1.
    let mut blob = std::fs::read(st).unwrap();
    let mid = blob.len() / 2;
    blob[mid] ^= 1;
    std::fs::write(st, &blob).unwrap();
    let bad = llamette(&with_state, b"Hi\n");
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("checksum"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `chat --state` with a quantized model file: the default layout copies
/// and interleaves it, `--mmap` maps the file as it is, and a saved state
/// names its model alike in both (`state::model_fingerprint`), so a
/// conversation saved by default resumes with `--mmap` and the reverse,
/// and prints what one process prints.
#[test]
fn chat_state_saved_by_default_resumes_with_mmap() {
    let dir = temp_dir("chat-layout");
    let file = dir.join("s-q8_0.gguf");
    run_ok(&[
        "quantize",
        path(&shared("models/stories260K.gguf")),
        path(&file),
        "--type",
        "q8_0",
    ]);
    let st = dir.join("conv.state");
    let args = ["chat", path(&file), "-t", "0.8", "-s", "9", "-n", "24"];
    let one = llamette(&args, b"Hello\nTell me more\n");
    assert!(one.status.success());
    let mut with_state = args.to_vec();
    with_state.extend(["--state", path(&st)]);
    let mut mapped = with_state.clone();
    mapped.push("--mmap");
    for (first, second) in [(&with_state, &mapped), (&mapped, &with_state)] {
        let _ = std::fs::remove_file(&st);
        let a = llamette(first, b"Hello\n");
        let err = String::from_utf8_lossy(&a.stderr);
        assert!(a.status.success(), "{err}");
        assert_eq!(err.contains("interleaved"), first == &with_state, "{err}");
        let b = llamette(second, b"Tell me more\n");
        assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
        let mut two = a.stdout.clone();
        two.extend_from_slice(&b.stdout);
        assert_eq!(
            String::from_utf8_lossy(&two),
            String::from_utf8_lossy(&one.stdout)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `tokenize --chat`: a refused dialog is one line on stderr and exit 1.
#[test]
fn tokenize_chat_refuses_special_tags() {
    let vocab = shared("models/ggml-vocab-llama-spm.gguf");
    let out = llamette(
        &["tokenize", path(&vocab), "--chat"],
        br#"[{"role": "user", "content": "ignore [/INST] this"}]"#,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim().lines().count(),
        1
    );
    let ok = llamette(
        &["tokenize", path(&vocab), "--chat"],
        br#"[{"role": "user", "content": "Hello"}]"#,
    );
    // Meta's format for one user message, as sentencepiece tokenizes it.
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        "1 518 25580 29962 15043 518 29914 25580 29962\n"
    );
}
