//! Sparse matrix algebra for assembling reduced systems: row and column gathers on a
//! support, products, sums, scalings, identities and diagonals, all on CSR matrices with
//! sorted rows and O(nnz) memory.
//!
//! Generated code assembles `I − Kᵀ M_SSᵀ` with these when `M` is built from
//! `CsrMatrix` constants, diagonals and identities (`(D Dᵀ)_FF = D_F D_Fᵀ`). nalgebra-sparse
//! has general products and sums, but no support gathers and no fused `A Bᵀ`, and its
//! products re-validate patterns; these kernels are the few loops the assembly needs.

use crate::FoldError;
use nalgebra::DVector;
use nalgebra_sparse::CsrMatrix;

/// A CSR matrix from raw parts built by the kernels below (sorted, unique columns).
fn from_parts(
    nrows: usize,
    ncols: usize,
    offsets: Vec<usize>,
    indices: Vec<usize>,
    values: Vec<f64>,
) -> Result<CsrMatrix<f64>, FoldError> {
    CsrMatrix::try_from_csr_data(nrows, ncols, offsets, indices, values)
        .map_err(|e| FoldError::dimension(format!("sparse assembly ({e})"), 0, 0))
}

/// Checks that `s` is strictly increasing and below `n`.
fn check_support(s: &[usize], n: usize, what: &str) -> Result<(), FoldError> {
    let mut prev = None;
    for &i in s {
        if i >= n || prev.is_some_and(|p| p >= i) {
            return Err(FoldError::dimension(
                format!("{what} (support indices strictly increasing, below the dimension)"),
                n,
                i,
            ));
        }
        prev = Some(i);
    }
    Ok(())
}

/// `A[S, :]`.
pub fn rows(a: &CsrMatrix<f64>, s: &[usize]) -> Result<CsrMatrix<f64>, FoldError> {
    check_support(s, a.nrows(), "rows of a sparse matrix")?;
    let (off, idx, val) = (a.row_offsets(), a.col_indices(), a.values());
    let nnz: usize = s.iter().map(|&i| off[i + 1] - off[i]).sum();
    let mut offsets = Vec::with_capacity(s.len() + 1);
    let mut indices = Vec::with_capacity(nnz);
    let mut values = Vec::with_capacity(nnz);
    offsets.push(0);
    for &i in s {
        indices.extend_from_slice(&idx[off[i]..off[i + 1]]);
        values.extend_from_slice(&val[off[i]..off[i + 1]]);
        offsets.push(indices.len());
    }
    from_parts(s.len(), a.ncols(), offsets, indices, values)
}

/// `A[:, S]`.
pub fn cols(a: &CsrMatrix<f64>, s: &[usize]) -> Result<CsrMatrix<f64>, FoldError> {
    check_support(s, a.ncols(), "columns of a sparse matrix")?;
    let mut map = vec![usize::MAX; a.ncols()];
    for (k, &j) in s.iter().enumerate() {
        map[j] = k;
    }
    let (off, idx, val) = (a.row_offsets(), a.col_indices(), a.values());
    let mut offsets = Vec::with_capacity(a.nrows() + 1);
    let mut indices = Vec::new();
    let mut values = Vec::new();
    offsets.push(0);
    for i in 0..a.nrows() {
        for p in off[i]..off[i + 1] {
            let k = map[idx[p]];
            if k != usize::MAX {
                // `map` is increasing on S, so rows stay sorted.
                indices.push(k);
                values.push(val[p]);
            }
        }
        offsets.push(indices.len());
    }
    from_parts(a.nrows(), s.len(), offsets, indices, values)
}

/// `A[S, S]`.
pub fn sub(a: &CsrMatrix<f64>, s: &[usize]) -> Result<CsrMatrix<f64>, FoldError> {
    cols(&rows(a, s)?, s)
}

/// `Aᵀ` (one counting pass; rows of the result come out sorted).
pub fn transpose(a: &CsrMatrix<f64>) -> Result<CsrMatrix<f64>, FoldError> {
    let (m, n) = (a.nrows(), a.ncols());
    let (off, idx, val) = (a.row_offsets(), a.col_indices(), a.values());
    let mut offsets = vec![0usize; n + 1];
    for &j in idx {
        offsets[j + 1] += 1;
    }
    for j in 0..n {
        offsets[j + 1] += offsets[j];
    }
    let mut next = offsets.clone();
    let mut indices = vec![0usize; idx.len()];
    let mut values = vec![0.0; idx.len()];
    for i in 0..m {
        for p in off[i]..off[i + 1] {
            let q = &mut next[idx[p]];
            indices[*q] = i;
            values[*q] = val[p];
            *q += 1;
        }
    }
    from_parts(n, m, offsets, indices, values)
}

/// `s A`.
pub fn scale(s: f64, a: &CsrMatrix<f64>) -> CsrMatrix<f64> {
    let mut out = a.clone();
    if s != 1.0 {
        for v in out.values_mut() {
            *v *= s;
        }
    }
    out
}

