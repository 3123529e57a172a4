//! The one policy that solves every system of the backward and forward modes.
//!
//! A `System` is an operator `A` (matrix-free, the ground truth every residual is
//! checked on) and a way to get its dense matrix. A *ladder* is the list of methods
//! tried in order; `run` climbs it:
//!
//! 1. `b = 0` gives `x = 0` without work, reported as the first method.
//! 2. Each method runs; `NotConverged` passes to the next one (products accumulate), and
//!    the last one's `NotConverged` is final.
//! 3. `Singular` from `Direct` (an exactly or numerically singular matrix) goes to the
//!    rank-revealing solve `min_norm` when `n ≤` [`MIN_NORM_MAX`]: the
//!    minimum-norm solution by SVD, accepted when its true residual meets `tol`
//!    (a *consistent* singular system, reported through
//!    [`crate::SolveStats::null_space_dim`]); an inconsistent one stays `Singular`. That
//!    verdict is final. Above `MIN_NORM_MAX` the ladder goes on to its next method (a
//!    Krylov method solves a consistent singular system too), or ends with `Singular`.
//! 4. Every other error (`NonFinite`, `DimensionMismatch`, `InvalidOption`, a failing
//!    primitive) is final: it is about the data, not the method.
//!
//! The approximate methods (`JacobianFree`, `Phantom`) are rungs like the others; they
//! always succeed and report the residual they leave.

use crate::solvers::{
    add_iterations, bicgstab, direct_dense, gmres, lfpi, residual_into, Operator, Solved, Stop,
};
use crate::{FoldError, Method};
use nalgebra::{DMatrix, DVector};
use std::borrow::Cow;

/// Largest system `min_norm` factors by SVD (≈ 0.3 s at n = 500); larger singular
/// systems are left to Krylov methods.
pub const MIN_NORM_MAX: usize = 500;

/// Singular values below `RANK_FACTOR · max(n, 16) ε σ_max` count as zero in
/// `min_norm`: a little above the threshold at which LU reports `Singular`, so a
/// system LU rejected has its (numerical) null space dropped.
const RANK_FACTOR: f64 = 1e3;

/// The dense matrix of a system: `A`, or `Aᵀ` when `transposed`, and the products
/// spent building it.
pub(crate) struct Dense<'a> {
    /// The matrix.
    pub matrix: Cow<'a, DMatrix<f64>>,
    /// Whether `matrix` holds `Aᵀ`.
    pub transposed: bool,
    /// Products with the operator spent assembling it.
    pub products: usize,
}

/// A linear system's operator and its dense matrix on demand.
pub(crate) struct System<'s, 'a> {
    /// `x ↦ A x`.
    pub op: &'s dyn Operator,
    /// Builds the dense matrix (called at most twice: the factorization consumes it, the
    /// rank-revealing solve after a `Singular` verdict needs it again).
    pub dense: &'s dyn Fn() -> Result<Dense<'a>, FoldError>,
}

/// What the ladder returns.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The verified solution; `iterations` counts the products of every rung tried.
    pub solved: Solved,
    /// The method that produced it.
    pub method: Method,
    /// `Some(k)` when the minimum-norm solve dropped a null space of dimension `k`.
    pub null_space_dim: Option<usize>,
}

/// Solves `A x = b` by climbing `ladder` (see the module docs for the policy).
pub(crate) fn run(
    system: &System<'_, '_>,
    b: &DVector<f64>,
    ladder: &[Method],
    stop: &Stop,
) -> Result<Outcome, FoldError> {
    let n = system.op.dim();
    let first = ladder.first().copied().unwrap_or(Method::Direct);
    if b.iter().all(|&v| v == 0.0) {
        return Ok(Outcome {
            solved: Solved::zero(n),
            method: first,
            null_space_dim: None,
        });
    }
    // Scale a right-hand side whose norm overflows (or underflows) f64: the system is
    // linear, so x(b/s) s = x(b), and the relative residual is unchanged.
    let bnorm = b.norm();
    if !(bnorm.is_finite() && bnorm > SCALE_FLOOR) {
        let s = b.amax();
        let scaled = b / s;
        let mut out = climb(system, &scaled, ladder, stop)?;
        out.solved.x *= s;
        if !crate::__private::check::all_finite(out.solved.x.as_slice()) {
            return Err(FoldError::non_finite(
                "solution (its entries exceed the range of f64)",
            ));
        }
        return Ok(out);
    }
    climb(system, b, ladder, stop)
}

/// Below this ‖b‖ the right-hand side is rescaled (squares of its entries underflow).
pub(crate) const SCALE_FLOOR: f64 = 1e-150;

