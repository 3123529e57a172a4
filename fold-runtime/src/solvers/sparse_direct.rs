//! Direct solve of an assembled sparse system: banded `LDLᵀ` for narrow symmetric bands,
//! the spanning forest of a graph's edges for the Gram matrix of incidence rows (see
//! [`super::forest`]), faer's sparse `LDLᵀ` with a fill-reducing (AMD) ordering for other
//! symmetric matrices, faer's sparse LU otherwise; refined against the CSR operator
//! itself.
//!
//! Singular but consistent symmetric systems (a graph's cycle space: the 2-D
//! total-variation dual) are solved on a nonsingular subsystem: the rows of a spanning
//! forest, or, in a factorization, a maximal nonsingular principal subsystem: a pivot
//! that vanishes to rounding (`|d| ≤ PIVOT_DROP · max |Aᵢᵢ|`) has, for a positive
//! semidefinite matrix, a vanishing column too, so it is replaced by `max |Aᵢᵢ|` and its
//! unknown stays ≈ 0. The true residual decides: an inconsistent system is `Singular`.

use super::assembled::gram_csr;
pub use super::assembled::Assembled;
use super::banded::BandedLdlt;
use super::forest::Forest;
use super::{not_converged, residual_into, Operator, Solved, Stop};
use crate::FoldError;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::ldlt::factor::LdltRegularization;
use faer::linalg::solvers::SolveCore;
use faer::sparse::linalg::cholesky::{
    factorize_symbolic_cholesky, CholeskySymbolicParams, SymbolicCholesky, SymmetricOrdering,
};
use faer::sparse::linalg::solvers::Lu as SparseLu;
use faer::sparse::{SparseColMatRef, SymbolicSparseColMatRef};
use faer::{Conj, MatMut, Par, Side};
use nalgebra::DVector;
use nalgebra_sparse::CsrMatrix;
use std::borrow::Cow;

/// Largest half-bandwidth factored by [`BandedLdlt`]; wider symmetric bands go to faer.
/// Measured (`cargo bench -p fold-runtime --bench solvers -- sparse_band`: SPD band
/// matrices at k = 10⁵, factor + solve + verifying residual, on a loaded 2-core VM):
/// banded 4.8 / 7.6 / 11 / 24 / 51 ms against faer's AMD-ordered `LDLᵀ` 30 / 31 / 91 /
/// 119 / 282 ms at half-bandwidths 1 / 2 / 4 / 8 / 16. AMD pays where it cuts fill below
/// the band (grids, graphs), which a narrow band already does not have.
pub const BANDED_MAX: usize = 16;

/// Relative pivot below which a symmetric factorization treats its pivot as zero.
pub(super) const PIVOT_DROP: f64 = 1e-10;

/// Refinement steps after the first solve.
const MAX_REFINE: usize = 3;

/// Relative tolerance of the symmetry test.
const SYMMETRY_TOL: f64 = 1e-12;

/// A verified sparse direct solution.
#[derive(Debug, Clone)]
pub struct SparseSolved {
    /// The solution and its residual; `iterations` counts the products with `A`.
    pub solved: Solved,
    /// Pivots dropped as zero when the count is known (banded), i.e. the dimension of
    /// the null space the solution left out.
    pub dropped: Option<usize>,
}

