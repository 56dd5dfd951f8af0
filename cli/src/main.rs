//! `llamette`: generate text, tokenize, and describe models.
//!
//! The flags of `generate` keep llama2.c's `run.c` spellings and meanings so
//! that scripts written for it work unchanged; its stdout is exactly what
//! run.c prints, statistics go to stderr.

mod bench;
mod chat;
mod convert;
mod dequantize;
mod files;
mod gguf_write;
mod info;
mod mem;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use llamette::parallel::ThreadPool;
use llamette::session::KvType;
use llamette::{
    Bos, Event, GenerateParams, Generator, Model, SamplerParams, Session, SessionParams, TextMode,
    Tokenizer,
};

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
    /// Chat: a user turn per line of stdin, each reply on a line of stdout.
    Chat(chat::ChatArgs),
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
    /// A GGUF whose tokenizer.* metadata is copied (e.g. the Llama 2
    /// vocabulary); without it, a built-in vocabulary of 32 000 pieces
    /// (not Llama 2's, but any text tokenizes).
    #[arg(long)]
    vocab: Option<PathBuf>,
    /// Seed of the weights.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The context length written into the model (default: the shape's).
    #[arg(long)]
    context: Option<usize>,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// The model (GGUF or llama2.c .bin).
    model: PathBuf,
    /// Threads (0: one per core; default: 1 for small models, one per core
    /// for large ones).
    #[arg(long)]
    threads: Option<usize>,
    /// Prompt length to prefill.
    #[arg(long = "prompt-tokens", default_value_t = 128)]
    prompt_tokens: usize,
    /// Tokens to generate after the prompt.
    #[arg(long = "gen-tokens", default_value_t = 64)]
    gen_tokens: usize,
    /// Time the decode from an empty context (after the prompt's timing,
    /// start over from the first token alone), as llama.cpp's llama-bench
    /// times its tg tests, rather than after the prompt: attention over a
    /// longer context makes each token slower.
    #[arg(long = "decode-from-start")]
    decode_from_start: bool,
    /// Skip the memory bandwidth probe.
    #[arg(long = "no-probe")]
    no_probe: bool,
    /// Copy the weights into anonymous memory backed by huge pages, without
    /// interleaving them (costs the model's size in RAM).
    #[arg(long = "huge-pages", conflicts_with_all = ["mmap", "repack"])]
    huge_pages: bool,
    /// Copy the weights into huge pages and interleave the quantized
    /// matrices for the SIMD kernels (see `llamette::repack`), whatever the
    /// model's size. The default when the file takes at most half of the
    /// available memory.
    #[arg(long, conflicts_with = "mmap")]
    repack: bool,
    /// Map the model file read-only instead of copying it.
    #[arg(long)]
    mmap: bool,
    /// KV cache element type.
    #[arg(long = "kv", value_enum, default_value_t = KvArg::F32)]
    kv: KvArg,
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
pub(crate) enum KvArg {
    F32,
    F16,
    #[value(name = "q8_0")]
    Q8_0,
}

impl KvArg {
    /// The library's KV type.
    pub(crate) fn kv_type(self) -> KvType {
        match self {
            KvArg::F32 => KvType::F32,
            KvArg::F16 => KvType::F16,
            KvArg::Q8_0 => KvType::Q8_0,
        }
    }
}

#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
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
    /// Threads for the matrix products (0: one per core; default: 1 for
    /// small models, one per core for large ones).
    #[arg(long = "threads")]
    threads: Option<usize>,
    /// Prompt tokens run together per weight pass (0: the library's default).
    #[arg(long = "batch", default_value_t = 0)]
    batch: usize,
    /// Copy the model into memory (huge pages) and interleave its quantized
    /// matrices for the SIMD kernels (see `llamette::repack`), whatever its
    /// size. The default when the file takes at most half of the available
    /// memory.
    #[arg(long, conflicts_with = "mmap")]
    repack: bool,
    /// Map the model file read-only instead of copying it (no memory beyond
    /// the page cache; slower).
    #[arg(long)]
    mmap: bool,
}

