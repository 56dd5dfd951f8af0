//! Shared pieces of llamette's benchmarks: random weights in huge-page
//! memory, activation batches, a read-bandwidth probe and timing helpers.
//!
//! `benches/kernels.rs` is the criterion suite; `src/main.rs`
//! (`kernel-table`) measures every kernel set side by side and prints GB/s
//! against the probe.

use std::time::Instant;

use llamette::kernels::types::{k_quants, q8_0};
use llamette::kernels::{ActType, Acts, Q8K};
use llamette::tensor::{Tensor, TensorType};

/// Bytes of a huge page (x86-64 and most aarch64 Linux).
const HUGE: usize = 2 << 20;

/// Where [`Weights::random`] puts its weights: in 4 KiB pages (advised
/// not to use huge pages, starting 2688 bytes into a page, as the tensors
/// of a memory-mapped GGUF file whose page cache is not backed by huge
/// folios) when set, else in huge pages. `kernel-table --small-pages`.
pub static SMALL_PAGES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The offset into a page of [`SMALL_PAGES`] weights (that of the
/// tensors of the tinyllama-shaped GGUF files llama.cpp writes: 64-byte
/// aligned, not page-aligned).
const SMALL_OFFSET: usize = 2688;

/// A zeroed buffer aligned to 2 MiB and advised to use transparent huge
/// pages before its first touch (fewer TLB misses: streaming reaches the
/// machine's bandwidth).
pub struct HugeBuf {
    map: *mut u8,
    map_len: usize,
    ptr: *mut u8,
    len: usize,
}

impl HugeBuf {
    /// A buffer of `len` bytes.
    pub fn new(len: usize) -> HugeBuf {
        HugeBuf::with_pages(len, false)
    }

    /// A buffer of `len` bytes: in huge pages as [`HugeBuf::new`], or with
    /// `small`, in 4 KiB pages (`MADV_NOHUGEPAGE`), starting
    /// `SMALL_OFFSET` (2688) bytes into a page.
    pub fn with_pages(len: usize, small: bool) -> HugeBuf {
        let offset = if small { SMALL_OFFSET } else { 0 };
        let size = (len.max(1) + offset).next_multiple_of(HUGE);
        let map_len = size + HUGE;
        // SAFETY: an anonymous private mapping; checked below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(map != libc::MAP_FAILED, "mmap failed");
        let map = map as *mut u8;
        let ptr = map.wrapping_add(map.align_offset(HUGE));
        let advice = if small {
            libc::MADV_NOHUGEPAGE
        } else {
            libc::MADV_HUGEPAGE
        };
        // SAFETY: the range is inside our mapping. (Advice only: failure
        // is harmless.)
        unsafe { libc::madvise(ptr.cast(), size, advice) };
        // First touch after the advice, so that the pages fault in huge
        // (or not).
        // SAFETY: the range is inside our mapping.
        unsafe { std::ptr::write_bytes(ptr, 0, size) };
        // `offset + len <= size`: inside the touched range.
        let ptr = ptr.wrapping_add(offset);
        HugeBuf {
            map,
            map_len,
            ptr,
            len,
        }
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: mapped and initialised by `new`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: mapped and initialised by `new`, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for HugeBuf {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this length.
        unsafe { libc::munmap(self.map.cast(), self.map_len) };
    }
}

// SAFETY: a plain owned byte buffer.
unsafe impl Send for HugeBuf {}
// SAFETY: shared access is read-only.
unsafe impl Sync for HugeBuf {}

/// A small deterministic generator (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// A weight matrix in huge-page memory, filled with plausible random values.
pub struct Weights {
    /// Storage type.
    pub ty: TensorType,
    /// Rows (outputs).
    pub rows: usize,
    /// Columns (inputs).
    pub cols: usize,
    buf: HugeBuf,
}

impl Weights {
    /// Random `rows` x `cols` weights of type `ty`.
    pub fn random(ty: TensorType, rows: usize, cols: usize, seed: u64) -> Weights {
        let n = ty.bytes_for(rows * cols).unwrap();
        let small = SMALL_PAGES.load(std::sync::atomic::Ordering::Relaxed);
        let mut buf = HugeBuf::with_pages(n, small);
        let mut rng = Rng(seed);
        let b = buf.bytes_mut();
        let scale = |rng: &mut Rng| 0x2000u16 | (rng.next_u64() & 0x3ff) as u16; // ~2^-7
        match ty {
            TensorType::F32 => {
                for c in b.chunks_exact_mut(4) {
                    c.copy_from_slice(&(rng.f32() * 0.05).to_le_bytes());
                }
            }
            TensorType::F16 | TensorType::F16x16 => {
                for c in b.chunks_exact_mut(2) {
                    let h = 0x2000u16 | (rng.next_u64() & 0x83ff) as u16;
                    c.copy_from_slice(&h.to_le_bytes());
                }
            }
            TensorType::Q8_0 | TensorType::Q4_0 | TensorType::Q8_0x16 | TensorType::Q4_0x16 => {
                let bb = ty.block_bytes();
                for blk in b.chunks_exact_mut(bb) {
                    blk[..2].copy_from_slice(&scale(&mut rng).to_le_bytes());
                    for v in &mut blk[2..] {
                        *v = rng.next_u64() as u8;
                    }
                }
            }
            TensorType::Q8Split { .. } => unimplemented!("llama2.c split weights"),
            _ => {
                // Random bytes with small, plausible scales (every f16 in
                // the blocks gets ~2^-7; K-quant sub-block scales are bytes).
                for c in b.chunks_exact_mut(2) {
                    c.copy_from_slice(&scale(&mut rng).to_le_bytes());
                }
                for v in b.iter_mut().skip(1).step_by(3) {
                    *v = rng.next_u64() as u8;
                }
            }
        }
        if ty.is_interleaved() {
            // Random plain blocks, interleaved.
            let plain = match ty {
                TensorType::Q4_0x16 => TensorType::Q4_0,
                TensorType::Q4_Kx16 => TensorType::Q4_K,
                TensorType::Q5_Kx16 => TensorType::Q5_K,
                TensorType::F16x16 => TensorType::F16,
                _ => TensorType::Q8_0,
            };
            llamette::repack::interleave(b, plain, rows, cols).unwrap();
        }
        Weights {
            ty,
            rows,
            cols,
            buf,
        }
    }

    /// The tensor view.
    pub fn tensor(&self) -> Tensor<'_> {
        Tensor::new(b"w", self.ty, self.rows, self.cols, self.buf.bytes(), &[]).unwrap()
    }

    /// Weight bytes read by one product.
    pub fn n_bytes(&self) -> usize {
        self.buf.len
    }
}

/// A batch of `n` activation vectors of `cols` values and its quantizations.
pub struct Batch {
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
}

impl Batch {
    /// Random activations.
    pub fn random(n: usize, cols: usize, seed: u64) -> Batch {
        let mut rng = Rng(seed);
        let x: Vec<f32> = (0..n * cols).map(|_| rng.f32() * 3.0).collect();
        let nb = n * cols / 32;
        let (mut d, mut sum, mut q) = (vec![0f32; nb], vec![0i32; nb], vec![0i8; n * cols]);
        // The transposed copy `quantize_batch` makes for the `amx` set.
        let chunked = n.div_ceil(16) * 16 * cols;
        let (mut tq, mut td) = (vec![0i8; chunked], vec![0f32; chunked / 32]);
        if cols.is_multiple_of(32) {
            q8_0::quantize(&x, &mut d, &mut sum, &mut q);
            llamette::kernels::acts::transpose_q8(&q, &d, n, cols, &mut tq, &mut td);
        }
        let (mut kd, mut kbsums, mut kq) = (
            vec![0f32; n * cols / 256],
            vec![0i16; n * cols / 16],
            vec![0i8; n * cols],
        );
        if cols.is_multiple_of(256) {
            k_quants::quantize_q8k(&x, &mut kd, &mut kbsums, &mut kq);
        }
        Batch {
            x,
            d,
            sum,
            q,
            kd,
            kbsums,
            kq,
            tq,
            td,
            n,
        }
    }

    /// The batch for weights of type `ty`.
    pub fn acts(&self, ty: TensorType) -> Acts<'_> {
        let a = Acts::unquantized(&self.x, self.n);
        match ty.act_type() {
            ActType::F32 => a,
            ActType::Q8 => Acts {
                d: &self.d,
                sum: &self.sum,
                q: &self.q,
                t: llamette::kernels::Q8T {
                    q: &self.tq,
                    d: &self.td,
                },
                ..a
            },
            ActType::Q8K => Acts {
                k: Q8K {
                    d: &self.kd,
                    bsums: &self.kbsums,
                    q: &self.kq,
                },
                ..a
            },
        }
    }
}

