//! The generated module beside the user's function (DESIGN §3), one file per part:
//!
//! ```text
//! ctx.rs        the model every part reads: staging plan, term names, argument spellings
//! rule.rs       `Args`, `Params`, `Consts`, `Rule`, and the head of `impl Generated`
//! staging.rs    `Staged`; the checks, `stage` and the forward `step`
//! products.rs   `Linearized` and `Factored` (products with Φ and Ψ, the reduced backward)
//! jacobians.rs  `Jacobians`, the structured `state_jacobian`, `Generated::jacobians`
//! api.rs        the public functions (`api!`), `pack`/`unpack` for block state
//! ```
//!
//! `STATS` and `SOURCE` are appended by the caller once the module is built.

mod api;
mod ctx;
mod jacobians;
mod products;
mod rule;
mod staging;

use crate::ir::Kind;
use crate::rule::Rule;
use proc_macro2::TokenStream;
use quote::quote;

/// What `module` needs besides the rule.
pub struct ModuleInput<'a> {
    /// The analyzed (and simplified) rule.
    pub rule: &'a Rule,
    /// `DERIVATIVES` text.
    pub derivatives: String,
}

/// The generated module, open at its end: `head { body … }` takes the items that are only
/// known once the module is built (`STATS`, `SOURCE`).
pub struct Module {
    /// Everything before the module's braces.
    pub head: TokenStream,
    /// The module's items.
    pub body: TokenStream,
}

impl Module {
    /// The module with `tail` appended to its items.
    pub fn with_tail(&self, tail: TokenStream) -> TokenStream {
        let (head, body) = (&self.head, &self.body);
        quote!(#head { #body #tail })
    }
}

fn vec_ty() -> TokenStream {
    quote!(DVector<f64>)
}

/// The owned Rust type of a term of `kind`.
fn kind_ty(kind: Kind) -> TokenStream {
    match kind {
        Kind::Scalar => quote!(f64),
        Kind::Vector => vec_ty(),
        Kind::Matrix => quote!(DMatrix<f64>),
        Kind::Sparse => quote!(CsrMatrix<f64>),
        Kind::Index => quote!(Vec<usize>),
        _ => quote!(()),
    }
}

/// `e` for an expression `e?` (so that `Ok(e?)` is written `e`).
fn strip_question(expr: &TokenStream) -> Option<TokenStream> {
    let mut tokens: Vec<proc_macro2::TokenTree> = expr.clone().into_iter().collect();
    match tokens.pop() {
        Some(proc_macro2::TokenTree::Punct(p)) if p.as_char() == '?' => {
            Some(tokens.into_iter().collect())
        }
        _ => None,
    }
}

/// The generated module for `input.rule`.
pub fn module(input: &ModuleInput) -> syn::Result<Module> {
    let sig = &input.rule.sig;
    for &p in &sig.params {
        if sig.args[p].name == "state" {
            return Err(syn::Error::new(
                sig.args[p].name.span(),
                "a parameter named `state` would clash with `Jacobians::state`; please rename it",
            ));
        }
    }
    let ctx = ctx::Ctx::new(input.rule);
    let fn_name = &sig.name;
    let vis = &sig.vis;

    let param_idents: Vec<_> = sig.params.iter().map(|&p| &ctx.arg_names[p]).collect();
    let param_tys = sig.params.iter().map(|&p| kind_ty(sig.args[p].kind));
    let grads_doc = format!("Gradients of a loss with respect to the parameters of `{fn_name}`.");
    let grad_field_docs = param_idents.iter().map(|n| format!("`∂loss/∂{n}`."));
    let (jacobians_struct, jacobians_fn) = ctx.jacobians_items();
    let staging = ctx.staging();
    let (staged, staging_methods) = (&staging.staged, &staging.methods);
    let rule_structs = ctx.rule_structs();
    let generated_head = ctx.generated_head();
    let linearized = ctx.linearized_impl(ctx.state_jacobian_method());
    let factored = ctx.factored_impl();
    let api = ctx.api_call();
    let pack_fns = ctx.pack_fns();
    let derivatives = &input.derivatives;

    let body = quote! {
        use ::fold_runtime::{
            __private::{api, check, grads, kernels, sparse, Generated},
            ops, rule,
            nalgebra::{DMatrix, DVector},
            nalgebra_sparse::CsrMatrix,
            CodegenStats, Cotangent, Factored, FoldError, Linearized, OpCounts, SparseReduced,
            SupportKernel,
        };
        use ::std::{option::Option, result::Result, vec::Vec};
        use super::*;

        #[doc = #grads_doc]
        #[derive(Debug, Clone, PartialEq)]
        pub struct Grads {
            #(
                #[doc = #grad_field_docs]
                pub #param_idents: #param_tys,
            )*
        }
        grads!(Grads { #(#param_idents),* }, Jacobians);

        #jacobians_struct
        #rule_structs
        #staged

        impl Generated for Rule {
            #generated_head
            #staging_methods
            #jacobians_fn
        }

        #linearized
        #factored
        #api
        #pack_fns

        /// The simplified derivatives of the rule, as math.
        pub const DERIVATIVES: &str = #derivatives;
    };
    let head = quote! {
        // The original function is the forward step: referenced here so that a rule used
        // only through its module does not warn as dead code.
        const _: () = {
            let _ = #fn_name;
        };
        #[doc = concat!("Folded derivatives of [`", stringify!(#fn_name), "`], generated by `#[fold]`.")]
        // The generated functions take the rule's arguments, however many the user wrote.
        #[allow(non_snake_case, unused_imports, unused_parens, unused_variables, unused_mut, clippy::too_many_arguments)]
        #vis mod #fn_name
    };
    Ok(Module { head, body })
}
