//! Emission of a sparse-closed matrix term (see [`crate::diff::restrict::sparse_closed`]) as
//! CSR assembly through `sparse`: one `let` per matrix
//! operation, scalings and signs folded into the sums and products that consume them.

use crate::emit::Scope;
use crate::ir::graph::Graph;
use crate::ir::{Kind, Node};
use egg::Id;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use std::collections::{HashMap, HashSet};

/// The scalar and vector terms (and index sets) the assembly of `m` reads: they are
/// computed by the ordinary scope before the assembly.
pub fn operands(g: &Graph, m: Id) -> Vec<Id> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![m];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let leaf = |x: Id, out: &mut Vec<Id>| {
            if !out.contains(&x) {
                out.push(x);
            }
        };
        match g.node(id) {
            Node::Var(_) => leaf(id, &mut out),
            Node::Eye(v) => match g.node(*v) {
                Node::GatherV([_, s]) => leaf(*s, &mut out),
                _ => leaf(*v, &mut out),
            },
            Node::Diag(d) => leaf(*d, &mut out),
            Node::Transpose(a) | Node::Neg(a) => stack.push(*a),
            Node::Mul([s, a]) | Node::Div([a, s]) => {
                leaf(*s, &mut out);
                stack.push(*a);
            }
            Node::GatherM([a, s]) | Node::GatherRows([a, s]) | Node::GatherCols([a, s]) => {
                leaf(*s, &mut out);
                stack.push(*a);
            }
            Node::Add([a, b]) | Node::MatMul([a, b]) => {
                stack.push(*a);
                stack.push(*b);
            }
            _ => {}
        }
    }
    out
}

