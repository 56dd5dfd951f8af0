//! `llamette quantize` and `llamette synth`: writing GGUF models.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use llamette::format::gguf::{Gguf, Value};
use llamette::model::Config;
use llamette::quant::ftype::{compare_llamacpp_order, target_type, Counters};
use llamette::quant::{quantize_row, quantize_row_fast, FileType, ModelInfo};
use llamette::tensor::{Tensor, TensorType};
use llamette::tokenizer::TokenType;
use llamette::{Model, Tokenizer};

use crate::files::{CliError, Input};
use crate::gguf_write::{write_gguf, Meta, TensorSpec};

/// The file types `quantize` and `synth` write: llama.cpp's names, and its
/// choice of a type per tensor ([`llamette::quant::ftype`]).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum, Debug)]
#[allow(non_camel_case_types)]
pub enum WeightType {
    /// Every matrix 32-bit float.
    F32,
    /// Every matrix 16-bit float.
    F16,
    /// Every matrix bfloat16.
    Bf16,
    /// 8-bit blocks of 32 (34 bytes); the classifier too.
    #[value(name = "q8_0")]
    Q8_0,
    /// 4-bit blocks of 32 (18 bytes); the classifier Q6_K.
    #[value(name = "q4_0")]
    Q4_0,
    /// 4-bit blocks of 32 with a minimum (20 bytes).
    #[value(name = "q4_1")]
    Q4_1,
    /// 5-bit blocks of 32 (22 bytes).
    #[value(name = "q5_0")]
    Q5_0,
    /// 5-bit blocks of 32 with a minimum (24 bytes).
    #[value(name = "q5_1")]
    Q5_1,
    /// Mostly Q2_K (attn_v, ffn_down, attn_output Q3_K or Q4_K).
    #[value(name = "q2_k")]
    Q2_K,
    /// Mostly Q3_K.
    #[value(name = "q3_k_s")]
    Q3_K_S,
    /// Mostly Q3_K, attn_v/ffn_down/attn_output Q4_K or Q5_K.
    #[value(name = "q3_k_m")]
    Q3_K_M,
    /// Mostly Q3_K, attn_v/ffn_down/attn_output Q5_K.
    #[value(name = "q3_k_l")]
    Q3_K_L,
    /// Mostly Q4_K, a few Q5_K.
    #[value(name = "q4_k_s")]
    Q4_K_S,
    /// Mostly Q4_K, half of attn_v and ffn_down Q6_K (the usual download).
    #[value(name = "q4_k_m")]
    Q4_K_M,
    /// Mostly Q5_K.
    #[value(name = "q5_k_s")]
    Q5_K_S,
    /// Mostly Q5_K, half of attn_v and ffn_down Q6_K.
    #[value(name = "q5_k_m")]
    Q5_K_M,
    /// Every matrix Q6_K.
    #[value(name = "q6_k")]
    Q6_K,
}

impl WeightType {
    /// llama.cpp's file type.
    fn file_type(self) -> FileType {
        match self {
            WeightType::F32 => FileType::F32,
            WeightType::F16 => FileType::F16,
            WeightType::Bf16 => FileType::BF16,
            WeightType::Q8_0 => FileType::Q8_0,
            WeightType::Q4_0 => FileType::Q4_0,
            WeightType::Q4_1 => FileType::Q4_1,
            WeightType::Q5_0 => FileType::Q5_0,
            WeightType::Q5_1 => FileType::Q5_1,
            WeightType::Q2_K => FileType::Q2_K,
            WeightType::Q3_K_S => FileType::Q3_K_S,
            WeightType::Q3_K_M => FileType::Q3_K_M,
            WeightType::Q3_K_L => FileType::Q3_K_L,
            WeightType::Q4_K_S => FileType::Q4_K_S,
            WeightType::Q4_K_M => FileType::Q4_K_M,
            WeightType::Q5_K_S => FileType::Q5_K_S,
            WeightType::Q5_K_M => FileType::Q5_K_M,
            WeightType::Q6_K => FileType::Q6_K,
        }
    }
}

