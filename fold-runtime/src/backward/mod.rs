//! The folded backward pass: solve `(I − Φ)ᵀ w = g`, then `∂L/∂θ = Ψᵀ w`; and the
//! forward mode `(I − Φ) t = Ψ δθ`.
//!
//! Each path builds its system (`full.rs`: `I − Φᵀ` through `vjp_state`; `reduced.rs`: the
//! system on a projection's support) and hands it to the one policy in [`ladder`]
//! (method order, fallbacks, what is final).
//!
//! # `Method::Auto`
//! 1. **Reduced path** when [`Linearized::factored`] is `Some` (`Φ = J M` through a
//!    projection's support `S`): solve `(I − Kᵀ M_SSᵀ) a = Kᵀ g_S` on `|S|` unknowns.
//!    With a dense reduced matrix (or its transpose, see
//!    [`crate::Factored::reduced_matrix_transposed`]): for `|S| ≤ 64` first a factorization
//!    in a per-thread workspace reused across calls (Cholesky when it looks symmetric, else
//!    a pivoted LU trusted only well above the singularity threshold), accepted when its
//!    residual meets `tol`; then Direct (Cholesky when symmetric positive definite, see
//!    [`crate::solvers::direct_dense`], else LU) then GMRES for
//!    `|S| ≤` [`REDUCED_DENSE_MAX`], GMRES then Direct above; without one, matrix-free
//!    GMRES (BiCGSTAB first when products are cheap) then an assembled Direct. With a
//!    *sparse* reduced matrix ([`crate::Factored::reduced_sparse`]: `M` built from
//!    `CsrMatrix` constants, diagonals and identities) the system is never dense: a
//!    sparse factorization (banded `LDLᵀ` for half-bandwidths ≤ 16; for the Gram matrix
//!    of a graph's edges, a solve on a spanning forest of the free edges in linear time;
//!    faer's AMD-ordered `LDLᵀ` for other symmetric matrices, sparse LU otherwise), then
//!    BiCGSTAB and GMRES on the assembled
//!    matrix when the factorization fails or its factor would exceed 2²⁷ entries (1 GiB).
//! 2. Otherwise **Direct** then GMRES(`crate::solvers::DEFAULT_RESTART`) for `n ≤` [`AUTO_DIRECT_MAX`];
//!    GMRES then Direct up to [`AUTO_FALLBACK_DIRECT_MAX`]; GMRES then BiCGSTAB above.
//!
//! A method that does not converge passes to the next; `NonFinite`,
//! `DimensionMismatch` and `InvalidOption` are final. Explicit methods always take the
//! full (unreduced) path, so the two can be compared.
//!
//! # Singular systems
//! When Direct finds the matrix singular (a conserved quantity, a scale invariance:
//! `I − Φ` has a null space), [`ladder`] solves by SVD for the **minimum-norm** adjoint
//! `w = ((I − Φ)ᵀ)⁺ g` (`n ≤` [`MIN_NORM_MAX`]) and returns it when its true residual
//! meets `tol`, i.e. when the system is consistent (`g ⊥ null(I − Φ)`: the loss respects
//! the invariance); [`SolveStats::null_space_dim`] then says so. An inconsistent system
//! is `Singular`.
//!
//! A singular consistent *sparse* reduced system (the cycle space of a graph's free
//! edges) is solved on a spanning forest of those edges (the unknowns of the edges closing
//! cycles zero), or factored with its vanishing pivots replaced (a maximal nonsingular
//! principal subsystem); either gives *a* solution rather than the minimum-norm one; the gradient of
//! a loss that respects the invariance is the same for every solution (see below).
//!
//! The convention for the parameter gradient: adjoints differ by `z ∈ null((I − Φ)ᵀ)`,
//! and `Ψᵀ w` by `Ψᵀ z`. When fixed points persist as `θ` moves (the usual case: the
//! invariance holds for every `θ`), `range Ψ ⊆ range(I − Φ)`, so `Ψᵀ z = 0` and the
//! gradient is the same for every adjoint: it is the derivative of the loss along the
//! forward solve. Otherwise the minimum-norm adjoint is the convention (no component of
//! `w` along `null((I − Φ)ᵀ)`).
//!
//! Every path checks its true residual before returning (see `crate::solvers`). On the
//! reduced path the residual checked is the reduced one, `r_red`; the full residual is
//! `(I − Φᵀ) w − g = Mᵀ E_S r_red`, so it is bounded by `‖M‖ ‖r_red‖`.

mod full;
pub mod ladder;
mod reduced;

