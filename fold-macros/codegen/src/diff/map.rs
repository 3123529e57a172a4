//! The structured linear maps that local partials are made of, and their three
//! applications: to a tangent (forward mode), to a cotangent (the adjoint, reverse mode)
//! and to the columns of a Jacobian (forward mode on an identity seed).
//!
//! Each map kind is applied here once; primitives only name maps (see `partials`).

use super::Unstructured;
use crate::ir::graph::Graph;
use crate::ir::{Kind, Node};
use egg::Id;

/// A linear map `t ↦ L t` from an operand's tangent to the tangent of a node, as IR terms.
///
/// Products are written in the operand order of the rule's own terms (hence `Hadamard`
/// and `HadamardRight`, `Inner` and `Dot`): derivative terms then share nodes with the
/// rule's and with each other, and the e-graph has no commutativity of scalar products to
/// undo a swap.
#[derive(Clone, Debug, PartialEq)]
pub enum Map {
    /// `t`.
    Identity,
    /// `−L t`.
    Negated(Box<Map>),
    /// `s t` for a scalar `s`.
    Scale(Id),
    /// `s (L t)` for a scalar `s`, applied last in every mode.
    Scaled(Id, Box<Map>),
    /// `t / s` for a scalar `s`.
    DivBy(Id),
    /// `f ⊙ t`, with the adjoint `f ⊙ ȳ`, for the factor `f = φ'(x)` of an elementwise
    /// function (a 0/1 mask at relu's kink); a scalar `f` scales.
    Diag(Id),
    /// `d ⊙ t`, with the adjoint `ȳ ⊙ d`: products, and the 0/1 masks of kinked maps
    /// (clamp, max/min, soft threshold).
    Hadamard(Id),
    /// `t ⊙ d`, with the adjoint `ȳ ⊙ d`: the operand order of `a.component_mul(&d)`, so
    /// that derivative terms share the rule's own products.
    HadamardRight(Id),
    /// `t ⊘ d` elementwise.
    DivDiag(Id),
    /// `t u` for a scalar tangent `t` (`u` any kind); the adjoint is `⟨ȳ, u⟩`.
    Times(Id),
    /// `(t / k) u` for a scalar tangent `t` and a vector `u`; the adjoint is `⟨u, ȳ⟩ / k`.
    Ray {
        /// `u`.
        dir: Id,
        /// `k`, a scalar.
        per: Id,
    },
    /// `t 1` for a scalar tangent, `1` shaped like the term given: the adjoint of `Total`.
    Broadcast(Id),
    /// `Σᵢ tᵢ` of a tangent shaped like the term given.
    Total(Id),
    /// `⟨u, t⟩`.
    Inner(Id),
    /// `⟨t, b⟩`: `Inner` written as `t.dot(&b)` reads.
    Dot(Id),
    /// `A t` (a vector or matrix `t`).
    MatLeft(Id),
    /// `T b` for a matrix tangent `T` (`b` a vector or a matrix).
    MatRight(Id),
    /// `t bᵀ` for a vector tangent `t`.
    OuterWith(Id),
    /// `a tᵀ` for a vector tangent `t`.
    OuterOf(Id),
    /// `tᵀ`.
    Transpose,
    /// `diag(t)` of a vector tangent.
    Diagonalize,
    /// The diagonal of a square matrix tangent.
    Diagonal,
    /// `T 1`, the row totals of a matrix tangent `T` of the shape of the matrix given.
    RowTotals(Id),
    /// `s ⊙ t − (⟨s, t⟩ / k) s` (`k = 1` when absent): `diag(s) − s sᵀ/k`, the Jacobian of
    /// softmax (`s` its value) and of the simplex projections (`s` the free set, `k` its
    /// size).
    Centered {
        /// `s`.
        s: Id,
        /// `k`.
        k: Option<Id>,
    },
    /// `t − (⟨u, t⟩ / ‖u‖²) u`: the projection onto `u⊥`.
    Perp(Id),
    /// `M⁻¹ t`, or `M⁻ᵀ t` when `transposed`.
    Solve {
        /// `M`.
        m: Id,
        /// Whether the solve is with `Mᵀ`.
        transposed: bool,
    },
    /// The maps applied in order (the adjoint applies their adjoints in reverse).
    Chain(Vec<Map>),
}

/// `factor ⊙ t`, where a scalar factor scales.
pub(super) fn apply_factor(g: &mut Graph, factor: Id, t: Id) -> Id {
    if g.kind(factor) == Kind::Scalar {
        if g.lit(factor) == Some(-1.0) {
            return g.neg(t);
        }
        return g.mul(factor, t);
    }
    g.cmul(factor, t)
}

/// Elementwise division; a scalar divisor divides.
pub(super) fn ediv(g: &mut Graph, a: Id, b: Id) -> Id {
    if g.kind(b) == Kind::Scalar {
        g.div(a, b)
    } else {
        g.add(Node::CDiv([a, b]))
    }
}

