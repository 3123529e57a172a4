//! `c A[S, :] A[S, :]ᵀ` assembled straight into band storage from the rows of a CSR
//! matrix: the reduced matrices of 1-D problems (`(D Dᵀ)_FF` of differences is
//! tridiagonal), in one pass over the rows on `S`.

use super::{tridiagonal_row, BandedLdlt, SymBand};
use crate::solvers::scratch;
use nalgebra_sparse::CsrMatrix;

impl SymBand {
    /// The band of [`SymBand::gram_rows_factored`] alone (tests).
    #[cfg(test)]
    pub fn gram_rows(c: f64, a: &CsrMatrix<f64>, s: &[usize], w_max: usize) -> Option<SymBand> {
        Self::gram_rows_factored(c, a, s, w_max, 0.0).map(|(band, _)| band)
    }

    /// `c A[S, :] A[S, :]ᵀ` straight into band storage, when the rows of `A` on `S` (sorted
    /// columns, as CSR keeps them) have first and last columns that never decrease, so
    /// that a row meets only rows shortly before it; `None` when they decrease or its
    /// half-bandwidth exceeds `w_max`. `S` must be strictly increasing and in range.
    ///
    /// When the rows have two entries each, also the band's `LDLᵀ` from the same pass,
    /// if no pivot has `|d| ≤ drop · max |Aᵢᵢ|` (it then equals
    /// `BandedLdlt::factor_band(band, drop · max |Aᵢᵢ|, max |Aᵢᵢ|)`); otherwise `None`
    /// leaves the factorization to the caller.
    pub fn gram_rows_factored(
        c: f64,
        a: &CsrMatrix<f64>,
        s: &[usize],
        w_max: usize,
        drop: f64,
    ) -> Option<(SymBand, Option<BandedLdlt>)> {
        let rows = Rows {
            off: a.row_offsets(),
            idx: a.col_indices(),
            val: a.values(),
            s,
        };
        if let Some(m) = rows.edge_chain(c, drop) {
            return Some(m);
        }
        if let Some(m) = rows.tridiagonal(c) {
            return Some((m, None));
        }
        let w = rows.bandwidth(w_max)?;
        let mut m = SymBand::zeros(s.len(), w);
        rows.fill(c, m.w, &mut m.band);
        Some((m, None))
    }
}

