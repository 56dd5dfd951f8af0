//! Numeric kernels and their one dispatch point.
//!
//! # Layering (lowest first; nothing imports upwards)
//!
//! 1. [`types`]: what each weight type *is*: its GGUF block layout and its
//!    scalar reference (decoding, the dot product with the activations it
//!    takes, the activation quantizers). One file per family; a new type is
//!    a new file (or a new entry in its family's) plus a line in
//!    [`types::TensorType`].
//! 2. [`acts`]: activation batches and their quantizations;
//!    [`interleave`]: the interleaved layout of Q8_0/Q4_0 matrices.
//! 3. The kernel sets, each a [`Kernels`] table: [`scalar`] (every type's
//!    reference applied row by row; the set every other one is tested
//!    against), `x86` (`avx2`, `avx512`, `amx`) and `aarch64` (`neon`,
//!    `dotprod`).
//!    A SIMD set holds only the inner products it speeds up; for the other
//!    types, [`Kernels::mat`] falls back to the scalar kernel.
//! 4. This file: the table of the running CPU ([`active`]), and the entry
//!    points the rest of the crate uses: [`quantize_batch`],
//!    [`dequantize_row`], and [`Kernels::mat`] (which `crate::matmul` splits
//!    across threads).
//!
//! # Kernel sets and dispatch
//!
//! | set | target | needs |
//! | --- | --- | --- |
//! | `scalar` | any | nothing |
//! | `avx2` | x86-64 | AVX2, FMA, F16C |
//! | `avx512` | x86-64 | AVX-512 F, BW, VL and VNNI (`vpdpbusd`) |
//! | `amx` | x86-64 Linux | `avx512`'s, AMX-TILE and AMX-INT8, and the kernel's grant of the tile state |
//! | `neon` | aarch64 | NEON (always present) |
//! | `dotprod` | aarch64 | NEON and the dot product extension (`sdot`) |
//!
//! [`active`] picks the most capable set the CPU supports: compile-time
//! target features first, then (with the `std` feature) runtime detection,
//! else scalar. The choice is made once and cached in an atomic. With `std`,
//! the environment variable `LLAMETTE_KERNELS` (`scalar`, `avx2`, `avx512`,
//! `amx`, `neon` or `dotprod`) overrides the choice when it names a set this CPU
//! can run; it is read at the first selection only. [`available`] lists the
//! sets this CPU can run and [`force`] switches to one of them (for tests and
//! benchmarks).
//!
//! # Every set computes the same numbers
//!
//! The kernels are written so that every set returns *bit-identical* results
//! to the scalar reference, on every CPU. The reference of each type (in
//! [`types`]) fixes the summation order:
//! - F32, F16 and BF16 rows: sixteen interleaved partial sums (element `i`
//!   goes to sum `i % 16`), combined by one fixed tree; F32 updates each as
//!   `acc + w * x` (no fused multiply-add), F16 and BF16 as `fma(w, x, acc)`;
//! - the 32-wide quantized types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL):
//!   each block's dot product is an exact `i32`, scaled per block and added
//!   to partial sum `block % 8`, combined by a fixed tree;
//! - the K-quants: per super-block of 256, exact `i32` sums of the
//!   sub-blocks times their integer scales, then one running f32 sum per
//!   row (see [`types::k_quants`]);
//! - interleaved Q8_0 and Q4_0 ([`interleave`]): as plain Q8_0 and Q4_0
//!   (partial sum `block % 8`), so interleaving changes no bit; interleaved
//!   F16 as plain F16;
//! - quantizing activations rounds as the scalar code does.
//!
//! So the logits do not depend on the CPU, on the kernel set, on the thread
//! count, nor on whether a token was fed alone or in a batch.
//!
//! # The fixed-point path
//!
//! Quantized weights take the fixed-point path: the activation vector is
//! first quantized ([`quantize_batch`]: int8 blocks of 32 for the 32-wide
//! types, super-blocks of 256 for the K-quants, as [`TensorType::act_type`]
//! says); each block's dot product accumulates in `i32`, then float
//! multiplies apply the scales.

