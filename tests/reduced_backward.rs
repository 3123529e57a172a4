//! The reduced backward (`Method::Auto` through a projection's support) against the full
//! system (`Method::Direct`), on random instances of rules ending in masks and simplex
//! projections — with empty and full supports and ties at the bounds — and on every
//! fixed benchmark instance.
//!
//! Kink convention: a coordinate exactly at a bound (`zᵢ = lo`) is inactive (derivative 0),
//! in both paths alike.

mod common;

use common::*;
use fold::benchdata;
use fold_runtime::prelude::*;
use proptest::prelude::*;

fn direct() -> BackwardOptions {
    BackwardOptions {
        method: Method::Direct,
        ..BackwardOptions::default()
    }
}

#[fold(state = x, params(c))]
fn box_step(
    x: &DVector<f64>,
    c: &DVector<f64>,
    q: &DMatrix<f64>,
    alpha: f64,
    lo: f64,
    hi: f64,
) -> DVector<f64> {
    proj_box(&(x - (q * x + c) * alpha), lo, hi)
}

#[fold(state = x, params(c, lo, hi))]
fn box_bounds(
    x: &DVector<f64>,
    c: &DVector<f64>,
    lo: f64,
    hi: f64,
    q: &DMatrix<f64>,
    alpha: f64,
) -> DVector<f64> {
    clamp(&(x - (q * x + c) * alpha), lo, hi)
}

#[fold(state = z, params(b))]
fn relu_layer(z: &DVector<f64>, b: &DVector<f64>, w: &DMatrix<f64>) -> DVector<f64> {
    relu(&(w * z + b))
}

#[fold(state = x, params(b, lam))]
fn ista(
    x: &DVector<f64>,
    b: &DVector<f64>,
    lam: f64,
    a: &DMatrix<f64>,
    alpha: f64,
) -> DVector<f64> {
    soft_threshold(&(x - a.transpose() * (a * x - b) * alpha), lam * alpha)
}

#[fold(state = x, params(mu, r))]
fn simplex_step(
    x: &DVector<f64>,
    mu: &DVector<f64>,
    r: f64,
    sigma: &DMatrix<f64>,
    alpha: f64,
) -> DVector<f64> {
    proj_simplex(&(x - (sigma * x - mu) * alpha), r)
}

#[fold(state = x, params(c, k))]
fn capped_step(
    x: &DVector<f64>,
    c: &DVector<f64>,
    k: f64,
    q: &DMatrix<f64>,
    alpha: f64,
) -> DVector<f64> {
    proj_capped_simplex(&(x - (q * x - c) * alpha), k)
}

#[fold(state = x, params(c, s))]
fn max_step(
    x: &DVector<f64>,
    c: &DVector<f64>,
    s: f64,
    q: &DMatrix<f64>,
    alpha: f64,
) -> DVector<f64> {
    max(&(x - (q * x + c) * alpha), s)
}

fn agree(auto: &DVector<f64>, full: &DVector<f64>, what: &str) {
    let scale = full.norm().max(1.0);
    assert!(
        (auto - full).norm() <= 1e-10 * scale,
        "{what}: reduced {auto} vs full {full}"
    );
}

