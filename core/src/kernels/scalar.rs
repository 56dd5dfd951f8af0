//! The scalar kernel set: every weight type's reference dot product
//! ([`super::types`]) applied to every (row, vector) pair, in plain Rust,
//! on any target and any alignment. Every faster set is tested against it
//! and gives bit-identical results.

use super::acts::{Act, Acts};
use super::interleave;
use super::types::{float, k_quants, legacy, q4_0, q8_0, TensorType};
use super::{check_mat, Kernels, MatFn, ValueRows};

/// The scalar kernel set.
pub static KERNELS: Kernels = Kernels {
    name: "scalar",
    kernel_for,
    fast_interleaved: false,
    fast_interleaved_k: &[],
    transposed_q8: false,
    quantize: q8_0::quantize,
    quantize_k: k_quants::quantize_q8k,
    weighted_sum,
    kv_scores_q8_0,
};

/// A row's reference dot product with one activation vector.
type RowDot = fn(&[u8], &Act) -> f32;

/// The reference dot product of a row of `ty` (`None` for the layouts
/// that are not made of independent rows: interleaved and llama2.c split).
pub fn row_dot(ty: TensorType) -> Option<RowDot> {
    use TensorType::*;
    Some(match ty {
        F32 => |row, a| float::dot_f32(row, a.x),
        F16 => |row, a| float::dot_f16(row, a.x),
        BF16 => |row, a| float::dot_bf16(row, a.x),
        Q8_0 => q8_0::dot,
        Q4_0 => q4_0::dot,
        Q4_1 => legacy::dot_q4_1,
        Q5_0 => legacy::dot_q5_0,
        Q5_1 => legacy::dot_q5_1,
        IQ4_NL => legacy::dot_iq4_nl,
        Q2_K => k_quants::dot_q2_k,
        Q3_K => k_quants::dot_q3_k,
        Q4_K => k_quants::dot_q4_k,
        Q5_K => k_quants::dot_q5_k,
        Q6_K => k_quants::dot_q6_k,
        Q8_0x16 | Q4_0x16 | Q4_Kx16 | Q5_Kx16 | F16x16 | Q8Split { .. } => return None,
    })
}

/// The scalar kernel for weights of type `ty` (`None` for llama2.c's split
/// layout, which the matrix products handle row by row).
pub fn kernel_for(ty: TensorType) -> Option<MatFn> {
    use TensorType::*;
    Some(match ty {
        F32 => |w, a, o| mat_rows(F32, w, a, o),
        F16 => |w, a, o| mat_rows(F16, w, a, o),
        BF16 => |w, a, o| mat_rows(BF16, w, a, o),
        Q8_0 => |w, a, o| mat_rows(Q8_0, w, a, o),
        Q4_0 => |w, a, o| mat_rows(Q4_0, w, a, o),
        Q4_1 => |w, a, o| mat_rows(Q4_1, w, a, o),
        Q5_0 => |w, a, o| mat_rows(Q5_0, w, a, o),
        Q5_1 => |w, a, o| mat_rows(Q5_1, w, a, o),
        IQ4_NL => |w, a, o| mat_rows(IQ4_NL, w, a, o),
        Q2_K => |w, a, o| mat_rows(Q2_K, w, a, o),
        Q3_K => |w, a, o| mat_rows(Q3_K, w, a, o),
        Q4_K => |w, a, o| mat_rows(Q4_K, w, a, o),
        Q5_K => |w, a, o| mat_rows(Q5_K, w, a, o),
        Q6_K => |w, a, o| mat_rows(Q6_K, w, a, o),
        Q8_0x16 => |w, a, o| {
            let rows = check_mat(w, a, o, Q8_0x16);
            interleave::mat_x16(w, a, o, rows, false)
        },
        Q4_0x16 => |w, a, o| {
            let rows = check_mat(w, a, o, Q4_0x16);
            interleave::mat_x16(w, a, o, rows, true)
        },
        Q4_Kx16 => |w, a, o| {
            let rows = check_mat(w, a, o, Q4_Kx16);
            interleave::mat_k_x16(w, a, o, rows, false)
        },
        Q5_Kx16 => |w, a, o| {
            let rows = check_mat(w, a, o, Q5_Kx16);
            interleave::mat_k_x16(w, a, o, rows, true)
        },
        F16x16 => |w, a, o| {
            let rows = check_mat(w, a, o, F16x16);
            interleave::mat_f16x16(w, a, o, rows)
        },
        Q8Split { .. } => return None,
    })
}

/// The `MatFn` contract for a type of independent rows:
/// `out[c * rows + r] = dot(row r, vector c)` by the type's [`row_dot`].
#[inline(always)]
fn mat_rows(ty: TensorType, w: &[u8], a: &Acts, out: &mut [f32]) {
    let rows = check_mat(w, a, out, ty);
    let Some(dot) = row_dot(ty) else {
        unreachable!("mat_rows for {}", ty.name())
    };
    let rb = ty.bytes_for(a.cols).unwrap_or(0);
    for c in 0..a.n {
        let act = a.get(c);
        for (r, o) in out[c * rows..(c + 1) * rows].iter_mut().enumerate() {
            *o = dot(&w[r * rb..(r + 1) * rb], &act);
        }
    }
}

/// Attention's weighted sum of value rows: `out[i] = sum over t of att[t] *
/// v[t][i]`, with `v` the `att.len()` rows of `out.len()` values. Each
/// element is summed in order of `t` as `acc + a * v` (a rounded product,
/// then a rounded sum), so any vector width gives the same bits.
#[inline]
pub fn weighted_sum(att: &[f32], v: ValueRows, out: &mut [f32]) {
    weighted_sum_rows(att, v, out)
}

