//! Staging: which terms are computed once per linearization (stored in the generated
//! `Linearization`) and which per product. Matrix operands of products are never
//! materialized as views (`Qᵀ`, `αQ`): the product reads the stored matrix directly.

use crate::ir::graph::Graph;
use crate::ir::{Kind, Node, Role};
use egg::{Id, Language};
use std::collections::HashSet;

/// A matrix operand seen through transposes, scalar factors and signs.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    /// Scalar factors.
    pub coef: Vec<Id>,
    /// Whether the operand is negated.
    pub negated: bool,
    /// The matrix actually read.
    pub base: Id,
    /// Whether it is read transposed.
    pub transposed: bool,
}

/// Peels `Aᵀ`, `s·A` and `−A` off a matrix operand, stopping at terms already `available`.
pub fn peel(g: &Graph, mut id: Id, available: &dyn Fn(Id) -> bool) -> View {
    let mut v = View {
        coef: Vec::new(),
        negated: false,
        base: id,
        transposed: false,
    };
    loop {
        if available(id) {
            break;
        }
        match g.node(id) {
            Node::Transpose(a) => {
                v.transposed = !v.transposed;
                id = *a;
            }
            Node::Mul([s, a]) if g.kind(*a) != Kind::Scalar => {
                v.coef.push(*s);
                id = *a;
            }
            Node::Neg(a) if g.kind(*a) != Kind::Scalar => {
                v.negated = !v.negated;
                id = *a;
            }
            _ => break,
        }
    }
    v.base = id;
    v
}

/// What the per-product code reads from the linearization.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Terms stored in the linearization, increasing.
    pub fields: Vec<Id>,
    /// Matrices whose factorization products need (for `M⁻¹ r` or `M⁻ᵀ r`).
    pub factors: Vec<Id>,
    /// Opaque calls whose linearization products need.
    pub calls: Vec<Id>,
}

/// Whether `id` is a leaf read directly (an argument or a literal).
pub fn is_leaf(g: &Graph, id: Id) -> bool {
    match g.node(id) {
        Node::Num(_) => true,
        Node::Var(s) => g.vars.get(s).is_some_and(|v| !v.role.is_seed()),
        _ => false,
    }
}

/// The terms that depend on a per-call seed (cotangent, tangent, reduced unknown).
pub fn per_call_mask(g: &Graph) -> Vec<bool> {
    g.depends_on(Role::is_seed)
}

/// Stages the per-call `roots`: every term they need that does not depend on a seed
/// is stored once, except leaves and matrix views.
pub fn plan(g: &Graph, roots: &[Id]) -> Plan {
    let dep = per_call_mask(g);
    let mut fields = HashSet::new();
    let mut factors = HashSet::new();
    let mut calls = HashSet::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<Id> = roots.to_vec();
    let never = |_: Id| false;
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        if !dep[usize::from(id)] {
            if !is_leaf(g, id) {
                fields.insert(id);
            }
            continue;
        }
        let node = g.node(id);
        let operand = |child: Id, stack: &mut Vec<Id>| {
            if dep[usize::from(child)] {
                stack.push(child);
            } else {
                let v = peel(g, child, &never);
                stack.extend(v.coef.iter().copied());
                stack.push(v.base);
            }
        };
        match node {
            Node::MatVec([a, x]) => {
                operand(*a, &mut stack);
                stack.push(*x);
            }
            Node::MatMul([a, b]) => {
                operand(*a, &mut stack);
                operand(*b, &mut stack);
            }
            Node::Solve([m, r]) | Node::SolveT([m, r]) if !dep[usize::from(*m)] => {
                let v = peel(g, *m, &never);
                factors.insert(v.base);
                stack.extend(v.coef.iter().copied());
                stack.push(*r);
            }
            Node::CallVjp(ch) | Node::CallJvp(ch) => {
                calls.insert(ch[0]);
                stack.extend(ch[1..].iter().copied());
            }
            other => stack.extend(other.children().iter().copied()),
        }
    }
    // Factorizations and call linearizations are fields of their own; the matrices they
    // come from are needed only while staging.
    let mut fields: Vec<Id> = fields.into_iter().collect();
    fields.sort();
    let mut factors: Vec<Id> = factors.into_iter().collect();
    factors.sort();
    let mut calls: Vec<Id> = calls.into_iter().collect();
    calls.sort();
    Plan {
        fields,
        factors,
        calls,
    }
}
