//! The interleaved layout of Q8_0, Q4_0, Q4_K, Q5_K and F16 matrices, for
//! faster kernels.
//!
//! GGUF stores a Q8_0 or Q4_0 matrix row after row, each row a run of
//! blocks of 32 values (an f16 scale, then the values). A SIMD kernel
//! reading one row at a time must sum each block's products across the
//! vector lanes, then scale that sum: shuffles and reductions that cost more
//! than the multiplications. With 16 rows side by side, lane `r` of a
//! 16-lane vector simply accumulates row `r`, and no reduction is left.
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
//! Q4_K and Q5_K go the same way by super-blocks of 256 values (144 or 176
//! bytes): a unit is block column `k` of a band, its 16 super-blocks 4
//! bytes at a time (byte `64 g + 4 r + j` is byte `4 g + j` of row `r`'s,
//! see `interleave_rows_k`), its bytes unchanged. Rows longer than
//! [`MAX_SUPER_BLOCKS`] are not interleaved. [`crate::repack`] interleaves
//! them only for kernel sets that read them fast
//! ([`Kernels::fast_interleaved_k`](super::Kernels::fast_interleaved_k)).
//!
//! F16 goes by half bands and columns of 32 values: a unit is column `k`
//! of 8 rows, their 64 bytes (values `32 k .. 32 k + 32`) one row after the
//! other, unchanged (see `interleave_rows_f16`). Rows must be whole
//! columns (a multiple of 32 values) of at most [`MAX_BLOCKS`].
//!
//! Bands are contiguous and as long as 16 plain rows, so a range of whole
//! bands is still the same range of bytes. Matrices whose row count is not
//! a multiple of 16, or with rows longer than [`MAX_BLOCKS`] blocks, are not
//! interleaved. [`crate::repack`] rewrites the matrices of a GGUF file.
//!
//! # Numbers
//!
//! An interleaved row sums its blocks exactly as the plain Q8_0 and Q4_0
//! rows do: block `k`'s exact integer dot product, scaled by `d_w * d_a`,
//! goes to partial sum `k % 8`, and the eight sums are combined by
//! [`reduce8`]. So interleaving changes no bit of the logits: a model
//! gives the same numbers (and the same text) plain or interleaved, with
//! every kernel set, any thread count, one token or a batch ([`mat_x16`]
//! is the reference). An interleaved Q4_K or Q5_K row adds its
//! super-blocks in order into one running sum, as the plain type does
//! ([`mat_k_x16`]). An interleaved F16 row keeps the plain row's sixteen
//! partial sums (element `i` to sum `i % 16`, by fused multiply-adds) and
//! their tree ([`mat_f16x16`]).

use super::acts::Acts;
use super::types::float::f16_to_f32;
use super::types::{f16_le, k_quants, reduce16, reduce8, TensorType, QK, QK_K};
use crate::error::{Error, Result};

/// Rows per band of the interleaved types.
pub const BAND: usize = 16;

/// Longest row interleaved, in blocks (32768 values).
pub const MAX_BLOCKS: usize = 1024;

/// Bytes per block of the plain type.
pub(crate) fn block_bytes(q4: bool) -> usize {
    if q4 {
        TensorType::Q4_0.block_bytes()
    } else {
        TensorType::Q8_0.block_bytes()
    }
}

/// Interleaves one `rows` x `cols` matrix of type `ty` (Q8_0 or Q4_0,
/// `data` exactly its bytes) in place and returns its new type. A matrix
/// that cannot be interleaved (another type, a row count that is not a
/// multiple of 16, rows longer than 32768, a wrong size) is an error and is
/// left untouched.
pub fn interleave(data: &mut [u8], ty: TensorType, rows: usize, cols: usize) -> Result<TensorType> {
    let bad = |what| Error::InvalidArgument { what };
    let (q4, new) = match ty {
        TensorType::Q4_0 => (true, TensorType::Q4_0x16),
        TensorType::Q8_0 => (false, TensorType::Q8_0x16),
        TensorType::Q4_K => return interleave_k(data, rows, cols, false),
        TensorType::Q5_K => return interleave_k(data, rows, cols, true),
        TensorType::F16 => return interleave_f16(data, rows, cols),
        _ => {
            return Err(bad(
                "only Q8_0, Q4_0, Q4_K, Q5_K and F16 matrices are interleaved",
            ))
        }
    };
    let nb = blocks_per_row(cols, QK, MAX_BLOCKS).ok_or(bad(
        "interleaved rows are 32 to 32768 values, in blocks of 32",
    ))?;
    check_rows(rows, nb * block_bytes(q4), data.len())?;
    interleave_rows(data, nb, q4);
    Ok(new)
}

