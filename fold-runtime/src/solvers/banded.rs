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

impl BandedLdlt {
    /// Factors the lower band of a symmetric `a` (half-bandwidth at most `b`); pivots with
    /// `|d| ≤ eps` become `delta`.
    pub fn factor(a: &CsrMatrix<f64>, b: usize, eps: f64, delta: f64) -> BandedLdlt {
        let n = a.nrows();
        let w = b.max(1);
        // Row i of the band: entries A[i, i − w .. i − 1] then the diagonal.
        let mut band = vec![0.0; n * (w + 1)];
        let (off, idx, val) = (a.row_offsets(), a.col_indices(), a.values());
        for i in 0..n {
            for p in off[i]..off[i + 1] {
                let j = idx[p];
                if j <= i && i - j <= w {
                    band[i * (w + 1) + w - (i - j)] += val[p];
                }
            }
        }
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
            for i in 1..n {
                x[i] -= self.l[i] * x[i - 1];
            }
            for i in 0..n {
                x[i] /= self.d[i];
            }
            for i in (0..n.saturating_sub(1)).rev() {
                x[i] -= self.l[i + 1] * x[i + 1];
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
