//! The `amx` set: the `avx512` set with batches of Q8_0 and Q4_0 weights
//! (plain and interleaved) multiplied by AMX's int8 tiles, on CPUs with
//! AMX-TILE and AMX-INT8 (Intel Xeon since Sapphire Rapids) under Linux.
//!
//! One tile product (`tdpbsud`, signed activations by unsigned weights)
//! multiplies up to 16 activation vectors' block (16 x 32 bytes, read where
//! the quantizer left them) by one interleaved unit's values (the 16 rows
//! of a band, stored 4 bytes of a row at a time: exactly the layout AMX
//! takes for its second operand, [`crate::kernels::interleave`]), giving
//! the 16 x 16 exact `i32` dot products that `vpdpbusd` builds in eight
//! steps per vector. Q8_0's values are stored plus 128, so `128 * sum(a)`
//! is taken off, as the `avx512` set does; Q4_0's nibbles are unpacked to
//! signed bytes a few units ahead (`tdpbssd`). The scaling is then the
//! `avx512` set's, lane by lane (block `k`'s `(d_w * d_a) * dot` into
//! partial sum `k % 8`), so the numbers are the same bits as every other
//! set's. Plain matrices go through [`x16::mat_plain`], which interleaves
//! them a segment at a time on the stack.
//!
//! Measured on the development machine (a KVM Xeon, family 6 model 167,
//! 1 thread; `kernel-table --matmul --quick`, 128 vectors x 2048 x 2048):
//! interleaved Q8_0 141-144 -> 190 GMAC/s, Q4_0 135-145 -> 210, plain
//! Q8_0 105-110 -> 130, Q4_0 113-116 -> 158. A tile's product costs about
//! 13 ns, the scaling of its 256 sums in vector registers about 32 ns,
//! and the two do not overlap; a tile load of bytes stored just before
//! costs 25 ns more (which is why Q4_0's nibbles are unpacked ahead).
//! Matrix-vector products (decode) stay `avx512`'s: they are bound by
//! memory bandwidth.
//!
//! Linux hands AMX's 8 KiB of tile state to a process only on request
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM)`); [`usable`] makes it once, the first
//! time a set is chosen, and the set is offered only if the kernel granted
//! it. Each kernel call loads its tile configuration and releases the tiles
//! before it returns. `LLAMETTE_KERNELS=avx512` runs without AMX.

use core::arch::asm;
use core::arch::x86_64::*;
use core::sync::atomic::{AtomicU8, Ordering};

use super::{avx512, avx512_supported, prefetch_bytes, run, x16, Prefetch};
use crate::kernels::acts::Acts;
use crate::kernels::interleave::BAND;
use crate::kernels::types::k_quants::scale_min_k4;
use crate::kernels::types::{TensorType, QK, QK_K};
use crate::kernels::{Kernels, MatFn};

/// The AMX kernel set: [`avx512::AVX512`]'s functions, with AMX tiles for
/// batches of Q8_0 and Q4_0 weights.
pub(in crate::kernels) static AMX: Kernels = Kernels {
    name: "amx",
    kernel_for,
    ..avx512::TABLE
};

/// Whether this CPU and OS run the `amx` set.
pub(in crate::kernels) fn supported() -> bool {
    avx512_supported() && usable()
}

/// This set's kernel for weights of type `ty`: the `avx512` set's, but for
/// the four types whose batches go through the tiles.
fn kernel_for(ty: TensorType) -> Option<MatFn> {
    use TensorType::*;
    Some(match ty {
        Q8_0 => |w, a, o| run(Q8_0, supported, mat_q8_0, w, a, o),
        Q4_0 => |w, a, o| run(Q4_0, supported, mat_q4_0, w, a, o),
        Q8_0x16 => |w, a, o| run(Q8_0x16, supported, mat_q8_0x16, w, a, o),
        Q4_0x16 => |w, a, o| run(Q4_0x16, supported, mat_q4_0x16, w, a, o),
        Q4_K => |w, a, o| run(Q4_K, supported, mat_q4_k, w, a, o),
        _ => return (avx512::TABLE.kernel_for)(ty),
    })
}

/// Q8_0 weights: a batch of whole bands through the tiles
/// ([`x16::mat_plain`]), anything else as the `avx512` set.
///
/// # Safety
/// The set's CPU features (and AMX granted: [`usable`]); checked
/// arguments (see [`run`]).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn mat_q8_0(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe {
        if a.n == 1 || x16::mat_plain::<false, true>(w, a, out, rows).is_none() {
            avx512::mat_q8_0(w, a, out, rows)
        }
    }
}

/// Q4_0 weights: as [`mat_q8_0`].
///
/// # Safety
/// As [`mat_q8_0`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn mat_q4_0(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe {
        if a.n == 1 || x16::mat_plain::<true, true>(w, a, out, rows).is_none() {
            avx512::mat_q4_0(w, a, out, rows)
        }
    }
}

/// Interleaved Q8_0 weights: a batch through the tiles ([`x16::mat_amx`]),
/// one vector as the `avx512` set.
///
/// # Safety
/// As [`mat_q8_0`]; `check_mat` also checked that the rows are whole bands.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn mat_q8_0x16(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe {
        if a.n == 1 {
            x16::mat::<false>(w, a, out, rows)
        } else {
            x16::mat_amx::<false>(w, a, out, rows)
        }
    }
}

/// Interleaved Q4_0 weights: as [`mat_q8_0x16`].
///
/// # Safety
/// As [`mat_q8_0x16`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn mat_q4_0x16(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe {
        if a.n == 1 {
            x16::mat::<true>(w, a, out, rows)
        } else {
            x16::mat_amx::<true>(w, a, out, rows)
        }
    }
}

/// Q4_K weights: a batch of whole 16-row bands through the tiles
/// ([`q4_k_bands`]), anything else as the `avx512` set.
///
/// # Safety
/// As [`mat_q8_0`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn mat_q4_k(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe {
        if a.n == 1 || !rows.is_multiple_of(BAND) {
            avx512::mat_q4_k(w, a, out, rows)
        } else {
            q4_k_bands(w, a, out, rows)
        }
    }
}

/// Bytes of a Q4_K super-block.
const Q4K_BYTES: usize = 144;

/// One super-block of a band of 16 Q4_K rows, ready for the tiles: each
/// sub-block's values in AMX's layout (row `g` of sub-block `j`: values
/// `4g..4g+4` of each of the 16 rows), and the rows' scales, minimums and
/// super-block scales, one lane per row.
#[repr(C, align(64))]
struct SuperBlock {
    values: [[u8; 512]; 8],
    sc: [[i32; 16]; 8],
    m: [[i32; 16]; 8],
    d: [f32; 16],
    dmin: [f32; 16],
}

/// Prepares super-block `s` of the 16 rows at `band` (`rb` bytes apart)
/// into `p`.
///
/// # Safety
/// The 16 rows' super-block `s` is readable; AVX-512 F and BW.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn prepare_q4_k(band: *const u8, rb: usize, s: usize, p: &mut SuperBlock) {
    // SAFETY: every read is inside one of the 16 rows' super-block `s`
    // (144 bytes at band + r rb + 144 s); every write inside `p`.
    unsafe {
        let blk = band.add(s * Q4K_BYTES);
        for r in 0..BAND {
            let b = blk.add(r * rb);
            let half =
                |o: usize| half::f16::from_bits(u16::from_le_bytes([*b.add(o), *b.add(o + 1)]));
            p.d[r] = half(0).to_f32();
            p.dmin[r] = half(2).to_f32();
            let scales: [u8; 12] = core::ptr::read_unaligned(b.add(4) as *const [u8; 12]);
            for j in 0..8 {
                let (sc, m) = scale_min_k4(j, &scales);
                p.sc[j][r] = i32::from(sc);
                p.m[j][r] = i32::from(m);
            }
        }
        // Bytes 32t..32t+32 of the nibbles hold sub-block 2t (low) and
        // 2t + 1 (high), value l in byte 32t + l.
        let mask = _mm512_set1_epi8(0x0f);
        for t in 0..4 {
            for h in 0..2 {
                let chunks = x16::transpose(blk.add(16 + 32 * t + 16 * h), rb);
                for (c, v) in chunks.into_iter().enumerate() {
                    let g = 4 * h + c;
                    let lo = _mm512_and_si512(v, mask);
                    let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), mask);
                    _mm512_store_si512(p.values[2 * t][64 * g..].as_mut_ptr() as *mut _, lo);
                    _mm512_store_si512(p.values[2 * t + 1][64 * g..].as_mut_ptr() as *mut _, hi);
                }
            }
        }
    }
}

/// Q4_K rows (a multiple of 16) times a batch (`a.n >= 1`), band by band:
/// each super-block of a band is prepared once ([`prepare_q4_k`], one
/// super-block ahead of its use, for the reason of [`LEAD`]) for every
/// vector; its eight sub-blocks' dot products come from eight tile
/// products per 16 vectors, and the reference's integers and floats follow
/// lane by lane (row `r` in lane `r`): `isum = sum_j sc_j dot_j` and `msum
/// = sum_j m_j bsum_j` exact, then `acc = acc + (d * d_a) * isum`, `acc =
/// acc - (dmin * d_a) * msum`, the running sums kept in `out`.
///
/// # Safety
/// As [`mat_q8_0`], and `rows` is a multiple of 16.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q4_k_bands(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    let nsb = a.cols / QK_K;
    let rb = nsb * Q4K_BYTES;
    let cols = a.cols;
    let mut tiles = Tiles::new();
    let zero_block = || SuperBlock {
        values: [[0; 512]; 8],
        sc: [[0; 16]; 8],
        m: [[0; 16]; 8],
        d: [0.0; 16],
        dmin: [0.0; 16],
    };
    let mut prepared = [zero_block(), zero_block()];
    let mut dots = Aligned([[[0i32; 16]; M]; 8]);
    // SAFETY: (for the whole body) band b's rows (16 rows of rb bytes at
    // w + 16 b rb) and every vector's Q8_K values, scales and sums are
    // inside the checked arguments; outputs out[v * rows + 16 b + r] too;
    // the tile products read m rows of 32 activation bytes (`cols` apart)
    // and a prepared sub-block (512 bytes), and write m rows of `dots[j]`.
    // AMX is usable and the CPU has the features (the caller's contract).
    unsafe {
        for b in 0..rows / BAND {
            let band = w.as_ptr().add(b * BAND * rb);
            let out_band = out.as_mut_ptr().add(b * BAND);
            for v in 0..a.n {
                _mm512_storeu_ps(out_band.add(v * rows), _mm512_setzero_ps());
            }
            if nsb > 0 {
                prepare_q4_k(band, rb, 0, &mut prepared[0]);
            }
            for s in 0..nsb {
                if s + 1 < nsb {
                    prepare_q4_k(band, rb, s + 1, &mut prepared[(s + 1) % 2]);
                }
                let p = &prepared[s % 2];
                let d = _mm512_loadu_ps(p.d.as_ptr());
                let dmin = _mm512_loadu_ps(p.dmin.as_ptr());
                let mut c0 = 0;
                while c0 < a.n {
                    let m = (a.n - c0).min(M);
                    for (j, dots) in dots.0.iter_mut().enumerate() {
                        let q = a.k.q.as_ptr().add(c0 * cols + s * QK_K + 32 * j);
                        let w = p.values[j].as_ptr();
                        tiles.product::<false>(j % 2, m, q, cols, w, dots.as_mut_ptr());
                    }
                    for v in 0..m {
                        let vv = c0 + v;
                        let mut isum = _mm512_setzero_si512();
                        let mut msum = _mm512_setzero_si512();
                        let bsums = a.k.bsums.as_ptr().add(vv * (cols / 16) + s * 16);
                        for j in 0..8 {
                            let dot = _mm512_load_si512(dots.0[j][v].as_ptr() as *const _);
                            let sc = _mm512_load_si512(p.sc[j].as_ptr() as *const _);
                            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(dot, sc));
                            let bsum =
                                i32::from(*bsums.add(2 * j)) + i32::from(*bsums.add(2 * j + 1));
                            let mins = _mm512_load_si512(p.m[j].as_ptr() as *const _);
                            let t = _mm512_mullo_epi32(mins, _mm512_set1_epi32(bsum));
                            msum = _mm512_add_epi32(msum, t);
                        }
                        let da = _mm512_set1_ps(*a.k.d.as_ptr().add(vv * nsb + s));
                        let o = out_band.add(vv * rows);
                        let mut acc = _mm512_loadu_ps(o);
                        let x = _mm512_mul_ps(_mm512_mul_ps(d, da), _mm512_cvtepi32_ps(isum));
                        acc = _mm512_add_ps(acc, x);
                        let y = _mm512_mul_ps(_mm512_mul_ps(dmin, da), _mm512_cvtepi32_ps(msum));
                        acc = _mm512_sub_ps(acc, y);
                        _mm512_storeu_ps(o, acc);
                    }
                    c0 += m;
                }
            }
        }
    }
}

