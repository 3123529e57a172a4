//! 0/1 masks and signs: the diagonal factors in the derivatives of kinked primitives.
//! Generated code builds them once per linearization.

use super::Elementwise;

fn indicator(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// `1[lo < xᵢ < hi]`.
pub fn between<T: Elementwise>(v: &T, lo: f64, hi: f64) -> T {
    v.map_entries(|x| indicator(lo < x && x < hi))
}

/// `1[xᵢ > s]`.
pub fn greater<T: Elementwise>(v: &T, s: f64) -> T {
    v.map_entries(|x| indicator(x > s))
}

/// `1[xᵢ < s]`.
pub fn less<T: Elementwise>(v: &T, s: f64) -> T {
    v.map_entries(|x| indicator(x < s))
}

/// `1[xᵢ ≥ s]`.
pub fn at_least<T: Elementwise>(v: &T, s: f64) -> T {
    v.map_entries(|x| indicator(x >= s))
}

/// `1[xᵢ ≤ s]`.
pub fn at_most<T: Elementwise>(v: &T, s: f64) -> T {
    v.map_entries(|x| indicator(x <= s))
}

/// `1[|xᵢ| > t]`.
pub fn outside<T: Elementwise>(v: &T, t: f64) -> T {
    v.map_entries(|x| indicator(x.abs() > t))
}

/// `sign(xᵢ)` with `sign(0) = 0`.
pub fn sign<T: Elementwise>(v: &T) -> T {
    v.map_entries(|x| {
        if x > 0.0 {
            1.0
        } else if x < 0.0 {
            -1.0
        } else {
            0.0
        }
    })
}

/// Indices `i` with `mᵢ ≠ 0`, increasing.
pub fn support(m: &nalgebra::DVector<f64>) -> Vec<usize> {
    // Counted first: one exact allocation for supports of 10⁶ entries.
    let mut out = Vec::with_capacity(m.iter().filter(|&&x| x != 0.0).count());
    out.extend(
        m.iter()
            .enumerate()
            .filter(|(_, &x)| x != 0.0)
            .map(|(i, _)| i),
    );
    out
}