enum Factor<'f> {
    Banded(Cow<'f, BandedLdlt>),
    Forest(&'f Forest),
    Ldlt {
        symbolic: SymbolicCholesky<usize>,
        values: Vec<f64>,
    },
    /// The LU of `Aᵀ` (CSR of `A` read as CSC).
    LuOfTranspose(SparseLu<usize, f64>),
}

impl Factor<'_> {
    fn solve_in_place(&self, x: &mut DVector<f64>) {
        let n = x.len();
        match self {
            Factor::Banded(f) => f.solve_in_place(x),
            Factor::Forest(f) => f.solve_in_place(x),
            Factor::Ldlt { symbolic, values } => {
                let ldlt = faer::sparse::linalg::cholesky::LdltRef::<'_, usize, f64>::new(
                    symbolic, values,
                );
                let mut mem = MemBuffer::new(symbolic.solve_in_place_scratch::<f64>(1, Par::Seq));
                let rhs = MatMut::from_column_major_slice_mut(x.as_mut_slice(), n, 1);
                ldlt.solve_in_place_with_conj(Conj::No, rhs, Par::Seq, MemStack::new(&mut mem));
            }
            Factor::LuOfTranspose(lu) => {
                let rhs = MatMut::from_column_major_slice_mut(x.as_mut_slice(), n, 1);
                lu.solve_transpose_in_place_with_conj(Conj::No, rhs);
            }
        }
    }
}

/// Whether `a` (square) equals its transpose to a relative `tol`, without forming it.
fn symmetric(a: &CsrMatrix<f64>, tol: f64) -> bool {
    let (off, idx, val) = (a.row_offsets(), a.col_indices(), a.values());
    let scale = val.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let entry = |i: usize, j: usize| -> f64 {
        let row = &idx[off[i]..off[i + 1]];
        match row.binary_search(&j) {
            Ok(p) => val[off[i] + p],
            Err(_) => 0.0,
        }
    };
    (0..a.nrows()).all(|i| {
        (off[i]..off[i + 1]).all(|p| {
            let j = idx[p];
            j <= i || (val[p] - entry(j, i)).abs() <= tol * scale
        })
    })
}

/// Entries of `L` above which the symmetric factorization is not attempted (1 GiB of
/// values): Krylov methods on the assembled matrix need O(nnz) instead.
pub const MAX_FACTOR_ENTRIES: usize = 1 << 27;

/// Rows sampled by [`looks_symmetric`].
const SYMMETRY_SAMPLE: usize = 32;

/// Whether `a` is symmetric on a few rows spread over it: a cheap guess, confirmed by
/// the residual of the symmetric factorization (which reads only the lower triangle).
fn looks_symmetric(a: &CsrMatrix<f64>) -> bool {
    let (off, idx, val) = (a.row_offsets(), a.col_indices(), a.values());
    let n = a.nrows();
    let step = (n / SYMMETRY_SAMPLE).max(1);
    (0..n).step_by(step).all(|i| {
        (off[i]..off[i + 1]).all(|p| {
            let j = idx[p];
            let row = &idx[off[j]..off[j + 1]];
            row.binary_search(&i).is_ok_and(|q| {
                (val[off[j] + q] - val[p]).abs() <= SYMMETRY_TOL * val[p].abs().max(1.0)
            })
        })
    })
}

/// `L D Lᵀ` of the lower triangle (banded when the band is narrow, faer with AMD
/// otherwise); `Ok(None)` when its fill exceeds [`MAX_FACTOR_ENTRIES`].
fn factor_symmetric(
    a: &CsrMatrix<f64>,
    banded_max: usize,
) -> Result<Option<Factor<'static>>, FoldError> {
    let n = a.nrows();
    let (off, idx, val) = (a.row_offsets(), a.col_indices(), a.values());
    // One pass for the largest diagonal entry and the half-bandwidth.
    let (mut dmax, mut b) = (0.0f64, 0usize);
    for i in 0..n {
        for p in off[i]..off[i + 1] {
            let j = idx[p];
            if j == i {
                dmax = dmax.max(val[p].abs());
            }
            b = b.max(i.abs_diff(j));
        }
    }
    if !(dmax > 0.0 && dmax.is_finite()) {
        return Err(FoldError::Singular);
    }
    let (eps, delta) = (PIVOT_DROP * dmax, dmax);
    if b <= banded_max {
        return Ok(Some(Factor::Banded(Cow::Owned(BandedLdlt::factor(
            a, b, eps, delta,
        )))));
    }
    // CSR of a symmetric matrix is its CSC; faer reads the lower triangle.
    let sym = SymbolicSparseColMatRef::new_checked(n, n, off, None, idx);
    let symbolic = factorize_symbolic_cholesky(
        sym,
        Side::Lower,
        SymmetricOrdering::Amd,
        CholeskySymbolicParams::default(),
    )
    .map_err(|e| FoldError::primitive("sparse LDLᵀ (symbolic)", format!("{e:?}")))?;
    if symbolic.len_val() > MAX_FACTOR_ENTRIES {
        return Ok(None);
    }
    let mut values = vec![0.0; symbolic.len_val()];
    let mut mem = MemBuffer::new(
        symbolic.factorize_numeric_ldlt_scratch::<f64>(Par::Seq, Default::default()),
    );
    let reg = LdltRegularization {
        dynamic_regularization_signs: None,
        dynamic_regularization_delta: delta,
        dynamic_regularization_epsilon: eps,
    };
    symbolic
        .factorize_numeric_ldlt(
            &mut values,
            SparseColMatRef::new(sym, val),
            Side::Lower,
            reg,
            Par::Seq,
            MemStack::new(&mut mem),
            Default::default(),
        )
        .map_err(|_| FoldError::Singular)?;
    Ok(Some(Factor::Ldlt { symbolic, values }))
}

