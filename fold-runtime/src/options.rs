//! Options and reports of the forward and backward passes.

use nalgebra::DVector;

/// How the folded backward solves `(I − Φ)ᵀ w = g`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// Reduced system when `Φ` factors through a projection's support; else direct LU for
    /// small systems and GMRES otherwise, falling back to the other when the first fails
    /// (the policy: [`crate::backward::ladder`]).
    Auto,
    /// Dense LU of `(I − Φ)ᵀ` (Cholesky when symmetric positive definite); a singular
    /// but consistent system gets the minimum-norm solution by SVD
    /// ([`SolveStats::null_space_dim`]).
    Direct,
    /// Restarted GMRES, matrix-free.
    Gmres {
        /// Krylov subspace dimension between restarts.
        restart: usize,
    },
    /// BiCGSTAB, matrix-free.
    BiCgStab,
    /// Linear fixed-point iteration `w ← Φᵀ w + g` (what unrolling computes).
    Lfpi,
    /// Approximate: Jacobian-free backpropagation, `w = g` (treats `Φ` as 0; Fung et
    /// al. 2022). Its error against the exact adjoint is `(I − Φᵀ)⁻¹ Φᵀ g`, small only
    /// when `Φ` is; `SolveStats::residual` reports `‖Φᵀ g‖ / ‖g‖`. `tol` is not checked.
    JacobianFree,
    /// Approximate: damped phantom gradient (Geng et al. 2021), `steps` of damped LFPI
    /// `w ← (1 − λ) w + λ (Φᵀ w + g)` from `w = g` with `λ = damping ∈ (0, 1]`. The error
    /// contracts by `ρ((1 − λ) I + λ Φᵀ)` per step; `SolveStats::residual` reports the
    /// residual left. `tol` is not checked.
    Phantom {
        /// Number of damped steps `k`.
        steps: usize,
        /// Damping `λ`.
        damping: f64,
    },
}

/// Options of the folded backward pass.
#[derive(Debug, Clone)]
pub struct BackwardOptions {
    /// Linear solver.
    pub method: Method,
    /// Relative tolerance on the true residual `‖(I − Φᵀ) w − g‖ ≤ tol ‖g‖`. Must be
    /// `> 0` (`InvalidOption` otherwise, `NonFinite` for NaN): even exact methods end at a
    /// rounding floor of about `1e-16 · cond`. Ignored by the approximate methods.
    pub tol: f64,
    /// Cap on iterations (matrix-vector products) of iterative methods.
    pub max_iter: usize,
}

impl Default for BackwardOptions {
    fn default() -> Self {
        BackwardOptions {
            method: Method::Auto,
            tol: 1e-10,
            max_iter: 1000,
        }
    }
}

/// Options of the forward fixed-point iteration.
#[derive(Debug, Clone)]
pub struct ForwardOptions {
    /// Stop when `‖x_{k+1} − x_k‖∞ ≤ tol (1 + min(‖x_{k+1}‖∞, 10⁶ s₀))`, where
    /// `s₀ = 1 + ‖x₀‖∞ + ‖U(x₀)‖∞` is the start's scale: the relative part follows the
    /// iterate only up to 10⁶ times that scale, so a diverging iterate (growing norm,
    /// residual bounded away from 0) cannot pass. With Anderson the test is also met by the
    /// true residual `‖U(x) − x‖∞` at the returned `x` (see [`crate::fixed_point`]).
    /// Must be a number (`NaN` is `NonFinite`).
    pub tol: f64,
    /// Cap on iterations.
    pub max_iter: usize,
    /// Depth of safeguarded Anderson acceleration, or `None` for plain iteration.
    pub anderson: Option<usize>,
}

impl Default for ForwardOptions {
    fn default() -> Self {
        ForwardOptions {
            tol: 1e-12,
            max_iter: 10_000,
            anderson: None,
        }
    }
}

/// Result of a forward fixed-point solve.
#[derive(Debug, Clone)]
pub struct Solution {
    /// The fixed point (concatenated blocks for block state).
    pub x: DVector<f64>,
    /// Iterations taken.
    pub iterations: usize,
    /// The scaled residual the stopping test accepted: `‖U(x_k) − x_k‖∞ / (1 + min(‖x‖∞,
    /// 10⁶ s₀))` for the last evaluated point `x_k` (plain iteration: the last step; with
    /// Anderson: at the returned `x` itself). See [`ForwardOptions::tol`].
    pub residual: f64,
}

/// What the folded backward did.
#[derive(Debug, Clone)]
pub struct SolveStats {
    /// The method that produced the answer (after any fallback).
    pub method: Method,
    /// Matrix-vector products with the system's operator, summed over a fallback; for
    /// Direct, the columns assembled (0 when a dense `Φ` was supplied) plus the residual
    /// checks.
    pub iterations: usize,
    /// Final relative true residual.
    pub residual: f64,
    /// Size of the system actually solved: the state dimension, or `|S|` on the reduced path.
    pub system_dim: usize,
    /// `Some(k)` when the system was singular (a null space of dimension `k`) but
    /// consistent: the returned adjoint is then the minimum-norm solution (see
    /// [`crate::backward`] for what that means for the parameter gradient). `None` for a
    /// regular system.
    pub null_space_dim: Option<usize>,
    /// `‖U(x) − x‖∞ / (1 + ‖x‖∞)` at the point of linearization, when the caller
    /// supplied `U(x)` (see [`crate::folded_backward_at`]); `None` otherwise.
    pub forward_residual: Option<f64>,
}
