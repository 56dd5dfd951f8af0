//! llama2.c's "version 2" int8 weights: values in the tensor's data, one f32
//! scale per `group` values in a separate array (the tensor's `scales`).

use super::float::f32_at;

/// Row `r` (`row`, `cols` int8 values) of a split tensor, decoded into
/// `out`: `q * scale`.
pub fn dequantize(row: &[u8], scales: &[u8], r: usize, group: u32, out: &mut [f32]) {
    let g = group as usize;
    let first = r * row.len() / g;
    for (i, (o, &q)) in out.iter_mut().zip(row).enumerate() {
        *o = f32::from(q as i8) * f32_at(scales, first + i / g);
    }
}

/// Row `r` (`row`) of a split tensor times f32 activations: per group, the
/// products summed in order, times the group's scale, summed in order.
pub fn dot(row: &[u8], scales: &[u8], r: usize, group: u32, x: &[f32]) -> f32 {
    let g = group as usize;
    let first = r * row.len() / g;
    let mut sum = 0f32;
    for (k, (w, x)) in row.chunks_exact(g).zip(x.chunks_exact(g)).enumerate() {
        let mut acc = 0f32;
        for (&w, &x) in w.iter().zip(x) {
            acc += f32::from(w as i8) * x;
        }
        sum += acc * f32_at(scales, first + k);
    }
    sum
}