#[derive(clap::Args)]
struct TokenizeArgs {
    /// A GGUF (a vocabulary-only one too) or a llama2.c tokenizer.bin.
    model_or_tokenizer: PathBuf,
    /// Put the BOS token first.
    #[arg(long)]
    bos: bool,
    /// Read a JSON dialog (`[{"role": "system"|"user"|"assistant",
    /// "content": "..."}]`) and print its ids in the file's chat format
    /// (Llama 2's, or the GGUF's other `tokenizer.chat_template`).
    #[arg(long, conflicts_with = "bos")]
    chat: bool,
}

#[derive(clap::Args)]
struct InfoArgs {
    /// A .gguf or llama2.c .bin model.
    model: PathBuf,
}

fn main() -> ExitCode {
    // A closed stdout or stderr (`llamette ... | head`) ends the program
    // quietly, as other Unix tools: killed by SIGPIPE (status 141 in a
    // shell), not a panic (Rust ignores SIGPIPE, so writes would fail).
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to the default, before any
    // thread is started; no handler runs Rust code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(a) => generate(a),
        Command::Tokenize(a) => tokenize(a),
        Command::Chat(a) => chat::chat(a),
        Command::Info(a) => info::info(&a.model),
        Command::Quantize(a) => convert::quantize(&a.input, &a.output, a.ty, a.tokenizer.as_ref()),
        Command::Synth(a) => convert::synth(
            a.shape,
            a.ty,
            &a.output,
            a.vocab.as_deref(),
            a.seed,
            a.context,
        ),
        Command::Bench(a) => bench::bench(
            &a.model,
            &bench::BenchOptions {
                threads: a.threads,
                prompt_tokens: a.prompt_tokens,
                gen_tokens: a.gen_tokens,
                decode_from_start: a.decode_from_start,
                probe: !a.no_probe,
                layout: if a.huge_pages {
                    files::Layout::HugePages
                } else {
                    files::Layout::from_flags(a.mmap, a.repack)
                },
                kv_type: a.kv.kv_type(),
            },
        ),
        Command::Dequantize(a) => dequantize::dequantize(&a.file, &a.tensor, &a.output),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("llamette: {e}");
            ExitCode::from(e.code)
        }
    }
}

/// A tokenizer's bytes (a file of its own, or the model's GGUF) and the
/// index built over them.
pub(crate) struct TokenizerData<'b> {
    name: &'b str,
    bytes: &'b [u8],
    index: Vec<u32>,
}

impl<'b> TokenizerData<'b> {
    /// Sizes the index for `bytes` (GGUF or tokenizer.bin), read for
    /// `n_tokens` tokens when given.
    pub(crate) fn new(
        name: &'b str,
        bytes: &'b [u8],
        n_tokens: Option<u32>,
    ) -> Result<TokenizerData<'b>, CliError> {
        check_tokenizer_kind(name, bytes)?;
        if let Some(model) = n_tokens {
            // A tokenizer of another size belongs to another model: its ids
            // would mean other pieces (llama2.c's run.c would read the first
            // `model` records and print gibberish).
            let count = Tokenizer::token_count_for(bytes).ok();
            if let Some(n) = count.filter(|&n| n != model) {
                return Err(CliError::new(
                    name,
                    format!(
                        "the tokenizer has {n} tokens but the model's vocabulary has {model}: they do not belong together (pass the model's own tokenizer with -z)"
                    ),
                ));
            }
        }
        let len = match n_tokens {
            Some(n) => Tokenizer::index_len_for_vocab(bytes, n),
            None => Tokenizer::index_len_for(bytes),
        }
        .map_err(|e| CliError::new(name, e))?;
        Ok(TokenizerData {
            name,
            bytes,
            index: vec![0u32; len],
        })
    }

    /// The tokenizer, checked to cover a vocabulary of `n_tokens` when given.
    pub(crate) fn tokenizer(&mut self, n_tokens: Option<u32>) -> Result<Tokenizer<'_>, CliError> {
        match n_tokens {
            Some(n) => Tokenizer::load_for_vocab(self.bytes, n, &mut self.index),
            None => Tokenizer::load(self.bytes, &mut self.index),
        }
        .map_err(|e| CliError::new(self.name, e))
    }
}

