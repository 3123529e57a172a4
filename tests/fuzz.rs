//! Fuzzing harness (issue 14, item 8; issue 15's `linsolve`, reductions and diagonals):
//! proptest over `backward`, `solve` and the primitives of a handful of `#[fold]` rules
//! with arbitrary inputs — non-finite, empty, mismatched lengths, huge and tiny values,
//! any options. The contract: never a panic, never a NaN or infinity inside an `Ok`.
//! Bounded: 2000 small cases per property (about a second in release), so it runs as a
//! normal test.

use fold_runtime::prelude::*;
use proptest::prelude::*;

#[fold(state = x, params(c))]
fn pgd_box(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
    proj_box(&(x - (q * x + c) * alpha), 0.0, 1.0)
}

#[fold(state = x, params(c, t))]
fn ista(x: &DVector<f64>, c: &DVector<f64>, t: f64, q: &DMatrix<f64>) -> DVector<f64> {
    soft_threshold(&(x - (q * x + c) * 0.1), t)
}

#[fold(state = x, params(c, r))]
fn ball(x: &DVector<f64>, c: &DVector<f64>, r: f64, q: &DMatrix<f64>) -> DVector<f64> {
    proj_l2_ball(&(x - (q * x + c) * 0.1), r)
}

#[fold(state = x, params(c))]
fn simplex(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, r: f64) -> DVector<f64> {
    proj_simplex(&(x - (q * x + c) * 0.1), r)
}

#[fold(state = x, params(c))]
fn normalized(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>) -> DVector<f64> {
    let g = q * x + c;
    x - &g / (1.0 + g.norm())
}

#[fold(state = v, params(k))]
fn sinkhorn(
    v: &DVector<f64>,
    k: &DMatrix<f64>,
    a: &DVector<f64>,
    b: &DVector<f64>,
) -> DVector<f64> {
    let u = a.component_div(&(k * v));
    b.component_div(&(k.transpose() * u))
}

/// A splitting iteration: a linear solve with a parameter matrix (issue 15).
#[fold(state = x, params(m, c))]
fn splitting(x: &DVector<f64>, m: &DMatrix<f64>, c: &DVector<f64>) -> DVector<f64> {
    linsolve(m, &(c - x * 0.1))
}

/// A Newton step whose Hessian is built from the state: `linsolve` of a matrix that a
/// `DMatrix::from_diagonal` makes state-dependent.
#[fold(state = x, params(p, c))]
fn newton(x: &DVector<f64>, p: &DMatrix<f64>, c: &DVector<f64>) -> DVector<f64> {
    let s = sigmoid(x);
    let h = p + DMatrix::from_diagonal(&(&s - s.component_mul(&s)));
    x - linsolve(&h, &(p * x + c + &s))
}

/// Reductions and a diagonal scaling: `.max()`, `.min()`, `.mean()`, `from_diagonal`.
#[fold(state = x, params(c, t))]
fn reductions(x: &DVector<f64>, c: &DVector<f64>, t: f64, q: &DMatrix<f64>) -> DVector<f64> {
    let z = q * x * 0.3 + DMatrix::from_diagonal(c) * x * 0.1;
    z.add_scalar(t * z.max() + 0.2 * z.mean() - 0.1 * z.min())
}

/// Any f64 a user might pass, weighted towards the awkward ones.
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => -3.0f64..3.0,
        1 => Just(0.0),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(1e300),
        1 => Just(-1e300),
        1 => Just(1e-300),
        1 => Just(f64::MAX),
    ]
}

fn vector(max: usize) -> impl Strategy<Value = DVector<f64>> {
    prop::collection::vec(value(), 0..max).prop_map(DVector::from_vec)
}

fn matrix(max: usize) -> impl Strategy<Value = DMatrix<f64>> {
    (0..max, 0..max).prop_flat_map(|(m, n)| {
        prop::collection::vec(value(), m * n).prop_map(move |v| DMatrix::from_vec(m, n, v))
    })
}

