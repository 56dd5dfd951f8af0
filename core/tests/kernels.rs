//! Every kernel of every kernel set this CPU can run, against the scalar
//! reference; the reference against exact arithmetic; matvec against matmul
//! and thread counts; the stories260K greedy run with every set forced.
//!
//! Tolerances. The SIMD sets are *bit-identical* to the scalar reference by
//! construction (same eight partial sums, no fused multiply-add, same
//! reduction tree, exact integer block sums, the same rounding in
//! `quantize`), so their comparisons allow no difference at all
//! ([`SIMD_ULPS`]). Only the reference itself is compared with exact (f64)
//! arithmetic, with the worst-case bounds of f32 summation below.

use std::sync::Mutex;

use llamette::kernels::types::{k_quants, q8_0};
use llamette::kernels::{
    self, acts, scalar, ActType, Acts, Kernels, QuantScratch, ValueRows, Q8K, Q8T,
};
use llamette::parallel::{Inline, Parallel, ThreadPool};
use llamette::tensor::{Tensor, TensorType};
use llamette::{Model, Sampler, SamplerParams, Session, SessionParams};

mod common;
use common::shared;

/// Units in the last place a SIMD kernel may differ from the scalar one:
/// none, they compute the same operations in the same order.
const SIMD_ULPS: u32 = 0;

/// Unit roundoff of f32.
const U: f64 = f32::EPSILON as f64 / 2.0;

/// F32/F16 reference vs exact, relative to `sum |w_i x_i|`: each of the 16
/// partial sums adds at most 5632 / 16 = 352 rounded products (error at most
/// 2u each: the product and the sum), and the tree adds 4 more roundings:
/// (2 * 352 + 4) u ≈ 4.2e-5 for the longest row tested.
const FLOAT_REF_TOL: f64 = (2.0 * 352.0 + 4.0) * U;

/// Q8_0/Q4_0 reference vs exact (on the dequantized values), relative to
/// `sum |w_i x_i|`: block sums are exact integers; each block adds 3
/// roundings (`d_w * d_a`, times the sum, into the partial sum), at most
/// 5632 / 32 / 8 = 22 blocks per partial sum, plus 3 in the tree:
/// (3 * 22 + 3) u ≈ 4.1e-6.
const QUANT_REF_TOL: f64 = (3.0 * 22.0 + 3.0) * U;

/// K-quant reference vs exact (on the dequantized values), relative to the
/// sum of the magnitudes of its two terms per super-block (`d d_a isum`
/// and `dmin d_a msum`, which may cancel): per super-block at most 7
/// roundings (`d * d_a`, `isum` to f32, the product, the sum; the same for
/// the minimums), one running sum of at most 5632 / 256 = 22 super-blocks:
/// 7 * 22 u ≈ 9.2e-6.
const K_REF_TOL: f64 = 7.0 * 22.0 * U;

/// Forcing a kernel set is process-wide: tests that force one hold this.
static FORCED: Mutex<()> = Mutex::new(());

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// Activations of mixed magnitudes, with a few exact zeros.
    fn acts(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| match self.next() % 16 {
                0 => 0.0,
                1 => self.f() * 40.0,
                _ => self.f() * (1 + i % 5) as f32,
            })
            .collect()
    }

    /// Finite f16 bits: magnitude 2^-5..2^2, either sign, some zeros.
    fn f16_bits(&mut self) -> u16 {
        let r = self.next();
        if r.is_multiple_of(64) {
            return 0;
        }
        let sign = ((r >> 8) & 1) as u16;
        let exp = 10 + ((r >> 9) % 8) as u16;
        let man = ((r >> 20) & 0x3ff) as u16;
        sign << 15 | exp << 10 | man
    }

    /// A block scale: magnitude 2^-12..2^-4, mostly positive.
    fn scale_bits(&mut self) -> u16 {
        let r = self.next();
        let sign = u16::from(r.is_multiple_of(8));
        let exp = 3 + ((r >> 9) % 9) as u16;
        let man = ((r >> 20) & 0x3ff) as u16;
        sign << 15 | exp << 10 | man
    }
}

/// Byte offsets of the f16 fields (scales, minimums) in a block of `ty`.
fn f16_fields(ty: TensorType) -> &'static [usize] {
    use TensorType::*;
    match ty {
        Q8_0 | Q4_0 | Q5_0 | IQ4_NL => &[0],
        Q4_1 | Q5_1 | Q4_K | Q5_K => &[0, 2],
        Q2_K => &[80, 82],
        Q3_K => &[108],
        Q6_K => &[208],
        _ => &[],
    }
}

/// Every plain weight type.
fn plain_types() -> [TensorType; 14] {
    use TensorType::*;
    [
        F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
    ]
}

/// The quantized plain types.
fn quantized_types() -> Vec<TensorType> {
    plain_types()
        .into_iter()
        .filter(|t| t.act_type() != ActType::F32)
        .collect()
}

/// Random weight bytes of `rows` x `cols` elements of `ty`.
fn weights(rng: &mut Rng, ty: TensorType, rows: usize, cols: usize) -> Vec<u8> {
    let n = rows * cols;
    let mut v = Vec::new();
    match ty {
        TensorType::F32 => {
            for _ in 0..n {
                v.extend_from_slice(&(rng.f() * 2.0).to_le_bytes());
            }
        }
        TensorType::F16 => {
            for _ in 0..n {
                v.extend_from_slice(&rng.f16_bits().to_le_bytes());
            }
        }
        TensorType::BF16 => {
            for _ in 0..n {
                let b = ((rng.f() * 2.0).to_bits() >> 16) as u16;
                v.extend_from_slice(&b.to_le_bytes());
            }
        }
        _ => {
            // Random bytes, and plausible scales in the f16 fields.
            let bb = ty.block_bytes();
            for _ in 0..n / ty.block_len() {
                let start = v.len();
                v.extend((0..bb).map(|_| rng.next() as u8));
                for &at in f16_fields(ty) {
                    v[start + at..start + at + 2].copy_from_slice(&rng.scale_bits().to_le_bytes());
                }
            }
        }
    }
    v
}

/// A batch of `n` activation vectors with its (scalar) quantizations: Q8
/// when `cols` is a multiple of 32, Q8_K when it is one of 256.
struct Batch {
    x: Vec<f32>,
    d: Vec<f32>,
    sum: Vec<i32>,
    q: Vec<i8>,
    kd: Vec<f32>,
    kbsums: Vec<i16>,
    kq: Vec<i8>,
    tq: Vec<i8>,
    td: Vec<f32>,
    n: usize,
    cols: usize,
}

impl Batch {
    fn new(rng: &mut Rng, n: usize, cols: usize) -> Batch {
        let x = rng.acts(n * cols);
        let len = n * cols;
        let mut b = Batch {
            d: vec![0f32; len / 32],
            sum: vec![0i32; len / 32],
            q: vec![0i8; len],
            kd: vec![0f32; len / 256],
            kbsums: vec![0i16; len / 16],
            kq: vec![0i8; len],
            tq: vec![0i8; n.div_ceil(16) * 16 * cols],
            td: vec![0f32; n.div_ceil(16) * 16 * (cols / 32)],
            x,
            n,
            cols,
        };
        if cols.is_multiple_of(32) {
            q8_0::quantize(&b.x, &mut b.d, &mut b.sum, &mut b.q);
            acts::transpose_q8(&b.q, &b.d, n, cols, &mut b.tq, &mut b.td);
        }
        if cols.is_multiple_of(256) {
            k_quants::quantize_q8k(&b.x, &mut b.kd, &mut b.kbsums, &mut b.kq);
        }
        b
    }

