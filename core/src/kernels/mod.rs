//! Numeric kernels and their one dispatch point.
//!
//! The forward pass calls only the functions of this module: [`matvec`] (one
//! activation vector, decoding), [`matmul`] (a batch of them, prefill),
//! [`quantize_acts`] / [`quantize_batch`] and [`dequantize_row`]. Each weight
//! type has a matrix kernel in a [`Kernels`] table; the table in use is
//! chosen once by [`active`]. The scalar table ([`scalar`]) is the readable
//! reference every SIMD table is tested against.
//!
//! # Kernel sets and dispatch
//!
//! | set | target | needs |
//! | --- | --- | --- |
//! | `scalar` | any | nothing |
//! | `avx2` | x86-64 | AVX2, FMA, F16C |
//! | `avx512` | x86-64 | AVX-512 F, BW, VL and VNNI (`vpdpbusd`) |
//! | `neon` | aarch64 | NEON (always present) |
//! | `dotprod` | aarch64 | NEON and the dot product extension (`sdot`) |
//!
//! [`active`] picks the most capable set the CPU supports: compile-time
//! target features first, then (with the `std` feature) runtime detection,
//! else scalar. The choice is made once and cached in an atomic. With `std`,
//! the environment variable `LLAMETTE_KERNELS` (`scalar`, `avx2`, `avx512`,
//! `neon` or `dotprod`) overrides the choice when it names a set this CPU
//! can run; it is read at the first selection only. [`available`] lists the
//! sets this CPU can run and [`force`] switches to one of them (for tests and
//! benchmarks).
//!
//! # Every set computes the same numbers
//!
//! The kernels are written so that every set returns *bit-identical* results
//! to the scalar reference, on every CPU:
//! - F32 and F16 rows: sixteen interleaved partial sums (element `i` goes to
//!   sum `i % 16`), combined by one fixed tree; F32 updates each as
//!   `acc + w * x` (a rounded product, then a rounded sum: no fused
//!   multiply-add), F16 as `fma(w, x, acc)` (fused, one rounding: every SIMD
//!   set has it, and it halves the arithmetic of prefill's F16 products);
//! - Q8_0 and Q4_0 rows: each block's dot product is an exact `i32`; it is
//!   scaled as `(d_w * d_a) * dot` and added to partial sum `block % 8`,
//!   combined by a fixed tree;
//! - interleaved Q8_0 and Q4_0 ([`crate::repack`]): one running sum per row,
//!   `acc + (d_w * d_a) * dot` block after block (16 rows side by side, one
//!   per vector lane);
//! - quantizing activations rounds half away from zero, as the scalar code.
//!
//! So the logits do not depend on the CPU, on the kernel set, on the thread
//! count, nor on whether a token was fed alone ([`matvec`]) or in a batch
//! ([`matmul`]).
//!
//! # The fixed-point path
//!
//! Quantized weights (Q8_0, Q4_0) take the fixed-point path: the activation
//! vector is first quantized to int8 blocks of 32 ([`quantize_acts`]); each
//! block's dot product accumulates in `i32`, then one float multiply per block
//! applies the two scales.

pub mod scalar;

