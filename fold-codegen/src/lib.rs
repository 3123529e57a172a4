//! The `#[fold]` pipeline.

use proc_macro2::TokenStream;

/// Expands `#[fold(attr)] item`.
pub fn expand(_attr: TokenStream, item: TokenStream) -> TokenStream {
    item
}