pub mod acts;
pub mod interleave;
pub mod scalar;
pub mod types;

#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(target_arch = "aarch64")]
mod aarch64;

use core::sync::atomic::{AtomicU8, Ordering};

pub use acts::{Act, Acts, Q8K, Q8T};
pub use types::{ActType, TensorType, QK, QK_K};

/// A matrix kernel: with `rows = out.len() / a.n`, computes
/// `out[c * rows + r] = dot(row r, vector c of a)` for the `rows` whole rows
/// at the start of `w` (little-endian bytes, any alignment, each row `a.cols`
/// elements of the kernel's type) and every vector of `a`. `a` must carry
/// the quantization the type takes ([`TensorType::act_type`]). Panics if a
/// slice is too short.
pub type MatFn = fn(w: &[u8], a: &Acts, out: &mut [f32]);

/// Quantizes activations to Q8 blocks of 32 (`x.len()` a multiple of 32;
/// `d` and `sum` hold `x.len() / 32` blocks, `q` holds `x.len()` values):
/// see [`types::q8_0::quantize`].
pub type QuantizeFn = fn(x: &[f32], d: &mut [f32], sum: &mut [i32], q: &mut [i8]);

/// Quantizes activations to Q8_K super-blocks (`x.len()` a multiple of 256;
/// `d` holds `x.len() / 256` scales, `bsums` `x.len() / 16` sums, `q`
/// `x.len()` values): see [`types::k_quants::quantize_q8k`].
pub type QuantizeKFn = fn(x: &[f32], d: &mut [f32], bsums: &mut [i16], q: &mut [i8]);

/// Attention's weighted sum of value rows: see [`scalar::weighted_sum`].
pub type WeightedSumFn = fn(att: &[f32], v: ValueRows, out: &mut [f32]);

/// Attention scores against a Q8_0 key cache: see
/// [`scalar::kv_scores_q8_0`] (`keys`, `nb` blocks per row, the query's
/// Q8 scales, sums and values, the scores).
pub type KvScoresFn =
    fn(keys: &[u8], nb: usize, qd: &[f32], qsum: &[i32], qs: &[i8], out: &mut [f32]);

