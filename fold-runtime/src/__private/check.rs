//! Input validation shared by the runtime and generated code.

use crate::FoldError;
use nalgebra::{DMatrix, DVector};

/// Whether every value is finite; vectorizes (no early exit) because inputs are
/// finite in the common case and a full pass is then the cheapest.
#[inline]
pub fn all_finite(values: &[f64]) -> bool {
    // Below a few chunks the plain loop's setup is cheaper than the lanes'.
    if values.len() < 32 {
        return values.iter().all(|v| v.is_finite());
    }
    let mut acc = [0.0f64; 8];
    let mut chunks = values.chunks_exact(8);
    for c in &mut chunks {
        for k in 0..8 {
            acc[k] += c[k] * 0.0;
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|v| v * 0.0).sum();
    // x * 0.0 is 0 for finite x and NaN for NaN or ±∞.
    (acc.iter().sum::<f64>() + tail) == 0.0
}

/// `Err(NonFinite { what })` unless every entry of the slice is finite.
#[inline]
pub fn finite(values: &[f64], what: &str) -> Result<(), FoldError> {
    if all_finite(values) {
        Ok(())
    } else {
        Err(FoldError::non_finite(what))
    }
}

/// `Err(NonFinite)` unless the scalar is finite.
#[inline]
pub fn finite_scalar(value: f64, what: &str) -> Result<(), FoldError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(FoldError::non_finite(what))
    }
}

/// `Err(NonFinite)` unless every entry of the vector is finite.
#[inline]
pub fn finite_vector(value: &DVector<f64>, what: &str) -> Result<(), FoldError> {
    finite(value.as_slice(), what)
}

/// `Err(NonFinite)` unless every entry of the matrix is finite.
#[inline]
pub fn finite_matrix(value: &DMatrix<f64>, what: &str) -> Result<(), FoldError> {
    finite(value.as_slice(), what)
}

/// `Err(DimensionMismatch)` unless `found == expected`.
#[inline]
pub fn same_dim(what: &str, expected: usize, found: usize) -> Result<(), FoldError> {
    if expected == found {
        Ok(())
    } else {
        Err(FoldError::dimension(what, expected, found))
    }
}

/// [`same_dim`] for each `(what, expected, found)` in order: the first mismatch.
pub fn dims<const N: usize>(checks: [(&str, usize, usize); N]) -> Result<(), FoldError> {
    checks
        .into_iter()
        .try_for_each(|(what, expected, found)| same_dim(what, expected, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_nan_and_inf_anywhere() {
        for n in [0usize, 1, 7, 8, 9, 33] {
            let v = vec![1.5; n];
            assert!(all_finite(&v));
            for i in 0..n {
                for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                    let mut w = v.clone();
                    w[i] = bad;
                    assert!(!all_finite(&w), "n={n} i={i} bad={bad}");
                }
            }
        }
    }

    #[test]
    fn large_finite_values_pass() {
        assert!(all_finite(&[f64::MAX, -f64::MAX, f64::MIN_POSITIVE, 0.0]));
    }
}
