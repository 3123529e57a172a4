//! `c A_S A_Sᵀ ξ = b` when every row of `A_S` has two entries: the rows are the edges of
//! a graph on `A`'s columns (a weighted incidence matrix, as in total-variation duals).
//! Solved on a spanning forest of those edges in O(|S| + n), without fill; the unknowns
//! of the edges that close cycles stay zero.
//!
//! A forest's rows are independent (peel a leaf edge), so its system is nonsingular. When
//! the whole system is consistent and every cycle row is a combination of forest rows (an
//! incidence matrix: `±1` per edge), the forest's solution solves it too; otherwise its
//! residual shows it, and the caller (which verifies every solution) moves on.
//!
//! Hand-rolled: no sparse crate factors a forest's Gram matrix in linear time, and faer's
//! AMD ordering alone costs several times this on a grid's free edges.

use super::scratch;
use nalgebra::DVector;
use nalgebra_sparse::CsrMatrix;

/// Largest magnitude of a null vector's entry before the forest is refused: weights
/// whose ratios compound along a long path would overflow it.
const NULL_MAX: f64 = 1e100;

/// A node of the spanning forest in breadth-first order.
#[derive(Debug, Clone, Copy)]
struct Node {
    /// Position of its parent in the order (itself for a root).
    parent: usize,
    /// Position in `S` of the edge to its parent.
    edge: usize,
    /// The edge's coefficients at the node and at the parent.
    at_node: f64,
    at_parent: f64,
    /// The component's null vector of `A_T` (`A_T s = 0`, `s = 1` at the root).
    null: f64,
}

/// The spanning forest of the rows `A[S, :]`, ready to solve `c A_S A_Sᵀ ξ = b`.
#[derive(Debug, Clone)]
pub struct Forest {
    scale: f64,
    rows: usize,
    nodes: Vec<Node>,
    /// Start of each component in `nodes` (and `nodes.len()` at the end).
    components: Vec<usize>,
    /// `‖s‖²` of each component's null vector.
    null_norm2: Vec<f64>,
    /// Rows that close a cycle (their unknowns stay zero).
    pub cycles: usize,
}

impl Forest {
    /// The forest of `c A[S, :] A[S, :]ᵀ`, or `None` unless every row has exactly two
    /// nonzero finite entries and `c` is nonzero (`S` strictly increasing, in range).
    pub fn new(c: f64, a: &CsrMatrix<f64>, s: &[usize]) -> Option<Forest> {
        if !(c != 0.0 && c.is_finite()) {
            return None;
        }
        let (off, idx, val) = (a.row_offsets(), a.col_indices(), a.values());
        let n = a.ncols();
        let edge = |r: usize| {
            let p = off[s[r]];
            (idx[p], idx[p + 1], val[p], val[p + 1])
        };
        for &i in s {
            let (p, q) = (off[i], off[i + 1]);
            if q - p != 2 || !val[p..q].iter().all(|v| *v != 0.0 && v.is_finite()) {
                return None;
            }
        }
        // A spanning forest by union–find (path halving, union by size).
        // Work arrays from the per-thread pool (megabytes on a large grid).
        let mut root = scratch::empty(n);
        root.extend(0..n);
        let mut size = scratch::filled(n, 1usize);
        let find = |root: &mut [usize], mut v: usize| {
            while root[v] != v {
                root[v] = root[root[v]];
                v = root[v];
            }
            v
        };
        let mut degree = scratch::filled(n + 1, 0usize);
        let mut tree = scratch::empty(s.len());
        for r in 0..s.len() {
            let (u, v, _, _) = edge(r);
            let (ru, rv) = (find(&mut root, u), find(&mut root, v));
            if ru == rv {
                continue;
            }
            let (big, small) = if size[ru] >= size[rv] {
                (ru, rv)
            } else {
                (rv, ru)
            };
            root[small] = big;
            size[big] += size[small];
            degree[u + 1] += 1;
            degree[v + 1] += 1;
            tree.push(r);
        }
        scratch::keep(root);
        scratch::keep(size);
        // The forest's adjacency: for node u, (neighbour, edge).
        for u in 0..n {
            degree[u + 1] += degree[u];
        }
        let start = degree;
        let mut fill = scratch::empty(n + 1);
        fill.extend_from_slice(&start);
        // Every entry is written below (two per tree edge, the degrees' sum).
        let mut adj = scratch::overwritten(start[n], (0usize, 0usize));
        for &r in &tree {
            let (u, v, _, _) = edge(r);
            adj[fill[u]] = (v, r);
            fill[u] += 1;
            adj[fill[v]] = (u, r);
            fill[v] += 1;
        }
        scratch::keep(fill);
        // Breadth-first from each untouched node with an edge; `pos` maps nodes to order.
        let mut pos = scratch::filled(n, usize::MAX);
        let mut order = scratch::empty(tree.len() + 1);
        let mut nodes = scratch::empty(tree.len() + 1);
        let mut components = Vec::new();
        let mut null_norm2 = Vec::new();
        for first in 0..n {
            if pos[first] != usize::MAX || start[first] == start[first + 1] {
                continue;
            }
            let begin = nodes.len();
            components.push(begin);
            pos[first] = begin;
            order.push(first);
            nodes.push(Node {
                parent: begin,
                edge: usize::MAX,
                at_node: 1.0,
                at_parent: 0.0,
                null: 1.0,
            });
            let mut norm2 = 1.0;
            let mut head = begin;
            while head < order.len() {
                let u = order[head];
                for &(v, r) in &adj[start[u]..start[u + 1]] {
                    if pos[v] != usize::MAX {
                        continue;
                    }
                    let (j1, _, a1, a2) = edge(r);
                    let (at_node, at_parent) = if j1 == v { (a1, a2) } else { (a2, a1) };
                    let null = -at_parent * nodes[head].null / at_node;
                    if !null.is_finite() || null.abs() > NULL_MAX {
                        return None;
                    }
                    norm2 += null * null;
                    pos[v] = order.len();
                    order.push(v);
                    nodes.push(Node {
                        parent: head,
                        edge: r,
                        at_node,
                        at_parent,
                        null,
                    });
                }
                head += 1;
            }
            null_norm2.push(norm2);
        }
        components.push(nodes.len());
        let cycles = s.len() - tree.len();
        for v in [start, pos, order, tree] {
            scratch::keep(v);
        }
        scratch::keep(adj);
        Some(Forest {
            scale: c,
            rows: s.len(),
            nodes,
            components,
            null_norm2,
            cycles,
        })
    }

