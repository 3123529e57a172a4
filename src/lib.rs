//! The root package of the Fold workspace: it hosts the examples (`examples/`) and the
//! integration tests (`tests/`), and the helpers they share. The library itself is
//! `fold_runtime`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod benchdata;
pub mod sparsedata;

pub use fold_runtime;

/// The README, whose Rust code blocks run as doctests.
#[doc = include_str!("../README.md")]
pub mod readme {}
