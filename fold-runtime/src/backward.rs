//! The folded backward pass: solve `(I − Φ)ᵀ w = g`, then `∂L/∂θ = Ψᵀ w`; and the
//! forward mode `(I − Φ) t = Ψ δθ`.
//!
//! # `Method::Auto`
//! 1. **Reduced path** when [`Linearized::factored`] is `Some` (`Φ = J M` through a
//!    projection's support `S`): solve `(I − Kᵀ M_SSᵀ) a = Kᵀ g_S` on `|S|` unknowns.
//!    With a dense reduced matrix: Cholesky (symmetric positive definite; see
//!    [`crate::solvers::direct_dense`]) or LU for
//!    `|S| ≤` [`REDUCED_DENSE_MAX`], GMRES on the dense matrix above it; without one,
//!    matrix-free GMRES through `inner_vjp_state`. Each falls back to the other kind
//!    when it does not converge.
//! 2. Otherwise **Direct** (dense LU, or Cholesky when `I − Φ` is symmetric positive
//!    definite) for `n ≤` [`AUTO_DIRECT_MAX`], **GMRES**([`DEFAULT_RESTART`]) above.
//!    If Direct does not reach the tolerance, GMRES is tried; if GMRES does not, Direct
//!    is tried for `n ≤` [`AUTO_FALLBACK_DIRECT_MAX`], BiCGSTAB above. `Singular`,
//!    `NonFinite` and `DimensionMismatch` are final.
//!
//! Explicit methods always take the full (unreduced) path, so the two can be compared.
//!
//! Every path checks its true residual before returning (see [`crate::solvers`]). On the
//! reduced path the residual checked is the reduced one, `r_red`; the full residual is
//! `(I − Φᵀ) w − g = Mᵀ E_S r_red`, so it is bounded by `‖M‖ ‖r_red‖`.

use crate::solvers::{
    self, add_iterations, assemble, bicgstab, direct_dense, gmres, lfpi, DenseOperator, Operator,
    Solved, Stop, DEFAULT_RESTART,
};
use crate::{
    BackwardOptions, Cotangent, Factored, FoldError, Linearized, Method, SolveStats, SupportKernel,
};
use nalgebra::{DMatrix, DVector};
use std::borrow::Cow;
use std::cell::RefCell;

/// `Auto` solves full systems of at most this size by Direct, larger ones by GMRES.
///
/// Measured (`cargo bench -p fold-runtime --bench solvers -- threshold`, dense box-QP
/// `Φ = diag(m)(I − αQ)`, products through `vjp_state`): Direct (n products + LU) against
/// GMRES(30) took 19 vs 10 µs at n = 25, 68 vs 59 µs at n = 50, 0.30 vs 0.16 ms at
/// n = 100 and 2.7 vs 0.45 ms at n = 200. Direct is kept up to the crossover because it
/// is exact and indifferent to conditioning; GMRES failures fall back to it anyway.
pub const AUTO_DIRECT_MAX: usize = 50;

/// When GMRES fails under `Auto`, systems up to this size fall back to Direct
/// (≈ 0.15 s of LU at n = 3000); larger ones to BiCGSTAB.
pub const AUTO_FALLBACK_DIRECT_MAX: usize = 3000;

/// `Auto` on the reduced path factors a dense reduced matrix up to this size and runs
/// GMRES on it above. Measured on `αQ` (SPD, condition ≈ 15; `-- threshold`), Cholesky
/// against GMRES(30), two runs: 0.67/0.69 vs 0.92/0.70 ms at 300, 2.4/2.6 vs 2.8/2.3 ms
/// at 500, 5.3/6.3 vs 5.0/4.5 ms at 700. The crossover lies between 400 and 700; worse
/// conditioning only slows GMRES, so the threshold sits at the middle of that range.
pub const REDUCED_DENSE_MAX: usize = 500;

/// Solves `(I − Φ)ᵀ w = g` and returns `(Ψᵀ w, stats)`.
///
/// Errors: `DimensionMismatch` when `grad.len() != lin.state_dim()` or a product has the
/// wrong length; `NonFinite` for a NaN/∞ in `grad`, a product or the result;
/// `Singular` / `NotConverged` when the system cannot be solved to `opts.tol`.
pub fn folded_backward<L: Linearized + ?Sized>(
    lin: &L,
    grad: &DVector<f64>,
    opts: &BackwardOptions,
) -> Result<(L::Grads, SolveStats), FoldError> {
    let n = check_grad(lin, grad, opts)?;
    let reduced = match opts.method {
        Method::Auto => lin.factored(),
        _ => None,
    };
    let (grads, stats) = match reduced {
        Some(f) => {
            let (u, stats) = reduced_solve(f, n, grad, opts)?;
            let mut grads = f.inner_vjp_params(&u);
            // The head's terms are linear in w, so they vanish with g.
            if f.head_has_params() && grad.iter().any(|&v| v != 0.0) {
                let w = reduced_adjoint(f, grad, &u)?;
                if let Some(head) = f.head_vjp_params(&w) {
                    grads += &head;
                }
            }
            (grads, stats)
        }
        None => {
            let (w, stats) = solve_full(&AdjointOperator::new(lin, n), grad, opts, || {
                dense_adjoint(lin, n)
            })?;
            (lin.vjp_params(&w), stats)
        }
    };
    if !grads.all_finite() {
        return Err(FoldError::non_finite("parameter gradient"));
    }
    Ok((grads, stats))
}