/// faer's sparse LU (of `Aᵀ`, whose CSC is `A`'s CSR).
fn factor_lu(a: &CsrMatrix<f64>) -> Result<Factor<'static>, FoldError> {
    let n = a.nrows();
    let sym = SymbolicSparseColMatRef::new_checked(n, n, a.row_offsets(), None, a.col_indices());
    let lu = SparseColMatRef::new(sym, a.values())
        .sp_lu()
        .map_err(|_| FoldError::Singular)?;
    Ok(Factor::LuOfTranspose(lu))
}

/// Solves `A x = b` for a square sparse `a` by a sparse factorization and iterative
/// refinement, returning only a solution whose true residual meets `stop.tol`.
///
/// Errors: `Singular` when the factorization fails or a singular system is
/// inconsistent; `NotConverged` when refinement stalls above `tol` (ill-conditioning) or
/// the factor would not fit `MAX_FACTOR_ENTRIES` or `‖b‖` overflows (Krylov methods scale
/// such a `b`); `NonFinite` for a non-finite entry
/// of `a` or `b`.
pub fn sparse_direct(
    a: &CsrMatrix<f64>,
    b: &DVector<f64>,
    stop: &Stop,
) -> Result<SparseSolved, FoldError> {
    sparse_direct_with(a, b, stop, BANDED_MAX)
}

/// [`sparse_direct`] with banded factorization up to half-bandwidth `banded_max` (for
/// the benchmark that sets `BANDED_MAX`).
pub fn sparse_direct_with(
    a: &CsrMatrix<f64>,
    b: &DVector<f64>,
    stop: &Stop,
    banded_max: usize,
) -> Result<SparseSolved, FoldError> {
    crate::__private::check::same_dim("columns of a sparse system", a.nrows(), a.ncols())?;
    let m = Assembled::Csr {
        a: Cow::Borrowed(a),
        symmetric: false,
    };
    solve_assembled(&m, b, stop, banded_max)
}

