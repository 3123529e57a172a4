//! End to end: `#[fold]` rules solved forward, differentiated by the generated folded
//! backward, and compared with closed-form gradients and finite differences.

mod common;

use common::*;
use fold_runtime::prelude::*;

fn fwd(tol: f64) -> ForwardOptions {
    ForwardOptions {
        tol,
        max_iter: 200_000,
        anderson: None,
    }
}

/// One projected-gradient step for  min ½xᵀQx + cᵀx  s.t.  0 ≤ x ≤ 1.
#[fold(state = x, params(c))]
fn pgd_step(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
    let grad = q * x + c;
    proj_box(&(x - grad * alpha), 0.0, 1.0)
}

/// The README's rule (this one) generates a module a person can read: at most 150
/// non-empty lines of pretty-printed Rust, holding what is specific to the rule.
#[test]
fn the_readme_rules_generated_module_is_at_most_150_lines() {
    let lines = pgd_step::SOURCE
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    assert!(
        lines <= 150,
        "the README rule's SOURCE has {lines} non-empty lines"
    );
    // What it holds: the staged values and products, not the plumbing.
    assert!(pgd_step::SOURCE.contains("impl"), "{}", pgd_step::SOURCE);
    assert!(
        !pgd_step::SOURCE.contains("match &self.staged"),
        "{}",
        pgd_step::SOURCE
    );
}

#[test]
fn box_qp_matches_free_set_closed_form() {
    for seed in 0..4 {
        let mut r = rng(seed);
        let n = 30;
        let q = spd(&mut r, n, 0.1);
        let c = normal_vec(&mut r, n) * 2.0;
        let g = normal_vec(&mut r, n);
        let alpha = 1.0 / lambda_max(&q);
        let sol = pgd_step::solve(&DVector::zeros(n), &c, &q, alpha, &fwd(1e-15)).unwrap();
        let x = sol.x;
        let grads = pgd_step::backward(&x, &c, &q, alpha, &g, &BackwardOptions::default()).unwrap();
        // Closed form: dL/dc = −Q_FF⁻¹ g_F on the free set F, 0 elsewhere.
        let z = &x - (&q * &x + &c) * alpha;
        let free: Vec<usize> = (0..n).filter(|&i| z[i] > 0.0 && z[i] < 1.0).collect();
        let qff = DMatrix::from_fn(free.len(), free.len(), |i, j| q[(free[i], free[j])]);
        let gf = DVector::from_fn(free.len(), |i, _| g[free[i]]);
        let sf = dense_solve(&qff, &gf);
        let mut expected = DVector::zeros(n);
        for (k, &i) in free.iter().enumerate() {
            expected[i] = -sf[k];
        }
        assert!(
            !free.is_empty() && free.len() < n,
            "seed {seed}: degenerate instance"
        );
        assert!(
            rel_err(&grads.c, &expected) < 1e-9,
            "seed {seed}: {}",
            rel_err(&grads.c, &expected)
        );
    }
}

#[test]
fn box_qp_matches_finite_differences_of_the_solver() {
    let mut r = rng(11);
    let n = 12;
    let q = spd(&mut r, n, 0.2);
    let c = normal_vec(&mut r, n);
    let g = normal_vec(&mut r, n);
    let alpha = 1.0 / lambda_max(&q);
    let loss = |c: &DVector<f64>| {
        let x = pgd_step::solve(&DVector::zeros(n), c, &q, alpha, &fwd(1e-15))
            .unwrap()
            .x;
        g.dot(&x)
    };
    let x = pgd_step::solve(&DVector::zeros(n), &c, &q, alpha, &fwd(1e-15))
        .unwrap()
        .x;
    let grads = pgd_step::backward(&x, &c, &q, alpha, &g, &BackwardOptions::default()).unwrap();
    let fd = fd_grad(loss, &c, 1e-6);
    assert!(rel_err(&grads.c, &fd) < 1e-6, "{}", rel_err(&grads.c, &fd));
}

/// Gradient descent on ridge regression ½‖Ax − y‖² + ½λ‖x‖².
#[fold(state = x, params(lambda, y))]
fn ridge_step(
    x: &DVector<f64>,
    lambda: f64,
    y: &DVector<f64>,
    a: &DMatrix<f64>,
    eta: f64,
) -> DVector<f64> {
    let residual = a * x - y;
    x - (a.transpose() * residual + x * lambda) * eta
}