/// The value rows of [`WeightedSumFn`], as the KV cache stores them.
#[derive(Debug, Clone, Copy)]
pub enum ValueRows<'a> {
    /// Single precision.
    F32(&'a [f32]),
    /// Half precision bits.
    F16(&'a [u16]),
    /// Q8_0 rows of `nb` blocks each (bytes, any alignment).
    Q8_0 {
        /// The rows.
        rows: &'a [u8],
        /// Blocks per row.
        nb: usize,
    },
}

/// A kernel set (scalar, AVX2, NEON ...).
///
/// Every function of every set gives bit-identical results (see the module
/// documentation); the sets differ only in speed.
#[derive(Debug, Clone, Copy)]
pub struct Kernels {
    /// Name of the set, e.g. `"scalar"` (the names `LLAMETTE_KERNELS` takes).
    pub name: &'static str,
    /// This set's own matrix kernel for a weight type, if it has one (see
    /// [`Kernels::mat`]).
    pub kernel_for: fn(TensorType) -> Option<MatFn>,
    /// Whether the interleaved types' kernels are SIMD kernels, faster than
    /// the plain types' (else they are the scalar reference's, and
    /// interleaving would slow this set down).
    pub fast_interleaved: bool,
    /// The K-quants whose interleaved layouts ([`TensorType::Q4_Kx16`],
    /// [`TensorType::Q5_Kx16`]) this set reads faster than the plain ones:
    /// those [`crate::repack`] interleaves for it.
    pub fast_interleaved_k: &'static [TensorType],
    /// Whether this set's batches of plain Q8_0/Q4_0 weights use the
    /// transposed Q8 copy ([`Q8T`]) when [`quantize_batch`] can make it.
    pub transposed_q8: bool,
    /// Quantizes activations to Q8 blocks (bit-identical to the scalar one).
    pub quantize: QuantizeFn,
    /// Quantizes activations to Q8_K super-blocks (bit-identical to the
    /// scalar one).
    pub quantize_k: QuantizeKFn,
    /// Attention's weighted sum of value rows (bit-identical to
    /// [`scalar::weighted_sum`]).
    pub weighted_sum: WeightedSumFn,
    /// Attention scores against a Q8_0 key cache (bit-identical to
    /// [`scalar::kv_scores_q8_0`]).
    pub kv_scores_q8_0: KvScoresFn,
}

impl Kernels {
    /// The matrix kernel for weights of type `ty`: this set's own, else the
    /// scalar reference's (`None` only for llama2.c's split layout, which
    /// has a row function instead: [`types::split::dot`]).
    pub fn mat(&self, ty: TensorType) -> Option<MatFn> {
        (self.kernel_for)(ty).or_else(|| scalar::kernel_for(ty))
    }

    /// Whether this set has its own (SIMD) kernel for `ty`.
    pub fn has_own(&self, ty: TensorType) -> bool {
        (self.kernel_for)(ty).is_some()
    }
}

/// A kernel set and whether this CPU can run it.
struct Candidate {
    set: &'static Kernels,
    supported: fn() -> bool,
}

fn always() -> bool {
    true
}

/// Every set compiled for this target, least capable first.
static CANDIDATES: &[Candidate] = &[
    Candidate {
        set: &scalar::KERNELS,
        supported: always,
    },
    #[cfg(target_arch = "x86_64")]
    Candidate {
        set: &x86::AVX2,
        supported: x86::avx2_supported,
    },
    #[cfg(target_arch = "x86_64")]
    Candidate {
        set: &x86::AVX512,
        supported: x86::avx512_supported,
    },
    #[cfg(target_arch = "x86_64")]
    Candidate {
        set: &x86::AMX,
        supported: x86::amx_supported,
    },
    #[cfg(target_arch = "aarch64")]
    Candidate {
        set: &aarch64::NEON,
        supported: aarch64::neon_supported,
    },
    #[cfg(target_arch = "aarch64")]
    Candidate {
        set: &aarch64::DOTPROD,
        supported: aarch64::dotprod_supported,
    },
];

/// The chosen set: its index in `CANDIDATES` plus one; 0 before the choice.
static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// The kernel sets this CPU can run, least capable first (`scalar` is
/// always the first).
pub fn available() -> impl Iterator<Item = &'static Kernels> {
    CANDIDATES.iter().filter(|c| (c.supported)()).map(|c| c.set)
}

/// The kernel set in use: chosen once (see the module documentation), the
/// same for the whole process unless [`force`]d.
pub fn active() -> &'static Kernels {
    let i = ACTIVE.load(Ordering::Relaxed);
    if i != 0 {
        return CANDIDATES[i as usize - 1].set;
    }
    let i = select();
    ACTIVE.store(i as u8 + 1, Ordering::Relaxed);
    CANDIDATES[i].set
}

/// The index of the set to use: `LLAMETTE_KERNELS` if it names a set this
/// CPU can run, else the most capable one.
fn select() -> usize {
    #[cfg(feature = "std")]
    {
        // `var_os` allocates only when the variable is set.
        if let Some(name) = std::env::var_os("LLAMETTE_KERNELS") {
            if let Some(i) = name.to_str().and_then(find) {
                return i;
            }
        }
    }
    CANDIDATES
        .iter()
        .rposition(|c| (c.supported)())
        .unwrap_or(0)
}

/// The index of the set called `name`, if this CPU can run it.
fn find(name: &str) -> Option<usize> {
    CANDIDATES
        .iter()
        .position(|c| c.set.name == name && (c.supported)())
}

