//! `llamette chat` and `llamette tokenize --chat`: Llama 2's chat format
//! (the core's `chat` module) over stdin and stdout.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use llamette::chat::{self, ChatOptions, ContextPolicy, Message, Role};
use llamette::chat_template::{self, ChatFormat};
use llamette::state;
use llamette::{
    Event, GenerateParams, Generator, SamplerParams, Session, SessionParams, StopReason, TextMode,
    Tokenizer,
};

use crate::files::{self, CliError};
use crate::{session_buffer, tokenizer_file, KvArg, TokenizerData};

#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub(crate) struct ChatArgs {
    /// A .gguf or llama2.c .bin model; the embedded stories260K when absent.
    model: Option<PathBuf>,
    /// Tokenizer (llama2.c tokenizer.bin or GGUF), as for `generate`.
    #[arg(short = 'z', long = "tokenizer")]
    tokenizer: Option<PathBuf>,
    /// The system prompt.
    #[arg(long)]
    system: Option<String>,
    /// Resume the conversation saved in FILE (if it exists) and save it
    /// there again on exit.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Temperature; 0 is greedy.
    #[arg(short = 't', long = "temperature", default_value_t = 1.0)]
    temperature: f32,
    /// Top-p (nucleus); 0 and 1 turn it off.
    #[arg(short = 'p', long = "top-p", default_value_t = 0.9)]
    top_p: f32,
    /// Random seed; 0 or absent takes the current time (or, resuming, the
    /// saved conversation's).
    #[arg(short = 's', long = "seed", default_value_t = 0)]
    seed: u64,
    /// The most tokens per reply.
    #[arg(short = 'n', long = "max-tokens", default_value_t = 256)]
    max_tokens: usize,
    /// KV cache element type.
    #[arg(long = "kv", value_enum, default_value_t = KvArg::F32)]
    kv: KvArg,
    /// Threads for the matrix products (0: one per core; default: 1 for
    /// small models, one per core for large ones).
    #[arg(long = "threads")]
    threads: Option<usize>,
    /// Copy the model into memory (huge pages) and interleave its quantized
    /// matrices for the SIMD kernels, whatever its size. The default when
    /// the file takes at most half of the available memory (with --state:
    /// copied but not interleaved, so that saved conversations stay valid
    /// with --mmap).
    #[arg(long, conflicts_with = "mmap")]
    repack: bool,
    /// Map the model file read-only instead of copying it.
    #[arg(long)]
    mmap: bool,
}

/// Parses `[{"role": ..., "content": ...}]`.
fn parse_dialog(json: &str) -> Result<Vec<(Role, String)>, CliError> {
    let err = |m: String| CliError::new("stdin", m);
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| err(format!("not a JSON dialog: {e}")))?;
    let Some(list) = v.as_array() else {
        return Err(err("a dialog is a JSON array of messages".into()));
    };
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.get("role").and_then(|r| r.as_str()) {
                Some("system") => Role::System,
                Some("user") => Role::User,
                Some("assistant") => Role::Assistant,
                _ => {
                    return Err(err(format!(
                        "message {i}: role must be \"system\", \"user\" or \"assistant\""
                    )))
                }
            };
            let Some(content) = m.get("content").and_then(|c| c.as_str()) else {
                return Err(err(format!("message {i}: content must be a string")));
            };
            Ok((role, content.to_string()))
        })
        .collect()
}

/// `tokenize --chat`: the ids of a JSON dialog in the file's chat format
/// (Llama 2's, or its `tokenizer.chat_template`).
pub(crate) fn encode_json_dialog(
    tok: &Tokenizer,
    format: ChatFormat,
    json: &str,
) -> Result<Vec<u32>, CliError> {
    let owned = parse_dialog(json)?;
    let dialog: Vec<Message> = owned.iter().map(|(r, c)| Message::new(*r, c)).collect();
    chat_template::encode_dialog_as(tok, format, &dialog, &ChatOptions::default())
        .map_err(|e| CliError::new("dialog", e))
}

