//! Symbolic dimensions: every vector length and matrix side is a variable, operations
//! unify them, and the classes that meet two or more arguments become run-time checks
//! (`DimensionMismatch`) emitted at the top of `backward` and `solve`.

/// A symbolic dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Dim(usize);

/// The dimensions of a term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// No dimensions.
    Scalar,
    /// A vector of length `Dim`.
    Vector(Dim),
    /// A matrix `rows × cols`.
    Matrix(Dim, Dim),
    /// Nothing to check (tuples, index sets).
    Other,
}

/// How a dimension is read off an argument at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accessor {
    /// `v.len()`.
    Len,
    /// `a.nrows()`.
    Rows,
    /// `a.ncols()`.
    Cols,
}

/// One place a dimension can be read: argument `arg` via `accessor`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// Argument index.
    pub arg: usize,
    /// How to read it.
    pub accessor: Accessor,
}

/// A union-find over symbolic dimensions with the argument dimensions attached.
#[derive(Clone, Debug, Default)]
pub struct Shapes {
    parent: Vec<usize>,
    sources: Vec<Vec<Source>>,
}

impl Shapes {
    /// A fresh dimension.
    pub fn fresh(&mut self) -> Dim {
        let d = self.parent.len();
        self.parent.push(d);
        self.sources.push(Vec::new());
        Dim(d)
    }

    /// A fresh dimension read from argument `arg`.
    pub fn of_arg(&mut self, arg: usize, accessor: Accessor) -> Dim {
        let d = self.fresh();
        self.sources[d.0].push(Source { arg, accessor });
        d
    }

    fn find(&mut self, d: usize) -> usize {
        let mut r = d;
        while self.parent[r] != r {
            r = self.parent[r];
        }
        let mut c = d;
        while self.parent[c] != r {
            let next = self.parent[c];
            self.parent[c] = r;
            c = next;
        }
        r
    }

    /// Declares two dimensions equal.
    pub fn unify(&mut self, a: Dim, b: Dim) {
        let (ra, rb) = (self.find(a.0), self.find(b.0));
        if ra != rb {
            let (keep, gone) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent[gone] = keep;
            let moved = std::mem::take(&mut self.sources[gone]);
            self.sources[keep].extend(moved);
        }
    }

    /// Declares two shapes equal (same kind assumed).
    pub fn unify_shapes(&mut self, a: Shape, b: Shape) {
        match (a, b) {
            (Shape::Vector(x), Shape::Vector(y)) => self.unify(x, y),
            (Shape::Matrix(r1, c1), Shape::Matrix(r2, c2)) => {
                self.unify(r1, r2);
                self.unify(c1, c2);
            }
            _ => {}
        }
    }

    /// Every equality between argument dimensions the rule requires: for each class,
    /// its first source and each other source.
    pub fn checks(&mut self) -> Vec<(Source, Source)> {
        let mut out = Vec::new();
        for d in 0..self.parent.len() {
            if self.find(d) != d {
                continue;
            }
            let mut srcs = self.sources[d].clone();
            srcs.sort_by_key(|s| (s.arg, s.accessor as u8));
            srcs.dedup();
            if let Some((first, rest)) = srcs.split_first() {
                for s in rest {
                    out.push((first.clone(), s.clone()));
                }
            }
        }
        out.sort_by_key(|(a, b)| (b.arg, b.accessor as u8, a.arg));
        out
    }
}

