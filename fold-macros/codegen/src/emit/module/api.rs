//! The public functions of DESIGN §3: `linearize`, `jacobians`, `backward`, `solve`, and
//! `pack`/`unpack` for block state.

use super::ctx::Ctx;
use super::staging::Staging;
use super::{kind_ty, vec_ty};
use crate::ir::Kind;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

impl Ctx<'_> {
    /// `Linearization`, `linearize`, `jacobians`, `backward` and `backward_with_stats`.
    pub fn backward_api(&self, staging: &Staging) -> TokenStream {
        let sig = self.sig;
        let arg_names = &self.arg_names;
        let (user_params, user_params_nolt) = (self.user_params(true), self.user_params(false));
        let (grad, opts) = (&self.grad_id, &self.opts_id);
        let state_dim = self.free_state_dim();
        let nan_grads = sig.params.iter().map(|&p| {
            let n = &arg_names[p];
            match sig.args[p].kind {
                Kind::Scalar => quote!(#n: f64::NAN),
                Kind::Vector => quote!(#n: kernels::nan_vector(#n.len())),
                _ => quote!(#n: kernels::nan_matrix(#n.nrows(), #n.ncols())),
            }
        });
        let nan_jacobians = sig.params.iter().map(|&p| {
            let n = &arg_names[p];
            let width = match sig.args[p].kind {
                Kind::Scalar => quote!(1),
                _ => quote!(#n.len()),
            };
            quote!(#n: kernels::nan_matrix(#state_dim, #width))
        });
        let check = &staging.backward_check;
        quote! {
            /// The update rule linearized at a point; see [`linearize`].
            pub type Linearization<'a> = ::fold_runtime::Linearization<Staged<'a>>;

            /// The rule linearized at a point, computed once for any number of products (a failure
            /// is reported by `Linearized::check`, and products then return NaN).
            pub fn linearize<'a>(#(#user_params),*) -> Linearization<'a> {
                ::fold_runtime::Linearization::new(stage(#(#arg_names),*), #state_dim, || Grads { #(#nan_grads),* })
            }

            /// Dense `Φ` and `Ψ` at the given point, from the structured formula where one exists
            /// (NaN-filled when the point cannot be linearized).
            pub fn jacobians<'a>(#(#user_params),*) -> Jacobians {
                match stage(#(#arg_names),*) {
                    Ok(s) => s.jacobians(),
                    Err(_) => Jacobians {
                        state: kernels::nan_matrix(#state_dim, #state_dim),
                        #(#nan_jacobians,)*
                    },
                }
            }

            /// The folded backward pass at a fixed point: solves `(I − Φ)ᵀ w = grad` and returns
            /// `Ψᵀ w` for every parameter. Every input is checked for non-finite values first.
            pub fn backward(#(#user_params_nolt,)* #grad: &DVector<f64>, #opts: &BackwardOptions) -> Result<Grads, FoldError> {
                backward_with_stats(#(#arg_names,)* #grad, #opts).map(|(g, _)| g)
            }

            /// [`backward`], also reporting what the linear solver did.
            pub fn backward_with_stats(#(#user_params_nolt,)* #grad: &DVector<f64>, #opts: &BackwardOptions) -> Result<(Grads, SolveStats), FoldError> {
                #check
                check::finite_vector(#grad, "grad")?;
                let lin = linearize(#(#arg_names),*);
                Linearized::check(&lin)?;
                ::fold_runtime::folded_backward(&lin, #grad, #opts)
            }
        }
    }

    /// `solve`: the forward fixed-point iteration of `step` from the given start.
    pub fn solve_fn(&self, staging: &Staging) -> TokenStream {
        let sig = self.sig;
        let arg_names = &self.arg_names;
        let user_params = self.user_params(false);
        let to_internal = self.to_internal();
        let opts = &self.opts_id;
        let check = &staging.solve_check;
        let doc = format!(
            "Runs `{}` to a fixed point from the given start (every input is checked first).",
            sig.name
        );
        // The step's arguments, each state block read from `block(k)`.
        let step_args = |block: &dyn Fn(usize) -> TokenStream| -> Vec<TokenStream> {
            (0..sig.args.len())
                .map(|i| match sig.blocks.iter().position(|&b| b == i) {
                    Some(k) => block(k),
                    None => to_internal[i].clone(),
                })
                .collect()
        };
        if !self.block_state && !self.any_matrix_block() {
            // One vector block is the packed state itself.
            let x = &arg_names[sig.blocks[0]];
            let xk = format_ident!("{}_k", x);
            let args = step_args(&|_| quote!(#xk));
            return quote! {
                #[doc = #doc]
                pub fn solve(#(#user_params,)* #opts: &ForwardOptions) -> Result<Solution, FoldError> {
                    #check
                    check_dims(#(#to_internal),*)?;
                    ::fold_runtime::fixed_point(|#xk| step(#(#args),*), #x.clone(), #opts)
                }
            };
        }
        let block_ids: Vec<_> = sig
            .blocks
            .iter()
            .map(|&b| format_ident!("{}_k", arg_names[b]))
            .collect();
        let args = step_args(&|k| {
            let id = &block_ids[k];
            quote!(&#id)
        });
        let starts: Vec<TokenStream> = sig.blocks.iter().map(|&b| self.free_access(b)).collect();
        let mut split = TokenStream::new();
        let mut off = quote!(0);
        for (k, id) in block_ids.iter().enumerate() {
            if self.matrix_block(k) {
                let s = &starts[k];
                split.extend(quote!(let #id = kernels::block_matrix(packed, #off, (#s).nrows(), (#s).ncols());));
            } else {
                split.extend(quote!(let #id = kernels::block(packed, #off, lens[#k]);));
            }
            off = quote!(#off + lens[#k]);
        }
        let next_ids: Vec<_> = sig
            .blocks
            .iter()
            .map(|&b| format_ident!("{}_next", arg_names[b]))
            .collect();
        let lens = starts.iter().map(|s| quote!((#s).len()));
        let next_pat = if self.block_state {
            quote!((#(#next_ids),*))
        } else {
            quote!(#(#next_ids)*)
        };
        let (start_pack, next_pack) = if self.any_matrix_block() {
            (
                quote!(kernels::pack_entries(&[#(kernels::entries(#starts)),*])),
                quote!(kernels::pack_entries(&[#(kernels::entries(&#next_ids)),*])),
            )
        } else {
            (
                quote!(kernels::pack(&[#(#starts),*])),
                quote!(kernels::pack(&[#(&#next_ids),*])),
            )
        };
        quote! {
            #[doc = #doc]
            pub fn solve(#(#user_params,)* #opts: &ForwardOptions) -> Result<Solution, FoldError> {
                #check
                check_dims(#(#to_internal),*)?;
                let lens = [#(#lens),*];
                let start = #start_pack;
                ::fold_runtime::fixed_point(
                    |packed: &DVector<f64>| {
                        #split
                        let #next_pat = step(#(#args),*)?;
                        Ok(#next_pack)
                    },
                    start,
                    #opts,
                )
            }
        }
    }

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
