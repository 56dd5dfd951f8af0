//! llama2.c checkpoints.
//!
//! - "version 0" (`run.c`): seven `i32` (dim, hidden_dim, n_layers, n_heads,
//!   n_kv_heads, vocab_size, seq_len; a negative vocab_size means the
//!   classifier is stored separately), then f32 weights: embedding, attention
//!   norms, wq, wk, wv, wo, ffn norms, w1, w2, w3, final norm, two unused RoPE
//!   tables, and the classifier when not shared.
//! - "version 2" (`runq.c`): magic `ak42`, version 2, the same seven `i32`, a
//!   `u8` shared-classifier flag and an `i32` group size, padded to 256 bytes;
//!   f32 norms, then each matrix as int8 values followed by f32 group scales.

use crate::error::{slice, Error, Result};
use crate::model::{Config, Format, Model};
use crate::tensor::{Tensor, TensorType};

/// `ak42` read as a little-endian `u32`.
pub const MAGIC_V2: u32 = 0x616b_3432;

/// Size of the version-2 header.
const V2_HEADER: u64 = 256;

fn read_i32(bytes: &[u8], offset: u64, what: &'static str) -> Result<i32> {
    let b = slice(bytes, offset, 4, what)?;
    Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads the seven header integers at `offset`; returns the config and
/// whether the classifier is shared (version 0's sign convention).
fn read_config(bytes: &[u8], offset: u64) -> Result<(Config, bool)> {
    let mut v = [0i32; 7];
    for (i, x) in v.iter_mut().enumerate() {
        *x = read_i32(bytes, offset + 4 * i as u64, "llama2.c header")?;
    }
    let names = [
        "dim must be positive",
        "hidden_dim must be positive",
        "n_layers must be positive",
        "n_heads must be positive",
        "n_kv_heads must be positive",
        "vocab_size must not be 0",
        "seq_len must be positive",
    ];
    for (i, (&x, reason)) in v.iter().zip(names).enumerate() {
        if x <= 0 && !(i == 5 && x < 0) {
            return Err(Error::BadConfig {
                reason,
                value: x as i64 as u64,
            });
        }
    }
    let config = Config {
        dim: v[0] as usize,
        hidden_dim: v[1] as usize,
        n_layers: v[2] as usize,
        n_heads: v[3] as usize,
        n_kv_heads: v[4] as usize,
        vocab_size: v[5].unsigned_abs() as usize,
        seq_len: v[6] as usize,
        rms_eps: 1e-5,
        rope_theta: 10000.0,
    };
    config.validate()?;
    Ok((config, v[5] > 0))
}

/// Reads a llama2.c checkpoint (version 0 or 2).
pub fn load(bytes: &[u8]) -> Result<Model<'_>> {
    let first = read_i32(bytes, 0, "file magic")? as u32;
    if first == MAGIC_V2 {
        return load_v2(bytes);
    }
    // Version 0 has no magic: its first word is `dim`. Anything that cannot be
    // a dimension means this is not a llama2.c file at all.
    if first == 0 || first > 1 << 16 {
        return Err(Error::BadMagic { found: first });
    }
    load_v0(bytes)
}

/// A cursor that hands out consecutive tensors.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: u64,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8]> {
        let s = slice(self.bytes, self.pos, n, what)?;
        self.pos += n;
        Ok(s)
    }

    /// `rows` x `cols` f32.
    fn f32(&mut self, name: &'static str, rows: usize, cols: usize) -> Result<Tensor<'a>> {
        let data = self.take(rows as u64 * cols as u64 * 4, name)?;
        Tensor::new(name.as_bytes(), TensorType::F32, rows, cols, data, &[])
    }

    /// `rows` x `cols` int8 followed by their f32 group scales.
    fn q8(
        &mut self,
        name: &'static str,
        rows: usize,
        cols: usize,
        group: u32,
    ) -> Result<Tensor<'a>> {
        let n = rows as u64 * cols as u64;
        let data = self.take(n, name)?;
        let scales = self.take(n / group as u64 * 4, name)?;
        Tensor::new(
            name.as_bytes(),
            TensorType::Q8Split { group },
            rows,
            cols,
            data,
            scales,
        )
    }
}

