//! Sparse constants in `#[fold]` rules: `CsrMatrix<f64>` arguments used as `d * x` and
//! `d.transpose() * y` (generated code calls `kernels::sparse_mv` / `sparse_mtv`).
//!
//! Each rule is written twice, with a sparse and with a dense matrix: both must give the
//! same `backward` (to 1e-12), the same Jacobians and forward-mode products, and both must
//! match central finite differences of the forward solve.

// Some rules' forward steps are only called through their generated modules.
#![allow(dead_code)]

mod common;

use common::*;
use fold_runtime::nalgebra_sparse::{CooMatrix, CsrMatrix};
use fold_runtime::prelude::*;

// ---------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------

/// Dual proximal-gradient step of 1-D total-variation denoising (sparse first differences).
/// The rule ends in a clamp whose bounds are the parameter: reduced backward, head terms.
#[fold(state = y, params(lambda))]
fn tv_sparse(
    y: &DVector<f64>,
    lambda: f64,
    b: &DVector<f64>,
    d: &CsrMatrix<f64>,
    alpha: f64,
) -> DVector<f64> {
    let x = b - d.transpose() * y;
    clamp(&(y + d * x * alpha), -lambda, lambda)
}

/// [`tv_sparse`] with a dense `d`.
#[fold(state = y, params(lambda))]
fn tv_dense(
    y: &DVector<f64>,
    lambda: f64,
    b: &DVector<f64>,
    d: &DMatrix<f64>,
    alpha: f64,
) -> DVector<f64> {
    let x = b - d.transpose() * y;
    clamp(&(y + d * x * alpha), -lambda, lambda)
}

/// The same step with the observation `b` also a parameter (a vector parameter that enters
/// through a sparse product).
#[fold(state = y, params(lambda, b))]
fn tv_b_sparse(
    y: &DVector<f64>,
    lambda: f64,
    b: &DVector<f64>,
    d: &CsrMatrix<f64>,
    alpha: f64,
) -> DVector<f64> {
    let x = b - d.transpose() * y;
    clamp(&(y + d * x * alpha), -lambda, lambda)
}

/// [`tv_b_sparse`] with a dense `d`.
#[fold(state = y, params(lambda, b))]
fn tv_b_dense(
    y: &DVector<f64>,
    lambda: f64,
    b: &DVector<f64>,
    d: &DMatrix<f64>,
    alpha: f64,
) -> DVector<f64> {
    let x = b - d.transpose() * y;
    clamp(&(y + d * x * alpha), -lambda, lambda)
}

/// Gradient descent on sparse ridge regression ½‖Ax − t‖² + ½λ‖x‖² (no projection: the
/// full, unreduced backward path).
#[fold(state = x, params(lambda, t))]
fn ridge_sparse(
    x: &DVector<f64>,
    lambda: f64,
    t: &DVector<f64>,
    a: &CsrMatrix<f64>,
    eta: f64,
) -> DVector<f64> {
    let r = a * x - t;
    x - (a.transpose() * r + x * lambda) * eta
}

/// [`ridge_sparse`] with a dense `a`.
#[fold(state = x, params(lambda, t))]
fn ridge_dense(
    x: &DVector<f64>,
    lambda: f64,
    t: &DVector<f64>,
    a: &DMatrix<f64>,
    eta: f64,
) -> DVector<f64> {
    let r = a * x - t;
    x - (a.transpose() * r + x * lambda) * eta
}

/// A sparse matrix inside a nonlinearity (not only at the ends of the rule), and two
/// sparse arguments: `z ← tanh(W z + B θ)` with sparse `W` (contractive) and `B`.
#[fold(state = z, params(theta))]
fn deq_sparse(
    z: &DVector<f64>,
    theta: &DVector<f64>,
    w: &CsrMatrix<f64>,
    bm: &CsrMatrix<f64>,
) -> DVector<f64> {
    tanh(&(w * z + bm * theta))
}

/// [`deq_sparse`] with dense matrices.
#[fold(state = z, params(theta))]
fn deq_dense(
    z: &DVector<f64>,
    theta: &DVector<f64>,
    w: &DMatrix<f64>,
    bm: &DMatrix<f64>,
) -> DVector<f64> {
    tanh(&(w * z + bm * theta))
}

// ---------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------

