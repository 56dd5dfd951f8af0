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
        }
    }
}
