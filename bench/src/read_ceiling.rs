//! `read-ceiling`: how fast one thread of this machine reads memory, and
//! how much of that survives the arithmetic a matrix-vector kernel does
//! per byte. A plain read loop, the same with software prefetches, the
//! same with 1 to 16 `vpdpbusd` (the instruction every 8-bit and 4-bit
//! kernel here is built on) per 64-byte line, and the same over 2 or 4
//! streams, over 1 GiB of huge pages (`--mib N`: N MiB, say a model's
//! weights read per token: a shared L3 serves part of a pass that is not
//! much larger than it); medians of interleaved rounds, GB/s.
//!
//! Decode streams the weights once per token, so these figures bound it:
//! tokens/s times the weights' bytes read per token (`llamette bench`
//! prints both) cannot exceed the read loop's GB/s, and the loops with
//! arithmetic show how far below it a kernel doing that much work per byte
//! lands. x86-64 with AVX-512 VNNI only.
//!
//! `cargo run --release -p llamette-bench --bin read-ceiling [-- --rounds N] [--mib N]`

use std::time::Instant;

use llamette_bench::HugeBuf;

/// MiB read per pass unless `--mib` says otherwise.
const MIB: usize = 1024;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    /// One pass over `buf`, as `S` streams (the buffer in `S` equal parts
    /// read side by side, a line of each in turn, as a kernel reading `S`
    /// bands at once): each 64-byte line loaded once and put through `W`
    /// `vpdpbusd` into 8 running sums (an add with `W = 0`); with `FAR`
    /// not 0 the line `FAR` bytes further prefetched into L2 (as the
    /// kernels do on Intel), with `NEAR` not 0 the line `NEAR` bytes
    /// further into L1. Returns a sum, so that nothing can be skipped.
    ///
    /// # Safety
    /// The CPU has AVX-512 F and VNNI.
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub unsafe fn pass<const S: usize, const W: usize, const FAR: usize, const NEAR: usize>(
        buf: &[u8],
    ) -> i32 {
        let mut acc = [_mm512_setzero_si512(); 8];
        let x = _mm512_set1_epi32(0x0102_0304);
        let part = buf.len() / S / 64 * 64;
        let p = buf.as_ptr();
        let mut off = 0;
        while off + 64 <= part {
            for s in 0..S {
                let q = p.wrapping_add(s * part + off);
                // (A prefetch never faults, whatever the address: safe to
                // call here, with SSE.)
                if FAR != 0 {
                    _mm_prefetch::<_MM_HINT_T1>(q.wrapping_add(FAR) as *const i8);
                }
                if NEAR != 0 {
                    _mm_prefetch::<_MM_HINT_T0>(q.wrapping_add(NEAR) as *const i8);
                }
                // SAFETY: bytes s * part + off.. + 64 are inside `buf`
                // (off + 64 <= part, s < S); AVX-512 F (this function's
                // contract).
                let v = unsafe { _mm512_loadu_si512(q as *const _) };
                if W == 0 {
                    acc[s % 8] = _mm512_add_epi32(acc[s % 8], v);
                }
                for k in 0..W {
                    let a = (k + 2 * s) % 8;
                    acc[a] = _mm512_dpbusd_epi32(acc[a], v, x);
                }
            }
            off += 64;
        }
        let mut s = acc[0];
        for a in &acc[1..] {
            s = _mm512_add_epi32(s, *a);
        }
        _mm512_reduce_add_epi32(s)
    }

    /// [`pass`], on a CPU that runs it (panics elsewhere).
    pub fn run<const S: usize, const W: usize, const FAR: usize, const NEAR: usize>(
        buf: &[u8],
    ) -> i32 {
        assert!(supported(), "AVX-512 F and VNNI needed");
        // SAFETY: the CPU has the features (checked above).
        unsafe { pass::<S, W, FAR, NEAR>(buf) }
    }

    /// Whether this CPU runs [`pass`].
    pub fn supported() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni")
    }
}

