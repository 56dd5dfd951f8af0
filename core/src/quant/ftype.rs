//! llama.cpp's per-tensor type choice: which tensors of a Llama model
//! `llama-quantize` quantizes, in which order it visits them, and the type
//! each gets for a given file type (`llama_tensor_get_type` and
//! `llama_model_quantize_impl` in `src/llama-quant.cpp`, as of February
//! 2025).
//!
//! Covered: plain Llama models (no experts), no importance matrix, default
//! options (no `--pure`, no `--output-tensor-type`/`--token-embedding-type`,
//! output tensor quantized), and the file types of [`FileType`]. Left out:
//! llama.cpp's special case for 70B models (attn_v bumped from Q3_K/Q4_K
//! to Q5_K, keyed on the model's size class, which a file does not state),
//! the mixture-of-experts rules (`n_expert` 8), Falcon's rules, and the
//! IQ1/IQ2/IQ3/IQ4/TQ file types.
//!
//! Use: count the model's attention-value tensors and check for a separate
//! `output.weight` ([`ModelInfo::new`]), sort the tensor names with
//! [`sort_in_llamacpp_order`], then for each in that order call
//! [`target_type`] with one [`Counters`] carried from tensor to tensor.

use crate::error::{Error, Result};
use crate::kernels::types::TensorType;
use core::cmp::Ordering;

/// A llama.cpp file type (`llama_ftype`; the number is what a GGUF file
/// stores as `general.file_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum FileType {
    /// Everything F32 (`ALL_F32`).
    F32 = 0,
    /// Matrices F16.
    F16 = 1,
    /// Matrices Q4_0, the classifier Q6_K.
    Q4_0 = 2,
    /// Matrices Q4_1, the classifier Q6_K.
    Q4_1 = 3,
    /// Matrices Q8_0.
    Q8_0 = 7,
    /// Matrices Q5_0, the classifier Q6_K.
    Q5_0 = 8,
    /// Matrices Q5_1, the classifier Q6_K.
    Q5_1 = 9,
    /// Mostly Q2_K; attn_v, attn_output and ffn_down Q3_K (attn_v Q4_K
    /// with 4 or more query heads per KV head).
    Q2_K = 10,
    /// Q3_K throughout.
    Q3_K_S = 11,
    /// Q3_K; attn_output and ffn_down Q4_K, the first two attn_v Q5_K and
    /// the rest Q4_K.
    Q3_K_M = 12,
    /// Q3_K; attn_v, attn_output and ffn_down Q5_K.
    Q3_K_L = 13,
    /// Q4_K; the first 4 attn_v and the first eighth of ffn_down Q5_K.
    Q4_K_S = 14,
    /// Q4_K; attn_v and ffn_down Q6_K in the layers `use_more_bits` picks.
    Q4_K_M = 15,
    /// Q5_K throughout.
    Q5_K_S = 16,
    /// Q5_K; attn_v and ffn_down Q6_K in the layers `use_more_bits` picks.
    Q5_K_M = 17,
    /// Q6_K throughout.
    Q6_K = 18,
    /// Matrices BF16.
    BF16 = 32,
}

impl FileType {
    /// Every file type, in number order.
    pub const ALL: [FileType; 17] = [
        FileType::F32,
        FileType::F16,
        FileType::Q4_0,
        FileType::Q4_1,
        FileType::Q8_0,
        FileType::Q5_0,
        FileType::Q5_1,
        FileType::Q2_K,
        FileType::Q3_K_S,
        FileType::Q3_K_M,
        FileType::Q3_K_L,
        FileType::Q4_K_S,
        FileType::Q4_K_M,
        FileType::Q5_K_S,
        FileType::Q5_K_M,
        FileType::Q6_K,
        FileType::BF16,
    ];

    /// The file type with `general.file_type` number `n`, if covered.
    pub fn from_number(n: u32) -> Option<FileType> {
        FileType::ALL.into_iter().find(|t| t.number() == n)
    }

    /// Its `general.file_type` number.
    pub fn number(self) -> u32 {
        self as u32
    }

