//! The table of local derivatives: for every IR operation, the linear maps from its
//! operands' tangents to its own. Reverse mode, forward mode, structured Jacobians and
//! the reduced backward all read it; a primitive's derivative is one arm of
//! [`partials`]. The vector reductions, for instance:
//!
//! ```text
//! v.max()   MaxEntry(x)   Inner(argmax x)       ⟨1[argmax], ẋ⟩, ties to the first index
//! v.min()   MinEntry(x)   Inner(argmin x)
//! v.sum()   Sum(x)        Total(x)
//! v.mean()  Sum(x) / n    Total(x), then DivBy(n) (lowered as a sum over a count)
//! ```
//!
//! Kinks take the one-sided derivative stated in `fold_runtime::ops`.

use super::map::{ediv, Map};
use crate::ir::graph::Graph;
use crate::ir::{Kind, Node};
use egg::{Id, Language};

/// Operand `k`'s term `L_k`: its tangent contributes `L_k ẋ_k`.
pub type Terms = Vec<(usize, Map)>;

/// The linearization `ẏ` of a node in its operands' tangents `ẋ_k`.
#[derive(Clone, Debug)]
pub enum Partials {
    /// `ẏ = Σ L_k ẋ_k`, in the order listed (no terms: a zero derivative).
    Sum(Terms),
    /// `ẏ = P (Σ L_k ẋ_k)`: a factor `P` shared by every operand (a linear solve).
    Then(Terms, Map),
    /// `ẏ = cond ? Σ then : Σ other` (a missing branch is zero, shaped like `zero`).
    Select {
        /// A scalar 0/1 condition.
        cond: Id,
        /// The terms where `cond` holds.
        then: Terms,
        /// The terms elsewhere.
        other: Terms,
        /// A term of the node's shape, for a zero branch.
        zero: Id,
    },
    /// An opaque primitive: its runtime op applies its Jacobian (`jvp`/`vjp` nodes).
    Opaque,
    /// Output `i` of an opaque primitive's tuple.
    Pick(Id),
}

