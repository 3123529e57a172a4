//! Dense kernels generated code and solvers call: products that never materialize a
//! transpose, and factorizations.
//!
//! Choices are measured (`cargo bench -p fold-runtime --bench solvers -- kernels`, one
//! core, median):
//!
//! | kernel | n = 10 | n = 100 | n = 1000 |
//! |---|---|---|---|
//! | `A x`, faer / nalgebra | 96 / 65 ns | 0.91 / 1.75 µs | 0.117 / 0.177 ms |
//! | `Aᵀ x`, faer / nalgebra | 84 / 33 ns | 1.09 / 1.80 µs | 0.107 / 0.147 ms |
//! | LU + solve, faer (with condition estimate) / nalgebra | 2.4 / 0.45 µs | 86 / 73 µs | 19 / 90 ms |
//! | Cholesky + solve, faer / nalgebra | 0.55 / 0.40 µs | 25 / 43 µs | 8.4 / 42 ms |
//!
//! - Matrix–vector products up to [`SMALL_GEMV`] entries are nalgebra's (the bits of a
//!   rule body's own `q * x`), up to 256² entries vectorized here for the running CPU
//!   (`simd.rs`: 0.6–0.7× faer's time at n = 29…200), larger ones faer's on zero-copy
//!   views of nalgebra storage.
//! - LU and Cholesky factor in place with faer's blocked kernels (5× faster at n = 1000),
//!   Cholesky below n = 57 with a hand-rolled kernel (reduced systems live there);
//!   at n ≤ 100 the LU's cost is dominated by the condition estimate that makes
//!   `Singular` trustworthy, which is kept on purpose. The factors stay in nalgebra
//!   matrices; triangular solves with one right-hand side are plain column loops here.
//! - Systems of at most 64 unknowns (reduced systems, one per backward) factor in a
//!   per-thread workspace without allocating (`small.rs`).

use crate::FoldError;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use nalgebra::{DMatrix, DVector};

mod cholesky;
mod factorization;
mod lu;
mod simd;
mod small;
mod triangular;

pub use cholesky::Cholesky;
pub use factorization::Factorization;
pub use lu::Lu;
use lu::*;
pub(crate) use small::{with_small_factor, SmallFactor, SMALL_MAX};
pub(crate) use triangular::dot;
use triangular::*;

// Sequential on purpose: the runtime is measured and used on one core, and nested
// parallelism (batches over rayon) must not oversubscribe.
const PAR: Par = Par::Seq;

fn view(a: &DMatrix<f64>) -> MatRef<'_, f64> {
    MatRef::from_column_major_slice(a.as_slice(), a.nrows(), a.ncols())
}

fn view_mut(a: &mut DMatrix<f64>) -> MatMut<'_, f64> {
    let (m, n) = a.shape();
    MatMut::from_column_major_slice_mut(a.as_mut_slice(), m, n)
}

fn col(x: &DVector<f64>) -> MatRef<'_, f64> {
    MatRef::from_column_major_slice(x.as_slice(), x.len(), 1)
}

fn col_mut(x: &mut DVector<f64>) -> MatMut<'_, f64> {
    let n = x.len();
    MatMut::from_column_major_slice_mut(x.as_mut_slice(), n, 1)
}

/// Shared by `gemv` and `gemv_t`: `y ← α op(A) x + β y` with BLAS semantics for `β = 0`
/// (the old `y` is not read, so NaN garbage in it does not propagate).
fn gemv_imp(y: &mut DVector<f64>, alpha: f64, a: MatRef<'_, f64>, x: &DVector<f64>, beta: f64) {
    let accum = if beta == 0.0 {
        Accum::Replace
    } else {
        if beta != 1.0 {
            *y *= beta;
        }
        Accum::Add
    };
    matmul(col_mut(y), accum, a, col(x), alpha, PAR);
}

