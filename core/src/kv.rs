//! The KV cache: how keys and values are stored, written, and read back by
//! attention.
//!
//! # Layout
//!
//! Each cache (keys, values) is `[layer][unit][position][row]`. A *unit* is
//! one kv head (F32, F16, and Q8_0 with heads of at least 32 values): the
//! rows of a head are then one contiguous matrix, one row per position, so
//! attention's scores are a matrix product through the SIMD kernels, each
//! key row read once for all the query heads that share it. With a Q8_0
//! cache and heads narrower than 32 values (tiny models such as
//! stories260K), the unit is a position's whole kv vector, whose blocks of
//! 32 then span several heads (one f16 scale per 32 values, whatever the
//! head size); attention then runs in plain loops.
//!
//! # Types
//!
//! - F32: exact; 4 bytes per value.
//! - F16: about 3 decimal digits; 2 bytes per value.
//! - Q8_0: each row quantized as it is written, by ggml's Q8_0 rule (blocks
//!   of 32, `d = max|x| / 127` as f16, `q = round(x / d)`; a row shorter than
//!   its blocks is padded with zeros); 34 bytes per 32 values. Attention
//!   quantizes each query the same way (Q8 blocks) and takes the
//!   fixed-point path (`kernels::scalar::kv_scores_q8_0`); the weighted sum
//!   of Q8_0 value rows goes through the kernel sets too.

use crate::kernels::types::float::f16_bits_to_f32;
use crate::kernels::types::QK;
use crate::kernels::{self, Acts, TensorType, ValueRows};
use crate::matmul;
use crate::model::Config;
use crate::parallel::Inline;
use crate::tensor::Tensor;

/// Element type of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[allow(non_camel_case_types)]
pub enum KvType {
    /// Single precision: exact, 4 bytes per value.
    #[default]
    F32,
    /// Half precision: half the memory, about 3 decimal digits.
    F16,
    /// ggml's Q8_0 blocks of 32 int8 values and an f16 scale: 34 bytes per
    /// 32 values, a little over a quarter of F32.
    Q8_0,
}

/// Head size from which attention scores go through the SIMD kernels
/// (stories260K's 8 is faster in plain loops; Llama 2's 64 and 128 are
/// faster through the kernels).
pub(crate) const KERNEL_HEAD_DIM: usize = 32;

/// Where the rows of a cache are (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// The cache's element type.
    pub kv_type: KvType,
    /// Positions per unit.
    pub ctx: usize,
    /// Layers.
    pub n_layers: usize,
    /// Units per layer: the kv heads, or 1.
    pub units: usize,
    /// Values per unit: the head size, or the kv vector's.
    pub unit_values: usize,
    /// Bytes per row (one position of one unit).
    pub row_bytes: usize,
    /// Values per head.
    pub head_dim: usize,
}

impl Geometry {
    /// The geometry of a `kv_type` cache of `ctx` positions for `c`.
    pub fn new(kv_type: KvType, c: &Config, ctx: usize) -> Geometry {
        let head_dim = c.head_dim();
        let per_head = kv_type != KvType::Q8_0 || head_dim >= QK;
        let (units, unit_values) = if per_head {
            (c.n_kv_heads, head_dim)
        } else {
            (1, c.kv_dim())
        };
        let row_bytes = match kv_type {
            KvType::F32 => 4 * unit_values,
            KvType::F16 => 2 * unit_values,
            KvType::Q8_0 => unit_values.div_ceil(QK) * 34,
        };
        Geometry {
            kv_type,
            ctx,
            n_layers: c.n_layers,
            units,
            unit_values,
            row_bytes,
            head_dim,
        }
    }

    /// Bytes of one cache (keys or values), in u64 (checked by the caller).
    pub fn bytes(&self) -> u64 {
        (self.n_layers * self.units) as u64 * self.ctx as u64 * self.row_bytes as u64
    }

    /// Q8_0 blocks per row.
    fn blocks(&self) -> usize {
        self.row_bytes / 34
    }

    /// Whether attention reads a kv head as a contiguous matrix.
    fn per_head(&self) -> bool {
        self.units > 1 || self.unit_values == self.head_dim
    }

