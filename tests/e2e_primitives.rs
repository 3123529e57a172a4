//! End to end through `#[fold]`: rules that call the projections, the opaque primitives
//! (`proj_polyhedron`, `qp_solve`) and a user primitive, solved forward by the generated
//! `solve` and differentiated by the generated `backward` (issue 5, item 5).
//!
//! References are independent of the code under test: central finite differences of the
//! whole forward solve, and dense KKT systems written and solved here with nalgebra.

mod common;

use common::*;
use fold_runtime::prelude::*;
use rand::rngs::StdRng;
use rand::Rng;

fn fwd() -> ForwardOptions {
    ForwardOptions {
        tol: 1e-14,
        max_iter: 100_000,
        anderson: None,
    }
}

fn methods() -> [BackwardOptions; 3] {
    [
        BackwardOptions::default(),
        BackwardOptions {
            method: Method::Direct,
            ..BackwardOptions::default()
        },
        BackwardOptions {
            method: Method::Gmres { restart: 30 },
            ..BackwardOptions::default()
        },
    ]
}

// ---------------------------------------------------------------------------------------
// (a) Folded PGD with proj_polyhedron on a nonconvex QP
// ---------------------------------------------------------------------------------------

/// One projected-gradient step for  min ½yᵀQy + pᵀ sin y  s.t.  Ay = b, Gy ≤ h.
#[fold(state = y, params(p))]
#[allow(clippy::too_many_arguments)]
fn ncvx_pgd(
    y: &DVector<f64>,
    p: &DVector<f64>,
    q: &DMatrix<f64>,
    a: &DMatrix<f64>,
    b: &DVector<f64>,
    g: &DMatrix<f64>,
    h: &DVector<f64>,
    alpha: f64,
) -> DVector<f64> {
    let grad = q * y + p.component_mul(&cos(y));
    proj_polyhedron(&(y - grad * alpha), a, b, g, h)
}

/// A DC3-style instance: `Q` diagonal positive, `A`, `G` standard normal,
/// `h = Σⱼ |(G A⁺)ᵢⱼ|`, `b ∈ [−1, 1]ᵐ` (so `A⁺b` is feasible).
struct Ncvx {
    q: DMatrix<f64>,
    p: DVector<f64>,
    a: DMatrix<f64>,
    b: DVector<f64>,
    g: DMatrix<f64>,
    h: DVector<f64>,
    /// A feasible start, `A⁺b`.
    y0: DVector<f64>,
}

fn pinv(a: &DMatrix<f64>) -> DMatrix<f64> {
    // A⁺ = Aᵀ (AAᵀ)⁻¹ for a full-row-rank A.
    let gram = a * a.transpose();
    a.transpose() * gram.try_inverse().expect("A has full row rank")
}

fn ncvx_instance(r: &mut StdRng, n: usize, m_eq: usize, m_in: usize, p_scale: f64) -> Ncvx {
    let q = DMatrix::from_diagonal(&DVector::from_fn(n, |_, _| r.random_range(0.5..1.5)));
    let p = DVector::from_fn(n, |_, _| p_scale * gauss(r));
    let a = normal_mat(r, m_eq, n);
    let g = normal_mat(r, m_in, n);
    let ap = pinv(&a);
    let h = (&g * &ap).abs().column_sum();
    let b = DVector::from_fn(m_eq, |_, _| r.random_range(-1.0..1.0));
    let y0 = &ap * &b;
    Ncvx {
        q,
        p,
        a,
        b,
        g,
        h,
        y0,
    }
}

/// `dy*/dp` from the KKT conditions of a local solution (written here, independent of the
/// library): with `S` the active inequalities, `C = [A; G_S]` and
/// `H = Q − diag(p ⊙ sin y)`, differentiating `Qy + p ⊙ cos y + Cᵀν = 0`, `Cy = [b; h_S]`
/// gives `[H Cᵀ; C 0] [dy; dν] = [−diag(cos y) dp; 0]`. Returns `(dy/dp, dν/dp)`.
fn ncvx_kkt_sensitivity(
    inst: &Ncvx,
    y: &DVector<f64>,
    active: &[usize],
) -> (DMatrix<f64>, DMatrix<f64>) {
    let n = y.len();
    let m_eq = inst.a.nrows();
    let k = m_eq + active.len();
    let c = DMatrix::from_fn(k, n, |i, j| {
        if i < m_eq {
            inst.a[(i, j)]
        } else {
            inst.g[(active[i - m_eq], j)]
        }
    });
    let hess = &inst.q - DMatrix::from_diagonal(&inst.p.component_mul(&y.map(f64::sin)));
    let mut kkt = DMatrix::zeros(n + k, n + k);
    kkt.view_mut((0, 0), (n, n)).copy_from(&hess);
    kkt.view_mut((0, n), (n, k)).copy_from(&c.transpose());
    kkt.view_mut((n, 0), (k, n)).copy_from(&c);
    let mut rhs = DMatrix::zeros(n + k, n);
    for i in 0..n {
        rhs[(i, i)] = -y[i].cos();
    }
    let sens = kkt.lu().solve(&rhs).expect("nonsingular KKT matrix");
    (sens.rows(0, n).into_owned(), sens.rows(n, k).into_owned())
}

