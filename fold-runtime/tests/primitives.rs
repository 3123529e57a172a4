//! Closed-form primitives (softmax, log-sum-exp, box, soft threshold, simplex, capped
//! simplex, l2 ball, hyperplane, affine): values against independent references, JVPs
//! against central finite differences of the value functions, VJPs by adjointness.

use fold_runtime::nalgebra::{dvector, DMatrix, DVector};
use fold_runtime::ops::*;
use fold_runtime::{Arg, FoldError, Primitive, PrimitiveLinearization, Value};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

fn randn(rng: &mut StdRng, n: usize) -> DVector<f64> {
    DVector::from_fn(n, |_, _| rng.sample(StandardNormal))
}

fn randn_mat(rng: &mut StdRng, r: usize, c: usize) -> DMatrix<f64> {
    DMatrix::from_fn(r, c, |_, _| rng.sample(StandardNormal))
}

/// Central difference `(f(t) − f(−t)) / 2t` of a curve `f(t)` at 0.
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

fn assert_scalar(what: &str, got: f64, want: f64, tol: f64) {
    let scale = 1.0 + want.abs();
    assert!(
        (got - want).abs() <= tol * scale,
        "{what}: got {got}, want {want}"
    );
}

/// `⟨w, J u⟩ = ⟨Jᵀ w, u⟩` for the given products.
fn assert_adjoint(what: &str, w_ju: f64, jtw_u: f64) {
    let scale = 1.0 + w_ju.abs().max(jtw_u.abs());
    assert!(
        (w_ju - jtw_u).abs() <= 1e-10 * scale,
        "{what}: <w, Ju> = {w_ju} but <J'w, u> = {jtw_u}"
    );
}

// ---------------------------------------------------------------- softmax, log-sum-exp

#[test]
fn softmax_and_lse_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(1);
    for n in [1, 2, 5, 20] {
        let v = randn(&mut rng, n) * 3.0;
        let (u, w) = (randn(&mut rng, n), randn(&mut rng, n));
        let lin = SoftmaxLin::new(&v).unwrap();
        let fd = central(|t| softmax(&(&v + &u * t)), 1e-6);
        assert_close("softmax jvp", &lin.jvp(&u), &fd, 1e-8);
        assert_adjoint("softmax", w.dot(&lin.jvp(&u)), lin.vjp(&w).dot(&u));
        // Closed form diag(s) − ssᵀ.
        let s = lin.value();
        let j = DMatrix::from_diagonal(s) - s * s.transpose();
        assert_close("softmax closed form", &lin.jvp(&u), &(&j * &u), 1e-12);

        let lse = LogSumExpLin::new(&v).unwrap();
        let fd = (log_sum_exp(&(&v + &u * 1e-6)) - log_sum_exp(&(&v - &u * 1e-6))) / 2e-6;
        assert_scalar("lse jvp", lse.jvp(&u), fd, 1e-8);
        assert_adjoint("lse", 0.7 * lse.jvp(&u), lse.vjp(0.7).dot(&u));
        assert_close("lse gradient", lse.gradient(), s, 1e-14);
        let naive = v.map(f64::exp).sum().ln();
        assert_scalar("lse value", lse.value(), naive, 1e-13);
    }
}

#[test]
fn softmax_and_lse_are_stable_and_reject_non_finite() {
    let v = dvector![1000.0, 1000.0, -1000.0];
    let s = softmax(&v);
    assert_close("softmax large", &s, &dvector![0.5, 0.5, 0.0], 1e-15);
    assert_scalar("lse large", log_sum_exp(&v), 1000.0 + 2f64.ln(), 1e-15);
    let bad = dvector![1.0, f64::NAN];
    assert!(matches!(
        try_softmax(&bad),
        Err(FoldError::NonFinite { .. })
    ));
    assert!(matches!(
        try_log_sum_exp(&bad),
        Err(FoldError::NonFinite { .. })
    ));
    assert!(softmax(&bad).iter().all(|x| x.is_nan()));
    assert!(log_sum_exp(&bad).is_nan());
    assert!(try_log_sum_exp(&DVector::zeros(0)).is_err());
}

