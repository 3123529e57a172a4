//! The QP layer and the polyhedral projection: values checked by their KKT conditions,
//! derivatives against central finite differences of re-solved problems (every input),
//! adjointness, degenerate and weakly active sets, infeasible and non-finite input.

use fold_runtime::nalgebra::{dvector, DMatrix, DVector};
use fold_runtime::ops::*;
use fold_runtime::{Arg, FoldError, Primitive, PrimitiveLinearization, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

fn randn(rng: &mut StdRng, n: usize) -> DVector<f64> {
    DVector::from_fn(n, |_, _| rng.sample(StandardNormal))
}

fn randn_mat(rng: &mut StdRng, r: usize, c: usize) -> DMatrix<f64> {
    DMatrix::from_fn(r, c, |_, _| rng.sample(StandardNormal))
}

fn central(f: impl Fn(f64) -> DVector<f64>, step: f64) -> DVector<f64> {
    (f(step) - f(-step)) / (2.0 * step)
}

fn assert_close(what: &str, got: &DVector<f64>, want: &DVector<f64>, tol: f64) {
    let scale = 1.0 + want.amax();
    let err = (got - want).amax();
    assert!(
        err <= tol * scale,
        "{what}: error {err:.3e} > {tol:.1e}·{scale:.3e}\n got  {got}\n want {want}"
    );
}

fn assert_adjoint(what: &str, lhs: f64, rhs: f64) {
    let scale = 1.0 + lhs.abs().max(rhs.abs());
    assert!(
        (lhs - rhs).abs() <= 1e-9 * scale,
        "{what}: <w, Ju> = {lhs} but <J'w, u> = {rhs}"
    );
}

fn dot_m(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    a.component_mul(b).sum()
}

/// A random QP instance `(H, p, A, b, G, h)` with a strictly feasible point.
struct Instance {
    hm: DMatrix<f64>,
    p: DVector<f64>,
    a: DMatrix<f64>,
    b: DVector<f64>,
    g: DMatrix<f64>,
    h: DVector<f64>,
}

fn instance(rng: &mut StdRng, n: usize, m: usize, q: usize) -> Instance {
    let x0 = randn(rng, n);
    let mh = randn_mat(rng, n, n);
    let a = randn_mat(rng, m, n);
    let g = randn_mat(rng, q, n);
    let slack = randn(rng, q).map(|s| 0.2 + s.abs());
    Instance {
        hm: mh.transpose() * &mh + DMatrix::identity(n, n) * 0.5,
        p: randn(rng, n) * 4.0,
        b: &a * &x0,
        h: &g * &x0 + slack,
        a,
        g,
    }
}

/// Strict complementarity margin of a solution: min over constraints of max(z, slack).
fn margin(g: &DMatrix<f64>, h: &DVector<f64>, x: &DVector<f64>, z: &DVector<f64>) -> f64 {
    let slack = h - g * x;
    (0..h.len())
        .map(|i| z[i].max(slack[i]))
        .fold(f64::INFINITY, f64::min)
}

/// KKT conditions of `min ½xᵀHx + pᵀx s.t. Ax = b, Gx ≤ h` with our dual signs.
fn assert_kkt(inst: &Instance, x: &DVector<f64>, y: &DVector<f64>, z: &DVector<f64>) {
    let tol = 1e-8 * (1.0 + x.amax() + y.amax() + z.amax());
    let stat = &inst.hm * x + &inst.p + inst.a.transpose() * y + inst.g.transpose() * z;
    assert!(stat.amax() <= tol, "stationarity {}", stat.amax());
    assert!((&inst.a * x - &inst.b).amax() <= tol, "equality");
    let slack = &inst.h - &inst.g * x;
    assert!(slack.min() >= -tol, "inequality");
    assert!(z.min() >= -tol, "dual sign");
    assert!(slack.component_mul(z).amax() <= tol, "complementarity");
}

#[test]
fn qp_solve_satisfies_kkt_and_matches_finite_differences_in_every_input() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut checked = 0;
    let mut active_seen = 0;
    while checked < 8 {
        let (n, m, q) = (
            rng.random_range(2..7),
            rng.random_range(0..3),
            rng.random_range(1..9),
        );
        if m >= n {
            continue;
        }
        let inst = instance(&mut rng, n, m, q);
        let lin = QpSolveLin::new(&inst.hm, &inst.p, &inst.a, &inst.b, &inst.g, &inst.h).unwrap();
        let (x, y, z) = (lin.x().clone(), lin.y().clone(), lin.z().clone());
        assert_kkt(&inst, &x, &y, &z);
        if margin(&inst.g, &inst.h, &x, &z) < 1e-3 {
            continue; // too close to a kink for finite differences
        }
        checked += 1;
        active_seen += lin.active_set().len();
        assert!(!lin.is_degenerate());

        let d = Instance {
            hm: {
                let r = randn_mat(&mut rng, n, n);
                &r + r.transpose()
            },
            p: randn(&mut rng, n),
            a: randn_mat(&mut rng, m, n),
            b: randn(&mut rng, m),
            g: randn_mat(&mut rng, q, n),
            h: randn(&mut rng, q),
        };
        let solve_at = |t: f64, which: usize| -> DVector<f64> {
            let on = |k: usize| if which == k || which == 6 { t } else { 0.0 };
            let (x, y, z) = qp_solve(
                &(&inst.hm + &d.hm * on(0)),
                &(&inst.p + &d.p * on(1)),
                &(&inst.a + &d.a * on(2)),
                &(&inst.b + &d.b * on(3)),
                &(&inst.g + &d.g * on(4)),
                &(&inst.h + &d.h * on(5)),
            );
            DVector::from_iterator(n + m + q, x.iter().chain(y.iter()).chain(z.iter()).copied())
        };
        let zero = QpTangent::default();
        let tangents = [
            QpTangent {
                hm: Some(&d.hm),
                ..zero
            },
            QpTangent {
                p: Some(&d.p),
                ..zero
            },
            QpTangent {
                a: Some(&d.a),
                ..zero
            },
            QpTangent {
                b: Some(&d.b),
                ..zero
            },
            QpTangent {
                g: Some(&d.g),
                ..zero
            },
            QpTangent {
                h: Some(&d.h),
                ..zero
            },
            QpTangent {
                hm: Some(&d.hm),
                p: Some(&d.p),
                a: Some(&d.a),
                b: Some(&d.b),
                g: Some(&d.g),
                h: Some(&d.h),
            },
        ];
        for (which, t) in tangents.iter().enumerate() {
            let (dx, dy, dz) = lin.jvp(t);
            let jvp = DVector::from_iterator(
                n + m + q,
                dx.iter().chain(dy.iter()).chain(dz.iter()).copied(),
            );
            let fd = central(|s| solve_at(s, which), 1e-6);
            assert_close(&format!("qp jvp, input {which}"), &jvp, &fd, 1e-5);
        }

        // VJP: adjoint of the JVP in all inputs and all outputs at once.
        let (wx, wy, wz) = (randn(&mut rng, n), randn(&mut rng, m), randn(&mut rng, q));
        let (dx, dy, dz) = lin.jvp(&tangents[6]);
        let ct = lin.vjp(&wx, &wy, &wz);
        let lhs = wx.dot(&dx) + wy.dot(&dy) + wz.dot(&dz);
        let rhs = dot_m(&ct.hm, &d.hm)
            + ct.p.dot(&d.p)
            + dot_m(&ct.a, &d.a)
            + ct.b.dot(&d.b)
            + dot_m(&ct.g, &d.g)
            + ct.h.dot(&d.h);
        assert_adjoint("qp", lhs, rhs);
        assert!((&ct.hm - ct.hm.transpose()).amax() <= 1e-14, "H̄ symmetric");
    }
    assert!(
        active_seen >= 8,
        "too few active constraints exercised: {active_seen}"
    );
}

