//! `llamette info MODEL`: what a model file holds and what running it costs.

use std::fmt::Write as _;
use std::path::Path;

use llamette::format::gguf::Gguf;
use llamette::quant::FileType;
use llamette::session::KvType;
use llamette::tensor::Tensor;
use llamette::{Session, SessionParams};

use crate::files::{CliError, Input};

/// Prints the description of the model in `path`.
pub fn info(path: &Path) -> Result<(), CliError> {
    let input = Input::open(path)?;
    let model = crate::load_model(&input)?;
    let c = &model.config;
    let mut o = String::new();
    let _ = writeln!(o, "file: {} ({} bytes)", input.name, input.bytes.len());
    let _ = writeln!(o, "format: {}", model.format.name());
    if input.is_gguf() {
        let g = Gguf::parse(&input.bytes).map_err(|e| input.err(e))?;
        if let Ok(Some(n)) = g.get_u64("general.file_type") {
            let name = u32::try_from(n)
                .ok()
                .and_then(FileType::from_number)
                .map_or("not a file type llamette writes", |t| t.name());
            let _ = writeln!(o, "file type (general.file_type): {name} ({n})");
        }
        if let Ok(Some(name)) = g.get_str("general.name") {
            let _ = writeln!(o, "name: {}", String::from_utf8_lossy(name));
        }
    }
    let _ = writeln!(o, "architecture: llama");
    let _ = writeln!(
        o,
        "shape: dim {}, hidden {}, layers {}, heads {}, kv heads {}, head dim {}, vocab {}, context {}",
        c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim(), c.vocab_size, c.seq_len
    );
    let _ = writeln!(
        o,
        "rms epsilon: {:e}, rope base: {}",
        c.rms_eps, c.rope_theta
    );
    let _ = writeln!(o, "parameters: {}", model.n_params());
    let _ = writeln!(o, "weight bytes: {}", model.weight_bytes());
    let _ = writeln!(
        o,
        "weight bytes read per token: {}",
        model.bytes_per_token()
    );
    let _ = writeln!(
        o,
        "classifier: {}",
        if model.tied_output {
            "tied to the embedding"
        } else {
            "separate"
        }
    );
    // Tensor types, counted per group (role) and in all.
    let mut groups: Vec<(&str, Vec<&Tensor>)> = vec![
        ("token_embd", vec![&model.token_embd]),
        ("output_norm", vec![&model.output_norm]),
    ];
    if !model.tied_output {
        groups.push(("output", vec![&model.output]));
    }
    for l in model.layers() {
        for (role, t) in l.tensors() {
            match groups.iter_mut().find(|(r, _)| *r == role) {
                Some((_, ts)) => ts.push(t),
                None => groups.push((role, vec![t])),
            }
        }
    }
    let mut all: Vec<(&str, usize, u64)> = Vec::new();
    let _ = writeln!(o, "tensor types by group:");
    for (role, ts) in &groups {
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for t in ts {
            let name = t.ty.name();
            match counts.iter_mut().find(|(n, _)| *n == name) {
                Some(e) => e.1 += 1,
                None => counts.push((name, 1)),
            }
            match all.iter_mut().find(|(n, _, _)| *n == name) {
                Some(e) => {
                    e.1 += 1;
                    e.2 += t.n_bytes() as u64;
                }
                None => all.push((name, 1, t.n_bytes() as u64)),
            }
        }
        let list: Vec<String> = counts.iter().map(|(n, k)| format!("{n} x{k}")).collect();
        let _ = writeln!(o, "  {role}: {}", list.join(", "));
    }
    let _ = write!(o, "tensor types:");
    for (name, n, bytes) in &all {
        let _ = write!(o, " {name} x{n} ({bytes} bytes);");
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "session memory for the full context ({} positions), bytes:",
        c.seq_len
    );
    for kv_type in [KvType::F32, KvType::F16, KvType::Q8_0] {
        let mut sizes = Vec::new();
        for batch in [1, SessionParams::DEFAULT_BATCH] {
            let params = SessionParams {
                context: 0,
                kv_type,
                batch,
            };
            let bytes = Session::required_bytes(&model, &params).map_err(|e| input.err(e))?;
            sizes.push(format!("{bytes} (prompt batch {batch})"));
        }
        let _ = writeln!(o, "  {:?} KV cache: {}", kv_type, sizes.join(", "));
    }
    print!("{o}");
    Ok(())
}
