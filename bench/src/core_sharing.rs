//! `core-sharing`: whether CPUs 0 and 1 share a physical core right now.
//!
//! Two threads, one pinned to each CPU, hand a cache line back and forth
//! and the program prints the median round trip in nanoseconds and what
//! it means. Two hyperthreads of one core share its L1 and L2, so a round
//! trip takes tens of nanoseconds; across cores it goes through L3 or the
//! fabric and takes hundreds.
//!
//! Why it matters: on a virtual machine the host decides where the guest's
//! virtual CPUs run, and may move them at any time. On the 2-vCPU Zen 4
//! guest of README's tables, the two vCPUs sat on one core (round trips of
//! 59-85 ns) in some minutes and on separate cores (318-378 ns) in others.
//! F16 decode at 2 threads ran at about 15 tok/s in the first case and 24
//! in the second, for llama.cpp and llamette alike, while 1 thread ran at
//! 14 either way: the two hyperthreads of one core share its memory
//! bandwidth. `scripts/perf_table.sh` runs this beside every 2-thread
//! measurement, so that a table can compare engines that ran under the
//! same placement.
//!
//! `cargo run --release -p llamette-bench --bin core-sharing` prints, e.g.,
//! `79 ns shared`. Linux only (it pins threads with `sched_setaffinity`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Round trips per measurement.
const TRIPS: u64 = 5_000;

/// Measurements; the median is printed.
const ROUNDS: usize = 9;

/// Above this median round trip the two CPUs are on separate cores. The
/// two cases measured 59-85 ns and 318-378 ns on Zen 4; on bare metal a
/// round trip between hyperthreads is shorter still, and between cores of
/// one L3 about 100-200 ns.
const SEPARATE_NS: f64 = 150.0;

/// A cache line of its own for the counter the threads bounce.
#[repr(align(64))]
struct Line(AtomicU64);

/// Pins the calling thread to CPU `cpu`.
fn pin(cpu: usize) -> std::io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is the empty set (CPU_ZERO), and
    // CPU_SET and sched_setaffinity only read and write the set we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    if std::thread::available_parallelism()?.get() < 2 {
        println!("one CPU");
        return Ok(());
    }
    let line = Arc::new(Line(AtomicU64::new(0)));
    let other = Arc::clone(&line);
    // The answering thread inherits CPU 1 from this one, pinned before the
    // spawn: a failed pin is an error here, not a thread that never answers.
    pin(1)?;
    // It answers every odd value with the next even one.
    let answerer = std::thread::spawn(move || {
        for i in 0..TRIPS * ROUNDS as u64 {
            while other.0.load(Ordering::Acquire) != 2 * i + 1 {
                std::hint::spin_loop();
            }
            other.0.store(2 * i + 2, Ordering::Release);
        }
    });
    pin(0)?;
    let mut ns = Vec::with_capacity(ROUNDS);
    for r in 0..ROUNDS as u64 {
        let start = Instant::now();
        for i in r * TRIPS..(r + 1) * TRIPS {
            line.0.store(2 * i + 1, Ordering::Release);
            while line.0.load(Ordering::Acquire) != 2 * i + 2 {
                std::hint::spin_loop();
            }
        }
        ns.push(start.elapsed().as_nanos() as f64 / TRIPS as f64);
    }
    answerer.join().expect("the answering thread panicked");
    ns.sort_by(f64::total_cmp);
    let median = ns[ROUNDS / 2];
    let placement = if median > SEPARATE_NS {
        "separate"
    } else {
        "shared"
    };
    println!("{median:.0} ns {placement}");
    Ok(())
}
