//! `A = L D Lᵀ` of a symmetric banded matrix without pivoting, O(n b²) for half-bandwidth
//! `b`: the reduced systems of 1-D problems (`(D Dᵀ)_FF` is block tridiagonal).
//!
//! Hand-rolled: faer has no banded factorization, and its general sparse Cholesky spends
//! more on the symbolic analysis of a tridiagonal matrix than this takes in all.

use nalgebra::DVector;
use nalgebra_sparse::CsrMatrix;

/// The factors: `L` unit lower with `b` sub-diagonals, stored by row (`l[i·b + (b − 1 − k)]`
/// holds `L[i, i − 1 − k]`), and `D`.
#[derive(Debug, Clone)]
pub struct BandedLdlt {
    n: usize,
    b: usize,
    l: Vec<f64>,
    d: Vec<f64>,
    /// Pivots at most `eps` that were replaced by `delta` (a singular consistent system
    /// is solved on a maximal nonsingular principal subsystem).
    pub dropped: usize,
}

/// A symmetric matrix by its lower band: row `i` holds `A[i, i − w .. i − 1]`, then
/// `A[i, i]` (entries before the first row are zero).
#[derive(Debug, Clone)]
pub struct SymBand {
    n: usize,
    w: usize,
    band: Vec<f64>,
}

impl SymBand {
    /// A zero `n × n` matrix of half-bandwidth `w` (at least 1).
    pub fn zeros(n: usize, w: usize) -> SymBand {
        let w = w.max(1);
        SymBand {
            n,
            w,
            band: vec![0.0; n * (w + 1)],
        }
    }

    /// The lower band of a symmetric `a` (entries further than `w` from the diagonal, and
    /// the upper triangle, are not read).
    pub fn from_csr(a: &CsrMatrix<f64>, w: usize) -> SymBand {
        let mut m = SymBand::zeros(a.nrows(), w);
        let (off, idx, val) = (a.row_offsets(), a.col_indices(), a.values());
        for i in 0..m.n {
            for p in off[i]..off[i + 1] {
                let j = idx[p];
                if j <= i && i - j <= m.w {
                    *m.entry_mut(i, j) += val[p];
                }
            }
        }
        m
    }

    /// `c A[S, :] A[S, :]ᵀ` straight into band storage, when the rows of `A` on `S` (sorted
    /// columns, as CSR keeps them) have first and last columns that never decrease, so
    /// that a row meets only rows shortly before it; `None` when they decrease or its
    /// half-bandwidth exceeds `w_max`. `S` must be strictly increasing and in range.
    pub fn gram_rows(c: f64, a: &CsrMatrix<f64>, s: &[usize], w_max: usize) -> Option<SymBand> {
        let rows = Rows {
            off: a.row_offsets(),
            idx: a.col_indices(),
            val: a.values(),
            s,
        };
        if let Some(m) = rows.tridiagonal(c) {
            return Some(m);
        }
        let w = rows.bandwidth(w_max)?;
        let mut m = SymBand::zeros(s.len(), w);
        rows.fill(c, m.w, &mut m.band);
        Some(m)
    }

    /// Whether every stored entry is finite.
    pub fn all_finite(&self) -> bool {
        self.band.iter().all(|v| v.is_finite())
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.n
    }

    /// `A[i, j]` for `i − w ≤ j ≤ i`.
    pub fn entry_mut(&mut self, i: usize, j: usize) -> &mut f64 {
        &mut self.band[i * (self.w + 1) + self.w - (i - j)]
    }

    /// Largest `|A[i, i]|`.
    pub fn max_diagonal(&self) -> f64 {
        let w = self.w;
        (0..self.n).fold(0.0f64, |m, i| m.max(self.band[i * (w + 1) + w].abs()))
    }

    /// `y ← A x`.
    pub fn mul_into(&self, x: &[f64], y: &mut [f64]) {
        let (n, w) = (self.n, self.w);
        for (i, yi) in y.iter_mut().enumerate().take(n) {
            *yi = self.band[i * (w + 1) + w] * x[i];
        }
        for i in 0..n {
            let row = &self.band[i * (w + 1)..i * (w + 1) + w];
            let lo = i.saturating_sub(w);
            let mut s = 0.0;
            for j in lo..i {
                let a = row[w - (i - j)];
                s += a * x[j];
                y[j] += a * x[i];
            }
            y[i] += s;
        }
    }
}

