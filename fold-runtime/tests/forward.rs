//! The forward fixed-point driver: plain iteration and safeguarded Anderson acceleration.

use fold_runtime::nalgebra::{DMatrix, DVector};
use fold_runtime::{fixed_point, iterates, FoldError, ForwardOptions};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `x ↦ A x + b` with `A` symmetric, spectrum in `[0, rho]` (`rho` attained).
fn affine(seed: u64, n: usize, rho: f64) -> (DMatrix<f64>, DVector<f64>) {
    let mut r = StdRng::seed_from_u64(seed);
    let q = DMatrix::from_fn(n, n, |_, _| r.random_range(-1.0..1.0))
        .qr()
        .q();
    let ev = DVector::from_fn(n, |i, _| {
        if i == 0 {
            rho
        } else {
            rho * r.random_range(0.0..1.0)
        }
    });
    let a = &q * DMatrix::from_diagonal(&ev) * q.transpose();
    let b = DVector::from_fn(n, |_, _| r.random_range(-1.0..1.0));
    (a, b)
}

fn exact(a: &DMatrix<f64>, b: &DVector<f64>) -> DVector<f64> {
    let n = a.nrows();
    (DMatrix::identity(n, n) - a).lu().solve(b).unwrap()
}

fn opts(anderson: Option<usize>) -> ForwardOptions {
    ForwardOptions {
        tol: 1e-12,
        max_iter: 20_000,
        anderson,
    }
}

#[test]
fn anderson_beats_plain_iteration_on_a_slow_contraction() {
    let (a, b) = affine(1, 50, 0.99);
    let x_star = exact(&a, &b);
    let step = |x: &DVector<f64>| -> Result<DVector<f64>, FoldError> { Ok(&a * x + &b) };
    let plain = fixed_point(step, DVector::zeros(50), &opts(None)).unwrap();
    let acc = fixed_point(step, DVector::zeros(50), &opts(Some(10))).unwrap();
    // Plain iteration stops when the step is 1e-12, i.e. the error is ≈ 1e-12 / (1 − ρ).
    // Stopping at a step of 1e-12 (1 + ‖x‖∞) leaves an error up to that over (1 − ρ).
    let tol = 1e-12 * (1.0 + x_star.amax()) / (1.0 - 0.99) * 2.0;
    assert!(
        (&plain.x - &x_star).amax() < tol,
        "{}",
        (&plain.x - &x_star).amax()
    );
    assert!(
        (&acc.x - &x_star).amax() < tol,
        "{}",
        (&acc.x - &x_star).amax()
    );
    assert!(plain.iterations > 1000, "plain took {}", plain.iterations);
    assert!(
        acc.iterations * 5 < plain.iterations,
        "anderson {} vs plain {}",
        acc.iterations,
        plain.iterations
    );
    assert!(acc.residual <= 1e-12 && plain.residual <= 1e-12);
}

#[test]
fn anderson_converges_where_plain_iteration_runs_out_of_budget() {
    let (a, b) = affine(2, 30, 0.99);
    let step = |x: &DVector<f64>| -> Result<DVector<f64>, FoldError> { Ok(&a * x + &b) };
    let budget = ForwardOptions {
        max_iter: 400,
        ..opts(None)
    };
    assert!(matches!(
        fixed_point(step, DVector::zeros(30), &budget),
        Err(FoldError::NotConverged {
            iterations: 400,
            ..
        })
    ));
    let budget = ForwardOptions {
        anderson: Some(8),
        ..budget
    };
    let sol = fixed_point(step, DVector::zeros(30), &budget).unwrap();
    let x_star = exact(&a, &b);
    assert!((&sol.x - &x_star).amax() < 2e-10 * (1.0 + x_star.amax()) / (1.0 - 0.99));
}