/// `±(c₁ · c₂ · …)`, or `None` when it is 1.
fn coefficient(coef: &[TokenStream], negated: bool) -> Option<TokenStream> {
    let product = match coef {
        [] if !negated => return None,
        [] => quote!(1.0),
        [c] => c.clone(),
        [first, rest @ ..] => quote!((#first #(* #rest)*)),
    };
    Some(if negated { quote!(-#product) } else { product })
}

/// A matrix seen through scalings and signs: `coef · base`.
struct Scaled {
    coef: Vec<TokenStream>,
    negated: bool,
    base: Id,
}

/// Emits the assembly of `m`: statements, then the expression of the owned result.
pub struct SparseEmitter<'s, 'a> {
    sc: &'s Scope<'a>,
    g: &'a Graph,
    done: HashMap<Id, proc_macro2::Ident>,
    out: TokenStream,
}

impl<'s, 'a> SparseEmitter<'s, 'a> {
    /// An emitter reading scalar and vector operands from `sc` (already computed there).
    pub fn new(sc: &'s Scope<'a>, g: &'a Graph) -> Self {
        SparseEmitter {
            sc,
            g,
            done: HashMap::new(),
            out: TokenStream::new(),
        }
    }

    /// The statements assembling `m`, ending in the `SparseReduced` it is: a Gram matrix
    /// `c A_S A_Sᵀ` as such (its solver assembles it), anything else as CSR.
    pub fn assemble(mut self, m: Id) -> TokenStream {
        let sp = quote!(sparse);
        let v = self.scaled(m);
        if let Node::MatMul([a, b]) = self.g.node(v.base).clone() {
            let c = self.coef_tokens(&v);
            if let Some(e) = self.gram(a, b, c.clone(), quote!(gram)) {
                let out = self.out;
                return quote!(#out #e);
            }
            // A scaled product takes the scaling as its coefficient: no scaled copy.
            if c.is_some() {
                let e = self.product(a, b, c);
                let out = self.out;
                return quote!(#out SparseReduced::Csr(#e));
            }
        }
        let base = self.matrix(v.base);
        let coef = self.coef_tokens(&v);
        let result = match (&coef, self.done.contains_key(&v.base)) {
            (None, true) => {
                let name = &self.done[&v.base];
                quote!(#name)
            }
            (None, false) => quote!((#base).clone()),
            (Some(c), _) => quote!(#sp::scale(#c, #base)),
        };
        let out = self.out;
        quote!(#out SparseReduced::Csr(#result))
    }

    fn scaled(&self, mut id: Id) -> Scaled {
        let mut v = Scaled {
            coef: Vec::new(),
            negated: false,
            base: id,
        };
        loop {
            match self.g.node(id) {
                Node::Neg(a) => {
                    v.negated = !v.negated;
                    id = *a;
                }
                Node::Mul([s, a]) if self.g.kind(*a) != Kind::Scalar => {
                    v.coef.push(self.sc.access(*s));
                    id = *a;
                }
                Node::Div([a, s]) => {
                    let s = self.sc.access(*s);
                    v.coef.push(quote!((1.0 / #s)));
                    id = *a;
                }
                _ => break,
            }
        }
        v.base = id;
        v
    }

    /// `Some(coefficient)` unless it is 1.
    fn coef_tokens(&self, v: &Scaled) -> Option<TokenStream> {
        coefficient(&v.coef, v.negated)
    }

    fn coef_or_one(&self, v: &Scaled) -> TokenStream {
        self.coef_tokens(v).unwrap_or_else(|| quote!(1.0))
    }

    /// A reference to the assembled matrix `id` (not a scaling or sign: see `scaled`).
    fn matrix(&mut self, id: Id) -> TokenStream {
        if let Some(name) = self.done.get(&id) {
            return quote!(&#name);
        }
        let g = self.g;
        let sp = quote!(sparse);
        let e = match g.node(id).clone() {
            Node::Var(_) => return self.sc.access(id),
            Node::Eye(v) => {
                let len = match g.node(v) {
                    Node::GatherV([_, s]) => self.sc.access(*s),
                    _ => self.sc.access(v),
                };
                quote!(#sp::eye((#len).len()))
            }
            Node::Diag(d) => {
                let d = self.sc.access(d);
                quote!(#sp::diag(#d)?)
            }
            Node::Transpose(a) => {
                let a = self.matrix(a);
                quote!(#sp::transpose(#a)?)
            }
            Node::GatherM([a, s]) | Node::GatherRows([a, s]) | Node::GatherCols([a, s]) => {
                let f = match g.node(id) {
                    Node::GatherM(_) => quote!(sub),
                    Node::GatherRows(_) => quote!(rows),
                    _ => quote!(cols),
                };
                let a = self.matrix(a);
                let s = self.sc.access(s);
                quote!(#sp::#f(#a, #s)?)
            }
            Node::Add([a, b]) => {
                let (va, vb) = (self.scaled(a), self.scaled(b));
                let (ca, cb) = (self.coef_or_one(&va), self.coef_or_one(&vb));
                let (ma, mb) = (self.matrix(va.base), self.matrix(vb.base));
                quote!(#sp::axpby(#ca, #ma, #cb, #mb)?)
            }
            Node::MatMul([a, b]) => self.product(a, b, None),
            Node::Neg(_) | Node::Mul(_) | Node::Div(_) => {
                let v = self.scaled(id);
                let c = self.coef_or_one(&v);
                let m = self.matrix(v.base);
                quote!(#sp::scale(#c, #m))
            }
            other => {
                let msg = format!("fold-codegen: {other:?} is not sparse-closed");
                quote!(compile_error!(#msg))
            }
        };
        let name = format_ident!("sp{}", usize::from(id));
        self.out.extend(quote!(let #name = #e;));
        self.done.insert(id, name.clone());
        quote!(&#name)
    }

    /// `outer · a b` as `#sp::#f(c, A, S)` when it is `A_S A_Sᵀ` for gathered rows of one
    /// matrix (not gathered themselves), else `None`.
    fn gram(
        &mut self,
        a: Id,
        b: Id,
        outer: Option<TokenStream>,
        f: TokenStream,
    ) -> Option<TokenStream> {
        let g = self.g;
        let (va, vb) = (self.scaled(a), self.scaled(b));
        match (g.node(va.base).clone(), g.node(vb.base).clone()) {
            (Node::GatherRows([x, s]), Node::Transpose(y))
                if y == va.base && !self.done.contains_key(&va.base) =>
            {
                let mut coef = va.coef.clone();
                coef.extend(vb.coef.clone());
                coef.extend(outer);
                let c = coefficient(&coef, va.negated ^ vb.negated).unwrap_or_else(|| quote!(1.0));
                let sp = quote!(sparse);
                let x = self.matrix(x);
                let s = self.sc.access(s);
                Some(quote!(#sp::#f(#c, #x, #s)?))
            }
            _ => None,
        }
    }

    /// `outer · a b`: `A Bᵀ` through one transposed pattern of `B` (not a transposed
    /// term), `A_S A_Sᵀ` for gathered rows of one matrix without gathering them.
    fn product(&mut self, a: Id, b: Id, outer: Option<TokenStream>) -> TokenStream {
        if let Some(e) = self.gram(a, b, outer.clone(), quote!(gram_rows)) {
            return e;
        }
        let g = self.g;
        let sp = quote!(sparse);
        let (va, vb) = (self.scaled(a), self.scaled(b));
        let mut coef = va.coef.clone();
        coef.extend(vb.coef.clone());
        coef.extend(outer);
        let c = coefficient(&coef, va.negated ^ vb.negated).unwrap_or_else(|| quote!(1.0));
        match (g.node(va.base).clone(), g.node(vb.base).clone()) {
            (_, Node::Transpose(y)) => {
                let ma = self.matrix(va.base);
                let mb = self.matrix(y);
                quote!(#sp::mul_t(#c, #ma, #mb)?)
            }
            _ => {
                let ma = self.matrix(va.base);
                let mb = self.matrix(vb.base);
                quote!(#sp::mul(#c, #ma, #mb)?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::coefficient;
    use quote::quote;

    #[test]
    fn coefficients_multiply_and_carry_their_sign() {
        assert!(coefficient(&[], false).is_none());
        assert_eq!(coefficient(&[], true).unwrap().to_string(), "- 1.0");
        let two = [quote!(a), quote!(self.b)];
        assert_eq!(
            coefficient(&two, false).unwrap().to_string(),
            "(a * self . b)"
        );
        assert_eq!(coefficient(&two[..1], true).unwrap().to_string(), "- a");
    }
}