    /// `b ← ξ`: the solution on the forest's rows, zero on the cycle rows.
    ///
    /// With `x = A_Tᵀ ξ`, `c A_T x = b_T` fixes `x` along each tree up to its null vector
    /// `s`, and `x ⊥ s` (it lies in the range of `A_Tᵀ`) fixes the rest; then `ξ` follows
    /// from `A_Tᵀ ξ = x` leaf by leaf.
    ///
    /// # Panics
    /// If `b.len()` differs from the number of rows.
    pub fn solve_in_place(&self, b: &mut DVector<f64>) {
        assert_eq!(b.len(), self.rows, "Forest::solve: right-hand side length");
        let nodes = &self.nodes;
        let mut x = scratch::zeroed(nodes.len());
        let inv_c = 1.0 / self.scale;
        for (c, w) in self.components.windows(2).enumerate() {
            let (begin, end) = (w[0], w[1]);
            let mut dot = 0.0;
            for p in begin + 1..end {
                let v = &nodes[p];
                x[p] = (b[v.edge] * inv_c - v.at_parent * x[v.parent]) / v.at_node;
                dot += x[p] * v.null;
            }
            let t = -dot / self.null_norm2[c];
            for (xp, v) in x[begin..end].iter_mut().zip(&nodes[begin..end]) {
                *xp += t * v.null;
            }
        }
        b.fill(0.0);
        for w in self.components.windows(2) {
            for p in (w[0] + 1..w[1]).rev() {
                let v = &nodes[p];
                let xi = x[p] / v.at_node;
                b[v.edge] = xi;
                x[v.parent] -= v.at_parent * xi;
            }
        }
        scratch::keep(x);
    }
}

scratch::keep_type!(Node);

