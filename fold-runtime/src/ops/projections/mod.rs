//! Closed-form projections and proximal maps: the box, soft thresholding, the l2 ball,
//! a hyperplane and an affine subspace.

mod affine;
mod ball;
mod boxes;

pub use affine::*;
pub use ball::*;
pub use boxes::*;