#[test]
fn ncvx_pgd_polyhedron_matches_finite_differences_of_the_solve() {
    let mut total_active = 0;
    for seed in 0..3 {
        let mut r = rng(2023 + seed);
        let (n, m_eq, m_in) = (10, 3, 8);
        let inst = ncvx_instance(&mut r, n, m_eq, m_in, 1.5);
        let Ncvx {
            q,
            p,
            a,
            b,
            g,
            h,
            y0,
            ..
        } = &inst;
        // Nonconvex: some |pᵢ| > Qᵢᵢ, so pᵢ sin yᵢ outweighs the quadratic somewhere.
        assert!(
            (0..n).any(|i| p[i].abs() > q[(i, i)]),
            "seed {seed}: convex instance"
        );
        let alpha = 1.0 / (lambda_max(q) + p.amax());
        let solve = |p: &DVector<f64>| {
            ncvx_pgd::solve(y0, p, q, a, b, g, h, alpha, &fwd())
                .expect("forward PGD converges")
                .x
        };
        let y = solve(p);
        assert!(rel_err(&ncvx_pgd(&y, p, q, a, b, g, h, alpha), &y) < 1e-12);
        let slack = h - g * &y;
        let active: Vec<usize> = (0..m_in).filter(|&i| slack[i] < 1e-9).collect();
        total_active += active.len();
        // Finite differences of the whole forward solve (from the same start): dy*/dp.
        let hstep = 1e-6;
        let mut jac_fd = DMatrix::zeros(n, n);
        for i in 0..n {
            let (mut pp, mut pm) = (p.clone(), p.clone());
            pp[i] += hstep;
            pm[i] -= hstep;
            jac_fd.set_column(i, &((solve(&pp) - solve(&pm)) / (2.0 * hstep)));
        }
        // The KKT reference agrees with the finite differences (a local minimum whose
        // active set the perturbations do not change).
        let (jac_kkt, _) = ncvx_kkt_sensitivity(&inst, &y, &active);
        let e_ref = (&jac_kkt - &jac_fd).norm() / jac_kkt.norm();
        assert!(e_ref < 1e-6, "seed {seed}: KKT vs FD {e_ref:.2e}");

        let w = normal_vec(&mut r, n);
        for opts in methods() {
            let grads = ncvx_pgd::backward(&y, p, q, a, b, g, h, alpha, &w, &opts).unwrap();
            let e_kkt = rel_err(&grads.p, &(jac_kkt.transpose() * &w));
            let e_fd = rel_err(&grads.p, &(jac_fd.transpose() * &w));
            assert!(
                e_kkt < 1e-8 && e_fd < 1e-6,
                "seed {seed} {:?}: vs KKT {e_kkt:.2e}, vs FD {e_fd:.2e}",
                opts.method
            );
        }
        // Forward mode through the same linearization, and the dense Jacobians.
        let lin = ncvx_pgd::linearize(&y, p, q, a, b, g, h, alpha);
        let dp = normal_vec(&mut r, n);
        let (t, _) = fold_runtime::folded_jvp(
            &lin,
            &ncvx_pgd::Grads { p: dp.clone() },
            &BackwardOptions::default(),
        )
        .unwrap();
        let e_jvp = rel_err(&t, &(&jac_kkt * &dp));
        assert!(e_jvp < 1e-8, "seed {seed}: jvp {e_jvp:.2e}");
        let jac = ncvx_pgd::jacobians(&y, p, q, a, b, g, h, alpha);
        let dense = (DMatrix::identity(n, n) - &jac.state)
            .lu()
            .solve(&jac.p)
            .unwrap();
        let e_dense = (&dense - &jac_kkt).norm() / jac_kkt.norm();
        assert!(e_dense < 1e-8, "seed {seed}: (I − Φ)⁻¹Ψ {e_dense:.2e}");
    }
    assert!(total_active >= 3, "too few active inequalities: weak test");
}

// ---------------------------------------------------------------------------------------
// (b) Folded SQP with primal-dual block state and qp_solve inside the rule
// ---------------------------------------------------------------------------------------

/// One SQP step for  min ½xᵀQx + pᵀ sin x  s.t.  Ax = b, Gx ≤ h  (the paper's f-SQP):
/// the local QP  min ½zᵀHz + (∇f − Hx)ᵀz  s.t. Az = b, Gz ≤ h  with the exact Hessian
/// H = Q − diag(p ⊙ sin x) gives the next primal iterate and the multipliers (y, z).
/// `eye` is the identity and `ones` the all-ones vector (constants).
#[fold(state = (x, y, z), params(p))]
#[allow(unused_variables, clippy::too_many_arguments)] // the duals are outputs, not inputs
fn sqp_step(
    x: &DVector<f64>,
    y: &DVector<f64>,
    z: &DVector<f64>,
    p: &DVector<f64>,
    q: &DMatrix<f64>,
    a: &DMatrix<f64>,
    b: &DVector<f64>,
    g: &DMatrix<f64>,
    h: &DVector<f64>,
    eye: &DMatrix<f64>,
    ones: &DVector<f64>,
) -> (DVector<f64>, DVector<f64>, DVector<f64>) {
    let curv = p.component_mul(&sin(x));
    let hess = q - (curv * ones.transpose()).component_mul(eye);
    let grad = q * x + p.component_mul(&cos(x));
    let lin = grad - &hess * x;
    let (xn, yn, zn) = qp_solve(&hess, &lin, a, b, g, h);
    (xn, yn, zn)
}

#[test]
fn sqp_block_state_matches_the_kkt_derivative() {
    for seed in 0..3 {
        let mut r = rng(100 + seed);
        let (n, m_eq, m_in) = (10, 3, 8);
        // |p| < min Q keeps H positive definite, so every local QP is convex.
        let mut inst = ncvx_instance(&mut r, n, m_eq, m_in, 0.0);
        inst.p = DVector::from_fn(n, |_, _| r.random_range(-0.45..0.45));
        let Ncvx {
            q,
            p,
            a,
            b,
            g,
            h,
            y0,
            ..
        } = &inst;
        let eye = DMatrix::identity(n, n);
        let ones = DVector::from_element(n, 1.0);
        let (y_start, z_start) = (DVector::zeros(m_eq), DVector::zeros(m_in));
        let sol = sqp_step::solve(
            y0,
            &y_start,
            &z_start,
            p,
            q,
            a,
            b,
            g,
            h,
            &eye,
            &ones,
            &fwd(),
        )
        .expect("SQP converges");
        let (x, y, z) = sqp_step::unpack(&sol.x, [n, m_eq, m_in]);
        assert!(
            sol.iterations < 30,
            "seed {seed}: SQP took {} steps",
            sol.iterations
        );
        let (xs, ys, zs) = sqp_step(&x, &y, &z, p, q, a, b, g, h, &eye, &ones);
        assert!(rel_err(&sqp_step::pack(&xs, &ys, &zs), &sol.x) < 1e-10);

        // The KKT point: stationarity, feasibility, strict complementarity.
        let stat =
            q * &x + p.component_mul(&x.map(f64::cos)) + a.transpose() * &y + g.transpose() * &z;
        assert!(
            stat.amax() < 1e-8,
            "seed {seed}: stationarity {}",
            stat.amax()
        );
        let slack = h - g * &x;
        let active: Vec<usize> = (0..m_in).filter(|&i| z[i] > 1e-8).collect();
        for i in 0..m_in {
            assert!(slack[i] > -1e-8, "seed {seed}: infeasible");
            if active.contains(&i) {
                assert!(slack[i] < 1e-8, "seed {seed}: complementarity");
            } else {
                assert!(slack[i] > 1e-6, "seed {seed}: weakly active constraint {i}");
            }
        }
        assert!(!active.is_empty(), "seed {seed}: no active inequality");

        // Reference d(x, y, z)/dp from the KKT system, z scattered from S.
        let (dx, dnu) = ncvx_kkt_sensitivity(&inst, &x, &active);
        let dim = n + m_eq + m_in;
        let mut dstate = DMatrix::zeros(dim, n);
        dstate.rows_mut(0, n).copy_from(&dx);
        dstate.rows_mut(n, m_eq).copy_from(&dnu.rows(0, m_eq));
        for (s, &i) in active.iter().enumerate() {
            dstate.row_mut(n + m_eq + i).copy_from(&dnu.row(m_eq + s));
        }

        // Folded backward with a loss on every block, L = wᵀ(x, y, z).
        let w = normal_vec(&mut r, dim);
        let expected = dstate.transpose() * &w;
        for opts in methods() {
            let grads =
                sqp_step::backward(&x, &y, &z, p, q, a, b, g, h, &eye, &ones, &w, &opts).unwrap();
            let err = rel_err(&grads.p, &expected);
            assert!(
                err < 1e-8,
                "seed {seed} {:?}: rel err {err:.2e}",
                opts.method
            );
        }
        // Dense Jacobians: (I − Φ)⁻¹ Ψ_p is the same derivative; at a solution the exact-
        // Hessian SQP map has Φ = 0 on the primal block (Newton's quadratic convergence).
        let jac = sqp_step::jacobians(&x, &y, &z, p, q, a, b, g, h, &eye, &ones);
        let full = (DMatrix::identity(dim, dim) - &jac.state)
            .lu()
            .solve(&jac.p)
            .unwrap();
        let err = (&full - &dstate).norm() / dstate.norm();
        assert!(err < 1e-8, "seed {seed}: dense Jacobian rel err {err:.2e}");
        let phi_x = jac.state.columns(0, n).amax();
        assert!(phi_x < 1e-6, "seed {seed}: ∂U/∂x = {phi_x:.2e}");

        // Folded PGD with proj_polyhedron on the same problem reaches the same point and
        // the same primal derivative.
        let alpha = 1.0 / (lambda_max(q) + p.amax());
        let x_pgd = ncvx_pgd::solve(y0, p, q, a, b, g, h, alpha, &fwd())
            .unwrap()
            .x;
        assert!(
            rel_err(&x_pgd, &x) < 1e-9,
            "seed {seed}: PGD and SQP disagree"
        );
        let wx = w.rows(0, n).into_owned();
        let g_pgd = ncvx_pgd::backward(
            &x,
            p,
            q,
            a,
            b,
            g,
            h,
            alpha,
            &wx,
            &BackwardOptions::default(),
        )
        .unwrap();
        let g_sqp = sqp_step::backward(
            &x,
            &y,
            &z,
            p,
            q,
            a,
            b,
            g,
            h,
            &eye,
            &ones,
            &sqp_step::pack(&wx, &DVector::zeros(m_eq), &DVector::zeros(m_in)),
            &BackwardOptions::default(),
        )
        .unwrap();
        assert!(
            rel_err(&g_pgd.p, &g_sqp.p) < 1e-8,
            "seed {seed}: PGD vs SQP gradient"
        );
    }
}

