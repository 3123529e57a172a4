//! Options and reports of the forward and backward passes.

use nalgebra::DVector;

/// How the folded backward solves `(I − Φ)ᵀ w = g`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// Reduced system when `Φ` factors through a projection's support; else direct LU for
    /// small systems and GMRES otherwise, falling back to the other when the first fails.
    Auto,
    /// Dense LU of `(I − Φ)ᵀ`.
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
}

/// Options of the folded backward pass.
#[derive(Debug, Clone)]
pub struct BackwardOptions {
    /// Linear solver.
    pub method: Method,
    /// Relative tolerance on the true residual `‖(I − Φᵀ) w − g‖ ≤ tol ‖g‖`.
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
    /// Stop when `‖x_{k+1} − x_k‖∞ ≤ tol (1 + ‖x_{k+1}‖∞)`.
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
    /// Last step size `‖x_{k+1} − x_k‖∞ / (1 + ‖x_{k+1}‖∞)`.
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
}