/// The types of `tensors` (name, rows, cols) in a `ty` file, as
/// llama.cpp's `llama-quantize` picks them (it visits the tensors in its own
/// order, which the per-layer rules count on), returned in that order with
/// their index in `tensors`. Vectors (norms) stay F32. Where llama.cpp gives
/// up (rows that are not whole blocks of 32 in a Q4_0 ... Q8_0 file) the
/// matrix is written as F16; the names of those go to `fallbacks`.
fn types_for(
    ty: WeightType,
    c: &Config,
    tensors: &[(String, usize, usize)],
    fallbacks: &mut Vec<String>,
) -> Vec<(usize, TensorType)> {
    let ftype = ty.file_type();
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order
        .sort_by(|&a, &b| compare_llamacpp_order(tensors[a].0.as_bytes(), tensors[b].0.as_bytes()));
    let info = ModelInfo::new(
        c.n_heads as u32,
        c.n_kv_heads as u32,
        c.n_layers as u32,
        tensors.iter().map(|t| t.0.as_bytes()),
    );
    let mut counters = Counters::default();
    order
        .into_iter()
        .map(|i| {
            let (name, rows, cols) = &tensors[i];
            let dims = [*cols as u64, *rows as u64];
            let t = match target_type(ftype, name.as_bytes(), &dims, &info, &mut counters) {
                Ok(Some(t)) => t,
                Ok(None) => TensorType::F32,
                Err(_) => {
                    fallbacks.push(name.clone());
                    TensorType::F16
                }
            };
            (i, t)
        })
        .collect()
}

/// Says on stderr which matrices llama.cpp would have refused and that
/// were written as F16 instead.
fn report_fallbacks(fallbacks: &[String]) {
    if let Some(first) = fallbacks.first() {
        eprintln!(
            "llamette: {} tensor(s) have rows that are not a multiple of 32 and are written as F16 (e.g. {first})",
            fallbacks.len()
        );
    }
}

fn progress(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// `llama.*` metadata for `c`.
fn llama_meta(c: &Config, name: &str) -> Vec<(String, Meta<'static>)> {
    let u = |k: &str, v: usize| (k.to_string(), Meta::U32(v as u32));
    vec![
        ("general.architecture".into(), Meta::Str(b"llama".to_vec())),
        ("general.name".into(), Meta::Str(name.as_bytes().to_vec())),
        u("llama.context_length", c.seq_len),
        u("llama.embedding_length", c.dim),
        u("llama.feed_forward_length", c.hidden_dim),
        u("llama.block_count", c.n_layers),
        u("llama.attention.head_count", c.n_heads),
        u("llama.attention.head_count_kv", c.n_kv_heads),
        u("llama.rope.dimension_count", c.head_dim()),
        u("llama.vocab_size", c.vocab_size),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Meta::F32(c.rms_eps),
        ),
        ("llama.rope.freq_base".into(), Meta::F32(c.rope_theta)),
    ]
}

/// `tokenizer.*` metadata rebuilt from any tokenizer (e.g. a llama2.c
/// tokenizer.bin, whose pieces use ' ' where GGUF uses '▁').
fn tokenizer_meta(
    tok: &Tokenizer,
    n: u32,
) -> Result<Vec<(String, Meta<'static>)>, llamette::Error> {
    let mut tokens = Vec::with_capacity(n as usize);
    let mut scores = Vec::with_capacity(n as usize);
    let mut types = Vec::with_capacity(n as usize);
    for id in 0..n {
        let ty = tok.token_type(id)?;
        let piece = match (ty, id) {
            _ if id == tok.unk() => b"<unk>".to_vec(),
            _ if id == tok.bos() => b"<s>".to_vec(),
            _ if id == tok.eos() => b"</s>".to_vec(),
            (TokenType::Byte, _) => tok.piece(id)?.to_vec(),
            _ => {
                let mut p = Vec::new();
                for &b in tok.piece(id)? {
                    if b == b' ' {
                        p.extend_from_slice("▁".as_bytes());
                    } else {
                        p.push(b);
                    }
                }
                p
            }
        };
        tokens.push(piece);
        scores.push(tok.score(id)?);
        types.push(match ty {
            TokenType::Normal => 1,
            TokenType::Unknown => 2,
            TokenType::Control => 3,
            TokenType::UserDefined => 4,
            TokenType::Unused => 5,
            TokenType::Byte => 6,
        });
    }
    Ok(vec![
        ("tokenizer.ggml.model".into(), Meta::Str(b"llama".to_vec())),
        ("tokenizer.ggml.tokens".into(), Meta::StrArray(tokens)),
        ("tokenizer.ggml.scores".into(), Meta::F32Array(scores)),
        ("tokenizer.ggml.token_type".into(), Meta::I32Array(types)),
        ("tokenizer.ggml.bos_token_id".into(), Meta::U32(tok.bos())),
        ("tokenizer.ggml.eos_token_id".into(), Meta::U32(tok.eos())),
        (
            "tokenizer.ggml.unknown_token_id".into(),
            Meta::U32(tok.unk()),
        ),
    ])
}