/// The `n × n` identity.
pub fn eye(n: usize) -> CsrMatrix<f64> {
    CsrMatrix::identity(n)
}

/// `diag(d)`.
pub fn diag(d: &DVector<f64>) -> Result<CsrMatrix<f64>, FoldError> {
    let n = d.len();
    let offsets = (0..=n).collect();
    let indices = (0..n).collect();
    from_parts(n, n, offsets, indices, d.as_slice().to_vec())
}

/// `α A + β B`.
pub fn axpby(
    alpha: f64,
    a: &CsrMatrix<f64>,
    beta: f64,
    b: &CsrMatrix<f64>,
) -> Result<CsrMatrix<f64>, FoldError> {
    crate::__private::check::same_dim("rows of a sparse sum", a.nrows(), b.nrows())?;
    crate::__private::check::same_dim("columns of a sparse sum", a.ncols(), b.ncols())?;
    let (ao, ai, av) = (a.row_offsets(), a.col_indices(), a.values());
    let (bo, bi, bv) = (b.row_offsets(), b.col_indices(), b.values());
    let mut offsets = Vec::with_capacity(a.nrows() + 1);
    let mut indices = Vec::with_capacity(ai.len() + bi.len());
    let mut values = Vec::with_capacity(ai.len() + bi.len());
    offsets.push(0);
    for i in 0..a.nrows() {
        let (mut p, pe, mut q, qe) = (ao[i], ao[i + 1], bo[i], bo[i + 1]);
        while p < pe || q < qe {
            let (j, v) = if q == qe || (p < pe && ai[p] < bi[q]) {
                p += 1;
                (ai[p - 1], alpha * av[p - 1])
            } else if p == pe || bi[q] < ai[p] {
                q += 1;
                (bi[q - 1], beta * bv[q - 1])
            } else {
                p += 1;
                q += 1;
                (ai[p - 1], alpha * av[p - 1] + beta * bv[q - 1])
            };
            indices.push(j);
            values.push(v);
        }
        offsets.push(indices.len());
    }
    from_parts(a.nrows(), a.ncols(), offsets, indices, values)
}

/// `c A Bᵀ` (through one transposed copy of `B`'s pattern and values).
pub fn mul_t(c: f64, a: &CsrMatrix<f64>, b: &CsrMatrix<f64>) -> Result<CsrMatrix<f64>, FoldError> {
    mul(c, a, &transpose(b)?)
}

/// `c A[S, :] A[S, :]ᵀ` (the Gram matrix of the rows `S`), without gathering the rows: the
/// columns of `A[S, :]` are indexed once, then each row of the result is accumulated.
pub fn gram_rows(c: f64, a: &CsrMatrix<f64>, s: &[usize]) -> Result<CsrMatrix<f64>, FoldError> {
    check_support(s, a.nrows(), "rows of a sparse matrix")?;
    let (off, idx, val) = (a.row_offsets(), a.col_indices(), a.values());
    let (n, k) = (a.ncols(), s.len());
    // The transposed pattern of A[S, :]: for column j, the rows r (positions in S).
    let mut cptr = vec![0usize; n + 1];
    for &i in s {
        for &j in &idx[off[i]..off[i + 1]] {
            cptr[j + 1] += 1;
        }
    }
    for j in 0..n {
        cptr[j + 1] += cptr[j];
    }
    let nnz = cptr[n];
    // Filled backwards from each column's end, so that `cptr[j]` ends at its start and
    // every column lists its rows in increasing order.
    let mut col: Vec<(usize, f64)> = vec![(0, 0.0); nnz];
    for j in 0..n {
        cptr[j] = cptr[j + 1];
    }
    for (r, &i) in s.iter().enumerate().rev() {
        for p in (off[i]..off[i + 1]).rev() {
            let q = &mut cptr[idx[p]];
            *q -= 1;
            col[*q] = (r, val[p]);
        }
    }
    let mut acc = vec![0.0; k];
    let mut mark = vec![usize::MAX; k];
    let mut offsets = Vec::with_capacity(k + 1);
    let mut indices = Vec::with_capacity(nnz * 2);
    let mut values = Vec::with_capacity(nnz * 2);
    offsets.push(0);
    for (r, &i) in s.iter().enumerate() {
        let start = indices.len();
        for p in off[i]..off[i + 1] {
            let (j, v) = (idx[p], val[p]);
            for &(t, w) in &col[cptr[j]..cptr[j + 1]] {
                if mark[t] != r {
                    mark[t] = r;
                    acc[t] = 0.0;
                    indices.push(t);
                }
                acc[t] += v * w;
            }
        }
        let row = &mut indices[start..];
        if !row.is_sorted() {
            row.sort_unstable();
        }
        values.extend(row.iter().map(|&t| c * acc[t]));
        offsets.push(indices.len());
    }
    from_parts(k, k, offsets, indices, values)
}

