//! [`Factorization`]: the one factorization of a square matrix that `linsolve` and the
//! code generated for it use — Cholesky when the matrix is symmetric positive definite,
//! LU otherwise.

use super::{check_square, inverse_norm1_estimate, rcond_min, scan};
use super::{Cholesky, DenseFactorization, Lu};
use crate::FoldError;
use nalgebra::{DMatrix, DVector};

/// A factorization of a square matrix `A` that solves with `A` and with `Aᵀ`.
///
/// [`Factorization::factor`] takes Cholesky (half the work of LU, no pivoting) when `A` is
/// exactly symmetric, positive definite and well enough conditioned for the solve to be
/// trusted, and LU with partial pivoting otherwise — so a nearly singular symmetric
/// matrix gets the same `Singular` verdict as any other matrix (the LU's).
#[derive(Debug, Clone)]
pub enum Factorization {
    /// `A = L Lᵀ`.
    Cholesky(Cholesky),
    /// `P A = L U`.
    Lu(Lu),
}

impl Factorization {
    /// Factors a square matrix: Cholesky when `A` equals its transpose entry for entry, the
    /// Cholesky succeeds and its estimated reciprocal 1-norm condition number is at least
    /// the LU's threshold (`max(n, 16) ε`); [`Lu::factor`] otherwise.
    ///
    /// `Singular` when `A` is numerically singular; `NonFinite` / `DimensionMismatch` on bad
    /// input.
    pub fn factor(a: &DMatrix<f64>) -> Result<Factorization, FoldError> {
        let n = check_square(a, "matrix to factor")?;
        if n > 0 && exactly_symmetric(a) {
            match Cholesky::factor(a) {
                Ok(ch) => {
                    let norm1 = scan(a, "matrix to factor")?.norm1;
                    let solve = |x: &mut [f64]| ch.solve_slice_in_place(x);
                    // A⁻ᵀ = A⁻¹: the same solve serves both products.
                    let rcond = match inverse_norm1_estimate(&solve, &solve, &mut vec![0.0; n]) {
                        Some(inv) if inv > 0.0 => 1.0 / (norm1 * inv),
                        _ => 0.0,
                    };
                    if rcond >= rcond_min(n) {
                        return Ok(Factorization::Cholesky(ch));
                    }
                }
                // Indefinite (or semidefinite): LU decides.
                Err(FoldError::Singular) => {}
                Err(e) => return Err(e),
            }
        }
        Lu::factor(a).map(Factorization::Lu)
    }

    /// Which factorization [`Factorization::factor`] chose.
    pub fn kind(&self) -> DenseFactorization {
        match self {
            Factorization::Cholesky(_) => DenseFactorization::Cholesky,
            Factorization::Lu(_) => DenseFactorization::Lu,
        }
    }

    /// Dimension of the factored matrix.
    pub fn dim(&self) -> usize {
        match self {
            Factorization::Cholesky(f) => f.dim(),
            Factorization::Lu(f) => f.dim(),
        }
    }

    /// `A⁻¹ b`.
    ///
    /// # Panics
    /// If `b.len()` differs from the matrix dimension.
    pub fn solve(&self, b: &DVector<f64>) -> DVector<f64> {
        let mut x = kept_copy(b);
        self.solve_in_place(&mut x);
        x
    }

    /// `A⁻ᵀ b` (the same as [`Factorization::solve`] for Cholesky).
    ///
    /// # Panics
    /// If `b.len()` differs from the matrix dimension.
    pub fn solve_transpose(&self, b: &DVector<f64>) -> DVector<f64> {
        let mut x = kept_copy(b);
        self.solve_transpose_in_place(&mut x);
        x
    }

    /// `x ← A⁻¹ x`. Allocates nothing.
    ///
    /// # Panics
    /// If `x.len()` differs from the matrix dimension.
    pub fn solve_in_place(&self, x: &mut DVector<f64>) {
        match self {
            Factorization::Cholesky(f) => f.solve_in_place(x),
            Factorization::Lu(f) => f.solve_in_place(x),
        }
    }

    /// `x ← A⁻ᵀ x`. Allocates nothing.
    ///
    /// # Panics
    /// If `x.len()` differs from the matrix dimension.
    pub fn solve_transpose_in_place(&self, x: &mut DVector<f64>) {
        match self {
            Factorization::Cholesky(f) => f.solve_in_place(x),
            Factorization::Lu(f) => f.solve_transpose_in_place(x),
        }
    }
}

/// `b` in a kept buffer (generated products solve with this; see `__private::temps`).
fn kept_copy(b: &DVector<f64>) -> DVector<f64> {
    let mut x = crate::__private::temps::vector(b.len());
    x.copy_from(b);
    x
}