/// Refuses files that are not tokenizers, saying what they are.
pub(crate) fn check_tokenizer_kind(name: &str, bytes: &[u8]) -> Result<(), CliError> {
    let expected = "expected a tokenizer (a GGUF with a vocabulary, or a llama2.c tokenizer.bin)";
    match files::identify(bytes) {
        Some(kind) if kind.starts_with("a vocabulary-only GGUF") => Ok(()),
        Some(kind) if kind.starts_with("a llama2.c tokenizer") => Ok(()),
        Some(kind) => Err(CliError::new(name, format!("this is {kind}; {expected}"))),
        None if !bytes.starts_with(b"GGUF") && Model::load(bytes).is_ok() => Err(CliError::new(
            name,
            format!("this is a llama2.c model, not a tokenizer; {expected}"),
        )),
        None => Ok(()),
    }
}

/// Loads the model in `input`; a file of another kind is named as such.
pub(crate) fn load_model(input: &Input) -> Result<Model<'_>, CliError> {
    Model::load(&input.bytes).map_err(|e| match files::identify(&input.bytes) {
        Some(kind) => input.err(format!(
            "this is {kind}; expected a model (a GGUF with weights, or a llama2.c .bin checkpoint)"
        )),
        None => input.err(e),
    })
}

/// A sampler setting out of range, as a usage error naming its flag.
pub(crate) fn sampler_error(e: llamette::Error) -> CliError {
    let flag = match e {
        llamette::Error::InvalidParameter { name, .. } => match name {
            "temperature" => "-t/--temperature",
            "top_p" => "-p/--top-p",
            "min_p" => "--min-p",
            "repeat_penalty" => "--repeat-penalty",
            "top_k" => "--top-k",
            _ => name,
        },
        _ => "sampler",
    };
    CliError::usage(flag, e)
}

/// A session buffer: 8-byte aligned, as `Session::ALIGN` asks.
pub(crate) fn session_buffer(bytes: usize) -> Vec<u64> {
    vec![0u64; bytes.div_ceil(8)]
}

fn generate(a: GenerateArgs) -> Result<(), CliError> {
    // Flags first: a bad value is refused before any file is read.
    let seed = seed_or_clock(a.seed);
    let sampler = SamplerParams {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        min_p: a.min_p,
        repeat_penalty: a.repeat_penalty,
        repeat_last_n: 64,
    };
    sampler.validate().map_err(sampler_error)?;
    let layout = files::Layout::from_flags(a.mmap, a.repack);
    let files::LoadedModel {
        input: model_in,
        note,
        ..
    } = files::open_model(a.model.as_ref(), layout, a.threads)?;
    let model = load_model(&model_in)?;
    files::say(&note);
    let vocab = model.config.vocab_size as u32;
    let tok_file = tokenizer_file(a.tokenizer.as_ref(), a.model.as_ref(), &model_in)?;
    let tok_src = tok_file.as_ref().unwrap_or(&model_in);
    let mut tok_data = TokenizerData::new(&tok_src.name, &tok_src.bytes, Some(vocab))?;
    let index_len = tok_data.index.len();
    let tok = tok_data.tokenizer(Some(vocab))?;
    generate_with(&a, sampler, seed, &model_in, &model, &tok, index_len)
}

/// The tokenizer file: -z, else the model's own vocabulary (GGUF, `None`),
/// else the embedded one (embedded model), else run.c's default
/// ./tokenizer.bin.
pub(crate) fn tokenizer_file(
    tokenizer: Option<&PathBuf>,
    model: Option<&PathBuf>,
    model_in: &Input,
) -> Result<Option<Input>, CliError> {
    Ok(match (tokenizer, model) {
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
    })
}

