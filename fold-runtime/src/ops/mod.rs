//! Differentiable primitives an update rule may call.
//!
//! Every primitive comes as a value function (`proj_simplex(&v, r)`), a fallible variant
//! (`try_proj_simplex`) that reports infeasible or non-finite input as a [`crate::FoldError`],
//! a linearization (`ProjSimplexLin`) holding what its Jacobian products need, and a unit
//! struct implementing [`crate::Primitive`] (`ProjSimplex`) for the uniform interface.

pub mod elementwise;
mod kkt;
pub mod mask;
pub mod polyhedron;
pub mod projections;
pub mod qp;
pub mod simplex;
pub mod softmax;
pub(crate) mod util;

pub use elementwise::*;
pub use polyhedron::*;
pub use projections::*;
pub use qp::*;
pub use simplex::*;
pub use softmax::*;