use crate::solvers::Stop;
use crate::{BackwardOptions, Cotangent, FoldError, Linearized, Method, SolveStats};
use full::{dense_system, solve_full, AdjointOperator, Side, TangentOperator};
pub use ladder::MIN_NORM_MAX;
use nalgebra::DVector;
use reduced::{reduced_adjoint, reduced_solve};

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
/// `InvalidOption` for `opts.tol ≤ 0`; `Singular` / `NotConverged` when the system
/// cannot be solved to `opts.tol` (a consistent singular system is solved: see the
/// module docs).
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
            crate::solvers::scratch::keep(u.data.into());
            (grads, stats)
        }
        None => {
            let (w, stats) = solve_full(&AdjointOperator { lin, n }, grad, opts, &|| {
                dense_system(lin, n, Side::Adjoint)
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
        None => solve_full(&AdjointOperator { lin, n }, grad, opts, &|| {
            dense_system(lin, n, Side::Adjoint)
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
    crate::__private::check::same_dim("Ψ δθ (jvp_params output)", n, rhs.len())?;
    crate::__private::check::finite_vector(&rhs, "Ψ δθ (jvp_params output)")?;
    solve_full(&TangentOperator { lin, n }, &rhs, opts, &|| {
        dense_system(lin, n, Side::Tangent)
    })
}

/// A requirement that the point a backward pass linearizes at be a fixed point:
/// `‖U(x) − x‖∞ ≤ tol (1 + ‖x‖∞)`, checked by [`FixedPointCheck::verify`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixedPointCheck {
    /// Largest accepted scaled residual `‖U(x) − x‖∞ / (1 + ‖x‖∞)`.
    pub tol: f64,
}

impl Default for FixedPointCheck {
    fn default() -> Self {
        FixedPointCheck { tol: 1e-6 }
    }
}

impl FixedPointCheck {
    /// The scaled residual `‖U(x) − x‖∞ / (1 + ‖x‖∞)` of `x` given `ux = U(x)`.
    ///
    /// Errors: `DimensionMismatch` for different lengths, `NonFinite` for a NaN/∞.
    pub fn residual(x: &DVector<f64>, ux: &DVector<f64>) -> Result<f64, FoldError> {
        crate::__private::check::same_dim(
            "U(x) (must equal the state's length)",
            x.len(),
            ux.len(),
        )?;
        crate::__private::check::finite_vector(x, "x")?;
        crate::__private::check::finite_vector(ux, "U(x)")?;
        let diff = x
            .iter()
            .zip(ux.iter())
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        Ok(diff / (1.0 + x.amax()))
    }

    /// `Ok(residual)` when `x` is a fixed point within `tol`; `NotAFixedPoint` otherwise
    /// (`InvalidOption` for a negative or NaN `tol`).
    pub fn verify(&self, x: &DVector<f64>, ux: &DVector<f64>) -> Result<f64, FoldError> {
        let r = Self::residual(x, ux)?;
        check_fixed_point(r, self.tol)?;
        Ok(r)
    }
}

/// `Ok(())` when a scaled forward residual (as [`FixedPointCheck::residual`] computes
/// it) is at most `tol`; `NotAFixedPoint { residual, tol }` otherwise, `InvalidOption`
/// for a negative or NaN `tol`. For generic code that already has the residual.
pub fn check_fixed_point(residual: f64, tol: f64) -> Result<(), FoldError> {
    if tol.is_nan() || tol < 0.0 {
        return Err(FoldError::invalid_option(
            "FixedPointCheck::tol",
            format!("must be ≥ 0, got {tol}"),
        ));
    }
    if residual <= tol {
        Ok(())
    } else {
        Err(FoldError::NotAFixedPoint { residual, tol })
    }
}

/// [`folded_backward`] at a point `x` with `ux = U(x)` supplied: reports the forward
/// residual in [`SolveStats::forward_residual`] and, with `require = Some(check)`, fails
/// with `NotAFixedPoint` before solving when `x` is not a fixed point within `check.tol`.
pub fn folded_backward_at<L: Linearized + ?Sized>(
    lin: &L,
    grad: &DVector<f64>,
    opts: &BackwardOptions,
    x: &DVector<f64>,
    ux: &DVector<f64>,
    require: Option<&FixedPointCheck>,
) -> Result<(L::Grads, SolveStats), FoldError> {
    let r = match require {
        Some(check) => check.verify(x, ux)?,
        None => FixedPointCheck::residual(x, ux)?,
    };
    let (grads, mut stats) = folded_backward(lin, grad, opts)?;
    stats.forward_residual = Some(r);
    Ok((grads, stats))
}

fn check_tol(opts: &BackwardOptions) -> Result<(), FoldError> {
    if opts.tol.is_nan() {
        return Err(FoldError::non_finite("tol"));
    }
    if opts.tol <= 0.0 {
        return Err(FoldError::invalid_option(
            "BackwardOptions::tol",
            format!(
                "must be > 0 (residuals end at a rounding floor), got {}",
                opts.tol
            ),
        ));
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
    crate::__private::check::same_dim("grad", n, grad.len())?;
    crate::__private::check::finite_vector(grad, "grad")?;
    Ok(n)
}

fn stop_of(opts: &BackwardOptions) -> Stop {
    Stop {
        tol: opts.tol,
        max_iter: opts.max_iter,
    }
}
