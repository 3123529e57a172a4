//! `pack` and `unpack` for block state (the other public functions come from `rule!`).

use super::ctx::Ctx;
use super::{kind_ty, vec_ty};
use proc_macro2::TokenStream;
use quote::quote;

impl Ctx<'_> {
    /// `pack` and `unpack` for block state (nothing for one block).
    pub fn pack_fns(&self) -> TokenStream {
        if !self.block_state {
            return TokenStream::new();
        }
        let sig = self.sig;
        let nblocks = self.nblocks();
        let vt = vec_ty();
        let block_idents: Vec<_> = sig.blocks.iter().map(|&b| &self.arg_names[b]).collect();
        let block_tys: Vec<TokenStream> = sig
            .blocks
            .iter()
            .map(|&b| kind_ty(sig.args[b].kind))
            .collect();
        if self.any_matrix_block() {
            let outs = (0..nblocks).map(|k| {
                if self.matrix_block(k) {
                    quote!(kernels::block_matrix_or_nan(v, &shapes, #k))
                } else {
                    quote!(kernels::block_vector_or_nan(v, &shapes, #k))
                }
            });
            return quote! {
                /// Concatenates the state blocks, in the declared order (matrix blocks
                /// flattened column-major).
                pub fn pack(#(#block_idents: &#block_tys),*) -> #vt {
                    kernels::pack_entries(&[#(kernels::entries(#block_idents)),*])
                }
                /// Splits a concatenated state into its blocks of the given shapes `(rows, cols)`
                /// (`(len, 1)` for a vector block); entries beyond `v`'s length read as NaN
                /// (this never panics).
                pub fn unpack(v: &#vt, shapes: [(usize, usize); #nblocks]) -> (#(#block_tys),*) {
                    (#(#outs),*)
                }
            };
        }
        let outs = (0..nblocks).map(|k| quote!(kernels::block_or_nan(v, &lens, #k)));
        quote! {
            /// Concatenates the state blocks, in the declared order.
            pub fn pack(#(#block_idents: &#vt),*) -> #vt {
                kernels::pack(&[#(#block_idents),*])
            }
            /// Splits a concatenated state into its blocks of the given lengths (entries
            /// beyond `v`'s length read as NaN; this never panics).
            pub fn unpack(v: &#vt, lens: [usize; #nblocks]) -> (#(#block_tys),*) {
                (#(#outs),*)
            }
        }
    }
}
