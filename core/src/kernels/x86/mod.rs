//! x86-64 kernel sets: `avx2` (AVX2, FMA, F16C), `avx512` (AVX-512 F,
//! BW, VL and VNNI) and `amx` (`avx512` and AMX-INT8).
//!
//! - [`common`]: the 256-bit kernels both sets share (F32/F16/BF16 tiles,
//!   groups of 8 blocks of the 32-wide types, the Q8 quantizer), generic
//!   over the set's [`Isa`] (its pair products and tile sizes) and, for the
//!   32-wide types, over their block format ([`legacy`]);
//! - [`k_quants`]: the K-quants (Q2_K..Q6_K) and the Q8_K quantizer: one
//!   driver, and each set's unpacking of the five types;
//! - [`avx2`] and [`avx512`]: each set's inner products, its table, and
//!   (AVX-512) the kernels only it has: 512-bit matrix-vector products of
//!   the 4-bit 32-wide types ([`z4`]) and 512-bit F16/BF16 batched
//!   products;
//! - [`x16`]: the interleaved Q8_0/Q4_0 kernels of both sets;
//! - [`amx`]: the `amx` set, `avx512` with AMX tiles for batches of Q8_0
//!   and Q4_0 weights (Linux, CPUs with AMX-INT8).
//!
//! Matrix-vector products (one activation vector) run one row at a time:
//! the rows are contiguous, so the weights are read as a single sequential
//! stream, which the hardware prefetcher follows at full bandwidth. Tiles of
//! several rows are several short streams, which it does not: on this
//! machine 4-row tiles reached only a third of the memory bandwidth on
//! matrices larger than the caches. Batched products (prefill) use tiles of
//! up to 4 rows x 3 vectors (K-quants: a row x 8 vectors, each super-block
//! unpacked once for the 8).
//!
//! Every kernel is reached through a safe entry point ([`run`]) that checks
//! its arguments; the tables are handed out by [`super::available`] /
//! [`super::active`] only when [`avx2_supported`] / [`avx512_supported`]
//! say the CPU has the set's features, so no instruction the CPU lacks is
//! ever executed.

use core::arch::x86_64::__m256i;
use core::sync::atomic::{AtomicU8, Ordering};

use super::acts::Acts;
use super::check_mat;
use super::types::TensorType;

mod amx;
mod avx2;
mod avx512;
mod common;
mod k_quants;
mod legacy;
mod x16;
mod x16k;
mod z4;

pub(super) use amx::{granted_already as amx_granted_already, supported as amx_supported, AMX};
pub(super) use avx2::AVX2;
pub(super) use avx512::AVX512;

/// What distinguishes the two sets inside the shared 256-bit kernels.
///
/// # Safety
/// The functions need the CPU features of the set implementing the trait.
trait Isa {
    /// Largest float tile (rows x vectors) of a batch.
    const FR: usize;
    /// See [`Isa::FR`].
    const FC: usize;
    /// Largest quantized tile (rows x vectors) of a batch.
    const QR: usize;
    /// See [`Isa::QR`].
    const QC: usize;
    /// `k` such that [`Isa::pair_q8`] summed over a block exceeds the true
    /// dot product by `sum(a) << k` (0: no excess).
    const Q8_SHIFT: i32;
    /// What to do to raw Q8_0 weight bytes before [`Isa::pair_q8`].
    unsafe fn prep_q8(x: __m256i) -> __m256i;
    /// The eight `i32` sums of `x1 * a1 + x2 * a2` over groups of four
    /// bytes (Q8_0 weights, after [`Isa::prep_q8`]).
    unsafe fn pair_q8(x1: __m256i, x2: __m256i, a1: __m256i, a2: __m256i) -> __m256i;
    /// The same for unsigned weights of at most 31 (nibbles, five bits).
    unsafe fn pair_q4(x1: __m256i, x2: __m256i, a1: __m256i, a2: __m256i) -> __m256i;
    /// `x` plus 16 in every byte `i` whose bit `i` of `bits` is set.
    unsafe fn add16(x: __m256i, bits: u32) -> __m256i;
    /// Runs `op.run::<R, C>(r0, c0)` for the tile shape `(nr, nc)` (every
    /// shape up to the set's largest).
    unsafe fn dispatch<T: common::TileOp>(op: &mut T, nr: usize, nc: usize, r0: usize, c0: usize);
}

