//! The forward fixed-point driver.
// PLACEHOLDER: plain iteration; the runtime-core work adds Anderson acceleration.

use crate::{FoldError, ForwardOptions, Solution};
use nalgebra::DVector;

/// Iterates `x ← step(x)` from `x0` until the step is below `opts.tol`.
pub fn fixed_point<F>(
    mut step: F,
    x0: DVector<f64>,
    opts: &ForwardOptions,
) -> Result<Solution, FoldError>
where
    F: FnMut(&DVector<f64>) -> Result<DVector<f64>, FoldError>,
{
    let mut x = x0;
    let mut residual = f64::INFINITY;
    for k in 1..=opts.max_iter {
        let next = step(&x)?;
        residual = (&next - &x).amax() / (1.0 + next.amax());
        x = next;
        if residual <= opts.tol {
            return Ok(Solution {
                x,
                iterations: k,
                residual,
            });
        }
    }
    Err(FoldError::NotConverged {
        iterations: opts.max_iter,
        residual,
        tol: opts.tol,
    })
}

/// The iterates `x₀, x₁, …, x_k` of `x ← step(x)`.
pub fn iterates<F>(mut step: F, x0: DVector<f64>, k: usize) -> Result<Vec<DVector<f64>>, FoldError>
where
    F: FnMut(&DVector<f64>) -> Result<DVector<f64>, FoldError>,
{
    let mut xs = vec![x0];
    for _ in 0..k {
        let next = step(xs.last().expect("non-empty"))?;
        xs.push(next);
    }
    Ok(xs)
}