/// The partials of `node` (whose value is `y`) for the operands flagged in `on`; terms of
/// other operands are left out (and their terms never built).
pub fn partials(g: &mut Graph, node: &Node, y: Id, on: &[bool]) -> Partials {
    let mut t = Table {
        on,
        terms: Vec::new(),
    };
    match *node {
        Node::Add(_) => {
            t.op(g, 0, |_| Map::Identity);
            t.op(g, 1, |_| Map::Identity);
        }
        Node::Mul([s, x]) => {
            t.op(g, 0, |_| Map::Times(x));
            t.op(g, 1, |_| Map::Scale(s));
        }
        Node::Div([_, s]) => {
            t.op(g, 0, |_| Map::DivBy(s));
            // d(x/s)/ds = −(1/s) y.
            t.op(g, 1, |_| {
                Map::Negated(Box::new(Map::Chain(vec![Map::DivBy(s), Map::Times(y)])))
            });
        }
        Node::MatVec([a, x]) | Node::MatMul([a, x]) => {
            t.op(g, 0, |_| Map::MatRight(x));
            t.op(g, 1, |_| Map::MatLeft(a));
        }
        Node::Outer([a, b]) => {
            t.op(g, 0, |_| Map::OuterWith(b));
            t.op(g, 1, |_| Map::OuterOf(a));
        }
        Node::Transpose(_) => t.op(g, 0, |_| Map::Transpose),
        Node::Diag(_) => t.op(g, 0, |_| Map::Diagonalize),
        Node::Diagonal(_) => t.op(g, 0, |_| Map::Diagonal),
        Node::ColumnSum(m) => t.op(g, 0, |_| Map::RowTotals(m)),
        Node::Dot([a, b]) => {
            t.op(g, 0, |_| Map::Dot(b));
            t.op(g, 1, |_| Map::Inner(a));
        }
        Node::Sum(x) => t.op(g, 0, |_| Map::Total(x)),
        // Reductions with a kink: the indicator of the first entry attaining the extremum
        // (ties go to the lowest index, as `fold_runtime::ops::argmax_indicator`).
        Node::MaxEntry(x) => t.op(g, 0, |g| Map::Inner(g.add(Node::ArgMax(x)))),
        Node::MinEntry(x) => t.op(g, 0, |g| Map::Inner(g.add(Node::ArgMin(x)))),
        Node::Norm(x) => t.op(g, 0, |g| {
            // ∂‖x‖ = xᵀ/‖x‖, 0 at x = 0.
            let r = g.add(Node::SafeRecip(y));
            Map::Chain(vec![Map::Inner(x), Map::Times(r)])
        }),
        Node::NormSq(x) => t.op(g, 0, |g| {
            let two = g.num(2.0);
            Map::Chain(vec![Map::Inner(x), Map::Times(two)])
        }),
        Node::CMul([a, b]) => {
            t.op(g, 0, |_| Map::HadamardRight(b));
            t.op(g, 1, |_| Map::Hadamard(a));
        }
        Node::CDiv([_, b]) => {
            t.op(g, 0, |_| Map::DivDiag(b));
            t.op(g, 1, |g| Map::Negated(Box::new(Map::Diag(ediv(g, y, b)))));
        }
        Node::AddS([x, _]) => {
            t.op(g, 0, |_| Map::Identity);
            t.op(g, 1, |_| Map::Broadcast(x));
        }
        Node::Powf([x, _]) => {
            if let Some(f) = elementwise_factor(g, node, y) {
                t.op(g, 0, |_| Map::Diag(f));
            }
            t.op(g, 1, |g| {
                let l = g.add(Node::Ln(x));
                Map::Times(g.cmul(y, l))
            });
        }
        Node::Max([x, s]) => {
            t.op(g, 0, |g| Map::Hadamard(g.add(Node::Gt([x, s]))));
            t.op(g, 1, |g| Map::Times(g.add(Node::Le([x, s]))));
        }
        Node::Min([x, s]) => {
            t.op(g, 0, |g| Map::Hadamard(g.add(Node::Lt([x, s]))));
            t.op(g, 1, |g| Map::Times(g.add(Node::Ge([x, s]))));
        }
        Node::Clamp([x, lo, hi]) => {
            t.op(g, 0, |g| Map::Hadamard(g.add(Node::MaskIn([x, lo, hi]))));
            t.op(g, 1, |g| Map::Times(g.add(Node::Le([x, lo]))));
            t.op(g, 2, |g| Map::Times(g.add(Node::Ge([x, hi]))));
        }
        Node::SoftThreshold([x, th]) => {
            t.op(g, 0, |g| Map::Hadamard(g.add(Node::Outside([x, th]))));
            t.op(g, 1, |g| {
                let sg = g.add(Node::Sign(y));
                Map::Negated(Box::new(Map::Times(sg)))
            });
        }
        Node::Softmax(_) => t.op(g, 0, |_| Map::Centered { s: y, k: None }),
        Node::LogSumExp(z) => t.op(g, 0, |g| Map::Inner(g.add(Node::Softmax(z)))),
        Node::ProjSimplex(_) | Node::ProjCappedSimplex(_) => {
            let capped = matches!(node, Node::ProjCappedSimplex(_));
            let (s, k) = simplex_support(g, y, capped);
            t.op(g, 0, |_| Map::Centered { s, k: Some(k) });
            t.op(g, 1, |_| Map::Ray { dir: s, per: k });
        }
        Node::ProjL2Ball([z, r]) => {
            let rho = g.add(Node::Norm(z));
            let cond = g.add(Node::Gt([rho, r]));
            // Outside the ball: (r/ρ)(I − z zᵀ/‖z‖²) and z/ρ for the radius. r/ρ is read
            // as ‖y‖/ρ (equal outside the ball): the derivative then stages
            // y = try_proj_l2_ball(z, r), whose domain check (r ≥ 0) applies in backward
            // as in solve.
            t.op(g, 0, |g| {
                let ny = g.add(Node::Norm(y));
                let ratio = g.div(ny, rho);
                Map::Scaled(ratio, Box::new(Map::Perp(z)))
            });
            t.op(g, 1, |_| Map::Ray { dir: z, per: rho });
            let then = std::mem::take(&mut t.terms);
            t.op(g, 0, |_| Map::Identity);
            return Partials::Select {
                cond,
                then,
                other: t.terms,
                zero: z,
            };
        }
        Node::Solve([m, _]) | Node::SolveT([m, _]) => {
            // x = M⁻¹ r: dx = M⁻¹ (dr − dM x); x = M⁻ᵀ r: dx = M⁻ᵀ (dr − dMᵀ x).
            let transposed = matches!(node, Node::SolveT(_));
            t.op(g, 1, |_| Map::Identity);
            t.op(g, 0, |_| {
                let times_x = if transposed {
                    Map::Chain(vec![Map::Transpose, Map::MatRight(y)])
                } else {
                    Map::MatRight(y)
                };
                Map::Negated(Box::new(times_x))
            });
            return Partials::Then(t.terms, Map::Solve { m, transposed });
        }
        Node::Call(..) => return Partials::Opaque,
        Node::Get([_, i]) => return Partials::Pick(i),
        Node::Neg(_) => t.op(g, 0, |_| Map::Negated(Box::new(Map::Identity))),
        ref n if crate::ir::is_elementwise_unary(n) || matches!(n, Node::Powi(_)) => {
            if let Some(f) = elementwise_factor(g, n, y) {
                t.op(g, 0, |_| Map::Diag(f));
            }
        }
        // Masks, supports, indicators, constants: zero derivative.
        _ => {}
    }
    Partials::Sum(t.terms)
}

