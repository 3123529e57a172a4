//! Runtime of **Fold**: differentiate iterative solvers by folded optimization.
//!
//! The `#[fold]` attribute (re-exported here) turns one iteration of a solver into
//! generated derivative code; this crate holds what that code links to: the folded
//! backward solvers, the forward fixed-point driver, the unrolled baseline and the
//! differentiable primitives.
//!
//! ```
//! use fold_runtime::prelude::*;
//!
//! /// One projected-gradient step for  min ½xᵀQx + cᵀx  s.t.  0 ≤ x ≤ 1.
//! #[fold(state = x, params(c))]
//! fn pgd_step(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
//!     proj_box(&(x - (q * x + c) * alpha), 0.0, 1.0)
//! }
//!
//! let q = DMatrix::from_row_slice(2, 2, &[2.0, 0.5, 0.5, 1.0]);
//! let c = DVector::from_vec(vec![-1.0, 0.4]);
//! let x = pgd_step::solve(&DVector::zeros(2), &c, &q, 0.4, &ForwardOptions::default())?.x;
//! // x₀ is free (0 < x₀ < 1), x₁ sits at its lower bound: dL/dc = −Q_FF⁻¹ g_F on F = {0}.
//! let g = DVector::from_vec(vec![1.0, 1.0]);
//! let grads = pgd_step::backward(&x, &c, &q, 0.4, &g, &BackwardOptions::default())?;
//! assert!((grads.c[0] + 0.5).abs() < 1e-12 && grads.c[1] == 0.0);
//! # Ok::<(), FoldError>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate self as fold_runtime;

pub use fold_macros::fold;
pub use nalgebra;
pub use nalgebra_sparse;

#[doc(hidden)]
pub mod __private;
pub mod backward;
pub mod batch;
pub mod cotangent;
pub mod error;
pub mod forward;
pub mod integrations;
pub(crate) mod linalg;
pub mod linearization;
pub mod linearized;
pub mod ops;
pub mod options;
pub mod prelude;
pub mod primitive;
pub mod rule;
pub(crate) mod solvers;
pub mod stats;
pub mod unrolled;

pub use backward::{
    check_fixed_point, folded_backward, folded_backward_at, folded_jvp, solve_adjoint,
    FixedPointCheck,
};
pub use cotangent::Cotangent;
pub use error::FoldError;
pub use forward::{fixed_point, iterates};
pub use linearization::Linearization;
pub use linearized::{Factored, Linearized, SparseReduced, SupportKernel};
pub use options::{BackwardOptions, ForwardOptions, Method, Solution, SolveStats};
pub use primitive::{Arg, Primitive, PrimitiveLinearization, Value};
pub use rule::FoldRule;
pub use stats::{CodegenStats, OpCounts};
pub use unrolled::unrolled_backward;
