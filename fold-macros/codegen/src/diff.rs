//! Symbolic differentiation of IR terms: reverse mode (VJP, adjoints accumulated over
//! the DAG), forward mode (JVP) and structured Jacobians (the forward mode applied to an
//! identity seed, giving matrix terms such as `diag(m)(I − αQ)`).
//!
//! Every primitive's derivative is written with IR operations (masks, diagonals, outer
//! products, selects), so derivatives stay readable and simplifiable.

use crate::graph::Graph;
use crate::ir::{Kind, Node};
use egg::{Id, Language};
use std::collections::HashMap;

/// The factor `f'(x)` of an elementwise function `y = f(x)`, as a term of the shape of `x`;
/// `None` when the derivative is zero (sign, masks).
fn elementwise_factor(g: &mut Graph, node: &Node, y: Id) -> Option<Id> {
    let f = match *node {
        Node::Neg(_) => {
            let one = g.num(-1.0);
            return Some(one);
        }
        Node::Recip(_) => {
            let yy = g.cmul(y, y);
            g.neg(yy)
        }
        Node::Exp(_) => y,
        Node::Ln(x) => g.add(Node::Recip(x)),
        Node::Sin(x) => g.add(Node::Cos(x)),
        Node::Cos(x) => {
            let s = g.add(Node::Sin(x));
            g.neg(s)
        }
        Node::Tanh(_) => {
            let yy = g.cmul(y, y);
            g.one_minus(yy)
        }
        Node::Sqrt(_) => {
            // sqrt'(0) := 0 (see fold_runtime::ops, removable kinks).
            let r = g.add(Node::SafeRecip(y));
            g.scale(0.5, r)
        }
        Node::Abs(x) => g.add(Node::Sign(x)),
        Node::Sigmoid(_) => {
            let om = g.one_minus(y);
            g.cmul(y, om)
        }
        Node::Softplus(x) => g.add(Node::Sigmoid(x)),
        Node::Relu(x) => {
            let zero = g.num(0.0);
            g.add(Node::Gt([x, zero]))
        }
        Node::Powi([x, k]) => {
            let k = g.lit(k).unwrap_or(1.0);
            if k == 1.0 {
                return Some(g.num(1.0));
            }
            let p = if k == 2.0 {
                x
            } else {
                let km1 = g.num(k - 1.0);
                g.add(Node::Powi([x, km1]))
            };
            g.scale(k, p)
        }
        Node::Powf([x, c]) => {
            if g.lit(c).is_some_and(|c| c >= 1.0) {
                // c x^(c−1) is finite everywhere for c ≥ 1.
                let m1 = g.num(-1.0);
                let cm1 = g.sum2(c, m1);
                let p = g.add(Node::Powf([x, cm1]));
                g.mul(c, p)
            } else {
                // c xᶜ / x with 1/0 := 0: the slope at x = 0 is taken as 0.
                let r = g.add(Node::SafeRecip(x));
                let p = g.cmul(y, r);
                g.mul(c, p)
            }
        }
        _ => return None,
    };
    Some(f)
}

/// `factor ⊙ t`, where a scalar factor scales.
fn apply_factor(g: &mut Graph, factor: Id, t: Id) -> Id {
    if g.kind(factor) == Kind::Scalar {
        if g.lit(factor) == Some(-1.0) {
            return g.neg(t);
        }
        return g.mul(factor, t);
    }
    g.cmul(factor, t)
}

/// Elementwise division; a scalar divisor divides.
fn ediv(g: &mut Graph, a: Id, b: Id) -> Id {
    if g.kind(b) == Kind::Scalar {
        g.div(a, b)
    } else {
        g.add(Node::CDiv([a, b]))
    }
}

/// Which nodes depend on any of `vars` (by id).
fn active_set(g: &Graph, vars: &[Id]) -> Vec<bool> {
    let mut act = vec![false; g.len()];
    for (i, node) in g.nodes().iter().enumerate() {
        act[i] =
            vars.contains(&Id::from(i)) || node.children().iter().any(|c| act[usize::from(*c)]);
    }
    act
}