/// Whether this CPU runs the `avx2` set.
pub(super) fn avx2_supported() -> bool {
    #[cfg(feature = "std")]
    {
        std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(feature = "std"))]
    {
        cfg!(all(
            target_feature = "avx2",
            target_feature = "fma",
            target_feature = "f16c"
        ))
    }
}

/// Whether this CPU runs the `avx512` set.
pub(super) fn avx512_supported() -> bool {
    #[cfg(feature = "std")]
    {
        avx2_supported()
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(feature = "std"))]
    {
        avx2_supported()
            && cfg!(all(
                target_feature = "avx512f",
                target_feature = "avx512bw",
                target_feature = "avx512vl",
                target_feature = "avx512vnni"
            ))
    }
}

/// How far ahead, and into which cache, the matrix-vector kernels
/// prefetch the weights they stream: decided once per process by the CPU's
/// vendor, because the two vendors' cores measured opposite ways.
///
/// - Intel (the development machine since 2026-12-05, a KVM Xeon with
///   AVX-512 and AMX, 18-19 GB/s for one thread's reads): into L2 (`T1`),
///   [`AHEAD`] bytes ahead, in every streaming kernel ([`PLAIN_AHEAD`] in
///   the plain 32-wide matrix-vector products). Whole-model decode,
///   tinyllama shape, 1 thread, alternating runs (median step tok/s):
///   interleaved Q4_0 21.6 -> 25.2, Q8_0 13.2 -> 14.9 (2 threads 39.5 ->
///   46, 25.6 -> 27.8); mapped (4 KiB pages) Q4_0 15.7 -> 17.9, Q8_0 10.1
///   -> 12.3, F16 6.7 -> 7.9 (2 threads 11.6 -> 14.2); Q4_K_M 21.7 ->
///   22.6, Q6_K 17.1 -> 17.8. Into L1 (`T0`) was 5-10% slower, and so were
///   distances of 4 KiB or more. The streaming kernels also prefetch
///   [`NEAR`] bytes ahead into L1 ([`prefetch_ahead`]), and these
///   prefetches are pinned where the source puts them ([`pinned_line`]):
///   together, 1 thread, 2026-12-06 (median step tok/s of 3 alternating
///   runs): Q4_0 26.1-26.2 -> 26.5-26.8, Q8_0 14.7-14.8 -> 15.5, Q4_K_M
///   21.6-21.9 -> 24.9-25.1, Q6_K 15.8-15.9 -> 16.9-17.6.
/// - Any other vendor (AMD Zen 4 and Zen 5 were measured): the float tiles
///   prefetch the next tile into L1, the 4-bit products a fixed distance
///   into L1, the plain K-quant and Q8_0 products and the interleaved
///   batches not at all; the interleaved Q8_0/Q4_0 decode
///   [`DECODE_AHEAD`] and interleaved Q5_K `x16k::Q5_AHEAD` bytes ahead
///   into L2 (on Zen 5, `T0` beat `T1` by 7% for F16; on Zen 4 the
///   interleaved batches were faster without software prefetch).
///
/// The same split picks the `avx512` set's F16/BF16 batched products: on
/// Intel each tile's weights are converted to f32 once for a whole pass
/// of vectors (`avx512::f16_conv`: tinyllama F16 prompt at 1 thread 46.0
/// -> 47.9 tok/s, 2 threads 87.0 -> 90.1, `--mmap` 2 threads 83.0 -> 91.5),
/// elsewhere once per tile (measured best on Zen 5).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Prefetch {
    /// Into L1, the distances each kernel documents; none for some.
    L1,
    /// Into L2, [`AHEAD`] bytes ahead (floats: the next tile; the plain
    /// 32-wide matrix-vector products: [`PLAIN_AHEAD`]).
    L2,
}

impl Prefetch {
    /// How many bytes ahead a kernel prefetches: `l1`, its own distance
    /// (0: none), under [`Prefetch::L1`]; [`AHEAD`] under [`Prefetch::L2`].
    pub(super) fn ahead(self, l1: usize) -> usize {
        match self {
            Prefetch::L1 => l1,
            Prefetch::L2 => AHEAD,
        }
    }
}

/// Bytes ahead of its loads that a kernel prefetches into L2 under
/// [`Prefetch::L2`] (re-measured with the prefetches pinned and [`NEAR`]:
/// 2048, 3072 and 5120 were slower, see [`NEAR`]).
pub(super) const AHEAD: usize = 2560;

