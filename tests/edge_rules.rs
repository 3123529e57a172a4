//! Issue 14 through `#[fold]`: derivatives at removable kinks (items 3) and primitive
//! domain checks that apply in `backward` as in `solve` (item 2).

use fold_runtime::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Normalized gradient step: `x − g / (1 + ‖g‖)` with `g = Qx + c`.
#[fold(state = x, params(c))]
fn normalized(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>) -> DVector<f64> {
    let g = q * x + c;
    x - &g / (1.0 + g.norm())
}

/// The same with `‖g‖` written as `sqrt(g·g)`.
#[fold(state = x, params(c))]
fn normalized_sqrt(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>) -> DVector<f64> {
    let g = q * x + c;
    x - &g / (1.0 + g.dot(&g).sqrt())
}

/// The same with `‖g‖` written as `(‖g‖²)^0.5`.
#[fold(state = x, params(c))]
fn normalized_powf(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>) -> DVector<f64> {
    let g = q * x + c;
    x - &g / (1.0 + g.norm_squared().powf(0.5))
}

/// `x − g / (1 + |Σg|)`.
#[fold(state = x, params(c))]
fn normalized_abs(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>) -> DVector<f64> {
    let g = q * x + c;
    x - &g / (1.0 + g.sum().abs())
}

/// `x − 0.1 ‖g‖ g − 0.2 g`: `.norm()` inside a product (derivative `−0.2 Q` at g = 0).
#[fold(state = x, params(c))]
fn norm_in_product(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>) -> DVector<f64> {
    let g = q * x + c;
    x - &g * (0.1 * g.norm()) - &g * 0.2
}

/// Elementwise sqrt of squares inside a step: `x − 0.3 (sqrt(g⊙g) ⊙ 0 + g)`.
#[fold(state = x, params(c))]
fn elementwise_sqrt(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>) -> DVector<f64> {
    let g = q * x + c;
    let s = sqrt(&g.component_mul(&g));
    x - (g + s.component_mul(&s)) * 0.3
}

fn problem(seed: u64, n: usize) -> (DMatrix<f64>, DVector<f64>) {
    let mut r = StdRng::seed_from_u64(seed);
    let b = DMatrix::from_fn(n, n, |_, _| r.random_range(-1.0..1.0));
    let q = (&b * b.transpose()) * (0.5 / n as f64) + DMatrix::identity(n, n) * 0.5;
    let h = DVector::from_fn(n, |_, _| r.random_range(-1.0..1.0));
    (q, h)
}

#[test]
fn normalized_steps_are_differentiable_where_the_gradient_vanishes() {
    let n = 6;
    let (q, h) = problem(3, n);
    // c = 0 and x = 0: g = 0 exactly, the fixed point itself. Every rule below has
    // x* = −Q⁻¹c near c = 0 (g = 0 at the fixed point), so dL/dc = −Q⁻¹h for L = hᵀx*.
    let x = DVector::zeros(n);
    let c = DVector::zeros(n);
    let expected = -q.clone().lu().solve(&h).unwrap();
    let phi_expected = DMatrix::identity(n, n) - &q;
    type Backward = fn(
        &DVector<f64>,
        &DVector<f64>,
        &DMatrix<f64>,
        &DVector<f64>,
        &BackwardOptions,
    ) -> Result<DVector<f64>, FoldError>;
    let rules: [(&str, Backward, DMatrix<f64>); 4] = [
        (
            "norm",
            |x, c, q, g, o| normalized::backward(x, c, q, g, o).map(|g| g.c),
            normalized::jacobians(&x, &c, &q).state,
        ),
        (
            "sqrt",
            |x, c, q, g, o| normalized_sqrt::backward(x, c, q, g, o).map(|g| g.c),
            normalized_sqrt::jacobians(&x, &c, &q).state,
        ),
        (
            "powf",
            |x, c, q, g, o| normalized_powf::backward(x, c, q, g, o).map(|g| g.c),
            normalized_powf::jacobians(&x, &c, &q).state,
        ),
        (
            "abs",
            |x, c, q, g, o| normalized_abs::backward(x, c, q, g, o).map(|g| g.c),
            normalized_abs::jacobians(&x, &c, &q).state,
        ),
    ];
    for (name, backward, phi) in rules {
        assert!(
            (&phi - &phi_expected).amax() < 1e-14,
            "{name}: Φ = {phi} vs I − Q"
        );
        for method in [Method::Auto, Method::Direct, Method::Gmres { restart: 10 }] {
            let o = BackwardOptions {
                method,
                ..BackwardOptions::default()
            };
            let grad = backward(&x, &c, &q, &h, &o).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                (&grad - &expected).amax() < 1e-9,
                "{name} {method:?}: {grad} vs {expected}"
            );
        }
    }
    // The same against central differences of the forward solve through c = 0.
    let fwd = ForwardOptions {
        tol: 1e-15,
        max_iter: 100_000,
        anderson: None,
    };
    let step = 1e-6;
    let grad = normalized::backward(&x, &c, &q, &h, &BackwardOptions::default())
        .unwrap()
        .c;
    for j in 0..n {
        let mut cp = c.clone();
        cp[j] += step;
        let mut cm = c.clone();
        cm[j] -= step;
        let xp = normalized::solve(&x, &cp, &q, &fwd).unwrap().x;
        let xm = normalized::solve(&x, &cm, &q, &fwd).unwrap().x;
        let fd = (h.dot(&xp) - h.dot(&xm)) / (2.0 * step);
        assert!((grad[j] - fd).abs() < 1e-7, "j={j}: {} vs {fd}", grad[j]);
    }
}