/// The (n−1)×n first-difference operator `(Dx)ᵢ = x_{i+1} − xᵢ`, sparse and dense.
fn differences(n: usize) -> (CsrMatrix<f64>, DMatrix<f64>) {
    let mut coo = CooMatrix::new(n - 1, n);
    let mut dense = DMatrix::zeros(n - 1, n);
    for i in 0..n - 1 {
        coo.push(i, i, -1.0);
        coo.push(i, i + 1, 1.0);
        dense[(i, i)] = -1.0;
        dense[(i, i + 1)] = 1.0;
    }
    (CsrMatrix::from(&coo), dense)
}

/// A random sparse m×n matrix with about `density·m·n` standard-normal entries, scaled.
fn random_sparse(
    r: &mut rand::rngs::StdRng,
    m: usize,
    n: usize,
    density: f64,
    scale: f64,
) -> (CsrMatrix<f64>, DMatrix<f64>) {
    use rand::Rng;
    let mut coo = CooMatrix::new(m, n);
    let mut dense = DMatrix::zeros(m, n);
    for i in 0..m {
        for j in 0..n {
            if r.random::<f64>() < density {
                let v = gauss(r) * scale;
                coo.push(i, j, v);
                dense[(i, j)] = v;
            }
        }
    }
    (CsrMatrix::from(&coo), dense)
}

fn fwd() -> ForwardOptions {
    ForwardOptions {
        tol: 1e-15,
        max_iter: 1_000_000,
        anderson: None,
    }
}

fn opts(method: Method, tol: f64) -> BackwardOptions {
    BackwardOptions {
        method,
        tol,
        max_iter: 10_000,
    }
}

/// A TV-denoising instance with a few jumps, and a λ that leaves some dual coordinates
/// free and some at their bounds (both branches of the clamp are exercised).
struct Tv {
    n: usize,
    b: DVector<f64>,
    lambda: f64,
    alpha: f64,
    ds: CsrMatrix<f64>,
    dd: DMatrix<f64>,
}

fn tv_instance(seed: u64, n: usize) -> Tv {
    let mut r = rng(seed);
    let b = DVector::from_fn(n, |i, _| {
        (if (i / 5) % 2 == 0 { 1.0 } else { -0.5 }) + 0.3 * gauss(&mut r)
    });
    let (ds, dd) = differences(n);
    Tv {
        n,
        b,
        lambda: 0.4,
        alpha: 0.25,
        ds,
        dd,
    }
}

fn tv_solve(t: &Tv, lambda: f64) -> DVector<f64> {
    tv_sparse::solve(
        &DVector::zeros(t.n - 1),
        lambda,
        &t.b,
        &t.ds,
        t.alpha,
        &fwd(),
    )
    .unwrap()
    .x
}

fn scalar_close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1e-300)
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn tv_sparse_and_dense_forward_agree() {
    let t = tv_instance(1, 30);
    let y0 = DVector::zeros(t.n - 1);
    let ys = tv_sparse::solve(&y0, t.lambda, &t.b, &t.ds, t.alpha, &fwd()).unwrap();
    let yd = tv_dense::solve(&y0, t.lambda, &t.b, &t.dd, t.alpha, &fwd()).unwrap();
    assert_eq!(ys.iterations, yd.iterations);
    assert!(rel_err(&ys.x, &yd.x) < 1e-13, "{}", rel_err(&ys.x, &yd.x));
    // One step of each, at the same point, is the same vector.
    let step_s = tv_sparse(&ys.x, t.lambda, &t.b, &t.ds, t.alpha);
    let step_d = tv_dense(&ys.x, t.lambda, &t.b, &t.dd, t.alpha);
    assert!((&step_s - &step_d).amax() < 1e-15);
}

#[test]
fn tv_sparse_backward_equals_dense_backward() {
    for seed in 0..4 {
        let t = tv_instance(seed, 25 + 5 * seed as usize);
        let y = tv_solve(&t, t.lambda);
        let free = y.iter().filter(|v| v.abs() < t.lambda - 1e-9).count();
        assert!(
            free > 0 && free < t.n - 1,
            "seed {seed}: both branches of the clamp should occur ({free} free)"
        );
        let g = normal_vec(&mut rng(100 + seed), t.n - 1);
        for method in [
            Method::Auto,
            Method::Direct,
            Method::Gmres { restart: 40 },
            Method::BiCgStab,
        ] {
            let o = opts(method, 1e-14);
            let (gs, ss) =
                tv_sparse::backward_with_stats(&y, t.lambda, &t.b, &t.ds, t.alpha, &g, &o).unwrap();
            let (gd, _) =
                tv_dense::backward_with_stats(&y, t.lambda, &t.b, &t.dd, t.alpha, &g, &o).unwrap();
            assert!(
                scalar_close(gs.lambda, gd.lambda, 1e-12),
                "seed {seed}, {method:?}: sparse {} vs dense {}",
                gs.lambda,
                gd.lambda
            );
            if method == Method::Auto {
                // The reduced path: the system is solved on the free set only.
                assert_eq!(ss.system_dim, free, "seed {seed}");
            }
        }
    }
}

