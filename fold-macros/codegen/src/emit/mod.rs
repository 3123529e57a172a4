//! Emission: IR terms to Rust statements calling `::fold_runtime`. Each computed term is
//! one `let`; arrays are passed by reference, scalars by value; matrix operands of
//! products are read through views (no materialized transposes or scaled copies).

mod calls;
mod expr;
mod fused;
mod liveness;
pub mod module;
pub mod pretty;
pub mod sparse;

use crate::ir::graph::Graph;
use crate::ir::{Kind, Node};
use crate::stage::{is_leaf, peel};

use egg::{Id, Language};
use proc_macro2::{Ident, Literal, TokenStream};
use quote::{format_ident, quote};
use std::collections::{HashMap, HashSet};

/// How an argument of the rule is reached in the code being emitted.
#[derive(Clone, Debug)]
pub struct ArgAccess {
    /// Tokens for a reference to it (arrays) or its value (scalars).
    pub tokens: TokenStream,
}

/// One thing a function computes: a term, or the factorization of a matrix term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Item {
    /// A term.
    Node(Id),
    /// The LU factorization of a matrix term.
    Factor(Id),
}

/// Where already-computed values live while emitting one function.
pub struct Scope<'a> {
    g: &'a Graph,
    names: &'a HashMap<Id, Ident>,
    args: HashMap<Id, TokenStream>,
    /// Terms stored in `self` (method scopes).
    fields: HashSet<Id>,
    /// Fields computed on first use, read through their accessor methods.
    lazy: HashSet<Id>,
    /// Factorizations stored in `self`.
    field_factors: HashSet<Id>,
    locals: HashSet<Id>,
    local_factors: HashSet<Id>,
    /// Locals that are references already (seeds passed by reference).
    ref_locals: HashSet<Id>,
    /// Locals bound before the body (seeds and their blocks).
    bound: HashSet<Id>,
    /// Whether `?` may be used.
    fallible: bool,
    /// Opaque primitives: call name → implementing type path.
    prims: &'a HashMap<String, TokenStream>,
    /// Matrix arguments whose finiteness the first full product checks (`mv_checked`,
    /// `sparse_mv_checked`):
    /// argument term → its name.
    deferred: HashMap<Id, String>,
    /// Remaining reads of each local while a body is emitted: an owned local read for
    /// the last time is moved (its buffer reused) instead of borrowed.
    remaining: std::cell::RefCell<HashMap<Id, usize>>,
    /// Owned locals moved into an expression (their buffer now someone else's).
    moved: std::cell::RefCell<HashSet<Id>>,
    /// What holds the fields: `self`, or a parameter of a function over `Staged`.
    recv: TokenStream,
    /// The support each vector term lives on ([`fused::supports`]).
    supports: Vec<Option<Id>>,
    /// How many terms read each term ([`fused::parents`]).
    parents: Vec<usize>,
}

/// The identifier of a computed term.
pub fn ident_of(names: &HashMap<Id, Ident>, id: Id) -> Ident {
    names
        .get(&id)
        .cloned()
        .unwrap_or_else(|| format_ident!("t{}", usize::from(id)))
}

/// The identifier of the factorization of term `id`.
pub fn factor_ident(names: &HashMap<Id, Ident>, id: Id) -> Ident {
    format_ident!("lu_{}", ident_of(names, id))
}

