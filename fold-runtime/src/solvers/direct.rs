//! Direct solve: a dense factorization of `A`, then iterative refinement against the
//! matrix-free operator (which is the ground truth the residual is checked on).

use super::{add_iterations, not_converged, residual_into, Operator, Solved, Stop};
use crate::linalg::{self, Cholesky, DenseFactorization, Lu};
use crate::FoldError;
use nalgebra::{DMatrix, DVector};
use std::borrow::Cow;

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

/// Solves `A x = b` (`Aᵀ x = b` when `transposed`) given the dense matrix `a` of `A`, which
/// `op` applies: Cholesky when `a` looks symmetric on a few rows, LU otherwise, refined as
/// in `direct`. An owned `a` lends its storage to the LU.
///
/// Cholesky reads only the lower triangle, so on a matrix that merely looked symmetric
/// it solves a different system; the true residual catches that, and only then is the
/// O(n²) symmetry check run, sending a non-symmetric matrix to LU. Symmetric matrices,
/// the common case for reduced Hessians, never pay for the full check.
pub fn direct_dense<A: Operator + ?Sized>(
    a: Cow<'_, DMatrix<f64>>,
    transposed: bool,
    op: &A,
    b: &DVector<f64>,
    stop: &Stop,
) -> Result<(Solved, DenseFactorization), FoldError> {
    crate::__private::check::same_dim("dimension of the dense matrix", op.dim(), a.nrows())?;
    let mut spent = 0;
    if linalg::looks_symmetric(&a, linalg::SYMMETRY_TOL) {
        // Unchecked: a non-finite `a` fails the residual, is not symmetric, and reaches
        // LU, which reports it. A symmetric `a` is its own transpose.
        if let Ok(ch) = Cholesky::factor_unchecked(&a) {
            match direct(op, b, &DenseFactor::Cholesky(ch), transposed, stop) {
                Ok(s) => return Ok((s, DenseFactorization::Cholesky)),
                Err(e) if linalg::is_symmetric(&a, linalg::SYMMETRY_TOL) => return Err(e),
                Err(FoldError::NotConverged { iterations, .. }) => spent = iterations,
                Err(_) => {}
            }
        }
    }
    let factor = DenseFactor::Lu(Lu::factor_owned(a.into_owned())?);
    let mut s = direct(op, b, &factor, transposed, stop).map_err(|e| add_iterations(e, spent))?;
    s.iterations += spent;
    Ok((s, DenseFactorization::Lu))
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
    crate::__private::check::same_dim("dimension of the factorization", a.dim(), factor.dim())?;
    if bnorm == 0.0 {
        return Ok(Solved::zero(a.dim()));
    }
    let mut x = b.clone();
    factor.solve_in_place(&mut x, transposed);
    // A finite factorization of a finite matrix that overflows is numerically singular.
    if !crate::__private::check::all_finite(x.as_slice()) {
        return Err(FoldError::Singular);
    }
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
        if !crate::__private::check::all_finite(x.as_slice()) {
            return Err(FoldError::Singular);
        }
    }
    Err(not_converged(products, best, stop.tol))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solvers::testing::{residual, stop};
    use crate::solvers::DenseOperator;

    #[test]
    fn dense_solve_picks_cholesky_only_for_symmetric_matrices() {
        let n = 9;
        let spd = DMatrix::from_fn(n, n, |i, j| {
            if i == j {
                4.0
            } else {
                1.0 / (1.0 + (i + j) as f64)
            }
        });
        let b = DVector::from_fn(n, |i, _| (i as f64).sin() + 0.5);
        let (s, how) = direct_dense(
            Cow::Borrowed(&spd),
            false,
            &DenseOperator::new(&spd).unwrap(),
            &b,
            &stop(),
        )
        .unwrap();
        assert_eq!(how, DenseFactorization::Cholesky);
        assert!(residual(&spd, &s.x, &b) <= 1e-12);

        // Asymmetric inside only: the probe passes, Cholesky solves the wrong system, the
        // true residual sends it to LU.
        let mut inner = spd.clone();
        inner[(3, 5)] += 1.5;
        let (s, how) = direct_dense(
            Cow::Borrowed(&inner),
            false,
            &DenseOperator::new(&inner).unwrap(),
            &b,
            &stop(),
        )
        .unwrap();
        assert_eq!(how, DenseFactorization::Lu);
        assert!(residual(&inner, &s.x, &b) <= 1e-12);
        assert!(s.iterations >= 2, "the failed Cholesky attempt is counted");

        // Asymmetric on the border: straight to LU.
        let mut border = spd.clone();
        border[(0, 4)] -= 2.0;
        let (s, how) = direct_dense(
            Cow::Borrowed(&border),
            false,
            &DenseOperator::new(&border).unwrap(),
            &b,
            &stop(),
        )
        .unwrap();
        assert_eq!(how, DenseFactorization::Lu);
        assert!(residual(&border, &s.x, &b) <= 1e-12);

        // Transposed, owned: Aᵀ x = b through the same LU.
        let op = DenseOperator::transposed(&border).unwrap();
        let (s, how) = direct_dense(Cow::Owned(border.clone()), true, &op, &b, &stop()).unwrap();
        assert_eq!(how, DenseFactorization::Lu);
        assert!(residual(&border.transpose(), &s.x, &b) <= 1e-12);

        // Symmetric indefinite: Cholesky fails, LU solves.
        let indefinite = &spd - DMatrix::identity(n, n) * 5.0;
        let op = DenseOperator::new(&indefinite).unwrap();
        let (s, how) = direct_dense(Cow::Borrowed(&indefinite), false, &op, &b, &stop()).unwrap();
        assert_eq!(how, DenseFactorization::Lu);
        assert!(residual(&indefinite, &s.x, &b) <= 1e-12);

        // Non-finite anywhere: reported as such.
        for (i, j) in [(1, 6), (6, 1)] {
            let mut nan = spd.clone();
            nan[(i, j)] = f64::NAN;
            let op = DenseOperator::new(&nan).unwrap();
            assert!(matches!(
                direct_dense(Cow::Borrowed(&nan), false, &op, &b, &stop()),
                Err(FoldError::NonFinite { .. })
            ));
        }

        // Singular: reported, not solved.
        let singular = DMatrix::from_element(n, n, 1.0);
        let op = DenseOperator::new(&singular).unwrap();
        assert!(direct_dense(Cow::Borrowed(&singular), false, &op, &b, &stop()).is_err());
    }
}
