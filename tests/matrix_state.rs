//! Matrix-valued state: a `DMatrix<f64>` state is iterated as its column-major
//! flattening. Stein and Sylvester iterations against their closed forms and finite
//! differences of the whole forward solve, an elementwise matrix rule, block state mixing
//! a vector and a matrix, the dense `Φ` (a Kronecker product the generated code never
//! builds), the `FoldRule` view and dimension errors.

mod common;

use common::*;
use fold_runtime::prelude::*;

/// One Stein (discrete Lyapunov) step: `X ← A X Aᵀ + Q`.
#[fold(state = x, params(a, q))]
fn stein(x: &DMatrix<f64>, a: &DMatrix<f64>, q: &DMatrix<f64>) -> DMatrix<f64> {
    a * x * a.transpose() + q
}

/// A Sylvester-type step on a rectangular state: `X ← A X B + C` (X is n × m).
#[fold(state = x, params(a, b, c))]
fn sylvester(
    x: &DMatrix<f64>,
    a: &DMatrix<f64>,
    b: &DMatrix<f64>,
    c: &DMatrix<f64>,
) -> DMatrix<f64> {
    a * x * b + c
}

/// Elementwise matrix work: `X ← ½ K ⊙ exp(−s B X) + 0.3 X ⊙ M + tanh(Q)`.
#[fold(state = x, params(k, s, q))]
fn elementwise(
    x: &DMatrix<f64>,
    k: &DMatrix<f64>,
    s: f64,
    q: &DMatrix<f64>,
    b: &DMatrix<f64>,
    m: &DMatrix<f64>,
) -> DMatrix<f64> {
    let y = exp(&(b * x * (-s)));
    y.component_mul(k) * 0.5 + x.component_mul(m) * 0.3 + q.map(|e| e.tanh())
}

/// Block state with a vector and a matrix: `x ← ½ A x + 0.1 P c + c`, `P ← A P Aᵀ + Q`.
#[fold(state = (x, p), params(a, q, c))]
fn mean_cov(
    x: &DVector<f64>,
    p: &DMatrix<f64>,
    a: &DMatrix<f64>,
    q: &DMatrix<f64>,
    c: &DVector<f64>,
) -> (DVector<f64>, DMatrix<f64>) {
    (a * x * 0.5 + p * c * 0.1 + c, a * p * a.transpose() + q)
}

fn fwd() -> ForwardOptions {
    ForwardOptions {
        tol: 1e-14,
        max_iter: 100_000,
        anderson: None,
    }
}

/// Column-major flattening (written here, independent of the library).
fn vec_of(m: &DMatrix<f64>) -> DVector<f64> {
    DVector::from_fn(m.len(), |i, _| m[(i % m.nrows(), i / m.nrows())])
}

fn mat_of(v: &DVector<f64>, rows: usize, cols: usize) -> DMatrix<f64> {
    DMatrix::from_fn(rows, cols, |i, j| v[i + j * rows])
}

/// A random matrix with spectral norm at most `r` (Frobenius-normalized).
fn contraction(rg: &mut rand::rngs::StdRng, rows: usize, cols: usize, r: f64) -> DMatrix<f64> {
    let m = normal_mat(rg, rows, cols);
    &m * (r / m.norm())
}

/// `B ⊗ A`, by its definition.
fn kron(b: &DMatrix<f64>, a: &DMatrix<f64>) -> DMatrix<f64> {
    let (p, q) = (a.nrows(), a.ncols());
    DMatrix::from_fn(b.nrows() * p, b.ncols() * q, |i, j| {
        b[(i / p, j / q)] * a[(i % p, j % q)]
    })
}

fn mrel(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    (a - b).norm() / b.norm().max(1e-300)
}

fn methods() -> Vec<BackwardOptions> {
    [
        Method::Auto,
        Method::Direct,
        Method::Gmres { restart: 30 },
        Method::BiCgStab,
        Method::Lfpi,
    ]
    .into_iter()
    .map(|method| BackwardOptions {
        method,
        tol: 1e-13,
        max_iter: 10_000,
    })
    .collect()
}

