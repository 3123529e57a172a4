//! A deep rule through the macro: sixteen projected-gradient steps of the nonconvex box-QP
//! written out one after another. Its expansion is linear in the depth (issue: it was
//! exponential), and its gradient is the one-step rule's (the same fixed point) and matches
//! finite differences of the whole forward solve.

mod common;

use common::*;
use fold_runtime::prelude::*;

/// One step of  min ½xᵀQx + cᵀ sin(x)  over the box [−1, 1].
#[fold(state = y0, params(c))]
fn one_step(y0: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
    proj_box(
        &(y0 - (q * y0 + c.component_mul(&cos(y0))) * alpha),
        -1.0,
        1.0,
    )
}

/// Sixteen of them.
#[fold(state = y0, params(c))]
fn sixteen_steps(
    y0: &DVector<f64>,
    c: &DVector<f64>,
    q: &DMatrix<f64>,
    alpha: f64,
) -> DVector<f64> {
    let y1 = proj_box(
        &(y0 - (q * y0 + c.component_mul(&cos(y0))) * alpha),
        -1.0,
        1.0,
    );
    let y2 = proj_box(
        &(&y1 - (q * &y1 + c.component_mul(&cos(&y1))) * alpha),
        -1.0,
        1.0,
    );
    let y3 = proj_box(
        &(&y2 - (q * &y2 + c.component_mul(&cos(&y2))) * alpha),
        -1.0,
        1.0,
    );
    let y4 = proj_box(
        &(&y3 - (q * &y3 + c.component_mul(&cos(&y3))) * alpha),
        -1.0,
        1.0,
    );
    let y5 = proj_box(
        &(&y4 - (q * &y4 + c.component_mul(&cos(&y4))) * alpha),
        -1.0,
        1.0,
    );
    let y6 = proj_box(
        &(&y5 - (q * &y5 + c.component_mul(&cos(&y5))) * alpha),
        -1.0,
        1.0,
    );
    let y7 = proj_box(
        &(&y6 - (q * &y6 + c.component_mul(&cos(&y6))) * alpha),
        -1.0,
        1.0,
    );
    let y8 = proj_box(
        &(&y7 - (q * &y7 + c.component_mul(&cos(&y7))) * alpha),
        -1.0,
        1.0,
    );
    let y9 = proj_box(
        &(&y8 - (q * &y8 + c.component_mul(&cos(&y8))) * alpha),
        -1.0,
        1.0,
    );
    let y10 = proj_box(
        &(&y9 - (q * &y9 + c.component_mul(&cos(&y9))) * alpha),
        -1.0,
        1.0,
    );
    let y11 = proj_box(
        &(&y10 - (q * &y10 + c.component_mul(&cos(&y10))) * alpha),
        -1.0,
        1.0,
    );
    let y12 = proj_box(
        &(&y11 - (q * &y11 + c.component_mul(&cos(&y11))) * alpha),
        -1.0,
        1.0,
    );
    let y13 = proj_box(
        &(&y12 - (q * &y12 + c.component_mul(&cos(&y12))) * alpha),
        -1.0,
        1.0,
    );
    let y14 = proj_box(
        &(&y13 - (q * &y13 + c.component_mul(&cos(&y13))) * alpha),
        -1.0,
        1.0,
    );
    let y15 = proj_box(
        &(&y14 - (q * &y14 + c.component_mul(&cos(&y14))) * alpha),
        -1.0,
        1.0,
    );
    proj_box(
        &(&y15 - (q * &y15 + c.component_mul(&cos(&y15))) * alpha),
        -1.0,
        1.0,
    )
}

fn fwd() -> ForwardOptions {
    ForwardOptions {
        tol: 1e-15,
        max_iter: 100_000,
        anderson: None,
    }
}

#[test]
fn sixteen_chained_steps_give_the_one_step_gradient_and_match_finite_differences() {
    for seed in 0..3 {
        let mut r = rng(100 + seed);
        let n = 12;
        let q = spd(&mut r, n, 0.5);
        let c = normal_vec(&mut r, n) * 0.6;
        let g = normal_vec(&mut r, n);
        let alpha = 0.5 / lambda_max(&q);
        let x0 = DVector::zeros(n);
        let x = sixteen_steps::solve(&x0, &c, &q, alpha, &fwd()).unwrap().x;
        let x1 = one_step::solve(&x0, &c, &q, alpha, &fwd()).unwrap().x;
        assert!(rel_err(&x, &x1) < 1e-10, "same fixed point");
        let opts = BackwardOptions::default();
        let deep = sixteen_steps::backward(&x, &c, &q, alpha, &g, &opts)
            .unwrap()
            .c;
        let shallow = one_step::backward(&x1, &c, &q, alpha, &g, &opts).unwrap().c;
        assert!(
            rel_err(&deep, &shallow) < 1e-8,
            "seed {seed}: {deep} vs {shallow}"
        );
        // Finite differences of the whole forward solve of the deep rule.
        let loss = |c: &DVector<f64>| {
            let x = sixteen_steps::solve(&x0, c, &q, alpha, &fwd()).unwrap().x;
            g.dot(&x)
        };
        let fd = fd_grad(loss, &c, 1e-6);
        assert!(rel_err(&deep, &fd) < 1e-5, "seed {seed}: {deep} vs FD {fd}");
        // Explicit methods on the full system agree with the reduced default.
        let gmres = BackwardOptions {
            method: Method::Gmres { restart: 30 },
            ..BackwardOptions::default()
        };
        let full = sixteen_steps::backward(&x, &c, &q, alpha, &g, &gmres)
            .unwrap()
            .c;
        assert!(rel_err(&full, &deep) < 1e-8);
    }
}

/// The dense Jacobians of a deep rule join the e-graph after saturation (they are not
/// rewritten, only share the simplified terms): `Φ` and `Ψ_c` still equal the columns of the
/// saturated JVPs, at a point where the box is active in some coordinates and not others.
#[test]
fn sixteen_steps_jacobians_equal_the_jvp_columns() {
    let mut r = rng(7);
    let n = 9;
    let q = spd(&mut r, n, 0.5);
    let c = normal_vec(&mut r, n) * 3.0;
    let alpha = 0.5 / lambda_max(&q);
    let y = normal_vec(&mut r, n) * 0.9;
    let lin = sixteen_steps::linearize(&y, &c, &q, alpha);
    let jac = sixteen_steps::jacobians(&y, &c, &q, alpha);
    let mut active = 0;
    for j in 0..n {
        let mut e = DVector::zeros(n);
        e[j] = 1.0;
        let col = Linearized::jvp_state(&lin, &e);
        assert!(
            rel_err(&jac.state.column(j).into_owned(), &col) < 1e-12,
            "Φ column {j}"
        );
        let dc = Linearized::jvp_params(&lin, &sixteen_steps::Grads { c: e });
        assert!(
            rel_err(&jac.c.column(j).into_owned(), &dc) < 1e-12,
            "Ψ_c column {j}"
        );
        active += usize::from(col.iter().all(|x| *x == 0.0));
    }
    assert!(
        jac.state.norm() > 0.0 && active < n,
        "{active} of {n} columns vanish"
    );
}
