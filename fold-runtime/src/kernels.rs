//! Small kernels that generated code calls: scaled products without materialized
//! transposes, diagonal scalings, support gathers and block packing.

use crate::linalg::{gemv, gemv_t};
use nalgebra::{DMatrix, DVector};
use nalgebra_sparse::CsrMatrix;

/// `α A x`.
pub fn mv(alpha: f64, a: &DMatrix<f64>, x: &DVector<f64>) -> DVector<f64> {
    let mut y = DVector::zeros(a.nrows());
    gemv(&mut y, alpha, a, x, 0.0);
    y
}

/// `α Aᵀ x`, without forming `Aᵀ`.
pub fn mtv(alpha: f64, a: &DMatrix<f64>, x: &DVector<f64>) -> DVector<f64> {
    let mut y = DVector::zeros(a.ncols());
    gemv_t(&mut y, alpha, a, x, 0.0);
    y
}

/// `y + α A x` (or `y + α Aᵀ x` when `transposed`), reusing `y`'s storage.
pub fn mv_acc(mut y: DVector<f64>, alpha: f64, a: &DMatrix<f64>, transposed: bool, x: &DVector<f64>) -> DVector<f64> {
    if transposed {
        gemv_t(&mut y, alpha, a, x, 1.0);
    } else {
        gemv(&mut y, alpha, a, x, 1.0);
    }
    y
}

/// `α op(A) op(B)` where `op` transposes when asked, without forming `Aᵀ`.
pub fn mm(alpha: f64, a: &DMatrix<f64>, ta: bool, b: &DMatrix<f64>, tb: bool) -> DMatrix<f64> {
    let mut c = match (ta, tb) {
        (false, false) => a * b,
        (true, false) => a.tr_mul(b),
        (false, true) => a * b.transpose(),
        (true, true) => (b * a).transpose(),
    };
    if alpha != 1.0 {
        c *= alpha;
    }
    c
}

/// `α A x` for a sparse `A`.
pub fn sparse_mv(alpha: f64, a: &CsrMatrix<f64>, x: &DVector<f64>) -> DVector<f64> {
    let mut y = DVector::zeros(a.nrows());
    for (i, row) in a.row_iter().enumerate() {
        let mut s = 0.0;
        for (&j, &v) in row.col_indices().iter().zip(row.values()) {
            s += v * x[j];
        }
        y[i] = alpha * s;
    }
    y
}

/// `α Aᵀ x` for a sparse `A`, without forming `Aᵀ`.
pub fn sparse_mtv(alpha: f64, a: &CsrMatrix<f64>, x: &DVector<f64>) -> DVector<f64> {
    let mut y = DVector::zeros(a.ncols());
    for (i, row) in a.row_iter().enumerate() {
        let xi = alpha * x[i];
        for (&j, &v) in row.col_indices().iter().zip(row.values()) {
            y[j] += v * xi;
        }
    }
    y
}

/// `diag(d) A`.
pub fn scale_rows(d: &DVector<f64>, a: &DMatrix<f64>) -> DMatrix<f64> {
    let mut out = a.clone();
    for mut col in out.column_iter_mut() {
        col.component_mul_assign(d);
    }
    out
}

/// `A diag(d)`.
pub fn scale_cols(a: &DMatrix<f64>, d: &DVector<f64>) -> DMatrix<f64> {
    let mut out = a.clone();
    for (j, mut col) in out.column_iter_mut().enumerate() {
        col *= d[j];
    }
    out
}

/// `v[S]`.
pub fn gather(v: &DVector<f64>, s: &[usize]) -> DVector<f64> {
    DVector::from_iterator(s.len(), s.iter().map(|&i| v[i]))
}

/// `A[S, S]`.
pub fn gather_sub(a: &DMatrix<f64>, s: &[usize]) -> DMatrix<f64> {
    DMatrix::from_fn(s.len(), s.len(), |i, j| a[(s[i], s[j])])
}

/// `A[S, :]`.
pub fn gather_rows(a: &DMatrix<f64>, s: &[usize]) -> DMatrix<f64> {
    a.select_rows(s)
}

/// `A[:, S]`.
pub fn gather_cols(a: &DMatrix<f64>, s: &[usize]) -> DMatrix<f64> {
    a.select_columns(s)
}

/// The length-`n` vector with `a` on `S` and zeros elsewhere.
pub fn scatter(a: &DVector<f64>, s: &[usize], n: usize) -> DVector<f64> {
    let mut out = DVector::zeros(n);
    for (k, &i) in s.iter().enumerate() {
        out[i] = a[k];
    }
    out
}

/// Concatenation of state blocks.
pub fn pack(blocks: &[&DVector<f64>]) -> DVector<f64> {
    let n = blocks.iter().map(|b| b.len()).sum();
    let mut out = DVector::zeros(n);
    let mut off = 0;
    for b in blocks {
        out.rows_mut(off, b.len()).copy_from(b);
        off += b.len();
    }
    out
}

/// Block `len` entries from `off` of a concatenated state.
pub fn block(v: &DVector<f64>, off: usize, len: usize) -> DVector<f64> {
    v.rows(off, len).into_owned()
}

/// A NaN-filled vector: the product of a failed linearization.
pub fn nan_vector(n: usize) -> DVector<f64> {
    DVector::from_element(n, f64::NAN)
}

/// A NaN-filled matrix.
pub fn nan_matrix(r: usize, c: usize) -> DMatrix<f64> {
    DMatrix::from_element(r, c, f64::NAN)
}

/// Identity of the size of `v`.
pub fn eye_like(v: &DVector<f64>) -> DMatrix<f64> {
    DMatrix::identity(v.len(), v.len())
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
    fn scalings_gathers_and_blocks() {
        let a = dmatrix![1.0, 2.0; 3.0, 4.0];
        let d = dvector![2.0, -1.0];
        assert_eq!(scale_rows(&d, &a), dmatrix![2.0, 4.0; -3.0, -4.0]);
        assert_eq!(scale_cols(&a, &d), dmatrix![2.0, -2.0; 6.0, -4.0]);
        let s = [1usize];
        assert_eq!(gather(&d, &s), dvector![-1.0]);
        assert_eq!(gather_sub(&a, &s), dmatrix![4.0]);
        assert_eq!(scatter(&dvector![7.0], &s, 3), dvector![0.0, 7.0, 0.0]);
        let p = pack(&[&dvector![1.0], &dvector![2.0, 3.0]]);
        assert_eq!(block(&p, 1, 2), dvector![2.0, 3.0]);
    }
}
