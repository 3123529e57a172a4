//! The generated module beside the user's function (DESIGN §3), one file per part:
//!
//! ```text
//! ctx.rs        the model every part reads: staging plan, term names, argument spellings
//! rule.rs       the `rule!` call: what follows from the signature alone
//! staging.rs    `Staged`; the checks, `stage` and the forward `step`
//! products.rs   `Linearized` and `Factored` (products with Φ and Ψ, the reduced backward)
//! jacobians.rs  the structured `state_jacobian` and `Generated::jacobians`
//! pack.rs       `pack`/`unpack` for block state
//! ```
//!
//! `STATS` and `SOURCE` are appended by the caller once the module is built.

mod ctx;
mod jacobians;
mod pack;
mod products;
mod rule;
mod staging;

use crate::ir::Kind;
use crate::rule::Rule;
use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;
use std::collections::HashSet;

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
    /// The `rule!` call as `SOURCE` shows it.
    pub rule_text: String,
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

/// Every identifier in `tokens`.
fn idents(tokens: &TokenStream, out: &mut HashSet<String>) {
    for t in tokens.clone() {
        match t {
            proc_macro2::TokenTree::Ident(i) => {
                out.insert(i.to_string());
            }
            proc_macro2::TokenTree::Group(g) => idents(&g.stream(), out),
            _ => {}
        }
    }
}

/// The imports of the runtime's (and std's) names that `items` uses, and the two `STATS`
/// is written with; std's so that a user's item of the same name cannot shadow them.
fn imports(items: &TokenStream) -> TokenStream {
    let mut used = HashSet::new();
    idents(items, &mut used);
    used.extend(["CodegenStats", "OpCounts"].map(String::from));
    let pick = |names: &[&str]| -> Vec<Ident> {
        names
            .iter()
            .filter(|n| used.contains(**n))
            .map(|n| Ident::new(n, Span::call_site()))
            .collect()
    };
    let group = |prefix: TokenStream, names: Vec<Ident>| match names.as_slice() {
        [] => None,
        [one] => Some(quote!(#prefix::#one)),
        _ => Some(quote!(#prefix::{#(#names),*})),
    };
    let runtime = [
        group(
            quote!(__private),
            pick(&["check", "kernels", "rule", "sparse", "Generated"]),
        ),
        group(quote!(nalgebra), pick(&["DMatrix", "DVector"])),
        group(quote!(nalgebra_sparse), pick(&["CsrMatrix"])),
    ]
    .into_iter()
    .flatten()
    .chain(
        pick(&[
            "ops",
            "CodegenStats",
            "Cotangent",
            "Factored",
            "FoldError",
            "Linearized",
            "OpCounts",
            "SparseReduced",
            "SupportKernel",
        ])
        .into_iter()
        .map(|n| quote!(#n)),
    );
    let std: Vec<TokenStream> = [
        ("option", "Option"),
        ("result", "Result"),
        ("sync", "OnceLock"),
        ("vec", "Vec"),
    ]
    .into_iter()
    .filter(|(_, n)| used.contains(*n))
    .map(|(m, n)| {
        let (m, n) = (
            Ident::new(m, Span::call_site()),
            Ident::new(n, Span::call_site()),
        );
        quote!(#m::#n)
    })
    .collect();
    let std = (!std.is_empty()).then(|| quote!(use ::std::{#(#std),*};));
    quote! {
        use ::fold_runtime::{#(#runtime),*};
        #std
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

    let jacobians_fn = ctx.jacobians_fn();
    let staging = ctx.staging();
    let (staged, staging_methods) = (&staging.staged, &staging.methods);
    let rule_call = ctx.rule_call();
    let rule_tokens = &rule_call.tokens;
    let linearized = ctx.linearized_impl(ctx.state_jacobian_method());
    let factored = ctx.factored_impl();
    let lazy = ctx.lazy_accessors();
    let pack_fns = ctx.pack_fns();
    let derivatives = &input.derivatives;

    let items = quote! {
        #rule_tokens
        #staged

        impl Generated for Rule {
            type Staged<'a> = Staged<'a>;
            #staging_methods
            #jacobians_fn
        }

        #lazy
        #linearized
        #factored
        #pack_fns

        /// The simplified derivatives of the rule, as math.
        pub const DERIVATIVES: &str = #derivatives;
    };
    let imports = imports(&items);
    let body = quote! {
        #imports
        use super::*;

        #items
    };
    let mod_doc = format!("Folded derivatives of [`{fn_name}`], generated by `#[fold]`.");
    let head = quote! {
        #[doc = #mod_doc]
        // Names and arguments are the user's, however many and however spelled; the imports
        // serve every rule.
        #[allow(non_snake_case, unused, missing_docs, clippy::too_many_arguments)]
        #vis mod #fn_name
    };
    Ok(Module {
        head,
        body,
        rule_text: rule_call.text,
    })
}
