//! `llamette`: generate text, tokenize, and describe models.
//!
//! The flags of `generate` keep llama2.c's `run.c` spellings and meanings so
//! that scripts written for it work unchanged; its stdout is exactly what
//! run.c prints, statistics go to stderr.

mod bench;
mod convert;
mod dequantize;
mod files;
mod gguf_write;
mod info;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use llamette::format::gguf::Gguf;
use llamette::parallel::ThreadPool;
use llamette::session::KvType;
use llamette::{Model, Sampler, SamplerParams, Session, SessionParams, Tokenizer};

use files::{CliError, Input};

#[derive(Parser)]
#[command(
    name = "llamette",
    version,
    about = "An embeddable Llama 2 inference engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text (llama2.c run.c's flags and output).
    Generate(GenerateArgs),
    /// Print the token ids of stdin (read as UTF-8, as it is).
    Tokenize(TokenizeArgs),
    /// Describe a model: format, shapes, tensor types, sizes, session memory.
    Info(InfoArgs),
    /// Convert a GGUF or llama2.c model into a GGUF of another weight type.
    Quantize(QuantizeArgs),
    /// Write a random-weight model of a named shape (for benchmarks).
    Synth(SynthArgs),
    /// Measure prompt and decode speed, and the fraction of memory bandwidth reached.
    Bench(BenchArgs),
    /// Write one tensor of a GGUF file as little-endian f32 values (to
    /// compare with other tools).
    Dequantize(DequantizeArgs),
}

#[derive(clap::Args)]
struct DequantizeArgs {
    /// A GGUF file.
    file: PathBuf,
    /// The tensor's name, e.g. blk.0.attn_q.weight.
    tensor: String,
    /// Where to write the values (row after row, 4 bytes each).
    output: PathBuf,
}

#[derive(clap::Args)]
struct QuantizeArgs {
    /// The model to read (GGUF or llama2.c .bin).
    input: PathBuf,
    /// The GGUF to write (never the input).
    output: PathBuf,
    /// Weight type of the matrices (norms stay F32; rows that are not a
    /// multiple of 32 fall back to F16).
    #[arg(long = "type", value_enum)]
    ty: convert::WeightType,
    /// The tokenizer of a llama2.c model (tokenizer.bin).
    #[arg(short = 'z', long = "tokenizer")]
    tokenizer: Option<PathBuf>,
}