    fn acts(&self) -> Acts<'_> {
        Acts {
            n: self.n,
            cols: self.cols,
            x: &self.x,
            d: &self.d,
            sum: &self.sum,
            q: &self.q,
            k: Q8K {
                d: &self.kd,
                bsums: &self.kbsums,
                q: &self.kq,
            },
            t: Q8T {
                q: &self.tq,
                d: &self.td,
            },
        }
    }

    /// The value activation `i` stands for in the quantization `ty` takes.
    fn value(&self, ty: TensorType, i: usize) -> f64 {
        match ty.act_type() {
            ActType::F32 => self.x[i] as f64,
            ActType::Q8 => self.d[i / 32] as f64 * self.q[i] as f64,
            ActType::Q8K => self.kd[i / 256] as f64 * self.kq[i] as f64,
        }
    }
}

fn sets() -> Vec<&'static Kernels> {
    kernels::available().collect()
}

fn kernel(k: &Kernels, ty: TensorType) -> kernels::MatFn {
    k.mat(ty).unwrap()
}

/// Asserts bit equality within [`SIMD_ULPS`], naming the case.
fn assert_same(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ulps = (g.to_bits() as i64 - w.to_bits() as i64).unsigned_abs();
        assert!(
            ulps <= SIMD_ULPS as u64 || (g.is_nan() && w.is_nan()),
            "{what}: element {i}: {g:e} vs scalar {w:e} ({ulps} ulp)"
        );
    }
}

/// Runs `kernel` of every set on `rows` rows x a batch of `n` vectors and
/// compares with the scalar set; the weights start `misalign` bytes into
/// their buffer.
fn compare_sets(ty: TensorType, rows: usize, cols: usize, n: usize, misalign: usize, seed: u64) {
    let mut rng = Rng(seed);
    let w = weights(&mut rng, ty, rows, cols);
    compare_sets_on(&mut rng, ty, &w, rows, cols, n, misalign);
}

/// [`compare_sets`] on the given weight bytes.
fn compare_sets_on(
    rng: &mut Rng,
    ty: TensorType,
    w: &[u8],
    rows: usize,
    cols: usize,
    n: usize,
    misalign: usize,
) {
    let mut buf = vec![0u8; misalign];
    buf.extend_from_slice(w);
    let w = &buf[misalign..];
    let batch = Batch::new(rng, n, cols);
    let a = batch.acts();
    let mut want = vec![0f32; rows * n];
    kernel(&scalar::KERNELS, ty)(w, &a, &mut want);
    // With the transposed Q8 copy (the `amx` set's plain batches take it)
    // and without (as a caller's own batch may come).
    let bare = Acts {
        t: Q8T::default(),
        ..a
    };
    for k in sets() {
        for (a, t) in [(&a, "with"), (&bare, "without")] {
            let mut got = vec![f32::NAN; rows * n];
            kernel(k, ty)(w, a, &mut got);
            let what = format!(
                "{} {} rows={rows} cols={cols} n={n} misalign={misalign}, {t} the transposed copy",
                k.name,
                ty.name()
            );
            assert_same(&got, &want, &what);
        }
    }
}

#[test]
fn float_kernels_match_scalar() {
    for ty in [TensorType::F32, TensorType::F16, TensorType::BF16] {
        for cols in [0, 1, 7, 8, 9, 31, 32, 33, 64, 172, 4096 + 17] {
            for (rows, n) in [(1, 1), (3, 1), (7, 1), (33, 1), (5, 2), (7, 3), (9, 5)] {
                compare_sets(
                    ty,
                    rows,
                    cols,
                    n,
                    (rows + cols) % 4,
                    cols as u64 * 31 + rows as u64,
                );
            }
        }
    }
}

#[test]
fn quantized_kernels_match_scalar() {
    for ty in quantized_types() {
        // 0, 1, 2, 3, 8, 9, 31, 32, 33 blocks and long rows.
        let blocks: &[usize] = if ty.block_len() == 256 {
            &[0, 1, 2, 3, 8, 9, 22, 31, 32, 33]
        } else {
            &[0, 1, 2, 3, 8, 9, 31, 32, 33, 64, 128, 176]
        };
        for &nb in blocks {
            let cols = nb * ty.block_len();
            for (rows, n) in [(1, 1), (3, 1), (7, 1), (33, 1), (5, 2), (7, 3), (9, 5)] {
                if cols >= 4096 && rows * n > 40 {
                    continue;
                }
                compare_sets(
                    ty,
                    rows,
                    cols,
                    n,
                    (rows + nb) % 4,
                    cols as u64 * 7 + rows as u64,
                );
            }
        }
    }
}

/// Rows longer than the kernels' buffer of prepared activations (96 groups
/// of 256 columns), which prepare them group by group instead; and a last
/// partial group.
#[test]
fn long_rows_match_scalar() {
    for ty in [TensorType::Q8_0, TensorType::Q4_0] {
        compare_sets(ty, 3, 24576 + 288, 1, 1, 8);
        compare_sets(ty, 3, 12288 + 64, 3, 2, 9);
    }
    for ty in [TensorType::F32, TensorType::F16, TensorType::BF16] {
        compare_sets(ty, 3, 24576 + 17, 2, 3, 10);
    }
    for ty in quantized_types() {
        if ty.block_len() == 256 {
            compare_sets(ty, 3, 24576 + 256, 1, 1, 11);
            compare_sets(ty, 3, 12288 + 256, 3, 2, 12);
        }
    }
}

/// F16 and BF16 batches larger than the 32 vectors whose sums the
/// `avx512` set keeps per tile of 8 rows while it converts each segment
/// of 256 columns once (its Intel tuning), with rows, columns and vectors
/// that are and are not multiples of those.
/// Both x86 tunings run, whatever this CPU's vendor (other tests may run
/// meanwhile under either: the bits are the same).
#[test]
fn float_batches_match_scalar() {
    for intel in [true, false] {
        kernels::force_intel_tuning(intel);
        for ty in [TensorType::F16, TensorType::BF16] {
            for cols in [16, 255, 256, 257, 513, 2048 + 9] {
                for (rows, n) in [(8, 32), (17, 33), (9, 40), (3, 70), (5, 2)] {
                    compare_sets(ty, rows, cols, n, cols % 3, (cols * n) as u64);
                }
            }
        }
    }
}

/// One vector times float matrices large enough to be read from memory
/// (256 KiB and more), with short rows (at most 512 values: on AMD F32
/// rows in pairs half the matrix apart, elsewhere four with the next four
/// prefetched) and long ones (on AMD F16 and BF16 rows in such pairs, and
/// rows of more than 4096 values in the `avx512` set's tiles of 8 adjacent
/// rows, a last tile shorter), odd and even row counts, row and column
/// counts that are and are not multiples of 4 and 16. Both x86 tunings
/// run.
#[test]
fn streamed_float_matvecs_match_scalar() {
    for intel in [true, false] {
        kernels::force_intel_tuning(intel);
        for ty in [TensorType::F32, TensorType::F16, TensorType::BF16] {
            for (rows, cols) in [
                (512, 288),
                (1001, 173),
                (230, 512),
                (64, 1030),
                (160, 1030),
                (131, 2048),
                (13, 4113),
                (21, 5632),
            ] {
                compare_sets(ty, rows, cols, 1, cols % 4, (rows * cols) as u64);
            }
        }
    }
}

