//! Issue 14 at the runtime level: singular but consistent systems, typed breakdowns,
//! option validation, approximate backward modes, fixed-point checks.

use fold_runtime::__private::{bicgstab, DenseOperator, Stop};
use fold_runtime::nalgebra::{DMatrix, DVector};
use fold_runtime::{
    check_fixed_point, folded_backward, folded_backward_at, folded_jvp, solve_adjoint,
    BackwardOptions, FixedPointCheck, FoldError, Linearized, Method,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn random_orthogonal(r: &mut StdRng, n: usize) -> DMatrix<f64> {
    DMatrix::from_fn(n, n, |_, _| r.random_range(-1.0..1.0))
        .qr()
        .q()
}

/// Φ and Ψ given densely (Ψ = I unless set).
struct DenseLin {
    phi: DMatrix<f64>,
    psi: DMatrix<f64>,
    offer_jacobian: bool,
}

impl Linearized for DenseLin {
    type Grads = DVector<f64>;
    fn state_dim(&self) -> usize {
        self.phi.nrows()
    }
    fn vjp_state(&self, v: &DVector<f64>) -> DVector<f64> {
        self.phi.tr_mul(v)
    }
    fn jvp_state(&self, u: &DVector<f64>) -> DVector<f64> {
        &self.phi * u
    }
    fn vjp_params(&self, v: &DVector<f64>) -> DVector<f64> {
        self.psi.tr_mul(v)
    }
    fn jvp_params(&self, d: &DVector<f64>) -> DVector<f64> {
        &self.psi * d
    }
    fn state_jacobian(&self) -> Option<DMatrix<f64>> {
        self.offer_jacobian.then(|| self.phi.clone())
    }
}

fn opts(method: Method) -> BackwardOptions {
    BackwardOptions {
        method,
        tol: 1e-10,
        max_iter: 2000,
    }
}

/// Φ = Q diag(1, …, 1, λ…) Qᵀ with `k` unit eigenvalues, the rest in [0, 0.6).
fn symmetric_with_unit_eigenvalues(
    r: &mut StdRng,
    n: usize,
    k: usize,
) -> (DMatrix<f64>, DMatrix<f64>, DVector<f64>) {
    let q = random_orthogonal(r, n);
    let lambda = DVector::from_fn(n, |i, _| if i < k { 1.0 } else { r.random_range(0.0..0.6) });
    let phi = &q * DMatrix::from_diagonal(&lambda) * q.transpose();
    (phi, q, lambda)
}

#[test]
fn consistent_singular_systems_give_the_minimum_norm_adjoint() {
    let mut r = StdRng::seed_from_u64(14);
    for (n, k) in [(6usize, 1usize), (12, 2), (40, 3)] {
        let (phi, q, lambda) = symmetric_with_unit_eigenvalues(&mut r, n, k);
        // g ⊥ the null space (the first k eigenvectors): consistent.
        let mut g = DVector::from_fn(n, |_, _| r.random_range(-1.0..1.0));
        for i in 0..k {
            let qi = q.column(i).into_owned();
            g -= &qi * qi.dot(&g);
        }
        // The minimum-norm solution by the eigen-decomposition, independently.
        let mut w_ref = DVector::zeros(n);
        for i in k..n {
            let qi = q.column(i).into_owned();
            w_ref += &qi * (qi.dot(&g) / (1.0 - lambda[i]));
        }
        for offer in [false, true] {
            let lin = DenseLin {
                phi: phi.clone(),
                psi: DMatrix::identity(n, n),
                offer_jacobian: offer,
            };
            for method in [Method::Auto, Method::Direct] {
                let (w, stats) = solve_adjoint(&lin, &g, &opts(method)).unwrap();
                assert_eq!(stats.null_space_dim, Some(k), "n={n} {method:?}");
                assert!(stats.residual <= 1e-10);
                let err = (&w - &w_ref).norm() / w_ref.norm();
                assert!(err < 1e-9, "n={n} {method:?} offer={offer}: {err}");
                // No component along the null space.
                for i in 0..k {
                    assert!(q.column(i).dot(&w).abs() < 1e-9 * w.norm());
                }
            }
            // Forward mode on a consistent right-hand side, too.
            let (t, stats) = folded_jvp(&lin, &g, &opts(Method::Direct)).unwrap();
            assert_eq!(stats.null_space_dim, Some(k));
            assert!((&t - &w_ref).norm() < 1e-9 * w_ref.norm());
        }
        // Inconsistent: still an error.
        let lin = DenseLin {
            phi: phi.clone(),
            psi: DMatrix::identity(n, n),
            offer_jacobian: false,
        };
        let bad = &g + q.column(0) * 0.5;
        for method in [Method::Auto, Method::Direct] {
            assert_eq!(
                folded_backward(&lin, &bad, &opts(method)).unwrap_err(),
                FoldError::Singular,
                "n={n} {method:?}"
            );
        }
    }
}

#[test]
fn regular_systems_report_no_null_space() {
    let mut r = StdRng::seed_from_u64(1);
    let n = 10;
    let phi = DMatrix::from_fn(n, n, |_, _| r.random_range(-0.05..0.05));
    let lin = DenseLin {
        phi,
        psi: DMatrix::identity(n, n),
        offer_jacobian: false,
    };
    let g = DVector::from_element(n, 1.0);
    let (_, stats) = folded_backward(&lin, &g, &opts(Method::Auto)).unwrap();
    assert_eq!(stats.null_space_dim, None);
    assert_eq!(stats.forward_residual, None);
}

#[test]
fn bicgstab_breakdowns_on_singular_systems_are_typed() {
    let stop = Stop {
        tol: 1e-12,
        max_iter: 500,
    };
    let mut r = StdRng::seed_from_u64(5);
    let mut cases: Vec<DMatrix<f64>> = vec![
        DMatrix::zeros(3, 3),
        DMatrix::from_row_slice(2, 2, &[0.0, 1.0, 0.0, 0.0]),
        DMatrix::from_row_slice(3, 3, &[0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]),
        DMatrix::from_element(4, 4, 1.0),
    ];
    for _ in 0..20 {
        let n = r.random_range(2..12);
        let u = DVector::from_fn(n, |_, _| r.random_range(-1.0..1.0));
        let v = DVector::from_fn(n, |_, _| r.random_range(-1.0..1.0));
        let rank1 = &u * v.transpose();
        let scale = 10f64.powi(r.random_range(-5..150));
        cases.push(rank1 * scale);
    }
    for a in &cases {
        let n = a.nrows();
        let b = DVector::from_fn(n, |i, _| 1.0 + i as f64);
        let op = DenseOperator::new(a).unwrap();
        match bicgstab(&op, &b, &stop) {
            Ok(s) => {
                let res = (a * &s.x - &b).norm() / b.norm();
                assert!(res <= 1e-12 * 1.01, "claimed a solution: {res}");
            }
            Err(FoldError::NotConverged { .. }) | Err(FoldError::Singular) => {}
            Err(e) => panic!("untyped breakdown on a finite system: {e}"),
        }
    }
    // Through the backward pass: an inconsistent singular adjoint system.
    let (phi, q, _) = symmetric_with_unit_eigenvalues(&mut r, 8, 1);
    let lin = DenseLin {
        phi,
        psi: DMatrix::identity(8, 8),
        offer_jacobian: false,
    };
    let g = q.column(0) + DVector::from_element(8, 0.1);
    let e = folded_backward(&lin, &g, &opts(Method::BiCgStab)).unwrap_err();
    assert!(
        matches!(e, FoldError::NotConverged { .. } | FoldError::Singular),
        "{e}"
    );
}

#[test]
fn tolerances_are_validated() {
    let n = 4;
    let lin = DenseLin {
        phi: DMatrix::identity(n, n) * 0.5,
        psi: DMatrix::identity(n, n),
        offer_jacobian: false,
    };
    let g = DVector::from_element(n, 1.0);
    for method in [
        Method::Auto,
        Method::Direct,
        Method::Gmres { restart: 4 },
        Method::BiCgStab,
        Method::Lfpi,
    ] {
        for tol in [0.0, -1e-3] {
            let o = BackwardOptions {
                tol,
                ..opts(method)
            };
            assert!(
                matches!(
                    folded_backward(&lin, &g, &o),
                    Err(FoldError::InvalidOption { .. })
                ),
                "{method:?} tol={tol}"
            );
            assert!(matches!(
                folded_jvp(&lin, &g, &o),
                Err(FoldError::InvalidOption { .. })
            ));
        }
        let o = BackwardOptions {
            tol: f64::NAN,
            ..opts(method)
        };
        assert!(matches!(
            folded_backward(&lin, &g, &o),
            Err(FoldError::NonFinite { .. })
        ));
        // The smallest positive tolerances Direct can meet: its rounding floor.
        let o = BackwardOptions {
            tol: 1e-15,
            ..opts(Method::Direct)
        };
        assert!(folded_backward(&lin, &g, &o).is_ok());
    }
    // Forward: negative is invalid; 0 accepts an exact fixed point.
    let neg = fold_runtime::ForwardOptions {
        tol: -1.0,
        max_iter: 10,
        anderson: None,
    };
    assert!(matches!(
        fold_runtime::fixed_point(|x: &DVector<f64>| Ok(x * 0.5), DVector::zeros(2), &neg),
        Err(FoldError::InvalidOption { .. })
    ));
    let zero = fold_runtime::ForwardOptions { tol: 0.0, ..neg };
    let sol = fold_runtime::fixed_point(|x: &DVector<f64>| Ok(x * 0.5), DVector::zeros(2), &zero)
        .unwrap();
    assert_eq!(sol.iterations, 1);
}

#[test]
fn approximate_modes_have_their_documented_error() {
    let mut r = StdRng::seed_from_u64(21);
    let n = 15;
    // Φ with ‖Φ‖₂ = 0.5.
    let b: DMatrix<f64> = DMatrix::from_fn(n, n, |_, _| r.random_range(-1.0..1.0));
    let phi: DMatrix<f64> = &b * (0.5 / b.clone().svd(false, false).singular_values.max());
    let psi = DMatrix::from_fn(n, 3, |_, _| r.random_range(-1.0..1.0));
    let g = DVector::from_fn(n, |_, _| r.random_range(-1.0..1.0));
    let lin = DenseLin {
        phi: phi.clone(),
        psi: psi.clone(),
        offer_jacobian: false,
    };
    let eye = DMatrix::<f64>::identity(n, n);
    let w_star = (&eye - phi.transpose()).lu().solve(&g).unwrap();
    let exact = psi.tr_mul(&w_star);

    // Jacobian-free: w = g, error Ψᵀ(g − w*) = −Ψᵀ (I − Φᵀ)⁻¹ Φᵀ g.
    let (jf, stats) = folded_backward(&lin, &g, &opts(Method::JacobianFree)).unwrap();
    assert_eq!(stats.method, Method::JacobianFree);
    assert!((&jf - psi.tr_mul(&g)).amax() < 1e-15);
    let predicted = (&eye - phi.transpose())
        .lu()
        .solve(&phi.tr_mul(&g))
        .unwrap();
    assert!(((&jf - &exact) + psi.tr_mul(&predicted)).amax() < 1e-12);
    assert!((stats.residual - phi.tr_mul(&g).norm() / g.norm()).abs() < 1e-12);
    let err_jf = (&jf - &exact).norm() / exact.norm();

    // Phantom: w_k − w* = T^k (g − w*) with T = (1 − λ) I + λ Φᵀ.
    let mut last = f64::INFINITY;
    for (steps, damping) in [(1usize, 0.5), (3, 0.5), (8, 0.5), (8, 1.0), (30, 0.8)] {
        let m = Method::Phantom { steps, damping };
        let (ph, stats) = folded_backward(&lin, &g, &opts(m)).unwrap();
        assert_eq!(stats.iterations, steps + 1);
        let t = &eye * (1.0 - damping) + phi.transpose() * damping;
        let w_k = &w_star + t.pow(steps as u32) * (&g - &w_star);
        assert!((&ph - psi.tr_mul(&w_k)).amax() < 1e-12, "{m:?}");
        let err = (&ph - &exact).norm() / exact.norm();
        if damping == 0.5 {
            assert!(err < last, "{m:?}: {err} ≥ {last}");
            last = err;
        }
        assert!(err < err_jf || steps == 1, "{m:?}");
    }
    // 30 steps at ρ(T) ≤ 0.2 + 0.8·0.5 = 0.6: 0.6³⁰ ≈ 2e-7 relative to the start.
    let (ph, _) = folded_backward(
        &lin,
        &g,
        &opts(Method::Phantom {
            steps: 30,
            damping: 0.8,
        }),
    )
    .unwrap();
    assert!((&ph - &exact).norm() / exact.norm() < 1e-5);
    // Bad damping is an option error.
    for damping in [0.0, -0.5, 1.5, f64::NAN] {
        assert!(matches!(
            folded_backward(&lin, &g, &opts(Method::Phantom { steps: 2, damping })),
            Err(FoldError::InvalidOption { .. })
        ));
    }
}

#[test]
fn fixed_point_checks_report_and_refuse() {
    let n = 3;
    let lin = DenseLin {
        phi: DMatrix::identity(n, n) * 0.5,
        psi: DMatrix::identity(n, n),
        offer_jacobian: false,
    };
    let g = DVector::from_element(n, 1.0);
    let x = DVector::from_vec(vec![1.0, 2.0, -3.0]);
    // U(x) = 0.5 x + 1.5: ‖U(x) − x‖∞ = |−0.5·(−3) + 1.5| = 3 at x₂ = −3 → 3 / 4.
    let ux = &x * 0.5 + DVector::from_element(n, 1.5);
    let r = FixedPointCheck::residual(&x, &ux).unwrap();
    assert!((r - 0.75).abs() < 1e-15);
    let (_, stats) = folded_backward_at(&lin, &g, &opts(Method::Auto), &x, &ux, None).unwrap();
    assert_eq!(stats.forward_residual, Some(r));
    let strict = FixedPointCheck { tol: 1e-3 };
    assert!(matches!(
        folded_backward_at(&lin, &g, &opts(Method::Auto), &x, &ux, Some(&strict)),
        Err(FoldError::NotAFixedPoint { .. })
    ));
    let loose = FixedPointCheck { tol: 1.0 };
    assert!(folded_backward_at(&lin, &g, &opts(Method::Auto), &x, &ux, Some(&loose)).is_ok());
    assert!(check_fixed_point(1e-9, 1e-8).is_ok());
    assert!(matches!(
        check_fixed_point(1e-7, 1e-8),
        Err(FoldError::NotAFixedPoint { .. })
    ));
    assert!(matches!(
        check_fixed_point(0.0, f64::NAN),
        Err(FoldError::InvalidOption { .. })
    ));
    assert!(matches!(
        FixedPointCheck::residual(&x, &DVector::zeros(2)),
        Err(FoldError::DimensionMismatch { .. })
    ));
}

#[test]
fn huge_and_tiny_right_hand_sides_are_solved_not_zeroed() {
    // ‖g‖ overflows (or its squares underflow): the ladder rescales; it used to return
    // w = 0 with a NaN residual from GMRES.
    let n = 3;
    let lin = DenseLin {
        phi: DMatrix::identity(n, n) * 0.5,
        psi: DMatrix::identity(n, n),
        offer_jacobian: false,
    };
    for scale in [1e300, 1e-300] {
        let g = DVector::from_element(n, scale);
        for method in [
            Method::Auto,
            Method::Direct,
            Method::Gmres { restart: 3 },
            Method::BiCgStab,
            Method::Lfpi,
            Method::JacobianFree,
        ] {
            let (w, stats) = solve_adjoint(&lin, &g, &opts(method)).unwrap();
            let expected = if method == Method::JacobianFree {
                1.0
            } else {
                2.0
            };
            assert!(
                w.iter().all(|&wi| (wi / scale - expected).abs() < 1e-9),
                "{method:?} {scale}: {w}"
            );
            assert!(stats.residual.is_finite(), "{method:?}: {stats:?}");
        }
    }
    // An answer beyond f64's range is an error, not infinity.
    let g = DVector::from_element(n, f64::MAX);
    assert!(matches!(
        solve_adjoint(&lin, &g, &opts(Method::Direct)),
        Err(FoldError::NonFinite { .. })
    ));
    // GMRES with a zero Krylov dimension is an option error.
    assert!(matches!(
        solve_adjoint(&lin, &g, &opts(Method::Gmres { restart: 0 })),
        Err(FoldError::InvalidOption { .. })
    ));
}