/// `A x` or `A X` by the kind of the right operand.
fn product(g: &mut Graph, a: Id, x: Id) -> Id {
    if g.kind(x) == Kind::Vector {
        g.matvec(a, x)
    } else {
        g.matmul(a, x)
    }
}

/// `diag(f) J` for a vector node (or `f · g` for a scalar node's gradient `g`).
fn diag_times(g: &mut Graph, f: Id, j: Id, node: Id) -> Id {
    if g.kind(node) == Kind::Scalar || g.kind(f) == Kind::Scalar {
        return g.mul(f, j);
    }
    let d = g.add(Node::Diag(f));
    g.matmul(d, j)
}

/// `m gᵀ` for a vector `m` and a gradient `g` (a scalar argument's sensitivity).
fn outer_or_scale(g: &mut Graph, m: Id, grad: Id) -> Id {
    if g.kind(m) == Kind::Scalar {
        g.mul(m, grad)
    } else {
        g.add(Node::Outer([m, grad]))
    }
}

fn ones(g: &mut Graph, like: Id) -> Id {
    g.add(Node::Ones(like))
}

impl Map {
    /// `L t`.
    pub fn forward(&self, g: &mut Graph, t: Id) -> Id {
        match self {
            Map::Identity => t,
            Map::Negated(m) => {
                let p = m.forward(g, t);
                g.neg(p)
            }
            Map::Scale(s) => g.mul(*s, t),
            Map::Scaled(s, m) => {
                let p = m.forward(g, t);
                g.mul(*s, p)
            }
            Map::DivBy(s) => g.div(t, *s),
            Map::Diag(f) => apply_factor(g, *f, t),
            Map::Hadamard(m) => g.cmul(*m, t),
            Map::HadamardRight(d) => g.cmul(t, *d),
            Map::DivDiag(d) => ediv(g, t, *d),
            Map::Times(u) => g.mul(t, *u),
            Map::Ray { dir, per } => {
                let c = g.div(t, *per);
                g.mul(c, *dir)
            }
            Map::Broadcast(like) => {
                let o = ones(g, *like);
                g.mul(t, o)
            }
            Map::Total(_) => g.total(t),
            Map::Inner(u) => g.inner(*u, t),
            Map::Dot(b) => g.inner(t, *b),
            Map::MatLeft(a) => product(g, *a, t),
            Map::MatRight(b) => product(g, t, *b),
            Map::OuterWith(b) => g.add(Node::Outer([t, *b])),
            Map::OuterOf(a) => g.add(Node::Outer([*a, t])),
            Map::Transpose => g.transpose(t),
            Map::Diagonalize => g.add(Node::Diag(t)),
            Map::Diagonal => g.diagonal(t),
            Map::RowTotals(_) => g.add(Node::ColumnSum(t)),
            Map::Centered { s, k } => {
                let st = g.cmul(*s, t);
                let d = g.add(Node::Dot([*s, t]));
                let c = match k {
                    Some(k) => g.div(d, *k),
                    None => d,
                };
                let cs = g.mul(c, *s);
                g.sub(st, cs)
            }
            Map::Perp(u) => perp(g, *u, t),
            Map::Solve { m, transposed } => solve(g, *m, t, *transposed),
            Map::Chain(ms) => ms.iter().fold(t, |t, m| m.forward(g, t)),
        }
    }

    /// `Lᵀ ȳ`.
    pub fn adjoint(&self, g: &mut Graph, ybar: Id) -> Id {
        match self {
            Map::Identity => ybar,
            Map::Negated(m) => {
                let p = m.adjoint(g, ybar);
                g.neg(p)
            }
            Map::Scale(s) => g.mul(*s, ybar),
            Map::Scaled(s, m) => {
                let p = m.adjoint(g, ybar);
                g.mul(*s, p)
            }
            Map::DivBy(s) => g.div(ybar, *s),
            Map::Diag(f) => apply_factor(g, *f, ybar),
            Map::Hadamard(d) | Map::HadamardRight(d) => g.cmul(ybar, *d),
            Map::DivDiag(d) => ediv(g, ybar, *d),
            Map::Times(u) => g.inner(ybar, *u),
            Map::Ray { dir, per } => {
                let d = g.add(Node::Dot([*dir, ybar]));
                g.div(d, *per)
            }
            Map::Broadcast(_) => g.total(ybar),
            Map::Total(like) => {
                let o = ones(g, *like);
                g.mul(ybar, o)
            }
            Map::Inner(u) | Map::Dot(u) => g.mul(ybar, *u),
            Map::MatLeft(a) => {
                let at = g.transpose(*a);
                product(g, at, ybar)
            }
            Map::MatRight(b) => {
                if g.kind(*b) == Kind::Vector {
                    g.add(Node::Outer([ybar, *b]))
                } else {
                    let bt = g.transpose(*b);
                    g.matmul(ybar, bt)
                }
            }
            Map::OuterWith(b) => g.matvec(ybar, *b),
            Map::OuterOf(a) => {
                let yt = g.transpose(ybar);
                g.matvec(yt, *a)
            }
            Map::Transpose => g.transpose(ybar),
            Map::Diagonalize => g.diagonal(ybar),
            Map::Diagonal => g.add(Node::Diag(ybar)),
            Map::RowTotals(m) => {
                // Every column of the adjoint is ȳ.
                let t = g.transpose(*m);
                let totals = g.add(Node::ColumnSum(t));
                let o = ones(g, totals);
                g.add(Node::Outer([ybar, o]))
            }
            Map::Centered { s, k } => {
                // Symmetric: the forward map again, with the inner product formed first.
                let d = g.add(Node::Dot([*s, ybar]));
                let c = match k {
                    Some(k) => g.div(d, *k),
                    None => d,
                };
                let sv = g.cmul(*s, ybar);
                let cs = g.mul(c, *s);
                g.sub(sv, cs)
            }
            Map::Perp(u) => perp(g, *u, ybar),
            Map::Solve { m, transposed } => solve(g, *m, ybar, !transposed),
            Map::Chain(ms) => ms.iter().rev().fold(ybar, |t, m| m.adjoint(g, t)),
        }
    }