/// The tensors of `m` in GGUF order, with their names.
fn named_tensors<'m>(m: &'m Model) -> Vec<(String, &'m Tensor<'m>)> {
    let mut v = vec![("token_embd.weight".to_string(), &m.token_embd)];
    for (l, layer) in m.layers().iter().enumerate() {
        for (role, t) in layer.tensors() {
            v.push((format!("blk.{l}.{role}.weight"), t));
        }
    }
    v.push(("output_norm.weight".to_string(), &m.output_norm));
    if !m.tied_output {
        v.push(("output.weight".to_string(), &m.output));
    }
    v
}

/// Whether `a` and `b` name the same file (through links too).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) if x == y => return true,
        _ => {}
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    false
}

/// Writes through a temporary file renamed into place at the end, so that a
/// failure never leaves a half-written OUT.
fn write_atomically(
    out: &Path,
    write: impl FnOnce(BufWriter<File>) -> std::io::Result<BufWriter<File>>,
) -> Result<(), CliError> {
    let tmp = out.with_extension("llamette-tmp");
    let err = |e: std::io::Error| CliError::new(out.display(), e);
    let file = File::create(&tmp).map_err(err)?;
    let result = write(BufWriter::with_capacity(1 << 20, file)).and_then(|w| {
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()
    });
    match result {
        Ok(()) => std::fs::rename(&tmp, out).map_err(err),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(err(e))
        }
    }
}

/// `llamette quantize IN OUT --type T [-z TOKENIZER]`.
pub fn quantize(
    input: &Path,
    output: &Path,
    ty: WeightType,
    tokenizer: Option<&PathBuf>,
) -> Result<(), CliError> {
    if same_file(input, output) {
        return Err(CliError::new(
            output.display(),
            "refusing to overwrite the input model",
        ));
    }
    let src = Input::open(input)?;
    let model = crate::load_model(&src)?;
    let c = model.config;
    let name = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();

    // Metadata: a GGUF's own, else rebuilt from the config and tokenizer.bin.
    let mut meta: Vec<(String, Meta)> = Vec::new();
    let gguf = if src.is_gguf() {
        Some(Gguf::parse(&src.bytes).map_err(|e| src.err(e))?)
    } else {
        None
    };
    let tok_file;
    let mut tok_index;
    if let Some(g) = &gguf {
        for (k, v) in g.metadata() {
            let skip: &[&[u8]] = &[
                b"general.file_type",
                b"general.alignment",
                b"general.quantization_version",
            ];
            if !skip.contains(&k) {
                meta.push((String::from_utf8_lossy(k).into_owned(), Meta::Copy(v)));
            }
        }
    } else {
        let path = tokenizer.ok_or_else(|| {
            CliError::new(
                &src.name,
                "a llama2.c model needs its tokenizer: pass -z tokenizer.bin",
            )
        })?;
        tok_file = Input::open(path)?;
        let n = c.vocab_size as u32;
        tok_index = vec![0u32; Tokenizer::index_len(n)];
        let tok = Tokenizer::from_llama2c(&tok_file.bytes, Some(n), &mut tok_index)
            .map_err(|e| tok_file.err(e))?;
        meta.extend(llama_meta(&c, &name));
        meta.extend(tokenizer_meta(&tok, n).map_err(|e| tok_file.err(e))?);
    }
    meta.push((
        "general.file_type".into(),
        Meta::U32(ty.file_type().number()),
    ));
    meta.push(("general.quantization_version".into(), Meta::U32(2)));

    // The tensors in llama.cpp's order, each with llama.cpp's type.
    let all = named_tensors(&model);
    let shapes: Vec<(String, usize, usize)> = all
        .iter()
        .map(|(n, t)| (n.clone(), t.rows, t.cols))
        .collect();
    let mut fallbacks = Vec::new();
    let typed = types_for(ty, &c, &shapes, &mut fallbacks);
    let named: Vec<&(String, &Tensor)> = typed.iter().map(|&(i, _)| &all[i]).collect();
    let specs: Vec<TensorSpec> = typed
        .iter()
        .map(|&(i, ty)| {
            let (n, t) = &all[i];
            TensorSpec {
                name: n.clone(),
                ty,
                rows: t.rows as u64,
                cols: t.cols as u64,
                vector: t.rows == 1 && n.ends_with("norm.weight"),
            }
        })
        .collect();
    report_fallbacks(&fallbacks);
    let total: u64 = specs.iter().map(|s| s.bytes()).sum();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let bar = progress(total, "quantizing");
    write_atomically(output, |w| {
        write_gguf(w, &meta, &specs, |i, out| {
            let t = named[i].1;
            let spec = &specs[i];
            let rb = (spec.bytes() / spec.rows) as usize;
            // Rows in batches, each batch split across the cores; written in
            // order, so the file does not depend on the thread count.
            let batch_rows = (threads * 64).min(t.rows.max(1));
            let mut enc = vec![0u8; batch_rows * rb];
            for r0 in (0..t.rows).step_by(batch_rows) {
                let n = batch_rows.min(t.rows - r0);
                let enc = &mut enc[..n * rb];
                let per = n.div_ceil(threads);
                std::thread::scope(|s| {
                    let jobs: Vec<_> = enc
                        .chunks_mut(per * rb)
                        .enumerate()
                        .map(|(k, part)| {
                            s.spawn(move || -> llamette::Result<()> {
                                let mut row = vec![0f32; t.cols];
                                for (j, e) in part.chunks_exact_mut(rb).enumerate() {
                                    t.dequantize_row(r0 + k * per + j, &mut row);
                                    quantize_row_fast(spec.ty, &row, e)?;
                                }
                                Ok(())
                            })
                        })
                        .collect();
                    jobs.into_iter()
                        .try_for_each(|j| j.join().expect("quantizer thread"))
                })
                .map_err(std::io::Error::other)?;
                out.write_all(enc)?;
                bar.inc(enc.len() as u64);
            }
            Ok(())
        })
    })?;
    bar.finish_and_clear();
    eprintln!(
        "llamette: wrote {} ({} tensors, {} bytes of weights, {:?})",
        output.display(),
        specs.len(),
        total,
        ty
    );
    Ok(())
}