/// Safe entry points of a SIMD set (used by `x86.rs` and `aarch64.rs`):
/// check the arguments, then call the `#[target_feature]` implementation in
/// module `$imp`. Expanded where `check_mat`, `Acts` and `QK` are in scope.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
macro_rules! entries {
    ($supported:ident, $imp:ident, $f32:ident, $f16:ident, $q8:ident, $q4:ident, $quant:ident) => {
        fn $f32(w: &[u8], a: &Acts, out: &mut [f32]) {
            let rows = check_mat(w, a, out, 1, 4, false);
            debug_assert!($supported());
            // SAFETY: the table holding this function is handed out only when
            // the CPU has the set's features (see the module documentation);
            // `check_mat` checked every slice length the kernel reads.
            unsafe { $imp::mat_f32(w, a, out, rows) }
        }

        fn $f16(w: &[u8], a: &Acts, out: &mut [f32]) {
            let rows = check_mat(w, a, out, 1, 2, false);
            debug_assert!($supported());
            // SAFETY: as for the F32 kernel above.
            unsafe { $imp::mat_f16(w, a, out, rows) }
        }

        fn $q8(w: &[u8], a: &Acts, out: &mut [f32]) {
            let rows = check_mat(w, a, out, QK, 34, true);
            debug_assert!($supported());
            // SAFETY: as for the F32 kernel above.
            unsafe { $imp::mat_q8_0(w, a, out, rows) }
        }

        fn $q4(w: &[u8], a: &Acts, out: &mut [f32]) {
            let rows = check_mat(w, a, out, QK, 18, true);
            debug_assert!($supported());
            // SAFETY: as for the F32 kernel above.
            unsafe { $imp::mat_q4_0(w, a, out, rows) }
        }

        fn $quant(x: &[f32], d: &mut [f32], sum: &mut [i32], q: &mut [i8]) {
            assert_eq!(x.len() % QK, 0, "quantize: length is not a multiple of 32");
            let nb = x.len() / QK;
            assert!(
                d.len() >= nb && sum.len() >= nb && q.len() >= x.len(),
                "quantize: scratch too short"
            );
            debug_assert!($supported());
            // SAFETY: as for the F32 kernel above (lengths checked here).
            unsafe { $imp::quantize(x, d, sum, q) }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(target_arch = "aarch64")]
mod aarch64;

use core::sync::atomic::{AtomicU8, Ordering};

use crate::parallel::Parallel;
use crate::tensor::{Tensor, TensorType, BAND, QK};

/// An activation vector, with its int8 quantization when the weights need one.
#[derive(Debug, Clone, Copy)]
pub struct Act<'a> {
    /// The activations.
    pub x: &'a [f32],
    /// Per block of 32: the scale (`x ~ d * q`); empty when not quantized.
    pub d: &'a [f32],
    /// Per block of 32: the sum of its `q` (for Q4_0's offset of 8).
    pub sum: &'a [i32],
    /// The quantized activations, `x.len()` of them, each in `-127..=127`.
    pub q: &'a [i8],
}

/// A batch of `n` activation vectors of `cols` elements each, stored one
/// after the other, with their int8 quantization when the weights need one.
///
/// Vector `b` is `x[b * cols..(b + 1) * cols]`; its blocks of 32 are
/// `d[b * cols / 32..]`, `sum[b * cols / 32..]` and `q[b * cols..]` (the
/// layout [`quantize_batch`] produces, which is simply the quantization of
/// the whole `x` as one long vector). `d`, `sum` and `q` are empty when the
/// batch is not quantized. Quantized values are in `-127..=127`.
#[derive(Debug, Clone, Copy)]
pub struct Acts<'a> {
    /// Number of activation vectors.
    pub n: usize,
    /// Elements per vector (the weight's `cols`).
    pub cols: usize,
    /// The activations, `n * cols`.
    pub x: &'a [f32],
    /// Scale per block of 32, `n * cols / 32`; empty when not quantized.
    pub d: &'a [f32],
    /// Sum of `q` per block of 32, `n * cols / 32`; empty when not quantized.
    pub sum: &'a [i32],
    /// The quantized activations, `n * cols`; empty when not quantized.
    pub q: &'a [i8],
}

