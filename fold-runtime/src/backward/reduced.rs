//! The reduced system `(I − Kᵀ M_SSᵀ) a = Kᵀ g_S` on a projection's support `S`: its
//! operator (dense reduced matrix or matrix-free through `inner_vjp_state`), its ladder.

use super::ladder::{self, Dense, Outcome, System};
use super::{stop_of, AUTO_FALLBACK_DIRECT_MAX, REDUCED_DENSE_MAX};
use crate::linalg::{looks_symmetric, with_small_factor, SmallFactor, SMALL_MAX, SYMMETRY_TOL};
use crate::solvers::scratch;
use crate::solvers::sparse_direct::{solve_assembled, Assembled, BANDED_MAX};
use crate::solvers::{assemble, DenseOperator, Operator, Solved, Stop, DEFAULT_RESTART};
use crate::{BackwardOptions, Cotangent, Factored, FoldError, Method, SolveStats, SupportKernel};
use nalgebra::{DMatrix, DVector};
use std::borrow::Cow;
use std::cell::RefCell;

/// `a ↦ a − K (Mᵀ E_S a)_S` through `inner_vjp_state`, the reduced operator without a
/// dense reduced matrix.
struct ReducedOperator<'a, G> {
    f: &'a dyn Factored<Grads = G>,
    support: &'a [usize],
    kernel: SupportKernel,
    /// Full-length scatter buffer, zero off `S` between calls.
    scatter: RefCell<DVector<f64>>,
}

impl<G: Cotangent> Operator for ReducedOperator<'_, G> {
    fn dim(&self) -> usize {
        self.support.len()
    }
    fn apply(&self, a: &DVector<f64>, y: &mut DVector<f64>) -> Result<(), FoldError> {
        let k = self.dim();
        crate::__private::check::same_dim("reduced operand", k, a.len())?;
        crate::__private::check::same_dim("reduced output", k, y.len())?;
        let mut u = self.scatter.borrow_mut();
        for (&i, &ai) in self.support.iter().zip(a.iter()) {
            u[i] = ai;
        }
        let m = self.f.inner_vjp_state(&u);
        for &i in self.support {
            u[i] = 0.0;
        }
        let what = "Mᵀu (inner_vjp_state output)";
        crate::__private::check::same_dim(what, u.len(), m.len())?;
        crate::__private::check::finite_vector(&m, what)?;
        for (yi, &i) in y.iter_mut().zip(self.support) {
            *yi = m[i];
        }
        self.kernel.apply(y);
        y.zip_apply(a, |yi, ai| *yi = ai - *yi);
        Ok(())
    }
}

/// Validates `S` (strictly increasing, inside `0..n`).
fn checked_support(support: &[usize], n: usize) -> Result<(), FoldError> {
    let mut prev: Option<usize> = None;
    for &i in support {
        if i >= n || prev.is_some_and(|p| p >= i) {
            return Err(FoldError::dimension(
                "support index (strictly increasing, below the state dimension)",
                n,
                i,
            ));
        }
        prev = Some(i);
    }
    Ok(())
}

/// Solves the reduced system under `Auto` and returns `u = E_S a` (full length) with the
/// stats. Ladders: with a dense reduced matrix, Direct then GMRES for
/// `|S| ≤ REDUCED_DENSE_MAX`, GMRES then Direct above; matrix-free, GMRES then Direct
/// (assembled, `|S| ≤ AUTO_FALLBACK_DIRECT_MAX`), led by BiCGSTAB when products are cheap.
pub(super) fn reduced_solve<G: Cotangent>(
    f: &dyn Factored<Grads = G>,
    n: usize,
    g: &DVector<f64>,
    opts: &BackwardOptions,
) -> Result<(DVector<f64>, SolveStats), FoldError> {
    let support = f.support();
    checked_support(support, n)?;
    let k = support.len();
    let kernel = f.kernel();
    // Work buffers of a large system come from (and go back to) the per-thread pool.
    let mut gathered = scratch::empty(k);
    gathered.extend(support.iter().map(|&i| g[i]));
    let mut rhs = crate::__private::temps::as_vector(gathered);
    kernel.apply(&mut rhs);
    let stop = stop_of(opts);
    let krylov = Method::Gmres {
        restart: DEFAULT_RESTART.min(k.max(1)),
    };
    let out = if rhs.iter().all(|&v| v == 0.0) {
        // Nothing to solve; the reduced matrix is not even requested.
        Outcome {
            solved: Solved::zero(k),
            method: Method::Direct,
            null_space_dim: None,
        }
    } else if let Some(r) = f.reduced_matrix() {
        crate::__private::check::same_dim("rows of reduced_matrix", k, r.nrows())?;
        crate::__private::check::same_dim("columns of reduced_matrix", k, r.ncols())?;
        let transposed = f.reduced_matrix_transposed();
        // After the small rung: its accepted residual reads every entry of `r`, which no
        // non-finite one passes.
        if let Some(done) = small_direct(&r, transposed, &rhs, &stop, n, support) {
            scratch::keep(r.data.into());
            return Ok(done);
        }
        crate::__private::check::finite_matrix(&r, "reduced_matrix")?;
        let op = if transposed {
            DenseOperator::transposed(&r)?
        } else {
            DenseOperator::new(&r)?
        };
        let dense = || {
            Ok(Dense {
                matrix: Cow::Borrowed(&r),
                transposed,
                products: 0,
            })
        };
        let system = System {
            op: &op,
            dense: &dense,
        };
        let ladder = if k <= REDUCED_DENSE_MAX {
            [Method::Direct, krylov]
        } else {
            [krylov, Method::Direct]
        };
        let out = ladder::run(&system, &rhs, &ladder, &stop)?;
        scratch::keep(r.data.into());
        out
    } else if let Some(r) = f.reduced_sparse()? {
        sparse_reduced_solve(&Assembled::new(r)?, &rhs, &stop)?
    } else {
        let op = ReducedOperator {
            f,
            support,
            kernel,
            scatter: RefCell::new(DVector::zeros(n)),
        };
        let dense = || {
            Ok(Dense {
                matrix: Cow::Owned(assemble(&op)?),
                transposed: false,
                products: k,
            })
        };
        let system = System {
            op: &op,
            dense: &dense,
        };
        let direct_ok = k <= AUTO_FALLBACK_DIRECT_MAX;
        // Orthogonalizing against a GMRES basis costs more than a cheap product:
        // BiCGSTAB's short recurrences lead then.
        let all = [Method::BiCgStab, krylov, Method::Direct];
        let from = usize::from(!f.cheap_products());
        let to = if direct_ok { 3 } else { 2 };
        ladder::run(&system, &rhs, &all[from..to], &stop)?
    };
    scratch::keep(rhs.data.into());
    Ok(finish(n, support, out))
}

