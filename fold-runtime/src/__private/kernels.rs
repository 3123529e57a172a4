//! Small kernels that generated code calls: scaled products without materialized
//! transposes (in `products`), diagonal scalings, support gathers and block packing.

use nalgebra::{DMatrix, DVector};

pub use super::blocks::*;
pub use super::entrywise::*;
pub use super::outputs::*;
pub use super::products::*;
use super::temps;
pub use super::temps::recycle;

/// `diag(d) A`, in `A`'s buffer when it is owned.
pub fn scale_rows(d: &DVector<f64>, a: impl MatrixOperand) -> DMatrix<f64> {
    let mut out = a.into_matrix();
    for mut col in out.column_iter_mut() {
        col.component_mul_assign(d);
    }
    out
}

/// `A diag(d)`, in `A`'s buffer when it is owned.
pub fn scale_cols(a: impl MatrixOperand, d: &DVector<f64>) -> DMatrix<f64> {
    let mut out = a.into_matrix();
    for (j, mut col) in out.column_iter_mut().enumerate() {
        col *= d[j];
    }
    out
}

/// `v[S]`.
#[inline]
pub fn gather(v: &DVector<f64>, s: &[usize]) -> DVector<f64> {
    on_support(s, |_, i| v[i])
}

/// `A[S, S]`.
pub fn gather_sub(a: &DMatrix<f64>, s: &[usize]) -> DMatrix<f64> {
    gather_sub_view(1.0, a, s, false)
}

/// Entries of `A` (256 KiB) up to which [`gather_sub_view`] treats it as cache-resident
/// (measured: p2_ncvxqp's reduced matrix at n = 100 and 1000).
const CACHED_SOURCE: usize = 32 * 1024;

/// `α op(A)[S, S]` in one pass, `op` transposing when asked (no transposed copy of `A`).
pub fn gather_sub_view(
    alpha: f64,
    a: &DMatrix<f64>,
    s: &[usize],
    transposed: bool,
) -> DMatrix<f64> {
    let k = s.len();
    let rows = a.nrows();
    let src = a.as_slice();
    // Every entry is written below; a large buffer comes from the per-thread pool (the
    // reduced solve hands it back), so neither zeroing nor fresh pages are paid for.
    let mut out = temps::as_matrix(k, k, crate::solvers::scratch::overwritten(k * k, 0.0));
    let dst = out.as_mut_slice();
    if transposed && rows * a.ncols() <= CACHED_SOURCE {
        // op(A)[ii, jj] = A[j, i] with A in cache: four output columns at a time, each
        // written sequentially, each column of A visited once per four outputs.
        let mut blocks = dst.chunks_exact_mut(4 * k.max(1));
        let mut jj = 0;
        for block in &mut blocks {
            let [o0, o1, o2, o3] = four_columns(block, k);
            let (j0, j1, j2, j3) = (s[jj], s[jj + 1], s[jj + 2], s[jj + 3]);
            for (ii, &i) in s.iter().enumerate() {
                let col = &src[i * rows..(i + 1) * rows];
                o0[ii] = alpha * col[j0];
                o1[ii] = alpha * col[j1];
                o2[ii] = alpha * col[j2];
                o3[ii] = alpha * col[j3];
            }
            jj += 4;
        }
        for (out, &j) in blocks
            .into_remainder()
            .chunks_exact_mut(k.max(1))
            .zip(&s[jj..])
        {
            let row = &src[j..];
            for (o, &i) in out.iter_mut().zip(s) {
                *o = alpha * row[i * rows];
            }
        }
    } else if transposed {
        // A larger than the cache: eight source columns i at a time, each read once and
        // in order (the access pattern of the plain gather, which the first variant's
        // page-hopping would multiply several times over), each output column jj
        // receiving eight consecutive entries.
        const B: usize = 8;
        let mut ii0 = 0;
        while ii0 < k {
            let width = B.min(k - ii0);
            let mut cols: [&[f64]; B] = [&[]; B];
            for (c, &i) in cols.iter_mut().zip(&s[ii0..ii0 + width]) {
                *c = &src[i * rows..(i + 1) * rows];
            }
            for (jj, &j) in s.iter().enumerate() {
                let out = &mut dst[jj * k + ii0..jj * k + ii0 + width];
                for (o, c) in out.iter_mut().zip(&cols) {
                    *o = alpha * c[j];
                }
            }
            ii0 += width;
        }
    } else {
        // Four output columns at a time: each index `i` loaded once for four source
        // columns of the same length, so one bounds check covers the four reads.
        let column = |j: usize| &src[j * rows..(j + 1) * rows];
        let mut blocks = dst.chunks_exact_mut(4 * k.max(1));
        let mut jj = 0;
        for block in &mut blocks {
            let [o0, o1, o2, o3] = four_columns(block, k);
            let (c0, c1, c2, c3) = (
                column(s[jj]),
                column(s[jj + 1]),
                column(s[jj + 2]),
                column(s[jj + 3]),
            );
            let outs = o0.iter_mut().zip(o1.iter_mut()).zip(o2.iter_mut()).zip(o3);
            for ((((p0, p1), p2), p3), &i) in outs.zip(s) {
                *p0 = alpha * c0[i];
                *p1 = alpha * c1[i];
                *p2 = alpha * c2[i];
                *p3 = alpha * c3[i];
            }
            jj += 4;
        }
        for (out, &j) in blocks
            .into_remainder()
            .chunks_exact_mut(k.max(1))
            .zip(&s[jj..])
        {
            let col = column(j);
            for (o, &i) in out.iter_mut().zip(s) {
                *o = alpha * col[i];
            }
        }
    }
    out
}

