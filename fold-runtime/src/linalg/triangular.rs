//! Triangular solves with one right-hand side and the dot product they use.

#[allow(unused_imports)]
use super::*;

// Triangular solves with one right-hand side, written here rather than taken from faer:
// these column loops measured the same as faer's blocked
// triangular kernels (LU + solve totals within noise at n = 10…200) and need no scratch
// stack or permutation buffer. Each walks a contiguous column: an axpy for `T x = b`, a
// dot product for `Tᵀ x = b`.

/// `x ← T⁻¹ x` with `T` the lower triangle of the column-major `n × n` `f`: unit diagonal without `inv_diag`,
/// else `1 / Tⱼⱼ = inv_diag[j]`.
pub(super) fn lower_solve(f: &[f64], x: &mut [f64], inv_diag: Option<&[f64]>) {
    let n = x.len();
    for j in 0..n {
        let c = &f[j * n..(j + 1) * n];
        if let Some(d) = inv_diag {
            x[j] *= d[j];
        }
        let xj = x[j];
        if xj != 0.0 {
            for (xi, &l) in x[j + 1..].iter_mut().zip(&c[j + 1..]) {
                *xi -= l * xj;
            }
        }
    }
}

/// `x ← U⁻¹ x` with `U` the upper triangle of `f`.
pub(super) fn upper_solve(f: &[f64], x: &mut [f64]) {
    let n = x.len();
    for j in (0..n).rev() {
        let c = &f[j * n..(j + 1) * n];
        x[j] /= c[j];
        let xj = x[j];
        if xj != 0.0 {
            for (xi, &u) in x[..j].iter_mut().zip(&c[..j]) {
                *xi -= u * xj;
            }
        }
    }
}

/// `x ← U⁻ᵀ x` with `U` the upper triangle of `f`.
pub(super) fn upper_transpose_solve(f: &[f64], x: &mut [f64]) {
    let n = x.len();
    for j in 0..n {
        let c = &f[j * n..(j + 1) * n];
        x[j] = (x[j] - dot(&c[..j], &x[..j])) / c[j];
    }
}

/// `x ← T⁻ᵀ x`, `T` as in [`lower_solve`].
pub(super) fn lower_transpose_solve(f: &[f64], x: &mut [f64], inv_diag: Option<&[f64]>) {
    let n = x.len();
    for j in (0..n).rev() {
        let c = &f[j * n..(j + 1) * n];
        let v = x[j] - dot(&c[j + 1..], &x[j + 1..]);
        x[j] = match inv_diag {
            Some(d) => v * d[j],
            None => v,
        };
    }
}

/// `a · b` with four independent accumulators, so it vectorizes.
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (p, q) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += p[k] * q[k];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}
