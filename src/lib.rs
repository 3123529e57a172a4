//! The root package of the Fold workspace: it hosts the examples (`examples/`) and the
//! integration tests (`tests/`). The library itself is `fold_runtime`.

pub use fold_runtime;
