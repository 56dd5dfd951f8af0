//! The model: its configuration and borrowed weight views.
//!
//! The file formats build it ([`Model::load`], in [`crate::format`],
//! recognises the file by its magic number and builds views into the
//! caller's bytes; nothing is copied, nothing allocated).

use crate::error::{Error, Name, Result};
use crate::tensor::{Tensor, TensorType};

/// The most layers a model may have (Llama 2 70B has 80).
pub const MAX_LAYERS: usize = 128;

/// Hyper-parameters of a Llama 2 decoder, read from the file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Width of the residual stream.
    pub dim: usize,
    /// Width of the feed-forward hidden layer.
    pub hidden_dim: usize,
    /// Number of transformer blocks.
    pub n_layers: usize,
    /// Number of query heads.
    pub n_heads: usize,
    /// Number of key/value heads (fewer than `n_heads` for grouped-query attention).
    pub n_kv_heads: usize,
    /// Number of tokens in the vocabulary.
    pub vocab_size: usize,
    /// The longest context the model was trained for.
    pub seq_len: usize,
    /// Epsilon of RMSNorm.
    pub rms_eps: f32,
    /// Base of the rotary position embedding's frequencies.
    pub rope_theta: f32,
}

impl Config {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.dim / self.n_heads
    }

    /// Width of the key (and value) vector of one position.
    pub fn kv_dim(&self) -> usize {
        self.head_dim() * self.n_kv_heads
    }

    /// Checks that the numbers describe a model this crate can run, with
    /// bounds that keep every size computation far from overflow.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason, value: usize| {
            Err(Error::BadConfig {
                reason,
                value: value as u64,
            })
        };
        if self.dim == 0 || self.dim > 1 << 16 {
            return bad("dim must be 1 to 65536", self.dim);
        }
        if self.hidden_dim == 0 || self.hidden_dim > 1 << 18 {
            return bad("hidden_dim must be 1 to 262144", self.hidden_dim);
        }
        if self.n_layers == 0 || self.n_layers > MAX_LAYERS {
            return bad("n_layers must be 1 to 128", self.n_layers);
        }
        if self.n_heads == 0 || !self.dim.is_multiple_of(self.n_heads) {
            return bad("n_heads must divide dim", self.n_heads);
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad("head dimension must be even for RoPE", self.head_dim());
        }
        if self.n_kv_heads == 0 || !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad("n_kv_heads must divide n_heads", self.n_kv_heads);
        }
        if self.vocab_size == 0 || self.vocab_size > 1 << 24 {
            return bad("vocab_size must be 1 to 16777216", self.vocab_size);
        }
        if self.seq_len == 0 || self.seq_len > 1 << 24 {
            return bad("context length must be 1 to 16777216", self.seq_len);
        }
        if !(self.rms_eps > 0.0 && self.rms_eps < 1.0) {
            return bad("rms epsilon must be in (0, 1)", 0);
        }
        if !(self.rope_theta > 1.0 && self.rope_theta.is_finite()) {
            return bad("rope base must be finite and > 1", 0);
        }
        Ok(())
    }
}

/// The weights of one transformer block.
#[derive(Debug, Clone, Copy)]
pub struct Layer<'a> {
    /// RMSNorm weight before attention (`dim`).
    pub attn_norm: Tensor<'a>,
    /// Query projection (`dim` x `dim`).
    pub wq: Tensor<'a>,
    /// Key projection (`kv_dim` x `dim`).
    pub wk: Tensor<'a>,
    /// Value projection (`kv_dim` x `dim`).
    pub wv: Tensor<'a>,
    /// Attention output projection (`dim` x `dim`).
    pub wo: Tensor<'a>,
    /// RMSNorm weight before the feed-forward block (`dim`).
    pub ffn_norm: Tensor<'a>,
    /// Feed-forward gate, llama2.c's `w1` (`hidden` x `dim`).
    pub w1: Tensor<'a>,
    /// Feed-forward down projection, `w2` (`dim` x `hidden`).
    pub w2: Tensor<'a>,
    /// Feed-forward up projection, `w3` (`hidden` x `dim`).
    pub w3: Tensor<'a>,
}

impl Layer<'_> {
    const EMPTY: Layer<'static> = Layer {
        attn_norm: Tensor::EMPTY,
        wq: Tensor::EMPTY,
        wk: Tensor::EMPTY,
        wv: Tensor::EMPTY,
        wo: Tensor::EMPTY,
        ffn_norm: Tensor::EMPTY,
        w1: Tensor::EMPTY,
        w2: Tensor::EMPTY,
        w3: Tensor::EMPTY,
    };

    /// The block's tensors with their roles.
    pub fn tensors(&self) -> [(&'static str, &Tensor<'_>); 9] {
        [
            ("attn_norm", &self.attn_norm),
            ("attn_q", &self.wq),
            ("attn_k", &self.wk),
            ("attn_v", &self.wv),
            ("attn_output", &self.wo),
            ("ffn_norm", &self.ffn_norm),
            ("ffn_gate", &self.w1),
            ("ffn_down", &self.w2),
            ("ffn_up", &self.w3),
        ]
    }
}

/// Which file format a model came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// GGUF, with its version.
    Gguf(u32),
    /// llama2.c "version 0" (fp32, `run.c`).
    Llama2cV0,
    /// llama2.c "version 2" (int8 groups, `runq.c`).
    Llama2cV2,
}

impl Format {
    /// A human-readable name.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Gguf(2) => "GGUF v2",
            Format::Gguf(_) => "GGUF v3",
            Format::Llama2cV0 => "llama2.c version 0 (fp32)",
            Format::Llama2cV2 => "llama2.c version 2 (int8)",
        }
    }
}

