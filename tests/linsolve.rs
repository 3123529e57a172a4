//! `linsolve(a, b)` in update rules: splitting iterations, Newton steps whose Hessian is
//! built from the state (`DMatrix::from_diagonal`), matrix right-hand sides, and singular
//! matrices, against closed forms and finite differences of the whole forward solve.

mod common;

use common::*;
use fold_runtime::prelude::*;

fn fwd() -> ForwardOptions {
    ForwardOptions {
        tol: 1e-14,
        max_iter: 100_000,
        anderson: None,
    }
}

/// A splitting iteration for `(M − N) x = b`.
#[fold(state = x, params(m, b))]
fn splitting(
    x: &DVector<f64>,
    m: &DMatrix<f64>,
    b: &DVector<f64>,
    n: &DMatrix<f64>,
) -> DVector<f64> {
    linsolve(m, &(b + n * x))
}

/// Newton's method on `f(x) = ½xᵀPx + cᵀx + Σ softplus(xᵢ)`.
#[fold(state = x, params(p, c))]
fn newton(x: &DVector<f64>, p: &DMatrix<f64>, c: &DVector<f64>) -> DVector<f64> {
    let s = sigmoid(x);
    let grad = p * x + c + &s;
    let h = p + DMatrix::from_diagonal(&(&s - s.component_mul(&s)));
    x - linsolve(&h, &grad)
}

/// A solve with a matrix right-hand side: `x ← ½ (M⁻¹K) x + b`.
#[fold(state = x, params(m, b))]
fn matrix_rhs(
    x: &DVector<f64>,
    m: &DMatrix<f64>,
    b: &DVector<f64>,
    k: &DMatrix<f64>,
) -> DVector<f64> {
    let y = linsolve(m, k);
    y * x * 0.5 + b
}

fn diag_dominant(r: &mut rand::rngs::StdRng, n: usize, d: f64) -> DMatrix<f64> {
    normal_mat(r, n, n) * 0.3 + DMatrix::identity(n, n) * d
}

#[test]
fn splitting_iteration_matches_the_closed_form() {
    for seed in 0..3 {
        let mut r = rng(seed);
        let n = 8;
        let m = diag_dominant(&mut r, n, 4.0);
        let nn = normal_mat(&mut r, n, n) * 0.2;
        let b = normal_vec(&mut r, n);
        let g = normal_vec(&mut r, n);
        let x = splitting::solve(&DVector::zeros(n), &m, &b, &nn, &fwd())
            .unwrap()
            .x;
        let a = &m - &nn;
        assert!(rel_err(&x, &dense_solve(&a, &b)) < 1e-12);
        let grads = splitting::backward(&x, &m, &b, &nn, &g, &BackwardOptions::default()).unwrap();
        // L = gᵀx*, x* = (M − N)⁻¹ b:  ∂b = (M − N)⁻ᵀ g,  ∂M = −∂b x*ᵀ.
        let lambda = dense_solve(&a.transpose(), &g);
        assert!(rel_err(&grads.b, &lambda) < 1e-10, "seed {seed}");
        let dm = -&lambda * x.transpose();
        assert!((&grads.m - &dm).norm() / dm.norm() < 1e-10, "seed {seed}");
        // Finite differences of the whole forward solve in two entries of M.
        for (i, j) in [(0, 0), (3, 5)] {
            let loss = |h: f64| {
                let mut mp = m.clone();
                mp[(i, j)] += h;
                g.dot(
                    &splitting::solve(&DVector::zeros(n), &mp, &b, &nn, &fwd())
                        .unwrap()
                        .x,
                )
            };
            let fd = (loss(1e-6) - loss(-1e-6)) / 2e-6;
            assert!(
                (fd - grads.m[(i, j)]).abs() < 1e-6 * (1.0 + fd.abs()),
                "{fd} vs {}",
                grads.m[(i, j)]
            );
        }
    }
}