/// Whether AMX may be used: 0 not yet asked, 1 granted, 2 not available
/// (CPU, OS or kernel).
static STATE: AtomicU8 = AtomicU8::new(0);

/// Whether this process may run AMX int8 instructions: the CPU has
/// AMX-TILE and AMX-INT8 (CPUID leaf 7), and Linux granted the tile state
/// (asked once, the first time). Always `false` elsewhere and under Miri.
pub(super) fn usable() -> bool {
    match STATE.load(Ordering::Relaxed) {
        1 => true,
        0 => {
            let ok = request();
            STATE.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
            ok
        }
        _ => false,
    }
}

/// Asks Linux for the AMX tile state if the CPU has AMX-TILE and
/// AMX-INT8; whether it was granted.
fn request() -> bool {
    #[cfg(all(target_os = "linux", not(miri)))]
    {
        // CPUID leaf 7, sub-leaf 0: EDX bit 24 AMX-TILE, bit 25 AMX-INT8.
        let leaf7 = __cpuid_count(7, 0);
        if leaf7.edx & (3 << 24) != 3 << 24 {
            return false;
        }
        /// `arch_prctl`'s system call number on x86-64.
        const SYS_ARCH_PRCTL: usize = 158;
        /// `ARCH_REQ_XCOMP_PERM`: ask for an XSAVE feature's state.
        const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
        /// `XFEATURE_XTILEDATA`: the tiles' data.
        const XFEATURE_XTILEDATA: usize = 18;
        let ret: isize;
        // SAFETY: a Linux system call that changes only this process's
        // permission to use the AMX state (it reads and writes no memory
        // of ours); the registers it clobbers are declared.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") SYS_ARCH_PRCTL as isize => ret,
                in("rdi") ARCH_REQ_XCOMP_PERM,
                in("rsi") XFEATURE_XTILEDATA,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret == 0
    }
    #[cfg(not(all(target_os = "linux", not(miri))))]
    {
        false
    }
}

