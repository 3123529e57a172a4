//! Equality saturation: every term of a rule (primal, VJP, JVP, Jacobians, reduced
//! system) goes into one e-graph, is rewritten in bounded phases, and the cheapest
//! equivalent DAG is extracted back, shared subterms once.

pub mod analysis;
pub mod cost;
pub mod extract;
pub mod rules;

use crate::ir::graph::{infer_kind, ChildInfo, Graph};
use crate::ir::{Kind, Node};
use crate::rule::Rule;
use analysis::{FoldAnalysis, FoldEGraph};
use egg::{BackoffScheduler, Id, Language, RewriteScheduler, StopReason};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Iterations per phase.
pub const ITER_LIMIT: usize = 12;

/// What one saturation phase may spend, from the size of the rule's DAG: e-nodes, and work
/// (the e-graph's size summed over iterations, which is what each iteration's search
/// costs). Both grow linearly with the rule, so a longer rule costs proportionally more,
/// and the outcome does not depend on the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// E-nodes.
    pub nodes: usize,
    /// E-nodes summed over iterations.
    pub work: usize,
}

/// The work every phase may spend, whatever the rule's size.
pub const BASE_WORK: usize = 2_000;

/// The work a phase may spend per input node.
pub const WORK_PER_NODE: usize = 3;

impl Budget {
    /// The budget of a phase over `input` DAG nodes.
    pub fn for_input(input: usize) -> Budget {
        Budget {
            nodes: (2_000 + 6 * input).min(MAX_NODES),
            work: BASE_WORK + WORK_PER_NODE * input,
        }
    }
}

/// Whether a rule whose saturated terms have `input` nodes leaves its dense Jacobian
/// blocks out of saturation (see [`simplify`]): when the work budget is mostly its
/// per-node share, the budget binds and is better spent on the products.
pub fn late_jacobians(input: usize) -> bool {
    WORK_PER_NODE * input > BASE_WORK
}

/// A cap on e-nodes whatever the rule's size.
pub const MAX_NODES: usize = 50_000;

/// A safety net only: the budget stops phases long before this on any machine.
pub const TIME_LIMIT: Duration = Duration::from_secs(2);

/// What saturation did.
#[derive(Clone, Debug)]
pub struct Report {
    /// E-nodes when the last phase stopped.
    pub nodes: usize,
    /// E-classes when the last phase stopped.
    pub classes: usize,
    /// Iterations over all phases.
    pub iterations: usize,
    /// `"saturated"` when every phase saturated; else every limit hit, each with its phase
    /// and the iterations it took.
    pub stop_reason: String,
    /// Time spent saturating and extracting.
    pub time: Duration,
    /// The limits each phase ran under.
    pub budget: Budget,
}

impl Default for Report {
    fn default() -> Self {
        Report {
            nodes: 0,
            classes: 0,
            iterations: 0,
            stop_reason: String::new(),
            time: Duration::ZERO,
            budget: Budget::for_input(0),
        }
    }
}

/// The kind of an e-node from its children's classes.
pub fn node_kind(eg: &FoldEGraph, node: &Node) -> Kind {
    let child = |id: Id| {
        let d = &eg[id].data;
        ChildInfo {
            kind: d.kind,
            tuple: d.tuple.clone(),
            call_args: d.call_args.clone(),
            lit: d.constant,
        }
    };
    infer_kind(node, &eg.analysis.vars, &child).0
}

fn stop_reason(r: &Option<StopReason>) -> String {
    match r {
        Some(StopReason::Saturated) => "saturated".to_string(),
        Some(StopReason::IterationLimit(n)) => format!("iteration limit ({n})"),
        Some(StopReason::NodeLimit(n)) => format!("node limit ({n})"),
        Some(StopReason::TimeLimit(t)) => format!("time limit ({t:.3}s)"),
        Some(StopReason::Other(s)) => s.clone(),
        None => "not run".to_string(),
    }
}

