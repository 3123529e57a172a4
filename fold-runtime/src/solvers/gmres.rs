//! Restarted GMRES(m): Arnoldi with modified Gram–Schmidt (one conditional
//! reorthogonalization pass), the Hessenberg least-squares problem kept triangular by
//! Givens rotations so the residual estimate is known after every inner step.

use super::{axpy, dot, not_converged, residual_into, Operator, Solved, Stop};
use crate::FoldError;
use nalgebra::{DMatrix, DVector};

/// A restart cycle that lowers the true residual by less than this fraction made no
/// progress, and restarted GMRES from the same residual repeats the same cycle: the
/// system is singular (or inconsistent) along the Krylov space, so stop early.
const STAGNATION: f64 = 1e-8;

/// `‖w‖` after orthogonalization below this fraction of `‖A v_j‖` means the Krylov
/// space is invariant (a "happy" breakdown): the cycle's solution is final.
const BREAKDOWN: f64 = 8.0 * f64::EPSILON;

/// Kahan's "twice is enough" test: reorthogonalize when MGS cancelled this much.
const REORTHOGONALIZE: f64 = 0.7;

/// Solves `A x = b` by GMRES restarted every `restart` products (clamped to `1..=n`),
/// from `x = 0`. Buffers (`restart + 1` basis vectors, the Hessenberg matrix) are
/// allocated once per solve. `NotConverged` after `stop.max_iter` products (residual
/// checks included) or on stagnation.
pub fn gmres<A: Operator + ?Sized>(
    a: &A,
    b: &DVector<f64>,
    restart: usize,
    stop: &Stop,
) -> Result<Solved, FoldError> {
    let bnorm = super::check_system(a, b, stop)?;
    let n = a.dim();
    if bnorm == 0.0 {
        return Ok(Solved::zero(n));
    }
    let target = stop.tol * bnorm;
    let m = restart.clamp(1, n.max(1));

    let mut basis: Vec<DVector<f64>> = (0..=m).map(|_| DVector::zeros(n)).collect();
    let mut h = DMatrix::<f64>::zeros(m + 1, m);
    let mut cs = vec![0.0; m];
    let mut sn = vec![0.0; m];
    let mut s = vec![0.0; m + 1];
    let mut y = vec![0.0; m];
    let mut w = DVector::zeros(n);
    let mut x = DVector::zeros(n);

    // x₀ = 0: the residual is b, known without a product.
    basis[0].copy_from(b);
    let mut beta = bnorm;
    let mut products = 0usize;
    let mut previous = f64::INFINITY;
    loop {
        // Invariant: basis[0] holds the true residual b − A x and beta its norm.
        if beta <= target {
            return Ok(Solved {
                x,
                iterations: products,
                residual: beta / bnorm,
            });
        }
        // A cycle needs one product for its first step and one for the residual check.
        if products + 2 > stop.max_iter || beta > previous * (1.0 - STAGNATION) {
            return Err(not_converged(products, beta / bnorm, stop.tol));
        }
        previous = beta;

        basis[0].unscale_mut(beta);
        s.fill(0.0);
        s[0] = beta;
        let mut steps = 0;
        for j in 0..m {
            let (head, tail) = basis.split_at_mut(j + 1);
            a.apply(&head[j], &mut w)?;
            products += 1;

            let norm0 = w.norm();
            for (i, vi) in head.iter().enumerate() {
                let hij = dot(vi.as_slice(), w.as_slice());
                axpy(w.as_mut_slice(), -hij, vi.as_slice());
                h[(i, j)] = hij;
            }
            let mut hn = w.norm();
            if hn < REORTHOGONALIZE * norm0 {
                for (i, vi) in head.iter().enumerate() {
                    let c = dot(vi.as_slice(), w.as_slice());
                    axpy(w.as_mut_slice(), -c, vi.as_slice());
                    h[(i, j)] += c;
                }
                hn = w.norm();
            }
            h[(j + 1, j)] = hn;

            for i in 0..j {
                let (hi, hi1) = (h[(i, j)], h[(i + 1, j)]);
                h[(i, j)] = cs[i] * hi + sn[i] * hi1;
                h[(i + 1, j)] = -sn[i] * hi + cs[i] * hi1;
            }
            let (c, sg, r) = givens(h[(j, j)], hn);
            cs[j] = c;
            sn[j] = sg;
            h[(j, j)] = r;
            h[(j + 1, j)] = 0.0;
            s[j + 1] = -sg * s[j];
            s[j] *= c;
            steps = j + 1;

            let breakdown = hn.is_nan() || hn <= BREAKDOWN * norm0;
            if !breakdown {
                tail[0].copy_from(&w);
                tail[0].unscale_mut(hn);
            }
            if breakdown || s[j + 1].abs() <= target || products + 1 >= stop.max_iter {
                break;
            }
        }

        // y = R⁻¹ s on the steps taken; trailing zero pivots (A singular on the Krylov
        // space) add nothing to the least-squares solution, so they are dropped.
        let rmax = (0..steps).map(|i| h[(i, i)].abs()).fold(0.0, f64::max);
        let negligible = |d: f64| d.is_nan() || d.abs() <= f64::EPSILON * rmax;
        while steps > 0 && negligible(h[(steps - 1, steps - 1)]) {
            steps -= 1;
        }
        for i in (0..steps).rev() {
            let mut acc = s[i];
            for k in (i + 1)..steps {
                acc -= h[(i, k)] * y[k];
            }
            y[i] = acc / h[(i, i)];
        }
        for (yi, vi) in y.iter().zip(&basis).take(steps) {
            axpy(x.as_mut_slice(), *yi, vi.as_slice());
        }
        crate::__private::check::finite_vector(&x, "GMRES iterate")?;

        beta = residual_into(a, &x, b, &mut basis[0])?;
        products += 1;
    }
}

/// `(c, s, r)` with `[c s; −s c] (f, g)ᵀ = (r, 0)ᵀ`.
fn givens(f: f64, g: f64) -> (f64, f64, f64) {
    if g == 0.0 {
        (1.0, 0.0, f)
    } else {
        let r = f.hypot(g);
        (f / r, g / r, r)
    }
}
