//! The linearization every generated module returns: a rule's staged values (which
//! implement [`Linearized`] themselves), or the error staging gave (products then NaN).

use crate::{Factored, FoldError, Linearized};
use nalgebra::{DMatrix, DVector};

/// A rule linearized at a point: its staged values, or the error that staging gave.
///
/// Never panics: a failed linearization reports its error through
/// [`Linearized::check`], and its products return NaN of the right shapes.
pub struct Linearization<P: Linearized> {
    staged: Result<P, Failed<P::Grads>>,
}

struct Failed<G> {
    error: FoldError,
    state_dim: usize,
    nan_grads: G,
}

impl<P: Linearized> Linearization<P> {
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

impl<P: Linearized> Linearized for Linearization<P> {
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
