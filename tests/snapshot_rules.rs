//! The rules snapshotted in `fold-codegen/tests/snapshots.rs`, compiled through the macro
//! and checked: the folded gradient's directional derivative matches central finite
//! differences of the whole forward solve.

mod common;

use common::*;
use fold_runtime::prelude::*;

fn fwd() -> ForwardOptions {
    ForwardOptions {
        tol: 1e-15,
        max_iter: 200_000,
        anderson: None,
    }
}

/// `⟨∇, d⟩` against `(L(θ + hd) − L(θ − hd)) / 2h`.
fn check(name: &str, grad_dot_d: f64, loss: impl Fn(f64) -> f64) {
    let h = 1e-5;
    let fd = (loss(h) - loss(-h)) / (2.0 * h);
    assert!(
        (grad_dot_d - fd).abs() <= 1e-6 * fd.abs().max(1.0),
        "{name}: folded {grad_dot_d} vs finite differences {fd}"
    );
}

#[fold(state = x, params(p))]
fn p2_step(x: &DVector<f64>, p: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
    proj_box(&(x - (q * x + p.component_mul(&cos(x))) * alpha), -1.0, 1.0)
}

#[fold(state = x, params(mu))]
fn p3_step(x: &DVector<f64>, mu: &DVector<f64>, sigma: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
    proj_simplex(&(x - (sigma * x - mu) * alpha), 1.0)
}

#[fold(state = x, params(b, lam))]
fn ista(
    x: &DVector<f64>,
    b: &DVector<f64>,
    lam: f64,
    a: &DMatrix<f64>,
    alpha: f64,
) -> DVector<f64> {
    let grad = a.transpose() * (a * x - b);
    soft_threshold(&(x - grad * alpha), lam * alpha)
}

#[fold(state = (x, y), params(c))]
fn heavy_ball(
    x: &DVector<f64>,
    y: &DVector<f64>,
    c: &DVector<f64>,
    q: &DMatrix<f64>,
    alpha: f64,
    beta: f64,
) -> (DVector<f64>, DVector<f64>) {
    let x_new = y - (q * y + c) * alpha;
    let y_new = &x_new + (&x_new - x) * beta;
    (x_new, y_new)
}

#[fold(state = x, params(w))]
fn smooth(x: &DVector<f64>, w: &DVector<f64>, a: &DMatrix<f64>, eta: f64) -> DVector<f64> {
    let s = (a * x).map(|e| 1.0 / (1.0 + (-e).exp()));
    x - (a.transpose() * (s - w) + x * 0.1) * eta - x * (eta * 0.0)
}

#[test]
fn snapshot_rules_compile_and_differentiate() {
    let mut r = rng(2024);
    let n = 9;
    let d = normal_vec(&mut r, n);
    let g = normal_vec(&mut r, n);

    let q = spd(&mut r, n, 0.3);
    let p = normal_vec(&mut r, n) * 2.0;
    let alpha = 0.5 / lambda_max(&q);
    let solve = |p: &DVector<f64>| {
        p2_step::solve(&DVector::zeros(n), p, &q, alpha, &fwd())
            .unwrap()
            .x
    };
    let gr = p2_step::backward(&solve(&p), &p, &q, alpha, &g, &BackwardOptions::default()).unwrap();
    check("nonconvex box-QP", gr.p.dot(&d), |h| {
        g.dot(&solve(&(&p + &d * h)))
    });

    let mu = normal_vec(&mut r, n);
    let solve = |mu: &DVector<f64>| {
        p3_step::solve(
            &DVector::from_element(n, 1.0 / n as f64),
            mu,
            &q,
            alpha,
            &fwd(),
        )
        .unwrap()
        .x
    };
    let gr =
        p3_step::backward(&solve(&mu), &mu, &q, alpha, &g, &BackwardOptions::default()).unwrap();
    check("simplex", gr.mu.dot(&d), |h| g.dot(&solve(&(&mu + &d * h))));

    let a = normal_mat(&mut r, n + 4, n);
    let b = normal_vec(&mut r, n + 4);
    let db = normal_vec(&mut r, n + 4);
    let eta = 1.0 / lambda_max(&(a.transpose() * &a));
    let solve = |b: &DVector<f64>, lam: f64| {
        ista::solve(&DVector::zeros(n), b, lam, &a, eta, &fwd())
            .unwrap()
            .x
    };
    let gr = ista::backward(
        &solve(&b, 0.3),
        &b,
        0.3,
        &a,
        eta,
        &g,
        &BackwardOptions::default(),
    )
    .unwrap();
    check("lasso b", gr.b.dot(&db), |h| {
        g.dot(&solve(&(&b + &db * h), 0.3))
    });
    check("lasso lam", gr.lam, |h| g.dot(&solve(&b, 0.3 + h)));

    let c = normal_vec(&mut r, n);
    let zero = DVector::zeros(n);
    let solve = |c: &DVector<f64>| {
        heavy_ball::solve(&zero, &zero, c, &q, alpha, 0.5, &fwd())
            .unwrap()
            .x
    };
    let s = solve(&c);
    let (x, y) = heavy_ball::unpack(&s, [n, n]);
    let cot = heavy_ball::pack(&g, &DVector::zeros(n));
    let gr = heavy_ball::backward(
        &x,
        &y,
        &c,
        &q,
        alpha,
        0.5,
        &cot,
        &BackwardOptions::default(),
    )
    .unwrap();
    check("heavy ball", gr.c.dot(&d), |h| {
        g.dot(&heavy_ball::unpack(&solve(&(&c + &d * h)), [n, n]).0)
    });

    let a = normal_mat(&mut r, n, n) * 0.5;
    let w = normal_vec(&mut r, n).map(|e| 0.5 + 0.2 * e);
    let eta = 0.5 / (lambda_max(&(a.transpose() * &a)) * 0.25 + 0.1);
    let solve = |w: &DVector<f64>| {
        smooth::solve(&DVector::zeros(n), w, &a, eta, &fwd())
            .unwrap()
            .x
    };
    let gr = smooth::backward(&solve(&w), &w, &a, eta, &g, &BackwardOptions::default()).unwrap();
    check("logistic", gr.w.dot(&d), |h| g.dot(&solve(&(&w + &d * h))));
}