#[derive(clap::Args)]
struct SynthArgs {
    /// The model shape.
    #[arg(long, value_enum)]
    shape: convert::Shape,
    /// Weight type of the matrices.
    #[arg(long = "type", value_enum)]
    ty: convert::WeightType,
    /// Where to write the GGUF.
    output: PathBuf,
    /// A GGUF whose tokenizer.* metadata is copied (the Llama 2 vocabulary).
    #[arg(long, default_value = "../shared/models/ggml-vocab-llama-spm.gguf")]
    vocab: PathBuf,
    /// Seed of the weights.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// The model (GGUF or llama2.c .bin).
    model: PathBuf,
    /// Threads (0: one per core).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Prompt length to prefill.
    #[arg(long = "prompt-tokens", default_value_t = 128)]
    prompt_tokens: usize,
    /// Tokens to generate after the prompt.
    #[arg(long = "gen-tokens", default_value_t = 64)]
    gen_tokens: usize,
    /// Skip the memory bandwidth probe.
    #[arg(long = "no-probe")]
    no_probe: bool,
    /// Copy the weights into anonymous memory backed by huge pages instead
    /// of mapping the file (costs the model's size in RAM).
    #[arg(long = "huge-pages")]
    huge_pages: bool,
    /// Interleave the quantized matrices for the SIMD kernels (implies
    /// --huge-pages: the copy is rewritten in place; see `llamette::repack`).
    #[arg(long)]
    repack: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Decode {
    /// Exactly what llama2.c's run.c prints (bytes of multi-byte characters
    /// that were encoded as byte tokens are skipped, as run.c does).
    Llama2c,
    /// Whole UTF-8 characters, held back until complete; control tokens print nothing.
    Utf8,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum KvArg {
    F32,
    F16,
}

#[derive(clap::Args)]
struct GenerateArgs {
    /// A .gguf or llama2.c .bin model; the embedded stories260K when absent.
    model: Option<PathBuf>,
    /// Tokenizer (llama2.c tokenizer.bin or GGUF); default: the model's own
    /// vocabulary (GGUF), the embedded tok512.bin (embedded model), or
    /// tokenizer.bin in the current directory (run.c's default).
    #[arg(short = 'z', long = "tokenizer")]
    tokenizer: Option<PathBuf>,
    /// The prompt.
    #[arg(short = 'i', long = "prompt", default_value = "")]
    prompt: String,
    /// Temperature; 0 is greedy.
    #[arg(short = 't', long = "temperature", default_value_t = 1.0)]
    temperature: f32,
    /// Top-p (nucleus); values outside (0, 1) turn it off.
    #[arg(short = 'p', long = "top-p", default_value_t = 0.9)]
    top_p: f32,
    /// Random seed; 0 or absent takes the current time, as run.c does.
    #[arg(short = 's', long = "seed", default_value_t = 0)]
    seed: u64,
    /// Positions to run, prompt included; 0 or more than the context means the whole context.
    #[arg(short = 'n', long = "steps", default_value_t = 256)]
    steps: usize,
    /// Keep only the K most likely tokens (0: off).
    #[arg(long = "top-k", default_value_t = 0)]
    top_k: usize,
    /// Drop tokens less likely than this fraction of the most likely (0: off).
    #[arg(long = "min-p", default_value_t = 0.0)]
    min_p: f32,
    /// Repetition penalty over the last 64 tokens (1: off).
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    repeat_penalty: f32,
    /// KV cache element type.
    #[arg(long = "kv", value_enum, default_value_t = KvArg::F32)]
    kv: KvArg,
    /// How to turn tokens into text.
    #[arg(long = "decode", value_enum, default_value_t = Decode::Llama2c)]
    decode: Decode,
    /// Threads for the matrix products (0: one per core).
    #[arg(long = "threads", default_value_t = 1)]
    threads: usize,
    /// Prompt tokens run together per weight pass (0: the library's default).
    #[arg(long = "batch", default_value_t = 0)]
    batch: usize,
    /// Copy the model into memory (huge pages) and interleave its quantized
    /// matrices for the SIMD kernels (see `llamette::repack`).
    #[arg(long)]
    repack: bool,
}

#[derive(clap::Args)]
struct TokenizeArgs {
    /// A GGUF (a vocabulary-only one too) or a llama2.c tokenizer.bin.
    model_or_tokenizer: PathBuf,
    /// Put the BOS token first.
    #[arg(long)]
    bos: bool,
}

#[derive(clap::Args)]
struct InfoArgs {
    /// A .gguf or llama2.c .bin model.
    model: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(a) => generate(a),
        Command::Tokenize(a) => tokenize(a),
        Command::Info(a) => info::info(&a.model),
        Command::Quantize(a) => convert::quantize(&a.input, &a.output, a.ty, a.tokenizer.as_ref()),
        Command::Synth(a) => convert::synth(a.shape, a.ty, &a.output, &a.vocab, a.seed),
        Command::Bench(a) => bench::bench(
            &a.model,
            a.threads,
            a.prompt_tokens,
            a.gen_tokens,
            !a.no_probe,
            a.huge_pages || a.repack,
            a.repack,
        ),
        Command::Dequantize(a) => dequantize::dequantize(&a.file, &a.tensor, &a.output),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("llamette: {e}");
            ExitCode::from(1)
        }
    }
}

/// A tokenizer's bytes (a file of its own, or the model's GGUF) and the
/// index built over them.
struct TokenizerData<'b> {
    name: &'b str,
    bytes: &'b [u8],
    index: Vec<u32>,
}

