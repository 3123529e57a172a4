//! Rules whose `I − Φ` is singular at every fixed point (issue 14, item 4): Sinkhorn's
//! scale invariance and an update that conserves `Σx`. With a loss that respects the
//! invariance the folded gradient must equal central finite differences of the whole
//! forward solve.

use fold_runtime::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One Sinkhorn sweep on the column scaling `v` of the plan `diag(u) K diag(v)`:
/// `u = a ⊘ (K v)`, `v ← b ⊘ (Kᵀ u)`. `U(cv) = c U(v)`, so `Φ v* = v*` at every fixed point.
#[fold(state = v, params(k))]
fn sinkhorn(
    v: &DVector<f64>,
    k: &DMatrix<f64>,
    a: &DVector<f64>,
    b: &DVector<f64>,
) -> DVector<f64> {
    let u = a.component_div(&(k * v));
    b.component_div(&(k.transpose() * u))
}

/// A gradient step whose increment has zero mean: `Σx` is conserved, so `1ᵀ(I − Φ) = 0`.
#[fold(state = x, params(c))]
fn mean_free_step(
    x: &DVector<f64>,
    c: &DVector<f64>,
    q: &DMatrix<f64>,
    alpha: f64,
    n: f64,
) -> DVector<f64> {
    let g = q * x + c;
    let gbar = g.sum() / n;
    x - g.add_scalar(-gbar) * alpha
}

fn fwd() -> ForwardOptions {
    ForwardOptions {
        tol: 1e-15,
        max_iter: 200_000,
        anderson: None,
    }
}

/// The scale-invariant loss `L(v) = hᵀv / 1ᵀv` and its gradient, written out.
fn loss(h: &DVector<f64>, v: &DVector<f64>) -> f64 {
    h.dot(v) / v.sum()
}

fn loss_grad(h: &DVector<f64>, v: &DVector<f64>) -> DVector<f64> {
    let s = v.sum();
    let hv = h.dot(v);
    DVector::from_fn(v.len(), |j, _| h[j] / s - hv / (s * s))
}

#[test]
fn sinkhorn_with_a_scale_invariant_loss_matches_finite_differences() {
    let mut r = StdRng::seed_from_u64(14);
    let (m, n) = (4usize, 5usize);
    let cost: DMatrix<f64> = DMatrix::from_fn(m, n, |_, _| r.random_range(0.0..1.0));
    let k = cost.map(|c: f64| (-c / 0.7).exp());
    let a = DVector::from_element(m, 1.0 / m as f64);
    let mut b = DVector::from_fn(n, |_, _| r.random_range(0.5..1.5));
    b /= b.sum();
    let h = DVector::from_fn(n, |_, _| r.random_range(-1.0..1.0));
    let v0 = DVector::from_element(n, 1.0);

    let solve = |k: &DMatrix<f64>| sinkhorn::solve(&v0, k, &a, &b, &fwd()).unwrap().x;
    let v = solve(&k);
    let g = loss_grad(&h, &v);
    assert!(g.dot(&v).abs() < 1e-14, "the loss is scale invariant");

    for method in [
        Method::Auto,
        Method::Direct,
        Method::Gmres { restart: 30 },
        Method::BiCgStab,
    ] {
        let o = BackwardOptions {
            method,
            tol: 1e-9,
            max_iter: 1000,
        };
        let (grads, stats) = sinkhorn::backward_with_stats(&v, &k, &a, &b, &g, &o)
            .unwrap_or_else(|e| panic!("{method:?}: {e}"));
        if matches!(method, Method::Auto | Method::Direct) {
            // LU finds I − Φ singular (Φ v* = v*); the minimum-norm solve answers.
            assert_eq!(stats.null_space_dim, Some(1), "{method:?}: {stats:?}");
        }
        // Central differences of the whole forward solve, entry by entry.
        let step = 1e-6;
        let mut worst = 0.0f64;
        for j in 0..n {
            for i in 0..m {
                let mut kp = k.clone();
                kp[(i, j)] += step;
                let mut km = k.clone();
                km[(i, j)] -= step;
                let fd = (loss(&h, &solve(&kp)) - loss(&h, &solve(&km))) / (2.0 * step);
                worst = worst.max((grads.k[(i, j)] - fd).abs());
            }
        }
        let scale = grads.k.amax();
        assert!(
            worst <= 1e-6 * scale.max(1e-3),
            "{method:?}: max |folded − FD| = {worst:.2e} (scale {scale:.2e}), {stats:?}"
        );
    }
}

#[test]
fn sum_conserving_update_solves_the_consistent_singular_system() {
    let mut r = StdRng::seed_from_u64(3);
    let n = 6;
    let b = DMatrix::from_fn(n, n, |_, _| r.random_range(-1.0..1.0));
    let q = &b * b.transpose() + DMatrix::identity(n, n);
    let c = DVector::from_fn(n, |_, _| r.random_range(-1.0..1.0));
    let alpha = 0.1;
    let x0 = DVector::from_fn(n, |i, _| i as f64 * 0.1);
    // The fixed points are x = Q⁻¹(t1 − c): a line along d = Q⁻¹1. The loss hᵀx with
    // h ⊥ d does not see where on it the solve lands.
    let d = q
        .clone()
        .lu()
        .solve(&DVector::from_element(n, 1.0))
        .unwrap();
    let mut h = DVector::from_fn(n, |_, _| r.random_range(-1.0..1.0));
    h -= &d * (h.dot(&d) / d.dot(&d));

    let solve = |c: &DVector<f64>| {
        mean_free_step::solve(&x0, c, &q, alpha, n as f64, &fwd())
            .unwrap()
            .x
    };
    let x = solve(&c);
    for method in [Method::Auto, Method::Direct, Method::Gmres { restart: 10 }] {
        let o = BackwardOptions {
            method,
            tol: 1e-10,
            max_iter: 1000,
        };
        let (grads, stats) =
            mean_free_step::backward_with_stats(&x, &c, &q, alpha, n as f64, &h, &o)
                .unwrap_or_else(|e| panic!("{method:?}: {e}"));
        if method != (Method::Gmres { restart: 10 }) {
            assert_eq!(stats.null_space_dim, Some(1), "{method:?}: {stats:?}");
        }
        let step = 1e-6;
        for j in 0..n {
            let mut cp = c.clone();
            cp[j] += step;
            let mut cm = c.clone();
            cm[j] -= step;
            let fd = (h.dot(&solve(&cp)) - h.dot(&solve(&cm))) / (2.0 * step);
            assert!(
                (grads.c[j] - fd).abs() < 1e-7,
                "{method:?} j={j}: folded {} vs FD {fd}",
                grads.c[j]
            );
        }
    }
    // A loss that sees the null direction makes the system inconsistent: an error.
    let e = mean_free_step::backward(
        &x,
        &c,
        &q,
        alpha,
        n as f64,
        &(&h + &d),
        &BackwardOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(e, FoldError::Singular | FoldError::NotConverged { .. }),
        "{e}"
    );
}