    /// Its name as `llama-quantize` spells it (`"Q4_K_M"`).
    pub fn name(self) -> &'static str {
        match self {
            FileType::F32 => "F32",
            FileType::F16 => "F16",
            FileType::Q4_0 => "Q4_0",
            FileType::Q4_1 => "Q4_1",
            FileType::Q8_0 => "Q8_0",
            FileType::Q5_0 => "Q5_0",
            FileType::Q5_1 => "Q5_1",
            FileType::Q2_K => "Q2_K",
            FileType::Q3_K_S => "Q3_K_S",
            FileType::Q3_K_M => "Q3_K_M",
            FileType::Q3_K_L => "Q3_K_L",
            FileType::Q4_K_S => "Q4_K_S",
            FileType::Q4_K_M => "Q4_K_M",
            FileType::Q5_K_S => "Q5_K_S",
            FileType::Q5_K_M => "Q5_K_M",
            FileType::Q6_K => "Q6_K",
            FileType::BF16 => "BF16",
        }
    }

    /// The file type named `name` (ASCII case ignored).
    pub fn from_name(name: &str) -> Option<FileType> {
        FileType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// The type of the matrices no rule singles out.
    pub fn default_type(self) -> TensorType {
        match self {
            FileType::F32 => TensorType::F32,
            FileType::F16 => TensorType::F16,
            FileType::BF16 => TensorType::BF16,
            FileType::Q4_0 => TensorType::Q4_0,
            FileType::Q4_1 => TensorType::Q4_1,
            FileType::Q8_0 => TensorType::Q8_0,
            FileType::Q5_0 => TensorType::Q5_0,
            FileType::Q5_1 => TensorType::Q5_1,
            FileType::Q2_K => TensorType::Q2_K,
            FileType::Q3_K_S | FileType::Q3_K_M | FileType::Q3_K_L => TensorType::Q3_K,
            FileType::Q4_K_S | FileType::Q4_K_M => TensorType::Q4_K,
            FileType::Q5_K_S | FileType::Q5_K_M => TensorType::Q5_K,
            FileType::Q6_K => TensorType::Q6_K,
        }
    }
}

/// What llama.cpp knows of the whole model when it picks a tensor's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelInfo {
    /// Query heads per KV head (`n_head / n_head_kv`, 0 without KV heads).
    pub n_gqa: u32,
    /// Number of layers (`block_count`).
    pub n_layer: u32,
    /// Number of tensors whose name contains `attn_v.weight`,
    /// `attn_qkv.weight` or `attn_kv_b.weight`.
    pub n_attention_wv: u32,
    /// Whether the model has an `output.weight` (if not, the classifier is
    /// tied and `token_embd.weight` gets the classifier's type).
    pub has_output: bool,
}

impl ModelInfo {
    /// The model facts from its head counts, layer count and the names of
    /// all its tensors.
    pub fn new<'a>(
        n_head: u32,
        n_head_kv: u32,
        n_layer: u32,
        names: impl IntoIterator<Item = &'a [u8]>,
    ) -> ModelInfo {
        let mut info = ModelInfo {
            n_gqa: n_head.checked_div(n_head_kv).unwrap_or(0),
            n_layer,
            n_attention_wv: 0,
            has_output: false,
        };
        for name in names {
            if contains(name, b"attn_v.weight")
                || contains(name, b"attn_qkv.weight")
                || contains(name, b"attn_kv_b.weight")
            {
                info.n_attention_wv += 1;
            } else if name == b"output.weight" {
                info.has_output = true;
            }
        }
        info
    }
}

