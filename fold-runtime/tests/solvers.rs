//! The folded backward's solvers against independent dense references (nalgebra's own
//! LU on explicitly formed matrices), on hand-written `Linearized` implementations.

use fold_runtime::backward::{AUTO_DIRECT_MAX, REDUCED_DENSE_MAX};
use fold_runtime::nalgebra::{DMatrix, DVector};
use fold_runtime::{
    folded_backward, folded_jvp, solve_adjoint, BackwardOptions, Factored, FoldError, Linearized,
    Method, SupportKernel,
};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// ---------------------------------------------------------------- helpers

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn random_matrix(r: &mut StdRng, m: usize, n: usize) -> DMatrix<f64> {
    DMatrix::from_fn(m, n, |_, _| r.random_range(-1.0..1.0))
}

fn random_vector(r: &mut StdRng, n: usize) -> DVector<f64> {
    DVector::from_fn(n, |_, _| r.random_range(-1.0..1.0))
}

fn spectral_norm(a: &DMatrix<f64>) -> f64 {
    a.clone().svd(false, false).singular_values.max()
}

/// A random non-symmetric Φ with `‖Φ‖₂ = rho`.
fn contraction(r: &mut StdRng, n: usize, rho: f64) -> DMatrix<f64> {
    let b = random_matrix(r, n, n);
    let s = spectral_norm(&b);
    b * (rho / s)
}

fn random_orthogonal(r: &mut StdRng, n: usize) -> DMatrix<f64> {
    random_matrix(r, n, n).qr().q()
}

fn rel_err(a: &DVector<f64>, b: &DVector<f64>) -> f64 {
    (a - b).norm() / b.norm().max(1e-300)
}

/// `Φ` and `Ψ` given densely; the products are what a generated linearization computes.
struct Dense {
    phi: DMatrix<f64>,
    psi: DMatrix<f64>,
    offer_jacobian: bool,
}

impl Dense {
    fn new(phi: DMatrix<f64>, psi: DMatrix<f64>) -> Self {
        Dense {
            phi,
            psi,
            offer_jacobian: false,
        }
    }
}

