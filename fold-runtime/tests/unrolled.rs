//! The unrolling baseline against the folded gradient (Kotary et al., 2023): it approaches
//! the folded gradient as K grows, and its error lags the forward error.

use fold_runtime::nalgebra::{DMatrix, DVector};
use fold_runtime::unrolled::unrolled_backward_each;
use fold_runtime::{
    folded_backward, iterates, unrolled_backward, BackwardOptions, FoldError, Linearized,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `U(x, θ) = tanh(W x + θ)` linearized at `x`: `Φ = diag(d) W`, `Ψ = diag(d)`,
/// `d = 1 − tanh²(W x + θ)`.
struct TanhLayer {
    w: DMatrix<f64>,
    d: DVector<f64>,
}

impl TanhLayer {
    fn at(w: &DMatrix<f64>, theta: &DVector<f64>, x: &DVector<f64>) -> TanhLayer {
        let d = (w * x + theta).map(|z| 1.0 - z.tanh().powi(2));
        TanhLayer { w: w.clone(), d }
    }
}

impl Linearized for TanhLayer {
    type Grads = DVector<f64>;
    fn state_dim(&self) -> usize {
        self.d.len()
    }
    fn vjp_state(&self, v: &DVector<f64>) -> DVector<f64> {
        self.w.tr_mul(&self.d.component_mul(v))
    }
    fn jvp_state(&self, u: &DVector<f64>) -> DVector<f64> {
        self.d.component_mul(&(&self.w * u))
    }
    fn vjp_params(&self, v: &DVector<f64>) -> DVector<f64> {
        self.d.component_mul(v)
    }
    fn jvp_params(&self, t: &DVector<f64>) -> DVector<f64> {
        self.d.component_mul(t)
    }
}

struct Problem {
    w: DMatrix<f64>,
    theta: DVector<f64>,
    target: DVector<f64>,
}

fn problem(seed: u64, n: usize, contraction: f64) -> Problem {
    let mut r = StdRng::seed_from_u64(seed);
    let w = DMatrix::from_fn(n, n, |_, _| r.random_range(-1.0..1.0));
    let w = &w * (contraction / w.clone().svd(false, false).singular_values.max());
    let theta = DVector::from_fn(n, |_, _| r.random_range(-1.0..1.0));
    let target = DVector::from_fn(n, |_, _| r.random_range(-1.0..1.0));
    Problem { w, theta, target }
}

impl Problem {
    fn step(&self, x: &DVector<f64>) -> DVector<f64> {
        (&self.w * x + &self.theta).map(f64::tanh)
    }
    /// `L(x) = ½‖x − target‖²`.
    fn loss_grad(&self, x: &DVector<f64>) -> DVector<f64> {
        x - &self.target
    }
}

fn rel(a: &DVector<f64>, b: &DVector<f64>) -> f64 {
    (a - b).norm() / b.norm()
}

#[test]
fn unrolled_gradient_approaches_the_folded_one_and_lags_the_forward_error() {
    let p = problem(1, 30, 0.8);
    let k_max = 120;
    let xs = iterates(|x: &DVector<f64>| Ok(p.step(x)), DVector::zeros(30), k_max).unwrap();
    let x_star = xs[k_max].clone();
    let lin_star = TanhLayer::at(&p.w, &p.theta, &x_star);
    let (folded, _) = folded_backward(
        &lin_star,
        &p.loss_grad(&x_star),
        &BackwardOptions::default(),
    )
    .unwrap();

    let each = unrolled_backward_each(
        &xs[..=60],
        |x: &DVector<f64>| Ok(TanhLayer::at(&p.w, &p.theta, x)),
        |x: &DVector<f64>| p.loss_grad(x),
    )
    .unwrap();
    assert_eq!(each.len(), 60);
    let fwd_err: Vec<f64> = (1..=60).map(|k| rel(&xs[k], &x_star)).collect();
    let grad_err: Vec<f64> = each.iter().map(|g| rel(g, &folded)).collect();

    // Converges: tiny at K = 60, and much smaller than at K = 5.
    assert!(grad_err[59] < 1e-6, "{}", grad_err[59]);
    assert!(grad_err[59] < 1e-4 * grad_err[4]);
    // Lags: the gradient reaches each accuracy later than the forward iterate does.
    for eps in [1e-2, 1e-4, 1e-6] {
        let first = |errs: &[f64]| errs.iter().position(|&e| e < eps).unwrap_or(usize::MAX);
        assert!(
            first(&grad_err) >= first(&fwd_err),
            "eps={eps}: grad at K={} before forward at K={}",
            first(&grad_err) + 1,
            first(&fwd_err) + 1
        );
    }
    // `unrolled_backward` agrees with the truncated gradients.
    for k in [1usize, 7, 60] {
        let g = unrolled_backward(
            &xs[..=k],
            |x: &DVector<f64>| Ok(TanhLayer::at(&p.w, &p.theta, x)),
            &p.loss_grad(&xs[k]),
        )
        .unwrap();
        assert!(rel(&g, &each[k - 1]) < 1e-13, "k={k}");
    }
}

#[test]
fn one_step_unrolling_is_psi_transpose_g() {
    let p = problem(2, 5, 0.5);
    let x0 = DVector::from_element(5, 0.1);
    let x1 = p.step(&x0);
    let g = p.loss_grad(&x1);
    let got = unrolled_backward(
        &[x0.clone(), x1],
        |x: &DVector<f64>| Ok(TanhLayer::at(&p.w, &p.theta, x)),
        &g,
    )
    .unwrap();
    let d = (&p.w * &x0 + &p.theta).map(|z| 1.0 - z.tanh().powi(2));
    assert!((got - d.component_mul(&g)).amax() < 1e-15);
}

#[test]
fn zero_steps_give_zero_gradient_and_bad_input_is_reported() {
    let p = problem(3, 4, 0.5);
    let lin = |x: &DVector<f64>| Ok(TanhLayer::at(&p.w, &p.theta, x));
    let x0 = DVector::from_element(4, 0.2);
    let g = DVector::from_element(4, 1.0);
    let zero = unrolled_backward(std::slice::from_ref(&x0), lin, &g).unwrap();
    assert_eq!(zero, DVector::zeros(4));

    assert_eq!(
        unrolled_backward::<TanhLayer, _>(&[], lin, &g).unwrap_err(),
        FoldError::DimensionMismatch {
            what: "iterates (at least x₀)".into(),
            expected: 1,
            found: 0
        }
    );
    let short = DVector::from_element(3, 1.0);
    assert!(matches!(
        unrolled_backward(&[x0.clone(), x0.clone()], lin, &short),
        Err(FoldError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        unrolled_backward(&[x0.clone(), DVector::zeros(5)], lin, &g),
        Err(FoldError::DimensionMismatch { .. })
    ));
    let mut nan = g.clone();
    nan[2] = f64::NAN;
    assert!(matches!(
        unrolled_backward(&[x0.clone(), x0.clone()], lin, &nan),
        Err(FoldError::NonFinite { .. })
    ));
    let mut bad_x = x0.clone();
    bad_x[0] = f64::INFINITY;
    assert!(matches!(
        unrolled_backward(&[bad_x, x0.clone()], lin, &g),
        Err(FoldError::NonFinite { .. })
    ));
    // The linearization's own error passes through.
    let failing = |_: &DVector<f64>| -> Result<TanhLayer, FoldError> {
        Err(FoldError::primitive("inner", "failed"))
    };
    assert!(matches!(
        unrolled_backward(&[x0.clone(), x0.clone()], failing, &g),
        Err(FoldError::PrimitiveFailed { .. })
    ));
    assert!(
        unrolled_backward_each(std::slice::from_ref(&x0), lin, |x: &DVector<f64>| x.clone())
            .unwrap()
            .is_empty()
    );
}
