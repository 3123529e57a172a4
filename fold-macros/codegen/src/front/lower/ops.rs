//! Arithmetic operators: `+`, `-`, `*`, `/` on scalars, vectors and matrices, with the
//! kind rules of nalgebra.

use super::*;

impl Lowerer<'_> {
    pub(super) fn binary(&mut self, b: &syn::ExprBinary) -> Option<Val> {
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

    pub(super) fn sparse_error<T>(&mut self, at: impl ToTokens) -> Option<T> {
        self.err_at(
            at,
            "sparse matrices are only supported in products `d * x` and `d.transpose() * y` with a vector: they are constants",
        )
    }

    pub(super) fn add_sub(&mut self, a: Id, b: Id, sub: bool, at: &syn::ExprBinary) -> Option<Id> {
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

    pub(super) fn mul(&mut self, l: Val, r: Val, at: &syn::ExprBinary) -> Option<Val> {
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

    pub(super) fn div(&mut self, a: Id, b: Id, at: &syn::ExprBinary) -> Option<Id> {
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

    pub(super) fn expect_kind(
        &mut self,
        id: Id,
        allowed: &[Kind],
        span: Span,
        what: &str,
    ) -> Option<Id> {
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
}