#[test]
fn norm_inside_a_product_and_elementwise_sqrt_at_zero() {
    let n = 5;
    let (q, _) = problem(4, n);
    let x = DVector::zeros(n);
    let c = DVector::zeros(n);
    // d/dx (‖g‖ g) = g gᵀQ/‖g‖ + ‖g‖ Q = 0 at g = 0.
    let phi = norm_in_product::jacobians(&x, &c, &q).state;
    let expected = DMatrix::identity(n, n) - &q * 0.2;
    assert!((&phi - &expected).amax() < 1e-14, "{phi}");
    // sqrt(g²)² = g², derivative 2g = 0 at g = 0: Φ = I − 0.3 Q.
    let phi = elementwise_sqrt::jacobians(&x, &c, &q).state;
    let expected = DMatrix::identity(n, n) - &q * 0.3;
    assert!((&phi - &expected).amax() < 1e-14, "{phi}");
    let g = DVector::from_element(n, 1.0);
    assert!(elementwise_sqrt::backward(&x, &c, &q, &g, &BackwardOptions::default()).is_ok());
}

/// Projected gradient onto the ℓ2 ball of radius `r`.
#[fold(state = x, params(c))]
fn ball_step(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, r: f64) -> DVector<f64> {
    proj_l2_ball(&(x - (q * x + c) * 0.1), r)
}

/// Projected gradient onto the box `[lo, hi]ⁿ`.
#[fold(state = x, params(c))]
fn box_step(
    x: &DVector<f64>,
    c: &DVector<f64>,
    q: &DMatrix<f64>,
    lo: f64,
    hi: f64,
) -> DVector<f64> {
    proj_box(&(x - (q * x + c) * 0.1), lo, hi)
}

/// Proximal gradient with threshold `t` (ISTA).
#[fold(state = x, params(c))]
fn ista_step(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, t: f64) -> DVector<f64> {
    soft_threshold(&(x - (q * x + c) * 0.1), t)
}

/// Projected gradient onto the capped simplex `{0 ≤ x ≤ 1, Σx = k}`.
#[fold(state = x, params(c))]
fn capped_step(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, k: f64) -> DVector<f64> {
    proj_capped_simplex(&(x - (q * x + c) * 0.1), k)
}

/// Projected gradient onto the simplex `{x ≥ 0, Σx = r}`.
#[fold(state = x, params(c))]
fn simplex_step(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, r: f64) -> DVector<f64> {
    proj_simplex(&(x - (q * x + c) * 0.1), r)
}

fn failed(r: Result<impl std::fmt::Debug, FoldError>, what: &str) {
    match r {
        Err(FoldError::PrimitiveFailed { .. }) => {}
        other => panic!("{what}: expected PrimitiveFailed, got {other:?}"),
    }
}

