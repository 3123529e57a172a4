//! Symbolic differentiation of IR terms: reverse mode (VJP, adjoints accumulated over
//! the DAG), forward mode (JVP) and structured Jacobians (the forward mode applied to an
//! identity seed, giving matrix terms such as `diag(m)(I − αQ)`).
//!
//! Every operation's local derivative is written once, in [`partials`], as structured
//! linear maps ([`Map`]: masks, diagonals, outer products, solves); the three walkers
//! apply a map, its adjoint, or its action on Jacobian columns, and know nothing about
//! individual primitives. `restrict` builds the reduced backward on a projection's
//! support from the same structured Jacobians.

mod jacobian;
mod jvp;
pub mod map;
mod partials;
pub mod restrict;
mod vjp;

pub use jacobian::{jacobian, sparse_jacobian};
pub use jvp::jvp;
pub use map::Map;
pub use partials::{partials, Partials, Terms};
pub use vjp::vjp;

use crate::ir::graph::Graph;
use egg::{Id, Language};

/// Why a structured Jacobian could not be formed; the caller falls back to products.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unstructured(pub &'static str);

/// Which nodes depend on any of `vars` (by id).
fn active_set(g: &Graph, vars: &[Id]) -> Vec<bool> {
    let mut act = vec![false; g.len()];
    for (i, node) in g.nodes().iter().enumerate() {
        act[i] =
            vars.contains(&Id::from(i)) || node.children().iter().any(|c| act[usize::from(*c)]);
    }
    act
}
