//! Rewrite rules, in phases. No raw associativity or commutativity of `+`: sums are
//! simplified by targeted cancellation rules, which keeps saturation small.

use super::analysis::{FoldAnalysis, FoldEGraph};
use crate::ir::Node;
use egg::{rewrite as rw, Id, Rewrite, Subst, Var};

/// A rewrite rule of the IR.
pub type R = Rewrite<Node, FoldAnalysis>;

fn var(name: &str) -> Var {
    name.parse()
        .unwrap_or_else(|_| panic!("bad pattern variable {name}"))
}

/// `?v` is a 0/1 mask.
fn is_mask(v: &str) -> impl Fn(&mut FoldEGraph, Id, &Subst) -> bool {
    let v = var(v);
    move |eg, _, s| eg[s[v]].data.mask
}

/// `?v` is a scalar.
fn is_scalar(v: &str) -> impl Fn(&mut FoldEGraph, Id, &Subst) -> bool {
    let v = var(v);
    move |eg, _, s| eg[s[v]].data.kind == crate::ir::Kind::Scalar
}

/// `?v` is a vector.
fn is_vector(v: &str) -> impl Fn(&mut FoldEGraph, Id, &Subst) -> bool {
    let v = var(v);
    move |eg, _, s| eg[s[v]].data.kind == crate::ir::Kind::Vector
}

/// A gather moves inside elementwise operations, so that a term read only on a support
/// (a reduced matrix's diagonal) is computed only there; the cost model charges a
/// gathered vector less than a full one.
fn gather_pushdown() -> Vec<R> {
    let mut rules: Vec<R> = [
        "neg", "recip", "recip0", "exp", "ln", "sin", "cos", "tanh", "sqrt", "abs", "sigmoid",
        "softplus", "relu", "sign",
    ]
    .into_iter()
    .map(|f| {
        let name = format!("gather-{f}");
        let from: egg::Pattern<Node> = format!("(gv ({f} ?a) ?s)").parse().expect("pattern");
        let to: egg::Pattern<Node> = format!("({f} (gv ?a ?s))").parse().expect("pattern");
        egg::Rewrite::new(name, from, to).expect("rule")
    })
    .collect();
    rules.extend([
        rw!("gather-add"; "(gv (+ ?a ?b) ?s)" => "(+ (gv ?a ?s) (gv ?b ?s))" if is_vector("?b")),
        rw!("gather-cmul"; "(gv (.* ?a ?b) ?s)" => "(.* (gv ?a ?s) (gv ?b ?s))" if is_vector("?b")),
        rw!("gather-cdiv"; "(gv (./ ?a ?b) ?s)" => "(./ (gv ?a ?s) (gv ?b ?s))" if is_vector("?b")),
        rw!("gather-scale"; "(gv (* ?k ?a) ?s)" => "(* ?k (gv ?a ?s))"),
        rw!("gather-div"; "(gv (/ ?a ?k) ?s)" => "(/ (gv ?a ?s) ?k)"),
        rw!("gather-adds"; "(gv (+s ?a ?k) ?s)" => "(+s (gv ?a ?s) ?k)"),
        rw!("gather-powi"; "(gv (powi ?a ?k) ?s)" => "(powi (gv ?a ?s) ?k)"),
        rw!("gather-powf"; "(gv (powf ?a ?k) ?s)" => "(powf (gv ?a ?s) ?k)" if is_scalar("?k")),
    ]);
    rules
}

