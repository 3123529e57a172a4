//! Vector reductions with a kink: `max`, `min` (and the indicators of where they are
//! attained, which are their derivatives).
//!
//! Ties: the derivative of `v.max()` is the indicator of the **first** maximal entry (a
//! one-sided derivative: it is exact for perturbations that keep that entry maximal); the
//! same for `min`. An empty or non-finite vector gives NaN (caught by the checks of the
//! generated code), never a panic.

use nalgebra::DVector;

fn extreme(v: &DVector<f64>, better: impl Fn(f64, f64) -> bool) -> Option<usize> {
    if v.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let mut best: Option<usize> = None;
    for (i, &x) in v.iter().enumerate() {
        if best.is_none_or(|b| better(x, v[b])) {
            best = Some(i);
        }
    }
    best
}

/// The largest entry; NaN for an empty or non-finite vector.
pub fn max_entry(v: &DVector<f64>) -> f64 {
    extreme(v, |a, b| a > b).map_or(f64::NAN, |i| v[i])
}

/// The smallest entry; NaN for an empty or non-finite vector.
pub fn min_entry(v: &DVector<f64>) -> f64 {
    extreme(v, |a, b| a < b).map_or(f64::NAN, |i| v[i])
}

fn indicator(v: &DVector<f64>, at: Option<usize>) -> DVector<f64> {
    match at {
        Some(i) => DVector::from_fn(v.len(), |j, _| if j == i { 1.0 } else { 0.0 }),
        None => DVector::from_element(v.len(), f64::NAN),
    }
}

/// The indicator of the first maximal entry (the derivative of [`max_entry`]).
pub fn argmax_indicator(v: &DVector<f64>) -> DVector<f64> {
    indicator(v, extreme(v, |a, b| a > b))
}

/// The indicator of the first minimal entry (the derivative of [`min_entry`]).
pub fn argmin_indicator(v: &DVector<f64>) -> DVector<f64> {
    indicator(v, extreme(v, |a, b| a < b))
}