// ---------------------------------------------------------------- box, soft threshold

#[test]
fn box_mask_closed_form_and_bounds() {
    let v = dvector![-2.0, -0.5, 0.3, 0.9, 1.7];
    let lin = ProjBoxLin::new(&v, -1.0, 1.0).unwrap();
    assert_eq!(lin.value(), &dvector![-1.0, -0.5, 0.3, 0.9, 1.0]);
    assert_eq!(lin.mask(), dvector![0.0, 1.0, 1.0, 1.0, 0.0]);
    let u = dvector![1.0, 2.0, 3.0, 4.0, 5.0];
    assert_eq!(
        lin.jvp(&u, 10.0, 100.0),
        dvector![10.0, 2.0, 3.0, 4.0, 100.0]
    );
    let (dv, dlo, dhi) = lin.vjp(&u);
    assert_eq!(
        (dv, dlo, dhi),
        (dvector![0.0, 2.0, 3.0, 4.0, 0.0], 1.0, 5.0)
    );
    // FD in (v, lo, hi) at a point away from the kinks.
    let fd = central(
        |t| proj_box(&(&v + &u * t), -1.0 + 0.3 * t, 1.0 - 0.2 * t),
        1e-6,
    );
    assert_close("box fd", &lin.jvp(&u, 0.3, -0.2), &fd, 1e-8);
    // A tie counts as at the bound.
    let tie = ProjBoxLin::new(&dvector![1.0], -1.0, 1.0).unwrap();
    assert_eq!(tie.mask(), dvector![0.0]);
    assert!(try_proj_box(&v, 1.0, -1.0).is_err());
}

#[test]
fn soft_threshold_matches_finite_differences() {
    let mut rng = StdRng::seed_from_u64(2);
    let v = randn(&mut rng, 12);
    let t = 0.4;
    let (u, w) = (randn(&mut rng, 12), randn(&mut rng, 12));
    let lin = SoftThresholdLin::new(&v, t).unwrap();
    let fd = central(|s| soft_threshold(&(&v + &u * s), t + 0.5 * s), 1e-7);
    assert_close("soft threshold", &lin.jvp(&u, 0.5), &fd, 1e-7);
    let (dv, dt) = lin.vjp(&w);
    assert_adjoint(
        "soft threshold",
        w.dot(&lin.jvp(&u, 0.5)),
        dv.dot(&u) + 0.5 * dt,
    );
}

// ---------------------------------------------------------------- simplex

/// Reference: the sort-based projection (Held, Wolfe, Crowder 1974), independent of the
/// library's Condat algorithm.
fn simplex_reference(v: &DVector<f64>, r: f64) -> DVector<f64> {
    let mut s: Vec<f64> = v.iter().copied().collect();
    s.sort_by(|a, b| b.total_cmp(a));
    let mut cum = 0.0;
    let mut tau = 0.0;
    for (i, &x) in s.iter().enumerate() {
        cum += x;
        let t = (cum - r) / (i + 1) as f64;
        if x - t > 0.0 {
            tau = t;
        }
    }
    v.map(|x| (x - tau).max(0.0))
}