/// Reads `buf` once (sums it, 64 bytes at a time) and returns the sum, so
/// that the reads cannot be optimised away.
pub fn read_all(buf: &[u8]) -> u64 {
    let mut acc = [0u64; 8];
    for c in buf.chunks_exact(64) {
        for (a, w) in acc.iter_mut().zip(c.chunks_exact(8)) {
            *a = a.wrapping_add(u64::from_le_bytes(w.try_into().unwrap()));
        }
    }
    acc.iter().fold(0, |s, &a| s.wrapping_add(a))
}

/// Seconds taken by `f`.
pub fn time<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let r = f();
    (t.elapsed().as_secs_f64(), r)
}

/// Seconds of CPU time the calling thread has used.
pub fn thread_cpu_time() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// CPU seconds the calling thread spent in `f` (on a shared machine, the
/// time it actually ran; only meaningful when `f` runs on this thread).
pub fn cpu_time<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = thread_cpu_time();
    let r = f();
    (thread_cpu_time() - t, r)
}

/// The median of `v` (sorted in place).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Multiply-accumulates per token of TinyLlama-1.1B (dim 2048, hidden 5632,
/// 22 layers, kv dim 256, vocabulary 32000): what prefill tok/s is per
/// GMAC/s.
pub const TINYLLAMA_MACS_PER_TOKEN: f64 = 22.0
    * (2.0 * 2048.0 * 2048.0 + 2.0 * 2048.0 * 256.0 + 3.0 * 2048.0 * 5632.0)
    + 32000.0 * 2048.0;
