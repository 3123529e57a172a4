//! The rule's description for generic code: `Args`, `Params`, `Consts`, `Rule`, and the
//! head of `impl Generated for Rule` (its types, names, and the bundles' conversions);
//! the runtime derives `FoldRule` and the public functions from it.

use super::ctx::Ctx;
use super::kind_ty;
use crate::ir::{Kind, Role};
use proc_macro2::TokenStream;
use quote::quote;
use syn::Index;

impl Ctx<'_> {
    /// `Args`, `Params`, `Consts` and the `Rule` struct.
    pub fn rule_structs(&self) -> TokenStream {
        let sig = self.sig;
        let fn_name = sig.name.to_string();
        let lt = self.lt();
        let arg_fields = (0..sig.args.len()).map(|i| {
            let n = &self.arg_names[i];
            let t = self.user_ty(i, true);
            quote!(pub #n: #t)
        });
        let const_fields = self.consts().into_iter().map(|i| {
            let a = &sig.args[i];
            let (n, t) = (&a.name, kind_ty(a.kind));
            quote!(pub #n: #t)
        });
        let args_doc = format!("The arguments of `{fn_name}`, as it declares them.");
        let params_doc = format!(
            "The parameters of `{fn_name}`, owned: the same fields as [`Grads`] (see [`Rule`])."
        );
        let consts_doc =
            format!("The constants of `{fn_name}`, owned: one field per constant (see [`Rule`]).");
        let rule_doc = format!(
            "`{fn_name}` for code generic over rules (`::fold_runtime::FoldRule`: batches, layers)."
        );
        quote! {
            #[doc = #args_doc]
            pub struct Args #lt { #(#arg_fields,)* }

            #[doc = #params_doc]
            pub type Params = Grads;

            #[doc = #consts_doc]
            #[derive(Debug, Clone)]
            pub struct Consts { #(#const_fields,)* }

            #[doc = #rule_doc]
            #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
            pub struct Rule;
        }
    }

    /// The constants' argument indices, in signature order.
    fn consts(&self) -> Vec<usize> {
        (0..self.sig.args.len())
            .filter(|&i| self.sig.args[i].role == Role::Const)
            .collect()
    }

    /// The head of `impl Generated for Rule`: types, names, `args`, `state` and `shapes`.
    pub fn generated_head(&self) -> TokenStream {
        let sig = self.sig;
        let fn_name = sig.name.to_string();
        let names = |idx: &[usize]| -> Vec<String> {
            idx.iter().map(|&i| sig.args[i].name.to_string()).collect()
        };
        let (param_names, const_names) = (names(&sig.params), names(&self.consts()));
        let args = &self.args_id;
        let block_names: Vec<_> = sig.blocks.iter().map(|&b| &self.arg_names[b]).collect();
        let tys = sig.blocks.iter().map(|&b| kind_ty(sig.args[b].kind));
        let state_ty = if sig.block_state {
            quote!((#(#tys),*))
        } else {
            quote!(#(#tys)*)
        };
        // `args`: each argument read from the state, the params `p` or the consts `k`.
        let inits = (0..sig.args.len()).map(|i| {
            let a = &sig.args[i];
            let n = &a.name;
            let source = match a.role {
                Role::State { block } if sig.block_state => {
                    let b = Index::from(block);
                    quote!(state.#b)
                }
                // One block: `state` is the reference itself.
                Role::State { .. } if a.by_ref => return quote!(#n: state),
                Role::State { .. } => return quote!(#n: state.clone()),
                Role::Param => quote!(p.#n),
                _ => quote!(k.#n),
            };
            let value = match (a.kind, a.by_ref) {
                (_, true) => quote!(&#source),
                (Kind::Scalar, false) => source,
                (_, false) => quote!(#source.clone()),
            };
            quote!(#n: #value)
        });
        let owned = block_names.iter().map(|n| quote!(#args.#n.clone()));
        let state = if sig.block_state {
            quote!((#(#owned),*))
        } else {
            quote!(#(#owned)*)
        };
        let dims = block_names.iter().map(|n| quote!(#args.#n.len()));
        let shapes: Vec<TokenStream> = sig
            .params
            .iter()
            .map(|&p| {
                let n = &self.arg_names[p];
                match sig.args[p].kind {
                    Kind::Scalar => quote!((1, 1)),
                    Kind::Vector => quote!((#args.#n.len(), 1)),
                    _ => quote!((#args.#n.nrows(), #args.#n.ncols())),
                }
            })
            .collect();
        let nparams = proc_macro2::Literal::usize_unsuffixed(shapes.len());
        let lt = self.lt();
        quote! {
            type State = #state_ty;
            type Consts = Consts;
            type Grads = Grads;
            type Jacobians = Jacobians;
            type Args<'a> = Args #lt;
            type Staged<'a> = Staged #lt;
            type ParamShapes = [(usize, usize); #nparams];
            const NAME: &'static str = #fn_name;
            const PARAMS: &'static [&'static str] = &[#(#param_names),*];
            const CONSTS: &'static [&'static str] = &[#(#const_names),*];

            fn args<'a>(state: &'a #state_ty, p: &'a Params, k: &'a Consts) -> Args #lt {
                Args { #(#inits),* }
            }
            fn state(#args: &Args) -> #state_ty {
                #state
            }
            fn shapes(#args: &Args) -> (usize, [(usize, usize); #nparams]) {
                (#(#dims)+*, [#(#shapes),*])
            }
        }
    }
}
