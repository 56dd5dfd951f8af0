//! Activations as the kernels take them: the f32 values, and, for the
//! quantized weight types, their int8 quantization (Q8 blocks of 32 for the
//! 32-wide types, Q8_K super-blocks of 256 for the K-quants; a batch may
//! carry both when its matrices are of both kinds).

/// Elements per block of the 32-wide types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
/// IQ4_NL) and of the Q8 activation blocks.
pub const QK: usize = 32;

/// Elements per super-block of the K-quants and of the Q8_K activations.
pub const QK_K: usize = 256;

/// The Q8_K quantization of activations: per super-block of 256 values a
/// scale `d`, the int8 values `q` (`-127..=127`) and the sums of each 16 of
/// them (`bsums`). Empty when absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Q8K<'a> {
    /// Scale per 256 values.
    pub d: &'a [f32],
    /// Sum of `q` per 16 values.
    pub bsums: &'a [i16],
    /// The quantized values.
    pub q: &'a [i8],
}

impl<'a> Q8K<'a> {
    /// Values `v0..v1` (multiples of 256) of the quantization.
    fn range(&self, v0: usize, v1: usize) -> Q8K<'a> {
        if self.q.is_empty() {
            return Q8K::default();
        }
        Q8K {
            d: &self.d[v0 / QK_K..v1 / QK_K],
            bsums: &self.bsums[v0 / 16..v1 / 16],
            q: &self.q[v0..v1],
        }
    }
}

/// The Q8 values and scales of a batch again, transposed for the `amx`
/// set's tile products: for each 16 vectors (a *chunk*; the last one
/// padded with zeros) and each block `k` of 32 values, 512 bytes: row `g`
/// (64 bytes) holds values `4g..4g+4` of block `k` of each of the 16
/// vectors; and the chunk's 16 scales of block `k`. Made by
/// [`super::quantize_batch`] when the kernel set asks for it and the
/// caller gave room; empty otherwise (the kernels then do without).
#[derive(Debug, Clone, Copy, Default)]
pub struct Q8T<'a> {
    /// `(chunk * blocks + k) * 512 + 64 g + 4 v + j`: value `32 k + 4 g +
    /// j` of vector `16 chunk + v`.
    pub q: &'a [i8],
    /// `(chunk * blocks + k) * 16 + v`: block `k`'s scale of vector `16
    /// chunk + v`.
    pub d: &'a [f32],
}

/// Vectors per chunk of [`Q8T`].
pub const CHUNK: usize = 16;

/// Writes the transposed copy ([`Q8T`]) of the Q8 values `q` and scales
/// `d` of `n` vectors of `cols` values into `tq` and `td` (at least `n`
/// rounded up to 16, times `cols` and `cols / 32`).
pub fn transpose_q8(q: &[i8], d: &[f32], n: usize, cols: usize, tq: &mut [i8], td: &mut [f32]) {
    let nb = cols / QK;
    let chunks = n.div_ceil(CHUNK);
    assert!(
        q.len() >= n * cols
            && d.len() >= n * nb
            && tq.len() >= chunks * CHUNK * cols
            && td.len() >= chunks * CHUNK * nb,
        "transpose_q8: buffers too short"
    );
    for c in 0..chunks {
        for k in 0..nb {
            let unit = (c * nb + k) * 512;
            for v in 0..CHUNK {
                let b = c * CHUNK + v;
                td[(c * nb + k) * CHUNK + v] = if b < n { d[b * nb + k] } else { 0.0 };
                for g in 0..8 {
                    for j in 0..4 {
                        let x = if b < n {
                            q[b * cols + QK * k + 4 * g + j]
                        } else {
                            0
                        };
                        tq[unit + 64 * g + 4 * v + j] = x;
                    }
                }
            }
        }
    }
}

/// One activation vector, with its quantizations when the weights need them.
#[derive(Debug, Clone, Copy)]
pub struct Act<'a> {
    /// The activations.
    pub x: &'a [f32],
    /// Q8, per block of 32: the scale (`x ~ d * q`); empty when absent.
    pub d: &'a [f32],
    /// Q8, per block of 32: the sum of its `q` (for the types whose values
    /// have an offset or a minimum).
    pub sum: &'a [i32],
    /// Q8: the quantized activations, `x.len()` of them, in `-127..=127`.
    pub q: &'a [i8],
    /// The Q8_K quantization (K-quants); empty when absent.
    pub k: Q8K<'a>,
}

