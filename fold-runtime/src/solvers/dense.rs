//! A dense matrix as an [`Operator`] (reduced systems, tests, benchmarks).

use super::Operator;
use crate::FoldError;
use nalgebra::{DMatrix, DVector};

/// `x ↦ A x` or `x ↦ Aᵀ x` for a dense square `A` (the transpose is never formed).
#[derive(Debug, Clone, Copy)]
pub struct DenseOperator<'a> {
    matrix: &'a DMatrix<f64>,
    transposed: bool,
}

impl<'a> DenseOperator<'a> {
    /// `x ↦ A x`; `DimensionMismatch` unless `A` is square.
    pub fn new(matrix: &'a DMatrix<f64>) -> Result<Self, FoldError> {
        crate::__private::check::same_dim(
            "columns of a square operator",
            matrix.nrows(),
            matrix.ncols(),
        )?;
        Ok(DenseOperator {
            matrix,
            transposed: false,
        })
    }

    /// `x ↦ Aᵀ x`; `DimensionMismatch` unless `A` is square.
    pub fn transposed(matrix: &'a DMatrix<f64>) -> Result<Self, FoldError> {
        Ok(DenseOperator {
            transposed: true,
            ..Self::new(matrix)?
        })
    }

    /// The matrix `A` (not transposed).
    pub fn matrix(&self) -> &'a DMatrix<f64> {
        self.matrix
    }

    /// Whether the operator applies `Aᵀ`.
    pub fn is_transposed(&self) -> bool {
        self.transposed
    }
}

impl Operator for DenseOperator<'_> {
    fn dim(&self) -> usize {
        self.matrix.nrows()
    }

    fn apply(&self, x: &DVector<f64>, y: &mut DVector<f64>) -> Result<(), FoldError> {
        let n = self.dim();
        crate::__private::check::same_dim("operand of a dense operator", n, x.len())?;
        crate::__private::check::same_dim("output of a dense operator", n, y.len())?;
        if self.transposed {
            crate::linalg::gemv_t(y, 1.0, self.matrix, x, 0.0);
        } else {
            crate::linalg::gemv(y, 1.0, self.matrix, x, 0.0);
        }
        crate::__private::check::finite_vector(y, "dense matrix-vector product")
    }
}