/// `(a * b * …)`.
fn product(factors: &[TokenStream]) -> TokenStream {
    let mut t = TokenStream::new();
    for (i, f) in factors.iter().enumerate() {
        if i > 0 {
            t.extend(quote!(*));
        }
        t.extend(f.clone());
    }
    quote!((#t))
}

/// An `f64` literal (a negative one is parenthesized only as a method receiver, see
/// [`Scope::recv`]).
pub fn lit(v: f64) -> TokenStream {
    let l = Literal::f64_unsuffixed(v.abs());
    if v < 0.0 || (v == 0.0 && v.is_sign_negative()) {
        quote!(-#l)
    } else {
        quote!(#l)
    }
}

impl<'a> Scope<'a> {
    /// A scope over `g` where arguments are reached through `args`.
    pub fn new(
        g: &'a Graph,
        names: &'a HashMap<Id, Ident>,
        prims: &'a HashMap<String, TokenStream>,
        args: HashMap<Id, TokenStream>,
        fallible: bool,
    ) -> Self {
        Scope {
            g,
            names,
            args,
            fields: HashSet::new(),
            lazy: HashSet::new(),
            field_factors: HashSet::new(),
            locals: HashSet::new(),
            local_factors: HashSet::new(),
            ref_locals: HashSet::new(),
            bound: HashSet::new(),
            fallible,
            prims,
            deferred: HashMap::new(),
            remaining: std::cell::RefCell::new(HashMap::new()),
            moved: std::cell::RefCell::new(HashSet::new()),
            recv: quote!(self),
            supports: fused::supports(g),
            parents: fused::parents(g),
        }
    }

    /// Fields read from `recv` instead of `self`.
    pub fn with_receiver(mut self, recv: &Ident) -> Self {
        self.recv = quote!(#recv);
        self
    }

    /// Matrix arguments whose finiteness is checked by their first product here.
    pub fn with_deferred_checks(mut self, deferred: HashMap<Id, String>) -> Self {
        self.deferred = deferred;
        self
    }

    /// Declares terms and factorizations stored in `self`.
    pub fn with_fields(mut self, fields: &[Id], factors: &[Id]) -> Self {
        self.fields.extend(fields.iter().copied());
        self.field_factors.extend(factors.iter().copied());
        self
    }

    /// Declares the fields among those stored that are computed on first use.
    pub fn with_lazy(mut self, lazy: &[Id]) -> Self {
        self.lazy.extend(lazy.iter().copied());
        self
    }

    /// The scope without field `id` (to compute it: a lazy field's accessor).
    pub fn without_field(mut self, id: Id) -> Self {
        self.fields.remove(&id);
        self.lazy.remove(&id);
        self
    }

    /// Declares a local that holds a reference (a seed parameter).
    pub fn bind_ref(&mut self, id: Id) {
        self.locals.insert(id);
        self.ref_locals.insert(id);
        self.bound.insert(id);
    }

    /// Declares an owned local (a block of a seed).
    pub fn bind_owned(&mut self, id: Id) {
        self.locals.insert(id);
        self.bound.insert(id);
    }

    /// Whether `id` is readable before this function computes anything (a field, an
    /// argument, a seed, a literal). Structural choices (views, fused kernels) depend on this
    /// alone, so that they do not change while the body is emitted.
    fn preset(&self, id: Id) -> bool {
        self.fields.contains(&id)
            || self.args.contains_key(&id)
            || self.bound.contains(&id)
            || matches!(self.g.node(id), Node::Num(_))
    }

    /// Whether the value of `id` can be read without computing it.
    pub fn available(&self, id: Id) -> bool {
        self.locals.contains(&id)
            || self.fields.contains(&id)
            || self.args.contains_key(&id)
            || matches!(self.g.node(id), Node::Num(_))
    }

    fn factor_available(&self, id: Id) -> bool {
        self.local_factors.contains(&id) || self.field_factors.contains(&id)
    }

    fn is_scalar(&self, id: Id) -> bool {
        self.g.kind(id) == Kind::Scalar
    }

    /// A reference to (arrays) or the value of (scalars) an available term.
    pub fn access(&self, id: Id) -> TokenStream {
        if let Node::Num(l) = self.g.node(id) {
            return lit(l.get());
        }
        if let Some(t) = self.args.get(&id) {
            return t.clone();
        }
        let name = ident_of(self.names, id);
        let by_value = self.is_scalar(id);
        if self.locals.contains(&id) {
            if by_value || self.ref_locals.contains(&id) {
                quote!(#name)
            } else {
                quote!(&#name)
            }
        } else if by_value {
            let recv = &self.recv;
            quote!(#recv.#name)
        } else if self.lazy.contains(&id) {
            let recv = &self.recv;
            quote!(#recv.#name())
        } else {
            let recv = &self.recv;
            quote!(&#recv.#name)
        }
    }

    /// The term as a method receiver (no leading `&`: auto-referencing applies).
    pub fn recv(&self, id: Id) -> TokenStream {
        let t = self.access(id);
        let mut it = t.clone().into_iter();
        match it.next() {
            Some(proc_macro2::TokenTree::Punct(p)) if p.as_char() == '&' => it.collect(),
            // `-1.0.abs()` would be `-(1.0.abs())`.
            Some(proc_macro2::TokenTree::Punct(p)) if p.as_char() == '-' => quote!((#t)),
            _ => t,
        }
    }

    fn factor_access(&self, id: Id) -> TokenStream {
        let name = factor_ident(self.names, id);
        if self.local_factors.contains(&id) {
            quote!(#name)
        } else {
            let recv = &self.recv;
            quote!(#recv.#name)
        }
    }

    /// The items to compute, in order, so that `roots` become available.
    pub fn schedule(&self, roots: &[Id]) -> Vec<Item> {
        let mut order = Vec::new();
        let mut done = HashSet::new();
        for &r in roots {
            self.visit(Item::Node(r), &mut order, &mut done);
        }
        order
    }

    fn visit(&self, item: Item, order: &mut Vec<Item>, done: &mut HashSet<Item>) {
        if done.contains(&item) {
            return;
        }
        match item {
            Item::Factor(m) => {
                if self.factor_available(m) {
                    return;
                }
                self.visit(Item::Node(m), order, done);
            }
            Item::Node(id) => {
                if self.available(id) || is_leaf(self.g, id) {
                    return;
                }
                for dep in self.operands(id) {
                    self.visit(dep, order, done);
                }
            }
        }
        done.insert(item);
        order.push(item);
    }

    /// What computing `id` reads: its children, with matrix operands seen through views
    /// and solves through factorizations.
    pub fn operands(&self, id: Id) -> Vec<Item> {
        let g = self.g;
        let avail = |x: Id| self.preset(x);
        let view = |x: Id, out: &mut Vec<Item>| {
            if g.kind(x) == Kind::Scalar {
                out.push(Item::Node(x));
                return;
            }
            let v = peel(g, x, &avail);
            out.extend(v.coef.iter().map(|c| Item::Node(*c)));
            match g.node(v.base) {
                Node::Diag(d) if !avail(v.base) => out.push(Item::Node(*d)),
                _ => out.push(Item::Node(v.base)),
            }
        };
        if let Some(set) = self.fused_support(id) {
            return self.fused_operands(id, set);
        }
        let mut out = Vec::new();
        if let Some((v, gathered, set)) = self.gather_view(id) {
            out.extend(v.coef.iter().map(|c| Item::Node(*c)));
            out.push(Item::Node(gathered));
            out.push(Item::Node(set));
            return out;
        }
        if let Some((other, diag)) = self.plus_diagonal(id) {
            out.push(Item::Node(other));
            if let Some(d) = diag {
                out.push(Item::Node(d));
            }
            return out;
        }
        if let Some((y, a, b)) = self.product_added(id) {
            return vec![Item::Node(y), Item::Node(a), Item::Node(b)];
        }
        if let Some((s, y)) = self.negated_product(id) {
            return vec![Item::Node(s), Item::Node(y)];
        }
        match g.node(id) {
            Node::Add([a, b]) if self.negated(*b).is_some() => {
                out.push(Item::Node(*a));
                out.extend(self.negated(*b).map(Item::Node));
            }
            Node::MatVec([a, x]) => {
                view(*a, &mut out);
                out.push(Item::Node(*x));
            }
            Node::MatMul([a, b]) => {
                view(*a, &mut out);
                view(*b, &mut out);
            }
            Node::ColumnSum(m) if self.transposed_view(*m).is_some() => {
                out.extend(self.transposed_view(*m).map(Item::Node));
            }
            Node::Solve([m, r]) | Node::SolveT([m, r]) => {
                let v = peel(g, *m, &|_| false);
                out.extend(v.coef.iter().map(|c| Item::Node(*c)));
                out.push(Item::Factor(v.base));
                out.push(Item::Node(*r));
            }
            Node::CallVjp(ch) | Node::CallJvp(ch) => {
                out.push(Item::Node(ch[0]));
                let Node::Call(_, args) = g.node(ch[0]) else {
                    return out;
                };
                out.extend(args.iter().map(|a| Item::Node(*a)));
                out.extend(
                    ch[1..]
                        .iter()
                        .filter(|c| g.kind(**c) != Kind::Zero)
                        .map(|c| Item::Node(*c)),
                );
            }
            Node::Get([t, _]) => {
                out.push(Item::Node(*t));
                if let Node::CallVjp(ch) | Node::CallJvp(ch) = g.node(*t) {
                    if let Node::Call(_, args) = g.node(ch[0]) {
                        out.extend(args.iter().map(|a| Item::Node(*a)));
                    }
                }
            }
            node => out.extend(
                node.children()
                    .iter()
                    .filter(|c| g.kind(**c) != Kind::Zero)
                    .map(|c| Item::Node(*c)),
            ),
        }
        out
    }

    /// A matrix term that reads `op(A)[S, S]` through views: the total view (with `base`
    /// the gathered matrix `A`), `A`'s term and `S`. One gather then does it all.
    fn gather_view(&self, id: Id) -> Option<(crate::stage::View, Id, Id)> {
        let g = self.g;
        if g.kind(id) != Kind::Matrix {
            return None;
        }
        let outer = peel(g, id, &|y| y != id && self.preset(y));
        let Node::GatherM([a, set]) = g.node(outer.base) else {
            return None;
        };
        if outer.base != id && self.preset(outer.base) {
            return None;
        }
        let inner = peel(g, *a, &|y| self.preset(y));
        let mut v = inner.clone();
        v.coef.extend(outer.coef);
        v.negated ^= outer.negated;
        v.transposed ^= outer.transposed;
        Some((v, inner.base, *set))
    }

    /// `A ± diag(d)` or `A + I` with the diagonal not computed: `(A, Some(d))` / `(A, None)`.
    fn plus_diagonal(&self, id: Id) -> Option<(Id, Option<Id>)> {
        let g = self.g;
        let Node::Add([a, b]) = g.node(id) else {
            return None;
        };
        for (x, y) in [(*a, *b), (*b, *a)] {
            if self.preset(y) {
                continue;
            }
            match g.node(y) {
                Node::Diag(d) => return Some((x, Some(*d))),
                Node::Eye(_) => return Some((x, None)),
                _ => {}
            }
        }
        None
    }

    /// `Some(b)` when `id` is `bᵀ` and not computed itself (read `b` instead).
    fn transposed_view(&self, id: Id) -> Option<Id> {
        match self.g.node(id) {
            Node::Transpose(b) if !self.preset(id) => Some(*b),
            _ => None,
        }
    }

    /// `Some(x)` when `id` is `−x` and not computed itself (so `a + (−x)` is emitted `a − x`).
    fn negated(&self, id: Id) -> Option<Id> {
        match self.g.node(id) {
            Node::Neg(x) if !self.preset(id) => Some(*x),
            _ => None,
        }
    }

    /// `Some((s, y))` when `id` is `−(s y)` with the product read nowhere else and not
    /// computed itself: emitted `y · (−s)` in one pass (negation is exact, so the same value).
    fn negated_product(&self, id: Id) -> Option<(Id, Id)> {
        let Node::Neg(x) = self.g.node(id) else {
            return None;
        };
        match self.g.node(*x) {
            Node::Mul([s, y])
                if !self.preset(*x) && self.parents[usize::from(*x)] == 1 && self.is_scalar(*s) =>
            {
                Some((*s, *y))
            }
            _ => None,
        }
    }

    /// `let` statements computing `items` (from [`Scope::schedule`]); each becomes a local.
    pub fn compute(&mut self, items: &[Item]) -> TokenStream {
        self.compute_returning(items, &[])
    }

    /// [`Scope::compute`], counting `returns` as reads after the last item (so that they
    /// are not moved before being returned).
    pub fn compute_returning(&mut self, items: &[Item], returns: &[Id]) -> TokenStream {
        self.count_reads(items, returns);
        self.emit_items(items)
    }

    /// The statements computing `items`, and an owned `root` as the value that follows them:
    /// `root`'s own expression when it is computed last, not bound to a name first.
    pub fn compute_value(&mut self, items: &[Item], root: Id) -> (TokenStream, TokenStream) {
        let last = matches!(items.last(), Some(Item::Node(l)) if *l == root);
        if !last || self.g.kind(root) == Kind::Tuple {
            let body = self.compute_returning(items, &[root]);
            let out = self.owned(root);
            return (body, out);
        }
        self.count_reads(items, &[]);
        let mut body = self.emit_items(&items[..items.len() - 1]);
        let (value, dead) = self.node_expr(root);
        self.locals.insert(root);
        if dead.is_empty() {
            return (body, value);
        }
        // Intermediates read last by the value itself go back once it is computed.
        let name = ident_of(self.names, root);
        body.extend(quote!(let #name = #value;));
        body.extend(self.recycled(&dead));
        (body, quote!(#name))
    }

    fn emit_items(&mut self, items: &[Item]) -> TokenStream {
        let mut out = TokenStream::new();
        for &item in items {
            match item {
                Item::Factor(m) => {
                    let name = factor_ident(self.names, m);
                    let mtx = self.access(m);
                    let q = self.question();
                    out.extend(quote!(let #name = ::fold_runtime::__private::Factorization::factor(#mtx) #q;));
                    self.local_factors.insert(m);
                    let dead = self.read_off(&[Item::Node(m)]);
                    out.extend(self.recycled(&dead));
                }
                Item::Node(id) => {
                    let name = ident_of(self.names, id);
                    let (e, dead) = self.node_expr(id);
                    let mutable = if self.g.kind(id) == Kind::Tuple && self.per_call_tuple(id) {
                        quote!(mut)
                    } else {
                        TokenStream::new()
                    };
                    out.extend(quote!(let #mutable #name = #e;));
                    self.locals.insert(id);
                    out.extend(self.recycled(&dead));
                }
            }
        }
        out
    }

    /// `mv_checked` (`sparse_mv_checked`) for the first product with a matrix argument whose
    /// check is deferred.
    fn checked_product(&mut self, id: Id) -> Option<TokenStream> {
        let Node::MatVec([m, x]) = self.g.node(id).clone() else {
            return None;
        };
        if !self.fallible {
            return None;
        }
        let (coef, base, tr) = self.view_tokens(m);
        let what = self.deferred.remove(&base)?;
        let b = self.access(base);
        let xv = self.access(x);
        let f = if self.g.kind(base) == Kind::Sparse {
            quote!(sparse_mv_checked)
        } else {
            quote!(mv_checked)
        };
        Some(quote!(kernels::#f(#coef, #b, #xv, #tr, #what)?))
    }

    fn per_call_tuple(&self, id: Id) -> bool {
        matches!(self.g.node(id), Node::CallVjp(_) | Node::CallJvp(_))
    }

    fn question(&self) -> TokenStream {
        if self.fallible {
            quote!(?)
        } else {
            // Infallible scopes read factorizations from fields (the module stages every
            // fallible term); reaching here is a bug in fold-codegen, reported loudly.
            quote!(; compile_error!("fold-codegen: a factorization was not staged"))
        }
    }
}
