//! The cost model: floating-point work by kind (scalar 1, vector n, matrix·vector n²,
//! matrix·matrix n³) with `n` a symbolic size taken large, per-call work weighted far
//! above once-per-linearization work.

use super::analysis::{Data, FoldEGraph};
use crate::ir::{Kind, Node};
use egg::{Id, Language};

/// The size `n` stands for when costs are compared.
pub const N: f64 = 1e4;
/// How much more a flop per product counts than a flop per linearization.
pub const PER_CALL_WEIGHT: f64 = 100.0;
/// The share of `n` a support's length stands for: a gathered vector's work counts this
/// much of a full one's.
pub const SUPPORT_SHARE: f64 = 0.5;

/// Work of one operation, by kind: `[scalar, vector, matvec, matmul]`.
pub fn op_counts(node: &Node, kind: Kind, child: &dyn Fn(Id) -> Kind) -> [usize; 4] {
    let arrays = |id: Id| child(id).is_array();
    let elementwise = if kind == Kind::Matrix {
        [0, 0, 1, 0]
    } else if kind == Kind::Vector {
        [0, 1, 0, 0]
    } else {
        [1, 0, 0, 0]
    };
    match node {
        Node::Num(_)
        | Node::Var(_)
        | Node::Zero
        | Node::Get(_)
        | Node::Support(_)
        | Node::Card(_) => [0; 4],
        // Views: read through by the products that use them.
        Node::Transpose(_) => [0; 4],
        Node::Mul([_, x]) | Node::Neg(x) if child(*x) == Kind::Matrix => [0; 4],
        Node::Eye(_) | Node::Diag(_) | Node::Ones(_) => [0, 1, 0, 0],
        Node::MatVec([a, _]) => {
            if child(*a) == Kind::Sparse {
                [0, 4, 0, 0]
            } else {
                [0, 0, 1, 0]
            }
        }
        Node::MatMul(_) => [0, 0, 0, 1],
        Node::Outer(_) => [0, 0, 1, 0],
        Node::Dot([a, _]) | Node::Sum(a) | Node::Norm(a) | Node::NormSq(a) => {
            if child(*a) == Kind::Matrix {
                [0, 0, 1, 0]
            } else if arrays(*a) {
                [0, 1, 0, 0]
            } else {
                [1, 0, 0, 0]
            }
        }
        Node::Softmax(_) | Node::LogSumExp(_) => [0, 3, 0, 0],
        Node::ProjSimplex(_) | Node::ProjCappedSimplex(_) => [0, 10, 0, 0],
        Node::ProjL2Ball(_) => [0, 2, 0, 0],
        Node::Solve(_) | Node::SolveT(_) => [0, 0, 1, 0],
        Node::GatherV(_) | Node::Diagonal(_) | Node::MaxEntry(_) | Node::MinEntry(_) => {
            [0, 1, 0, 0]
        }
        Node::GatherM(_) | Node::GatherRows(_) | Node::GatherCols(_) | Node::ColumnSum(_) => {
            [0, 0, 1, 0]
        }
        Node::Scatter(_) => [0, 1, 0, 0],
        Node::Call(..) | Node::CallVjp(_) | Node::CallJvp(_) => [0, 0, 1, 0],
        _ => elementwise,
    }
}

/// Flops of counts at size [`N`].
pub fn weight(counts: [usize; 4]) -> f64 {
    counts[0] as f64
        + counts[1] as f64 * N
        + counts[2] as f64 * N * N
        + counts[3] as f64 * N * N * N
}

/// Extraction cost of one e-node without its operands': flops, per-call work weighted by
/// [`PER_CALL_WEIGHT`], plus a tiny charge per node that prefers smaller terms among
/// equal-flop ones. A term costs the sum over its e-nodes.
pub fn own_cost(egraph: &FoldEGraph, enode: &Node) -> f64 {
    let data = |id: Id| -> &Data { &egraph[id].data };
    let per_call = match enode {
        Node::Var(s) => egraph
            .analysis
            .vars
            .get(s)
            .is_some_and(|v| v.role.is_seed()),
        other => other.children().iter().any(|c| data(*c).per_call),
    };
    let child = |id: Id| data(id).kind;
    let kind = match enode {
        Node::Num(_) => Kind::Scalar,
        other => super::node_kind(egraph, other),
    };
    let mut own = weight(op_counts(enode, kind, &child));
    if super::analysis::on_support(enode, kind, &|c| data(c).gathered) {
        own *= SUPPORT_SHARE;
    }
    // A transpose is free on an argument (products read it transposed) or a gather
    // (which gathers transposed); of any other computed matrix it is a copy.
    if let Node::Transpose(x) = enode {
        let cheap = egraph[*x]
            .nodes
            .iter()
            .any(|n| matches!(n, Node::Var(_) | Node::GatherM(_) | Node::Transpose(_)));
        if !cheap && data(*x).kind == Kind::Matrix {
            own += 0.5 * N * N;
        }
    }
    let own = if per_call { own * PER_CALL_WEIGHT } else { own };
    own + 1e-3
}
