//! Criterion benchmarks of the matrix kernels, for every kernel set this CPU
//! can run: matrix-vector products per weight type at TinyLlama's shapes
//! (throughput in weight bytes per second), the same over a rotation of four
//! ~32 MB matrices (so that no cache holds the weights), and the batched
//! prefill product for 128 vectors (throughput in multiply-adds per second).
//!
//! `cargo bench -p llamette-bench`; `kernel-table` (src/main.rs) prints the
//! same numbers side by side as GB/s against a bandwidth probe.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use llamette::kernels::{self, Act};
use llamette::parallel::Inline;
use llamette::tensor::TensorType;
use llamette_bench::{Batch, Weights};

const TYPES: [TensorType; 19] = [
    TensorType::F32,
    TensorType::F16,
    TensorType::BF16,
    TensorType::Q8_0,
    TensorType::Q4_0,
    TensorType::Q4_1,
    TensorType::Q5_0,
    TensorType::Q5_1,
    TensorType::IQ4_NL,
    TensorType::Q2_K,
    TensorType::Q3_K,
    TensorType::Q4_K,
    TensorType::Q5_K,
    TensorType::Q6_K,
    TensorType::Q8_0x16,
    TensorType::Q4_0x16,
    TensorType::Q4_Kx16,
    TensorType::Q5_Kx16,
    TensorType::F16x16,
];

/// `F32`, `Q4_0`, `Q4_0x16` ...: a name without spaces, for the group names.
fn short(ty: TensorType) -> String {
    let base = ty.name().split(' ').next().unwrap_or_default().to_string();
    if ty.is_interleaved() {
        base + "x16"
    } else {
        base
    }
}

fn act(b: &Batch, ty: TensorType) -> Act<'_> {
    b.acts(ty).get(0)
}

fn matvec(c: &mut Criterion) {
    for ty in TYPES {
        for (rows, cols) in [(2048, 2048), (5632, 2048)] {
            let w = Weights::random(ty, rows, cols, 1);
            let t = w.tensor();
            let b = Batch::random(1, cols, 2);
            let a = act(&b, ty);
            let mut out = vec![0f32; rows];
            let mut g = c.benchmark_group(format!("matvec/{}/{rows}x{cols}", short(ty)));
            g.throughput(Throughput::Bytes(w.n_bytes() as u64));
            for k in kernels::available() {
                g.bench_function(k.name, |bch| {
                    bch.iter(|| {
                        llamette::matmul::matvec_with(k, &Inline, &mut out, &t, black_box(&a))
                    })
                });
            }
            g.finish();
        }
    }
}

/// Four matrices of about 32 MB each (128 MB, far beyond the caches), one
/// product per iteration, in turn.
fn matvec_rotation(c: &mut Criterion) {
    for ty in TYPES {
        let cols = 2048;
        let rows = (32 << 20) / ty.bytes_for(cols).unwrap() / 16 * 16;
        let ws: Vec<Weights> = (0..4).map(|i| Weights::random(ty, rows, cols, i)).collect();
        let ts: Vec<_> = ws.iter().map(|w| w.tensor()).collect();
        let b = Batch::random(1, cols, 2);
        let a = act(&b, ty);
        let mut out = vec![0f32; rows];
        let mut g = c.benchmark_group(format!("matvec-rotation/{}/4x{rows}x{cols}", short(ty)));
        g.throughput(Throughput::Bytes(ws[0].n_bytes() as u64));
        for k in kernels::available() {
            let mut i = 0;
            g.bench_function(k.name, |bch| {
                bch.iter(|| {
                    i = (i + 1) % 4;
                    llamette::matmul::matvec_with(k, &Inline, &mut out, &ts[i], black_box(&a))
                })
            });
        }
        g.finish();
    }
}

/// The prefill product: 128 vectors through a 2048 x 2048 matrix.
fn matmul(c: &mut Criterion) {
    let (rows, cols, n) = (2048, 2048, 128);
    for ty in TYPES {
        let w = Weights::random(ty, rows, cols, 1);
        let t = w.tensor();
        let b = Batch::random(n, cols, 2);
        let acts = b.acts(ty);
        let mut out = vec![0f32; rows * n];
        let mut g = c.benchmark_group(format!("matmul/{}/{rows}x{cols}x{n}", short(ty)));
        g.throughput(Throughput::Elements((rows * cols * n) as u64));
        g.sample_size(10);
        for k in kernels::available() {
            g.bench_function(k.name, |bch| {
                bch.iter(|| {
                    llamette::matmul::matmul_with(k, &Inline, &mut out, &t, black_box(&acts))
                })
            });
        }
        g.finish();
    }
}

fn quantize(c: &mut Criterion) {
    let b = Batch::random(1, 5632, 3);
    let x = b.acts(TensorType::F32).x;
    let (mut d, mut s, mut q) = (vec![0f32; 176], vec![0i32; 176], vec![0i8; 5632]);
    let mut g = c.benchmark_group("quantize/5632");
    g.throughput(Throughput::Elements(5632));
    for k in kernels::available() {
        g.bench_function(k.name, |bch| {
            bch.iter(|| (k.quantize)(black_box(x), &mut d, &mut s, &mut q))
        });
    }
    g.finish();
}

fn quantize_k(c: &mut Criterion) {
    let b = Batch::random(1, 5632, 3);
    let x = b.acts(TensorType::F32).x;
    let (mut d, mut s, mut q) = (vec![0f32; 22], vec![0i16; 352], vec![0i8; 5632]);
    let mut g = c.benchmark_group("quantize_q8k/5632");
    g.throughput(Throughput::Elements(5632));
    for k in kernels::available() {
        g.bench_function(k.name, |bch| {
            bch.iter(|| (k.quantize_k)(black_box(x), &mut d, &mut s, &mut q))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = matvec, matvec_rotation, matmul, quantize, quantize_k
}
criterion_main!(benches);