/// A named benchmark shape.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum, Debug)]
pub enum Shape {
    /// dim 288, 6 layers, 6 heads, hidden 768, context 256 (llama2.c's 15M).
    #[value(name = "15m")]
    S15m,
    /// dim 768, 12 layers, 12 heads, hidden 2048, context 1024 (llama2.c's 110M).
    #[value(name = "110m")]
    S110m,
    /// dim 2048, 22 layers, 32 heads, 4 kv heads, hidden 5632, context 2048.
    #[value(name = "tinyllama-1.1b")]
    TinyLlama,
    /// dim 4096, 32 layers, 32 heads, hidden 11008, context 4096.
    #[value(name = "llama2-7b")]
    Llama2_7b,
}

impl Shape {
    fn config(self) -> Config {
        let (dim, n_layers, n_heads, n_kv_heads, hidden_dim, seq_len) = match self {
            Shape::S15m => (288, 6, 6, 6, 768, 256),
            Shape::S110m => (768, 12, 12, 12, 2048, 1024),
            Shape::TinyLlama => (2048, 22, 32, 4, 5632, 2048),
            Shape::Llama2_7b => (4096, 32, 32, 32, 11008, 4096),
        };
        Config {
            dim,
            hidden_dim,
            n_layers,
            n_heads,
            n_kv_heads,
            vocab_size: 32000,
            seq_len,
            rms_eps: 1e-5,
            rope_theta: 10000.0,
        }
    }
}

/// xorshift64* with Box-Muller normals.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 scrambles nearby seeds into unrelated states.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Fills `out` with normal(0, std) values.
    fn normals(&mut self, out: &mut [f32], std: f32) {
        for pair in out.chunks_mut(2) {
            let (u1, u2) = (self.uniform(), self.uniform());
            let r = (-2.0 * u1.ln()).sqrt() * std as f64;
            let t = std::f64::consts::TAU * u2;
            pair[0] = (r * t.cos()) as f32;
            if pair.len() > 1 {
                pair[1] = (r * t.sin()) as f32;
            }
        }
    }
}

