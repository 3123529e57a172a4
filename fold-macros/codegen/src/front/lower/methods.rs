//! Method calls: nalgebra's methods on vectors and matrices, elementwise maps and
//! reductions.

use super::*;

impl Lowerer<'_> {
    pub(super) fn method(&mut self, m: &syn::ExprMethodCall) -> Option<Val> {
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

    pub(super) fn unknown_method<T>(&mut self, name: &str, span: Span) -> Option<T> {
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

    pub(super) fn map(&mut self, recv: Id, arg: &Expr, recv_span: Span) -> Option<Val> {
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
}

/// The supported methods, for typo suggestions.
pub(super) const METHODS: &[&str] = &[
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

pub(super) fn int_literal(e: &Expr) -> Option<i32> {
    match e {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => i.base10_parse().ok(),
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => int_literal(&u.expr).map(|k| -k),
        Expr::Paren(p) => int_literal(&p.expr),
        _ => None,
    }
}
