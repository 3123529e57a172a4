//! `linsolve(a, b) = a⁻¹ b`: a linear solve inside an update rule (Newton and proximal
//! steps, implicit Euler, splitting methods).
//!
//! Derivatives, with `x = a⁻¹ b` and `w = a⁻ᵀ v`: `∂b = w`, `∂a = −w xᵀ` (VJP);
//! `dx = a⁻¹ (db − da x)` (JVP). Generated code factors `a` once per linearization and
//! reuses the factors in every product — Cholesky when `a` is symmetric positive definite,
//! LU otherwise (`Factorization`); a singular `a` is [`FoldError::Singular`].

use crate::linalg::Factorization;
use crate::FoldError;
use nalgebra::{DMatrix, DVector};

/// A right-hand side of [`linsolve`]: a vector or a matrix (solved column by column).
pub trait LinsolveRhs: Sized {
    /// Rows of the right-hand side (must equal the order of `a`).
    fn rows(&self) -> usize;
    /// `a⁻¹ self` from the factors of `a`.
    fn solve_with(&self, f: &Factorization) -> Self;
    /// The same shape filled with NaN.
    fn nan_like(&self) -> Self;
    /// Whether every entry is finite.
    fn all_finite(&self) -> bool;
}

impl LinsolveRhs for DVector<f64> {
    fn rows(&self) -> usize {
        self.len()
    }
    fn solve_with(&self, f: &Factorization) -> Self {
        f.solve(self)
    }
    fn nan_like(&self) -> Self {
        DVector::from_element(self.len(), f64::NAN)
    }
    fn all_finite(&self) -> bool {
        self.iter().all(|v| v.is_finite())
    }
}

impl LinsolveRhs for DMatrix<f64> {
    fn rows(&self) -> usize {
        self.nrows()
    }
    fn solve_with(&self, f: &Factorization) -> Self {
        let mut out = self.clone();
        for (j, col) in self.column_iter().enumerate() {
            out.set_column(j, &f.solve(&col.into_owned()));
        }
        out
    }
    fn nan_like(&self) -> Self {
        DMatrix::from_element(self.nrows(), self.ncols(), f64::NAN)
    }
    fn all_finite(&self) -> bool {
        self.iter().all(|v| v.is_finite())
    }
}

/// `a⁻¹ b` for a square `a` and a vector or matrix `b`; all NaN when `a` is singular, the
/// shapes disagree or an input or the solution is not finite (see [`try_linsolve`] for the
/// error).
pub fn linsolve<B: LinsolveRhs>(a: &DMatrix<f64>, b: &B) -> B {
    try_linsolve(a, b).unwrap_or_else(|_| b.nan_like())
}

/// `a⁻¹ b`, or `Singular` / `NonFinite` (a NaN or infinity in `a`, in `b` or, by overflow,
/// in the solution) / `DimensionMismatch`.
pub fn try_linsolve<B: LinsolveRhs>(a: &DMatrix<f64>, b: &B) -> Result<B, FoldError> {
    if a.nrows() != b.rows() {
        return Err(FoldError::dimension(
            "`linsolve` right-hand side rows (must equal the matrix order)",
            a.nrows(),
            b.rows(),
        ));
    }
    if !b.all_finite() {
        return Err(FoldError::non_finite("`linsolve` right-hand side"));
    }
    let f = Factorization::factor(a)?;
    let x = b.solve_with(&f);
    if !x.all_finite() {
        return Err(FoldError::non_finite("`linsolve` solution (overflow)"));
    }
    Ok(x)
}