impl<'b> TokenizerData<'b> {
    /// Sizes the index for `input` (GGUF or tokenizer.bin).
    fn new(name: &'b str, bytes: &'b [u8]) -> Result<TokenizerData<'b>, CliError> {
        let err = |e| CliError::new(name, e);
        let count = if bytes.starts_with(b"GGUF") {
            Tokenizer::gguf_token_count(&Gguf::parse(bytes).map_err(err)?).map_err(err)?
        } else {
            Tokenizer::llama2c_token_count(bytes).map_err(err)?
        };
        Ok(TokenizerData {
            name,
            bytes,
            index: vec![0u32; Tokenizer::index_len(count)],
        })
    }

    /// The tokenizer, checked to cover a vocabulary of `n_tokens` when given.
    fn tokenizer(&mut self, n_tokens: Option<u32>) -> Result<Tokenizer<'_>, CliError> {
        let name = self.name;
        let err = |e| CliError::new(name, e);
        let t = if self.bytes.starts_with(b"GGUF") {
            Tokenizer::from_gguf(&Gguf::parse(self.bytes).map_err(err)?, &mut self.index)
        } else {
            Tokenizer::from_llama2c(self.bytes, n_tokens, &mut self.index)
        }
        .map_err(err)?;
        if let Some(n) = n_tokens {
            if t.n_tokens() < n {
                return Err(err(llamette::Error::TokenizerTooSmall {
                    tokenizer: t.n_tokens(),
                    model: n,
                }));
            }
        }
        Ok(t)
    }
}

/// A session buffer: 8-byte aligned, as `Session::ALIGN` asks.
fn session_buffer(bytes: usize) -> Vec<u64> {
    vec![0u64; bytes.div_ceil(8)]
}