/// Bytes ahead of its loads that a streaming kernel also prefetches into
/// L1 under [`Prefetch::L2`] ([`prefetch_ahead`]): the lines its
/// [`AHEAD`] prefetches brought into L2 are then in L1 when its loads come.
/// Whole-model decode, tinyllama shape, 1 thread, on the Intel
/// development machine (2026-12-06, medians of 3 alternating runs, tok/s,
/// prefetches pinned as in [`pinned_line`]): without, Q4_0 25.3, Q8_0
/// 14.9, Q4_K_M 23.3, Q6_K 15.4; at 1024 bytes 25.3, 15.2, 24.1, 16.5
/// (768 measured alike, 1536 a little slower); with [`AHEAD`] at 2048,
/// 3072 or 5120 instead of 2560, slower (5120: 23.4, 14.2, 22.9, 15.2).
/// A read-only loop shows the same (`read-ceiling` in `bench/`): 14.8
/// GB/s with the L2 prefetches alone, 17.7 with both.
pub(super) const NEAR: usize = 1024;

/// Bytes ahead of its loads that the interleaved Q8_0/Q4_0 decode
/// (`x16::two_streams`) prefetches into L2 under [`Prefetch::L1`] (AMD),
/// and nothing into L1 ([`prefetch_ahead`] with [`Prefetch::L2`]: [`NEAR`]
/// is not nearer). On the AMD EPYC Zen 4 development machine (2026-12-06,
/// 1 thread, medians of alternating runs): TinyLlama-shaped Q8_0 decode
/// 23.08 -> 27.37 tok/s (5 runs; 768 bytes 27.77), Q4_0 level (47.64 and
/// 47.54); the same 22 layers of products alone (Q8_0) 24.4-30.9 GB/s
/// without prefetch, 29.2-33.3 at 1024 bytes, 30.1-33.2 at 1536, 28.3-32.5
/// at 768, 23.8-27.5 with `prefetcht0` at 1024; at 2560 bytes Q4_0 fell
/// from 29.0-30.2 to 21.7-22.6 GB/s. The batches (prefill) do not
/// prefetch there.
pub(super) const DECODE_AHEAD: usize = 1024;

/// Bytes ahead of its loads that a plain 32-wide matrix-vector product
/// (Q8_0, Q4_0 and their kin, one row at a time: the `--mmap` layout and
/// the library's zero-copy default) prefetches into L2 under
/// [`Prefetch::L2`]: further than [`AHEAD`], because these kernels take
/// longer per byte than the interleaved ones. Measured on the Intel KVM
/// Xeon, whole-model mapped decode, tinyllama shape, alternating runs
/// (2026-12-06): Q8_0 1 thread 11.1-11.3 tok/s at 2560 bytes, 11.6-11.8
/// at 3584, 11.5-11.7 at 4608, 11.1-11.3 at 6144, 10.3-10.4 at 8192;
/// 2 threads 20.7-21.0 -> 21.9-22.1 (2560 -> 3584); Q4_0 1 thread
/// 19.9-20.2 -> 20.8-20.9, 2 threads 38.1-38.9 -> 39.6-41.3. The
/// interleaved kernels measured best at [`AHEAD`] (Q4_0 decode 23.6-26.0
/// tok/s at 2560, 22.7-23.7 at 3584, 22.3-22.6 at 4608). Re-measured with
/// the prefetches pinned and [`NEAR`] (later the same day, 3 alternating
/// runs, mapped, 1 thread): Q4_0 20.0-20.8 tok/s at 2560, 20.5-21.6 at
/// 3584, 21.3-22.2 at 4608, 21.1-22.1 at 5632; Q8_0 11.5-11.8, 11.7-12.5,
/// 12.0-12.4, 11.8-12.2.
pub(super) const PLAIN_AHEAD: usize = 4608;

/// Under [`Prefetch::L2`], the plain 32-wide kernels' matrix-vector
/// products (Q8_0, Q4_0 and their kin, which `--mmap` reads from 4 KiB
/// pages) also touch one line this far ahead of each group, so that the
/// page walk for the next pages starts before the stream needs them:
/// mapped Q4_0 decode 17.3 -> 19.9 tok/s, Q8_0 11.3 -> 11.9 (1 thread);
/// 16 and 32 KiB measured alike. The other kernels did not gain from it
/// (interleaved Q4_0 in huge pages -10%, F16 -5%, K-quants -7%).
pub(super) const PAGE_AHEAD: usize = 8192;