/// The running counts llama.cpp keeps while it visits the tensors (start
/// from `Counters::default()` and pass the same value for every tensor, in
/// [`sort_in_llamacpp_order`]'s order): how many attn_v, ffn_down, ffn_gate
/// and ffn_up tensors it has seen. For a Llama model the ffn counts are the
/// current layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// attn_v (and attn_qkv) tensors typed so far.
    pub i_attention_wv: u32,
    /// ffn_down tensors typed so far.
    pub i_ffn_down: u32,
    /// ffn_gate tensors typed so far.
    pub i_ffn_gate: u32,
    /// ffn_up tensors typed so far.
    pub i_ffn_up: u32,
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// llama.cpp's `use_more_bits`: the first eighth, the last eighth, and
/// every third layer in between.
fn use_more_bits(i_layer: u32, n_layers: u32) -> bool {
    let (i, n) = (i64::from(i_layer), i64::from(n_layers));
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// Whether `llama-quantize` quantizes the tensor named `name` with extents
/// `dims` (fastest first) at all: its name ends in `weight`, it has at
/// least two dimensions greater than one (trailing extents of 1 do not
/// count), and it is not a norm or one of the few other tensors llama.cpp
/// always keeps (`ffn_gate_inp`, `ssm_conv1d`, RWKV `time_mix_*`,
/// `attn_rel_b`). The others are copied as they are.
///
/// One quirk is kept: llama.cpp tests "ends in `weight`" as
/// `name.rfind("weight") == name.size() - 6`, which also holds for any
/// 5-byte name.
pub fn is_quantizable(name: &[u8], dims: &[u64]) -> bool {
    let ends_in_weight = name.ends_with(b"weight") || name.len() == 5;
    // ggml_n_dims: 1 + the index of the last extent above 1.
    let n_dims = dims.iter().rposition(|&d| d > 1).map_or(1, |i| i + 1);
    const KEPT: [&[u8]; 10] = [
        b"_norm.weight",
        b"ffn_gate_inp.weight",
        b"ssm_conv1d.weight",
        b"time_mix_first.weight",
        b"time_mix_w1.weight",
        b"time_mix_w2.weight",
        b"time_mix_decay_w1.weight",
        b"time_mix_decay_w2.weight",
        b"time_mix_lerp_fused.weight",
        b"attn_rel_b.weight",
    ];
    ends_in_weight && n_dims >= 2 && !KEPT.iter().any(|k| contains(name, k))
}

/// The type llama.cpp gives a tensor it quantizes ([`is_quantizable`]),
/// named `name`, with rows of `ne0` values, in a `ftype` file; advances
/// `counters` as llama.cpp does. Call it once per tensor, in
/// [`sort_in_llamacpp_order`]'s order.
///
/// For F32, F16 and BF16 files every such tensor gets that type. For the
/// quantized ones:
/// - the classifier (`output.weight`, or `token_embd.weight` when the model
///   has no `output.weight`) gets Q6_K, or Q8_0 in a Q8_0 file or when its
///   rows are not a whole number of the file's blocks;
/// - attn_v, attn_output and ffn_down follow the per-file-type rules
///   listed on [`FileType`]'s variants;
/// - then a type whose block does not divide the row falls back: Q4_K to
///   Q5_0, Q5_K to Q5_1, Q6_K to Q8_0, Q2_K and Q3_K to IQ4_NL, and to F16
///   if that still does not divide.
///
/// Errors where llama.cpp gives up ("Unsupported tensor size"): rows that
/// are not a multiple of 32 in a Q4_0, Q4_1, Q5_0, Q5_1 or Q8_0 file.
pub fn tensor_type(
    ftype: FileType,
    name: &[u8],
    ne0: u64,
    model: &ModelInfo,
    counters: &mut Counters,
) -> Result<TensorType> {
    use FileType as F;
    use TensorType as T;
    let default = ftype.default_type();
    if !default.is_quantized() {
        return Ok(default);
    }
    let divides = |t: TensorType| ne0.is_multiple_of(t.block_len() as u64);
    let mut ty = default;

    if name == b"output.weight" || (!model.has_output && name == b"token_embd.weight") {
        if !divides(default) {
            ty = T::Q8_0;
        } else if ty != T::Q8_0 {
            ty = T::Q6_K;
        }
    } else if name == b"token_embd.weight" {
        // Only the IQ and TQ file types give it another type.
    } else if contains(name, b"attn_v.weight") {
        let i = counters.i_attention_wv;
        match ftype {
            F::Q2_K => ty = if model.n_gqa >= 4 { T::Q4_K } else { T::Q3_K },
            F::Q3_K_M => ty = if i < 2 { T::Q5_K } else { T::Q4_K },
            F::Q3_K_L => ty = T::Q5_K,
            F::Q4_K_M | F::Q5_K_M if use_more_bits(i, model.n_attention_wv) => ty = T::Q6_K,
            F::Q4_K_S if i < 4 => ty = T::Q5_K,
            _ => {}
        }
        counters.i_attention_wv += 1;
    } else if contains(name, b"attn_k.weight") || contains(name, b"attn_q.weight") {
        // Only experts and the IQ3 file types change these.
    } else if contains(name, b"ffn_down") {
        let (i, n) = (counters.i_ffn_down, model.n_layer);
        match ftype {
            F::Q2_K => ty = T::Q3_K,
            F::Q3_K_M => ty = if i < n / 16 { T::Q5_K } else { T::Q4_K },
            F::Q3_K_L => ty = T::Q5_K,
            F::Q4_K_M | F::Q5_K_M if use_more_bits(i, n) => ty = T::Q6_K,
            F::Q4_K_S if i < n / 8 => ty = T::Q5_K,
            _ => {}
        }
        counters.i_ffn_down += 1;
    } else if contains(name, b"attn_output.weight") {
        match ftype {
            F::Q2_K => ty = T::Q3_K,
            F::Q3_K_M => ty = T::Q4_K,
            F::Q3_K_L => ty = T::Q5_K,
            _ => {}
        }
    } else if contains(name, b"attn_qkv.weight") {
        match ftype {
            F::Q3_K_M | F::Q3_K_L => ty = T::Q4_K,
            F::Q4_K_M => ty = T::Q5_K,
            F::Q5_K_M => ty = T::Q6_K,
            _ => {}
        }
    } else if contains(name, b"ffn_gate") {
        counters.i_ffn_gate += 1;
    } else if contains(name, b"ffn_up") {
        counters.i_ffn_up += 1;
    }

    if !divides(ty) {
        ty = match ty {
            T::Q2_K | T::Q3_K => T::IQ4_NL,
            T::Q4_K => T::Q5_0,
            T::Q5_K => T::Q5_1,
            T::Q6_K => T::Q8_0,
            _ => {
                return Err(Error::InvalidArgument {
                    what: "llama.cpp has no type for this row length in this file type (rows must be a multiple of 32)",
                })
            }
        };
        if !divides(ty) {
            ty = T::F16;
        }
    }
    Ok(ty)
}

/// The type `llama-quantize` writes the tensor in: `None` if it copies the
/// tensor unchanged ([`is_quantizable`] is false), else [`tensor_type`]
/// (with `dims[0]` as the row length). Call it for every tensor, in
/// [`sort_in_llamacpp_order`]'s order.
pub fn target_type(
    ftype: FileType,
    name: &[u8],
    dims: &[u64],
    model: &ModelInfo,
    counters: &mut Counters,
) -> Result<Option<TensorType>> {
    if !is_quantizable(name, dims) {
        return Ok(None);
    }
    let ne0 = dims.first().copied().unwrap_or(1);
    tensor_type(ftype, name, ne0, model, counters).map(Some)
}

/// The layer number llama.cpp reads from a tensor name (`sscanf(name,
/// "blk.%d.", &layer)`), or -1 when the name does not start with `blk.`
/// and a number. As `%d` does, spaces may precede the number, which may
/// have a sign; what follows the digits is not checked; a number beyond
/// the 64-bit range saturates and is then truncated to 32 bits.
pub fn layer_of(name: &[u8]) -> i32 {
    let Some(rest) = name.strip_prefix(b"blk.") else {
        return -1;
    };
    let rest = match rest.iter().position(|c| !matches!(c, b' ' | b'\t'..=b'\r')) {
        Some(i) => &rest[i..],
        None => return -1,
    };
    let (negative, rest) = match rest.first() {
        Some(b'-') => (true, &rest[1..]),
        Some(b'+') => (false, &rest[1..]),
        _ => (false, rest),
    };
    let n_digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    if n_digits == 0 {
        return -1;
    }
    let mut value = 0i64;
    for &c in &rest[..n_digits] {
        let digit = i64::from(c - b'0');
        value = if negative {
            value.saturating_mul(10).saturating_sub(digit)
        } else {
            value.saturating_mul(10).saturating_add(digit)
        };
    }
    value as i32
}

/// llama.cpp's tensor order (`weight_name_comparer`): by [`layer_of`]
/// (so tensors outside the layers, at -1, come first), then by name, byte
/// by byte.
pub fn compare_llamacpp_order(a: &[u8], b: &[u8]) -> Ordering {
    layer_of(a).cmp(&layer_of(b)).then_with(|| a.cmp(b))
}

/// Sorts `items` into the order `llama-quantize` visits (and writes)
/// tensors, [`compare_llamacpp_order`] on `name(item)`. Names are expected
/// to be unique, as in a GGUF file.
pub fn sort_in_llamacpp_order<T>(items: &mut [T], name: impl Fn(&T) -> &[u8]) {
    items.sort_unstable_by(|a, b| compare_llamacpp_order(name(a), name(b)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_numbers_as_sscanf_reads_them() {
        assert_eq!(layer_of(b"token_embd.weight"), -1);
        assert_eq!(layer_of(b"blk.0.attn_q.weight"), 0);
        assert_eq!(layer_of(b"blk.12.ffn_up.weight"), 12);
        assert_eq!(layer_of(b"blk. 7.x"), 7);
        assert_eq!(layer_of(b"blk.-3.x"), -3);
        assert_eq!(layer_of(b"blk.+4x"), 4);
        assert_eq!(layer_of(b"blk.x"), -1);
        assert_eq!(layer_of(b"blk."), -1);
        assert_eq!(layer_of(b"blk.-"), -1);
        assert_eq!(layer_of(b"blk.99999999999999999999999"), -1); // i64::MAX as i32
    }

    #[test]
    fn order_is_by_layer_then_name() {
        let mut names: [&[u8]; 8] = [
            b"blk.10.attn_q.weight",
            b"blk.2.ffn_down.weight",
            b"output.weight",
            b"blk.2.attn_k.weight",
            b"token_embd.weight",
            b"blk.0.ffn_up.weight",
            b"output_norm.weight",
            b"blk.1.attn_v.weight",
        ];
        sort_in_llamacpp_order(&mut names, |n| n);
        let want: [&[u8]; 8] = [
            b"output.weight",
            b"output_norm.weight",
            b"token_embd.weight",
            b"blk.0.ffn_up.weight",
            b"blk.1.attn_v.weight",
            b"blk.2.attn_k.weight",
            b"blk.2.ffn_down.weight",
            b"blk.10.attn_q.weight",
        ];
        assert_eq!(names, want);
    }

    #[test]
    fn which_tensors_are_quantized() {
        assert!(is_quantizable(b"blk.0.attn_q.weight", &[256, 256, 1, 1]));
        assert!(is_quantizable(b"token_embd.weight", &[256, 512]));
        assert!(!is_quantizable(b"blk.0.attn_norm.weight", &[256, 1, 1, 1]));
        assert!(!is_quantizable(b"output_norm.weight", &[256]));
        // One row: one-dimensional for ggml.
        assert!(!is_quantizable(b"blk.0.attn_q.weight", &[256, 1]));
        assert!(!is_quantizable(b"rope_freqs", &[64, 2]));
        assert!(!is_quantizable(b"blk.0.ffn_gate_inp.weight", &[256, 8]));
        assert!(is_quantizable(b"abcde", &[32, 32]));
        assert!(!is_quantizable(b"abcd", &[32, 32]));
    }

    fn llama(n_layer: u32, n_gqa: u32, tied: bool) -> ModelInfo {
        ModelInfo {
            n_gqa,
            n_layer,
            n_attention_wv: n_layer,
            has_output: !tied,
        }
    }

    /// The types of one layer's attn_v, attn_output, ffn_down (visited as
    /// llama.cpp does, layer after layer).
    fn layer_types(ftype: FileType, model: &ModelInfo, ne0: u64) -> [[TensorType; 3]; 8] {
        let mut c = Counters::default();
        let mut out = [[TensorType::F32; 3]; 8];
        for row in out.iter_mut().take(model.n_layer as usize) {
            // Sorted by name within a layer: attn_output < attn_v < ffn_down.
            let o = tensor_type(ftype, b"blk.N.attn_output.weight", ne0, model, &mut c).unwrap();
            let v = tensor_type(ftype, b"blk.N.attn_v.weight", ne0, model, &mut c).unwrap();
            let d = tensor_type(ftype, b"blk.N.ffn_down.weight", ne0, model, &mut c).unwrap();
            *row = [v, o, d];
        }
        out
    }

    #[test]
    fn k_quant_mixes_on_eight_layers() {
        use TensorType::*;
        let m = llama(8, 1, false);
        // use_more_bits(i, 8): layers 0, 3, 6, 7.
        let t = layer_types(FileType::Q4_K_M, &m, 4096);
        let more = [true, false, false, true, false, false, true, true];
        for (row, more) in t.iter().zip(more) {
            let v = if more { Q6_K } else { Q4_K };
            assert_eq!(*row, [v, Q4_K, v]);
        }
        let t = layer_types(FileType::Q4_K_S, &m, 4096);
        assert_eq!(t[0], [Q5_K, Q4_K, Q5_K]);
        assert_eq!(t[3], [Q5_K, Q4_K, Q4_K]);
        assert_eq!(t[4], [Q4_K, Q4_K, Q4_K]);
        let t = layer_types(FileType::Q3_K_M, &m, 4096);
        assert_eq!(t[0], [Q5_K, Q4_K, Q4_K]);
        assert_eq!(t[2], [Q4_K, Q4_K, Q4_K]);
        let t = layer_types(FileType::Q2_K, &m, 4096);
        assert_eq!(t[0], [Q3_K, Q3_K, Q3_K]);
        let t = layer_types(FileType::Q2_K, &llama(8, 4, false), 4096);
        assert_eq!(t[0], [Q4_K, Q3_K, Q3_K]);
        let t = layer_types(FileType::Q3_K_S, &m, 4096);
        assert_eq!(t[5], [Q3_K, Q3_K, Q3_K]);
    }

    #[test]
    fn fallbacks_for_rows_not_a_multiple_of_256() {
        use TensorType::*;
        let m = llama(8, 1, true);
        let mut c = Counters::default();
        // 288: a multiple of 32 but not 256.
        let ty = |f, name: &[u8], ne0, c: &mut Counters| tensor_type(f, name, ne0, &m, c).unwrap();
        assert_eq!(
            ty(FileType::Q4_K_M, b"token_embd.weight", 288, &mut c),
            Q8_0
        );
        assert_eq!(
            ty(FileType::Q4_K_M, b"blk.0.attn_q.weight", 288, &mut c),
            Q5_0
        );
        assert_eq!(
            ty(FileType::Q4_K_M, b"blk.0.attn_v.weight", 288, &mut c),
            Q8_0
        );
        assert_eq!(
            ty(FileType::Q5_K_S, b"blk.0.attn_q.weight", 288, &mut c),
            Q5_1
        );
        assert_eq!(
            ty(FileType::Q3_K_S, b"blk.0.attn_q.weight", 288, &mut c),
            IQ4_NL
        );
        assert_eq!(
            ty(FileType::Q2_K, b"blk.0.attn_q.weight", 288, &mut c),
            IQ4_NL
        );
        // 200: not even a multiple of 32.
        assert_eq!(
            ty(FileType::Q4_K_M, b"blk.0.attn_q.weight", 200, &mut c),
            F16
        );
        assert_eq!(ty(FileType::Q6_K, b"blk.0.attn_q.weight", 200, &mut c), F16);
        assert_eq!(
            ty(FileType::BF16, b"blk.0.attn_q.weight", 200, &mut c),
            BF16
        );
        assert!(tensor_type(FileType::Q4_0, b"blk.0.attn_q.weight", 200, &m, &mut c).is_err());
        assert!(tensor_type(FileType::Q8_0, b"output.weight", 200, &m, &mut c).is_err());
        // The classifier: Q6_K, or Q8_0 in a Q8_0 file.
        assert_eq!(ty(FileType::Q4_0, b"token_embd.weight", 256, &mut c), Q6_K);
        assert_eq!(ty(FileType::Q8_0, b"token_embd.weight", 256, &mut c), Q8_0);
        // 64 divides Q4_0's block, so Q6_K first, which falls back to Q8_0.
        assert_eq!(ty(FileType::Q4_0, b"token_embd.weight", 64, &mut c), Q8_0);
    }

    #[test]
    fn untied_models_keep_token_embd_at_the_default() {
        use TensorType::*;
        let m = ModelInfo::new(
            32,
            8,
            2,
            [
                &b"token_embd.weight"[..],
                b"output.weight",
                b"blk.0.attn_v.weight",
                b"blk.1.attn_v.weight",
            ],
        );
        assert_eq!((m.n_gqa, m.n_attention_wv, m.has_output), (4, 2, true));
        let mut c = Counters::default();
        let ty = tensor_type(FileType::Q4_K_M, b"token_embd.weight", 4096, &m, &mut c);
        assert_eq!(ty.unwrap(), Q4_K);
        let ty = tensor_type(FileType::Q4_K_M, b"output.weight", 4096, &m, &mut c);
        assert_eq!(ty.unwrap(), Q6_K);
        assert_eq!(FileType::from_name("q4_k_m"), Some(FileType::Q4_K_M));
        assert_eq!(FileType::from_number(32), Some(FileType::BF16));
        assert_eq!(FileType::from_number(4), None);
    }
}