/// One SQP step of  max μᵀx  s.t.  xᵀΣx ≤ κ, 1ᵀx = 1, x ≥ 0  with primal-dual state
/// `(x, lam)`, `lam = [λ_risk; λ_{x≥0}]` (`e1` picks `λ_risk`): the local QP has the
/// Hessian of the Lagrangian `2λ_risk Σ` (plus a proximal `δI`) and the risk constraint
/// linearized at x; `e_low = [0; I]`.
#[fold(state = (x, lam), params(mu))]
#[allow(clippy::too_many_arguments)]
fn risk_sqp(
    x: &DVector<f64>,
    lam: &DVector<f64>,
    mu: &DVector<f64>,
    sigma: &DMatrix<f64>,
    kappa: f64,
    delta: f64,
    eye: &DMatrix<f64>,
    e1: &DVector<f64>,
    e_low: &DMatrix<f64>,
    a: &DMatrix<f64>,
    b: &DVector<f64>,
) -> (DVector<f64>, DVector<f64>) {
    let sx = sigma * x;
    let hess = sigma * (e1.dot(lam) * 2.0) + eye * delta;
    let lin = -(mu + &hess * x);
    let gm = e1 * (sx.clone() * 2.0).transpose() - e_low;
    let hv = e1 * (kappa + x.dot(&sx));
    let (xn, _y, zn) = qp_solve(&hess, &lin, a, b, &gm, &hv);
    (xn, zn)
}

#[test]
fn sqp_with_multiplier_in_the_hessian_matches_the_kkt_derivative() {
    let mut r = rng(77);
    let n = 8;
    let l = normal_mat(&mut r, n, 2) * 0.3;
    let sigma = &l * l.transpose() + DMatrix::identity(n, n);
    let mu = DVector::from_fn(n, |_, _| 1.0 + 0.5 * gauss(&mut r));
    let kappa = 0.3;
    let mut e_low = DMatrix::zeros(n + 1, n);
    e_low.view_mut((1, 0), (n, n)).fill_with_identity();
    let mut e1 = DVector::zeros(n + 1);
    e1[0] = 1.0;
    let (eye, a, b) = (
        DMatrix::identity(n, n),
        DMatrix::from_element(1, n, 1.0),
        DVector::from_element(1, 1.0),
    );
    let x0 = DVector::from_element(n, 1.0 / n as f64);
    let lam0 = DVector::zeros(n + 1);
    for delta in [0.0, 0.3] {
        let sol = risk_sqp::solve(
            &x0,
            &lam0,
            &mu,
            &sigma,
            kappa,
            delta,
            &eye,
            &e1,
            &e_low,
            &a,
            &b,
            &fwd(),
        )
        .expect("SQP converges");
        let (x, lam) = risk_sqp::unpack(&sol.x, [n, n + 1]);
        let lr = lam[0];
        // KKT of the original problem: −μ + 2λΣx + ν1 − s = 0, xᵀΣx = κ, 1ᵀx = 1, x_A = 0.
        let zero: Vec<usize> = (0..n).filter(|&i| x[i] < 1e-9).collect();
        assert!(lr > 1e-3, "δ = {delta}: the risk constraint must be active");
        assert!((x.dot(&(&sigma * &x)) - kappa).abs() < 1e-9);
        assert!(!zero.is_empty() && zero.len() < n - 1, "δ = {delta}: {x}");
        for &i in &zero {
            assert!(lam[1 + i] > 1e-6, "δ = {delta}: weakly active bound {i}");
        }
        let nu = mu.dot(&x) - 2.0 * lr * x.dot(&(&sigma * &x)); // xᵀ(stationarity), sᵀx = 0
        let stat = -&mu + &sigma * &x * (2.0 * lr) + DVector::from_element(n, nu)
            - lam.rows(1, n).into_owned();
        assert!(
            stat.amax() < 1e-7,
            "δ = {delta}: stationarity {}",
            stat.amax()
        );
        // Unknowns (x, λ, ν, s_A); d/dμ of the equations: J d(·) = [I; 0; 0; 0] dμ.
        let k = zero.len();
        let dim = n + 2 + k;
        let sx = &sigma * &x;
        let mut jm = DMatrix::zeros(dim, dim);
        jm.view_mut((0, 0), (n, n))
            .copy_from(&(&sigma * (2.0 * lr)));
        for i in 0..n {
            jm[(i, n)] = 2.0 * sx[i];
            jm[(n, i)] = 2.0 * sx[i];
            jm[(i, n + 1)] = 1.0;
            jm[(n + 1, i)] = 1.0;
        }
        for (t, &i) in zero.iter().enumerate() {
            jm[(i, n + 2 + t)] = -1.0;
            jm[(n + 2 + t, i)] = 1.0;
        }
        let mut rhs = DMatrix::zeros(dim, n);
        rhs.view_mut((0, 0), (n, n)).fill_with_identity();
        let sens = jm.lu().solve(&rhs).expect("nonsingular KKT");
        // The rule's state: x, then lam = [λ_risk; s] with s scattered from A.
        let mut dstate = DMatrix::zeros(2 * n + 1, n);
        dstate.rows_mut(0, n).copy_from(&sens.rows(0, n));
        dstate.row_mut(n).copy_from(&sens.row(n));
        for (t, &i) in zero.iter().enumerate() {
            dstate.row_mut(n + 1 + i).copy_from(&sens.row(n + 2 + t));
        }
        let w = normal_vec(&mut r, 2 * n + 1);
        let want = dstate.transpose() * &w;
        for opts in methods() {
            let g = risk_sqp::backward(
                &x, &lam, &mu, &sigma, kappa, delta, &eye, &e1, &e_low, &a, &b, &w, &opts,
            )
            .unwrap();
            let err = rel_err(&g.mu, &want);
            assert!(
                err < 1e-7,
                "δ = {delta} {:?}: rel err {err:.2e}",
                opts.method
            );
        }
        // With the exact Hessian (δ = 0) the primal block of Φ vanishes; the proximal
        // term makes Φ nonzero, and the folded system still gives the same derivative.
        let jac = risk_sqp::jacobians(
            &x, &lam, &mu, &sigma, kappa, delta, &eye, &e1, &e_low, &a, &b,
        );
        let phi_x = jac.state.columns(0, n).amax();
        if delta == 0.0 {
            assert!(phi_x < 1e-6, "Φ_x = {phi_x:.2e}");
        } else {
            assert!(phi_x > 1e-3, "Φ_x = {phi_x:.2e}");
        }
        let (xs, ls) = risk_sqp(
            &x, &lam, &mu, &sigma, kappa, delta, &eye, &e1, &e_low, &a, &b,
        );
        assert!(rel_err(&risk_sqp::pack(&xs, &ls), &sol.x) < 1e-8);
    }
}

