//! What `#[fold]` generates for a rule, as one trait, and the plumbing written once over it:
//! the module's public functions (through [`rule!`](crate::__private::rule)) and
//! [`FoldRule`].

use crate::rule::{ParamFields, StateLayout};
use crate::{
    BackwardOptions, Cotangent, FoldError, FoldRule, ForwardOptions, Linearization, Linearized,
    Solution, SolveStats,
};
use nalgebra::{DMatrix, DVector};
use std::fmt::Debug;

/// A rule's bundles as its signature declares them: the state, parameters, constants and
/// arguments, with their conversions. Implemented by [`rule!`](crate::__private::rule).
pub trait Declared: Sized + 'static {
    /// The state, owned (one block, or a tuple of blocks).
    type State: StateLayout + Clone + Send + Sync + Debug;
    /// The constants, owned.
    type Consts: Clone + Send + Sync + Debug;
    /// Gradients with respect to the parameters, also the type of the parameters.
    type Grads: Cotangent + ParamFields + Shaped + Clone + Send + Sync + Debug;
    /// Dense `Φ` and `Ψ`.
    type Jacobians: Shaped;
    /// The rule function's arguments (state included) as it declares them.
    type Args<'a>;
    /// The shapes `(rows, cols)` of the parameters, in attribute order.
    type ParamShapes: AsRef<[(usize, usize)]>;

    /// The rule's function name.
    const NAME: &'static str;
    /// Parameter names, in attribute order.
    const PARAMS: &'static [&'static str];
    /// Constant names, in signature order.
    const CONSTS: &'static [&'static str];

    /// The arguments at state `x` with owned parameters and constants.
    fn args<'a>(x: &'a Self::State, p: &'a Self::Grads, k: &'a Self::Consts) -> Self::Args<'a>;
    /// The state the arguments hold, owned.
    fn state(args: &Self::Args<'_>) -> Self::State;
    /// The packed state length and the parameters' shapes.
    fn shapes(args: &Self::Args<'_>) -> (usize, Self::ParamShapes);
}

/// The rule-specific items `#[fold]` generates: checks, the forward step, staging and the
/// Jacobians. Everything else is derived from them and [`Declared`].
pub trait Generated: Declared {
    /// What products read, computed once per linearization.
    type Staged<'a>: Linearized<Grads = Self::Grads>;

    /// `Err(DimensionMismatch)` unless the arguments' dimensions agree.
    fn check_dims(args: &Self::Args<'_>) -> Result<(), FoldError>;
    /// `Err(NonFinite)` naming the first argument with a non-finite entry; with `staged`,
    /// the matrices staging checks in its first product with them are left to it.
    fn check_finite(args: &Self::Args<'_>, staged: bool) -> Result<(), FoldError>;
    /// One application of the rule at `x` (the other arguments from `args`).
    fn step(args: &Self::Args<'_>, x: &Self::State) -> Result<Self::State, FoldError>;
    /// The rule linearized at `args` (dimensions already checked).
    fn stage<'a>(args: Self::Args<'a>) -> Result<Self::Staged<'a>, FoldError>;
    /// `Jacobians` from a linearization and its dense `Φ`.
    fn jacobians(staged: &Self::Staged<'_>, state: DMatrix<f64>) -> Self::Jacobians;
}

/// An argument converted from the owned value a bundle holds: a reference to it, or a
/// copy for an argument the rule takes by value.
pub trait FromOwned<'a, T> {
    /// The argument for `owned`.
    fn from_owned(owned: &'a T) -> Self;
}

impl<'a, T> FromOwned<'a, T> for &'a T {
    fn from_owned(owned: &'a T) -> Self {
        owned
    }
}

impl<T: Clone> FromOwned<'_, T> for T {
    fn from_owned(owned: &T) -> T {
        owned.clone()
    }
}

/// Gradients or Jacobians filled with NaN, for a point that cannot be linearized.
pub trait Shaped: Sized {
    /// NaN-filled, for a state of length `n` and parameters of the given shapes.
    fn nan(n: usize, params: &[(usize, usize)]) -> Self;
}

/// The module's `linearize`.
pub fn linearize<'a, R: Generated>(args: R::Args<'a>) -> Linearization<R::Staged<'a>> {
    let (n, shapes) = R::shapes(&args);
    let staged = R::check_dims(&args).and_then(|()| R::stage(args));
    Linearization::new(staged, n, || R::Grads::nan(n, shapes.as_ref()))
}

/// The module's `jacobians`: structured where the rule has a formula, NaN-filled when the
/// point cannot be linearized.
pub fn jacobians<R: Generated>(args: R::Args<'_>) -> R::Jacobians {
    let (n, shapes) = R::shapes(&args);
    match R::check_dims(&args).and_then(|()| R::stage(args)) {
        Ok(s) => {
            let state = s
                .state_jacobian()
                .unwrap_or_else(|| super::kernels::columns(n, |e| s.jvp_state(e)));
            R::jacobians(&s, state)
        }
        Err(_) => R::Jacobians::nan(n, shapes.as_ref()),
    }
}

/// The module's `backward_with_stats`: every input checked, then the folded backward.
pub fn backward_with_stats<R: Generated>(
    args: R::Args<'_>,
    grad: &DVector<f64>,
    opts: &BackwardOptions,
) -> Result<(R::Grads, SolveStats), FoldError> {
    R::check_finite(&args, true)?;
    R::check_dims(&args)?;
    // Staged directly: a failure is returned, so no `Linearization` needs to hold it.
    let staged = R::stage(args)?;
    // `grad` is checked there (length, then entries).
    crate::folded_backward(&staged, grad, opts)
}

/// The module's `solve`: every input checked, then the fixed-point iteration of the step.
pub fn solve<R: Generated>(
    args: R::Args<'_>,
    opts: &ForwardOptions,
) -> Result<Solution, FoldError> {
    R::check_finite(&args, false)?;
    R::check_dims(&args)?;
    let start = R::state(&args);
    crate::fixed_point(
        |x| StateLayout::map_packed(x, &start, |s| R::step(&args, s)),
        start.pack(),
        opts,
    )
}

impl<R: Generated> FoldRule for R {
    type State = R::State;
    type Params = R::Grads;
    type Consts = R::Consts;
    type Grads = R::Grads;
    const NAME: &'static str = R::NAME;
    const PARAMS: &'static [&'static str] = R::PARAMS;
    const CONSTS: &'static [&'static str] = R::CONSTS;

    fn solve(
        p: &R::Grads,
        k: &R::Consts,
        x0: &R::State,
        opts: &ForwardOptions,
    ) -> Result<Solution, FoldError> {
        solve::<R>(R::args(x0, p, k), opts)
    }

    fn step(p: &R::Grads, k: &R::Consts, x: &R::State) -> Result<R::State, FoldError> {
        let args = R::args(x, p, k);
        R::check_dims(&args)?;
        R::step(&args, x)
    }

    fn backward(
        p: &R::Grads,
        k: &R::Consts,
        x: &R::State,
        grad: &DVector<f64>,
        opts: &BackwardOptions,
    ) -> Result<(R::Grads, SolveStats), FoldError> {
        backward_with_stats::<R>(R::args(x, p, k), grad, opts)
    }
}