/// [`sparse_direct`] of an assembled system (square by construction).
pub fn solve_assembled(
    m: &Assembled<'_>,
    b: &DVector<f64>,
    stop: &Stop,
    banded_max: usize,
) -> Result<SparseSolved, FoldError> {
    crate::__private::check::same_dim("right-hand side", m.dim(), b.len())?;
    // A finite norm means finite entries; only a norm that is not scans them.
    let bnorm = b.norm();
    if !bnorm.is_finite() {
        crate::__private::check::finite_vector(b, "right-hand side")?;
        // Finite entries whose squares overflow: relative residuals would read 0. The
        // Krylov rungs after this solve scale such a right-hand side.
        return Err(not_converged(0, f64::INFINITY, stop.tol));
    }
    if bnorm == 0.0 {
        return Ok(SparseSolved {
            solved: Solved::zero(b.len()),
            dropped: None,
        });
    }
    let out = match m {
        Assembled::Band(_, Some(ldlt)) => {
            refine(m, &Factor::Banded(Cow::Borrowed(ldlt)), b, bnorm, stop)
        }
        Assembled::Band(band, None) => {
            let dmax = band.max_diagonal();
            if dmax > 0.0 && dmax.is_finite() {
                let f = BandedLdlt::factor_band(band, PIVOT_DROP * dmax, dmax);
                refine(m, &Factor::Banded(Cow::Owned(f)), b, bnorm, stop)
            } else {
                Err(FoldError::Singular)
            }
        }
        Assembled::Csr { a, symmetric } => {
            solve_factored(a, m, b, bnorm, stop, banded_max, *symmetric)
        }
        Assembled::Graph {
            scale,
            a,
            rows,
            forest,
        } => match refine(m, &Factor::Forest(forest), b, bnorm, stop) {
            Ok(s) => Ok(s),
            // A forest that does not solve the system (an inconsistent one, or weights
            // whose cycles are independent rows) leaves it to the general factorization.
            Err(_) => match gram_csr(*scale, a, rows)? {
                Assembled::Csr { a: g, .. } => {
                    let csr = Assembled::Csr {
                        a: Cow::Borrowed(g.as_ref()),
                        symmetric: true,
                    };
                    solve_factored(&g, &csr, b, bnorm, stop, banded_max, true)
                }
                _ => Err(FoldError::Singular),
            },
        },
    };
    let finite = || match m {
        Assembled::Band(band, _) => band.all_finite(),
        Assembled::Csr { a, .. } => crate::__private::check::all_finite(a.values()),
        Assembled::Graph { a, .. } => crate::__private::check::all_finite(a.values()),
    };
    if out.is_err() && !finite() {
        // Checked only on failure: a non-finite entry always spoils the solution.
        return Err(FoldError::non_finite("sparse reduced matrix"));
    }
    out
}

fn solve_factored(
    a: &CsrMatrix<f64>,
    op: &dyn Operator,
    b: &DVector<f64>,
    bnorm: f64,
    stop: &Stop,
    banded_max: usize,
    symmetric: bool,
) -> Result<SparseSolved, FoldError> {
    if symmetric || looks_symmetric(a) {
        let out = match factor_symmetric(a, banded_max)? {
            Some(f) => refine(op, &f, b, bnorm, stop),
            // Too much fill: leave it to the Krylov rungs.
            None => return Err(not_converged(0, f64::INFINITY, stop.tol)),
        };
        match out {
            Ok(s) => return Ok(s),
            Err(e) if symmetric || self::symmetric(a, SYMMETRY_TOL) => return Err(e),
            Err(_) => {}
        }
    }
    refine(op, &factor_lu(a)?, b, bnorm, stop)
}

