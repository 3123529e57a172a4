//! The one error type of the runtime and of generated code.

use thiserror::Error;

/// Why a forward solve, a backward pass or a primitive could not return a trustworthy value.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum FoldError {
    /// An iterative method stopped at `max_iter` with its true residual above `tol`.
    #[error(
        "did not converge: residual {residual:.3e} > tol {tol:.3e} after {iterations} iterations"
    )]
    NotConverged {
        /// Iterations (matrix-vector products for linear solvers) spent.
        iterations: usize,
        /// Final true residual, relative to the right-hand side.
        residual: f64,
        /// Requested tolerance.
        tol: f64,
    },
    /// A linear system is singular or numerically indistinguishable from singular.
    #[error("singular system: (I - Phi) or an inner factorization cannot be inverted")]
    Singular,
    /// A NaN or infinity in an input, an output or an intermediate.
    #[error("non-finite value (NaN or infinity) in {what}")]
    NonFinite {
        /// Which argument or quantity held it.
        what: String,
    },
    /// An argument's length or shape disagrees with the others.
    #[error("dimension mismatch in {what}: expected {expected}, found {found}")]
    DimensionMismatch {
        /// Which argument or quantity disagrees.
        what: String,
        /// The size implied by the other arguments.
        expected: usize,
        /// The size found.
        found: usize,
    },
    /// The point a backward pass was asked to linearize at is not a fixed point within
    /// the required tolerance (see [`crate::FixedPointCheck`]).
    #[error("not a fixed point: scaled residual ||U(x) - x|| = {residual:.3e} > tol {tol:.3e}")]
    NotAFixedPoint {
        /// `‖U(x) − x‖∞ / (1 + ‖x‖∞)`.
        residual: f64,
        /// The required tolerance.
        tol: f64,
    },
    /// An option is outside the values it accepts (e.g. `BackwardOptions::tol ≤ 0`).
    #[error("invalid option `{option}`: {reason}")]
    InvalidOption {
        /// The option, as `Type::field`.
        option: String,
        /// What it must be, and what it was.
        reason: String,
    },
    /// An inner solve of a primitive (a QP, a projection onto an empty set) failed.
    #[error("primitive `{primitive}` failed: {status}")]
    PrimitiveFailed {
        /// The primitive's name, as written in the update rule.
        primitive: String,
        /// The inner solver's status or the reason.
        status: String,
    },
}

impl FoldError {
    /// Shorthand for [`FoldError::NonFinite`].
    pub fn non_finite(what: impl Into<String>) -> Self {
        FoldError::NonFinite { what: what.into() }
    }

    /// Shorthand for [`FoldError::DimensionMismatch`].
    pub fn dimension(what: impl Into<String>, expected: usize, found: usize) -> Self {
        FoldError::DimensionMismatch {
            what: what.into(),
            expected,
            found,
        }
    }

    /// Shorthand for [`FoldError::InvalidOption`].
    pub fn invalid_option(option: impl Into<String>, reason: impl Into<String>) -> Self {
        FoldError::InvalidOption {
            option: option.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`FoldError::PrimitiveFailed`].
    pub fn primitive(primitive: impl Into<String>, status: impl Into<String>) -> Self {
        FoldError::PrimitiveFailed {
            primitive: primitive.into(),
            status: status.into(),
        }
    }
}