// ---------------------------------------------------------------------------------------
// (c) The other projections inside rules
// ---------------------------------------------------------------------------------------

/// Central finite difference of a scalar function of a scalar.
fn fd_scalar(f: impl Fn(f64) -> f64, x: f64, h: f64) -> f64 {
    (f(x + h) - f(x - h)) / (2.0 * h)
}

/// Central finite-difference gradient of `f` with respect to every entry of a matrix.
fn fd_matrix(f: impl Fn(&DMatrix<f64>) -> f64, m: &DMatrix<f64>, h: f64) -> DMatrix<f64> {
    DMatrix::from_fn(m.nrows(), m.ncols(), |i, j| {
        let (mut p, mut q) = (m.clone(), m.clone());
        p[(i, j)] += h;
        q[(i, j)] -= h;
        (f(&p) - f(&q)) / (2.0 * h)
    })
}

/// The solution of `[H Cᵀ; C 0] [dx; dν] = [r1; r2]` for dense `H`, `C` (the KKT
/// derivative of an equality-constrained problem), returning `dx`.
fn kkt_dx(
    hm: &DMatrix<f64>,
    c: &DMatrix<f64>,
    r1: &DVector<f64>,
    r2: &DVector<f64>,
) -> DVector<f64> {
    let (n, k) = (hm.nrows(), c.nrows());
    let mut kkt = DMatrix::zeros(n + k, n + k);
    kkt.view_mut((0, 0), (n, n)).copy_from(hm);
    kkt.view_mut((0, n), (n, k)).copy_from(&c.transpose());
    kkt.view_mut((n, 0), (k, n)).copy_from(c);
    let mut rhs = DVector::zeros(n + k);
    rhs.rows_mut(0, n).copy_from(r1);
    rhs.rows_mut(n, k).copy_from(r2);
    dense_solve(&kkt, &rhs).rows(0, n).into_owned()
}

/// PGD on  min ½xᵀQx + cᵀx  s.t. ‖x‖ ≤ r.
#[fold(state = x, params(c, r))]
fn ball_pgd(
    x: &DVector<f64>,
    c: &DVector<f64>,
    r: f64,
    q: &DMatrix<f64>,
    alpha: f64,
) -> DVector<f64> {
    proj_l2_ball(&(x - (q * x + c) * alpha), r)
}

#[test]
fn l2_ball_rule_matches_kkt_and_finite_differences() {
    let mut rg = rng(5);
    let n = 10;
    let q = spd(&mut rg, n, 0.3);
    let c = normal_vec(&mut rg, n) * 3.0;
    let r = 0.7;
    let alpha = 1.0 / lambda_max(&q);
    let x0 = DVector::zeros(n);
    let solve = |c: &DVector<f64>, r: f64| ball_pgd::solve(&x0, c, r, &q, alpha, &fwd()).unwrap().x;
    let x = solve(&c, r);
    assert!(
        (x.norm() - r).abs() < 1e-10,
        "the ball constraint must be active"
    );
    assert!(rel_err(&ball_pgd(&x, &c, r, &q, alpha), &x) < 1e-12);
    let w = normal_vec(&mut rg, n);
    // KKT on the sphere: Qx + c + μx = 0, ½‖x‖² = ½r²:
    //   (Q + μI) dx + x dμ = −dc,  xᵀdx = r dr.
    let mu = -(&q * &x + &c).dot(&x) / (r * r);
    assert!(mu > 1e-3, "multiplier {mu}");
    let hm = &q + DMatrix::identity(n, n) * mu;
    let xt = DMatrix::from_row_slice(1, n, x.as_slice());
    let mut dx_dc = DMatrix::zeros(n, n);
    for i in 0..n {
        let col = kkt_dx(
            &hm,
            &xt,
            &-DVector::from_fn(n, |k, _| f64::from(k == i)),
            &DVector::zeros(1),
        );
        dx_dc.set_column(i, &col);
    }
    let dx_dr = kkt_dx(&hm, &xt, &DVector::zeros(n), &DVector::from_element(1, r));
    for opts in methods() {
        let gr = ball_pgd::backward(&x, &c, r, &q, alpha, &w, &opts).unwrap();
        let err_c = rel_err(&gr.c, &(dx_dc.transpose() * &w));
        let err_r = (gr.r - w.dot(&dx_dr)).abs() / w.dot(&dx_dr).abs();
        assert!(
            err_c < 1e-8 && err_r < 1e-8,
            "{:?}: {err_c:.2e} {err_r:.2e}",
            opts.method
        );
    }
    let gr = ball_pgd::backward(&x, &c, r, &q, alpha, &w, &BackwardOptions::default()).unwrap();
    let fd_c = fd_grad(|c| w.dot(&solve(c, r)), &c, 1e-6);
    let fd_r = fd_scalar(|r| w.dot(&solve(&c, r)), r, 1e-6);
    assert!(
        rel_err(&gr.c, &fd_c) < 1e-6,
        "{:.2e}",
        rel_err(&gr.c, &fd_c)
    );
    assert!(
        (gr.r - fd_r).abs() < 1e-6 * fd_r.abs().max(1.0),
        "{} vs {fd_r}",
        gr.r
    );
}