#[test]
fn newton_backward_is_minus_inverse_hessian_times_g() {
    for seed in 0..3 {
        let mut r = rng(10 + seed);
        let n = 6;
        let p = spd(&mut r, n, 0.5);
        let c = normal_vec(&mut r, n);
        let g = normal_vec(&mut r, n);
        let x = newton::solve(&DVector::zeros(n), &p, &c, &fwd()).unwrap().x;
        let s = x.map(|v| 1.0 / (1.0 + (-v).exp()));
        let grad = &p * &x + &c + &s;
        assert!(grad.norm() < 1e-12, "a stationary point");
        let h = &p + DMatrix::from_diagonal(&s.map(|v| v * (1.0 - v)));
        let grads = newton::backward(&x, &p, &c, &g, &BackwardOptions::default()).unwrap();
        // ∂L/∂c = −H⁻ᵀ g and ∂L/∂P = −H⁻ᵀ g x*ᵀ at the minimizer.
        let lambda = dense_solve(&h.transpose(), &g);
        assert!(rel_err(&grads.c, &(-&lambda)) < 1e-10, "seed {seed}");
        let dp = -&lambda * x.transpose();
        assert!((&grads.p - &dp).norm() / dp.norm() < 1e-10, "seed {seed}");
        let loss =
            |c: &DVector<f64>| g.dot(&newton::solve(&DVector::zeros(n), &p, c, &fwd()).unwrap().x);
        assert!(rel_err(&grads.c, &fd_grad(loss, &c, 1e-6)) < 1e-6);
        // The full (unreduced) Krylov path agrees.
        let gmres = BackwardOptions {
            method: Method::Gmres { restart: 20 },
            ..BackwardOptions::default()
        };
        let full = newton::backward(&x, &p, &c, &g, &gmres).unwrap();
        assert!(rel_err(&full.c, &grads.c) < 1e-8);
    }
}

#[test]
fn matrix_right_hand_side_matches_finite_differences() {
    let mut r = rng(7);
    let n = 5;
    let m = diag_dominant(&mut r, n, 3.0);
    let k = normal_mat(&mut r, n, n);
    let b = normal_vec(&mut r, n);
    let g = normal_vec(&mut r, n);
    let x = matrix_rhs::solve(&DVector::zeros(n), &m, &b, &k, &fwd())
        .unwrap()
        .x;
    let grads = matrix_rhs::backward(&x, &m, &b, &k, &g, &BackwardOptions::default()).unwrap();
    let fd_m = DMatrix::from_fn(n, n, |i, j| {
        let loss = |h: f64| {
            let mut mp = m.clone();
            mp[(i, j)] += h;
            g.dot(
                &matrix_rhs::solve(&DVector::zeros(n), &mp, &b, &k, &fwd())
                    .unwrap()
                    .x,
            )
        };
        (loss(1e-6) - loss(-1e-6)) / 2e-6
    });
    assert!(
        (&grads.m - &fd_m).norm() / fd_m.norm() < 1e-6,
        "{} vs {fd_m}",
        grads.m
    );
    let loss = |b: &DVector<f64>| {
        g.dot(
            &matrix_rhs::solve(&DVector::zeros(n), &m, b, &k, &fwd())
                .unwrap()
                .x,
        )
    };
    assert!(rel_err(&grads.b, &fd_grad(loss, &b, 1e-6)) < 1e-6);
}

#[test]
fn a_singular_matrix_is_an_error_everywhere() {
    let n = 4;
    let mut m = DMatrix::identity(n, n) * 2.0;
    m.set_row(2, &m.row(1).clone_owned());
    let nn = DMatrix::zeros(n, n);
    let b = DVector::from_element(n, 1.0);
    let x = DVector::from_element(n, 0.5);
    let err = splitting::solve(&x, &m, &b, &nn, &fwd()).unwrap_err();
    assert_eq!(err, FoldError::Singular);
    let lin = splitting::linearize(&x, &m, &b, &nn);
    assert_eq!(Linearized::check(&lin).unwrap_err(), FoldError::Singular);
    let err = splitting::backward(&x, &m, &b, &nn, &b, &BackwardOptions::default()).unwrap_err();
    assert_eq!(err, FoldError::Singular);
    // The value function used outside rules returns NaN rather than a number.
    assert!(linsolve(&m, &b).iter().all(|v| v.is_nan()));
    assert_eq!(try_linsolve(&m, &b).unwrap_err(), FoldError::Singular);
}

/// `(S + Sᵀ) / 2`: exactly symmetric, as the factorization's test requires.
fn symmetrized(s: &DMatrix<f64>) -> DMatrix<f64> {
    (s + s.transpose()) * 0.5
}

