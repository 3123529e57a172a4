//! `A = L Lᵀ` of a symmetric positive definite matrix: faer's blocked kernel, a
//! hand-rolled one for small systems.

#[allow(unused_imports)]
use super::*;

/// A Cholesky factorization `A = L Lᵀ` of a symmetric positive definite matrix.
#[derive(Debug, Clone)]
pub struct Cholesky {
    /// `L` in the lower triangle (the strict upper triangle is unspecified).
    pub(super) l: DMatrix<f64>,
    /// `1 / Lᵢᵢ`.
    inv_diag: Vec<f64>,
}

/// Up to this size Cholesky uses [`small_cholesky_in_place`]; above, faer's blocked
/// kernel wins (single core, one column at a time: n = 47: 4.2 µs vs faer 6.3 µs,
/// nalgebra 5.4 µs; n = 64: 9.7 µs vs faer 6.9 µs; two columns at a time are another
/// 0.8× at n = 47).
pub(super) const SMALL_CHOLESKY: usize = 56;

/// Left-looking Cholesky of the column-major `n × n` matrix `s`, lower triangle in place,
/// with `inv_diag[j] = 1 / Lⱼⱼ` (length `n`); `false` on a non-positive or non-finite
/// pivot.
///
/// Hand-rolled because faer's and nalgebra's kernels carry per-call and per-column
/// overhead that dominates below n ≈ 60, the size of typical reduced systems: here two
/// columns at a time take their updates four previous columns at a time, in one
/// vectorized pass that loads each previous column once for both.
pub(super) fn small_cholesky_in_place(s: &mut [f64], n: usize, inv_diag: &mut [f64]) -> bool {
    let mut j = 0;
    while j < n {
        let (done, rest) = s.split_at_mut(j * n);
        let tail = |k: usize| &done[k * n + j..(k + 1) * n];
        if j + 1 == n {
            let col = &mut rest[j..n];
            for k in 0..j {
                let l = tail(k)[0];
                col[0] -= l * l;
            }
            return finish_column(col, &mut inv_diag[j]);
        }
        let (cj, cj1) = rest.split_at_mut(n);
        // Rows j.. of columns j and j + 1 (row j of column j + 1 is above the diagonal).
        let (cj, cj1) = (&mut cj[j..n], &mut cj1[j..n]);
        let mut k = 0;
        while k + 4 <= j {
            let (c0, c1, c2, c3) = (tail(k), tail(k + 1), tail(k + 2), tail(k + 3));
            let (a0, a1, a2, a3) = (c0[0], c1[0], c2[0], c3[0]);
            let (b0, b1, b2, b3) = (c0[1], c1[1], c2[1], c3[1]);
            let rows = cj
                .iter_mut()
                .zip(cj1.iter_mut())
                .zip(c0)
                .zip(c1)
                .zip(c2)
                .zip(c3);
            for (((((o, p), &x0), &x1), &x2), &x3) in rows {
                *o -= (a0 * x0 + a1 * x1) + (a2 * x2 + a3 * x3);
                *p -= (b0 * x0 + b1 * x1) + (b2 * x2 + b3 * x3);
            }
            k += 4;
        }
        for k in k..j {
            let c0 = tail(k);
            let (a0, b0) = (c0[0], c0[1]);
            for ((o, p), &x0) in cj.iter_mut().zip(cj1.iter_mut()).zip(c0) {
                *o -= a0 * x0;
                *p -= b0 * x0;
            }
        }
        if !finish_column(cj, &mut inv_diag[j]) {
            return false;
        }
        // Column j + 1 still needs column j's update.
        let l = cj[1];
        for (p, &x) in cj1[1..].iter_mut().zip(&cj[1..]) {
            *p -= l * x;
        }
        if !finish_column(&mut cj1[1..], &mut inv_diag[j + 1]) {
            return false;
        }
        j += 2;
    }
    true
}

/// Whether a Cholesky pivot `d = Lᵢᵢ` of an order-`n` matrix with diagonal entry `aᵢᵢ`
/// is numerically positive: `d² > n ε aᵢᵢ`, finite.
pub(super) fn pivot_passes(d: f64, aii: f64, n: usize) -> bool {
    d.is_finite() && d * d > n as f64 * f64::EPSILON * aii
}

