//! The `amx` set: the `avx512` set with batches of Q8_0 and Q4_0 weights
//! (plain and interleaved) and of Q4_K, Q5_K and Q6_K weights
//! ([`k_quants`]) multiplied by AMX's int8 tiles, on CPUs with AMX-TILE
//! and AMX-INT8 (Intel Xeon since Sapphire Rapids) under Linux.
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
//! set's. Plain matrices go through [`plain`]: the tiles read the rows
//! where they lie and the batch's Q8 values from a copy transposed once
//! per quantization ([`Acts::t`]); a batch without that copy runs as the
//! `avx512` set's.
//!
//! Measured on the development machine (a KVM Xeon, family 6 model 167,
//! 1 thread; `kernel-table --matmul --quick --rounds 5`, 128 vectors x
//! 2048 x 2048, `avx512` -> `amx`, 2026-12-06): interleaved Q8_0 129.7 ->
//! 171.1 GMAC/s, Q4_0 124.9 -> 173.9, plain Q8_0 88.8 -> 133.1, Q4_0 99.4
//! -> 138.7, Q4_K 63.8 -> 140.2, Q5_K 58.3 -> 130.9, Q6_K 61.4 -> 118.3.
//! A tile's product costs about
//! 13 ns, the scaling of its 256 sums in vector registers about 32 ns,
//! and the two do not overlap; a tile load of bytes stored just before
//! costs 25 ns more (which is why Q4_0's nibbles are unpacked ahead).
//! Matrix-vector products (decode) stay `avx512`'s: they are bound by
//! memory bandwidth.
//!
//! Linux hands AMX's 8 KiB of tile state to a process only on request
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM)`). The set is offered on CPUs that
//! have AMX-TILE and AMX-INT8 (and the `avx512` set); the request is made
//! by the first batch that would use the tiles ([`granted`], once per
//! process), so a process that only decodes, or runs F16 weights, never
//! makes it; if Linux refuses, every kernel runs as the `avx512` set's.
//! Once granted, every signal frame of the process has room for the tile
//! state (about 11 KiB in all), and Linux refuses an alternate signal
//! stack smaller than that (`AT_MINSIGSTKSZ` says how large); a host
//! program with small fixed-size alternate stacks should keep AMX off:
//! `LLAMETTE_KERNELS=avx512` (or [`crate::kernels::force`]) runs without
//! it. Each kernel call loads its tile configuration and releases the
//! tiles before it returns.

#[cfg(all(target_os = "linux", not(miri)))]
use core::arch::{asm, x86_64::__cpuid_count};
use core::sync::atomic::{AtomicU8, Ordering};

use super::{avx512, avx512_supported, run, x16};
use crate::kernels::acts::Acts;
use crate::kernels::interleave::BAND;
use crate::kernels::types::TensorType;
use crate::kernels::{Kernels, MatFn};

mod k_quants;
mod plain;
pub(super) mod tiles;

/// The AMX kernel set: [`avx512::AVX512`]'s functions, with AMX tiles for
/// batches of Q8_0 and Q4_0 weights.
pub(in crate::kernels) static AMX: Kernels = Kernels {
    name: "amx",
    kernel_for,
    transposed_q8: true,
    ..avx512::TABLE
};

/// Whether this CPU and OS run the `amx` set: the `avx512` set's
/// features, AMX-TILE and AMX-INT8 (CPUID leaf 7), Linux. Whether Linux
/// grants the tile state is asked later, by [`granted`].
pub(in crate::kernels) fn supported() -> bool {
    avx512_supported() && has_amx()
}

/// Whether the CPU has AMX-TILE and AMX-INT8 and this is Linux (not Miri).
fn has_amx() -> bool {
    #[cfg(all(target_os = "linux", not(miri)))]
    {
        // CPUID leaf 7, sub-leaf 0: EDX bit 24 AMX-TILE, bit 25 AMX-INT8.
        let leaf7 = __cpuid_count(7, 0);
        leaf7.edx & (3 << 24) == 3 << 24
    }
    #[cfg(not(all(target_os = "linux", not(miri))))]
    {
        false
    }
}

/// This set's kernel for weights of type `ty`: the `avx512` set's, but for
/// the types whose batches go through the tiles.
fn kernel_for(ty: TensorType) -> Option<MatFn> {
    use TensorType::*;
    Some(match ty {
        Q8_0 => |w, a, o| run(Q8_0, supported, mat_plain::<false>, w, a, o),
        Q4_0 => |w, a, o| run(Q4_0, supported, mat_plain::<true>, w, a, o),
        Q8_0x16 => |w, a, o| run(Q8_0x16, supported, mat_x16::<false>, w, a, o),
        Q4_0x16 => |w, a, o| run(Q4_0x16, supported, mat_x16::<true>, w, a, o),
        Q4_K => |w, a, o| run(Q4_K, supported, mat_q4_k, w, a, o),
        Q5_K => |w, a, o| run(Q5_K, supported, mat_q5_k, w, a, o),
        Q6_K => |w, a, o| run(Q6_K, supported, mat_q6_k, w, a, o),
        Q4_Kx16 => |w, a, o| run(Q4_Kx16, supported, mat_q4_kx16, w, a, o),
        Q5_Kx16 => |w, a, o| run(Q5_Kx16, supported, mat_q5_kx16, w, a, o),
        _ => return (avx512::TABLE.kernel_for)(ty),
    })
}

/// Plain Q8_0 (`Q4` false) or Q4_0 weights: a batch that carries its
/// transposed Q8 copy, in whole bands, through the tiles straight from the
/// rows ([`plain::mat`]); anything else as the `avx512` set.
///
/// # Safety
/// The set's CPU features; checked arguments (see [`run`]).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn mat_plain<const Q4: bool>(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe {
        if a.n > 1 && plain::fits(a, rows, Q4) && granted() {
            plain::mat::<Q4>(w, a, out, rows)
        } else if Q4 {
            avx512::mat_q4_0(w, a, out, rows)
        } else {
            avx512::mat_q8_0(w, a, out, rows)
        }
    }
}

/// Interleaved Q8_0 (`Q4` false) or Q4_0 weights: a batch through the
/// tiles ([`x16::mat_amx`]), one vector as the `avx512` set.
///
/// # Safety
/// As [`mat_plain`]; `check_mat` also checked that the rows are whole
/// bands.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn mat_x16<const Q4: bool>(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    // SAFETY: this function's contract.
    unsafe {
        if a.n == 1 || !granted() {
            x16::mat::<Q4>(w, a, out, rows)
        } else {
            x16::mat_amx::<Q4>(w, a, out, rows)
        }
    }
}

/// The K-quant kernels: `$name` runs a batch of whole 16-row bands
/// through the tiles ([`k_quants::bands`]), anything else as the `avx512`
/// set.
macro_rules! k_quant_kernels {
    ($($name:ident: $k:ty,)*) => {$(
        /// K-quant weights (see [`k_quants`]).
        ///
        /// # Safety
        /// As [`mat_plain`].
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn $name(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
            // SAFETY: this function's contract.
            unsafe {
                if a.n == 1 || !rows.is_multiple_of(BAND) || !granted() {
                    avx512::$name(w, a, out, rows)
                } else {
                    k_quants::bands::<$k>(w, a, out, rows)
                }
            }
        }
    )*};
}

k_quant_kernels! {
    mat_q4_k: k_quants::Q4K,
    mat_q5_k: k_quants::Q5K,
    mat_q6_k: k_quants::Q6K,
    mat_q4_kx16: k_quants::Q4KX16,
    mat_q5_kx16: k_quants::Q5KX16,
}

/// Whether AMX may be used: 0 not yet asked, 1 granted, 2 not available
/// (CPU, OS or kernel).
static STATE: AtomicU8 = AtomicU8::new(0);

/// Whether this process may run AMX int8 instructions: the CPU has them
/// ([`has_amx`]) and Linux granted the tile state (asked the first time,
/// once per process). Always `false` elsewhere and under Miri.
pub(super) fn granted() -> bool {
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

/// Whether [`granted`] has been asked and said yes (it asks nothing).
pub(in crate::kernels) fn granted_already() -> bool {
    STATE.load(Ordering::Relaxed) == 1
}

/// Asks Linux for the AMX tile state if the CPU has AMX-TILE and
/// AMX-INT8; whether it was granted.
fn request() -> bool {
    #[cfg(all(target_os = "linux", not(miri)))]
    {
        if !has_amx() {
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