fn generate_with(
    a: &GenerateArgs,
    sampler: SamplerParams,
    seed: u64,
    model_in: &Input,
    model: &Model,
    tok: &Tokenizer,
    index_len: usize,
) -> Result<(), CliError> {
    // run.c: 0 or more than the context means the whole context.
    let seq_len = model.config.seq_len;
    let steps = if a.steps == 0 || a.steps > seq_len {
        seq_len
    } else {
        a.steps
    };

    // The prompt, with BOS, as run.c encodes it.
    let mut work = vec![0u32; Tokenizer::encode_work_len(a.prompt.len())];
    let prompt = tok
        .encode(&a.prompt, Bos::Add, &mut work)
        .map_err(|e| CliError::new("prompt", e))?;
    let n_prompt = prompt.len();
    if n_prompt > steps {
        // run.c's behaviour (it runs `steps` positions, prompt or not), but
        // never silently.
        let why = if a.steps == 0 || a.steps >= seq_len {
            format!("the model's context is {seq_len} positions")
        } else {
            format!("-n is {steps} (the context allows up to {seq_len})")
        };
        eprintln!(
            "llamette: warning: the prompt is {n_prompt} tokens (BOS included) but {why}: only its first {steps} tokens are run and nothing is generated"
        );
    }

    let params = SessionParams {
        context: steps,
        batch: a.batch,
        kv_type: a.kv.kv_type(),
    };
    let session_bytes = Session::required_bytes(model, &params).map_err(|e| model_in.err(e))?;
    let mut buf = session_buffer(session_bytes);
    let pool = thread_pool(a.threads, model)?;
    let mut session = Session::new(model, params, bytemuck::cast_slice_mut(&mut buf))
        .map_err(|e| model_in.err(e))?;
    session.set_parallel(&pool);

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut err = None;
    let mut write = |b: &[u8]| {
        if err.is_none() {
            if let Err(e) = out.write_all(b).and_then(|_| out.flush()) {
                err = Some(e);
            }
        }
    };

    // run.c echoes the prompt as it forces it token by token: each piece
    // after the BOS (and stops after `steps` positions even inside it).
    let start = Instant::now();
    let n_feed = n_prompt.min(steps);
    let mut echo = tok.decoder();
    let n_echo = if n_prompt > steps { n_feed } else { n_feed - 1 };
    for p in 0..n_echo {
        match a.decode {
            Decode::Llama2c => tok.llama2c_piece(prompt[p], prompt[p + 1], &mut write),
            Decode::Utf8 => echo.push(prompt[p + 1], |s| write(s.as_bytes())),
        }
        .map_err(|e| CliError::new("output", e))?;
    }
    echo.flush(|s| write(s.as_bytes()));
    // Then run.c's loop: the core's generation loop, stopping at BOS only
    // (run.c prints EOS's piece and goes on) or when `steps` positions ran.
    let mode = match a.decode {
        Decode::Llama2c => TextMode::Llama2c,
        Decode::Utf8 => TextMode::Utf8,
    };
    let mut gen = Generator::new(Some(tok), mode);
    gen.feed(&mut session, &prompt[..n_feed])
        .map_err(|e| model_in.err(e))?;
    let prefill_time = start.elapsed();
    let mut generated = 0usize;
    if n_prompt <= steps {
        let gp = GenerateParams {
            sampler,
            seed,
            max_tokens: 0,
            stop_at_eos: false,
            stop_at_bos: true,
            stop_strings: &[],
        };
        let outcome = gen
            .generate(&mut session, &gp, &mut |_| {}, &mut |e| {
                if let Event::Text(t) = e {
                    write(t);
                }
                true
            })
            .map_err(|e| model_in.err(e))?;
        generated = outcome.n_tokens;
    }
    write(b"\n");
    if let Some(e) = err {
        return Err(CliError::new("stdout", e));
    }
    drop(out);
    // Positions run through the model: the prompt's, then each sampled
    // token fed back (the last one sampled is printed, never run: run.c's
    // loop too).
    let run = session.pos();
    let fed_back = run - n_feed.min(run);

    let total = start.elapsed().as_secs_f64();
    let decode_time = total - prefill_time.as_secs_f64();
    eprintln!(
        "llamette: {run} positions run ({} prompt + {fed_back} sampled tokens fed back); {generated} tokens sampled; \
         {:.3} s: {:.1} tok/s overall, {:.1} tok/s decoding; \
         session memory {} bytes, tokenizer index {} bytes, weights {} bytes ({})",
        n_feed.min(run),
        total,
        run as f64 / total,
        generated as f64 / decode_time.max(1e-9),
        session_bytes,
        index_len * 4,
        model.weight_bytes(),
        model_in.name,
    );
    if a.seed == 0 && a.temperature > 0.0 {
        eprintln!(
            "llamette: seed {} (from the clock; -s {} repeats this run)",
            seed, seed
        );
    }
    if let Some(m) = mem::report() {
        eprintln!("llamette: {m}");
    }
    Ok(())
}