    /// `L J` column by column, for the Jacobian `J = ∂x/∂var` of the operand (a matrix, or
    /// a gradient vector when the operand is a scalar) at a node `y` that is a vector or a
    /// scalar. `sparse` keeps products by `CsrMatrix` constants.
    pub fn columns(&self, g: &mut Graph, j: Id, y: Id, sparse: bool) -> Result<Id, Unstructured> {
        Ok(match self {
            Map::Identity => j,
            Map::Negated(m) => {
                let p = m.columns(g, j, y, sparse)?;
                g.neg(p)
            }
            Map::Scale(s) => g.mul(*s, j),
            Map::Scaled(s, m) => {
                let p = m.columns(g, j, y, sparse)?;
                g.mul(*s, p)
            }
            Map::DivBy(s) => g.div(j, *s),
            Map::Diag(f) | Map::Hadamard(f) | Map::HadamardRight(f) => diag_times(g, *f, j, y),
            Map::DivDiag(d) => {
                let r = g.add(Node::Recip(*d));
                diag_times(g, r, j, y)
            }
            Map::Times(u) => outer_or_scale(g, *u, j),
            Map::Ray { dir, per } => {
                let u = g.div(*dir, *per);
                g.add(Node::Outer([u, j]))
            }
            Map::Broadcast(like) => {
                if g.kind(*like) == Kind::Scalar {
                    j
                } else {
                    let o = ones(g, *like);
                    g.add(Node::Outer([o, j]))
                }
            }
            Map::Total(like) => {
                let t = g.transpose(j);
                let o = ones(g, *like);
                g.matvec(t, o)
            }
            Map::Inner(u) | Map::Dot(u) => {
                let t = g.transpose(j);
                g.matvec(t, *u)
            }
            Map::MatLeft(a) => {
                if g.kind(*a) == Kind::Sparse && !sparse {
                    return Err(Unstructured(
                        "sparse products have no dense structured Jacobian",
                    ));
                }
                g.matmul(*a, j)
            }
            Map::MatRight(_)
            | Map::OuterWith(_)
            | Map::OuterOf(_)
            | Map::Transpose
            | Map::Diagonalize
            | Map::Diagonal
            | Map::RowTotals(_) => {
                return Err(Unstructured("a matrix-valued term depends on the variable"))
            }
            Map::Centered { s, k } => {
                let sk = match k {
                    Some(k) => g.div(*s, *k),
                    None => *s,
                };
                let a = diag_times(g, *s, j, y);
                let t = g.transpose(j);
                let b = g.matvec(t, *s);
                let o = g.add(Node::Outer([sk, b]));
                g.sub(a, o)
            }
            Map::Perp(u) => {
                let t = g.transpose(j);
                let jtu = g.matvec(t, *u);
                let uu = g.add(Node::NormSq(*u));
                let c = g.div(jtu, uu);
                let o = g.add(Node::Outer([*u, c]));
                g.sub(j, o)
            }
            Map::Solve { m, transposed } => solve(g, *m, j, *transposed),
            Map::Chain(ms) => {
                let mut j = j;
                for m in ms {
                    j = m.columns(g, j, y, sparse)?;
                }
                j
            }
        })
    }
}

/// `t − (⟨u, t⟩ / ‖u‖²) u`.
fn perp(g: &mut Graph, u: Id, t: Id) -> Id {
    let ut = g.add(Node::Dot([u, t]));
    let uu = g.add(Node::NormSq(u));
    let c = g.div(ut, uu);
    let cu = g.mul(c, u);
    g.sub(t, cu)
}

fn solve(g: &mut Graph, m: Id, r: Id, transposed: bool) -> Id {
    if transposed {
        g.add(Node::SolveT([m, r]))
    } else {
        g.add(Node::Solve([m, r]))
    }
}