impl<'a> Acts<'a> {
    /// A batch of `n` unquantized vectors (for F32 and F16 weights):
    /// `x.len()` must be a multiple of `n`.
    pub fn unquantized(x: &'a [f32], n: usize) -> Acts<'a> {
        let cols = x.len().checked_div(n).unwrap_or(0);
        assert_eq!(cols * n, x.len(), "Acts: length is not n * cols");
        Acts {
            n,
            cols,
            x,
            d: &[],
            sum: &[],
            q: &[],
        }
    }

    /// The batch holding the single vector `a`.
    pub fn one(a: &Act<'a>) -> Acts<'a> {
        Acts {
            n: 1,
            cols: a.x.len(),
            x: a.x,
            d: a.d,
            sum: a.sum,
            q: a.q,
        }
    }

    /// Whether the batch carries its int8 quantization.
    pub fn is_quantized(&self) -> bool {
        !self.q.is_empty()
    }

    /// Vector `b` of the batch.
    pub fn get(&self, b: usize) -> Act<'a> {
        let (c, nb) = (self.cols, self.cols / QK);
        let q = self.is_quantized();
        Act {
            x: &self.x[b * c..(b + 1) * c],
            d: if q {
                &self.d[b * nb..(b + 1) * nb]
            } else {
                &[]
            },
            sum: if q {
                &self.sum[b * nb..(b + 1) * nb]
            } else {
                &[]
            },
            q: if q { &self.q[b * c..(b + 1) * c] } else { &[] },
        }
    }

    /// Vectors `b0..b1` of the batch.
    pub fn range(&self, b0: usize, b1: usize) -> Acts<'a> {
        let (c, nb) = (self.cols, self.cols / QK);
        let q = self.is_quantized();
        Acts {
            n: b1 - b0,
            cols: c,
            x: &self.x[b0 * c..b1 * c],
            d: if q { &self.d[b0 * nb..b1 * nb] } else { &[] },
            sum: if q { &self.sum[b0 * nb..b1 * nb] } else { &[] },
            q: if q { &self.q[b0 * c..b1 * c] } else { &[] },
        }
    }
}

/// A matrix kernel: with `rows = out.len() / a.n`, computes
/// `out[c * rows + r] = dot(row r, vector c of a)` for the `rows` whole rows
/// at the start of `w` (little-endian bytes, any alignment, each row `a.cols`
/// elements of the kernel's type) and every vector of `a`. The kernels of
/// quantized types need `a` quantized. Panics if a slice is too short.
pub type MatFn = fn(w: &[u8], a: &Acts, out: &mut [f32]);

/// Quantizes activations to int8 blocks of 32 (`x.len()` a multiple of 32;
/// `d` and `sum` hold `x.len() / 32` blocks, `q` holds `x.len()` values).
pub type QuantizeFn = fn(x: &[f32], d: &mut [f32], sum: &mut [i32], q: &mut [i8]);

/// Attention's weighted sum of value rows: see [`scalar::weighted_sum`].
pub type WeightedSumFn = fn(att: &[f32], v: ValueRows, out: &mut [f32]);

