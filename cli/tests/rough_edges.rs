//! The `llamette` binary as a new user meets it: closed pipes, negative
//! numbers, long prompts, mismatched or wrong files, `synth` outside the
//! development checkout, and the statistics line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};

fn shared(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared")
        .join(rel)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("llamette-edges-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs llamette in `dir` with `stdin`, capturing stdout and stderr.
fn run_in(dir: Option<&Path>, args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llamette"));
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let mut child = cmd.spawn().expect("run llamette");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn run(args: &[&str]) -> Output {
    run_in(None, args, b"")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit status 0, or killed by SIGPIPE (141 in a shell), as Unix tools end
/// on a closed pipe; never a panic (101).
fn quiet_end(s: ExitStatus) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if s.signal() == Some(13) {
            return true;
        }
    }
    s.code() == Some(0)
}

/// Runs llamette with stdout (and stderr if `close_stderr`) already closed
/// by the reader, as `... | head -c 10` ends up.
fn run_closed(args: &[&str], stdin: &[u8], close_stderr: bool) -> (ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_llamette"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let err = child.stderr.take().unwrap();
    let reader = if close_stderr {
        drop(err);
        None
    } else {
        Some(std::thread::spawn(move || {
            let mut s = String::new();
            let mut err = err;
            let _ = std::io::Read::read_to_string(&mut err, &mut s);
            s
        }))
    };
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    drop(input);
    let status = child.wait().unwrap();
    (
        status,
        reader.map(|r| r.join().unwrap()).unwrap_or_default(),
    )
}

#[test]
fn closed_pipes_end_quietly() {
    let text = "Once upon a time there was a little dog. ".repeat(50_000);
    let tok = shared("models/tok512.bin");
    let (status, err) = run_closed(&["tokenize", path(&tok)], text.as_bytes(), false);
    assert!(quiet_end(status), "{status:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    // `generate -n 500 2>&1 | head -c 10`: stdout and stderr both closed.
    let (status, _) = run_closed(&["generate", "-n", "500"], b"", true);
    assert!(quiet_end(status), "{status:?}");
    let (status, err) = run_closed(&["generate", "-n", "500"], b"", false);
    assert!(quiet_end(status), "{status:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn negative_numbers_are_read_then_refused_naming_the_flag() {
    for (args, flag) in [
        (vec!["generate", "-t", "-0.5"], "-t/--temperature"),
        (vec!["generate", "--temperature", "-1"], "-t/--temperature"),
        (vec!["generate", "-p", "-0.1"], "-p/--top-p"),
        (vec!["generate", "--min-p", "2"], "--min-p"),
        (
            vec!["generate", "--repeat-penalty", "-1"],
            "--repeat-penalty",
        ),
        (vec!["generate", "-t", "nan"], "-t/--temperature"),
        (vec!["chat", "-t", "-0.5"], "-t/--temperature"),
        (vec!["generate", "-s", "-5"], "--seed"),
        (vec!["generate", "-n", "-3"], "--steps"),
    ] {
        let out = run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(!err.contains("unexpected argument"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn usage_errors_exit_2_and_file_errors_exit_1() {
    let out = run(&["generate", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = run(&["info", "/no/such/file.gguf"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("/no/such/file.gguf"));
}

#[test]
fn a_prompt_longer_than_the_steps_is_never_cut_silently() {
    let prompt = "Once upon a time, there was a little girl named Lily. ".repeat(20);
    let out = run(&["generate", "-t", "0", "-n", "16", "-i", &prompt]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("warning: the prompt is"), "{err}");
    assert!(err.contains("-n is 16"), "{err}");
    assert!(err.contains("only its first 16 tokens are run"), "{err}");
    // Longer than the whole context.
    let out = run(&["generate", "-t", "0", "-n", "0", "-i", &prompt.repeat(3)]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("the model's context is 512 positions"),
        "{err}"
    );
    // A prompt that fits: no warning.
    let out = run(&["generate", "-t", "0", "-n", "64", "-i", "Once upon a time"]);
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

#[test]
fn a_tokenizer_of_another_vocabulary_size_is_refused() {
    // Larger than the embedded model's 512 tokens: a llama2.c file and a GGUF.
    for tok in [
        "models/llama2-tokenizer.bin",
        "models/ggml-vocab-llama-spm.gguf",
    ] {
        let out = run(&["generate", "-z", path(&shared(tok)), "-n", "8"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{tok}: {err}");
        assert!(
            err.contains("the tokenizer has 32000 tokens but the model's vocabulary has 512"),
            "{tok}: {err}"
        );
        assert!(out.stdout.is_empty());
    }
    // Smaller: the GGUF stories260K with the embedded tok512 is fine, a
    // 32 000-token model with tok512 is not (see synth below).
    let out = run(&[
        "generate",
        path(&shared("models/stories260K.gguf")),
        "-z",
        path(&shared("models/tok512.bin")),
        "-n",
        "8",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn wrong_kinds_of_files_say_what_they_are() {
    let dir = temp_dir("kinds");
    let safetensors = dir.join("model.safetensors");
    let mut st = 9u64.to_le_bytes().to_vec();
    st.extend_from_slice(b"{\"a\": 1}  ");
    std::fs::write(&safetensors, st).unwrap();
    let zip = dir.join("consolidated.00.pth");
    std::fs::write(&zip, b"PK\x03\x04\x14\x00\x00\x00\x08\x00archive/data.pkl").unwrap();
    let pickle = dir.join("model.pt");
    std::fs::write(&pickle, b"\x80\x02}q\x00(X\x05\x00\x00\x00model").unwrap();
    let tok512 = shared("models/tok512.bin");
    let spm = shared("models/llama2-tokenizer.model");
    let vocab_gguf = shared("models/ggml-vocab-llama-spm.gguf");
    let llama2c_model = shared("models/stories260K.bin");
    for (args, needle) in [
        (vec!["info", path(&tok512)], "a llama2.c tokenizer"),
        (vec!["generate", path(&tok512)], "a llama2.c tokenizer"),
        (vec!["info", path(&spm)], "SentencePiece .model"),
        (vec!["generate", "-z", path(&spm)], "SentencePiece .model"),
        (vec!["tokenize", path(&spm)], "SentencePiece .model"),
        (vec!["info", path(&vocab_gguf)], "vocabulary-only GGUF"),
        (vec!["bench", path(&vocab_gguf)], "vocabulary-only GGUF"),
        (vec!["info", path(&safetensors)], "safetensors"),
        (vec!["generate", "-z", path(&safetensors)], "safetensors"),
        (vec!["info", path(&zip)], "PyTorch checkpoint"),
        (vec!["info", path(&pickle)], "PyTorch checkpoint"),
        (
            vec!["tokenize", path(&llama2c_model)],
            "a llama2.c model, not a tokenizer",
        ),
        (
            vec!["generate", "-z", path(&llama2c_model)],
            "a llama2.c model, not a tokenizer",
        ),
    ] {
        let out = run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(err.contains("expected a"), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn synth_works_outside_the_checkout() {
    // An empty directory: no ../shared beside it.
    let dir = temp_dir("synth");
    let out = run_in(
        Some(&dir),
        &["synth", "--shape", "15m", "--type", "q8_0", "m.gguf"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let model = dir.join("m.gguf");
    let info = run(&["info", path(&model)]);
    assert!(
        String::from_utf8_lossy(&info.stdout).contains("vocab 32000"),
        "{}",
        stderr(&info)
    );
    // Its built-in vocabulary tokenizes and round-trips through a chat turn.
    let out = run_in(None, &["tokenize", path(&model)], b"Hello world");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!out.stdout.is_empty());
    let out = run_in(None, &["chat", path(&model), "-n", "4"], b"Hello\n");
    assert!(out.status.success(), "{}", stderr(&out));
    // A 32 000-token model refuses a 512-token tokenizer.
    let out = run(&[
        "generate",
        path(&model),
        "-z",
        path(&shared("models/tok512.bin")),
    ]);
    assert!(
        stderr(&out).contains("the tokenizer has 512 tokens but the model's vocabulary has 32000"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `N positions run (P prompt + F sampled tokens fed back); S tokens sampled`.
fn stats(err: &str) -> (usize, usize, usize, usize) {
    let line = err
        .lines()
        .find(|l| l.contains("positions run"))
        .unwrap_or_else(|| panic!("{err}"));
    let nums: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(4)
        .map(|s| s.parse().unwrap())
        .collect();
    (nums[0], nums[1], nums[2], nums[3])
}

#[test]
fn the_statistics_add_up_and_name_the_clock_seed() {
    let out = run(&["generate", "-n", "40", "-t", "0.8"]);
    let err = stderr(&out);
    let (positions, prompt, fed, sampled) = stats(&err);
    assert_eq!(positions, prompt + fed, "{err}");
    assert_eq!(positions, 40, "{err}");
    assert_eq!(sampled, fed + 1, "{err}");
    // The seed taken from the clock, and it repeats the run.
    let seed_line = err
        .lines()
        .find(|l| l.contains("seed"))
        .unwrap_or_else(|| panic!("{err}"));
    let seed: String = seed_line
        .split_whitespace()
        .nth(2)
        .unwrap()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let again = run(&["generate", "-n", "40", "-t", "0.8", "-s", &seed]);
    assert_eq!(again.stdout, out.stdout, "seed {seed}");
    assert!(!stderr(&again).contains("from the clock"));
    // With a prompt.
    let out = run(&["generate", "-n", "30", "-t", "0", "-i", "Once upon a time"]);
    let err = stderr(&out);
    let (positions, prompt, fed, _) = stats(&err);
    assert_eq!((positions, prompt + fed), (30, 30), "{err}");
}

#[test]
fn bench_counts_one_thread_in_the_singular() {
    let model = shared("models/stories260K.bin");
    let out = run(&[
        "bench",
        path(&model),
        "--prompt-tokens",
        "4",
        "--gen-tokens",
        "4",
        "--threads",
        "1",
    ]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(report.contains("(1 thread)"), "{report}");
    assert!(!report.contains("1 threads"), "{report}");
}