/// A loop of the table: its name and its pass.
type Loop = (&'static str, fn(&[u8]) -> i32);

#[cfg(target_arch = "x86_64")]
fn loops() -> Option<Vec<Loop>> {
    if !x86::supported() {
        return None;
    }
    Some(vec![
        ("read, no prefetch", x86::run::<1, 0, 0, 0>),
        ("read, prefetch L2 2560 B ahead", x86::run::<1, 0, 2560, 0>),
        (
            "read, prefetch L2 2560 and L1 1024 B ahead",
            x86::run::<1, 0, 2560, 1024>,
        ),
        ("read, prefetch L1 1024 B ahead", x86::run::<1, 0, 0, 1024>),
        (
            "2 vpdpbusd per line, prefetch L2 2560 and L1 1024 (the kernels' on Intel)",
            x86::run::<1, 2, 2560, 1024>,
        ),
        (
            "2 streams, 2 vpdpbusd per line, prefetch L2 2560 and L1 1024",
            x86::run::<2, 2, 2560, 1024>,
        ),
        (
            "4 streams, 2 vpdpbusd per line, prefetch L2 2560 and L1 1024",
            x86::run::<4, 2, 2560, 1024>,
        ),
        // The fastest pattern found (2026-12-06, 600 MiB, medians of 5
        // rounds, five runs: 22.5, 23.0, 20.5, 20.4 and 17.8 GB/s against
        // 19.9, 20.4, 19.2, 18.9 and 18.1 for one stream at 2560/1024 in
        // the same runs; 3 streams 22.6, 4 at 4096/2048 21.4, 8 18.8).
        (
            "2 streams, 2 vpdpbusd per line, prefetch L2 4096 and L1 2048",
            x86::run::<2, 2, 4096, 2048>,
        ),
        (
            "1 vpdpbusd per line, prefetch L2 2560",
            x86::run::<1, 1, 2560, 0>,
        ),
        (
            "2 vpdpbusd per line, prefetch L2 2560",
            x86::run::<1, 2, 2560, 0>,
        ),
        (
            "4 vpdpbusd per line, prefetch L2 2560",
            x86::run::<1, 4, 2560, 0>,
        ),
        ("4 vpdpbusd per line, no prefetch", x86::run::<1, 4, 0, 0>),
        (
            "8 vpdpbusd per line, prefetch L2 2560",
            x86::run::<1, 8, 2560, 0>,
        ),
        (
            "16 vpdpbusd per line, prefetch L2 2560",
            x86::run::<1, 16, 2560, 0>,
        ),
    ])
}

#[cfg(not(target_arch = "x86_64"))]
fn loops() -> Option<Vec<Loop>> {
    None
}

fn main() {
    let mut rounds = 5;
    let mut mib = MIB;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next().and_then(|n| n.parse().ok())) {
            ("--rounds", Some(n)) if n > 0 => rounds = n,
            ("--mib", Some(n)) if n > 0 => mib = n,
            _ => {
                eprintln!(
                    "usage: read-ceiling [--rounds N] [--mib N (MiB per pass, default 1024)]"
                );
                std::process::exit(2);
            }
        }
    }
    let bytes = mib << 20;
    let Some(loops) = loops() else {
        eprintln!("read-ceiling: x86-64 with AVX-512 VNNI only");
        std::process::exit(1);
    };
    let buf = HugeBuf::new(bytes);
    let mut gbs = vec![Vec::new(); loops.len()];
    for round in 0..rounds {
        // Rotate the order from round to round.
        for i in 0..loops.len() {
            let j = (i + round) % loops.len();
            let start = Instant::now();
            std::hint::black_box((loops[j].1)(buf.bytes()));
            gbs[j].push(bytes as f64 / start.elapsed().as_secs_f64() / 1e9);
        }
    }
    println!("| 1 thread, {mib} MiB of huge pages | GB/s (median of {rounds}) | range |");
    println!("| --- | --- | --- |");
    for ((name, _), g) in loops.iter().zip(&mut gbs) {
        g.sort_by(f64::total_cmp);
        let (lo, med, hi) = (g[0], g[g.len() / 2], g[g.len() - 1]);
        println!("| {name} | {med:.1} | {lo:.1}-{hi:.1} |");
    }
}
