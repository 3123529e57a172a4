//! The rule's description for generic code: `Params`, `Consts` and `Rule` implementing
//! `::fold_runtime::FoldRule`, delegating to the module's `solve`, `step` and
//! `backward_with_stats` (DESIGN §2, `rule`).

use crate::front::signature::Signature;
use crate::ir::{Kind, Role};
use proc_macro2::TokenStream;
use quote::quote;
use syn::Index;

/// Where argument `i` lives in the trait methods: `x` (state), `p` (params), `k` (consts).
fn source(sig: &Signature, i: usize, x: &TokenStream) -> TokenStream {
    let a = &sig.args[i];
    let n = &a.name;
    match a.role {
        Role::State { block } if sig.block_state => {
            let b = Index::from(block);
            quote!(#x.#b)
        }
        Role::State { .. } => quote!(#x),
        Role::Param => quote!(p.#n),
        _ => quote!(k.#n),
    }
}

/// Argument `i` as the module's public functions take it (the user's declared form).
fn user_form(sig: &Signature, i: usize, x: &TokenStream) -> TokenStream {
    let a = &sig.args[i];
    let s = source(sig, i, x);
    match (a.kind, a.by_ref) {
        (_, true) => quote!(&#s),
        (Kind::Scalar, false) => quote!(#s),
        (_, false) => quote!(#s.clone()),
    }
}

/// Argument `i` as the module's internal functions take it (scalars by value, the rest
/// by reference).
fn internal_form(sig: &Signature, i: usize, x: &TokenStream) -> TokenStream {
    let s = source(sig, i, x);
    if sig.args[i].kind == Kind::Scalar {
        quote!(#s)
    } else {
        quote!(&#s)
    }
}

/// `Params`, `Consts` and `Rule` for the module of `sig`; `kind_ty` gives an argument's
/// owned type.
pub fn rule_items(sig: &Signature, kind_ty: &dyn Fn(Kind) -> TokenStream) -> TokenStream {
    let fn_name = sig.name.to_string();
    let vec = quote!(DVector<f64>);
    let res = |t: TokenStream| quote!(Result<#t, FoldError>);
    let field = |i: usize| {
        let a = &sig.args[i];
        let (n, t) = (&a.name, kind_ty(a.kind));
        quote!(#[allow(missing_docs)] pub #n: #t)
    };
    let consts: Vec<usize> = (0..sig.args.len())
        .filter(|&i| sig.args[i].role == Role::Const)
        .collect();
    let const_fields = consts.iter().map(|&i| field(i));
    let param_names: Vec<String> = sig
        .params
        .iter()
        .map(|&i| sig.args[i].name.to_string())
        .collect();
    let const_names: Vec<String> = consts
        .iter()
        .map(|&i| sig.args[i].name.to_string())
        .collect();

    let x = quote!(x);
    let x0 = quote!(x0);
    let all = |f: &dyn Fn(usize) -> TokenStream| -> Vec<TokenStream> {
        (0..sig.args.len()).map(f).collect()
    };
    let solve_args = all(&|i| user_form(sig, i, &x0));
    let backward_args = all(&|i| user_form(sig, i, &x));
    let step_args = all(&|i| internal_form(sig, i, &x));

    let tys = sig.blocks.iter().map(|&b| kind_ty(sig.args[b].kind));
    let state_ty = if sig.block_state {
        quote!((#(#tys),*))
    } else {
        quote!(#(#tys)*)
    };
    let res_state = res(quote!(Self::State));
    let res_solution = res(quote!(Solution));
    let res_backward = res(quote!((Grads, SolveStats)));
    let params_doc = format!(
        "The parameters of `{fn_name}`, owned: the same fields as [`Grads`] (see [`Rule`])."
    );
    let consts_doc =
        format!("The constants of `{fn_name}`, owned: one field per constant (see [`Rule`]).");
    let rule_doc = format!("`{fn_name}` as a `::fold_runtime::FoldRule`, for code generic over rules (batches, layers).");
    quote! {
        #[doc = #params_doc]
        pub type Params = Grads;

        #[doc = #consts_doc]
        #[derive(Debug, Clone)]
        pub struct Consts { #(#const_fields,)* }

        #[doc = #rule_doc]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct Rule;

        impl ::fold_runtime::FoldRule for Rule {
            type State = #state_ty;
            type Params = Params;
            type Consts = Consts;
            type Grads = Grads;
            const NAME: &'static str = #fn_name;
            const PARAMS: &'static [&'static str] = &[#(#param_names),*];
            const CONSTS: &'static [&'static str] = &[#(#const_names),*];

            fn solve(p: &Params, k: &Consts, x0: &Self::State, opts: &ForwardOptions) -> #res_solution {
                solve(#(#solve_args,)* opts)
            }
            fn step(p: &Params, k: &Consts, x: &Self::State) -> #res_state {
                check_dims(#(#step_args),*)?;
                step(#(#step_args),*)
            }
            fn backward(p: &Params, k: &Consts, x: &Self::State, grad: &#vec, opts: &BackwardOptions) -> #res_backward {
                backward_with_stats(#(#backward_args,)* grad, opts)
            }
        }
    }
}