/// PGD on  min ½xᵀQx + cᵀx  s.t. aᵀx = β.
#[fold(state = x, params(c, a, beta))]
fn hyperplane_pgd(
    x: &DVector<f64>,
    c: &DVector<f64>,
    a: &DVector<f64>,
    beta: f64,
    q: &DMatrix<f64>,
    alpha: f64,
) -> DVector<f64> {
    proj_hyperplane(&(x - (q * x + c) * alpha), a, beta)
}

#[test]
fn hyperplane_rule_matches_kkt_and_finite_differences() {
    let mut rg = rng(6);
    let n = 9;
    let q = spd(&mut rg, n, 0.3);
    let c = normal_vec(&mut rg, n);
    let a = normal_vec(&mut rg, n);
    let beta = 0.8;
    let alpha = 1.0 / lambda_max(&q);
    let x0 = DVector::zeros(n);
    let solve = |c: &DVector<f64>, a: &DVector<f64>, beta: f64| {
        hyperplane_pgd::solve(&x0, c, a, beta, &q, alpha, &fwd())
            .unwrap()
            .x
    };
    let x = solve(&c, &a, beta);
    assert!(rel_err(&hyperplane_pgd(&x, &c, &a, beta, &q, alpha), &x) < 1e-12);
    let w = normal_vec(&mut rg, n);
    // KKT: Qx + c + νa = 0, aᵀx = β; adjoint [Q a; aᵀ 0][u; t] = [w; 0]:
    //   dL/dc = −u,  dL/dβ = t,  dL/da = −(ν u + t x)... checked by FD below.
    let nu = -(&q * &x + &c).dot(&a) / a.norm_squared();
    let at = a.transpose();
    let n1 = n + 1;
    let mut kkt = DMatrix::zeros(n1, n1);
    kkt.view_mut((0, 0), (n, n)).copy_from(&q);
    kkt.view_mut((0, n), (n, 1)).copy_from(&a);
    kkt.view_mut((n, 0), (1, n)).copy_from(&at);
    let mut rhs = DVector::zeros(n1);
    rhs.rows_mut(0, n).copy_from(&w);
    let adj = dense_solve(&kkt, &rhs);
    let u = adj.rows(0, n).into_owned();
    let t = adj[n];
    let want_c = -&u;
    let want_beta = t;
    let want_a = -(&u * nu + &x * t);
    for opts in methods() {
        let gr = hyperplane_pgd::backward(&x, &c, &a, beta, &q, alpha, &w, &opts).unwrap();
        let e = [
            rel_err(&gr.c, &want_c),
            rel_err(&gr.a, &want_a),
            (gr.beta - want_beta).abs() / want_beta.abs(),
        ];
        assert!(e.iter().all(|&e| e < 1e-8), "{:?}: {e:?}", opts.method);
    }
    let gr = hyperplane_pgd::backward(&x, &c, &a, beta, &q, alpha, &w, &BackwardOptions::default())
        .unwrap();
    let fd_a = fd_grad(|a| w.dot(&solve(&c, a, beta)), &a, 1e-6);
    let fd_b = fd_scalar(|b| w.dot(&solve(&c, &a, b)), beta, 1e-6);
    assert!(
        rel_err(&gr.a, &fd_a) < 1e-6,
        "{:.2e}",
        rel_err(&gr.a, &fd_a)
    );
    assert!(
        (gr.beta - fd_b).abs() < 1e-6 * fd_b.abs(),
        "{} vs {fd_b}",
        gr.beta
    );
}

/// PGD on  min ½xᵀQx + cᵀx  s.t. Ax = b.
#[fold(state = x, params(c, a, b))]
fn affine_pgd(
    x: &DVector<f64>,
    c: &DVector<f64>,
    a: &DMatrix<f64>,
    b: &DVector<f64>,
    q: &DMatrix<f64>,
    alpha: f64,
) -> DVector<f64> {
    proj_affine(&(x - (q * x + c) * alpha), a, b)
}

#[test]
fn affine_rule_matches_kkt_and_finite_differences() {
    let mut rg = rng(7);
    let (n, m) = (10, 3);
    let q = spd(&mut rg, n, 0.3);
    let c = normal_vec(&mut rg, n);
    let a = normal_mat(&mut rg, m, n);
    let b = normal_vec(&mut rg, m);
    let alpha = 1.0 / lambda_max(&q);
    let x0 = DVector::zeros(n);
    let solve = |c: &DVector<f64>, a: &DMatrix<f64>, b: &DVector<f64>| {
        affine_pgd::solve(&x0, c, a, b, &q, alpha, &fwd())
            .unwrap()
            .x
    };
    let x = solve(&c, &a, &b);
    assert!(rel_err(&affine_pgd(&x, &c, &a, &b, &q, alpha), &x) < 1e-12);
    let w = normal_vec(&mut rg, n);
    // Adjoint of the KKT system [Q Aᵀ; A 0]: [u; t] = K⁻¹ [w; 0];
    //   dL/dc = −u,  dL/db = t,  dL/dA = −(ν uᵀ + t xᵀ).
    let nu = {
        // Aᵀν = −(Qx + c)  (least squares; exact at the solution).
        let r = -(&q * &x + &c);
        dense_solve(&(&a * a.transpose()), &(&a * r))
    };
    let mut kkt = DMatrix::zeros(n + m, n + m);
    kkt.view_mut((0, 0), (n, n)).copy_from(&q);
    kkt.view_mut((0, n), (n, m)).copy_from(&a.transpose());
    kkt.view_mut((n, 0), (m, n)).copy_from(&a);
    let mut rhs = DVector::zeros(n + m);
    rhs.rows_mut(0, n).copy_from(&w);
    let adj = dense_solve(&kkt, &rhs);
    let u = adj.rows(0, n).into_owned();
    let t = adj.rows(n, m).into_owned();
    let want_a = -(&nu * u.transpose() + &t * x.transpose());
    for opts in methods() {
        let gr = affine_pgd::backward(&x, &c, &a, &b, &q, alpha, &w, &opts).unwrap();
        let e = [
            rel_err(&gr.c, &-&u),
            rel_err(&gr.b, &t),
            (&gr.a - &want_a).norm() / want_a.norm(),
        ];
        assert!(e.iter().all(|&e| e < 1e-8), "{:?}: {e:?}", opts.method);
    }
    let gr =
        affine_pgd::backward(&x, &c, &a, &b, &q, alpha, &w, &BackwardOptions::default()).unwrap();
    let fd_a = fd_matrix(|a| w.dot(&solve(&c, a, &b)), &a, 1e-6);
    let fd_b = fd_grad(|b| w.dot(&solve(&c, &a, b)), &b, 1e-6);
    assert!((&gr.a - &fd_a).norm() < 1e-6 * fd_a.norm());
    assert!(rel_err(&gr.b, &fd_b) < 1e-6);
}

