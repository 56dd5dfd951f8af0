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
    quantize: q8_0::quantize,
    quantize_k: k_quants::quantize_q8k,
    weighted_sum,
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
        Q8_0x16 | Q4_0x16 | Q8Split { .. } => return None,
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
    }
}

/// [`weighted_sum`] over rows of `T`, decoded by `get`: 16 outputs at a
/// time stay in registers while the rows go by.
#[inline(always)]
fn weighted_sum_of<T>(att: &[f32], v: &[T], out: &mut [f32], get: impl Fn(&T) -> f32) {
    let n = out.len();
    assert!(v.len() >= att.len() * n, "weighted_sum: values too short");
    let mut chunks = out.chunks_exact_mut(16);
    for (c, chunk) in chunks.by_ref().enumerate() {
        let mut acc = [0f32; 16];
        for (t, &a) in att.iter().enumerate() {
            let row = &v[t * n + 16 * c..][..16];
            for (acc, x) in acc.iter_mut().zip(row) {
                *acc += a * get(x);
            }
        }
        chunk.copy_from_slice(&acc);
    }
    let rest = chunks.into_remainder();
    let first = n - rest.len();
    rest.fill(0.0);
    for (t, &a) in att.iter().enumerate() {
        for (o, x) in rest.iter_mut().zip(&v[t * n + first..t * n + n]) {
            *o += a * get(x);
        }
    }
}
