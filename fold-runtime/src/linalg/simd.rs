//! Matrix–vector products of small and mid-sized matrices, vectorized for the machine that
//! runs them (AVX2 with FMA where present) through pulp's runtime dispatch, as faer's own
//! kernels are.
//!
//! Written here because at these sizes neither library's product is what the hardware
//! allows: nalgebra's loops are compiled for the baseline target (two lanes, no FMA) and
//! faer's blocked product pays packing and dispatch that a 50 × 50 product does not
//! repay (`A x` at n = 29: 160 ns faer, 95 ns here; n = 50: 322 vs 212 ns).

use pulp::{Arch, Simd, WithSimd};

/// Up to this many entries [`gemv`] and [`gemv_t`] are used; above, faer's product,
/// which blocks for the caches (these kernels stream whole columns).
pub(super) const SIMD_GEMV_MAX: usize = 256 * 256;

/// `y ← α A x + β y` for the column-major `a` of `y.len()` rows and `x.len()` columns;
/// `β = 0` does not read `y`.
pub(super) fn gemv(y: &mut [f64], alpha: f64, a: &[f64], x: &[f64], beta: f64) {
    debug_assert_eq!(a.len(), y.len() * x.len());
    Arch::new().dispatch(Product {
        y,
        alpha,
        a,
        x,
        beta,
    });
}

/// `y ← α Aᵀ x + β y` for the column-major `a` of `x.len()` rows and `y.len()` columns;
/// `β = 0` does not read `y`.
pub(super) fn gemv_t(y: &mut [f64], alpha: f64, a: &[f64], x: &[f64], beta: f64) {
    debug_assert_eq!(a.len(), y.len() * x.len());
    Arch::new().dispatch(TransposedProduct {
        y,
        alpha,
        a,
        x,
        beta,
    });
}

/// `α s + β y` (`y` not read when `β = 0`).
#[inline(always)]
fn combine(alpha: f64, s: f64, beta: f64, y: f64) -> f64 {
    if beta == 0.0 {
        alpha * s
    } else {
        alpha * s + beta * y
    }
}

struct Product<'a> {
    y: &'a mut [f64],
    alpha: f64,
    a: &'a [f64],
    x: &'a [f64],
    beta: f64,
}

impl WithSimd for Product<'_> {
    type Output = ();

    /// Rows in blocks of four vectors held in registers across all columns (one load of
    /// `A` per entry, no load or store of `y` in the loop), then single vectors, then
    /// scalars.
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Product {
            y,
            alpha,
            a,
            x,
            beta,
        } = self;
        let m = y.len();
        let lanes = S::F64_LANES;
        let zero = simd.splat_f64s(0.0);
        let mut i0 = 0;
        let store = |acc: &[S::f64s], i0: usize, y: &mut [f64]| {
            let (out, _) = S::as_mut_simd_f64s(&mut y[i0..i0 + acc.len() * lanes]);
            for (o, &s) in out.iter_mut().zip(acc) {
                let s = simd.mul_f64s(simd.splat_f64s(alpha), s);
                *o = if beta == 0.0 {
                    s
                } else {
                    simd.mul_add_e_f64s(simd.splat_f64s(beta), *o, s)
                };
            }
        };
        while i0 + 4 * lanes <= m {
            let mut acc = [zero; 4];
            for (j, &xj) in x.iter().enumerate() {
                let (v, _) = S::as_simd_f64s(&a[j * m + i0..j * m + i0 + 4 * lanes]);
                let xv = simd.splat_f64s(xj);
                for (s, &vk) in acc.iter_mut().zip(v) {
                    *s = simd.mul_add_e_f64s(vk, xv, *s);
                }
            }
            store(&acc, i0, y);
            i0 += 4 * lanes;
        }
        while i0 + lanes <= m {
            let mut acc = zero;
            for (j, &xj) in x.iter().enumerate() {
                let (v, _) = S::as_simd_f64s(&a[j * m + i0..j * m + i0 + lanes]);
                acc = simd.mul_add_e_f64s(v[0], simd.splat_f64s(xj), acc);
            }
            store(&[acc], i0, y);
            i0 += lanes;
        }
        for (i, yi) in y.iter_mut().enumerate().skip(i0) {
            let s: f64 = x.iter().enumerate().map(|(j, &xj)| a[j * m + i] * xj).sum();
            *yi = combine(alpha, s, beta, *yi);
        }
    }
}

struct TransposedProduct<'a> {
    y: &'a mut [f64],
    alpha: f64,
    a: &'a [f64],
    x: &'a [f64],
    beta: f64,
}