/// A quantal-response fixed point  x = softmax((c − Qx)/τ).
#[fold(state = x, params(c, tau))]
fn softmax_fp(x: &DVector<f64>, c: &DVector<f64>, tau: f64, q: &DMatrix<f64>) -> DVector<f64> {
    softmax(&((c - q * x) / tau))
}

/// The same map written with `log_sum_exp`:  exp(z − log Σ exp z).
#[fold(state = x, params(c, tau))]
fn lse_fp(x: &DVector<f64>, c: &DVector<f64>, tau: f64, q: &DMatrix<f64>) -> DVector<f64> {
    let z = (c - q * x) / tau;
    exp(&z.add_scalar(-log_sum_exp(&z)))
}

#[test]
fn softmax_and_log_sum_exp_rules_match_the_closed_form() {
    let mut rg = rng(8);
    let n = 7;
    let q = spd(&mut rg, n, 0.1);
    let c = normal_vec(&mut rg, n);
    let tau = 0.9;
    let x0 = DVector::from_element(n, 1.0 / n as f64);
    let x = softmax_fp::solve(&x0, &c, tau, &q, &fwd()).unwrap().x;
    let x_lse = lse_fp::solve(&x0, &c, tau, &q, &fwd()).unwrap().x;
    assert!(rel_err(&x_lse, &x) < 1e-12);
    assert!(rel_err(&softmax_fp(&x, &c, tau, &q), &x) < 1e-13);
    assert!(rel_err(&lse_fp(&x, &c, tau, &q), &x) < 1e-13);
    let w = normal_vec(&mut rg, n);
    // x = s(z), z = (c − Qx)/τ, J = diag(x) − xxᵀ:  (I + JQ/τ) dx = J (dc − z dτ)/τ.
    let j = DMatrix::from_diagonal(&x) - &x * x.transpose();
    let m = DMatrix::identity(n, n) + &j * &q / tau;
    let dx_dc = m.clone().lu().solve(&(&j / tau)).unwrap();
    let z = (&c - &q * &x) / tau;
    let dx_dtau = m.lu().solve(&(-(&j * &z) / tau)).unwrap();
    let want_c = dx_dc.transpose() * &w;
    let want_tau = w.dot(&dx_dtau);
    for opts in methods() {
        let g1 = softmax_fp::backward(&x, &c, tau, &q, &w, &opts).unwrap();
        let g2 = lse_fp::backward(&x, &c, tau, &q, &w, &opts).unwrap();
        for (name, gc, gt) in [("softmax", &g1.c, g1.tau), ("log_sum_exp", &g2.c, g2.tau)] {
            let e = [rel_err(gc, &want_c), (gt - want_tau).abs() / want_tau.abs()];
            assert!(
                e.iter().all(|&e| e < 1e-9),
                "{name} {:?}: {e:?}",
                opts.method
            );
        }
    }
    let fd_c = fd_grad(
        |c| w.dot(&lse_fp::solve(&x0, c, tau, &q, &fwd()).unwrap().x),
        &c,
        1e-6,
    );
    assert!(
        rel_err(&want_c, &fd_c) < 1e-6,
        "closed form itself: {:.2e}",
        rel_err(&want_c, &fd_c)
    );
}

/// PGD on  min ½xᵀQx − cᵀx  over the top-k polytope {0 ≤ x ≤ 1, Σx = k}.
#[fold(state = x, params(c, k))]
fn capped_pgd(
    x: &DVector<f64>,
    c: &DVector<f64>,
    k: f64,
    q: &DMatrix<f64>,
    alpha: f64,
) -> DVector<f64> {
    proj_capped_simplex(&(x - (q * x - c) * alpha), k)
}

#[test]
fn capped_simplex_rule_matches_free_set_kkt_and_finite_differences() {
    let mut rg = rng(9);
    let n = 12;
    let q = spd(&mut rg, n, 0.2);
    let c = normal_vec(&mut rg, n) * 2.0;
    let k = 3.5;
    let alpha = 1.0 / lambda_max(&q);
    let x0 = DVector::zeros(n);
    let solve =
        |c: &DVector<f64>, k: f64| capped_pgd::solve(&x0, c, k, &q, alpha, &fwd()).unwrap().x;
    let x = solve(&c, k);
    assert!(rel_err(&capped_pgd(&x, &c, k, &q, alpha), &x) < 1e-12);
    let free: Vec<usize> = (0..n)
        .filter(|&i| x[i] > 1e-9 && x[i] < 1.0 - 1e-9)
        .collect();
    let at_one = (0..n).filter(|&i| x[i] >= 1.0 - 1e-9).count();
    assert!(
        free.len() >= 2 && at_one >= 1 && free.len() + at_one < n,
        "weak instance: {x}"
    );
    // On the free set F: [Q_FF 1; 1ᵀ 0] [dx_F; dν] = [dc_F; dk] (bounds stay put).
    let nf = free.len();
    let qff = DMatrix::from_fn(nf, nf, |i, j| q[(free[i], free[j])]);
    let ones = DMatrix::from_element(1, nf, 1.0);
    let w = normal_vec(&mut rg, n);
    let mut want_c = DVector::zeros(n);
    for (s, &i) in free.iter().enumerate() {
        let mut e = DVector::zeros(nf);
        e[s] = 1.0;
        let dxf = kkt_dx(&qff, &ones, &e, &DVector::zeros(1));
        want_c[i] = (0..nf).map(|t| w[free[t]] * dxf[t]).sum();
    }
    let dxf_k = kkt_dx(
        &qff,
        &ones,
        &DVector::zeros(nf),
        &DVector::from_element(1, 1.0),
    );
    let want_k: f64 = (0..nf).map(|t| w[free[t]] * dxf_k[t]).sum();
    for opts in methods() {
        let gr = capped_pgd::backward(&x, &c, k, &q, alpha, &w, &opts).unwrap();
        let e = [
            rel_err(&gr.c, &want_c),
            (gr.k - want_k).abs() / want_k.abs(),
        ];
        assert!(e.iter().all(|&e| e < 1e-8), "{:?}: {e:?}", opts.method);
    }
    let fd_c = fd_grad(|c| w.dot(&solve(c, k)), &c, 1e-6);
    let fd_k = fd_scalar(|k| w.dot(&solve(&c, k)), k, 1e-6);
    assert!(rel_err(&want_c, &fd_c) < 1e-6);
    assert!((want_k - fd_k).abs() < 1e-6 * fd_k.abs());
}