#[test]
fn symmetric_matrices_definite_or_not_match_the_closed_form() {
    // SPD `M` (the Cholesky path) and symmetric indefinite `M` (LU after the Cholesky
    // fails): both give the closed-form gradients.
    for (seed, definite) in [(20, true), (21, false), (22, true), (23, false)] {
        let mut r = rng(seed);
        let n = 7;
        let m = if definite {
            symmetrized(&spd(&mut r, n, 2.0))
        } else {
            let signs = DVector::from_fn(n, |i, _| if i % 2 == 0 { 4.0 } else { -4.0 });
            symmetrized(&(DMatrix::from_diagonal(&signs) + normal_mat(&mut r, n, n) * 0.1))
        };
        assert_eq!(m, m.transpose());
        let nn = normal_mat(&mut r, n, n) * 0.1;
        let b = normal_vec(&mut r, n);
        let g = normal_vec(&mut r, n);
        let x = splitting::solve(&DVector::zeros(n), &m, &b, &nn, &fwd())
            .unwrap()
            .x;
        let a = &m - &nn;
        assert!(rel_err(&x, &dense_solve(&a, &b)) < 1e-12, "seed {seed}");
        let grads = splitting::backward(&x, &m, &b, &nn, &g, &BackwardOptions::default()).unwrap();
        let lambda = dense_solve(&a.transpose(), &g);
        assert!(rel_err(&grads.b, &lambda) < 1e-10, "seed {seed}");
        let dm = -&lambda * x.transpose();
        assert!((&grads.m - &dm).norm() / dm.norm() < 1e-10, "seed {seed}");
        let direct = BackwardOptions {
            method: Method::Direct,
            ..BackwardOptions::default()
        };
        let d = splitting::backward(&x, &m, &b, &nn, &g, &direct).unwrap();
        assert!(rel_err(&d.b, &lambda) < 1e-10, "seed {seed}");
    }
}

#[test]
fn a_singular_symmetric_matrix_is_an_error_everywhere() {
    // Positive semidefinite with rows (and columns) 1 and 2 equal: Cholesky and LU both
    // refuse it.
    let n = 4;
    let mut m = DMatrix::identity(n, n) * 2.0;
    for (i, j) in [(1, 1), (1, 2), (2, 1), (2, 2)] {
        m[(i, j)] = 1.0;
    }
    let nn = DMatrix::zeros(n, n);
    let b = DVector::from_element(n, 1.0);
    let x = DVector::from_element(n, 0.5);
    let err = splitting::solve(&x, &m, &b, &nn, &fwd()).unwrap_err();
    assert_eq!(err, FoldError::Singular);
    let lin = splitting::linearize(&x, &m, &b, &nn);
    assert_eq!(Linearized::check(&lin).unwrap_err(), FoldError::Singular);
    let err = splitting::backward(&x, &m, &b, &nn, &b, &BackwardOptions::default()).unwrap_err();
    assert_eq!(err, FoldError::Singular);
    assert_eq!(try_linsolve(&m, &b).unwrap_err(), FoldError::Singular);
}

#[test]
fn try_linsolve_rejects_non_finite_right_hand_sides_and_overflow() {
    let eye = DMatrix::<f64>::identity(3, 3);
    let nan = DVector::from_vec(vec![1.0, f64::NAN, 0.0]);
    assert!(matches!(
        try_linsolve(&eye, &nan),
        Err(FoldError::NonFinite { .. })
    ));
    // Well conditioned, but the solution overflows.
    let tiny = &eye * 1e-300;
    let big = DVector::from_element(3, 1e300);
    assert!(matches!(
        try_linsolve(&tiny, &big),
        Err(FoldError::NonFinite { .. })
    ));
    assert!(linsolve(&tiny, &big).iter().all(|v| v.is_nan()));
    let rhs = DMatrix::from_element(3, 2, 1e300);
    assert!(matches!(
        try_linsolve(&tiny, &rhs),
        Err(FoldError::NonFinite { .. })
    ));
}

#[test]
fn derivatives_read_as_solves() {
    assert!(
        splitting::DERIVATIVES.contains("⁻¹"),
        "{}",
        splitting::DERIVATIVES
    );
    assert!(
        newton::DERIVATIVES.contains("diag("),
        "{}",
        newton::DERIVATIVES
    );
}

#[test]
#[ignore = "prints the generated derivatives: cargo test --release --test linsolve -- --ignored --nocapture"]
fn print_derivatives() {
    println!("splitting:\n{}", splitting::DERIVATIVES);
    println!("newton:\n{}", newton::DERIVATIVES);
    println!("matrix_rhs:\n{}", matrix_rhs::DERIVATIVES);
    println!("{}", newton::SOURCE);
}
