//! Lowering: the function body (`syn`) to typed IR terms, checking kinds and recording
//! dimension constraints. Every rejection carries the offending code's span and says
//! what is supported instead.

use crate::errors::{did_you_mean, suggestion, Errors};
use crate::graph::{Graph, VarInfo};
use crate::ir::{Kind, Node};
use crate::signature::Signature;
use egg::{Id, Symbol};
use proc_macro2::Span;
use quote::ToTokens;
use std::collections::HashMap;
use syn::spanned::Spanned;
use syn::{BinOp, Block, Expr, ExprLit, ItemFn, Lit, Pat, Stmt, UnOp};

/// The rule as IR: one output term per state block.
pub struct Lowered {
    /// The terms.
    pub graph: Graph,
    /// Output term of each state block.
    pub outputs: Vec<Id>,
    /// Symbol of each argument, in order.
    pub arg_symbols: Vec<Symbol>,
}

#[derive(Clone, Debug)]
enum Val {
    Term(Id),
    /// A transposed vector: only valid as the right factor of an outer product.
    Row(Id),
    Tuple(Vec<Val>),
}

const STRAIGHT_LINE: &str = "the body of a #[fold] function is straight-line code: `let` bindings and a tail expression over scalars, vectors and matrices";

/// A scope: names bound to values; `None` marks a name whose `let` failed to lower, so
/// that its uses do not repeat the error as "cannot find".
type Scope = HashMap<String, Option<Val>>;

/// Lowers the body of `item`; errors go to `errors`.
pub fn lower(sig: &Signature, item: &ItemFn, errors: &mut Errors) -> Option<Lowered> {
    let mut vars = HashMap::new();
    let mut arg_symbols = Vec::new();
    let mut scope = HashMap::new();
    for a in &sig.args {
        let sym = Symbol::from(a.name.to_string());
        vars.insert(
            sym,
            VarInfo {
                kind: a.kind,
                role: a.role.clone(),
            },
        );
        arg_symbols.push(sym);
    }
    let mut lw = Lowerer {
        sig,
        g: Graph::new(vars),
        scopes: Vec::new(),
        errors,
        elementwise: None,
        map_scope: 0,
    };
    for (i, sym) in arg_symbols.iter().enumerate() {
        let id = lw.g.var(*sym);
        scope.insert(sig.args[i].name.to_string(), Some(Val::Term(id)));
    }
    lw.scopes.push(scope);
    let tail = lw.block(&item.block)?;
    let outputs = lw.outputs(tail, item)?;
    Some(Lowered {
        graph: lw.g,
        outputs,
        arg_symbols,
    })
}

struct Lowerer<'a> {
    sig: &'a Signature,
    g: Graph,
    scopes: Vec<Scope>,
    errors: &'a mut Errors,
    /// Inside `.map(|e| …)`: the mapped array, whose scalar operations broadcast.
    elementwise: Option<Id>,
    /// Inside `.map`: the index in `scopes` of the closure's scope. Names bound there or
    /// deeper are entries (broadcast arrays); names from outside must be scalars.
    map_scope: usize,
}

/// "a scalar (f64) or a vector (DVector<f64>)".
fn kind_list(kinds: &[Kind]) -> String {
    kinds
        .iter()
        .map(|k| k.describe())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// "vector or matrix", for argument lists.
fn kind_word(kinds: &[Kind]) -> &'static str {
    match kinds {
        [Kind::Scalar] => "scalar",
        [Kind::Vector] => "vector",
        [Kind::Matrix] => "matrix",
        [Kind::Vector, Kind::Matrix] => "vector or matrix",
        _ => "scalar, vector or matrix",
    }
}

