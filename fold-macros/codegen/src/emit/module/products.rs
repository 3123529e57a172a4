//! The per-call part: `Linearized` (products with `Φ` and `Ψ`) and, when the rule ends in
//! a projection, `Factored` (the reduced backward on its support).

use super::ctx::Ctx;
use super::strip_question;
use crate::diff::restrict::{Kernel, Reduction};
use crate::emit::{ident_of, Scope};
use crate::ir::{Kind, Node};
use crate::stage;
use egg::Id;
use proc_macro2::{Ident, TokenStream};
use quote::quote;

impl Ctx<'_> {
    /// The name of the (co)tangent parameter of a product: `block_name` for block state,
    /// else the seed's own name.
    fn seed_param(&self, block_name: &str, seed: Id) -> Ident {
        if self.block_state {
            Ident::new(block_name, proc_macro2::Span::call_site())
        } else {
            self.seed_ident(seed)
        }
    }

    /// The rows and columns of matrix state block `b`.
    fn block_shape(&self, b: usize) -> (TokenStream, TokenStream) {
        let a = self.self_access(self.sig.blocks[b]);
        (quote!((#a).nrows()), quote!((#a).ncols()))
    }

    /// Binds the seeds of every state block from the packed parameter `param`.
    fn bind_blocks(&self, scope: &mut Scope, seeds: &[Id], param: &Ident) -> TokenStream {
        if !self.block_state {
            if self.matrix_block(0) {
                // A matrix state's seed: the flat (co)tangent reshaped to the state's shape.
                let (r, c) = self.block_shape(0);
                scope.bind_owned(seeds[0]);
                return quote!(let #param = kernels::block_matrix(#param, 0, #r, #c););
            }
            // The parameter itself is the seed.
            scope.bind_ref(seeds[0]);
            return TokenStream::new();
        }
        let mut out = TokenStream::new();
        let mut off = quote!(0);
        for (b, &sd) in seeds.iter().enumerate() {
            let s = self.seed_ident(sd);
            if self.matrix_block(b) {
                let (r, c) = self.block_shape(b);
                out.extend(quote!(let #s = kernels::block_matrix(#param, #off, #r, #c);));
            } else {
                out.extend(quote!(let #s = kernels::block(#param, #off, self.blocks[#b]);));
            }
            off = quote!(#off + self.blocks[#b]);
            scope.bind_owned(sd);
        }
        out
    }

    /// Per-block roots packed into one vector (zeros where a block has none).
    fn pack_blocks(&self, scope: &Scope, roots: &[Option<Id>]) -> TokenStream {
        if !self.block_state {
            return match roots[0] {
                Some(id) if self.matrix_block(0) => {
                    let o = scope.owned(id);
                    quote!(kernels::flatten(#o))
                }
                Some(id) => scope.owned(id),
                None => quote!(DVector::zeros(self.state_dim())),
            };
        }
        let parts = roots.iter().enumerate().map(|(b, r)| match r {
            Some(id) => scope.access(*id),
            None => quote!(&DVector::zeros(self.blocks[#b])),
        });
        if self.any_matrix_block() {
            quote!(kernels::pack_entries(&[#(kernels::entries(#parts)),*]))
        } else {
            quote!(kernels::pack(&[#(#parts),*]))
        }
    }

    /// The body computing per-block roots and returning them packed into one vector.
    fn packed_body(&self, sc: &mut Scope, roots: &[Option<Id>]) -> TokenStream {
        let ids: Vec<Id> = roots.iter().flatten().copied().collect();
        let items = sc.schedule(&ids);
        if let (false, [Some(id)]) = (self.block_state || self.matrix_block(0), roots) {
            let (body, value) = sc.compute_value(&items, *id);
            return quote!(#body #value);
        }
        let body = sc.compute_returning(&items, &ids);
        let out = self.pack_blocks(sc, roots);
        quote!(#body #out)
    }

    /// A `Grads` value from per-parameter roots computed in `sc` (zeros where absent).
    fn grads_of(&self, sc: &Scope, roots: &[Option<Id>]) -> TokenStream {
        let inits = self.sig.params.iter().enumerate().map(|(k, &p)| {
            let n = &self.arg_names[p];
            match roots[k] {
                Some(id) => {
                    let o = sc.owned(id);
                    quote!(#n: #o)
                }
                None if self.sig.args[p].kind == Kind::Scalar => quote!(#n: 0.0),
                None => {
                    let a = self.self_access(p);
                    quote!(#n: Cotangent::zeros_like(#a))
                }
            }
        });
        quote!(Grads { #(#inits),* })
    }

    /// A body computing `roots` in a method scope with the seed `seed` bound, returning
    /// them as `Grads`.
    fn grads_body(&self, seed: Id, roots: &[Option<Id>]) -> TokenStream {
        let mut sc = self.method_scope();
        sc.bind_ref(seed);
        let ids: Vec<Id> = roots.iter().flatten().copied().collect();
        let items = sc.schedule(&ids);
        let body = sc.compute_returning(&items, &ids);
        let grads = self.grads_of(&sc, roots);
        quote!(#body #grads)
    }

    /// `impl Linearized for Staged`, with the structured `state_jacobian` when there is one.
    pub fn linearized_impl(&self, state_jacobian: TokenStream) -> TokenStream {
        let rule = self.rule;
        let v = self.seed_param("v", rule.seeds.cotangent[0]);
        let u = self.seed_param("u", rule.seeds.tangent[0]);
        let vjp_state = {
            let mut sc = self.method_scope();
            let bind = self.bind_blocks(&mut sc, &rule.seeds.cotangent, &v);
            let body = self.packed_body(&mut sc, &rule.vjp_state);
            quote!(#bind #body)
        };
        let jvp_state = {
            let mut sc = self.method_scope();
            let bind = self.bind_blocks(&mut sc, &rule.seeds.tangent, &u);
            let body = self.packed_body(&mut sc, &rule.jvp_state);
            quote!(#bind #body)
        };
        let vjp_params = {
            let mut sc = self.method_scope();
            let bind = self.bind_blocks(&mut sc, &rule.seeds.cotangent, &v);
            let roots: Vec<Id> = rule.vjp_params.iter().flatten().copied().collect();
            let items = sc.schedule(&roots);
            let body = sc.compute_returning(&items, &roots);
            let grads = self.grads_of(&sc, &rule.vjp_params);
            quote!(#bind #body #grads)
        };
        let jvp_params = {
            let mut sc = self.method_scope();
            let mut bind = TokenStream::new();
            for (k, &p) in self.sig.params.iter().enumerate() {
                let sd = rule.seeds.param_tangent[k];
                let s = self.seed_ident(sd);
                let n = &self.arg_names[p];
                if self.sig.args[p].kind == Kind::Scalar {
                    bind.extend(quote!(let #s = tangent.#n;));
                    sc.bind_owned(sd);
                } else {
                    bind.extend(quote!(let #s = &tangent.#n;));
                    sc.bind_ref(sd);
                }
            }
            let body = self.packed_body(&mut sc, &rule.jvp_params);
            quote!(#bind #body)
        };
        let state_dim = if self.block_state {
            quote!(self.blocks.iter().sum())
        } else {
            let x = &self.arg_names[self.sig.blocks[0]];
            quote!(self.args.#x.len())
        };
        let factored = rule.reduction.as_ref().map(|_| {
            quote! {
                fn factored(&self) -> Option<&dyn Factored<Grads = Grads>> {
                    Some(self)
                }
            }
        });
        quote! {
            impl Linearized for Staged<'_> {
                type Grads = Grads;
                fn state_dim(&self) -> usize {
                    #state_dim
                }
                fn vjp_state(&self, #v: &DVector<f64>) -> DVector<f64> {
                    #vjp_state
                }
                fn jvp_state(&self, #u: &DVector<f64>) -> DVector<f64> {
                    #jvp_state
                }
                fn vjp_params(&self, #v: &DVector<f64>) -> Grads {
                    #vjp_params
                }
                fn jvp_params(&self, tangent: &Grads) -> DVector<f64> {
                    #jvp_params
                }
                #state_jacobian
                #factored
            }
        }
    }

    /// Whether products with `Mᵀ` touch no dense matrix (elementwise and sparse work only).
    fn cheap_products(&self, r: &Reduction) -> bool {
        let g = &self.g;
        r.inner_state.is_none_or(|root| {
            let dep = stage::per_call_mask(g);
            let reach = g.reachable(&[root]);
            g.nodes().iter().enumerate().all(|(i, node)| {
                !(reach[i] && dep[i])
                    || match node {
                        Node::MatVec([m, _]) => {
                            g.kind(stage::peel(g, *m, &|_| false).base) == Kind::Sparse
                        }
                        Node::MatMul(_) | Node::Outer(_) | Node::Solve(_) | Node::SolveT(_) => {
                            false
                        }
                        Node::CallVjp(_) | Node::CallJvp(_) => false,
                        _ => true,
                    }
            })
        })
    }

    /// `impl Factored for Staged`: the reduced backward's terms.
    pub fn factored_impl(&self) -> TokenStream {
        let Some(r) = &self.rule.reduction else {
            return TokenStream::new();
        };
        let g = &self.g;
        let w = ident_of(&self.names, r.seed);
        let inner_state = {
            let mut sc = self.method_scope();
            sc.bind_ref(r.seed);
            match r.inner_state {
                Some(id) => {
                    let items = sc.schedule(&[id]);
                    let (body, value) = sc.compute_value(&items, id);
                    quote!(#body #value)
                }
                None => quote!(DVector::zeros(self.state_dim())),
            }
        };
        let inner_params = self.grads_body(r.seed, &r.inner_params);
        let head = r.head_params.as_ref().map(|hp| {
            let mut sc = self.method_scope();
            sc.bind_ref(r.seed);
            let roots: Vec<Id> = hp.iter().flatten().copied().collect();
            let items = sc.schedule(&roots);
            let body = sc.compute_returning(&items, &roots);
            let grads = self.grads_of(&sc, hp);
            quote! {
                fn head_vjp_params(&self, #w: &DVector<f64>) -> Option<Grads> {
                    #body
                    Some(#grads)
                }
                fn head_has_params(&self) -> bool {
                    true
                }
            }
        });
        let cheap = self.cheap_products(r).then(|| {
            quote! {
                fn cheap_products(&self) -> bool {
                    true
                }
            }
        });
        // A sparse-closed reduced matrix is assembled sparse, never dense.
        let sparse = r
            .matrix
            .filter(|&m| r.sparse && crate::diff::restrict::sparse_closed(g, m));
        let sparse_method = sparse.map(|m| {
            let mut sc = self.method_scope();
            let leaves = crate::emit::sparse::operands(g, m);
            let items = sc.schedule(&leaves);
            let body = sc.compute(&items);
            let assembly = crate::emit::sparse::SparseEmitter::new(&sc, g).assemble(m);
            // One fallible expression `e?` reads as `e.map(Some)`.
            let statements = assembly
                .clone()
                .into_iter()
                .any(|t| matches!(&t, proc_macro2::TokenTree::Punct(p) if p.as_char() == ';'));
            let value = match strip_question(&assembly) {
                Some(e) if !statements => quote!(#e.map(Some)),
                _ => quote!(Ok(Some({ #assembly }))),
            };
            quote! {
                fn reduced_sparse(&self) -> Result<Option<SparseReduced<'_>>, FoldError> {
                    #body
                    #value
                }
            }
        });
        let dense = r.matrix.filter(|_| sparse.is_none() && !r.sparse);
        // Gathered in the constants' storage order; the solve reads it transposed.
        let transposed = (r.matrix_transposed && dense.is_some()).then(|| {
            quote! {
                fn reduced_matrix_transposed(&self) -> bool {
                    true
                }
            }
        });
        let matrix = match dense {
            None => quote!(None),
            Some(m) => {
                let mut sc = self.method_scope();
                let items = sc.schedule(&[m]);
                let (body, value) = sc.compute_value(&items, m);
                quote!(#body Some(#value))
            }
        };
        let support = ident_of(&self.names, r.support);
        let kernel = match r.kernel {
            Kernel::Identity => quote!(SupportKernel::Identity),
            Kernel::Centered => quote!(SupportKernel::Centered),
        };
        quote! {
            /// `Φ = J M` through the projection ending the rule: a reduced system on its support.
            impl Factored for Staged<'_> {
                fn support(&self) -> &[usize] {
                    &self.#support
                }
                fn kernel(&self) -> SupportKernel {
                    #kernel
                }
                fn inner_vjp_state(&self, #w: &DVector<f64>) -> DVector<f64> {
                    #inner_state
                }
                fn inner_vjp_params(&self, #w: &DVector<f64>) -> Grads {
                    #inner_params
                }
                #head
                #cheap
                fn reduced_matrix(&self) -> Option<DMatrix<f64>> {
                    #matrix
                }
                #transposed
                #sparse_method
            }
        }
    }
}