/// The four consecutive columns of length `k` of a `4k` block.
fn four_columns(block: &mut [f64], k: usize) -> [&mut [f64]; 4] {
    let (o0, rest) = block.split_at_mut(k);
    let (o1, rest) = rest.split_at_mut(k);
    let (o2, o3) = rest.split_at_mut(k);
    [o0, o1, o2, o3]
}

/// `(f(k, S[k]))ₖ`: an elementwise term of vectors gathered on the support `S`, in one
/// pass (`k` a position on `S`, `S[k]` the entry of the full vectors).
pub fn on_support(s: &[usize], f: impl Fn(usize, usize) -> f64) -> DVector<f64> {
    let entries = s.iter().enumerate().map(|(k, &i)| f(k, i));
    temps::as_vector(temps::collect(s.len(), entries))
}

/// `A + diag(d)`, in place.
pub fn plus_diag(mut a: DMatrix<f64>, d: &DVector<f64>) -> DMatrix<f64> {
    for (i, v) in d.iter().enumerate().take(a.nrows().min(a.ncols())) {
        a[(i, i)] += v;
    }
    a
}

/// `A + c I`, in place.
pub fn plus_identity(mut a: DMatrix<f64>, c: f64) -> DMatrix<f64> {
    for i in 0..a.nrows().min(a.ncols()) {
        a[(i, i)] += c;
    }
    a
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
#[inline]
pub fn scatter(a: &DVector<f64>, s: &[usize], n: usize) -> DVector<f64> {
    let mut out = temps::zero_vector(n);
    for (k, &i) in s.iter().enumerate() {
        out[i] = a[k];
    }
    out
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

/// The `i`-th unit vector of length `n` (all zeros when `i ≥ n`).
pub fn unit(n: usize, i: usize) -> DVector<f64> {
    let mut e = DVector::zeros(n);
    if i < n {
        e[i] = 1.0;
    }
    e
}

/// Values that read as a column-major list of entries.
pub trait Entries {
    /// The entries, column-major.
    fn entries(&self) -> &[f64];
}

impl Entries for f64 {
    fn entries(&self) -> &[f64] {
        std::slice::from_ref(self)
    }
}

impl Entries for DVector<f64> {
    fn entries(&self) -> &[f64] {
        self.as_slice()
    }
}

impl Entries for DMatrix<f64> {
    fn entries(&self) -> &[f64] {
        self.as_slice()
    }
}

/// The entries of `x`, column-major.
pub fn entries<T: Entries + ?Sized>(x: &T) -> &[f64] {
    x.entries()
}

/// Writes `row` into row `i` of `m` (ignoring what does not fit).
pub fn set_row(m: &mut DMatrix<f64>, i: usize, row: &[f64]) {
    if i < m.nrows() {
        for (j, v) in row.iter().take(m.ncols()).enumerate() {
            m[(i, j)] = *v;
        }
    }
}

/// `v` as an `n × 1` matrix (no copy).
pub fn column(v: DVector<f64>) -> DMatrix<f64> {
    let n = v.len();
    v.reshape_generic(nalgebra::Dyn(n), nalgebra::Dyn(1))
}

/// The matrix of row groups `rows` × column groups `cols` holding `(i, j, block)` at group
/// `(i, j)` and zeros elsewhere (NaN-filled if a block's shape does not fit its group).
pub fn from_blocks(
    rows: &[usize],
    cols: &[usize],
    blocks: Vec<(usize, usize, DMatrix<f64>)>,
) -> DMatrix<f64> {
    let offsets = |lens: &[usize]| -> Vec<usize> {
        let mut off = vec![0];
        for l in lens {
            off.push(off[off.len() - 1] + l);
        }
        off
    };
    let (r0, c0) = (offsets(rows), offsets(cols));
    let (n, m) = (r0[rows.len()], c0[cols.len()]);
    let mut out = DMatrix::zeros(n, m);
    for (i, j, b) in blocks {
        if i >= rows.len() || j >= cols.len() || b.shape() != (rows[i], cols[j]) {
            return nan_matrix(n, m);
        }
        out.view_mut((r0[i], c0[j]), b.shape()).copy_from(&b);
    }
    out
}

/// The `n × n` matrix whose column `j` is `f(e_j)`: a dense operator from its products.
pub fn columns(n: usize, f: impl Fn(&DVector<f64>) -> DVector<f64>) -> DMatrix<f64> {
    let mut m = DMatrix::zeros(n, n);
    for j in 0..n {
        let c = f(&unit(n, j));
        if c.len() == n {
            m.set_column(j, &c);
        } else {
            m.column_mut(j).fill(f64::NAN);
        }
    }
    m
}

/// `M⁻¹ B` (or `M⁻ᵀ B`) column by column from a factorization of `M` (LU or Cholesky).
pub fn lu_solve_columns(
    lu: &crate::linalg::Factorization,
    b: &DMatrix<f64>,
    transposed: bool,
) -> DMatrix<f64> {
    let mut out = b.like(temps::overwritten(b.len()));
    let mut col = temps::vector(b.nrows());
    for j in 0..b.ncols() {
        col.copy_from(&b.column(j));
        if transposed {
            lu.solve_transpose_in_place(&mut col);
        } else {
            lu.solve_in_place(&mut col);
        }
        out.set_column(j, &col);
    }
    temps::recycle(col);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::{dmatrix, dvector};

    #[test]
    fn matrix_blocks_are_column_major_and_never_panic() {
        let m = dmatrix![1.0, 2.0, 3.0; 4.0, 5.0, 6.0];
        let flat = flatten(m.clone());
        assert_eq!(flat, dvector![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        let packed = pack_entries(&[&[9.0], entries(&m)]);
        assert_eq!(block_matrix(&packed, 1, 2, 3), m);
        assert_eq!(block_matrix_or_nan(&packed, &[(1, 1), (2, 3)], 1), m);
        assert_eq!(
            block_vector_or_nan(&packed, &[(1, 1), (2, 3)], 0),
            dvector![9.0]
        );
        // Short input: the missing entries read as NaN.
        let short = block_matrix(&dvector![1.0, 4.0, 2.0], 0, 2, 3);
        assert_eq!(short.column(0), m.column(0));
        assert!(short[(1, 1)].is_nan() && short[(1, 2)].is_nan());
        assert!(block_matrix(&flat, usize::MAX, 1, 1)[(0, 0)].is_nan());
    }

    #[test]
    fn gathered_views_match_select_rows_columns() {
        let a = DMatrix::from_fn(10, 10, |i, j| (i * 10 + j) as f64);
        for s in [
            vec![],
            vec![3],
            vec![0, 1, 2, 3],
            vec![1, 2, 4, 5, 7, 8, 9],
            (0..10).collect(),
        ] {
            let plain = a.select_rows(&s).select_columns(&s);
            assert_eq!(gather_sub_view(1.0, &a, &s, false), plain);
            assert_eq!(
                gather_sub_view(-2.0, &a, &s, true),
                plain.transpose() * -2.0
            );
        }
        // A source too large for the cache takes the other transposed variant; block
        // remainders of every length.
        let n = 200;
        let big = DMatrix::from_fn(n, n, |i, j| (i * n + j) as f64);
        for k in [1usize, 7, 8, 9, 17, 120] {
            let s: Vec<usize> = (0..k).map(|t| t * n / k).collect();
            let plain = big.select_rows(&s).select_columns(&s);
            assert_eq!(
                gather_sub_view(0.5, &big, &s, true),
                plain.transpose() * 0.5
            );
            assert_eq!(gather_sub_view(0.5, &big, &s, false), plain * 0.5);
        }
    }

    #[test]
    fn gathered_views_and_diagonals() {
        let a = dmatrix![1.0, 2.0, 3.0; 4.0, 5.0, 6.0; 7.0, 8.0, 9.0];
        let s = [0usize, 2];
        assert_eq!(
            gather_sub_view(2.0, &a, &s, false),
            dmatrix![2.0, 6.0; 14.0, 18.0]
        );
        assert_eq!(
            gather_sub_view(1.0, &a, &s, true),
            dmatrix![1.0, 7.0; 3.0, 9.0]
        );
        assert_eq!(
            plus_diag(dmatrix![1.0, 2.0; 3.0, 4.0], &dvector![1.0, -1.0]),
            dmatrix![2.0, 2.0; 3.0, 3.0]
        );
        assert_eq!(
            plus_identity(dmatrix![1.0, 2.0; 3.0, 4.0], 2.0),
            dmatrix![3.0, 2.0; 3.0, 6.0]
        );
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