/// The value rows of [`WeightedSumFn`], as the KV cache stores them.
#[derive(Debug, Clone, Copy)]
pub enum ValueRows<'a> {
    /// Single precision.
    F32(&'a [f32]),
    /// Half precision bits.
    F16(&'a [u16]),
}

/// A table of matrix kernels: one implementation set (scalar, AVX2, NEON ...).
///
/// Every function of every set gives bit-identical results (see the module
/// documentation); the sets differ only in speed.
#[derive(Debug, Clone, Copy)]
pub struct Kernels {
    /// Name of the set, e.g. `"scalar"` (the names `LLAMETTE_KERNELS` takes).
    pub name: &'static str,
    /// F32 weights times f32 activations.
    pub f32: MatFn,
    /// F16 weights times f32 activations.
    pub f16: MatFn,
    /// Q8_0 weights times int8 activation blocks.
    pub q8_0: MatFn,
    /// Q4_0 weights times int8 activation blocks.
    pub q4_0: MatFn,
    /// Interleaved Q8_0 weights ([`crate::repack`]) times int8 blocks.
    pub q8_0x16: MatFn,
    /// Interleaved Q4_0 weights ([`crate::repack`]) times int8 blocks.
    pub q4_0x16: MatFn,
    /// Whether `q8_0x16` and `q4_0x16` are SIMD kernels, faster than the
    /// plain types' (else they are the scalar reference's, and interleaving
    /// would slow this set down).
    pub fast_interleaved: bool,
    /// Quantizes activations (bit-identical to [`scalar::quantize`]).
    pub quantize: QuantizeFn,
    /// Attention's weighted sum of value rows (bit-identical to
    /// [`scalar::weighted_sum`]).
    pub weighted_sum: WeightedSumFn,
}

impl Kernels {
    /// The matrix kernel for weights of type `ty` (`None` for llama2.c's
    /// split layout, which has only the scalar [`scalar::dot_q8_split`]).
    pub fn mat(&self, ty: TensorType) -> Option<MatFn> {
        match ty {
            TensorType::F32 => Some(self.f32),
            TensorType::F16 => Some(self.f16),
            TensorType::Q8_0 => Some(self.q8_0),
            TensorType::Q4_0 => Some(self.q4_0),
            TensorType::Q8_0x16 => Some(self.q8_0x16),
            TensorType::Q4_0x16 => Some(self.q4_0x16),
            TensorType::Q8Split { .. } => None,
        }
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

/// Whether weights of type `ty` consume quantized activations.
pub fn wants_quantized(ty: TensorType) -> bool {
    matches!(
        ty,
        TensorType::Q8_0 | TensorType::Q4_0 | TensorType::Q8_0x16 | TensorType::Q4_0x16
    )
}

/// Quantizes `x` into the given scratch (which must hold `x.len()` values and
/// `x.len() / 32` blocks) and returns the activation with its quantization.
pub fn quantize_acts<'a>(
    x: &'a [f32],
    d: &'a mut [f32],
    sum: &'a mut [i32],
    q: &'a mut [i8],
) -> Act<'a> {
    let nb = x.len() / QK;
    let (d, sum, q) = (&mut d[..nb], &mut sum[..nb], &mut q[..x.len()]);
    (active().quantize)(x, d, sum, q);
    Act { x, d, sum, q }
}

/// Quantizes a batch of `n` activation vectors stored one after the other in
/// `x` (`n * cols` values, `cols` a multiple of 32) for [`matmul`].
///
/// The scratch must hold at least `x.len() / 32` blocks (`d`, `sum`) and
/// `x.len()` values (`q`). Each vector gets exactly the quantization
/// [`quantize_acts`] would give it alone.
pub fn quantize_batch<'a>(
    x: &'a [f32],
    n: usize,
    d: &'a mut [f32],
    sum: &'a mut [i32],
    q: &'a mut [i8],
) -> Acts<'a> {
    let a = Acts::unquantized(x, n);
    assert_eq!(
        a.cols % QK,
        0,
        "quantize_batch: cols is not a multiple of 32"
    );
    let nb = x.len() / QK;
    let (d, sum, q) = (&mut d[..nb], &mut sum[..nb], &mut q[..x.len()]);
    (active().quantize)(x, d, sum, q);
    Acts { d, sum, q, ..a }
}

/// Checks the arguments of a [`MatFn`] and returns `rows`; `elem_bytes` and
/// `block` describe the weight type (bytes per block, elements per block).
#[inline]
pub(crate) fn check_mat(
    w: &[u8],
    a: &Acts,
    out: &[f32],
    block: usize,
    block_bytes: usize,
    quantized: bool,
) -> usize {
    if a.n == 0 {
        assert!(out.is_empty(), "kernel: output for an empty batch");
        return 0;
    }
    let rows = out.len() / a.n;
    assert_eq!(rows * a.n, out.len(), "kernel: output is not rows * n");
    assert_eq!(
        a.cols % block,
        0,
        "kernel: cols is not a multiple of the block"
    );
    let rb = a.cols / block * block_bytes;
    assert!(w.len() >= rows * rb, "kernel: weights are too short");
    let len = a.n * a.cols;
    if quantized {
        assert!(a.q.len() >= len, "kernel: quantized activations too short");
        assert!(a.d.len() >= len / QK, "kernel: activation scales too short");
        assert!(a.sum.len() >= len / QK, "kernel: activation sums too short");
    } else {
        assert!(a.x.len() >= len, "kernel: activations too short");
    }
    rows
}