/// Every term id a rule refers to, in a fixed order (so they can be mapped back).
fn rule_ids(rule: &Rule) -> Vec<Option<Id>> {
    let mut ids: Vec<Option<Id>> = Vec::new();
    ids.extend(rule.outputs.iter().map(|x| Some(*x)));
    ids.extend(rule.args.iter().map(|x| Some(*x)));
    ids.extend(rule.seeds.cotangent.iter().map(|x| Some(*x)));
    ids.extend(rule.seeds.tangent.iter().map(|x| Some(*x)));
    ids.extend(rule.seeds.param_tangent.iter().map(|x| Some(*x)));
    ids.extend(rule.vjp_state.iter().copied());
    ids.extend(rule.vjp_params.iter().copied());
    ids.extend(rule.jvp_state.iter().copied());
    ids.extend(rule.jvp_params.iter().copied());
    if let Some(rows) = &rule.jac_state {
        for row in rows {
            ids.extend(row.iter().copied());
        }
    }
    for p in rule.jac_params.iter().flatten() {
        ids.extend(p.iter().copied());
    }
    if let Some(r) = &rule.reduction {
        ids.push(Some(r.mask));
        ids.push(Some(r.support));
        ids.push(Some(r.seed));
        ids.push(r.inner_state);
        ids.extend(r.inner_params.iter().copied());
        if let Some(h) = &r.head_params {
            ids.extend(h.iter().copied());
        }
        ids.push(r.matrix);
    }
    ids
}

/// Writes mapped ids back into a rule, in the order of [`rule_ids`].
fn set_rule_ids(rule: &mut Rule, ids: &[Option<Id>]) {
    let mut k = 0;
    let mut next = || {
        let v = ids.get(k).copied().flatten();
        k += 1;
        v
    };
    let mut slots: Vec<&mut Option<Id>> = Vec::new();
    let mut required: Vec<&mut Id> = Vec::new();
    required.extend(rule.outputs.iter_mut());
    required.extend(rule.args.iter_mut());
    required.extend(rule.seeds.cotangent.iter_mut());
    required.extend(rule.seeds.tangent.iter_mut());
    required.extend(rule.seeds.param_tangent.iter_mut());
    for x in required {
        if let Some(v) = next() {
            *x = v;
        }
    }
    slots.extend(rule.vjp_state.iter_mut());
    slots.extend(rule.vjp_params.iter_mut());
    slots.extend(rule.jvp_state.iter_mut());
    slots.extend(rule.jvp_params.iter_mut());
    if let Some(rows) = &mut rule.jac_state {
        for row in rows {
            slots.extend(row.iter_mut());
        }
    }
    for p in rule.jac_params.iter_mut().flatten() {
        slots.extend(p.iter_mut());
    }
    for x in slots {
        *x = next();
    }
    if let Some(r) = &mut rule.reduction {
        for x in [&mut r.mask, &mut r.support, &mut r.seed] {
            if let Some(v) = next() {
                *x = v;
            }
        }
        let mut slots: Vec<&mut Option<Id>> = vec![&mut r.inner_state];
        slots.extend(r.inner_params.iter_mut());
        if let Some(h) = &mut r.head_params {
            slots.extend(h.iter_mut());
        }
        slots.push(&mut r.matrix);
        for x in slots {
            *x = next();
        }
    }
}

/// The terms saturation works on: everything but the dense Jacobian blocks, which only a
/// `jacobians()` call assembles (once, never per product).
fn saturated_roots(rule: &Rule) -> Vec<Id> {
    let mut ids: Vec<Id> = Vec::new();
    ids.extend(&rule.outputs);
    ids.extend(&rule.args);
    ids.extend(&rule.seeds.cotangent);
    ids.extend(&rule.seeds.tangent);
    ids.extend(&rule.seeds.param_tangent);
    ids.extend(rule.product_roots());
    if let Some(r) = &rule.reduction {
        ids.extend([r.mask, r.support, r.seed]);
        ids.extend(r.inner_state);
        ids.extend(r.inner_params.iter().flatten());
        if let Some(h) = &r.head_params {
            ids.extend(h.iter().flatten());
        }
        ids.extend(r.matrix);
    }
    ids
}

/// The roots of the dense Jacobian blocks.
fn jacobian_roots(rule: &Rule) -> Vec<Id> {
    let mut ids: Vec<Id> = Vec::new();
    if let Some(rows) = &rule.jac_state {
        ids.extend(rows.iter().flatten().flatten());
    }
    for p in rule.jac_params.iter().flatten() {
        ids.extend(p.iter().flatten());
    }
    ids
}

thread_local! {
    /// The rewrite rules of the phases, built once per thread: parsing their patterns is a
    /// noticeable part of a small rule's expansion in an unoptimized macro.
    static RULES: [Vec<rules::R>; 2] = [rules::simplify(), rules::distribute()];
}