#[test]
fn ridge_matches_closed_form() {
    let mut r = rng(3);
    let (m, n) = (25, 10);
    let a = normal_mat(&mut r, m, n);
    let y = normal_vec(&mut r, m);
    let g = normal_vec(&mut r, n);
    let lambda = 0.7;
    let h = a.transpose() * &a + DMatrix::identity(n, n) * lambda;
    let eta = 1.0 / lambda_max(&h);
    let sol = ridge_step::solve(&DVector::zeros(n), lambda, &y, &a, eta, &fwd(1e-15)).unwrap();
    let xstar = dense_solve(&h, &(a.transpose() * &y));
    assert!(rel_err(&sol.x, &xstar) < 1e-10);
    let grads =
        ridge_step::backward(&sol.x, lambda, &y, &a, eta, &g, &BackwardOptions::default()).unwrap();
    // x* = H⁻¹Aᵀy: dL/dy = A H⁻¹ g, dL/dλ = −x*ᵀ H⁻¹ g.
    let hg = dense_solve(&h, &g);
    assert!(rel_err(&grads.y, &(&a * &hg)) < 1e-9);
    let dl = -xstar.dot(&hg);
    assert!(
        (grads.lambda - dl).abs() < 1e-9 * dl.abs().max(1.0),
        "{} vs {dl}",
        grads.lambda
    );
}

/// A deep-equilibrium layer z = tanh(Wz + Uθ + b).
#[fold(state = z, params(theta, b))]
fn tanh_layer(
    z: &DVector<f64>,
    theta: &DVector<f64>,
    b: &DVector<f64>,
    w: &DMatrix<f64>,
    u: &DMatrix<f64>,
) -> DVector<f64> {
    tanh(&(w * z + u * theta + b))
}

#[test]
fn tanh_equilibrium_matches_closed_form() {
    let mut r = rng(5);
    let (n, p) = (15, 6);
    let w = normal_mat(&mut r, n, n) * (0.5 / (n as f64).sqrt());
    let u = normal_mat(&mut r, n, p);
    let theta = normal_vec(&mut r, p);
    let b = normal_vec(&mut r, n) * 0.3;
    let g = normal_vec(&mut r, n);
    let z = tanh_layer::solve(&DVector::zeros(n), &theta, &b, &w, &u, &fwd(1e-15))
        .unwrap()
        .x;
    let grads =
        tanh_layer::backward(&z, &theta, &b, &w, &u, &g, &BackwardOptions::default()).unwrap();
    // dz = D(W dz + U dθ + db), D = diag(1 − z²)  ⇒  dL/dθ = Uᵀ D (I − Wᵀ D)⁻¹ g.
    let d = DMatrix::from_diagonal(&z.map(|e| 1.0 - e * e));
    let wt = (DMatrix::identity(n, n) - w.transpose() * &d)
        .lu()
        .solve(&g)
        .unwrap();
    let db = &d * wt;
    assert!(rel_err(&grads.b, &db) < 1e-9);
    assert!(rel_err(&grads.theta, &(u.transpose() * &db)) < 1e-9);
}

/// Gradient descent on ½xᵀQx + cᵀx, differentiated with respect to the matrix Q.
#[fold(state = x, params(q))]
fn quad_step(x: &DVector<f64>, q: &DMatrix<f64>, c: &DVector<f64>, alpha: f64) -> DVector<f64> {
    x - (q * x + c) * alpha
}

#[test]
fn matrix_parameter_matches_closed_form() {
    let mut r = rng(8);
    let n = 8;
    let q = spd(&mut r, n, 0.5);
    let c = normal_vec(&mut r, n);
    let g = normal_vec(&mut r, n);
    let alpha = 1.0 / lambda_max(&q);
    let x = quad_step::solve(&DVector::zeros(n), &q, &c, alpha, &fwd(1e-15))
        .unwrap()
        .x;
    let grads = quad_step::backward(&x, &q, &c, alpha, &g, &BackwardOptions::default()).unwrap();
    // x* = −Q⁻¹c, dx* = −Q⁻¹ dQ x*  ⇒  dL/dQ = −(Q⁻ᵀ g) x*ᵀ.
    let s = dense_solve(&q.transpose(), &g);
    let expected = -(s * x.transpose());
    assert!((&grads.q - &expected).norm() < 1e-9 * expected.norm());
}