/// The smallest distance of a coordinate to the simplex threshold (a kink margin).
fn simplex_margin(v: &DVector<f64>, y: &DVector<f64>) -> f64 {
    let i = y.iter().position(|&x| x > 0.0).unwrap();
    let tau = v[i] - y[i];
    v.iter()
        .map(|&x| (x - tau).abs())
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn simplex_values_match_sort_reference() {
    let mut rng = StdRng::seed_from_u64(3);
    for &scale in &[1.0, 1e6] {
        for n in [1, 2, 3, 10, 100, 1000] {
            for _ in 0..5 {
                let v = randn(&mut rng, n) * scale;
                let r = scale * rng.random_range(0.1..3.0);
                let y = proj_simplex(&v, r);
                assert_close("simplex value", &y, &simplex_reference(&v, r), 1e-12);
                assert!(y.iter().all(|&x| x >= 0.0));
                assert_scalar("simplex sum", y.sum(), r, 1e-12);
            }
        }
    }
    // Ties: every coordinate equal.
    let y = proj_simplex(&DVector::from_element(4, 7.0), 2.0);
    assert_close("ties", &y, &DVector::from_element(4, 0.5), 1e-15);
}

#[test]
fn simplex_derivatives_match_finite_differences_at_scales_1_and_1e6() {
    let mut rng = StdRng::seed_from_u64(4);
    for &scale in &[1.0, 1e6] {
        let mut checked = 0;
        while checked < 6 {
            let n = rng.random_range(2..40);
            let v = randn(&mut rng, n) * scale;
            let r = scale * rng.random_range(0.5..3.0);
            let lin = ProjSimplexLin::new(&v, r).unwrap();
            let step = 1e-6 * scale;
            if simplex_margin(&v, lin.value()) < 100.0 * step {
                continue; // too close to a kink for finite differences
            }
            checked += 1;
            let (u, w) = (randn(&mut rng, n), randn(&mut rng, n));
            let dr = rng.sample::<f64, _>(StandardNormal);
            let fd = central(|t| proj_simplex(&(&v + &u * t), r + dr * t), step);
            // The Jacobian is scale-free; FD error is relative to the step.
            assert_close("simplex jvp", &lin.jvp(&u, dr), &fd, 1e-7);
            let (dv, dr_bar) = lin.vjp(&w);
            assert_adjoint("simplex", w.dot(&lin.jvp(&u, dr)), dv.dot(&u) + dr_bar * dr);

            // Closed form: diag(s) − ssᵀ/|S|, ∂y/∂r = s/|S|.
            let s = lin.value().map(|x| f64::from(x > 0.0));
            let k = s.sum();
            let j = DMatrix::from_diagonal(&s) - &s * s.transpose() / k;
            assert_close("simplex closed form", &lin.jvp(&u, 0.0), &(&j * &u), 1e-14);
            assert_close("simplex d/dr", &lin.jvp(&(&u * 0.0), 1.0), &(&s / k), 1e-14);
        }
    }
}

#[test]
fn simplex_rejects_bad_radius_and_non_finite_input() {
    let v = dvector![0.3, 0.1];
    for r in [0.0, -1.0, f64::NAN] {
        assert!(try_proj_simplex(&v, r).is_err(), "r = {r}");
        assert!(proj_simplex(&v, r).iter().all(|x| x.is_nan()));
    }
    assert!(matches!(
        try_proj_simplex(&v, -1.0),
        Err(FoldError::PrimitiveFailed { primitive, .. }) if primitive == "proj_simplex"
    ));
    assert!(matches!(
        try_proj_simplex(&dvector![f64::INFINITY, 0.0], 1.0),
        Err(FoldError::NonFinite { .. })
    ));
    assert!(try_proj_simplex(&DVector::zeros(0), 1.0).is_err());
}

// ---------------------------------------------------------------- capped simplex

/// Reference: bisection on τ for `Σ clamp(vᵢ − τ, 0, 1) = k` (independent of the
/// library's sorted scan).
fn capped_reference(v: &DVector<f64>, k: f64) -> DVector<f64> {
    let g = |tau: f64| v.iter().map(|&x| (x - tau).clamp(0.0, 1.0)).sum::<f64>();
    let (mut lo, mut hi) = (v.min() - 1.0, v.max());
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if g(mid) > k {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let tau = 0.5 * (lo + hi);
    v.map(|x| (x - tau).clamp(0.0, 1.0))
}

#[test]
fn capped_simplex_values_and_derivatives() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut checked = 0;
    while checked < 20 {
        let n = rng.random_range(2..30);
        let v = randn(&mut rng, n);
        let k = rng.random_range(0.2..(n as f64 - 0.2));
        let lin = ProjCappedSimplexLin::new(&v, k).unwrap();
        let y = lin.value();
        assert_close("capped value", y, &capped_reference(&v, k), 1e-10);
        assert_scalar("capped sum", y.sum(), k, 1e-12);
        // Kink margin: every coordinate at least 1e-4 from a bound.
        let margin = y
            .iter()
            .zip(v.iter())
            .map(|(&yi, _)| yi.abs().min((yi - 1.0).abs()))
            .filter(|&d| d > 0.0)
            .fold(f64::INFINITY, f64::min);
        let tau = (0..n)
            .find(|&i| y[i] > 0.0 && y[i] < 1.0)
            .map(|i| v[i] - y[i]);
        let Some(tau) = tau else { continue };
        let edge = v
            .iter()
            .map(|&x| (x - tau).abs().min((x - tau - 1.0).abs()))
            .fold(f64::INFINITY, f64::min);
        if edge < 1e-4 || margin < 1e-4 {
            continue;
        }
        checked += 1;
        let (u, w) = (randn(&mut rng, n), randn(&mut rng, n));
        let dk = 0.3;
        let fd = central(|t| proj_capped_simplex(&(&v + &u * t), k + dk * t), 1e-7);
        assert_close("capped jvp", &lin.jvp(&u, dk), &fd, 1e-7);
        let (dv, dk_bar) = lin.vjp(&w);
        assert_adjoint("capped", w.dot(&lin.jvp(&u, dk)), dv.dot(&u) + dk_bar * dk);
        let f = y.map(|x| f64::from(x > 0.0 && x < 1.0));
        let nf = f.sum();
        let j = DMatrix::from_diagonal(&f) - &f * f.transpose() / nf;
        assert_close("capped closed form", &lin.jvp(&u, 0.0), &(&j * &u), 1e-14);
        assert_close("capped d/dk", &lin.jvp(&(&u * 0.0), 1.0), &(&f / nf), 1e-14);
    }
}

#[test]
fn capped_simplex_edges() {
    let v = dvector![0.3, -1.0, 2.0];
    assert_eq!(proj_capped_simplex(&v, 0.0), dvector![0.0, 0.0, 0.0]);
    assert_eq!(proj_capped_simplex(&v, 3.0), dvector![1.0, 1.0, 1.0]);
    // An integral solution: the top-2 indicator; no free coordinates, zero derivative.
    let lin = ProjCappedSimplexLin::new(&dvector![5.0, 0.0, 4.0, -3.0], 2.0).unwrap();
    assert_eq!(lin.value(), &dvector![1.0, 0.0, 1.0, 0.0]);
    assert!(lin.support().is_empty());
    assert_eq!(
        lin.jvp(&dvector![1.0, 2.0, 3.0, 4.0], 1.0),
        DVector::zeros(4)
    );
    for k in [-0.1, 3.5, f64::NAN] {
        assert!(try_proj_capped_simplex(&v, k).is_err(), "k = {k}");
        assert!(proj_capped_simplex(&v, k).iter().all(|x| x.is_nan()));
    }
}

// ---------------------------------------------------------------- l2 ball

#[test]
fn l2_ball_closed_forms_and_finite_differences() {
    let mut rng = StdRng::seed_from_u64(6);
    for n in [1, 3, 8] {
        let x = randn(&mut rng, n);
        let nx = x.norm();
        let (u, w) = (randn(&mut rng, n), randn(&mut rng, n));
        // Outside.
        let r = 0.5 * nx;
        let lin = ProjL2BallLin::new(&x, r).unwrap();
        assert_close("ball value", lin.value(), &(&x * (r / nx)), 1e-15);
        let j = (DMatrix::identity(n, n) - &x * x.transpose() / (nx * nx)) * (r / nx);
        assert_close("ball closed form", &lin.jvp(&u, 0.0), &(&j * &u), 1e-14);
        assert_close("ball d/dr", &lin.jvp(&(&u * 0.0), 1.0), &(&x / nx), 1e-14);
        let fd = central(|t| proj_l2_ball(&(&x + &u * t), r + 0.7 * t), 1e-6);
        assert_close("ball fd", &lin.jvp(&u, 0.7), &fd, 1e-8);
        let (dv, dr) = lin.vjp(&w);
        assert_adjoint("ball", w.dot(&lin.jvp(&u, 0.7)), dv.dot(&u) + 0.7 * dr);
        // Inside.
        let lin = ProjL2BallLin::new(&x, 2.0 * nx).unwrap();
        assert!(lin.is_inside());
        assert_close("ball inside", &lin.jvp(&u, 1.0), &u, 0.0);
        assert_eq!(lin.vjp(&w), (w.clone(), 0.0));
    }
    // On the sphere: counted as inside.
    let lin = ProjL2BallLin::new(&dvector![3.0, 4.0], 5.0).unwrap();
    assert!(lin.is_inside());
    assert!(try_proj_l2_ball(&dvector![1.0], -1.0).is_err());
    assert!(matches!(
        try_proj_l2_ball(&dvector![f64::NAN], 1.0),
        Err(FoldError::NonFinite { .. })
    ));
}

// ---------------------------------------------------------------- hyperplane

#[test]
fn hyperplane_example_closed_form_and_finite_differences() {
    let x = dvector![1.0, 2.0];
    let a = dvector![-0.5, 1.5];
    let y = proj_hyperplane(&x, &a, 0.3);
    assert_close("hyperplane example", &y, &dvector![1.44, 0.68], 1e-14);

    let mut rng = StdRng::seed_from_u64(7);
    for n in [1, 2, 6] {
        let (v, a) = (randn(&mut rng, n), randn(&mut rng, n));
        let b = rng.sample::<f64, _>(StandardNormal);
        let lin = ProjHyperplaneLin::new(&v, &a, b).unwrap();
        let (u, da, w) = (randn(&mut rng, n), randn(&mut rng, n), randn(&mut rng, n));
        let q = a.norm_squared();
        let j = DMatrix::identity(n, n) - &a * a.transpose() / q;
        assert_close(
            "hyperplane closed form",
            &lin.jvp(&u, &(&a * 0.0), 0.0),
            &(&j * &u),
            1e-13,
        );
        let db = 0.4;
        let fd = central(
            |t| proj_hyperplane(&(&v + &u * t), &(&a + &da * t), b + db * t),
            1e-6,
        );
        assert_close("hyperplane fd", &lin.jvp(&u, &da, db), &fd, 1e-7);
        let (gv, ga, gb) = lin.vjp(&w);
        assert_adjoint(
            "hyperplane",
            w.dot(&lin.jvp(&u, &da, db)),
            gv.dot(&u) + ga.dot(&da) + gb * db,
        );
    }
    assert!(matches!(
        try_proj_hyperplane(&x, &dvector![0.0, 0.0], 1.0),
        Err(FoldError::PrimitiveFailed { .. })
    ));
    assert!(matches!(
        try_proj_hyperplane(&x, &dvector![1.0], 1.0),
        Err(FoldError::DimensionMismatch { .. })
    ));
}

// ---------------------------------------------------------------- affine

#[test]
fn affine_values_and_derivatives() {
    let mut rng = StdRng::seed_from_u64(8);
    for (m, n) in [(1, 3), (2, 5), (4, 4), (3, 10)] {
        let v = randn(&mut rng, n);
        let a = randn_mat(&mut rng, m, n);
        let b = randn(&mut rng, m);
        let lin = ProjAffineLin::new(&v, &a, &b).unwrap();
        // Reference from the normal equations: y = v − Aᵀ(AAᵀ)⁻¹(Av − b).
        let aat = &a * a.transpose();
        let lam = aat.clone().lu().solve(&(&a * &v - &b)).unwrap();
        assert_close(
            "affine value",
            lin.value(),
            &(&v - a.transpose() * lam),
            1e-10,
        );

        let (u, db, w) = (randn(&mut rng, n), randn(&mut rng, m), randn(&mut rng, n));
        let da = randn_mat(&mut rng, m, n);
        let fd = central(
            |t| proj_affine(&(&v + &u * t), &(&a + &da * t), &(&b + &db * t)),
            1e-6,
        );
        assert_close("affine fd", &lin.jvp(&u, &da, &db), &fd, 1e-6);
        let (gv, ga, gb) = lin.vjp(&w);
        assert_adjoint(
            "affine",
            w.dot(&lin.jvp(&u, &da, &db)),
            gv.dot(&u) + ga.dot(&da) + gb.dot(&db),
        );
        // ∂y/∂v is the projector onto null(A).
        let p = DMatrix::identity(n, n) - a.transpose() * aat.try_inverse().unwrap() * &a;
        let zero_a = DMatrix::zeros(m, n);
        let zero_b = DVector::zeros(m);
        assert_close(
            "affine d/dv",
            &lin.jvp(&u, &zero_a, &zero_b),
            &(&p * &u),
            1e-10,
        );
    }
    // Rank-deficient: a repeated row, and more rows than columns.
    let a = DMatrix::from_row_slice(2, 3, &[1.0, 2.0, 3.0, 2.0, 4.0, 6.0]);
    let v = dvector![1.0, 1.0, 1.0];
    assert!(matches!(
        try_proj_affine(&v, &a, &dvector![1.0, 2.0]),
        Err(FoldError::PrimitiveFailed { primitive, .. }) if primitive == "proj_affine"
    ));
    assert!(proj_affine(&v, &a, &dvector![1.0, 2.0])
        .iter()
        .all(|x| x.is_nan()));
    let tall = DMatrix::from_row_slice(2, 1, &[1.0, 1.0]);
    assert!(try_proj_affine(&dvector![0.0], &tall, &dvector![1.0, 2.0]).is_err());
    // No constraints: the identity.
    let none = DMatrix::zeros(0, 3);
    assert_eq!(proj_affine(&v, &none, &DVector::zeros(0)), v);
}

// ---------------------------------------------------------------- the Primitive trait

#[test]
fn primitive_trait_agrees_with_linearizations() {
    let v = dvector![0.9, -0.2, 0.4, 0.1];
    let u = dvector![0.3, 0.1, -0.5, 0.2];
    let lin = ProjSimplex
        .linearize(&[Arg::Vector(&v), Arg::Scalar(1.0)])
        .unwrap();
    let direct = ProjSimplexLin::new(&v, 1.0).unwrap();
    assert_eq!(lin.outputs(), &[Value::Vector(direct.value().clone())]);
    let t = PrimitiveLinearization::jvp(&lin, &[Some(Arg::Vector(&u)), Some(Arg::Scalar(0.5))]);
    assert_eq!(t, vec![Value::Vector(direct.jvp(&u, 0.5))]);
    let c = PrimitiveLinearization::vjp(&lin, &[Some(Arg::Vector(&u))], &[true, false]);
    assert_eq!(c[0], Some(Value::Vector(direct.vjp(&u).0)));
    assert_eq!(c[1], None);
    // A tangent of the wrong kind: NaN, not a panic.
    let bad = PrimitiveLinearization::jvp(&lin, &[Some(Arg::Scalar(1.0)), None]);
    assert!(matches!(&bad[0], Value::Vector(x) if x.iter().all(|e| e.is_nan())));
    // Wrong arity or kinds: errors.
    assert!(ProjSimplex.linearize(&[Arg::Vector(&v)]).is_err());
    assert!(ProjSimplex
        .linearize(&[Arg::Scalar(1.0), Arg::Scalar(1.0)])
        .is_err());

    // Every closed-form primitive through the trait.
    let a = DMatrix::from_row_slice(1, 4, &[1.0, -1.0, 0.5, 2.0]);
    let b = dvector![0.3];
    let mut rng = StdRng::seed_from_u64(9);
    let vv = Value::Vector(v.clone());
    let s = Value::Scalar;
    check_through_trait(Softmax, std::slice::from_ref(&vv), &mut rng);
    check_through_trait(LogSumExp, std::slice::from_ref(&vv), &mut rng);
    check_through_trait(ProjSimplex, &[vv.clone(), s(1.0)], &mut rng);
    check_through_trait(ProjCappedSimplex, &[vv.clone(), s(1.5)], &mut rng);
    check_through_trait(ProjL2Ball, &[vv.clone(), s(0.5)], &mut rng);
    let hyper = [vv.clone(), Value::Vector(u.clone()), s(0.2)];
    check_through_trait(ProjHyperplane, &hyper, &mut rng);
    let affine = [vv.clone(), Value::Matrix(a), Value::Vector(b)];
    check_through_trait(ProjAffine, &affine, &mut rng);
    check_through_trait(ProjBox, &[vv.clone(), s(0.0), s(0.5)], &mut rng);
    check_through_trait(SoftThreshold, &[vv, s(0.15)], &mut rng);
}

fn random_like(x: &Value, rng: &mut StdRng) -> Value {
    match x {
        Value::Scalar(_) => Value::Scalar(rng.sample(StandardNormal)),
        Value::Vector(x) => Value::Vector(randn(rng, x.len())),
        Value::Matrix(x) => Value::Matrix(randn_mat(rng, x.nrows(), x.ncols())),
    }
}

fn axpy(x: &Value, t: f64, d: &Value) -> Value {
    match (x, d) {
        (Value::Scalar(x), Value::Scalar(dx)) => Value::Scalar(x + t * dx),
        (Value::Vector(x), Value::Vector(dx)) => Value::Vector(x + dx * t),
        (Value::Matrix(x), Value::Matrix(dx)) => Value::Matrix(x + dx * t),
        _ => panic!("kind mismatch"),
    }
}

/// Through the [`Primitive`] trait: the JVP (all arguments at once) against central
/// differences of the outputs, and the VJP against the JVP by adjointness.
fn check_through_trait<P: Primitive>(prim: P, args: &[Value], rng: &mut StdRng) {
    let outputs_at = |vals: &[Value]| {
        let borrowed: Vec<Arg<'_>> = vals.iter().map(Value::as_arg).collect();
        flatten(prim.linearize(&borrowed).unwrap().outputs())
    };
    let tangents: Vec<Value> = args.iter().map(|a| random_like(a, rng)).collect();
    let fd = central(
        |t| {
            let moved: Vec<Value> = args
                .iter()
                .zip(&tangents)
                .map(|(a, d)| axpy(a, t, d))
                .collect();
            outputs_at(&moved)
        },
        1e-6,
    );
    let borrowed: Vec<Arg<'_>> = args.iter().map(Value::as_arg).collect();
    let lin = prim.linearize(&borrowed).unwrap();
    let t: Vec<Option<Arg<'_>>> = tangents.iter().map(|x| Some(x.as_arg())).collect();
    let jvp = PrimitiveLinearization::jvp(&lin, &t);
    assert_close(prim.name(), &flatten(&jvp), &fd, 1e-7);
    let w: Vec<Value> = lin.outputs().iter().map(|o| random_like(o, rng)).collect();
    let c: Vec<Option<Arg<'_>>> = w.iter().map(|x| Some(x.as_arg())).collect();
    let vjp: Vec<Value> = PrimitiveLinearization::vjp(&lin, &c, &vec![true; args.len()])
        .into_iter()
        .map(Option::unwrap)
        .collect();
    assert_adjoint(
        prim.name(),
        flatten(&w).dot(&flatten(&jvp)),
        flatten(&vjp).dot(&flatten(&tangents)),
    );
}

fn flatten(values: &[Value]) -> DVector<f64> {
    let mut out = Vec::new();
    for v in values {
        match v {
            Value::Scalar(s) => out.push(*s),
            Value::Vector(x) => out.extend(x.iter()),
            Value::Matrix(x) => out.extend(x.iter()),
        }
    }
    DVector::from_vec(out)
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The simplex projection is feasible, satisfies the optimality conditions
    /// (`vᵢ − yᵢ = τ` on the support, `vᵢ ≤ τ` off it), and its VJP is the adjoint of its JVP.
    #[test]
    fn simplex_projection_is_optimal_and_adjoint(
        v in prop::collection::vec(-1e3f64..1e3, 1..60),
        r in 1e-3f64..1e3,
        seed in any::<u64>(),
    ) {
        let v = DVector::from_vec(v);
        let lin = ProjSimplexLin::new(&v, r).unwrap();
        let y = lin.value();
        let scale = 1.0 + v.amax() + r;
        prop_assert!(y.iter().all(|&x| x >= 0.0));
        prop_assert!((y.sum() - r).abs() <= 1e-12 * scale * v.len() as f64);
        let i = lin.support()[0];
        let tau = v[i] - y[i];
        for j in 0..v.len() {
            if y[j] > 0.0 {
                prop_assert!((v[j] - y[j] - tau).abs() <= 1e-12 * scale);
            } else {
                prop_assert!(v[j] <= tau + 1e-12 * scale);
            }
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let (u, w) = (randn(&mut rng, v.len()), randn(&mut rng, v.len()));
        let (dv, dr) = lin.vjp(&w);
        let lhs = w.dot(&lin.jvp(&u, 0.3));
        let rhs = dv.dot(&u) + 0.3 * dr;
        prop_assert!((lhs - rhs).abs() <= 1e-10 * (1.0 + lhs.abs()));
    }

    /// The capped simplex projection is feasible and matches the bisection reference.
    #[test]
    fn capped_simplex_matches_reference(
        v in prop::collection::vec(-5f64..5.0, 1..40),
        frac in 0f64..=1.0,
    ) {
        let v = DVector::from_vec(v);
        let k = frac * v.len() as f64;
        let y = proj_capped_simplex(&v, k);
        prop_assert!(y.iter().all(|&x| (0.0..=1.0).contains(&x)));
        prop_assert!((y.sum() - k).abs() <= 1e-10 * (1.0 + k));
        let reference = capped_reference(&v, k);
        prop_assert!((&y - &reference).amax() <= 1e-8, "{} vs {}", y, reference);
    }
}

#[test]
fn extreme_magnitudes_give_errors_or_finite_values_never_nan() {
    // ‖v‖² overflows, ‖v‖ does not.
    let v = dvector![3e200, 4e200];
    let y = try_proj_l2_ball(&v, 1.0).unwrap();
    assert_close("huge ball", &y, &dvector![0.6, 0.8], 1e-15);
    // Sums overflow in the simplex threshold: an error, not a NaN projection.
    let huge = DVector::from_element(4, f64::MAX);
    match try_proj_simplex(&huge, 1.0) {
        Ok(y) => assert!(y.iter().all(|x| x.is_finite())),
        Err(e) => assert!(matches!(e, FoldError::NonFinite { .. }), "{e:?}"),
    }
    // Supports and kernels for the reduced backward pass.
    let lin = ProjBoxLin::new(&dvector![-2.0, 0.5, 3.0], 0.0, 1.0).unwrap();
    assert_eq!(lin.support(), vec![1]);
    assert_eq!(lin.kernel(), fold_runtime::SupportKernel::Identity);
    let lin = ProjSimplexLin::new(&dvector![1.0, 0.9, -3.0], 1.0).unwrap();
    assert_eq!(lin.support(), &[0, 1]);
    assert_eq!(lin.kernel(), fold_runtime::SupportKernel::Centered);
}
