//! 0/1 masks and signs: the diagonal factors in the derivatives of kinked primitives.
//! Generated code builds them once per linearization.

use super::Mapped;

fn indicator(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// `1[lo < xᵢ < hi]`.
pub fn between<T: Mapped>(v: T, lo: f64, hi: f64) -> T::Output {
    v.mapped(|x| indicator(lo < x && x < hi))
}

/// `1[xᵢ > s]`.
pub fn greater<T: Mapped>(v: T, s: f64) -> T::Output {
    v.mapped(|x| indicator(x > s))
}

/// `1[xᵢ < s]`.
pub fn less<T: Mapped>(v: T, s: f64) -> T::Output {
    v.mapped(|x| indicator(x < s))
}

/// `1[xᵢ ≥ s]`.
pub fn at_least<T: Mapped>(v: T, s: f64) -> T::Output {
    v.mapped(|x| indicator(x >= s))
}

/// `1[xᵢ ≤ s]`.
pub fn at_most<T: Mapped>(v: T, s: f64) -> T::Output {
    v.mapped(|x| indicator(x <= s))
}

/// `1[|xᵢ| > t]`.
pub fn outside<T: Mapped>(v: T, t: f64) -> T::Output {
    v.mapped(|x| indicator(x.abs() > t))
}

/// `sign(xᵢ)` with `sign(0) = 0`.
pub fn sign<T: Mapped>(v: T) -> T::Output {
    v.mapped(|x| {
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
    // Branch-free: a mask is as unpredictable as the free set, and a mispredicted branch
    // per entry costs more than the loop. Counted first for one exact allocation (one
    // spare slot takes the last write).
    // Slices, not nalgebra's strided iterators: these loops then vectorize.
    let m = m.as_slice();
    let count: usize = m.iter().map(|&x| usize::from(x != 0.0)).sum();
    // Not `vec!`: `calloc` costs more than writing a few entries.
    let mut out: Vec<usize> = std::iter::repeat_n(0, count + 1).collect();
    let mut k = 0;
    for (i, &x) in m.iter().enumerate() {
        out[k] = i;
        k += usize::from(x != 0.0);
    }
    out.truncate(count);
    out
}
