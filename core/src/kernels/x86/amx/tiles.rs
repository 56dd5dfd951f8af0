//! AMX tiles for the `amx` set: their configuration, one tile product,
//! and the Q8_0/Q4_0 units of a band ([`Tiles::units`]).

use core::arch::asm;
use core::arch::x86_64::*;

use super::super::{prefetch_ahead, Prefetch};
use crate::kernels::acts::Acts;
use crate::kernels::interleave::{block_bytes, BAND};
use crate::kernels::types::QK;

/// Activation vectors per tile (the tiles' row count).
pub(in crate::kernels::x86) const M: usize = 16;

/// A 64-byte aligned buffer (what `ldtilecfg` takes, and the best for tile
/// loads and stores).
#[repr(C, align(64))]
pub(super) struct Aligned<T>(pub(super) T);

/// The tiles of one kernel call: configured for `m` vectors and sums of
/// `k` bytes by the first [`Tiles::product`] (and again when either
/// changes), released on drop.
///
/// Two sets of three tile registers, so that two products can be in
/// flight: `tmm0`/`tmm3` the dot products (`m` x 16 `i32`), `tmm1`/`tmm4`
/// the activations (`m` x `k` bytes), `tmm2`/`tmm5` the weights (`k / 4`
/// x 64 bytes: `k` values of 16 rows, 4 bytes of a row at a time).
pub(in crate::kernels::x86) struct Tiles {
    m: usize,
    k: usize,
}

impl Tiles {
    /// Tiles not configured yet (nothing is executed).
    pub(in crate::kernels::x86) fn new() -> Tiles {
        Tiles { m: 0, k: 0 }
    }