fn load_v0(bytes: &[u8]) -> Result<Model<'_>> {
    let (c, shared) = read_config(bytes, 0)?;
    let mut m = Model::empty(c, Format::Llama2cV0, bytes);
    let mut cur = Cursor { bytes, pos: 28 };
    let (dim, hidden, kv, nl) = (c.dim, c.hidden_dim, c.kv_dim(), c.n_layers);
    m.token_embd = cur.f32("token_embedding_table", c.vocab_size, dim)?;
    // Each kind of weight is stored for all layers together.
    for l in 0..nl {
        m.layer_mut(l).attn_norm = cur.f32("rms_att_weight", 1, dim)?;
    }
    for l in 0..nl {
        m.layer_mut(l).wq = cur.f32("wq", dim, dim)?;
    }
    for l in 0..nl {
        m.layer_mut(l).wk = cur.f32("wk", kv, dim)?;
    }
    for l in 0..nl {
        m.layer_mut(l).wv = cur.f32("wv", kv, dim)?;
    }
    for l in 0..nl {
        m.layer_mut(l).wo = cur.f32("wo", dim, dim)?;
    }
    for l in 0..nl {
        m.layer_mut(l).ffn_norm = cur.f32("rms_ffn_weight", 1, dim)?;
    }
    for l in 0..nl {
        m.layer_mut(l).w1 = cur.f32("w1", hidden, dim)?;
    }
    for l in 0..nl {
        m.layer_mut(l).w2 = cur.f32("w2", dim, hidden)?;
    }
    for l in 0..nl {
        m.layer_mut(l).w3 = cur.f32("w3", hidden, dim)?;
    }
    m.output_norm = cur.f32("rms_final_weight", 1, dim)?;
    // Skip the legacy RoPE tables (freq_cis_real and freq_cis_imag).
    cur.take(
        c.seq_len as u64 * c.head_dim() as u64 * 4,
        "freq_cis tables",
    )?;
    if shared {
        m.output = m.token_embd;
        m.tied_output = true;
    } else {
        m.output = cur.f32("wcls", c.vocab_size, dim)?;
    }
    m.check_shapes()?;
    Ok(m)
}

fn load_v2(bytes: &[u8]) -> Result<Model<'_>> {
    let version = read_i32(bytes, 4, "llama2.c version")?;
    if version != 2 {
        return Err(Error::UnsupportedVersion {
            format: "llama2.c",
            version: version as u32,
        });
    }
    let (c, _) = read_config(bytes, 8)?;
    let shared = slice(bytes, 36, 1, "llama2.c header")?[0];
    if shared > 1 {
        return Err(Error::BadConfig {
            reason: "shared-classifier flag must be 0 or 1",
            value: shared as u64,
        });
    }
    let group = read_i32(bytes, 37, "llama2.c header")?;
    let (dim, hidden, kv, nl) = (c.dim, c.hidden_dim, c.kv_dim(), c.n_layers);
    if group <= 0 || dim % group as usize != 0 || hidden % group as usize != 0 {
        return Err(Error::BadConfig {
            reason: "group size must be positive and divide dim and hidden_dim",
            value: group as i64 as u64,
        });
    }
    let g = group as u32;
    let mut m = Model::empty(c, Format::Llama2cV2, bytes);
    let mut cur = Cursor {
        bytes,
        pos: V2_HEADER,
    };
    for l in 0..nl {
        m.layer_mut(l).attn_norm = cur.f32("rms_att_weight", 1, dim)?;
    }
    for l in 0..nl {
        m.layer_mut(l).ffn_norm = cur.f32("rms_ffn_weight", 1, dim)?;
    }
    m.output_norm = cur.f32("rms_final_weight", 1, dim)?;
    m.token_embd = cur.q8("q_tokens", c.vocab_size, dim, g)?;
    for l in 0..nl {
        m.layer_mut(l).wq = cur.q8("wq", dim, dim, g)?;
    }
    for l in 0..nl {
        m.layer_mut(l).wk = cur.q8("wk", kv, dim, g)?;
    }
    for l in 0..nl {
        m.layer_mut(l).wv = cur.q8("wv", kv, dim, g)?;
    }
    for l in 0..nl {
        m.layer_mut(l).wo = cur.q8("wo", dim, dim, g)?;
    }
    for l in 0..nl {
        m.layer_mut(l).w1 = cur.q8("w1", hidden, dim, g)?;
    }
    for l in 0..nl {
        m.layer_mut(l).w2 = cur.q8("w2", dim, hidden, g)?;
    }
    for l in 0..nl {
        m.layer_mut(l).w3 = cur.q8("w3", hidden, dim, g)?;
    }
    if shared == 1 {
        m.output = m.token_embd;
        m.tied_output = true;
    } else {
        m.output = cur.q8("wcls", c.vocab_size, dim, g)?;
    }
    m.check_shapes()?;
    Ok(m)
}
