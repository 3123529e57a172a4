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

/// The staging items and how the public functions call the finite check.
pub struct Staging {
    /// `check_dims`, `check_finite`, `Staged`, `stage` and `step`.
    pub items: TokenStream,
    /// The finite check as `solve` calls it (every argument).
    pub solve_check: TokenStream,
    /// The finite check as `backward` calls it (staging checks some matrices itself).
    pub backward_check: TokenStream,
}

impl Ctx<'_> {
    fn dim_checks(&self) -> Vec<TokenStream> {
        self.rule
            .dim_checks
            .iter()
            .map(|(a, b)| {
                let acc = |s: &crate::ir::shape::Source| {
                    let n = &self.arg_names[s.arg];
                    match s.accessor {
                        Accessor::Len => (quote!(#n.len()), format!("`{n}` length")),
                        Accessor::Rows => (quote!(#n.nrows()), format!("`{n}` rows")),
                        Accessor::Cols => (quote!(#n.ncols()), format!("`{n}` columns")),
                    }
                };
                let ((ea, da), (eb, db)) = (acc(a), acc(b));
                let what = format!("{db} (must equal {da})");
                quote!(check::same_dim(#what, #ea, #eb)?;)
            })
            .collect()
    }

    fn finite_check(&self, i: usize) -> TokenStream {
        let n = &self.arg_names[i];
        let what = n.to_string();
        match self.sig.args[i].kind {
            Kind::Scalar => quote!(check::finite_scalar(#n, #what)?;),
            Kind::Vector => quote!(check::finite_vector(#n, #what)?;),
            Kind::Matrix => quote!(check::finite_matrix(#n, #what)?;),
            _ => quote!(check::finite(#n.values(), #what)?;),
        }
    }

    /// What `stage` computes, in order: every field, then every factorization.
    fn stage_order(&self, scope: &crate::emit::Scope) -> Vec<Item> {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        for f in &self.fields {
            for it in scope.schedule(&[*f]) {
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

    /// Dense matrix arguments whose first use in staging is a full product: that product
    /// (`mv_checked`) checks them for non-finite entries instead of a separate pass.
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
                    if sig.args[i].kind == Kind::Matrix {
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

    /// `check_dims`, `check_finite`, `Staged`, `stage` and `step`.
    pub fn staging(&self) -> Staging {
        let sig = self.sig;
        let internal_params = self.internal_params();
        let to_internal = self.to_internal();
        let dim_checks = self.dim_checks();

        let scope = self.arg_scope(|i| self.free_access(i));
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
        let (check_finite, solve_check, backward_check) = if later.is_empty() {
            let call = quote!(check_finite(#(#to_internal),*)?;);
            (
                quote! {
                    fn check_finite(#(#internal_params),*) -> Result<(), FoldError> {
                        #(#eager)*
                        Ok(())
                    }
                },
                call.clone(),
                call,
            )
        } else {
            let staged = self.fresh("staged");
            (
                quote! {
                    /// With `staged`, the matrices staging checks in its first product with them are
                    /// left to it.
                    fn check_finite(#(#internal_params,)* #staged: bool) -> Result<(), FoldError> {
                        #(#eager)*
                        if !#staged {
                            #(#later)*
                        }
                        Ok(())
                    }
                },
                quote!(check_finite(#(#to_internal,)* false)?;),
                quote!(check_finite(#(#to_internal,)* true)?;),
            )
        };

        let mut scope = scope.with_deferred_checks(deferred);
        let stage_body = scope.compute_returning(&order, &self.fields);
        let staged = self.staged_struct();
        let (field_idents, factor_idents) = self.field_idents();
        let arg_inits = sig.args.iter().map(|a| {
            let n = &a.name;
            if a.kind == Kind::Scalar && a.by_ref {
                quote!(#n: *#n)
            } else {
                quote!(#n)
            }
        });
        let (blocks_init, phantom_init) = (
            self.block_state.then(|| {
                let lens = self.sig.blocks.iter().map(|&b| {
                    let n = &self.arg_names[b];
                    quote!(#n.len())
                });
                quote!(blocks: [#(#lens),*],)
            }),
            (!self.borrows()).then(|| quote!(_lifetime: ::core::marker::PhantomData,)),
        );
        let user_params = self.user_params(true);
        let step = self.step_fn();
        let items = quote! {
            #staged

            fn check_dims(#(#internal_params),*) -> Result<(), FoldError> {
                #(#dim_checks)*
                Ok(())
            }

            #check_finite

            fn stage<'a>(#(#user_params),*) -> Result<Staged<'a>, FoldError> {
                check_dims(#(#to_internal),*)?;
                #stage_body
                Ok(Staged {
                    #blocks_init
                    #( #arg_inits, )*
                    #( #field_idents, )*
                    #( #factor_idents, )*
                    #phantom_init
                })
            }

            #step
        };
        Staging {
            items,
            solve_check,
            backward_check,
        }
    }

    /// Whether an argument is borrowed (then `Staged`'s lifetime needs no field of its own).
    fn borrows(&self) -> bool {
        self.sig
            .args
            .iter()
            .any(|a| a.by_ref && a.kind != Kind::Scalar)
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
        let sig = self.sig;
        let arg_tys = (0..sig.args.len()).map(|i| {
            if sig.args[i].kind == Kind::Scalar {
                quote!(f64)
            } else {
                self.user_ty(i, true)
            }
        });
        let field_tys = self.fields.iter().map(|f| match self.g.node(*f) {
            Node::Call(name, _) => {
                let ty = self
                    .prims
                    .get(name.as_str())
                    .cloned()
                    .unwrap_or_else(|| quote!(()));
                quote!(<#ty as ::fold_runtime::Primitive>::Linearization)
            }
            _ => kind_ty(self.g.kind(*f)),
        });
        let (field_idents, factor_idents) = self.field_idents();
        let arg_names = &self.arg_names;
        let nblocks = self.nblocks();
        let blocks = self.block_state.then(|| quote!(blocks: [usize; #nblocks],));
        let phantom =
            (!self.borrows()).then(|| quote!(_lifetime: ::core::marker::PhantomData<&'a ()>,));
        quote! {
            /// What products with `Φ` and `Ψ` read, computed once per linearization.
            #[allow(dead_code)]
            pub struct Staged<'a> {
                #( #arg_names: #arg_tys, )*
                #( #field_idents: #field_tys, )*
                #( #factor_idents: ::fold_runtime::__private::Factorization, )*
                #blocks
                #phantom
            }
        }
    }

    /// `step`: one application of the rule on the internal form of the arguments.
    fn step_fn(&self) -> TokenStream {
        let rule = self.rule;
        let mut sc = self.arg_scope(|i| {
            let n = &self.arg_names[i];
            quote!(#n)
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
        let ret = if self.block_state {
            quote!((#(#tys),*))
        } else {
            tys[0].clone()
        };
        let internal_params = self.internal_params();
        quote! {
            fn step(#(#internal_params),*) -> Result<#ret, FoldError> {
                #body
            }
        }
    }
}
