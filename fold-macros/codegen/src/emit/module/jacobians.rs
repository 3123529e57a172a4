//! Dense `Φ` and `Ψ` from the structured Jacobian terms: the `Jacobians` struct, the
//! `state_jacobian` product method and `Generated::jacobians`.

use super::ctx::Ctx;
use crate::ir::Kind;
use egg::Id;
use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::quote;

impl Ctx<'_> {
    /// Statements and the value of a Jacobian assembled from its blocks: `terms[o][k]` is
    /// the block of output `o` w.r.t. column group `k`, `cols` the groups' widths.
    fn jacobian_value(
        &self,
        terms: &[Vec<Option<Id>>],
        cols: TokenStream,
        recv: &Ident,
    ) -> (TokenStream, TokenStream) {
        let g = &self.g;
        let mut sc = self.staged_scope(recv);
        let roots: Vec<Id> = terms.iter().flatten().flatten().copied().collect();
        let items = sc.schedule(&roots);
        // One block that is a matrix already (or a single column): it is the Jacobian.
        if let [row] = terms {
            if let [Some(id)] = row.as_slice() {
                match g.kind(*id) {
                    Kind::Matrix => return sc.compute_value(&items, *id),
                    Kind::Vector => {
                        let (body, value) = sc.compute_value(&items, *id);
                        return (body, quote!(kernels::column(#value)));
                    }
                    _ => {}
                }
            }
        }
        let body = sc.compute_returning(&items, &roots);
        let mut blocks = Vec::new();
        for (o, row) in terms.iter().enumerate() {
            for (k, t) in row.iter().enumerate() {
                let Some(id) = t else { continue };
                let v = sc.owned(*id);
                let m = match g.kind(*id) {
                    Kind::Vector => quote!(kernels::column(#v)),
                    Kind::Scalar => quote!(DMatrix::from_element(1, 1, #v)),
                    _ => v,
                };
                let (o, k) = (Literal::usize_unsuffixed(o), Literal::usize_unsuffixed(k));
                blocks.push(quote!((#o, #k, #m)));
            }
        }
        let rows = self.state_blocks(recv);
        (
            body,
            quote!(kernels::from_blocks(#rows, #cols, ::std::vec![#(#blocks),*])),
        )
    }

    /// The lengths of the state blocks of the `Staged` that `recv` names.
    fn state_blocks(&self, recv: &Ident) -> TokenStream {
        if self.block_state {
            quote!(&#recv.blocks)
        } else {
            quote!(&[#recv.state_dim()])
        }
    }

    /// `Linearized::state_jacobian` from the structured formula, when there is one.
    pub fn state_jacobian_method(&self) -> TokenStream {
        let Some(terms) = &self.rule.jac_state else {
            return TokenStream::new();
        };
        let recv = Ident::new("self", Span::call_site());
        let (body, value) = self.jacobian_value(terms, self.state_blocks(&recv), &recv);
        quote!(fn state_jacobian(&self) -> Option<DMatrix<f64>> { #body Some(#value) })
    }

    /// `Generated::jacobians`.
    pub fn jacobians_fn(&self) -> TokenStream {
        let sig = self.sig;
        let s = Ident::new("s", Span::call_site());
        let fields = sig.params.iter().enumerate().map(|(k, &p)| {
            let n = &self.arg_names[p];
            let a = self.field_access(&quote!(#s.args), p);
            let width = match sig.args[p].kind {
                Kind::Scalar => quote!(1),
                _ => quote!((#a).len()),
            };
            match &self.rule.jac_params[k] {
                Some(terms) => {
                    let per_output: Vec<Vec<Option<Id>>> = terms.iter().map(|t| vec![*t]).collect();
                    let (body, value) = self.jacobian_value(&per_output, quote!(&[#width]), &s);
                    if body.is_empty() {
                        quote!(#n: #value)
                    } else {
                        quote!(#n: { #body #value })
                    }
                }
                // No structured formula (matrix parameter): one row per VJP.
                None => quote!(#n: {
                    let n: usize = #s.state_dim();
                    let mut jac = DMatrix::zeros(n, #width);
                    for i in 0..n {
                        let e = kernels::unit(n, i);
                        let g = #s.vjp_params(&e);
                        kernels::set_row(&mut jac, i, kernels::entries(&g.#n));
                    }
                    jac
                }),
            }
        });
        quote! {
            fn jacobians(#s: &Staged, state: DMatrix<f64>) -> Jacobians {
                Jacobians {
                    state,
                    #(#fields,)*
                }
            }
        }
    }
}
