//! The linearization every generated module returns: a rule's staged values behind
//! [`Linearized`], or the error staging gave (products then return NaN).

use crate::{Cotangent, Factored, FoldError, Linearized};
use nalgebra::{DMatrix, DVector};

/// What a rule computes once at a point and the products that read it: the part of a
/// [`Linearized`] that is specific to the rule (a `#[fold]` module generates it).
pub trait Products {
    /// The parameter gradient type.
    type Grads: Cotangent;
    /// Length of the (concatenated) state.
    fn state_dim(&self) -> usize;
    /// `Φᵀ v`.
    fn vjp_state(&self, v: &DVector<f64>) -> DVector<f64>;
    /// `Φ u`.
    fn jvp_state(&self, u: &DVector<f64>) -> DVector<f64>;
    /// `Ψᵀ v`.
    fn vjp_params(&self, v: &DVector<f64>) -> Self::Grads;
    /// `Ψ δθ`.
    fn jvp_params(&self, dtheta: &Self::Grads) -> DVector<f64>;
    /// Dense `Φ` when its structure gives it cheaper than n products.
    fn state_jacobian(&self) -> Option<DMatrix<f64>> {
        None
    }
    /// The reduced structure when the rule ends in a projection (see [`Factored`]).
    fn factored(&self) -> Option<&dyn Factored<Grads = Self::Grads>> {
        None
    }
}

/// A rule linearized at a point: its staged [`Products`], or the error that staging gave.
///
/// Never panics: a failed linearization reports its error through
/// [`Linearized::check`], and its products return NaN of the right shapes.
pub struct Linearization<P: Products> {
    staged: Result<P, Failed<P::Grads>>,
}

struct Failed<G> {
    error: FoldError,
    state_dim: usize,
    nan_grads: G,
}

impl<P: Products> Linearization<P> {
    /// Wraps the outcome of staging; `state_dim` and `nan_grads` give the shapes a failed
    /// linearization's products return.
    pub fn new(
        staged: Result<P, FoldError>,
        state_dim: usize,
        nan_grads: impl FnOnce() -> P::Grads,
    ) -> Self {
        let staged = staged.map_err(|error| Failed {
            error,
            state_dim,
            nan_grads: nan_grads(),
        });
        Linearization { staged }
    }

    /// The staged products, or the error staging gave.
    pub fn staged(&self) -> Result<&P, &FoldError> {
        self.staged.as_ref().map_err(|f| &f.error)
    }

    fn nan(&self, f: impl FnOnce(&P) -> DVector<f64>) -> DVector<f64> {
        match &self.staged {
            Ok(s) => f(s),
            Err(e) => DVector::from_element(e.state_dim, f64::NAN),
        }
    }
}

impl<P: Products> Linearized for Linearization<P> {
    type Grads = P::Grads;
    fn state_dim(&self) -> usize {
        match &self.staged {
            Ok(s) => s.state_dim(),
            Err(e) => e.state_dim,
        }
    }
    fn check(&self) -> Result<(), FoldError> {
        self.staged().map(|_| ()).map_err(Clone::clone)
    }
    fn vjp_state(&self, v: &DVector<f64>) -> DVector<f64> {
        self.nan(|s| s.vjp_state(v))
    }
    fn jvp_state(&self, u: &DVector<f64>) -> DVector<f64> {
        self.nan(|s| s.jvp_state(u))
    }
    fn vjp_params(&self, v: &DVector<f64>) -> P::Grads {
        match &self.staged {
            Ok(s) => s.vjp_params(v),
            Err(e) => e.nan_grads.clone(),
        }
    }
    fn jvp_params(&self, dtheta: &P::Grads) -> DVector<f64> {
        self.nan(|s| s.jvp_params(dtheta))
    }
    fn state_jacobian(&self) -> Option<DMatrix<f64>> {
        self.staged.as_ref().ok()?.state_jacobian()
    }
    fn factored(&self) -> Option<&dyn Factored<Grads = P::Grads>> {
        self.staged.as_ref().ok()?.factored()
    }
}