impl Lowerer<'_> {
    fn err<T>(&mut self, span: Span, msg: impl std::fmt::Display) -> Option<T> {
        self.errors.push(span, msg);
        None
    }

    /// An error underlining all of `tokens` (a whole expression, not only its first token).
    fn err_at<T>(&mut self, tokens: impl ToTokens, msg: impl std::fmt::Display) -> Option<T> {
        self.errors.push_spanned(tokens, msg);
        None
    }

    fn kind(&self, id: Id) -> Kind {
        self.g.kind(id)
    }

    fn scalar(&mut self, value: f64) -> Id {
        self.g.num(value)
    }

    fn outputs(&mut self, tail: Val, item: &ItemFn) -> Option<Vec<Id>> {
        // The tail expression (seen through parentheses), for spans.
        let mut tail_expr = match item.block.stmts.last() {
            Some(Stmt::Expr(e, None)) => e,
            _ => return self.err_at(&item.block, "the body must end with the next state"),
        };
        while let Expr::Paren(p) = tail_expr {
            tail_expr = &p.expr;
        }
        let nblocks = self.sig.blocks.len();
        let names: Vec<String> = self
            .sig
            .blocks
            .iter()
            .map(|&i| self.sig.args[i].name.to_string())
            .collect();
        let vals = if self.sig.block_state {
            let state = format!("state = ({})", names.join(", "));
            match tail {
                Val::Tuple(v) if v.len() == nblocks => v,
                Val::Tuple(v) => {
                    return self.err_at(
                        tail_expr,
                        format!(
                            "the body returns {} blocks but the state has {nblocks} (`{state}`): return one vector per state block, in that order",
                            v.len()
                        ),
                    )
                }
                _ => {
                    return self.err_at(
                        tail_expr,
                        format!("with block state `{state}` the body must return a tuple of {nblocks} vectors, one per state block, in that order"),
                    )
                }
            }
        } else {
            vec![tail]
        };
        let elems: Option<Vec<&Expr>> = match tail_expr {
            Expr::Tuple(t) if self.sig.block_state => Some(t.elems.iter().collect()),
            _ => None,
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (b, v) in vals.into_iter().enumerate() {
            let at: &Expr = elems
                .as_ref()
                .and_then(|e| e.get(b).copied())
                .unwrap_or(tail_expr);
            let block = if self.sig.block_state {
                format!(
                    "the next value of the state block `{}`",
                    names.get(b).map_or("?", String::as_str)
                )
            } else {
                "the next state".to_string()
            };
            let want = self
                .sig
                .blocks
                .get(b)
                .map_or(Kind::Vector, |&i| self.sig.args[i].kind);
            let found = match v {
                Val::Term(id) if self.kind(id) == want => {
                    out.push(id);
                    continue;
                }
                Val::Term(id) => self.kind(id).describe().to_string(),
                Val::Row(_) => "a transposed vector".to_string(),
                Val::Tuple(_) if !self.sig.block_state => {
                    "a tuple; for several state vectors declare block state `state = (x, z, …)`"
                        .to_string()
                }
                Val::Tuple(_) => "a tuple".to_string(),
            };
            self.errors.push_spanned(
                at,
                format!(
                    "the rule must return {block}, {}; this is {found}",
                    want.describe()
                ),
            );
            ok = false;
        }
        ok.then_some(out)
    }

    /// Whether `name` is bound (or poisoned) in some enclosing scope.
    fn is_bound(&self, name: &str) -> bool {
        self.scopes.iter().any(|s| s.contains_key(name))
    }

    fn lookup(&mut self, name: &str, span: Span) -> Option<Val> {
        let found = self
            .scopes
            .iter()
            .enumerate()
            .rev()
            .find_map(|(depth, s)| s.get(name).map(|v| (depth, v.clone())));
        let captured = found
            .as_ref()
            .is_some_and(|(depth, _)| self.elementwise.is_some() && *depth < self.map_scope);
        match found.map(|(_, v)| v) {
            Some(Some(Val::Term(id))) if captured && self.kind(id) != Kind::Scalar => self.err(
                span,
                format!(
                    "inside `.map(|e| …)` only scalars may be captured, and `{name}` is {}; compute the scalar you need before the closure (`let s = {name}.sum();`) and capture that",
                    self.kind(id).describe()
                ),
            ),
            Some(Some(Val::Tuple(_) | Val::Row(_))) if captured => self.err(
                span,
                format!("inside `.map(|e| …)` only scalars may be captured, and `{name}` is not a scalar"),
            ),
            Some(Some(v)) => Some(v),
            // Its `let` failed and was reported.
            Some(None) => None,
            None => {
                let names: Vec<String> = self.scopes.iter().flat_map(|s| s.keys().cloned()).collect();
                let hint = suggestion(name, names.iter().map(String::as_str));
                self.err(
                    span,
                    format!("cannot find `{name}`{hint}: a #[fold] body may use the function's arguments and its own `let` bindings"),
                )
            }
        }
    }

    /// Marks every name bound by `pat` as failed (see [`Scope`]).
    fn poison(&mut self, pat: &Pat) {
        match pat {
            Pat::Ident(p) => {
                if let Some(s) = self.scopes.last_mut() {
                    s.insert(p.ident.to_string(), None);
                }
            }
            Pat::Type(pt) => self.poison(&pt.pat),
            Pat::Tuple(t) => t.elems.iter().for_each(|p| self.poison(p)),
            Pat::Paren(p) => self.poison(&p.pat),
            _ => {}
        }
    }

    fn block(&mut self, block: &Block) -> Option<Val> {
        self.scopes.push(Scope::new());
        let result = self.block_inner(block);
        self.scopes.pop();
        result
    }

    fn block_inner(&mut self, block: &Block) -> Option<Val> {
        let n = block.stmts.len();
        let mut tail = None;
        let mut ok = true;
        for (i, stmt) in block.stmts.iter().enumerate() {
            let last = i + 1 == n;
            match stmt {
                Stmt::Local(local) => {
                    let Some(init) = &local.init else {
                        self.errors.push_spanned(
                            local,
                            "every `let` needs a value (`let name = expr;`): bindings are immutable and computed once",
                        );
                        self.poison(&local.pat);
                        ok = false;
                        continue;
                    };
                    if let Some((else_token, _)) = &init.diverge {
                        self.errors.push(
                            else_token.span,
                            format!("`let … else` is not supported; {STRAIGHT_LINE}"),
                        );
                        self.poison(&local.pat);
                        ok = false;
                        continue;
                    }
                    let bound = match self.expr(&init.expr) {
                        Some(v) => self.bind(&local.pat, v),
                        None => false,
                    };
                    if !bound {
                        self.poison(&local.pat);
                        ok = false;
                    }
                }
                Stmt::Expr(e, None) if last => {
                    tail = self.expr(e);
                    ok &= tail.is_some();
                }
                Stmt::Expr(e, semi) => {
                    if let Some((tokens, msg)) = construct_error(e) {
                        self.errors.push_spanned(tokens, msg);
                    } else if let (true, Some(semi)) = (last, semi) {
                        self.errors.push(
                            semi.span,
                            "remove this `;`: the last expression of the body, without a semicolon, is the next state",
                        );
                    } else {
                        self.errors.push_spanned(
                            e,
                            format!("an expression statement has no effect here; {STRAIGHT_LINE}"),
                        );
                    }
                    ok = false;
                }
                Stmt::Item(it) => {
                    self.errors.push_spanned(
                        it,
                        format!("items (functions, `use`, constants, …) inside the body are not supported; define them outside the function ({STRAIGHT_LINE})"),
                    );
                    ok = false;
                }
                Stmt::Macro(m) => {
                    self.errors.push_spanned(
                        &m.mac,
                        format!("macros are not supported in a #[fold] body; {STRAIGHT_LINE}"),
                    );
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        if tail.is_none() {
            return match block.stmts.last() {
                Some(last) => self.err_at(
                    last,
                    "the body must end with a tail expression (no `;`): the next state",
                ),
                None => self.err_at(
                    block,
                    "the body is empty: it must end with a tail expression, the next state (e.g. `x - grad * alpha`)",
                ),
            };
        }
        tail
    }

    fn bind(&mut self, pat: &Pat, v: Val) -> bool {
        match pat {
            Pat::Ident(p) if p.subpat.is_none() && p.by_ref.is_none() => {
                let name = p.ident.to_string();
                if let Val::Term(id) = v {
                    if !matches!(self.g.node(id), Node::Var(_) | Node::Num(_)) {
                        self.g.names.entry(id).or_insert_with(|| name.clone());
                    }
                }
                if let Some(s) = self.scopes.last_mut() {
                    s.insert(name, Some(v));
                }
                true
            }
            Pat::Type(pt) => self.bind(&pt.pat, v),
            Pat::Wild(_) => true,
            Pat::Tuple(t) => match v {
                Val::Tuple(items) if items.len() == t.elems.len() => {
                    let mut ok = true;
                    for (p, item) in t.elems.iter().zip(items) {
                        ok &= self.bind(p, item);
                    }
                    ok
                }
                Val::Tuple(items) => {
                    self.errors.push_spanned(
                        t,
                        format!(
                            "this pattern binds {} names but the value has {} outputs",
                            t.elems.len(),
                            items.len()
                        ),
                    );
                    false
                }
                _ => {
                    self.errors
                        .push_spanned(t, "this value is not a tuple; bind it to a single name");
                    false
                }
            },
            other => {
                self.errors.push_spanned(
                    other,
                    "`let` patterns must be a name, `_` or a tuple of names",
                );
                false
            }
        }
    }

    fn term(&mut self, e: &Expr) -> Option<Id> {
        match self.expr(e)? {
            Val::Term(id) => Some(id),
            Val::Row(_) => self.err_at(
                e,
                "a transposed vector is only supported as the right factor of an outer product `a * b.transpose()`; use `a.dot(&b)` for inner products",
            ),
            Val::Tuple(_) => self.err_at(e, "a tuple cannot be used as a value here; destructure it with `let (a, b, …) = …`"),
        }
    }

    fn expr(&mut self, e: &Expr) -> Option<Val> {
        match e {
            Expr::Paren(p) => self.expr(&p.expr),
            Expr::Group(g) => self.expr(&g.expr),
            Expr::Reference(r) => {
                if let Some(m) = &r.mutability {
                    return self.err(
                        m.span(),
                        "`&mut` is not supported in a #[fold] body: values are immutable; use a shared reference `&`",
                    );
                }
                self.expr(&r.expr)
            }
            Expr::Block(b) if b.label.is_none() && b.attrs.is_empty() => self.block(&b.block),
            Expr::Lit(ExprLit { lit, .. }) => self.literal(lit),
            Expr::Path(p) if p.qself.is_none() && p.path.get_ident().is_some() => {
                let ident = p.path.get_ident()?;
                self.lookup(&ident.to_string(), ident.span())
            }
            Expr::Path(p) => self.err_at(
                p,
                "paths are not supported as values: use the function's arguments and `let` bindings; write constants as literals or pass them as f64 arguments",
            ),
            Expr::Tuple(t) => {
                // Lower every element, so that each one's errors are reported.
                let items: Vec<Option<Id>> = t.elems.iter().map(|el| self.term(el)).collect();
                let items: Vec<Id> = items.into_iter().collect::<Option<_>>()?;
                Some(Val::Tuple(items.into_iter().map(Val::Term).collect()))
            }
            Expr::Unary(u) => {
                let inner = self.term(&u.expr)?;
                match u.op {
                    UnOp::Neg(_) => {
                        if self.kind(inner) == Kind::Sparse {
                            return self.sparse_error(u);
                        }
                        Some(Val::Term(self.g.neg(inner)))
                    }
                    UnOp::Deref(_) => Some(Val::Term(inner)),
                    _ => self.err_at(
                        u.op,
                        "only unary `-` (and `*` dereference) is supported: logical negation has no derivative",
                    ),
                }
            }
            Expr::Binary(b) => self.binary(b),
            Expr::MethodCall(m) => self.method(m),
            Expr::Call(c) => self.call(c),
            other => {
                let (tokens, msg) = construct_error(other).unwrap_or_else(|| {
                    (
                        other.to_token_stream(),
                        format!("this expression is not supported; {STRAIGHT_LINE}"),
                    )
                });
                self.err_at(tokens, msg)
            }
        }
    }

    fn literal(&mut self, lit: &Lit) -> Option<Val> {
        let (parsed, suffix) = match lit {
            Lit::Float(f) => (f.base10_parse::<f64>(), f.suffix()),
            Lit::Int(i) => (i.base10_parse::<f64>(), i.suffix()),
            other => {
                return self.err_at(
                    other,
                    "only numeric literals are supported: every value of a #[fold] rule is f64",
                )
            }
        };
        if let Lit::Int(i) = lit {
            if suffix.is_empty() {
                return self.err_at(
                    lit,
                    format!("`{i}` is an integer literal, which Rust does not convert to f64; write `{i}.0`"),
                );
            }
        }
        if !matches!(suffix, "" | "f64") {
            return self.err_at(
                lit,
                format!("the suffix `{suffix}` is not supported: every number in a #[fold] rule is f64; write `1.0` or `1.0f64`"),
            );
        }
        match parsed {
            Ok(v) if v.is_finite() => Some(Val::Term(self.scalar(v))),
            Ok(_) => self.err_at(lit, "this literal overflows f64; numbers must be finite"),
            Err(err) => {
                self.errors.add(err);
                None
            }
        }
    }

    fn binary(&mut self, b: &syn::ExprBinary) -> Option<Val> {
        if let Some((tokens, msg)) = construct_error(&Expr::Binary(b.clone())) {
            return self.err_at(tokens, msg);
        }
        let (l, r) = (self.expr(&b.left), self.expr(&b.right));
        let (l, r) = (l?, r?);
        match b.op {
            BinOp::Add(_) | BinOp::Sub(_) => {
                let sub = matches!(b.op, BinOp::Sub(_));
                let (Val::Term(x), Val::Term(y)) = (l, r) else {
                    return self.err_at(b, format!("`{}` applies to scalars, vectors and matrices of the same kind, not to transposed vectors (rows such as `m.row_sum()`: `.transpose()` them back to vectors) or tuples", if sub { "-" } else { "+" }));
                };
                self.add_sub(x, y, sub, b).map(Val::Term)
            }
            BinOp::Mul(_) => self.mul(l, r, b),
            BinOp::Div(_) => {
                let (Val::Term(x), Val::Term(y)) = (l, r) else {
                    return self.err_at(b, "`/` divides a scalar, vector or matrix by a scalar");
                };
                self.div(x, y, b).map(Val::Term)
            }
            BinOp::Rem(_) => self.err_at(b, "`%` is not supported: the remainder has no useful derivative; supported operators: `+ - * /` and unary `-`"),
            BinOp::Eq(_) | BinOp::Ne(_) | BinOp::Lt(_) | BinOp::Le(_) | BinOp::Gt(_) | BinOp::Ge(_) => self.err_at(
                b,
                "comparisons are not supported: a #[fold] rule has no branches; express kinks with `max`, `min`, `clamp`, `relu` or a projection such as `proj_box`",
            ),
            _ => self.err_at(b, "logic and bit operations are not supported; supported operators: `+ - * /` and unary `-` with nalgebra's meaning"),
        }
    }

    fn sparse_error<T>(&mut self, at: impl ToTokens) -> Option<T> {
        self.err_at(
            at,
            "sparse matrices are only supported in products `d * x` and `d.transpose() * y` with a vector: they are constants",
        )
    }

    fn add_sub(&mut self, a: Id, b: Id, sub: bool, at: &syn::ExprBinary) -> Option<Id> {
        let (ka, kb) = (self.kind(a), self.kind(b));
        if ka == Kind::Sparse || kb == Kind::Sparse {
            return self.sparse_error(at);
        }
        if ka == kb {
            return Some(if sub {
                self.g.sub(a, b)
            } else {
                self.g.sum2(a, b)
            });
        }
        if self.elementwise.is_some() {
            // Inside `.map`, a scalar broadcasts over the mapped array.
            let (arr, s) = if ka == Kind::Scalar {
                (if sub { self.g.neg(b) } else { b }, a)
            } else {
                (a, if sub { self.g.neg(b) } else { b })
            };
            return Some(self.g.add(Node::AddS([arr, s])));
        }
        let hint = match (ka, kb) {
            (Kind::Scalar, _) if sub => "nalgebra has no broadcasting `-`: use `(-v).add_scalar(s)` to subtract every entry from a scalar",
            (_, Kind::Scalar) if sub => "nalgebra has no broadcasting `-`: use `v.add_scalar(-s)` to subtract a scalar from every entry",
            (Kind::Scalar, _) | (_, Kind::Scalar) => "nalgebra has no broadcasting `+`: use `v.add_scalar(s)` to add a scalar to every entry",
            _ => "`+` and `-` need operands of the same kind: scalar and scalar, vector and vector, or matrix and matrix",
        };
        let (x, y) = if sub { (kb, ka) } else { (ka, kb) };
        let what = if sub {
            format!("cannot subtract {} from {}", x.describe(), y.describe())
        } else {
            format!("cannot add {} and {}", x.describe(), y.describe())
        };
        self.err_at(at, format!("{what}; {hint}"))
    }

    fn mul(&mut self, l: Val, r: Val, at: &syn::ExprBinary) -> Option<Val> {
        const ROW: &str = "a transposed vector is only supported as the right factor of an outer product `a * b.transpose()` of two vectors; use `a.dot(&b)` for an inner product, or `m.transpose() * a` for a product with a matrix";
        match (l, r) {
            (Val::Term(a), Val::Row(b)) if self.kind(a) == Kind::Vector => {
                Some(Val::Term(self.g.add(Node::Outer([a, b]))))
            }
            (Val::Row(_), _) | (_, Val::Row(_)) => self.err_at(at, ROW),
            (Val::Term(a), Val::Term(b)) => {
                let (ka, kb) = (self.kind(a), self.kind(b));
                let ew = self.elementwise.is_some();
                let id = match (ka, kb) {
                    (Kind::Sparse, Kind::Vector) => self.g.add(Node::MatVec([a, b])),
                    (Kind::Sparse, _) | (_, Kind::Sparse) => return self.sparse_error(at),
                    (Kind::Scalar, _) => self.g.mul(a, b),
                    (_, Kind::Scalar) => self.g.mul(b, a),
                    (Kind::Matrix, Kind::Vector) => self.g.add(Node::MatVec([a, b])),
                    (Kind::Matrix, Kind::Matrix) if !ew => self.g.add(Node::MatMul([a, b])),
                    (Kind::Vector, Kind::Vector) | (Kind::Matrix, Kind::Matrix) if ew => {
                        self.g.cmul(a, b)
                    }
                    (Kind::Vector, Kind::Vector) => return self.err_at(
                        at,
                        "`*` between two vectors is not defined: use `a.dot(&b)` for the inner product, `a.component_mul(&b)` for the elementwise product, or `a * b.transpose()` for the outer product",
                    ),
                    (Kind::Vector, Kind::Matrix) => return self.err_at(
                        at,
                        "vector * matrix is not defined (a vector is a column): use `m.transpose() * v` for the product of the transposed matrix with the vector",
                    ),
                    _ => return self.err_at(
                        at,
                        format!("cannot multiply {} by {}; `*` multiplies by a scalar, a matrix by a vector or a matrix by a matrix", ka.describe(), kb.describe()),
                    ),
                };
                Some(Val::Term(id))
            }
            _ => self.err_at(
                at,
                "`*` applies to scalars, vectors and matrices, not to tuples",
            ),
        }
    }

    fn div(&mut self, a: Id, b: Id, at: &syn::ExprBinary) -> Option<Id> {
        let (ka, kb) = (self.kind(a), self.kind(b));
        if ka == Kind::Sparse || kb == Kind::Sparse {
            return self.sparse_error(at);
        }
        if kb == Kind::Scalar {
            return Some(self.g.div(a, b));
        }
        if self.elementwise.is_some() {
            if ka == kb {
                return Some(self.g.add(Node::CDiv([a, b])));
            }
            if ka == Kind::Scalar {
                let r = self.g.add(Node::Recip(b));
                return Some(self.g.mul(a, r));
            }
        }
        let hint = if ka == kb {
            "; use `a.component_div(&b)` for elementwise division"
        } else {
            ""
        };
        self.err_at(
            at,
            format!(
                "cannot divide {} by {}: `/` divides by a scalar{hint}",
                ka.describe(),
                kb.describe()
            ),
        )
    }

    fn expect_kind(&mut self, id: Id, allowed: &[Kind], span: Span, what: &str) -> Option<Id> {
        let k = self.kind(id);
        if allowed.contains(&k) {
            Some(id)
        } else {
            self.err(
                span,
                format!(
                    "{what} expects {}; found {}",
                    kind_list(allowed),
                    k.describe()
                ),
            )
        }
    }

    fn method(&mut self, m: &syn::ExprMethodCall) -> Option<Val> {
        let name = m.method.to_string();
        let span = m.method.span();
        if let Some(t) = &m.turbofish {
            return self.err_at(
                t,
                "turbofish (`::<…>`) is not supported: every value of a #[fold] rule is f64",
            );
        }
        let Some(recv_val) = self.expr(&m.receiver) else {
            // The receiver's error is reported; an unknown method is reported as well.
            if !METHODS.contains(&name.as_str()) {
                self.unknown_method::<()>(&name, span);
            }
            return None;
        };
        let recv = match recv_val {
            Val::Term(recv) => recv,
            // A row (a transposed vector, or a matrix's `row_sum()`) transposed back.
            Val::Row(v) if name == "transpose" && m.args.is_empty() => {
                return Some(Val::Term(v))
            }
            Val::Row(_) => return self.err_at(
                &m.receiver,
                format!("`.{name}()` of a transposed vector is not supported: a transposed vector is only the right factor of an outer product `a * b.transpose()`; call `.{name}()` on the vector itself"),
            ),
            Val::Tuple(_) => return self.err_at(
                &m.receiver,
                "a tuple has no methods: destructure it first with `let (a, b, …) = …`",
            ),
        };
        let rk = self.kind(recv);
        let nargs = m.args.len();
        if matches!(name.as_str(), "max" | "min" | "mean")
            && nargs == 0
            && self.elementwise.is_none()
        {
            if rk != Kind::Vector {
                return self.err(
                    span,
                    format!(
                        "`.{name}()` reduces a vector to a scalar; this is {}: reduce a matrix's \
                         columns with a product (`a.transpose() * w`), or for the elementwise \
                         {name} against a scalar use `{name}(&v, s)`",
                        rk.describe()
                    ),
                );
            }
            let id = match name.as_str() {
                "max" => self.g.add(Node::MaxEntry(recv)),
                "min" => self.g.add(Node::MinEntry(recv)),
                _ => {
                    let sum = self.g.add(Node::Sum(recv));
                    let ones = self.g.add(Node::Ones(recv));
                    let n = self.g.add(Node::Sum(ones));
                    self.g.div(sum, n)
                }
            };
            return Some(Val::Term(id));
        }
        let expected = match name.as_str() {
            "transpose" | "norm" | "norm_squared" | "sum" | "clone" | "to_owned" | "abs"
            | "column_sum" | "row_sum" | "row_sum_tr" | "exp" | "ln" | "sin" | "cos" | "tanh"
            | "sqrt" | "recip" => Some(0),
            "dot" | "component_mul" | "component_div" | "map" | "add_scalar" | "scale" | "powi"
            | "powf" | "max" | "min" => Some(1),
            _ => None,
        };
        if let Some(n) = expected {
            if n != nargs {
                let args = if n == 1 {
                    "one argument"
                } else {
                    "no arguments"
                };
                return self.err(span, format!("`.{name}()` takes {args}, found {nargs}"));
            }
        }
        let arrays = [Kind::Vector, Kind::Matrix];
        let ew = self.elementwise.is_some();
        let what = format!("`.{name}()`");
        let id = match name.as_str() {
            "clone" | "to_owned" => recv,
            "transpose" => match rk {
                Kind::Matrix | Kind::Sparse => self.g.transpose(recv),
                Kind::Vector => return Some(Val::Row(recv)),
                _ => return self.err(span, format!("`.transpose()` applies to matrices and vectors, not {}", rk.describe())),
            },
            "dot" | "component_mul" | "component_div" => {
                self.expect_kind(recv, &arrays, m.receiver.span(), &what)?;
                let other = self.term(&m.args[0])?;
                if self.kind(other) != rk {
                    let ok = self.kind(other);
                    return self.err(m.args[0].span(), format!("{what} needs operands of the same kind: {} and {}", rk.describe(), ok.describe()));
                }
                match name.as_str() {
                    "dot" => self.g.add(Node::Dot([recv, other])),
                    "component_mul" => self.g.add(Node::CMul([recv, other])),
                    _ => self.g.add(Node::CDiv([recv, other])),
                }
            }
            "norm" | "norm_squared" | "sum" => {
                self.expect_kind(recv, &arrays, m.receiver.span(), &what)?;
                self.g.add(match name.as_str() {
                    "norm" => Node::Norm(recv),
                    "norm_squared" => Node::NormSq(recv),
                    _ => Node::Sum(recv),
                })
            }
            "add_scalar" | "scale" => {
                self.expect_kind(recv, &arrays, m.receiver.span(), &what)?;
                let s = self.term(&m.args[0])?;
                self.expect_kind(s, &[Kind::Scalar], m.args[0].span(), &what)?;
                if name == "scale" {
                    self.g.mul(s, recv)
                } else {
                    self.g.add(Node::AddS([recv, s]))
                }
            }
            "column_sum" | "row_sum" | "row_sum_tr" => {
                // nalgebra's shapes: `column_sum()` is the vector of row totals (length
                // nrows), `row_sum()` the 1 × ncols row of column totals, `row_sum_tr()` that
                // row as a vector.
                self.expect_kind(recv, &[Kind::Matrix], m.receiver.span(), &what)?;
                if name == "column_sum" {
                    self.g.add(Node::ColumnSum(recv))
                } else {
                    let t = self.g.transpose(recv);
                    let totals = self.g.add(Node::ColumnSum(t));
                    if name == "row_sum" {
                        return Some(Val::Row(totals));
                    }
                    totals
                }
            }
            "map" => return self.map(recv, &m.args[0], m.receiver.span()),
            "abs" if rk.is_array() || rk == Kind::Scalar => self.g.add(Node::Abs(recv)),
            "exp" | "ln" | "sin" | "cos" | "tanh" | "sqrt" | "recip" | "powi" | "powf" | "max" | "min"
                if rk == Kind::Scalar || (ew && rk.is_array()) =>
            {
                match name.as_str() {
                    "exp" => self.g.add(Node::Exp(recv)),
                    "ln" => self.g.add(Node::Ln(recv)),
                    "sin" => self.g.add(Node::Sin(recv)),
                    "cos" => self.g.add(Node::Cos(recv)),
                    "tanh" => self.g.add(Node::Tanh(recv)),
                    "sqrt" => self.g.add(Node::Sqrt(recv)),
                    "recip" => self.g.add(Node::Recip(recv)),
                    "powi" => {
                        let Some(k) = int_literal(&m.args[0]) else {
                            return self.err_at(&m.args[0], "`.powi(k)` needs an integer literal exponent that fits in i32, such as `2` or `-1`; for a real exponent use `.powf(p)`");
                        };
                        let kk = self.scalar(k as f64);
                        self.g.add(Node::Powi([recv, kk]))
                    }
                    other => {
                        let s = self.term(&m.args[0])?;
                        self.expect_kind(s, &[Kind::Scalar], m.args[0].span(), &what)?;
                        self.g.add(match other {
                            "powf" => Node::Powf([recv, s]),
                            "max" => Node::Max([recv, s]),
                            _ => Node::Min([recv, s]),
                        })
                    }
                }
            }
            "exp" | "ln" | "sin" | "cos" | "tanh" | "sqrt" => return self.err(
                span,
                format!("`.{name}()` is a scalar method; for {} use the elementwise primitive `{name}(&v)` from fold_runtime::ops, or `v.map(|e| e.{name}())`", rk.describe()),
            ),
            "recip" | "powi" | "powf" => {
                let arg = match name.as_str() {
                    "powi" => "2",
                    "powf" => "p",
                    _ => "",
                };
                return self.err(
                    span,
                    format!("`.{name}()` is a scalar method; for {} apply it to every entry with `v.map(|e| e.{name}({arg}))`", rk.describe()),
                );
            }
            "max" | "min" => return self.err(
                span,
                format!("`.{name}()` of {} is its extreme entry, which is not supported; for the elementwise {name} against a scalar use `{name}(&v, s)`", rk.describe()),
            ),
            _ => return self.unknown_method(&name, span),
        };
        Some(Val::Term(id))
    }

    fn unknown_method<T>(&mut self, name: &str, span: Span) -> Option<T> {
        // Common nalgebra spellings of what the language has.
        let instead = match name {
            "normalize" => Some("`v / v.norm()`".to_string()),
            "tr_mul" => Some("`a.transpose() * b`".to_string()),
            "tr_dot" => Some("`a.dot(&b)`".to_string()),
            "pow" => Some("`.powi(k)` or `.powf(p)`".to_string()),
            "log" => Some("`.ln()`".to_string()),
            "square" => Some("`e.powi(2)` on a scalar, or `v.component_mul(&v)`".to_string()),
            "neg" => Some("unary `-`".to_string()),
            "mean" => Some("`v.sum() / n` with `n` passed as an f64 argument".to_string()),
            "lu" | "cholesky" | "qr" | "svd" | "solve" | "try_inverse" | "inverse" => {
                return self.err(
                    span,
                    format!("`.{name}()` (a factorization or linear solve) is not supported inside a #[fold] rule: precompute it outside the rule and pass the result (`a⁻¹`, or the solved vector) as a constant argument, or give the inner solve a derivative as a user primitive (`primitives(f)`, see fold_runtime::Primitive)"),
                )
            }
            "component_mul_assign"
            | "component_div_assign"
            | "add_assign"
            | "sub_assign"
            | "mul_assign" => Some("a new `let` binding: values are immutable".to_string()),
            _ => did_you_mean(name, METHODS.iter().copied()).map(|c| format!("`.{c}()`")),
        };
        let hint = instead.map_or_else(String::new, |i| format!(" (write {i})"));
        self.err(
            span,
            format!("unsupported method `.{name}()`{hint}; supported methods: on vectors and matrices transpose, dot, component_mul, component_div, norm, norm_squared, sum, map, add_scalar, scale, abs; on matrices column_sum, row_sum, row_sum_tr; on scalars exp, ln, sin, cos, tanh, sqrt, abs, recip, powi, powf, max, min"),
        )
    }

    fn map(&mut self, recv: Id, arg: &Expr, recv_span: Span) -> Option<Val> {
        let rk = self.kind(recv);
        if !rk.is_array() {
            return self.err(
                recv_span,
                format!(
                    "`.map()` applies to vectors and matrices, not {}; apply the scalar methods directly",
                    rk.describe()
                ),
            );
        }
        if self.elementwise.is_some() {
            return self.err_at(
                arg,
                "nested `.map()` is not supported: inside `.map(|e| …)`, `e` is a scalar; use scalar methods on it",
            );
        }
        let Expr::Closure(c) = arg else {
            return self.err_at(
                arg,
                "`.map()` takes a closure written in place, `|e| <scalar expression of e>`; function names and closure variables are not supported",
            );
        };
        if c.inputs.len() != 1 {
            return self.err_at(
                c,
                "the closure of `.map()` takes exactly one argument, the entry: `|e| …`",
            );
        }
        if c.capture.is_some() || c.asyncness.is_some() || c.constness.is_some() {
            return self.err_at(
                c,
                "write the closure of `.map()` as a plain `|e| …`, without `move`, `async` or `const`",
            );
        }
        let mut scope = HashMap::new();
        let param = match &c.inputs[0] {
            Pat::Type(pt) => &*pt.pat,
            p => p,
        };
        match param {
            Pat::Ident(p) => {
                scope.insert(p.ident.to_string(), Some(Val::Term(recv)));
            }
            Pat::Wild(_) => {}
            other => return self.err_at(other, "the closure argument must be a name: `|e| …`"),
        }
        self.scopes.push(scope);
        self.map_scope = self.scopes.len() - 1;
        self.elementwise = Some(recv);
        let body = self.term(&c.body);
        self.elementwise = None;
        self.scopes.pop();
        let body = body?;
        match self.kind(body) {
            k if k == rk => Some(Val::Term(body)),
            Kind::Scalar => {
                // The closure ignores its argument: a constant array.
                let ones = self.g.add(Node::Ones(recv));
                Some(Val::Term(self.g.mul(body, ones)))
            }
            k => self.err_at(
                &c.body,
                format!(
                    "the closure of `.map()` must compute a scalar from its argument; this is {}",
                    k.describe()
                ),
            ),
        }
    }

    fn call(&mut self, c: &syn::ExprCall) -> Option<Val> {
        let Expr::Path(p) = &*c.func else {
            return self.err_at(
                &c.func,
                "only calls of named functions are supported: the primitives of fold_runtime::ops and user primitives listed in `primitives(…)`",
            );
        };
        let segs: Vec<String> = p
            .path
            .segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect();
        let name = segs.last().cloned().unwrap_or_default();
        let path = segs.join("::");
        let prefix: Vec<&str> = segs[..segs.len().saturating_sub(1)]
            .iter()
            .map(String::as_str)
            .collect();
        if segs.len() == 1 && self.is_bound(&name) {
            // A local closure or value: its `let` was reported, or it is not callable.
            if self.lookup(&name, p.span()).is_some() {
                return self.err_at(
                    p,
                    format!("`{name}` is a value, not a function; call the primitives of fold_runtime::ops or user primitives listed in `primitives(…)`"),
                );
            }
            return None;
        }
        let runtime_path = matches!(
            prefix.as_slice(),
            [] | ["ops"] | ["fold_runtime", "ops"] | ["fold_runtime"]
        );
        if self.elementwise.is_some() {
            return self.err_at(p, format!("function calls are not supported inside `.map(|e| …)`, where `e` is a scalar: use scalar methods such as `e.exp()`, or apply `{name}` to the whole vector outside the closure"));
        }
        let user = segs.len() == 1 && self.sig.primitives.iter().any(|pd| pd.name == name);
        // An unknown callee is reported before its arguments are lowered: their errors
        // (an integer size, say) would only distract from it.
        if !user && prefix.last() == Some(&"DMatrix") && name == "from_diagonal" {
            let args: Vec<Option<Id>> = c.args.iter().map(|a| self.term(a)).collect();
            let args: Vec<Id> = args.into_iter().collect::<Option<_>>()?;
            let exprs: Vec<&Expr> = c.args.iter().collect();
            self.check_args(
                "DMatrix::from_diagonal",
                &args,
                &exprs,
                c,
                &[&[Kind::Vector]],
            )?;
            return Some(Val::Term(self.g.add(Node::Diag(args[0]))));
        }
        if !user {
            if matches!(
                prefix.last(),
                Some(&("DVector" | "DMatrix" | "OVector" | "OMatrix" | "Matrix" | "CsrMatrix"))
            ) {
                return self.err_at(
                    p,
                    format!("`{path}` is not supported: a #[fold] rule does not construct vectors or matrices; they come in as arguments, and operations produce new ones"),
                );
            }
            if !runtime_path || crate::builtins::Builtin::from_name(&name).is_none() {
                return self.unknown_function(p, &path, &name);
            }
        }
        // Lower every argument, so that each one's errors are reported.
        let args: Vec<Option<Id>> = c.args.iter().map(|a| self.term(a)).collect();
        let args: Vec<Id> = args.into_iter().collect::<Option<_>>()?;
        if user {
            if args.is_empty() {
                return self.err_at(
                    c,
                    format!(
                        "user primitive `{name}` needs at least one argument: its input vector"
                    ),
                );
            }
            let call = self.g.add(Node::Call(Symbol::from(name.as_str()), args));
            let zero = self.scalar(0.0);
            return Some(Val::Term(self.g.add(Node::Get([call, zero]))));
        }
        let exprs: Vec<&Expr> = c.args.iter().collect();
        self.primitive(&name, &args, &exprs, c)
    }

    fn unknown_function<T>(&mut self, at: &syn::ExprPath, path: &str, name: &str) -> Option<T> {
        let user: Vec<String> = self
            .sig
            .primitives
            .iter()
            .map(|pd| pd.name.to_string())
            .collect();
        let candidates = crate::builtins::Builtin::ALL
            .iter()
            .map(|b| b.name())
            .chain(user.iter().map(String::as_str));
        let hint = suggestion(name, candidates);
        self.err_at(
            at,
            format!("unknown function `{path}`{hint}: a #[fold] body may call the primitives of fold_runtime::ops ({}) and user primitives; to use a function of your own, implement `fold_runtime::Primitive` for it and list it in `primitives({name})`", crate::builtins::Builtin::names()),
        )
    }

    fn check_args(
        &mut self,
        name: &str,
        args: &[Id],
        exprs: &[&Expr],
        call: &syn::ExprCall,
        kinds: &[&[Kind]],
    ) -> Option<()> {
        if args.len() != kinds.len() {
            let wanted: Vec<&str> = kinds.iter().map(|k| kind_word(k)).collect();
            return self.err_at(
                call,
                format!(
                    "`{name}` takes {} argument(s) ({}), found {}",
                    kinds.len(),
                    wanted.join(", "),
                    args.len()
                ),
            );
        }
        let mut ok = true;
        for (i, allowed) in kinds.iter().enumerate() {
            let k = self.kind(args[i]);
            if !allowed.contains(&k) {
                self.errors.push_spanned(
                    exprs[i],
                    format!(
                        "argument {} of `{name}` must be {}; this is {}",
                        i + 1,
                        kind_list(allowed),
                        k.describe()
                    ),
                );
                ok = false;
            }
        }
        ok.then_some(())
    }

    fn primitive(
        &mut self,
        name: &str,
        args: &[Id],
        exprs: &[&Expr],
        call: &syn::ExprCall,
    ) -> Option<Val> {
        use crate::builtins::Builtin as B;
        // `call` passes only builtin names here.
        let Some(b) = B::from_name(name) else {
            return self.err_at(
                call,
                format!(
                    "unknown function `{name}`; {}",
                    crate::builtins::supported()
                ),
            );
        };
        self.check_args(name, args, exprs, call, b.args())?;
        let id = match b {
            B::Exp => self.g.add(Node::Exp(args[0])),
            B::Ln => self.g.add(Node::Ln(args[0])),
            B::Sin => self.g.add(Node::Sin(args[0])),
            B::Cos => self.g.add(Node::Cos(args[0])),
            B::Tanh => self.g.add(Node::Tanh(args[0])),
            B::Sigmoid => self.g.add(Node::Sigmoid(args[0])),
            B::Sqrt => self.g.add(Node::Sqrt(args[0])),
            B::Abs => self.g.add(Node::Abs(args[0])),
            B::Relu | B::ProjNonneg => self.g.add(Node::Relu(args[0])),
            B::Softplus => self.g.add(Node::Softplus(args[0])),
            B::Max => self.g.add(Node::Max([args[0], args[1]])),
            B::Min => self.g.add(Node::Min([args[0], args[1]])),
            B::SoftThreshold => self.g.add(Node::SoftThreshold([args[0], args[1]])),
            B::Clamp | B::ProjBox => self.g.add(Node::Clamp([args[0], args[1], args[2]])),
            B::Softmax => self.g.add(Node::Softmax(args[0])),
            B::LogSumExp => self.g.add(Node::LogSumExp(args[0])),
            B::ProjSimplex => self.g.add(Node::ProjSimplex([args[0], args[1]])),
            B::ProjCappedSimplex => self.g.add(Node::ProjCappedSimplex([args[0], args[1]])),
            B::ProjL2Ball => self.g.add(Node::ProjL2Ball([args[0], args[1]])),
            B::ProjHyperplane => {
                // v − a (aᵀv − b)/‖a‖², written out so that its derivative is symbolic.
                let (v, a, b) = (args[0], args[1], args[2]);
                let d = self.g.add(Node::Dot([a, v]));
                let num = self.g.sub(d, b);
                let den = self.g.add(Node::NormSq(a));
                let t = self.g.div(num, den);
                let step = self.g.mul(t, a);
                self.g.sub(v, step)
            }
            B::Linsolve => self.g.add(Node::Solve([args[0], args[1]])),
            B::ProjAffine => {
                // v − Aᵀ (AAᵀ)⁻¹ (Av − b), written out likewise.
                let (v, a, b) = (args[0], args[1], args[2]);
                let av = self.g.add(Node::MatVec([a, v]));
                let res = self.g.sub(av, b);
                let at = self.g.transpose(a);
                let gram = self.g.add(Node::MatMul([a, at]));
                let sol = self.g.add(Node::Solve([gram, res]));
                let corr = self.g.add(Node::MatVec([at, sol]));
                self.g.sub(v, corr)
            }
            B::ProjPolyhedron | B::QpSolve => {
                let call = self.g.add(Node::Call(Symbol::from(name), args.to_vec()));
                let mut outs = Vec::new();
                let n = b.opaque().map_or(1, |o| o.outputs());
                for i in 0..n {
                    let idx = self.scalar(i as f64);
                    outs.push(Val::Term(self.g.add(Node::Get([call, idx]))));
                }
                return Some(if n == 1 {
                    outs.remove(0)
                } else {
                    Val::Tuple(outs)
                });
            }
        };
        Some(Val::Term(id))
    }
}

/// The message for a construct the body language does not have (control flow, macros,
/// indexing, …), with the tokens to underline: the keyword for control flow, whose body
/// may span many lines, and the whole expression otherwise.
fn construct_error(e: &Expr) -> Option<(proc_macro2::TokenStream, String)> {
    const LOOP: &str = "loops are not supported: a #[fold] function is one iteration of the solver, and `solve` runs the loop";
    let kinks =
        "express kinks with `max`, `min`, `clamp`, `relu` or a projection such as `proj_box`";
    let t = |x: &dyn ToTokens| x.to_token_stream();
    Some(match e {
        Expr::If(x) => (
            t(&x.if_token),
            format!("`if` is not supported: {STRAIGHT_LINE}; {kinks}"),
        ),
        Expr::Match(x) => (
            t(&x.match_token),
            format!("`match` is not supported: {STRAIGHT_LINE}; {kinks}"),
        ),
        Expr::ForLoop(x) => (t(&x.for_token), LOOP.to_string()),
        Expr::While(x) => (t(&x.while_token), LOOP.to_string()),
        Expr::Loop(x) => (t(&x.loop_token), LOOP.to_string()),
        Expr::Index(x) => (
            t(x),
            "indexing is not supported in a #[fold] body: use whole-vector operations (`dot`, `component_mul`, `sum`, `map`, …)".to_string(),
        ),
        Expr::Range(x) => (t(x), format!("ranges are not supported; {STRAIGHT_LINE}")),
        Expr::Field(x) => (
            t(x),
            "field access is not supported in a #[fold] body: pass the value as an argument".to_string(),
        ),
        Expr::Cast(x) => (
            t(x),
            "casts are not supported: every value of a #[fold] rule is already f64".to_string(),
        ),
        Expr::Closure(x) => (
            t(x),
            "closures are only supported as the argument of `.map(|e| …)`; write the computation inline, or make it a user primitive listed in `primitives(…)`".to_string(),
        ),
        Expr::Macro(x) => (
            t(&x.mac),
            format!("macros are not supported in a #[fold] body; {STRAIGHT_LINE}"),
        ),
        Expr::Assign(x) => (
            t(x),
            format!("assignment is not supported: bindings are immutable; bind a new name with `let` ({STRAIGHT_LINE})"),
        ),
        Expr::Binary(x) if is_compound_assign(&x.op) => {
            // `y *= 0.5` → `let y = y * 0.5;` when both sides print simply.
            let op = x.op.to_token_stream().to_string();
            let simple = |e: &Expr| matches!(e, Expr::Path(_) | Expr::Lit(_));
            let fix = match (&*x.left, op.strip_suffix('=')) {
                (Expr::Path(l), Some(op)) if simple(&x.right) => {
                    let (l, r) = (l.to_token_stream(), x.right.to_token_stream());
                    format!("`let {l} = {l} {op} {r};`")
                }
                _ => "`let y = y * 2.0;`".to_string(),
            };
            (
                t(x),
                format!("compound assignment is not supported: bindings are immutable; write {fix} instead ({STRAIGHT_LINE})"),
            )
        }
        Expr::Return(x) => (
            t(x),
            "`return` is not supported: the body ends with the next state as its tail expression, without `return`".to_string(),
        ),
        Expr::Break(x) => (t(x), LOOP.to_string()),
        Expr::Continue(x) => (t(x), LOOP.to_string()),
        Expr::Try(x) => (
            t(x),
            "`?` is not supported: the update rule cannot fail; `backward` and `solve` check their inputs".to_string(),
        ),
        Expr::Unsafe(x) => (t(&x.unsafe_token), format!("`unsafe` blocks are not supported; {STRAIGHT_LINE}")),
        Expr::Async(x) => (t(&x.async_token), format!("`async` blocks are not supported; {STRAIGHT_LINE}")),
        Expr::Await(x) => (t(x), format!("`.await` is not supported; {STRAIGHT_LINE}")),
        Expr::Struct(x) => (t(x), format!("struct expressions are not supported; {STRAIGHT_LINE}")),
        Expr::Array(x) => (
            t(x),
            "array literals are not supported: vectors and matrices come in as arguments".to_string(),
        ),
        Expr::Repeat(x) => (
            t(x),
            "array literals are not supported: vectors and matrices come in as arguments".to_string(),
        ),
        Expr::Let(x) => (t(x), format!("`let` expressions are not supported; {STRAIGHT_LINE}")),
        Expr::Block(x) => (
            t(x),
            format!("labelled blocks and attributes on blocks are not supported; {STRAIGHT_LINE}"),
        ),
        _ => return None,
    })
}

fn is_compound_assign(op: &BinOp) -> bool {
    matches!(
        op,
        BinOp::AddAssign(_)
            | BinOp::SubAssign(_)
            | BinOp::MulAssign(_)
            | BinOp::DivAssign(_)
            | BinOp::RemAssign(_)
            | BinOp::BitXorAssign(_)
            | BinOp::BitAndAssign(_)
            | BinOp::BitOrAssign(_)
            | BinOp::ShlAssign(_)
            | BinOp::ShrAssign(_)
    )
}

/// The supported methods, for typo suggestions.
const METHODS: &[&str] = &[
    "transpose",
    "dot",
    "component_mul",
    "component_div",
    "norm",
    "norm_squared",
    "sum",
    "mean",
    "column_sum",
    "row_sum",
    "row_sum_tr",
    "map",
    "add_scalar",
    "scale",
    "clone",
    "exp",
    "ln",
    "sin",
    "cos",
    "tanh",
    "sqrt",
    "abs",
    "recip",
    "powi",
    "powf",
    "max",
    "min",
];

fn int_literal(e: &Expr) -> Option<i32> {
    match e {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i.base10_parse().ok(),
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => int_literal(&u.expr).map(|k| -k),
        Expr::Paren(p) => int_literal(&p.expr),
        _ => None,
    }
}
