//! `kernel-table`: every kernel set side by side, GB/s of weights streamed
//! against a read-bandwidth probe.
//!
//! The machine may be noisy: each measurement is repeated, the sets (and the
//! probe) take turns within every round, and the table shows medians.
//!
//! ```text
//! cargo run --release -p llamette-bench --bin kernel-table [-- --rounds N] [--quick]
//! ```
//!
//! On a machine shared with other busy processes, `--cpu-time` (with
//! `--quick`: one thread) times by the thread's CPU time instead of the
//! wall clock: what the kernels (and the probe) reach while they run.
//!
//! `--small-pages` puts the weights in 4 KiB pages, 2688 bytes into a page
//! (as the tensors of a memory-mapped GGUF file whose page cache is not
//! backed by huge folios); the probe still reads huge pages, the ceiling
//! to aim at.

use std::hint::black_box;

use llamette::kernels::{self, Kernels};
use llamette::parallel::{Inline, Parallel, ThreadPool};
use llamette::tensor::TensorType;
use llamette_bench::{
    cpu_time, median, read_all, time, Batch, HugeBuf, Weights, TINYLLAMA_MACS_PER_TOKEN,
};

/// Every type the table can run (`--types` picks some).
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

/// The name `--types` takes: `f32`, `q4_0`, `q4_0x16` ...
fn short_name(t: TensorType) -> String {
    let base = t
        .name()
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_lowercase();
    if t.is_interleaved() {
        base + "x16"
    } else {
        base
    }
}

/// Whether to time by the thread's CPU time (`--cpu-time`).
static CPU_TIME: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Seconds taken by `f`: wall clock, or CPU time with `--cpu-time`.
fn timed<T>(f: impl FnOnce() -> T) -> (f64, T) {
    if CPU_TIME.load(std::sync::atomic::Ordering::Relaxed) {
        cpu_time(f)
    } else {
        time(f)
    }
}

/// Repeats `f` until about `min_s` seconds have passed; seconds per call.
fn per_call(min_s: f64, mut f: impl FnMut()) -> f64 {
    let mut calls = 0usize;
    let (t, _) = timed(|| {
        let start = std::time::Instant::now();
        while start.elapsed().as_secs_f64() < min_s || calls == 0 {
            f();
            calls += 1;
        }
    });
    t / calls as f64
}

struct Opts {
    rounds: usize,
    quick: bool,
    types: Vec<TensorType>,
    matvec: bool,
    matmul: bool,
    sets: Option<Vec<String>>,
}