pub(crate) fn chat(a: ChatArgs) -> Result<(), CliError> {
    // Flags first: a bad value is refused before any file is read.
    SamplerParams {
        temperature: a.temperature,
        top_p: a.top_p,
        ..Default::default()
    }
    .validate()
    .map_err(crate::sampler_error)?;
    let layout = files::Layout::from_flags(a.mmap, a.repack);
    let files::LoadedModel {
        input: model_in,
        note,
        ..
    } = files::open_model(a.model.as_ref(), layout, a.threads)?;
    let model = crate::load_model(&model_in)?;
    files::say(&note);
    let vocab = model.config.vocab_size as u32;
    let tok_file = tokenizer_file(a.tokenizer.as_ref(), a.model.as_ref(), &model_in)?;
    let tok_src = tok_file.as_ref().unwrap_or(&model_in);
    let mut tok_data = TokenizerData::new(&tok_src.name, &tok_src.bytes, Some(vocab))?;
    let tok = tok_data.tokenizer(Some(vocab))?;
    let format = ChatFormat::of_file(&tok_src.bytes).map_err(|e| tok_src.err(e))?;
    eprintln!("llamette: chat format: {}", format.describe());

    let params = SessionParams {
        context: 0,
        kv_type: a.kv.kv_type(),
        batch: 0,
    };
    let bytes = Session::required_bytes(&model, &params).map_err(|e| model_in.err(e))?;
    let mut buf = session_buffer(bytes);
    let pool = crate::thread_pool(a.threads, &model)?;
    let mut session = Session::new(&model, params, bytemuck::cast_slice_mut(&mut buf))
        .map_err(|e| model_in.err(e))?;
    session.set_parallel(&pool);
    let mut gen = Generator::new(Some(&tok), TextMode::Utf8);

    // The conversation: resumed from --state, else the system prompt.
    let mut dialog: Vec<(Role, String)> = Vec::new();
    let mut seed = a.seed;
    let state_file = a.state.as_ref().filter(|p| p.exists());
    if let Some(path) = state_file {
        let name = path.display().to_string();
        let blob = std::fs::read(path).map_err(|e| CliError::new(&name, e))?;
        let extra =
            state::restore(&mut session, &mut gen, &blob).map_err(|e| CliError::new(&name, e))?;
        if !extra.is_empty() {
            let (_, msgs) = chat::read_dialog(extra).map_err(|e| CliError::new(&name, e))?;
            dialog.extend(msgs.map(|m| (m.role, m.content.to_string())));
        }
        if seed == 0 {
            // Continue the saved sampler, not a new clock seed.
            seed = gen.seed().unwrap_or(0);
        }
        eprintln!(
            "llamette: resumed {} messages ({} positions) from {name}",
            dialog.len(),
            session.pos()
        );
    } else if let Some(s) = &a.system {
        dialog.push((Role::System, s.clone()));
    }
    let sampler = SamplerParams {
        temperature: a.temperature,
        top_p: a.top_p,
        ..Default::default()
    };
    let seed = crate::seed_or_clock(seed);
    sampler.validate().map_err(crate::sampler_error)?;
    let reserve = a.max_tokens.clamp(1, session.context() / 2);
    let opts = ChatOptions {
        allow_special_tags: false,
        context_policy: ContextPolicy::KeepSystemAndLatest { reserve },
    };

    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let stdout = std::io::stdout();
    let mut line = String::new();
    let mut input = stdin.lock();
    loop {
        if interactive {
            eprint!("> ");
        }
        line.clear();
        let n = input
            .read_line(&mut line)
            .map_err(|e| CliError::new("stdin", e))?;
        if n == 0 {
            break;
        }
        let text = line.strip_suffix('\n').unwrap_or(&line);
        let text = text.strip_suffix('\r').unwrap_or(text);
        dialog.push((Role::User, text.to_string()));
        let msgs: Vec<Message> = dialog.iter().map(|(r, c)| Message::new(*r, c)).collect();
        let start = Instant::now();
        let p = match chat_template::prefill_dialog_as(
            &mut gen,
            &mut session,
            &tok,
            format,
            &msgs,
            &opts,
        ) {
            Ok(p) => p,
            Err(e) => {
                // A refused turn is not kept; the conversation goes on.
                dialog.pop();
                eprintln!("llamette: turn refused: {e}");
                let mut out = stdout.lock();
                writeln!(out).map_err(|e| CliError::new("stdout", e))?;
                continue;
            }
        };
        if p.dropped > 0 {
            // The oldest turns no longer fit: they leave the dialog too.
            let first = usize::from(dialog.first().is_some_and(|m| m.0 == Role::System));
            dialog.drain(first..first + p.dropped);
        }
        let prefill = start.elapsed();
        let gp = GenerateParams {
            sampler,
            seed,
            max_tokens: a.max_tokens,
            ..Default::default()
        };
        let mut reply = Vec::new();
        let mut out = stdout.lock();
        let mut err = None;
        let o = gen
            .generate(&mut session, &gp, &mut |_| {}, &mut |e| {
                if let Event::Text(t) = e {
                    reply.extend_from_slice(t);
                    if let Err(e) = out.write_all(t).and_then(|_| out.flush()) {
                        err.get_or_insert(e);
                    }
                }
                true
            })
            .map_err(|e| model_in.err(e))?;
        writeln!(out).map_err(|e| CliError::new("stdout", e))?;
        if let Some(e) = err {
            return Err(CliError::new("stdout", e));
        }
        drop(out);
        let total = start.elapsed().as_secs_f64();
        eprintln!(
            "llamette: {} reused + {} fed{}, {} generated ({}) in {:.3} s ({:.1} tok/s decoding)",
            p.reused,
            p.fed,
            if p.dropped > 0 {
                format!(", {} oldest messages dropped", p.dropped)
            } else {
                String::new()
            },
            o.n_tokens,
            match o.reason {
                StopReason::EndToken => "end token",
                StopReason::MaxTokens => "max tokens",
                StopReason::StopString => "stop string",
                StopReason::ContextFull => "context full",
                StopReason::Cancelled => "cancelled",
                StopReason::Callback => "stopped",
            },
            total,
            o.n_tokens as f64 / (total - prefill.as_secs_f64()).max(1e-9)
        );
        dialog.push((
            Role::Assistant,
            String::from_utf8_lossy(&reply).into_owned(),
        ));
    }

    if let Some(path) = &a.state {
        let name = path.display().to_string();
        let msgs: Vec<Message> = dialog.iter().map(|(r, c)| Message::new(*r, c)).collect();
        let mut extra = vec![0u8; chat::dialog_bytes_len(&msgs)];
        chat::write_dialog(&msgs, &mut extra).map_err(|e| CliError::new(&name, e))?;
        let mut blob = vec![0u8; state::saved_len(&session, &gen, extra.len())];
        let n = state::save(&mut session, &gen, &extra, &mut blob)
            .map_err(|e| CliError::new(&name, e))?;
        // Through a temporary file renamed into place.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &blob[..n])
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| CliError::new(&name, e))?;
        eprintln!(
            "llamette: saved {} messages ({} bytes) to {name}",
            dialog.len(),
            n
        );
    }
    Ok(())
}