/// `u = E_S a` (full length) and the stats of the reduced solve.
fn finish(n: usize, support: &[usize], out: Outcome) -> (DVector<f64>, SolveStats) {
    let u = scatter(n, support, out.solved.x.as_slice());
    scratch::keep(out.solved.x.data.into());
    let stats = SolveStats {
        method: out.method,
        iterations: out.solved.iterations,
        residual: out.solved.residual,
        system_dim: support.len(),
        null_space_dim: out.null_space_dim,
        forward_residual: None,
    };
    (u, stats)
}

/// `E_S a`: `a` on `S`, zero elsewhere.
fn scatter(n: usize, support: &[usize], a: &[f64]) -> DVector<f64> {
    let mut u = crate::__private::temps::as_vector(scratch::zeroed(n));
    for (&i, &ai) in support.iter().zip(a) {
        u[i] = ai;
    }
    u
}

/// The first rung for a small dense reduced matrix `r` (`|S| ≤ SMALL_MAX`; its transpose
/// when `transposed`): Cholesky when it looks symmetric (a reduced Hessian, the common
/// case), else a pivoted LU, factored in a reused workspace ([`with_small_factor`]), at
/// most one refinement, accepted only when the true residual against `r` meets `tol`.
/// `None` leaves the system to the ladder, which decides (singular and ill-conditioned
/// matrices among them); accepted, it returns what [`finish`] does, scattered straight
/// from the workspace. At these sizes the ladder's own Direct rung (the same
/// factorizations) spends more on its allocations, scans and layers than on the
/// arithmetic.
fn small_direct(
    r: &DMatrix<f64>,
    transposed: bool,
    b: &DVector<f64>,
    stop: &Stop,
    n: usize,
    support: &[usize],
) -> Option<(DVector<f64>, SolveStats)> {
    let k = b.len();
    if k > SMALL_MAX || r.shape() != (k, k) {
        return None;
    }
    let bnorm = b.norm();
    // Overflowing or tiny right-hand sides are scaled by the ladder.
    if !(bnorm.is_finite() && bnorm > ladder::SCALE_FLOOR) {
        return None;
    }
    let symmetric = looks_symmetric(r, SYMMETRY_TOL);
    let (a, b) = (r.as_slice(), b.as_slice());
    // ‖b − op(r) x‖ into `res`.
    let residual = |x: &[f64], res: &mut [f64]| {
        res.copy_from_slice(b);
        crate::linalg::gemv_slice(res, -1.0, a, x, 1.0, transposed);
        res.iter().map(|v| v * v).sum::<f64>().sqrt()
    };
    let solve = |factor: &SmallFactor<'_>, x: &mut [f64]| {
        if transposed {
            factor.solve_transpose_in_place(x);
        } else {
            factor.solve_in_place(x);
        }
    };
    let solved = with_small_factor(r, symmetric, 2 * k, |factor, scratch| {
        let (x, res) = scratch.split_at_mut(k);
        x.copy_from_slice(b);
        solve(factor, x);
        let mut rel = residual(x, res) / bnorm;
        let mut products = 1;
        if rel.is_nan() || rel > stop.tol {
            // The correction solves in place of the residual.
            solve(factor, res);
            x.iter_mut().zip(res.iter()).for_each(|(xi, ci)| *xi += ci);
            rel = residual(x, res) / bnorm;
            products += 1;
        }
        (rel <= stop.tol).then(|| {
            let stats = SolveStats {
                method: Method::Direct,
                iterations: products,
                residual: rel,
                system_dim: k,
                null_space_dim: None,
                forward_residual: None,
            };
            (scatter(n, support, x), stats)
        })
    });
    solved.flatten()
}