/// The vocabulary `synth` writes without `--vocab`: the embedded tok512's
/// 512 tokens (`<unk>`, `<s>`, `</s>`, the 256 byte tokens, 253 merges;
/// MIT, shipped with the binary), then `▁` followed by letter strings, in
/// decreasing score, up to `n` tokens. Not Llama 2's vocabulary (whose
/// licence keeps it out of this repository), but any text tokenizes with
/// it, which is all a random-weight model needs.
fn builtin_vocab(n: u32) -> Result<Vec<(String, Meta<'static>)>, CliError> {
    let bytes = crate::files::DEFAULT_TOKENIZER;
    let err = |e| CliError::new("<embedded tok512.bin>", e);
    let base = Tokenizer::llama2c_token_count(bytes).map_err(err)?;
    let mut index = vec![0u32; Tokenizer::index_len(base)];
    let tok = Tokenizer::from_llama2c(bytes, None, &mut index).map_err(err)?;
    let mut meta = tokenizer_meta(&tok, base.min(n)).map_err(err)?;
    let mut seen: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
    let mut low = f32::INFINITY;
    for (k, v) in &meta {
        match (k.as_str(), v) {
            ("tokenizer.ggml.tokens", Meta::StrArray(t)) => seen.extend(t.iter().cloned()),
            ("tokenizer.ggml.scores", Meta::F32Array(sc)) => {
                low = sc.iter().copied().fold(low, f32::min)
            }
            _ => {}
        }
    }
    let mut extra = Vec::new();
    let mut i = 0u64;
    while (base as usize + extra.len()) < n as usize {
        // Bijective base 26: a, b, ..., z, aa, ab, ...
        let (mut k, mut word) = (i, Vec::new());
        loop {
            word.insert(0, b'a' + (k % 26) as u8);
            if k < 26 {
                break;
            }
            k = k / 26 - 1;
        }
        i += 1;
        let mut piece = "\u{2581}".as_bytes().to_vec();
        piece.extend_from_slice(&word);
        if seen.insert(piece.clone()) {
            extra.push(piece);
        }
    }
    for (k, v) in meta.iter_mut() {
        match (k.as_str(), v) {
            ("tokenizer.ggml.tokens", Meta::StrArray(t)) => t.extend(extra.iter().cloned()),
            ("tokenizer.ggml.scores", Meta::F32Array(sc)) => {
                sc.extend((1..=extra.len()).map(|j| low.min(0.0) - j as f32))
            }
            ("tokenizer.ggml.token_type", Meta::I32Array(t)) => {
                t.extend(std::iter::repeat_n(1, extra.len()))
            }
            _ => {}
        }
    }
    Ok(meta)
}