#[test]
fn polyhedron_matches_finite_differences_in_every_input() {
    let mut rng = StdRng::seed_from_u64(12);
    let mut checked = 0;
    let mut active_seen = 0;
    while checked < 8 {
        let (n, m, q) = (
            rng.random_range(2..8),
            rng.random_range(0..3),
            rng.random_range(1..10),
        );
        if m >= n {
            continue;
        }
        let inst = instance(&mut rng, n, m, q);
        let v = randn(&mut rng, n) * 3.0;
        let lin = ProjPolyhedronLin::new(&v, &inst.a, &inst.b, &inst.g, &inst.h).unwrap();
        let x = lin.value().clone();
        let as_qp = Instance {
            hm: DMatrix::identity(n, n),
            p: -&v,
            a: inst.a.clone(),
            b: inst.b.clone(),
            g: inst.g.clone(),
            h: inst.h.clone(),
        };
        assert_kkt(&as_qp, &x, lin.y(), lin.z());
        if margin(&inst.g, &inst.h, &x, lin.z()) < 1e-3 {
            continue;
        }
        checked += 1;
        active_seen += lin.active_set().len();
        let (dv, da, db) = (
            randn(&mut rng, n),
            randn_mat(&mut rng, m, n),
            randn(&mut rng, m),
        );
        let (dg, dh) = (randn_mat(&mut rng, q, n), randn(&mut rng, q));
        let at = |t: f64, which: usize| {
            let on = |k: usize| if which == k || which == 5 { t } else { 0.0 };
            proj_polyhedron(
                &(&v + &dv * on(0)),
                &(&inst.a + &da * on(1)),
                &(&inst.b + &db * on(2)),
                &(&inst.g + &dg * on(3)),
                &(&inst.h + &dh * on(4)),
            )
        };
        let zero = PolyhedronTangent::default();
        let all = PolyhedronTangent {
            v: Some(&dv),
            a: Some(&da),
            b: Some(&db),
            g: Some(&dg),
            h: Some(&dh),
        };
        let tangents = [
            PolyhedronTangent {
                v: Some(&dv),
                ..zero
            },
            PolyhedronTangent {
                a: Some(&da),
                ..zero
            },
            PolyhedronTangent {
                b: Some(&db),
                ..zero
            },
            PolyhedronTangent {
                g: Some(&dg),
                ..zero
            },
            PolyhedronTangent {
                h: Some(&dh),
                ..zero
            },
            all,
        ];
        for (which, t) in tangents.iter().enumerate() {
            let fd = central(|s| at(s, which), 1e-6);
            assert_close(
                &format!("polyhedron jvp, input {which}"),
                &lin.jvp(t),
                &fd,
                1e-5,
            );
        }
        let w = randn(&mut rng, n);
        let ct = lin.vjp(&w);
        let rhs =
            ct.v.dot(&dv) + dot_m(&ct.a, &da) + ct.b.dot(&db) + dot_m(&ct.g, &dg) + ct.h.dot(&dh);
        assert_adjoint("polyhedron", w.dot(&lin.jvp(&all)), rhs);
    }
    assert!(
        active_seen >= 8,
        "too few active constraints exercised: {active_seen}"
    );
}