#[test]
fn stein_matches_the_closed_form_and_finite_differences() {
    for seed in 0..3 {
        let mut r = rng(seed);
        let n = 5;
        let a = contraction(&mut r, n, n, 0.8);
        let q = spd(&mut r, n, 0.5);
        let gm = normal_mat(&mut r, n, n);
        let sol = stein::solve(&DMatrix::zeros(n, n), &a, &q, &fwd()).unwrap();
        // vec(A X Aᵀ) = (A ⊗ A) vec X: X* from one dense Kronecker solve.
        let eye = DMatrix::identity(n * n, n * n);
        let xs = mat_of(&dense_solve(&(&eye - kron(&a, &a)), &vec_of(&q)), n, n);
        assert!(rel_err(&sol.x, &vec_of(&xs)) < 1e-12, "seed {seed}");
        let x = mat_of(&sol.x, n, n);
        // L = ⟨G, X*⟩: W = Aᵀ W A + G, ∂Q = W, ∂A = W A X*ᵀ + Wᵀ A X*.
        let at = a.transpose();
        let w = mat_of(&dense_solve(&(&eye - kron(&at, &at)), &vec_of(&gm)), n, n);
        let da = &w * &a * x.transpose() + w.transpose() * &a * &x;
        let g = vec_of(&gm);
        for opts in methods() {
            let grads = stein::backward(&x, &a, &q, &g, &opts).unwrap();
            assert!(mrel(&grads.q, &w) < 1e-9, "seed {seed} {:?}", opts.method);
            assert!(mrel(&grads.a, &da) < 1e-9, "seed {seed} {:?}", opts.method);
        }
        // Central differences of the whole forward solve.
        let loss = |a: &DMatrix<f64>, q: &DMatrix<f64>| {
            let s = stein::solve(&DMatrix::zeros(n, n), a, q, &fwd()).unwrap();
            g.dot(&s.x)
        };
        let grads = stein::backward(&x, &a, &q, &g, &BackwardOptions::default()).unwrap();
        let h = 1e-6;
        for (i, j) in [(0, 0), (1, 3), (4, 2)] {
            let mut ap = a.clone();
            let mut am = a.clone();
            ap[(i, j)] += h;
            am[(i, j)] -= h;
            let fd = (loss(&ap, &q) - loss(&am, &q)) / (2.0 * h);
            assert!(
                (fd - grads.a[(i, j)]).abs() < 1e-6 * (1.0 + fd.abs()),
                "∂A[{i},{j}]"
            );
            let mut qp = q.clone();
            let mut qm = q.clone();
            qp[(i, j)] += h;
            qm[(i, j)] -= h;
            let fd = (loss(&a, &qp) - loss(&a, &qm)) / (2.0 * h);
            assert!(
                (fd - grads.q[(i, j)]).abs() < 1e-6 * (1.0 + fd.abs()),
                "∂Q[{i},{j}]"
            );
        }
    }
}

#[test]
fn stein_jacobians_are_the_kronecker_products() {
    let mut r = rng(7);
    let n = 4;
    let a = contraction(&mut r, n, n, 0.7);
    let q = spd(&mut r, n, 0.5);
    let x = normal_mat(&mut r, n, n);
    let j = stein::jacobians(&x, &a, &q);
    assert!(mrel(&j.state, &kron(&a, &a)) < 1e-14);
    assert!(mrel(&j.q, &DMatrix::identity(n * n, n * n)) < 1e-14);
    // Ψ_a against finite differences of one step, column by column (vec of ∂A).
    let h = 1e-6;
    for col in [0, 5, 15] {
        let (i, k) = (col % n, col / n);
        let mut ap = a.clone();
        let mut am = a.clone();
        ap[(i, k)] += h;
        am[(i, k)] -= h;
        let step = |a: &DMatrix<f64>| vec_of(&(a * &x * a.transpose() + &q));
        let fd = (step(&ap) - step(&am)) / (2.0 * h);
        assert!(
            rel_err(&j.a.column(col).into_owned(), &fd) < 1e-8,
            "column {col}"
        );
    }
    // Matrix-free products agree with the dense Φ.
    let lin = stein::linearize(&x, &a, &q);
    let v = normal_vec(&mut r, n * n);
    assert!(rel_err(&lin.vjp_state(&v), &(j.state.transpose() * &v)) < 1e-13);
    assert!(rel_err(&lin.jvp_state(&v), &(&j.state * &v)) < 1e-13);
}