/// Solve and refine against the operator until the true residual meets `tol` (`bnorm`
/// is `‖b‖`).
fn refine(
    op: &dyn Operator,
    f: &Factor,
    b: &DVector<f64>,
    bnorm: f64,
    stop: &Stop,
) -> Result<SparseSolved, FoldError> {
    let dropped = match f {
        Factor::Banded(f) => Some(f.dropped),
        Factor::Forest(f) => Some(f.cycles),
        _ => None,
    };
    let mut x = crate::__private::temps::as_vector(super::scratch::overwritten(b.len(), 0.0));
    x.copy_from(b);
    f.solve_in_place(&mut x);
    let mut r = crate::__private::temps::as_vector(super::scratch::zeroed(b.len()));
    let mut products = 0;
    let mut rel = f64::INFINITY;
    for step in 0..=MAX_REFINE {
        if !crate::__private::check::all_finite(x.as_slice()) {
            return Err(FoldError::Singular);
        }
        let prev = rel;
        rel = residual_into(op, &x, b, &mut r)? / bnorm;
        products += 1;
        if rel <= stop.tol {
            super::scratch::keep(r.data.into());
            return Ok(SparseSolved {
                solved: Solved {
                    x,
                    iterations: products,
                    residual: rel,
                },
                dropped: dropped.filter(|&d| d > 0),
            });
        }
        // Refinement that no longer halves the residual will not reach `tol`.
        if step == MAX_REFINE || rel > 0.5 * prev {
            break;
        }
        f.solve_in_place(&mut r);
        x += &r;
    }
    if dropped.is_some_and(|d| d > 0) || rel > 1e-3 {
        // What is left lies outside the range: inconsistent (or not what was factored).
        return Err(FoldError::Singular);
    }
    Err(not_converged(products, rel, stop.tol))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solvers::testing::csr;
    use crate::solvers::testing::stop;
    use crate::SparseReduced;
    use nalgebra::DMatrix;
    use nalgebra_sparse::CooMatrix;

    /// The Laplacian of a 6 × 6 grid graph (singular: constants), bandwidth 6.
    fn grid_laplacian() -> DMatrix<f64> {
        let (r, c) = (6, 6);
        let n = r * c;
        let mut l = DMatrix::zeros(n, n);
        let mut edge = |a: usize, b: usize| {
            l[(a, a)] += 1.0;
            l[(b, b)] += 1.0;
            l[(a, b)] -= 1.0;
            l[(b, a)] -= 1.0;
        };
        for i in 0..r {
            for j in 0..c {
                if j + 1 < c {
                    edge(i * c + j, i * c + j + 1);
                }
                if i + 1 < r {
                    edge(i * c + j, (i + 1) * c + j);
                }
            }
        }
        l
    }

    #[test]
    fn amd_ldlt_solves_spd_and_consistent_singular_and_rejects_inconsistent() {
        let l = grid_laplacian();
        let n = l.nrows();
        let spd = &l + DMatrix::identity(n, n) * 0.1;
        let b = DVector::from_fn(n, |i, _| ((i * 7) % 5) as f64 - 2.0);
        let s = sparse_direct(&csr(&spd), &b, &stop()).unwrap();
        assert!((&spd * &s.solved.x - &b).norm() <= 1e-12 * b.norm());
        // Consistent: b ⊥ constants.
        let bc = b.add_scalar(-b.mean());
        let s = sparse_direct(&csr(&l), &bc, &stop()).unwrap();
        assert!((&l * &s.solved.x - &bc).norm() <= 1e-12 * bc.norm());
        // Finite entries whose norm overflows: not accepted on a residual that reads 0.
        assert!(matches!(
            sparse_direct(&csr(&spd), &(&b * 1e300), &stop()),
            Err(FoldError::NotConverged { .. })
        ));
        // Inconsistent: a constant component.
        let bi = bc.add_scalar(0.5);
        assert!(matches!(
            sparse_direct(&csr(&l), &bi, &stop()),
            Err(FoldError::Singular)
        ));
    }

    #[test]
    fn banded_reports_the_dropped_pivots_and_lu_takes_unsymmetric_systems() {
        let n = 8;
        let path = DMatrix::from_fn(n, n, |i, j| match i.abs_diff(j) {
            0 if i == 0 || i == n - 1 => 1.0,
            0 => 2.0,
            1 => -1.0,
            _ => 0.0,
        });
        let b = DVector::from_fn(n, |i, _| (i as f64).sin());
        let bc = b.add_scalar(-b.mean());
        let s = sparse_direct(&csr(&path), &bc, &stop()).unwrap();
        assert_eq!(s.dropped, Some(1));
        let mut a = path.clone() + DMatrix::identity(n, n);
        a[(0, 3)] = 0.7;
        let s = sparse_direct(&csr(&a), &b, &stop()).unwrap();
        assert!((&a * &s.solved.x - &b).norm() <= 1e-12 * b.norm());
        assert_eq!(s.dropped, None);
        let zero = DMatrix::<f64>::zeros(n, n);
        assert!(sparse_direct(&csr(&zero), &b, &stop()).is_err());
    }

    /// The edges of a 5 × 4 grid graph as incidence rows (`−1` at the smaller pixel, `1`
    /// at the larger).
    fn grid_edges() -> CsrMatrix<f64> {
        let (r, c) = (5, 4);
        let mut rows = vec![];
        for p in 0..r * c {
            if p % c + 1 < c {
                rows.push((p, p + 1));
            }
            if p + c < r * c {
                rows.push((p, p + c));
            }
        }
        let mut coo = CooMatrix::new(rows.len(), r * c);
        for (e, &(a, b)) in rows.iter().enumerate() {
            coo.push(e, a, -1.0);
            coo.push(e, b, 1.0);
        }
        CsrMatrix::from(&coo)
    }

    #[test]
    fn a_graph_gram_is_solved_on_its_forest_and_what_the_forest_cannot_solve_falls_back() {
        let d = grid_edges();
        let dd = DMatrix::from(&d);
        // Four edges in five free: cycles remain (the 2-D total-variation case).
        let s: Vec<usize> = (0..d.nrows()).filter(|e| e % 5 != 2).collect();
        let sub = DMatrix::from_fn(s.len(), d.ncols(), |r, j| dd[(s[r], j)]);
        let gram = &sub * sub.transpose() * 0.125;
        let sys = Assembled::new(SparseReduced::Gram {
            scale: 0.125,
            a: &d,
            rows: &s,
        })
        .unwrap();
        let cycles = match &sys {
            Assembled::Graph { forest, .. } => forest.cycles,
            other => panic!("expected a forest, got {other:?}"),
        };
        assert!(cycles > 0);
        // Consistent: b = A_S h.
        let h = DVector::from_fn(d.ncols(), |i, _| ((i * 5) % 7) as f64 - 3.0);
        let b = &sub * h;
        let out = solve_assembled(&sys, &b, &stop(), BANDED_MAX).unwrap();
        assert!((&gram * &out.solved.x - &b).norm() <= 1e-12 * b.norm());
        assert_eq!(out.dropped, Some(cycles));
        // Inconsistent: an edge-space vector with a component along a cycle.
        let bad = DVector::from_fn(s.len(), |i, _| (i as f64).cos());
        assert!(matches!(
            solve_assembled(&sys, &bad, &stop(), BANDED_MAX),
            Err(FoldError::Singular)
        ));

        // A 4-cycle with weights around it whose product is not one: its rows are
        // independent, the Gram matrix nonsingular, the forest's solution misses the cycle
        // row, and the general factorization solves.
        let dense_w = DMatrix::from_row_slice(
            4,
            4,
            &[
                -1.0, 1.0, 0.0, 0.0, //
                0.0, 0.0, -1.0, 3.0, //
                -1.0, 0.0, 0.8, 0.0, //
                0.0, -1.0, 0.0, 1.3,
            ],
        );
        let dw = csr(&dense_w);
        let all = [0, 1, 2, 3];
        let gramw = &dense_w * dense_w.transpose() * 0.125;
        let lmin = gramw.clone().symmetric_eigenvalues().min();
        assert!(lmin > 1e-3, "nonsingular: λ_min = {lmin}");
        let sys = Assembled::new(SparseReduced::Gram {
            scale: 0.125,
            a: &dw,
            rows: &all,
        })
        .unwrap();
        assert!(matches!(&sys, Assembled::Graph { .. }));
        let bad = DVector::from_vec(vec![0.3, -1.0, 0.25, 2.0]);
        let out = solve_assembled(&sys, &bad, &stop(), BANDED_MAX).unwrap();
        assert!((&gramw * &out.solved.x - &bad).norm() <= 1e-12 * bad.norm());
    }
}
