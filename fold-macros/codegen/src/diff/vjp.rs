//! Reverse mode: cotangents pulled back through the DAG by the adjoints of the table's
//! maps, accumulated per node.

use super::active_set;
use super::partials::{operands_on, partials, zero_like, Partials, Terms};
use crate::ir::graph::Graph;
use crate::ir::Node;
use egg::{Id, Language};
use std::collections::HashMap;

fn accumulate(g: &mut Graph, adj: &mut HashMap<Id, Id>, at: Id, t: Id) {
    let new = match adj.get(&at) {
        Some(&old) => g.sum2(old, t),
        None => t,
    };
    adj.insert(at, new);
}

/// Reverse mode: the adjoints of `wrt` given cotangents `seeds` of `outputs`.
/// `None` stands for a structural zero.
pub fn vjp(g: &mut Graph, outputs: &[Id], seeds: &[Id], wrt: &[Id]) -> Vec<Option<Id>> {
    let act = active_set(g, wrt);
    let top = outputs.iter().map(|o| usize::from(*o)).max().unwrap_or(0);
    let mut adj: HashMap<Id, Id> = HashMap::new();
    for (o, s) in outputs.iter().zip(seeds) {
        if act[usize::from(*o)] {
            accumulate(g, &mut adj, *o, *s);
        }
    }
    // Cotangents of the outputs of opaque calls, gathered from their `get`s.
    let mut call_cots: HashMap<Id, HashMap<usize, Id>> = HashMap::new();
    for i in (0..=top).rev() {
        let y = Id::from(i);
        if !act[i] || wrt.contains(&y) {
            continue;
        }
        let node = g.node(y).clone();
        let ch = node.children().to_vec();
        let on = operands_on(&node, |c| act[usize::from(c)]);
        if let Node::Call(..) = node {
            let Some(cots) = call_cots.remove(&y) else {
                continue;
            };
            let nout = g.tuple_kinds(y).len();
            let mut args = vec![y];
            for k in 0..nout {
                let c = match cots.get(&k) {
                    Some(&c) => c,
                    None => g.add(Node::Zero),
                };
                args.push(c);
            }
            let v = g.add(Node::CallVjp(args.into_boxed_slice()));
            for (j, a) in ch.iter().enumerate() {
                if on[j] {
                    let jj = g.num(j as f64);
                    let gj = g.add(Node::Get([v, jj]));
                    accumulate(g, &mut adj, *a, gj);
                }
            }
            continue;
        }
        let Some(&ybar) = adj.get(&y) else { continue };
        match partials(g, &node, y, &on) {
            Partials::Sum(terms) => {
                for (k, map) in terms {
                    let t = map.adjoint(g, ybar);
                    accumulate(g, &mut adj, ch[k], t);
                }
            }
            Partials::Then(terms, post) => {
                let shared = post.adjoint(g, ybar);
                for (k, map) in terms {
                    let t = map.adjoint(g, shared);
                    accumulate(g, &mut adj, ch[k], t);
                }
            }
            Partials::Select {
                cond, then, other, ..
            } => {
                let mut ks: Vec<usize> = then.iter().map(|(k, _)| *k).collect();
                for (k, _) in &other {
                    if !ks.contains(k) {
                        ks.push(*k);
                    }
                }
                for k in ks {
                    let branch =
                        |terms: &Terms, g: &mut Graph| match terms.iter().find(|(j, _)| *j == k) {
                            Some((_, map)) => map.adjoint(g, ybar),
                            None => zero_like(g, ch[k]),
                        };
                    let a = branch(&then, g);
                    let b = branch(&other, g);
                    let t = g.add(Node::Select([cond, a, b]));
                    accumulate(g, &mut adj, ch[k], t);
                }
            }
            Partials::Pick(i) => {
                let k = g.lit(i).unwrap_or(0.0) as usize;
                let entry = call_cots.entry(ch[0]).or_default();
                let new = match entry.get(&k) {
                    Some(&old) => g.sum2(old, ybar),
                    None => ybar,
                };
                call_cots.entry(ch[0]).or_default().insert(k, new);
            }
            Partials::Opaque => {}
        }
    }
    wrt.iter().map(|w| adj.get(w).copied()).collect()
}