    /// Byte offset of row `t` of unit `u` of layer `l`.
    fn row_at(&self, l: usize, u: usize, t: usize) -> usize {
        ((l * self.units + u) * self.ctx + t) * self.row_bytes
    }

    /// `f32`s of per-task scratch a task of attention needs beside its
    /// scores, for `kv_mul` queries: with a per-head Q8_0 cache, each query
    /// padded to whole blocks and its Q8 quantization.
    pub fn query_scratch(&self, kv_mul: usize) -> usize {
        if self.kv_type == KvType::Q8_0 && self.per_head() {
            let padded = self.blocks() * QK;
            // Padded values, scales, sums, int8 values (4 per f32).
            kv_mul * (padded + 2 * self.blocks() + padded / 4)
        } else {
            0
        }
    }
}

/// One cache's storage.
pub(crate) enum KvData<'a> {
    F32(&'a mut [f32]),
    F16(&'a mut [u16]),
    Q8_0(&'a mut [u8]),
}

/// One cache (keys or values) of a session.
pub(crate) struct KvCache<'a> {
    data: KvData<'a>,
    geo: Geometry,
}

impl<'a> KvCache<'a> {
    /// A cache of geometry `geo` in `buf` (exactly `geo.bytes()` long,
    /// aligned for the element type; empty when the session's memory is
    /// only being counted).
    pub fn new(geo: Geometry, buf: &'a mut [u8]) -> KvCache<'a> {
        // An empty slice's pointer may be unaligned: make empty typed ones.
        let data = match geo.kv_type {
            KvType::F32 if buf.is_empty() => KvData::F32(&mut []),
            KvType::F16 if buf.is_empty() => KvData::F16(&mut []),
            KvType::F32 => KvData::F32(bytemuck::cast_slice_mut(buf)),
            KvType::F16 => KvData::F16(bytemuck::cast_slice_mut(buf)),
            KvType::Q8_0 => KvData::Q8_0(buf),
        };
        KvCache { data, geo }
    }

    /// Its geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// Stores `v` (a position's `kv_dim` values, head after head) as
    /// position `t` of layer `l`.
    pub fn write(&mut self, l: usize, t: usize, v: &[f32]) {
        let geo = self.geo;
        for (u, part) in v.chunks_exact(geo.unit_values).enumerate() {
            let at = geo.row_at(l, u, t);
            match &mut self.data {
                KvData::F32(c) => c[at / 4..at / 4 + part.len()].copy_from_slice(part),
                KvData::F16(c) => {
                    for (o, &x) in c[at / 2..at / 2 + part.len()].iter_mut().zip(part) {
                        *o = half::f16::from_f32(x).to_bits();
                    }
                }
                KvData::Q8_0(c) => {
                    let row = &mut c[at..at + geo.row_bytes];
                    for (blk, xs) in row.chunks_exact_mut(34).zip(part.chunks(QK)) {
                        let mut x = [0f32; QK];
                        x[..xs.len()].copy_from_slice(xs);
                        quantize_q8_0_block(&x, blk);
                    }
                }
            }
        }
    }

    /// Attention scores of the query heads `q` (`head_dim` each) that read
    /// kv head `g` of layer `l`, against positions `0..seen`:
    /// `att[j * seen + t] = dot(q_j, key t)`. `scratch` is the task's
    /// [`Geometry::query_scratch`].
    pub fn scores(
        &self,
        (l, g): (usize, usize),
        seen: usize,
        q: &[f32],
        att: &mut [f32],
        scratch: &mut [f32],
    ) {
        let geo = &self.geo;
        let hd = geo.head_dim;
        let n_q = q.len() / hd;
        if !geo.per_head() {
            // A narrow Q8_0 cache: plain loops, decoding as they go.
            let KvData::Q8_0(c) = &self.data else {
                unreachable!("only Q8_0 caches span heads")
            };
            for t in 0..seen {
                let row = &c[geo.row_at(l, 0, t)..][..geo.row_bytes];
                let mut key = [0f32; KERNEL_HEAD_DIM];
                let key = &mut key[..hd];
                decode_q8_0(row, g * hd, key);
                for (j, qj) in q.chunks_exact(hd).enumerate() {
                    att[j * seen + t] = dot(qj, key);
                }
            }
            return;
        }
        let rows = geo.row_at(l, g, 0)..geo.row_at(l, g, seen);
        match &self.data {
            KvData::F32(c) if hd < KERNEL_HEAD_DIM => {
                let keys = &c[rows.start / 4..rows.end / 4];
                // The common narrow widths with the width known to the
                // compiler (unrolled, no loop per key; the same sums).
                match hd {
                    8 => narrow_scores::<8>(keys, q, seen, att),
                    16 => narrow_scores::<16>(keys, q, seen, att),
                    _ => {
                        for (t, key) in keys.chunks_exact(hd).enumerate() {
                            for (j, qj) in q.chunks_exact(hd).enumerate() {
                                att[j * seen + t] = dot(qj, key);
                            }
                        }
                    }
                }
            }
            KvData::F16(c) if hd < KERNEL_HEAD_DIM => {
                let keys = &c[rows.start / 2..rows.end / 2];
                for (t, key) in keys.chunks_exact(hd).enumerate() {
                    for (j, qj) in q.chunks_exact(hd).enumerate() {
                        att[j * seen + t] = dot_f16(qj, key);
                    }
                }
            }
            KvData::F32(_) | KvData::F16(_) => {
                let (ty, data): (TensorType, &[u8]) = match &self.data {
                    KvData::F32(c) => (
                        TensorType::F32,
                        bytemuck::cast_slice(&c[rows.start / 4..rows.end / 4]),
                    ),
                    KvData::F16(c) => (
                        TensorType::F16,
                        bytemuck::cast_slice(&c[rows.start / 2..rows.end / 2]),
                    ),
                    KvData::Q8_0(_) => unreachable!(),
                };
                let keys = Tensor {
                    ty,
                    rows: seen,
                    cols: hd,
                    data,
                    scales: &[],
                };
                matmul::matmul(
                    &Inline,
                    &mut att[..n_q * seen],
                    &keys,
                    &Acts::unquantized(q, n_q),
                );
            }
            KvData::Q8_0(c) => {
                // Each query padded to whole blocks and quantized (Q8), then
                // the fixed-point scores.
                let nb = geo.blocks();
                let padded = nb * QK;
                let (xs, rest) = scratch.split_at_mut(n_q * padded);
                let (qd, rest) = rest.split_at_mut(n_q * nb);
                let (qsum, rest) = rest.split_at_mut(n_q * nb);
                let qsum: &mut [i32] = bytemuck::cast_slice_mut(qsum);
                let qs: &mut [i8] = bytemuck::cast_slice_mut(&mut rest[..n_q * padded / 4]);
                let k = kernels::active();
                for (j, qj) in q.chunks_exact(hd).enumerate() {
                    let x = &mut xs[j * padded..(j + 1) * padded];
                    x[..hd].copy_from_slice(qj);
                    x[hd..].fill(0.0);
                    let (d, s, v) = (
                        &mut qd[j * nb..(j + 1) * nb],
                        &mut qsum[j * nb..(j + 1) * nb],
                        &mut qs[j * padded..(j + 1) * padded],
                    );
                    (k.quantize)(x, d, s, v);
                    (k.kv_scores_q8_0)(
                        &c[rows.clone()],
                        nb,
                        d,
                        s,
                        v,
                        &mut att[j * seen..(j + 1) * seen],
                    );
                }
            }
        }
    }

    /// `out = sum over t of att[t] * value t` of kv head `g` of layer `l`
    /// (`att.len()` positions, `out` a head wide).
    pub fn weighted_sum(&self, (l, g): (usize, usize), att: &[f32], out: &mut [f32]) {
        let geo = &self.geo;
        let hd = geo.head_dim;
        if !geo.per_head() {
            let KvData::Q8_0(c) = &self.data else {
                unreachable!("only Q8_0 caches span heads")
            };
            out.fill(0.0);
            let mut v = [0f32; KERNEL_HEAD_DIM];
            let v = &mut v[..hd];
            for (t, &a) in att.iter().enumerate() {
                decode_q8_0(&c[geo.row_at(l, 0, t)..][..geo.row_bytes], g * hd, v);
                for (o, &v) in out.iter_mut().zip(v.iter()) {
                    *o += a * v;
                }
            }
            return;
        }
        let rows = geo.row_at(l, g, 0)..geo.row_at(l, g, att.len());
        let v = match &self.data {
            KvData::F32(c) => ValueRows::F32(&c[rows.start / 4..rows.end / 4]),
            KvData::F16(c) => ValueRows::F16(&c[rows.start / 2..rows.end / 2]),
            KvData::Q8_0(c) => ValueRows::Q8_0 {
                rows: &c[rows],
                nb: geo.blocks(),
            },
        };
        if hd < KERNEL_HEAD_DIM {
            // Narrow heads: the same sums, inlined here (a call costs more).
            kernels::scalar::weighted_sum(att, v, out);
        } else {
            (kernels::active().weighted_sum)(att, v, out);
        }
    }

    /// The stored bytes of positions `0..n` of unit `u` of layer `l` (for
    /// saved states).
    pub fn unit_rows_mut(&mut self, l: usize, u: usize, n: usize) -> &mut [u8] {
        let range = self.geo.row_at(l, u, 0)..self.geo.row_at(l, u, n);
        match &mut self.data {
            KvData::F32(c) => &mut bytemuck::cast_slice_mut(c)[range],
            KvData::F16(c) => &mut bytemuck::cast_slice_mut(c)[range],
            KvData::Q8_0(c) => &mut c[range],
        }
    }
}

/// One Q8_0 block (34 bytes) of 32 values, by ggml's rule.
fn quantize_q8_0_block(x: &[f32; QK], out: &mut [u8]) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out[..2].copy_from_slice(&half::f16::from_f32(d).to_bits().to_le_bytes());
    for (q, &v) in out[2..34].iter_mut().zip(x) {
        *q = libm::roundf(v * id) as i8 as u8;
    }
}

/// Values `first..first + out.len()` of a Q8_0 row, decoded (`d * q`),
/// each block's scale converted once.
fn decode_q8_0(row: &[u8], first: usize, out: &mut [f32]) {
    let mut at = first;
    let mut out = out;
    while !out.is_empty() {
        let blk = &row[at / QK * 34..][..34];
        let d = f16_bits_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
        let n = (QK - at % QK).min(out.len());
        let (here, rest) = out.split_at_mut(n);
        for (o, &q) in here.iter_mut().zip(&blk[2 + at % QK..]) {
            *o = d * f32::from(q as i8);
        }
        out = rest;
        at += n;
    }
}

/// `sum(a[i] * b[i])` in eight interleaved partial sums (which vectorise).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    // Zipped iterators, not indices: LLVM then keeps lanes 0..4 and 4..8 as
    // two vector accumulators (indexing made it shuffle lanes every step).
    for (x, y) in ac.zip(bc) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    for ((s, x), y) in acc.iter_mut().zip(ar).zip(br) {
        *s += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// [`KvCache::scores`] over F32 keys `HD` values wide: the same [`dot`]s,
/// with the width a constant.
#[inline(always)]
fn narrow_scores<const HD: usize>(keys: &[f32], q: &[f32], seen: usize, att: &mut [f32]) {
    for (qj, att) in q.chunks_exact(HD).zip(att.chunks_exact_mut(seen)) {
        for (a, key) in att.iter_mut().zip(keys.chunks_exact(HD)) {
            *a = dot(&qj[..HD], &key[..HD]);
        }
    }
}

/// [`dot`] with `b` in half precision.
fn dot_f16(a: &[f32], b: &[u16]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for ((s, x), &y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * f16_bits_to_f32(y);
        }
    }
    for ((s, x), &y) in acc.iter_mut().zip(ar).zip(br) {
        *s += x * f16_bits_to_f32(y);
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(head_dim: usize) -> Config {
        Config {
            dim: 6 * head_dim,
            hidden_dim: 8,
            n_layers: 2,
            n_heads: 6,
            n_kv_heads: 3,
            vocab_size: 8,
            seq_len: 40,
            rms_eps: 1e-5,
            rope_theta: 10000.0,
        }
    }

    /// Writes `seen` random positions into layer 1 of a cache of each type
    /// and head size (narrow heads with plain loops, wide ones through the
    /// kernels, Q8_0 spanning heads below 32 values), then checks the
    /// scores and weighted sums of every kv head against f64 arithmetic
    /// on the values the cache holds (F32 exact, F16 rounded, Q8_0 decoded);
    /// a Q8_0 cache's scores also quantize the query (Q8 blocks), which
    /// costs up to half a step per query value.
    #[test]
    fn scores_and_weighted_sums_match_f64_on_the_stored_values() {
        let mut seed = 99u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let seen = 37;
        for kv_type in [KvType::F32, KvType::F16, KvType::Q8_0] {
            for head_dim in [8, 48, 64] {
                let c = config(head_dim);
                let geo = Geometry::new(kv_type, &c, c.seq_len);
                let mut buf = [0u64; 2 * 3 * 40 * 64 / 2];
                let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut buf);
                let mut cache = KvCache::new(geo, &mut bytes[..geo.bytes() as usize]);
                let kv_dim = c.kv_dim();
                let mut rows = [[0f32; 3 * 64]; 37];
                for (t, row) in rows.iter_mut().enumerate() {
                    for v in row[..kv_dim].iter_mut() {
                        *v = next();
                    }
                    cache.write(1, t, &row[..kv_dim]);
                }
                // What the cache holds, decoded.
                let stored = |t: usize, i: usize| -> f64 {
                    let x = rows[t][i];
                    match kv_type {
                        KvType::F32 => x as f64,
                        KvType::F16 => half::f16::from_f32(x).to_f32() as f64,
                        KvType::Q8_0 => {
                            // The block of value i within its unit.
                            let unit = if geo.units == 1 { kv_dim } else { head_dim };
                            let (u0, j) = (i / unit * unit, i % unit);
                            let blk = &rows[t][u0 + j / QK * QK..u0 + (j / QK * QK + QK).min(unit)];
                            let amax = blk.iter().fold(0f32, |m, v| m.max(v.abs()));
                            let d = amax / 127.0;
                            let q = libm::roundf(x / d);
                            half::f16::from_f32(d).to_f32() as f64 * q as f64
                        }
                    }
                };
                let q: [f32; 2 * 64] = core::array::from_fn(|_| next());
                let q = &q[..2 * head_dim];
                let mut scratch = [0f32; 2 * (64 + 4 + 16)];
                for g in 0..3 {
                    let mut att = [f32::NAN; 2 * 37];
                    cache.scores((1, g), seen, q, &mut att, &mut scratch);
                    for j in 0..2 {
                        for t in 0..seen {
                            let qj = &q[j * head_dim..(j + 1) * head_dim];
                            let (mut exact, mut mag) = (0f64, 0f64);
                            for (i, &qv) in qj.iter().enumerate() {
                                let k = stored(t, g * head_dim + i);
                                exact += qv as f64 * k;
                                mag += (qv as f64 * k).abs();
                            }
                            let got = att[j * seen + t] as f64;
                            let tol = if kv_type == KvType::Q8_0 && geo.units > 1 {
                                0.01 * mag + 1e-5
                            } else {
                                1e-5
                            };
                            assert!(
                                (got - exact).abs() <= tol,
                                "{kv_type:?} head_dim {head_dim} kv {g} q {j} t {t}: {got} vs {exact}"
                            );
                        }
                    }
                    let w: [f32; 37] = core::array::from_fn(|t| (t as f32 * 0.37).sin().abs());
                    let mut out = [f32::NAN; 64];
                    cache.weighted_sum((1, g), &w, &mut out[..head_dim]);
                    for (i, &o) in out[..head_dim].iter().enumerate() {
                        let exact: f64 = (0..seen)
                            .map(|t| w[t] as f64 * stored(t, g * head_dim + i))
                            .sum();
                        assert!(
                            (o as f64 - exact).abs() <= 1e-4,
                            "{kv_type:?} head_dim {head_dim} kv {g} value {i}: {o} vs {exact}"
                        );
                    }
                }
            }
        }
    }
}