#[allow(unused_variables)]
/// One ADMM sweep for  min ½‖x − a‖² + λ‖z‖₁  s.t.  x = z  (scaled dual u).
#[fold(state = (x, z, u), params(a, lam))]
fn admm_sweep(
    x: &DVector<f64>,
    z: &DVector<f64>,
    u: &DVector<f64>,
    a: &DVector<f64>,
    lam: f64,
    rho: f64,
) -> (DVector<f64>, DVector<f64>, DVector<f64>) {
    let x_new = (a + (z - u) * rho) / (1.0 + rho);
    let z_new = soft_threshold(&(&x_new + u), lam / rho);
    let u_new = u + &x_new - &z_new;
    (x_new, z_new, u_new)
}

#[test]
fn three_block_admm_matches_the_prox_closed_form() {
    let mut r = rng(9);
    let n = 20;
    let a = normal_vec(&mut r, n) * 2.0;
    let lam = 0.8;
    let rho = 1.3;
    let zero = DVector::zeros(n);
    let sol = admm_sweep::solve(&zero, &zero, &zero, &a, lam, rho, &fwd(1e-15)).unwrap();
    let (x, z, u) = admm_sweep::unpack(&sol.x, [n, n, n]);
    // x* = z* = soft_threshold(a, λ).
    let prox = a.map(|e| e.signum() * (e.abs() - lam).max(0.0));
    assert!(rel_err(&z, &prox) < 1e-10);
    // Loss on z only: dL/da = g ⊙ 1[|a| > λ], dL/dλ = −Σ gᵢ sign(aᵢ) 1[|aᵢ| > λ].
    let g = normal_vec(&mut r, n);
    let cot = admm_sweep::pack(&DVector::zeros(n), &g, &DVector::zeros(n));
    let grads =
        admm_sweep::backward(&x, &z, &u, &a, lam, rho, &cot, &BackwardOptions::default()).unwrap();
    let mask = a.map(|e| if e.abs() > lam { 1.0 } else { 0.0 });
    assert!(rel_err(&grads.a, &g.component_mul(&mask)) < 1e-9);
    let dl: f64 = (0..n).map(|i| -g[i] * a[i].signum() * mask[i]).sum();
    assert!((grads.lam - dl).abs() < 1e-9 * dl.abs().max(1.0));
}

#[allow(clippy::too_many_arguments)]
/// A primal-dual (Arrow–Hurwicz) step for  min ½xᵀQx + cᵀx  s.t.  Ax = b.
#[fold(state = (x, lam), params(c, b))]
fn primal_dual(
    x: &DVector<f64>,
    lam: &DVector<f64>,
    c: &DVector<f64>,
    b: &DVector<f64>,
    q: &DMatrix<f64>,
    a: &DMatrix<f64>,
    tau: f64,
    sigma: f64,
) -> (DVector<f64>, DVector<f64>) {
    let x_new = x - (q * x + c + a.transpose() * lam) * tau;
    let lam_new = lam + (a * (&x_new * 2.0 - x) - b) * sigma;
    (x_new, lam_new)
}