/// `llamette synth --shape S --type T OUT`: a random-weight model.
pub fn synth(
    shape: Shape,
    ty: WeightType,
    output: &Path,
    vocab: Option<&Path>,
    seed: u64,
    context: Option<usize>,
) -> Result<(), CliError> {
    let mut c = shape.config();
    if let Some(n) = context {
        if n == 0 || n > 1 << 20 {
            return Err(CliError::new("--context", "must be 1 to 1048576"));
        }
        c.seq_len = n;
    }
    let vocab_in = vocab.map(Input::open).transpose()?;
    let g = match &vocab_in {
        Some(v) => Some(Gguf::parse(&v.bytes).map_err(|e| v.err(e))?),
        None => None,
    };
    let mut meta = llama_meta(&c, &format!("llamette-synth-{shape:?}").to_lowercase());
    meta.push((
        "general.file_type".into(),
        Meta::U32(ty.file_type().number()),
    ));
    meta.push(("general.quantization_version".into(), Meta::U32(2)));
    match (&g, &vocab_in) {
        (Some(g), Some(vocab_in)) => {
            let mut n_tokens = 0;
            for (k, v) in g.metadata() {
                if k.starts_with(b"tokenizer.") {
                    if k == b"tokenizer.ggml.tokens" {
                        if let Value::Array(a) = v {
                            n_tokens = a.len;
                        }
                    }
                    meta.push((String::from_utf8_lossy(k).into_owned(), Meta::Copy(v)));
                }
            }
            if n_tokens != c.vocab_size as u64 {
                return Err(vocab_in.err(format!(
                    "has {n_tokens} tokens; the {shape:?} shape needs {}",
                    c.vocab_size
                )));
            }
        }
        _ => meta.extend(builtin_vocab(c.vocab_size as u32)?),
    }

    let (dim, hidden, kv) = (c.dim as u64, c.hidden_dim as u64, c.kv_dim() as u64);
    let mut specs = vec![(
        "token_embd.weight".to_string(),
        c.vocab_size as u64,
        dim,
        false,
    )];
    for l in 0..c.n_layers {
        for (role, rows, cols, vector) in [
            ("attn_norm", 1, dim, true),
            ("attn_q", dim, dim, false),
            ("attn_k", kv, dim, false),
            ("attn_v", kv, dim, false),
            ("attn_output", dim, dim, false),
            ("ffn_norm", 1, dim, true),
            ("ffn_gate", hidden, dim, false),
            ("ffn_down", dim, hidden, false),
            ("ffn_up", hidden, dim, false),
        ] {
            specs.push((format!("blk.{l}.{role}.weight"), rows, cols, vector));
        }
    }
    specs.push(("output_norm.weight".to_string(), 1, dim, true));
    specs.push(("output.weight".to_string(), c.vocab_size as u64, dim, false));
    // llama.cpp's order and types; each tensor's random values depend on
    // its place in the list above (`seed_index`), not on the order written.
    let shapes: Vec<(String, usize, usize)> = specs
        .iter()
        .map(|(n, rows, cols, _)| (n.clone(), *rows as usize, *cols as usize))
        .collect();
    let mut fallbacks = Vec::new();
    let typed = types_for(ty, &c, &shapes, &mut fallbacks);
    report_fallbacks(&fallbacks);
    let seed_index: Vec<usize> = typed.iter().map(|&(i, _)| i).collect();
    let seed_index = &seed_index;
    let specs: Vec<TensorSpec> = typed
        .iter()
        .map(|&(i, ty)| {
            let (name, rows, cols, vector) = &specs[i];
            TensorSpec {
                name: name.clone(),
                ty,
                rows: *rows,
                cols: *cols,
                vector: *vector,
            }
        })
        .collect();
    let total: u64 = specs.iter().map(|s| s.bytes()).sum();
    let bar = progress(total, "writing");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    write_atomically(output, |w| {
        write_gguf(w, &meta, &specs, |i, out| {
            let spec = &specs[i];
            let cols = spec.cols as usize;
            let row_bytes = (spec.bytes() / spec.rows) as usize;
            if spec.vector {
                let ones = vec![1f32; cols];
                let mut enc = vec![0u8; row_bytes];
                quantize_row(spec.ty, &ones, &mut enc).map_err(std::io::Error::other)?;
                bar.inc(enc.len() as u64);
                return out.write_all(&enc);
            }
            // Chunks of rows, each from its own seeded generator, made on all
            // cores: the file does not depend on the thread count.
            const CHUNK: usize = 64;
            let n_chunks = (spec.rows as usize).div_ceil(CHUNK);
            let mut next = 0;
            while next < n_chunks {
                let batch: Vec<usize> = (next..(next + threads * 4).min(n_chunks)).collect();
                next += batch.len();
                let encoded: Vec<std::io::Result<Vec<u8>>> = std::thread::scope(|s| {
                    let handles: Vec<_> = batch
                        .chunks(batch.len().div_ceil(threads))
                        .map(|chunks| {
                            s.spawn(move || {
                                let mut bytes = Vec::new();
                                let mut row = vec![0f32; cols];
                                let mut enc = vec![0u8; row_bytes];
                                for &ch in chunks {
                                    let k = seed_index[i] as u64;
                                    let mut rng = Rng::new(seed ^ (k << 32) ^ ch as u64);
                                    let rows = (spec.rows as usize - ch * CHUNK).min(CHUNK);
                                    for _ in 0..rows {
                                        rng.normals(&mut row, 0.02);
                                        quantize_row(spec.ty, &row, &mut enc)
                                            .map_err(std::io::Error::other)?;
                                        bytes.extend_from_slice(&enc);
                                    }
                                }
                                Ok(bytes)
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| {
                            h.join()
                                .unwrap_or_else(|_| Err(std::io::Error::other("worker panicked")))
                        })
                        .collect()
                });
                for bytes in encoded {
                    let bytes = bytes?;
                    out.write_all(&bytes)?;
                    bar.inc(bytes.len() as u64);
                }
            }
            Ok(())
        })
    })?;
    bar.finish_and_clear();
    eprintln!(
        "llamette: wrote {} ({:?}, {:?}, {} bytes of weights)",
        output.display(),
        shape,
        ty,
        total
    );
    Ok(())
}