/// Runs `rules` on `eg` until saturation or a limit of `budget`: iterations, node and time
/// limits, and the work budget (the e-graph's size at the start of each iteration, summed;
/// an iteration starts only if it fits, so a phase never overshoots by a whole iteration).
/// Returns the iterations run, counting the one that found a limit hit, and why it stopped.
///
/// This is egg's `Runner` loop with the same scheduler (`BackoffScheduler`, fresh per
/// phase), limits and saturation test, so it rewrites as the `Runner` would (up to the
/// work budget's test), but it rebuilds only an e-graph that changed: an unoptimized egg checks the whole hash-cons at
/// every rebuild, and the `Runner` rebuilds at its start and after an iteration stopped by
/// a limit, when nothing changed.
fn saturate(eg: &mut FoldEGraph, rules: &[rules::R], budget: Budget) -> (usize, StopReason) {
    let start = Instant::now();
    let check = |iteration: usize, eg: &FoldEGraph| -> Result<(), StopReason> {
        let elapsed = start.elapsed();
        if elapsed > TIME_LIMIT {
            return Err(StopReason::TimeLimit(elapsed.as_secs_f64()));
        }
        let size = eg.total_size();
        if size > budget.nodes {
            return Err(StopReason::NodeLimit(size));
        }
        if iteration >= ITER_LIMIT {
            return Err(StopReason::IterationLimit(iteration));
        }
        Ok(())
    };
    if !eg.clean {
        eg.rebuild();
    }
    let mut scheduler = BackoffScheduler::default();
    // The e-graph's size at the start of each iteration.
    let mut sizes: Vec<usize> = Vec::new();
    loop {
        let i = sizes.len();
        let (nodes, classes) = (eg.total_size(), eg.number_of_classes());
        let mut result = check(i, eg).and_then(|()| {
            // An iteration's search costs about the e-graph's size: it runs only if that
            // fits in what is left (the first always runs, so every phase does something).
            let work: usize = sizes.iter().sum();
            if i > 0 && work + nodes > budget.work {
                Err(StopReason::Other(format!(
                    "work budget ({} node-iterations)",
                    budget.work
                )))
            } else {
                Ok(())
            }
        });
        let mut applied = false;
        if result.is_ok() {
            let mut matches = Vec::with_capacity(rules.len());
            for rw in rules {
                matches.push(scheduler.search_rewrite(i, eg, rw));
                if let Err(e) = check(i, eg) {
                    result = Err(e);
                    break;
                }
            }
            if result.is_ok() {
                for (rw, ms) in rules.iter().zip(matches) {
                    applied |= scheduler.apply_rewrite(i, eg, rw, ms) > 0;
                    if let Err(e) = check(i, eg) {
                        result = Err(e);
                        break;
                    }
                }
            }
        }
        if !eg.clean {
            eg.rebuild();
        }
        if result.is_ok()
            && !applied
            && RewriteScheduler::<Node, FoldAnalysis>::can_stop(&mut scheduler, i)
            && nodes == eg.total_size()
            && classes == eg.number_of_classes()
        {
            result = Err(StopReason::Saturated);
        }
        sizes.push(nodes);
        if let Err(stop) = result.and_then(|()| check(sizes.len(), eg)) {
            return (sizes.len(), stop);
        }
    }
}

