//! Every kind of linear map of the derivative table is consistent with its adjoint:
//! `⟨ȳ, L t⟩ = ⟨Lᵀ ȳ, t⟩` for random data, with `L t` and `Lᵀ ȳ` built as IR terms by
//! `Map::forward` / `Map::adjoint` and evaluated by the interpreter.

use egg::{Id, Symbol};
use fold_codegen::diff::map::Map;
use fold_codegen::interp::{Interpreter, Value};
use fold_codegen::ir::graph::{Graph, VarInfo};
use fold_codegen::ir::{Kind, Role};
use nalgebra::{DMatrix, DVector};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

const N: usize = 4;
const M: usize = 3;

/// The data every map may read, by name and kind.
const DATA: &[(&str, Kind)] = &[
    ("s", Kind::Scalar),
    ("k", Kind::Scalar),
    ("d", Kind::Vector),
    ("u", Kind::Vector),
    ("b3", Kind::Vector),
    ("a", Kind::Matrix),
    ("a43", Kind::Matrix),
    ("mm", Kind::Matrix),
    ("msolve", Kind::Matrix),
];

struct Case {
    name: &'static str,
    map: fn(&HashMap<&str, Id>) -> Map,
    /// The tangent's and the output's shapes: `(rows, cols)`, `(1, 1)` a scalar, `(n, 0)` a
    /// vector.
    input: (usize, usize),
    output: (usize, usize),
}

fn value(r: &mut StdRng, shape: (usize, usize)) -> Value {
    match shape {
        (1, 1) => Value::Scalar(r.random_range(-1.0..1.0)),
        (n, 0) => Value::Vector(DVector::from_fn(n, |_, _| r.random_range(-1.0..1.0))),
        (n, m) => Value::Matrix(DMatrix::from_fn(n, m, |_, _| r.random_range(-1.0..1.0))),
    }
}

fn kind_of(shape: (usize, usize)) -> Kind {
    match shape {
        (1, 1) => Kind::Scalar,
        (_, 0) => Kind::Vector,
        _ => Kind::Matrix,
    }
}

/// `Σ aᵢ bᵢ` over the entries (column-major for matrices).
fn inner(a: &Value, b: &Value) -> f64 {
    let (a, b) = (a.entries(), b.entries());
    assert_eq!(a.len(), b.len(), "shapes differ");
    a.iter().zip(&b).map(|(x, y)| x * y).sum()
}

fn cases() -> Vec<Case> {
    let v = (N, 0);
    let mat = (N, N);
    let one = (1, 1);
    let c = |name, map, input, output| Case {
        name,
        map,
        input,
        output,
    };
    vec![
        c("identity", |_| Map::Identity, v, v),
        c("negated", |_| Map::Negated(Box::new(Map::Identity)), v, v),
        c("scale", |d| Map::Scale(d["s"]), v, v),
        c(
            "scaled",
            |d| Map::Scaled(d["s"], Box::new(Map::MatLeft(d["a"]))),
            v,
            v,
        ),
        c("div_by", |d| Map::DivBy(d["s"]), v, v),
        c("diag", |d| Map::Diag(d["d"]), v, v),
        c("diag_scalar", |d| Map::Diag(d["s"]), v, v),
        c("hadamard", |d| Map::Hadamard(d["d"]), v, v),
        c("hadamard_right", |d| Map::HadamardRight(d["d"]), v, v),
        c("div_diag", |d| Map::DivDiag(d["d"]), v, v),
        c("times", |d| Map::Times(d["u"]), one, v),
        c("times_matrix", |d| Map::Times(d["a"]), one, mat),
        c(
            "ray",
            |d| Map::Ray {
                dir: d["u"],
                per: d["k"],
            },
            one,
            v,
        ),
        c("broadcast", |d| Map::Broadcast(d["u"]), one, v),
        c("total", |d| Map::Total(d["u"]), v, one),
        c("inner", |d| Map::Inner(d["u"]), v, one),
        c("dot", |d| Map::Dot(d["u"]), v, one),
        c("mat_left", |d| Map::MatLeft(d["a"]), v, v),
        c("mat_left_matrix", |d| Map::MatLeft(d["a"]), mat, mat),
        c("mat_right", |d| Map::MatRight(d["b3"]), (N, M), v),
        c("mat_right_matrix", |d| Map::MatRight(d["a43"]), mat, (N, M)),
        c("outer_with", |d| Map::OuterWith(d["u"]), v, mat),
        c("outer_of", |d| Map::OuterOf(d["u"]), v, mat),
        c("transpose", |_| Map::Transpose, mat, mat),
        c("diagonalize", |_| Map::Diagonalize, v, mat),
        c("diagonal", |_| Map::Diagonal, mat, v),
        c("row_totals", |d| Map::RowTotals(d["mm"]), (N, M), v),
        c("centered", |d| Map::Centered { s: d["d"], k: None }, v, v),
        c(
            "centered_k",
            |d| Map::Centered {
                s: d["d"],
                k: Some(d["k"]),
            },
            v,
            v,
        ),
        c("perp", |d| Map::Perp(d["u"]), v, v),
        c(
            "solve",
            |d| Map::Solve {
                m: d["msolve"],
                transposed: false,
            },
            v,
            v,
        ),
        c(
            "solve_transposed",
            |d| Map::Solve {
                m: d["msolve"],
                transposed: true,
            },
            v,
            v,
        ),
        c(
            "chain",
            |d| {
                Map::Chain(vec![
                    Map::MatLeft(d["a"]),
                    Map::Hadamard(d["d"]),
                    Map::Scale(d["s"]),
                ])
            },
            v,
            v,
        ),
    ]
}