/// The policy in use: 0 before the first call of [`prefetch`], 1 for
/// [`Prefetch::L1`], 2 for [`Prefetch::L2`].
static POLICY: AtomicU8 = AtomicU8::new(0);

/// Makes the kernels use `policy` whatever the CPU (for tests: both give
/// the same bits, by different paths for the F16 batches).
pub(super) fn force_prefetch(policy: Prefetch) {
    POLICY.store(
        match policy {
            Prefetch::L1 => 1,
            Prefetch::L2 => 2,
        },
        Ordering::Relaxed,
    );
}

/// The policy for this CPU (see [`Prefetch`]): cached after the first call.
pub(super) fn prefetch() -> Prefetch {
    match POLICY.load(Ordering::Relaxed) {
        1 => return Prefetch::L1,
        2 => return Prefetch::L2,
        _ => {}
    }
    // Leaf 0: the vendor string "GenuineIntel" in ebx, edx, ecx.
    let id = core::arch::x86_64::__cpuid(0);
    let intel = (id.ebx, id.edx, id.ecx) == (0x756e_6547, 0x4965_6e69, 0x6c65_746e);
    let p = if intel { Prefetch::L2 } else { Prefetch::L1 };
    force_prefetch(p);
    p
}

/// Prefetches the line at `p` into L1 or L2 as `policy` says, with
/// `_mm_prefetch`, whose prefetches the compiler may move: the float
/// tiles' prefetches of the next tile are made so (pinned, see
/// [`pinned_line`], F16 decode was not faster on Intel: 0.89x and 0.98x
/// at 1 thread in two builds).
#[inline(always)]
pub(super) fn prefetch_line(p: *const u8, policy: Prefetch) {
    use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0, _MM_HINT_T1};
    // SAFETY: a prefetch is a hint: it never faults and changes no memory,
    // whatever the address (callers compute it with `wrapping_add`); SSE
    // (every x86-64).
    unsafe {
        match policy {
            Prefetch::L1 => _mm_prefetch::<_MM_HINT_T0>(p as *const i8),
            Prefetch::L2 => _mm_prefetch::<_MM_HINT_T1>(p as *const i8),
        }
    }
}

/// Prefetches the line at `p` into L1 (`l1`, `prefetcht0`) or L2
/// (`prefetcht1`), written as inline assembly so that the prefetch stays
/// where the source puts it: the compiler does not move an `asm!` block,
/// but moved `_mm_prefetch`'s prefetches (in the interleaved Q4_K kernel,
/// to the end of a super-block's work, after its loads). Whole-model
/// decode, tinyllama shape, 1 thread, alternating runs on the Intel
/// development machine (2026-12-06, median step tok/s), every L2
/// prefetch pinned (a first build; now those of [`prefetch_ahead`]):
/// Q4_K_M 20.6-20.9 -> 22.7-23.5, Q4_0 23.5-24.6 -> 25.0-25.4, Q8_0
/// 13.8-14.2 -> 14.3-14.8, mapped Q8_0 11.7-12.1 -> 12.1-12.4; Q6_K and
/// Q5_K_M within noise.
#[inline(always)]
fn pinned_line(p: *const u8, l1: bool) {
    use core::arch::asm;
    // SAFETY: a prefetch is a hint: it never faults and changes no memory
    // and no flags, whatever the address (callers compute it with
    // `wrapping_add`), and uses no stack; SSE (every x86-64).
    unsafe {
        if l1 {
            asm!(
                "prefetcht0 byte ptr [{0}]",
                in(reg) p,
                options(nostack, preserves_flags, readonly)
            );
        } else {
            asm!(
                "prefetcht1 byte ptr [{0}]",
                in(reg) p,
                options(nostack, preserves_flags, readonly)
            );
        }
    }
}

/// Prefetches the `len` bytes at `p` (64-byte steps) as `policy` says.
#[inline(always)]
pub(super) fn prefetch_bytes(p: *const u8, len: usize, policy: Prefetch) {
    let mut off = 0;
    while off < len {
        prefetch_line(p.wrapping_add(off), policy);
        off += 64;
    }
}

