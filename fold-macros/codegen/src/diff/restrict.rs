//! The reduced backward: when the rule ends in a projection whose Jacobian lives on a
//! support `S` (`J = E_S K E_Sᵀ`), the folded system `(I − Φᵀ) w = g` with `Φ = J M`
//! reduces to `(I − Kᵀ M_SSᵀ) a = Kᵀ g_S` on `|S|` unknowns. This module finds that head,
//! builds the terms the runtime's `Factored` needs, and restricts the structured
//! Jacobian `M` to `S × S` symbolically (`(I − αQ)_SS = I − α Q[S,S]`).

use crate::diff::{self, Map, Partials};
use crate::ir::graph::{Graph, VarInfo};
use crate::ir::{seed_symbol, Kind, Node, Role};
use egg::{Id, Language};
use std::collections::{HashMap, HashSet};

/// The kernel `K` of the head's Jacobian on its support.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// `K = I`: a 0/1 mask (box, clamp, relu, max/min, soft threshold).
    Identity,
    /// `K = I − 11ᵀ/|S|`: simplex and capped simplex.
    Centered,
}

/// The terms of a reduced backward.
#[derive(Clone, Debug)]
pub struct Reduction {
    /// The head's 0/1 mask over the state (`S = supp(mask)`).
    pub mask: Id,
    /// The support `S` (an index set).
    pub support: Id,
    /// `K`.
    pub kernel: Kernel,
    /// The seed `w` of the inner products (a full-length vector).
    pub seed: Id,
    /// `Mᵀ w`.
    pub inner_state: Option<Id>,
    /// `Nᵀ w`, per parameter.
    pub inner_params: Vec<Option<Id>>,
    /// `Hᵀ w` per parameter, when the head's own arguments depend on parameters.
    pub head_params: Option<Vec<Option<Id>>>,
    /// The reduced matrix `I − Kᵀ M_SSᵀ`, or its transpose (see `matrix_transposed`),
    /// when `M` has a structured form.
    pub matrix: Option<Id>,
    /// Whether `matrix` is the transpose `I − M_SS K`: when `M` reads dense constants
    /// untransposed, which that form gathers in their storage order.
    pub matrix_transposed: bool,
    /// Whether `matrix` is built from sparse constants, diagonals and identities, and is
    /// assembled sparse (never dense) at run time.
    pub sparse: bool,
    /// Terms the restriction of `M` to `S × S` visited (linear in the rule's size).
    pub restricted: usize,
}

/// The head projection of `out` (its support mask, kernel, argument and own arguments),
/// if the rule ends in one: a node whose partial in its first operand is a 0/1 diagonal
/// (`K = I`) or a centered free set (`K = I − 11ᵀ/|S|`), read from the table of partials.
fn head(g: &mut Graph, out: Id) -> Option<(Id, Kernel, Id, Vec<Id>)> {
    let node = g.node(out).clone();
    let (&z, own) = node.children().split_first()?;
    let mut on = vec![false; own.len() + 1];
    on[0] = true;
    let Partials::Sum(terms) = diff::partials(g, &node, out, &on) else {
        return None;
    };
    let (mask, kernel) = match terms.first()? {
        (0, Map::Hadamard(m) | Map::Diag(m)) if is_mask(g.node(*m)) => (*m, Kernel::Identity),
        (0, Map::Centered { s, k: Some(_) }) if is_mask(g.node(*s)) => (*s, Kernel::Centered),
        _ => return None,
    };
    Some((mask, kernel, z, own.to_vec()))
}

/// Whether `node` is a 0/1 mask (a comparison).
fn is_mask(node: &Node) -> bool {
    matches!(
        node,
        Node::Gt(_) | Node::Lt(_) | Node::Ge(_) | Node::Le(_) | Node::MaskIn(_) | Node::Outside(_)
    )
}