/// `⟨u, v⟩` of two sparse rows with sorted columns (rows are short: no scatter into a dense
/// row). Rows of up to four entries compare every pair without branches, since a merge's
/// branches are unpredictable; longer ones merge.
#[inline]
fn dot((ci, vi): (&[usize], &[f64]), (cj, vj): (&[usize], &[f64])) -> f64 {
    if ci.len() <= 4 && cj.len() <= 4 {
        let mut sum = 0.0;
        for (&a, &x) in ci.iter().zip(vi) {
            for (&b, &y) in cj.iter().zip(vj) {
                sum += if a == b { x * y } else { 0.0 };
            }
        }
        return sum;
    }
    let (mut i, mut j, mut sum) = (0, 0, 0.0);
    while i < ci.len() && j < cj.len() {
        match ci[i].cmp(&cj[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                sum += vi[i] * vj[j];
                i += 1;
                j += 1;
            }
        }
    }
    sum
}

/// The rows `A[s, :]` of a CSR matrix (sorted, unique columns per row).
struct Rows<'a> {
    off: &'a [usize],
    idx: &'a [usize],
    val: &'a [f64],
    s: &'a [usize],
}

impl Rows<'_> {
    /// The range of row `r` of `A[s, :]` in `idx` and `val`.
    #[inline(always)]
    fn span(&self, r: usize) -> (usize, usize) {
        let i = self.s[r];
        (self.off[i], self.off[i + 1])
    }

    /// Whether row `t` ends before column `lo` (an empty row meets nothing).
    #[inline(always)]
    fn ends_before(&self, t: usize, lo: usize) -> bool {
        let (p, q) = self.span(t);
        p == q || self.idx[q - 1] < lo
    }

    /// The half-bandwidth: the largest `r − r0` with `r0` the first row before `r` whose
    /// last column reaches `r`'s first. `None` when first or last columns decrease (rows
    /// would meet rows far before them) or the band exceeds `w_max`.
    fn bandwidth(&self, w_max: usize) -> Option<usize> {
        let (mut prev, mut r0, mut w) = ((0usize, 0usize), 0usize, 0usize);
        for r in 0..self.s.len() {
            let (p, q) = self.span(r);
            if p == q {
                continue;
            }
            let (lo, hi) = (self.idx[p], self.idx[q - 1]);
            if lo < prev.0 || hi < prev.1 {
                return None;
            }
            prev = (lo, hi);
            while r0 < r && self.ends_before(r0, lo) {
                r0 += 1;
            }
            w = w.max(r - r0);
            if w > w_max {
                return None;
            }
        }
        Some(w)
    }

    /// The Gram matrix in one pass when it is tridiagonal (each row meets at most the row
    /// just before it: a chain, as the free edges of a 1-D problem), `None` otherwise.
    fn tridiagonal(&self, c: f64) -> Option<SymBand> {
        let mut m = SymBand::zeros(self.s.len(), 1);
        // The last two nonempty rows: (row, span, first and last column).
        let mut last: Option<(usize, (usize, usize), usize, usize)> = None;
        let mut before_hi: Option<usize> = None;
        for (r, out) in m.band.chunks_exact_mut(2).enumerate() {
            let (p, q) = self.span(r);
            if p == q {
                continue;
            }
            let (lo, hi) = (self.idx[p], self.idx[q - 1]);
            let row = (&self.idx[p..q], &self.val[p..q]);
            out[1] = c * row.1.iter().map(|v| v * v).sum::<f64>();
            if let Some((t, (tp, tq), tlo, thi)) = last {
                if lo < tlo || hi < thi || before_hi.is_some_and(|h| h >= lo) {
                    return None;
                }
                if thi >= lo {
                    if t + 1 != r {
                        return None;
                    }
                    out[0] = c * dot(row, (&self.idx[tp..tq], &self.val[tp..tq]));
                }
                before_hi = Some(thi);
            }
            last = Some((r, (p, q), lo, hi));
        }
        Some(m)
    }

    /// Writes `c ⟨row r, row t⟩` into `band` (half-bandwidth `w`) for every `t` from the
    /// first row meeting `r` to `r` itself; the rest of `band` is left as it is (zero).
    fn fill(&self, c: f64, w: usize, band: &mut [f64]) {
        let mut r0 = 0usize;
        for (r, out) in band.chunks_exact_mut(w + 1).enumerate() {
            let (p, q) = self.span(r);
            if p == q {
                continue;
            }
            let lo = self.idx[p];
            while r0 < r && self.ends_before(r0, lo) {
                r0 += 1;
            }
            let row = (&self.idx[p..q], &self.val[p..q]);
            out[w] = c * row.1.iter().map(|v| v * v).sum::<f64>();
            for (o, t) in out[w - (r - r0)..w].iter_mut().zip(r0..r) {
                let (p, q) = self.span(t);
                *o = c * dot(row, (&self.idx[p..q], &self.val[p..q]));
            }
        }
    }
}