/// Walks an interleaved matrix ([`crate::repack`]: `rows` whole bands of
/// 16 rows of `block_bytes`-byte blocks) times the batch `a` in the order
/// the interleaved kernels take it: the vectors in chunks of at most
/// `nc_max`, each chunk against every band. `tile(band, c0, nc, out)` gets
/// the band's first byte and where row 0 of the band goes for vector `c0`
/// (vector `c0 + j` is `j * rows` further); the kernel dereferences them.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn for_each_band(
    w: &[u8],
    a: &Acts,
    out: &mut [f32],
    rows: usize,
    block_bytes: usize,
    nc_max: usize,
    mut tile: impl FnMut(*const u8, usize, usize, *mut f32),
) {
    let band_bytes = a.cols / QK * BAND * block_bytes;
    assert!(
        rows.is_multiple_of(BAND) && w.len() >= rows / BAND * band_bytes && out.len() >= a.n * rows,
        "kernel: interleaved arguments out of range"
    );
    let mut c0 = 0;
    while c0 < a.n {
        let nc = (a.n - c0).min(nc_max);
        for b in 0..rows / BAND {
            let band = w.as_ptr().wrapping_add(b * band_bytes);
            tile(
                band,
                c0,
                nc,
                out.as_mut_ptr().wrapping_add(c0 * rows + b * BAND),
            );
        }
        c0 += nc;
    }
}

/// Tasks per thread of a parallel product. More than one, so that a thread
/// slowed down by something else on its core (a shared machine) is helped
/// out by the others, which claim its remaining tasks; few enough that each
/// task is still a long sequential stream of weight rows.
const TASKS_PER_THREAD: usize = 4;

/// How many tasks to split a product into on `par` (before the limits for
/// small products).
fn tasks_for(par: &dyn Parallel) -> usize {
    match par.n_threads() {
        0 | 1 => 1,
        n => n * TASKS_PER_THREAD,
    }
}

/// Rows per task are rounded up to a multiple of this (the largest row tile
/// of the batched kernels, and the band of the interleaved types), so that
/// tasks do not split tiles or bands.
const ROW_GRAIN: usize = crate::tensor::BAND;

/// `out[r] = dot(w.row(r), a)` for every row of `w`, split across `par`.
///
/// `a` must carry its quantization if `w` is Q8_0 or Q4_0
/// (see [`wants_quantized`]).
pub fn matvec(par: &dyn Parallel, out: &mut [f32], w: &Tensor, a: &Act) {
    matvec_with(active(), par, out, w, a)
}

/// [`matvec`] with the kernel set `k` (one of [`available`]).
pub fn matvec_with(k: &Kernels, par: &dyn Parallel, out: &mut [f32], w: &Tensor, a: &Act) {
    assert_eq!(out.len(), w.rows, "matvec: output length");
    assert_eq!(a.x.len(), w.cols, "matvec: input length");
    let rb = w.row_bytes();
    let acts = Acts::one(a);
    let kernel = k.mat(w.ty);
    let rows = |start: usize, end: usize, out: &mut [f32]| match kernel {
        Some(f) => f(&w.data[start * rb..end * rb], &acts, out),
        None => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = split_row(w, start + i, a.x);
            }
        }
    };
    // Small products are not worth waking threads for.
    let n_tasks = tasks_for(par).min(w.rows * w.cols / 4096).max(1);
    if n_tasks == 1 {
        rows(0, w.rows, out);
        return;
    }
    let per_task = w.rows.div_ceil(n_tasks).next_multiple_of(ROW_GRAIN);
    let n_tasks = w.rows.div_ceil(per_task);
    let shared = SharedOut {
        ptr: out.as_mut_ptr(),
        len: out.len(),
    };
    par.parallel_for(n_tasks, &|t| {
        let start = (t * per_task).min(shared.len);
        let end = ((t + 1) * per_task).min(shared.len);
        // SAFETY: tasks get disjoint ranges [start, end) within `out`.
        let chunk = unsafe { shared.range(start, end) };
        rows(start, end, chunk);
    });
}