#[test]
fn primal_dual_matches_kkt_derivative() {
    let mut r = rng(12);
    let (n, m) = (10, 3);
    let q = spd(&mut r, n, 0.5);
    let a = normal_mat(&mut r, m, n);
    let c = normal_vec(&mut r, n);
    let b = normal_vec(&mut r, m);
    let tau = 0.5 / lambda_max(&q);
    let sigma = 0.5 / (tau * lambda_max(&(&a * a.transpose())));
    let sol = primal_dual::solve(
        &DVector::zeros(n),
        &DVector::zeros(m),
        &c,
        &b,
        &q,
        &a,
        tau,
        sigma,
        &fwd(1e-15),
    )
    .unwrap();
    let (x, lam) = primal_dual::unpack(&sol.x, [n, m]);
    // KKT: [Q Aᵀ; A 0][x; λ] = [−c; b].
    let mut k = DMatrix::zeros(n + m, n + m);
    k.view_mut((0, 0), (n, n)).copy_from(&q);
    k.view_mut((0, n), (n, m)).copy_from(&a.transpose());
    k.view_mut((n, 0), (m, n)).copy_from(&a);
    let mut rhs = DVector::zeros(n + m);
    rhs.rows_mut(0, n).copy_from(&(-&c));
    rhs.rows_mut(n, m).copy_from(&b);
    let kkt = dense_solve(&k, &rhs);
    assert!(rel_err(&primal_dual::pack(&x, &lam), &kkt) < 1e-9);
    let gx = normal_vec(&mut r, n);
    let gl = normal_vec(&mut r, m);
    let cot = primal_dual::pack(&gx, &gl);
    let grads = primal_dual::backward(
        &x,
        &lam,
        &c,
        &b,
        &q,
        &a,
        tau,
        sigma,
        &cot,
        &BackwardOptions::default(),
    )
    .unwrap();
    // d[x; λ] = K⁻¹[−dc; db]  ⇒  [−dL/dc; dL/db] = K⁻ᵀ [gx; gλ].
    let s = dense_solve(&k.transpose(), &cot);
    assert!(rel_err(&grads.c, &(-s.rows(0, n).into_owned())) < 1e-8);
    assert!(rel_err(&grads.b, &s.rows(n, m).into_owned()) < 1e-8);
}

#[test]
fn the_original_functions_are_the_forward_steps() {
    // `solve` iterates the generated step; its fixed point is one of the user's function.
    let mut r = rng(21);
    let n = 6;
    let q = spd(&mut r, n, 0.3);
    let c = normal_vec(&mut r, n);
    let alpha = 1.0 / lambda_max(&q);
    let x = pgd_step::solve(&DVector::zeros(n), &c, &q, alpha, &fwd(1e-15))
        .unwrap()
        .x;
    assert!((pgd_step(&x, &c, &q, alpha) - &x).norm() < 1e-12);
    let x = quad_step::solve(&DVector::zeros(n), &q, &c, alpha, &fwd(1e-15))
        .unwrap()
        .x;
    assert!((quad_step(&x, &q, &c, alpha) - &x).norm() < 1e-12);
    let a = normal_mat(&mut r, 9, n);
    let y = normal_vec(&mut r, 9);
    let eta = 1.0 / lambda_max(&(a.transpose() * &a + DMatrix::identity(n, n)));
    let x = ridge_step::solve(&DVector::zeros(n), 1.0, &y, &a, eta, &fwd(1e-15))
        .unwrap()
        .x;
    assert!((ridge_step(&x, 1.0, &y, &a, eta) - &x).norm() < 1e-12);
    let w = normal_mat(&mut r, n, n) * 0.1;
    let u = normal_mat(&mut r, n, 2);
    let th = normal_vec(&mut r, 2);
    let b = normal_vec(&mut r, n);
    let z = tanh_layer::solve(&DVector::zeros(n), &th, &b, &w, &u, &fwd(1e-15))
        .unwrap()
        .x;
    assert!((tanh_layer(&z, &th, &b, &w, &u) - &z).norm() < 1e-12);
    let av = normal_vec(&mut r, n);
    let zero = DVector::zeros(n);
    let s = admm_sweep::solve(&zero, &zero, &zero, &av, 0.5, 1.0, &fwd(1e-15))
        .unwrap()
        .x;
    let (x1, z1, u1) = admm_sweep::unpack(&s, [n, n, n]);
    let (x2, z2, u2) = admm_sweep(&x1, &z1, &u1, &av, 0.5, 1.0);
    assert!((x2 - x1).norm() + (z2 - z1).norm() + (u2 - u1).norm() < 1e-12);
    let am = normal_mat(&mut r, 2, n);
    let bm = normal_vec(&mut r, 2);
    let tau = 0.5 / lambda_max(&q);
    let sigma = 0.5 / (tau * lambda_max(&(&am * am.transpose())));
    let s = primal_dual::solve(
        &DVector::zeros(n),
        &DVector::zeros(2),
        &c,
        &bm,
        &q,
        &am,
        tau,
        sigma,
        &fwd(1e-15),
    )
    .unwrap()
    .x;
    let (x1, l1) = primal_dual::unpack(&s, [n, 2]);
    let (x2, l2) = primal_dual(&x1, &l1, &c, &bm, &q, &am, tau, sigma);
    assert!((x2 - x1).norm() + (l2 - l1).norm() < 1e-12);
}
