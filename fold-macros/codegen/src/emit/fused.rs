//! Elementwise terms on a support, fused: a tree of elementwise operations over gathered
//! vectors (a reduced matrix's diagonal, `−(p[F] ⊙ sin(x[F]))`) is one pass over the
//! support, `kernels::on_support(&f, |_, i| -(p[i] * x[i].sin()))`, instead of a gathered
//! copy per leaf and a vector per operation. Each entry is computed by the same
//! operations in the same order as the unfused terms, so the values are bit for bit theirs.
//! Likewise `y + a ⊙ b`, with the product read nowhere else, adds into `y`'s buffer.

use super::Scope;
use crate::ir::graph::Graph;
use crate::ir::{Kind, Node};
use egg::{Id, Language};
use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;

/// The support each vector term lives on (`Some(S)` for a gather on `S` and elementwise
/// operations of such terms), indexed by term; terms come after their operands.
pub fn supports(g: &Graph) -> Vec<Option<Id>> {
    let mut on: Vec<Option<Id>> = Vec::with_capacity(g.len());
    for (i, node) in g.nodes().iter().enumerate() {
        let set = match node {
            _ if g.kind(Id::from(i)) != Kind::Vector => None,
            Node::GatherV([_, s]) => Some(*s),
            n if fusable(n) => {
                let sets: Vec<Option<Id>> = n
                    .children()
                    .iter()
                    .filter(|c| g.kind(**c) == Kind::Vector)
                    .map(|c| on[usize::from(*c)])
                    .collect();
                match sets.first() {
                    Some(Some(s)) if sets.iter().all(|t| *t == Some(*s)) => Some(*s),
                    _ => None,
                }
            }
            _ => None,
        };
        on.push(set);
    }
    on
}

/// How many terms read each term (its operand slots, counted once per reader).
pub fn parents(g: &Graph) -> Vec<usize> {
    let mut count = vec![0; g.len()];
    for node in g.nodes() {
        let mut ch = node.children().to_vec();
        ch.sort();
        ch.dedup();
        for c in ch {
            count[usize::from(c)] += 1;
        }
    }
    count
}

/// Operations a fused loop evaluates per entry.
fn fusable(node: &Node) -> bool {
    matches!(
        node,
        Node::Add(_)
            | Node::Neg(_)
            | Node::CMul(_)
            | Node::CDiv(_)
            | Node::Mul(_)
            | Node::Div(_)
            | Node::AddS(_)
            | Node::Recip(_)
            | Node::Exp(_)
            | Node::Ln(_)
            | Node::Sin(_)
            | Node::Cos(_)
            | Node::Tanh(_)
            | Node::Sqrt(_)
            | Node::Abs(_)
            | Node::Powi(_)
    )
}

/// The largest tree one loop fuses: the entry expression is written out in full.
const MAX_FUSED: usize = 32;

/// How tight an entry expression binds: what needs parentheses where.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Prec {
    Sum,
    Product,
    Prefix,
    Atom,
}

/// What a fused loop reads besides the index.
enum Leaf {
    /// `v[i]`: entry `i` of a full vector, gathered.
    Gathered(Id),
    /// `t[k]`: entry `k` of a vector already on the support.
    OnSupport(Id),
    /// A scalar.
    Scalar(Id),
}