/// Up to this many matrix entries products go through nalgebra's own `gemv`: the same
/// bits as the `q * x` of a rule's body, so that a generated step equals the rule
/// function it was generated from (at these sizes the vectorized product saves a few
/// nanoseconds only).
pub const SMALL_GEMV: usize = 400;

/// Panics unless `op(A)` is `y.len() × x.len()`.
fn check_gemv(rows: usize, cols: usize, x: &DVector<f64>, y: &DVector<f64>) {
    assert!(
        rows == y.len() && cols == x.len(),
        "gemv: op(a) is {rows}x{cols}, x has {}, y has {}",
        x.len(),
        y.len()
    );
}

/// `y ← α A x + β y` (`β = 0` ignores the old `y`).
///
/// # Panics
/// If the shapes disagree (a caller bug: generated code checks shapes first).
pub fn gemv(y: &mut DVector<f64>, alpha: f64, a: &DMatrix<f64>, x: &DVector<f64>, beta: f64) {
    check_gemv(a.nrows(), a.ncols(), x, y);
    if a.len() <= SMALL_GEMV {
        return y.gemv(alpha, a, x, beta);
    }
    if a.len() <= simd::SIMD_GEMV_MAX {
        return simd::gemv(y.as_mut_slice(), alpha, a.as_slice(), x.as_slice(), beta);
    }
    gemv_imp(y, alpha, view(a), x, beta);
}

/// `y ← α Aᵀ x + β y`, without forming `Aᵀ` (`β = 0` ignores the old `y`).
///
/// # Panics
/// If the shapes disagree.
pub fn gemv_t(y: &mut DVector<f64>, alpha: f64, a: &DMatrix<f64>, x: &DVector<f64>, beta: f64) {
    check_gemv(a.ncols(), a.nrows(), x, y);
    if a.len() <= SMALL_GEMV {
        return y.gemv_tr(alpha, a, x, beta);
    }
    if a.len() <= simd::SIMD_GEMV_MAX {
        return simd::gemv_t(y.as_mut_slice(), alpha, a.as_slice(), x.as_slice(), beta);
    }
    gemv_imp(y, alpha, view(a).transpose(), x, beta);
}

/// `y ← α op(A) x + β y` on slices, for the column-major `a` of `op(A)`'s shape
/// `y.len() × x.len()` (`β = 0` ignores the old `y`): the residual of a small system
/// (any size works; above [`simd::SIMD_GEMV_MAX`] entries faer's [`gemv`] is faster).
pub(crate) fn gemv_slice(
    y: &mut [f64],
    alpha: f64,
    a: &[f64],
    x: &[f64],
    beta: f64,
    transposed: bool,
) {
    assert_eq!(a.len(), y.len() * x.len(), "gemv_slice: shapes disagree");
    if a.len() <= TINY_GEMV {
        return tiny_gemv(y, alpha, a, x, beta, transposed);
    }
    if transposed {
        simd::gemv_t(y, alpha, a, x, beta)
    } else {
        simd::gemv(y, alpha, a, x, beta)
    }
}

/// Up to this many entries [`gemv_slice`] runs plain loops: at a reduced system of a few
/// unknowns the vector kernels' runtime dispatch costs more than the arithmetic.
const TINY_GEMV: usize = 64;

/// [`gemv_slice`] as scalar loops.
fn tiny_gemv(y: &mut [f64], alpha: f64, a: &[f64], x: &[f64], beta: f64, transposed: bool) {
    let combine = |s: f64, yi: f64| {
        if beta == 0.0 {
            alpha * s
        } else {
            alpha * s + beta * yi
        }
    };
    if transposed {
        let k = x.len();
        for (i, yi) in y.iter_mut().enumerate() {
            let s = a[i * k..(i + 1) * k]
                .iter()
                .zip(x)
                .map(|(c, v)| c * v)
                .sum();
            *yi = combine(s, *yi);
        }
    } else {
        let m = y.len();
        for (i, yi) in y.iter_mut().enumerate() {
            let s = x.iter().enumerate().map(|(j, v)| a[j * m + i] * v).sum();
            *yi = combine(s, *yi);
        }
    }
}

