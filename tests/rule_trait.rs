//! The generated `<module>::Rule` implements `FoldRule`: generic code gets the same answers
//! as the module's functions, the flat views round-trip (matrices column-major, scalars
//! (1, 1)), and the gradients it returns agree with central finite differences of the
//! whole solve.

mod common;

use common::*;
use fold_runtime::prelude::*;

/// Vector state, a vector parameter and a scalar parameter.
#[fold(state = x, params(c, alpha))]
fn pgd(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
    proj_box(&(x - (q * x + c) * alpha), 0.0, 1.0)
}

/// A matrix parameter (a contractive equilibrium layer `x = tanh(W x + b)`).
#[fold(state = x, params(w, b))]
fn deq(x: &DVector<f64>, w: &DMatrix<f64>, b: &DVector<f64>) -> DVector<f64> {
    tanh(&(w * x + b))
}

/// Block state: heavy-ball gradient descent on ½xᵀQx + cᵀx, `(x_prev, x)`.
#[fold(state = (y, x), params(c))]
fn heavy(
    y: &DVector<f64>,
    x: &DVector<f64>,
    c: &DVector<f64>,
    q: &DMatrix<f64>,
    alpha: f64,
    beta: f64,
) -> (DVector<f64>, DVector<f64>) {
    let next = x - (q * x + c) * alpha + (x - y) * beta;
    (x.clone(), next)
}

/// The rule of `pgd` with the state and a parameter taken by value and the step size by
/// reference: the bundles convert between owned and declared forms.
#[fold(state = x, params(c, alpha))]
fn pgd_by_value(x: DVector<f64>, c: DVector<f64>, q: &DMatrix<f64>, alpha: &f64) -> DVector<f64> {
    proj_box(&(&x - (q * &x + c) * *alpha), 0.0, 1.0)
}

fn fwd() -> ForwardOptions {
    ForwardOptions {
        tol: 1e-14,
        max_iter: 100_000,
        anderson: None,
    }
}

/// Loss `gᵀ x*(θ)` by the trait's solve, for a finite-difference reference.
fn loss<R: FoldRule>(p: &R::Params, k: &R::Consts, x0: &R::State, g: &DVector<f64>) -> f64 {
    R::solve(p, k, x0, &fwd()).unwrap().x.dot(g)
}

/// Central differences of `loss` along every flat parameter coordinate.
fn fd_grads<R: FoldRule>(
    p: &R::Params,
    k: &R::Consts,
    x0: &R::State,
    g: &DVector<f64>,
) -> Vec<f64> {
    let shapes = R::param_shapes(p);
    let mut flat = Vec::new();
    R::params_to_flat(p, &mut flat);
    let h = 1e-6;
    (0..flat.len())
        .map(|i| {
            let mut plus = flat.clone();
            plus[i] += h;
            let mut minus = flat.clone();
            minus[i] -= h;
            let lp = loss::<R>(&R::params_from_flat(&plus, &shapes).unwrap(), k, x0, g);
            let lm = loss::<R>(&R::params_from_flat(&minus, &shapes).unwrap(), k, x0, g);
            (lp - lm) / (2.0 * h)
        })
        .collect()
}

/// Trait gradient, flattened.
fn trait_grads<R: FoldRule>(
    p: &R::Params,
    k: &R::Consts,
    x0: &R::State,
    g: &DVector<f64>,
) -> Vec<f64> {
    let sol = R::solve(p, k, x0, &fwd()).unwrap();
    let x = R::unpack(&sol.x, x0).unwrap();
    let (grads, _) = R::backward(p, k, &x, g, &BackwardOptions::default()).unwrap();
    let mut out = Vec::new();
    R::grads_to_flat(&grads, &mut out);
    // The flat view of the grads reads back as the same grads.
    let back = R::grads_from_flat(&out, &R::param_shapes(p)).unwrap();
    let mut again = Vec::new();
    R::grads_to_flat(&back, &mut again);
    assert_eq!(out, again);
    out
}

fn assert_close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * scale, "{what}[{i}]: {x} vs {y}");
    }
}

#[test]
fn vector_state_matches_module_functions_and_finite_differences() {
    let mut r = rng(11);
    let n = 6;
    let q = spd(&mut r, n, 0.5);
    let alpha = 0.5 / lambda_max(&q);
    let p = pgd::Params {
        c: normal_vec(&mut r, n) * 0.5,
        alpha,
    };
    let k = pgd::Consts { q: q.clone() };
    let x0 = DVector::zeros(n);
    let g = normal_vec(&mut r, n);
    type R = pgd::Rule;
    assert_eq!(<R as FoldRule>::NAME, "pgd");
    assert_eq!(<R as FoldRule>::PARAMS, &["c", "alpha"]);
    assert_eq!(<R as FoldRule>::CONSTS, &["q"]);
    assert_eq!(<R as FoldRule>::BLOCKS, 1);
    assert_eq!(R::param_shapes(&p), vec![(n, 1), (1, 1)]);

    let sol = R::solve(&p, &k, &x0, &fwd()).unwrap();
    let direct = pgd::solve(&x0, &p.c, &q, alpha, &fwd()).unwrap();
    assert_eq!(sol.x, direct.x);
    // The trait's step is the rule itself, and x* is its fixed point.
    assert_eq!(
        R::step(&p, &k, &sol.x).unwrap(),
        pgd(&sol.x, &p.c, &q, alpha)
    );
    let grads = R::backward(&p, &k, &sol.x, &g, &BackwardOptions::default())
        .unwrap()
        .0;
    let module = pgd::backward(&sol.x, &p.c, &q, alpha, &g, &BackwardOptions::default()).unwrap();
    assert_eq!(grads, module);
    assert_close(
        &trait_grads::<R>(&p, &k, &x0, &g),
        &fd_grads::<R>(&p, &k, &x0, &g),
        1e-6,
        "pgd",
    );
}