/// Row `r` of a llama2.c "version 2" tensor times `x`.
fn split_row(w: &Tensor, r: usize, x: &[f32]) -> f32 {
    let rb = w.row_bytes();
    let TensorType::Q8Split { group } = w.ty else {
        unreachable!("split_row on {}", w.ty.name())
    };
    scalar::dot_q8_split(&w.data[r * rb..(r + 1) * rb], w.scales, r, group, x)
}

/// Rows of weights per kernel call in [`matmul`].
const MM_ROWS: usize = 16;
/// Activation vectors per kernel call in [`matmul`] (a multiple of the
/// kernels' tiles of 2 and 3 vectors).
const MM_ACTS: usize = 24;

/// The batched product for prefill: `out[b * w.rows + r] = dot(w.row(r),
/// vector b of acts)` for every row `r` and every vector `b`, reading each
/// weight row once for the whole batch, split across `par`.
///
/// `out.len()` must be `acts.n * w.rows` and `acts.cols == w.cols`; `acts`
/// must be quantized ([`quantize_batch`]) if `w` is Q8_0 or Q4_0, else built
/// with [`Acts::unquantized`]. Each result is bit-identical to what
/// [`matvec`] gives for that vector alone (with the same kernel set).
pub fn matmul(par: &dyn Parallel, out: &mut [f32], w: &Tensor, acts: &Acts) {
    matmul_with(active(), par, out, w, acts)
}

/// [`matmul`] with the kernel set `k` (one of [`available`]).
pub fn matmul_with(k: &Kernels, par: &dyn Parallel, out: &mut [f32], w: &Tensor, acts: &Acts) {
    let n = acts.n;
    assert_eq!(out.len(), n * w.rows, "matmul: output length");
    if n == 0 || w.rows == 0 {
        return;
    }
    assert_eq!(acts.cols, w.cols, "matmul: input length");
    let rb = w.row_bytes();
    let kernel = k.mat(w.ty);
    let shared = SharedOut {
        ptr: out.as_mut_ptr(),
        len: out.len(),
    };
    // Rows start..end for every vector, one tile of rows at a time: the tile
    // stays in cache while the vectors stream past it.
    let rows = |start: usize, end: usize| {
        let mut tile = [0f32; MM_ROWS * MM_ACTS];
        for r0 in (start..end).step_by(MM_ROWS) {
            let r1 = (r0 + MM_ROWS).min(end);
            let nr = r1 - r0;
            for b0 in (0..n).step_by(MM_ACTS) {
                let b1 = (b0 + MM_ACTS).min(n);
                let t = &mut tile[..nr * (b1 - b0)];
                match kernel {
                    Some(f) => f(&w.data[r0 * rb..r1 * rb], &acts.range(b0, b1), t),
                    None => {
                        for b in b0..b1 {
                            let x = acts.get(b).x;
                            for r in r0..r1 {
                                t[(b - b0) * nr + r - r0] = split_row(w, r, x);
                            }
                        }
                    }
                }
                for b in b0..b1 {
                    let at = b * w.rows + r0;
                    // SAFETY: every task writes only its own rows
                    // [start, end) of each vector's output, so the ranges
                    // [at, at + nr) of different tasks never overlap.
                    let o = unsafe { shared.range(at, at + nr) };
                    o.copy_from_slice(&t[(b - b0) * nr..(b - b0 + 1) * nr]);
                }
            }
        }
    };
    let n_tasks = tasks_for(par)
        .min(w.rows * w.cols * n / 4096)
        .min(w.rows.div_ceil(ROW_GRAIN))
        .max(1);
    if n_tasks == 1 {
        rows(0, w.rows);
        return;
    }
    let per_task = w.rows.div_ceil(n_tasks).next_multiple_of(ROW_GRAIN);
    let n_tasks = w.rows.div_ceil(per_task);
    par.parallel_for(n_tasks, &|t| {
        let start = (t * per_task).min(w.rows);
        let end = ((t + 1) * per_task).min(w.rows);
        rows(start, end);
    });
}