/// Simplifies every term of `rule` and returns the rule over the extracted graph.
///
/// Only terms some root reaches enter the e-graph (differentiation leaves dead
/// intermediates behind). The dense Jacobian blocks of a large rule join after saturation,
/// sharing every simplified subterm but not rewritten themselves: they are matrix
/// products assembled once per `jacobians()` call, and in a chained rule they are a
/// sixth of the DAG, which a budget-bound saturation would otherwise spend work on. A small
/// rule (see [`late_jacobians`]) saturates them with the rest.
pub fn simplify(rule: &Rule) -> (Rule, Report) {
    let start = Instant::now();
    let g = &rule.graph;
    let mut eg = FoldEGraph::new(FoldAnalysis {
        vars: g.vars.clone(),
    });
    let core = g.reachable(&saturated_roots(rule));
    let jac = g.reachable(&jacobian_roots(rule));
    let core_size = core.iter().filter(|&&c| c).count();
    let late = late_jacobians(core_size);
    let mut class_of: Vec<Option<Id>> = vec![None; g.len()];
    let add = |eg: &mut FoldEGraph, class_of: &mut Vec<Option<Id>>, i: usize| {
        let n = g.nodes()[i]
            .clone()
            .map_children(|c| class_of[usize::from(c)].expect("operands come first"));
        class_of[i] = Some(eg.add(n));
    };
    for i in 0..g.len() {
        if core[i] || (jac[i] && !late) {
            add(&mut eg, &mut class_of, i);
        }
    }
    eg.rebuild();
    let input = class_of.iter().filter(|c| c.is_some()).count();
    let mut report = Report::default();
    let budget = Budget::for_input(input);
    report.budget = budget;
    let mut limits = Vec::new();
    RULES.with(|[simplify, distribute]| {
        for (phase, rules) in [
            ("simplify", simplify),
            ("distribute", distribute),
            ("resimplify", simplify),
        ] {
            let (iterations, stop) = saturate(&mut eg, rules, budget);
            report.iterations += iterations;
            if !matches!(stop, StopReason::Saturated) {
                limits.push(format!(
                    "{phase} phase: {} after {iterations} iterations",
                    stop_reason(&Some(stop))
                ));
            }
        }
    });
    // Saturated only if every phase was; otherwise every limit hit, so a less simplified
    // (still exact) result says why.
    report.stop_reason = if limits.is_empty() {
        "saturated".to_string()
    } else {
        limits.join("; ")
    };
    report.nodes = eg.total_number_of_nodes();
    report.classes = eg.number_of_classes();
    if late {
        for i in 0..g.len() {
            if jac[i] && class_of[i].is_none() {
                add(&mut eg, &mut class_of, i);
            }
        }
        eg.rebuild();
    }

    let best = extract::extract(&eg);
    let mut out = Graph::new(g.vars.clone());
    let mut built: HashMap<Id, Id> = HashMap::new();
    let ids = rule_ids(rule);
    let mut mapped = Vec::with_capacity(ids.len());
    for id in ids {
        mapped.push(id.map(|old| {
            build(
                &eg,
                &best,
                eg.find(class_of[usize::from(old)].expect("every root is in the e-graph")),
                &mut out,
                &mut built,
            )
        }));
    }
    for (old, name) in &g.names {
        let Some(class) = class_of[usize::from(*old)] else {
            continue;
        };
        if let Some(new) = built.get(&eg.find(class)) {
            out.names.entry(*new).or_insert_with(|| name.clone());
        }
    }
    let mut simplified = rule.clone();
    simplified.graph = out;
    set_rule_ids(&mut simplified, &mapped);
    report.time = start.elapsed();
    (simplified, report)
}

/// Adds the best node of `class` (and its operands') to `out`.
fn build(
    eg: &FoldEGraph,
    best: &extract::Best,
    class: Id,
    out: &mut Graph,
    built: &mut HashMap<Id, Id>,
) -> Id {
    // Iterative post-order: deep DAGs must not overflow the macro's stack.
    let mut stack = vec![(class, false)];
    while let Some((c, expanded)) = stack.pop() {
        let c = eg.find(c);
        if built.contains_key(&c) {
            continue;
        }
        let node = best.node(eg, c).clone();
        if expanded {
            let n = node.map_children(|ch| built[&eg.find(ch)]);
            let id = out.add(n);
            built.insert(c, id);
        } else {
            stack.push((c, true));
            for ch in node.children() {
                if !built.contains_key(&eg.find(*ch)) {
                    stack.push((*ch, false));
                }
            }
        }
    }
    built[&eg.find(class)]
}

/// Work of the terms reachable from `roots` in `g`, each shared node once, split into what
/// depends on a per-call seed and what does not: `(per_call, once)`.
pub fn op_counts(g: &Graph, roots: &[Id]) -> ([usize; 4], [usize; 4]) {
    let reach = g.reachable(roots);
    let dep = g.depends_on(crate::ir::Role::is_seed);
    let mut per_call = [0usize; 4];
    let mut once = [0usize; 4];
    for (i, node) in g.nodes().iter().enumerate() {
        if !reach[i] {
            continue;
        }
        let c = cost::op_counts(node, g.kind(Id::from(i)), &|id| g.kind(id));
        let acc = if dep[i] { &mut per_call } else { &mut once };
        for k in 0..4 {
            acc[k] += c[k];
        }
    }
    (per_call, once)
}