#[test]
fn tv_sparse_backward_matches_finite_differences() {
    for seed in 0..3 {
        let t = tv_instance(10 + seed, 30);
        let y = tv_solve(&t, t.lambda);
        // Loss on the primal x = b − Dᵀy: L = hᵀx, so dL/dy = −D h.
        let h = normal_vec(&mut rng(200 + seed), t.n);
        let g = -(&t.dd * &h);
        let loss = |lambda: f64| h.dot(&(&t.b - t.ds.transpose() * tv_solve(&t, lambda)));
        let eps = 1e-6;
        let fd = (loss(t.lambda + eps) - loss(t.lambda - eps)) / (2.0 * eps);
        for method in [Method::Auto, Method::Direct, Method::Lfpi] {
            let o = opts(method, 1e-12);
            let gs = tv_sparse::backward(&y, t.lambda, &t.b, &t.ds, t.alpha, &g, &o)
                .unwrap()
                .lambda;
            let gd = tv_dense::backward(&y, t.lambda, &t.b, &t.dd, t.alpha, &g, &o)
                .unwrap()
                .lambda;
            assert!(
                scalar_close(gs, fd, 1e-6),
                "seed {seed} {method:?}: {gs} vs FD {fd}"
            );
            assert!(
                scalar_close(gd, fd, 1e-6),
                "seed {seed} {method:?}: {gd} vs FD {fd}"
            );
        }
    }
}

#[test]
fn tv_vector_parameter_through_a_sparse_product() {
    let t = tv_instance(3, 24);
    let y = tv_solve(&t, t.lambda);
    let g = normal_vec(&mut rng(7), t.n - 1);
    let o = opts(Method::Auto, 1e-14);
    let gs = tv_b_sparse::backward(&y, t.lambda, &t.b, &t.ds, t.alpha, &g, &o).unwrap();
    let gd = tv_b_dense::backward(&y, t.lambda, &t.b, &t.dd, t.alpha, &g, &o).unwrap();
    assert!(scalar_close(gs.lambda, gd.lambda, 1e-12));
    assert!(rel_err(&gs.b, &gd.b) < 1e-12, "{}", rel_err(&gs.b, &gd.b));
    // Finite differences of gᵀy*(b) in every coordinate of b.
    let loss = |b: &DVector<f64>| {
        let y = tv_b_sparse::solve(
            &DVector::zeros(t.n - 1),
            t.lambda,
            b,
            &t.ds,
            t.alpha,
            &fwd(),
        )
        .unwrap()
        .x;
        g.dot(&y)
    };
    let fd = fd_grad(loss, &t.b, 1e-6);
    assert!(rel_err(&gs.b, &fd) < 1e-6, "{}", rel_err(&gs.b, &fd));
}

#[test]
fn tv_jacobians_and_forward_mode_agree() {
    let t = tv_instance(5, 20);
    let y = tv_solve(&t, t.lambda);
    let js = tv_sparse::jacobians(&y, t.lambda, &t.b, &t.ds, t.alpha);
    let jd = tv_dense::jacobians(&y, t.lambda, &t.b, &t.dd, t.alpha);
    assert!((&js.state - &jd.state).amax() < 1e-14);
    assert!((&js.lambda - &jd.lambda).amax() < 1e-14);
    // Forward mode: dy*/dλ from (I − Φ) t = Ψ.
    let ls = tv_sparse::linearize(&y, t.lambda, &t.b, &t.ds, t.alpha);
    let ld = tv_dense::linearize(&y, t.lambda, &t.b, &t.dd, t.alpha);
    let o = opts(Method::Direct, 1e-13);
    let (ts, _) = fold_runtime::folded_jvp(&ls, &tv_sparse::Grads { lambda: 1.0 }, &o).unwrap();
    let (td, _) = fold_runtime::folded_jvp(&ld, &tv_dense::Grads { lambda: 1.0 }, &o).unwrap();
    assert!(rel_err(&ts, &td) < 1e-12);
    let eps = 1e-6;
    let fd = (tv_solve(&t, t.lambda + eps) - tv_solve(&t, t.lambda - eps)) / (2.0 * eps);
    assert!(rel_err(&ts, &fd) < 1e-6, "{}", rel_err(&ts, &fd));
}