/// Plain Q8_0 and Q4_0 batches of whole bands of 16 rows, which the
/// `avx512` set interleaves segment by segment on the stack: rows shorter
/// and longer than a segment (32 blocks of Q8_0, 64 of Q4_0) and not a
/// multiple of it or of 8 blocks, batches below, at and above the 32
/// vectors whose sums it keeps, and a row count that is not whole bands.
#[test]
fn plain_bands_match_scalar() {
    for ty in [TensorType::Q8_0, TensorType::Q4_0] {
        for nb in [1, 7, 8, 9, 31, 33, 63, 64, 65, 130, 176] {
            for (rows, n) in [(16, 2), (32, 5), (16, 32), (16, 37), (48, 3), (17, 4)] {
                compare_sets(ty, rows, nb * 32, n, nb % 4, nb as u64 * 13 + n as u64);
            }
        }
    }
}

/// K-quant batches of whole bands of 16 rows, which the `amx` set runs
/// through tiles band by band (one super-block prepared ahead): one to
/// 22 super-blocks, batches of 2 to 37 vectors (below, at and above the 16
/// of a tile), and rows that are not whole bands (the `avx512` kernel).
#[test]
fn k_quant_bands_match_scalar() {
    for ty in [TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K] {
        for nsb in [1, 2, 3, 8, 22] {
            for (rows, n) in [(16, 2), (32, 16), (16, 17), (48, 37), (17, 4)] {
                compare_sets(ty, rows, nsb * 256, n, nsb % 3, nsb as u64 * 7 + n as u64);
            }
        }
    }
}

/// Real row shapes: TinyLlama's 2048 and 5632 (quantized and F16) and
/// stories260K's 64 and 172 (F32).
#[test]
fn real_shapes_match_scalar() {
    for ty in plain_types().into_iter().filter(|t| *t != TensorType::F32) {
        compare_sets(ty, 13, 2048, 1, 0, 1);
        compare_sets(ty, 5, 5632, 1, 1, 2);
        compare_sets(ty, 6, 2048, 4, 3, 3);
    }
    compare_sets(TensorType::F32, 172, 64, 1, 0, 4);
    compare_sets(TensorType::F32, 64, 172, 1, 2, 5);
    compare_sets(TensorType::F32, 64, 172, 7, 1, 6);
}

/// Quantization: every set gives the scalar bytes, on ordinary data and on
/// ties, zeros, infinities, NaN, subnormals and huge values.
#[test]
fn quantize_matches_scalar() {
    let mut rng = Rng(99);
    let mut x = rng.acts(4096 + 64);
    // Ties: with max 127 the scale is 1, so x is rounded as it is.
    for (i, v) in x[..32].iter_mut().enumerate() {
        *v = if i == 0 { 127.0 } else { i as f32 * 0.5 - 8.0 };
    }
    for (i, v) in x[32..64].iter_mut().enumerate() {
        *v = if i == 5 { -127.0 } else { -(i as f32) * 1.5 };
    }
    x[64..96].fill(0.0);
    x[96] = -0.0;
    x[128] = f32::INFINITY;
    x[160 + 3] = f32::NAN;
    x[192 + 7] = f32::NEG_INFINITY;
    x[192 + 8] = f32::NAN;
    for (i, v) in x[224..256].iter_mut().enumerate() {
        *v = f32::from_bits(1 + i as u32 * 3); // subnormal
    }
    for (i, v) in x[256..288].iter_mut().enumerate() {
        *v = if i % 2 == 0 { 3.0e38 } else { -1.0e38 };
    }
    for len in [0, 32, 64, 4096 + 64] {
        let x = &x[..len];
        let nb = len / 32;
        let (mut d0, mut s0, mut q0) = (vec![0f32; nb], vec![0i32; nb], vec![0i8; len]);
        q8_0::quantize(x, &mut d0, &mut s0, &mut q0);
        for k in sets() {
            let (mut d, mut s, mut q) = (vec![1f32; nb], vec![1i32; nb], vec![1i8; len]);
            (k.quantize)(x, &mut d, &mut s, &mut q);
            assert_eq!(q, q0, "{}: q, length {len}", k.name);
            assert_eq!(s, s0, "{}: sums, length {len}", k.name);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&d), bits(&d0), "{}: scales, length {len}", k.name);
        }
    }
    // And the reference does what it says: |x - d q| <= d / 2 for finite
    // blocks, q in -127..=127, sum = sum(q).
    let x = rng.acts(1024);
    let (mut d, mut s, mut q) = (vec![0f32; 32], vec![0i32; 32], vec![0i8; 1024]);
    q8_0::quantize(&x, &mut d, &mut s, &mut q);
    for b in 0..32 {
        let qs = &q[32 * b..32 * b + 32];
        assert_eq!(s[b], qs.iter().map(|&v| v as i32).sum::<i32>());
        for (&v, &qv) in x[32 * b..32 * b + 32].iter().zip(qs) {
            assert!(qv != -128);
            assert!(
                (v - d[b] * qv as f32).abs() <= d[b] * 0.5001,
                "{v} vs {} * {qv}",
                d[b]
            );
        }
    }
}

/// The magnitudes of the two terms of a K-quant row's super-blocks, as the
/// module documentation of `k_quants` defines them: `sum |d d_a isum|`-like
/// bounds per element, `|d sc q x|` and `|dmin m x|`, summed over the row.
fn k_quant_magnitude(ty: TensorType, row: &[u8], batch: &Batch) -> f64 {
    use llamette::kernels::types::{f16_le, k_quants as k};
    let mut mag = 0f64;
    for (s, blk) in row.chunks_exact(ty.block_bytes()).enumerate() {
        let (d, dmin, q, sc, m, len): (f32, f32, [i8; 256], Vec<i32>, Vec<i32>, usize) = match ty {
            TensorType::Q2_K => {
                let b: &k::BlockQ2K = bytemuck::from_bytes(blk);
                let u = k::unpack_q2_k(b);
                (
                    f16_le(b.d),
                    f16_le(b.dmin),
                    u.q,
                    u.sc.to_vec(),
                    u.m.to_vec(),
                    16,
                )
            }
            TensorType::Q3_K => {
                let b: &k::BlockQ3K = bytemuck::from_bytes(blk);
                let u = k::unpack_q3_k(b);
                (f16_le(b.d), 0.0, u.q, u.sc.to_vec(), u.m.to_vec(), 16)
            }
            TensorType::Q4_K => {
                let b: &k::BlockQ4K = bytemuck::from_bytes(blk);
                let u = k::unpack_q4_k(b);
                (
                    f16_le(b.d),
                    f16_le(b.dmin),
                    u.q,
                    u.sc.to_vec(),
                    u.m.to_vec(),
                    32,
                )
            }
            TensorType::Q5_K => {
                let b: &k::BlockQ5K = bytemuck::from_bytes(blk);
                let u = k::unpack_q5_k(b);
                (
                    f16_le(b.d),
                    f16_le(b.dmin),
                    u.q,
                    u.sc.to_vec(),
                    u.m.to_vec(),
                    32,
                )
            }
            TensorType::Q6_K => {
                let b: &k::BlockQ6K = bytemuck::from_bytes(blk);
                let u = k::unpack_q6_k(b);
                (f16_le(b.d), 0.0, u.q, u.sc.to_vec(), u.m.to_vec(), 16)
            }
            _ => unreachable!(),
        };
        for v in 0..256 {
            let x = batch.value(ty, s * 256 + v).abs();
            mag += x * (d as f64 * sc[v / len] as f64 * q[v] as f64).abs();
            mag += x * (dmin as f64 * m[v / len] as f64).abs();
        }
    }
    mag
}