/// Builds the reduced backward of a single-block rule whose output is a projection of an
/// argument depending on the state, with head arguments independent of the state.
pub fn reduction(
    g: &mut Graph,
    out: Id,
    state: Id,
    params: &[Id],
    seed_name: &str,
) -> Option<Reduction> {
    if g.kind(out) != Kind::Vector {
        return None;
    }
    let (mask, kernel, z, head_args) = head(g, out)?;
    let dep_state = g.depends_on(|r| matches!(r, Role::State { .. }));
    if !dep_state[usize::from(z)] || head_args.iter().any(|h| dep_state[usize::from(*h)]) {
        return None;
    }
    let sym = seed_symbol(seed_name);
    g.vars.insert(
        sym,
        VarInfo {
            kind: Kind::Vector,
            role: Role::Reduced,
        },
    );
    let seed = g.var(sym);
    let support = g.add(Node::Support(mask));

    let mut wrt = vec![state];
    wrt.extend(params);
    let adj = diff::vjp(g, &[z], &[seed], &wrt);
    let inner_state = adj[0];
    let inner_params = adj[1..].to_vec();

    let dep_params = g.depends_on(|r| matches!(r, Role::Param));
    let live: Vec<Id> = head_args
        .iter()
        .copied()
        .filter(|h| dep_params[usize::from(*h)])
        .collect();
    let head_params = if live.is_empty() {
        None
    } else {
        let hbar = diff::vjp(g, &[out], &[seed], &live);
        let (hs, bars): (Vec<Id>, Vec<Id>) = live
            .iter()
            .zip(hbar)
            .filter_map(|(h, b)| b.map(|b| (*h, b)))
            .unzip();
        Some(diff::vjp(g, &hs, &bars, params))
    };

    let dense = diff::jacobian(g, &[z], state).ok().and_then(|j| j[0]);
    let sparse_m = match dense {
        Some(_) => None,
        None => diff::sparse_jacobian(g, &[z], state)
            .ok()
            .and_then(|j| j[0]),
    };
    let (matrix, matrix_transposed, sparse, restricted) = match (dense, sparse_m) {
        (Some(m), _) => {
            let (r, transposed, visited) = reduced_matrix(g, m, support, mask, kernel, true);
            (Some(r), transposed, false, visited)
        }
        (None, Some(m)) => {
            let (r, _, visited) = reduced_matrix(g, m, support, mask, kernel, false);
            if sparse_closed(g, r) {
                (Some(r), false, true, visited)
            } else {
                (None, false, false, visited)
            }
        }
        (None, None) => (None, false, false, 0),
    };
    Some(Reduction {
        mask,
        support,
        kernel,
        seed,
        inner_state,
        inner_params,
        head_params,
        matrix,
        matrix_transposed,
        sparse,
        restricted,
    })
}

/// Whether the matrix term `m` is built only from `CsrMatrix` leaves, identities and
/// diagonals by sums, scalings, transposes, products and support gathers, with at least
/// one sparse leaf: such a term is assembled sparse in O(nnz).
pub fn sparse_closed(g: &Graph, m: Id) -> bool {
    fn walk(g: &Graph, id: Id, memo: &mut HashMap<Id, Option<bool>>) -> Option<bool> {
        if let Some(&r) = memo.get(&id) {
            return r;
        }
        let r = match g.node(id) {
            Node::Var(_) => (g.kind(id) == Kind::Sparse).then_some(true),
            Node::Eye(_) | Node::Diag(_) => Some(false),
            Node::Transpose(a)
            | Node::Neg(a)
            | Node::Mul([_, a])
            | Node::Div([a, _])
            | Node::GatherM([a, _])
            | Node::GatherRows([a, _])
            | Node::GatherCols([a, _]) => walk(g, *a, memo),
            Node::Add([a, b]) | Node::MatMul([a, b]) => {
                let (x, y) = (walk(g, *a, memo), walk(g, *b, memo));
                Some(x? || y?)
            }
            _ => None,
        };
        memo.insert(id, r);
        r
    }
    walk(g, m, &mut HashMap::new()) == Some(true)
}