/// Makes the x86-64 kernels use the tuning measured on Intel CPUs
/// (`true`: prefetches into L2, F16 batches converted once per pass) or
/// the one measured on AMD (`false`), whatever the CPU, so that tests
/// run both paths on any machine: the results are the same bits either
/// way. Elsewhere it does nothing.
#[doc(hidden)]
pub fn force_intel_tuning(intel: bool) {
    #[cfg(target_arch = "x86_64")]
    x86::force_prefetch(if intel {
        x86::Prefetch::L2
    } else {
        x86::Prefetch::L1
    });
    #[cfg(not(target_arch = "x86_64"))]
    let _ = intel;
}

/// Whether this process has been granted AMX's tile state and used it
/// (the `amx` set asks Linux at its first batch; see its kernels). For
/// tests; `false` off x86-64 Linux.
#[doc(hidden)]
pub fn amx_granted() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        x86::amx_granted_already()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Makes the set called `name` the active one, for tests and benchmarks.
/// Returns `false` (and changes nothing) if this CPU cannot run it or no set
/// has that name. Matrix products already running finish with the set they
/// started with.
pub fn force(name: &str) -> bool {
    match find(name) {
        Some(i) => {
            ACTIVE.store(i as u8 + 1, Ordering::Relaxed);
            true
        }
        None => false,
    }
}

/// The scratch a batch's quantizations are written into; a part the batch
/// does not need may be empty.
#[derive(Debug)]
pub struct QuantScratch<'s> {
    /// Q8 scales, one per 32 values.
    pub d: &'s mut [f32],
    /// Q8 sums, one per 32 values.
    pub sum: &'s mut [i32],
    /// Q8 values.
    pub q: &'s mut [i8],
    /// Q8_K scales, one per 256 values.
    pub kd: &'s mut [f32],
    /// Q8_K sums, one per 16 values.
    pub kbsums: &'s mut [i16],
    /// Q8_K values.
    pub kq: &'s mut [i8],
    /// The transposed Q8 values ([`Q8T`]; `n` rounded up to 16, times
    /// `cols`), for the sets that take them; may be empty.
    pub tq: &'s mut [i8],
    /// The transposed Q8 scales (`n` rounded up to 16, times `cols / 32`).
    pub td: &'s mut [f32],
}

/// The batch of `n` activation vectors stored one after the other in `x`
/// (`n * cols` values), with the quantizations that matrices of the types
/// `tys` take, made by the active kernel set into `scratch` (which must be
/// large enough: `x.len() / 32` Q8 blocks and `x.len()` values, `x.len() /
/// 256` Q8_K scales, `x.len() / 16` sums and `x.len()` values, for the
/// kinds needed).
///
/// Each vector gets exactly the quantization it would get alone. `cols`
/// must be a multiple of 32 for Q8 and of 256 for Q8_K (the weight types'
/// blocks).
pub fn quantize_batch<'a>(
    x: &'a [f32],
    n: usize,
    tys: &[TensorType],
    scratch: QuantScratch<'a>,
) -> Acts<'a> {
    let mut a = Acts::unquantized(x, n);
    let len = x.len();
    let k = active();
    if tys.iter().any(|t| t.act_type() == ActType::Q8) {
        assert_eq!(
            a.cols % QK,
            0,
            "quantize_batch: cols is not a multiple of 32"
        );
        let (d, sum, q) = (
            &mut scratch.d[..len / QK],
            &mut scratch.sum[..len / QK],
            &mut scratch.q[..len],
        );
        (k.quantize)(x, d, sum, q);
        let chunked = n.next_multiple_of(acts::CHUNK);
        let (tn, tdn) = (chunked * a.cols, chunked * (a.cols / QK));
        // Only plain Q8_0/Q4_0 matrices take it (interleaved ones do not).
        let plain = tys
            .iter()
            .any(|t| matches!(t, TensorType::Q8_0 | TensorType::Q4_0));
        if k.transposed_q8 && plain && n > 1 && scratch.tq.len() >= tn && scratch.td.len() >= tdn {
            let (tq, td) = (&mut scratch.tq[..tn], &mut scratch.td[..tdn]);
            acts::transpose_q8(q, d, n, a.cols, tq, td);
            a.t = Q8T { q: tq, d: td };
        }
        (a.d, a.sum, a.q) = (d, sum, q);
    }
    if tys.iter().any(|t| t.act_type() == ActType::Q8K) {
        assert_eq!(
            a.cols % QK_K,
            0,
            "quantize_batch: cols is not a multiple of 256"
        );
        let (d, bsums, q) = (
            &mut scratch.kd[..len / QK_K],
            &mut scratch.kbsums[..len / 16],
            &mut scratch.kq[..len],
        );
        (k.quantize_k)(x, d, bsums, q);
        a.k = Q8K { d, bsums, q };
    }
    a
}

