//! The once-per-point part: argument checks, `Staged` (what products read) and `stage`,
//! and the forward `step`.

use super::ctx::Ctx;
use super::{kind_ty, strip_question};
use crate::emit::{factor_ident, ident_of, Item};
use crate::ir::shape::Accessor;
use crate::ir::{Kind, Node};
use crate::stage;
use egg::Id;
use proc_macro2::{Ident, TokenStream};
use quote::quote;
use std::collections::{HashMap, HashSet};

/// The staging items.
pub struct Staging {
    /// The `Staged` struct.
    pub staged: TokenStream,
    /// `check_dims`, `check_finite`, `stage` and `step`, methods of `Generated`.
    pub methods: TokenStream,
}

impl Ctx<'_> {
    fn dim_checks(&self) -> Vec<TokenStream> {
        self.rule
            .dim_checks
            .iter()
            .map(|(a, b)| {
                let args = &self.args_id;
                let acc = |s: &crate::ir::shape::Source| {
                    let n = &self.arg_names[s.arg];
                    match s.accessor {
                        Accessor::Len => (quote!(#args.#n.len()), format!("`{n}` length")),
                        Accessor::Rows => (quote!(#args.#n.nrows()), format!("`{n}` rows")),
                        Accessor::Cols => (quote!(#args.#n.ncols()), format!("`{n}` columns")),
                    }
                };
                let ((ea, da), (eb, db)) = (acc(a), acc(b));
                let what = format!("{db} (must equal {da})");
                quote!((#what, #ea, #eb))
            })
            .collect()
    }

    fn finite_check(&self, i: usize) -> TokenStream {
        let (n, args) = (&self.arg_names[i], &self.args_id);
        let what = n.to_string();
        let a = self.args_access(i);
        match self.sig.args[i].kind {
            Kind::Scalar => quote!(check::finite_scalar(#a, #what)?;),
            Kind::Vector => quote!(check::finite_vector(#a, #what)?;),
            Kind::Matrix => quote!(check::finite_matrix(#a, #what)?;),
            _ => quote!(check::finite(#args.#n.values(), #what)?;),
        }
    }

    /// What `stage` computes, in order: every field, then every factorization.
    fn stage_order(&self, scope: &crate::emit::Scope) -> Vec<Item> {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        for f in self.eager_fields() {
            for it in scope.schedule(&[f]) {
                if seen.insert(it) {
                    order.push(it);
                }
            }
        }
        for m in &self.factors {
            for it in scope.schedule(&[*m]) {
                if seen.insert(it) {
                    order.push(it);
                }
            }
            let it = Item::Factor(*m);
            if seen.insert(it) {
                order.push(it);
            }
        }
        order
    }

    /// Matrix arguments (dense or sparse) whose first use in staging is a full product: that
    /// product (`mv_checked`, `sparse_mv_checked`) checks them for non-finite entries
    /// instead of a separate pass.
    fn deferred_checks(&self, scope: &crate::emit::Scope, order: &[Item]) -> HashMap<Id, String> {
        let (g, rule, sig) = (&self.g, self.rule, self.sig);
        let mut first_use: HashMap<Id, bool> = HashMap::new();
        for it in order {
            let Item::Node(id) = it else { continue };
            let product_base = match g.node(*id) {
                Node::MatVec([m, _]) => Some(stage::peel(g, *m, &|_| false).base),
                _ => None,
            };
            for op in scope.operands(*id) {
                let Item::Node(c) = op else { continue };
                if let Some(i) = rule.args.iter().position(|a| *a == c) {
                    if matches!(sig.args[i].kind, Kind::Matrix | Kind::Sparse) {
                        first_use.entry(c).or_insert(product_base == Some(c));
                    }
                }
            }
        }
        first_use
            .into_iter()
            .filter(|(_, by_product)| *by_product)
            .map(|(c, _)| {
                let i = rule.args.iter().position(|a| *a == c).unwrap_or(0);
                (c, sig.args[i].name.to_string())
            })
            .collect()
    }

    /// `Staged`, and the `Generated` methods `check_dims`, `check_finite`, `stage`, `step`.
    pub fn staging(&self) -> Staging {
        let sig = self.sig;
        let args = &self.args_id;
        let dim_checks = self.dim_checks();

        let scope = self.arg_scope(|i| self.args_access(i));
        let order = self.stage_order(&scope);
        let deferred = self.deferred_checks(&scope, &order);
        let is_deferred = |i: usize| deferred.contains_key(&self.rule.args[i]);
        let eager: Vec<TokenStream> = (0..sig.args.len())
            .filter(|&i| !is_deferred(i))
            .map(|i| self.finite_check(i))
            .collect();
        let later: Vec<TokenStream> = (0..sig.args.len())
            .filter(|&i| is_deferred(i))
            .map(|i| self.finite_check(i))
            .collect();
        let staged = self.fresh("staged");
        let later = (!later.is_empty()).then(|| quote!(if !#staged { #(#later)* }));

        let mut scope = scope.with_deferred_checks(deferred);
        let stage_body = scope.compute_returning(&order, &self.eager_fields());
        let (field_idents, factor_idents) = self.field_idents();
        let field_inits = self.fields.iter().zip(&field_idents).map(|(f, name)| {
            if self.lazy.contains(f) {
                quote!(#name: OnceLock::new())
            } else {
                quote!(#name)
            }
        });
        let blocks_init = self.block_state.then(|| {
            let lens = self.sig.blocks.iter().map(|&b| {
                let n = &self.arg_names[b];
                quote!(#args.#n.len())
            });
            quote!(blocks: [#(#lens),*],)
        });
        let step = self.step_fn();
        let dims = if dim_checks.is_empty() {
            quote!(Ok(()))
        } else {
            quote!(check::dims([#(#dim_checks),*]))
        };
        let methods = quote! {
            fn check_dims(#args: &Args) -> Result<(), FoldError> {
                #dims
            }
            fn check_finite(#args: &Args, #staged: bool) -> Result<(), FoldError> {
                #(#eager)*
                #later
                Ok(())
            }
            fn stage<'a>(#args: Self::Args<'a>) -> Result<Self::Staged<'a>, FoldError> {
                #stage_body
                Ok(Staged {
                    #blocks_init
                    #args,
                    #( #field_inits, )*
                    #( #factor_idents, )*
                })
            }
            #step
        };
        Staging {
            staged: self.staged_struct(),
            methods,
        }
    }

    /// The fields `stage` computes, increasing.
    fn eager_fields(&self) -> Vec<Id> {
        self.fields
            .iter()
            .copied()
            .filter(|f| !self.lazy.contains(f))
            .collect()
    }

    /// The accessors of the lazy fields: each computes its value on first use.
    pub fn lazy_accessors(&self) -> TokenStream {
        if self.lazy.is_empty() {
            return TokenStream::new();
        }
        let accessors = self.lazy.iter().map(|&f| {
            let name = ident_of(&self.names, f);
            let ty = kind_ty(self.g.kind(f));
            let mut sc = self.method_scope().without_field(f);
            let items = sc.schedule(&[f]);
            let (body, value) = sc.compute_value(&items, f);
            let init = if body.is_empty() {
                value
            } else {
                quote!({ #body #value })
            };
            quote! {
                fn #name(&self) -> &#ty {
                    self.#name.get_or_init(|| #init)
                }
            }
        });
        quote! {
            /// Terms only the full system's products read, computed on first use.
            impl Staged<'_> {
                #(#accessors)*
            }
        }
    }

    fn field_idents(&self) -> (Vec<Ident>, Vec<Ident>) {
        (
            self.fields
                .iter()
                .map(|f| ident_of(&self.names, *f))
                .collect(),
            self.factors
                .iter()
                .map(|f| factor_ident(&self.names, *f))
                .collect(),
        )
    }

    fn staged_struct(&self) -> TokenStream {
        let field_tys = self.fields.iter().map(|f| match self.g.node(*f) {
            Node::Call(name, _) => {
                let ty = self
                    .prims
                    .get(name.as_str())
                    .cloned()
                    .unwrap_or_else(|| quote!(()));
                quote!(<#ty as ::fold_runtime::Primitive>::Linearization)
            }
            _ if self.lazy.contains(f) => {
                let ty = kind_ty(self.g.kind(*f));
                quote!(OnceLock<#ty>)
            }
            _ => kind_ty(self.g.kind(*f)),
        });
        let (field_idents, factor_idents) = self.field_idents();
        let nblocks = self.nblocks();
        let blocks = self.block_state.then(|| quote!(blocks: [usize; #nblocks],));
        quote! {
            /// What products with `Φ` and `Ψ` read, computed once per linearization.
            pub struct Staged<'a> {
                args: Args<'a>,
                #( #field_idents: #field_tys, )*
                #( #factor_idents: ::fold_runtime::__private::Factorization, )*
                #blocks
            }
        }
    }

    /// `step`: one application of the rule on the internal form of the arguments.
    fn step_fn(&self) -> TokenStream {
        let rule = self.rule;
        // The iterate's blocks are the step's own parameters; the rest come from `args`.
        let mut sc = self.arg_scope(|i| {
            if self.sig.blocks.contains(&i) {
                let n = &self.arg_names[i];
                quote!(#n)
            } else {
                self.args_access(i)
            }
        });
        let items = sc.schedule(&rule.outputs);
        let body = if self.block_state {
            let body = sc.compute_returning(&items, &rule.outputs);
            let outs = rule.outputs.iter().map(|o| sc.owned(*o));
            quote!(#body Ok((#(#outs),*)))
        } else {
            let (body, value) = sc.compute_value(&items, rule.outputs[0]);
            match strip_question(&value) {
                Some(fallible) => quote!(#body #fallible),
                None => quote!(#body Ok(#value)),
            }
        };
        let tys: Vec<TokenStream> = self
            .sig
            .blocks
            .iter()
            .map(|&b| kind_ty(self.sig.args[b].kind))
            .collect();
        let names = self.sig.blocks.iter().map(|&b| &self.arg_names[b]);
        let (ret, pat) = if self.block_state {
            (quote!((#(#tys),*)), quote!((#(#names),*)))
        } else {
            (tys[0].clone(), quote!(#(#names)*))
        };
        let args = &self.args_id;
        quote! {
            fn step(#args: &Args, #pat: &#ret) -> Result<#ret, FoldError> {
                #body
            }
        }
    }
}