/// The reference kernels against exact (f64) arithmetic on the values the
/// weights and activations stand for.
#[test]
fn scalar_reference_is_accurate() {
    let mut rng = Rng(7);
    for ty in plain_types() {
        for cols in [256, 512, 2048, 5632] {
            let rows = 5;
            let w = weights(&mut rng, ty, rows, cols);
            let t = Tensor::new(b"w", ty, rows, cols, &w, &[]).unwrap();
            let batch = Batch::new(&mut rng, 1, cols);
            let a = batch.acts();
            let mut got = vec![0f32; rows];
            kernel(&scalar::KERNELS, ty)(&w, &a, &mut got);
            let mut row = vec![0f32; cols];
            let rb = t.row_bytes();
            for (r, &g) in got.iter().enumerate() {
                t.dequantize_row(r, &mut row);
                let (mut exact, mut mag) = (0f64, 0f64);
                for (i, &wv) in row.iter().enumerate() {
                    let xv = batch.value(ty, i);
                    exact += wv as f64 * xv;
                    mag += (wv as f64 * xv).abs();
                }
                let tol = match ty.act_type() {
                    ActType::F32 => FLOAT_REF_TOL,
                    ActType::Q8 => {
                        // Q4_1 and Q5_1 add a rounded minimum term per block.
                        QUANT_REF_TOL * 2.0
                    }
                    ActType::Q8K => {
                        mag = k_quant_magnitude(ty, &w[r * rb..(r + 1) * rb], &batch);
                        K_REF_TOL
                    }
                };
                let err = (g as f64 - exact).abs();
                assert!(
                    err <= tol * mag,
                    "{} cols={cols} row {r}: {g} vs exact {exact} (error {err:e} > {tol:e} * {mag:e})",
                    ty.name()
                );
            }
        }
    }
}

fn all_types() -> [TensorType; 14] {
    plain_types()
}

/// `matvec` and `matmul` of every set on every pool, for the `rows` x
/// `cols` weights `wb` of type `ty` and a batch of 5 vectors: every output
/// bit-identical to the scalar reference, `matmul`'s column `b` to `matvec`
/// on vector `b`.
fn matvec_and_matmul_agree(
    rng: &mut Rng,
    pools: &[Box<dyn Parallel>],
    ty: TensorType,
    wb: &[u8],
    rows: usize,
    cols: usize,
) {
    let w = Tensor::new(b"w", ty, rows, cols, wb, &[]).unwrap();
    let n = 5;
    let batch = Batch::new(rng, n, cols);
    let acts = batch.acts();
    let mut want = vec![0f32; rows * n];
    kernel(&scalar::KERNELS, ty)(wb, &acts, &mut want);
    for k in sets() {
        for par in pools {
            let what = format!(
                "{} {} rows={rows} threads={}",
                k.name,
                ty.name(),
                par.n_threads()
            );
            let mut mm = vec![f32::NAN; rows * n];
            llamette::matmul::matmul_with(k, &**par, &mut mm, &w, &acts);
            assert_same(&mm, &want, &format!("matmul {what}"));
            for b in 0..n {
                let mut mv = vec![f32::NAN; rows];
                llamette::matmul::matvec_with(k, &**par, &mut mv, &w, &acts.get(b));
                assert_same(
                    &mv,
                    &want[b * rows..(b + 1) * rows],
                    &format!("matvec {what} b={b}"),
                );
            }
        }
    }
}

/// `matvec` and `matmul` through the dispatch layer, with odd row counts and
/// 1, 2 and 3 threads: every output bit-identical to the scalar row kernel,
/// and `matmul`'s column `b` bit-identical to `matvec` on vector `b`.
#[test]
fn matvec_and_matmul_agree_across_sets_and_threads() {
    let pools: Vec<Box<dyn Parallel>> = vec![
        Box::new(Inline),
        Box::new(ThreadPool::new(1)),
        Box::new(ThreadPool::new(2)),
        Box::new(ThreadPool::new(3)),
    ];
    let mut rng = Rng(2024);
    for ty in all_types() {
        let cols = if ty == TensorType::F32 { 172 } else { 2048 };
        for rows in [1, 3, 7, 33, 150] {
            let wb = weights(&mut rng, ty, rows, cols);
            matvec_and_matmul_agree(&mut rng, &pools, ty, &wb, rows, cols);
        }
    }
}

/// Scratch for the quantizations of `len` activations.
struct Scratch {
    d: Vec<f32>,
    sum: Vec<i32>,
    q: Vec<i8>,
    kd: Vec<f32>,
    kbsums: Vec<i16>,
    kq: Vec<i8>,
    tq: Vec<i8>,
    td: Vec<f32>,
}

impl Scratch {
    /// Room for `n` vectors of `cols` values.
    fn new(n: usize, cols: usize) -> Scratch {
        let len = n * cols;
        let chunked = n.div_ceil(16) * 16 * cols;
        Scratch {
            d: vec![0f32; len / 32],
            sum: vec![0i32; len / 32],
            q: vec![0i8; len],
            kd: vec![0f32; len / 256],
            kbsums: vec![0i16; len / 16],
            kq: vec![0i8; len],
            tq: vec![0i8; chunked],
            td: vec![0f32; chunked / 32],
        }
    }

    fn get(&mut self) -> QuantScratch<'_> {
        QuantScratch {
            d: &mut self.d,
            sum: &mut self.sum,
            q: &mut self.q,
            kd: &mut self.kd,
            kbsums: &mut self.kbsums,
            kq: &mut self.kq,
            tq: &mut self.tq,
            td: &mut self.td,
        }
    }
}

/// A batch large enough for several tiles in both directions, through
/// `quantize_batch`: same result as quantizing each vector alone.
#[test]
fn quantize_batch_then_matmul_equals_per_vector() {
    let _g = FORCED.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = Rng(5);
    let (rows, cols, n) = (37, 256, 19);
    for ty in quantized_types() {
        let wb = weights(&mut rng, ty, rows, cols);
        let w = Tensor::new(b"w", ty, rows, cols, &wb, &[]).unwrap();
        let x = rng.acts(n * cols);
        for k in sets() {
            assert!(kernels::force(k.name));
            let mut scratch = Scratch::new(n, cols);
            let acts = kernels::quantize_batch(&x, n, &[ty], scratch.get());
            let mut mm = vec![0f32; rows * n];
            llamette::matmul::matmul(&Inline, &mut mm, &w, &acts);
            for b in 0..n {
                let xb = &x[b * cols..(b + 1) * cols];
                let mut one = Scratch::new(1, cols);
                let a = kernels::quantize_batch(xb, 1, &[ty], one.get());
                let mut mv = vec![0f32; rows];
                llamette::matmul::matvec(&Inline, &mut mv, &w, &a.get(0));
                assert_same(
                    &mm[b * rows..(b + 1) * rows],
                    &mv,
                    &format!("{} {} b={b}", k.name, ty.name()),
                );
            }
        }
    }
}