/// Mostly consistent shapes (so the numerics are reached), sometimes not.
fn problem() -> impl Strategy<Value = (DVector<f64>, DVector<f64>, DMatrix<f64>, DVector<f64>)> {
    prop_oneof![
        3 => (1usize..6).prop_flat_map(|n| (
            prop::collection::vec(value(), n).prop_map(DVector::from_vec),
            prop::collection::vec(value(), n).prop_map(DVector::from_vec),
            prop::collection::vec(value(), n * n).prop_map(move |v| DMatrix::from_vec(n, n, v)),
            prop::collection::vec(value(), n).prop_map(DVector::from_vec),
        )),
        1 => (vector(5), vector(5), matrix(5), vector(5)),
    ]
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Auto),
        Just(Method::Direct),
        (0usize..6).prop_map(|restart| Method::Gmres { restart }),
        Just(Method::BiCgStab),
        Just(Method::Lfpi),
        Just(Method::JacobianFree),
        (0usize..5, value()).prop_map(|(steps, damping)| Method::Phantom { steps, damping }),
    ]
}

fn backward_options() -> impl Strategy<Value = BackwardOptions> {
    (
        method(),
        prop_oneof![4 => Just(1e-10), 1 => value()],
        0usize..60,
    )
        .prop_map(|(method, tol, max_iter)| BackwardOptions {
            method,
            tol,
            max_iter,
        })
}

fn forward_options() -> impl Strategy<Value = ForwardOptions> {
    (
        prop_oneof![4 => Just(1e-10), 1 => value()],
        0usize..80,
        prop::option::of(0usize..4),
    )
        .prop_map(|(tol, max_iter, anderson)| ForwardOptions {
            tol,
            max_iter,
            anderson,
        })
}

fn finite(v: &DVector<f64>) -> bool {
    v.iter().all(|x| x.is_finite())
}

fn finite_m(v: &DMatrix<f64>) -> bool {
    v.iter().all(|x| x.is_finite())
}

fn solution_ok(r: Result<Solution, FoldError>) -> Result<(), TestCaseError> {
    if let Ok(s) = r {
        prop_assert!(finite(&s.x), "NaN in an Ok solution: {:?}", s.x);
        prop_assert!(!s.residual.is_nan());
    }
    Ok(())
}