#[test]
fn polyhedron_reduces_to_closed_forms() {
    // A box as a polyhedron: ∂x/∂v is the box mask.
    let v = dvector![-2.0, 0.3, 1.7];
    let g = DMatrix::from_row_slice(
        6,
        3,
        &[
            1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0,
            -1.0,
        ],
    );
    let h = DVector::from_element(6, 1.0);
    let none = DMatrix::zeros(0, 3);
    let lin = ProjPolyhedronLin::new(&v, &none, &DVector::zeros(0), &g, &h).unwrap();
    assert_close("box value", lin.value(), &dvector![-1.0, 0.3, 1.0], 1e-12);
    let u = dvector![1.0, 2.0, 3.0];
    let t = PolyhedronTangent {
        v: Some(&u),
        ..Default::default()
    };
    assert_close("box mask", &lin.jvp(&t), &dvector![0.0, 2.0, 0.0], 1e-12);
    // A hyperplane as a polyhedron.
    let a = DMatrix::from_row_slice(1, 2, &[-0.5, 1.5]);
    let gz = DMatrix::zeros(0, 2);
    let y = proj_polyhedron(
        &dvector![1.0, 2.0],
        &a,
        &dvector![0.3],
        &gz,
        &DVector::zeros(0),
    );
    assert_close("hyperplane", &y, &dvector![1.44, 0.68], 1e-12);
}

