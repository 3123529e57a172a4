//! `P A = L U` with partial pivoting, its condition estimate, and the input checks the
//! factorizations share.

#[allow(unused_imports)]
use super::*;

pub(super) fn check_square(a: &DMatrix<f64>, what: &str) -> Result<usize, FoldError> {
    let (m, n) = a.shape();
    if m != n {
        return Err(FoldError::dimension(
            format!("{what} (columns of a square matrix)"),
            m,
            n,
        ));
    }
    Ok(n)
}

/// What one pass over a matrix tells [`Lu`]: `max|aᵢⱼ|`, `‖A‖₁`, and the largest
/// magnitude of each row and of each column.
pub(super) struct Scan {
    pub(super) max: f64,
    pub(super) norm1: f64,
    pub(super) rows: Vec<f64>,
    pub(super) cols: Vec<f64>,
}

/// [`Scan`] of `a`, or `NonFinite` naming `what`.
pub(super) fn scan(a: &DMatrix<f64>, what: &str) -> Result<Scan, FoldError> {
    // Four lanes of independent accumulators and select-style maxima (NaN is caught by
    // `poison` instead), so that the pass vectorizes: it runs before every LU.
    fn bigger(a: f64, b: f64) -> f64 {
        if a > b {
            a
        } else {
            b
        }
    }
    let m = a.nrows();
    let (mut norm1, mut poison) = (0.0f64, [0.0f64; 4]);
    let mut rows = vec![0.0f64; m];
    let mut cols = Vec::with_capacity(a.ncols());
    for col in a.as_slice().chunks_exact(m.max(1)).take(a.ncols()) {
        let (mut sum, mut max) = ([0.0f64; 4], [0.0f64; 4]);
        let mut rc = rows.chunks_exact_mut(4);
        let mut vc = col.chunks_exact(4);
        for (r, v) in (&mut rc).zip(&mut vc) {
            for k in 0..4 {
                let x = v[k].abs();
                // v * 0.0 is NaN exactly when v is not finite.
                poison[k] += v[k] * 0.0;
                sum[k] += x;
                max[k] = bigger(x, max[k]);
                r[k] = bigger(x, r[k]);
            }
        }
        for (r, v) in rc.into_remainder().iter_mut().zip(vc.remainder()) {
            let x = v.abs();
            poison[0] += v * 0.0;
            sum[0] += x;
            max[0] = bigger(x, max[0]);
            *r = bigger(x, *r);
        }
        norm1 = bigger((sum[0] + sum[1]) + (sum[2] + sum[3]), norm1);
        cols.push(max.into_iter().fold(0.0, bigger));
    }
    if poison.iter().sum::<f64>() == 0.0 {
        let max = cols.iter().copied().fold(0.0, bigger);
        Ok(Scan {
            max,
            norm1,
            rows,
            cols,
        })
    } else {
        Err(FoldError::non_finite(what))
    }
}

/// Spread `max / min` of row (or column) sizes above which [`Lu`] equilibrates them: below
/// it scaling changes neither pivoting nor the singularity verdict much, and skipping it
/// saves passes over the matrix.
pub(super) const EQUILIBRATE_ABOVE: f64 = 256.0;

/// Power-of-two multipliers `sᵢ ≈ 1 / rᵢ` (exact in floating point) for rows or columns
/// of sizes `rᵢ`, or `None` when they are of similar size.
pub(super) fn equilibration(sizes: &[f64]) -> Option<Vec<f64>> {
    let (lo, hi) = sizes.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &r| {
        (lo.min(r), hi.max(r))
    });
    if sizes.is_empty() || lo == 0.0 || hi <= EQUILIBRATE_ABOVE * lo {
        return None;
    }
    Some(
        sizes
            .iter()
            .map(|&r| 2f64.powi(-(r.log2().round() as i32).clamp(-1000, 1000)))
            .collect(),
    )
}

