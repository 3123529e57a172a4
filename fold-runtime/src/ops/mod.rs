//! Differentiable primitives an update rule may call.

pub mod elementwise;
pub mod mask;

pub use elementwise::*;
