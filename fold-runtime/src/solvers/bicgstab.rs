//! BiCGSTAB (van der Vorst) with breakdown detection and restarts from the true residual.

use super::{dot, not_converged, residual_into, Operator, Solved, Stop};
use crate::FoldError;
use nalgebra::DVector;

/// `|⟨r̂, r⟩| ≤ BREAKDOWN ‖r̂‖ ‖r‖` (or the same for `⟨r̂, v⟩`): the shadow residual has
/// become orthogonal and the recurrence would divide by ~0.
const BREAKDOWN: f64 = 1e-14;

/// A restart that lowers the true residual by less than this fraction made no progress.
const STAGNATION: f64 = 1e-8;

/// Solves `A x = b` by BiCGSTAB from `x = 0` (two products per iteration). On a
/// breakdown it restarts from the true residual with a fresh shadow vector, as long as
/// restarts make progress. `NotConverged` after `stop.max_iter` products (residual
/// checks included), when restarts stall, or when the recurrence overflows (a breakdown:
/// inputs are finite, so never `NonFinite` for the method's own arithmetic).
pub fn bicgstab<A: Operator + ?Sized>(
    a: &A,
    b: &DVector<f64>,
    stop: &Stop,
) -> Result<Solved, FoldError> {
    let bnorm = super::check_system(a, b, stop)?;
    let n = a.dim();
    if bnorm == 0.0 {
        return Ok(Solved::zero(n));
    }
    let target = stop.tol * bnorm;
    let mut x = DVector::zeros(n);
    let mut r = b.clone();
    let mut rhat = b.clone();
    let mut p = DVector::zeros(n);
    let mut v = DVector::zeros(n);
    let mut s = DVector::zeros(n);
    let mut t = DVector::zeros(n);
    let (mut rho_old, mut alpha, mut omega) = (1.0, 1.0, 1.0);
    let mut products = 0usize;
    let mut rnorm = bnorm;
    let mut at_restart = bnorm;
    let mut fresh = true;

    loop {
        // Invariant here: r is (an estimate of) b − A x; fresh ⇔ r is the true residual.
        let mut breakdown = false;
        'iterate: loop {
            if rnorm <= target && fresh {
                return Ok(Solved {
                    x,
                    iterations: products,
                    residual: rnorm / bnorm,
                });
            }
            if rnorm <= target {
                break 'iterate; // verify below
            }
            if products + 3 > stop.max_iter {
                return Err(not_converged(products, rnorm / bnorm, stop.tol));
            }
            let rho = dot(rhat.as_slice(), r.as_slice());
            if rho.is_nan() || rho.abs() <= BREAKDOWN * rhat.norm() * rnorm {
                breakdown = true;
                break 'iterate;
            }
            if fresh {
                p.copy_from(&r);
            } else {
                let beta = (rho / rho_old) * (alpha / omega);
                // p = r + β (p − ω v)
                p.zip_zip_apply(&r, &v, |pi, ri, vi| *pi = ri + beta * (*pi - omega * vi));
            }
            fresh = false;
            if !crate::__private::check::all_finite(p.as_slice()) {
                return Err(not_converged(products, f64::INFINITY, stop.tol));
            }
            a.apply(&p, &mut v)?;
            products += 1;
            let den = dot(rhat.as_slice(), v.as_slice());
            if den.is_nan() || den.abs() <= BREAKDOWN * rhat.norm() * v.norm() {
                breakdown = true;
                break 'iterate;
            }
            alpha = rho / den;
            s.copy_from(&r);
            s.axpy(-alpha, &v, 1.0);
            let snorm = s.norm();
            if !snorm.is_finite() {
                return Err(not_converged(products, f64::INFINITY, stop.tol));
            }
            if snorm <= target {
                x.axpy(alpha, &p, 1.0);
                break 'iterate;
            }
            a.apply(&s, &mut t)?;
            products += 1;
            let tt = t.norm_squared();
            omega = if tt > 0.0 {
                dot(t.as_slice(), s.as_slice()) / tt
            } else {
                0.0
            };
            x.axpy(alpha, &p, 1.0);
            x.axpy(omega, &s, 1.0);
            r.copy_from(&s);
            r.axpy(-omega, &t, 1.0);
            rnorm = r.norm();
            rho_old = rho;
            if !rnorm.is_finite() || !crate::__private::check::all_finite(x.as_slice()) {
                // The inputs were finite (checked above and by every product): an
                // overflowing recurrence is a breakdown of the method (a singular or
                // badly conditioned system), not bad data. Fall back to the last
                // verified iterate, which the restart logic then judges.
                return Err(not_converged(products, f64::INFINITY, stop.tol));
            }
            if omega.is_nan() || omega == 0.0 {
                breakdown = true;
                break 'iterate;
            }
        }

        // Verify or restart: the true residual decides.
        if products + 1 > stop.max_iter {
            return Err(not_converged(products, rnorm / bnorm, stop.tol));
        }
        rnorm = residual_into(a, &x, b, &mut r)?;
        products += 1;
        if rnorm <= target {
            return Ok(Solved {
                x,
                iterations: products,
                residual: rnorm / bnorm,
            });
        }
        if breakdown && rnorm > at_restart * (1.0 - STAGNATION) {
            return Err(not_converged(products, rnorm / bnorm, stop.tol));
        }
        at_restart = rnorm;
        rhat.copy_from(&r);
        fresh = true;
        (rho_old, alpha, omega) = (1.0, 1.0, 1.0);
    }
}