/// Weight bytes read per token from which a second thread pays: below,
/// the per-token work is so short that waking and waiting for another
/// thread costs as much as it saves. Measured on a quiet 2-core machine
/// (greedy decode, medians, 1 / 2 threads): stories260K (1 MiB per token)
/// 27 400 / 27 200 tok/s; the 15M shape in Q4_0 (about 9 MiB) 4 300 /
/// 5 500; in F32 (58 MiB) 400 / 625; 110M in F16 (209 MiB) 143 / 188.
/// (With another process busy on the second core, 2 threads lose instead:
/// `--threads 1`.)
const PARALLEL_BYTES_PER_TOKEN: u64 = 4 << 20;

/// Most threads chosen automatically (more rarely pay for decode, which is
/// bound by memory bandwidth).
const MAX_AUTO_THREADS: usize = 8;

/// The thread pool: `--threads` when given (0: one per core), else 1 for
/// a model that reads less than [`PARALLEL_BYTES_PER_TOKEN`] per token and
/// one per core (at most [`MAX_AUTO_THREADS`]) for larger ones, said on
/// stderr.
pub(crate) fn thread_pool(flag: Option<usize>, model: &Model) -> Result<ThreadPool, CliError> {
    let n = match flag {
        Some(n) => n,
        None => {
            let per_token = model.bytes_per_token();
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let (n, why) = if per_token < PARALLEL_BYTES_PER_TOKEN {
                (
                    1,
                    format!(
                        "a small model: {:.1} MiB of weights per token",
                        per_token as f64 / (1u64 << 20) as f64
                    ),
                )
            } else {
                let n = cores.min(MAX_AUTO_THREADS);
                (
                    n,
                    format!(
                        "{:.0} MiB of weights per token, {cores} cores",
                        per_token as f64 / (1u64 << 20) as f64
                    ),
                )
            };
            eprintln!(
                "llamette: {n} thread{} ({why}); --threads N to choose",
                if n == 1 { "" } else { "s" }
            );
            n
        }
    };
    ThreadPool::try_new(n).map_err(|e| CliError::new("--threads", e))
}

/// The seed, or the clock's seconds for 0 (run.c's rule).
pub(crate) fn seed_or_clock(seed: u64) -> u64 {
    if seed != 0 {
        return seed;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(1)
}

fn tokenize(a: TokenizeArgs) -> Result<(), CliError> {
    let input = Input::open(&a.model_or_tokenizer)?;
    let mut data = TokenizerData::new(&input.name, &input.bytes, None)?;
    let tok = data.tokenizer(None)?;
    let mut text = Vec::new();
    std::io::stdin()
        .read_to_end(&mut text)
        .map_err(|e| CliError::new("stdin", e))?;
    let text =
        String::from_utf8(text).map_err(|e| CliError::new("stdin", format!("not UTF-8: {e}")))?;
    let ids = if a.chat {
        let format =
            llamette::chat_template::ChatFormat::of_file(&input.bytes).map_err(|e| input.err(e))?;
        chat::encode_json_dialog(&tok, format, &text)?
    } else {
        let mut work = vec![0u32; Tokenizer::encode_work_len(text.len())];
        let bos = if a.bos { Bos::Add } else { Bos::None };
        tok.encode(&text, bos, &mut work)
            .map_err(|e| CliError::new("stdin", e))?
            .to_vec()
    };
    let line: Vec<String> = ids.iter().map(|t| t.to_string()).collect();
    println!("{}", line.join(" "));
    Ok(())
}
