//! Direct solve: a dense factorization of `A`, then iterative refinement against the
//! matrix-free operator (which is the ground truth the residual is checked on).

use super::{not_converged, residual_into, Operator, Solved, Stop};
use crate::linalg::{self, Cholesky, DenseFactorization, Lu};
use crate::FoldError;
use nalgebra::{DMatrix, DVector};

/// Refinement steps after the first solve. LU with partial pivoting is backward stable,
/// so one step almost always reaches the residual floor; the second covers the rare
/// ill-conditioned case where the first correction is itself a few digits off.
const MAX_REFINE: usize = 2;

/// A factored dense matrix.
#[derive(Debug, Clone)]
pub enum DenseFactor {
    /// `P A = L U`.
    Lu(Lu),
    /// `A = L Lᵀ`.
    Cholesky(Cholesky),
}

impl DenseFactor {
    /// Cholesky when `try_cholesky`, `a` is symmetric (to [`linalg::SYMMETRY_TOL`]) and the
    /// factorization succeeds; LU otherwise. `Singular` when LU finds `a` singular.
    ///
    /// The full symmetry check costs O(n²) against the factorization's O(n³); a cheaper
    /// probe of a few rows is not enough: `I − Φᵀ` of a masked rule can look symmetric on
    /// them and not be.
    pub fn factor(a: &DMatrix<f64>, try_cholesky: bool) -> Result<DenseFactor, FoldError> {
        if try_cholesky && linalg::is_symmetric(a, linalg::SYMMETRY_TOL) {
            if let Ok(ch) = Cholesky::factor(a) {
                return Ok(DenseFactor::Cholesky(ch));
            }
        }
        Lu::factor(a).map(DenseFactor::Lu)
    }

    /// [`DenseFactor::factor`] reusing `a`'s storage for an LU (no copy unless Cholesky
    /// is attempted).
    pub fn factor_owned(a: DMatrix<f64>, try_cholesky: bool) -> Result<DenseFactor, FoldError> {
        if try_cholesky && linalg::is_symmetric(&a, linalg::SYMMETRY_TOL) {
            if let Ok(ch) = Cholesky::factor(&a) {
                return Ok(DenseFactor::Cholesky(ch));
            }
        }
        Lu::factor_owned(a).map(DenseFactor::Lu)
    }

    /// Which factorization this is.
    pub fn kind(&self) -> DenseFactorization {
        match self {
            DenseFactor::Lu(_) => DenseFactorization::Lu,
            DenseFactor::Cholesky(_) => DenseFactorization::Cholesky,
        }
    }

    /// Dimension of the factored matrix.
    pub fn dim(&self) -> usize {
        match self {
            DenseFactor::Lu(f) => f.dim(),
            DenseFactor::Cholesky(f) => f.dim(),
        }
    }

    /// `x ← A⁻¹ x`, or `x ← A⁻ᵀ x` when `transposed`.
    ///
    /// # Panics
    /// If `x.len()` differs from the matrix dimension.
    pub fn solve_in_place(&self, x: &mut DVector<f64>, transposed: bool) {
        match (self, transposed) {
            (DenseFactor::Lu(f), false) => f.solve_in_place(x),
            (DenseFactor::Lu(f), true) => f.solve_transpose_in_place(x),
            // A is symmetric.
            (DenseFactor::Cholesky(f), _) => f.solve_in_place(x),
        }
    }
}

/// The dense matrix of an operator, column `j` being `A eⱼ` (n products).
pub fn assemble<A: Operator + ?Sized>(a: &A) -> Result<DMatrix<f64>, FoldError> {
    let n = a.dim();
    let mut m = DMatrix::zeros(n, n);
    let mut e = DVector::zeros(n);
    let mut col = DVector::zeros(n);
    for j in 0..n {
        e[j] = 1.0;
        a.apply(&e, &mut col)?;
        e[j] = 0.0;
        m.column_mut(j).copy_from(&col);
    }
    Ok(m)
}

/// Solves `A x = b` with a factorization of `A` (of `Aᵀ`'s transpose when `transposed`:
/// `factor` holds `Fᵀ = A`), refining against the operator `a` until the true residual
/// is at most `stop.tol ‖b‖`; `NotConverged` when refinement stalls above it.
///
/// `stop.max_iter` does not apply: the work is fixed (at most `1 + MAX_REFINE` products).
pub fn direct<A: Operator + ?Sized>(
    a: &A,
    b: &DVector<f64>,
    factor: &DenseFactor,
    transposed: bool,
    stop: &Stop,
) -> Result<Solved, FoldError> {
    let bnorm = super::check_system(a, b, stop)?;
    crate::check::same_dim("dimension of the factorization", a.dim(), factor.dim())?;
    if bnorm == 0.0 {
        return Ok(Solved::zero(a.dim()));
    }
    let mut x = b.clone();
    factor.solve_in_place(&mut x, transposed);
    crate::check::finite_vector(&x, "solution of the direct solve")?;
    let mut r = DVector::zeros(a.dim());
    let mut products = 0;
    let mut best = f64::INFINITY;
    for step in 0..=MAX_REFINE {
        let rnorm = residual_into(a, &x, b, &mut r)? / bnorm;
        products += 1;
        if rnorm <= stop.tol {
            return Ok(Solved {
                x,
                iterations: products,
                residual: rnorm,
            });
        }
        // Refinement that no longer halves the residual has reached the floor set by
        // the conditioning; further steps would only spend products.
        if step == MAX_REFINE || rnorm > 0.5 * best {
            return Err(not_converged(products, rnorm.min(best), stop.tol));
        }
        best = rnorm;
        factor.solve_in_place(&mut r, transposed);
        x += &r;
        crate::check::finite_vector(&x, "solution of the direct solve")?;
    }
    Err(not_converged(products, best, stop.tol))
}