#[test]
fn duplicated_constraint_uses_the_pseudo_inverse_average() {
    // x ≤ 1 twice (plus y ≤ 5): v = (3, 0) projects to (1, 0) with both copies active.
    let g = DMatrix::from_row_slice(3, 2, &[1.0, 0.0, 1.0, 0.0, 0.0, 1.0]);
    let h = dvector![1.0, 1.0, 5.0];
    let v = dvector![3.0, 0.0];
    let (none, b0) = (DMatrix::zeros(0, 2), DVector::zeros(0));
    let lin = ProjPolyhedronLin::new(&v, &none, &b0, &g, &h).unwrap();
    assert_close("value", lin.value(), &dvector![1.0, 0.0], 1e-10);
    assert_eq!(lin.active_set(), &[0, 1]);
    assert!(lin.is_degenerate());
    // Moving one copy: the average of the one-sided derivatives (one copy binds each way).
    let e0 = dvector![1.0, 0.0, 0.0];
    let at = |t: f64| proj_polyhedron(&v, &none, &b0, &g, &(&h + &e0 * t));
    let eps = 1e-6;
    let plus = (at(eps) - at(0.0)) / eps;
    let minus = (at(0.0) - at(-eps)) / eps;
    let jvp = lin.jvp(&PolyhedronTangent {
        h: Some(&e0),
        ..Default::default()
    });
    assert_close("average of one-sided", &jvp, &((plus + minus) * 0.5), 1e-6);
    assert_close("half", &jvp, &dvector![0.5, 0.0], 1e-10);
    // Moving both copies together is an ordinary derivative.
    let both = dvector![1.0, 1.0, 0.0];
    let fd = central(
        |t| proj_polyhedron(&v, &none, &b0, &g, &(&h + &both * t)),
        1e-6,
    );
    let jvp = lin.jvp(&PolyhedronTangent {
        h: Some(&both),
        ..Default::default()
    });
    assert_close("both copies", &jvp, &fd, 1e-6);
    // In v: the derivative of the problem with one copy.
    let single = ProjPolyhedronLin::new(
        &v,
        &none,
        &b0,
        &g.rows(1, 2).into_owned(),
        &h.rows(1, 2).into_owned(),
    )
    .unwrap();
    let u = dvector![0.3, -0.7];
    let tv = PolyhedronTangent {
        v: Some(&u),
        ..Default::default()
    };
    assert_close("in v", &lin.jvp(&tv), &single.jvp(&tv), 1e-10);
    assert_adjoint_polyhedron(&lin, 3);
}

