//! Builds a [`Model`] from a GGUF file of architecture `llama`.

use crate::error::{Error, Name, Result};
use crate::format::gguf::{Gguf, TensorInfo};
use crate::model::{Config, Format, Model, MAX_LAYERS};
use crate::tensor::{ggml_type_name, Tensor};

fn required(g: &Gguf, key: &'static str) -> Result<usize> {
    let v = g.get_u64(key)?.ok_or(Error::MissingMetadata { key })?;
    usize::try_from(v).map_err(|_| Error::BadMetadata {
        key: Name::new(key.as_bytes()),
        reason: "value too large",
    })
}

/// Reads the configuration from `llama.*` metadata.
pub(crate) fn config(g: &Gguf) -> Result<Config> {
    let arch = g
        .get_str("general.architecture")?
        .ok_or(Error::MissingMetadata {
            key: "general.architecture",
        })?;
    if arch != b"llama" {
        return Err(Error::UnsupportedArchitecture {
            found: Name::new(arch),
        });
    }
    let dim = required(g, "llama.embedding_length")?;
    let n_heads = required(g, "llama.attention.head_count")?;
    // `as usize` would wrap on 32-bit targets and let 2^32 + 4 pass as 4:
    // out-of-range values saturate instead, so that `validate` rejects them.
    let sat = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let n_kv_heads = match g.get_u64("llama.attention.head_count_kv")? {
        Some(n) => sat(n),
        None => n_heads,
    };
    // The vocabulary size is the embedding's row count when not given.
    let vocab_size = match g.get_u64("llama.vocab_size")? {
        Some(n) => sat(n),
        None => match g.tensor(b"token_embd.weight") {
            Some(t) => sat(t.dims[1]),
            None => match g.get("tokenizer.ggml.tokens") {
                Some(crate::format::gguf::Value::Array(a)) => sat(a.len),
                _ => {
                    return Err(Error::MissingMetadata {
                        key: "llama.vocab_size",
                    })
                }
            },
        },
    };
    let config = Config {
        dim,
        hidden_dim: required(g, "llama.feed_forward_length")?,
        n_layers: required(g, "llama.block_count")?,
        n_heads,
        n_kv_heads,
        vocab_size,
        seq_len: required(g, "llama.context_length")?,
        rms_eps: g
            .get_f32("llama.attention.layer_norm_rms_epsilon")?
            .unwrap_or(1e-5),
        rope_theta: g.get_f32("llama.rope.freq_base")?.unwrap_or(10000.0),
    };
    config.validate()?;
    if let Some(rot) = g.get_u64("llama.rope.dimension_count")? {
        if sat(rot) != config.head_dim() {
            return Err(Error::BadMetadata {
                key: Name::new(b"llama.rope.dimension_count"),
                reason:
                    "partial rotary embeddings are not supported (must equal the head dimension)",
            });
        }
    }
    Ok(config)
}

/// A tensor view from its record, with the type and shape checked.
fn view<'a>(g: &Gguf<'a>, t: &TensorInfo<'a>) -> Result<Tensor<'a>> {
    let ty = t.ty.ok_or(Error::UnsupportedTensorType {
        ty: t.raw_type,
        type_name: ggml_type_name(t.raw_type),
        tensor: Name::new(t.name),
    })?;
    if t.dims[2] != 1 || t.dims[3] != 1 {
        return Err(Error::BadTensor {
            tensor: Name::new(t.name),
            reason: "expected a vector or a matrix",
        });
    }
    Tensor::new(
        t.name,
        ty,
        t.dims[1] as usize,
        t.dims[0] as usize,
        g.tensor_data(t),
        &[],
    )
}

/// Splits `blk.N.ROLE.weight` into `(N, ROLE)`.
fn layer_tensor(name: &[u8]) -> Option<(usize, &[u8])> {
    let rest = name.strip_prefix(b"blk.")?;
    let dot = rest.iter().position(|&b| b == b'.')?;
    let (num, role) = (&rest[..dot], &rest[dot + 1..]);
    if num.is_empty() || num.len() > 3 || !num.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = num.iter().fold(0usize, |n, d| n * 10 + (d - b'0') as usize);
    Some((n, role.strip_suffix(b".weight")?))
}

pub(crate) fn load<'a>(g: &Gguf<'a>) -> Result<Model<'a>> {
    let config = config(g)?;
    let mut m = Model::empty(config, Format::Gguf(g.version), g.bytes());
    // One bit per (layer, role) seen, to find what is missing or duplicated.
    let mut seen = [0u16; MAX_LAYERS];
    let (mut embd, mut norm, mut out) = (false, false, false);
    for t in g.tensors() {
        let t = t?;
        let duplicate = || Error::BadTensor {
            tensor: Name::new(t.name),
            reason: "appears twice",
        };
        match t.name {
            b"token_embd.weight" => {
                if embd {
                    return Err(duplicate());
                }
                m.token_embd = view(g, &t)?;
                embd = true;
            }
            b"output_norm.weight" => {
                if norm {
                    return Err(duplicate());
                }
                m.output_norm = view(g, &t)?;
                norm = true;
            }
            b"output.weight" => {
                if out {
                    return Err(duplicate());
                }
                m.output = view(g, &t)?;
                out = true;
            }
            name => {
                let Some((l, role)) = layer_tensor(name) else {
                    continue; // e.g. rope_freqs: not used by Llama 2
                };
                if l >= config.n_layers {
                    return Err(Error::BadTensor {
                        tensor: Name::new(name),
                        reason: "layer index beyond llama.block_count",
                    });
                }
                let layer = m.layer_mut(l);
                let (bit, slot) = match role {
                    b"attn_norm" => (0, &mut layer.attn_norm),
                    b"attn_q" => (1, &mut layer.wq),
                    b"attn_k" => (2, &mut layer.wk),
                    b"attn_v" => (3, &mut layer.wv),
                    b"attn_output" => (4, &mut layer.wo),
                    b"ffn_norm" => (5, &mut layer.ffn_norm),
                    b"ffn_gate" => (6, &mut layer.w1),
                    b"ffn_down" => (7, &mut layer.w2),
                    b"ffn_up" => (8, &mut layer.w3),
                    _ => continue,
                };
                if seen[l] & (1 << bit) != 0 {
                    return Err(duplicate());
                }
                // Read only the roles used: an extra tensor of a type this
                // crate cannot run does not stop the model from loading.
                let v = view(g, &t)?;
                seen[l] |= 1 << bit;
                *slot = v;
            }
        }
    }
    let missing = |name: &[u8]| Error::MissingTensor {
        name: Name::new(name),
    };
    if !embd {
        return Err(missing(b"token_embd.weight"));
    }
    if !norm {
        return Err(missing(b"output_norm.weight"));
    }
    if !out {
        m.output = m.token_embd;
        m.tied_output = true;
    }
    for (l, &bits) in seen.iter().enumerate().take(config.n_layers) {
        if bits != 0x1ff {
            let roles = m.layers()[l].tensors();
            let (role, _) = roles[(!bits).trailing_zeros() as usize];
            let mut name = [0u8; 32];
            let n = crate::model::write_layer_name(&mut name, l, role);
            return Err(missing(&name[..n]));
        }
    }
    m.check_shapes()?;
    Ok(m)
}