impl BandedLdlt {
    /// Factors the lower band of a symmetric `a` (half-bandwidth at most `b`); pivots with
    /// `|d| ≤ eps` become `delta`.
    pub fn factor(a: &CsrMatrix<f64>, b: usize, eps: f64, delta: f64) -> BandedLdlt {
        BandedLdlt::factor_band(&SymBand::from_csr(a, b), eps, delta)
    }

    /// Factors a symmetric band matrix; pivots with `|d| ≤ eps` become `delta`.
    pub fn factor_band(a: &SymBand, eps: f64, delta: f64) -> BandedLdlt {
        let (n, w, band) = (a.n, a.w, &a.band);
        let mut l = vec![0.0; n * w];
        let mut d = vec![0.0; n];
        let mut dropped = 0;
        if w == 1 {
            // Tridiagonal: the same recurrence without the inner loops.
            for i in 0..n {
                let mut s = band[2 * i + 1];
                if i > 0 {
                    let li = band[2 * i] / d[i - 1];
                    l[i] = li;
                    s -= li * li * d[i - 1];
                }
                if s.abs() <= eps {
                    s = delta;
                    dropped += 1;
                }
                d[i] = s;
            }
            return BandedLdlt {
                n,
                b: w,
                l,
                d,
                dropped,
            };
        }
        // Row-oriented LDLᵀ: L[i, j] = (A[i, j] − Σ_k L[i, k] D[k] L[j, k]) / D[j].
        for i in 0..n {
            let lo = i.saturating_sub(w);
            for j in lo..i {
                let mut s = band[i * (w + 1) + w - (i - j)];
                let klo = lo.max(j.saturating_sub(w));
                for k in klo..j {
                    s -= l[i * w + w - (i - k)] * d[k] * l[j * w + w - (j - k)];
                }
                l[i * w + w - (i - j)] = s / d[j];
            }
            let mut s = band[i * (w + 1) + w];
            for k in lo..i {
                let lik = l[i * w + w - (i - k)];
                s -= lik * lik * d[k];
            }
            if s.abs() <= eps {
                s = delta;
                dropped += 1;
            }
            d[i] = s;
        }
        BandedLdlt {
            n,
            b: w,
            l,
            d,
            dropped,
        }
    }

