//! The `#[fold]` pipeline, as a library:
//!
//! ```text
//! attr + signature ─ parse/validate ─▶ lower (typed IR, ir.rs/graph.rs) ─▶ shape checks
//!   ─▶ diff (VJP, JVP, structured Jacobians) ─▶ egraph (simplify, extract)
//!   ─▶ stage (linearize | per call) ─▶ emit (tokens calling ::fold_runtime) + pretty
//! ```

pub mod attr;
pub mod diff;
pub mod errors;
pub mod graph;
pub mod interp;
pub mod ir;
pub mod lower;
pub mod pretty;
pub mod rule;
pub mod shape;
pub mod signature;

use proc_macro2::TokenStream;

/// Expands `#[fold(attr)] item`.
pub fn expand(_attr: TokenStream, item: TokenStream) -> TokenStream {
    item
}
