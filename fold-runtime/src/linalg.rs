//! Dense kernels generated code and solvers call: products that never materialize a
//! transpose, and factorizations.
// PLACEHOLDER: naive nalgebra versions; the runtime-core work replaces them with measured ones.

use crate::FoldError;
use nalgebra::{DMatrix, DVector};

/// `y ← α A x + β y`.
pub fn gemv(y: &mut DVector<f64>, alpha: f64, a: &DMatrix<f64>, x: &DVector<f64>, beta: f64) {
    y.gemv(alpha, a, x, beta);
}

/// `y ← α Aᵀ x + β y`, without forming `Aᵀ`.
pub fn gemv_t(y: &mut DVector<f64>, alpha: f64, a: &DMatrix<f64>, x: &DVector<f64>, beta: f64) {
    y.gemv_tr(alpha, a, x, beta);
}

/// `A x` into a new vector.
pub fn mat_vec(a: &DMatrix<f64>, x: &DVector<f64>) -> DVector<f64> {
    let mut y = DVector::zeros(a.nrows());
    gemv(&mut y, 1.0, a, x, 0.0);
    y
}

/// `Aᵀ x` into a new vector, without forming `Aᵀ`.
pub fn mat_t_vec(a: &DMatrix<f64>, x: &DVector<f64>) -> DVector<f64> {
    let mut y = DVector::zeros(a.ncols());
    gemv_t(&mut y, 1.0, a, x, 0.0);
    y
}

/// An LU factorization with partial pivoting.
pub struct Lu {
    lu: nalgebra::LU<f64, nalgebra::Dyn, nalgebra::Dyn>,
}

impl Lu {
    /// Factors a square matrix; `Singular` if a pivot vanishes.
    pub fn factor(a: &DMatrix<f64>) -> Result<Lu, FoldError> {
        let lu = a.clone().lu();
        if !lu.is_invertible() {
            return Err(FoldError::Singular);
        }
        Ok(Lu { lu })
    }

    /// `A⁻¹ b`.
    pub fn solve(&self, b: &DVector<f64>) -> DVector<f64> {
        self.lu
            .solve(b)
            .unwrap_or_else(|| DVector::from_element(b.len(), f64::NAN))
    }
}