fn fwd() -> ForwardOptions {
    ForwardOptions {
        tol: 1e-14,
        max_iter: 100_000,
        anderson: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn box_rules_reduce_exactly(seed in 0u64..1_000_000, n in 3usize..25, shift in -3.0f64..3.0) {
        let mut r = rng(seed);
        let q = spd(&mut r, n, 0.2);
        let c = normal_vec(&mut r, n) * 2.0 + DVector::from_element(n, shift);
        let g = normal_vec(&mut r, n);
        let alpha = 1.0 / lambda_max(&q);
        // Shifts move the free set from empty (all at a bound) to full (bounds far away).
        for (lo, hi) in [(0.0, 1.0), (-1e6, 1e6), (5.0, 6.0)] {
            let x = box_step::solve(&DVector::zeros(n), &c, &q, alpha, lo, hi, &fwd()).unwrap().x;
            let (a, stats) = box_step::backward_with_stats(&x, &c, &q, alpha, lo, hi, &g, &BackwardOptions::default()).unwrap();
            let f = box_step::backward(&x, &c, &q, alpha, lo, hi, &g, &direct()).unwrap();
            prop_assert!(stats.system_dim <= n);
            agree(&a.c, &f.c, "box");
        }
        let (lo, hi) = (-0.3, 0.4);
        let x = box_bounds::solve(&DVector::zeros(n), &c, lo, hi, &q, alpha, &fwd()).unwrap().x;
        let a = box_bounds::backward(&x, &c, lo, hi, &q, alpha, &g, &BackwardOptions::default()).unwrap();
        let f = box_bounds::backward(&x, &c, lo, hi, &q, alpha, &g, &direct()).unwrap();
        agree(&a.c, &f.c, "clamp c");
        prop_assert!((a.lo - f.lo).abs() <= 1e-10 * f.lo.abs().max(1.0));
        prop_assert!((a.hi - f.hi).abs() <= 1e-10 * f.hi.abs().max(1.0));
    }

    #[test]
    fn masks_and_thresholds_reduce_exactly(seed in 0u64..1_000_000, n in 3usize..20) {
        let mut r = rng(seed);
        let w = normal_mat(&mut r, n, n) * (0.4 / (n as f64).sqrt());
        let b = normal_vec(&mut r, n);
        let g = normal_vec(&mut r, n);
        let z = relu_layer::solve(&DVector::zeros(n), &b, &w, &fwd()).unwrap().x;
        let a = relu_layer::backward(&z, &b, &w, &g, &BackwardOptions::default()).unwrap();
        let f = relu_layer::backward(&z, &b, &w, &g, &direct()).unwrap();
        agree(&a.b, &f.b, "relu");

        let am = normal_mat(&mut r, n + 5, n);
        let bv = normal_vec(&mut r, n + 5);
        let alpha = 1.0 / lambda_max(&(am.transpose() * &am));
        let x = ista::solve(&DVector::zeros(n), &bv, 0.5, &am, alpha, &fwd()).unwrap().x;
        let a = ista::backward(&x, &bv, 0.5, &am, alpha, &g, &BackwardOptions::default()).unwrap();
        let f = ista::backward(&x, &bv, 0.5, &am, alpha, &g, &direct()).unwrap();
        agree(&a.b, &f.b, "ista b");
        prop_assert!((a.lam - f.lam).abs() <= 1e-10 * f.lam.abs().max(1.0));

        let q = spd(&mut r, n, 0.3);
        let c = normal_vec(&mut r, n);
        let alpha = 1.0 / lambda_max(&q);
        let x = max_step::solve(&DVector::zeros(n), &c, 0.1, &q, alpha, &fwd()).unwrap().x;
        let a = max_step::backward(&x, &c, 0.1, &q, alpha, &g, &BackwardOptions::default()).unwrap();
        let f = max_step::backward(&x, &c, 0.1, &q, alpha, &g, &direct()).unwrap();
        agree(&a.c, &f.c, "max c");
        prop_assert!((a.s - f.s).abs() <= 1e-10 * f.s.abs().max(1.0));
    }

    #[test]
    fn simplex_supports_reduce_exactly(seed in 0u64..1_000_000, n in 2usize..25, spread in 0.1f64..5.0) {
        let mut r = rng(seed);
        let sigma = spd(&mut r, n, 0.05);
        let mu = normal_vec(&mut r, n) * spread;
        let g = normal_vec(&mut r, n);
        let alpha = 1.0 / lambda_max(&sigma);
        let x = simplex_step::solve(&DVector::from_element(n, 1.0 / n as f64), &mu, 1.0, &sigma, alpha, &fwd()).unwrap().x;
        let a = simplex_step::backward(&x, &mu, 1.0, &sigma, alpha, &g, &BackwardOptions::default()).unwrap();
        let f = simplex_step::backward(&x, &mu, 1.0, &sigma, alpha, &g, &direct()).unwrap();
        agree(&a.mu, &f.mu, "simplex mu");
        prop_assert!((a.r - f.r).abs() <= 1e-10 * f.r.abs().max(1.0));

        let k = ((n as f64) / 3.0).max(1.0).floor();
        let q = spd(&mut r, n, 0.5);
        let c = normal_vec(&mut r, n) * spread;
        let alpha = 1.0 / lambda_max(&q);
        let x = capped_step::solve(&DVector::from_element(n, k / n as f64), &c, k, &q, alpha, &fwd()).unwrap().x;
        let a = capped_step::backward(&x, &c, k, &q, alpha, &g, &BackwardOptions::default()).unwrap();
        let f = capped_step::backward(&x, &c, k, &q, alpha, &g, &direct()).unwrap();
        agree(&a.c, &f.c, "capped c");
        prop_assert!((a.k - f.k).abs() <= 1e-10 * f.k.abs().max(1.0));
    }
}

#[test]
fn ties_at_the_bound_are_inactive_in_both_paths() {
    // x chosen so that z = x − α(Qx + c) sits exactly on the bounds for some coordinates.
    let mut r = rng(77);
    let n = 8;
    let q = DMatrix::identity(n, n);
    let alpha = 0.5;
    let x = DVector::from_fn(n, |i, _| [0.0, 1.0, 0.3, 0.7][i % 4]);
    // z = x − α(x + c) = 0.5x − 0.5c; c = x − 2z with z at 0, 1 or strictly inside.
    let z = DVector::from_fn(n, |i, _| [0.0, 1.0, 0.3, 0.7][i % 4]);
    let c = &x - &z * 2.0;
    let g = normal_vec(&mut r, n);
    let a =
        box_step::backward(&x, &c, &q, alpha, 0.0, 1.0, &g, &BackwardOptions::default()).unwrap();
    let f = box_step::backward(&x, &c, &q, alpha, 0.0, 1.0, &g, &direct()).unwrap();
    agree(&a.c, &f.c, "ties");
    for i in 0..n {
        if i % 4 < 2 {
            assert_eq!(
                a.c[i], 0.0,
                "coordinate {i} at a bound must get no gradient"
            );
        }
    }
}

#[test]
fn every_benchmark_instance_reduces_exactly() {
    let root = benchdata::default_root();
    if !root.exists() {
        // The instances live beside the repository (../shared/benchdata), not in it.
        eprintln!(
            "skipped: no benchmark instances at {} (set FOLD_BENCHDATA)",
            root.display()
        );
        return;
    }
    let instances = benchdata::load_all(&root).expect("benchmark instances");
    assert_eq!(instances.len(), 9);
    for inst in instances {
        let x = inst.vector("x_star").unwrap();
        let g = inst.vector("g").unwrap();
        let alpha = inst.scalar("alpha").unwrap();
        let reference = inst.vector("ref_grad").unwrap();
        let (auto, full, stats) = match inst.problem.as_str() {
            "p1_boxqp" => {
                let (q, c) = (inst.matrix("Q").unwrap(), inst.vector("c").unwrap());
                let (a, s) = box_step::backward_with_stats(
                    &x,
                    &c,
                    &q,
                    alpha,
                    0.0,
                    1.0,
                    &g,
                    &BackwardOptions::default(),
                )
                .unwrap();
                let f = box_step::backward(&x, &c, &q, alpha, 0.0, 1.0, &g, &direct()).unwrap();
                (a.c, f.c, s)
            }
            "p2_ncvxqp" => {
                let (q, p) = (inst.matrix("Q").unwrap(), inst.vector("p").unwrap());
                let (a, s) =
                    p2::backward_with_stats(&x, &p, &q, alpha, &g, &BackwardOptions::default())
                        .unwrap();
                let f = p2::backward(&x, &p, &q, alpha, &g, &direct()).unwrap();
                (a.p, f.p, s)
            }
            _ => {
                let (sigma, mu) = (inst.matrix("Sigma").unwrap(), inst.vector("mu").unwrap());
                let (a, s) = simplex_step::backward_with_stats(
                    &x,
                    &mu,
                    1.0,
                    &sigma,
                    alpha,
                    &g,
                    &BackwardOptions::default(),
                )
                .unwrap();
                let f = simplex_step::backward(&x, &mu, 1.0, &sigma, alpha, &g, &direct()).unwrap();
                (a.mu, f.mu, s)
            }
        };
        let what = format!("{} n={}", inst.problem, inst.n);
        assert!(
            stats.system_dim < inst.n,
            "{what}: the reduced path was not taken"
        );
        agree(&auto, &full, &what);
        assert!(
            rel_err(&auto, &reference) < 1e-9,
            "{what}: {}",
            rel_err(&auto, &reference)
        );
    }
}

#[fold(state = x, params(p))]
fn p2(x: &DVector<f64>, p: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
    proj_box(&(x - (q * x + p.component_mul(&cos(x))) * alpha), -1.0, 1.0)
}

/// A term only the full system's products read (`sin x` of `p2`) is computed on first
/// use: the products of one linearization agree with a fresh one's, bit for bit, whether
/// the reduced backward ran first or not, and match the closed form
/// `Φᵀv = w − α (Q − diag(p ⊙ sin x)) w`, `w = m ⊙ v`.
#[test]
fn terms_computed_on_first_use_give_the_products_of_a_fresh_linearization() {
    let n = 12;
    let mut r = rng(77);
    let q = spd(&mut r, n, 0.3);
    let p = normal_vec(&mut r, n) * 2.0;
    let g = normal_vec(&mut r, n);
    let v = normal_vec(&mut r, n);
    let alpha = 1.0 / lambda_max(&q);
    let x = p2::solve(&DVector::zeros(n), &p, &q, alpha, &fwd())
        .unwrap()
        .x;
    let used = p2::linearize(&x, &p, &q, alpha);
    let (auto, _) = folded_backward(&used, &g, &BackwardOptions::default()).unwrap();
    let after = used.vjp_state(&v);
    let fresh = p2::linearize(&x, &p, &q, alpha);
    assert_eq!(after, fresh.vjp_state(&v));
    let (full, _) = folded_backward(&fresh, &g, &direct()).unwrap();
    agree(&auto.p, &full.p, "p2 on one linearization");

    let z = &x - (&q * &x + p.component_mul(&x.map(f64::cos))) * alpha;
    let w = DVector::from_fn(n, |i, _| if z[i].abs() < 1.0 { v[i] } else { 0.0 });
    let hessian = &q - DMatrix::from_diagonal(&p.component_mul(&x.map(f64::sin)));
    let closed = &w - hessian * &w * alpha;
    assert!((after - closed).amax() < 1e-12);
}

/// A reduced-matrix diagonal of several elementwise operations.
#[fold(state = x, params(p))]
fn fused_diag(
    x: &DVector<f64>,
    p: &DVector<f64>,
    c: &DVector<f64>,
    q: &DMatrix<f64>,
    alpha: f64,
) -> DVector<f64> {
    let grad = q * x
        + c
        + p.component_mul(&sin(x))
        + x.map(|e| 0.1 * e.powi(3) + (e * e + 1.0).ln() * 0.05 - e.tanh() / 3.0);
    proj_box(&(x - grad * alpha), -1.0, 1.0)
}

/// The diagonal is computed in one pass over the support (`on_support`): the reduced
/// backward equals the full system's and central differences of the solve.
#[test]
fn a_diagonal_fused_on_the_support_gives_the_full_systems_gradient() {
    assert!(fused_diag::SOURCE.contains("kernels::on_support"));
    let mut partial = false;
    for seed in 0..6 {
        let n = 9 + seed as usize;
        let mut r = rng(900 + seed);
        let q = spd(&mut r, n, 0.5) * 0.2;
        let p = normal_vec(&mut r, n);
        let c = normal_vec(&mut r, n) * 2.0;
        let g = normal_vec(&mut r, n);
        let alpha = 0.5 / (lambda_max(&q) + 2.0);
        let solve = |p: &DVector<f64>| {
            fused_diag::solve(&DVector::zeros(n), p, &c, &q, alpha, &fwd())
                .unwrap()
                .x
        };
        let x = solve(&p);
        let (auto, stats) =
            fused_diag::backward_with_stats(&x, &p, &c, &q, alpha, &g, &BackwardOptions::default())
                .unwrap();
        partial |= stats.system_dim > 0 && stats.system_dim < n;
        let full = fused_diag::backward(&x, &p, &c, &q, alpha, &g, &direct()).unwrap();
        agree(&auto.p, &full.p, "fused diagonal");
        let fd = fd_grad(|p| g.dot(&solve(p)), &p, 1e-6);
        assert!(
            rel_err(&auto.p, &fd) < 1e-6,
            "seed {seed}: {}",
            rel_err(&auto.p, &fd)
        );
    }
    assert!(partial, "no instance had a partly active box");
}