/// Checks the arguments of a [`MatFn`] for weights of type `ty` and returns
/// `rows`.
#[inline]
pub(crate) fn check_mat(w: &[u8], a: &Acts, out: &[f32], ty: TensorType) -> usize {
    if a.n == 0 {
        assert!(out.is_empty(), "kernel: output for an empty batch");
        return 0;
    }
    let rows = out.len() / a.n;
    assert_eq!(rows * a.n, out.len(), "kernel: output is not rows * n");
    assert_eq!(
        a.cols % ty.block_len(),
        0,
        "kernel: cols is not a multiple of the block"
    );
    let rb = a.cols / ty.block_len() * ty.block_bytes();
    assert!(
        rows.checked_mul(rb).is_some_and(|n| w.len() >= n),
        "kernel: weights are too short"
    );
    if ty.is_interleaved() {
        assert!(
            rows.is_multiple_of(interleave::BAND),
            "kernel: rows are not whole bands"
        );
    }
    let len = a.n * a.cols;
    match ty.act_type() {
        ActType::F32 => assert!(a.x.len() >= len, "kernel: activations too short"),
        ActType::Q8 => {
            assert!(a.q.len() >= len, "kernel: quantized activations too short");
            assert!(a.d.len() >= len / QK, "kernel: activation scales too short");
            assert!(a.sum.len() >= len / QK, "kernel: activation sums too short");
        }
        ActType::Q8K => {
            assert!(a.k.q.len() >= len, "kernel: Q8_K activations too short");
            assert!(a.k.d.len() >= len / QK_K, "kernel: Q8_K scales too short");
            assert!(a.k.bsums.len() >= len / 16, "kernel: Q8_K sums too short");
        }
    }
    rows
}

/// Decodes row `r` of a `rows` x `cols` matrix of type `ty` stored in
/// `data` (with llama2.c's group `scales` for its split type, else empty)
/// into `out` (`cols` long).
///
/// # Panics
/// If the row is outside `data` or `out` is not `cols` long.
pub fn dequantize_row(ty: TensorType, data: &[u8], scales: &[u8], r: usize, out: &mut [f32]) {
    let cols = out.len();
    let rb = ty.bytes_for(cols).unwrap_or(usize::MAX);
    match ty {
        TensorType::Q8_0x16 | TensorType::Q4_0x16 => {
            interleave::dequantize_row(data, ty == TensorType::Q4_0x16, r, out)
        }
        TensorType::Q4_Kx16 | TensorType::Q5_Kx16 => {
            interleave::dequantize_row_k(data, ty == TensorType::Q5_Kx16, r, out)
        }
        TensorType::F16x16 => interleave::dequantize_row_f16(data, r, out),
        TensorType::Q8Split { group } => {
            types::split::dequantize(&data[r * rb..(r + 1) * rb], scales, r, group, out)
        }
        _ => types::dequantize_row(ty, &data[r * rb..(r + 1) * rb], out),
    }
}