/// Takes the square root of an updated column's pivot `col[0]` and scales the rest by it,
/// its reciprocal into `inv`; `false` on a non-positive or non-finite pivot.
pub(super) fn finish_column(col: &mut [f64], inv: &mut f64) -> bool {
    let d = col[0];
    // Also rejects NaN.
    if !(d > 0.0 && d.is_finite()) {
        return false;
    }
    let d = d.sqrt();
    col[0] = d;
    *inv = 1.0 / d;
    for o in &mut col[1..] {
        *o *= *inv;
    }
    true
}

impl Cholesky {
    /// Factors `A`, reading its lower triangle only.
    ///
    /// `Singular` when `A` is not numerically positive definite (a pivot `lᵢᵢ² ≤ n ε aᵢᵢ`);
    /// `NonFinite` / `DimensionMismatch` on bad input.
    pub fn factor(a: &DMatrix<f64>) -> Result<Cholesky, FoldError> {
        check_square(a, "matrix to factor")?;
        crate::__private::check::finite_matrix(a, "matrix to factor")?;
        Cholesky::factor_unchecked(a)
    }

    /// [`Cholesky::factor`] without the finiteness check, for callers that verify the
    /// solution against `A` anyway: a non-finite entry of the lower triangle gives a
    /// non-finite pivot (`Singular`), one of the upper triangle a non-finite residual.
    pub(crate) fn factor_unchecked(a: &DMatrix<f64>) -> Result<Cholesky, FoldError> {
        use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch};
        let n = check_square(a, "matrix to factor")?;
        // Substitution multiplies by `1 / Lᵢᵢ`: a division on its serial path costs more.
        let (l, inv_diag) = if n <= SMALL_CHOLESKY {
            let mut l = a.clone();
            let mut inv_diag = vec![0.0; n];
            if !small_cholesky_in_place(l.as_mut_slice(), n, &mut inv_diag) {
                return Err(FoldError::Singular);
            }
            (l, inv_diag)
        } else {
            let mut l = a.clone();
            let mut mem =
                MemBuffer::new(cholesky_in_place_scratch::<f64>(n, PAR, Default::default()));
            cholesky_in_place(
                view_mut(&mut l),
                Default::default(),
                PAR,
                MemStack::new(&mut mem),
                Default::default(),
            )
            .map_err(|_| FoldError::Singular)?;
            let inv_diag = (0..n).map(|i| 1.0 / l[(i, i)]).collect();
            (l, inv_diag)
        };
        // Relative to each row's own diagonal, so that the verdict does not change under
        // a symmetric diagonal scaling D A D (a badly scaled but well-conditioned matrix).
        let ok = (0..n).all(|i| pivot_passes(l[(i, i)], a[(i, i)], n));
        if !ok {
            return Err(FoldError::Singular);
        }
        Ok(Cholesky { l, inv_diag })
    }

    /// Dimension of the factored matrix.
    pub fn dim(&self) -> usize {
        self.l.nrows()
    }

    /// `A⁻¹ b`.
    ///
    /// # Panics
    /// If `b.len()` differs from the matrix dimension.
    pub fn solve(&self, b: &DVector<f64>) -> DVector<f64> {
        let mut x = b.clone();
        self.solve_in_place(&mut x);
        x
    }

    /// `x ← A⁻¹ x`. Allocates nothing.
    ///
    /// # Panics
    /// If `x.len()` differs from the matrix dimension.
    pub fn solve_in_place(&self, x: &mut DVector<f64>) {
        assert_eq!(
            x.len(),
            self.dim(),
            "Cholesky::solve: right-hand side length"
        );
        self.solve_slice_in_place(x.as_mut_slice());
    }

    /// `x ← A⁻¹ x` on a slice of the matrix dimension.
    pub(super) fn solve_slice_in_place(&self, x: &mut [f64]) {
        lower_solve(self.l.as_slice(), x, Some(&self.inv_diag));
        lower_transpose_solve(self.l.as_slice(), x, Some(&self.inv_diag));
    }
}
