//! The folded backward pass.
// PLACEHOLDER: a naive dense solve; the runtime-core work replaces it.

use crate::{BackwardOptions, Cotangent, FoldError, Linearized, Method, SolveStats};
use nalgebra::{DMatrix, DVector};

/// Solves `(I − Φ)ᵀ w = g` and returns `(Ψᵀ w, stats)`.
pub fn folded_backward<L: Linearized + ?Sized>(
    lin: &L,
    grad: &DVector<f64>,
    opts: &BackwardOptions,
) -> Result<(L::Grads, SolveStats), FoldError> {
    let (w, stats) = solve_adjoint(lin, grad, opts)?;
    let g = lin.vjp_params(&w);
    if !g.all_finite() {
        return Err(FoldError::non_finite("parameter gradient"));
    }
    Ok((g, stats))
}

/// Solves `(I − Φ)ᵀ w = g` and returns `w`.
pub fn solve_adjoint<L: Linearized + ?Sized>(
    lin: &L,
    grad: &DVector<f64>,
    _opts: &BackwardOptions,
) -> Result<(DVector<f64>, SolveStats), FoldError> {
    let n = lin.state_dim();
    let mut a = DMatrix::identity(n, n);
    for j in 0..n {
        let mut e = DVector::zeros(n);
        e[j] = 1.0;
        let col = lin.vjp_state(&e);
        for i in 0..n {
            a[(i, j)] -= col[i];
        }
    }
    let w = crate::linalg::Lu::factor(&a)?.solve(grad);
    Ok((
        w,
        SolveStats {
            method: Method::Direct,
            iterations: 0,
            residual: 0.0,
            system_dim: n,
        },
    ))
}

/// Forward mode: solves `(I − Φ) t = Ψ δθ` and returns `t`.
pub fn folded_jvp<L: Linearized + ?Sized>(
    lin: &L,
    dtheta: &L::Grads,
    _opts: &BackwardOptions,
) -> Result<(DVector<f64>, SolveStats), FoldError> {
    let n = lin.state_dim();
    let mut a = DMatrix::identity(n, n);
    for j in 0..n {
        let mut e = DVector::zeros(n);
        e[j] = 1.0;
        let col = lin.jvp_state(&e);
        for i in 0..n {
            a[(i, j)] -= col[i];
        }
    }
    let t = crate::linalg::Lu::factor(&a)?.solve(&lin.jvp_params(dtheta));
    Ok((
        t,
        SolveStats {
            method: Method::Direct,
            iterations: 0,
            residual: 0.0,
            system_dim: n,
        },
    ))
}
