//! Small dense systems factored in a per-thread workspace that is reused across calls:
//! nothing allocated, nothing zeroed, no dispatch into faer. A reduced system of a few
//! dozen unknowns then costs its arithmetic, which is what a hand-written solve pays.
//!
//! Hand-rolled for the reason [`super::cholesky`] gives: at these orders the per-call
//! overhead of the general factorizations (allocation, scratch stacks, equilibration
//! passes) exceeds the factorization itself.

#[allow(unused_imports)]
use super::*;
use std::cell::RefCell;

/// Largest order [`with_small_factor`] takes. Above it the general factorizations'
/// overhead is a small share of their `O(n³)` work.
pub(crate) const SMALL_MAX: usize = 64;

/// A small LU is trusted only at an estimated reciprocal condition this many times
/// above [`Lu`]'s own floor: it skips [`Lu`]'s equilibration, so a margin keeps every
/// borderline (or singular) matrix for [`Lu`] to judge.
const RCOND_MARGIN: f64 = 1e3;

/// Scratch reused by every call on a thread.
#[derive(Default)]
struct Workspace {
    values: Vec<f64>,
    swaps: Vec<usize>,
}

thread_local! {
    static WORKSPACE: RefCell<Workspace> = const {
        RefCell::new(Workspace {
            values: Vec::new(),
            swaps: Vec::new(),
        })
    };
}

/// Factors of a small square matrix, held in the workspace.
pub(crate) struct SmallFactor<'w> {
    /// `L` (Cholesky) or packed `L\U` (LU), column-major.
    f: &'w [f64],
    /// `1 / Lᵢᵢ` for Cholesky; empty for LU.
    inv_diag: &'w [f64],
    /// The row swaps of `P` for LU (see [`lu_solve`]); empty for Cholesky.
    swaps: &'w [usize],
}

impl SmallFactor<'_> {
    /// `x ← A⁻¹ x`.
    pub(crate) fn solve_in_place(&self, x: &mut [f64]) {
        if self.inv_diag.is_empty() {
            lu_solve(self.f, self.swaps, x);
        } else {
            lower_solve(self.f, x, Some(self.inv_diag));
            lower_transpose_solve(self.f, x, Some(self.inv_diag));
        }
    }

    /// `x ← A⁻ᵀ x`.
    pub(crate) fn solve_transpose_in_place(&self, x: &mut [f64]) {
        if self.inv_diag.is_empty() {
            lu_solve_transpose(self.f, self.swaps, x);
        } else {
            // Cholesky factors a symmetric matrix: A⁻ᵀ = A⁻¹.
            self.solve_in_place(x);
        }
    }

    /// Whether the factors are Cholesky's (else LU's).
    #[cfg(test)]
    pub(crate) fn is_cholesky(&self) -> bool {
        !self.inv_diag.is_empty()
    }
}

/// Runs `body` with the factors of the square `a` (order ≤ [`SMALL_MAX`]) and `scratch`
/// values of workspace (contents unspecified): Cholesky of the lower triangle when
/// `symmetric` and every pivot passes [`Cholesky::factor`]'s test, else LU with partial
/// pivoting. `None` when `a` is too large or not square, or when the LU is not clearly
/// nonsingular (a tiny pivot, an estimated condition near [`Lu`]'s floor): the general
/// factorizations then decide. A non-finite `a` may be factored: callers check their
/// residual against `a`, which no non-finite entry passes.
pub(crate) fn with_small_factor<T>(
    a: &DMatrix<f64>,
    symmetric: bool,
    scratch: usize,
    body: impl FnOnce(&SmallFactor<'_>, &mut [f64]) -> T,
) -> Option<T> {
    let n = a.nrows();
    if n == 0 || n > SMALL_MAX || a.ncols() != n {
        return None;
    }
    WORKSPACE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut ws) => factor_in(&mut ws, a, symmetric, scratch, body),
        // Only a `body` that itself factors gets here: it gets its own workspace.
        Err(_) => factor_in(&mut Workspace::default(), a, symmetric, scratch, body),
    })
}