/// The prefetches of a quantized kernel about to read the `len` bytes at
/// `p` of a stream it reads in order (none if `ahead` is 0): under
/// [`Prefetch::L2`] those `ahead` bytes further on into L2 and, when
/// [`NEAR`] is nearer than `ahead`, those `NEAR` bytes further on into L1,
/// each where the kernel's source puts it ([`pinned_line`]); under
/// [`Prefetch::L1`] those `ahead` bytes further on into L1
/// ([`prefetch_bytes`]).
#[inline(always)]
pub(super) fn prefetch_ahead(p: *const u8, len: usize, ahead: usize, policy: Prefetch) {
    if ahead == 0 {
        return;
    }
    if policy == Prefetch::L1 {
        prefetch_bytes(p.wrapping_add(ahead), len, policy);
        return;
    }
    let near = NEAR < ahead;
    let mut off = 0;
    while off < len {
        pinned_line(p.wrapping_add(ahead + off), false);
        if near {
            pinned_line(p.wrapping_add(NEAR + off), true);
        }
        off += 64;
    }
}

/// A kernel implementation: the `MatFn` contract with `rows` already
/// computed by `check_mat`; needs its set's CPU features.
type Imp = unsafe fn(w: &[u8], a: &Acts, out: &mut [f32], rows: usize);

/// The safe entry point of a kernel for weights of type `ty`: checks the
/// arguments, then runs `imp`.
#[inline(always)]
fn run(ty: TensorType, supported: fn() -> bool, imp: Imp, w: &[u8], a: &Acts, out: &mut [f32]) {
    let rows = check_mat(w, a, out, ty);
    debug_assert!(supported());
    // SAFETY: the table holding the calling kernel is handed out only on
    // CPUs where `supported()` holds (see `kernels::active`), which is what
    // `imp` needs; `check_mat` checked every slice length it reads.
    unsafe { imp(w, a, out, rows) }
}

/// A Q8 activation quantizer's implementation (lengths checked); needs its
/// set's CPU features.
type QuantizeImp = unsafe fn(x: &[f32], d: &mut [f32], sum: &mut [i32], q: &mut [i8]);

/// The safe entry point of a Q8 activation quantizer: checks the lengths,
/// then runs `imp`.
#[inline(always)]
fn run_quantize(
    supported: fn() -> bool,
    imp: QuantizeImp,
    x: &[f32],
    d: &mut [f32],
    sum: &mut [i32],
    q: &mut [i8],
) {
    use super::types::QK;
    assert_eq!(x.len() % QK, 0, "quantize: length is not a multiple of 32");
    let nb = x.len() / QK;
    assert!(
        d.len() >= nb && sum.len() >= nb && q.len() >= x.len(),
        "quantize: scratch too short"
    );
    debug_assert!(supported());
    // SAFETY: as in `run`; the lengths are checked above.
    unsafe { imp(x, d, sum, q) }
}

/// An implementation of attention scores against a Q8_0 key cache (lengths
/// checked); needs its set's CPU features.
type KvScoresImp = unsafe fn(&[u8], usize, &[f32], &[i32], &[i8], &mut [f32]);

/// The safe entry point of the Q8_0 key cache scores: checks the lengths,
/// then runs `imp`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn run_kv_scores(
    supported: fn() -> bool,
    imp: KvScoresImp,
    keys: &[u8],
    nb: usize,
    qd: &[f32],
    qsum: &[i32],
    qs: &[i8],
    out: &mut [f32],
) {
    assert!(
        out.len()
            .checked_mul(nb * 34)
            .is_some_and(|n| keys.len() >= n)
            && qd.len() >= nb
            && qsum.len() >= nb
            && qs.len() >= nb * 32,
        "kv_scores: arguments too short"
    );
    debug_assert!(supported());
    // SAFETY: as in `run`; the lengths are checked above.
    unsafe { imp(keys, nb, qd, qsum, qs, out) }
}

/// A Q8_K activation quantizer's implementation (lengths checked); needs
/// its set's CPU features.
type QuantizeKImp = unsafe fn(x: &[f32], d: &mut [f32], bsums: &mut [i16], q: &mut [i8]);

/// The safe entry point of a Q8_K activation quantizer: checks the
/// lengths (as the reference does), then runs `imp`.
#[inline(always)]
fn run_quantize_k(
    supported: fn() -> bool,
    imp: QuantizeKImp,
    x: &[f32],
    d: &mut [f32],
    bsums: &mut [i16],
    q: &mut [i8],
) {
    super::types::k_quants::check_q8k_lengths(x, d, bsums, q);
    debug_assert!(supported());
    // SAFETY: as in `run`; the lengths are checked above.
    unsafe { imp(x, d, bsums, q) }
}
