//! The full system `(I − Φ)ᵀ w = g` (and `(I − Φ) t = r` for the forward mode): its
//! operators through `vjp_state` / `jvp_state`, its dense matrix, its ladder.

use super::ladder::{self, Dense, System};
use super::{stop_of, AUTO_DIRECT_MAX, AUTO_FALLBACK_DIRECT_MAX};
use crate::solvers::{assemble, Operator, DEFAULT_RESTART};
use crate::{BackwardOptions, FoldError, Linearized, Method, SolveStats};
use nalgebra::{DMatrix, DVector};
use std::borrow::Cow;

/// `I − Φ`, in place.
pub(super) fn identity_minus(mut phi: DMatrix<f64>) -> DMatrix<f64> {
    phi.neg_mut();
    for i in 0..phi.nrows().min(phi.ncols()) {
        phi[(i, i)] += 1.0;
    }
    phi
}

/// `state_jacobian()`, checked for shape and finiteness.
pub(super) fn checked_state_jacobian<L: Linearized + ?Sized>(
    lin: &L,
    n: usize,
) -> Result<Option<DMatrix<f64>>, FoldError> {
    match lin.state_jacobian() {
        None => Ok(None),
        Some(phi) => {
            crate::__private::check::same_dim("rows of state_jacobian", n, phi.nrows())?;
            crate::__private::check::same_dim("columns of state_jacobian", n, phi.ncols())?;
            crate::__private::check::finite_matrix(&phi, "state_jacobian")?;
            Ok(Some(phi))
        }
    }
}

/// Which of the two systems a dense matrix is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    /// `(I − Φ)ᵀ w = g`.
    Adjoint,
    /// `(I − Φ) t = r`.
    Tangent,
}

/// The dense matrix of one system: `I − Φ` from a supplied `Φ` (the adjoint system is
/// solved transposed, so `Φᵀ` is never formed), else the operator assembled from n
/// products.
pub(super) fn dense_system<L: Linearized + ?Sized>(
    lin: &L,
    n: usize,
    side: Side,
) -> Result<Dense<'static>, FoldError> {
    Ok(match checked_state_jacobian(lin, n)? {
        Some(phi) => Dense {
            matrix: Cow::Owned(identity_minus(phi)),
            transposed: side == Side::Adjoint,
            products: 0,
        },
        None => Dense {
            matrix: Cow::Owned(match side {
                Side::Adjoint => assemble(&AdjointOperator { lin, n })?,
                Side::Tangent => assemble(&TangentOperator { lin, n })?,
            }),
            transposed: false,
            products: n,
        },
    })
}

/// `y ← x − p` after checking the user-supplied product `p`.
fn identity_minus_product(
    x: &DVector<f64>,
    p: &DVector<f64>,
    y: &mut DVector<f64>,
    what: &str,
) -> Result<(), FoldError> {
    crate::__private::check::same_dim(what, x.len(), p.len())?;
    crate::__private::check::finite_vector(p, what)?;
    crate::__private::check::same_dim("solver buffer", x.len(), y.len())?;
    y.zip_zip_apply(x, p, |yi, xi, pi| *yi = xi - pi);
    Ok(())
}

/// `x ↦ x − Φᵀ x` through `vjp_state`.
pub(super) struct AdjointOperator<'a, L: ?Sized> {
    pub lin: &'a L,
    pub n: usize,
}

impl<L: Linearized + ?Sized> Operator for AdjointOperator<'_, L> {
    fn dim(&self) -> usize {
        self.n
    }
    fn apply(&self, x: &DVector<f64>, y: &mut DVector<f64>) -> Result<(), FoldError> {
        let p = self.lin.vjp_state(x);
        identity_minus_product(x, &p, y, "Φᵀv (vjp_state output)")
    }
}

/// `x ↦ x − Φ x` through `jvp_state`.
pub(super) struct TangentOperator<'a, L: ?Sized> {
    pub lin: &'a L,
    pub n: usize,
}

impl<L: Linearized + ?Sized> Operator for TangentOperator<'_, L> {
    fn dim(&self) -> usize {
        self.n
    }
    fn apply(&self, x: &DVector<f64>, y: &mut DVector<f64>) -> Result<(), FoldError> {
        let p = self.lin.jvp_state(x);
        identity_minus_product(x, &p, y, "Φu (jvp_state output)")
    }
}

const AUTO_SMALL: [Method; 2] = [
    Method::Direct,
    Method::Gmres {
        restart: DEFAULT_RESTART,
    },
];
const AUTO_MEDIUM: [Method; 2] = [
    Method::Gmres {
        restart: DEFAULT_RESTART,
    },
    Method::Direct,
];
const AUTO_LARGE: [Method; 2] = [
    Method::Gmres {
        restart: DEFAULT_RESTART,
    },
    Method::BiCgStab,
];

/// The ladder of a full system of size `n` under `method`: `Auto` is Direct then GMRES
/// for `n ≤ AUTO_DIRECT_MAX`, GMRES then Direct up to `AUTO_FALLBACK_DIRECT_MAX`, GMRES
/// then BiCGSTAB above; an explicit method is its own one-rung ladder.
fn full_ladder(n: usize, method: &Method) -> &[Method] {
    match method {
        Method::Auto if n <= AUTO_DIRECT_MAX => &AUTO_SMALL,
        Method::Auto if n <= AUTO_FALLBACK_DIRECT_MAX => &AUTO_MEDIUM,
        Method::Auto => &AUTO_LARGE,
        m => std::slice::from_ref(m),
    }
}

/// Solves `A x = b` on the full path with `opts.method`; `dense` builds the matrix.
pub(super) fn solve_full(
    op: &dyn Operator,
    b: &DVector<f64>,
    opts: &BackwardOptions,
    dense: &dyn Fn() -> Result<Dense<'static>, FoldError>,
) -> Result<(DVector<f64>, SolveStats), FoldError> {
    let n = op.dim();
    let system = System { op, dense };
    let out = ladder::run(&system, b, full_ladder(n, &opts.method), &stop_of(opts))?;
    let stats = SolveStats {
        method: out.method,
        iterations: out.solved.iterations,
        residual: out.solved.residual,
        system_dim: n,
        null_space_dim: out.null_space_dim,
        forward_residual: None,
    };
    Ok((out.solved.x, stats))
}
