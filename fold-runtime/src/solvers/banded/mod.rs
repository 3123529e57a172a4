//! `A = L D Lᵀ` of a symmetric banded matrix without pivoting, O(n b²) for half-bandwidth
//! `b`: the reduced systems of 1-D problems (`(D Dᵀ)_FF` is block tridiagonal).
//!
//! Hand-rolled: faer has no banded factorization, and its general sparse Cholesky spends
//! more on the symbolic analysis of a tridiagonal matrix than this takes in all.

mod gram;

use super::scratch;
use nalgebra::DVector;
use nalgebra_sparse::CsrMatrix;

/// The factors: `L` unit lower with `b` sub-diagonals, stored by row (`l[i·b + (b − 1 − k)]`
/// holds `L[i, i − 1 − k]`), and `D⁻¹` (solves multiply; a division per row would cost
/// more than the rest of a tridiagonal solve).
#[derive(Debug, Clone)]
pub struct BandedLdlt {
    n: usize,
    b: usize,
    l: Vec<f64>,
    d_inv: Vec<f64>,
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

impl Drop for SymBand {
    fn drop(&mut self) {
        scratch::keep(std::mem::take(&mut self.band));
    }
}

impl Drop for BandedLdlt {
    fn drop(&mut self) {
        scratch::keep(std::mem::take(&mut self.l));
        scratch::keep(std::mem::take(&mut self.d_inv));
    }
}

impl SymBand {
    /// A zero `n × n` matrix of half-bandwidth `w` (at least 1).
    pub fn zeros(n: usize, w: usize) -> SymBand {
        let w = w.max(1);
        SymBand {
            n,
            w,
            band: scratch::zeroed(n * (w + 1)),
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
        if w == 1 {
            // Tridiagonal: row i is A[i, i−1] x[i−1] + A[i, i] x[i] + A[i+1, i] x[i+1].
            let (x, y) = (&x[..n], &mut y[..n]);
            let band = &self.band[..2 * n];
            for (i, yi) in y.iter_mut().enumerate() {
                let mut s = band[2 * i + 1] * x[i];
                if i > 0 {
                    s += band[2 * i] * x[i - 1];
                }
                if i + 1 < n {
                    s += band[2 * i + 2] * x[i + 1];
                }
                *yi = s;
            }
            return;
        }
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

impl SymBand {
    /// `r ← b − A x`, returning `‖r‖`: one pass for a tridiagonal band (the rows as
    /// [`SymBand::mul_into`] sums them), the product then the difference otherwise.
    pub fn residual_into(&self, x: &[f64], b: &[f64], r: &mut [f64]) -> f64 {
        let n = self.n;
        if self.w != 1 || n < 2 {
            self.mul_into(x, r);
            r.iter_mut().zip(b).for_each(|(ri, bi)| *ri = bi - *ri);
            return r.iter().map(|v| v * v).sum::<f64>().sqrt();
        }
        let (x, b, r) = (&x[..n], &b[..n], &mut r[..n]);
        let band = &self.band[..2 * n];
        let mut acc = [0.0f64; 4];
        let first = b[0] - (band[1] * x[0] + band[2] * x[1]);
        r[0] = first;
        acc[0] = first * first;
        for i in 1..n - 1 {
            let s = band[2 * i + 1] * x[i] + band[2 * i] * x[i - 1] + band[2 * i + 2] * x[i + 1];
            let ri = b[i] - s;
            r[i] = ri;
            acc[i % 4] += ri * ri;
        }
        let last = b[n - 1] - (band[2 * n - 1] * x[n - 1] + band[2 * n - 2] * x[n - 2]);
        r[n - 1] = last;
        acc[(n - 1) % 4] += last * last;
        ((acc[0] + acc[1]) + (acc[2] + acc[3])).sqrt()
    }
}

/// One row of the tridiagonal `LDLᵀ` from the row's sub-diagonal entry `b`, its diagonal
/// entry `a` and the previous reciprocal pivot: `(l, d) = (b d⁻¹, a − b² d⁻¹)`.
///
/// `a − b² d⁻¹` rather than `a − l b`: one multiplication less between one row's
/// reciprocal and the next. Shared by [`BandedLdlt::factor_band`] and the Gram assembly
/// that factors on the way, which must agree bit for bit.
#[inline(always)]
fn tridiagonal_row(b: f64, a: f64, prev_inv: f64) -> (f64, f64) {
    (b * prev_inv, a - (b * b) * prev_inv)
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
        let mut dropped = 0;
        if w == 1 {
            // Every entry is written below: no zeroing.
            let (mut l, mut d_inv) = (scratch::overwritten(n, 0.0), scratch::overwritten(n, 0.0));
            // Tridiagonal: d_i = a_ii − a_{i,i−1}² / d_{i−1}, one reciprocal per row.
            let band = &band[..2 * n];
            let mut prev_inv = 0.0;
            for ((li, di), row) in l.iter_mut().zip(d_inv.iter_mut()).zip(band.chunks_exact(2)) {
                let (l_row, mut s) = tridiagonal_row(row[0], row[1], prev_inv);
                *li = l_row;
                if s.abs() <= eps {
                    s = delta;
                    dropped += 1;
                }
                prev_inv = 1.0 / s;
                *di = prev_inv;
            }
            return BandedLdlt {
                n,
                b: w,
                l,
                d_inv,
                dropped,
            };
        }
        // Row-oriented LDLᵀ: L[i, j] = (A[i, j] − Σ_k L[i, k] D[k] L[j, k]) / D[j].
        let mut l = scratch::zeroed(n * w);
        let mut d_inv = scratch::zeroed(n);
        let mut d = scratch::zeroed(n);
        for i in 0..n {
            let lo = i.saturating_sub(w);
            for j in lo..i {
                let mut s = band[i * (w + 1) + w - (i - j)];
                let klo = lo.max(j.saturating_sub(w));
                for k in klo..j {
                    s -= l[i * w + w - (i - k)] * d[k] * l[j * w + w - (j - k)];
                }
                l[i * w + w - (i - j)] = s * d_inv[j];
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
            d_inv[i] = 1.0 / s;
        }
        scratch::keep(d);
        BandedLdlt {
            n,
            b: w,
            l,
            d_inv,
            dropped,
        }
    }

    /// `x ← A⁻¹ x`.
    pub fn solve_in_place(&self, x: &mut DVector<f64>) {
        let (n, w) = (self.n, self.b);
        if w == 1 {
            let x = &mut x.as_mut_slice()[..n];
            let (l, d_inv) = (&self.l[..n], &self.d_inv[..n]);
            // L y = x and x = D⁻¹ y in one sweep (y carried in a register), then Lᵀ.
            let mut y = 0.0;
            for ((xi, li), di) in x.iter_mut().zip(l).zip(d_inv) {
                y = *xi - li * y;
                *xi = y * di;
            }
            // Lᵀ x = z, the solved entry carried in a register.
            if let Some(&last) = x.last() {
                let mut next = last;
                for (xi, li) in x[..n - 1].iter_mut().rev().zip(l[1..].iter().rev()) {
                    next = *xi - li * next;
                    *xi = next;
                }
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
            x[i] *= self.d_inv[i];
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
    use crate::solvers::testing::csr as csr_of;
    use nalgebra::DMatrix;

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
    fn the_fused_residual_is_b_minus_the_product_entry_for_entry() {
        for (n, w) in [
            (1usize, 1usize),
            (2, 1),
            (3, 1),
            (9, 1),
            (10, 1),
            (7, 2),
            (12, 3),
        ] {
            let mut m = SymBand::zeros(n, w);
            for i in 0..n {
                for j in i.saturating_sub(w)..=i {
                    *m.entry_mut(i, j) = 1.0 + 0.37 * i as f64 - 0.61 * (j as f64).cos();
                }
            }
            let x: Vec<f64> = (0..n).map(|i| (1.3 * i as f64).sin()).collect();
            let b: Vec<f64> = (0..n).map(|i| 0.5 - (0.7 * i as f64).cos()).collect();
            let mut ax = vec![0.0; n];
            m.mul_into(&x, &mut ax);
            let want: Vec<f64> = b.iter().zip(&ax).map(|(bi, yi)| bi - yi).collect();
            let mut r = vec![f64::NAN; n];
            let norm = m.residual_into(&x, &b, &mut r);
            assert_eq!(r, want, "n = {n}, w = {w}");
            let direct = want.iter().map(|v| v * v).sum::<f64>().sqrt();
            assert!((norm - direct).abs() <= 1e-14 * direct, "n = {n}, w = {w}");
        }
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
    fn two_entry_rows_give_the_dense_gram_matrix_in_or_out_of_a_chain() {
        // Rows of exactly two entries: a difference chain with random free rows, a chain
        // whose neighbours share their first column, and rows reaching back two rows (not
        // tridiagonal: half-bandwidth 2 through the general fill).
        let n = 40;
        let chain = DMatrix::from_fn(n - 1, n, |i, j| match j as i64 - i as i64 {
            0 => -1.0 - 0.01 * i as f64,
            1 => 1.0 + 0.02 * (i as f64).sin(),
            _ => 0.0,
        });
        // Rows (0,1), (0,2), (1,2), (1,3), …: neighbours share a first or a last column.
        let fan = DMatrix::from_fn(6, 8, |i, j| {
            if j == i / 2 {
                1.0 + i as f64
            } else if j == i / 2 + 1 + i % 2 {
                -2.0
            } else {
                0.0
            }
        });
        let wide = DMatrix::from_fn(5, 8, |i, j| if j == i || j == i + 3 { 1.0 } else { 0.0 });
        let free: Vec<usize> = (0..n - 1).filter(|e| (e * 7 + 3) % 5 != 0).collect();
        for (a, s, w) in [
            (&chain, free, 1),
            (&chain, (0..n - 1).collect(), 1),
            (&fan, (0..6).collect(), 4),
            (&wide, (0..5).collect(), 3),
        ] {
            let rows = DMatrix::from_fn(s.len(), a.ncols(), |r, j| a[(s[r], j)]);
            let want = &rows * rows.transpose() * 1.5;
            let band = SymBand::gram_rows(1.5, &csr_of(a), &s, 16).expect("banded rows");
            assert!((dense_of(&band) - &want).abs().max() < 1e-14);
            let lower_band = (0..want.nrows())
                .flat_map(|i| (0..i).map(move |j| (i, j)))
                .filter(|&(i, j)| want[(i, j)] != 0.0)
                .map(|(i, j)| i - j)
                .max()
                .unwrap_or(0);
            // Chains take the tridiagonal band; the others a band holding every entry.
            assert_eq!(lower_band, w);
            assert!(band.w >= w && (w > 1 || band.w == 1), "{} vs {w}", band.w);
        }
    }

    #[test]
    fn a_factor_from_the_assembly_pass_is_the_separate_factorization_bit_for_bit() {
        // Differences with random free rows: the Gram band's factor computed on the way
        // equals factoring the band afterwards, and a solve with it solves the system.
        let n = 60;
        let chain = DMatrix::from_fn(n - 1, n, |i, j| match j as i64 - i as i64 {
            0 => -1.0 - 0.3 * (i as f64).cos(),
            1 => 1.0 + 0.2 * (i as f64 * 0.7).sin(),
            _ => 0.0,
        });
        let free: Vec<usize> = (0..n - 1).filter(|e| (e * 5 + 1) % 7 > 1).collect();
        let (band, ldlt) =
            SymBand::gram_rows_factored(0.8, &csr_of(&chain), &free, 16, 1e-10).expect("a chain");
        let ldlt = ldlt.expect("no pivot is dropped on a definite chain");
        let dmax = band.max_diagonal();
        let separate = BandedLdlt::factor_band(&band, 1e-10 * dmax, dmax);
        assert_eq!(separate.dropped, 0);
        assert_eq!(ldlt.l, separate.l);
        assert_eq!(ldlt.d_inv, separate.d_inv);
        let rows = DMatrix::from_fn(free.len(), n, |r, j| chain[(free[r], j)]);
        let a = &rows * rows.transpose() * 0.8;
        let b = DVector::from_fn(free.len(), |i, _| 1.0 + (i as f64).sin());
        let mut x = b.clone();
        ldlt.solve_in_place(&mut x);
        assert!((&a * &x - &b).norm() < 1e-12 * b.norm());
        // A pivot at the drop threshold: no factor from the pass (the caller factors and
        // replaces it).
        let (_, none) =
            SymBand::gram_rows_factored(0.8, &csr_of(&chain), &free, 16, 10.0).expect("a chain");
        assert!(none.is_none());
        // Not a chain of two-entry rows: nothing factored on the way.
        let three = DMatrix::from_fn(4, 6, |i, j| if j >= i && j < i + 3 { 1.0 } else { 0.0 });
        let (_, none) = SymBand::gram_rows_factored(1.0, &csr_of(&three), &[0, 1, 2, 3], 16, 1e-10)
            .expect("banded");
        assert!(none.is_none());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Random rows of two entries whose columns never decrease (chains, shared first
        /// columns, rows two apart meeting), now and then a row of tiny values (a pivot
        /// to drop), random free rows: the band is the dense Gram matrix, and a factor
        /// from the assembly pass is the separate factorization bit for bit.
        #[test]
        fn the_assembly_pass_factor_is_the_factorization_or_none(
            m in 2usize..40,
            seed in 0u64..1_000_000,
            drop_exp in -14i32..-2,
        ) {
            let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let mut next = || {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (state >> 11) as f64 / (1u64 << 53) as f64
            };
            let mut rows = Vec::new();
            let (mut c0, mut c1) = (0usize, 1usize);
            // Half the cases differences (a chain), the others any advancing rows.
            let chain = next() < 0.5;
            for _ in 0..m {
                // Now and then a row of tiny values: a pivot below the drop threshold.
                let scale = if next() < 0.04 { 1e-9 } else { 1.0 };
                rows.push((c0, c1, scale * (next() * 4.0 - 2.0), scale * (next() * 4.0 - 2.0)));
                c0 += if chain { 1 } else { (next() * 2.0) as usize };
                c1 = if chain { c0 + 1 } else { (c0 + 1 + (next() * 1.3) as usize).max(c1) };
            }
            let ncols = rows.iter().map(|r| r.1 + 1).max().unwrap_or(1);
            let a = DMatrix::from_fn(m, ncols, |i, j| {
                let (c0, c1, v0, v1) = rows[i];
                if j == c0 { v0 } else if j == c1 { v1 } else { 0.0 }
            });
            let s: Vec<usize> = (0..m).filter(|_| next() < 0.8).collect();
            let drop = 10f64.powi(drop_exp);
            if let Some((band, ldlt)) = SymBand::gram_rows_factored(0.7, &csr_of(&a), &s, 16, drop) {
                let sub = DMatrix::from_fn(s.len(), ncols, |r, j| a[(s[r], j)]);
                let want = &sub * sub.transpose() * 0.7;
                proptest::prop_assert!((dense_of(&band) - &want).abs().max() < 1e-12);
                if let Some(ldlt) = ldlt {
                    let dmax = band.max_diagonal();
                    let separate = BandedLdlt::factor_band(&band, drop * dmax, dmax);
                    proptest::prop_assert_eq!(separate.dropped, 0);
                    proptest::prop_assert_eq!(&ldlt.l, &separate.l);
                    proptest::prop_assert_eq!(&ldlt.d_inv, &separate.d_inv);
                }
            }
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
        let f = BandedLdlt::factor(&csr_of(&a), 2, 1e-12, 1.0);
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
        let f = BandedLdlt::factor(&csr_of(&lap), 1, 1e-10, 2.0);
        assert_eq!(f.dropped, 1);
        let mut b = DVector::from_fn(n, |i, _| (i as f64).cos());
        b.add_scalar_mut(-b.mean());
        let mut x = b.clone();
        f.solve_in_place(&mut x);
        assert!((&lap * &x - &b).norm() < 1e-10 * b.norm());
    }
}