/// Solves `(I − Φ)ᵀ w = g` and returns `(w, stats)` (the adjoint state itself).
///
/// Same rules and errors as [`folded_backward`]; on the reduced path `w = g + Mᵀ E_S a`.
pub fn solve_adjoint<L: Linearized + ?Sized>(
    lin: &L,
    grad: &DVector<f64>,
    opts: &BackwardOptions,
) -> Result<(DVector<f64>, SolveStats), FoldError> {
    let n = check_grad(lin, grad, opts)?;
    let reduced = match opts.method {
        Method::Auto => lin.factored(),
        _ => None,
    };
    match reduced {
        Some(f) => {
            let (u, stats) = reduced_solve(f, n, grad, opts)?;
            Ok((reduced_adjoint(f, grad, &u)?, stats))
        }
        None => solve_full(&AdjointOperator::new(lin, n), grad, opts, || {
            dense_adjoint(lin, n)
        }),
    }
}

/// Forward mode: solves `(I − Φ) t = Ψ δθ` and returns `(t, stats)`.
///
/// `Auto` uses the full-path rule (the reduced path needs only reverse products).
/// Errors as [`folded_backward`], with `NonFinite { what: "dtheta" }` for a bad tangent.
pub fn folded_jvp<L: Linearized + ?Sized>(
    lin: &L,
    dtheta: &L::Grads,
    opts: &BackwardOptions,
) -> Result<(DVector<f64>, SolveStats), FoldError> {
    check_tol(opts)?;
    if !dtheta.all_finite() {
        return Err(FoldError::non_finite("dtheta"));
    }
    let n = lin.state_dim();
    let rhs = lin.jvp_params(dtheta);
    crate::check::same_dim("Ψ δθ (jvp_params output)", n, rhs.len())?;
    crate::check::finite_vector(&rhs, "Ψ δθ (jvp_params output)")?;
    solve_full(&TangentOperator { lin, n }, &rhs, opts, || {
        let phi = checked_state_jacobian(lin, n)?;
        Ok(match phi {
            Some(phi) => (identity_minus(phi), false, 0),
            None => (assemble(&TangentOperator { lin, n })?, false, n),
        })
    })
}

fn check_tol(opts: &BackwardOptions) -> Result<(), FoldError> {
    if opts.tol.is_nan() {
        return Err(FoldError::non_finite("tol"));
    }
    Ok(())
}

fn check_grad<L: Linearized + ?Sized>(
    lin: &L,
    grad: &DVector<f64>,
    opts: &BackwardOptions,
) -> Result<usize, FoldError> {
    check_tol(opts)?;
    let n = lin.state_dim();
    crate::check::same_dim("grad", n, grad.len())?;
    crate::check::finite_vector(grad, "grad")?;
    Ok(n)
}

fn stop_of(opts: &BackwardOptions) -> Stop {
    Stop {
        tol: opts.tol,
        max_iter: opts.max_iter,
    }
}

/// `I − Φ`, in place.
fn identity_minus(mut phi: DMatrix<f64>) -> DMatrix<f64> {
    phi.neg_mut();
    for i in 0..phi.nrows().min(phi.ncols()) {
        phi[(i, i)] += 1.0;
    }
    phi
}

fn checked_state_jacobian<L: Linearized + ?Sized>(
    lin: &L,
    n: usize,
) -> Result<Option<DMatrix<f64>>, FoldError> {
    match lin.state_jacobian() {
        None => Ok(None),
        Some(phi) => {
            crate::check::same_dim("rows of state_jacobian", n, phi.nrows())?;
            crate::check::same_dim("columns of state_jacobian", n, phi.ncols())?;
            crate::check::finite_matrix(&phi, "state_jacobian")?;
            Ok(Some(phi))
        }
    }
}

