//! Lowering: the function body (`syn`) to typed IR terms, checking kinds and recording
//! dimension constraints. Every rejection carries the offending code's span and says
//! what is supported instead.

mod calls;
mod constructs;
mod methods;
mod ops;

use constructs::construct_error;

use crate::errors::{did_you_mean, suggestion, Errors};
use crate::front::signature::Signature;
use crate::ir::graph::{Graph, VarInfo};
use crate::ir::{Kind, Node};
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
}