pub(super) fn max_abs(a: &DMatrix<f64>) -> f64 {
    // Eight independent maxima so that the loop vectorizes.
    let mut acc = [0.0f64; 8];
    let mut chunks = a.as_slice().chunks_exact(8);
    for c in &mut chunks {
        for k in 0..8 {
            acc[k] = acc[k].max(c[k].abs());
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()));
    acc.iter().fold(tail, |m, v| m.max(*v))
}

/// LU pivots of an order-`n` matrix with `max|aᵢⱼ| = scale` at or below this magnitude
/// mean "singular": `n ε` is the factorization's backward-error scale.
pub(super) fn pivot_floor(n: usize, scale: f64) -> f64 {
    n as f64 * f64::EPSILON * scale
}

/// An estimated reciprocal condition number below `max(n, 16) ε` means "numerically
/// singular": `n ε` is LU's backward-error scale, so no digit of the solution is
/// trustworthy, and the factor absorbs the estimate's looseness (it can overestimate
/// `rcond` by a small factor). Exactly singular matrices rounded to `f64` land at
/// `rcond ≈ ε`, just above plain `ε`.
pub(super) fn rcond_min(n: usize) -> f64 {
    n.max(16) as f64 * f64::EPSILON
}

/// An LU factorization with partial pivoting, `P A = L U`, stored packed.
#[derive(Debug, Clone)]
pub struct Lu {
    /// Unit-lower `L` below the diagonal, `U` on and above it.
    lu: DMatrix<f64>,
    /// Row permutation of `P A` as swaps: see [`swaps_of`].
    swaps: Vec<usize>,
    /// Row multipliers `R` when the factors are of `R A C` (badly scaled rows), else empty.
    row_scale: Vec<f64>,
    /// Column multipliers `C` (badly scaled columns), else empty.
    col_scale: Vec<f64>,
    rcond: f64,
}

impl Lu {
    /// Factors a square matrix.
    ///
    /// Rows, then columns, of very different size are first scaled by powers of two
    /// (`Ã = R A C`, exact), so that pivoting and the singularity verdict do not depend on
    /// the units of the unknowns or equations. `Singular` when a row or column is zero, a
    /// pivot is below `n ε max|Ãᵢⱼ|`, or the estimated reciprocal 1-norm condition number
    /// of `Ã` is below `max(n, 16) ε`; `NonFinite` / `DimensionMismatch` on bad input.
    pub fn factor(a: &DMatrix<f64>) -> Result<Lu, FoldError> {
        Lu::factor_owned(a.clone())
    }

    /// [`Lu::factor`] reusing the matrix's storage for the factors (no copy).
    pub fn factor_owned(a: DMatrix<f64>) -> Result<Lu, FoldError> {
        let n = check_square(&a, "matrix to factor")?;
        let what = "matrix to factor";
        let mut sc = scan(&a, what)?;
        if sc.rows.contains(&0.0) || sc.cols.contains(&0.0) {
            return Err(FoldError::Singular);
        }
        let mut lu = a;
        let row_scale = equilibration(&sc.rows).unwrap_or_default();
        if !row_scale.is_empty() {
            for mut c in lu.column_iter_mut() {
                for (v, &si) in c.iter_mut().zip(&row_scale) {
                    *v *= si;
                }
            }
            sc = scan(&lu, what)?;
        }
        let col_scale = equilibration(&sc.cols).unwrap_or_default();
        if !col_scale.is_empty() {
            for (mut c, &sj) in lu.column_iter_mut().zip(&col_scale) {
                c *= sj;
            }
            sc = scan(&lu, what)?;
        }
        let (scale, anorm) = (sc.max, sc.norm1);
        let mut perm = vec![0usize; n];
        let mut perm_inv = vec![0usize; n];
        {
            use faer::linalg::lu::partial_pivoting::factor::{lu_in_place, lu_in_place_scratch};
            let mut mem = MemBuffer::new(lu_in_place_scratch::<usize, f64>(
                n,
                n,
                PAR,
                Default::default(),
            ));
            lu_in_place(
                view_mut(&mut lu),
                &mut perm,
                &mut perm_inv,
                PAR,
                MemStack::new(&mut mem),
                Default::default(),
            );
        }
        let mut this = Lu {
            lu,
            swaps: swaps_of(&perm),
            row_scale,
            col_scale,
            rcond: 0.0,
        };
        if n == 0 {
            this.rcond = 1.0;
            return Ok(this);
        }
        let pivot_floor = pivot_floor(n, scale);
        let min_pivot = (0..n)
            .map(|i| this.lu[(i, i)].abs())
            .fold(f64::INFINITY, f64::min);
        if scale == 0.0
            || min_pivot <= pivot_floor
            || !crate::__private::check::all_finite(this.lu.as_slice())
        {
            return Err(FoldError::Singular);
        }
        this.rcond = match this.inverse_norm1_estimate() {
            Some(inv) if inv > 0.0 => 1.0 / (anorm * inv),
            _ => 0.0,
        };
        if this.rcond.is_nan() || this.rcond < rcond_min(n) {
            return Err(FoldError::Singular);
        }
        Ok(this)
    }

