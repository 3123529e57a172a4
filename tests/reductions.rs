//! Vector reductions `.max()`, `.min()`, `.mean()` in update rules, against finite
//! differences of the whole forward solve, and their tie convention.

mod common;

use common::*;
use fold_runtime::prelude::*;

/// A contraction that shifts every entry by a mix of the reductions of its argument.
#[fold(state = x, params(b, s))]
fn shifted(x: &DVector<f64>, b: &DVector<f64>, s: f64, a: &DMatrix<f64>) -> DVector<f64> {
    let z = a * x * 0.4 + b;
    z.add_scalar(s * z.max() + 0.2 * z.mean() - 0.1 * z.min())
}

fn fwd() -> ForwardOptions {
    ForwardOptions {
        tol: 1e-15,
        max_iter: 100_000,
        anderson: None,
    }
}

#[test]
fn reductions_match_finite_differences() {
    for seed in 0..3 {
        let mut r = rng(40 + seed);
        let n = 7;
        let mut a = normal_mat(&mut r, n, n);
        a /= a.norm();
        let b = normal_vec(&mut r, n);
        let s = -0.15;
        let g = normal_vec(&mut r, n);
        let x0 = DVector::zeros(n);
        let x = shifted::solve(&x0, &b, s, &a, &fwd()).unwrap().x;
        let grads = shifted::backward(&x, &b, s, &a, &g, &BackwardOptions::default()).unwrap();
        let loss = |b: &DVector<f64>| g.dot(&shifted::solve(&x0, b, s, &a, &fwd()).unwrap().x);
        let fd = fd_grad(loss, &b, 1e-6);
        assert!(
            rel_err(&grads.b, &fd) < 1e-6,
            "seed {seed}: {} vs {fd}",
            grads.b
        );
        let ls = |s: f64| g.dot(&shifted::solve(&x0, &b, s, &a, &fwd()).unwrap().x);
        let fd_s = (ls(s + 1e-6) - ls(s - 1e-6)) / 2e-6;
        assert!(
            (grads.s - fd_s).abs() < 1e-6 * (1.0 + fd_s.abs()),
            "{} vs {fd_s}",
            grads.s
        );
        // Dense Jacobians agree with products.
        let j = shifted::jacobians(&x, &b, s, &a);
        let u = normal_vec(&mut r, n);
        let lin = shifted::linearize(&x, &b, s, &a);
        assert!(rel_err(&(&j.state * &u), &lin.jvp_state(&u)) < 1e-12);
    }
}

#[test]
fn ties_go_to_the_first_extreme_entry() {
    let v = DVector::from_vec(vec![1.0, 3.0, -2.0, 3.0, -2.0]);
    assert_eq!(max_entry(&v), 3.0);
    assert_eq!(min_entry(&v), -2.0);
    assert_eq!(argmax_indicator(&v).as_slice(), &[0.0, 1.0, 0.0, 0.0, 0.0]);
    assert_eq!(argmin_indicator(&v).as_slice(), &[0.0, 0.0, 1.0, 0.0, 0.0]);
    let empty = DVector::<f64>::zeros(0);
    assert!(max_entry(&empty).is_nan());
    let bad = DVector::from_vec(vec![1.0, f64::NAN]);
    assert!(argmax_indicator(&bad).iter().all(|x| x.is_nan()));
}

#[test]
fn derivatives_name_the_indicators() {
    let d = shifted::DERIVATIVES;
    assert!(d.contains("argmax") && d.contains("argmin"), "{d}");
}