/// The Q8_K quantizer: every set gives the scalar bytes, and the reference
/// does what it says (q in -127..=127, |x - d q| <= |d| / 2, the sums).
#[test]
fn quantize_q8k_matches_scalar_and_its_definition() {
    let mut rng = Rng(808);
    let mut x = rng.acts(2048);
    x[256..512].fill(0.0);
    x[512 + 7] = f32::NAN;
    x[768] = -3.0e38;
    for v in &mut x[1024..1280] {
        *v = f32::from_bits(rng.next() as u32 & 0x007f_ffff); // subnormal
    }
    let (mut d0, mut b0, mut q0) = (vec![0f32; 8], vec![0i16; 128], vec![0i8; 2048]);
    k_quants::quantize_q8k(&x, &mut d0, &mut b0, &mut q0);
    for k in sets() {
        let (mut d, mut b, mut q) = (vec![1f32; 8], vec![1i16; 128], vec![1i8; 2048]);
        (k.quantize_k)(&x, &mut d, &mut b, &mut q);
        assert_eq!(q, q0, "{}: q", k.name);
        assert_eq!(b, b0, "{}: sums", k.name);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&d), bits(&d0), "{}: scales", k.name);
    }
    for s in 0..8 {
        let qs = &q0[256 * s..256 * s + 256];
        for j in 0..16 {
            let sum: i32 = qs[16 * j..16 * j + 16].iter().map(|&v| v as i32).sum();
            assert_eq!(b0[16 * s + j] as i32, sum);
        }
        if s == 1 {
            assert_eq!(d0[s], 0.0);
            assert!(qs.iter().all(|&v| v == 0));
            continue;
        }
        if s == 4 {
            // Subnormal values: -127 / max overflows, so the scale is 0
            // (as ggml's): the block stands for zeros.
            assert_eq!(d0[s], 0.0);
            continue;
        }
        for (i, &qv) in qs.iter().enumerate() {
            assert!((-127..=127).contains(&qv));
            let v = x[256 * s + i];
            if v.is_finite() && d0[s].is_finite() {
                assert!(
                    (v as f64 - d0[s] as f64 * qv as f64).abs() <= d0[s].abs() as f64 * 0.5001,
                    "block {s}: {v} vs {} * {qv}",
                    d0[s]
                );
            }
        }
    }
}

/// On aarch64, `neon` and `dotprod` have their own kernel for every plain
/// type (so that the comparisons with scalar above test SIMD code).
#[test]
#[cfg(target_arch = "aarch64")]
fn aarch64_sets_have_every_plain_type() {
    for k in sets().into_iter().filter(|k| k.name != "scalar") {
        for ty in plain_types() {
            assert!(k.has_own(ty), "{} has no kernel for {}", k.name, ty.name());
        }
    }
}

/// Blocks at the extremes of the exactness bounds: every weight byte the
/// same (0x00, 0x7f, 0x80 or 0xff: the largest values, scales and
/// minimums of each type) with plausible f16 fields, times activations
/// that all quantize to +-127.
#[test]
fn extreme_blocks_match_scalar() {
    let mut rng = Rng(4096);
    for ty in quantized_types() {
        let (rows, cols) = (3, 2 * 256);
        for byte in [0x00u8, 0x7f, 0x80, 0xff] {
            let bb = ty.block_bytes();
            let mut w = vec![byte; rows * cols / ty.block_len() * bb];
            for blk in w.chunks_exact_mut(bb) {
                for &at in f16_fields(ty) {
                    blk[at..at + 2].copy_from_slice(&rng.scale_bits().to_le_bytes());
                }
            }
            for sign in [1.0f32, -1.0, 0.0] {
                let n = 2;
                let x: Vec<f32> = (0..n * cols)
                    .map(|i| match sign {
                        0.0 if i % 2 == 0 => 3.0,
                        0.0 => -3.0,
                        s => s * 3.0,
                    })
                    .collect();
                let mut batch = Batch::new(&mut rng, n, cols);
                batch.x = x;
                q8_0::quantize(&batch.x, &mut batch.d, &mut batch.sum, &mut batch.q);
                k_quants::quantize_q8k(&batch.x, &mut batch.kd, &mut batch.kbsums, &mut batch.kq);
                let a = batch.acts();
                let mut want = vec![0f32; rows * n];
                kernel(&scalar::KERNELS, ty)(&w, &a, &mut want);
                for k in sets() {
                    let mut got = vec![f32::NAN; rows * n];
                    kernel(k, ty)(&w, &a, &mut got);
                    let what = format!("{} {} byte={byte:#04x} sign={sign}", k.name, ty.name());
                    assert_same(&got, &want, &what);
                }
            }
        }
    }
}

/// The Q8_K quantizer on what its scan order and rounding decide: the
/// first of two values of the same magnitude and opposite signs, exact
/// ties (round half to even), the largest value last, a signalling NaN,
/// infinities. Every set gives the scalar bytes.
#[test]
fn quantize_q8k_edge_cases_match_scalar() {
    let mut x = vec![0f32; 8 * 256];
    // 0: -5 before +5; 1: +5 before -5 (the first decides the sign).
    x[10] = -5.0;
    x[200] = 5.0;
    x[256 + 10] = 5.0;
    x[256 + 200] = -5.0;
    // 2: max 127 (scale -1): halves round to even.
    for (i, v) in x[512..768].iter_mut().enumerate() {
        *v = if i == 0 {
            127.0
        } else {
            (i as f32 - 128.0) * 0.5
        };
    }
    // 3: the largest magnitude last, with a signalling NaN earlier.
    for (i, v) in x[768..1024].iter_mut().enumerate() {
        *v = i as f32 * 0.25 - 20.0;
    }
    x[768 + 3] = f32::from_bits(0x7f80_0001);
    x[1023] = -90.0;
    // 4: an infinity; 5: a quiet NaN among small values; 6: both signs
    // of infinity; 7: all NaN.
    for (i, v) in x[1024..2048].iter_mut().enumerate() {
        *v = ((i * 37) % 101) as f32 * 0.01 - 0.5;
    }
    x[1024 + 77] = f32::INFINITY;
    x[1280 + 5] = f32::NAN;
    x[1536 + 1] = f32::NEG_INFINITY;
    x[1536 + 2] = f32::INFINITY;
    x[1792..2048].fill(f32::NAN);
    let (mut d0, mut b0, mut q0) = (vec![0f32; 8], vec![0i16; 128], vec![0i8; 2048]);
    k_quants::quantize_q8k(&x, &mut d0, &mut b0, &mut q0);
    assert!(
        d0[0] > 0.0 && d0[1] < 0.0,
        "the first value decides the sign"
    );
    for k in sets() {
        let (mut d, mut b, mut q) = (vec![1f32; 8], vec![1i16; 128], vec![1i8; 2048]);
        (k.quantize_k)(&x, &mut d, &mut b, &mut q);
        assert_eq!(q, q0, "{}: q", k.name);
        assert_eq!(b, b0, "{}: sums", k.name);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&d), bits(&d0), "{}: scales", k.name);
    }
}