    /// Dimension of the factored matrix.
    pub fn dim(&self) -> usize {
        self.swaps.len()
    }

    /// Estimated reciprocal condition number `1 / (‖Ã‖₁ ‖Ã⁻¹‖₁)` (Hager–Higham) of the
    /// equilibrated matrix `Ã = R A C` that was factored (`A` itself unless badly scaled).
    pub fn rcond(&self) -> f64 {
        self.rcond
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

    /// `A⁻ᵀ b`.
    ///
    /// # Panics
    /// If `b.len()` differs from the matrix dimension.
    pub fn solve_transpose(&self, b: &DVector<f64>) -> DVector<f64> {
        let mut x = b.clone();
        self.solve_transpose_in_place(&mut x);
        x
    }

    /// `x ← A⁻¹ x`. Allocates nothing.
    ///
    /// # Panics
    /// If `x.len()` differs from the matrix dimension.
    pub fn solve_in_place(&self, x: &mut DVector<f64>) {
        assert_eq!(x.len(), self.dim(), "Lu::solve: right-hand side length");
        // A x = b  ⇔  Ã (C⁻¹ x) = R b.
        scale_by(x, &self.row_scale);
        self.solve_factored_in_place(x.as_mut_slice());
        scale_by(x, &self.col_scale);
    }

    /// `x ← Ã⁻¹ x`.
    fn solve_factored_in_place(&self, x: &mut [f64]) {
        lu_solve(self.lu.as_slice(), &self.swaps, x);
    }

    /// `x ← A⁻ᵀ x`. Allocates nothing.
    ///
    /// # Panics
    /// If `x.len()` differs from the matrix dimension.
    pub fn solve_transpose_in_place(&self, x: &mut DVector<f64>) {
        assert_eq!(
            x.len(),
            self.dim(),
            "Lu::solve_transpose: right-hand side length"
        );
        // Aᵀ y = c  ⇔  Ãᵀ (R⁻¹ y) = C c.
        scale_by(x, &self.col_scale);
        self.solve_factored_transpose_in_place(x.as_mut_slice());
        scale_by(x, &self.row_scale);
    }

    /// `x ← Ã⁻ᵀ x`.
    fn solve_factored_transpose_in_place(&self, x: &mut [f64]) {
        lu_solve_transpose(self.lu.as_slice(), &self.swaps, x);
    }

    /// Hager–Higham estimate of `‖Ã⁻¹‖₁` from a few solves with the factors.
    fn inverse_norm1_estimate(&self) -> Option<f64> {
        inverse_norm1_estimate(
            &|x| self.solve_factored_in_place(x),
            &|x| self.solve_factored_transpose_in_place(x),
            &mut vec![0.0; self.dim()],
        )
    }
}

/// Hager–Higham estimate of `‖A⁻¹‖₁` for an `n × n` matrix from a few solves:
/// `solve` applies `x ← A⁻¹ x`, `solve_t` applies `x ← A⁻ᵀ x`; `x` (length `n`) is
/// scratch.
pub(super) fn inverse_norm1_estimate(
    solve: &dyn Fn(&mut [f64]),
    solve_t: &dyn Fn(&mut [f64]),
    x: &mut [f64],
) -> Option<f64> {
    let n = x.len();
    let norm1 = |x: &[f64]| x.iter().map(|v| v.abs()).sum::<f64>();
    x.fill(1.0 / n as f64);
    let mut est = 0.0;
    let mut last_j = usize::MAX;
    for _ in 0..5 {
        solve(x); // y = A⁻¹ x
        let y_norm = norm1(x);
        if !y_norm.is_finite() {
            return None;
        }
        if y_norm <= est {
            break;
        }
        est = y_norm;
        x.iter_mut()
            .for_each(|v| *v = if *v >= 0.0 { 1.0 } else { -1.0 });
        solve_t(x); // z = A⁻ᵀ sign(y)
        let j = (0..n).fold(0, |b, i| if x[i].abs() > x[b].abs() { i } else { b });
        if j == last_j {
            break;
        }
        last_j = j;
        x.fill(0.0);
        x[j] = 1.0;
    }
    // Higham's extra test vector guards against the estimate missing large growth.
    for (i, v) in x.iter_mut().enumerate() {
        let s = if i % 2 == 0 { 1.0 } else { -1.0 };
        *v = s * (1.0 + i as f64 / (n.max(2) - 1) as f64);
    }
    solve(x);
    let alt_est = 2.0 * norm1(x) / (3.0 * n as f64);
    let best = est.max(alt_est);
    best.is_finite().then_some(best)
}

/// `x ← A⁻¹ x` from packed factors `P A = L U` (column-major, `L` unit lower) and the
/// row swaps of `P`.
pub(super) fn lu_solve(f: &[f64], swaps: &[usize], x: &mut [f64]) {
    for (i, &j) in swaps.iter().enumerate() {
        x.swap(i, j);
    }
    lower_solve(f, x, None);
    upper_solve(f, x);
}

/// `x ← A⁻ᵀ x` from the factors of [`lu_solve`]: `Aᵀ = Uᵀ Lᵀ P`, so `x ← Pᵀ L⁻ᵀ U⁻ᵀ x`.
pub(super) fn lu_solve_transpose(f: &[f64], swaps: &[usize], x: &mut [f64]) {
    upper_transpose_solve(f, x);
    lower_transpose_solve(f, x, None);
    for (i, &j) in swaps.iter().enumerate().rev() {
        x.swap(i, j);
    }
}

/// `xᵢ ← sᵢ xᵢ`; nothing when `s` is empty (no scaling).
pub(super) fn scale_by(x: &mut DVector<f64>, s: &[f64]) {
    for (v, &si) in x.iter_mut().zip(s) {
        *v *= si;
    }
}

/// The row permutation `x ← x[perm]` as a sequence of swaps (LAPACK's `ipiv`): applying
/// `x.swap(i, swaps[i])` for `i = 0, 1, …` permutes in place, without a scratch vector.
pub(super) fn swaps_of(perm: &[usize]) -> Vec<usize> {
    let n = perm.len();
    let mut at: Vec<usize> = (0..n).collect(); // at[p]: original index now at position p
    let mut pos: Vec<usize> = (0..n).collect(); // pos[o]: position of original index o
    let mut swaps = vec![0; n];
    for i in 0..n {
        let j = pos[perm[i]];
        swaps[i] = j;
        let (ai, aj) = (at[i], at[j]);
        at.swap(i, j);
        pos[aj] = i;
        pos[ai] = j;
    }
    swaps
}