/// Activation vectors per tile (the tiles' row count).
pub(super) const M: usize = 16;

/// A 64-byte aligned buffer (what `ldtilecfg` takes, and the best for tile
/// loads and stores).
#[repr(C, align(64))]
struct Aligned<T>(T);

/// The tiles of one kernel call: configured for `m` vectors by the first
/// [`Tiles::units`] (and again when `m` changes), released on drop.
///
/// Tile registers: `tmm0` the dot products (`m` x 16 `i32`), `tmm1` the
/// activations (`m` x 32 bytes), `tmm2` the weights (8 x 64 bytes: the 32
/// values of 16 rows, 4 bytes of a row at a time).
pub(super) struct Tiles {
    m: usize,
}

impl Tiles {
    /// Tiles not configured yet (nothing is executed).
    pub(super) fn new() -> Tiles {
        Tiles { m: 0 }
    }

    /// Loads the configuration for tiles of `m` vectors (1..=16).
    ///
    /// # Safety
    /// AMX is usable ([`usable`]).
    #[inline]
    unsafe fn configure(&mut self, m: usize) {
        debug_assert!((1..=M).contains(&m));
        let mut cfg = Aligned([0u8; 64]);
        cfg.0[0] = 1; // palette 1
        let mut tile = |t: usize, rows: usize, bytes: u16| {
            cfg.0[16 + 2 * t..18 + 2 * t].copy_from_slice(&bytes.to_le_bytes());
            cfg.0[48 + t] = rows as u8;
        };
        // Two sets (tmm0-2 and tmm3-5), for two units in flight.
        for set in [0, 3] {
            tile(set, m, 64);
            tile(set + 1, m, 32);
            tile(set + 2, 8, 64);
        }
        // SAFETY: AMX (the caller's promise); `cfg` is a valid palette-1
        // configuration, 64 bytes, aligned.
        unsafe { asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly)) };
        self.m = m;
    }

    /// One tile product: `m` activation rows of 32 bytes at `q` (`stride`
    /// apart) times the 512 bytes of weights at `w` (AMX's layout; signed
    /// bytes if `SIGNED`, else unsigned), the `m` x 16 `i32` sums stored at
    /// `dots` (64 bytes a row); by tile set `set` (0: tmm0-2, 1: tmm3-5),
    /// so that two products can be in flight. Configures the tiles for `m`
    /// if they are not.
    ///
    /// # Safety
    /// AMX is usable; the bytes read and written are inside their
    /// buffers; `1 <= m <= 16`.
    #[inline(always)]
    unsafe fn product<const SIGNED: bool>(
        &mut self,
        set: usize,
        m: usize,
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
            if self.m != m {
                self.configure(m);
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
    /// AMX is usable ([`usable`]) and the CPU has AVX-512 F, BW, VL; the
    /// units (plain rows' blocks interleaved, [`BAND`] per unit) and the
    /// vectors' blocks are inside the checked arguments or a buffer
    /// holding them; `1 <= m <= 16`; `sums` has `m` writable entries.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn units<const Q4: bool>(
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
        let ub = BAND * if Q4 { 18 } else { 34 };
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
                if ahead != 0 {
                    prefetch_bytes(unit.wrapping_add(ahead), ub, Prefetch::L2);
                }
                let q = a.q.as_ptr().add((c0 * nb + k0 + i) * QK);
                if Q4 {
                    let w = ring.add(512 * (i % RING));
                    self.product::<true>(i % 2, m, q, stride_a, w, dots);
                } else {
                    self.product::<false>(i % 2, m, q, stride_a, unit.add(32), dots);
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

/// Slots of unpacked Q4_0 units ([`Tiles::units`]).
const RING: usize = 8;
/// How many units ahead of its tile product a Q4_0 unit is unpacked: a
/// tile load of bytes just stored waits for the stores to reach the cache
/// (38 ns instead of 13 for a unit's product, measured here), so the
/// unpacked bytes are written several units before they are loaded.
const LEAD: usize = 4;

impl Drop for Tiles {
    fn drop(&mut self) {
        if self.m != 0 {
            // SAFETY: the tiles were configured, so AMX is usable;
            // `tilerelease` only returns the tile state to its initial
            // (unused) state.
            unsafe { asm!("tilerelease", options(nostack, nomem)) };
        }
    }
}