/// The blocks per row of `cols` values in blocks of `block_len`, if that
/// is a whole number of them, at most `max`.
fn blocks_per_row(cols: usize, block_len: usize, max: usize) -> Option<usize> {
    (cols.is_multiple_of(block_len) && cols / block_len <= max).then_some(cols / block_len)
}

/// Whether `rows` rows of `row_bytes` bytes are whole bands of exactly
/// `len` bytes.
fn check_rows(rows: usize, row_bytes: usize, len: usize) -> Result<()> {
    let bad = |what| Err(Error::InvalidArgument { what });
    if !rows.is_multiple_of(BAND) {
        return bad("interleaved matrices have a multiple of 16 rows");
    }
    if rows.checked_mul(row_bytes) != Some(len) {
        return bad("matrix bytes do not match its shape");
    }
    Ok(())
}

/// Interleaves the plain rows in `data` (a whole number of bands of rows
/// of `nb` blocks, `nb <= MAX_BLOCKS`) in place.
pub(crate) fn interleave_rows(data: &mut [u8], nb: usize, q4: bool) {
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
    transpose_rows(band, BAND, nb, bb);
}

/// [`transpose_blocks`] for `rows` rows (at most [`BAND`]).
fn transpose_rows(band: &mut [u8], rows: usize, nb: usize, bb: usize) {
    let n = rows * nb;
    // Which positions hold their final block (16 * MAX_BLOCKS bits).
    let mut done = [0u64; BAND * MAX_BLOCKS / 64];
    let mark = |done: &mut [u64], p: usize| done[p / 64] |= 1 << (p % 64);
    let is_done = |done: &[u64], p: usize| done[p / 64] & (1 << (p % 64)) != 0;
    // Position p = k * rows + r takes the block that was at r * nb + k.
    let src = |p: usize| (p % rows) * nb + p / rows;
    let mut held = [0u8; MAX_K_BYTES];
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

/// Byte `i` of an interleaved matrix (`data` its bytes, rows of `nb`
/// blocks) as it was plain: where rows follow one another and each block
/// is its scale, then its values.
pub(crate) fn plain_byte(data: &[u8], nb: usize, q4: bool, i: usize) -> u8 {
    let bb = block_bytes(q4);
    let (r, k, j) = (i / (nb * bb), i % (nb * bb) / bb, i % bb);
    let unit = &data[(r / BAND * nb + k) * BAND * bb..];
    if j < 2 {
        unit[2 * (r % BAND) + j]
    } else {
        let flip = if q4 { 0 } else { 0x80 };
        unit[value_at(r % BAND, j - 2)] ^ flip
    }
}

/// Decodes row `r` of an interleaved matrix (`data` its bytes, rows of
/// `out.len()` values) into `out`: the row's blocks gathered from the units
/// of its band, decoded as the plain type.
pub(crate) fn dequantize_row(data: &[u8], q4: bool, r: usize, out: &mut [f32]) {
    let bb = block_bytes(q4);
    let nb = out.len() / QK;
    let band = &data[r / BAND * BAND * nb * bb..][..BAND * nb * bb];
    let plain = if q4 {
        TensorType::Q4_0
    } else {
        TensorType::Q8_0
    };
    let mut blk = [0u8; 34];
    for (k, o) in out.chunks_exact_mut(QK).enumerate() {
        plain_block(&band[k * BAND * bb..], r % BAND, q4, &mut blk);
        super::types::dequantize_row(plain, &blk[..bb], o);
    }
}

/// Bytes of a Q4_K (`q5` false) or Q5_K super-block.
pub(crate) fn k_bytes(q5: bool) -> usize {
    if q5 {
        TensorType::Q5_K.block_bytes()
    } else {
        TensorType::Q4_K.block_bytes()
    }
}

/// The largest [`k_bytes`].
const MAX_K_BYTES: usize = 176;

/// Longest Q4_K or Q5_K row interleaved, in super-blocks (32768 values).
pub const MAX_SUPER_BLOCKS: usize = MAX_BLOCKS * QK / QK_K;

/// [`interleave`] for a Q4_K or Q5_K (`q5`) matrix.
fn interleave_k(data: &mut [u8], rows: usize, cols: usize, q5: bool) -> Result<TensorType> {
    let nsb = blocks_per_row(cols, QK_K, MAX_SUPER_BLOCKS).ok_or(Error::InvalidArgument {
        what: "interleaved K-quant rows are 256 to 32768 values, in super-blocks of 256",
    })?;
    check_rows(rows, nsb * k_bytes(q5), data.len())?;
    interleave_rows_k(data, nsb, q5);
    Ok(if q5 {
        TensorType::Q5_Kx16
    } else {
        TensorType::Q4_Kx16
    })
}

/// Interleaves the plain Q4_K or Q5_K (`q5`) rows in `data` (a whole
/// number of bands of rows of `nsb` super-blocks, `nsb <=
/// MAX_SUPER_BLOCKS`) in place.
///
/// A unit (16 rows' super-block `k`: 2304 bytes of Q4_K, 2816 of Q5_K)
/// holds the 16 super-blocks 4 bytes at a time: byte `64 g + 4 r + j` is
/// byte `4 g + j` of row `r`'s super-block ([`k_at`]). So the unit's first
/// 64 bytes are the rows' `d` and `dmin`, the next 192 their packed
/// scales (each 64-byte vector one dword of every row's), then (Q5_K) 8
/// vectors of fifth bits and 32 vectors of nibbles: vector `c` holds bytes
/// `4c..4c + 4` of each row's 128.
pub(crate) fn interleave_rows_k(data: &mut [u8], nsb: usize, q5: bool) {
    if nsb == 0 {
        return;
    }
    let bb = k_bytes(q5);
    for band in data.chunks_exact_mut(BAND * nsb * bb) {
        transpose_blocks(band, nsb, bb);
        for unit in band.chunks_exact_mut(BAND * bb) {
            let mut plain = [0u8; BAND * MAX_K_BYTES];
            plain[..unit.len()].copy_from_slice(unit);
            for (r, blk) in plain.chunks_exact(bb).take(BAND).enumerate() {
                for (i, &b) in blk.iter().enumerate() {
                    unit[k_at(r, i)] = b;
                }
            }
        }
    }
}

/// Where byte `i` of row `r`'s super-block sits in a K-quant unit.
#[inline]
pub(crate) fn k_at(r: usize, i: usize) -> usize {
    64 * (i / 4) + 4 * r + i % 4
}

/// Row `r`'s super-block of a K-quant unit, as the plain block (its first
/// [`k_bytes`] bytes).
fn plain_block_k(unit: &[u8], r: usize, q5: bool) -> [u8; MAX_K_BYTES] {
    let mut out = [0u8; MAX_K_BYTES];
    for (i, o) in out[..k_bytes(q5)].iter_mut().enumerate() {
        *o = unit[k_at(r, i)];
    }
    out
}

/// [`plain_byte`] for an interleaved Q4_K or Q5_K matrix (rows of `nsb`
/// super-blocks).
pub(crate) fn plain_byte_k(data: &[u8], nsb: usize, q5: bool, i: usize) -> u8 {
    let bb = k_bytes(q5);
    let (r, k, j) = (i / (nsb * bb), i % (nsb * bb) / bb, i % bb);
    data[(r / BAND * nsb + k) * BAND * bb + k_at(r % BAND, j)]
}

/// [`dequantize_row`] for an interleaved Q4_K or Q5_K matrix.
pub(crate) fn dequantize_row_k(data: &[u8], q5: bool, r: usize, out: &mut [f32]) {
    let nsb = out.len() / QK_K;
    let bb = k_bytes(q5);
    let ub = BAND * bb;
    let band = &data[r / BAND * nsb * ub..][..nsb * ub];
    let plain = if q5 {
        TensorType::Q5_K
    } else {
        TensorType::Q4_K
    };
    for (k, o) in out.chunks_exact_mut(QK_K).enumerate() {
        let blk = plain_block_k(&band[k * ub..], r % BAND, q5);
        super::types::dequantize_row(plain, &blk[..bb], o);
    }
}

/// The reference for interleaved Q4_K or Q5_K weights
/// ([`TensorType::Q4_Kx16`], [`TensorType::Q5_Kx16`]; `rows` whole bands)
/// times Q8_K activations (the `MatFn` contract): each row's super-blocks
/// gathered from the units of its band and summed as the plain rows are
/// ([`k_quants::step_q4_k`], [`k_quants::step_q5_k`]), so the numbers are
/// the plain type's.
pub fn mat_k_x16(w: &[u8], a: &Acts, out: &mut [f32], rows: usize, q5: bool) {
    assert!(
        rows.is_multiple_of(BAND),
        "kernel: rows are not whole bands"
    );
    let nsb = a.cols / QK_K;
    let bb = k_bytes(q5);
    let ub = BAND * bb;
    if nsb == 0 {
        out.fill(0.0);
        return;
    }
    let step = if q5 {
        k_quants::step_q5_k
    } else {
        k_quants::step_q4_k
    };
    for c in 0..a.n {
        let act = a.get(c);
        let out = &mut out[c * rows..(c + 1) * rows];
        for (band, out) in w.chunks_exact(nsb * ub).zip(out.chunks_exact_mut(BAND)) {
            for (r, o) in out.iter_mut().enumerate() {
                let mut acc = 0f32;
                for (s, unit) in band.chunks_exact(ub).enumerate() {
                    acc = step(acc, &plain_block_k(unit, r, q5)[..bb], &act, s);
                }
                *o = acc;
            }
        }
    }
}

/// The reference for interleaved Q8_0 ([`TensorType::Q8_0x16`]) or Q4_0
/// weights (`rows` whole bands) times Q8 activations (the `MatFn`
/// contract): row `r` adds block `k`'s `(d_w * d_a) * dot` to partial sum
/// `k % 8`, then [`reduce8`] (the plain types' order), with `dot` the
/// block's exact dot product (values `byte - 128` for Q8_0,
/// `nibble - 8` for Q4_0, the offset taken out as `offset * sum(q)`).
pub fn mat_x16(w: &[u8], a: &Acts, out: &mut [f32], rows: usize, q4: bool) {
    assert!(
        rows.is_multiple_of(BAND),
        "kernel: rows are not whole bands"
    );
    let nb = a.cols / QK;
    let ub = BAND * block_bytes(q4);
    let offset = if q4 { 8 } else { 128 };
    for c in 0..a.n {
        let act = a.get(c);
        let out = &mut out[c * rows..(c + 1) * rows];
        for (band, out) in w.chunks_exact(nb * ub).zip(out.chunks_exact_mut(BAND)) {
            for (r, o) in out.iter_mut().enumerate() {
                let mut acc = [0f32; 8];
                for (k, unit) in band.chunks_exact(ub).enumerate() {
                    let d = f16_le([unit[2 * r], unit[2 * r + 1]]);
                    let q = &act.q[k * QK..(k + 1) * QK];
                    let mut dot = -offset * act.sum[k];
                    for i in 0..ub / BAND - 2 {
                        let v = unit[value_at(r, i)] as i32;
                        if q4 {
                            // Byte i holds element i (low nibble) and i + 16.
                            dot += (v & 0x0f) * q[i] as i32 + (v >> 4) * q[i + QK / 2] as i32;
                        } else {
                            dot += v * q[i] as i32;
                        }
                    }
                    acc[k % 8] += (d * act.d[k]) * dot as f32;
                }
                *o = reduce8(acc);
            }
        }
    }
}

/// Bytes of a column of 32 F16 values of one row: an interleaved F16
/// matrix's block.
const F16_COL: usize = 2 * QK;

/// Rows of a half band of interleaved F16, stored as its own columns.
pub const F16_HALF: usize = BAND / 2;

/// [`interleave`] for an F16 matrix.
fn interleave_f16(data: &mut [u8], rows: usize, cols: usize) -> Result<TensorType> {
    let nc = blocks_per_row(cols, QK, MAX_BLOCKS).ok_or(Error::InvalidArgument {
        what: "interleaved F16 rows are 32 to 32768 values, in columns of 32",
    })?;
    check_rows(rows, nc * F16_COL, data.len())?;
    interleave_rows_f16(data, nc);
    Ok(TensorType::F16x16)
}

/// Interleaves the plain F16 rows in `data` (a whole number of bands of
/// rows of `nc` columns of 32 values, `nc <= MAX_BLOCKS`) in place: each
/// half band (8 rows) is stored as its columns, one after the other;
/// column `k` (a unit, 512 bytes) holds row 0's values `32 k .. 32 k + 32`,
/// then row 1's, and so on. So a kernel reading one vector reads a half
/// band as one sequential stream, and a batch's tile of 8 rows is 8 rows'
/// contiguous bytes.
pub(crate) fn interleave_rows_f16(data: &mut [u8], nc: usize) {
    if nc == 0 {
        return;
    }
    for half in data.chunks_exact_mut(F16_HALF * nc * F16_COL) {
        transpose_rows(half, F16_HALF, nc, F16_COL);
    }
}

/// Where column `k` of row `r` of an interleaved F16 matrix (rows of `nc`
/// columns) starts.
fn f16_col_at(nc: usize, r: usize, k: usize) -> usize {
    ((r / F16_HALF * nc + k) * F16_HALF + r % F16_HALF) * F16_COL
}

/// [`plain_byte`] for an interleaved F16 matrix (rows of `nc` columns).
pub(crate) fn plain_byte_f16(data: &[u8], nc: usize, i: usize) -> u8 {
    let (r, k, j) = (
        i / (nc * F16_COL),
        i % (nc * F16_COL) / F16_COL,
        i % F16_COL,
    );
    data[f16_col_at(nc, r, k) + j]
}

/// [`dequantize_row`] for an interleaved F16 matrix.
pub(crate) fn dequantize_row_f16(data: &[u8], r: usize, out: &mut [f32]) {
    let nc = out.len() / QK;
    for (k, o) in out.chunks_exact_mut(QK).enumerate() {
        let col = &data[f16_col_at(nc, r, k)..][..F16_COL];
        super::types::dequantize_row(TensorType::F16, col, o);
    }
}

/// The reference for interleaved F16 weights ([`TensorType::F16x16`];
/// `rows` whole bands) times f32 activations (the `MatFn` contract): row
/// `r` takes its columns from the units of its band and sums as the plain
/// F16 row does (`acc[i % 16] = fma(w, x, acc[i % 16])`, then
/// [`reduce16`]), so the numbers are the plain type's.
pub fn mat_f16x16(w: &[u8], a: &Acts, out: &mut [f32], rows: usize) {
    assert!(
        rows.is_multiple_of(BAND),
        "kernel: rows are not whole bands"
    );
    let nc = a.cols / QK;
    for c in 0..a.n {
        let x = &a.x[c * a.cols..(c + 1) * a.cols];
        for (r, o) in out[c * rows..(c + 1) * rows].iter_mut().enumerate() {
            let mut acc = [0f32; 16];
            for (k, xs) in x.chunks_exact(QK).enumerate() {
                let col = &w[f16_col_at(nc, r, k)..][..F16_COL];
                for (i, (b, &x)) in col.chunks_exact(2).zip(xs).enumerate() {
                    let w = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
                    acc[i % 16] = libm::fmaf(w, x, acc[i % 16]);
                }
            }
            *o = reduce16(acc);
        }
    }
}

/// Walks an interleaved matrix (`rows` whole bands of 16 rows of
/// `row_bytes` bytes) times the batch `a` in the order the
/// interleaved SIMD kernels take it: the vectors in chunks of at most
/// `nc_max`, each chunk against every band. `tile(band, c0, nc, out)` gets
/// the band's first byte and where row 0 of the band goes for vector `c0`
/// (vector `c0 + j` is `j * rows` further); the kernel dereferences them.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) fn for_each_band(
    w: &[u8],
    a: &Acts,
    out: &mut [f32],
    rows: usize,
    row_bytes: usize,
    nc_max: usize,
    mut tile: impl FnMut(*const u8, usize, usize, *mut f32),
) {
    let band_bytes = checked_band_bytes(w, out, a.n, rows, row_bytes);
    let mut c0 = 0;
    while c0 < a.n {
        let nc = (a.n - c0).min(nc_max);
        for b in 0..rows / BAND {
            let band = w.as_ptr().wrapping_add(b * band_bytes);
            tile(
                band,
                c0,
                nc,
                out.as_mut_ptr().wrapping_add(c0 * rows + b * BAND),
            );
        }
        c0 += nc;
    }
}

/// The bytes of a band of interleaved rows of `row_bytes` bytes, after
/// checking that `rows` are whole bands inside `w` and that `out` holds
/// `n * rows` results (`n` vectors); panics otherwise.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) fn checked_band_bytes(
    w: &[u8],
    out: &[f32],
    n: usize,
    rows: usize,
    row_bytes: usize,
) -> usize {
    let band_bytes = BAND * row_bytes;
    assert!(
        rows.is_multiple_of(BAND) && w.len() >= rows / BAND * band_bytes && out.len() >= n * rows,
        "kernel: interleaved arguments out of range"
    );
    band_bytes
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
    fn plain_byte_reads_every_byte_back() {
        for q4 in [false, true] {
            for nb in [1, 7] {
                let len = 2 * BAND * nb * block_bytes(q4);
                let plain = plain_rows(2 * BAND, nb, q4);
                let mut data = plain;
                interleave_rows(&mut data[..len], nb, q4);
                for (i, &want) in plain[..len].iter().enumerate() {
                    assert_eq!(
                        plain_byte(&data[..len], nb, q4, i),
                        want,
                        "q4 {q4} nb {nb} byte {i}"
                    );
                }
            }
        }
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