/// A batch of `n` activation vectors of `cols` elements each, stored one
/// after the other, with their quantizations when the weights need them.
///
/// Vector `b` is `x[b * cols..(b + 1) * cols]`; its Q8 blocks are
/// `d[b * cols / 32..]`, `sum[b * cols / 32..]` and `q[b * cols..]`, its
/// Q8_K super-blocks likewise (the layout of the whole `x` quantized as one
/// long vector). A quantization that was not made is empty.
#[derive(Debug, Clone, Copy)]
pub struct Acts<'a> {
    /// Number of activation vectors.
    pub n: usize,
    /// Elements per vector (the weight's `cols`).
    pub cols: usize,
    /// The activations, `n * cols`.
    pub x: &'a [f32],
    /// Q8 scale per block of 32, `n * cols / 32`; empty when absent.
    pub d: &'a [f32],
    /// Q8 sum of `q` per block of 32; empty when absent.
    pub sum: &'a [i32],
    /// Q8 values, `n * cols`; empty when absent.
    pub q: &'a [i8],
    /// The Q8_K quantization; empty when absent.
    pub k: Q8K<'a>,
    /// The Q8 quantization transposed for the `amx` set; empty when absent
    /// (and in a range that does not start a chunk).
    pub t: Q8T<'a>,
}

impl<'a> Acts<'a> {
    /// A batch of `n` unquantized vectors: `x.len()` must be a multiple of
    /// `n`.
    pub fn unquantized(x: &'a [f32], n: usize) -> Acts<'a> {
        let cols = x.len().checked_div(n).unwrap_or(0);
        assert_eq!(cols * n, x.len(), "Acts: length is not n * cols");
        Acts {
            n,
            cols,
            x,
            d: &[],
            sum: &[],
            q: &[],
            k: Q8K::default(),
            t: Q8T::default(),
        }
    }

    /// The batch holding the single vector `a`.
    pub fn one(a: &Act<'a>) -> Acts<'a> {
        Acts {
            n: 1,
            cols: a.x.len(),
            x: a.x,
            d: a.d,
            sum: a.sum,
            q: a.q,
            k: a.k,
            t: Q8T::default(),
        }
    }

    /// Whether the batch carries its Q8 quantization.
    pub fn is_quantized(&self) -> bool {
        !self.q.is_empty()
    }

    /// Whether the batch carries its Q8_K quantization.
    pub fn has_q8k(&self) -> bool {
        !self.k.q.is_empty()
    }

    /// Vector `b` of the batch.
    pub fn get(&self, b: usize) -> Act<'a> {
        let r = self.range(b, b + 1);
        Act {
            x: r.x,
            d: r.d,
            sum: r.sum,
            q: r.q,
            k: r.k,
        }
    }

    /// Vectors `b0..b1` of the batch.
    pub fn range(&self, b0: usize, b1: usize) -> Acts<'a> {
        let c = self.cols;
        let q8 = self.is_quantized();
        let (v0, v1) = (b0 * c, b1 * c);
        Acts {
            n: b1 - b0,
            cols: c,
            x: &self.x[v0..v1],
            d: if q8 { &self.d[v0 / QK..v1 / QK] } else { &[] },
            sum: if q8 { &self.sum[v0 / QK..v1 / QK] } else { &[] },
            q: if q8 { &self.q[v0..v1] } else { &[] },
            k: self.k.range(v0, v1),
            t: self.t_range(b0, b1),
        }
    }

    /// The transposed copy of vectors `b0..b1` (empty unless `b0` starts a
    /// chunk).
    fn t_range(&self, b0: usize, b1: usize) -> Q8T<'a> {
        if self.t.q.is_empty() || !b0.is_multiple_of(CHUNK) {
            return Q8T::default();
        }
        let nb = self.cols / QK;
        let (c0, c1) = (b0 / CHUNK, b1.div_ceil(CHUNK));
        Q8T {
            q: &self.t.q[c0 * CHUNK * self.cols..c1 * CHUNK * self.cols],
            d: &self.t.d[c0 * CHUNK * nb..c1 * CHUNK * nb],
        }
    }
}