#[test]
fn rectangular_state_is_column_major() {
    for seed in 0..3 {
        let mut r = rng(100 + seed);
        let (n, m) = (4, 3);
        let a = contraction(&mut r, n, n, 0.8);
        let b = contraction(&mut r, m, m, 0.9);
        let c = normal_mat(&mut r, n, m);
        let gm = normal_mat(&mut r, n, m);
        let g = vec_of(&gm);
        let sol = sylvester::solve(&DMatrix::zeros(n, m), &a, &b, &c, &fwd()).unwrap();
        assert_eq!(sol.x.len(), n * m);
        // vec(A X B) = (Bᵀ ⊗ A) vec X.
        let eye = DMatrix::identity(n * m, n * m);
        let phi = kron(&b.transpose(), &a);
        let xs = dense_solve(&(&eye - &phi), &vec_of(&c));
        assert!(rel_err(&sol.x, &xs) < 1e-12);
        let x = mat_of(&sol.x, n, m);
        assert!(mrel(&sylvester::jacobians(&x, &a, &b, &c).state, &phi) < 1e-14);
        // W = Aᵀ W Bᵀ + G; ∂C = W, ∂A = W (X B)ᵀ, ∂B = (A X)ᵀ W.
        let w = mat_of(&dense_solve(&(&eye - phi.transpose()), &g), n, m);
        for opts in methods() {
            let grads = sylvester::backward(&x, &a, &b, &c, &g, &opts).unwrap();
            assert!(mrel(&grads.c, &w) < 1e-9, "{:?}", opts.method);
            assert!(mrel(&grads.a, &(&w * (&x * &b).transpose())) < 1e-9);
            assert!(mrel(&grads.b, &((&a * &x).transpose() * &w)) < 1e-9);
        }
        let grads = sylvester::backward(&x, &a, &b, &c, &g, &BackwardOptions::default()).unwrap();
        let loss = |b: &DMatrix<f64>| {
            let s = sylvester::solve(&DMatrix::zeros(n, m), &a, b, &c, &fwd()).unwrap();
            g.dot(&s.x)
        };
        let h = 1e-6;
        for (i, j) in [(0, 1), (2, 0)] {
            let mut bp = b.clone();
            let mut bm = b.clone();
            bp[(i, j)] += h;
            bm[(i, j)] -= h;
            let fd = (loss(&bp) - loss(&bm)) / (2.0 * h);
            assert!(
                (fd - grads.b[(i, j)]).abs() < 1e-6 * (1.0 + fd.abs()),
                "∂B[{i},{j}]"
            );
        }
    }
}

