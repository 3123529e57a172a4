//! The `#[fold]` attribute macro. The pipeline itself lives in `codegen/` (crate `fold-codegen`), a plain
//! library, so that it can be unit-tested and benchmarked without a compiler in the loop.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use proc_macro::TokenStream;

/// Differentiates a solver's update rule at compile time; see `fold_runtime` for the API.
#[proc_macro_attribute]
pub fn fold(attr: TokenStream, item: TokenStream) -> TokenStream {
    fold_codegen::expand(attr.into(), item.into()).into()
}