/// Projection supports and counts used by the simplex derivatives.
fn simplex_support(g: &mut Graph, y: Id, capped: bool) -> (Id, Id) {
    let zero = g.num(0.0);
    let s = if capped {
        let one = g.num(1.0);
        g.add(Node::MaskIn([y, zero, one]))
    } else {
        g.add(Node::Gt([y, zero]))
    };
    let count = g.add(Node::Sum(s));
    // An empty free set (capped simplex at a vertex) has a zero Jacobian; max(|F|, 1)
    // keeps the division finite there.
    let one = g.num(1.0);
    let k = if capped {
        g.add(Node::Max([count, one]))
    } else {
        count
    };
    (s, k)
}

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
    let acc = accumulate;
    for (o, s) in outputs.iter().zip(seeds) {
        if act[usize::from(*o)] {
            acc(g, &mut adj, *o, *s);
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
        if let Node::Call(_, args) = &node {
            let Some(cots) = call_cots.remove(&y) else {
                continue;
            };
            let nout = g.tuple_kinds(y).len();
            let mut ch = vec![y];
            for k in 0..nout {
                let c = match cots.get(&k) {
                    Some(&c) => c,
                    None => g.add(Node::Zero),
                };
                ch.push(c);
            }
            let v = g.add(Node::CallVjp(ch.into_boxed_slice()));
            for (j, a) in args.iter().enumerate() {
                if act[usize::from(*a)] {
                    let jj = g.num(j as f64);
                    let gj = g.add(Node::Get([v, jj]));
                    acc(g, &mut adj, *a, gj);
                }
            }
            continue;
        }
        let Some(&ybar) = adj.get(&y) else { continue };
        let ch = node.children().to_vec();
        let on = |k: usize| act[usize::from(ch[k])];
        let mut push = |g: &mut Graph, k: usize, t: Id| {
            if act[usize::from(ch[k])] {
                acc(g, &mut adj, ch[k], t);
            }
        };
        match node {
            Node::Add([_, _]) => {
                push(g, 0, ybar);
                push(g, 1, ybar);
            }
            Node::Mul([s, x]) => {
                if on(0) {
                    let t = g.inner(ybar, x);
                    push(g, 0, t);
                }
                if on(1) {
                    let t = g.mul(s, ybar);
                    push(g, 1, t);
                }
            }
            Node::Div([x, s]) => {
                if on(0) {
                    let t = g.div(ybar, s);
                    push(g, 0, t);
                }
                if on(1) {
                    let d = g.inner(ybar, y);
                    let q = g.div(d, s);
                    let t = g.neg(q);
                    push(g, 1, t);
                }
                let _ = x;
            }
            Node::MatVec([a, x]) => {
                if on(1) {
                    let at = g.transpose(a);
                    let t = g.matvec(at, ybar);
                    push(g, 1, t);
                }
                if on(0) {
                    let t = g.add(Node::Outer([ybar, x]));
                    push(g, 0, t);
                }
            }
            Node::MatMul([a, b]) => {
                if on(0) {
                    let bt = g.transpose(b);
                    let t = g.matmul(ybar, bt);
                    push(g, 0, t);
                }
                if on(1) {
                    let at = g.transpose(a);
                    let t = g.matmul(at, ybar);
                    push(g, 1, t);
                }
            }
            Node::Transpose(_) => {
                let t = g.transpose(ybar);
                push(g, 0, t);
            }
            Node::Diag(_) => {
                let t = g.diagonal(ybar);
                push(g, 0, t);
            }
            Node::Diagonal(_) => {
                let t = g.add(Node::Diag(ybar));
                push(g, 0, t);
            }
            Node::ColumnSum(m) => {
                // y = M 1: M̄ = ȳ 1ᵀ (every column of M̄ is ȳ).
                let t = g.transpose(m);
                let totals = g.add(Node::ColumnSum(t));
                let ones = g.add(Node::Ones(totals));
                let t = g.add(Node::Outer([ybar, ones]));
                push(g, 0, t);
            }
            Node::MaxEntry(x) | Node::MinEntry(x) => {
                let at = arg_indicator(g, &node, x);
                let t = g.mul(ybar, at);
                push(g, 0, t);
            }
            Node::Outer([a, b]) => {
                if on(0) {
                    let t = g.matvec(ybar, b);
                    push(g, 0, t);
                }
                if on(1) {
                    let yt = g.transpose(ybar);
                    let t = g.matvec(yt, a);
                    push(g, 1, t);
                }
            }
            Node::Dot([a, b]) => {
                if on(0) {
                    let t = g.mul(ybar, b);
                    push(g, 0, t);
                }
                if on(1) {
                    let t = g.mul(ybar, a);
                    push(g, 1, t);
                }
            }
            Node::Sum(x) => {
                let ones = g.add(Node::Ones(x));
                let t = g.mul(ybar, ones);
                push(g, 0, t);
            }
            Node::Norm(x) => {
                // ∂‖x‖ = xᵀ/‖x‖, 0 at x = 0.
                let r = g.add(Node::SafeRecip(y));
                let s = g.mul(ybar, r);
                let t = g.mul(s, x);
                push(g, 0, t);
            }
            Node::NormSq(x) => {
                let s = g.scale(2.0, ybar);
                let t = g.mul(s, x);
                push(g, 0, t);
            }
            Node::CMul([a, b]) => {
                if on(0) {
                    let t = g.cmul(ybar, b);
                    push(g, 0, t);
                }
                if on(1) {
                    let t = g.cmul(ybar, a);
                    push(g, 1, t);
                }
            }
            Node::CDiv([_, b]) => {
                if on(0) {
                    let t = ediv(g, ybar, b);
                    push(g, 0, t);
                }
                if on(1) {
                    let q = ediv(g, y, b);
                    let p = g.cmul(ybar, q);
                    let t = g.neg(p);
                    push(g, 1, t);
                }
            }
            Node::AddS([_, _]) => {
                push(g, 0, ybar);
                if on(1) {
                    let t = g.total(ybar);
                    push(g, 1, t);
                }
            }
            Node::Powf([x, _]) => {
                if on(0) {
                    if let Some(f) = elementwise_factor(g, &node, y) {
                        let t = apply_factor(g, f, ybar);
                        push(g, 0, t);
                    }
                }
                if on(1) {
                    let l = g.add(Node::Ln(x));
                    let yl = g.cmul(y, l);
                    let p = g.cmul(ybar, yl);
                    let t = g.total(p);
                    push(g, 1, t);
                }
            }
            Node::Max([x, s]) | Node::Min([x, s]) => {
                let is_max = matches!(node, Node::Max(_));
                let (m, rest) = if is_max {
                    (g.add(Node::Gt([x, s])), g.add(Node::Le([x, s])))
                } else {
                    (g.add(Node::Lt([x, s])), g.add(Node::Ge([x, s])))
                };
                if on(0) {
                    let t = g.cmul(ybar, m);
                    push(g, 0, t);
                }
                if on(1) {
                    let p = g.cmul(ybar, rest);
                    let t = g.total(p);
                    push(g, 1, t);
                }
            }
            Node::Clamp([x, lo, hi]) => {
                if on(0) {
                    let m = g.add(Node::MaskIn([x, lo, hi]));
                    let t = g.cmul(ybar, m);
                    push(g, 0, t);
                }
                if on(1) {
                    let m = g.add(Node::Le([x, lo]));
                    let p = g.cmul(ybar, m);
                    let t = g.total(p);
                    push(g, 1, t);
                }
                if on(2) {
                    let m = g.add(Node::Ge([x, hi]));
                    let p = g.cmul(ybar, m);
                    let t = g.total(p);
                    push(g, 2, t);
                }
            }
            Node::SoftThreshold([x, t_]) => {
                if on(0) {
                    let m = g.add(Node::Outside([x, t_]));
                    let t = g.cmul(ybar, m);
                    push(g, 0, t);
                }
                if on(1) {
                    let sg = g.add(Node::Sign(y));
                    let d = g.inner(ybar, sg);
                    let t = g.neg(d);
                    push(g, 1, t);
                }
            }
            Node::Softmax(_) => {
                let yv = g.cmul(y, ybar);
                let d = g.add(Node::Dot([y, ybar]));
                let dy = g.mul(d, y);
                let t = g.sub(yv, dy);
                push(g, 0, t);
            }
            Node::LogSumExp(z) => {
                let sm = g.add(Node::Softmax(z));
                let t = g.mul(ybar, sm);
                push(g, 0, t);
            }
            Node::ProjSimplex([_, _]) | Node::ProjCappedSimplex([_, _]) => {
                let capped = matches!(node, Node::ProjCappedSimplex(_));
                let (s, k) = simplex_support(g, y, capped);
                let sd = g.add(Node::Dot([s, ybar]));
                let d = g.div(sd, k);
                if on(0) {
                    let sv = g.cmul(s, ybar);
                    let ds = g.mul(d, s);
                    let t = g.sub(sv, ds);
                    push(g, 0, t);
                }
                push(g, 1, d);
            }
            Node::ProjL2Ball([z, r]) => {
                let rho = g.add(Node::Norm(z));
                let outside = g.add(Node::Gt([rho, r]));
                let zd = g.add(Node::Dot([z, ybar]));
                if on(0) {
                    let zz = g.add(Node::NormSq(z));
                    let c = g.div(zd, zz);
                    let cz = g.mul(c, z);
                    let perp = g.sub(ybar, cz);
                    // r/ρ read as ‖y‖/ρ (equal outside the ball): the derivative then
                    // stages y = try_proj_l2_ball(z, r), whose domain check (r ≥ 0)
                    // applies in backward as in solve.
                    let ny = g.add(Node::Norm(y));
                    let ratio = g.div(ny, rho);
                    let out = g.mul(ratio, perp);
                    let t = g.add(Node::Select([outside, out, ybar]));
                    push(g, 0, t);
                }
                if on(1) {
                    let d = g.div(zd, rho);
                    let zero = g.num(0.0);
                    let t = g.add(Node::Select([outside, d, zero]));
                    push(g, 1, t);
                }
            }
            Node::Solve([m, _]) | Node::SolveT([m, _]) => {
                // x = M⁻¹ r: r̄ = M⁻ᵀ x̄, M̄ = −r̄ xᵀ (−R̄ Xᵀ for a matrix right-hand side);
                // x = M⁻ᵀ r: r̄ = M⁻¹ x̄, M̄ = −x r̄ᵀ.
                let transposed = matches!(node, Node::SolveT(_));
                let rbar = if transposed {
                    g.add(Node::Solve([m, ybar]))
                } else {
                    g.add(Node::SolveT([m, ybar]))
                };
                push(g, 1, rbar);
                if on(0) {
                    let (a, b) = if transposed { (y, rbar) } else { (rbar, y) };
                    let o = if g.kind(y) == Kind::Matrix {
                        let bt = g.transpose(b);
                        g.matmul(a, bt)
                    } else {
                        g.add(Node::Outer([a, b]))
                    };
                    let t = g.neg(o);
                    push(g, 0, t);
                }
            }
            Node::Get([t, i]) => {
                let k = g.lit(i).unwrap_or(0.0) as usize;
                let entry = call_cots.entry(t).or_default();
                let new = match entry.get(&k) {
                    Some(&old) => g.sum2(old, ybar),
                    None => ybar,
                };
                call_cots.entry(t).or_default().insert(k, new);
            }
            ref n if crate::ir::is_elementwise_unary(n) => {
                if let Some(f) = elementwise_factor(g, n, y) {
                    let t = apply_factor(g, f, ybar);
                    push(g, 0, t);
                }
            }
            Node::Powi(_) => {
                if let Some(f) = elementwise_factor(g, &node, y) {
                    let t = apply_factor(g, f, ybar);
                    push(g, 0, t);
                }
            }
            // Masks, supports, constants: zero derivative.
            _ => {}
        }
    }
    wrt.iter().map(|w| adj.get(w).copied()).collect()
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
        let ch = node.children().to_vec();
        let d = |k: usize| tan.get(&ch[k]).copied();
        let t: Option<Id> = match node {
            Node::Add(_) => g.sum_opt(d(0), d(1)),
            Node::Mul([s, x]) => {
                let a = d(0).map(|ds| g.mul(ds, x));
                let b = d(1).map(|dx| g.mul(s, dx));
                g.sum_opt(a, b)
            }
            Node::Div([_, s]) => {
                let a = d(0).map(|dx| g.div(dx, s));
                let b = d(1).map(|ds| {
                    let q = g.div(ds, s);
                    let p = g.mul(q, y);
                    g.neg(p)
                });
                g.sum_opt(a, b)
            }
            Node::MatVec([a, x]) => {
                let p = d(0).map(|da| g.matvec(da, x));
                let q = d(1).map(|dx| g.matvec(a, dx));
                g.sum_opt(p, q)
            }
            Node::MatMul([a, b]) => {
                let p = d(0).map(|da| g.matmul(da, b));
                let q = d(1).map(|db| g.matmul(a, db));
                g.sum_opt(p, q)
            }
            Node::Transpose(_) => d(0).map(|da| g.transpose(da)),
            Node::Diag(_) => d(0).map(|dd| g.add(Node::Diag(dd))),
            Node::Diagonal(_) => d(0).map(|dm| g.diagonal(dm)),
            Node::ColumnSum(_) => d(0).map(|dm| g.add(Node::ColumnSum(dm))),
            Node::MaxEntry(x) | Node::MinEntry(x) => d(0).map(|dx| {
                let at = arg_indicator(g, &node, x);
                g.inner(at, dx)
            }),
            Node::Outer([a, b]) => {
                let p = d(0).map(|da| g.add(Node::Outer([da, b])));
                let q = d(1).map(|db| g.add(Node::Outer([a, db])));
                g.sum_opt(p, q)
            }
            Node::Dot([a, b]) => {
                let p = d(0).map(|da| g.inner(da, b));
                let q = d(1).map(|db| g.inner(a, db));
                g.sum_opt(p, q)
            }
            Node::Sum(_) => d(0).map(|dx| g.total(dx)),
            Node::Norm(x) => d(0).map(|dx| {
                let p = g.inner(x, dx);
                let r = g.add(Node::SafeRecip(y));
                g.mul(p, r)
            }),
            Node::NormSq(x) => d(0).map(|dx| {
                let p = g.inner(x, dx);
                g.scale(2.0, p)
            }),
            Node::CMul([a, b]) => {
                let p = d(0).map(|da| g.cmul(da, b));
                let q = d(1).map(|db| g.cmul(a, db));
                g.sum_opt(p, q)
            }
            Node::CDiv([_, b]) => {
                let p = d(0).map(|da| ediv(g, da, b));
                let q = d(1).map(|db| {
                    let r = ediv(g, y, b);
                    let m = g.cmul(db, r);
                    g.neg(m)
                });
                g.sum_opt(p, q)
            }
            Node::AddS([x, _]) => {
                let q = d(1).map(|ds| {
                    let ones = g.add(Node::Ones(x));
                    g.mul(ds, ones)
                });
                g.sum_opt(d(0), q)
            }
            Node::Powf([x, _]) => {
                let p = match (d(0), elementwise_factor(g, &node, y)) {
                    (Some(dx), Some(f)) => Some(apply_factor(g, f, dx)),
                    _ => None,
                };
                let q = d(1).map(|dc| {
                    let l = g.add(Node::Ln(x));
                    let yl = g.cmul(y, l);
                    g.mul(dc, yl)
                });
                g.sum_opt(p, q)
            }
            Node::Max([x, s]) | Node::Min([x, s]) => {
                let is_max = matches!(node, Node::Max(_));
                let p = d(0).map(|dx| {
                    let m = if is_max {
                        g.add(Node::Gt([x, s]))
                    } else {
                        g.add(Node::Lt([x, s]))
                    };
                    g.cmul(m, dx)
                });
                let q = d(1).map(|ds| {
                    let m = if is_max {
                        g.add(Node::Le([x, s]))
                    } else {
                        g.add(Node::Ge([x, s]))
                    };
                    g.mul(ds, m)
                });
                g.sum_opt(p, q)
            }
            Node::Clamp([x, lo, hi]) => {
                let p = d(0).map(|dx| {
                    let m = g.add(Node::MaskIn([x, lo, hi]));
                    g.cmul(m, dx)
                });
                let q = d(1).map(|dl| {
                    let m = g.add(Node::Le([x, lo]));
                    g.mul(dl, m)
                });
                let r = d(2).map(|dh| {
                    let m = g.add(Node::Ge([x, hi]));
                    g.mul(dh, m)
                });
                let pq = g.sum_opt(p, q);
                g.sum_opt(pq, r)
            }
            Node::SoftThreshold([x, t_]) => {
                let p = d(0).map(|dx| {
                    let m = g.add(Node::Outside([x, t_]));
                    g.cmul(m, dx)
                });
                let q = d(1).map(|dt| {
                    let sg = g.add(Node::Sign(y));
                    let m = g.mul(dt, sg);
                    g.neg(m)
                });
                g.sum_opt(p, q)
            }
            Node::Softmax(_) => d(0).map(|dz| {
                let yz = g.cmul(y, dz);
                let dd = g.add(Node::Dot([y, dz]));
                let dy = g.mul(dd, y);
                g.sub(yz, dy)
            }),
            Node::LogSumExp(z) => d(0).map(|dz| {
                let sm = g.add(Node::Softmax(z));
                g.add(Node::Dot([sm, dz]))
            }),
            Node::ProjSimplex(_) | Node::ProjCappedSimplex(_) => {
                let capped = matches!(node, Node::ProjCappedSimplex(_));
                let (s, k) = simplex_support(g, y, capped);
                let p = d(0).map(|dz| {
                    let sz = g.cmul(s, dz);
                    let dd = g.add(Node::Dot([s, dz]));
                    let c = g.div(dd, k);
                    let cs = g.mul(c, s);
                    g.sub(sz, cs)
                });
                let q = d(1).map(|dr| {
                    let c = g.div(dr, k);
                    g.mul(c, s)
                });
                g.sum_opt(p, q)
            }
            Node::ProjL2Ball([z, r]) => {
                let rho = g.add(Node::Norm(z));
                let outside = g.add(Node::Gt([rho, r]));
                let inside = d(0);
                let p = d(0).map(|dz| {
                    let zd = g.add(Node::Dot([z, dz]));
                    let zz = g.add(Node::NormSq(z));
                    let c = g.div(zd, zz);
                    let cz = g.mul(c, z);
                    let perp = g.sub(dz, cz);
                    // r/ρ read as ‖y‖/ρ (equal outside the ball): the derivative then
                    // stages y = try_proj_l2_ball(z, r), whose domain check (r ≥ 0)
                    // applies in backward as in solve.
                    let ny = g.add(Node::Norm(y));
                    let ratio = g.div(ny, rho);
                    g.mul(ratio, perp)
                });
                let q = d(1).map(|dr| {
                    let c = g.div(dr, rho);
                    g.mul(c, z)
                });
                let out = g.sum_opt(p, q);
                match (out, inside) {
                    (Some(o), Some(i)) => Some(g.add(Node::Select([outside, o, i]))),
                    (Some(o), None) => {
                        let zero = g.num(0.0);
                        let zv = g.mul(zero, z);
                        Some(g.add(Node::Select([outside, o, zv])))
                    }
                    (None, _) => None,
                }
            }
            Node::Solve([m, _]) | Node::SolveT([m, _]) => {
                // dx = M⁻¹ (dr − dM x), or M⁻ᵀ (dr − dMᵀ x).
                let transposed = matches!(node, Node::SolveT(_));
                let dm = d(0).map(|dm| {
                    let dm = if transposed { g.transpose(dm) } else { dm };
                    let p = if g.kind(y) == Kind::Matrix {
                        g.matmul(dm, y)
                    } else {
                        g.matvec(dm, y)
                    };
                    g.neg(p)
                });
                g.sum_opt(d(1), dm).map(|rhs| {
                    if transposed {
                        g.add(Node::SolveT([m, rhs]))
                    } else {
                        g.add(Node::Solve([m, rhs]))
                    }
                })
            }
            Node::Call(_, ref args) => {
                let mut ch = vec![y];
                for a in args {
                    let t = match tan.get(a) {
                        Some(&t) => t,
                        None => g.add(Node::Zero),
                    };
                    ch.push(t);
                }
                Some(g.add(Node::CallJvp(ch.into_boxed_slice())))
            }
            Node::Get([_, i]) => d(0).map(|dt| g.add(Node::Get([dt, i]))),
            ref n if crate::ir::is_elementwise_unary(n) || matches!(n, Node::Powi(_)) => {
                match (d(0), elementwise_factor(g, n, y)) {
                    (Some(dx), Some(f)) => Some(apply_factor(g, f, dx)),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(t) = t {
            tan.insert(y, t);
        }
    }
    outputs.iter().map(|o| tan.get(o).copied()).collect()
}

/// Why a structured Jacobian could not be formed; the caller falls back to products.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unstructured(pub &'static str);

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
    for i in 0..=top {
        let y = Id::from(i);
        if !act[i] || jac.contains_key(&y) {
            continue;
        }
        let node = g.node(y).clone();
        let ch = node.children().to_vec();
        let kind = g.kind(y);
        if kind != Kind::Vector && kind != Kind::Scalar {
            return Err(Unstructured(
                "a matrix-valued intermediate depends on the state",
            ));
        }
        let d = |k: usize| jac.get(&ch[k]).copied();
        // `J(v)` of a vector is a matrix; of a scalar, the gradient (a vector).
        let scalar = |g: &Graph, id: Id| g.kind(id) == Kind::Scalar;
        let t: Option<Id> = match node {
            Node::Add(_) => g.sum_opt(d(0), d(1)),
            Node::Mul([s, x]) => {
                let a = d(1).map(|dx| g.mul(s, dx));
                let b = d(0).map(|gs| {
                    if scalar(g, x) {
                        g.mul(x, gs)
                    } else {
                        g.add(Node::Outer([x, gs]))
                    }
                });
                g.sum_opt(a, b)
            }
            Node::Div([_, s]) => {
                let a = d(0).map(|dx| g.div(dx, s));
                let b = d(1).map(|gs| {
                    let q = g.div(gs, s);
                    let o = if scalar(g, y) {
                        g.mul(y, q)
                    } else {
                        g.add(Node::Outer([y, q]))
                    };
                    g.neg(o)
                });
                g.sum_opt(a, b)
            }
            Node::MatVec([a, _]) => {
                if act[usize::from(a)] {
                    return Err(Unstructured(
                        "a matrix that depends on the state multiplies a vector",
                    ));
                }
                if g.kind(a) == Kind::Sparse && !sparse {
                    return Err(Unstructured(
                        "sparse products have no dense structured Jacobian",
                    ));
                }
                d(1).map(|dx| g.matmul(a, dx))
            }
            Node::Dot([a, b]) => {
                if g.kind(a) != Kind::Vector {
                    return Err(Unstructured(
                        "an inner product of matrices depends on the state",
                    ));
                }
                let p = d(0).map(|ja| {
                    let t = g.transpose(ja);
                    g.matvec(t, b)
                });
                let q = d(1).map(|jb| {
                    let t = g.transpose(jb);
                    g.matvec(t, a)
                });
                g.sum_opt(p, q)
            }
            Node::MaxEntry(x) | Node::MinEntry(x) => d(0).map(|jx| {
                let at = arg_indicator(g, &node, x);
                let t = g.transpose(jx);
                g.matvec(t, at)
            }),
            Node::Sum(x) | Node::Norm(x) | Node::NormSq(x) => {
                if g.kind(x) != Kind::Vector {
                    return Err(Unstructured("a matrix reduction depends on the state"));
                }
                d(0).map(|jx| {
                    let t = g.transpose(jx);
                    match node {
                        Node::Sum(_) => {
                            let ones = g.add(Node::Ones(x));
                            g.matvec(t, ones)
                        }
                        Node::Norm(_) => {
                            let p = g.matvec(t, x);
                            let r = g.add(Node::SafeRecip(y));
                            g.mul(r, p)
                        }
                        _ => {
                            let p = g.matvec(t, x);
                            g.scale(2.0, p)
                        }
                    }
                })
            }
            Node::CMul([a, b]) => {
                let p = d(0).map(|ja| diag_times(g, b, ja, y));
                let q = d(1).map(|jb| diag_times(g, a, jb, y));
                g.sum_opt(p, q)
            }
            Node::CDiv([a, b]) => {
                let p = d(0).map(|ja| {
                    let r = g.add(Node::Recip(b));
                    diag_times(g, r, ja, y)
                });
                let q = d(1).map(|jb| {
                    let r = ediv(g, y, b);
                    let m = diag_times(g, r, jb, y);
                    g.neg(m)
                });
                let _ = a;
                g.sum_opt(p, q)
            }
            Node::AddS([x, _]) => {
                let q = d(1).map(|gs| {
                    if scalar(g, x) {
                        gs
                    } else {
                        let ones = g.add(Node::Ones(x));
                        g.add(Node::Outer([ones, gs]))
                    }
                });
                g.sum_opt(d(0), q)
            }
            Node::Max([x, s]) | Node::Min([x, s]) => {
                let is_max = matches!(node, Node::Max(_));
                let p = d(0).map(|jx| {
                    let m = if is_max {
                        g.add(Node::Gt([x, s]))
                    } else {
                        g.add(Node::Lt([x, s]))
                    };
                    diag_times(g, m, jx, y)
                });
                let q = d(1).map(|gs| {
                    let m = if is_max {
                        g.add(Node::Le([x, s]))
                    } else {
                        g.add(Node::Ge([x, s]))
                    };
                    outer_or_scale(g, m, gs)
                });
                g.sum_opt(p, q)
            }
            Node::Clamp([x, lo, hi]) => {
                let p = d(0).map(|jx| {
                    let m = g.add(Node::MaskIn([x, lo, hi]));
                    diag_times(g, m, jx, y)
                });
                let q = d(1).map(|gl| {
                    let m = g.add(Node::Le([x, lo]));
                    outer_or_scale(g, m, gl)
                });
                let r = d(2).map(|gh| {
                    let m = g.add(Node::Ge([x, hi]));
                    outer_or_scale(g, m, gh)
                });
                let pq = g.sum_opt(p, q);
                g.sum_opt(pq, r)
            }
            Node::SoftThreshold([x, t_]) => {
                let p = d(0).map(|jx| {
                    let m = g.add(Node::Outside([x, t_]));
                    diag_times(g, m, jx, y)
                });
                let q = d(1).map(|gt| {
                    let sg = g.add(Node::Sign(y));
                    let o = outer_or_scale(g, sg, gt);
                    g.neg(o)
                });
                g.sum_opt(p, q)
            }
            Node::Softmax(_) => d(0).map(|jz| {
                let a = diag_times(g, y, jz, y);
                let t = g.transpose(jz);
                let b = g.matvec(t, y);
                let o = g.add(Node::Outer([y, b]));
                g.sub(a, o)
            }),
            Node::LogSumExp(z) => d(0).map(|jz| {
                let sm = g.add(Node::Softmax(z));
                let t = g.transpose(jz);
                g.matvec(t, sm)
            }),
            Node::ProjSimplex(_) | Node::ProjCappedSimplex(_) => {
                let capped = matches!(node, Node::ProjCappedSimplex(_));
                let (s, k) = simplex_support(g, y, capped);
                let sk = g.div(s, k);
                let p = d(0).map(|jz| {
                    let a = diag_times(g, s, jz, y);
                    let t = g.transpose(jz);
                    let b = g.matvec(t, s);
                    let o = g.add(Node::Outer([sk, b]));
                    g.sub(a, o)
                });
                let q = d(1).map(|gr| g.add(Node::Outer([sk, gr])));
                g.sum_opt(p, q)
            }
            Node::ProjL2Ball([z, r]) => {
                let rho = g.add(Node::Norm(z));
                let outside = g.add(Node::Gt([rho, r]));
                let p = d(0).map(|jz| {
                    let t = g.transpose(jz);
                    let jtz = g.matvec(t, z);
                    let zz = g.add(Node::NormSq(z));
                    let c = g.div(jtz, zz);
                    let o = g.add(Node::Outer([z, c]));
                    let perp = g.sub(jz, o);
                    // r/ρ read as ‖y‖/ρ (equal outside the ball): the derivative then
                    // stages y = try_proj_l2_ball(z, r), whose domain check (r ≥ 0)
                    // applies in backward as in solve.
                    let ny = g.add(Node::Norm(y));
                    let ratio = g.div(ny, rho);
                    g.mul(ratio, perp)
                });
                let q = d(1).map(|gr| {
                    let zn = g.div(z, rho);
                    g.add(Node::Outer([zn, gr]))
                });
                match (g.sum_opt(p, q), d(0)) {
                    (Some(o), Some(i)) => Some(g.add(Node::Select([outside, o, i]))),
                    (Some(_), None) => return Err(Unstructured("a radius depends on the state")),
                    (None, _) => None,
                }
            }
            Node::Solve([m, _]) | Node::SolveT([m, _]) => {
                if act[usize::from(m)] {
                    return Err(Unstructured("a solved matrix depends on the state"));
                }
                let transposed = matches!(node, Node::SolveT(_));
                d(1).map(|jr| {
                    if transposed {
                        g.add(Node::SolveT([m, jr]))
                    } else {
                        g.add(Node::Solve([m, jr]))
                    }
                })
            }
            Node::Call(..) | Node::Get(_) => {
                return Err(Unstructured("an opaque primitive depends on the state"))
            }
            Node::ColumnSum(_) => {
                return Err(Unstructured("a matrix reduction depends on the state"))
            }
            ref n
                if crate::ir::is_elementwise_unary(n)
                    || matches!(n, Node::Powi(_) | Node::Powf(_)) =>
            {
                if matches!(n, Node::Powf([_, c]) if act[usize::from(*c)]) {
                    return Err(Unstructured("an exponent depends on the state"));
                }
                match (d(0), elementwise_factor(g, n, y)) {
                    (Some(jx), Some(f)) => Some(diag_times(g, f, jx, y)),
                    _ => None,
                }
            }
            Node::Select(_) | Node::Var(_) | Node::Num(_) => None,
            _ => None,
        };
        if let Some(t) = t {
            jac.insert(y, t);
        }
    }
    Ok(outputs.iter().map(|o| jac.get(o).copied()).collect())
}

/// `diag(f) J` for a vector node (or `f · g` for a scalar node's gradient `g`).
fn diag_times(g: &mut Graph, f: Id, j: Id, node: Id) -> Id {
    if g.kind(node) == Kind::Scalar || g.kind(f) == Kind::Scalar {
        return g.mul(f, j);
    }
    let d = g.add(Node::Diag(f));
    g.matmul(d, j)
}

/// `m gᵀ` for a vector `m` and a gradient `g` (a scalar argument's sensitivity).
fn outer_or_scale(g: &mut Graph, m: Id, grad: Id) -> Id {
    if g.kind(m) == Kind::Scalar {
        g.mul(m, grad)
    } else {
        g.add(Node::Outer([m, grad]))
    }
}

/// Where a `max`/`min` reduction is attained: its derivative (first entry on ties).
fn arg_indicator(g: &mut Graph, node: &Node, x: Id) -> Id {
    match node {
        Node::MaxEntry(_) => g.add(Node::ArgMax(x)),
        _ => g.add(Node::ArgMin(x)),
    }
}
