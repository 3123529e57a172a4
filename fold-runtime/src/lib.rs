//! Runtime of **Fold**: differentiate iterative solvers by folded optimization.
//!
//! The `#[fold]` attribute (re-exported here) turns one iteration of a solver into
//! generated derivative code; this crate holds what that code links to: the folded
//! backward solvers, the forward fixed-point driver, the unrolled baseline and the
//! differentiable primitives.

extern crate self as fold_runtime;

pub use fold_macros::fold;
pub use nalgebra;
pub use nalgebra_sparse;

pub mod backward;
pub mod check;
pub mod cotangent;
pub mod error;
pub mod forward;
pub mod kernels;
pub mod linalg;
pub mod linearized;
pub mod ops;
pub mod options;
pub mod prelude;
pub mod primitive;
pub mod solvers;
pub mod stats;
pub mod unrolled;

pub use backward::{folded_backward, folded_jvp, solve_adjoint};
pub use cotangent::Cotangent;
pub use error::FoldError;
pub use forward::{fixed_point, iterates};
pub use linearized::{Factored, Linearized, SupportKernel};
pub use options::{BackwardOptions, ForwardOptions, Method, Solution, SolveStats};
pub use primitive::{Arg, Primitive, PrimitiveLinearization, Value};
pub use stats::{CodegenStats, OpCounts};
pub use unrolled::unrolled_backward;
