//! The forward fixed-point driver: plain iteration or safeguarded Anderson acceleration.

use crate::{FoldError, ForwardOptions, Solution};
use nalgebra::{DMatrix, DVector};
use std::collections::VecDeque;

/// Tikhonov weight of Anderson's least-squares problem, relative to the largest squared
/// residual difference: keeps the normal equations solvable when the history becomes
/// (nearly) collinear, which is exactly what happens close to convergence.
const ANDERSON_REGULARIZATION: f64 = 1e-10;

/// How far the relative part of the stopping test follows the iterate: the scale is
/// `1 + min(‖x‖∞, GROWTH_CAP · (1 + ‖x₀‖∞ + ‖step(x₀)‖∞))`. A genuine fixed point reached
/// from `x₀` is rarely this far from the start's scale; an iterate that is diverging
/// (`‖x‖∞ → ∞` with a residual bounded away from 0) is, and then only an absolute
/// residual `≤ tol (1 + GROWTH_CAP · start scale)` is accepted, which divergence does not
/// reach.
pub const GROWTH_CAP: f64 = 1e6;

/// Iterates `x ← step(x)` from `x0` until the step is small:
/// `‖x_{k+1} − x_k‖∞ ≤ tol · (1 + min(‖x_{k+1}‖∞, GROWTH_CAP · s₀))` with
/// `s₀ = 1 + ‖x₀‖∞ + ‖step(x₀)‖∞` (see [`GROWTH_CAP`]; divergence cannot pass this test).
///
/// With `opts.anderson = Some(m)`, type-II Anderson acceleration of depth `m` extrapolates
/// from the last `m` residual differences; an extrapolated point whose residual
/// `‖step(x) − x‖₂` exceeds that of the point it was extrapolated from is rejected (the
/// plain step is taken instead) and the history restarts. With Anderson the test is
/// applied to the true residual `‖step(x) − x‖∞` of the point `x` it returns:
/// `Solution::x` is the last point `step` was evaluated at (possibly an extrapolation),
/// not its image. Plain iteration returns the last `step` output. `Solution::iterations`
/// counts calls to `step`.
///
/// Errors: `NonFinite` for a NaN/∞ in `x0` or an iterate (or a NaN `tol`),
/// `InvalidOption` for `tol < 0`, `DimensionMismatch` when `step` changes the length,
/// `NotConverged` after `opts.max_iter` steps, or what `step` returns.
pub fn fixed_point<F>(
    mut step: F,
    x0: DVector<f64>,
    opts: &ForwardOptions,
) -> Result<Solution, FoldError>
where
    F: FnMut(&DVector<f64>) -> Result<DVector<f64>, FoldError>,
{
    crate::__private::check::finite_vector(&x0, "x0")?;
    if opts.tol.is_nan() {
        return Err(FoldError::non_finite("tol"));
    }
    if opts.tol < 0.0 {
        return Err(FoldError::invalid_option(
            "ForwardOptions::tol",
            format!(
                "must be ≥ 0 (0 accepts only an exact fixed point), got {}",
                opts.tol
            ),
        ));
    }
    let n = x0.len();
    let mut eval = |x: &DVector<f64>| -> Result<DVector<f64>, FoldError> {
        let fx = step(x)?;
        crate::__private::check::same_dim("output of the step", n, fx.len())?;
        crate::__private::check::finite_vector(&fx, "iterate")?;
        Ok(fx)
    };
    match opts.anderson {
        Some(m) if m > 0 => anderson(&mut eval, x0, m, opts),
        _ => plain(&mut eval, x0, opts),
    }
}

/// The stopping test's scale: how large an iterate may be before the relative part of
/// the test stops following it.
#[derive(Debug, Clone, Copy)]
struct Scale {
    /// `GROWTH_CAP · (1 + ‖x₀‖∞ + ‖step(x₀)‖∞)`, set by the first step.
    cap: f64,
}

impl Scale {
    fn new(x0: &DVector<f64>, fx0: &DVector<f64>) -> Scale {
        Scale {
            cap: GROWTH_CAP * (1.0 + x0.amax() + fx0.amax()),
        }
    }

    /// The scaled step `‖f − x‖∞ / (1 + min(‖f‖∞, cap))`.
    fn step_size(&self, x: &DVector<f64>, fx: &DVector<f64>) -> f64 {
        let diff = x
            .iter()
            .zip(fx.iter())
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        diff / (1.0 + fx.amax().min(self.cap))
    }
}