    /// `x ← A⁻¹ x`.
    pub fn solve_in_place(&self, x: &mut DVector<f64>) {
        let (n, w) = (self.n, self.b);
        if w == 1 {
            let x = &mut x.as_mut_slice()[..n];
            let (l, d) = (&self.l[..n], &self.d[..n]);
            for i in 1..n {
                x[i] -= l[i] * x[i - 1];
            }
            for (xi, di) in x.iter_mut().zip(d) {
                *xi /= di;
            }
            for i in (1..n).rev() {
                x[i - 1] -= l[i] * x[i];
            }
            return;
        }
        for i in 0..n {
            let mut s = x[i];
            for k in i.saturating_sub(w)..i {
                s -= self.l[i * w + w - (i - k)] * x[k];
            }
            x[i] = s;
        }
        for i in 0..n {
            x[i] /= self.d[i];
        }
        for i in (0..n).rev() {
            let mut s = x[i];
            for k in i + 1..(i + w + 1).min(n) {
                s -= self.l[k * w + w - (k - i)] * x[k];
            }
            x[i] = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DMatrix;
    use nalgebra_sparse::CooMatrix;

    fn csr_of(a: &DMatrix<f64>) -> CsrMatrix<f64> {
        let mut coo = CooMatrix::new(a.nrows(), a.ncols());
        for i in 0..a.nrows() {
            for j in 0..a.ncols() {
                if a[(i, j)] != 0.0 {
                    coo.push(i, j, a[(i, j)]);
                }
            }
        }
        CsrMatrix::from(&coo)
    }

    fn dense_of(m: &SymBand) -> DMatrix<f64> {
        let n = m.dim();
        DMatrix::from_fn(n, n, |i, j| {
            let x = DVector::from_fn(n, |k, _| if k == j { 1.0 } else { 0.0 });
            let mut y = vec![0.0; n];
            m.mul_into(x.as_slice(), &mut y);
            y[i]
        })
    }

    #[test]
    fn gram_rows_of_banded_rows_is_the_dense_gram_matrix() {
        // Rows with two or three entries sliding right (a stencil), one empty row.
        let (m, n) = (12, 14);
        let a = DMatrix::from_fn(m, n, |i, j| {
            if i == 5 {
                0.0
            } else if j >= i && j <= i + 1 + i % 2 {
                1.0 + 0.3 * (i as f64) - 0.7 * (j as f64).sin()
            } else {
                0.0
            }
        });
        let s = [0usize, 1, 2, 4, 5, 6, 7, 9, 10, 11];
        let rows = DMatrix::from_fn(s.len(), n, |r, j| a[(s[r], j)]);
        let want = &rows * rows.transpose() * 0.75;
        let band = SymBand::gram_rows(0.75, &csr_of(&a), &s, 16).expect("banded rows");
        assert!((dense_of(&band) - &want).abs().max() < 1e-14);
        // Each row meets the three before it: half-bandwidth 3.
        let wide = DMatrix::from_fn(6, 10, |i, j| if j >= i && j < i + 4 { 1.0 } else { 0.0 });
        assert!(SymBand::gram_rows(1.0, &csr_of(&wide), &[0, 1, 2, 3, 4, 5], 2).is_none());
        assert!(SymBand::gram_rows(1.0, &csr_of(&wide), &[0, 1, 2, 3, 4, 5], 3).is_some());
        // Rows out of order in their columns: not banded this way.
        let back = DMatrix::from_fn(3, 6, |i, j| {
            if j == 4 - 2 * i || j == 5 - 2 * i {
                1.0
            } else {
                0.0
            }
        });
        assert!(SymBand::gram_rows(1.0, &csr_of(&back), &[0, 1, 2], 16).is_none());
        // Differences (a chain of edges) with gaps and an empty row: tridiagonal, and
        // half-bandwidth 2 where the empty row sits between two rows that meet.
        let chain = DMatrix::from_fn(9, 10, |i, j| match (i == 6, j as i64 - i as i64) {
            (true, _) => 0.0,
            (_, 0) => -1.0 - 0.1 * i as f64,
            (_, 1) => 1.0,
            _ => 0.0,
        });
        let mut two = chain.clone();
        two[(6, 6)] = 0.0;
        two[(7, 6)] = 2.0;
        for (a, s) in [
            (&chain, vec![0usize, 1, 3, 4, 5, 6, 7, 8]),
            (&two, vec![4usize, 5, 6, 7]),
        ] {
            let rows = DMatrix::from_fn(s.len(), 10, |r, j| a[(s[r], j)]);
            let want = &rows * rows.transpose() * 0.5;
            let band = SymBand::gram_rows(0.5, &csr_of(a), &s, 16).expect("banded rows");
            assert!((dense_of(&band) - &want).abs().max() < 1e-14);
        }
    }

    #[test]
    fn solves_banded_spd_and_singular_consistent_systems() {
        // A pentadiagonal SPD matrix.
        let n = 9;
        let a = DMatrix::from_fn(n, n, |i, j| match i.abs_diff(j) {
            0 => 6.0,
            1 => -2.0,
            2 => 0.5,
            _ => 0.0,
        });
        let mut coo = CooMatrix::new(n, n);
        for i in 0..n {
            for j in 0..n {
                if a[(i, j)] != 0.0 {
                    coo.push(i, j, a[(i, j)]);
                }
            }
        }
        let f = BandedLdlt::factor(&CsrMatrix::from(&coo), 2, 1e-12, 1.0);
        let b = DVector::from_fn(n, |i, _| (i as f64).sin());
        let mut x = b.clone();
        f.solve_in_place(&mut x);
        assert!((&a * &x - &b).norm() < 1e-12);
        assert_eq!(f.dropped, 0);

        // tridiag(−1, 2, −1) with a zero row/column pair cut out: the path graph
        // Laplacian (singular, null space 1), solved for a consistent rhs.
        let lap = DMatrix::from_fn(n, n, |i, j| {
            if i == j {
                if i == 0 || i == n - 1 {
                    1.0
                } else {
                    2.0
                }
            } else if i.abs_diff(j) == 1 {
                -1.0
            } else {
                0.0
            }
        });
        let mut coo = CooMatrix::new(n, n);
        for i in 0..n {
            for j in 0..n {
                if lap[(i, j)] != 0.0 {
                    coo.push(i, j, lap[(i, j)]);
                }
            }
        }
        let f = BandedLdlt::factor(&CsrMatrix::from(&coo), 1, 1e-10, 2.0);
        assert_eq!(f.dropped, 1);
        let mut b = DVector::from_fn(n, |i, _| (i as f64).cos());
        b.add_scalar_mut(-b.mean());
        let mut x = b.clone();
        f.solve_in_place(&mut x);
        assert!((&lap * &x - &b).norm() < 1e-10 * b.norm());
    }
}
