//! Forward mode: tangents pushed through the DAG by the table's maps.

use super::active_set;
use super::partials::{operands_on, partials, zero_like, Partials, Terms};
use crate::ir::graph::Graph;
use crate::ir::Node;
use egg::Id;
use std::collections::HashMap;

/// `Σ L_k ẋ_k` over the terms, in order; `None` when no operand has a tangent.
fn sum_terms(g: &mut Graph, terms: &Terms, tangent: &dyn Fn(usize) -> Id) -> Option<Id> {
    let mut sum = None;
    for (k, map) in terms {
        let t = map.forward(g, tangent(*k));
        sum = g.sum_opt(sum, Some(t));
    }
    sum
}

/// Forward mode: the tangents of `outputs` given tangents `seeds` of the variables `vars`.
pub fn jvp(g: &mut Graph, outputs: &[Id], vars: &[Id], seeds: &[Id]) -> Vec<Option<Id>> {
    let act = active_set(g, vars);
    let top = outputs.iter().map(|o| usize::from(*o)).max().unwrap_or(0);
    let mut tan: HashMap<Id, Id> = HashMap::new();
    for (v, s) in vars.iter().zip(seeds) {
        tan.insert(*v, *s);
    }
    for (i, &active) in act.iter().enumerate().take(top + 1) {
        let y = Id::from(i);
        if !active || tan.contains_key(&y) {
            continue;
        }
        let node = g.node(y).clone();
        let ch: Vec<Id> = egg::Language::children(&node).to_vec();
        let on = operands_on(&node, |c| tan.contains_key(&c));
        let d = |k: usize| tan[&ch[k]];
        let t = match partials(g, &node, y, &on) {
            Partials::Sum(terms) => sum_terms(g, &terms, &d),
            Partials::Then(terms, post) => sum_terms(g, &terms, &d).map(|s| post.forward(g, s)),
            Partials::Select {
                cond,
                then,
                other,
                zero,
            } => match (sum_terms(g, &then, &d), sum_terms(g, &other, &d)) {
                (Some(a), Some(b)) => Some(g.add(Node::Select([cond, a, b]))),
                (Some(a), None) => {
                    let z = zero_like(g, zero);
                    Some(g.add(Node::Select([cond, a, z])))
                }
                (None, Some(b)) => {
                    let z = zero_like(g, zero);
                    Some(g.add(Node::Select([cond, z, b])))
                }
                (None, None) => None,
            },
            Partials::Opaque => {
                let mut args = vec![y];
                for c in &ch {
                    let t = match tan.get(c) {
                        Some(&t) => t,
                        None => g.add(Node::Zero),
                    };
                    args.push(t);
                }
                Some(g.add(Node::CallJvp(args.into_boxed_slice())))
            }
            Partials::Pick(index) => tan.get(&ch[0]).map(|&dt| g.add(Node::Get([dt, index]))),
        };
        if let Some(t) = t {
            tan.insert(y, t);
        }
    }
    outputs.iter().map(|o| tan.get(o).copied()).collect()
}