#[test]
fn elementwise_matrix_rule_matches_finite_differences() {
    for seed in 0..3 {
        let mut r = rng(200 + seed);
        let (n, m) = (3, 4);
        let k = normal_mat(&mut r, n, m).map(|e| 0.5 + 0.2 * e.abs().min(1.0));
        let q = normal_mat(&mut r, n, m);
        let b = contraction(&mut r, n, n, 0.5);
        let mm = normal_mat(&mut r, n, m).map(|e| e.abs().min(1.0));
        let s = 0.7;
        let g = normal_vec(&mut r, n * m);
        let x0 = DMatrix::zeros(n, m);
        let sol = elementwise::solve(&x0, &k, s, &q, &b, &mm, &fwd()).unwrap();
        let x = mat_of(&sol.x, n, m);
        // The solution is a fixed point of the user's own function.
        let next = elementwise(&x, &k, s, &q, &b, &mm);
        assert!((vec_of(&next) - &sol.x).amax() < 1e-12);
        let grads =
            elementwise::backward(&x, &k, s, &q, &b, &mm, &g, &BackwardOptions::default()).unwrap();
        let loss = |k: &DMatrix<f64>, s: f64, q: &DMatrix<f64>| {
            let sol = elementwise::solve(&x0, k, s, q, &b, &mm, &fwd()).unwrap();
            g.dot(&sol.x)
        };
        let h = 1e-6;
        let fd = (loss(&k, s + h, &q) - loss(&k, s - h, &q)) / (2.0 * h);
        assert!(
            (fd - grads.s).abs() < 1e-6 * (1.0 + fd.abs()),
            "∂s {fd} {}",
            grads.s
        );
        for (i, j) in [(0, 0), (2, 3), (1, 2)] {
            let mut kp = k.clone();
            let mut km = k.clone();
            kp[(i, j)] += h;
            km[(i, j)] -= h;
            let fd = (loss(&kp, s, &q) - loss(&km, s, &q)) / (2.0 * h);
            assert!(
                (fd - grads.k[(i, j)]).abs() < 1e-6 * (1.0 + fd.abs()),
                "∂K[{i},{j}]"
            );
            let mut qp = q.clone();
            let mut qm = q.clone();
            qp[(i, j)] += h;
            qm[(i, j)] -= h;
            let fd = (loss(&k, s, &qp) - loss(&k, s, &qm)) / (2.0 * h);
            assert!(
                (fd - grads.q[(i, j)]).abs() < 1e-6 * (1.0 + fd.abs()),
                "∂Q[{i},{j}]"
            );
        }
        // Φ from the products against finite differences of one step.
        let phi = elementwise::jacobians(&x, &k, s, &q, &b, &mm).state;
        let step = |x: &DVector<f64>| vec_of(&elementwise(&mat_of(x, n, m), &k, s, &q, &b, &mm));
        for col in [0, 7, 11] {
            let mut xp = sol.x.clone();
            let mut xm = sol.x.clone();
            xp[col] += h;
            xm[col] -= h;
            let fd = (step(&xp) - step(&xm)) / (2.0 * h);
            assert!(
                rel_err(&phi.column(col).into_owned(), &fd) < 1e-7,
                "Φ column {col}"
            );
        }
    }
}

#[test]
fn block_state_with_a_vector_and_a_matrix() {
    for seed in 0..3 {
        let mut r = rng(300 + seed);
        let n = 4;
        let a = contraction(&mut r, n, n, 0.8);
        let q = spd(&mut r, n, 0.5);
        let c = normal_vec(&mut r, n);
        let (x0, p0) = (DVector::zeros(n), DMatrix::zeros(n, n));
        let sol = mean_cov::solve(&x0, &p0, &a, &q, &c, &fwd()).unwrap();
        assert_eq!(sol.x.len(), n + n * n);
        let (x, p) = mean_cov::unpack(&sol.x, [(n, 1), (n, n)]);
        assert_eq!(mean_cov::pack(&x, &p), sol.x);
        // The blocks are the vector, then the matrix's column-major flattening.
        assert_eq!(sol.x.rows(0, n).into_owned(), x);
        assert_eq!(sol.x.rows(n, n * n).into_owned(), vec_of(&p));
        let (xn, pn) = mean_cov(&x, &p, &a, &q, &c);
        assert!((xn - &x).amax() < 1e-12 && (pn - &p).amax() < 1e-12);
        let g = normal_vec(&mut r, n + n * n);
        let loss = |a: &DMatrix<f64>, q: &DMatrix<f64>, c: &DVector<f64>| {
            g.dot(&mean_cov::solve(&x0, &p0, a, q, c, &fwd()).unwrap().x)
        };
        let h = 1e-6;
        for opts in methods() {
            let grads = mean_cov::backward(&x, &p, &a, &q, &c, &g, &opts).unwrap();
            for (i, j) in [(0, 0), (1, 3), (3, 2)] {
                let mut ap = a.clone();
                let mut am = a.clone();
                ap[(i, j)] += h;
                am[(i, j)] -= h;
                let fd = (loss(&ap, &q, &c) - loss(&am, &q, &c)) / (2.0 * h);
                assert!(
                    (fd - grads.a[(i, j)]).abs() < 1e-6 * (1.0 + fd.abs()),
                    "∂A[{i},{j}] {:?}",
                    opts.method
                );
                let mut qp = q.clone();
                let mut qm = q.clone();
                qp[(i, j)] += h;
                qm[(i, j)] -= h;
                let fd = (loss(&a, &qp, &c) - loss(&a, &qm, &c)) / (2.0 * h);
                assert!(
                    (fd - grads.q[(i, j)]).abs() < 1e-6 * (1.0 + fd.abs()),
                    "∂Q[{i},{j}]"
                );
            }
            let fd = fd_grad(|c| loss(&a, &q, c), &c, h);
            assert!(rel_err(&grads.c, &fd) < 1e-6, "∂c {:?}", opts.method);
        }
        // Φ from the products against finite differences of one step.
        let phi = mean_cov::jacobians(&x, &p, &a, &q, &c).state;
        let step = |s: &DVector<f64>| {
            let (x, p) = mean_cov::unpack(s, [(n, 1), (n, n)]);
            let (x, p) = mean_cov(&x, &p, &a, &q, &c);
            mean_cov::pack(&x, &p)
        };
        let fd = DMatrix::from_fn(n + n * n, n + n * n, |i, j| {
            let mut sp = sol.x.clone();
            let mut sm = sol.x.clone();
            sp[j] += h;
            sm[j] -= h;
            (step(&sp)[i] - step(&sm)[i]) / (2.0 * h)
        });
        assert!(mrel(&phi, &fd) < 1e-8);
    }
}

