//! Matrix–vector products of dense and sparse (CSR) arguments, scaled, without
//! materialized transposes; the checked ones also reject a non-finite matrix.

use super::temps;
use crate::linalg::{gemv, gemv_t};
use crate::FoldError;
use nalgebra::{DMatrix, DVector};
use nalgebra_sparse::CsrMatrix;

/// `α A x`.
#[inline]
pub fn mv(alpha: f64, a: &DMatrix<f64>, x: &DVector<f64>) -> DVector<f64> {
    // β = 0: the kept buffer's old entries are not read.
    let mut y = temps::vector(a.nrows());
    gemv(&mut y, alpha, a, x, 0.0);
    y
}

/// `α Aᵀ x`, without forming `Aᵀ`.
#[inline]
pub fn mtv(alpha: f64, a: &DMatrix<f64>, x: &DVector<f64>) -> DVector<f64> {
    let mut y = temps::vector(a.ncols());
    gemv_t(&mut y, alpha, a, x, 0.0);
    y
}

/// `α A x` (or `α Aᵀ x` when `transposed`), failing with `NonFinite { what }` when `A` has
/// a NaN or infinite entry — without a separate pass over `A`.
///
/// Generated `backward`s must reject non-finite matrix arguments, and reading a large
/// matrix twice (check, then product) costs as much as the product itself. Every entry of
/// `A` enters the product (`NaN·0` and `∞·0` are NaN), so a non-finite `A` always makes the
/// result non-finite; only then is `A` scanned, to tell a bad entry from an overflow.
pub fn mv_checked(
    alpha: f64,
    a: &DMatrix<f64>,
    x: &DVector<f64>,
    transposed: bool,
    what: &str,
) -> Result<DVector<f64>, FoldError> {
    let y = if transposed {
        mtv(alpha, a, x)
    } else {
        mv(alpha, a, x)
    };
    checked_product(y, a.as_slice(), what)
}

/// `Ok(y)` when the product `y` is finite; otherwise `NonFinite { what }` when the matrix's
/// `entries` are not all finite, or the product overflowed.
fn checked_product(
    y: DVector<f64>,
    entries: &[f64],
    what: &str,
) -> Result<DVector<f64>, FoldError> {
    if crate::__private::check::all_finite(y.as_slice()) {
        return Ok(y);
    }
    if !crate::__private::check::all_finite(entries) {
        return Err(FoldError::non_finite(what));
    }
    Err(FoldError::non_finite(format!(
        "a product with `{what}` (overflow)"
    )))
}

/// `y + α A x` (or `y + α Aᵀ x` when `transposed`), reusing `y`'s storage.
pub fn mv_acc(
    mut y: DVector<f64>,
    alpha: f64,
    a: &DMatrix<f64>,
    transposed: bool,
    x: &DVector<f64>,
) -> DVector<f64> {
    if transposed {
        gemv_t(&mut y, alpha, a, x, 1.0);
    } else {
        gemv(&mut y, alpha, a, x, 1.0);
    }
    y
}

/// `α op(A) op(B)` where `op` transposes when asked, without forming `Aᵀ`, in a kept
/// buffer (faer's kernels keep their packing buffers per thread, so that nothing else is
/// allocated either).
pub fn mm(alpha: f64, a: &DMatrix<f64>, ta: bool, b: &DMatrix<f64>, tb: bool) -> DMatrix<f64> {
    let rows = if ta { a.ncols() } else { a.nrows() };
    let cols = if tb { b.nrows() } else { b.ncols() };
    let mut c = temps::as_matrix(rows, cols, temps::overwritten(rows * cols));
    crate::linalg::gemm_op(&mut c, alpha, a, ta, b, tb);
    c
}

/// `Aᵀ` in a kept buffer.
pub fn transposed(a: &DMatrix<f64>) -> DMatrix<f64> {
    let mut t = temps::as_matrix(a.ncols(), a.nrows(), temps::overwritten(a.len()));
    a.transpose_to(&mut t);
    t
}

/// `Σ_p val[p] x[idx[p]]` over one CSR row. Rows of two entries (differences, graph
/// edges: the common sparse constants) skip the loop, whose setup would cost as much as
/// the row.
#[inline(always)]
pub(crate) fn row_dot(idx: &[usize], val: &[f64], x: &[f64]) -> f64 {
    if let ([i, j], [u, v]) = (idx, val) {
        return u * x[*i] + v * x[*j];
    }
    idx.iter().zip(val).map(|(&j, &v)| v * x[j]).sum()
}

/// `α A x` for a sparse `A`.
pub fn sparse_mv(alpha: f64, a: &CsrMatrix<f64>, x: &DVector<f64>) -> DVector<f64> {
    let (off, idx, val) = (a.row_offsets(), a.col_indices(), a.values());
    let x = x.as_slice();
    let entries = off
        .windows(2)
        .map(|w| alpha * row_dot(&idx[w[0]..w[1]], &val[w[0]..w[1]], x));
    temps::as_vector(temps::collect(a.nrows(), entries))
}

