//! Interleaving quantized weights in place, for faster kernels.
//!
//! GGUF stores a Q8_0, Q4_0, Q4_K or Q5_K matrix row after row, each row a
//! run of blocks of 32 values (an f16 scale, then the values; the K-quants:
//! super-blocks of 256 with their sub-block scales). A SIMD kernel
//! reading one row at a time must sum each block's products across the
//! vector lanes, then scale that sum: shuffles and reductions that cost more
//! than the multiplications. With 16 rows side by side, lane `r` of a
//! 16-lane vector simply accumulates row `r`, and no reduction is left.
//!
//! [`repack_in_place`] rewrites a GGUF file held in *writable* memory into
//! that layout, in the same bytes (it costs no memory), and changes the
//! type numbers in its header so that [`Model::load`](crate::Model::load)
//! on the same bytes reads [`TensorType::Q8_0x16`],
//! [`TensorType::Q4_0x16`], [`TensorType::Q4_Kx16`] and
//! [`TensorType::Q5_Kx16`] tensors. F16 is left plain: the interleaved F16
//! layout ([`TensorType::F16x16`]) is read where bytes hold it, but no
//! kernel set reads it faster than plain F16 now, so this module does not
//! make it (the explicit [`interleave`] does, for tests and benchmarks).
//!
//! The layout, the kernels that read it and what it does to the numbers
//! are described in [`crate::kernels::interleave`].

use crate::error::Result;
use crate::format::gguf::{self, Gguf, TensorInfo};
#[doc(hidden)]
pub use crate::kernels::interleave::interleave;
use crate::kernels::interleave::MAX_SUPER_BLOCKS;
use crate::kernels::interleave::{interleave_rows, interleave_rows_k, BAND, MAX_BLOCKS};
use crate::kernels::types::{TensorType, QK, QK_K};
use crate::kernels::types::{GGML_Q4_0X16, GGML_Q4_KX16, GGML_Q5_KX16, GGML_Q8_0X16};

/// What [`repack_in_place`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Repacked {
    /// Matrices interleaved.
    pub tensors: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// Rewrites every Q8_0 and Q4_0 matrix of the GGUF file in `bytes` into
/// the interleaved layout of this module, in place, and its type number in
/// the header; also every Q4_K and Q5_K matrix where this machine's
/// kernels read the interleaved one faster
/// ([`Kernels::fast_interleaved_k`](crate::kernels::Kernels::fast_interleaved_k)
/// of [`active`](crate::kernels::active): Q4_K and Q5_K with AVX-512 VNNI,
/// Q4_K with AVX2). F16 matrices stay plain (no kernel set reads
/// interleaved F16 faster). Then [`Model::load`](crate::Model::load)
/// on the same bytes reads the interleaved types.
///
/// The bytes no longer hold a standard GGUF file: only llamette reads it,
/// and they are made for this machine (interleaved Q4_K and Q5_K are slower
/// than the plain ones on a CPU whose kernels do not list them, the scalar
/// reference's without AVX2: repack where the model runs).
/// Matrices already interleaved are left alone (the call is idempotent);
/// a llama2.c file, which has no Q8_0 or Q4_0 matrix, is left untouched.
/// A file whose header or tensor records do not parse is an error and is
/// left untouched (whether it is a usable model is for
/// [`Model::load`](crate::Model::load) to say, after).
pub fn repack_in_place(bytes: &mut [u8]) -> Result<Repacked> {
    let magic = crate::error::slice(bytes, 0, 4, "file magic")?;
    if u32::from_le_bytes([magic[0], magic[1], magic[2], magic[3]]) != gguf::MAGIC {
        return Ok(Repacked::default());
    }
    // Check the whole file first, so that an error leaves it untouched.
    let n_tensors = {
        let g = Gguf::parse(bytes)?;
        for t in g.tensors() {
            t?;
        }
        g.n_tensors as usize
    };
    // Q4_K and Q5_K only where this machine's kernels read them fast.
    let k_quants = crate::kernels::active().fast_interleaved_k;
    let mut done = Repacked::default();
    let mut next = 0;
    while next < n_tensors {
        // A few records at a time: the parsed header borrows the bytes.
        let mut jobs = [Job::default(); 32];
        let mut n_jobs = 0;
        let before = next;
        {
            let g = Gguf::parse(bytes)?;
            for t in g.tensors().skip(next).take(jobs.len()) {
                next += 1;
                if let Some(job) = Job::of(&t?, bytes.len(), k_quants) {
                    jobs[n_jobs] = job;
                    n_jobs += 1;
                }
            }
        }
        if next == before {
            break; // No record left (cannot happen after the check above).
        }
        for job in &jobs[..n_jobs] {
            let data = &mut bytes[job.data..job.data + job.len];
            let ty = match job.kind {
                Kind::Q4_0 => GGML_Q4_0X16,
                Kind::Q8_0 => GGML_Q8_0X16,
                Kind::Q4K => GGML_Q4_KX16,
                Kind::Q5K => GGML_Q5_KX16,
            };
            match job.kind {
                Kind::Q4K => interleave_rows_k(data, job.nb, false),
                Kind::Q5K => interleave_rows_k(data, job.nb, true),
                _ => interleave_rows(data, job.nb, job.kind == Kind::Q4_0),
            }
            bytes[job.type_at..job.type_at + 4].copy_from_slice(&ty.to_le_bytes());
            done.tensors += 1;
            done.bytes += job.len as u64;
        }
    }
    Ok(done)
}

/// One matrix to interleave.
#[derive(Debug, Clone, Copy, Default)]
struct Job {
    type_at: usize,
    data: usize,
    len: usize,
    /// Blocks (K-quant super-blocks) per row.
    nb: usize,
    kind: Kind,
}

/// The plain type of a [`Job`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Kind {
    #[default]
    Q8_0,
    Q4_0,
    Q4K,
    Q5K,
}

impl Job {
    /// The job for tensor `t` of a file of `file_len` bytes, if it is a
    /// matrix this module interleaves.
    fn of(t: &TensorInfo, file_len: usize, k_quants: &[TensorType]) -> Option<Job> {
        let (kind, len, max) = match t.ty? {
            TensorType::Q4_0 => (Kind::Q4_0, QK, MAX_BLOCKS),
            TensorType::Q8_0 => (Kind::Q8_0, QK, MAX_BLOCKS),
            ty @ (TensorType::Q4_K | TensorType::Q5_K) if !k_quants.contains(&ty) => return None,
            TensorType::Q4_K => (Kind::Q4K, QK_K, MAX_SUPER_BLOCKS),
            TensorType::Q5_K => (Kind::Q5K, QK_K, MAX_SUPER_BLOCKS),
            _ => return None,
        };
        let rows = t.dims[1].checked_mul(t.dims[2])?.checked_mul(t.dims[3])?;
        let nb = (t.dims[0] / len as u64) as usize;
        let end = t.offset.checked_add(t.size)?;
        if t.n_dims < 2
            || !t.dims[0].is_multiple_of(len as u64)
            || !rows.is_multiple_of(BAND as u64)
            || nb == 0
            || nb > max
            || end > file_len as u64
        {
            return None;
        }
        Some(Job {
            type_at: t.type_at as usize,
            data: t.offset as usize,
            len: t.size as usize,
            nb,
            kind,
        })
    }
}