#[test]
fn fold_rule_packs_matrix_state_column_major() {
    let mut r = rng(400);
    let n = 3;
    let a = contraction(&mut r, n, n, 0.8);
    let q = spd(&mut r, n, 0.5);
    let p = stein::Params {
        a: a.clone(),
        q: q.clone(),
    };
    let k = stein::Consts {};
    let x0 = DMatrix::zeros(n, n);
    let sol = <stein::Rule as FoldRule>::solve(&p, &k, &x0, &fwd()).unwrap();
    let x = <stein::Rule as FoldRule>::unpack(&sol.x, &x0).unwrap();
    assert_eq!(<stein::Rule as FoldRule>::pack(&x), sol.x);
    assert_eq!(vec_of(&x), sol.x);
    let next = <stein::Rule as FoldRule>::step(&p, &k, &x).unwrap();
    assert!((next - &x).amax() < 1e-12);
    assert!(<stein::Rule as FoldRule>::unpack(&DVector::zeros(n), &x0).is_err());
    let g = normal_vec(&mut r, n * n);
    let (grads, _) =
        <stein::Rule as FoldRule>::backward(&p, &k, &x, &g, &BackwardOptions::default()).unwrap();
    let direct = stein::backward(&x, &a, &q, &g, &BackwardOptions::default()).unwrap();
    assert_eq!(grads, direct);
    // Block state through the trait.
    let c = normal_vec(&mut r, n);
    let pb = mean_cov::Params {
        a: a.clone(),
        q: q.clone(),
        c: c.clone(),
    };
    let start = (DVector::zeros(n), DMatrix::zeros(n, n));
    let sol =
        <mean_cov::Rule as FoldRule>::solve(&pb, &mean_cov::Consts {}, &start, &fwd()).unwrap();
    let (xb, pm) = <mean_cov::Rule as FoldRule>::unpack(&sol.x, &start).unwrap();
    assert_eq!(pm.shape(), (n, n));
    assert_eq!(<mean_cov::Rule as FoldRule>::pack(&(xb, pm)), sol.x);
}