/// The variant of a map: no wildcard, so a new kind of map does not compile here until a
/// case covers it.
fn variant(m: &Map) -> &'static str {
    match m {
        Map::Identity => "Identity",
        Map::Negated(_) => "Negated",
        Map::Scale(_) => "Scale",
        Map::Scaled(..) => "Scaled",
        Map::DivBy(_) => "DivBy",
        Map::Diag(_) => "Diag",
        Map::Hadamard(_) => "Hadamard",
        Map::HadamardRight(_) => "HadamardRight",
        Map::DivDiag(_) => "DivDiag",
        Map::Times(_) => "Times",
        Map::Ray { .. } => "Ray",
        Map::Broadcast(_) => "Broadcast",
        Map::Total(_) => "Total",
        Map::Inner(_) => "Inner",
        Map::Dot(_) => "Dot",
        Map::MatLeft(_) => "MatLeft",
        Map::MatRight(_) => "MatRight",
        Map::OuterWith(_) => "OuterWith",
        Map::OuterOf(_) => "OuterOf",
        Map::Transpose => "Transpose",
        Map::Diagonalize => "Diagonalize",
        Map::Diagonal => "Diagonal",
        Map::RowTotals(_) => "RowTotals",
        Map::Centered { .. } => "Centered",
        Map::Perp(_) => "Perp",
        Map::Solve { .. } => "Solve",
        Map::Chain(_) => "Chain",
    }
}

#[test]
fn every_map_kind_agrees_with_its_adjoint() {
    let mut covered = std::collections::HashSet::new();
    for case in cases() {
        for seed in 0..4u64 {
            let mut r = StdRng::seed_from_u64(seed);
            let mut vars: HashMap<Symbol, VarInfo> = HashMap::new();
            let info = |kind| VarInfo {
                kind,
                role: Role::Const,
            };
            for &(name, kind) in DATA {
                vars.insert(Symbol::from(name), info(kind));
            }
            vars.insert(Symbol::from("t"), info(kind_of(case.input)));
            vars.insert(Symbol::from("ybar"), info(kind_of(case.output)));
            let mut g = Graph::new(vars);
            let ids: HashMap<&str, Id> = DATA
                .iter()
                .map(|&(name, _)| (name, g.var(Symbol::from(name))))
                .collect();
            let (t, ybar) = (g.var(Symbol::from("t")), g.var(Symbol::from("ybar")));
            let map = (case.map)(&ids);
            covered.insert(variant(&map));
            let y = map.forward(&mut g, t);
            let tbar = map.adjoint(&mut g, ybar);

            let mut env: HashMap<Symbol, Value> = HashMap::new();
            let shapes = [
                ("s", (1, 1)),
                ("k", (1, 1)),
                ("d", (N, 0)),
                ("u", (N, 0)),
                ("b3", (M, 0)),
                ("a", (N, N)),
                ("a43", (N, M)),
                ("mm", (N, M)),
            ];
            for (name, shape) in shapes {
                env.insert(Symbol::from(name), value(&mut r, shape));
            }
            // Divisors away from zero, a well-conditioned solve, a positive count.
            if let Value::Vector(d) = &env[&Symbol::from("d")] {
                let d = d.map(|x| x.signum() * (0.5 + x.abs()));
                env.insert(Symbol::from("d"), Value::Vector(d));
            }
            env.insert(
                Symbol::from("s"),
                Value::Scalar(1.0 + r.random_range(0.0..1.0)),
            );
            env.insert(
                Symbol::from("k"),
                Value::Scalar(2.0 + r.random_range(0.0..1.0)),
            );
            let msolve = DMatrix::from_fn(N, N, |i, j| {
                r.random_range(-0.3..0.3) + if i == j { 2.0 } else { 0.0 }
            });
            env.insert(Symbol::from("msolve"), Value::Matrix(msolve));
            let tv = value(&mut r, case.input);
            let yv = value(&mut r, case.output);
            env.insert(Symbol::from("t"), tv.clone());
            env.insert(Symbol::from("ybar"), yv.clone());

            let mut it = Interpreter::new(&g, &env);
            let (ly, lty) = (
                it.eval(y)
                    .unwrap_or_else(|e| panic!("{}: L t: {e}", case.name)),
                it.eval(tbar)
                    .unwrap_or_else(|e| panic!("{}: Lᵀ ȳ: {e}", case.name)),
            );
            let (lhs, rhs) = (inner(&yv, &ly), inner(&lty, &tv));
            assert!(
                (lhs - rhs).abs() <= 1e-12 * (1.0 + lhs.abs()),
                "{} (seed {seed}): ⟨ȳ, L t⟩ = {lhs} but ⟨Lᵀ ȳ, t⟩ = {rhs}",
                case.name
            );
        }
    }
    assert_eq!(covered.len(), 27, "every kind of map has a case");
}