/// [`weighted_sum`]'s body, inlined into the SIMD sets' wrappers, where the
/// compiler vectorises it with their vector width.
#[inline(always)]
pub(crate) fn weighted_sum_rows(att: &[f32], v: ValueRows, out: &mut [f32]) {
    match v {
        ValueRows::F32(v) => weighted_sum_of(att, v, out, |x: &f32| *x),
        ValueRows::F16(v) => weighted_sum_of(att, v, out, |h: &u16| float::f16_bits_to_f32(*h)),
        ValueRows::Q8_0 { rows, nb } => weighted_sum_q8_0(att, rows, nb, out),
    }
}

/// [`weighted_sum`] over Q8_0 rows of `nb` blocks (`out.len() <= 32 nb`:
/// the first values of each row): each element is summed in order of `t` as
/// `acc + (a * d) * q`, with `d` the scale of the element's block in row
/// `t` (two rounded products, then a rounded sum).
#[inline(always)]
fn weighted_sum_q8_0(att: &[f32], rows: &[u8], nb: usize, out: &mut [f32]) {
    let rb = nb * 34;
    assert!(
        out.len() <= nb * 32 && rows.len() >= att.len() * rb,
        "weighted_sum: Q8_0 rows too short"
    );
    out.fill(0.0);
    for (b, out) in out.chunks_mut(32).enumerate() {
        let mut acc = [0f32; 32];
        for (t, &a) in att.iter().enumerate() {
            let blk = &rows[t * rb + b * 34..][..34];
            let s = a * float::f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
            for (acc, &q) in acc.iter_mut().zip(&blk[2..]) {
                *acc += s * f32::from(q as i8);
            }
        }
        out.copy_from_slice(&acc[..out.len()]);
    }
}

/// Attention scores against a Q8_0 key cache: `out[t] = dot(query, key
/// t)`, with the keys `out.len()` rows of `nb` Q8_0 blocks (`keys`, any
/// alignment) and the query quantized as `nb` Q8 blocks (`qd` scales, `qs`
/// values, `qsum` sums). Row `t` sums its blocks in order into one running
/// float: `acc + (d_k * d_q) * dot`, `dot` the block's exact `i32` dot
/// product (so a SIMD set that keeps one key row per vector lane computes
/// the same bits).
pub fn kv_scores_q8_0(
    keys: &[u8],
    nb: usize,
    qd: &[f32],
    qsum: &[i32],
    qs: &[i8],
    out: &mut [f32],
) {
    let rb = nb * 34;
    assert!(
        keys.len() >= out.len() * rb && qd.len() >= nb && qsum.len() >= nb && qs.len() >= nb * 32,
        "kv_scores: arguments too short"
    );
    for (t, o) in out.iter_mut().enumerate() {
        let mut acc = 0f32;
        for b in 0..nb {
            let blk = &keys[t * rb + b * 34..][..34];
            let dot: i32 = blk[2..]
                .iter()
                .zip(&qs[b * 32..b * 32 + 32])
                .map(|(&k, &q)| i32::from(k as i8) * i32::from(q))
                .sum();
            let d = float::f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
            acc += (d * qd[b]) * dot as f32;
        }
        *o = acc;
    }
}

/// [`weighted_sum`] over rows of `T`, decoded by `get`: 64 outputs at a
/// time (then 16, 8, and one by one) stay in registers while the rows go
/// by. Each output's sum is a chain of dependent adds, one per row: 64
/// outputs are 4 chains of 512-bit vectors (8 of 256-bit ones) side by
/// side, whose adds overlap, where 16 at a time waited on one chain (a
/// head of 64 took 4 passes; TinyLlama shape, Q4_0, 1 thread, decode after
/// a 1024-token prompt: 19.0-19.7 -> 19.4-19.9 tok/s, 3 alternating runs).
#[inline(always)]
fn weighted_sum_of<T>(att: &[f32], v: &[T], out: &mut [f32], get: impl Fn(&T) -> f32) {
    let n = out.len();
    assert!(v.len() >= att.len() * n, "weighted_sum: values too short");
    let mut first = 0;
    while n - first >= 64 {
        weighted_chunk::<64, T>(att, v, n, first, &get, &mut out[first..first + 64]);
        first += 64;
    }
    while n - first >= 16 {
        weighted_chunk::<16, T>(att, v, n, first, &get, &mut out[first..first + 16]);
        first += 16;
    }
    if n - first >= 8 {
        // An 8-wide head (or tail): one vector of sums, the same order.
        weighted_chunk::<8, T>(att, v, n, first, &get, &mut out[first..first + 8]);
        first += 8;
    }
    let rest = &mut out[first..];
    rest.fill(0.0);
    for (t, &a) in att.iter().enumerate() {
        for (o, x) in rest.iter_mut().zip(&v[t * n + first..t * n + n]) {
            *o += a * get(x);
        }
    }
}

/// Outputs `first..first + W` of [`weighted_sum_of`] (rows of `n` values),
/// summed in registers in order of `t` and stored in `out`.
#[inline(always)]
fn weighted_chunk<const W: usize, T>(
    att: &[f32],
    v: &[T],
    n: usize,
    first: usize,
    get: &impl Fn(&T) -> f32,
    out: &mut [f32],
) {
    let mut acc = [0f32; W];
    for (t, &a) in att.iter().enumerate() {
        let row = &v[t * n + first..][..W];
        for (acc, x) in acc.iter_mut().zip(row) {
            *acc += a * get(x);
        }
    }
    out.copy_from_slice(&acc);
}