#[test]
fn vertex_with_more_active_constraints_than_dimensions() {
    // x ≤ 1, y ≤ 1, x + y ≤ 2 meet at (1, 1); v = (3, 3) lies in the normal cone's
    // interior, so all three duals are positive (the multipliers are not unique).
    let g = DMatrix::from_row_slice(3, 2, &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    let h = dvector![1.0, 1.0, 2.0];
    let v = dvector![3.0, 3.0];
    let (none, b0) = (DMatrix::zeros(0, 2), DVector::zeros(0));
    let lin = ProjPolyhedronLin::new(&v, &none, &b0, &g, &h).unwrap();
    assert_close("value", lin.value(), &dvector![1.0, 1.0], 1e-10);
    assert_eq!(lin.active_set().len(), 3);
    assert!(lin.is_degenerate());
    // The vertex does not move with v.
    let u = dvector![0.4, -0.2];
    let jv = lin.jvp(&PolyhedronTangent {
        v: Some(&u),
        ..Default::default()
    });
    assert_close("d/dv", &jv, &DVector::zeros(2), 1e-10);
    // A perturbation keeping the three lines concurrent: an ordinary derivative.
    let dh = dvector![1.0, -0.5, 0.5];
    let fd = central(
        |t| proj_polyhedron(&v, &none, &b0, &g, &(&h + &dh * t)),
        1e-6,
    );
    let jh = lin.jvp(&PolyhedronTangent {
        h: Some(&dh),
        ..Default::default()
    });
    assert_close("concurrent d/dh", &jh, &fd, 1e-6);
    // Any perturbation: the least-squares solution of G_S dx ≈ dh_S (here G_S = G).
    let dh = dvector![0.0, 0.0, 1.0];
    let ls = g.clone().pseudo_inverse(1e-12).unwrap() * &dh;
    let jh = lin.jvp(&PolyhedronTangent {
        h: Some(&dh),
        ..Default::default()
    });
    assert_close("least squares", &jh, &ls, 1e-10);
    assert_adjoint_polyhedron(&lin, 3);
}

fn assert_adjoint_polyhedron(lin: &ProjPolyhedronLin, q: usize) {
    let mut rng = StdRng::seed_from_u64(99);
    let n = lin.value().len();
    let m = lin.y().len();
    let (dv, da, db) = (
        randn(&mut rng, n),
        randn_mat(&mut rng, m, n),
        randn(&mut rng, m),
    );
    let (dg, dh) = (randn_mat(&mut rng, q, n), randn(&mut rng, q));
    let t = PolyhedronTangent {
        v: Some(&dv),
        a: Some(&da),
        b: Some(&db),
        g: Some(&dg),
        h: Some(&dh),
    };
    let w = randn(&mut rng, n);
    let ct = lin.vjp(&w);
    let rhs = ct.v.dot(&dv) + dot_m(&ct.a, &da) + ct.b.dot(&db) + dot_m(&ct.g, &dg) + ct.h.dot(&dh);
    assert_adjoint("degenerate polyhedron", w.dot(&lin.jvp(&t)), rhs);
}

#[test]
fn weakly_active_constraint_counts_as_inactive() {
    // v on the face x ≤ 1 with a zero dual: x = v.
    let g = DMatrix::from_row_slice(2, 2, &[1.0, 0.0, 0.0, 1.0]);
    let h = dvector![1.0, 4.0];
    let v = dvector![1.0, 0.5];
    let (none, b0) = (DMatrix::zeros(0, 2), DVector::zeros(0));
    let lin = ProjPolyhedronLin::new(&v, &none, &b0, &g, &h).unwrap();
    assert_close("value", lin.value(), &v, 1e-9);
    assert!(lin.active_set().is_empty());
    let e0 = dvector![1.0, 0.0];
    let jvp = lin.jvp(&PolyhedronTangent {
        v: Some(&e0),
        ..Default::default()
    });
    // The one-sided derivative into the interior.
    let eps = 1e-6;
    let inward = (proj_polyhedron(&v, &none, &b0, &g, &h)
        - proj_polyhedron(&(&v - &e0 * eps), &none, &b0, &g, &h))
        / eps;
    assert_close("inward", &jvp, &inward, 1e-5);
    assert_close("identity", &jvp, &e0, 1e-12);
    // The same for the QP layer: z stays 0 and so does its derivative.
    let (x, _, z) = qp_solve(&DMatrix::identity(2, 2), &-&v, &none, &b0, &g, &h);
    assert_close("qp value", &x, &v, 1e-9);
    assert_close("qp dual", &z, &DVector::zeros(2), 1e-9);
}

#[test]
fn infeasible_and_non_finite_inputs_fail_cleanly() {
    // x ≤ 0 and −x ≤ −1: empty.
    let g = DMatrix::from_row_slice(2, 1, &[1.0, -1.0]);
    let h = dvector![0.0, -1.0];
    let v = dvector![0.5];
    let (none, b0) = (DMatrix::zeros(0, 1), DVector::zeros(0));
    match try_proj_polyhedron(&v, &none, &b0, &g, &h) {
        Err(FoldError::PrimitiveFailed { primitive, status }) => {
            assert_eq!(primitive, "proj_polyhedron");
            assert!(status.contains("Infeasible"), "status {status}");
        }
        other => panic!("expected PrimitiveFailed, got {other:?}"),
    }
    assert!(proj_polyhedron(&v, &none, &b0, &g, &h)[0].is_nan());
    let args = [
        Arg::Vector(&v),
        Arg::Matrix(&none),
        Arg::Vector(&b0),
        Arg::Matrix(&g),
        Arg::Vector(&h),
    ];
    assert!(matches!(
        ProjPolyhedron.linearize(&args),
        Err(FoldError::PrimitiveFailed { .. })
    ));
    // Inconsistent equalities in the QP layer.
    let a = DMatrix::from_row_slice(2, 1, &[1.0, 1.0]);
    let hm = DMatrix::identity(1, 1);
    let gz = DMatrix::zeros(0, 1);
    match try_qp_solve(&hm, &v, &a, &dvector![0.0, 1.0], &gz, &b0) {
        Err(FoldError::PrimitiveFailed { primitive, .. }) => assert_eq!(primitive, "qp_solve"),
        other => panic!("expected PrimitiveFailed, got {other:?}"),
    }
    // Unbounded: H = 0, p ≠ 0, no constraints.
    let zero = DMatrix::zeros(1, 1);
    assert!(try_qp_solve(&zero, &v, &none, &b0, &gz, &b0).is_err());
    // Non-finite and mis-shaped input.
    let bad = dvector![f64::NAN];
    assert!(matches!(
        try_proj_polyhedron(&v, &none, &b0, &g, &dvector![0.0, f64::INFINITY]),
        Err(FoldError::NonFinite { .. })
    ));
    assert!(matches!(
        try_qp_solve(&hm, &bad, &none, &b0, &gz, &b0),
        Err(FoldError::NonFinite { .. })
    ));
    assert!(matches!(
        try_proj_polyhedron(&v, &none, &b0, &g, &dvector![0.0]),
        Err(FoldError::DimensionMismatch { .. })
    ));
    let (x, y, z) = qp_solve(&hm, &bad, &none, &b0, &gz, &b0);
    assert!(x[0].is_nan() && y.is_empty() && z.is_empty());
}

#[test]
fn semidefinite_hessian_and_unconstrained_problems() {
    // H = diag(1, 0): the second coordinate is fixed by the constraint x₂ ≥ 1 (active).
    let hm = DMatrix::from_diagonal(&dvector![1.0, 0.0]);
    let p = dvector![-0.5, 2.0];
    let g = DMatrix::from_row_slice(1, 2, &[0.0, -1.0]);
    let h = dvector![-1.0];
    let (none, b0) = (DMatrix::zeros(0, 2), DVector::zeros(0));
    let lin = QpSolveLin::new(&hm, &p, &none, &b0, &g, &h).unwrap();
    assert_close("value", lin.x(), &dvector![0.5, 1.0], 1e-9);
    assert_close("dual", lin.z(), &dvector![2.0], 1e-9);
    let (dp, dh) = (dvector![0.3, -0.2], dvector![0.7]);
    let fd = central(
        |t| {
            let (x, _, z) = qp_solve(&hm, &(&p + &dp * t), &none, &b0, &g, &(&h + &dh * t));
            DVector::from_iterator(3, x.iter().chain(z.iter()).copied())
        },
        1e-6,
    );
    let (dx, _, dz) = lin.jvp(&QpTangent {
        p: Some(&dp),
        h: Some(&dh),
        ..Default::default()
    });
    let jvp = DVector::from_iterator(3, dx.iter().chain(dz.iter()).copied());
    assert_close("semidefinite", &jvp, &fd, 1e-6);

    // No constraints at all: x = −H⁻¹p.
    let hm = DMatrix::from_row_slice(2, 2, &[2.0, 0.5, 0.5, 1.0]);
    let gz = DMatrix::zeros(0, 2);
    let lin = QpSolveLin::new(&hm, &p, &none, &b0, &gz, &b0).unwrap();
    let want = -hm.clone().lu().solve(&p).unwrap();
    assert_close("unconstrained", lin.x(), &want, 1e-10);
    let (dx, _, _) = lin.jvp(&QpTangent {
        p: Some(&dp),
        ..Default::default()
    });
    assert_close(
        "unconstrained d/dp",
        &dx,
        &-hm.lu().solve(&dp).unwrap(),
        1e-10,
    );
}

#[test]
fn primitive_trait_for_qp_and_polyhedron() {
    let mut rng = StdRng::seed_from_u64(13);
    let inst = instance(&mut rng, 4, 1, 5);
    let args = [
        Arg::Matrix(&inst.hm),
        Arg::Vector(&inst.p),
        Arg::Matrix(&inst.a),
        Arg::Vector(&inst.b),
        Arg::Matrix(&inst.g),
        Arg::Vector(&inst.h),
    ];
    let lin = QpSolve.linearize(&args).unwrap();
    assert_eq!(QpSolve.name(), "qp_solve");
    let direct = QpSolveLin::new(&inst.hm, &inst.p, &inst.a, &inst.b, &inst.g, &inst.h).unwrap();
    assert_eq!(lin.outputs().len(), 3);
    assert_eq!(lin.outputs()[0], Value::Vector(direct.x().clone()));
    let dp = randn(&mut rng, 4);
    let out = PrimitiveLinearization::jvp(&lin, &[None, Some(Arg::Vector(&dp))]);
    let (dx, dy, dz) = direct.jvp(&QpTangent {
        p: Some(&dp),
        ..Default::default()
    });
    assert_eq!(
        out,
        vec![Value::Vector(dx), Value::Vector(dy), Value::Vector(dz)]
    );
    let gx = randn(&mut rng, 4);
    let ct = PrimitiveLinearization::vjp(
        &lin,
        &[Some(Arg::Vector(&gx)), None, None],
        &[false, true, false, false, false, true],
    );
    let want = direct.vjp(&gx, &DVector::zeros(1), &DVector::zeros(5));
    assert_eq!(ct.len(), 6);
    assert_eq!(ct[1], Some(Value::Vector(want.p)));
    assert_eq!(ct[5], Some(Value::Vector(want.h)));
    assert!(ct[0].is_none() && ct[2].is_none());

    let v = randn(&mut rng, 4) * 3.0;
    let pargs = [
        Arg::Vector(&v),
        Arg::Matrix(&inst.a),
        Arg::Vector(&inst.b),
        Arg::Matrix(&inst.g),
        Arg::Vector(&inst.h),
    ];
    let plin = ProjPolyhedron.linearize(&pargs).unwrap();
    let direct = ProjPolyhedronLin::new(&v, &inst.a, &inst.b, &inst.g, &inst.h).unwrap();
    assert_eq!(plin.outputs(), &[Value::Vector(direct.value().clone())]);
    let out = PrimitiveLinearization::jvp(&plin, &[Some(Arg::Vector(&gx))]);
    let want = direct.jvp(&PolyhedronTangent {
        v: Some(&gx),
        ..Default::default()
    });
    assert_eq!(out, vec![Value::Vector(want)]);
    // Wrong shapes: NaN, not a panic.
    let short = dvector![1.0];
    let out = PrimitiveLinearization::jvp(&plin, &[Some(Arg::Vector(&short))]);
    assert!(matches!(&out[0], Value::Vector(x) if x.iter().all(|e| e.is_nan())));
    assert!(ProjPolyhedron.linearize(&pargs[..4]).is_err());
}

#[test]
fn nonconvex_hessian_is_rejected() {
    let hm = DMatrix::from_diagonal(&dvector![1.0, -1.0]);
    let (none, b0) = (DMatrix::zeros(0, 2), DVector::zeros(0));
    match try_qp_solve(&hm, &dvector![0.0, 0.0], &none, &b0, &none, &b0) {
        Err(FoldError::PrimitiveFailed { primitive, .. }) => assert_eq!(primitive, "qp_solve"),
        other => panic!("expected PrimitiveFailed, got {other:?}"),
    }
}

#[test]
fn dependent_active_rows_keep_valid_duals() {
    // x ≤ 1, y ≤ 1, x + y ≤ 2 at the vertex (1, 1) with v − x = (2, 0.2): the
    // minimum-norm multipliers (1.27, −0.53, 0.73) have a wrong sign, so the layer keeps
    // the solver's nonnegative ones; the primal solution is still polished.
    let g = DMatrix::from_row_slice(3, 2, &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    let h = dvector![1.0, 1.0, 2.0];
    let v = dvector![3.0, 1.2];
    let (none, b0) = (DMatrix::zeros(0, 2), DVector::zeros(0));
    let lin = ProjPolyhedronLin::new(&v, &none, &b0, &g, &h).unwrap();
    assert_close("value", lin.value(), &dvector![1.0, 1.0], 1e-12);
    let z = lin.z();
    assert!(z.min() >= 0.0, "duals {z}");
    let stat = lin.value() - &v + g.transpose() * z;
    assert!(stat.amax() <= 1e-6, "stationarity {stat}");
    assert!(lin.is_degenerate());
    let u = dvector![0.1, 0.05];
    let jv = lin.jvp(&PolyhedronTangent {
        v: Some(&u),
        ..Default::default()
    });
    assert_close("d/dv at the vertex", &jv, &DVector::zeros(2), 1e-10);
    assert_adjoint_polyhedron(&lin, 3);
}