fn plain<F>(eval: &mut F, x0: DVector<f64>, opts: &ForwardOptions) -> Result<Solution, FoldError>
where
    F: FnMut(&DVector<f64>) -> Result<DVector<f64>, FoldError>,
{
    let mut x = x0;
    let mut residual = f64::INFINITY;
    let mut scale: Option<Scale> = None;
    for k in 1..=opts.max_iter {
        let next = eval(&x)?;
        let sc = *scale.get_or_insert_with(|| Scale::new(&x, &next));
        residual = sc.step_size(&x, &next);
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

/// An Anderson extrapolation waiting for its verdict.
struct Pending {
    /// The plain step from the base point, taken if the extrapolation is rejected.
    plain: DVector<f64>,
    /// `‖step(base) − base‖₂`.
    base_residual: f64,
}

fn anderson<F>(
    eval: &mut F,
    x0: DVector<f64>,
    depth: usize,
    opts: &ForwardOptions,
) -> Result<Solution, FoldError>
where
    F: FnMut(&DVector<f64>) -> Result<DVector<f64>, FoldError>,
{
    // History of differences of step outputs (ΔF) and residuals (ΔG), newest last.
    let mut dfs: VecDeque<DVector<f64>> = VecDeque::with_capacity(depth);
    let mut dgs: VecDeque<DVector<f64>> = VecDeque::with_capacity(depth);
    let mut previous: Option<(DVector<f64>, DVector<f64>)> = None;
    let mut pending: Option<Pending> = None;
    let mut x = x0;
    let mut residual = f64::INFINITY;
    let mut scale: Option<Scale> = None;
    for k in 1..=opts.max_iter {
        let fx = eval(&x)?;
        let sc = *scale.get_or_insert_with(|| Scale::new(&x, &fx));
        residual = sc.step_size(&x, &fx);
        if residual <= opts.tol {
            // The residual was measured at x (which may be an extrapolation): return x,
            // the point it certifies, not fx = step(x), whose residual is unknown.
            return Ok(Solution {
                x,
                iterations: k,
                residual,
            });
        }
        let g = &fx - &x;
        let gnorm = g.norm();
        if let Some(p) = pending.take() {
            if gnorm.is_nan() || gnorm > p.base_residual {
                // Safeguard: the extrapolation did worse than the point it came from.
                x = p.plain;
                dfs.clear();
                dgs.clear();
                previous = None;
                continue;
            }
        }
        if let Some((fp, gp)) = previous.take() {
            if dfs.len() == depth {
                dfs.pop_front();
                dgs.pop_front();
            }
            dfs.push_back(&fx - fp);
            dgs.push_back(&g - gp);
        }
        let extrapolated = if dgs.is_empty() {
            None
        } else {
            anderson_mix(&fx, &g, &dfs, &dgs)
        };
        previous = Some((fx.clone(), g));
        x = match extrapolated {
            Some(xa) => {
                pending = Some(Pending {
                    plain: fx,
                    base_residual: gnorm,
                });
                xa
            }
            None => fx,
        };
    }
    Err(FoldError::NotConverged {
        iterations: opts.max_iter,
        residual,
        tol: opts.tol,
    })
}

/// `f − ΔF γ` with `γ = argmin ‖g − ΔG γ‖² + λ‖γ‖²`, or `None` if that is not finite.
fn anderson_mix(
    fx: &DVector<f64>,
    g: &DVector<f64>,
    dfs: &VecDeque<DVector<f64>>,
    dgs: &VecDeque<DVector<f64>>,
) -> Option<DVector<f64>> {
    let p = dgs.len();
    let mut gram = DMatrix::from_fn(p, p, |i, j| dgs[i].dot(&dgs[j]));
    let scale = (0..p).map(|i| gram[(i, i)]).fold(0.0, f64::max);
    if scale.is_nan() || scale <= 0.0 {
        return None;
    }
    for i in 0..p {
        gram[(i, i)] += ANDERSON_REGULARIZATION * scale;
    }
    let rhs = DVector::from_fn(p, |i, _| dgs[i].dot(g));
    let gamma = gram.cholesky()?.solve(&rhs);
    let mut xa = fx.clone();
    for (gi, df) in gamma.iter().zip(dfs) {
        xa.axpy(-gi, df, 1.0);
    }
    crate::__private::check::all_finite(xa.as_slice()).then_some(xa)
}

/// The iterates `x₀, x₁, …, x_k` of `x ← step(x)` (plain iteration, for unrolling).
///
/// Errors: `NonFinite` for a NaN/∞ in `x0` or an iterate, `DimensionMismatch` when `step`
/// changes the length, or what `step` returns.
pub fn iterates<F>(mut step: F, x0: DVector<f64>, k: usize) -> Result<Vec<DVector<f64>>, FoldError>
where
    F: FnMut(&DVector<f64>) -> Result<DVector<f64>, FoldError>,
{
    crate::__private::check::finite_vector(&x0, "x0")?;
    let n = x0.len();
    let mut xs = Vec::with_capacity(k + 1);
    let mut x = x0;
    for _ in 0..k {
        let next = step(&x)?;
        crate::__private::check::same_dim("output of the step", n, next.len())?;
        crate::__private::check::finite_vector(&next, "iterate")?;
        xs.push(std::mem::replace(&mut x, next));
    }
    xs.push(x);
    Ok(xs)
}