/// The dense matrix Direct factors for the adjoint system: `I − Φ` from a supplied
/// `Φ` (solved transposed, so `Φᵀ` is never formed), else `I − Φᵀ` from n products.
/// Returns `(matrix, transposed, products)`.
fn dense_adjoint<L: Linearized + ?Sized>(
    lin: &L,
    n: usize,
) -> Result<(DMatrix<f64>, bool, usize), FoldError> {
    Ok(match checked_state_jacobian(lin, n)? {
        Some(phi) => (identity_minus(phi), true, 0),
        None => (assemble(&AdjointOperator::new(lin, n))?, false, n),
    })
}

/// `x ↦ x − Φᵀ x` through `vjp_state`.
struct AdjointOperator<'a, L: ?Sized> {
    lin: &'a L,
    n: usize,
}

impl<'a, L: Linearized + ?Sized> AdjointOperator<'a, L> {
    fn new(lin: &'a L, n: usize) -> Self {
        AdjointOperator { lin, n }
    }
}

/// `y ← x − p` after checking the user-supplied product `p`.
fn identity_minus_product(
    x: &DVector<f64>,
    p: &DVector<f64>,
    y: &mut DVector<f64>,
    what: &str,
) -> Result<(), FoldError> {
    crate::check::same_dim(what, x.len(), p.len())?;
    crate::check::finite_vector(p, what)?;
    crate::check::same_dim("solver buffer", x.len(), y.len())?;
    y.zip_zip_apply(x, p, |yi, xi, pi| *yi = xi - pi);
    Ok(())
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
struct TangentOperator<'a, L: ?Sized> {
    lin: &'a L,
    n: usize,
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

/// The method `Auto` tries first on a full system of size `n`.
fn auto_first(n: usize) -> Method {
    if n <= AUTO_DIRECT_MAX {
        Method::Direct
    } else {
        Method::Gmres {
            restart: DEFAULT_RESTART,
        }
    }
}

/// Solves `A x = b` on the full path with `opts.method`; `dense` supplies the matrix
/// for Direct as `(matrix, transposed, products spent building it)`.
fn solve_full<O, D>(
    op: &O,
    b: &DVector<f64>,
    opts: &BackwardOptions,
    dense: D,
) -> Result<(DVector<f64>, SolveStats), FoldError>
where
    O: Operator + ?Sized,
    D: Fn() -> Result<(DMatrix<f64>, bool, usize), FoldError>,
{
    let n = op.dim();
    let stop = stop_of(opts);
    let stats = |method, solved: &Solved, extra: usize| SolveStats {
        method,
        iterations: solved.iterations + extra,
        residual: solved.residual,
        system_dim: n,
    };
    if b.iter().all(|&v| v == 0.0) {
        let method = match opts.method {
            Method::Auto => auto_first(n),
            m => m,
        };
        return Ok((DVector::zeros(n), stats(method, &Solved::zero(n), 0)));
    }
    let run = |method: Method| -> Result<(Solved, usize), FoldError> {
        match method {
            Method::Direct | Method::Auto => {
                let (m, transposed, built) = dense()?;
                let (solved, _) = direct_dense(Cow::Owned(m), transposed, op, b, &stop)?;
                Ok((solved, built))
            }
            Method::Gmres { restart } => Ok((gmres(op, b, restart, &stop)?, 0)),
            Method::BiCgStab => Ok((bicgstab(op, b, &stop)?, 0)),
            Method::Lfpi => Ok((lfpi(op, b, &stop)?, 0)),
        }
    };
    match opts.method {
        Method::Auto => {
            let first = auto_first(n);
            match run(first) {
                Ok((s, extra)) => {
                    let st = stats(first, &s, extra);
                    Ok((s.x, st))
                }
                Err(FoldError::NotConverged { iterations, .. }) => {
                    let second = match first {
                        Method::Direct => Method::Gmres {
                            restart: DEFAULT_RESTART,
                        },
                        _ if n <= AUTO_FALLBACK_DIRECT_MAX => Method::Direct,
                        _ => Method::BiCgStab,
                    };
                    let (s, extra) = run(second).map_err(|e| add_iterations(e, iterations))?;
                    let st = stats(second, &s, extra + iterations);
                    Ok((s.x, st))
                }
                Err(e) => Err(e),
            }
        }
        method => {
            let (s, extra) = run(method)?;
            let st = stats(method, &s, extra);
            Ok((s.x, st))
        }
    }
}

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
        crate::check::same_dim("reduced operand", k, a.len())?;
        crate::check::same_dim("reduced output", k, y.len())?;
        let mut u = self.scatter.borrow_mut();
        for (&i, &ai) in self.support.iter().zip(a.iter()) {
            u[i] = ai;
        }
        let m = self.f.inner_vjp_state(&u);
        for &i in self.support {
            u[i] = 0.0;
        }
        let what = "Mᵀu (inner_vjp_state output)";
        crate::check::same_dim(what, u.len(), m.len())?;
        crate::check::finite_vector(&m, what)?;
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

/// Solves the reduced system and returns `u = E_S a` (full length) with the stats.
fn reduced_solve<G: Cotangent>(
    f: &dyn Factored<Grads = G>,
    n: usize,
    g: &DVector<f64>,
    opts: &BackwardOptions,
) -> Result<(DVector<f64>, SolveStats), FoldError> {
    let support = f.support();
    checked_support(support, n)?;
    let k = support.len();
    let kernel = f.kernel();
    let mut rhs = DVector::from_iterator(k, support.iter().map(|&i| g[i]));
    kernel.apply(&mut rhs);
    let stop = stop_of(opts);
    let stats = |method, solved: &Solved, extra: usize| SolveStats {
        method,
        iterations: solved.iterations + extra,
        residual: solved.residual,
        system_dim: k,
    };
    let restart = DEFAULT_RESTART.min(k.max(1));
    let krylov = Method::Gmres { restart };

    let (solved, stats) = if rhs.iter().all(|&v| v == 0.0) {
        let s = Solved::zero(k);
        let st = stats(Method::Direct, &s, 0);
        (s, st)
    } else if let Some(r) = f.reduced_matrix() {
        crate::check::same_dim("rows of reduced_matrix", k, r.nrows())?;
        crate::check::same_dim("columns of reduced_matrix", k, r.ncols())?;
        crate::check::finite_matrix(&r, "reduced_matrix")?;
        let op = DenseOperator::new(&r)?;
        let dense = || direct_dense(Cow::Borrowed(&r), false, &op, &rhs, &stop).map(|(s, _)| s);
        let iterative = || gmres(&op, &rhs, restart, &stop);
        if k <= REDUCED_DENSE_MAX {
            fallback(dense, Method::Direct, iterative, krylov, &stats)?
        } else {
            fallback(iterative, krylov, dense, Method::Direct, &stats)?
        }
    } else {
        let op = ReducedOperator {
            f,
            support,
            kernel,
            scatter: RefCell::new(DVector::zeros(n)),
        };
        let iterative = || gmres(&op, &rhs, restart, &stop);
        let dense = || -> Result<Solved, FoldError> {
            if k > AUTO_FALLBACK_DIRECT_MAX {
                return Err(solvers::not_converged(0, f64::INFINITY, stop.tol));
            }
            let (mut s, _) = direct_dense(Cow::Owned(assemble(&op)?), false, &op, &rhs, &stop)?;
            s.iterations += k;
            Ok(s)
        };
        if f.cheap_products() {
            // Orthogonalizing against a GMRES basis costs more than such a product:
            // BiCGSTAB's short recurrences win (GMRES, then a direct solve, if it fails).
            match bicgstab(&op, &rhs, &stop) {
                Ok(s) => {
                    let st = stats(Method::BiCgStab, &s, 0);
                    (s, st)
                }
                Err(FoldError::NotConverged { iterations, .. }) => {
                    let (s, mut st) = fallback(iterative, krylov, dense, Method::Direct, &stats)
                        .map_err(|e| add_iterations(e, iterations))?;
                    st.iterations += iterations;
                    (s, st)
                }
                Err(e) => return Err(e),
            }
        } else {
            fallback(iterative, krylov, dense, Method::Direct, &stats)?
        }
    };
    let mut u = DVector::zeros(n);
    for (&i, &ai) in support.iter().zip(solved.x.iter()) {
        u[i] = ai;
    }
    Ok((u, stats))
}

/// Runs `first`; on `NotConverged` runs `second`, counting the products of both.
fn fallback<F1, F2, S>(
    first: F1,
    m1: Method,
    second: F2,
    m2: Method,
    stats: &S,
) -> Result<(Solved, SolveStats), FoldError>
where
    F1: FnOnce() -> Result<Solved, FoldError>,
    F2: FnOnce() -> Result<Solved, FoldError>,
    S: Fn(Method, &Solved, usize) -> SolveStats,
{
    match first() {
        Ok(s) => {
            let st = stats(m1, &s, 0);
            Ok((s, st))
        }
        Err(FoldError::NotConverged { iterations, .. }) => {
            let s = second().map_err(|e| add_iterations(e, iterations))?;
            let st = stats(m2, &s, iterations);
            Ok((s, st))
        }
        Err(e) => Err(e),
    }
}

/// The full adjoint from the reduced solution: `w = g + Mᵀ u`.
fn reduced_adjoint<G: Cotangent>(
    f: &dyn Factored<Grads = G>,
    g: &DVector<f64>,
    u: &DVector<f64>,
) -> Result<DVector<f64>, FoldError> {
    let m = f.inner_vjp_state(u);
    let what = "Mᵀu (inner_vjp_state output)";
    crate::check::same_dim(what, g.len(), m.len())?;
    crate::check::finite_vector(&m, what)?;
    Ok(m + g)
}