    /// Loads the configuration for tiles of `m` vectors (1..=16) and sums
    /// of `k` bytes (16 or 32).
    ///
    /// # Safety
    /// AMX is granted ([`super::granted`]).
    #[inline]
    unsafe fn configure(&mut self, m: usize, k: usize) {
        debug_assert!((1..=M).contains(&m) && (k == 16 || k == 32));
        let mut cfg = Aligned([0u8; 64]);
        cfg.0[0] = 1; // palette 1
        let mut tile = |t: usize, rows: usize, bytes: u16| {
            cfg.0[16 + 2 * t..18 + 2 * t].copy_from_slice(&bytes.to_le_bytes());
            cfg.0[48 + t] = rows as u8;
        };
        // Two sets (tmm0-2 and tmm3-5), for two units in flight.
        for set in [0, 3] {
            tile(set, m, 64);
            tile(set + 1, m, k as u16);
            tile(set + 2, k / 4, 64);
        }
        // SAFETY: AMX (the caller's promise); `cfg` is a valid palette-1
        // configuration, 64 bytes, aligned.
        unsafe { asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly)) };
        (self.m, self.k) = (m, k);
    }

    /// One tile product: `m` activation rows of `k` bytes at `q` (`stride`
    /// apart) times the `16 k` bytes of weights at `w` (AMX's layout; signed
    /// bytes if `SIGNED`, else unsigned), the `m` x 16 `i32` sums stored at
    /// `dots` (64 bytes a row); by tile set `set` (0: tmm0-2, 1: tmm3-5),
    /// so that two products can be in flight. Configures the tiles for `m`
    /// and `k` if they are not.
    ///
    /// # Safety
    /// AMX is granted; the bytes read and written are inside their
    /// buffers; `1 <= m <= 16`, `k` is 16 or 32.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn product<const SIGNED: bool>(
        &mut self,
        set: usize,
        m: usize,
        k: usize,
        q: *const i8,
        stride: usize,
        w: *const u8,
        dots: *mut [i32; 16],
    ) {
        macro_rules! product {
            ($op:literal, $c:literal, $a:literal, $b:literal) => {
                asm!(
                    concat!("tileloadd ", $a, ", [{a} + {sa}*1]"),
                    concat!("tileloadd ", $b, ", [{b} + {sb}*1]"),
                    concat!("tilezero ", $c),
                    concat!($op, " ", $c, ", ", $a, ", ", $b),
                    concat!("tilestored [{c} + {sc}*1], ", $c),
                    a = in(reg) q,
                    sa = in(reg) stride,
                    b = in(reg) w,
                    sb = in(reg) 64usize,
                    c = in(reg) dots,
                    sc = in(reg) 64usize,
                    options(nostack),
                )
            };
        }
        // SAFETY: the caller's contract.
        unsafe {
            if (self.m, self.k) != (m, k) {
                self.configure(m, k);
            }
            match (SIGNED, set) {
                (true, 0) => product!("tdpbssd", "tmm0", "tmm1", "tmm2"),
                (true, _) => product!("tdpbssd", "tmm3", "tmm4", "tmm5"),
                (false, 0) => product!("tdpbsud", "tmm0", "tmm1", "tmm2"),
                (false, _) => product!("tdpbsud", "tmm3", "tmm4", "tmm5"),
            }
        }
    }

    /// Units `k0..k0 + n` of a band (unit `k0` at `units`) times vectors
    /// `c0..c0 + m` of `a` (rows of `nb` blocks), added to the partial sums
    /// `sums` (`m` entries, 16 rows per inner array): block `k`'s scaled
    /// dot products to sum `k % 8`, exactly as `x16`'s `units` adds them.
    /// Each unit's bytes `ahead` bytes further on are prefetched into L2
    /// (0: none).
    ///
    /// # Safety
    /// AMX is granted ([`super::granted`]) and the CPU has AVX-512 F, BW, VL; the
    /// units (interleaved, [`crate::kernels::interleave`]) and the
    /// vectors' blocks are inside the checked arguments; `1 <= m <= 16`;
    /// `sums` has `m` writable entries. (Its one caller, `x16::mat_amx`,
    /// passes a whole band, `k0` 0 and `n` its blocks; written without
    /// the two, the kernel measured about 2% slower, so they stay.)
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[allow(clippy::too_many_arguments)]
    pub(in crate::kernels::x86) unsafe fn units<const Q4: bool>(
        &mut self,
        units: *const u8,
        k0: usize,
        n: usize,
        nb: usize,
        a: &Acts,
        c0: usize,
        m: usize,
        sums: *mut [[f32; 16]; 8],
        ahead: usize,
    ) {
        let ub = BAND * block_bytes(Q4);
        let stride_a = nb * QK;
        // Q8_0's values are stored plus 128 and multiplied as unsigned
        // bytes (`tdpbsud`): the excess `128 * sum(a)` is taken off.
        let offset = if Q4 { 0 } else { -128 };
        let mut dots = Aligned([[[0i32; 16]; M]; 2]);
        let mut ring = Aligned([[0u8; 512]; RING]);
        let ring = ring.0.as_mut_ptr() as *mut u8;
        // Q4_0: unit i's nibbles as signed bytes in AMX's layout, into
        // ring slot i % RING: chunk c's low nibbles (elements 4c..4c+4 of
        // each row) as row c, its high nibbles (16+4c..) as row 4 + c,
        // each minus 8.
        let unpack = |i: usize| {
            // SAFETY: unit i is readable (the caller's contract); the
            // stores stay inside ring slot i % RING (512 bytes, aligned).
            unsafe {
                let unit = units.add(i * ub);
                let slot = ring.add(512 * (i % RING));
                let mask = _mm512_set1_epi8(0x0f);
                let eight = _mm512_set1_epi8(8);
                for c in 0..4 {
                    let v = _mm512_loadu_si512(unit.add(32 + 64 * c) as *const _);
                    let lo = _mm512_and_si512(v, mask);
                    let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), mask);
                    _mm512_store_si512(slot.add(64 * c) as *mut _, _mm512_sub_epi8(lo, eight));
                    let hi = _mm512_sub_epi8(hi, eight);
                    _mm512_store_si512(slot.add(64 * (4 + c)) as *mut _, hi);
                }
            }
        };
        // Unit i's m x 16 dot products into `dots[i % 2]`, by the tile set
        // i % 2 (tmm0-2 or tmm3-5), issued one unit ahead of the scaling.
        let mut issue = |i: usize, dots: *mut [i32; 16]| {
            // SAFETY: the caller's contract: unit i and block k0 + i of
            // vectors c0..c0 + m (32 bytes each, `stride_a` apart) are
            // readable; the tile loads read exactly those bytes (m rows of
            // 32) and 512 bytes of the unit or of its ring slot; the tile
            // store writes m rows of 64 bytes into `dots`.
            unsafe {
                let unit = units.add(i * ub);
                prefetch_ahead(unit, ub, ahead, Prefetch::L2);
                let q = a.q.as_ptr().add((c0 * nb + k0 + i) * QK);
                if Q4 {
                    let w = ring.add(512 * (i % RING));
                    self.product::<true>(i % 2, m, QK, q, stride_a, w, dots);
                } else {
                    self.product::<false>(i % 2, m, QK, q, stride_a, unit.add(32), dots);
                }
            }
        };
        // SAFETY: (for the whole body) the caller's contract: unit i's
        // scales, and block k0 + i's scale and sum of vectors c0..c0 + m,
        // are readable; `sums` has m entries; `dots[i % 2]` holds the m
        // rows `issue` stored.
        unsafe {
            if Q4 {
                for i in 0..n.min(LEAD) {
                    unpack(i);
                }
            }
            if n > 0 {
                issue(0, dots.0[0].as_mut_ptr());
            }
            for i in 0..n {
                if Q4 && i + LEAD < n {
                    unpack(i + LEAD);
                }
                if i + 1 < n {
                    issue(i + 1, dots.0[(i + 1) % 2].as_mut_ptr());
                }
                let unit = units.add(i * ub);
                let dw = _mm512_cvtph_ps(_mm256_loadu_si256(unit as *const __m256i));
                let u = (k0 + i) % 8;
                let dots = &dots.0[i % 2];
                for (j, row) in dots[..m].iter().enumerate() {
                    let blk = (c0 + j) * nb + k0 + i;
                    let raw = _mm512_load_si512(row.as_ptr() as *const _);
                    let raw = if Q4 {
                        raw
                    } else {
                        _mm512_add_epi32(raw, _mm512_set1_epi32(offset * *a.sum.as_ptr().add(blk)))
                    };
                    let dot = _mm512_cvtepi32_ps(raw);
                    let s = _mm512_mul_ps(dw, _mm512_set1_ps(*a.d.as_ptr().add(blk)));
                    let p = (*sums.add(j))[u].as_mut_ptr();
                    let acc = _mm512_loadu_ps(p);
                    _mm512_storeu_ps(p, _mm512_add_ps(acc, _mm512_mul_ps(s, dot)));
                }
            }
        }
    }
}

/// Slots of unpacked Q4_0 blocks ([`Tiles::units`], [`super::plain`]).
pub(super) const RING: usize = 8;
/// How many units ahead of its tile product a Q4_0 unit is unpacked: a
/// tile load of bytes just stored waits for the stores to reach the cache
/// (38 ns instead of 13 for a unit's product, measured here), so the
/// unpacked bytes are written several units before they are loaded.
pub(super) const LEAD: usize = 4;

impl Drop for Tiles {
    fn drop(&mut self) {
        if self.m != 0 {
            // SAFETY: the tiles were configured, so AMX is granted;
            // `tilerelease` only returns the tile state to its initial
            // (unused) state.
            unsafe { asm!("tilerelease", options(nostack, nomem)) };
        }
    }
}