#[test]
fn mismatched_dimensions_are_errors_not_panics() {
    let n = 3;
    let a = DMatrix::identity(n, n) * 0.5;
    let q = DMatrix::identity(n, n);
    let x = DMatrix::zeros(n, n);
    let bad_grad = DVector::zeros(n);
    assert!(matches!(
        stein::backward(&x, &a, &q, &bad_grad, &BackwardOptions::default()),
        Err(FoldError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        stein::solve(&DMatrix::zeros(n, n + 1), &a, &q, &fwd()),
        Err(FoldError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        stein::backward(
            &DMatrix::zeros(2, 2),
            &a,
            &q,
            &DVector::zeros(4),
            &BackwardOptions::default()
        ),
        Err(FoldError::DimensionMismatch { .. })
    ));
    // Products with a short vector read the missing entries as NaN instead of panicking.
    let lin = stein::linearize(&x, &a, &q);
    assert!(lin.vjp_state(&DVector::zeros(2)).iter().any(|e| e.is_nan()));
    let (xs, ps) = mean_cov::unpack(&DVector::zeros(2), [(n, 1), (n, n)]);
    assert!(xs[2].is_nan() && ps.iter().all(|e| e.is_nan()));
    let nan = DMatrix::from_element(n, n, f64::NAN);
    assert!(matches!(
        stein::solve(&nan, &a, &q, &fwd()),
        Err(FoldError::NonFinite { .. })
    ));
}

/// Row and column totals of a matrix state, nalgebra's shapes: `column_sum()` is the
/// vector of row totals, `row_sum()` the row of column totals (here the right factor of
/// an outer product).
#[fold(state = x, params(a, c, q))]
fn sums(
    x: &DMatrix<f64>,
    a: &DMatrix<f64>,
    c: &DVector<f64>,
    q: &DMatrix<f64>,
    d: &DVector<f64>,
) -> DMatrix<f64> {
    a * x * 0.5 + x.column_sum() * c.transpose() * 0.1 + d * x.row_sum() * 0.1 + q
}

/// Totals of a matrix built from a vector state: `row_sum_tr()` and `row_sum().transpose()`
/// are the column totals as a vector.
#[fold(state = x, params(w, b))]
fn totals(x: &DVector<f64>, w: &DMatrix<f64>, b: &DVector<f64>) -> DVector<f64> {
    let m = w * DMatrix::from_diagonal(&tanh(x));
    m.column_sum() * 0.3 + m.row_sum_tr() * 0.2 - m.row_sum().transpose() * 0.1 + b
}

#[test]
fn row_and_column_sums_match_finite_differences() {
    for seed in 0..3 {
        let mut r = rng(500 + seed);
        let (n, m) = (4, 3);
        let a = contraction(&mut r, n, n, 0.8);
        let c = normal_vec(&mut r, m).normalize();
        let d = normal_vec(&mut r, n).normalize();
        let q = normal_mat(&mut r, n, m);
        let x0 = DMatrix::zeros(n, m);
        let sol = sums::solve(&x0, &a, &c, &q, &d, &fwd()).unwrap();
        let x = mat_of(&sol.x, n, m);
        // The same step written with explicit ones vectors (independent of the sums).
        let (one_m, one_n) = (DVector::from_element(m, 1.0), DVector::from_element(n, 1.0));
        let by_hand = &a * &x * 0.5
            + (&x * &one_m) * c.transpose() * 0.1
            + &d * (x.transpose() * &one_n).transpose() * 0.1
            + &q;
        assert!((vec_of(&by_hand) - &sol.x).amax() < 1e-12);
        let g = normal_vec(&mut r, n * m);
        let loss = |a: &DMatrix<f64>, c: &DVector<f64>, q: &DMatrix<f64>| {
            g.dot(&sums::solve(&x0, a, c, q, &d, &fwd()).unwrap().x)
        };
        let h = 1e-6;
        for opts in methods() {
            let grads = sums::backward(&x, &a, &c, &q, &d, &g, &opts).unwrap();
            let fd = fd_grad(|c| loss(&a, c, &q), &c, h);
            assert!(rel_err(&grads.c, &fd) < 1e-6, "∂c {:?}", opts.method);
            for (i, j) in [(0, 0), (3, 1), (2, 2)] {
                let mut qp = q.clone();
                let mut qm = q.clone();
                qp[(i, j)] += h;
                qm[(i, j)] -= h;
                let fd = (loss(&a, &c, &qp) - loss(&a, &c, &qm)) / (2.0 * h);
                assert!(
                    (fd - grads.q[(i, j)]).abs() < 1e-6 * (1.0 + fd.abs()),
                    "∂Q[{i},{j}]"
                );
                let mut ap = a.clone();
                let mut am = a.clone();
                ap[(i, j + 1)] += h;
                am[(i, j + 1)] -= h;
                let fd = (loss(&ap, &c, &q) - loss(&am, &c, &q)) / (2.0 * h);
                assert!(
                    (fd - grads.a[(i, j + 1)]).abs() < 1e-6 * (1.0 + fd.abs()),
                    "∂A"
                );
            }
        }
        // Φ from the products against finite differences of one step.
        let phi = sums::jacobians(&x, &a, &c, &q, &d).state;
        let step = |s: &DVector<f64>| vec_of(&sums(&mat_of(s, n, m), &a, &c, &q, &d));
        let fd = DMatrix::from_fn(n * m, n * m, |i, j| {
            let mut sp = sol.x.clone();
            let mut sm = sol.x.clone();
            sp[j] += h;
            sm[j] -= h;
            (step(&sp)[i] - step(&sm)[i]) / (2.0 * h)
        });
        assert!(mrel(&phi, &fd) < 1e-8);
    }
}

#[test]
fn sums_of_a_matrix_built_from_a_vector_state() {
    for seed in 0..3 {
        let mut r = rng(600 + seed);
        let n = 5;
        let w = contraction(&mut r, n, n, 0.9);
        let b = normal_vec(&mut r, n);
        let x0 = DVector::zeros(n);
        let sol = totals::solve(&x0, &w, &b, &fwd()).unwrap();
        let x = sol.x.clone();
        let g = normal_vec(&mut r, n);
        let grads = totals::backward(&x, &w, &b, &g, &BackwardOptions::default()).unwrap();
        let loss = |w: &DMatrix<f64>, b: &DVector<f64>| {
            g.dot(&totals::solve(&x0, w, b, &fwd()).unwrap().x)
        };
        let h = 1e-6;
        let fd = fd_grad(|b| loss(&w, b), &b, h);
        assert!(rel_err(&grads.b, &fd) < 1e-6);
        for (i, j) in [(0, 0), (1, 4), (3, 2)] {
            let mut wp = w.clone();
            let mut wm = w.clone();
            wp[(i, j)] += h;
            wm[(i, j)] -= h;
            let fd = (loss(&wp, &b) - loss(&wm, &b)) / (2.0 * h);
            assert!(
                (fd - grads.w[(i, j)]).abs() < 1e-6 * (1.0 + fd.abs()),
                "∂W[{i},{j}]"
            );
        }
        let phi = totals::jacobians(&x, &w, &b).state;
        let fd = DMatrix::from_fn(n, n, |i, j| {
            let mut xp = x.clone();
            let mut xm = x.clone();
            xp[j] += h;
            xm[j] -= h;
            (totals(&xp, &w, &b)[i] - totals(&xm, &w, &b)[i]) / (2.0 * h)
        });
        assert!(mrel(&phi, &fd) < 1e-8);
    }
}

#[test]
fn sums_derivatives_read_as_math() {
    println!("{}", sums::DERIVATIVES);
    println!("{}", totals::DERIVATIVES);
    assert!(sums::DERIVATIVES.contains("column_sum"));
    // Column totals read the matrix in place: no transposed copy in the generated code.
    assert!(sums::SOURCE.contains("row_sum_tr()"));
    for m in ["x", "v", "u"] {
        let copy = format!(" {m}.transpose()");
        assert!(!sums::SOURCE.contains(&copy), "{}", sums::SOURCE);
    }
}

mod never_panics {
    //! Arbitrary inputs to matrix-state rules (non-finite values, any shapes, any options):
    //! never a panic, never a NaN inside an `Ok`.
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            6 => -2.0f64..2.0,
            1 => Just(0.0),
            1 => Just(f64::NAN),
            1 => Just(f64::INFINITY),
            1 => Just(1e300),
        ]
    }

    fn mat(r: usize, c: usize) -> impl Strategy<Value = DMatrix<f64>> {
        prop::collection::vec(value(), r * c).prop_map(move |v| DMatrix::from_vec(r, c, v))
    }

    fn any_mat() -> impl Strategy<Value = DMatrix<f64>> {
        (0usize..4, 0usize..4).prop_flat_map(|(r, c)| mat(r, c))
    }

    fn vect(n: usize) -> impl Strategy<Value = DVector<f64>> {
        prop::collection::vec(value(), n).prop_map(DVector::from_vec)
    }

    /// `(x, a, q, grad)`: mostly consistent shapes, sometimes not.
    fn stein_problem(
    ) -> impl Strategy<Value = (DMatrix<f64>, DMatrix<f64>, DMatrix<f64>, DVector<f64>)> {
        prop_oneof![
            3 => (1usize..4).prop_flat_map(|n| (mat(n, n), mat(n, n), mat(n, n), vect(n * n))),
            1 => (any_mat(), any_mat(), any_mat(), (0usize..10).prop_flat_map(vect)),
        ]
    }

    fn options() -> impl Strategy<Value = (BackwardOptions, ForwardOptions)> {
        (
            prop_oneof![
                Just(Method::Auto),
                Just(Method::Direct),
                (0usize..4).prop_map(|restart| Method::Gmres { restart }),
                Just(Method::BiCgStab),
                Just(Method::Lfpi),
            ],
            0usize..40,
            prop::option::of(0usize..3),
        )
            .prop_map(|(method, max_iter, anderson)| {
                (
                    BackwardOptions {
                        method,
                        tol: 1e-10,
                        max_iter,
                    },
                    ForwardOptions {
                        tol: 1e-10,
                        max_iter,
                        anderson,
                    },
                )
            })
    }

    fn finite(m: &DMatrix<f64>) -> bool {
        m.iter().all(|e| e.is_finite())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn stein_never_panics_nor_returns_nan((x, a, q, g) in stein_problem(), (o, f) in options()) {
            if let Ok(grads) = stein::backward(&x, &a, &q, &g, &o) {
                prop_assert!(finite(&grads.a) && finite(&grads.q), "{grads:?}");
            }
            if let Ok(s) = stein::solve(&x, &a, &q, &f) {
                prop_assert!(s.x.iter().all(|e| e.is_finite()) && s.x.len() == x.len());
            }
            let lin = stein::linearize(&x, &a, &q);
            let _ = lin.vjp_state(&g);
            let _ = lin.jvp_state(&g);
            let _ = lin.vjp_params(&g);
        }

        #[test]
        fn block_state_never_panics_nor_returns_nan(
            (x, p, a, q) in (any_mat(), any_mat(), any_mat(), any_mat()),
            c in (0usize..4).prop_flat_map(vect),
            g in (0usize..12).prop_flat_map(vect),
            (o, f) in options(),
        ) {
            let xv = DVector::from_column_slice(x.as_slice());
            if let Ok(grads) = mean_cov::backward(&xv, &p, &a, &q, &c, &g, &o) {
                prop_assert!(finite(&grads.a) && finite(&grads.q));
                prop_assert!(grads.c.iter().all(|e| e.is_finite()));
            }
            if let Ok(s) = mean_cov::solve(&xv, &p, &a, &q, &c, &f) {
                prop_assert!(s.x.iter().all(|e| e.is_finite()));
            }
            let _ = mean_cov::unpack(&g, [(xv.len(), 1), (p.nrows(), p.ncols())]);
        }
    }
}