impl Scope<'_> {
    /// The support of `id` when it is the root of a fused loop: an elementwise operation on
    /// the support, computed here, whose tree reads at least one gather.
    pub(super) fn fused_support(&self, id: Id) -> Option<Id> {
        let set = self.supports[usize::from(id)]?;
        if self.preset(id) || !fusable(self.g.node(id)) {
            return None;
        }
        let mut leaves = Vec::new();
        let tree = self.fused_leaves(id, set, &mut leaves)?;
        (tree > 1 && leaves.iter().any(|l| matches!(l, Leaf::Gathered(_)))).then_some(set)
    }

    /// Whether `id` is evaluated inside the fused loop on `set` (not read as a leaf).
    fn inside(&self, id: Id, set: Id) -> bool {
        match self.g.node(id) {
            _ if self.preset(id) || self.g.kind(id) != Kind::Vector => false,
            Node::GatherV([_, s]) => *s == set,
            n => fusable(n) && self.supports[usize::from(id)] == Some(set),
        }
    }

    /// The leaves of the tree rooted at `id` into `out`, and the tree's size; `None` for a
    /// tree that shares an operation (inlined, it would be written out once per use) or
    /// exceeds [`MAX_FUSED`] terms. A gather read twice is written `v[i]` twice.
    fn fused_leaves(&self, id: Id, set: Id, out: &mut Vec<Leaf>) -> Option<usize> {
        let mut seen = std::collections::HashSet::new();
        let mut size = 0;
        let mut stack = vec![id];
        while let Some(t) = stack.pop() {
            size += 1;
            let gather = matches!(self.g.node(t), Node::GatherV(_));
            if (!seen.insert(t) && !gather) || size > MAX_FUSED {
                return None;
            }
            match self.g.node(t) {
                Node::GatherV([v, _]) => out.push(Leaf::Gathered(*v)),
                n => {
                    for &c in n.children() {
                        if self.inside(c, set) {
                            stack.push(c);
                        } else if self.g.kind(c) == Kind::Scalar {
                            out.push(Leaf::Scalar(c));
                        } else {
                            out.push(Leaf::OnSupport(c));
                        }
                    }
                }
            }
        }
        Some(size)
    }

    /// What the fused loop rooted at `id` reads: the leaves' terms and the support.
    pub(super) fn fused_operands(&self, id: Id, set: Id) -> Vec<super::Item> {
        let mut leaves = Vec::new();
        self.fused_leaves(id, set, &mut leaves);
        let mut out: Vec<super::Item> = leaves
            .into_iter()
            .map(|l| match l {
                Leaf::Gathered(t) | Leaf::OnSupport(t) | Leaf::Scalar(t) => super::Item::Node(t),
            })
            .collect();
        out.push(super::Item::Node(set));
        out
    }

    /// `kernels::on_support(S, |k, i| …)` computing `id`.
    pub(super) fn fused_expr(&self, id: Id, set: Id) -> TokenStream {
        let (k, i) = (
            Ident::new("k", Span::call_site()),
            Ident::new("i", Span::call_site()),
        );
        let (body, _) = self.entry(id, set, &k, &i);
        let reads_k = token_used(&body, "k");
        let k = if reads_k { quote!(#k) } else { quote!(_) };
        let s = self.access(set);
        quote!(kernels::on_support(#s, |#k, #i| #body))
    }

    /// The expression of entry `i` (position `k` on the support) of `id`.
    fn entry(&self, id: Id, set: Id, k: &Ident, i: &Ident) -> (TokenStream, Prec) {
        let g = self.g;
        if g.kind(id) == Kind::Scalar {
            let v = self.access(id);
            let p = if v.to_string().starts_with('-') {
                Prec::Prefix
            } else {
                Prec::Atom
            };
            return (v, p);
        }
        if !self.inside(id, set) {
            let t = self.recv(id);
            return (quote!(#t[#k]), Prec::Atom);
        }
        let node = g.node(id);
        let ch = node.children();
        let sub = |c: Id, min: Prec| {
            let (e, p) = self.entry(c, set, k, i);
            if p < min {
                quote!((#e))
            } else {
                e
            }
        };
        let call = |f: &str| {
            let fi = Ident::new(f, Span::call_site());
            let x = sub(ch[0], Prec::Atom);
            (quote!(#x.#fi()), Prec::Atom)
        };
        match node {
            Node::GatherV([v, _]) => {
                let t = self.recv(*v);
                (quote!(#t[#i]), Prec::Atom)
            }
            Node::Add([a, b]) => {
                let x = sub(*a, Prec::Sum);
                match g.node(*b) {
                    Node::Neg(y) if self.inside(*b, set) => {
                        let y = sub(*y, Prec::Product);
                        (quote!(#x - #y), Prec::Sum)
                    }
                    _ => {
                        let y = sub(*b, Prec::Product);
                        (quote!(#x + #y), Prec::Sum)
                    }
                }
            }
            Node::AddS([a, s]) => {
                let (x, y) = (sub(*a, Prec::Sum), sub(*s, Prec::Product));
                (quote!(#x + #y), Prec::Sum)
            }
            Node::Neg(a) => {
                let x = sub(*a, Prec::Prefix);
                (quote!(-#x), Prec::Prefix)
            }
            Node::CMul([a, b]) | Node::Mul([a, b]) => {
                let (x, y) = (sub(*a, Prec::Product), sub(*b, Prec::Prefix));
                (quote!(#x * #y), Prec::Product)
            }
            Node::CDiv([a, b]) | Node::Div([a, b]) => {
                let (x, y) = (sub(*a, Prec::Product), sub(*b, Prec::Prefix));
                (quote!(#x / #y), Prec::Product)
            }
            Node::Recip(a) => {
                let x = sub(*a, Prec::Prefix);
                (quote!(1.0 / #x), Prec::Product)
            }
            Node::Powi([a, e]) => {
                let x = sub(*a, Prec::Atom);
                let n = proc_macro2::Literal::i32_unsuffixed(g.lit(*e).unwrap_or(1.0) as i32);
                (quote!(#x.powi(#n)), Prec::Atom)
            }
            Node::Exp(_) => call("exp"),
            Node::Ln(_) => call("ln"),
            Node::Sin(_) => call("sin"),
            Node::Cos(_) => call("cos"),
            Node::Tanh(_) => call("tanh"),
            Node::Sqrt(_) => call("sqrt"),
            _ => call("abs"),
        }
    }
}

impl Scope<'_> {
    /// `(y, a, b)` when `id` is the vector `y + a ⊙ b` (either order) with the product read
    /// nowhere else (so never computed itself): emitted `kernels::add_product(y, a, b)`, the product added into
    /// `y`'s buffer entry by entry (no vector for `a ⊙ b`; the same sums).
    pub(super) fn product_added(&self, id: Id) -> Option<(Id, Id, Id)> {
        let Node::Add([l, r]) = self.g.node(id) else {
            return None;
        };
        if self.g.kind(id) != Kind::Vector {
            return None;
        }
        [(*l, *r), (*r, *l)]
            .into_iter()
            .find_map(|(y, p)| match self.g.node(p) {
                Node::CMul([a, b])
                    if !self.preset(p)
                        && self.g.kind(*a) == Kind::Vector
                        && self.parents[usize::from(p)] == 1 =>
                {
                    Some((y, *a, *b))
                }
                _ => None,
            })
    }
}

/// Whether the identifier `name` occurs in `tokens`.
fn token_used(tokens: &TokenStream, name: &str) -> bool {
    tokens.clone().into_iter().any(|t| match t {
        proc_macro2::TokenTree::Ident(i) => i == name,
        proc_macro2::TokenTree::Group(g) => token_used(&g.stream(), name),
        _ => false,
    })
}