impl Drop for Forest {
    fn drop(&mut self) {
        scratch::keep(std::mem::take(&mut self.nodes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DMatrix;
    use nalgebra_sparse::CooMatrix;

    /// Rows `(u, v, a, b)`: `a` at column `u`, `b` at column `v`.
    fn incidence(n: usize, rows: &[(usize, usize, f64, f64)]) -> CsrMatrix<f64> {
        let mut coo = CooMatrix::new(rows.len(), n);
        for (r, &(u, v, a, b)) in rows.iter().enumerate() {
            coo.push(r, u, a);
            coo.push(r, v, b);
        }
        CsrMatrix::from(&coo)
    }

    fn dense(a: &CsrMatrix<f64>) -> DMatrix<f64> {
        let mut d = DMatrix::zeros(a.nrows(), a.ncols());
        for (i, j, v) in a.triplet_iter() {
            d[(i, j)] = *v;
        }
        d
    }

    /// `c A_S A_Sᵀ ξ − b` by dense algebra, relative to `‖b‖`.
    fn residual(
        c: f64,
        a: &CsrMatrix<f64>,
        s: &[usize],
        xi: &DVector<f64>,
        b: &DVector<f64>,
    ) -> f64 {
        let d = dense(a);
        let sub = DMatrix::from_fn(s.len(), d.ncols(), |r, j| d[(s[r], j)]);
        ((&sub * sub.transpose() * xi) * c - b).norm() / b.norm()
    }

    #[test]
    fn a_tree_is_solved_exactly_and_cycles_of_a_consistent_system_stay_zero() {
        // A path 0–1–2–3 and a branch 1–4: a tree, the system nonsingular.
        let tree = incidence(
            5,
            &[
                (0, 1, -1.0, 1.0),
                (1, 2, -1.0, 1.0),
                (2, 3, 1.0, -1.0),
                (1, 4, -1.0, 1.0),
            ],
        );
        let s = [0, 1, 2, 3];
        let f = Forest::new(0.25, &tree, &s).unwrap();
        assert_eq!(f.cycles, 0);
        let b = DVector::from_vec(vec![0.3, -1.2, 0.7, 2.0]);
        let mut xi = b.clone();
        f.solve_in_place(&mut xi);
        assert!(residual(0.25, &tree, &s, &xi, &b) < 1e-14);

        // A 2 × 2 grid (a 4-cycle) and a pendant edge, with a consistent right-hand side
        // b = A_S h: one cycle row, its unknown zero, the residual zero.
        let grid = incidence(
            5,
            &[
                (0, 1, -1.0, 1.0),
                (2, 3, -1.0, 1.0),
                (0, 2, -1.0, 1.0),
                (1, 3, -1.0, 1.0),
                (3, 4, -1.0, 1.0),
            ],
        );
        let s = [0, 1, 2, 3, 4];
        let f = Forest::new(0.125, &grid, &s).unwrap();
        assert_eq!(f.cycles, 1);
        let h = DVector::from_vec(vec![0.5, -0.25, 1.5, 0.75, -2.0]);
        let b = dense(&grid) * h;
        let mut xi = b.clone();
        f.solve_in_place(&mut xi);
        assert!(residual(0.125, &grid, &s, &xi, &b) < 1e-14);
        assert_eq!(xi[3], 0.0, "the edge closing the cycle");

        // Weighted rows on a tree: still exact.
        let weighted = incidence(4, &[(0, 1, 2.0, -0.5), (1, 2, 1.5, 3.0), (1, 3, -0.7, 0.9)]);
        let s = [0, 1, 2];
        let f = Forest::new(1.0, &weighted, &s).unwrap();
        let b = DVector::from_vec(vec![1.0, -2.0, 0.5]);
        let mut xi = b.clone();
        f.solve_in_place(&mut xi);
        assert!(residual(1.0, &weighted, &s, &xi, &b) < 1e-13);
    }

    #[test]
    fn large_forests_do_not_depend_on_what_ran_before_on_the_thread() {
        // A grid's edges, large enough that the work arrays are kept between calls: a
        // solve after other forests (other graphs, weights, free sets) gives the same
        // bits as one on a fresh thread.
        let grid = |side: usize, keep_every: usize, w: f64| {
            let mut rows = Vec::new();
            for i in 0..side {
                for j in 0..side {
                    let v = i * side + j;
                    if j + 1 < side {
                        rows.push((v, v + 1, -w, w));
                    }
                    if i + 1 < side {
                        rows.push((v, v + side, -1.0, 1.0));
                    }
                }
            }
            let a = incidence(side * side, &rows);
            let s: Vec<usize> = (0..rows.len()).filter(|r| r % keep_every != 0).collect();
            let b = DVector::from_fn(s.len(), |r, _| ((r * 37) % 23) as f64 / 23.0 - 0.5);
            (a, s, b)
        };
        let solve = move |side: usize, keep_every: usize, w: f64| {
            let (a, s, b) = grid(side, keep_every, w);
            let forest = Forest::new(0.3, &a, &s).expect("edges");
            let mut x = b.clone();
            forest.solve_in_place(&mut x);
            (forest.cycles, x)
        };
        let fresh = std::thread::spawn(move || solve(140, 5, 1.5))
            .join()
            .expect("thread");
        let first = solve(140, 5, 1.5);
        let _ = solve(170, 3, 0.7);
        let _ = solve(120, 7, 2.0);
        let again = solve(140, 5, 1.5);
        assert!(fresh.0 > 0 && fresh.1.iter().all(|v| v.is_finite()));
        assert_eq!(first.0, fresh.0);
        assert_eq!(first.1.as_slice(), fresh.1.as_slice());
        assert_eq!(again.1.as_slice(), fresh.1.as_slice());
    }

    #[test]
    fn rows_that_are_not_edges_are_refused() {
        let mut coo = CooMatrix::new(2, 3);
        coo.push(0, 0, 1.0);
        coo.push(0, 1, -1.0);
        coo.push(0, 2, 1.0);
        coo.push(1, 1, 1.0);
        let a = CsrMatrix::from(&coo);
        assert!(Forest::new(1.0, &a, &[0]).is_none(), "three entries");
        assert!(Forest::new(1.0, &a, &[1]).is_none(), "one entry");
        let e = incidence(2, &[(0, 1, 0.0, 1.0)]);
        assert!(Forest::new(1.0, &e, &[0]).is_none(), "an explicit zero");
        let e = incidence(2, &[(0, 1, -1.0, 1.0)]);
        assert!(Forest::new(0.0, &e, &[0]).is_none(), "a zero scale");
    }
}