#[test]
fn batches_of_matrix_state_rules() {
    use fold_runtime::batch::{Batcher, PerSample};
    let mut r = rng(700);
    let n = 3;
    let params: Vec<stein::Params> = (0..5)
        .map(|_| stein::Params {
            a: contraction(&mut r, n, n, 0.7),
            q: spd(&mut r, n, 0.5),
        })
        .collect();
    let gs: Vec<DVector<f64>> = (0..5).map(|_| normal_vec(&mut r, n * n)).collect();
    let x0 = DMatrix::zeros(n, n);
    let b = Batcher::with_threads(2).unwrap();
    let k = stein::Consts {};
    let sols = b
        .solve::<stein::Rule>(
            &params,
            PerSample::Shared(&k),
            PerSample::Shared(&x0),
            &fwd(),
        )
        .into_all()
        .unwrap();
    let xs: Vec<DMatrix<f64>> = sols
        .iter()
        .map(|s| <stein::Rule as FoldRule>::unpack(&s.x, &x0).unwrap())
        .collect();
    let grads = b
        .backward::<stein::Rule>(
            &params,
            PerSample::Shared(&k),
            &xs,
            &gs,
            &BackwardOptions::default(),
        )
        .into_all()
        .unwrap();
    for (i, (g, _)) in grads.iter().enumerate() {
        let p = &params[i];
        let direct = stein::backward(&xs[i], &p.a, &p.q, &gs[i], &BackwardOptions::default());
        assert_eq!(g, &direct.unwrap(), "sample {i}");
    }
}