impl WithSimd for TransposedProduct<'_> {
    type Output = ();

    /// `yⱼ = colⱼ · x`, four columns at a time, each with a vector accumulator over the
    /// rows (independent chains), reduced at the end.
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let TransposedProduct {
            y,
            alpha,
            a,
            x,
            beta,
        } = self;
        let m = x.len();
        let (xv, xt) = S::as_simd_f64s(x);
        let zero = simd.splat_f64s(0.0);
        let dot = |col: &[f64]| -> (S::f64s, f64) {
            let (cv, ct) = S::as_simd_f64s(col);
            let mut acc = zero;
            for (&c, &v) in cv.iter().zip(xv) {
                acc = simd.mul_add_e_f64s(c, v, acc);
            }
            (acc, ct.iter().zip(xt).map(|(c, v)| c * v).sum())
        };
        let mut blocks = y.chunks_exact_mut(4);
        let mut j = 0;
        for block in &mut blocks {
            let cols = [0, 1, 2, 3].map(|c| &a[(j + c) * m..(j + c + 1) * m]);
            let (c0, c1, c2, c3) = (
                S::as_simd_f64s(cols[0]),
                S::as_simd_f64s(cols[1]),
                S::as_simd_f64s(cols[2]),
                S::as_simd_f64s(cols[3]),
            );
            let mut acc = [zero; 4];
            for (k, &v) in xv.iter().enumerate() {
                acc[0] = simd.mul_add_e_f64s(c0.0[k], v, acc[0]);
                acc[1] = simd.mul_add_e_f64s(c1.0[k], v, acc[1]);
                acc[2] = simd.mul_add_e_f64s(c2.0[k], v, acc[2]);
                acc[3] = simd.mul_add_e_f64s(c3.0[k], v, acc[3]);
            }
            let tails = [c0.1, c1.1, c2.1, c3.1];
            for ((yj, s), tail) in block.iter_mut().zip(acc).zip(tails) {
                let t: f64 = tail.iter().zip(xt).map(|(c, v)| c * v).sum();
                *yj = combine(alpha, simd.reduce_sum_f64s(s) + t, beta, *yj);
            }
            j += 4;
        }
        for (r, yj) in blocks.into_remainder().iter_mut().enumerate() {
            let (s, t) = dot(&a[(j + r) * m..(j + r + 1) * m]);
            *yj = combine(alpha, simd.reduce_sum_f64s(s) + t, beta, *yj);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `α op(A) x + β y` by plain loops (`y` ignored when `β = 0`).
    #[allow(clippy::too_many_arguments)]
    fn naive(
        rows: usize,
        cols: usize,
        a: &[f64],
        x: &[f64],
        y: &[f64],
        alpha: f64,
        beta: f64,
        transposed: bool,
    ) -> Vec<f64> {
        let out_len = if transposed { cols } else { rows };
        (0..out_len)
            .map(|o| {
                let s: f64 = if transposed {
                    (0..rows).map(|i| a[o * rows + i] * x[i]).sum()
                } else {
                    (0..cols).map(|j| a[j * rows + o] * x[j]).sum()
                };
                if beta == 0.0 {
                    alpha * s
                } else {
                    alpha * s + beta * y[o]
                }
            })
            .collect()
    }

    #[test]
    fn products_match_plain_loops_on_every_shape_and_ignore_y_when_beta_is_zero() {
        let shapes = [
            (0, 0),
            (0, 3),
            (3, 0),
            (1, 1),
            (3, 5),
            (4, 4),
            (7, 3),
            (16, 16),
            (17, 9),
            (29, 29),
            (33, 50),
            (50, 50),
            (64, 7),
        ];
        for (rows, cols) in shapes {
            let a: Vec<f64> = (0..rows * cols)
                .map(|k| ((k * 37 % 101) as f64 - 50.0) / 17.0)
                .collect();
            for transposed in [false, true] {
                let (xl, yl) = if transposed {
                    (rows, cols)
                } else {
                    (cols, rows)
                };
                let x: Vec<f64> = (0..xl).map(|i| (1.0 + i as f64).sqrt() - 2.0).collect();
                let y0: Vec<f64> = (0..yl).map(|i| 0.5 * i as f64 - 1.0).collect();
                for (alpha, beta) in [(1.0, 0.0), (-0.75, 1.0), (2.0, -0.5)] {
                    let want = naive(rows, cols, &a, &x, &y0, alpha, beta, transposed);
                    // NaN garbage in `y` must not reach the result when β = 0.
                    let mut y = if beta == 0.0 {
                        vec![f64::NAN; yl]
                    } else {
                        y0.clone()
                    };
                    if transposed {
                        gemv_t(&mut y, alpha, &a, &x, beta);
                    } else {
                        gemv(&mut y, alpha, &a, &x, beta);
                    }
                    for (k, (g, w)) in y.iter().zip(&want).enumerate() {
                        let scale = 1.0 + w.abs() + (cols.max(rows) as f64);
                        assert!(
                            (g - w).abs() <= 1e-13 * scale,
                            "{rows}x{cols} transposed={transposed} α={alpha} β={beta} [{k}]: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }
}