#[test]
fn anderson_handles_a_nonlinear_map() {
    // x ↦ 0.9 tanh(W x) + c with ‖W‖ = 1: a contraction with factor 0.9, nonlinear.
    let mut r = StdRng::seed_from_u64(3);
    let n = 40;
    let w = DMatrix::from_fn(n, n, |_, _| r.random_range(-1.0..1.0));
    let w: DMatrix<f64> = &w / w.clone().svd(false, false).singular_values.max();
    let c = DVector::from_fn(n, |_, _| r.random_range(-2.0..2.0));
    let step = |x: &DVector<f64>| -> Result<DVector<f64>, FoldError> {
        Ok((&w * x).map(|v| 0.9 * v.tanh()) + &c)
    };
    let plain = fixed_point(step, DVector::zeros(n), &opts(None)).unwrap();
    for m in [1usize, 3, 10] {
        let acc = fixed_point(step, DVector::zeros(n), &opts(Some(m))).unwrap();
        assert!((&acc.x - &plain.x).amax() < 1e-10, "m={m}");
        assert!(
            acc.iterations <= plain.iterations,
            "m={m}: {} vs {}",
            acc.iterations,
            plain.iterations
        );
        // It is a fixed point.
        let fx = (&w * &acc.x).map(|v| 0.9 * v.tanh()) + &c;
        assert!((fx - &acc.x).amax() < 1e-11);
    }
}

#[test]
fn safeguard_keeps_anderson_convergent_on_an_oscillating_map() {
    // x ↦ 0.3 + 0.19 sin(5x): contraction factor 0.95 but strongly curved, so linear
    // extrapolation from the history is often poor far from the fixed point.
    let n = 10;
    let step = |x: &DVector<f64>| -> Result<DVector<f64>, FoldError> {
        Ok(x.map(|v| 0.3 + 0.19 * (5.0 * v).sin()))
    };
    let x0 = DVector::from_fn(n, |i, _| i as f64 - 5.0);
    let plain = fixed_point(step, x0.clone(), &opts(None)).unwrap();
    for m in [1usize, 4, 10] {
        let acc = fixed_point(step, x0.clone(), &opts(Some(m))).unwrap();
        assert!((&acc.x - &plain.x).amax() < 1e-9, "m={m}");
    }
}

#[test]
fn errors_are_reported_not_panicked() {
    let o = opts(None);
    for anderson in [None, Some(3)] {
        let o = ForwardOptions {
            anderson,
            ..o.clone()
        };
        // NaN from the step.
        let mut k = 0;
        let nan_later = |x: &DVector<f64>| {
            k += 1;
            Ok(if k > 3 { x.map(|_| f64::NAN) } else { x * 0.5 })
        };
        assert_eq!(
            fixed_point(nan_later, DVector::from_element(3, 1.0), &o).unwrap_err(),
            FoldError::NonFinite {
                what: "iterate".into()
            }
        );
        // NaN start.
        let mut x0 = DVector::from_element(3, 1.0);
        x0[1] = f64::NAN;
        assert!(matches!(
            fixed_point(|x: &DVector<f64>| Ok(x * 0.5), x0, &o),
            Err(FoldError::NonFinite { .. })
        ));
        // The step changes the length.
        assert!(matches!(
            fixed_point(
                |x: &DVector<f64>| Ok(DVector::zeros(x.len() + 1)),
                DVector::zeros(2),
                &o
            ),
            Err(FoldError::DimensionMismatch { .. })
        ));
        // The step's own error passes through.
        let failing = |_: &DVector<f64>| Err(FoldError::primitive("inner", "infeasible"));
        assert!(matches!(
            fixed_point(failing, DVector::zeros(2), &o),
            Err(FoldError::PrimitiveFailed { .. })
        ));
        // Plain iteration diverges on an expanding map (Anderson, like GMRES, would
        // find its fixed point −1).
        if anderson.is_none() {
            let grow = |x: &DVector<f64>| Ok(x * 2.0 + DVector::from_element(x.len(), 1.0));
            let small = ForwardOptions {
                max_iter: 50,
                ..o.clone()
            };
            assert!(matches!(
                fixed_point(grow, DVector::zeros(2), &small),
                Err(FoldError::NotConverged { iterations: 50, .. })
            ));
        }
        // Zero budget.
        let none = ForwardOptions {
            max_iter: 0,
            ..o.clone()
        };
        assert!(matches!(
            fixed_point(|x: &DVector<f64>| Ok(x.clone()), DVector::zeros(2), &none),
            Err(FoldError::NotConverged { iterations: 0, .. })
        ));
    }
}

