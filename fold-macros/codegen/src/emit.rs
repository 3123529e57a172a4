//! Emission: IR terms to Rust statements calling `::fold_runtime`. Each computed term is
//! one `let`; arrays are passed by reference, scalars by value; matrix operands of
//! products are read through views (no materialized transposes or scaled copies).

use crate::graph::Graph;
use crate::ir::{Kind, Node};
use crate::stage::{is_leaf, peel};
use egg::{Id, Language};
use proc_macro2::{Ident, Literal, Span, TokenStream};
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
    /// Matrix arguments whose finiteness the first full product checks (`mv_checked`):
    /// argument term → its name.
    deferred: HashMap<Id, String>,
    /// Remaining reads of each local while a body is emitted: an owned local read for
    /// the last time is moved (its buffer reused) instead of borrowed.
    remaining: std::cell::RefCell<HashMap<Id, usize>>,
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

/// An `f64` literal (negative values parenthesized).
pub fn lit(v: f64) -> TokenStream {
    let l = Literal::f64_unsuffixed(v.abs());
    if v < 0.0 || (v == 0.0 && v.is_sign_negative()) {
        quote!((-#l))
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
            field_factors: HashSet::new(),
            locals: HashSet::new(),
            local_factors: HashSet::new(),
            ref_locals: HashSet::new(),
            bound: HashSet::new(),
            fallible,
            prims,
            deferred: HashMap::new(),
            remaining: std::cell::RefCell::new(HashMap::new()),
        }
    }

    /// Matrix arguments whose finiteness is checked by their first product here.
    pub fn with_deferred_checks(mut self, deferred: HashMap<Id, String>) -> Self {
        self.deferred = deferred;
        self
    }

    /// The owned local `id` by value, when this is its last read; `None` otherwise.
    fn take(&self, id: Id) -> Option<TokenStream> {
        let owned = self.locals.contains(&id)
            && !self.ref_locals.contains(&id)
            && self.g.kind(id).is_array();
        if owned && self.remaining.borrow().get(&id).copied() == Some(1) {
            let name = ident_of(self.names, id);
            Some(quote!(#name))
        } else {
            None
        }
    }

    /// An owned copy of term `id` (moved when this is its last read).
    pub fn owned(&self, id: Id) -> TokenStream {
        if let Some(v) = self.take(id) {
            // Moved: any further read must copy.
            self.remaining.borrow_mut().insert(id, 0);
            return v;
        }
        let acc = self.access(id);
        if self.g.kind(id) == Kind::Scalar {
            acc
        } else {
            quote!((#acc).clone())
        }
    }

    /// Declares terms and factorizations stored in `self`.
    pub fn with_fields(mut self, fields: &[Id], factors: &[Id]) -> Self {
        self.fields.extend(fields.iter().copied());
        self.field_factors.extend(factors.iter().copied());
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
            quote!(self.#name)
        } else {
            quote!(&self.#name)
        }
    }

    /// The term as a method receiver (no leading `&`: auto-referencing applies).
    pub fn recv(&self, id: Id) -> TokenStream {
        let t = self.access(id);
        let mut it = t.clone().into_iter();
        match it.next() {
            Some(proc_macro2::TokenTree::Punct(p)) if p.as_char() == '&' => it.collect(),
            _ => t,
        }
    }

    fn factor_access(&self, id: Id) -> TokenStream {
        let name = factor_ident(self.names, id);
        if self.local_factors.contains(&id) {
            quote!(#name)
        } else {
            quote!(self.#name)
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
        let body = self.emit_items(&items[..items.len() - 1]);
        let value = self.node_expr(root);
        self.locals.insert(root);
        (body, value)
    }

    /// How often each term is read by `items` and after them (`returns`).
    fn count_reads(&self, items: &[Item], returns: &[Id]) {
        let mut rem = self.remaining.borrow_mut();
        rem.clear();
        for item in items {
            if let Item::Node(id) = item {
                for op in self.operands(*id) {
                    if let Item::Node(c) = op {
                        *rem.entry(c).or_insert(0) += 1;
                    }
                }
            }
        }
        for r in returns {
            *rem.entry(*r).or_insert(0) += 1;
        }
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
                }
                Item::Node(id) => {
                    let name = ident_of(self.names, id);
                    let e = self.node_expr(id);
                    let mutable = if self.g.kind(id) == Kind::Tuple && self.per_call_tuple(id) {
                        quote!(mut)
                    } else {
                        TokenStream::new()
                    };
                    out.extend(quote!(let #mutable #name = #e;));
                    self.locals.insert(id);
                }
            }
        }
        out
    }

    /// The expression computing `id`, its operands' reads counted off.
    fn node_expr(&mut self, id: Id) -> TokenStream {
        let e = match self.checked_product(id) {
            Some(e) => e,
            None => self.expr(id),
        };
        let ops = self.operands(id);
        let mut rem = self.remaining.borrow_mut();
        for op in ops {
            if let Item::Node(c) = op {
                if let Some(k) = rem.get_mut(&c) {
                    *k = k.saturating_sub(1);
                }
            }
        }
        e
    }

    /// `mv_checked` for the first product with a matrix argument whose check is deferred.
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
        Some(quote!(kernels::mv_checked(#coef, #b, #xv, #tr, #what)?))
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

    /// An operand of a product: its view's coefficient tokens, base access, transposition.
    fn view_tokens(&self, x: Id) -> (TokenStream, Id, bool) {
        let v = peel(self.g, x, &|y| self.preset(y));
        let cs: Vec<TokenStream> = v.coef.iter().map(|c| self.access(*c)).collect();
        let coef = match cs.len() {
            0 => quote!(1.0),
            1 => cs[0].clone(),
            _ => product(&cs),
        };
        let coef = if v.negated { quote!(-#coef) } else { coef };
        (coef, v.base, v.transposed)
    }

    /// The expression computing term `id` from available operands.
    pub fn expr(&self, id: Id) -> TokenStream {
        let g = self.g;
        let node = g.node(id).clone();
        let ch = node.children().to_vec();
        let a = |k: usize| self.access(ch[k]);
        let r = |k: usize| self.recv(ch[k]);
        let scalar = self.is_scalar(id);
        let ops = quote!(::fold_runtime::ops);
        let unary = |f: &str| {
            let fi = Ident::new(f, Span::call_site());
            if scalar {
                let x = r(0);
                quote!(#x.#fi())
            } else {
                let x = a(0);
                quote!(#ops::#fi(#x))
            }
        };
        let mask = |f: &str, rest: &[TokenStream]| {
            let fi = Ident::new(f, Span::call_site());
            let x = a(0);
            let x = if scalar { quote!(&#x) } else { x };
            quote!(#ops::mask::#fi(#x #(, #rest)*))
        };
        let q = if self.fallible {
            quote!(?)
        } else {
            TokenStream::new()
        };
        // Masks of primitives with a domain (clamp's `lo ≤ hi`, soft_threshold's `t ≥ 0`):
        // checked wherever they are staged, so `backward` refuses what `solve` refuses.
        let checked_mask = |f: &str, rest: &[TokenStream]| {
            if self.fallible {
                let fi = Ident::new(f, Span::call_site());
                let x = a(0);
                let x = if scalar { quote!(&#x) } else { x };
                quote!(#ops::domain::#fi(#x #(, #rest)*)?)
            } else {
                mask(f, rest)
            }
        };
        if let Some((v, base, set)) = self.gather_view(id) {
            let cs: Vec<TokenStream> = v.coef.iter().map(|c| self.access(*c)).collect();
            let coef = match cs.len() {
                0 => quote!(1.0),
                _ => product(&cs),
            };
            let coef = if v.negated { quote!(-#coef) } else { coef };
            let (b, st, tr) = (self.access(base), self.access(set), v.transposed);
            return quote!(kernels::gather_sub_view(#coef, #b, #st, #tr));
        }
        if let Some((other, diag)) = self.plus_diagonal(id) {
            let m = self.owned(other);
            return match diag {
                Some(d) => {
                    let d = self.access(d);
                    quote!(kernels::plus_diag(#m, #d))
                }
                None => quote!(kernels::plus_identity(#m, 1.0)),
            };
        }
        let arr = |k: usize| self.take(ch[k]).unwrap_or_else(|| self.access(ch[k]));
        match node {
            Node::Num(l) => lit(l.get()),
            Node::Var(_) | Node::Zero => quote!(()),
            Node::Add([l, rr]) => match self.negated(rr) {
                Some(inner) => {
                    let x = self.take(l).unwrap_or_else(|| self.access(l));
                    let y = self.access(inner);
                    quote!(#x - #y)
                }
                None => match (self.take(l), self.take(rr)) {
                    (Some(x), _) => {
                        let y = a(1);
                        quote!(#x + #y)
                    }
                    (None, Some(y)) => {
                        let x = a(0);
                        quote!(#y + #x)
                    }
                    _ => {
                        let (x, y) = (a(0), a(1));
                        quote!(#x + #y)
                    }
                },
            },
            Node::Neg(_) => {
                let x = arr(0);
                quote!(-#x)
            }
            Node::Mul(_) => {
                if scalar {
                    let (s, x) = (a(0), a(1));
                    quote!(#s * #x)
                } else {
                    let (s, x) = (a(0), arr(1));
                    quote!(#x * #s)
                }
            }
            Node::Div(_) => {
                let (x, s) = (arr(0), a(1));
                quote!(#x / #s)
            }
            Node::MatVec([m, x]) => {
                let (coef, base, tr) = self.view_tokens(m);
                let b = self.access(base);
                let xv = self.access(x);
                let f = match (g.kind(base) == Kind::Sparse, tr) {
                    (false, false) => quote!(mv),
                    (false, true) => quote!(mtv),
                    (true, false) => quote!(sparse_mv),
                    (true, true) => quote!(sparse_mtv),
                };
                quote!(kernels::#f(#coef, #b, #xv))
            }
            Node::MatMul([l, r]) => {
                let (cl, bl, tl) = self.view_tokens(l);
                let (cr, br, tr) = self.view_tokens(r);
                let trivial = |c: &TokenStream| c.to_string() == "1.0";
                let coef = match (trivial(&cl), trivial(&cr)) {
                    (true, true) => quote!(1.0),
                    (true, false) => cr.clone(),
                    (false, true) => cl.clone(),
                    (false, false) => quote!(#cl * #cr),
                };
                let scaled = |e: TokenStream| {
                    if trivial(&coef) {
                        e
                    } else {
                        quote!(#e * (#coef))
                    }
                };
                // A diagonal factor scales rows or columns of the other (read transposed
                // when its view is).
                let dense = |base: Id, transposed: bool| {
                    let m = self.access(base);
                    if transposed {
                        quote!(&(#m).transpose())
                    } else {
                        m
                    }
                };
                match (g.node(bl), g.node(br)) {
                    (Node::Diag(d), Node::Diag(e)) if !self.preset(bl) && !self.preset(br) => {
                        let (d, e) = (self.access(*d), self.access(*e));
                        scaled(quote!(DMatrix::from_diagonal(&(#d).component_mul(#e))))
                    }
                    (Node::Diag(d), _) if !self.preset(bl) => {
                        let (d, m) = (self.access(*d), dense(br, tr));
                        scaled(quote!(kernels::scale_rows(#d, #m)))
                    }
                    (_, Node::Diag(d)) if !self.preset(br) => {
                        let (d, m) = (self.access(*d), dense(bl, tl));
                        scaled(quote!(kernels::scale_cols(#m, #d)))
                    }
                    _ => {
                        let (x, y) = (self.access(bl), self.access(br));
                        quote!(kernels::mm(#coef, #x, #tl, #y, #tr))
                    }
                }
            }
            Node::Transpose(_) => {
                let x = r(0);
                quote!(#x.transpose())
            }
            Node::Outer(_) => {
                let (x, y) = (a(0), r(1));
                quote!(#x * #y.transpose())
            }
            Node::Dot(_) => {
                if scalar && self.is_scalar(ch[0]) {
                    let (x, y) = (a(0), a(1));
                    quote!(#x * #y)
                } else {
                    let (x, y) = (r(0), a(1));
                    quote!(#x.dot(#y))
                }
            }
            Node::Sum(_) | Node::Norm(_) | Node::NormSq(_) => {
                let x = r(0);
                let f = match node {
                    Node::Sum(_) => quote!(sum),
                    Node::Norm(_) => quote!(norm),
                    _ => quote!(norm_squared),
                };
                quote!(#x.#f())
            }
            Node::CMul(_) | Node::CDiv(_) => {
                let (x, y) = if self.is_scalar(ch[0]) {
                    (a(0), a(1))
                } else {
                    (r(0), a(1))
                };
                let div = matches!(node, Node::CDiv(_));
                match (self.is_scalar(ch[0]), div) {
                    (true, false) => quote!(#x * #y),
                    (true, true) => quote!(#x / #y),
                    (false, false) => quote!(#x.component_mul(#y)),
                    (false, true) => quote!(#x.component_div(#y)),
                }
            }
            Node::AddS(_) => {
                let (x, s) = (r(0), a(1));
                if scalar {
                    quote!(#x + #s)
                } else {
                    quote!(#x.add_scalar(#s))
                }
            }
            Node::Recip(_) => {
                let x = r(0);
                if scalar {
                    quote!(1.0 / #x)
                } else {
                    quote!(#x.map(|e| 1.0 / e))
                }
            }
            Node::Exp(_) => unary("exp"),
            Node::Ln(_) => unary("ln"),
            Node::Sin(_) => unary("sin"),
            Node::Cos(_) => unary("cos"),
            Node::Tanh(_) => unary("tanh"),
            Node::Sqrt(_) => unary("sqrt"),
            Node::Abs(_) => unary("abs"),
            Node::Sigmoid(_) | Node::Softplus(_) | Node::Relu(_) | Node::SafeRecip(_) => {
                let x = a(0);
                let f = match node {
                    Node::Sigmoid(_) => "sigmoid",
                    Node::Softplus(_) => "softplus",
                    Node::SafeRecip(_) => "recip0",
                    _ => "relu",
                };
                let fi = Ident::new(f, Span::call_site());
                if scalar {
                    quote!(#ops::#fi(&#x))
                } else {
                    quote!(#ops::#fi(#x))
                }
            }
            Node::Sign(_) => mask("sign", &[]),
            Node::Powi(_) => {
                let x = r(0);
                let k = Literal::i32_unsuffixed(g.lit(ch[1]).unwrap_or(1.0) as i32);
                if scalar {
                    quote!(#x.powi(#k))
                } else {
                    quote!(#x.map(|e| e.powi(#k)))
                }
            }
            Node::Powf(_) => {
                let (x, c) = (r(0), a(1));
                if scalar {
                    quote!(#x.powf(#c))
                } else {
                    quote!({ let p = #c; #x.map(|e| e.powf(p)) })
                }
            }
            Node::Max(_) | Node::Min(_) => {
                let (x, s) = (a(0), a(1));
                let f = if matches!(node, Node::Max(_)) {
                    quote!(max)
                } else {
                    quote!(min)
                };
                if scalar {
                    let x = r(0);
                    quote!(#x.#f(#s))
                } else {
                    quote!(#ops::#f(#x, #s))
                }
            }
            Node::Clamp(_) => {
                let (x, lo, hi) = (a(0), a(1), a(2));
                if self.fallible {
                    let x = if scalar { quote!(&#x) } else { x };
                    quote!(#ops::domain::clamp(#x, #lo, #hi)?)
                } else if scalar {
                    let x = r(0);
                    quote!(#x.max(#lo).min(#hi))
                } else {
                    quote!(#ops::clamp(#x, #lo, #hi))
                }
            }
            Node::SoftThreshold(_) => {
                let (x, t) = (a(0), a(1));
                let x = if scalar { quote!(&#x) } else { x };
                if self.fallible {
                    quote!(#ops::domain::soft_threshold(#x, #t)?)
                } else {
                    quote!(#ops::soft_threshold(#x, #t))
                }
            }
            Node::Softmax(_) => {
                let x = a(0);
                quote!(#ops::softmax(#x))
            }
            Node::LogSumExp(_) => {
                let x = a(0);
                quote!(#ops::log_sum_exp(#x))
            }
            Node::ProjSimplex(_) | Node::ProjCappedSimplex(_) | Node::ProjL2Ball(_) => {
                let (v, r) = (a(0), a(1));
                let f = match node {
                    Node::ProjSimplex(_) => quote!(try_proj_simplex),
                    Node::ProjCappedSimplex(_) => quote!(try_proj_capped_simplex),
                    _ => quote!(try_proj_l2_ball),
                };
                quote!(#ops::#f(#v, #r) #q)
            }
            Node::Solve([m, r]) | Node::SolveT([m, r]) => {
                let v = peel(g, m, &|_| false);
                let f = self.factor_access(v.base);
                let rhs = self.access(r);
                let transposed = v.transposed != matches!(g.node(id), Node::SolveT(_));
                let solve = match (transposed, self.is_scalar(r) || g.kind(r) == Kind::Vector) {
                    (false, true) => quote!(#f.solve(#rhs)),
                    (true, true) => quote!(#f.solve_transpose(#rhs)),
                    (false, false) => {
                        quote!(kernels::lu_solve_columns(&#f, #rhs, false))
                    }
                    (true, false) => {
                        quote!(kernels::lu_solve_columns(&#f, #rhs, true))
                    }
                };
                if v.coef.is_empty() && !v.negated {
                    solve
                } else {
                    // (c M)⁻¹ r = M⁻¹ r / c.
                    let mut c: Vec<TokenStream> = v.coef.iter().map(|c| self.access(*c)).collect();
                    if v.negated {
                        c.push(quote!((-1.0)));
                    }
                    let p = product(&c);
                    quote!(#solve / #p)
                }
            }
            Node::MaskIn(_) => checked_mask("between", &[a(1), a(2)]),
            Node::Gt(_) => mask("greater", &[a(1)]),
            Node::Lt(_) => mask("less", &[a(1)]),
            Node::Ge(_) => mask("at_least", &[a(1)]),
            Node::Le(_) => mask("at_most", &[a(1)]),
            Node::Outside(_) => checked_mask("outside", &[a(1)]),
            Node::Ones(_) => {
                let x = r(0);
                if scalar {
                    quote!(1.0)
                } else {
                    quote!(#x.map(|_| 1.0))
                }
            }
            Node::Eye(_) => {
                let x = a(0);
                quote!(kernels::eye_like(#x))
            }
            Node::Diag(_) => {
                let x = a(0);
                quote!(DMatrix::from_diagonal(#x))
            }
            Node::Diagonal(_) => {
                let x = a(0);
                quote!(#x.diagonal())
            }
            Node::ColumnSum(m) => match self.transposed_view(m) {
                // Column totals read the matrix itself, never a transposed copy.
                Some(b) => {
                    let x = self.recv(b);
                    quote!(#x.row_sum_tr())
                }
                None => {
                    let x = r(0);
                    quote!(#x.column_sum())
                }
            },
            Node::MaxEntry(_) | Node::MinEntry(_) | Node::ArgMax(_) | Node::ArgMin(_) => {
                let x = a(0);
                let f = match node {
                    Node::MaxEntry(_) => quote!(max_entry),
                    Node::MinEntry(_) => quote!(min_entry),
                    Node::ArgMax(_) => quote!(argmax_indicator),
                    _ => quote!(argmin_indicator),
                };
                quote!(#ops::#f(#x))
            }
            Node::Select(_) => {
                let (c, x, y) = (a(0), a(1), a(2));
                if scalar {
                    quote!(if #c != 0.0 { #x } else { #y })
                } else {
                    quote!(if #c != 0.0 { (#x).clone() } else { (#y).clone() })
                }
            }
            Node::Support(_) => {
                let x = a(0);
                quote!(#ops::mask::support(#x))
            }
            Node::Card(_) => {
                let s = r(0);
                quote!(#s.len() as f64)
            }
            Node::GatherV(_) | Node::GatherM(_) | Node::GatherRows(_) | Node::GatherCols(_) => {
                let (x, s) = (a(0), a(1));
                let f = match node {
                    Node::GatherV(_) => quote!(gather),
                    Node::GatherM(_) => quote!(gather_sub),
                    Node::GatherRows(_) => quote!(gather_rows),
                    _ => quote!(gather_cols),
                };
                quote!(kernels::#f(#x, #s))
            }
            Node::Scatter(_) => {
                let (x, s, like) = (a(0), a(1), r(2));
                quote!(kernels::scatter(#x, #s, #like.len()))
            }
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
                let cots: Vec<TokenStream> = ch[1..]
                    .iter()
                    .map(|c| {
                        if g.kind(*c) == Kind::Zero {
                            quote!(None)
                        } else {
                            let v = self.arg_value(*c);
                            quote!(Some(#v))
                        }
                    })
                    .collect();
                let wanted = self.wanted(id);
                quote!(::fold_runtime::PrimitiveLinearization::vjp(#lin, &[#(#cots),*], &[#(#wanted),*]))
            }
            Node::CallJvp(ch) => {
                let lin = self.access(ch[0]);
                let tans: Vec<TokenStream> = ch[1..]
                    .iter()
                    .map(|c| {
                        if g.kind(*c) == Kind::Zero {
                            quote!(None)
                        } else {
                            let v = self.arg_value(*c);
                            quote!(Some(#v))
                        }
                    })
                    .collect();
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
        }
    }

    /// `Arg::…(x)` for a primitive call.
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
