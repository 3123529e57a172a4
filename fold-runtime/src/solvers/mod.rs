//! Linear solvers for `A x = b`, one file per method, on a matrix-free [`Operator`].
//!
//! The folded backward hands them `A = I − Φᵀ` (or the reduced operator); the forward
//! mode hands them `A = I − Φ`. Every solver returns `Ok` only after it has checked the
//! **true** residual `‖b − A x‖ ≤ tol ‖b‖` with a fresh product: Krylov methods "solve"
//! singular or inconsistent systems quietly, and a silently wrong gradient is the one
//! failure the runtime must not have.

mod assembled;
pub mod banded;
pub mod bicgstab;
pub mod dense;
pub mod direct;
pub mod forest;
pub mod gmres;
pub mod lfpi;
pub(crate) mod scratch;
pub mod sparse_direct;

pub use bicgstab::bicgstab;
pub use dense::DenseOperator;
pub use direct::{assemble, direct_dense};
pub use gmres::gmres;
pub use lfpi::lfpi;

use crate::FoldError;
use nalgebra::DVector;

/// Krylov dimension of GMRES when `Method::Auto` picks it.
pub const DEFAULT_RESTART: usize = 30;

/// A square linear operator `x ↦ A x`.
pub trait Operator {
    /// Dimension `n` of `A` (n × n).
    fn dim(&self) -> usize;
    /// `y ← A x`; `x` and `y` have length [`Operator::dim`]. Fails with `NonFinite` or
    /// `DimensionMismatch` when a user-supplied product misbehaves.
    fn apply(&self, x: &DVector<f64>, y: &mut DVector<f64>) -> Result<(), FoldError>;
    /// `r ← b − A x`, returning `‖r‖`; an operator may fuse the three passes.
    fn residual(
        &self,
        x: &DVector<f64>,
        b: &DVector<f64>,
        r: &mut DVector<f64>,
    ) -> Result<f64, FoldError> {
        product_residual(self, x, b, r)
    }
}

/// [`Operator::residual`] through the product: `r ← A x`, then `r ← b − r`, then `‖r‖`.
pub(crate) fn product_residual<A: Operator + ?Sized>(
    a: &A,
    x: &DVector<f64>,
    b: &DVector<f64>,
    r: &mut DVector<f64>,
) -> Result<f64, FoldError> {
    a.apply(x, r)?;
    r.zip_apply(b, |ri, bi| *ri = bi - *ri);
    Ok(r.norm())
}

impl<A: Operator + ?Sized> Operator for &A {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn apply(&self, x: &DVector<f64>, y: &mut DVector<f64>) -> Result<(), FoldError> {
        (**self).apply(x, y)
    }
    fn residual(
        &self,
        x: &DVector<f64>,
        b: &DVector<f64>,
        r: &mut DVector<f64>,
    ) -> Result<f64, FoldError> {
        (**self).residual(x, b, r)
    }
}

/// Stopping rule shared by the iterative solvers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stop {
    /// Relative tolerance on the true residual, `‖b − A x‖ ≤ tol ‖b‖`.
    pub tol: f64,
    /// Cap on products with `A` (including the final residual check).
    pub max_iter: usize,
}

/// A verified solution of `A x = b`.
#[derive(Debug, Clone)]
pub struct Solved {
    /// The solution.
    pub x: DVector<f64>,
    /// Products with `A` spent (including residual checks).
    pub iterations: usize,
    /// Final relative true residual `‖b − A x‖ / ‖b‖`.
    pub residual: f64,
}

impl Solved {
    /// The answer for `b = 0`: `x = 0`, no work.
    pub(crate) fn zero(n: usize) -> Solved {
        Solved {
            x: DVector::zeros(n),
            iterations: 0,
            residual: 0.0,
        }
    }
}

/// `r ← b − A x` and returns `‖r‖`.
pub(crate) fn residual_into<A: Operator + ?Sized>(
    a: &A,
    x: &DVector<f64>,
    b: &DVector<f64>,
    r: &mut DVector<f64>,
) -> Result<f64, FoldError> {
    a.residual(x, b, r)
}

/// Checks the operands every solver shares; `Ok(‖b‖)`.
pub(crate) fn check_system<A: Operator + ?Sized>(
    a: &A,
    b: &DVector<f64>,
    stop: &Stop,
) -> Result<f64, FoldError> {
    crate::__private::check::same_dim("right-hand side", a.dim(), b.len())?;
    crate::__private::check::finite_vector(b, "right-hand side")?;
    if stop.tol.is_nan() {
        return Err(FoldError::non_finite("tol"));
    }
    Ok(b.norm())
}

/// `e` with `earlier` products (of a first attempt) added when it is `NotConverged`.
pub(crate) fn add_iterations(e: FoldError, earlier: usize) -> FoldError {
    match e {
        FoldError::NotConverged {
            iterations,
            residual,
            tol,
        } => FoldError::NotConverged {
            iterations: iterations + earlier,
            residual,
            tol,
        },
        e => e,
    }
}

/// The error for a solve that stopped with relative true residual `residual`.
pub(crate) fn not_converged(iterations: usize, residual: f64, tol: f64) -> FoldError {
    FoldError::NotConverged {
        iterations,
        residual,
        tol,
    }
}

pub(crate) use crate::linalg::dot;

/// `y += s x` on slices of equal length.
pub(crate) fn axpy(y: &mut [f64], s: f64, x: &[f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += s * xi;
    }
}

/// Helpers of the solvers' unit tests, independent of the solvers.
#[cfg(test)]
pub(crate) mod testing {
    use super::Stop;
    use nalgebra::{DMatrix, DVector};
    use nalgebra_sparse::{CooMatrix, CsrMatrix};

    /// The nonzeros of a dense matrix as CSR.
    pub fn csr(d: &DMatrix<f64>) -> CsrMatrix<f64> {
        let mut coo = CooMatrix::new(d.nrows(), d.ncols());
        for i in 0..d.nrows() {
            for j in 0..d.ncols() {
                if d[(i, j)] != 0.0 {
                    coo.push(i, j, d[(i, j)]);
                }
            }
        }
        CsrMatrix::from(&coo)
    }

    /// A tight stop: `tol = 1e-12`, 100 iterations.
    pub fn stop() -> Stop {
        Stop {
            tol: 1e-12,
            max_iter: 100,
        }
    }

    /// `‖b − a x‖ / ‖b‖` by a plain double loop.
    pub fn residual(a: &DMatrix<f64>, x: &DVector<f64>, b: &DVector<f64>) -> f64 {
        let n = b.len();
        (0..n)
            .map(|i| {
                let ax: f64 = (0..n).map(|j| a[(i, j)] * x[j]).sum();
                (ax - b[i]).powi(2)
            })
            .sum::<f64>()
            .sqrt()
            / b.norm()
    }
}
