//! A sparse reduced system in the form its solver reads: a band, a graph's edges (a
//! spanning forest), or a CSR matrix. [`super::sparse_direct`] picks the factorization
//! from it.

use super::banded::{BandedLdlt, SymBand};
use super::forest::Forest;
use super::sparse_direct::{BANDED_MAX, PIVOT_DROP};
use super::Operator;
use crate::{FoldError, SparseReduced};
use nalgebra::DVector;
use nalgebra_sparse::CsrMatrix;
use std::borrow::Cow;

/// A sparse system in the form its solver reads: the structure decides the factorization.
#[derive(Debug, Clone)]
pub enum Assembled<'a> {
    /// A symmetric band holding every nonzero (banded `LDLᵀ`), with that factorization
    /// when the assembly computed it on the way.
    Band(SymBand, Option<BandedLdlt>),
    /// A CSR matrix, `symmetric` when known by construction (otherwise probed).
    Csr {
        /// The matrix.
        a: Cow<'a, CsrMatrix<f64>>,
        /// Symmetric by construction.
        symmetric: bool,
    },
    /// The Gram matrix `scale A[rows, :] A[rows, :]ᵀ` of a graph's edges (two entries a
    /// row), solved on the spanning forest of its rows; never assembled unless the forest
    /// fails (products go through `A`).
    Graph {
        /// `c`.
        scale: f64,
        /// `A`.
        a: &'a CsrMatrix<f64>,
        /// `S`.
        rows: &'a [usize],
        /// The spanning forest of `A[S, :]`.
        forest: Forest,
    },
}

impl<'a> Assembled<'a> {
    /// Assembles a reduced matrix: a Gram matrix of narrowly banded rows straight into a
    /// band, of a graph's edges as its spanning forest, other Gram matrices by
    /// [`crate::__private::sparse::gram_rows`].
    pub fn new(sys: SparseReduced<'a>) -> Result<Assembled<'a>, FoldError> {
        match sys {
            SparseReduced::Csr(a) => Ok(Assembled::Csr {
                a: Cow::Owned(a),
                symmetric: false,
            }),
            SparseReduced::Gram { scale, a, rows } => {
                crate::__private::check::finite_scalar(scale, "scale of a sparse Gram matrix")?;
                if let Some((band, ldlt)) =
                    SymBand::gram_rows_factored(scale, a, rows, BANDED_MAX, PIVOT_DROP)
                {
                    return Ok(Assembled::Band(band, ldlt));
                }
                if let Some(forest) = Forest::new(scale, a, rows) {
                    return Ok(Assembled::Graph {
                        scale,
                        a,
                        rows,
                        forest,
                    });
                }
                Ok(gram_csr(scale, a, rows)?)
            }
        }
    }
}

/// `c A[S, :] A[S, :]ᵀ` assembled as a symmetric CSR matrix.
pub(super) fn gram_csr<'a>(
    c: f64,
    a: &CsrMatrix<f64>,
    s: &[usize],
) -> Result<Assembled<'a>, FoldError> {
    Ok(Assembled::Csr {
        a: Cow::Owned(crate::__private::sparse::gram_rows(c, a, s)?),
        symmetric: true,
    })
}

impl Operator for Assembled<'_> {
    fn dim(&self) -> usize {
        match self {
            Assembled::Band(m, _) => m.dim(),
            Assembled::Csr { a, .. } => a.nrows(),
            Assembled::Graph { rows, .. } => rows.len(),
        }
    }
    fn apply(&self, x: &DVector<f64>, y: &mut DVector<f64>) -> Result<(), FoldError> {
        crate::__private::check::same_dim("sparse operand", self.dim(), x.len())?;
        crate::__private::check::same_dim("sparse output", self.dim(), y.len())?;
        match self {
            Assembled::Band(m, _) => m.mul_into(x.as_slice(), y.as_mut_slice()),
            Assembled::Csr { a, .. } => crate::__private::sparse::mv_into(a, x, y),
            Assembled::Graph { scale, a, rows, .. } => {
                // t = A_Sᵀ x, then y = c A_S t.
                let (off, idx, val) = (a.row_offsets(), a.col_indices(), a.values());
                let mut t = super::scratch::zeroed(a.ncols());
                for (&i, &xr) in rows.iter().zip(x.iter()) {
                    for p in off[i]..off[i + 1] {
                        t[idx[p]] += val[p] * xr;
                    }
                }
                for (&i, yr) in rows.iter().zip(y.iter_mut()) {
                    let ti: f64 = (off[i]..off[i + 1]).map(|p| val[p] * t[idx[p]]).sum();
                    *yr = scale * ti;
                }
                super::scratch::keep(t);
            }
        }
        Ok(())
    }
    fn residual(
        &self,
        x: &DVector<f64>,
        b: &DVector<f64>,
        r: &mut DVector<f64>,
    ) -> Result<f64, FoldError> {
        match self {
            Assembled::Band(m, _) => {
                crate::__private::check::same_dim("sparse operand", m.dim(), x.len())?;
                crate::__private::check::same_dim("right-hand side", m.dim(), b.len())?;
                crate::__private::check::same_dim("sparse output", m.dim(), r.len())?;
                Ok(m.residual_into(x.as_slice(), b.as_slice(), r.as_mut_slice()))
            }
            _ => super::product_residual(self, x, b, r),
        }
    }
}