/// `c A[S, :] A[S, :]ᵀ` as a structured reduced matrix: the solver assembles it in the
/// form it factors (a band, or [`gram_rows`]).
pub fn gram<'a>(
    c: f64,
    a: &'a CsrMatrix<f64>,
    s: &'a [usize],
) -> Result<crate::SparseReduced<'a>, FoldError> {
    check_support(s, a.nrows(), "rows of a sparse matrix")?;
    Ok(crate::SparseReduced::Gram {
        scale: c,
        a,
        rows: s,
    })
}

/// `c A B` (Gustavson's row-by-row product with a dense accumulator).
pub fn mul(c: f64, a: &CsrMatrix<f64>, b: &CsrMatrix<f64>) -> Result<CsrMatrix<f64>, FoldError> {
    crate::__private::check::same_dim("inner dimension of a sparse product", a.ncols(), b.nrows())?;
    let n = b.ncols();
    let (ao, ai, av) = (a.row_offsets(), a.col_indices(), a.values());
    let (bo, bi, bv) = (b.row_offsets(), b.col_indices(), b.values());
    let mut acc = vec![0.0; n];
    let mut mark = vec![usize::MAX; n];
    let mut offsets = Vec::with_capacity(a.nrows() + 1);
    let mut indices = Vec::new();
    let mut values = Vec::new();
    offsets.push(0);
    for i in 0..a.nrows() {
        let start = indices.len();
        for p in ao[i]..ao[i + 1] {
            let (k, x) = (ai[p], av[p]);
            for q in bo[k]..bo[k + 1] {
                let j = bi[q];
                if mark[j] != i {
                    mark[j] = i;
                    acc[j] = 0.0;
                    indices.push(j);
                }
                acc[j] += x * bv[q];
            }
        }
        let row = &mut indices[start..];
        row.sort_unstable();
        values.extend(row.iter().map(|&j| c * acc[j]));
        offsets.push(indices.len());
    }
    from_parts(a.nrows(), n, offsets, indices, values)
}

/// `y ← A x`.
pub fn mv_into(a: &CsrMatrix<f64>, x: &DVector<f64>, y: &mut DVector<f64>) {
    let (off, idx, val) = (a.row_offsets(), a.col_indices(), a.values());
    for (yi, w) in y.iter_mut().zip(off.windows(2)) {
        *yi = super::products::row_dot(&idx[w[0]..w[1]], &val[w[0]..w[1]], x.as_slice());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solvers::testing::csr;
    use nalgebra::DMatrix;

    fn dense(a: &CsrMatrix<f64>) -> DMatrix<f64> {
        let mut d = DMatrix::zeros(a.nrows(), a.ncols());
        for (i, j, v) in a.triplet_iter() {
            d[(i, j)] += *v;
        }
        d
    }

    fn sample(m: usize, n: usize, seed: u64) -> DMatrix<f64> {
        let mut x = seed;
        DMatrix::from_fn(m, n, |_, _| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            if u < 0.6 {
                0.0
            } else {
                u - 0.8
            }
        })
    }

    #[test]
    fn kernels_agree_with_dense_algebra() {
        let (a, b) = (sample(7, 5, 1), sample(5, 6, 2));
        let (sa, sb) = (csr(&a), csr(&b));
        assert_eq!(dense(&mul(1.0, &sa, &sb).unwrap()), &a * &b);
        let bt = b.transpose();
        assert_eq!(dense(&mul_t(2.0, &sa, &csr(&bt)).unwrap()), &a * &b * 2.0);
        assert_eq!(dense(&transpose(&sa).unwrap()), a.transpose());
        let c = sample(7, 5, 3);
        assert_eq!(
            dense(&axpby(1.0, &sa, -2.0, &csr(&c)).unwrap()),
            &a - &c * 2.0
        );
        let s = [1, 3, 4];
        let ar = a.select_rows(&s);
        let gram = dense(&gram_rows(0.5, &sa, &s).unwrap());
        assert!((gram - &ar * ar.transpose() * 0.5).amax() < 1e-15);
        let r = dense(&rows(&sa, &s).unwrap());
        let k = dense(&cols(&sa, &s).unwrap());
        for (p, &i) in s.iter().enumerate() {
            assert_eq!(r.row(p), a.row(i));
            assert_eq!(k.column(p), a.column(i));
        }
        let q = sample(6, 6, 4);
        let sq = dense(&sub(&csr(&q), &s).unwrap());
        assert_eq!(sq[(1, 2)], q[(3, 4)]);
        let d = DVector::from_vec(vec![1.0, -2.0, 3.0]);
        assert_eq!(dense(&diag(&d).unwrap()), DMatrix::from_diagonal(&d));
        assert_eq!(dense(&scale(2.0, &sa)), &a * 2.0);
        assert!(axpby(1.0, &sa, 1.0, &sb).is_err());
        assert!(mul(1.0, &sa, &sa).is_err());
        assert!(rows(&sa, &[3, 1]).is_err());
        assert!(cols(&sa, &[9]).is_err());
    }
}