#[test]
fn dispatch_lists_and_forces_sets() {
    let _g = FORCED.lock().unwrap_or_else(|e| e.into_inner());
    let names: Vec<_> = kernels::available().map(|k| k.name).collect();
    assert_eq!(names[0], "scalar");
    assert!(names.contains(&kernels::active().name));
    #[cfg(target_arch = "aarch64")]
    assert!(names.contains(&"neon"));
    assert!(!kernels::force("no-such-set"));
    for name in &names {
        assert!(kernels::force(name));
        assert_eq!(kernels::active().name, *name);
    }
    eprintln!("kernel sets available here: {names:?}");
}

/// On Linux, the `amx` set is offered exactly when the CPU says it has
/// AMX-TILE and AMX-INT8 (CPUID leaf 7) and the `avx512` set is there; and
/// where Linux lists them in /proc/cpuinfo (it does only when it supports
/// them), a batch through the set really gets the tile state granted and
/// gives the scalar bits: so the batch tests run the AMX kernels on every
/// machine that has them.
#[test]
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn amx_is_offered_and_granted_where_linux_lists_it() {
    let _g = FORCED.lock().unwrap_or_else(|e| e.into_inner());
    let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
    let names: Vec<_> = kernels::available().map(|k| k.name).collect();
    let cpu = leaf7.edx & (3 << 24) == 3 << 24;
    assert_eq!(
        names.contains(&"amx"),
        names.contains(&"avx512") && cpu,
        "sets {names:?}"
    );
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    let listed = flags.contains(&"amx_tile") && flags.contains(&"amx_int8");
    if names.contains(&"amx") && listed {
        compare_sets(TensorType::Q8_0, 16, 256, 4, 0, 99);
        assert!(
            kernels::amx_granted(),
            "Linux lists AMX but the tiles were not granted"
        );
    }
    eprintln!(
        "amx set offered: {}, listed by Linux: {listed}",
        names.contains(&"amx")
    );
}

/// The stories260K greedy run reproduces llama2.c's tokens with every
/// kernel set, and the logits are bit-identical across sets.
#[test]
fn greedy_tokens_match_llama2c_with_every_set() {
    let _g = FORCED.lock().unwrap_or_else(|e| e.into_inner());
    let ids: Vec<u32> = String::from_utf8(shared("testdata/stories260K.greedy.ids.txt"))
        .unwrap()
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect();
    let bytes = shared("models/stories260K.bin");
    let model = Model::load(&bytes).unwrap();
    let params = SessionParams::default();
    let mut first: Option<Vec<u32>> = None;
    for k in sets() {
        assert!(kernels::force(k.name));
        let mut buf = vec![
            0u64;
            Session::required_bytes(&model, &params)
                .unwrap()
                .div_ceil(8)
        ];
        let mut s = Session::new(&model, params, bytemuck::cast_slice_mut(&mut buf)).unwrap();
        let mut sampler = Sampler::new(SamplerParams::greedy(), 0);
        let mut logit_bits = Vec::new();
        s.feed(&ids[..1]).unwrap();
        for (pos, &want) in ids.iter().enumerate().skip(1) {
            logit_bits.extend(s.logits().unwrap().iter().map(|l| l.to_bits()));
            let next = s.sample(&mut sampler).unwrap();
            assert_eq!(next, want, "{}: token at position {pos}", k.name);
            s.feed(&[next]).unwrap();
        }
        match &first {
            None => first = Some(logit_bits),
            Some(f) => assert!(*f == logit_bits, "{}: logits differ from scalar's", k.name),
        }
    }
}

/// Tiny quantized and F16 "models" (one projection each) run through the
/// dispatch layer with every set forced: identical outputs.
#[test]
fn forced_sets_agree_on_tiny_tensors() {
    let _g = FORCED.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = Rng(11);
    for ty in all_types() {
        let (rows, cols) = (48, 512);
        let wb = weights(&mut rng, ty, rows, cols);
        let w = Tensor::new(b"w", ty, rows, cols, &wb, &[]).unwrap();
        let x = rng.acts(cols);
        let mut first: Option<Vec<f32>> = None;
        for k in sets() {
            assert!(kernels::force(k.name));
            let mut scratch = Scratch::new(1, cols);
            let a = kernels::quantize_batch(&x, 1, &[ty], scratch.get());
            let mut out = vec![0f32; rows];
            llamette::matmul::matvec(&Inline, &mut out, &w, &a.get(0));
            match &first {
                None => first = Some(out),
                Some(f) => assert_same(&out, f, &format!("{} {}", k.name, ty.name())),
            }
        }
    }
}

/// llama2.c's "version 2" layout (int8 values, f32 group scales) has only
/// the scalar row kernel; `matmul` still agrees with `matvec` on it.
#[test]
fn split_q8_matmul_equals_matvec() {
    let mut rng = Rng(77);
    let (rows, cols, group, n) = (9, 64, 32u32, 4);
    let data: Vec<u8> = (0..rows * cols).map(|_| rng.next() as u8).collect();
    let scales: Vec<u8> = (0..rows * cols / group as usize)
        .flat_map(|_| (rng.f() * 0.01).to_le_bytes())
        .collect();
    let ty = TensorType::Q8Split { group };
    let w = Tensor::new(b"w", ty, rows, cols, &data, &scales).unwrap();
    let x = rng.acts(n * cols);
    let acts = Acts::unquantized(&x, n);
    for k in sets() {
        let mut mm = vec![0f32; rows * n];
        llamette::matmul::matmul_with(k, &Inline, &mut mm, &w, &acts);
        for b in 0..n {
            let mut mv = vec![0f32; rows];
            llamette::matmul::matvec_with(k, &Inline, &mut mv, &w, &acts.get(b));
            assert_same(
                &mm[b * rows..(b + 1) * rows],
                &mv,
                &format!("{} b={b}", k.name),
            );
        }
    }
}

/// Random plain `rows` x `cols` weights of `plain` (Q8_0 or Q4_0), and the
/// same matrix interleaved, with its type.
fn interleaved(
    rng: &mut Rng,
    plain: TensorType,
    rows: usize,
    cols: usize,
) -> (Vec<u8>, Vec<u8>, TensorType) {
    let w = weights(rng, plain, rows, cols);
    let mut x = w.clone();
    let ty = llamette::repack::interleave(&mut x, plain, rows, cols).unwrap();
    (w, x, ty)
}