/// `⟨u, v⟩` of two sparse rows with sorted columns (rows are short: no scatter into a dense
/// row). Rows of up to four entries compare every pair without branches, since a merge's
/// branches are unpredictable; longer ones merge.
#[inline(always)]
fn dot((ci, vi): (&[usize], &[f64]), (cj, vj): (&[usize], &[f64])) -> f64 {
    if let ([a0, a1], [b0, b1]) = (ci, cj) {
        // Selected by a bit mask: a branch on whether two edges share a vertex is a coin
        // toss.
        let pick = |a: &usize, b: &usize, x: f64, y: f64| {
            f64::from_bits((x * y).to_bits() & (-i64::from(a == b)) as u64)
        };
        return pick(a0, b0, vi[0], vj[0])
            + pick(a0, b1, vi[0], vj[1])
            + pick(a1, b0, vi[1], vj[0])
            + pick(a1, b1, vi[1], vj[1]);
    }
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

    /// [`Rows::tridiagonal`] for rows of exactly two entries (the edges of a graph, the
    /// differences of a 1-D problem), the common case, in a loop without branches on the
    /// data; `None`, at the first row that shows it, when a row has another length or the
    /// matrix is not tridiagonal.
    ///
    /// The band's `LDLᵀ` is computed in the same pass (its reciprocal chain overlaps the
    /// loads of the rows) and returned when no pivot has `|d| ≤ drop · max |Aᵢᵢ|`: it is
    /// then exactly [`BandedLdlt::factor_band`] with that threshold, which replaces none.
    fn edge_chain(&self, c: f64, drop: f64) -> Option<(SymBand, Option<BandedLdlt>)> {
        let (off, idx, val) = (self.off, self.idx, self.val);
        let k = self.s.len();
        // Every entry is written below: no zeroing.
        let mut band = scratch::overwritten(2 * k, 0.0);
        let (mut l, mut d_inv) = (scratch::overwritten(k, 0.0), scratch::overwritten(k, 0.0));
        // The previous row's columns and values (zeros before the first row meet nothing
        // that counts: its product is zero and no column is below 0), and the last column
        // of the row before that (`usize::MAX` before the second row is ignored by `seen`).
        let (mut pc0, mut pc1, mut pv0, mut pv1) = (0usize, 0usize, 0.0f64, 0.0f64);
        let (mut before_hi, mut seen) = (0usize, 0usize);
        let mut bad = false;
        // The factor's last reciprocal pivot, max |Aᵢᵢ|, min |dᵢ| and whether a pivot is NaN.
        let (mut prev_inv, mut a_max, mut d_min, mut nan) = (0.0f64, 0.0f64, f64::INFINITY, false);
        let rows = band
            .chunks_exact_mut(2)
            .zip(l.iter_mut().zip(d_inv.iter_mut()));
        for ((out, (li, di)), &i) in rows.zip(self.s) {
            let p = off[i];
            if off[i + 1] != p + 2 {
                bad = true;
                break;
            }
            let (c0, c1) = (idx[p], idx[p + 1]);
            // Columns advance, and no row reaches back two rows (`|`, not `||`: one
            // branch, taken once, at the first row that is not a chain's).
            bad = (c0 < pc0) | (c1 < pc1) | ((seen >= 2) & (before_hi >= c0));
            if bad {
                break;
            }
            let (v0, v1) = (val[p], val[p + 1]);
            // Sorted and advancing columns meet only as c0 = pc0, c0 = pc1 or c1 = pc1.
            let pick = |a: usize, b: usize, x: f64| if a == b { x } else { 0.0 };
            let below = pick(c0, pc0, v0 * pv0) + pick(c0, pc1, v0 * pv1) + pick(c1, pc1, v1 * pv1);
            let (below, diag) = (c * below, c * (v0 * v0 + v1 * v1));
            out[0] = below;
            out[1] = diag;
            // `factor_band`'s tridiagonal step.
            let (l_row, d) = tridiagonal_row(below, diag, prev_inv);
            *li = l_row;
            a_max = a_max.max(diag.abs());
            d_min = d_min.min(d.abs());
            nan |= d.is_nan();
            prev_inv = 1.0 / d;
            *di = prev_inv;
            (before_hi, seen) = (pc1, seen + 1);
            (pc0, pc1, pv0, pv1) = (c0, c1, v0, v1);
        }
        if bad {
            // Not a chain (a 2-D grid's edges): the buffers go back for the path that is.
            scratch::keep(band);
            scratch::keep(l);
            scratch::keep(d_inv);
            return None;
        }
        let exact = a_max > 0.0 && a_max.is_finite() && !nan && d_min > drop * a_max;
        let ldlt = BandedLdlt {
            n: k,
            b: 1,
            l,
            d_inv,
            dropped: 0,
        };
        Some((SymBand { n: k, w: 1, band }, exact.then_some(ldlt)))
    }

    /// The Gram matrix in one pass when it is tridiagonal (each row meets at most the row
    /// just before it: a chain, as the free edges of a 1-D problem), `None` otherwise.
    ///
    /// Without data-dependent branches: whether consecutive free edges touch is a coin
    /// toss, and the product of rows that do not meet is zero anyway. Rows of more than
    /// four entries are left to [`Rows::fill`].
    fn tridiagonal(&self, c: f64) -> Option<SymBand> {
        let k = self.s.len();
        // Pushed rather than zeroed and written: one pass over the band, not two.
        let mut band = scratch::empty(2 * k);
        let (off, idx, val) = (self.off, self.idx, self.val);
        // The previous nonempty row (its index, span, first and last columns), and the
        // last column of the one before it.
        let mut prev: Option<(usize, usize, usize, usize, usize)> = None;
        let mut before_hi: Option<usize> = None;
        let mut bad = false;
        for (r, &i) in self.s.iter().enumerate() {
            let (p, q) = (off[i], off[i + 1]);
            if p == q {
                band.extend([0.0, 0.0]);
                continue;
            }
            if q - p > 4 {
                bad = true;
                break;
            }
            let row = (&idx[p..q], &val[p..q]);
            let (lo, hi) = (row.0[0], row.0[row.0.len() - 1]);
            let diagonal = if let [a, b] = row.1 {
                a * a + b * b
            } else {
                row.1.iter().map(|v| v * v).sum::<f64>()
            };
            let mut below = 0.0;
            if let Some((t, tp, tq, tlo, thi)) = prev {
                // Columns advance; a row meeting the previous one follows it directly (an
                // empty row between would put the entry off the band); none reaches back
                // two rows.
                let meets = thi >= lo;
                bad |= lo < tlo
                    || hi < thi
                    || (meets && t + 1 != r)
                    || before_hi.is_some_and(|h| h >= lo);
                below = c * dot(row, (&idx[tp..tq], &val[tp..tq]));
                before_hi = Some(thi);
            }
            band.extend([below, c * diagonal]);
            prev = Some((r, p, q, lo, hi));
        }
        if bad {
            scratch::keep(band);
            return None;
        }
        Some(SymBand { n: k, w: 1, band })
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
