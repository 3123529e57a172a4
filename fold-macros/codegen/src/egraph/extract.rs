//! Extraction of the cheapest term of every e-class in one pass over the e-nodes.
//!
//! egg's `Extractor` re-scans every class until no cost changes, which takes as many passes
//! as the e-graph is deep: quadratic on chained rules. Costs here are superior functions
//! (an e-node costs its own work plus its operands'), so Knuth's generalisation of
//! Dijkstra's algorithm settles each class once, cheapest first.

use super::analysis::FoldEGraph;
use super::cost;
use crate::ir::Node;
use egg::{Id, Language};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// The cheapest e-node of every e-class, by canonical class id.
pub struct Best {
    best: HashMap<Id, Node>,
}

impl Best {
    /// The cheapest e-node of `class` (any id of it).
    pub fn node(&self, eg: &FoldEGraph, class: Id) -> &Node {
        &self.best[&eg.find(class)]
    }
}

/// A candidate on the heap: an e-node whose operands are all settled, with its total cost.
struct Candidate {
    cost: f64,
    node: usize,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    // Reversed: `BinaryHeap` pops the cheapest first; ties by e-node order, deterministic.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .cost
            .total_cmp(&self.cost)
            .then_with(|| other.node.cmp(&self.node))
    }
}

/// Settles the cheapest term of every class reachable bottom-up.
pub fn extract(eg: &FoldEGraph) -> Best {
    let mut classes: Vec<Id> = eg.classes().map(|c| c.id).collect();
    classes.sort();
    let index: HashMap<Id, usize> = classes.iter().enumerate().map(|(i, c)| (*c, i)).collect();
    let class_of = |id: Id| index[&eg.find(id)];

    // Every e-node once: its class, its own cost, its distinct operand classes.
    let mut owner = Vec::new();
    let mut nodes: Vec<&Node> = Vec::new();
    let mut own = Vec::new();
    let mut waiting = Vec::new();
    let mut parents: Vec<Vec<usize>> = vec![Vec::new(); classes.len()];
    let mut heap = BinaryHeap::new();
    for (ci, &c) in classes.iter().enumerate() {
        for node in &eg[c].nodes {
            let ni = nodes.len();
            let mut operands: Vec<usize> = node.children().iter().map(|&ch| class_of(ch)).collect();
            operands.sort_unstable();
            operands.dedup();
            for &o in &operands {
                parents[o].push(ni);
            }
            let cost = cost::own_cost(eg, node);
            owner.push(ci);
            nodes.push(node);
            own.push(cost);
            waiting.push(operands.len());
            if operands.is_empty() {
                heap.push(Candidate { cost, node: ni });
            }
        }
    }

    let mut settled: Vec<Option<(f64, usize)>> = vec![None; classes.len()];
    while let Some(Candidate { cost, node }) = heap.pop() {
        let c = owner[node];
        if settled[c].is_some() {
            continue;
        }
        settled[c] = Some((cost, node));
        for &p in &parents[c] {
            waiting[p] -= 1;
            if waiting[p] == 0 && settled[owner[p]].is_none() {
                let total = nodes[p].fold(own[p], |sum, ch| {
                    sum + settled[class_of(ch)].map_or(f64::INFINITY, |(c, _)| c)
                });
                heap.push(Candidate {
                    cost: total,
                    node: p,
                });
            }
        }
    }
    let best = classes
        .iter()
        .zip(settled)
        .filter_map(|(c, s)| s.map(|(_, n)| (*c, nodes[n].clone())))
        .collect();
    Best { best }
}