/// `I − Kᵀ M_SSᵀ`, or with `may_transpose` its transpose `I − M_SS K` when that gathers
/// more dense constants in storage order; whether it is the transpose; the number of
/// distinct terms the restriction visited.
fn reduced_matrix(
    g: &mut Graph,
    m: Id,
    s: Id,
    mask: Id,
    kernel: Kernel,
    may_transpose: bool,
) -> (Id, bool, usize) {
    let ms = g.add(Node::GatherV([mask, s]));
    let mut restrictor = Restrictor::new(s, ms);
    let r = restrictor.restrict(g, m);
    let eye = g.add(Node::Eye(ms));
    let (plain, transposed) = constant_gathers(g, r);
    let transpose = may_transpose && plain > transposed;
    // Rᵀ (or R) with the kernel applied on the side it acts on.
    let side = if transpose { r } else { g.transpose(r) };
    let kside = match kernel {
        Kernel::Identity => side,
        Kernel::Centered => {
            // (I − 11ᵀ/k) Rᵀ = Rᵀ − 1 (R 1)ᵀ / k, and its transpose R K = R − (R 1) 1ᵀ / k.
            let ones = g.add(Node::Ones(ms));
            let r1 = g.matvec(r, ones);
            let k = g.add(Node::Card(s));
            let r1k = g.div(r1, k);
            let o = if transpose {
                g.add(Node::Outer([r1k, ones]))
            } else {
                g.add(Node::Outer([ones, r1k]))
            };
            g.sub(side, o)
        }
    };
    (g.sub(eye, kside), transpose, restrictor.visited)
}

/// How many gathers `A[S, S]` of a dense matrix argument the term `r` reads in storage
/// order and how many transposed (under its transposes, signs and scalings).
fn constant_gathers(g: &Graph, r: Id) -> (usize, usize) {
    fn walk(g: &Graph, id: Id, flipped: bool, seen: &mut HashSet<(Id, bool)>, n: &mut [usize; 2]) {
        if !seen.insert((id, flipped)) {
            return;
        }
        match g.node(id) {
            Node::Transpose(a) => walk(g, *a, !flipped, seen, n),
            Node::GatherM([a, _]) => {
                let (mut base, mut flip) = (*a, flipped);
                loop {
                    match g.node(base) {
                        Node::Transpose(x) => (base, flip) = (*x, !flip),
                        Node::Neg(x) | Node::Mul([_, x]) => base = *x,
                        _ => break,
                    }
                }
                if matches!(g.node(base), Node::Var(_)) && g.kind(base) == Kind::Matrix {
                    n[usize::from(flip)] += 1;
                }
            }
            other => {
                for &c in other.children() {
                    walk(g, c, flipped, seen, n);
                }
            }
        }
    }
    let mut n = [0, 0];
    walk(g, r, false, &mut HashSet::new(), &mut n);
    (n[0], n[1])
}

/// Restricts terms to `S × S`, `S × :` and `: × S`, once per term: Jacobians of chained
/// steps share their factors, and walking them as trees is exponential in the depth.
pub struct Restrictor {
    s: Id,
    size: Id,
    square: HashMap<Id, Id>,
    rows: HashMap<Id, Id>,
    cols: HashMap<Id, Id>,
    /// Terms restricted so far (each of the three restrictions counted once per term).
    pub visited: usize,
}

impl Restrictor {
    /// Restrictions to the support `s`; `size` is a vector of length `|S|` (identities
    /// restrict to `I` of its size, so that they are recognised as equal).
    pub fn new(s: Id, size: Id) -> Restrictor {
        Restrictor {
            s,
            size,
            square: HashMap::new(),
            rows: HashMap::new(),
            cols: HashMap::new(),
            visited: 0,
        }
    }