/// `C ← α A B + β C` (`β = 0` ignores the old `C`).
///
/// # Panics
/// If the shapes disagree.
pub fn gemm(c: &mut DMatrix<f64>, alpha: f64, a: &DMatrix<f64>, b: &DMatrix<f64>, beta: f64) {
    assert!(
        a.nrows() == c.nrows() && b.ncols() == c.ncols() && a.ncols() == b.nrows(),
        "gemm: shapes disagree"
    );
    let accum = if beta == 0.0 {
        Accum::Replace
    } else {
        if beta != 1.0 {
            *c *= beta;
        }
        Accum::Add
    };
    matmul(view_mut(c), accum, view(a), view(b), alpha, PAR);
}

/// `C ← α op(A) op(B)`, `op` transposing when asked, without forming a transpose.
///
/// # Panics
/// If the shapes disagree.
pub fn gemm_op(
    c: &mut DMatrix<f64>,
    alpha: f64,
    a: &DMatrix<f64>,
    ta: bool,
    b: &DMatrix<f64>,
    tb: bool,
) {
    let (a, b) = (view(a), view(b));
    let a = if ta { a.transpose() } else { a };
    let b = if tb { b.transpose() } else { b };
    assert!(
        a.nrows() == c.nrows() && b.ncols() == c.ncols() && a.ncols() == b.nrows(),
        "gemm: shapes disagree"
    );
    matmul(view_mut(c), Accum::Replace, a, b, alpha, PAR);
}

/// Which factorization [`crate::solvers::direct_dense`] used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseFactorization {
    /// `L Lᵀ`: the matrix was symmetric and positive definite.
    Cholesky,
    /// `P A = L U` with partial pivoting.
    Lu,
}

/// Whether `|aᵢⱼ − aⱼᵢ| ≤ rel_tol · max|a|` for all `i, j` (false for non-square `a`).
pub fn is_symmetric(a: &DMatrix<f64>, rel_tol: f64) -> bool {
    let (m, n) = a.shape();
    if m != n {
        return false;
    }
    let tol = rel_tol * max_abs(a);
    let s = a.as_slice();
    // Column j below the diagonal against row j right of it; slices avoid bounds checks.
    for j in 0..n {
        let col = &s[j * n + j + 1..(j + 1) * n];
        let mut bad = false;
        for (k, &v) in col.iter().enumerate() {
            let i = j + 1 + k;
            bad |= (v - s[i * n + j]).abs() > tol;
        }
        if bad {
            return false;
        }
    }
    true
}

/// [`is_symmetric`] on the first and last rows and columns only: `false` proves `a` is
/// not symmetric; `true` is a guess for a caller that verifies its result.
pub fn looks_symmetric(a: &DMatrix<f64>, rel_tol: f64) -> bool {
    let (m, n) = a.shape();
    if m != n {
        return false;
    }
    if n < 2 {
        return true;
    }
    // Relative to the probed entries only: a full pass for max|a| would cost what the
    // probe saves. A stricter tolerance only sends a symmetric matrix to LU.
    let s = a.as_slice();
    // Bitwise-equal probes (a matrix assembled from symmetric data) settle it without
    // `max|a|`, whose chain of maxima is most of the cost at small orders.
    let mirrored = |j: usize| (0..n).all(|i| s[j * n + i] == s[i * n + j]);
    if mirrored(0) && mirrored(n - 1) {
        return true;
    }
    // Four running maxima: one would chain every comparison behind the last.
    let mut lanes = [0.0f64; 4];
    let mut tail = 0.0f64;
    for j in [0, n - 1] {
        let col = &s[j * n..(j + 1) * n];
        let mut chunks = col.chunks_exact(4);
        for (c, quad) in (&mut chunks).enumerate() {
            for l in 0..4 {
                let v = s[(4 * c + l) * n + j];
                lanes[l] = lanes[l].max(quad[l].abs()).max(v.abs());
            }
        }
        let done = n - chunks.remainder().len();
        for (i, &u) in chunks.remainder().iter().enumerate() {
            tail = tail.max(u.abs()).max(s[(done + i) * n + j].abs());
        }
    }
    let tol = rel_tol * lanes.iter().fold(tail, |m, &v| m.max(v));
    [0, n - 1].into_iter().all(|j| {
        let col = &s[j * n..(j + 1) * n];
        col.iter()
            .enumerate()
            .all(|(i, &u)| (u - s[i * n + j]).abs() <= tol)
    })
}

