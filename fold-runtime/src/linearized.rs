//! An update rule `U(x, θ)` linearized at a point: the products the backward pass needs.

use crate::Cotangent;
use nalgebra::{DMatrix, DVector};
use nalgebra_sparse::CsrMatrix;

/// An assembled sparse reduced matrix, with the structure its solver is picked from.
#[derive(Debug, Clone)]
pub enum SparseReduced<'a> {
    /// A general square CSR matrix (its symmetry is probed).
    Csr(CsrMatrix<f64>),
    /// `scale · A[rows, :] A[rows, :]ᵀ`: symmetric by construction, never a CSR matrix
    /// when its rows make a narrow band (1-D differences).
    Gram {
        /// The scalar `c`.
        scale: f64,
        /// The matrix whose rows are taken.
        a: &'a CsrMatrix<f64>,
        /// The rows, strictly increasing.
        rows: &'a [usize],
    },
}

/// `U` linearized at `(x, θ)`: products with `Φ = ∂U/∂x` and `Ψ = ∂U/∂θ`.
///
/// Everything that does not depend on the (co)tangent is computed once when the value is
/// built; the products are what a linear solver calls per iteration.
pub trait Linearized {
    /// The parameter gradient type (`Grads` of a `#[fold]` rule).
    type Grads: Cotangent;

    /// Length of the (concatenated) state.
    fn state_dim(&self) -> usize;
    /// `Φᵀ v`.
    fn vjp_state(&self, v: &DVector<f64>) -> DVector<f64>;
    /// `Φ u`.
    fn jvp_state(&self, u: &DVector<f64>) -> DVector<f64>;
    /// `Ψᵀ v`, one entry per parameter.
    fn vjp_params(&self, v: &DVector<f64>) -> Self::Grads;
    /// `Ψ δθ`.
    fn jvp_params(&self, dtheta: &Self::Grads) -> DVector<f64>;

    /// `Err` when the linearization could not be built (an inner solve failed, inputs were
    /// malformed); products of a failed linearization return NaN. Solvers check this first.
    fn check(&self) -> Result<(), crate::FoldError> {
        Ok(())
    }

    /// Dense `Φ` (n × n) when it is cheaper to build from structure than by n products.
    fn state_jacobian(&self) -> Option<DMatrix<f64>> {
        None
    }

    /// Present when `Φ` factors through a projection supported on few coordinates;
    /// the backward pass then solves a reduced system (see [`Factored`]).
    fn factored(&self) -> Option<&dyn Factored<Grads = Self::Grads>> {
        None
    }
}

/// The Jacobian of a projection-like map at its argument, restricted to its support `S`:
/// `J = E_S K E_Sᵀ` with `E_S` selecting `S`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupportKernel {
    /// `K = I` (a 0/1 mask: box, clamp, relu, soft threshold).
    Identity,
    /// `K = I − 11ᵀ/|S|` (simplex and capped simplex on their free coordinates).
    Centered,
}

impl SupportKernel {
    /// `K y` in place (`K` is symmetric).
    pub fn apply(self, y: &mut DVector<f64>) {
        if let SupportKernel::Centered = self {
            if !y.is_empty() {
                let mean = y.sum() / y.len() as f64;
                y.add_scalar_mut(-mean);
            }
        }
    }
}

/// `U(x, θ) = P(z(x, θ))` where the head `P` is a projection whose Jacobian is
/// `J = E_S K E_Sᵀ`: `Φ = J M` with `M = ∂z/∂x`, `Ψ = J N` (+ the head's own parameters).
///
/// Then `(I − Φᵀ) w = g` reduces to `(I − Kᵀ M_SSᵀ) a = Kᵀ g_S` on `|S|` unknowns,
/// `w = g + Mᵀ E_S a`, and `Ψᵀ w = Nᵀ E_S a` (+ the head's parameter terms).
pub trait Factored: Linearized {
    /// The support `S`, increasing.
    fn support(&self) -> &[usize];
    /// The kernel `K` on the support.
    fn kernel(&self) -> SupportKernel;
    /// `Mᵀ u` for a full-length `u`.
    fn inner_vjp_state(&self, u: &DVector<f64>) -> DVector<f64>;
    /// `Nᵀ u` for a full-length `u`.
    fn inner_vjp_params(&self, u: &DVector<f64>) -> Self::Grads;
    /// The head's own parameter terms `Hᵀ w` (bounds, radius, threshold that depend on θ),
    /// or `None` (the default) when the head's arguments are constants.
    fn head_vjp_params(&self, w: &DVector<f64>) -> Option<Self::Grads> {
        let _ = w;
        None
    }
    /// Whether the head has parameter terms at all: when `false` (the default, matching
    /// [`Factored::head_vjp_params`]'s) the backward pass skips forming the full adjoint
    /// `w = g + Mᵀ E_S a` (one full-size product) that only the head's terms need.
    fn head_has_params(&self) -> bool {
        false
    }
    /// Whether a product with `Mᵀ` costs O(n) or O(nnz) (elementwise and sparse work only)
    /// rather than a dense O(n²) pass. Krylov methods then pick the one with the least
    /// work per product (BiCGSTAB) over the one with the fewest products (GMRES).
    fn cheap_products(&self) -> bool {
        false
    }
    /// The dense reduced matrix `I − Kᵀ M_SSᵀ` (|S| × |S|), when the rule's structure lets it
    /// be formed without full-size products.
    fn reduced_matrix(&self) -> Option<DMatrix<f64>>;
    /// Whether [`Factored::reduced_matrix`] returns the transpose of the reduced matrix
    /// (gathered in the storage order of the constants it reads); the solve then reads
    /// it transposed.
    fn reduced_matrix_transposed(&self) -> bool {
        false
    }
    /// The reduced matrix `I − Kᵀ M_SSᵀ` assembled sparse (O(nnz) memory), when `M` is
    /// built from `CsrMatrix` constants, diagonals and identities; `Err` when assembling
    /// it failed (a dimension mismatch).
    fn reduced_sparse(&self) -> Result<Option<SparseReduced<'_>>, crate::FoldError> {
        Ok(None)
    }
}
