//! The unrolling baseline: reverse through the stored iterates of a forward run.
//!
//! For `x_{k+1} = U(x_k, θ)` and a loss `L(x_K)` with `g = ∂L/∂x_K`, backpropagation is
//! `w_K = g`, `w_k = Φ_kᵀ w_{k+1}`, `∂L/∂θ = Σ_k Ψ_kᵀ w_{k+1}`, with `Φ_k, Ψ_k` taken at
//! `x_k`: LFPI with a moving linearization. Its error against the folded gradient decays
//! at the forward iteration's rate and lags the forward error (Kotary et al., 2023).

use crate::{Cotangent, FoldError, Linearized};
use nalgebra::DVector;

/// `dL/dθ` of `L(x_K)` through `x_{k+1} = U(x_k, θ)`, given `x₀ … x_K`, a way to
/// linearize `U` at each iterate, and `grad = ∂L/∂x_K`. The linearizations may borrow the
/// iterates (a generated `Linearization<'a>` does).
///
/// With `K = 0` (only `x₀`), `x_K` does not depend on `θ`: the result is the zero
/// gradient, shaped by linearizing once at `x₀`.
///
/// Errors: `DimensionMismatch` for no iterates, iterates of different lengths, a
/// linearization or product of the wrong size; `NonFinite` for a NaN/∞ in `grad`, an
/// iterate, a product or the result; or what `linearize` returns.
pub fn unrolled_backward<'a, L, F>(
    iterates: &'a [DVector<f64>],
    mut linearize: F,
    grad: &DVector<f64>,
) -> Result<L::Grads, FoldError>
where
    L: Linearized,
    F: FnMut(&'a DVector<f64>) -> Result<L, FoldError>,
{
    let n = check_iterates(iterates, grad)?;
    let k = iterates.len() - 1;
    let mut w = grad.clone();
    let mut acc: Option<L::Grads> = None;
    for x in iterates[..k].iter().rev() {
        let lin = checked_linearize(&mut linearize, x, n)?;
        let g = lin.vjp_params(&w);
        match acc.as_mut() {
            Some(a) => *a += &g,
            None => acc = Some(g),
        }
        w = checked_vjp_state(&lin, &w)?;
    }
    let grads = match acc {
        Some(a) => a,
        None => {
            // K = 0: zeros shaped like the parameters.
            let lin = checked_linearize(&mut linearize, &iterates[0], n)?;
            lin.vjp_params(&DVector::zeros(n)).zeros_like()
        }
    };
    if !grads.all_finite() {
        return Err(FoldError::non_finite("unrolled parameter gradient"));
    }
    Ok(grads)
}

/// The unrolled gradient truncated at every `K = 1 … len − 1`: entry `K − 1` is
/// [`unrolled_backward`] on `x₀ … x_K` with cotangent `loss_grad(x_K)`.
///
/// Linearizes each iterate once and keeps the linearizations, then runs one reverse pass
/// per `K`: `K(K+1)/2` products in all. This is what the paper's convergence plots need
/// (unrolled gradient error against `K`).
pub fn unrolled_backward_each<'a, L, F, G>(
    iterates: &'a [DVector<f64>],
    mut linearize: F,
    mut loss_grad: G,
) -> Result<Vec<L::Grads>, FoldError>
where
    L: Linearized,
    F: FnMut(&'a DVector<f64>) -> Result<L, FoldError>,
    G: FnMut(&DVector<f64>) -> DVector<f64>,
{
    let first = iterates
        .first()
        .ok_or_else(|| FoldError::dimension("iterates (at least x₀)", 1, 0))?;
    let n = first.len();
    let lins = iterates[..iterates.len() - 1]
        .iter()
        .map(|x| {
            crate::__private::check::same_dim("iterate length", n, x.len())?;
            crate::__private::check::finite_vector(x, "iterate")?;
            checked_linearize(&mut linearize, x, n)
        })
        .collect::<Result<Vec<L>, FoldError>>()?;
    let mut out = Vec::with_capacity(lins.len());
    for k in 1..iterates.len() {
        let xk = &iterates[k];
        crate::__private::check::same_dim("iterate length", n, xk.len())?;
        crate::__private::check::finite_vector(xk, "iterate")?;
        let mut w = loss_grad(xk);
        crate::__private::check::same_dim("loss gradient", n, w.len())?;
        crate::__private::check::finite_vector(&w, "loss gradient")?;
        let mut acc: Option<L::Grads> = None;
        for lin in lins[..k].iter().rev() {
            let g = lin.vjp_params(&w);
            match acc.as_mut() {
                Some(a) => *a += &g,
                None => acc = Some(g),
            }
            w = checked_vjp_state(lin, &w)?;
        }
        // k ≥ 1, so at least one term was accumulated.
        if let Some(a) = acc {
            if !a.all_finite() {
                return Err(FoldError::non_finite("unrolled parameter gradient"));
            }
            out.push(a);
        }
    }
    Ok(out)
}

/// Validates lengths and finiteness; returns the state dimension.
fn check_iterates(iterates: &[DVector<f64>], grad: &DVector<f64>) -> Result<usize, FoldError> {
    if iterates.is_empty() {
        return Err(FoldError::dimension("iterates (at least x₀)", 1, 0));
    }
    let n = grad.len();
    crate::__private::check::finite_vector(grad, "grad")?;
    for x in iterates {
        crate::__private::check::same_dim("iterate length (= grad length)", n, x.len())?;
        crate::__private::check::finite_vector(x, "iterate")?;
    }
    Ok(n)
}

fn checked_linearize<'a, L, F>(
    linearize: &mut F,
    x: &'a DVector<f64>,
    n: usize,
) -> Result<L, FoldError>
where
    L: Linearized,
    F: FnMut(&'a DVector<f64>) -> Result<L, FoldError>,
{
    let lin = linearize(x)?;
    crate::__private::check::same_dim("state_dim of a linearization", n, lin.state_dim())?;
    Ok(lin)
}

fn checked_vjp_state<L: Linearized>(lin: &L, w: &DVector<f64>) -> Result<DVector<f64>, FoldError> {
    let p = lin.vjp_state(w);
    crate::__private::check::same_dim("Φᵀv (vjp_state output)", w.len(), p.len())?;
    crate::__private::check::finite_vector(&p, "Φᵀv (vjp_state output)")?;
    Ok(p)
}