/// Relative asymmetry below which the dense solves treat a matrix as symmetric.
pub const SYMMETRY_TOL: f64 = 1e-14;

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, m: usize, seed: u64) -> DMatrix<f64> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        DMatrix::from_fn(n, m, |_, _| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
    }

    #[test]
    fn products_match_nalgebra() {
        for (m, n) in [(0, 0), (1, 1), (3, 5), (7, 2), (40, 33), (130, 129)] {
            let a = pseudo_random(m, n, 1);
            let x = DVector::from_column_slice(pseudo_random(n, 1, 2).as_slice());
            let z = DVector::from_column_slice(pseudo_random(m, 1, 3).as_slice());
            let mut y = z.clone();
            gemv(&mut y, 0.7, &a, &x, -1.3);
            let expect = &a * &x * 0.7 - &z * 1.3;
            assert!((y - expect).amax() < 1e-12);
            let mut y = DVector::from_element(n, f64::NAN);
            gemv_t(&mut y, 2.0, &a, &z, 0.0);
            assert!((y - a.transpose() * &z * 2.0).amax() < 1e-12);
        }
    }

    #[test]
    fn slice_products_match_nalgebra_at_every_size() {
        // Tiny (scalar loops), vector kernels, and empty operands.
        for (m, n) in [
            (0, 3),
            (3, 0),
            (1, 1),
            (3, 3),
            (8, 8),
            (5, 13),
            (9, 9),
            (30, 20),
        ] {
            let a = pseudo_random(m, n, 4);
            let x = pseudo_random(n, 1, 5);
            let z = pseudo_random(m, 1, 6);
            let mut y = z.as_slice().to_vec();
            gemv_slice(&mut y, 0.7, a.as_slice(), x.as_slice(), -1.3, false);
            let expect = &a * &x * 0.7 - &z * 1.3;
            let gap = |y: &[f64], e: &DMatrix<f64>| {
                y.iter()
                    .zip(e.as_slice())
                    .fold(0.0f64, |g, (u, v)| g.max((u - v).abs()))
            };
            assert!(
                y.len() == expect.len() && gap(&y, &expect) < 1e-12,
                "{m}×{n}"
            );
            let mut y = vec![f64::NAN; n];
            gemv_slice(&mut y, 2.0, a.as_slice(), z.as_slice(), 0.0, true);
            let expect = a.transpose() * &z * 2.0;
            assert!(
                y.len() == expect.len() && gap(&y, &expect) < 1e-12,
                "{m}×{n}ᵀ"
            );
        }
    }

    #[test]
    fn lu_solves_both_ways() {
        for n in [1usize, 2, 5, 63, 64, 65, 150] {
            let a = pseudo_random(n, n, n as u64) + DMatrix::identity(n, n) * 3.0;
            let b = DVector::from_column_slice(pseudo_random(n, 1, 9).as_slice());
            let lu = Lu::factor(&a).unwrap();
            assert!((&a * lu.solve(&b) - &b).amax() < 1e-11, "n={n}");
            assert!(
                (a.tr_mul(&lu.solve_transpose(&b)) - &b).amax() < 1e-11,
                "n={n}"
            );
            let exact_inv = a.clone().try_inverse().unwrap();
            let cond = a.column_iter().map(|c| c.abs().sum()).fold(0.0, f64::max)
                * exact_inv
                    .column_iter()
                    .map(|c| c.abs().sum())
                    .fold(0.0, f64::max);
            // The estimate is a lower bound on the condition within a small factor.
            assert!(1.0 / lu.rcond() <= cond * 1.0001 && 1.0 / lu.rcond() >= cond / 10.0);
        }
    }

    #[test]
    fn badly_scaled_rows_are_not_singular() {
        // D B with B well conditioned and D spanning 1e-200 … 1e200: solvable to full
        // relative accuracy, singular only if the verdict depended on the row scaling.
        for n in [3usize, 8, 40, 70] {
            let b = pseudo_random(n, n, 11 + n as u64) + DMatrix::identity(n, n) * 4.0;
            let d: Vec<f64> = (0..n)
                .map(|i| 10f64.powf(-200.0 + 400.0 * i as f64 / (n - 1) as f64))
                .collect();
            let a = DMatrix::from_fn(n, n, |i, j| d[i] * b[(i, j)]);
            let x_true = DVector::from_fn(n, |i, _| 1.0 + i as f64);
            let rhs = DVector::from_fn(n, |i, _| d[i] * (b.row(i) * &x_true)[0]);
            let lu = Lu::factor(&a).unwrap();
            let x = lu.solve(&rhs);
            assert!((&x - &x_true).amax() <= 1e-10 * x_true.amax(), "n = {n}");
            // Aᵀ y = Aᵀ e₀ has the solution y = e₀.
            let c = a.row(0).transpose();
            let y = lu.solve_transpose(&c);
            assert!((y[0] - 1.0).abs() < 1e-10 && y.rows(1, n - 1).amax() < 1e-10);
            // The same rows made dependent stay singular.
            let mut dep = a.clone();
            let last = dep.row(n - 2) * (d[n - 1] / d[n - 2]);
            dep.set_row(n - 1, &last);
            assert_eq!(
                Lu::factor(&dep).unwrap_err(),
                FoldError::Singular,
                "n = {n}"
            );
        }
        // Columns scaled instead (unknowns in wildly different units): B D x = b.
        let n = 9;
        let b = pseudo_random(n, n, 5) + DMatrix::identity(n, n) * 4.0;
        let d: Vec<f64> = (0..n).map(|j| 10f64.powi(-40 + 10 * j as i32)).collect();
        let a = DMatrix::from_fn(n, n, |i, j| b[(i, j)] * d[j]);
        let x_true = DVector::from_fn(n, |j, _| (1.0 + j as f64) / d[j]);
        let rhs = &b * DVector::from_fn(n, |j, _| 1.0 + j as f64);
        let x = Lu::factor(&a).unwrap().solve(&rhs);
        for j in 0..n {
            assert!(
                (x[j] - x_true[j]).abs() <= 1e-10 * x_true[j].abs(),
                "j = {j}"
            );
        }

        // Symmetric scaling D S D of an SPD matrix: Cholesky still factors it.
        let n = 6;
        let b = pseudo_random(n, n, 3);
        let spd = &b * b.transpose() + DMatrix::identity(n, n);
        let d: Vec<f64> = (0..n).map(|i| 10f64.powi(-30 + 12 * i as i32)).collect();
        let scaled = DMatrix::from_fn(n, n, |i, j| d[i] * spd[(i, j)] * d[j]);
        let x_true = DVector::from_fn(n, |i, _| (1.0 + i as f64) / d[i]);
        let rhs = &scaled * &x_true;
        let x = Cholesky::factor(&scaled).unwrap().solve(&rhs);
        for i in 0..n {
            assert!(
                (x[i] - x_true[i]).abs() <= 1e-10 * x_true[i].abs(),
                "i = {i}"
            );
        }
    }

    #[test]
    fn lu_rejects_singular_and_bad_input() {
        let a = DMatrix::from_row_slice(3, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        assert_eq!(Lu::factor(&a).unwrap_err(), FoldError::Singular);
        assert_eq!(
            Lu::factor(&DMatrix::zeros(4, 4)).unwrap_err(),
            FoldError::Singular
        );
        let near = DMatrix::from_row_slice(2, 2, &[1.0, 1.0, 1.0, 1.0 + 1e-17]);
        assert_eq!(Lu::factor(&near).unwrap_err(), FoldError::Singular);
        assert!(matches!(
            Lu::factor(&DMatrix::zeros(2, 3)),
            Err(FoldError::DimensionMismatch { .. })
        ));
        let mut nan = DMatrix::identity(3, 3);
        nan[(1, 2)] = f64::NAN;
        assert!(matches!(Lu::factor(&nan), Err(FoldError::NonFinite { .. })));
        assert_eq!(Lu::factor(&DMatrix::zeros(0, 0)).unwrap().dim(), 0);
    }

    #[test]
    fn cholesky_factor_matches_nalgebra_at_every_small_size() {
        // Sizes on both sides of SMALL_CHOLESKY and every remainder of the 4-column blocks.
        for n in (1..=20).chain([47, 55, 56, 57, 64, 90]) {
            let b = pseudo_random(n, n, n as u64);
            let spd = &b * b.transpose() + DMatrix::identity(n, n) * 0.1;
            let ours = Cholesky::factor(&spd).unwrap().l.lower_triangle();
            let reference = spd.clone().cholesky().unwrap().unpack();
            let scale = reference.amax();
            assert!((&ours - &reference).amax() <= 1e-12 * scale, "n = {n}");
        }
        let mut semidefinite = DMatrix::from_element(6, 6, 1.0);
        assert_eq!(
            Cholesky::factor(&semidefinite).unwrap_err(),
            FoldError::Singular
        );
        semidefinite[(3, 3)] = -1.0;
        assert_eq!(
            Cholesky::factor(&semidefinite).unwrap_err(),
            FoldError::Singular
        );
        let mut nan = DMatrix::identity(5, 5);
        nan[(4, 1)] = f64::NAN;
        assert!(matches!(
            Cholesky::factor(&nan),
            Err(FoldError::NonFinite { .. })
        ));
    }

    #[test]
    fn symmetry_probe_never_calls_an_asymmetric_border_symmetric() {
        let mut a = DMatrix::from_fn(6, 6, |i, j| (i + j) as f64);
        assert!(looks_symmetric(&a, SYMMETRY_TOL) && is_symmetric(&a, SYMMETRY_TOL));
        // Symmetric within the tolerance but not bitwise: past the exact probe.
        let mut rounded = a.clone();
        rounded[(0, 5)] *= 1.0 + 1e-15;
        assert!(looks_symmetric(&rounded, SYMMETRY_TOL));
        rounded[(0, 5)] *= 1.0 + 1e-12;
        assert!(!looks_symmetric(&rounded, SYMMETRY_TOL));
        a[(2, 3)] += 1.0; // interior: only the full check sees it
        assert!(looks_symmetric(&a, SYMMETRY_TOL) && !is_symmetric(&a, SYMMETRY_TOL));
        a[(5, 2)] += 1.0; // last row
        assert!(!looks_symmetric(&a, SYMMETRY_TOL));
        assert!(!looks_symmetric(&DMatrix::zeros(2, 3), SYMMETRY_TOL));
    }

    #[test]
    fn cholesky_solves_spd_and_refuses_indefinite() {
        let b0 = pseudo_random(50, 50, 4);
        let spd = &b0 * b0.transpose() + DMatrix::identity(50, 50);
        let b = DVector::from_column_slice(pseudo_random(50, 1, 5).as_slice());
        let ch = Cholesky::factor(&spd).unwrap();
        assert!((&spd * ch.solve(&b) - &b).amax() < 1e-10);
        let indefinite = &spd - DMatrix::identity(50, 50) * 1e3;
        assert_eq!(
            Cholesky::factor(&indefinite).unwrap_err(),
            FoldError::Singular
        );
        let lu = Lu::factor(&indefinite).unwrap();
        assert!((&indefinite * lu.solve(&b) - &b).amax() < 1e-9);
    }
}
