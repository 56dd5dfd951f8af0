//! The scale searches ggml's K-quants share: for one small group of values,
//! pick a scale (and for the asymmetric types a minimum) and the integer
//! levels that go with it.
//!
//! Each follows the corresponding ggml function (named in its doc) in the
//! configuration the K-quants use without an importance matrix, with the
//! same f32 operations in the same order, so the chosen levels and scales
//! are bit-identical. Integers enter f32 arithmetic exactly where C converts
//! them implicitly (`w*x*l` is `(w*x)*(float)l`).

use super::scalar::{nearest_int, signed_absmax};

/// Groups whose largest magnitude is below this are all-zero (ggml's
/// `GROUP_MAX_EPS`).
pub(crate) const GROUP_MAX_EPS: f32 = 1e-15;

/// Symmetric levels `-nmax ..= nmax - 1` for `x`, searched for the least
/// x²-weighted squared error: ggml's `make_qx_quants` with `rmse_type = 1`
/// and no importance weights (what Q6_K uses).
///
/// Starts from the scale that maps the element of largest magnitude to
/// `-nmax`, then tries 18 nearby inverse scales `-(nmax + 0.1 i) / max`,
/// keeping a candidate when its least-squares fit is strictly better.
/// Writes `level + nmax` (`0 ..= 2 nmax - 1`) to `levels` and returns the
/// scale; an all-zero group (below [`GROUP_MAX_EPS`]) gets levels 0 (not
/// `nmax`) and scale 0.
pub(crate) fn make_qx_quants_rmse(nmax: i32, x: &[f32], levels: &mut [i8]) -> f32 {
    let (amax, max) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }
    let level = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    // Least-squares numerator and denominator for the levels `iscale` gives.
    let fit = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for &v in x {
            let l = level(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let store = |iscale: f32, levels: &mut [i8]| {
        for (o, &v) in levels.iter_mut().zip(x) {
            *o = (nmax + level(iscale, v)) as i8;
        }
    };

    let iscale = -(nmax as f32) / max;
    store(iscale, levels);
    let (sumlx, suml2) = fit(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for step in (-9..=9).filter(|&s| s != 0) {
        let iscale = -(nmax as f32 + 0.1 * step as f32) / max;
        let (sumlx, suml2) = fit(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            store(iscale, levels);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Symmetric levels `-nmax ..= nmax - 1` refined one element at a time:
/// ggml's `make_q3_quants` with `do_rmse` (what Q3_K uses).
///
/// Starts from the scale that maps the element of largest magnitude to
/// `-nmax`, then for up to 5 rounds moves each level to the one its
/// leave-one-out least-squares scale suggests, when that strictly improves
/// the x²-weighted fit. Writes `level + nmax` to `levels` and returns the
/// least-squares scale; an all-zero group gets levels 0 and scale 0.
pub(crate) fn make_q3_quants_rmse(nmax: i32, x: &[f32], levels: &mut [i8]) -> f32 {
    let (amax, max) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for (o, &v) in levels.iter_mut().zip(x) {
        let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        *o = l as i8;
        let w = v * v;
        sumlx += w * v * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut changed = false;
        for (o, &v) in levels.iter_mut().zip(x) {
            let w = v * v;
            let old = *o as f32;
            let mut slx = sumlx - w * v * old;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * old * old;
                let new = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new != i32::from(*o) {
                    slx += w * v * new as f32;
                    sl2 += w * new as f32 * new as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *o = new as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    for o in levels.iter_mut() {
        *o += nmax as i8;
    }
    sumlx / suml2
}

/// The grid [`make_qkx2_quants`] searches: inverse scales
/// `(rmin + rdelta i + nmax) / (max - min)` for `i` in `0 ..= nstep`.
pub(crate) struct MinGrid {
    /// Largest level.
    pub nmax: i32,
    /// Offset of the first inverse scale tried, in levels.
    pub rmin: f32,
    /// Step between inverse scales, in levels.
    pub rdelta: f32,
    /// Number of steps.
    pub nstep: i32,
    /// Weighted absolute error instead of weighted squared error.
    pub use_mad: bool,
}

/// Asymmetric levels `0 ..= nmax` with a scale and a minimum: ggml's
/// `make_qkx2_quants` (what Q2_K, Q4_K and Q5_K use).
///
/// The minimum starts at `min(x, 0)` and the scale at `(max - min) / nmax`;
/// each grid point's levels get a weighted least-squares scale and minimum
/// (the minimum clamped to at most 0), kept when its weighted error is
/// strictly lower. Writes the levels to `levels` (`scratch` is a buffer of
/// the same length) and returns `(scale, -min)`; a constant group gets
/// levels 0, scale 0 and `-min(x, 0)` (which may be `-0.0`).
pub(crate) fn make_qkx2_quants(
    grid: &MinGrid,
    x: &[f32],
    weights: &[f32],
    levels: &mut [u8],
    scratch: &mut [u8],
) -> (f32, f32) {
    let nmax = grid.nmax;
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for (&v, &w) in x.iter().zip(weights).skip(1) {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
        sum_w += w;
        sum_x += w * v;
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        levels.fill(0);
        return (0.0, -min);
    }
    let error = |diff: f32| {
        if grid.use_mad {
            diff.abs()
        } else {
            diff * diff
        }
    };

    let iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_mad = 0f32;
    for ((o, &v), &w) in levels.iter_mut().zip(x).zip(weights) {
        let l = nearest_int(iscale * (v - min)).clamp(0, nmax);
        *o = l as u8;
        best_mad += w * error(scale * l as f32 + min - v);
    }
    for step in 0..=grid.nstep {
        let iscale = (grid.rmin + grid.rdelta * step as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for ((o, &v), &w) in scratch.iter_mut().zip(x).zip(weights) {
            let l = nearest_int(iscale * (v - min)).clamp(0, nmax);
            *o = l as u8;
            let l = l as f32;
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * v;
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut mad = 0f32;
            for ((&l, &v), &w) in scratch.iter().zip(x).zip(weights) {
                mad += w * error(this_scale * l as f32 + this_min - v);
            }
            if mad < best_mad {
                levels.copy_from_slice(scratch);
                best_mad = mad;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}