impl Linearized for Dense {
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

/// Independent reference: `w = (I − Φ)⁻ᵀ g` by nalgebra's LU, and `Ψᵀ w`.
fn reference(
    phi: &DMatrix<f64>,
    psi: &DMatrix<f64>,
    g: &DVector<f64>,
) -> (DVector<f64>, DVector<f64>) {
    let n = phi.nrows();
    let a = (DMatrix::identity(n, n) - phi).transpose();
    let w = a.lu().solve(g).expect("reference system is nonsingular");
    let grads = psi.tr_mul(&w);
    (w, grads)
}

fn opts(method: Method) -> BackwardOptions {
    BackwardOptions {
        method,
        ..BackwardOptions::default()
    }
}

const ALL_METHODS: [Method; 5] = [
    Method::Auto,
    Method::Direct,
    Method::Gmres { restart: 30 },
    Method::BiCgStab,
    Method::Lfpi,
];

// ---------------------------------------------------------------- accuracy

#[test]
fn every_method_matches_a_dense_solve_on_well_conditioned_systems() {
    let mut r = rng(1);
    for n in [5usize, 17, 60, 150, 300] {
        let phi = contraction(&mut r, n, 0.8);
        let psi = random_matrix(&mut r, n, 3);
        let g = random_vector(&mut r, n);
        let (w_ref, grads_ref) = reference(&phi, &psi, &g);
        let lin = Dense::new(phi, psi);
        for method in ALL_METHODS {
            let o = opts(method);
            let (grads, stats) =
                folded_backward(&lin, &g, &o).unwrap_or_else(|e| panic!("n={n} {method:?}: {e}"));
            assert!(rel_err(&grads, &grads_ref) < 1e-8, "n={n} {method:?}");
            assert!(stats.residual <= o.tol, "n={n} {method:?} {stats:?}");
            assert_eq!(stats.system_dim, n);
            if method != Method::Auto {
                assert_eq!(stats.method, method);
            }
            let (w, _) = solve_adjoint(&lin, &g, &o).unwrap();
            assert!(rel_err(&w, &w_ref) < 1e-8, "n={n} {method:?}");
        }
    }
}

#[test]
fn auto_picks_direct_for_small_and_gmres_for_large_systems() {
    let mut r = rng(2);
    for (n, direct) in [(AUTO_DIRECT_MAX, true), (AUTO_DIRECT_MAX + 1, false)] {
        let phi = contraction(&mut r, n, 0.5);
        let lin = Dense::new(phi, DMatrix::identity(n, n));
        let g = random_vector(&mut r, n);
        let (_, stats) = folded_backward(&lin, &g, &opts(Method::Auto)).unwrap();
        assert_eq!(stats.method == Method::Direct, direct, "{stats:?}");
    }
}

#[test]
fn direct_uses_a_supplied_jacobian_without_products() {
    let mut r = rng(3);
    let n = 40;
    let phi = contraction(&mut r, n, 0.9);
    let psi = random_matrix(&mut r, n, 2);
    let g = random_vector(&mut r, n);
    let (_, grads_ref) = reference(&phi, &psi, &g);
    let mut lin = Dense::new(phi, psi);
    lin.offer_jacobian = true;
    let (grads, stats) = folded_backward(&lin, &g, &opts(Method::Direct)).unwrap();
    assert!(rel_err(&grads, &grads_ref) < 1e-10);
    // Only the residual check (and at most two refinements), no assembly.
    assert!(stats.iterations <= 3, "{stats:?}");
    lin.offer_jacobian = false;
    let (_, stats) = folded_backward(&lin, &g, &opts(Method::Direct)).unwrap();
    assert!(stats.iterations >= n, "{stats:?}");
}

#[test]
fn forward_mode_matches_a_dense_solve() {
    let mut r = rng(4);
    for n in [6usize, 80, 250] {
        let phi = contraction(&mut r, n, 0.7);
        let psi = random_matrix(&mut r, n, 4);
        let d = random_vector(&mut r, 4);
        let t_ref = (DMatrix::identity(n, n) - &phi)
            .lu()
            .solve(&(&psi * &d))
            .unwrap();
        for offer in [false, true] {
            let mut lin = Dense::new(phi.clone(), psi.clone());
            lin.offer_jacobian = offer;
            for method in ALL_METHODS {
                let (t, stats) = folded_jvp(&lin, &d, &opts(method))
                    .unwrap_or_else(|e| panic!("n={n} {method:?}: {e}"));
                assert!(rel_err(&t, &t_ref) < 1e-8, "n={n} {method:?}");
                assert!(stats.residual <= 1e-10);
            }
        }
    }
}

/// `Φ = V diag(λ) V⁻¹` (V non-orthogonal) with `λ_max = 1 − gap`: cond(I − Φ) ≳ 1/gap.
fn nearly_unit_eigenvalue(r: &mut StdRng, n: usize, gap: f64) -> DMatrix<f64> {
    let v = random_orthogonal(r, n) + DMatrix::identity(n, n) * 0.3;
    let vinv = v.clone().try_inverse().unwrap();
    let lambda = DVector::from_fn(n, |i, _| {
        if i == 0 {
            1.0 - gap
        } else {
            0.9 * (i as f64 / n as f64)
        }
    });
    &v * DMatrix::from_diagonal(&lambda) * &vinv
}

/// Solves with `method`; success requires a verified residual and an error within the
/// conditioning; failure must be an error, never numbers.
fn solved_or_refused(
    phi: &DMatrix<f64>,
    g: &DVector<f64>,
    method: Method,
    must_succeed: bool,
    max_err: f64,
) {
    let n = phi.nrows();
    let (w_ref, _) = reference(phi, &DMatrix::identity(n, n), g);
    let lin = Dense::new(phi.clone(), DMatrix::identity(n, n));
    let o = BackwardOptions {
        method,
        tol: 1e-10,
        max_iter: 2000,
    };
    match solve_adjoint(&lin, g, &o) {
        Ok((w, stats)) => {
            let res = ((DMatrix::identity(n, n) - phi.transpose()) * &w - g).norm() / g.norm();
            assert!(res <= 1e-10 * 1.01, "{method:?} residual {res}");
            assert!(rel_err(&w, &w_ref) < max_err, "{method:?} {stats:?}");
        }
        Err(e) => {
            assert!(!must_succeed, "{method:?}: {e}");
            assert!(
                matches!(e, FoldError::NotConverged { .. } | FoldError::Singular),
                "{method:?}: {e}"
            );
        }
    }
}

#[test]
fn ill_conditioned_system_is_solved_or_refused_never_wrong() {
    let mut r = rng(5);
    let n = 40;
    // cond ≈ 1e5: the robust methods must solve it.
    let phi = nearly_unit_eigenvalue(&mut r, n, 1e-5);
    let g = random_vector(&mut r, n);
    solved_or_refused(&phi, &g, Method::Direct, true, 1e-5);
    solved_or_refused(&phi, &g, Method::Auto, true, 1e-5);
    solved_or_refused(&phi, &g, Method::Gmres { restart: n }, true, 1e-5);
    solved_or_refused(&phi, &g, Method::Gmres { restart: 10 }, false, 1e-5);
    solved_or_refused(&phi, &g, Method::BiCgStab, false, 1e-5);
    // cond ≈ 1e9 and beyond: anything may refuse, nothing may be wrong.
    for gap in [1e-9, 1e-12] {
        let phi = nearly_unit_eigenvalue(&mut r, n, gap);
        for method in ALL_METHODS {
            solved_or_refused(&phi, &g, method, false, 1e-2);
        }
    }
    // LFPI at rate 1 − 1e-5 cannot reach 1e-10 in 2000 steps.
    let lin = Dense::new(phi, DMatrix::identity(n, n));
    let o = BackwardOptions {
        method: Method::Lfpi,
        tol: 1e-10,
        max_iter: 2000,
    };
    let e = solve_adjoint(&lin, &g, &o).unwrap_err();
    assert!(
        matches!(
            e,
            FoldError::NotConverged {
                iterations: 2000,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn rotation_defeats_lfpi_but_not_direct_or_gmres() {
    // Φ = block-diagonal rotations by 0.3 rad: ‖Φ‖ = 1, I − Φ well conditioned.
    let n = 20;
    let (c, s) = (0.3f64.cos(), 0.3f64.sin());
    let mut phi = DMatrix::zeros(n, n);
    for b in 0..n / 2 {
        let i = 2 * b;
        phi[(i, i)] = c;
        phi[(i, i + 1)] = -s;
        phi[(i + 1, i)] = s;
        phi[(i + 1, i + 1)] = c;
    }
    let mut r = rng(6);
    let psi = random_matrix(&mut r, n, 3);
    let g = random_vector(&mut r, n);
    let (_, grads_ref) = reference(&phi, &psi, &g);
    let lin = Dense::new(phi, psi);
    for method in [
        Method::Direct,
        Method::Gmres { restart: 30 },
        Method::Gmres { restart: 5 },
        Method::Auto,
    ] {
        let (grads, _) = folded_backward(&lin, &g, &opts(method)).unwrap();
        assert!(rel_err(&grads, &grads_ref) < 1e-9, "{method:?}");
    }
    let e = folded_backward(&lin, &g, &opts(Method::Lfpi)).unwrap_err();
    assert!(
        matches!(
            e,
            FoldError::NotConverged {
                iterations: 1000,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn singular_system_is_an_error_for_every_method() {
    // Φ = Q diag(1, …) Qᵀ: I − Φ is singular; g has a component outside its range.
    let mut r = rng(7);
    for n in [8usize, 50] {
        let q = random_orthogonal(&mut r, n);
        let lambda = DVector::from_fn(n, |i, _| {
            if i == 0 {
                1.0
            } else {
                0.5 * i as f64 / n as f64
            }
        });
        let phi = &q * DMatrix::from_diagonal(&lambda) * q.transpose();
        let g = random_vector(&mut r, n) + q.column(0) * 3.0;
        for offer in [false, true] {
            let mut lin = Dense::new(phi.clone(), DMatrix::identity(n, n));
            lin.offer_jacobian = offer;
            for method in ALL_METHODS
                .into_iter()
                .chain([Method::Gmres { restart: n }])
            {
                let res = folded_backward(&lin, &g, &opts(method));
                assert!(
                    matches!(
                        res,
                        Err(FoldError::Singular) | Err(FoldError::NotConverged { .. })
                    ),
                    "n={n} {method:?}: {:?}",
                    res.map(|(_, s)| s)
                );
                let res = folded_jvp(&lin, &g, &opts(method));
                assert!(
                    matches!(
                        res,
                        Err(FoldError::Singular) | Err(FoldError::NotConverged { .. })
                    ),
                    "jvp n={n} {method:?}"
                );
            }
        }
        let lin = Dense::new(phi, DMatrix::identity(n, n));
        assert_eq!(
            folded_backward(&lin, &g, &opts(Method::Direct)).unwrap_err(),
            FoldError::Singular
        );
    }
}

// ---------------------------------------------------------------- bad input

/// A linearization whose products misbehave on demand.
struct Faulty {
    n: usize,
    nan_after: usize,
    wrong_len: bool,
    calls: std::cell::Cell<usize>,
}

impl Linearized for Faulty {
    type Grads = DVector<f64>;
    fn state_dim(&self) -> usize {
        self.n
    }
    fn vjp_state(&self, v: &DVector<f64>) -> DVector<f64> {
        let k = self.calls.get();
        self.calls.set(k + 1);
        if self.wrong_len {
            return DVector::zeros(self.n + 1);
        }
        if k >= self.nan_after {
            return DVector::from_element(self.n, f64::NAN);
        }
        v * 0.5
    }
    fn jvp_state(&self, u: &DVector<f64>) -> DVector<f64> {
        self.vjp_state(u)
    }
    fn vjp_params(&self, v: &DVector<f64>) -> DVector<f64> {
        v.clone()
    }
    fn jvp_params(&self, d: &DVector<f64>) -> DVector<f64> {
        d.clone()
    }
}

#[test]
fn non_finite_and_mismatched_inputs_are_reported() {
    let n = 6;
    let lin = Dense::new(DMatrix::identity(n, n) * 0.5, DMatrix::identity(n, n));
    for method in ALL_METHODS {
        let o = opts(method);
        let mut g = DVector::from_element(n, 1.0);
        g[3] = f64::NAN;
        assert_eq!(
            folded_backward(&lin, &g, &o).unwrap_err(),
            FoldError::NonFinite {
                what: "grad".into()
            }
        );
        g[3] = f64::INFINITY;
        assert!(matches!(
            solve_adjoint(&lin, &g, &o),
            Err(FoldError::NonFinite { .. })
        ));
        let short = DVector::from_element(n - 1, 1.0);
        assert_eq!(
            folded_backward(&lin, &short, &o).unwrap_err(),
            FoldError::DimensionMismatch {
                what: "grad".into(),
                expected: n,
                found: n - 1
            }
        );
        let mut d = DVector::from_element(n, 1.0);
        d[0] = f64::NAN;
        assert!(matches!(
            folded_jvp(&lin, &d, &o),
            Err(FoldError::NonFinite { .. })
        ));

        let g = DVector::from_element(n, 1.0);
        for nan_after in [0, 1, 3] {
            let bad = Faulty {
                n,
                nan_after,
                wrong_len: false,
                calls: Default::default(),
            };
            let res = folded_backward(&bad, &g, &o);
            // LFPI/GMRES at rate 0.5 may converge before the NaN appears; never wrong numbers.
            match res {
                Err(FoldError::NonFinite { .. }) => {}
                Ok((grads, _)) => assert!(rel_err(&grads, &(&g * 2.0)) < 1e-8, "{method:?}"),
                Err(e) => panic!("{method:?} nan_after={nan_after}: {e}"),
            }
        }
        let bad = Faulty {
            n,
            nan_after: usize::MAX,
            wrong_len: true,
            calls: Default::default(),
        };
        assert!(
            matches!(
                folded_backward(&bad, &g, &o),
                Err(FoldError::DimensionMismatch { .. })
            ),
            "{method:?}"
        );
    }
    // A supplied Jacobian of the wrong shape.
    struct BadJacobian;
    impl Linearized for BadJacobian {
        type Grads = f64;
        fn state_dim(&self) -> usize {
            3
        }
        fn vjp_state(&self, v: &DVector<f64>) -> DVector<f64> {
            v * 0.1
        }
        fn jvp_state(&self, u: &DVector<f64>) -> DVector<f64> {
            u * 0.1
        }
        fn vjp_params(&self, v: &DVector<f64>) -> f64 {
            v.sum()
        }
        fn jvp_params(&self, d: &f64) -> DVector<f64> {
            DVector::from_element(3, *d)
        }
        fn state_jacobian(&self) -> Option<DMatrix<f64>> {
            Some(DMatrix::zeros(3, 2))
        }
    }
    let g = DVector::from_element(3, 1.0);
    assert!(matches!(
        folded_backward(&BadJacobian, &g, &opts(Method::Direct)),
        Err(FoldError::DimensionMismatch { .. })
    ));
    // Scalar gradients work through the same path.
    let (s, _) = folded_backward(&BadJacobian, &g, &opts(Method::Gmres { restart: 3 })).unwrap();
    assert!((s - 3.0 / 0.9).abs() < 1e-9);
}

#[test]
fn zero_cotangent_gives_zero_without_work() {
    let n = 30;
    let mut r = rng(8);
    let lin = Dense::new(contraction(&mut r, n, 0.5), random_matrix(&mut r, n, 2));
    for method in ALL_METHODS {
        let (grads, stats) = folded_backward(&lin, &DVector::zeros(n), &opts(method)).unwrap();
        assert_eq!(grads, DVector::zeros(2));
        assert_eq!(stats.iterations, 0);
    }
}

// ---------------------------------------------------------------- reduced path

/// Box-constrained QP step `x ← clip(x − α(Qx + c), 0, hi)` linearized with free set `S`:
/// `Φ = E_S E_Sᵀ (I − αQ)`, `Ψ_c = −α E_S E_Sᵀ`, and (optionally) the upper bound `hi`
/// as a parameter with `∂U/∂hi = 1[at upper]` on the coordinates in `upper`.
/// With `centered`, the head is the simplex projection: `J = E_S (I − 11ᵀ/|S|) E_Sᵀ`.
struct Projected {
    n: usize,
    m: DMatrix<f64>, // M = I − αQ
    alpha: f64,
    support: Vec<usize>,
    upper: Vec<usize>,
    kernel: SupportKernel,
    dense_reduced: bool,
    hi_param: bool,
}

impl Projected {
    /// `J y` (J symmetric).
    fn j(&self, y: &DVector<f64>) -> DVector<f64> {
        let mut ys = DVector::from_iterator(self.support.len(), self.support.iter().map(|&i| y[i]));
        self.kernel.apply(&mut ys);
        let mut out = DVector::zeros(self.n);
        for (&i, v) in self.support.iter().zip(ys.iter()) {
            out[i] = *v;
        }
        out
    }
    /// Dense Φ and Ψ = [−αJ | h] for the reference.
    fn dense(&self) -> (DMatrix<f64>, DMatrix<f64>) {
        let n = self.n;
        let jm = DMatrix::from_fn(n, n, |i, j| {
            let mut e = DVector::zeros(n);
            e[j] = 1.0;
            self.j(&e)[i]
        });
        let phi = &jm * &self.m;
        let mut psi = DMatrix::zeros(n, n + 1);
        psi.columns_mut(0, n).copy_from(&(&jm * -self.alpha));
        if self.hi_param {
            for &i in &self.upper {
                psi[(i, n)] = 1.0;
            }
        }
        (phi, psi)
    }
    fn head(&self, w: &DVector<f64>) -> f64 {
        self.upper.iter().map(|&i| w[i]).sum()
    }
}

impl Linearized for Projected {
    type Grads = DVector<f64>;
    fn state_dim(&self) -> usize {
        self.n
    }
    fn vjp_state(&self, v: &DVector<f64>) -> DVector<f64> {
        self.m.tr_mul(&self.j(v))
    }
    fn jvp_state(&self, u: &DVector<f64>) -> DVector<f64> {
        self.j(&(&self.m * u))
    }
    fn vjp_params(&self, v: &DVector<f64>) -> DVector<f64> {
        let mut out = DVector::zeros(self.n + 1);
        out.rows_mut(0, self.n)
            .copy_from(&(self.j(v) * -self.alpha));
        if self.hi_param {
            out[self.n] = self.head(v);
        }
        out
    }
    fn jvp_params(&self, d: &DVector<f64>) -> DVector<f64> {
        let mut t = self.j(&d.rows(0, self.n).into_owned()) * -self.alpha;
        if self.hi_param {
            for &i in &self.upper {
                t[i] += d[self.n];
            }
        }
        t
    }
    fn factored(&self) -> Option<&dyn Factored<Grads = DVector<f64>>> {
        Some(self)
    }
}

impl Factored for Projected {
    fn support(&self) -> &[usize] {
        &self.support
    }
    fn kernel(&self) -> SupportKernel {
        self.kernel
    }
    fn inner_vjp_state(&self, u: &DVector<f64>) -> DVector<f64> {
        self.m.tr_mul(u)
    }
    fn inner_vjp_params(&self, u: &DVector<f64>) -> DVector<f64> {
        let mut out = DVector::zeros(self.n + 1);
        out.rows_mut(0, self.n).copy_from(&(u * -self.alpha));
        out
    }
    fn head_vjp_params(&self, w: &DVector<f64>) -> Option<DVector<f64>> {
        self.hi_param.then(|| {
            let mut out = DVector::zeros(self.n + 1);
            out[self.n] = self.head(w);
            out
        })
    }
    fn head_has_params(&self) -> bool {
        self.hi_param
    }
    fn reduced_matrix(&self) -> Option<DMatrix<f64>> {
        if !self.dense_reduced {
            return None;
        }
        let k = self.support.len();
        let m_ss_t = DMatrix::from_fn(k, k, |i, j| self.m[(self.support[j], self.support[i])]);
        let mut km = m_ss_t;
        for mut c in km.column_iter_mut() {
            let mut col = c.clone_owned();
            self.kernel.apply(&mut col);
            c.copy_from(&col);
        }
        Some(DMatrix::identity(k, k) - km)
    }
}

fn projected(r: &mut StdRng, n: usize, support: Vec<usize>, kernel: SupportKernel) -> Projected {
    // Q SPD with spectrum in [0.1, 1], α = 1.
    let u = random_orthogonal(r, n);
    let ev = DVector::from_fn(n, |_, _| r.random_range(0.1..1.0));
    let q = &u * DMatrix::from_diagonal(&ev) * u.transpose();
    let upper: Vec<usize> = (0..n)
        .filter(|i| !support.contains(i) && i % 3 == 0)
        .collect();
    Projected {
        n,
        m: DMatrix::identity(n, n) - q,
        alpha: 1.0,
        support,
        upper,
        kernel,
        dense_reduced: true,
        hi_param: true,
    }
}

fn check_reduced(lin: &Projected, g: &DVector<f64>, label: &str) {
    let (phi, psi) = lin.dense();
    let (w_ref, grads_ref) = reference(&phi, &psi, g);
    // Tighter than the default so that the agreement is limited by rounding, not by the
    // Krylov stopping rule (errors are ≈ cond · tol, and cond(αQ_SS) ≤ 10 here).
    let tight = |method| BackwardOptions {
        tol: 1e-14,
        ..opts(method)
    };
    let (grads, stats) = folded_backward(lin, g, &tight(Method::Auto)).unwrap();
    assert_eq!(stats.system_dim, lin.support.len(), "{label}");
    let (full, full_stats) = folded_backward(lin, g, &tight(Method::Direct)).unwrap();
    assert_eq!(full_stats.system_dim, lin.n);
    let scale = grads_ref.norm().max(1.0);
    assert!(
        (&grads - &full).norm() <= 1e-10 * scale,
        "{label}: reduced vs full"
    );
    assert!(
        (&grads - &grads_ref).norm() <= 1e-10 * scale,
        "{label}: reduced vs reference"
    );
    let (w, _) = solve_adjoint(lin, g, &tight(Method::Auto)).unwrap();
    assert!(
        (&w - &w_ref).norm() <= 1e-10 * w_ref.norm().max(1.0),
        "{label}: adjoint"
    );
}

#[test]
fn reduced_path_agrees_with_the_full_path() {
    let mut r = rng(9);
    for kernel in [SupportKernel::Identity, SupportKernel::Centered] {
        for n in [1usize, 2, 7, 40] {
            let supports: Vec<Vec<usize>> = vec![
                vec![],
                (0..n).collect(),
                (0..n).filter(|i| i % 2 == 1).collect(),
                (0..n).filter(|_| r.random_bool(0.3)).collect(),
                vec![n - 1],
            ];
            for support in supports {
                for (dense_reduced, hi_param) in
                    [(true, true), (false, true), (true, false), (false, false)]
                {
                    let mut lin = projected(&mut r, n, support.clone(), kernel);
                    lin.dense_reduced = dense_reduced;
                    lin.hi_param = hi_param;
                    let g = random_vector(&mut r, n);
                    let label = format!(
                        "{kernel:?} n={n} |S|={} dense={dense_reduced} hi={hi_param}",
                        support.len()
                    );
                    check_reduced(&lin, &g, &label);
                }
            }
        }
    }
}

#[test]
fn reduced_path_above_the_dense_threshold_uses_krylov() {
    let mut r = rng(10);
    let n = REDUCED_DENSE_MAX + 30;
    let support: Vec<usize> = (0..n).filter(|i| i % 3 != 0 || *i > 30).collect();
    assert!(support.len() > REDUCED_DENSE_MAX);
    for kernel in [SupportKernel::Identity, SupportKernel::Centered] {
        let lin = projected(&mut r, n, support.clone(), kernel);
        let g = random_vector(&mut r, n);
        let (_, stats) = folded_backward(&lin, &g, &opts(Method::Auto)).unwrap();
        assert!(matches!(stats.method, Method::Gmres { .. }), "{stats:?}");
        check_reduced(&lin, &g, &format!("{kernel:?} large"));
    }
}

#[test]
fn reduced_path_reports_singular_reduced_systems() {
    // M = I on the support: the reduced matrix I − M_SSᵀ = 0.
    let n = 5;
    let lin = Projected {
        n,
        m: DMatrix::identity(n, n),
        alpha: 1.0,
        support: vec![1, 3],
        upper: vec![],
        kernel: SupportKernel::Identity,
        dense_reduced: true,
        hi_param: false,
    };
    let g = DVector::from_element(n, 1.0);
    assert!(matches!(
        folded_backward(&lin, &g, &opts(Method::Auto)),
        Err(FoldError::Singular) | Err(FoldError::NotConverged { .. })
    ));
    let lin = Projected {
        dense_reduced: false,
        ..lin
    };
    assert!(matches!(
        folded_backward(&lin, &g, &opts(Method::Auto)),
        Err(FoldError::Singular) | Err(FoldError::NotConverged { .. })
    ));
    // A support index out of range is a dimension error, not a panic.
    let lin = Projected {
        support: vec![2, 9],
        ..lin
    };
    assert!(matches!(
        folded_backward(&lin, &g, &opts(Method::Auto)),
        Err(FoldError::DimensionMismatch { .. })
    ));
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Auto (and GMRES) agree with the dense reference on random contractions and
    /// random right-hand sides.
    #[test]
    fn auto_and_gmres_match_reference(seed in 0u64..10_000, n in 1usize..40, rho in 0.0f64..0.95) {
        let mut r = rng(seed);
        let phi = contraction(&mut r, n, rho);
        let psi = random_matrix(&mut r, n, 2);
        let g = random_vector(&mut r, n);
        let (_, grads_ref) = reference(&phi, &psi, &g);
        let lin = Dense::new(phi, psi);
        for method in [Method::Auto, Method::Gmres { restart: 7 }, Method::BiCgStab] {
            let (grads, stats) = folded_backward(&lin, &g, &opts(method)).unwrap();
            prop_assert!(stats.residual <= 1e-10);
            prop_assert!((&grads - &grads_ref).norm() <= 1e-8 * grads_ref.norm().max(1e-8));
        }
    }

    /// The reduced path equals the full path for random supports of both kernels.
    #[test]
    fn reduced_matches_full(seed in 0u64..10_000, n in 1usize..25, centered in any::<bool>(), dense in any::<bool>()) {
        let mut r = rng(seed);
        let support: Vec<usize> = (0..n).filter(|_| r.random_bool(0.5)).collect();
        let kernel = if centered { SupportKernel::Centered } else { SupportKernel::Identity };
        let mut lin = projected(&mut r, n, support, kernel);
        lin.dense_reduced = dense;
        let g = random_vector(&mut r, n);
        check_reduced(&lin, &g, "proptest");
    }
}