#[test]
fn matrix_param_flattens_column_major_and_matches_finite_differences() {
    let mut r = rng(12);
    let n = 4;
    let p = deq::Params {
        w: normal_mat(&mut r, n, n) * 0.2,
        b: normal_vec(&mut r, n),
    };
    let k = deq::Consts {};
    type R = deq::Rule;
    let mut flat = Vec::new();
    R::params_to_flat(&p, &mut flat);
    assert_eq!(R::param_shapes(&p), vec![(n, n), (n, 1)]);
    // Entry (i, j) of W sits at i + n j.
    assert_eq!(flat[1 + n * 2], p.w[(1, 2)]);
    assert_eq!(flat[n * n + 3], p.b[3]);
    assert_eq!(R::params_from_flat(&flat, &R::param_shapes(&p)).unwrap(), p);
    let x0 = DVector::zeros(n);
    let g = normal_vec(&mut r, n);
    assert_close(
        &trait_grads::<R>(&p, &k, &x0, &g),
        &fd_grads::<R>(&p, &k, &x0, &g),
        1e-6,
        "deq",
    );
}

#[test]
fn block_state_packs_in_declared_order() {
    let mut r = rng(13);
    let n = 5;
    let q = spd(&mut r, n, 0.5);
    let k = heavy::Consts {
        alpha: 0.5 / lambda_max(&q),
        q,
        beta: 0.3,
    };
    let p = heavy::Params {
        c: normal_vec(&mut r, n),
    };
    type R = heavy::Rule;
    assert_eq!(<R as FoldRule>::BLOCKS, 2);
    let x0 = (normal_vec(&mut r, n), normal_vec(&mut r, n));
    let packed = R::pack(&x0);
    assert_eq!(packed.rows(0, n), x0.0.rows(0, n));
    assert_eq!(packed.rows(n, n), x0.1.rows(0, n));
    assert_eq!(R::unpack(&packed, &x0).unwrap(), x0);
    assert!(matches!(
        R::unpack(&packed.rows(0, n + 1).into_owned(), &x0),
        Err(FoldError::DimensionMismatch { .. })
    ));
    let stepped = R::step(&p, &k, &x0).unwrap();
    assert_eq!(stepped, heavy(&x0.0, &x0.1, &p.c, &k.q, k.alpha, k.beta));
    let g = normal_vec(&mut r, 2 * n);
    assert_close(
        &trait_grads::<R>(&p, &k, &x0, &g),
        &fd_grads::<R>(&p, &k, &x0, &g),
        1e-6,
        "heavy",
    );
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    type R = pgd::Rule;
    let p = pgd::Params {
        c: DVector::from_vec(vec![f64::NAN, 0.0]),
        alpha: 0.1,
    };
    let k = pgd::Consts {
        q: DMatrix::identity(2, 2),
    };
    let x0 = DVector::zeros(2);
    assert!(matches!(
        R::solve(&p, &k, &x0, &fwd()),
        Err(FoldError::NonFinite { .. })
    ));
    assert!(matches!(
        R::step(&p, &k, &DVector::zeros(3)),
        Err(FoldError::DimensionMismatch { .. })
    ));
    assert!(R::params_from_flat(&[1.0, 2.0], &[(2, 1)]).is_err());
    assert!(R::params_from_flat(&[1.0, 2.0, 3.0], &[(2, 1), (1, 1), (1, 1)]).is_err());
}

#[test]
fn arguments_by_value_or_reference_give_the_same_rule() {
    let mut r = rng(17);
    let n = 5;
    let q = spd(&mut r, n, 0.5);
    let alpha = 0.5 / lambda_max(&q);
    let c = normal_vec(&mut r, n) * 0.5;
    let g = normal_vec(&mut r, n);
    let x0 = DVector::zeros(n);
    let opts = BackwardOptions::default();

    let x = pgd::solve(&x0, &c, &q, alpha, &fwd()).unwrap().x;
    let by_value = pgd_by_value::solve(x0.clone(), c.clone(), &q, &alpha, &fwd()).unwrap();
    assert_eq!(by_value.x, x);
    let reference = pgd::backward(&x, &c, &q, alpha, &g, &opts).unwrap();
    let grads = pgd_by_value::backward(x.clone(), c.clone(), &q, &alpha, &g, &opts).unwrap();
    assert_eq!(
        (grads.c.clone(), grads.alpha),
        (reference.c.clone(), reference.alpha)
    );
    let j = pgd_by_value::jacobians(x.clone(), c.clone(), &q, &alpha);
    let jr = pgd::jacobians(&x, &c, &q, alpha);
    assert_eq!((j.state, j.c, j.alpha), (jr.state, jr.c, jr.alpha));

    // The trait reads the owned bundles into the declared forms.
    type R = pgd_by_value::Rule;
    let p = pgd_by_value::Params {
        c: c.clone(),
        alpha,
    };
    let k = pgd_by_value::Consts { q: q.clone() };
    assert_eq!(R::solve(&p, &k, &x0, &fwd()).unwrap().x, x);
    assert_eq!(R::backward(&p, &k, &x, &g, &opts).unwrap().0, grads);
    assert_close(
        &trait_grads::<R>(&p, &k, &x0, &g),
        &fd_grads::<R>(&p, &k, &x0, &g),
        1e-6,
        "pgd_by_value",
    );
}