fn main() {
    let mut opts = Opts {
        rounds: 9,
        quick: false,
        types: TYPES.to_vec(),
        matvec: true,
        matmul: true,
        sets: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => opts.rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(9),
            "--quick" => opts.quick = true,
            "--cpu-time" => CPU_TIME.store(true, std::sync::atomic::Ordering::Relaxed),
            "--small-pages" => {
                llamette_bench::SMALL_PAGES.store(true, std::sync::atomic::Ordering::Relaxed)
            }
            "--matvec" => opts.matmul = false,
            "--matmul" => opts.matvec = false,
            "--types" => {
                let v = args.next().unwrap_or_default().to_lowercase();
                opts.types = TYPES
                    .into_iter()
                    .filter(|&t| v.split(',').any(|n| n == short_name(t)))
                    .collect();
            }
            "--sets" => {
                opts.sets = Some(
                    args.next()
                        .unwrap_or_default()
                        .split(',')
                        .map(String::from)
                        .collect(),
                )
            }
            _ => {
                eprintln!(
                    "usage: kernel-table [--rounds N] [--quick (1 thread only)] [--matvec | --matmul]\n\
                     \x20      [--cpu-time (with --quick: time by this thread's CPU time)]\n\
                     \x20      [--small-pages (weights in 4 KiB pages, as a memory-mapped file's)]\n\
                     \x20      [--types f32,f16,bf16,q8_0,q4_0,q4_1,q5_0,q5_1,iq4_nl,q2_k,q3_k,q4_k,q5_k,q6_k,\n\
                     \x20               q8_0x16,q4_0x16,q4_kx16,q5_kx16,f16x16] [--sets scalar,avx2,...]"
                );
                std::process::exit(2);
            }
        }
    }
    let cpu = CPU_TIME.load(std::sync::atomic::Ordering::Relaxed);
    if cpu && !opts.quick {
        eprintln!("--cpu-time times this thread only: running with --quick");
        opts.quick = true;
    }
    let sets: Vec<&'static Kernels> = kernels::available()
        .filter(|k| {
            opts.sets
                .as_ref()
                .is_none_or(|s| s.iter().any(|n| n == k.name))
        })
        .collect();
    let names: Vec<&str> = sets.iter().map(|k| k.name).collect();
    println!(
        "kernel sets: {names:?}; active by default: {}",
        kernels::active().name
    );

    // The probe: four 32 MB buffers read in turn, like the rotation below.
    let probe: Vec<HugeBuf> = (0..4)
        .map(|i| {
            let mut b = HugeBuf::new(32 << 20);
            b.bytes_mut()
                .iter_mut()
                .enumerate()
                .for_each(|(j, v)| *v = (i + j) as u8);
            b
        })
        .collect();
    let mut probe_at = 0;
    let mut probe_gbs = |samples: &mut Vec<f64>| {
        let b = &probe[probe_at % 4];
        probe_at += 1;
        let (t, s) = timed(|| read_all(b.bytes()));
        black_box(s);
        samples.push(b.bytes().len() as f64 / t / 1e9);
    };
    let mut probe_samples = Vec::new();
    for _ in 0..8 {
        probe_gbs(&mut probe_samples);
    }
    let bw = median(&mut probe_samples);
    println!(
        "read bandwidth probe (1 thread, 4 x 32 MB in turn): {bw:.1} GB/s (median){}",
        if cpu { ", by CPU time" } else { "" }
    );
    if llamette_bench::SMALL_PAGES.load(std::sync::atomic::Ordering::Relaxed) {
        println!("weights in 4 KiB pages (--small-pages); the probe reads huge pages");
    }
    if !cpu {
        // Two threads, each reading half of every buffer.
        let mut two = Vec::new();
        for i in 0..8 {
            let b = probe[i % 4].bytes();
            let (lo, hi) = b.split_at(b.len() / 2);
            let (t, s) = time(|| {
                std::thread::scope(|sc| {
                    let h = sc.spawn(|| read_all(hi));
                    read_all(lo).wrapping_add(h.join().unwrap())
                })
            });
            black_box(s);
            two.push(b.len() as f64 / t / 1e9);
        }
        println!(
            "read bandwidth probe (2 threads, halves of the same buffers): {:.1} GB/s (median)\n",
            median(&mut two)
        );
    } else {
        println!();
    }

    let pool2 = ThreadPool::new(2);
    let pars: Vec<(&str, &dyn Parallel)> = if opts.quick {
        vec![("1T", &Inline)]
    } else {
        vec![("1T", &Inline), ("2T", &pool2)]
    };

    if opts.matvec {
        println!(
            "## matvec: GB/s of weights (median of {} rounds; % of the probe)\n",
            opts.rounds
        );
        print!("| type | shape | threads |");
        for n in &names {
            print!(" {n} |");
        }
        println!("\n|---|---|---|{}", "---|".repeat(names.len()));
        for &ty in &opts.types {
            let cols = 2048;
            // Whole bands of 16 rows, for the interleaved types.
            let big_rows = (32 << 20) / ty.bytes_for(cols).unwrap() / 16 * 16;
            let shapes: Vec<(String, Vec<Weights>)> = vec![
                (
                    "256x2048 (L2)".into(),
                    vec![Weights::random(ty, 256, cols, 1)],
                ),
                ("2048x2048".into(), vec![Weights::random(ty, 2048, cols, 1)]),
                ("5632x2048".into(), vec![Weights::random(ty, 5632, cols, 2)]),
                (
                    format!(
                        "4 x {big_rows}x2048 (rotating, {} MB)",
                        (4 * ty.bytes_for(big_rows * cols).unwrap()) >> 20
                    ),
                    (0..4)
                        .map(|i| Weights::random(ty, big_rows, cols, 10 + i))
                        .collect(),
                ),
            ];
            let b = Batch::random(1, cols, 3);
            let a = b.acts(ty).get(0);
            for (shape, ws) in &shapes {
                let ts: Vec<_> = ws.iter().map(|w| w.tensor()).collect();
                let bytes = ws[0].n_bytes() as f64;
                let mut out = vec![0f32; ws[0].rows];
                for (pn, par) in &pars {
                    let mut samples = vec![Vec::new(); sets.len()];
                    let mut turn = 0;
                    for round in 0..opts.rounds {
                        for i in 0..sets.len() {
                            let s = (i + round) % sets.len();
                            let k = sets[s];
                            // The slow scalar set gets fewer calls.
                            let min_s = if k.name == "scalar" { 0.02 } else { 0.05 };
                            let t = per_call(min_s, || {
                                turn += 1;
                                llamette::matmul::matvec_with(
                                    k,
                                    *par,
                                    &mut out,
                                    &ts[turn % ts.len()],
                                    black_box(&a),
                                );
                            });
                            samples[s].push(bytes / t / 1e9);
                        }
                    }
                    print!("| {} | {shape} | {pn} |", ty.name());
                    for s in &mut samples {
                        let m = median(s);
                        print!(" {m:.1} ({:.0}%) |", 100.0 * m / bw);
                    }
                    println!();
                }
            }
        }
    }

    if opts.matmul {
        let (rows, cols, n) = (2048, 2048, 128);
        println!("\n## matmul (prefill): {n} vectors x {rows}x{cols}, GMAC/s (median; TinyLlama-1.1B pp tok/s equivalent)\n");
        print!("| type | threads |");
        for nm in &names {
            print!(" {nm} |");
        }
        println!(" best set as {n} matvecs |");
        println!("|---|---|{}---|", "---|".repeat(names.len()));
        let best = *sets.last().unwrap();
        for &ty in &opts.types {
            let w = Weights::random(ty, rows, cols, 5);
            let t = w.tensor();
            let b = Batch::random(n, cols, 6);
            let acts = b.acts(ty);
            let mut out = vec![0f32; rows * n];
            let macs = (rows * cols * n) as f64;
            for (pn, par) in &pars {
                let mut samples = vec![Vec::new(); sets.len() + 1];
                let rounds = opts.rounds.div_ceil(2).max(1);
                for round in 0..rounds {
                    for i in 0..=sets.len() {
                        let s = (i + round) % (sets.len() + 1);
                        let t = if s == sets.len() {
                            per_call(0.05, || {
                                for (bi, o) in out.chunks_exact_mut(rows).enumerate() {
                                    llamette::matmul::matvec_with(best, *par, o, &t, &acts.get(bi));
                                }
                            })
                        } else {
                            let min = if sets[s].name == "scalar" { 0.0 } else { 0.1 };
                            per_call(min, || {
                                llamette::matmul::matmul_with(
                                    sets[s],
                                    *par,
                                    &mut out,
                                    &t,
                                    black_box(&acts),
                                )
                            })
                        };
                        samples[s].push(macs / t / 1e9);
                    }
                }
                print!("| {} | {pn} |", ty.name());
                for s in &mut samples {
                    let m = median(s);
                    print!(
                        " {m:.1} ({:.0} tok/s) |",
                        m * 1e9 / TINYLLAMA_MACS_PER_TOKEN
                    );
                }
                println!();
            }
        }
    }
    let mut probe_samples = Vec::new();
    for _ in 0..8 {
        probe_gbs(&mut probe_samples);
    }
    println!(
        "\nread bandwidth probe again: {:.1} GB/s",
        median(&mut probe_samples)
    );
}