fn generate(a: GenerateArgs) -> Result<(), CliError> {
    let mut model_in = match (&a.model, a.repack) {
        (Some(p), true) => Input::open_in_huge_pages(p)?,
        _ => files::open_or(a.model.as_ref(), Input::default_model)?,
    };
    if a.repack {
        let name = model_in.name.clone();
        // The embedded model is read-only, and has no quantized matrix.
        if let Some(bytes) = model_in.bytes_mut() {
            let done =
                llamette::repack::repack_in_place(bytes).map_err(|e| CliError::new(&name, e))?;
            eprintln!("interleaved {} matrices", done.tensors);
        }
    }
    let model = Model::load(&model_in.bytes).map_err(|e| model_in.err(e))?;
    let vocab = model.config.vocab_size as u32;

    // The tokenizer: -z, else the model's own vocabulary (GGUF), else the
    // embedded one (embedded model), else run.c's default ./tokenizer.bin.
    let tok_file = match (&a.tokenizer, &a.model) {
        (Some(p), _) => Some(Input::open(p)?),
        (None, None) => Some(Input::default_tokenizer()),
        (None, Some(_)) if model_in.is_gguf() => None,
        (None, Some(_)) => Some(Input::open(std::path::Path::new("tokenizer.bin")).map_err(
            |e| {
                CliError::new(
                    &model_in.name,
                    format!("a llama2.c model needs a tokenizer: pass -z TOKENIZER ({e})"),
                )
            },
        )?),
    };
    let tok_src = tok_file.as_ref().unwrap_or(&model_in);
    let mut tok_data = TokenizerData::new(&tok_src.name, &tok_src.bytes)?;
    let tok = tok_data.tokenizer(Some(vocab))?;

    // run.c: 0 or more than the context means the whole context.
    let seq_len = model.config.seq_len;
    let steps = if a.steps == 0 || a.steps > seq_len {
        seq_len
    } else {
        a.steps
    };

    // The prompt, with BOS, as run.c encodes it.
    let mut work = vec![0u32; Tokenizer::encode_work_len(a.prompt.len())];
    let n_prompt = tok
        .encode(&a.prompt, true, &mut work)
        .map_err(|e| CliError::new("prompt", e))?;
    let prompt = &work[..n_prompt];

    let params = SessionParams {
        context: steps,
        batch: a.batch,
        kv_type: match a.kv {
            KvArg::F32 => KvType::F32,
            KvArg::F16 => KvType::F16,
        },
    };
    let session_bytes = Session::required_bytes(&model, &params).map_err(|e| model_in.err(e))?;
    let mut buf = session_buffer(session_bytes);
    let pool = ThreadPool::new(a.threads);
    let mut session = Session::new(&model, params, bytemuck::cast_slice_mut(&mut buf))
        .map_err(|e| model_in.err(e))?;
    session.set_parallel(&pool);

    let seed = if a.seed == 0 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    } else {
        a.seed
    };
    let mut sampler = Sampler::new(SamplerParams {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        min_p: a.min_p,
        repeat_penalty: a.repeat_penalty,
        repeat_last_n: 64,
        seed,
    });

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut decoder = tok.decoder();
    let mut print = |prev: u32, next: u32, out: &mut std::io::StdoutLock| -> Result<(), CliError> {
        let mut err = None;
        let res = match a.decode {
            Decode::Llama2c => tok.llama2c_piece(prev, next, |b| {
                if let Err(e) = out.write_all(b) {
                    err.get_or_insert(e);
                }
            }),
            Decode::Utf8 => decoder.push(next, |s| {
                if let Err(e) = out.write_all(s.as_bytes()) {
                    err.get_or_insert(e);
                }
            }),
        };
        res.map_err(|e| CliError::new("output", e))?;
        if let Some(e) = err {
            return Err(CliError::new("stdout", e));
        }
        out.flush().map_err(|e| CliError::new("stdout", e))
    };

    // run.c's loop: position `pos` runs `token`; the next token is forced
    // from the prompt while there is prompt left, else sampled; it is printed;
    // generation ends after `steps` positions or when BOS comes out.
    let start = Instant::now();
    let n_feed = n_prompt.min(steps);
    session
        .feed(&prompt[..n_feed])
        .map_err(|e| model_in.err(e))?;
    for p in 0..n_feed - 1 {
        print(prompt[p], prompt[p + 1], &mut out)?;
    }
    let prefill_time = start.elapsed();
    let mut pos = n_feed - 1;
    let mut token = prompt[pos];
    let mut generated = 0usize;
    loop {
        let next = if pos + 1 < n_prompt {
            prompt[pos + 1]
        } else {
            generated += 1;
            session.sample(&mut sampler).map_err(|e| model_in.err(e))?
        };
        pos += 1;
        if next == tok.bos() {
            break;
        }
        print(token, next, &mut out)?;
        token = next;
        if pos >= steps {
            break;
        }
        session.feed(&[token]).map_err(|e| model_in.err(e))?;
    }
    if a.decode == Decode::Utf8 {
        decoder.flush(|s| {
            let _ = out.write_all(s.as_bytes());
        });
    }
    writeln!(out).map_err(|e| CliError::new("stdout", e))?;
    drop(out);

    let total = start.elapsed().as_secs_f64();
    let decode_time = total - prefill_time.as_secs_f64();
    eprintln!(
        "llamette: {} positions ({} prompt, {} sampled) in {:.3} s: {:.1} tok/s overall, {:.1} tok/s decoding; \
         session memory {} bytes, tokenizer index {} bytes, weights {} bytes ({})",
        pos,
        n_feed,
        generated,
        total,
        pos as f64 / total,
        generated as f64 / decode_time.max(1e-9),
        session_bytes,
        Tokenizer::index_len(tok.n_tokens()) * 4,
        model.weight_bytes(),
        model_in.name,
    );
    Ok(())
}

fn tokenize(a: TokenizeArgs) -> Result<(), CliError> {
    let input = Input::open(&a.model_or_tokenizer)?;
    let mut data = TokenizerData::new(&input.name, &input.bytes)?;
    let tok = data.tokenizer(None)?;
    let mut text = Vec::new();
    std::io::stdin()
        .read_to_end(&mut text)
        .map_err(|e| CliError::new("stdin", e))?;
    let text =
        String::from_utf8(text).map_err(|e| CliError::new("stdin", format!("not UTF-8: {e}")))?;
    let mut work = vec![0u32; Tokenizer::encode_work_len(text.len())];
    let n = tok
        .encode(&text, a.bos, &mut work)
        .map_err(|e| CliError::new("stdin", e))?;
    let line: Vec<String> = work[..n].iter().map(|t| t.to_string()).collect();
    println!("{}", line.join(" "));
    Ok(())
}