fn stats_ok(s: &SolveStats) -> Result<(), TestCaseError> {
    prop_assert!(!s.residual.is_nan(), "{s:?}");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn pgd_box_never_panics_nor_returns_nan(
        (x, c, q, g) in problem(), alpha in value(), o in backward_options(), f in forward_options(),
    ) {
        if let Ok((grads, st)) = pgd_box::backward_with_stats(&x, &c, &q, alpha, &g, &o) {
            prop_assert!(finite(&grads.c), "{grads:?}");
            stats_ok(&st)?;
        }
        solution_ok(pgd_box::solve(&x, &c, &q, alpha, &f))?;
    }

    #[test]
    fn ista_never_panics_nor_returns_nan(
        (x, c, q, g) in problem(), t in value(), o in backward_options(), f in forward_options(),
    ) {
        if let Ok((grads, st)) = ista::backward_with_stats(&x, &c, t, &q, &g, &o) {
            prop_assert!(finite(&grads.c) && grads.t.is_finite(), "{grads:?}");
            stats_ok(&st)?;
        }
        solution_ok(ista::solve(&x, &c, t, &q, &f))?;
    }

    #[test]
    fn ball_never_panics_nor_returns_nan(
        (x, c, q, g) in problem(), r in value(), o in backward_options(), f in forward_options(),
    ) {
        if let Ok((grads, st)) = ball::backward_with_stats(&x, &c, r, &q, &g, &o) {
            prop_assert!(finite(&grads.c) && grads.r.is_finite(), "{grads:?}");
            stats_ok(&st)?;
        }
        solution_ok(ball::solve(&x, &c, r, &q, &f))?;
    }

    #[test]
    fn simplex_never_panics_nor_returns_nan(
        (x, c, q, g) in problem(), r in value(), o in backward_options(), f in forward_options(),
    ) {
        if let Ok((grads, st)) = simplex::backward_with_stats(&x, &c, &q, r, &g, &o) {
            prop_assert!(finite(&grads.c), "{grads:?}");
            stats_ok(&st)?;
        }
        solution_ok(simplex::solve(&x, &c, &q, r, &f))?;
    }

    #[test]
    fn normalized_never_panics_nor_returns_nan(
        (x, c, q, g) in problem(), o in backward_options(), f in forward_options(),
    ) {
        if let Ok((grads, st)) = normalized::backward_with_stats(&x, &c, &q, &g, &o) {
            prop_assert!(finite(&grads.c), "{grads:?}");
            stats_ok(&st)?;
        }
        solution_ok(normalized::solve(&x, &c, &q, &f))?;
    }

    #[test]
    fn sinkhorn_never_panics_nor_returns_nan(
        (v, a, k, g) in problem(), b in vector(6), o in backward_options(), f in forward_options(),
    ) {
        if let Ok((grads, st)) = sinkhorn::backward_with_stats(&v, &k, &a, &b, &g, &o) {
            prop_assert!(finite_m(&grads.k), "{grads:?}");
            stats_ok(&st)?;
        }
        solution_ok(sinkhorn::solve(&v, &k, &a, &b, &f))?;
    }

    #[test]
    fn splitting_never_panics_nor_returns_nan(
        (x, c, m, g) in problem(), o in backward_options(), f in forward_options(),
    ) {
        if let Ok((grads, st)) = splitting::backward_with_stats(&x, &m, &c, &g, &o) {
            prop_assert!(finite_m(&grads.m) && finite(&grads.c), "{grads:?}");
            stats_ok(&st)?;
        }
        solution_ok(splitting::solve(&x, &m, &c, &f))?;
    }

    #[test]
    fn newton_never_panics_nor_returns_nan(
        (x, c, p, g) in problem(), o in backward_options(), f in forward_options(),
    ) {
        if let Ok((grads, st)) = newton::backward_with_stats(&x, &p, &c, &g, &o) {
            prop_assert!(finite_m(&grads.p) && finite(&grads.c), "{grads:?}");
            stats_ok(&st)?;
        }
        solution_ok(newton::solve(&x, &p, &c, &f))?;
    }

    #[test]
    fn reductions_never_panic_nor_return_nan(
        (x, c, q, g) in problem(), t in value(), o in backward_options(), f in forward_options(),
    ) {
        if let Ok((grads, st)) = reductions::backward_with_stats(&x, &c, t, &q, &g, &o) {
            prop_assert!(finite(&grads.c) && grads.t.is_finite(), "{grads:?}");
            stats_ok(&st)?;
        }
        solution_ok(reductions::solve(&x, &c, t, &q, &f))?;
    }

    #[test]
    fn primitives_never_panic_nor_return_nan_in_ok(
        v in vector(8), a in vector(8), s in value(), t in value(), m in matrix(4),
    ) {
        let checked: Vec<Result<DVector<f64>, FoldError>> = vec![
            try_proj_simplex(&v, s),
            try_proj_capped_simplex(&v, s),
            try_proj_l2_ball(&v, s),
            try_proj_box(&v, s, t),
            try_soft_threshold(&v, s),
            try_softmax(&v),
            try_proj_hyperplane(&v, &a, s),
        ];
        for (i, r) in checked.into_iter().enumerate() {
            if let Ok(y) = r {
                prop_assert!(finite(&y), "primitive #{i}: {y:?}");
            }
        }
        // The domain checks look at the scalar arguments only (generated code checks `v`
        // where it is produced): on a finite `v` an `Ok` is finite.
        let domain = [
            fold_runtime::ops::domain::clamp(&v, s, t),
            fold_runtime::ops::domain::soft_threshold(&v, s),
            fold_runtime::ops::domain::between(&v, s, t),
            fold_runtime::ops::domain::outside(&v, s),
        ];
        for (i, r) in domain.into_iter().enumerate() {
            if let (Ok(y), true) = (r, finite(&v)) {
                prop_assert!(finite(&y), "domain #{i}: {y:?}");
            }
        }
        if let Ok(l) = try_log_sum_exp(&v) {
            prop_assert!(l.is_finite());
        }
        // `linsolve` with any matrix and right-hand side (vector or matrix): an `Ok` is
        // finite, the value function never panics.
        if let Ok(y) = try_linsolve(&m, &a) {
            prop_assert!(finite(&y), "linsolve: {y:?}");
        }
        if let Ok(y) = try_linsolve(&m, &m) {
            prop_assert!(finite_m(&y), "linsolve (matrix rhs): {y:?}");
        }
        let _ = (linsolve(&m, &v), linsolve(&m, &m));
        // The value functions never panic (they return NaN on invalid input by design).
        let _ = (proj_simplex(&v, s), proj_capped_simplex(&v, s), proj_l2_ball(&v, s));
        let _ = (clamp(&m, s, t), soft_threshold(&m, s), softmax(&v), log_sum_exp(&v));
        let _ = (fold_runtime::ops::recip0(&m), sqrt(&v), relu(&v), sigmoid(&v));
    }
}