/// A Llama 2 model: configuration plus views of its weights.
///
/// A `Model` is immutable and `Sync`: any number of sessions on any number of
/// threads can share one.
#[derive(Debug, Clone)]
pub struct Model<'a> {
    /// Hyper-parameters.
    pub config: Config,
    /// Where it came from.
    pub format: Format,
    /// Token embedding table (`vocab` x `dim`).
    pub token_embd: Tensor<'a>,
    layers: [Layer<'a>; MAX_LAYERS],
    /// Final RMSNorm weight (`dim`).
    pub output_norm: Tensor<'a>,
    /// Classifier (`vocab` x `dim`); the embedding table when tied.
    pub output: Tensor<'a>,
    /// Whether the classifier is the embedding table.
    pub tied_output: bool,
    bytes: &'a [u8],
}

impl<'a> Model<'a> {
    /// An empty model with `config`, for the format readers to fill in.
    pub(crate) fn empty(config: Config, format: Format, bytes: &'a [u8]) -> Model<'a> {
        Model {
            config,
            format,
            token_embd: Tensor::EMPTY,
            layers: [Layer::EMPTY; MAX_LAYERS],
            output_norm: Tensor::EMPTY,
            output: Tensor::EMPTY,
            tied_output: false,
            bytes,
        }
    }

    pub(crate) fn layer_mut(&mut self, l: usize) -> &mut Layer<'a> {
        &mut self.layers[l]
    }

    /// The transformer blocks, in order.
    pub fn layers(&self) -> &[Layer<'a>] {
        &self.layers[..self.config.n_layers]
    }

    /// The bytes the model was read from.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Checks every tensor's shape against the configuration and that the
    /// matrix kernels can run on each (called by the readers after filling in).
    pub(crate) fn check_shapes(&self) -> Result<()> {
        let c = &self.config;
        let check = |t: &Tensor, name: &[u8], rows: usize, cols: usize| {
            if t.rows != rows || t.cols != cols {
                return Err(Error::BadTensor {
                    tensor: Name::new(name),
                    reason: "shape does not match the model configuration",
                });
            }
            Ok(())
        };
        check(&self.token_embd, b"token_embd", c.vocab_size, c.dim)?;
        check(&self.output_norm, b"output_norm", 1, c.dim)?;
        check(&self.output, b"output", c.vocab_size, c.dim)?;
        for (i, l) in self.layers().iter().enumerate() {
            let shapes = [
                (1, c.dim),
                (c.dim, c.dim),
                (c.kv_dim(), c.dim),
                (c.kv_dim(), c.dim),
                (c.dim, c.dim),
                (1, c.dim),
                (c.hidden_dim, c.dim),
                (c.dim, c.hidden_dim),
                (c.hidden_dim, c.dim),
            ];
            let mut name = [0u8; 32];
            for ((role, t), (rows, cols)) in l.tensors().iter().zip(shapes) {
                let n = write_layer_name(&mut name, i, role);
                check(t, &name[..n], rows, cols)?;
            }
            for (role, t) in [("attn_norm", &l.attn_norm), ("ffn_norm", &l.ffn_norm)] {
                if t.ty != TensorType::F32 {
                    let n = write_layer_name(&mut name, i, role);
                    return Err(Error::BadTensor {
                        tensor: Name::new(&name[..n]),
                        reason: "norm weights must be F32",
                    });
                }
            }
        }
        if self.output_norm.ty != TensorType::F32 {
            return Err(Error::BadTensor {
                tensor: Name::new(b"output_norm"),
                reason: "norm weights must be F32",
            });
        }
        Ok(())
    }

    /// Number of parameters (elements of all weight tensors, a tied classifier once).
    pub fn n_params(&self) -> u64 {
        let mut n = 0u64;
        let mut add = |t: &Tensor| n += (t.rows * t.cols) as u64;
        add(&self.token_embd);
        add(&self.output_norm);
        if !self.tied_output {
            add(&self.output);
        }
        for l in self.layers() {
            for (_, t) in l.tensors() {
                add(t);
            }
        }
        n
    }

    /// Bytes of weights (a tied classifier once).
    pub fn weight_bytes(&self) -> u64 {
        let mut n = self.token_embd.n_bytes() + self.output_norm.n_bytes();
        if !self.tied_output {
            n += self.output.n_bytes();
        }
        for l in self.layers() {
            for (_, t) in l.tensors() {
                n += t.n_bytes();
            }
        }
        n as u64
    }

    /// Weight bytes one decode step reads: every matrix once, plus one
    /// embedding row (the whole table is not read per token).
    pub fn bytes_per_token(&self) -> u64 {
        let mut n = self.output.n_bytes() + self.output_norm.n_bytes();
        n += self.token_embd.row_bytes();
        for l in self.layers() {
            for (_, t) in l.tensors() {
                n += t.n_bytes();
            }
        }
        n as u64
    }
}

/// Writes `blk.L.ROLE.weight` (the tensor's name in the file) into `buf`,
/// returning its length.
pub(crate) fn write_layer_name(buf: &mut [u8; 32], l: usize, role: &str) -> usize {
    let mut n = 0;
    let mut push = |b: &[u8]| {
        let k = b.len().min(buf.len() - n);
        buf[n..n + k].copy_from_slice(&b[..k]);
        n += k;
    };
    push(b"blk.");
    let digits = [(l / 100) as u8, (l / 10 % 10) as u8, (l % 10) as u8];
    let first = digits.iter().position(|&d| d != 0).unwrap_or(2);
    for d in &digits[first..] {
        push(&[b'0' + d]);
    }
    push(b".");
    push(role.as_bytes());
    push(b".weight");
    n
}