#[test]
fn ridge_sparse_equals_dense_and_closed_form() {
    let mut r = rng(21);
    let (m, n) = (40, 15);
    let (asp, ad) = random_sparse(&mut r, m, n, 0.2, 1.0);
    let t = normal_vec(&mut r, m);
    let g = normal_vec(&mut r, n);
    let lambda = 0.3;
    let h = ad.transpose() * &ad + DMatrix::identity(n, n) * lambda;
    let eta = 1.0 / lambda_max(&h);
    let x0 = DVector::zeros(n);
    let x = ridge_sparse::solve(&x0, lambda, &t, &asp, eta, &fwd())
        .unwrap()
        .x;
    let xstar = dense_solve(&h, &(ad.transpose() * &t));
    assert!(rel_err(&x, &xstar) < 1e-10);
    // x* = H⁻¹Aᵀt: dL/dt = A H⁻¹ g, dL/dλ = −x*ᵀ H⁻¹ g.
    let hg = dense_solve(&h, &g);
    let (dt, dl) = (&ad * &hg, -xstar.dot(&hg));
    for method in [
        Method::Auto,
        Method::Direct,
        Method::Gmres { restart: 20 },
        Method::BiCgStab,
    ] {
        let o = opts(method, 1e-14);
        let gs = ridge_sparse::backward(&x, lambda, &t, &asp, eta, &g, &o).unwrap();
        let gd = ridge_dense::backward(&x, lambda, &t, &ad, eta, &g, &o).unwrap();
        assert!(rel_err(&gs.t, &gd.t) < 1e-12, "{method:?}");
        assert!(scalar_close(gs.lambda, gd.lambda, 1e-12), "{method:?}");
        assert!(rel_err(&gs.t, &dt) < 1e-9, "{method:?}");
        assert!(scalar_close(gs.lambda, dl, 1e-9), "{method:?}");
    }
    let fd = fd_grad(
        |t: &DVector<f64>| {
            g.dot(
                &ridge_sparse::solve(&x0, lambda, t, &asp, eta, &fwd())
                    .unwrap()
                    .x,
            )
        },
        &t,
        1e-6,
    );
    let gs =
        ridge_sparse::backward(&x, lambda, &t, &asp, eta, &g, &opts(Method::Auto, 1e-12)).unwrap();
    assert!(rel_err(&gs.t, &fd) < 1e-6, "{}", rel_err(&gs.t, &fd));
}

#[test]
fn deq_sparse_equals_dense_and_finite_differences() {
    let mut r = rng(33);
    let (n, p) = (30, 8);
    let (ws, wd) = random_sparse(&mut r, n, n, 0.15, 0.25);
    let (bs, bd) = random_sparse(&mut r, n, p, 0.3, 1.0);
    let theta = normal_vec(&mut r, p);
    let g = normal_vec(&mut r, n);
    let z0 = DVector::zeros(n);
    let z = deq_sparse::solve(&z0, &theta, &ws, &bs, &fwd()).unwrap().x;
    let zd = deq_dense::solve(&z0, &theta, &wd, &bd, &fwd()).unwrap().x;
    assert!(rel_err(&z, &zd) < 1e-13);
    for method in [Method::Auto, Method::Direct, Method::Gmres { restart: 30 }] {
        let o = opts(method, 1e-14);
        let gs = deq_sparse::backward(&z, &theta, &ws, &bs, &g, &o).unwrap();
        let gd = deq_dense::backward(&z, &theta, &wd, &bd, &g, &o).unwrap();
        assert!(
            rel_err(&gs.theta, &gd.theta) < 1e-12,
            "{method:?}: {}",
            rel_err(&gs.theta, &gd.theta)
        );
    }
    let fd = fd_grad(
        |th: &DVector<f64>| g.dot(&deq_sparse::solve(&z0, th, &ws, &bs, &fwd()).unwrap().x),
        &theta,
        1e-6,
    );
    let gs = deq_sparse::backward(&z, &theta, &ws, &bs, &g, &opts(Method::Auto, 1e-12)).unwrap();
    assert!(
        rel_err(&gs.theta, &fd) < 1e-6,
        "{}",
        rel_err(&gs.theta, &fd)
    );
}

