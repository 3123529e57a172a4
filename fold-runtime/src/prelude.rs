//! Everything a user of `#[fold]` needs: `use fold_runtime::prelude::*;`.

pub use crate::fold;
pub use crate::nalgebra::{self, DMatrix, DVector};
pub use crate::nalgebra_sparse::CsrMatrix;
pub use crate::ops::*;
pub use crate::{
    check_fixed_point, fixed_point, folded_backward, unrolled_backward, Arg, BackwardOptions,
    CodegenStats, Cotangent, Factored, FixedPointCheck, FoldError, FoldRule, ForwardOptions,
    Linearized, Method, OpCounts, Primitive, PrimitiveLinearization, Solution, SolveStats,
    SupportKernel, Value,
};
