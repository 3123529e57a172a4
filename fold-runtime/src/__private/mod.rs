//! What only generated code (and the project's own benchmarks) calls: not part of the
//! public API, free to change in any release.

mod api;
mod blocks;
pub mod check;
mod entrywise;
pub mod generic;
mod grads;
pub mod kernels;
mod outputs;
mod products;
pub mod sparse;
pub mod temps;

pub use crate::linalg::{gemm, gemv, gemv_t, is_symmetric, Cholesky, Factorization, Lu};
pub use crate::solvers::sparse_direct::{sparse_direct, sparse_direct_with};
pub use crate::solvers::{bicgstab, direct_dense, gmres, DenseOperator, Stop};
pub use api::rule;
pub use generic::{Declared, FromOwned, Generated, Shaped};
pub use grads::grads;
