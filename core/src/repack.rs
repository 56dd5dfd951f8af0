//! Interleaving quantized weights in place, for faster kernels.
//!
//! GGUF stores a Q8_0 or Q4_0 matrix row after row, each row a run of
//! blocks of 32 values (an f16 scale, then the values). A SIMD kernel
//! reading one row at a time must sum each block's products across the
//! vector lanes, then scale that sum: shuffles and reductions that cost more
//! than the multiplications. With 16 rows side by side, lane `r` of a
//! 16-lane vector simply accumulates row `r`, and no reduction is left.
//!
//! [`repack_in_place`] rewrites a GGUF file held in *writable* memory into
//! that layout, in the same bytes (it costs no memory), and changes the
//! type numbers in its header so that [`Model::load`](crate::Model::load)
//! on the same bytes reads [`TensorType::Q8_0x16`] and
//! [`TensorType::Q4_0x16`] tensors.
//!
//! # The layout
//!
//! The rows of a matrix go in bands of [`BAND`] (16). A band is stored as
//! its block columns, one after the other; block column `k` of a band (a
//! *unit*, 16 blocks' bytes) holds:
//! - bytes `0..32`: the 16 rows' scales (f16, little-endian), row 0 first;
//! - then the values, 4 bytes at a time: byte `32 + 64 c + 4 r + j` is byte
//!   `4 c + j` of the values of row `r`'s block `k` (Q4_0: 16 bytes of
//!   nibble pairs, 4 chunks `c`; Q8_0: 32 bytes, 8 chunks, each stored as
//!   `q + 128`, an unsigned byte, which is what `vpdpbusd` multiplies).
//!
//! Bands are contiguous and as long as 16 plain rows, so a range of whole
//! bands is still the same range of bytes.
//!
//! Matrices whose row count is not a multiple of 16, or with rows longer
//! than 32768 values, stay as they are.
//!
//! # Numbers
//!
//! An interleaved row sums its blocks in order into one float
//! (`acc + (d_w * d_a) * dot`), where the plain types use eight partial sums:
//! logits differ in their last bits from the same model before
//! interleaving; every kernel set gives the same bits for the interleaved
//! types, for any thread count, one token or a batch.

use crate::error::{Error, Result};
use crate::format::gguf::{self, Gguf, TensorInfo};
use crate::tensor::{TensorType, BAND, GGML_Q4_0X16, GGML_Q8_0X16, QK};

/// What [`repack_in_place`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Repacked {
    /// Matrices interleaved.
    pub tensors: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// Longest row interleaved, in blocks (32768 values).
const MAX_BLOCKS: usize = 1024;

/// Rewrites every Q8_0 and Q4_0 matrix of the GGUF file in `bytes` into
/// the interleaved layout of this module, in place, and its type number in
/// the header. Then [`Model::load`](crate::Model::load) on the same bytes
/// reads the interleaved types.
///
/// The bytes no longer hold a standard GGUF file: only llamette reads it.
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
                if let Some(job) = Job::of(&t?, bytes.len()) {
                    jobs[n_jobs] = job;
                    n_jobs += 1;
                }
            }
        }
        if next == before {
            break; // No record left (cannot happen after the check above).
        }
        for job in &jobs[..n_jobs] {
            interleave_rows(&mut bytes[job.data..job.data + job.len], job.nb, job.q4);
            let ty = if job.q4 { GGML_Q4_0X16 } else { GGML_Q8_0X16 };
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
    /// Blocks per row.
    nb: usize,
    q4: bool,
}

impl Job {
    /// The job for tensor `t` of a file of `file_len` bytes, if it is a
    /// matrix this module interleaves.
    fn of(t: &TensorInfo, file_len: usize) -> Option<Job> {
        let q4 = match t.ty? {
            TensorType::Q4_0 => true,
            TensorType::Q8_0 => false,
            _ => return None,
        };
        let rows = t.dims[1].checked_mul(t.dims[2])?.checked_mul(t.dims[3])?;
        let nb = (t.dims[0] / QK as u64) as usize;
        let end = t.offset.checked_add(t.size)?;
        if t.n_dims < 2
            || !rows.is_multiple_of(BAND as u64)
            || nb == 0
            || nb > MAX_BLOCKS
            || end > file_len as u64
        {
            return None;
        }
        Some(Job {
            type_at: t.type_at as usize,
            data: t.offset as usize,
            len: t.size as usize,
            nb,
            q4,
        })
    }
}

/// Interleaves one `rows` x `cols` matrix of type `ty` (Q8_0 or Q4_0,
/// `data` exactly its bytes) in place and returns its new type. A matrix
/// this module cannot interleave (another type, a row count that is not a
/// multiple of 16, rows longer than 32768, a wrong size) is an error and is
/// left untouched.
pub fn interleave(data: &mut [u8], ty: TensorType, rows: usize, cols: usize) -> Result<TensorType> {
    let bad = |what| Error::InvalidArgument { what };
    let (q4, new) = match ty {
        TensorType::Q4_0 => (true, TensorType::Q4_0x16),
        TensorType::Q8_0 => (false, TensorType::Q8_0x16),
        _ => return Err(bad("only Q8_0 and Q4_0 matrices are interleaved")),
    };
    let nb = cols / QK;
    if !cols.is_multiple_of(QK) || nb > MAX_BLOCKS {
        return Err(bad(
            "interleaved rows are 32 to 32768 values, in blocks of 32",
        ));
    }
    if !rows.is_multiple_of(BAND) {
        return Err(bad("interleaved matrices have a multiple of 16 rows"));
    }
    if rows.checked_mul(nb * block_bytes(q4)) != Some(data.len()) {
        return Err(bad("matrix bytes do not match its shape"));
    }
    interleave_rows(data, nb, q4);
    Ok(new)
}