/// Infers the shape of every term of the rule and records the constraints between
/// argument dimensions; outputs are unified with their state blocks.
pub fn infer(
    graph: &crate::ir::graph::Graph,
    outputs: &[egg::Id],
    sig: &crate::front::signature::Signature,
    arg_symbols: &[egg::Symbol],
) -> Shapes {
    use crate::ir::{Kind, Node};
    let mut sh = Shapes::default();
    let mut arg_shape = std::collections::HashMap::new();
    for (i, a) in sig.args.iter().enumerate() {
        let s = match a.kind {
            Kind::Scalar => Shape::Scalar,
            Kind::Vector => Shape::Vector(sh.of_arg(i, Accessor::Len)),
            Kind::Matrix | Kind::Sparse => {
                Shape::Matrix(sh.of_arg(i, Accessor::Rows), sh.of_arg(i, Accessor::Cols))
            }
            _ => Shape::Other,
        };
        arg_shape.insert(arg_symbols[i], s);
    }
    let mut shapes: Vec<Shape> = Vec::with_capacity(graph.len());
    for node in graph.nodes() {
        let s = |id: &egg::Id| shapes[usize::from(*id)];
        let vec_dim = |x: Shape| match x {
            Shape::Vector(d) => Some(d),
            _ => None,
        };
        let shape = match node {
            Node::Var(v) => arg_shape.get(v).copied().unwrap_or(Shape::Other),
            Node::Num(_) | Node::Card(_) => Shape::Scalar,
            Node::Add([a, b]) | Node::CMul([a, b]) | Node::CDiv([a, b]) | Node::Dot([a, b]) => {
                let (x, y) = (s(a), s(b));
                sh.unify_shapes(x, y);
                if matches!(node, Node::Dot(_)) {
                    Shape::Scalar
                } else {
                    x
                }
            }
            Node::MatVec([a, x]) => match s(a) {
                Shape::Matrix(r, c) => {
                    if let Some(n) = vec_dim(s(x)) {
                        sh.unify(c, n);
                    }
                    Shape::Vector(r)
                }
                _ => Shape::Other,
            },
            Node::MatMul([a, b]) => match (s(a), s(b)) {
                (Shape::Matrix(r1, c1), Shape::Matrix(r2, c2)) => {
                    sh.unify(c1, r2);
                    Shape::Matrix(r1, c2)
                }
                _ => Shape::Other,
            },
            Node::Transpose(a) => match s(a) {
                Shape::Matrix(r, c) => Shape::Matrix(c, r),
                other => other,
            },
            Node::Outer([a, b]) => match (s(a), s(b)) {
                (Shape::Vector(r), Shape::Vector(c)) => Shape::Matrix(r, c),
                _ => Shape::Other,
            },
            Node::Sum(_)
            | Node::Norm(_)
            | Node::NormSq(_)
            | Node::LogSumExp(_)
            | Node::MaxEntry(_)
            | Node::MinEntry(_) => Shape::Scalar,
            Node::ArgMax(x) | Node::ArgMin(x) => s(x),
            Node::Mul([_, x]) | Node::Select([_, x, _]) => s(x),
            Node::Solve([m, r]) | Node::SolveT([m, r]) => {
                let rows = match s(r) {
                    Shape::Matrix(rows, _) => Some(rows),
                    other => vec_dim(other),
                };
                if let (Shape::Matrix(a, b), Some(n)) = (s(m), rows) {
                    sh.unify(a, b);
                    sh.unify(b, n);
                }
                s(r)
            }
            Node::ColumnSum(m) => match s(m) {
                Shape::Matrix(r, _) => Shape::Vector(r),
                _ => Shape::Other,
            },
            Node::Diagonal(m) => match s(m) {
                Shape::Matrix(r, c) => {
                    sh.unify(r, c);
                    Shape::Vector(r)
                }
                _ => Shape::Other,
            },
            Node::Eye(v) | Node::Diag(v) => match s(v) {
                Shape::Vector(d) => Shape::Matrix(d, d),
                _ => Shape::Other,
            },
            Node::Call(name, args) => {
                let opaque = crate::ir::builtins::Opaque::from_name(name.as_str())
                    .filter(|o| o.builtin().args().len() == args.len());
                if let Some(o) = opaque {
                    let n = vec_dim(s(&args[o.primal()]));
                    if let (Some(q), Some(n)) = (o.square(), n) {
                        if let Shape::Matrix(r, c) = s(&args[q]) {
                            sh.unify(r, n);
                            sh.unify(c, n);
                        }
                    }
                    for &(m, rhs) in o.constraint_pairs() {
                        if let (Shape::Matrix(r, c), Some(n), Some(k)) =
                            (s(&args[m]), n, vec_dim(s(&args[rhs])))
                        {
                            sh.unify(c, n);
                            sh.unify(r, k);
                        }
                    }
                }
                Shape::Other
            }
            Node::Get([t, i]) => match graph.node(*t) {
                Node::Call(name, args) => {
                    let index = graph.lit(*i).unwrap_or(0.0) as usize;
                    // A user primitive may return any length.
                    crate::ir::builtins::Opaque::from_name(name.as_str())
                        .and_then(|o| o.output_like(index))
                        .and_then(|a| args.get(a))
                        .map_or(Shape::Other, s)
                }
                _ => Shape::Other,
            },
            Node::CallVjp(_) | Node::CallJvp(_) | Node::Support(_) | Node::Zero => Shape::Other,
            Node::GatherV(_)
            | Node::GatherM(_)
            | Node::GatherRows(_)
            | Node::GatherCols(_)
            | Node::Scatter(_) => Shape::Other,
            // Every remaining operation keeps the shape of its first operand.
            other => {
                use egg::Language;
                let ch = other.children();
                let first = ch.first().map_or(Shape::Other, s);
                if matches!(
                    graph.kind(ch.first().copied().unwrap_or_default()),
                    Kind::Scalar
                ) && !matches!(first, Shape::Scalar)
                {
                    Shape::Other
                } else {
                    first
                }
            }
        };
        shapes.push(shape);
    }
    for (b, out) in outputs.iter().enumerate() {
        if let Some(&arg) = sig.blocks.get(b) {
            let state = arg_shape
                .get(&arg_symbols[arg])
                .copied()
                .unwrap_or(Shape::Other);
            sh.unify_shapes(shapes[usize::from(*out)], state);
        }
    }
    sh
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unified_argument_dims_become_checks() {
        let mut s = Shapes::default();
        let x = s.of_arg(0, Accessor::Len);
        let qr = s.of_arg(1, Accessor::Rows);
        let qc = s.of_arg(1, Accessor::Cols);
        let c = s.of_arg(2, Accessor::Len);
        s.unify(qc, x);
        s.unify(qr, c);
        let t = s.fresh();
        s.unify(t, c);
        s.unify(x, t);
        let checks = s.checks();
        assert_eq!(checks.len(), 3);
        assert!(checks.iter().all(|(a, _)| a.arg == 0));
    }
}