#[test]
fn empty_state_converges_immediately() {
    let sol = fixed_point(
        |x: &DVector<f64>| Ok(x.clone()),
        DVector::zeros(0),
        &opts(Some(2)),
    )
    .unwrap();
    assert_eq!(sol.iterations, 1);
    assert_eq!(sol.x.len(), 0);
}

#[test]
fn iterates_are_the_plain_sequence() {
    let xs = iterates(
        |x: &DVector<f64>| Ok(x * 0.5),
        DVector::from_element(2, 8.0),
        3,
    )
    .unwrap();
    assert_eq!(xs.len(), 4);
    assert_eq!(xs[0], DVector::from_element(2, 8.0));
    assert_eq!(xs[3], DVector::from_element(2, 1.0));
    assert_eq!(
        iterates(|x: &DVector<f64>| Ok(x * 0.5), DVector::zeros(2), 0)
            .unwrap()
            .len(),
        1
    );
    assert!(matches!(
        iterates(
            |x: &DVector<f64>| Ok(x.map(|_| f64::INFINITY)),
            DVector::zeros(2),
            2
        ),
        Err(FoldError::NonFinite { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Anderson at any depth reaches the same fixed point as the exact solve.
    #[test]
    fn anderson_reaches_the_fixed_point(seed in 0u64..10_000, n in 1usize..30, rho in 0.0f64..0.97, m in 1usize..8) {
        let (a, b) = affine(seed, n, rho);
        let step = |x: &DVector<f64>| -> Result<DVector<f64>, FoldError> { Ok(&a * x + &b) };
        let sol = fixed_point(step, DVector::zeros(n), &opts(Some(m))).unwrap();
        let x_star = exact(&a, &b);
        prop_assert!((&sol.x - &x_star).amax() <= 1e-9 * (1.0 + x_star.amax()));
    }
}

#[test]
fn anderson_does_not_accept_a_diverging_iterate() {
    // x ↦ x − α(Qx + c) with Q singular and c outside its range: no fixed point exists;
    // the null-space coordinate drifts by α c₂ every step and Anderson extrapolates the
    // drift. Neither may return Ok.
    let q = DMatrix::from_diagonal(&DVector::from_vec(vec![1.0, 0.5, 0.0]));
    let c = DVector::from_vec(vec![0.3, -0.2, 0.7]);
    let alpha = 0.2;
    for anderson in [None, Some(1), Some(5), Some(10)] {
        let o = ForwardOptions {
            tol: 1e-12,
            max_iter: 2000,
            anderson,
        };
        let step =
            |x: &DVector<f64>| -> Result<DVector<f64>, FoldError> { Ok(x - (&q * x + &c) * alpha) };
        match fixed_point(step, DVector::zeros(3), &o) {
            Err(FoldError::NotConverged { .. }) => {}
            other => panic!("anderson {anderson:?}: {other:?}"),
        }
    }
}

#[test]
fn anderson_returns_a_point_whose_own_residual_passes() {
    // On a convergent affine map the true residual at the returned point meets the test.
    let (a, b) = affine(11, 20, 0.9);
    for m in [1usize, 3, 8] {
        let step = |x: &DVector<f64>| -> Result<DVector<f64>, FoldError> { Ok(&a * x + &b) };
        let sol = fixed_point(step, DVector::zeros(20), &opts(Some(m))).unwrap();
        let r = (&a * &sol.x + &b - &sol.x).amax();
        assert!(r <= 1e-12 * (1.0 + sol.x.amax()), "m={m}: {r}");
    }
}
