//! The unrolling baseline: reverse through the stored iterates of a forward run.
// PLACEHOLDER: the runtime-core work completes and tests it.

use crate::{Cotangent, FoldError, Linearized};
use nalgebra::DVector;

/// `dL/dθ` of `L(x_K)` through `x_{k+1} = U(x_k, θ)`, given `x₀ … x_K` and a way to
/// linearize `U` at each iterate.
pub fn unrolled_backward<L, F>(
    iterates: &[DVector<f64>],
    mut linearize: F,
    grad: &DVector<f64>,
) -> Result<L::Grads, FoldError>
where
    L: Linearized,
    F: FnMut(&DVector<f64>) -> Result<L, FoldError>,
{
    let k = iterates.len().saturating_sub(1);
    let mut w = grad.clone();
    let mut acc: Option<L::Grads> = None;
    for x in iterates[..k].iter().rev() {
        let lin = linearize(x)?;
        let g = lin.vjp_params(&w);
        match acc.as_mut() {
            Some(a) => *a += &g,
            None => acc = Some(g),
        }
        w = lin.vjp_state(&w);
    }
    acc.ok_or_else(|| FoldError::dimension("unrolled_backward iterates", 2, iterates.len()))
}
