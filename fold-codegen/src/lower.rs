//! Lowering: the function body (`syn`) to typed IR terms, checking kinds and recording
//! dimension constraints. Every rejection carries the offending code's span and says
//! what is supported instead.

use crate::errors::Errors;
use crate::graph::{Graph, VarInfo};
use crate::ir::{Kind, Node};
use crate::signature::Signature;
use egg::{Id, Symbol};
use proc_macro2::Span;
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
    };
    for (i, sym) in arg_symbols.iter().enumerate() {
        let id = lw.g.var(*sym);
        scope.insert(sig.args[i].name.to_string(), Val::Term(id));
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
    scopes: Vec<HashMap<String, Val>>,
    errors: &'a mut Errors,
    /// Inside `.map(|e| …)`: the mapped array, whose scalar operations broadcast.
    elementwise: Option<Id>,
}

fn kind_list(kinds: &[Kind]) -> String {
    kinds
        .iter()
        .map(|k| k.describe())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Lowerer<'_> {
    fn err<T>(&mut self, span: Span, msg: impl std::fmt::Display) -> Option<T> {
        self.errors.push(span, msg);
        None
    }

    fn kind(&self, id: Id) -> Kind {
        self.g.kind(id)
    }

    fn scalar(&mut self, value: f64) -> Id {
        self.g.num(value)
    }

    fn outputs(&mut self, tail: Val, item: &ItemFn) -> Option<Vec<Id>> {
        let span = match item.block.stmts.last() {
            Some(Stmt::Expr(e, None)) => e.span(),
            _ => item.block.span(),
        };
        let nblocks = self.sig.blocks.len();
        let vals = if self.sig.block_state {
            match tail {
                Val::Tuple(v) if v.len() == nblocks => v,
                Val::Tuple(v) => {
                    return self.err(
                        span,
                        format!(
                            "the rule returns {} blocks but the state has {nblocks}: return one vector per state block, in the order of `state = (…)`",
                            v.len()
                        ),
                    )
                }
                _ => {
                    return self.err(
                        span,
                        format!("block state: return a tuple of {nblocks} vectors, one per state block"),
                    )
                }
            }
        } else {
            vec![tail]
        };
        let mut out = Vec::new();
        for v in vals {
            match v {
                Val::Term(id) if self.kind(id) == Kind::Vector => out.push(id),
                Val::Term(id) => {
                    let k = self.kind(id);
                    return self.err(
                        span,
                        format!(
                            "the rule must return the next state, a vector; this is {}",
                            k.describe()
                        ),
                    );
                }
                _ => return self.err(span, "the rule must return the next state, a vector"),
            }
        }
        Some(out)
    }

    fn lookup(&mut self, name: &str, span: Span) -> Option<Val> {
        let found = self.scopes.iter().rev().find_map(|s| s.get(name)).cloned();
        match found {
            Some(Val::Term(id)) => {
                if let Some(bound) = self.elementwise {
                    if id != bound && self.kind(id) != Kind::Scalar {
                        return self.err(
                            span,
                            format!(
                                "inside `.map(|e| …)` only scalars may be captured; `{name}` is {}",
                                self.kind(id).describe()
                            ),
                        );
                    }
                }
                Some(Val::Term(id))
            }
            Some(v) => Some(v),
            None => self.err(
                span,
                format!("cannot find `{name}`: a #[fold] body may use the function's arguments and its own `let` bindings"),
            ),
        }
    }

    fn block(&mut self, block: &Block) -> Option<Val> {
        self.scopes.push(HashMap::new());
        let result = self.block_inner(block);
        self.scopes.pop();
        result
    }

    fn block_inner(&mut self, block: &Block) -> Option<Val> {
        let n = block.stmts.len();
        let mut tail = None;
        let mut ok = true;
        for (i, stmt) in block.stmts.iter().enumerate() {
            match stmt {
                Stmt::Local(local) => {
                    let Some(init) = &local.init else {
                        self.errors.push(
                            local.span(),
                            "every `let` needs a value: `let name = expr;`",
                        );
                        ok = false;
                        continue;
                    };
                    if let Some((_, div)) = &init.diverge {
                        self.errors.push(
                            div.span(),
                            format!("`let … else` is not supported; {STRAIGHT_LINE}"),
                        );
                        ok = false;
                        continue;
                    }
                    match self.expr(&init.expr) {
                        Some(v) => ok &= self.bind(&local.pat, v),
                        None => ok = false,
                    }
                }
                Stmt::Expr(e, None) if i + 1 == n => {
                    tail = self.expr(e);
                    ok &= tail.is_some();
                }
                Stmt::Expr(Expr::Return(r), _) => {
                    self.errors.push(r.span(), format!("`return` is not supported; end the body with the next state as its tail expression ({STRAIGHT_LINE})"));
                    ok = false;
                }
                Stmt::Expr(e, _) => {
                    self.errors.push(
                        e.span(),
                        format!("statements other than `let` are not supported; {STRAIGHT_LINE}"),
                    );
                    ok = false;
                }
                Stmt::Item(it) => {
                    self.errors.push(
                        it.span(),
                        format!("items inside the body are not supported; {STRAIGHT_LINE}"),
                    );
                    ok = false;
                }
                Stmt::Macro(m) => {
                    self.errors.push(
                        m.span(),
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
            let span = block.stmts.last().map_or(block.span(), |s| s.span());
            return self.err(
                span,
                "the body must end with a tail expression: the next state",
            );
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
                    s.insert(name, v);
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
                _ => {
                    self.errors.push(
                        t.span(),
                        "this pattern does not match the value's number of outputs",
                    );
                    false
                }
            },
            other => {
                self.errors.push(
                    other.span(),
                    "`let` patterns must be a name or a tuple of names",
                );
                false
            }
        }
    }

    fn term(&mut self, e: &Expr) -> Option<Id> {
        match self.expr(e)? {
            Val::Term(id) => Some(id),
            Val::Row(_) => self.err(
                e.span(),
                "a transposed vector is only supported as the right factor of an outer product `a * b.transpose()`; use `a.dot(&b)` for inner products",
            ),
            Val::Tuple(_) => self.err(e.span(), "a tuple cannot be used as a value here; destructure it with `let (a, b, …) = …`"),
        }
    }

    fn expr(&mut self, e: &Expr) -> Option<Val> {
        const LOOP: &str =
            "loops are not supported: write one iteration of the solver; `solve` runs the loop";
        match e {
            Expr::Paren(p) => self.expr(&p.expr),
            Expr::Group(g) => self.expr(&g.expr),
            Expr::Reference(r) => {
                if r.mutability.is_some() {
                    return self.err(r.span(), "`&mut` is not supported in a #[fold] body");
                }
                self.expr(&r.expr)
            }
            Expr::Block(b) if b.label.is_none() && b.attrs.is_empty() => self.block(&b.block),
            Expr::Lit(ExprLit { lit, .. }) => {
                let parsed = match lit {
                    Lit::Float(f) => f.base10_parse::<f64>(),
                    Lit::Int(i) => i.base10_parse::<f64>(),
                    other => return self.err(other.span(), "only numeric literals are supported"),
                };
                match parsed {
                    Ok(v) => Some(Val::Term(self.scalar(v))),
                    Err(err) => {
                        self.errors.add(err);
                        None
                    }
                }
            }
            Expr::Path(p) if p.qself.is_none() => match p.path.get_ident() {
                Some(ident) => self.lookup(&ident.to_string(), ident.span()),
                None => self.err(p.span(), "paths are not supported as values; use an argument or a `let` binding"),
            },
            Expr::Tuple(t) => {
                let mut items = Vec::new();
                for el in &t.elems {
                    items.push(Val::Term(self.term(el)?));
                }
                Some(Val::Tuple(items))
            }
            Expr::Unary(u) => {
                let inner = self.term(&u.expr)?;
                match u.op {
                    UnOp::Neg(_) => {
                        if self.kind(inner) == Kind::Sparse {
                            return self.sparse_error(u.span());
                        }
                        Some(Val::Term(self.g.neg(inner)))
                    }
                    UnOp::Deref(_) => Some(Val::Term(inner)),
                    _ => self.err(u.span(), "only unary `-` is supported"),
                }
            }
            Expr::Binary(b) => self.binary(b),
            Expr::MethodCall(m) => self.method(m),
            Expr::Call(c) => self.call(c),
            Expr::If(x) => self.err(x.if_token.span, format!("`if` is not supported: {STRAIGHT_LINE}; express kinks with `max`, `min`, `clamp`, `relu` or a projection")),
            Expr::Match(x) => self.err(x.match_token.span, format!("`match` is not supported: {STRAIGHT_LINE}")),
            Expr::ForLoop(x) => self.err(x.for_token.span, LOOP),
            Expr::While(x) => self.err(x.while_token.span, LOOP),
            Expr::Loop(x) => self.err(x.loop_token.span, LOOP),
            Expr::Index(x) => self.err(x.span(), "indexing is not supported in a #[fold] body: use whole-vector operations (`dot`, `component_mul`, `sum`, `map`, …)"),
            Expr::Field(x) => self.err(x.span(), "field access is not supported in a #[fold] body"),
            Expr::Cast(x) => self.err(x.span(), "casts are not supported; all values are f64"),
            Expr::Closure(x) => self.err(x.span(), "closures are only supported as the argument of `.map(|e| …)`"),
            Expr::Macro(x) => self.err(x.span(), format!("macros are not supported in a #[fold] body; {STRAIGHT_LINE}")),
            Expr::Assign(x) => self.err(x.span(), format!("assignment is not supported; bind a new name with `let` ({STRAIGHT_LINE})")),
            Expr::Return(x) => self.err(x.span(), "`return` is not supported; end the body with the next state as its tail expression"),
            other => self.err(other.span(), format!("this expression is not supported; {STRAIGHT_LINE}")),
        }
    }

    fn binary(&mut self, b: &syn::ExprBinary) -> Option<Val> {
        let op_span = b.op.span();
        let (l, r) = (self.expr(&b.left), self.expr(&b.right));
        let (l, r) = (l?, r?);
        match b.op {
            BinOp::Add(_) | BinOp::Sub(_) => {
                let sub = matches!(b.op, BinOp::Sub(_));
                let (Val::Term(a), Val::Term(c)) = (l, r) else {
                    return self.err(op_span, "`+`/`-` apply to scalars, vectors and matrices of the same kind");
                };
                self.add_sub(a, c, sub, op_span).map(Val::Term)
            }
            BinOp::Mul(_) => self.mul(l, r, op_span),
            BinOp::Div(_) => {
                let (Val::Term(a), Val::Term(c)) = (l, r) else {
                    return self.err(op_span, "`/` divides by a scalar");
                };
                self.div(a, c, op_span).map(Val::Term)
            }
            _ => self.err(op_span, "only `+ - * /` are supported: comparisons, logic and bit operations have no derivative here"),
        }
    }

    fn sparse_error<T>(&mut self, span: Span) -> Option<T> {
        self.err(
            span,
            "sparse matrices are only supported in products `d * x` and `d.transpose() * y`",
        )
    }

    fn add_sub(&mut self, a: Id, b: Id, sub: bool, span: Span) -> Option<Id> {
        let (ka, kb) = (self.kind(a), self.kind(b));
        if ka == Kind::Sparse || kb == Kind::Sparse {
            return self.sparse_error(span);
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
        let hint = if ka == Kind::Scalar || kb == Kind::Scalar {
            "; nalgebra has no broadcasting `+`: use `v.add_scalar(s)` to add a scalar to every entry"
        } else {
            ""
        };
        self.err(
            span,
            format!(
                "cannot {} {} and {}{hint}",
                if sub { "subtract" } else { "add" },
                ka.describe(),
                kb.describe()
            ),
        )
    }

    fn mul(&mut self, l: Val, r: Val, span: Span) -> Option<Val> {
        match (l, r) {
            (Val::Term(a), Val::Row(b)) if self.kind(a) == Kind::Vector => {
                Some(Val::Term(self.g.add(Node::Outer([a, b]))))
            }
            (Val::Row(_), _) => self.err(span, "`aᵀ * …` is not supported: use `a.dot(&b)` for an inner product, or `m.transpose() * a` for a product with a matrix"),
            (Val::Term(a), Val::Term(b)) => {
                let (ka, kb) = (self.kind(a), self.kind(b));
                let ew = self.elementwise.is_some();
                let id = match (ka, kb) {
                    (Kind::Sparse, Kind::Vector) => self.g.add(Node::MatVec([a, b])),
                    (Kind::Sparse, _) | (_, Kind::Sparse) => return self.sparse_error(span),
                    (Kind::Scalar, _) => self.g.mul(a, b),
                    (_, Kind::Scalar) => self.g.mul(b, a),
                    (Kind::Matrix, Kind::Vector) => self.g.add(Node::MatVec([a, b])),
                    (Kind::Matrix, Kind::Matrix) if !ew => self.g.add(Node::MatMul([a, b])),
                    (Kind::Vector, Kind::Vector) | (Kind::Matrix, Kind::Matrix) if ew => {
                        self.g.cmul(a, b)
                    }
                    (Kind::Vector, Kind::Vector) => return self.err(
                        span,
                        "`*` between two vectors is not defined: use `a.dot(&b)` for the inner product, `a.component_mul(&b)` for the elementwise product, or `a * b.transpose()` for the outer product",
                    ),
                    (Kind::Vector, Kind::Matrix) => return self.err(span, "vector * matrix is not defined: use `m.transpose() * v`"),
                    _ => return self.err(span, format!("cannot multiply {} by {}", ka.describe(), kb.describe())),
                };
                Some(Val::Term(id))
            }
            _ => self.err(span, "`*` applies to scalars, vectors and matrices"),
        }
    }

    fn div(&mut self, a: Id, b: Id, span: Span) -> Option<Id> {
        let (ka, kb) = (self.kind(a), self.kind(b));
        if ka == Kind::Sparse || kb == Kind::Sparse {
            return self.sparse_error(span);
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
        self.err(span, format!("cannot divide {} by {}: `/` divides by a scalar; use `a.component_div(&b)` for elementwise division", ka.describe(), kb.describe()))
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
        if m.turbofish.is_some() {
            return self.err(m.turbofish.span(), "turbofish is not supported here");
        }
        let recv_val = self.expr(&m.receiver)?;
        let Val::Term(recv) = recv_val else {
            return self.err(m.receiver.span(), "this value cannot be used as a receiver");
        };
        let rk = self.kind(recv);
        let nargs = m.args.len();
        let expected = match name.as_str() {
            "transpose" | "norm" | "norm_squared" | "sum" | "clone" | "to_owned" | "abs"
            | "exp" | "ln" | "sin" | "cos" | "tanh" | "sqrt" | "recip" => Some(0),
            "dot" | "component_mul" | "component_div" | "map" | "add_scalar" | "scale" | "powi"
            | "powf" | "max" | "min" => Some(1),
            _ => None,
        };
        if let Some(n) = expected {
            if n != nargs {
                return self.err(
                    span,
                    format!("`.{name}()` takes {n} argument(s), found {nargs}"),
                );
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
                            return self.err(m.args[0].span(), "`.powi(k)` needs an integer literal exponent");
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
            "exp" | "ln" | "sin" | "cos" | "tanh" | "sqrt" | "recip" | "powi" | "powf" => return self.err(
                span,
                format!("`.{name}()` is a scalar method; for {} use `{name}(&v)` from fold_runtime::ops or `v.map(|e| e.{name}(…))`", rk.describe()),
            ),
            "max" | "min" => return self.err(
                span,
                format!("`.{name}()` of {} is its extreme entry, which is not supported; for the elementwise {name} against a scalar use `{name}(&v, s)`", rk.describe()),
            ),
            _ => return self.err(
                span,
                format!("unsupported method `.{name}()`; supported: transpose, dot, component_mul, component_div, norm, norm_squared, sum, map, add_scalar, scale, and on scalars exp, ln, sin, cos, tanh, sqrt, abs, recip, powi, powf, max, min"),
            ),
        };
        Some(Val::Term(id))
    }

    fn map(&mut self, recv: Id, arg: &Expr, recv_span: Span) -> Option<Val> {
        let rk = self.kind(recv);
        if !rk.is_array() {
            return self.err(
                recv_span,
                format!(
                    "`.map()` applies to vectors and matrices, not {}",
                    rk.describe()
                ),
            );
        }
        if self.elementwise.is_some() {
            return self.err(arg.span(), "nested `.map()` is not supported");
        }
        let Expr::Closure(c) = arg else {
            return self.err(
                arg.span(),
                "`.map()` takes a closure `|e| <scalar expression of e>`",
            );
        };
        if c.inputs.len() != 1 {
            return self.err(
                c.inputs.span(),
                "the closure of `.map()` takes exactly one argument",
            );
        }
        let mut scope = HashMap::new();
        let param = match &c.inputs[0] {
            Pat::Type(pt) => &*pt.pat,
            p => p,
        };
        match param {
            Pat::Ident(p) => {
                scope.insert(p.ident.to_string(), Val::Term(recv));
            }
            Pat::Wild(_) => {}
            other => return self.err(other.span(), "the closure argument must be a name"),
        }
        self.scopes.push(scope);
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
            k => self.err(
                c.body.span(),
                format!(
                    "the closure of `.map()` must compute a scalar of its argument; found {}",
                    k.describe()
                ),
            ),
        }
    }

    fn call(&mut self, c: &syn::ExprCall) -> Option<Val> {
        let Expr::Path(p) = &*c.func else {
            return self.err(c.func.span(), "only calls of named functions are supported");
        };
        let segs: Vec<String> = p
            .path
            .segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect();
        let name = segs.last().cloned().unwrap_or_default();
        let span = p.span();
        let prefix: Vec<&str> = segs[..segs.len().saturating_sub(1)]
            .iter()
            .map(String::as_str)
            .collect();
        let runtime_path = matches!(
            prefix.as_slice(),
            [] | ["ops"] | ["fold_runtime", "ops"] | ["fold_runtime"]
        );
        if self.elementwise.is_some() {
            return self.err(span, "function calls are not supported inside `.map(|e| …)`; use scalar methods such as `e.exp()`");
        }
        let mut args = Vec::new();
        for a in &c.args {
            args.push(self.term(a)?);
        }
        if segs.len() == 1 {
            if let Some(pd) = self.sig.primitives.iter().find(|pd| pd.name == name) {
                let name = pd.name.to_string();
                if args.is_empty() {
                    return self.err(
                        span,
                        format!("user primitive `{name}` needs at least one argument"),
                    );
                }
                let call = self.g.add(Node::Call(Symbol::from(name), args));
                let zero = self.scalar(0.0);
                return Some(Val::Term(self.g.add(Node::Get([call, zero]))));
            }
        }
        if !runtime_path {
            return self.err(
                span,
                format!("unknown function `{}`; {PRIMITIVES}", segs.join("::")),
            );
        }
        let spans: Vec<Span> = c.args.iter().map(|a| a.span()).collect();
        self.primitive(&name, &args, &spans, span)
    }

    fn check_args(
        &mut self,
        name: &str,
        args: &[Id],
        spans: &[Span],
        span: Span,
        kinds: &[&[Kind]],
    ) -> Option<()> {
        if args.len() != kinds.len() {
            return self.err(
                span,
                format!(
                    "`{name}` takes {} argument(s), found {}",
                    kinds.len(),
                    args.len()
                ),
            );
        }
        let mut ok = true;
        for (i, allowed) in kinds.iter().enumerate() {
            let k = self.kind(args[i]);
            if !allowed.contains(&k) {
                self.errors.push(
                    spans[i],
                    format!(
                        "argument {} of `{name}` must be {}; found {}",
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

    fn primitive(&mut self, name: &str, args: &[Id], spans: &[Span], span: Span) -> Option<Val> {
        const S: &[Kind] = &[Kind::Scalar];
        const V: &[Kind] = &[Kind::Vector];
        const M: &[Kind] = &[Kind::Matrix];
        const A: &[Kind] = &[Kind::Scalar, Kind::Vector, Kind::Matrix];
        const AR: &[Kind] = &[Kind::Vector, Kind::Matrix];
        let unary: Option<fn(Id) -> Node> = match name {
            "exp" => Some(Node::Exp),
            "ln" => Some(Node::Ln),
            "sin" => Some(Node::Sin),
            "cos" => Some(Node::Cos),
            "tanh" => Some(Node::Tanh),
            "sigmoid" => Some(Node::Sigmoid),
            "sqrt" => Some(Node::Sqrt),
            "abs" => Some(Node::Abs),
            "relu" | "proj_nonneg" => Some(Node::Relu),
            "softplus" => Some(Node::Softplus),
            _ => None,
        };
        if let Some(make) = unary {
            self.check_args(name, args, spans, span, &[A])?;
            return Some(Val::Term(self.g.add(make(args[0]))));
        }
        let id = match name {
            "max" | "min" | "soft_threshold" => {
                self.check_args(name, args, spans, span, &[AR, S])?;
                let pair = [args[0], args[1]];
                self.g.add(match name {
                    "max" => Node::Max(pair),
                    "min" => Node::Min(pair),
                    _ => Node::SoftThreshold(pair),
                })
            }
            "clamp" | "proj_box" => {
                self.check_args(name, args, spans, span, &[AR, S, S])?;
                self.g.add(Node::Clamp([args[0], args[1], args[2]]))
            }
            "softmax" => {
                self.check_args(name, args, spans, span, &[V])?;
                self.g.add(Node::Softmax(args[0]))
            }
            "log_sum_exp" => {
                self.check_args(name, args, spans, span, &[V])?;
                self.g.add(Node::LogSumExp(args[0]))
            }
            "proj_simplex" | "proj_capped_simplex" | "proj_l2_ball" => {
                self.check_args(name, args, spans, span, &[V, S])?;
                let pair = [args[0], args[1]];
                self.g.add(match name {
                    "proj_simplex" => Node::ProjSimplex(pair),
                    "proj_capped_simplex" => Node::ProjCappedSimplex(pair),
                    _ => Node::ProjL2Ball(pair),
                })
            }
            "proj_hyperplane" => {
                // v − a (aᵀv − b)/‖a‖², written out so that its derivative is symbolic.
                self.check_args(name, args, spans, span, &[V, V, S])?;
                let (v, a, b) = (args[0], args[1], args[2]);
                let d = self.g.add(Node::Dot([a, v]));
                let num = self.g.sub(d, b);
                let den = self.g.add(Node::NormSq(a));
                let t = self.g.div(num, den);
                let step = self.g.mul(t, a);
                self.g.sub(v, step)
            }
            "proj_affine" => {
                // v − Aᵀ (AAᵀ)⁻¹ (Av − b), written out likewise.
                self.check_args(name, args, spans, span, &[V, M, V])?;
                let (v, a, b) = (args[0], args[1], args[2]);
                let av = self.g.add(Node::MatVec([a, v]));
                let res = self.g.sub(av, b);
                let at = self.g.transpose(a);
                let gram = self.g.add(Node::MatMul([a, at]));
                let sol = self.g.add(Node::Solve([gram, res]));
                let corr = self.g.add(Node::MatVec([at, sol]));
                self.g.sub(v, corr)
            }
            "proj_polyhedron" => {
                self.check_args(name, args, spans, span, &[V, M, V, M, V])?;
                let call = self.g.add(Node::Call(Symbol::from(name), args.to_vec()));
                let zero = self.scalar(0.0);
                self.g.add(Node::Get([call, zero]))
            }
            "qp_solve" => {
                self.check_args(name, args, spans, span, &[M, V, M, V, M, V])?;
                let call = self.g.add(Node::Call(Symbol::from(name), args.to_vec()));
                let mut outs = Vec::new();
                for i in 0..3 {
                    let idx = self.scalar(i as f64);
                    outs.push(Val::Term(self.g.add(Node::Get([call, idx]))));
                }
                return Some(Val::Tuple(outs));
            }
            _ => return self.err(span, format!("unknown function `{name}`; {PRIMITIVES}")),
        };
        Some(Val::Term(id))
    }
}

const PRIMITIVES: &str = "supported: exp, ln, sin, cos, tanh, sigmoid, sqrt, abs, relu, softplus, max, min, clamp, softmax, log_sum_exp, soft_threshold, proj_box, proj_nonneg, proj_simplex, proj_capped_simplex, proj_l2_ball, proj_hyperplane, proj_affine, proj_polyhedron, qp_solve, and user primitives listed in `primitives(…)`";

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