/// Whether `aᵢⱼ = aⱼᵢ` for all `i, j` of the square `a` (false on a NaN, which LU then
/// reports): the test Cholesky needs, as it reads the lower triangle only.
fn exactly_symmetric(a: &DMatrix<f64>) -> bool {
    let n = a.nrows();
    let s = a.as_slice();
    (0..n).all(|j| {
        // Column j below the diagonal against row j right of it.
        s[j * n + j + 1..(j + 1) * n]
            .iter()
            .enumerate()
            .all(|(k, &v)| v == s[(j + 1 + k) * n + j])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::is_symmetric;

    /// A deterministic matrix with entries in [−1, 1) (an LCG, independent of the code
    /// under test).
    fn entries(n: usize, m: usize, seed: u64) -> DMatrix<f64> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        DMatrix::from_fn(n, m, |_, _| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
    }

    /// `B Bᵀ + shift I`, made exactly symmetric.
    fn spd(n: usize, seed: u64, shift: f64) -> DMatrix<f64> {
        let b = entries(n, n, seed);
        let g = &b * b.transpose() + DMatrix::identity(n, n) * shift;
        (&g + g.transpose()) * 0.5
    }

    fn rel(a: &DVector<f64>, b: &DVector<f64>) -> f64 {
        (a - b).norm() / b.norm()
    }

    #[test]
    fn spd_takes_cholesky_and_agrees_with_lu() {
        // Both sides of SMALL_CHOLESKY (hand-rolled kernel below, faer's above).
        for (n, seed) in [(1, 1), (2, 2), (7, 3), (30, 4), (80, 5)] {
            let a = spd(n, seed, 0.5);
            assert!(is_symmetric(&a, 0.0));
            let f = Factorization::factor(&a).unwrap();
            assert_eq!(f.kind(), DenseFactorization::Cholesky, "n = {n}");
            assert_eq!(f.dim(), n);
            let lu = Lu::factor(&a).unwrap();
            let b = DVector::from_column_slice(entries(n, 1, seed + 100).as_slice());
            let reference = a.clone().lu().solve(&b).unwrap();
            let x = f.solve(&b);
            assert!(rel(&x, &lu.solve(&b)) < 1e-12, "n = {n}");
            assert!(rel(&x, &reference) < 1e-12, "n = {n}");
            assert!(rel(&f.solve_transpose(&b), &lu.solve_transpose(&b)) < 1e-12);
        }
    }

    #[test]
    fn asymmetric_or_indefinite_takes_lu() {
        let n = 9;
        let b = DVector::from_column_slice(entries(n, 1, 7).as_slice());
        // Symmetric indefinite: the Cholesky fails, LU solves.
        let indefinite = spd(n, 8, 0.0) - DMatrix::identity(n, n) * 2.0;
        assert!(is_symmetric(&indefinite, 0.0));
        let f = Factorization::factor(&indefinite).unwrap();
        assert_eq!(f.kind(), DenseFactorization::Lu);
        assert!((&indefinite * f.solve(&b) - &b).amax() < 1e-10);
        // Negative definite.
        let neg = -spd(n, 9, 1.0);
        assert_eq!(
            Factorization::factor(&neg).unwrap().kind(),
            DenseFactorization::Lu
        );
        // SPD up to one rounding-level asymmetry: not exactly symmetric, so LU.
        let mut almost = spd(n, 10, 1.0);
        almost[(0, 3)] += 1e-15;
        let f = Factorization::factor(&almost).unwrap();
        assert_eq!(f.kind(), DenseFactorization::Lu);
        let at = almost.transpose();
        let reference = at.clone().lu().solve(&b).unwrap();
        assert!(rel(&f.solve_transpose(&b), &reference) < 1e-12);
    }

    #[test]
    fn exact_symmetry_means_entry_for_entry() {
        let mut a = spd(5, 13, 1.0);
        assert!(exactly_symmetric(&a));
        a[(4, 1)] = f64::from_bits(a[(4, 1)].to_bits() + 1);
        assert!(!exactly_symmetric(&a));
        a[(4, 1)] = a[(1, 4)];
        a[(2, 3)] = f64::NAN;
        a[(3, 2)] = f64::NAN;
        assert!(!exactly_symmetric(&a));
        assert!(exactly_symmetric(&DMatrix::zeros(0, 0)));
    }

    #[test]
    fn singular_and_bad_input_are_errors() {
        let n = 6;
        // Rank-deficient Gram matrix (positive semidefinite, exactly symmetric).
        let c = entries(n, n - 2, 11);
        let g = &c * c.transpose();
        let g = (&g + g.transpose()) * 0.5;
        assert_eq!(Factorization::factor(&g).unwrap_err(), FoldError::Singular);
        assert_eq!(
            Factorization::factor(&DMatrix::zeros(n, n)).unwrap_err(),
            FoldError::Singular
        );
        // Positive definite in exact arithmetic but condition ~1e18: no trusted digit.
        let mut near = DMatrix::from_element(2, 2, 1.0);
        near[(1, 1)] = 1.0 + 4.0 * f64::EPSILON;
        assert_eq!(
            Factorization::factor(&near).unwrap_err(),
            FoldError::Singular
        );
        let mut nan = spd(3, 12, 1.0);
        nan[(1, 1)] = f64::NAN;
        assert!(matches!(
            Factorization::factor(&nan),
            Err(FoldError::NonFinite { .. })
        ));
        assert!(matches!(
            Factorization::factor(&DMatrix::zeros(2, 3)),
            Err(FoldError::DimensionMismatch { .. })
        ));
        assert_eq!(
            Factorization::factor(&DMatrix::zeros(0, 0)).unwrap().dim(),
            0
        );
    }
}