// ---------------------------------------------------------------------------------------
// (d) A user primitive: a small inner solver with hand-written derivatives
// ---------------------------------------------------------------------------------------

/// Solves `u + s u³ = v` elementwise (`s ≥ 0`) by safeguarded Newton: a smooth,
/// monotone "soft clip" whose inverse is known in closed form but whose value is not.
fn cubic_inv(v: &DVector<f64>, s: f64) -> DVector<f64> {
    v.map(|vi| {
        // The root lies between 0 and v; Newton from v converges monotonically (the
        // function is convex on the side of the root that v lies on).
        let mut u = vi;
        for _ in 0..100 {
            let f = u + s * u * u * u - vi;
            let step = f / (1.0 + 3.0 * s * u * u);
            u -= step;
            if step.abs() <= 1e-16 * (1.0 + u.abs()) {
                break;
            }
        }
        u
    })
}

/// `cubic_inv` as a primitive: implicit-function derivatives of `u + s u³ = v`,
/// `∂u/∂v = 1/(1 + 3su²)`, `∂u/∂s = −u³/(1 + 3su²)`.
#[derive(Default)]
struct CubicInv;

struct CubicInvLin {
    out: [Value; 1],
    /// `1/(1 + 3su²)`.
    d: DVector<f64>,
    /// `−u³/(1 + 3su²)`.
    ds: DVector<f64>,
}

impl Primitive for CubicInv {
    type Linearization = CubicInvLin;
    fn name(&self) -> &'static str {
        "cubic_inv"
    }
    fn linearize(&self, args: &[Arg<'_>]) -> Result<CubicInvLin, FoldError> {
        let (Some(Arg::Vector(v)), Some(Arg::Scalar(s))) = (args.first(), args.get(1)) else {
            return Err(FoldError::primitive(
                "cubic_inv",
                "expects (vector, scalar)",
            ));
        };
        if *s < 0.0 {
            return Err(FoldError::primitive("cubic_inv", "s must be nonnegative"));
        }
        let u = cubic_inv(v, *s);
        let d = u.map(|ui| 1.0 / (1.0 + 3.0 * s * ui * ui));
        let ds = u.zip_map(&d, |ui, di| -ui * ui * ui * di);
        Ok(CubicInvLin {
            out: [Value::Vector(u)],
            d,
            ds,
        })
    }
}