#[test]
fn invalid_primitive_arguments_fail_in_backward_as_in_solve() {
    let n = 4;
    let (q, h) = problem(5, n);
    let c = DVector::from_fn(n, |i, _| 0.3 * i as f64 - 0.5);
    let x = DVector::from_fn(n, |i, _| 0.2 * i as f64 + 0.1);
    let f = ForwardOptions::default();
    let o = BackwardOptions::default();
    let exact = BackwardOptions {
        method: Method::Direct,
        ..o.clone()
    };
    for opts in [&o, &exact] {
        // ℓ2 ball of negative radius.
        failed(ball_step::solve(&x, &c, &q, -1.0, &f), "ball solve");
        failed(
            ball_step::backward(&x, &c, &q, -1.0, &h, opts),
            "ball backward",
        );
        assert!(ball_step::linearize(&x, &c, &q, -1.0).check().is_err());
        // Empty box.
        failed(box_step::solve(&x, &c, &q, 1.0, 0.0, &f), "box solve");
        failed(
            box_step::backward(&x, &c, &q, 1.0, 0.0, &h, opts),
            "box backward",
        );
        // Negative threshold.
        failed(ista_step::solve(&x, &c, &q, -0.1, &f), "ista solve");
        failed(
            ista_step::backward(&x, &c, &q, -0.1, &h, opts),
            "ista backward",
        );
        // k outside [0, n].
        for k in [-1.0, n as f64 + 0.5] {
            failed(capped_step::solve(&x, &c, &q, k, &f), "capped solve");
            failed(
                capped_step::backward(&x, &c, &q, k, &h, opts),
                "capped backward",
            );
        }
        // Non-positive simplex radius.
        for r in [0.0, -2.0] {
            failed(simplex_step::solve(&x, &c, &q, r, &f), "simplex solve");
            failed(
                simplex_step::backward(&x, &c, &q, r, &h, opts),
                "simplex backward",
            );
        }
    }
    // Valid arguments still work (and the ball's derivative is unchanged outside).
    assert!(ball_step::backward(&x, &c, &q, 0.2, &h, &o).is_ok());
    assert!(box_step::backward(&x, &c, &q, 0.0, 1.0, &h, &o).is_ok());
    assert!(ista_step::backward(&x, &c, &q, 0.0, &h, &o).is_ok());
}

#[test]
fn ball_derivative_outside_matches_finite_differences_of_the_step() {
    // The ratio r/ρ is read as ‖y‖/ρ now: check Φ against central differences.
    let n = 5;
    let (q, _) = problem(6, n);
    let c = DVector::from_fn(n, |i, _| 2.0 + i as f64);
    let x = DVector::from_fn(n, |i, _| 0.5 - 0.3 * i as f64);
    let r = 0.7;
    let step = |x: &DVector<f64>| {
        let z = x - (&q * x + &c) * 0.1;
        let nz = z.norm();
        if nz <= r {
            z
        } else {
            z * (r / nz)
        }
    };
    assert!(
        (x.clone() - (&q * &x + &c) * 0.1).norm() > r,
        "outside the ball"
    );
    let phi = ball_step::jacobians(&x, &c, &q, r).state;
    let hs = 1e-6;
    for j in 0..n {
        let mut xp = x.clone();
        xp[j] += hs;
        let mut xm = x.clone();
        xm[j] -= hs;
        let col = (step(&xp) - step(&xm)) / (2.0 * hs);
        assert!((phi.column(j) - col).amax() < 1e-8, "column {j}");
    }
}

/// A gradient step scaled by `(1 + ‖x‖²)^−(0.5 + 0.1 Σx)`: a `powf` whose exponent depends
/// on the state (its structured Jacobian reads the exponent's partial).
#[fold(state = x, params(c))]
fn state_exponent(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>) -> DVector<f64> {
    let s = (1.0 + x.norm_squared()).powf(0.5 + 0.1 * x.sum());
    x - (q * x + c) * (0.3 / s)
}

#[test]
fn a_state_dependent_exponent_has_a_structured_jacobian_equal_to_differences() {
    let n = 5;
    let (q, h) = problem(5, n);
    let x = h.map(|v| 0.4 * v);
    let c = DVector::from_fn(n, |i, _| 0.1 * i as f64 - 0.2);
    let lin = state_exponent::linearize(&x, &c, &q);
    Linearized::check(&lin).unwrap();
    let phi = Linearized::state_jacobian(&lin).expect("a structured Φ");
    let jac = state_exponent::jacobians(&x, &c, &q);
    let step = 1e-6;
    for j in 0..n {
        let mut xp = x.clone();
        xp[j] += step;
        let mut xm = x.clone();
        xm[j] -= step;
        let fd = (state_exponent(&xp, &c, &q) - state_exponent(&xm, &c, &q)) / (2.0 * step);
        assert!((phi.column(j) - &fd).amax() < 1e-8, "Φ column {j}");
        assert!(
            (jac.state.column(j) - &fd).amax() < 1e-8,
            "jacobians() column {j}"
        );
        let mut cp = c.clone();
        cp[j] += step;
        let mut cm = c.clone();
        cm[j] -= step;
        let fd_c = (state_exponent(&x, &cp, &q) - state_exponent(&x, &cm, &q)) / (2.0 * step);
        assert!((jac.c.column(j) - &fd_c).amax() < 1e-8, "Ψ_c column {j}");
    }
}