#[test]
fn unrolled_through_a_sparse_rule_matches_dense() {
    let t = tv_instance(8, 20);
    let step_s = |y: &DVector<f64>| Ok(tv_sparse(y, t.lambda, &t.b, &t.ds, t.alpha));
    let ys = fold_runtime::iterates(step_s, DVector::zeros(t.n - 1), 50).unwrap();
    let g = normal_vec(&mut rng(4), t.n - 1);
    let us = unrolled_backward(
        &ys,
        |y| Ok(tv_sparse::linearize(y, t.lambda, &t.b, &t.ds, t.alpha)),
        &g,
    )
    .unwrap();
    let ud = unrolled_backward(
        &ys,
        |y| Ok(tv_dense::linearize(y, t.lambda, &t.b, &t.dd, t.alpha)),
        &g,
    )
    .unwrap();
    assert!(scalar_close(us.lambda, ud.lambda, 1e-12));
}

#[test]
fn non_finite_and_mismatched_sparse_arguments_are_errors() {
    let t = tv_instance(2, 12);
    let y = tv_solve(&t, t.lambda);
    let g = DVector::from_element(t.n - 1, 1.0);
    let o = BackwardOptions::default();
    let mut bad = t.ds.clone();
    bad.values_mut()[3] = f64::NAN;
    match tv_sparse::backward(&y, t.lambda, &t.b, &bad, t.alpha, &g, &o) {
        Err(FoldError::NonFinite { what }) => assert_eq!(what, "d"),
        other => panic!("expected NonFinite(d), got {other:?}"),
    }
    match tv_sparse::solve(&y, t.lambda, &t.b, &bad, t.alpha, &fwd()) {
        Err(FoldError::NonFinite { what }) => assert_eq!(what, "d"),
        other => panic!("expected NonFinite(d), got {other:?}"),
    }
    // An infinity too, though the backward finds it in its first product with `d`.
    bad.values_mut()[3] = f64::INFINITY;
    match tv_sparse::backward(&y, t.lambda, &t.b, &bad, t.alpha, &g, &o) {
        Err(FoldError::NonFinite { what }) => assert_eq!(what, "d"),
        other => panic!("expected NonFinite(d), got {other:?}"),
    }
    // A difference operator of the wrong size: an error, not a panic.
    let (small, _) = differences(t.n - 1);
    assert!(matches!(
        tv_sparse::backward(&y, t.lambda, &t.b, &small, t.alpha, &g, &o),
        Err(FoldError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        tv_sparse::solve(&y, t.lambda, &t.b, &small, t.alpha, &fwd()),
        Err(FoldError::DimensionMismatch { .. })
    ));
}

/// `Method::Direct` on the full system `I − Φᵀ` of a masked rule, sparse and dense.
///
/// `I − Φᵀ` with `Φ = diag(m) M` is not symmetric unless the mask is all ones, but here
/// rows 0, n/2 and n − 1 happen to be: a symmetry test that probes only a few rows would
/// pick Cholesky, and an explicit `Method::Direct` has no fallback.
#[test]
fn explicit_direct_on_a_masked_rule_that_looks_symmetric() {
    let t = tv_instance(1, 30);
    let y = tv_solve(&t, t.lambda);
    let n = t.n - 1;
    let phi = tv_dense::jacobians(&y, t.lambda, &t.b, &t.dd, t.alpha).state;
    let a = DMatrix::identity(n, n) - phi.transpose();
    assert!(!fold_runtime::__private::is_symmetric(&a, 1e-14));
    let g = normal_vec(&mut rng(101), n);
    let reference = tv_dense::backward(
        &y,
        t.lambda,
        &t.b,
        &t.dd,
        t.alpha,
        &g,
        &opts(Method::Gmres { restart: 40 }, 1e-14),
    )
    .unwrap()
    .lambda;
    let o = opts(Method::Direct, 1e-12);
    let gs = tv_sparse::backward(&y, t.lambda, &t.b, &t.ds, t.alpha, &g, &o);
    let gd = tv_dense::backward(&y, t.lambda, &t.b, &t.dd, t.alpha, &g, &o);
    assert!(scalar_close(gs.unwrap().lambda, reference, 1e-10));
    assert!(scalar_close(gd.unwrap().lambda, reference, 1e-10));
}