/// Interleaved weights `x` (type `ty`) made from the plain `w` (type
/// `plain`): every row decodes to exactly the plain row, and every set's
/// product with a random batch of `n` vectors has exactly the bits of the
/// scalar kernel on the plain weights (so has every set on the plain
/// weights, with `plain_too`). Returns the batch and those products.
fn interleaved_is_plain(
    rng: &mut Rng,
    plain: TensorType,
    (w, x, ty): (&[u8], &[u8], TensorType),
    rows: usize,
    cols: usize,
    n: usize,
    plain_too: bool,
) -> (Batch, Vec<f32>) {
    let tp = Tensor::new(b"p", plain, rows, cols, w, &[]).unwrap();
    let ti = Tensor::new(b"i", ty, rows, cols, x, &[]).unwrap();
    let (mut rp, mut ri) = (vec![0f32; cols], vec![0f32; cols]);
    for r in 0..rows {
        tp.dequantize_row(r, &mut rp);
        ti.dequantize_row(r, &mut ri);
        assert!(
            rp == ri,
            "{} cols={cols}: row {r} decodes differently",
            ty.name()
        );
    }
    let batch = Batch::new(rng, n, cols);
    let mut want = vec![0f32; rows * n];
    kernel(&scalar::KERNELS, plain)(w, &batch.acts(), &mut want);
    let cases: &[(TensorType, &[u8])] = if plain_too {
        &[(plain, w), (ty, x)]
    } else {
        &[(ty, x)]
    };
    for k in sets() {
        for &(t, data) in cases {
            let mut got = vec![0f32; rows * n];
            kernel(k, t)(data, &batch.acts(), &mut got);
            assert!(
                got.iter()
                    .map(|v| v.to_bits())
                    .eq(want.iter().map(|v| v.to_bits())),
                "{} {} cols={cols} rows={rows} n={n}: not the plain type's bits",
                k.name,
                t.name()
            );
        }
    }
    (batch, want)
}

/// The interleaved types: every set bit-identical to the scalar reference
/// (batches of 1 to 25 vectors, misaligned weights); their rows decode to
/// exactly the plain rows; every set gives exactly the plain type's
/// numbers (the same summation order), which are within their bound of
/// exact arithmetic.
#[test]
fn interleaved_kernels_match_scalar_and_exact() {
    let mut rng = Rng(1616);
    for plain in [TensorType::Q8_0, TensorType::Q4_0] {
        for cols in [32, 64, 256, 288, 2048, 5632] {
            for (rows, n) in [(16, 1), (32, 1), (48, 1), (48, 3), (16, 5), (32, 25)] {
                if cols >= 2048 && rows * n > 100 {
                    continue;
                }
                let (w, x, ty) = interleaved(&mut rng, plain, rows, cols);
                compare_sets_on(&mut rng, ty, &x, rows, cols, n, (rows + n) % 4);

                let (batch, want) =
                    interleaved_is_plain(&mut rng, plain, (&w, &x, ty), rows, cols, n, false);
                let tp = Tensor::new(b"p", plain, rows, cols, &w, &[]).unwrap();
                let mut rp = vec![0f32; cols];
                let got = &want[..rows];
                for (r, &g) in got.iter().enumerate() {
                    tp.dequantize_row(r, &mut rp);
                    let (mut exact, mut mag) = (0f64, 0f64);
                    for (i, &wv) in rp.iter().enumerate() {
                        let xv = batch.d[i / 32] as f64 * batch.q[i] as f64;
                        exact += wv as f64 * xv;
                        mag += (wv as f64 * xv).abs();
                    }
                    let err = (g as f64 - exact).abs();
                    assert!(
                        err <= QUANT_REF_TOL * mag,
                        "{} cols={cols} row {r}: {g} vs exact {exact}",
                        ty.name()
                    );
                }
            }
        }
    }
}

/// Interleaved Q4_K and Q5_K: every set gives exactly the plain type's bits (the
/// scalar reference's), for one vector and batches of 2 to 9 (the SIMD
/// kernel's tiles of 4 and their remainders), rows of 1 to 22 super-blocks
/// and 1 to 4 bands; the rows decode to exactly the plain rows; the
/// weights get here with their 6-bit scales, minimums and fifth bits
/// random, so every bit is exercised; and through the dispatch layer with 1
/// to 3 threads, matvec and matmul agree.
#[test]
fn interleaved_k_quants_are_the_plain_ones_bit_for_bit() {
    let mut rng = Rng(2604);
    for (plain, cols) in [256, 512, 2048, 5632]
        .into_iter()
        .flat_map(|c| [(TensorType::Q4_K, c), (TensorType::Q5_K, c)])
    {
        for (rows, n) in [(16, 1), (32, 1), (48, 2), (16, 5), (64, 9), (32, 4)] {
            if cols >= 2048 && rows * n > 200 {
                continue;
            }
            let (w, x, ty) = interleaved(&mut rng, plain, rows, cols);
            assert!(ty.is_interleaved() && ty.block_bytes() == plain.block_bytes());
            assert_eq!(x.len(), w.len());
            compare_sets_on(&mut rng, ty, &x, rows, cols, n, (rows + n) % 4);
            interleaved_is_plain(&mut rng, plain, (&w, &x, ty), rows, cols, n, true);
        }
    }
    let pools: Vec<Box<dyn Parallel>> = vec![
        Box::new(Inline),
        Box::new(ThreadPool::new(2)),
        Box::new(ThreadPool::new(3)),
    ];
    for plain in [TensorType::Q4_K, TensorType::Q5_K] {
        for rows in [16, 48, 160] {
            let (_, x, ty) = interleaved(&mut rng, plain, rows, 2048);
            matvec_and_matmul_agree(&mut rng, &pools, ty, &x, rows, 2048);
        }
    }
}

/// Interleaved F16: every set gives exactly the plain F16 type's bits (the
/// scalar reference's), for one vector (a band at a time) and batches of
/// 2 to 25 (tiles of half a band by 3 vectors and their remainders), with
/// both x86 tunings; rows of 1 to 176 columns of 32 and 1 to 4 bands; the
/// rows decode to exactly the plain rows; through the dispatch layer with
/// 1 to 3 threads, matvec and matmul agree.
#[test]
fn interleaved_f16_is_plain_f16_bit_for_bit() {
    let mut rng = Rng(1616);
    for intel in [false, true] {
        kernels::force_intel_tuning(intel);
        for cols in [32, 64, 288, 2048, 5632] {
            for (rows, n) in [
                (16, 1),
                (32, 1),
                (64, 1),
                (48, 2),
                (16, 5),
                (32, 25),
                (32, 7),
            ] {
                if cols >= 2048 && rows * n > 200 {
                    continue;
                }
                let (w, x, ty) = interleaved(&mut rng, TensorType::F16, rows, cols);
                assert!(ty == TensorType::F16x16 && ty.is_interleaved());
                assert_eq!(x.len(), w.len());
                compare_sets_on(&mut rng, ty, &x, rows, cols, n, (rows + n) % 4);
                interleaved_is_plain(&mut rng, TensorType::F16, (&w, &x, ty), rows, cols, n, true);
            }
        }
    }
    let pools: Vec<Box<dyn Parallel>> = vec![
        Box::new(Inline),
        Box::new(ThreadPool::new(2)),
        Box::new(ThreadPool::new(3)),
    ];
    for rows in [16, 48, 160] {
        let (_, x, ty) = interleaved(&mut rng, TensorType::F16, rows, 2048);
        matvec_and_matmul_agree(&mut rng, &pools, ty, &x, rows, 2048);
    }
}

/// `matvec` and `matmul` on interleaved weights through the dispatch layer,
/// with 1, 2 and 3 threads (tasks never split a band): bit-identical to the
/// scalar reference.
#[test]
fn interleaved_matvec_and_matmul_agree_across_sets_and_threads() {
    let pools: Vec<Box<dyn Parallel>> = vec![
        Box::new(Inline),
        Box::new(ThreadPool::new(2)),
        Box::new(ThreadPool::new(3)),
    ];
    let mut rng = Rng(4242);
    for plain in [TensorType::Q8_0, TensorType::Q4_0] {
        for rows in [16, 48, 160] {
            let cols = 2048;
            let (_, x, ty) = interleaved(&mut rng, plain, rows, cols);
            matvec_and_matmul_agree(&mut rng, &pools, ty, &x, rows, cols);
        }
    }
}