/// Identity, zero-free cancellation, transpose pushing, scalar factoring, diagonal and mask
/// algebra: rules that never make a term worse.
pub fn simplify() -> Vec<R> {
    let mut rules = vec![
        rw!("neg-neg"; "(neg (neg ?a))" => "?a"),
        rw!("T-T"; "(T (T ?a))" => "?a"),
        rw!("T-add"; "(T (+ ?a ?b))" => "(+ (T ?a) (T ?b))"),
        rw!("T-neg"; "(T (neg ?a))" => "(neg (T ?a))"),
        rw!("T-scale"; "(T (* ?s ?a))" => "(* ?s (T ?a))"),
        rw!("T-eye"; "(T (eye ?x))" => "(eye ?x)"),
        rw!("T-diag"; "(T (diag ?d))" => "(diag ?d)"),
        rw!("T-mm"; "(T (mm ?a ?b))" => "(mm (T ?b) (T ?a))"),
        rw!("T-outer"; "(T (outer ?a ?b))" => "(outer ?b ?a)"),
        rw!("gather-T"; "(gm (T ?a) ?s)" => "(T (gm ?a ?s))"),
        rw!("cancel-left"; "(+ ?a (neg (+ ?a ?b)))" => "(neg ?b)"),
        rw!("cancel-right"; "(+ (+ ?a ?b) (neg ?a))" => "?b"),
        rw!("cancel-nested"; "(+ ?a (neg (+ (+ ?a ?b) ?c)))" => "(neg (+ ?b ?c))"),
        rw!("neg-sum-of-negs"; "(neg (+ (neg ?a) (neg ?b)))" => "(+ ?a ?b)"),
        rw!("neg-sum-neg-left"; "(neg (+ (neg ?a) ?b))" => "(+ ?a (neg ?b))"),
        rw!("add-zero-scaled"; "(+ ?a (* 0 ?b))" => "?a"),
        rw!("add-zero-scaled-left"; "(+ (* 0 ?b) ?a)" => "?a"),
        rw!("scalar-times-zero"; "(* ?a 0)" => "0"),
        rw!("zero-times-scalar"; "(* 0 ?a)" => "0" if is_scalar("?a")),
        // A sign moves onto the scalar factor: one scalar negation instead of n.
        rw!("neg-scale"; "(neg (* ?s ?a))" => "(* (neg ?s) ?a)"),
        rw!("scale-scale"; "(* ?s (* ?t ?a))" => "(* (* ?s ?t) ?a)"),
        rw!("scale-one"; "(* 1 ?a)" => "?a"),
        rw!("scale-minus-one"; "(* -1 ?a)" => "(neg ?a)"),
        rw!("scale-neg"; "(* ?s (neg ?a))" => "(neg (* ?s ?a))"),
        rw!("div-one"; "(/ ?a 1)" => "?a"),
        rw!("mv-scale-matrix"; "(mv (* ?s ?m) ?x)" => "(* ?s (mv ?m ?x))"),
        rw!("mv-scale-vector"; "(mv ?m (* ?s ?x))" => "(* ?s (mv ?m ?x))"),
        rw!("mv-neg-matrix"; "(mv (neg ?m) ?x)" => "(neg (mv ?m ?x))"),
        rw!("mv-neg-vector"; "(mv ?m (neg ?x))" => "(neg (mv ?m ?x))"),
        rw!("mv-eye"; "(mv (eye ?y) ?x)" => "?x"),
        rw!("mm-eye-left"; "(mm (eye ?y) ?a)" => "?a"),
        rw!("mm-eye-right"; "(mm ?a (eye ?y))" => "?a"),
        rw!("mm-scale-left"; "(mm (* ?s ?a) ?b)" => "(* ?s (mm ?a ?b))"),
        rw!("mm-scale-right"; "(mm ?a (* ?s ?b))" => "(* ?s (mm ?a ?b))"),
        rw!("mv-diag"; "(mv (diag ?d) ?x)" => "(.* ?d ?x)"),
        rw!("mm-diag-diag"; "(mm (diag ?a) (diag ?b))" => "(diag (.* ?a ?b))"),
        rw!("mask-idem"; "(.* ?m (.* ?m ?x))" => "(.* ?m ?x)" if is_mask("?m")),
        rw!("mask-idem-right"; "(.* (.* ?x ?m) ?m)" => "(.* ?x ?m)" if is_mask("?m")),
        rw!("mask-square"; "(.* ?m ?m)" => "?m" if is_mask("?m")),
        rw!("cmul-comm"; "(.* ?a ?b)" => "(.* ?b ?a)"),
        rw!("cmul-scale"; "(.* ?a (* ?s ?b))" => "(* ?s (.* ?a ?b))"),
        rw!("cmul-neg"; "(.* ?a (neg ?b))" => "(neg (.* ?a ?b))"),
        rw!("dot-scale"; "(dot ?a (* ?s ?b))" => "(* ?s (dot ?a ?b))"),
        rw!("dot-neg"; "(dot ?a (neg ?b))" => "(neg (dot ?a ?b))"),
        rw!("mask-on-support"; "(.* (gv ?m (supp ?m)) ?x)" => "?x"),
        rw!("diag-on-support"; "(diag (gv ?m (supp ?m)))" => "(eye (gv ?m (supp ?m)))"),
        rw!("add-self"; "(+ ?a ?a)" => "(* 2 ?a)"),
        rw!("diag-scale"; "(diag (* ?s ?d))" => "(* ?s (diag ?d))"),
        // Diagonals combine before they become matrices: one `diag` of a vector sum,
        // never a dense sum of diagonal matrices.
        rw!("diag-add"; "(+ (diag ?a) (diag ?b))" => "(diag (+ ?a ?b))"),
        rw!("diag-neg"; "(neg (diag ?a))" => "(diag (neg ?a))"),
        rw!("diag-scale-in"; "(* ?s (diag ?d))" => "(diag (* ?s ?d))"),
        rw!("diag-div"; "(/ (diag ?d) ?s)" => "(diag (/ ?d ?s))"),
    ];
    rules.extend(gather_pushdown());
    rules
}

/// Distribution and factoring in both directions; the cost model picks.
pub fn distribute() -> Vec<R> {
    let mut rules = vec![
        rw!("factor-scale"; "(+ (* ?s ?a) (* ?s ?b))" => "(* ?s (+ ?a ?b))"),
        rw!("factor-mask"; "(+ (.* ?m ?a) (.* ?m ?b))" => "(.* ?m (+ ?a ?b))"),
        rw!("factor-mv"; "(+ (mv ?m ?a) (mv ?m ?b))" => "(mv ?m (+ ?a ?b))"),
        rw!("factor-mv-neg"; "(+ (mv ?m ?a) (neg (mv ?m ?b)))" => "(mv ?m (+ ?a (neg ?b)))"),
        rw!("factor-mv-scaled"; "(+ ?a (* ?s (mv ?m ?a)))" => "(mv (+ (eye ?a) (* ?s ?m)) ?a)"),
        // The reverse of `mv-scale-matrix`: a product takes its scalar for free (the
        // kernels' `α`), where scaling its result is another pass over a vector.
        rw!("scale-into-mv"; "(* ?s (mv ?m ?x))" => "(mv (* ?s ?m) ?x)" if is_scalar("?s")),
    ];
    rules.extend(rw!("distribute-mv-vector"; "(mv ?m (+ ?a ?b))" <=> "(+ (mv ?m ?a) (mv ?m ?b))"));
    rules.extend(rw!("distribute-mv-matrix"; "(mv (+ ?m ?n) ?x)" <=> "(+ (mv ?m ?x) (mv ?n ?x))"));
    rules.extend(rw!("distribute-mask"; "(.* ?m (+ ?a ?b))" <=> "(+ (.* ?m ?a) (.* ?m ?b))"));
    rules
}
