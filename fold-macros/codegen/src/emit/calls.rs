//! The Rust expression of an opaque primitive's call, its VJP and JVP, and the reads of
//! their outputs.

use super::Scope;
use crate::ir::{Kind, Node};
use egg::{Id, Language};
use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

impl Scope<'_> {
    /// The expression of a `Call`, `CallVjp`, `CallJvp` or `Get` term.
    pub(super) fn call_expr(&self, id: Id) -> TokenStream {
        let g = self.g;
        let node = g.node(id).clone();
        let q = if self.fallible {
            quote!(?)
        } else {
            TokenStream::new()
        };
        match node {
            Node::Call(name, args) => {
                let ty = self
                    .prims
                    .get(name.as_str())
                    .cloned()
                    .unwrap_or_else(|| quote!(()));
                let argv: Vec<TokenStream> = args.iter().map(|x| self.arg_value(*x)).collect();
                quote!(::fold_runtime::Primitive::linearize(&<#ty as ::core::default::Default>::default(), &[#(#argv),*]) #q)
            }
            Node::CallVjp(ch) => {
                let lin = self.access(ch[0]);
                let cots = self.optional_values(&ch[1..]);
                let wanted = self.wanted(id);
                quote!(::fold_runtime::PrimitiveLinearization::vjp(#lin, &[#(#cots),*], &[#(#wanted),*]))
            }
            Node::CallJvp(ch) => {
                let lin = self.access(ch[0]);
                let tans = self.optional_values(&ch[1..]);
                quote!(::fold_runtime::PrimitiveLinearization::jvp(#lin, &[#(#tans),*]))
            }
            Node::Get([t, i]) => {
                let k = Literal::usize_unsuffixed(g.lit(i).unwrap_or(0.0) as usize);
                let tuple = self.access(t);
                let kind = g.kind(id);
                let f = match kind {
                    Kind::Scalar => "scalar",
                    Kind::Matrix => "matrix",
                    _ => "vector",
                };
                match g.node(t) {
                    Node::Call(name, _) => {
                        let fi = format_ident!("output_{}", f);
                        let n = name.as_str();
                        if self.fallible {
                            quote!(kernels::#fi(#tuple, #k, #n)?)
                        } else {
                            quote!(kernels::#fi(#tuple, #k, #n).unwrap_or_else(|_| ::core::default::Default::default()))
                        }
                    }
                    Node::CallVjp(ch) | Node::CallJvp(ch) => {
                        // Absent cotangents are zeros shaped like the argument / output.
                        let index = g.lit(i).unwrap_or(0.0) as usize;
                        let like = match (g.node(t), g.node(ch[0])) {
                            (Node::CallVjp(_), Node::Call(_, args)) => args.get(index).copied(),
                            _ => None,
                        };
                        let fi = format_ident!("take_{}", f);
                        let like = match like {
                            Some(l) => {
                                let l = self.access(l);
                                quote!(Some(#l))
                            }
                            None => quote!(None),
                        };
                        let tuple = self.recv(t);
                        quote!(kernels::#fi(&mut #tuple, #k, #like))
                    }
                    _ => quote!(()),
                }
            }
            _ => quote!(()),
        }
    }

    /// `Arg::…(x)` for a primitive call.
    /// `Some(value)` per term, `None` for a structural zero (an absent (co)tangent).
    fn optional_values(&self, ids: &[Id]) -> Vec<TokenStream> {
        ids.iter()
            .map(|&c| {
                if self.g.kind(c) == Kind::Zero {
                    quote!(None)
                } else {
                    let v = self.arg_value(c);
                    quote!(Some(#v))
                }
            })
            .collect()
    }

    fn arg_value(&self, x: Id) -> TokenStream {
        let v = self.access(x);
        match self.g.kind(x) {
            Kind::Scalar => quote!(::fold_runtime::Arg::Scalar(#v)),
            Kind::Matrix => quote!(::fold_runtime::Arg::Matrix(#v)),
            _ => quote!(::fold_runtime::Arg::Vector(#v)),
        }
    }

    /// Which arguments of an opaque call's VJP are read.
    fn wanted(&self, vjp: Id) -> Vec<bool> {
        let Node::CallVjp(ch) = self.g.node(vjp) else {
            return Vec::new();
        };
        let n = self.g.node(ch[0]).children().len();
        let mut w = vec![false; n];
        for node in self.g.nodes() {
            if let Node::Get([t, i]) = node {
                if *t == vjp {
                    if let Some(k) = self.g.lit(*i) {
                        if (k as usize) < n {
                            w[k as usize] = true;
                        }
                    }
                }
            }
        }
        w
    }
}