    /// `M[S, S]`, pushed through sums, scalings, transposes, diagonals and products.
    pub fn restrict(&mut self, g: &mut Graph, m: Id) -> Id {
        if let Some(&r) = self.square.get(&m) {
            return r;
        }
        self.visited += 1;
        let (s, size) = (self.s, self.size);
        let r = match g.node(m).clone() {
            Node::Add([a, b]) => {
                let (ra, rb) = (self.restrict(g, a), self.restrict(g, b));
                g.sum2(ra, rb)
            }
            Node::Neg(a) => {
                let ra = self.restrict(g, a);
                g.neg(ra)
            }
            Node::Mul([c, a]) => {
                let ra = self.restrict(g, a);
                g.mul(c, ra)
            }
            Node::Div([a, c]) => {
                let ra = self.restrict(g, a);
                g.div(ra, c)
            }
            Node::Transpose(a) => {
                let ra = self.restrict(g, a);
                g.transpose(ra)
            }
            Node::Eye(_) => g.add(Node::Eye(size)),
            Node::Diag(d) => {
                let ds = g.add(Node::GatherV([d, s]));
                g.add(Node::Diag(ds))
            }
            Node::Outer([a, b]) => {
                let (as_, bs) = (g.add(Node::GatherV([a, s])), g.add(Node::GatherV([b, s])));
                g.add(Node::Outer([as_, bs]))
            }
            Node::Select([c, a, b]) => {
                let (ra, rb) = (self.restrict(g, a), self.restrict(g, b));
                g.add(Node::Select([c, ra, rb]))
            }
            Node::MatMul([a, b]) => match (g.node(a).clone(), g.node(b).clone()) {
                (Node::Diag(d), _) => {
                    let ds = g.add(Node::GatherV([d, s]));
                    let dd = g.add(Node::Diag(ds));
                    let rb = self.restrict(g, b);
                    g.matmul(dd, rb)
                }
                (_, Node::Diag(d)) => {
                    let ds = g.add(Node::GatherV([d, s]));
                    let dd = g.add(Node::Diag(ds));
                    let ra = self.restrict(g, a);
                    g.matmul(ra, dd)
                }
                _ => {
                    let (ra, cb) = (self.rows(g, a), self.cols(g, b));
                    g.matmul(ra, cb)
                }
            },
            _ => g.add(Node::GatherM([m, s])),
        };
        self.square.insert(m, r);
        r
    }

    /// `M[S, :]`.
    fn rows(&mut self, g: &mut Graph, m: Id) -> Id {
        if let Some(&r) = self.rows.get(&m) {
            return r;
        }
        self.visited += 1;
        let s = self.s;
        let r = match g.node(m).clone() {
            Node::Add([a, b]) => {
                let (ra, rb) = (self.rows(g, a), self.rows(g, b));
                g.sum2(ra, rb)
            }
            Node::Neg(a) => {
                let ra = self.rows(g, a);
                g.neg(ra)
            }
            Node::Mul([c, a]) => {
                let ra = self.rows(g, a);
                g.mul(c, ra)
            }
            Node::Transpose(a) => {
                let ca = self.cols(g, a);
                g.transpose(ca)
            }
            Node::MatMul([a, b]) => {
                let ra = self.rows(g, a);
                g.matmul(ra, b)
            }
            Node::Outer([a, b]) => {
                let as_ = g.add(Node::GatherV([a, s]));
                g.add(Node::Outer([as_, b]))
            }
            _ => g.add(Node::GatherRows([m, s])),
        };
        self.rows.insert(m, r);
        r
    }

    /// `M[:, S]`.
    fn cols(&mut self, g: &mut Graph, m: Id) -> Id {
        if let Some(&r) = self.cols.get(&m) {
            return r;
        }
        self.visited += 1;
        let s = self.s;
        let r = match g.node(m).clone() {
            Node::Add([a, b]) => {
                let (ca, cb) = (self.cols(g, a), self.cols(g, b));
                g.sum2(ca, cb)
            }
            Node::Neg(a) => {
                let ca = self.cols(g, a);
                g.neg(ca)
            }
            Node::Mul([c, a]) => {
                let ca = self.cols(g, a);
                g.mul(c, ca)
            }
            Node::Transpose(a) => {
                let ra = self.rows(g, a);
                g.transpose(ra)
            }
            Node::MatMul([a, b]) => {
                let cb = self.cols(g, b);
                g.matmul(a, cb)
            }
            Node::Outer([a, b]) => {
                let bs = g.add(Node::GatherV([b, s]));
                g.add(Node::Outer([a, bs]))
            }
            _ => g.add(Node::GatherCols([m, s])),
        };
        self.cols.insert(m, r);
        r
    }
}

/// Whether a term mentions the restriction operations (for printing).
pub fn is_restricted(g: &Graph, id: Id) -> bool {
    let reach = g.reachable(&[id]);
    g.nodes().iter().zip(reach).any(|(node, r)| {
        r && matches!(
            node,
            Node::GatherM(_) | Node::GatherRows(_) | Node::GatherCols(_) | Node::GatherV(_)
        )
    })
}