/// `run` after scaling.
fn climb(
    system: &System<'_, '_>,
    b: &DVector<f64>,
    ladder: &[Method],
    stop: &Stop,
) -> Result<Outcome, FoldError> {
    let n = system.op.dim();
    let mut spent = 0usize;
    for (i, &method) in ladder.iter().enumerate() {
        let last = i + 1 == ladder.len();
        match attempt(system, b, method, stop) {
            Ok(mut solved) => {
                solved.iterations += spent;
                return Ok(Outcome {
                    solved,
                    method,
                    null_space_dim: None,
                });
            }
            Err(FoldError::NotConverged { iterations, .. }) if !last => spent += iterations,
            Err(FoldError::Singular) if matches!(method, Method::Direct) => {
                if n <= MIN_NORM_MAX {
                    let (mut solved, null) = min_norm(system, b, stop)?;
                    solved.iterations += spent;
                    return Ok(Outcome {
                        solved,
                        method,
                        null_space_dim: Some(null),
                    });
                }
                if last {
                    return Err(FoldError::Singular);
                }
            }
            Err(e) => return Err(add_iterations(e, spent)),
        }
    }
    // An empty ladder: nothing was tried.
    Err(crate::solvers::not_converged(
        spent,
        f64::INFINITY,
        stop.tol,
    ))
}

/// One rung.
fn attempt(
    system: &System<'_, '_>,
    b: &DVector<f64>,
    method: Method,
    stop: &Stop,
) -> Result<Solved, FoldError> {
    let op = system.op;
    match method {
        Method::Direct | Method::Auto => {
            let d = (system.dense)()?;
            let (mut s, _) = direct_dense(d.matrix, d.transposed, op, b, stop)
                .map_err(|e| add_iterations(e, d.products))?;
            s.iterations += d.products;
            Ok(s)
        }
        Method::Gmres { restart: 0 } => Err(FoldError::invalid_option(
            "Method::Gmres::restart",
            "must be ≥ 1",
        )),
        Method::Gmres { restart } => gmres(op, b, restart, stop),
        Method::BiCgStab => bicgstab(op, b, stop),
        Method::Lfpi => lfpi(op, b, stop),
        Method::JacobianFree => approximate(op, b, 0, 1.0),
        Method::Phantom { steps, damping } => approximate(op, b, steps, damping),
    }
}

/// `steps` of damped Richardson `x ← x + λ (b − A x)` from `x = b` (for `A = I − Φᵀ`:
/// `w ← (1 − λ) w + λ (Φᵀ w + g)`), then one product for the residual it leaves.
fn approximate(
    op: &dyn Operator,
    b: &DVector<f64>,
    steps: usize,
    damping: f64,
) -> Result<Solved, FoldError> {
    if !(damping > 0.0 && damping <= 1.0) {
        return Err(FoldError::invalid_option(
            "Method::Phantom::damping",
            format!("must lie in (0, 1], got {damping}"),
        ));
    }
    crate::__private::check::same_dim("right-hand side", op.dim(), b.len())?;
    let bnorm = b.norm();
    let mut x = b.clone();
    let mut r = DVector::zeros(b.len());
    for _ in 0..steps {
        residual_into(op, &x, b, &mut r)?;
        x.axpy(damping, &r, 1.0);
        if !crate::__private::check::all_finite(x.as_slice()) {
            return Err(crate::solvers::not_converged(
                steps,
                f64::INFINITY,
                f64::NAN,
            ));
        }
    }
    let rnorm = residual_into(op, &x, b, &mut r)?;
    Ok(Solved {
        x,
        iterations: steps + 1,
        residual: if bnorm > 0.0 { rnorm / bnorm } else { 0.0 },
    })
}

/// The minimum-norm solution `x = A⁺ b` of a singular system, by SVD with the
/// numerical null space (singular values below `RANK_FACTOR · max(n, 16) ε σ_max`)
/// dropped, refined once; `Ok((x, dim of the dropped null space))` when the true
/// residual meets `stop.tol` (the system is consistent), `Singular` otherwise.
pub(crate) fn min_norm(
    system: &System<'_, '_>,
    b: &DVector<f64>,
    stop: &Stop,
) -> Result<(Solved, usize), FoldError> {
    let op = system.op;
    let n = op.dim();
    let d = (system.dense)()?;
    let a = if d.transposed {
        d.matrix.transpose()
    } else {
        d.matrix.into_owned()
    };
    let svd = nalgebra::SVD::try_new(a, true, true, f64::EPSILON, 1000 + 100 * n)
        .ok_or(FoldError::Singular)?;
    let smax = svd.singular_values.max();
    let cut = RANK_FACTOR * (n.max(16) as f64) * f64::EPSILON * smax;
    let null = svd.singular_values.iter().filter(|&&s| s <= cut).count();
    let pinv = |r: &DVector<f64>| -> Result<DVector<f64>, FoldError> {
        let x = svd.solve(r, cut).map_err(|_| FoldError::Singular)?;
        if crate::__private::check::all_finite(x.as_slice()) {
            Ok(x)
        } else {
            Err(FoldError::Singular)
        }
    };
    let bnorm = b.norm();
    let mut x = pinv(b)?;
    let mut r = DVector::zeros(n);
    // Solve, then one refinement: a correction in the row space keeps the solution
    // minimum-norm.
    let mut rel = residual_into(op, &x, b, &mut r)? / bnorm;
    let mut products = d.products + 1;
    if rel > stop.tol {
        x += pinv(&r)?;
        rel = residual_into(op, &x, b, &mut r)? / bnorm;
        products += 1;
    }
    if rel <= stop.tol {
        return Ok((
            Solved {
                x,
                iterations: products,
                residual: rel,
            },
            null,
        ));
    }
    // The residual left is b's component outside the range: inconsistent.
    Err(FoldError::Singular)
}
