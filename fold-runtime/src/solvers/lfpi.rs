//! Linear fixed-point iteration (what unrolling computes): for `A = I − Φᵀ` it is
//! `x ← Φᵀ x + b`, written as Richardson's `x ← x + (b − A x)`, whose residual is
//! exactly the true residual of the current iterate (no extra product).

use super::{not_converged, residual_into, Operator, Solved, Stop};
use crate::FoldError;
use nalgebra::DVector;

/// Above this relative residual the iteration has diverged (`ρ(Φ) > 1`); stop early.
const DIVERGED: f64 = 1e30;

/// Solves `A x = b` by `x ← x + (b − A x)` from `x = 0`; converges iff `ρ(I − A) < 1`,
/// at that rate. `NotConverged` after `stop.max_iter` products or on divergence.
pub fn lfpi<A: Operator + ?Sized>(
    a: &A,
    b: &DVector<f64>,
    stop: &Stop,
) -> Result<Solved, FoldError> {
    let bnorm = super::check_system(a, b, stop)?;
    let n = a.dim();
    if bnorm == 0.0 {
        return Ok(Solved::zero(n));
    }
    // x₁ = b without a product (x₀ = 0 has residual b).
    let mut x = b.clone();
    let mut r = DVector::zeros(n);
    let mut rel = 1.0;
    for k in 1..=stop.max_iter {
        rel = residual_into(a, &x, b, &mut r)? / bnorm;
        if rel <= stop.tol {
            return Ok(Solved {
                x,
                iterations: k,
                residual: rel,
            });
        }
        if rel.is_nan() || rel >= DIVERGED {
            return Err(not_converged(k, rel, stop.tol));
        }
        x += &r;
    }
    Err(not_converged(stop.max_iter, rel, stop.tol))
}
