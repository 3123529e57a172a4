//! Structured Jacobians: the table's maps applied to Jacobian columns, from the seed `I`.

use super::partials::{operands_on, partials, Partials, Terms};
use super::{active_set, Unstructured};
use crate::ir::graph::Graph;
use crate::ir::{Kind, Node};
use egg::{Id, Language};
use std::collections::HashMap;

/// Structured Jacobians `∂outputs/∂var` for a vector variable: matrix terms built by
/// forward mode from the seed `I` (scalar intermediates carry gradient vectors).
/// Fails on matrix-valued intermediates that depend on `var` and on opaque calls.
pub fn jacobian(g: &mut Graph, outputs: &[Id], var: Id) -> Result<Vec<Option<Id>>, Unstructured> {
    jacobian_with(g, outputs, var, false)
}

/// [`jacobian`], with products by `CsrMatrix` constants kept as sparse factors (for a
/// reduced matrix assembled sparse; never for a dense Jacobian).
pub fn sparse_jacobian(
    g: &mut Graph,
    outputs: &[Id],
    var: Id,
) -> Result<Vec<Option<Id>>, Unstructured> {
    jacobian_with(g, outputs, var, true)
}

/// `Σ L_k J_k` over the terms, in order.
fn sum_terms(
    g: &mut Graph,
    terms: &Terms,
    jac: &dyn Fn(usize) -> Id,
    y: Id,
    sparse: bool,
) -> Result<Option<Id>, Unstructured> {
    let mut sum = None;
    for (k, map) in terms {
        let t = map.columns(g, jac(*k), y, sparse)?;
        sum = g.sum_opt(sum, Some(t));
    }
    Ok(sum)
}

fn jacobian_with(
    g: &mut Graph,
    outputs: &[Id],
    var: Id,
    sparse: bool,
) -> Result<Vec<Option<Id>>, Unstructured> {
    let act = active_set(g, &[var]);
    let top = outputs.iter().map(|o| usize::from(*o)).max().unwrap_or(0);
    let mut jac: HashMap<Id, Id> = HashMap::new();
    let eye = g.add(Node::Eye(var));
    jac.insert(var, eye);
    for (i, &active) in act.iter().enumerate().take(top + 1) {
        let y = Id::from(i);
        if !active || jac.contains_key(&y) {
            continue;
        }
        let kind = g.kind(y);
        if kind != Kind::Vector && kind != Kind::Scalar {
            return Err(Unstructured(
                "a matrix-valued intermediate depends on the state",
            ));
        }
        let node = g.node(y).clone();
        let ch = node.children().to_vec();
        let on = operands_on(&node, |c| jac.contains_key(&c));
        let d = |k: usize| jac[&ch[k]];
        let t = match partials(g, &node, y, &on) {
            Partials::Sum(terms) => sum_terms(g, &terms, &d, y, sparse)?,
            Partials::Then(terms, post) => match sum_terms(g, &terms, &d, y, sparse)? {
                Some(s) => Some(post.columns(g, s, y, sparse)?),
                None => None,
            },
            Partials::Select {
                cond, then, other, ..
            } => match (
                sum_terms(g, &then, &d, y, sparse)?,
                sum_terms(g, &other, &d, y, sparse)?,
            ) {
                (Some(a), Some(b)) => Some(g.add(Node::Select([cond, a, b]))),
                (None, None) => None,
                _ => return Err(Unstructured("a branch of a select has a zero Jacobian")),
            },
            Partials::Opaque | Partials::Pick(_) => {
                return Err(Unstructured("an opaque primitive depends on the state"))
            }
        };
        if let Some(t) = t {
            jac.insert(y, t);
        }
    }
    Ok(outputs.iter().map(|o| jac.get(o).copied()).collect())
}