/// Terms being listed, for the operands wanted.
struct Table<'a> {
    on: &'a [bool],
    terms: Terms,
}

impl Table<'_> {
    fn op(&mut self, g: &mut Graph, k: usize, map: impl FnOnce(&mut Graph) -> Map) {
        if self.on.get(k).copied().unwrap_or(false) {
            let m = map(g);
            self.terms.push((k, m));
        }
    }
}

/// The flags `on` for the operands of `node` that satisfy `pred`.
pub(super) fn operands_on(node: &Node, pred: impl Fn(Id) -> bool) -> Vec<bool> {
    node.children().iter().map(|c| pred(*c)).collect()
}

/// The factor `f'(x)` of an elementwise function `y = f(x)`, as a term of the shape of `x`;
/// `None` when the derivative is zero (sign).
fn elementwise_factor(g: &mut Graph, node: &Node, y: Id) -> Option<Id> {
    let f = match *node {
        Node::Recip(_) => {
            let yy = g.cmul(y, y);
            g.neg(yy)
        }
        Node::Exp(_) => y,
        Node::Ln(x) => g.add(Node::Recip(x)),
        Node::Sin(x) => g.add(Node::Cos(x)),
        Node::Cos(x) => {
            let s = g.add(Node::Sin(x));
            g.neg(s)
        }
        Node::Tanh(_) => {
            let yy = g.cmul(y, y);
            g.one_minus(yy)
        }
        Node::Sqrt(_) => {
            // sqrt'(0) := 0 (see fold_runtime::ops, removable kinks).
            let r = g.add(Node::SafeRecip(y));
            g.scale(0.5, r)
        }
        Node::Abs(x) => g.add(Node::Sign(x)),
        Node::Sigmoid(_) => {
            let om = g.one_minus(y);
            g.cmul(y, om)
        }
        Node::Softplus(x) => g.add(Node::Sigmoid(x)),
        Node::Relu(x) => {
            let zero = g.num(0.0);
            g.add(Node::Gt([x, zero]))
        }
        Node::Powi([x, k]) => {
            let k = g.lit(k).unwrap_or(1.0);
            if k == 1.0 {
                return Some(g.num(1.0));
            }
            let p = if k == 2.0 {
                x
            } else {
                let km1 = g.num(k - 1.0);
                g.add(Node::Powi([x, km1]))
            };
            g.scale(k, p)
        }
        Node::Powf([x, c]) => {
            if g.lit(c).is_some_and(|c| c >= 1.0) {
                // c x^(c−1) is finite everywhere for c ≥ 1.
                let m1 = g.num(-1.0);
                let cm1 = g.sum2(c, m1);
                let p = g.add(Node::Powf([x, cm1]));
                g.mul(c, p)
            } else {
                // c xᶜ / x with 1/0 := 0: the slope at x = 0 is taken as 0.
                let r = g.add(Node::SafeRecip(x));
                let p = g.cmul(y, r);
                g.mul(c, p)
            }
        }
        _ => return None,
    };
    Some(f)
}

/// The free set `s` of a simplex projection's value `y` and its size `k`.
fn simplex_support(g: &mut Graph, y: Id, capped: bool) -> (Id, Id) {
    let zero = g.num(0.0);
    let s = if capped {
        let one = g.num(1.0);
        g.add(Node::MaskIn([y, zero, one]))
    } else {
        g.add(Node::Gt([y, zero]))
    };
    let count = g.add(Node::Sum(s));
    // An empty free set (capped simplex at a vertex) has a zero Jacobian; max(|F|, 1)
    // keeps the division finite there.
    let one = g.num(1.0);
    let k = if capped {
        g.add(Node::Max([count, one]))
    } else {
        count
    };
    (s, k)
}

/// A zero of the shape of `x` (`0`, or `0 · x` for an array).
pub(super) fn zero_like(g: &mut Graph, x: Id) -> Id {
    let zero = g.num(0.0);
    if g.kind(x) == Kind::Scalar {
        zero
    } else {
        g.mul(zero, x)
    }
}