impl PrimitiveLinearization for CubicInvLin {
    fn outputs(&self) -> &[Value] {
        &self.out
    }
    fn jvp(&self, tangents: &[Option<Arg<'_>>]) -> Vec<Value> {
        let mut du = DVector::zeros(self.d.len());
        if let Some(Some(Arg::Vector(dv))) = tangents.first() {
            du += self.d.component_mul(dv);
        }
        if let Some(Some(Arg::Scalar(dsc))) = tangents.get(1) {
            du += &self.ds * *dsc;
        }
        vec![Value::Vector(du)]
    }
    fn vjp(&self, cotangents: &[Option<Arg<'_>>], wanted: &[bool]) -> Vec<Option<Value>> {
        let g = match cotangents.first() {
            Some(Some(Arg::Vector(g))) => (*g).clone(),
            _ => DVector::zeros(self.d.len()),
        };
        let want = |i: usize| wanted.get(i).copied().unwrap_or(true);
        vec![
            want(0).then(|| Value::Vector(self.d.component_mul(&g))),
            want(1).then(|| Value::Scalar(self.ds.dot(&g))),
        ]
    }
}

/// A contraction through the user primitive:  x = cubic_inv(c − Mx, s), ‖M‖ < 1.
#[fold(state = x, params(c, s), primitives(cubic_inv))]
fn cubic_fp(x: &DVector<f64>, c: &DVector<f64>, s: f64, m: &DMatrix<f64>) -> DVector<f64> {
    cubic_inv(&(c - m * x), s)
}

/// The same primitive under an explicit type name, with the scalar computed in the rule.
#[derive(Default)]
struct NewtonCubic(CubicInv);

impl Primitive for NewtonCubic {
    type Linearization = CubicInvLin;
    fn name(&self) -> &'static str {
        "cubic_inv"
    }
    fn linearize(&self, args: &[Arg<'_>]) -> Result<CubicInvLin, FoldError> {
        self.0.linearize(args)
    }
}

#[fold(state = x, params(c, s), primitives(cubic_inv = NewtonCubic))]
fn cubic_fp_named(x: &DVector<f64>, c: &DVector<f64>, s: f64, m: &DMatrix<f64>) -> DVector<f64> {
    let half = s * 0.5;
    cubic_inv(&(c - m * x), half + half)
}

#[test]
fn user_primitive_rule_matches_implicit_derivative_and_finite_differences() {
    let mut rg = rng(10);
    let n = 9;
    let mut m = normal_mat(&mut rg, n, n);
    m *= 0.6 / m.clone().singular_values().max();
    let c = normal_vec(&mut rg, n) * 2.0;
    let s = 0.8;
    let x0 = DVector::zeros(n);
    let solve = |c: &DVector<f64>, s: f64| cubic_fp::solve(&x0, c, s, &m, &fwd()).unwrap().x;
    let x = solve(&c, s);
    // The primitive's inverse is explicit: x + s x³ = c − Mx.
    let resid = &x + x.map(|e| s * e * e * e) - (&c - &m * &x);
    assert!(resid.amax() < 1e-12, "not a fixed point: {}", resid.amax());
    assert!(rel_err(&cubic_fp(&x, &c, s, &m), &x) < 1e-13);
    assert!(rel_err(&cubic_fp_named(&x, &c, s, &m), &x) < 1e-13);
    // Closed form by implicit differentiation of F(x) = x + s x³ + Mx − c = 0:
    //   (I + 3s diag(x²) + M) dx = dc − x³ ds.
    let jac = DMatrix::from_diagonal(&x.map(|e| 1.0 + 3.0 * s * e * e)) + &m;
    let w = normal_vec(&mut rg, n);
    let adj = dense_solve(&jac.transpose(), &w);
    let want_c = adj.clone();
    let want_s = -adj.dot(&x.map(|e| e * e * e));
    for opts in methods() {
        let g1 = cubic_fp::backward(&x, &c, s, &m, &w, &opts).unwrap();
        let g2 = cubic_fp_named::backward(&x, &c, s, &m, &w, &opts).unwrap();
        for (name, gc, gs) in [("default type", &g1.c, g1.s), ("named type", &g2.c, g2.s)] {
            let e = [rel_err(gc, &want_c), (gs - want_s).abs() / want_s.abs()];
            assert!(
                e.iter().all(|&e| e < 1e-10),
                "{name} {:?}: {e:?}",
                opts.method
            );
        }
    }
    let fd_c = fd_grad(|c| w.dot(&solve(c, s)), &c, 1e-6);
    let fd_s = fd_scalar(|s| w.dot(&solve(&c, s)), s, 1e-6);
    assert!(
        rel_err(&want_c, &fd_c) < 1e-7,
        "{:.2e}",
        rel_err(&want_c, &fd_c)
    );
    assert!((want_s - fd_s).abs() < 1e-7 * fd_s.abs());
    // A failing user primitive is reported by name, without a panic.
    let err = cubic_fp::backward(&x, &c, -1.0, &m, &w, &BackwardOptions::default()).unwrap_err();
    assert!(
        matches!(&err, FoldError::PrimitiveFailed { primitive, .. } if primitive == "cubic_inv"),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------
// (e) An empty polyhedron: errors, not panics or NaN
// ---------------------------------------------------------------------------------------

#[test]
fn infeasible_polyhedron_is_a_primitive_error() {
    let mut r = rng(11);
    let n = 4;
    let q = DMatrix::identity(n, n);
    let p = normal_vec(&mut r, n);
    let a = normal_mat(&mut r, 1, n);
    let b = DVector::from_element(1, 0.3);
    // x₀ ≤ −1 and −x₀ ≤ −1 (x₀ ≥ 1): empty.
    let mut g = DMatrix::zeros(2, n);
    g[(0, 0)] = 1.0;
    g[(1, 0)] = -1.0;
    let h = DVector::from_element(2, -1.0);
    let y = DVector::zeros(n);
    let w = DVector::from_element(n, 1.0);
    let is_poly_failure = |e: &FoldError| {
        matches!(e, FoldError::PrimitiveFailed { primitive, status }
            if primitive == "proj_polyhedron" && status.contains("Infeasible"))
    };
    let err = ncvx_pgd::solve(&y, &p, &q, &a, &b, &g, &h, 0.5, &fwd()).unwrap_err();
    assert!(is_poly_failure(&err), "solve: {err:?}");
    for opts in methods() {
        let err = ncvx_pgd::backward(&y, &p, &q, &a, &b, &g, &h, 0.5, &w, &opts).unwrap_err();
        assert!(is_poly_failure(&err), "backward {:?}: {err:?}", opts.method);
    }
    let lin = ncvx_pgd::linearize(&y, &p, &q, &a, &b, &g, &h, 0.5);
    let err = Linearized::check(&lin).unwrap_err();
    assert!(is_poly_failure(&err), "linearize: {err:?}");
    // The plain step (the user's function) returns NaN rather than panicking.
    assert!(ncvx_pgd(&y, &p, &q, &a, &b, &g, &h, 0.5)
        .iter()
        .all(|v| v.is_nan()));

    // An infeasible local QP inside the SQP rule is reported the same way.
    let eye = DMatrix::identity(n, n);
    let ones = DVector::from_element(n, 1.0);
    let (z1, z2) = (DVector::zeros(1), DVector::zeros(2));
    let err =
        sqp_step::solve(&y, &z1, &z2, &p, &q, &a, &b, &g, &h, &eye, &ones, &fwd()).unwrap_err();
    assert!(
        matches!(&err, FoldError::PrimitiveFailed { primitive, .. } if primitive == "qp_solve"),
        "{err:?}"
    );
    let gw = DVector::from_element(n + 3, 1.0);
    let err = sqp_step::backward(
        &y,
        &z1,
        &z2,
        &p,
        &q,
        &a,
        &b,
        &g,
        &h,
        &eye,
        &ones,
        &gw,
        &BackwardOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, FoldError::PrimitiveFailed { primitive, .. } if primitive == "qp_solve"),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Known limitation: a user primitive's output is assumed shaped like its first argument
// ---------------------------------------------------------------------------------------

/// `R^k → R^n`: `u = Bv` for a fixed `B` (n × k) held by the primitive's type.
fn expand(v: &DVector<f64>) -> DVector<f64> {
    expand_matrix(v.len()) * v
}

fn expand_matrix(k: usize) -> DMatrix<f64> {
    DMatrix::from_fn(2 * k, k, |i, j| if i % k == j { 1.0 } else { 0.0 })
}

#[derive(Default)]
struct Expand;

struct ExpandLin {
    out: [Value; 1],
    b: DMatrix<f64>,
}

impl Primitive for Expand {
    type Linearization = ExpandLin;
    fn name(&self) -> &'static str {
        "expand"
    }
    fn linearize(&self, args: &[Arg<'_>]) -> Result<ExpandLin, FoldError> {
        let Some(Arg::Vector(v)) = args.first() else {
            return Err(FoldError::primitive("expand", "expects a vector"));
        };
        Ok(ExpandLin {
            out: [Value::Vector(expand(v))],
            b: expand_matrix(v.len()),
        })
    }
}

impl PrimitiveLinearization for ExpandLin {
    fn outputs(&self) -> &[Value] {
        &self.out
    }
    fn jvp(&self, tangents: &[Option<Arg<'_>>]) -> Vec<Value> {
        match tangents.first() {
            Some(Some(Arg::Vector(dv))) => vec![Value::Vector(&self.b * *dv)],
            _ => vec![Value::Vector(DVector::zeros(self.b.nrows()))],
        }
    }
    fn vjp(&self, cotangents: &[Option<Arg<'_>>], _wanted: &[bool]) -> Vec<Option<Value>> {
        match cotangents.first() {
            Some(Some(Arg::Vector(g))) => vec![Some(Value::Vector(self.b.tr_mul(g)))],
            _ => vec![Some(Value::Vector(DVector::zeros(self.b.ncols())))],
        }
    }
}

/// `x = ½ Mx + expand(c)` with `x ∈ R^{2k}`, `c ∈ R^k`.
#[fold(state = x, params(c), primitives(expand))]
fn expand_fp(x: &DVector<f64>, c: &DVector<f64>, m: &DMatrix<f64>) -> DVector<f64> {
    m * x * 0.5 + expand(c)
}

#[test]
fn user_primitive_may_change_the_length() {
    let k = 3;
    let mut r = rng(12);
    let mut m = normal_mat(&mut r, 2 * k, 2 * k);
    m /= m.clone().singular_values().max();
    let c = normal_vec(&mut r, k);
    let x = expand_fp::solve(&DVector::zeros(2 * k), &c, &m, &fwd())
        .expect("well-shaped inputs")
        .x;
    let w = normal_vec(&mut r, 2 * k);
    let g = expand_fp::backward(&x, &c, &m, &w, &BackwardOptions::default())
        .expect("well-shaped inputs");
    // x = (I − M/2)⁻¹ B c:  ∂(wᵀx)/∂c = Bᵀ (I − M/2)⁻ᵀ w.
    let lhs = DMatrix::identity(2 * k, 2 * k) - &m * 0.5;
    let want = expand_matrix(k).tr_mul(&dense_solve(&lhs.transpose(), &w));
    assert!(rel_err(&g.c, &want) < 1e-10);
}