/// An output written by parallel tasks on disjoint ranges.
struct SharedOut {
    ptr: *mut f32,
    len: usize,
}

impl SharedOut {
    /// The elements `start..end` of the output.
    ///
    /// # Safety
    /// No two live slices may overlap.
    #[allow(clippy::mut_from_ref)]
    unsafe fn range(&self, start: usize, end: usize) -> &mut [f32] {
        assert!(start <= end && end <= self.len, "SharedOut: out of range");
        // SAFETY: the range is inside the exclusively borrowed output (checked
        // above) and, by the caller's promise, disjoint from every other live
        // slice; `parallel_for` returns only after every task has finished,
        // so the borrow outlives them.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.add(start), end - start) }
    }
}

// SAFETY: the pointer is only used to write disjoint ranges (see above).
unsafe impl Sync for SharedOut {}

/// Decodes row `r` of `t` into `out` (`out.len() == t.cols`).
pub fn dequantize_row(t: &Tensor, r: usize, out: &mut [f32]) {
    let rb = t.row_bytes();
    if t.ty.is_interleaved() {
        // Gather the row's blocks from the units of its band, as plain blocks.
        let q4 = t.ty == TensorType::Q4_0x16;
        let (bb, plain) = if q4 {
            (18, TensorType::Q4_0)
        } else {
            (34, TensorType::Q8_0)
        };
        let nb = t.cols / QK;
        let band = &t.data[r / BAND * BAND * rb..][..BAND * rb];
        let mut blk = [0u8; 34];
        for (k, o) in out.chunks_exact_mut(QK).enumerate() {
            crate::repack::plain_block(&band[k * BAND * bb..], r % BAND, q4, &mut blk);
            let one = Tensor {
                ty: plain,
                rows: 1,
                cols: QK,
                data: &blk[..bb],
                scales: &[],
            };
            dequantize_row(&one, 0, o);
        }
        debug_assert_eq!(nb * QK, out.len());
        return;
    }
    let row = &t.data[r * rb..(r + 1) * rb];
    match t.ty {
        TensorType::F32 => {
            for (o, b) in out.iter_mut().zip(row.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        TensorType::F16 => {
            for (o, b) in out.iter_mut().zip(row.chunks_exact(2)) {
                *o = scalar::f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        TensorType::Q8_0 => {
            for (o, blk) in out.chunks_exact_mut(QK).zip(row.chunks_exact(34)) {
                let d = scalar::f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
                for (o, &q) in o.iter_mut().zip(&blk[2..]) {
                    *o = d * (q as i8) as f32;
                }
            }
        }
        TensorType::Q4_0 => {
            for (o, blk) in out.chunks_exact_mut(QK).zip(row.chunks_exact(18)) {
                let d = scalar::f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
                for (j, &b) in blk[2..].iter().enumerate() {
                    o[j] = d * ((b & 0x0f) as i32 - 8) as f32;
                    o[j + QK / 2] = d * ((b >> 4) as i32 - 8) as f32;
                }
            }
        }
        TensorType::Q8_0x16 | TensorType::Q4_0x16 => unreachable!("handled above"),
        TensorType::Q8Split { group } => {
            let g = group as usize;
            for (i, (o, &q)) in out.iter_mut().zip(row).enumerate() {
                let s = scalar::f32_at(t.scales, (r * t.cols + i) / g);
                *o = (q as i8) as f32 * s;
            }
        }
    }
}