/// Bytes per block of the plain type.
fn block_bytes(q4: bool) -> usize {
    if q4 {
        18
    } else {
        34
    }
}

/// Interleaves the plain rows in `data` (a whole number of bands of rows
/// of `nb` blocks) in place.
fn interleave_rows(data: &mut [u8], nb: usize, q4: bool) {
    if nb == 0 {
        return; // Rows of no values: nothing to move.
    }
    let bb = block_bytes(q4);
    for band in data.chunks_exact_mut(BAND * nb * bb) {
        transpose_blocks(band, nb, bb);
        for unit in band.chunks_exact_mut(BAND * bb) {
            interleave_unit(unit, q4);
        }
    }
}

/// Reorders the 16 x `nb` blocks (`bb` bytes each) of a band from row
/// major to column major, in place, by following the permutation's cycles.
fn transpose_blocks(band: &mut [u8], nb: usize, bb: usize) {
    let n = BAND * nb;
    // Which positions hold their final block (16 * MAX_BLOCKS bits).
    let mut done = [0u64; BAND * MAX_BLOCKS / 64];
    let mark = |done: &mut [u64], p: usize| done[p / 64] |= 1 << (p % 64);
    let is_done = |done: &[u64], p: usize| done[p / 64] & (1 << (p % 64)) != 0;
    // Position p = k * 16 + r takes the block that was at r * nb + k.
    let src = |p: usize| (p % BAND) * nb + p / BAND;
    let mut held = [0u8; 34];
    for start in 0..n {
        if is_done(&done, start) {
            continue;
        }
        held[..bb].copy_from_slice(&band[start * bb..(start + 1) * bb]);
        let mut p = start;
        loop {
            mark(&mut done, p);
            let s = src(p);
            if s == start {
                band[p * bb..(p + 1) * bb].copy_from_slice(&held[..bb]);
                break;
            }
            band.copy_within(s * bb..(s + 1) * bb, p * bb);
            p = s;
        }
    }
}

/// Rewrites one unit from 16 plain blocks (row order) to the interleaved
/// unit of the module documentation.
fn interleave_unit(unit: &mut [u8], q4: bool) {
    let bb = block_bytes(q4);
    let mut plain = [0u8; BAND * 34];
    plain[..unit.len()].copy_from_slice(unit);
    let flip = if q4 { 0 } else { 0x80 };
    for (r, blk) in plain.chunks_exact(bb).take(BAND).enumerate() {
        unit[2 * r..2 * r + 2].copy_from_slice(&blk[..2]);
        for (i, &q) in blk[2..].iter().enumerate() {
            unit[value_at(r, i)] = q ^ flip;
        }
    }
}

/// Where byte `i` of row `r`'s block values sits in a unit.
#[inline]
pub(crate) fn value_at(r: usize, i: usize) -> usize {
    2 * BAND + 64 * (i / 4) + 4 * r + i % 4
}

/// Row `r`'s block of a unit, as the plain block (scale, then values).
pub(crate) fn plain_block(unit: &[u8], r: usize, q4: bool, out: &mut [u8]) {
    out[..2].copy_from_slice(&unit[2 * r..2 * r + 2]);
    let flip = if q4 { 0 } else { 0x80 };
    for (i, o) in out[2..block_bytes(q4)].iter_mut().enumerate() {
        *o = unit[value_at(r, i)] ^ flip;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain rows with every byte distinct enough to catch a misplaced one.
    fn plain_rows(rows: usize, nb: usize, q4: bool) -> [u8; 4 * BAND * 7 * 34] {
        let bb = block_bytes(q4);
        let mut data = [0u8; 4 * BAND * 7 * 34];
        for (i, b) in data[..rows * nb * bb].iter_mut().enumerate() {
            *b = (i * 7 + i / 251) as u8;
        }
        data
    }

    #[test]
    fn every_block_lands_where_the_layout_says() {
        for q4 in [false, true] {
            for nb in [1, 2, 7] {
                let bb = block_bytes(q4);
                let rows = 2 * BAND;
                let plain = plain_rows(rows, nb, q4);
                let mut data = plain;
                let len = rows * nb * bb;
                interleave_rows(&mut data[..len], nb, q4);
                for r in 0..rows {
                    for k in 0..nb {
                        let (band, rr) = (r / BAND, r % BAND);
                        let unit = &data[(band * nb + k) * BAND * bb..][..BAND * bb];
                        let mut blk = [0u8; 34];
                        plain_block(unit, rr, q4, &mut blk);
                        let want = &plain[(r * nb + k) * bb..][..bb];
                        assert_eq!(&blk[..bb], want, "q4 {q4} nb {nb} row {r} block {k}");
                    }
                }
            }
        }
    }
}
