//! What every e-class knows: its kind, whether it depends on a per-call seed, whether it
//! is a 0/1 mask, whether it is a vector on a support, and its value when it is a scalar
//! constant (folded eagerly).

use crate::ir::graph::{infer_kind, ChildInfo, VarInfo};
use crate::ir::{Kind, Lit, Node};
use egg::{Analysis, DidMerge, EGraph, Id, Symbol};
use std::collections::HashMap;

/// The e-graph analysis of the IR.
#[derive(Default, Clone)]
pub struct FoldAnalysis {
    /// Kinds and roles of variables.
    pub vars: HashMap<Symbol, VarInfo>,
}

/// Facts about an e-class.
#[derive(Debug, Clone, PartialEq)]
pub struct Data {
    /// Its kind.
    pub kind: Kind,
    /// Output kinds of tuples.
    pub tuple: Vec<Kind>,
    /// Argument kinds of opaque calls.
    pub call_args: Vec<Kind>,
    /// Whether it depends on a per-call seed (cotangent, tangent).
    pub per_call: bool,
    /// Whether every entry is 0 or 1.
    pub mask: bool,
    /// Whether it is a vector of a support's length (a gather, or elementwise on one).
    pub gathered: bool,
    /// Its value, when it is a finite scalar constant.
    pub constant: Option<f64>,
}

/// The e-graph type of the pipeline.
pub type FoldEGraph = EGraph<Node, FoldAnalysis>;

fn fold_constant(node: &Node, c: &dyn Fn(Id) -> Option<f64>) -> Option<f64> {
    let v = match node {
        Node::Num(l) => l.get(),
        Node::Add([a, b]) => c(*a)? + c(*b)?,
        Node::Neg(a) => -c(*a)?,
        Node::Mul([a, b]) => c(*a)? * c(*b)?,
        Node::Div([a, b]) => c(*a)? / c(*b)?,
        Node::Recip(a) => 1.0 / c(*a)?,
        Node::SafeRecip(a) => match c(*a)? {
            0.0 => 0.0,
            x => 1.0 / x,
        },
        Node::Sqrt(a) => c(*a)?.sqrt(),
        Node::Exp(a) => c(*a)?.exp(),
        Node::Ln(a) => c(*a)?.ln(),
        _ => return None,
    };
    v.is_finite().then_some(v)
}

/// Whether `node` (of `kind`) is a vector on a support: a gather, or elementwise on an
/// operand that is (`gathered` tells of the operands).
pub fn on_support(node: &Node, kind: Kind, gathered: &dyn Fn(Id) -> bool) -> bool {
    use egg::Language;
    kind == Kind::Vector
        && match node {
            Node::GatherV(_) => true,
            other if preserves_length(other) => other.children().iter().any(|c| gathered(*c)),
            _ => false,
        }
}

/// Whether `node`'s result has its array operands' length (elementwise, scaling).
fn preserves_length(node: &Node) -> bool {
    crate::ir::is_elementwise_unary(node)
        || matches!(
            node,
            Node::Add(_)
                | Node::Mul(_)
                | Node::Div(_)
                | Node::CMul(_)
                | Node::CDiv(_)
                | Node::AddS(_)
                | Node::Powi(_)
                | Node::Powf(_)
                | Node::Max(_)
                | Node::Min(_)
                | Node::Clamp(_)
                | Node::SoftThreshold(_)
                | Node::MaskIn(_)
                | Node::Gt(_)
                | Node::Lt(_)
                | Node::Ge(_)
                | Node::Le(_)
                | Node::Outside(_)
        )
}

impl Analysis<Node> for FoldAnalysis {
    type Data = Data;

    fn make(egraph: &mut FoldEGraph, enode: &Node, _id: Id) -> Data {
        let child = |id: Id| {
            let d = &egraph[id].data;
            ChildInfo {
                kind: d.kind,
                tuple: d.tuple.clone(),
                call_args: d.call_args.clone(),
                lit: d.constant,
            }
        };
        let (kind, tuple) = infer_kind(enode, &egraph.analysis.vars, &child);
        let call_args = match enode {
            Node::Call(_, args) => args.iter().map(|a| egraph[*a].data.kind).collect(),
            _ => Vec::new(),
        };
        let per_call = match enode {
            Node::Var(s) => egraph
                .analysis
                .vars
                .get(s)
                .is_some_and(|v| v.role.is_seed()),
            other => {
                use egg::Language;
                other.children().iter().any(|c| egraph[*c].data.per_call)
            }
        };
        let mask = match enode {
            Node::MaskIn(_)
            | Node::Gt(_)
            | Node::Lt(_)
            | Node::Ge(_)
            | Node::Le(_)
            | Node::Outside(_)
            | Node::ArgMax(_)
            | Node::ArgMin(_) => true,
            Node::CMul([a, b]) => egraph[*a].data.mask && egraph[*b].data.mask,
            Node::GatherV([a, _]) => egraph[*a].data.mask,
            _ => false,
        };
        let gathered = on_support(enode, kind, &|c| egraph[c].data.gathered);
        let constant = if kind == Kind::Scalar {
            fold_constant(enode, &|id| egraph[id].data.constant)
        } else {
            None
        };
        Data {
            kind,
            tuple,
            call_args,
            per_call,
            mask,
            gathered,
            constant,
        }
    }

    fn merge(&mut self, to: &mut Data, from: Data) -> DidMerge {
        let mut changed_to = false;
        let mut changed_from = false;
        // Equal values: one side known constant, mask or seed-free makes both so.
        if to.constant.is_none() && from.constant.is_some() {
            to.constant = from.constant;
            changed_to = true;
        } else if to.constant.is_some() && from.constant.is_none() {
            changed_from = true;
        }
        if !to.mask && from.mask {
            to.mask = true;
            changed_to = true;
        } else if to.mask && !from.mask {
            changed_from = true;
        }
        if !to.gathered && from.gathered {
            to.gathered = true;
            changed_to = true;
        } else if to.gathered && !from.gathered {
            changed_from = true;
        }
        if to.per_call && !from.per_call {
            to.per_call = false;
            changed_to = true;
        } else if !to.per_call && from.per_call {
            changed_from = true;
        }
        DidMerge(changed_to, changed_from)
    }

    fn modify(egraph: &mut FoldEGraph, id: Id) {
        if let Some(c) = egraph[id].data.constant {
            let lit = egraph.add(Node::Num(Lit::new(c)));
            egraph.union(id, lit);
        }
    }
}