fn factor_in<T>(
    ws: &mut Workspace,
    a: &DMatrix<f64>,
    symmetric: bool,
    scratch: usize,
    body: impl FnOnce(&SmallFactor<'_>, &mut [f64]) -> T,
) -> Option<T> {
    let n = a.nrows();
    let nn = n * n;
    // Factors, 1/Lᵢᵢ or the condition estimate's vector, then the caller's scratch.
    ws.values.resize(nn + n + scratch, 0.0);
    ws.swaps.resize(n, 0);
    let (f, rest) = ws.values.split_at_mut(nn);
    let (aux, scratch) = rest.split_at_mut(n);
    f.copy_from_slice(a.as_slice());
    if symmetric && cholesky_in_place(f, aux, a) {
        let factor = SmallFactor {
            f,
            inv_diag: aux,
            swaps: &[],
        };
        return Some(body(&factor, scratch));
    }
    f.copy_from_slice(a.as_slice());
    let swaps = &mut ws.swaps[..];
    if !lu_in_place(f, n, swaps) {
        return None;
    }
    let (f, swaps) = (&*f, &*swaps);
    // ‖A‖₁ and max|aᵢⱼ| in one pass over `a`.
    let (mut norm1, mut scale) = (0.0f64, 0.0f64);
    for col in a.as_slice().chunks_exact(n) {
        norm1 = norm1.max(col.iter().map(|v| v.abs()).sum());
        scale = scale.max(col.iter().fold(0.0, |m, v| m.max(v.abs())));
    }
    let min_pivot = (0..n).fold(f64::INFINITY, |m, i| m.min(f[i * n + i].abs()));
    // Pivots are finite here (`lu_in_place` rejects the others).
    if min_pivot <= pivot_floor(n, scale) {
        return None;
    }
    let inv = inverse_norm1_estimate(
        &|x| lu_solve(f, swaps, x),
        &|x| lu_solve_transpose(f, swaps, x),
        aux,
    )?;
    let rcond = 1.0 / (norm1 * inv);
    if rcond.is_nan() || rcond < RCOND_MARGIN * rcond_min(n) {
        return None;
    }
    let factor = SmallFactor {
        f,
        inv_diag: &[],
        swaps,
    };
    Some(body(&factor, scratch))
}

/// Cholesky of `f` (a copy of `a`) in place with `1 / Lᵢᵢ` into `inv_diag`; `false` on a
/// pivot that fails [`Cholesky::factor`]'s test `Lᵢᵢ² > n ε aᵢᵢ`.
fn cholesky_in_place(f: &mut [f64], inv_diag: &mut [f64], a: &DMatrix<f64>) -> bool {
    let n = inv_diag.len();
    cholesky::small_cholesky_in_place(f, n, inv_diag)
        && (0..n).all(|i| cholesky::pivot_passes(f[i * n + i], a[(i, i)], n))
}

/// `P A = L U` with partial pivoting of the column-major `n × n` `s` in place (`L` unit
/// lower below the diagonal, `U` on and above it), the swaps of `P` into `swaps`; `false`
/// on a zero or non-finite pivot. Right-looking: each update is a contiguous axpy.
fn lu_in_place(s: &mut [f64], n: usize, swaps: &mut [usize]) -> bool {
    for j in 0..n {
        let col = &s[j * n..(j + 1) * n];
        let p = (j..n).fold(j, |b, i| if col[i].abs() > col[b].abs() { i } else { b });
        swaps[j] = p;
        if p != j {
            for c in s.chunks_exact_mut(n) {
                c.swap(j, p);
            }
        }
        let (done, rest) = s.split_at_mut((j + 1) * n);
        let lj = &mut done[j * n..];
        let pivot = lj[j];
        if !(pivot != 0.0 && pivot.is_finite()) {
            return false;
        }
        let inv = 1.0 / pivot;
        lj[j + 1..].iter_mut().for_each(|v| *v *= inv);
        let lj = &lj[j + 1..];
        for c in rest.chunks_exact_mut(n) {
            let u = c[j];
            if u != 0.0 {
                for (o, &l) in c[j + 1..].iter_mut().zip(lj) {
                    *o -= l * u;
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `‖b − A x‖∞` by nalgebra's product.
    fn residual(a: &DMatrix<f64>, x: &[f64], b: &DVector<f64>) -> f64 {
        (b - a * DVector::from_column_slice(x)).amax()
    }

    fn solve(a: &DMatrix<f64>, symmetric: bool, b: &DVector<f64>) -> Option<(Vec<f64>, bool)> {
        with_small_factor(a, symmetric, 0, |f, _| {
            let mut x = b.as_slice().to_vec();
            f.solve_in_place(&mut x);
            (x, f.is_cholesky())
        })
    }

    #[test]
    fn spd_systems_take_cholesky_and_others_a_pivoted_lu() {
        let n = 9;
        let spd = DMatrix::from_fn(n, n, |i, j| {
            if i == j {
                4.0
            } else {
                1.0 / (1 + i + j) as f64
            }
        });
        let b = DVector::from_fn(n, |i, _| (i as f64).sin() + 0.5);
        let (x, chol) = solve(&spd, true, &b).expect("SPD");
        assert!(chol && residual(&spd, &x, &b) < 1e-13);

        // A zero leading entry needs the row swap; asymmetric; indefinite.
        let mut a = DMatrix::from_fn(n, n, |i, j| (0.37 * (i * j) as f64 + i as f64).cos());
        a[(0, 0)] = 0.0;
        let (x, chol) = solve(&a, false, &b).expect("nonsingular");
        assert!(
            !chol && residual(&a, &x, &b) < 1e-12 * x.iter().fold(1.0f64, |m, v| m.max(v.abs()))
        );
        let indefinite = &spd - DMatrix::identity(n, n) * 4.5;
        let (x, chol) = solve(&indefinite, true, &b).expect("nonsingular");
        assert!(!chol && residual(&indefinite, &x, &b) < 1e-12);
    }

    #[test]
    fn singular_nearly_singular_and_oversized_matrices_are_left_to_the_general_factorizations() {
        let b = DVector::from_element(5, 1.0);
        assert!(solve(&DMatrix::from_element(5, 5, 1.0), false, &b).is_none());
        // Condition ≈ 10¹³: above Lu's floor, but inside the margin.
        let mut near = DMatrix::identity(5, 5);
        near[(4, 4)] = 1e-13;
        assert!(solve(&near, false, &b).is_none());
        let big = DMatrix::identity(SMALL_MAX + 1, SMALL_MAX + 1);
        assert!(solve(&big, true, &DVector::from_element(SMALL_MAX + 1, 1.0)).is_none());
        assert!(solve(&DMatrix::zeros(3, 4), false, &DVector::zeros(3)).is_none());
    }

    #[test]
    fn a_factoring_body_gets_its_own_workspace() {
        let a = DMatrix::from_fn(3, 3, |i, j| if i == j { 2.0 } else { 0.5 });
        let b = DVector::from_element(3, 1.0);
        let nested = with_small_factor(&a, true, 3, |outer, scratch| {
            scratch.copy_from_slice(b.as_slice());
            let inner = solve(&a, false, &b).expect("inner").0;
            outer.solve_in_place(scratch);
            (scratch.to_vec(), inner)
        })
        .expect("outer");
        assert!(residual(&a, &nested.0, &b) < 1e-15 && residual(&a, &nested.1, &b) < 1e-15);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// Random orders up to the limit, random entries plus a diagonal shift (from
        /// indefinite to dominant), symmetric or not: whatever is factored solves the
        /// system as nalgebra's LU does.
        #[test]
        fn factored_systems_match_nalgebras_lu(
            n in 1usize..=SMALL_MAX,
            seed in 0u64..1_000_000,
            shift in -2.0f64..8.0,
            symmetric in proptest::bool::ANY,
        ) {
            let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let mut next = || {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            };
            let mut a = DMatrix::from_fn(n, n, |_, _| next());
            if symmetric {
                a = (&a + a.transpose()) * 0.5;
            }
            a += DMatrix::identity(n, n) * shift;
            let b = DVector::from_fn(n, |_, _| next());
            if let Some((x, _)) = solve(&a, symmetric, &b) {
                let reference = a.clone().lu().solve(&b).expect("factored means nonsingular");
                let err = (DVector::from_column_slice(&x) - &reference).amax();
                let scale = reference.amax().max(1.0);
                // Both are backward stable; a condition estimate ≥ 10³ × 16ε bounds the gap.
                proptest::prop_assert!(err <= 1e-7 * scale, "n = {n}: {err:e}");
            }
        }
    }
}