/// `α Aᵀ x` for a sparse `A`, without forming `Aᵀ`.
pub fn sparse_mtv(alpha: f64, a: &CsrMatrix<f64>, x: &DVector<f64>) -> DVector<f64> {
    let (off, idx, val) = (a.row_offsets(), a.col_indices(), a.values());
    let mut y = temps::zeroed(a.ncols());
    for (w, &xi) in off.windows(2).zip(x.iter()) {
        let xi = alpha * xi;
        match (&idx[w[0]..w[1]], &val[w[0]..w[1]]) {
            // Two entries (see `row_dot`).
            ([i, j], [u, v]) => {
                y[*i] += u * xi;
                y[*j] += v * xi;
            }
            (cols, vals) => {
                for (&j, &v) in cols.iter().zip(vals) {
                    y[j] += v * xi;
                }
            }
        }
    }
    temps::as_vector(y)
}

/// [`sparse_mv`] (or [`sparse_mtv`] when `transposed`), failing with `NonFinite { what }`
/// when `A` has a NaN or infinite stored value, without a separate pass over `A`: every
/// stored value enters the product (`NaN·0` and `∞·0` are NaN), so only a non-finite result
/// makes it scan `A`, as [`mv_checked`].
pub fn sparse_mv_checked(
    alpha: f64,
    a: &CsrMatrix<f64>,
    x: &DVector<f64>,
    transposed: bool,
    what: &str,
) -> Result<DVector<f64>, FoldError> {
    let y = if transposed {
        sparse_mtv(alpha, a, x)
    } else {
        sparse_mv(alpha, a, x)
    };
    checked_product(y, a.values(), what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::{dmatrix, dvector};
    use nalgebra_sparse::CooMatrix;

    #[test]
    fn products_match_dense_definitions() {
        let a = dmatrix![1.0, 2.0, 3.0; 4.0, 5.0, 6.0];
        let x = dvector![1.0, -1.0, 2.0];
        let y = dvector![0.5, 2.0];
        assert_eq!(mv(2.0, &a, &x), (&a * &x) * 2.0);
        assert_eq!(mtv(-1.0, &a, &y), -(a.transpose() * &y));
        assert_eq!(mv_acc(y.clone(), 1.0, &a, false, &x), &y + &a * &x);
        let b = dmatrix![1.0, 0.0; 2.0, 1.0; 0.0, 3.0];
        assert_eq!(mm(1.0, &a, false, &b, false), &a * &b);
        assert_eq!(mm(2.0, &a, true, &a, false), a.transpose() * &a * 2.0);
        assert_eq!(mm(1.0, &a, false, &a, true), &a * a.transpose());
        assert_eq!(mm(1.0, &b, true, &a, true), b.transpose() * a.transpose());
        let mut coo = CooMatrix::new(2, 3);
        for i in 0..2 {
            for j in 0..3 {
                coo.push(i, j, a[(i, j)]);
            }
        }
        let csr = CsrMatrix::from(&coo);
        assert_eq!(sparse_mv(1.0, &csr, &x), &a * &x);
        assert_eq!(sparse_mtv(3.0, &csr, &y), a.transpose() * &y * 3.0);
    }

    #[test]
    fn checked_products_see_every_entry() {
        for (n, m) in [(7usize, 5usize), (8, 8), (33, 9), (1, 1), (5, 0), (64, 64)] {
            let a = DMatrix::from_fn(n, m, |i, j| ((i * 7 + j * 3) as f64).sin());
            let x = DVector::from_fn(m, |i, _| (i as f64).cos());
            let y = DVector::from_fn(n, |i, _| (i as f64 + 0.5).sin());
            let p = mv_checked(2.0, &a, &x, false, "a").unwrap();
            assert!((p - (&a * &x) * 2.0).norm() < 1e-12);
            let p = mv_checked(-1.0, &a, &y, true, "a").unwrap();
            assert!((p + a.transpose() * &y).norm() < 1e-12);
            for i in 0..n {
                for j in 0..m {
                    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                        let mut b = a.clone();
                        b[(i, j)] = bad;
                        // A zero in x must not hide the bad entry.
                        let mut xz = x.clone();
                        xz[j] = 0.0;
                        assert!(mv_checked(1.0, &b, &xz, false, "a").is_err());
                        let mut yz = y.clone();
                        yz[i] = 0.0;
                        assert!(mv_checked(1.0, &b, &yz, true, "a").is_err());
                    }
                }
            }
        }
        // Large sizes take the blocked kernels: one bad entry in a column x ignores.
        let n = 1000;
        let a = DMatrix::from_fn(n, n, |i, j| ((i + 2 * j) as f64).cos());
        let mut x = DVector::from_element(n, 1.0);
        for (i, j) in [(0usize, 0usize), (999, 999), (500, 3), (17, 998)] {
            for bad in [f64::NAN, f64::INFINITY] {
                let mut b = a.clone();
                b[(i, j)] = bad;
                x[j] = 0.0;
                let e = mv_checked(1.0, &b, &x, false, "q").unwrap_err();
                assert_eq!(e, FoldError::non_finite("q"));
                x[j] = 1.0;
                let mut y = DVector::from_element(n, 1.0);
                y[i] = 0.0;
                assert!(mv_checked(1.0, &b, &y, true, "q").is_err());
            }
        }
        // Finite data that overflows is reported as such, not as a bad argument.
        let big = DMatrix::from_element(4, 4, 1e300);
        let e = mv_checked(1.0, &big, &DVector::from_element(4, 1e300), false, "q").unwrap_err();
        assert!(matches!(e, FoldError::NonFinite { what } if what.contains("overflow")));
    }
}