/// What cannot be interleaved is refused with an error, the bytes untouched;
/// an interleaved type with a partial band is not a valid tensor.
#[test]
fn interleave_refuses_what_it_cannot_do() {
    let mut rng = Rng(3);
    let w = weights(&mut rng, TensorType::Q8_0, 24, 64);
    let mut x = w.clone();
    for (ty, rows, cols, len) in [
        (TensorType::Q8_0, 24, 64, w.len()),
        (TensorType::Q8_0, 16, 64, w.len()),
        (TensorType::Q8_0, 16, 40, w.len()),
        (TensorType::F16, 16, 64, w.len()),
        (TensorType::F16, 16, 48, 16 * 48 * 2),
        (TensorType::F16, 24, 32, 24 * 32 * 2),
        (TensorType::F16, 16, 32 * 1025, w.len()),
        (TensorType::BF16, 16, 32, 16 * 32 * 2),
        (TensorType::Q8_0, 16, 64 * 1025, w.len()),
        (TensorType::Q8_0, 16, 64, 16 * 68 - 1),
    ] {
        let r = llamette::repack::interleave(&mut x[..len], ty, rows, cols);
        assert!(
            r.is_err(),
            "{} {rows}x{cols} ({len} bytes) was accepted",
            ty.name()
        );
        assert!(x == w, "a refused call changed the bytes");
    }
    // Q4_K: rows in whole bands, super-blocks of 256, at most 128 of them.
    let w = weights(&mut rng, TensorType::Q4_K, 32, 512);
    let mut x = w.clone();
    for (rows, cols, len) in [
        (24, 512, 24 * 288),
        (16, 384, 16 * 288),
        (16, 256 * 129, w.len()),
        (32, 512, w.len() - 1),
        (16, 512, w.len()),
    ] {
        let r = llamette::repack::interleave(&mut x[..len], TensorType::Q4_K, rows, cols);
        assert!(r.is_err(), "Q4_K {rows}x{cols} ({len} bytes) was accepted");
        assert!(x == w, "a refused call changed the bytes");
    }
    assert!(Tensor::new(b"w", TensorType::Q4_Kx16, 24, 256, &w[..24 * 144], &[]).is_err());
    // Rows of no values: nothing to move, no panic.
    assert!(llamette::repack::interleave(&mut [], TensorType::Q4_0, 16, 0).is_ok());
    assert!(llamette::repack::interleave(&mut [], TensorType::Q4_K, 16, 0).is_ok());
    let w = weights(&mut rng, TensorType::Q5_K, 16, 512);
    let mut x = w.clone();
    for (rows, cols, len) in [
        (16, 512, w.len() - 1),
        (16, 384, w.len()),
        (8, 512, 8 * 352),
    ] {
        let r = llamette::repack::interleave(&mut x[..len], TensorType::Q5_K, rows, cols);
        assert!(r.is_err(), "Q5_K {rows}x{cols} ({len} bytes) was accepted");
        assert!(x == w, "a refused call changed the bytes");
    }
    assert!(Tensor::new(b"w", TensorType::Q8_0x16, 24, 64, &w, &[]).is_err());
    assert!(Tensor::new(b"w", TensorType::Q8_0x16, 16, 64, &w[..16 * 68], &[]).is_ok());
}

/// Attention's weighted sum of value rows: every set bit-identical to the
/// scalar reference (F32 and F16 rows, widths that are and are not
/// multiples of 16 and 64, so every chunk width of the sums runs), and the
/// reference close to exact arithmetic.
#[test]
fn weighted_sums_match_scalar_and_exact() {
    let mut rng = Rng(31);
    for f16 in [false, true] {
        for n in [1, 8, 17, 48, 64, 88, 128, 203] {
            for seen in [1, 2, 37, 300] {
                let att: Vec<f32> = (0..seen).map(|_| rng.f().abs()).collect();
                let mut bits = Vec::new();
                let mut vals = Vec::new();
                for _ in 0..seen * n {
                    let h = rng.f16_bits();
                    bits.push(h);
                    vals.push(if f16 {
                        half::f16::from_bits(h).to_f32()
                    } else {
                        rng.f()
                    });
                }
                let v = if f16 {
                    ValueRows::F16(&bits)
                } else {
                    ValueRows::F32(&vals)
                };
                let mut want = vec![0f32; n];
                scalar::weighted_sum(&att, v, &mut want);
                for k in sets() {
                    let mut got = vec![f32::NAN; n];
                    (k.weighted_sum)(&att, v, &mut got);
                    assert_same(
                        &got,
                        &want,
                        &format!("{} f16={f16} n={n} seen={seen}", k.name),
                    );
                }
                for (i, &w) in want.iter().enumerate() {
                    let (mut exact, mut mag) = (0f64, 0f64);
                    for (t, &a) in att.iter().enumerate() {
                        exact += a as f64 * vals[t * n + i] as f64;
                        mag += (a as f64 * vals[t * n + i] as f64).abs();
                    }
                    // One rounded product and one rounded sum per row.
                    let tol = 2.0 * seen as f64 * U * mag;
                    assert!(
                        (w as f64 - exact).abs() <= tol,
                        "f16={f16} n={n} seen={seen} element {i}: {w} vs {exact}"
                    );
                }
            }
        }
    }
}

/// The Q8_K quantizer on the cases its search and rounding must get right:
/// equal magnitudes of both signs (the first one sets the sign of the
/// scale), the largest value last, infinities, NaN first, rounding ties,
/// values that clamp, and lengths of 0 to 9 super-blocks.
#[test]
fn quantize_q8k_edge_cases_of_every_length_match_scalar() {
    let mut rng = Rng(909);
    let mut x = rng.acts(9 * 256);
    x[3] = -5.0;
    x[10] = 5.0;
    x[256 + 255] = 100.0;
    x[512] = f32::INFINITY;
    x[512 + 1] = f32::NEG_INFINITY;
    x[768] = f32::NAN;
    x[768 + 1] = -2.0;
    // Ties: with a largest value of 127 the scale is -1 and every x is
    // rounded as it is.
    for (i, v) in x[1024..1280].iter_mut().enumerate() {
        *v = if i == 7 {
            127.0
        } else {
            (i as f32 - 128.0) * 0.5
        };
    }
    for v in &mut x[1280..1536] {
        *v *= 1.0e30;
    }
    x[1536..1792].fill(-0.0);
    x[1792 + 100] = 1.0e-40;
    for n in 0..=9 {
        let x = &x[..256 * n];
        let (mut d0, mut b0, mut q0) = (vec![0f32; n], vec![0i16; 16 * n], vec![0i8; 256 * n]);
        k_quants::quantize_q8k(x, &mut d0, &mut b0, &mut q0);
        for k in sets() {
            let (mut d, mut b, mut q) = (vec![1f32; n], vec![1i16; 16 * n], vec![1i8; 256 * n]);
            (k.quantize_k)(x, &mut d, &mut b, &mut q);
            assert_eq!(q, q0, "{}: q, {n} super-blocks", k.name);
            assert_eq!(b, b0, "{}: sums, {n} super-blocks", k.name);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&d), bits(&d0), "{}: scales, {n} super-blocks", k.name);
        }
    }
}