/// The assembled sparse reduced system: a sparse factorization (see
/// [`crate::solvers::sparse_direct`]), then BiCGSTAB and GMRES on the assembled matrix
/// when it fails (ill-conditioning; a singular system the factorization could not
/// split). Never a dense `|S| × |S|` matrix.
fn sparse_reduced_solve(
    r: &Assembled<'_>,
    rhs: &DVector<f64>,
    stop: &Stop,
) -> Result<Outcome, FoldError> {
    let k = rhs.len();
    crate::__private::check::same_dim("rows of reduced_sparse", k, r.dim())?;
    if let Assembled::Csr { a, .. } = r {
        crate::__private::check::same_dim("columns of reduced_sparse", k, a.ncols())?;
    }
    let first = match solve_assembled(r, rhs, stop, BANDED_MAX) {
        Ok(s) => {
            return Ok(Outcome {
                solved: s.solved,
                method: Method::Direct,
                null_space_dim: s.dropped,
            })
        }
        Err(e @ (FoldError::NotConverged { .. } | FoldError::Singular)) => e,
        Err(e) => return Err(e),
    };
    let no_dense = || -> Result<Dense<'static>, FoldError> { Err(FoldError::Singular) };
    let system = System {
        op: r,
        dense: &no_dense,
    };
    let krylov = Method::Gmres {
        restart: DEFAULT_RESTART.min(k.max(1)),
    };
    match ladder::run(&system, rhs, &[Method::BiCgStab, krylov], stop) {
        Ok(out) => Ok(out),
        Err(FoldError::NotConverged { .. }) if matches!(first, FoldError::Singular) => {
            Err(FoldError::Singular)
        }
        Err(e) => Err(e),
    }
}

/// The full adjoint from the reduced solution: `w = g + Mᵀ u`.
pub(super) fn reduced_adjoint<G: Cotangent>(
    f: &dyn Factored<Grads = G>,
    g: &DVector<f64>,
    u: &DVector<f64>,
) -> Result<DVector<f64>, FoldError> {
    let m = f.inner_vjp_state(u);
    let what = "Mᵀu (inner_vjp_state output)";
    crate::__private::check::same_dim(what, g.len(), m.len())?;
    crate::__private::check::finite_vector(&m, what)?;
    Ok(m + g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solvers::testing::{residual, stop};

    #[test]
    fn the_small_rung_takes_small_nonsingular_systems_and_leaves_the_rest_to_the_ladder() {
        let n = 7;
        let spd = DMatrix::from_fn(n, n, |i, j| {
            if i == j {
                3.0
            } else {
                1.0 / (2.0 + (i + j) as f64)
            }
        });
        let b = DVector::from_fn(n, |i, _| (i as f64 * 0.7).cos());
        let all: Vec<usize> = (0..n).collect();
        let rung = |a: &DMatrix<f64>, transposed, b: &DVector<f64>| {
            small_direct(a, transposed, b, &stop(), b.len(), &all[..b.len().min(n)])
        };
        let (x, stats) = rung(&spd, false, &b).expect("SPD");
        assert!(residual(&spd, &x, &b) <= 1e-12);
        assert_eq!(
            (stats.method, stats.iterations, stats.system_dim),
            (Method::Direct, 1, n)
        );

        // Symmetric indefinite and asymmetric: solved (by LU), to the residual asked.
        let indefinite = &spd - DMatrix::identity(n, n) * 3.5;
        let mut asymmetric = spd.clone();
        asymmetric[(0, n - 1)] += 0.5;
        for a in [&indefinite, &asymmetric] {
            let (x, _) = rung(a, false, &b).expect("nonsingular");
            assert!(residual(a, &x, &b) <= 1e-12);
            // Given as its transpose: the solve reads it transposed.
            let (x, _) = rung(&a.transpose(), true, &b).expect("nonsingular");
            assert!(residual(a, &x, &b) <= 1e-12);
        }
        // Singular, too large, non-finite, a zero right-hand side: left to the ladder.
        let singular = DMatrix::from_element(n, n, 1.0);
        assert!(rung(&singular, false, &b).is_none());
        let m = SMALL_MAX + 1;
        let big = DMatrix::identity(m, m);
        assert!(
            small_direct(&big, false, &DVector::from_element(m, 1.0), &stop(), m, &[]).is_none()
        );
        let mut nan = spd.clone();
        nan[(n - 1, 0)] = f64::NAN;
        assert!(rung(&nan, false, &b).is_none());
        assert!(rung(&spd, false, &DVector::zeros(n)).is_none());
    }
}
