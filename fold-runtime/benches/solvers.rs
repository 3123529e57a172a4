//! Solver and kernel benchmarks: `cargo bench -p fold-runtime --bench solvers`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fold_runtime::__private as linalg;
use fold_runtime::__private::{direct_dense, gmres, DenseOperator, Stop};
use fold_runtime::nalgebra::{DMatrix, DVector};
use fold_runtime::{folded_backward, BackwardOptions, Factored, Linearized, Method, SupportKernel};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::borrow::Cow;
use std::hint::black_box;
use std::time::Duration;

fn random_matrix(n: usize, rng: &mut StdRng) -> DMatrix<f64> {
    DMatrix::from_fn(n, n, |_, _| rng.random_range(-1.0..1.0))
}

fn random_vector(n: usize, rng: &mut StdRng) -> DVector<f64> {
    DVector::from_fn(n, |_, _| rng.random_range(-1.0..1.0))
}

/// faer (through `linalg`) against nalgebra's own kernels: the measurements behind
/// the choices in `linalg.rs`.
fn kernels(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(7);
    let mut group = c.benchmark_group("kernels");
    for n in [10usize, 30, 100, 300, 1000] {
        let a = random_matrix(n, &mut rng);
        let x = random_vector(n, &mut rng);
        let mut y = DVector::zeros(n);
        group.bench_with_input(BenchmarkId::new("gemv/faer", n), &n, |b, _| {
            b.iter(|| linalg::gemv(&mut y, 1.0, black_box(&a), black_box(&x), 0.0))
        });
        group.bench_with_input(BenchmarkId::new("gemv/nalgebra", n), &n, |b, _| {
            b.iter(|| y.gemv(1.0, black_box(&a), black_box(&x), 0.0))
        });
        group.bench_with_input(BenchmarkId::new("gemv_t/faer", n), &n, |b, _| {
            b.iter(|| linalg::gemv_t(&mut y, 1.0, black_box(&a), black_box(&x), 0.0))
        });
        group.bench_with_input(BenchmarkId::new("gemv_t/nalgebra", n), &n, |b, _| {
            b.iter(|| y.gemv_tr(1.0, black_box(&a), black_box(&x), 0.0))
        });
        let m = &a + DMatrix::identity(n, n) * (n as f64).sqrt();
        group.bench_with_input(BenchmarkId::new("lu_solve/faer", n), &n, |b, _| {
            b.iter(|| linalg::Lu::factor(black_box(&m)).map(|lu| lu.solve(&x)))
        });
        group.bench_with_input(BenchmarkId::new("lu_solve/nalgebra", n), &n, |b, _| {
            b.iter(|| black_box(&m).clone().lu().solve(&x))
        });
        let spd = a.tr_mul(&a) + DMatrix::identity(n, n);
        group.bench_with_input(BenchmarkId::new("cholesky_solve/faer", n), &n, |b, _| {
            b.iter(|| linalg::Cholesky::factor(black_box(&spd)).map(|ch| ch.solve(&x)))
        });
        group.bench_with_input(
            BenchmarkId::new("cholesky_solve/nalgebra", n),
            &n,
            |b, _| b.iter(|| black_box(&spd).clone().cholesky().map(|ch| ch.solve(&x))),
        );
    }
    group.finish();
}

/// Box-QP step `x ← clip(x − α(Qx + c), 0, 1)` linearized with free set `S` (mask `m`):
/// `Φ = diag(m)(I − αQ)`, `Ψ_c = −α diag(m)`. Products are one pass over `Q` each.
struct BoxQp {
    q: DMatrix<f64>,
    alpha: f64,
    mask: DVector<f64>,
    support: Vec<usize>,
    offer_jacobian: bool,
    offer_factored: bool,
}

impl BoxQp {
    fn new(n: usize, free: f64, rng: &mut StdRng) -> BoxQp {
        // Q = BᵀB/n + 0.1 I: spectrum ⊂ [0.1, 1.5], so α = 1/1.5 makes Φ a contraction.
        let b = random_matrix(n, rng);
        let mut q = DMatrix::identity(n, n) * 0.1;
        linalg::gemm(&mut q, 1.0 / n as f64, &b.transpose(), &b, 1.0);
        let mask = DVector::from_fn(n, |_, _| if rng.random_bool(free) { 1.0 } else { 0.0 });
        let support = (0..n).filter(|&i| mask[i] != 0.0).collect();
        BoxQp {
            q,
            alpha: 1.0 / 1.5,
            mask,
            support,
            offer_jacobian: false,
            offer_factored: false,
        }
    }
}

impl Linearized for BoxQp {
    type Grads = DVector<f64>;
    fn state_dim(&self) -> usize {
        self.mask.len()
    }
    fn vjp_state(&self, v: &DVector<f64>) -> DVector<f64> {
        // (I − αQ)ᵀ (m ⊙ v), reading Q once.
        let mut y = self.mask.component_mul(v);
        let t = y.clone();
        linalg::gemv_t(&mut y, -self.alpha, &self.q, &t, 1.0);
        y
    }
    fn jvp_state(&self, u: &DVector<f64>) -> DVector<f64> {
        let mut y = u.clone();
        linalg::gemv(&mut y, -self.alpha, &self.q, u, 1.0);
        y.component_mul_assign(&self.mask);
        y
    }
    fn vjp_params(&self, v: &DVector<f64>) -> DVector<f64> {
        self.mask.component_mul(v) * -self.alpha
    }
    fn jvp_params(&self, d: &DVector<f64>) -> DVector<f64> {
        self.mask.component_mul(d) * -self.alpha
    }
    fn state_jacobian(&self) -> Option<DMatrix<f64>> {
        self.offer_jacobian.then(|| {
            let n = self.mask.len();
            let mut phi = &self.q * -self.alpha;
            for i in 0..n {
                phi[(i, i)] += 1.0;
            }
            // diag(m) Φ: scale rows, walking contiguous columns.
            for mut col in phi.column_iter_mut() {
                col.component_mul_assign(&self.mask);
            }
            phi
        })
    }
    fn factored(&self) -> Option<&dyn Factored<Grads = DVector<f64>>> {
        self.offer_factored
            .then_some(self as &dyn Factored<Grads = DVector<f64>>)
    }
}

impl Factored for BoxQp {
    fn support(&self) -> &[usize] {
        &self.support
    }
    fn kernel(&self) -> SupportKernel {
        SupportKernel::Identity
    }
    fn inner_vjp_state(&self, u: &DVector<f64>) -> DVector<f64> {
        let mut y = u.clone();
        linalg::gemv_t(&mut y, -self.alpha, &self.q, u, 1.0);
        y
    }
    fn inner_vjp_params(&self, u: &DVector<f64>) -> DVector<f64> {
        u * -self.alpha
    }
    fn head_vjp_params(&self, _w: &DVector<f64>) -> Option<DVector<f64>> {
        None
    }
    fn head_has_params(&self) -> bool {
        false
    }
    fn reduced_matrix(&self) -> Option<DMatrix<f64>> {
        // I − (I − αQ)_SSᵀ = α Q_SS (Q symmetric).
        let s = &self.support;
        Some(DMatrix::from_fn(s.len(), s.len(), |i, j| {
            self.alpha * self.q[(s[i], s[j])]
        }))
    }
}

/// Each method on the dense box-QP system at n = 100 and 1000 (70 % free coordinates).
fn methods(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(11);
    let mut group = c.benchmark_group("backward");
    for n in [100usize, 1000] {
        let mut lin = BoxQp::new(n, 0.7, &mut rng);
        let g = random_vector(n, &mut rng);
        let cases = [
            ("direct", Method::Direct),
            ("gmres30", Method::Gmres { restart: 30 }),
            ("bicgstab", Method::BiCgStab),
            ("lfpi", Method::Lfpi),
            ("auto", Method::Auto),
        ];
        for (name, method) in cases {
            let opts = BackwardOptions {
                method,
                ..BackwardOptions::default()
            };
            let (_, stats) = folded_backward(&lin, &g, &opts).expect("benchmark system solves");
            eprintln!("backward/{name}/{n}: {stats:?}");
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| folded_backward(black_box(&lin), black_box(&g), &opts))
            });
        }
        // Direct from a supplied dense Φ (no assembly): the LU-dominated cost.
        lin.offer_jacobian = true;
        let opts = BackwardOptions {
            method: Method::Direct,
            ..BackwardOptions::default()
        };
        group.bench_with_input(BenchmarkId::new("direct_jacobian", n), &n, |b, _| {
            b.iter(|| folded_backward(black_box(&lin), black_box(&g), &opts))
        });
        lin.offer_jacobian = false;
        // The reduced path (issue 7) through `Factored`.
        lin.offer_factored = true;
        let opts = BackwardOptions::default();
        let (_, stats) = folded_backward(&lin, &g, &opts).expect("reduced system solves");
        eprintln!("backward/auto_reduced/{n}: {stats:?}");
        group.bench_with_input(BenchmarkId::new("auto_reduced", n), &n, |b, _| {
            b.iter(|| folded_backward(black_box(&lin), black_box(&g), &opts))
        });
        lin.offer_factored = false;
    }
    group.finish();
}

/// The direct LU at n = 1000 alone (factor + solve of `I − Φ`).
fn lu_1000(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(12);
    let mut lin = BoxQp::new(1000, 0.7, &mut rng);
    lin.offer_jacobian = true;
    let phi = lin.state_jacobian().expect("offered");
    let a = DMatrix::identity(1000, 1000) - phi;
    let b = random_vector(1000, &mut rng);
    c.bench_function("lu_factor_solve/1000", |bench| {
        bench.iter(|| linalg::Lu::factor(black_box(&a)).map(|lu| lu.solve_transpose(&b)))
    });
}

/// Where Direct stops paying on full systems (sets `AUTO_DIRECT_MAX`), and where a dense
/// reduced system is better factored or iterated (sets `REDUCED_DENSE_MAX`).
fn thresholds(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(13);
    let mut group = c.benchmark_group("threshold");
    for n in [25usize, 50, 100, 200] {
        let lin = BoxQp::new(n, 0.7, &mut rng);
        let g = random_vector(n, &mut rng);
        for (name, method) in [
            ("direct", Method::Direct),
            ("gmres30", Method::Gmres { restart: 30 }),
        ] {
            let opts = BackwardOptions {
                method,
                ..BackwardOptions::default()
            };
            group.bench_with_input(BenchmarkId::new(format!("full_{name}"), n), &n, |b, _| {
                b.iter(|| folded_backward(black_box(&lin), black_box(&g), &opts))
            });
        }
    }
    for n in [100usize, 300, 500, 700, 1000] {
        let lin = BoxQp::new(n, 0.7, &mut rng);
        let g = random_vector(n, &mut rng);
        // The reduced matrix α Q (SPD) of size n: Cholesky against GMRES on it.
        let r = &lin.q * lin.alpha;
        let op = DenseOperator::new(&r).expect("square");
        let stop = Stop {
            tol: 1e-10,
            max_iter: 1000,
        };
        group.bench_with_input(BenchmarkId::new("reduced_cholesky", n), &n, |b, _| {
            b.iter(|| {
                direct_dense(
                    Cow::Borrowed(black_box(&r)),
                    false,
                    &op,
                    black_box(&g),
                    &stop,
                )
            })
        });
        group.bench_with_input(BenchmarkId::new("reduced_gmres30", n), &n, |b, _| {
            b.iter(|| gmres(&op, black_box(&g), 30, &stop))
        });
    }
    group.finish();
}

/// Where a banded `LDLᵀ` stops beating faer's AMD-ordered sparse `LDLᵀ` on symmetric
/// positive definite band matrices at k = 10⁵ (sets `BANDED_MAX`): factor, solve and the
/// verifying residual, as the sparse reduced path runs them.
fn sparse_band(c: &mut Criterion) {
    use fold_runtime::__private::sparse_direct_with;
    use fold_runtime::nalgebra_sparse::{CooMatrix, CsrMatrix};
    let mut rng = StdRng::seed_from_u64(17);
    let mut group = c.benchmark_group("sparse_band");
    let k = 100_000;
    for w in [1usize, 2, 4, 8, 16] {
        let mut coo = CooMatrix::new(k, k);
        for i in 0..k {
            coo.push(i, i, 2.0 * w as f64 + 1.0);
            for j in i.saturating_sub(w)..i {
                let v = rng.random_range(-1.0..1.0);
                coo.push(i, j, v);
                coo.push(j, i, v);
            }
        }
        let a = CsrMatrix::from(&coo);
        let b = random_vector(k, &mut rng);
        let stop = Stop {
            tol: 1e-10,
            max_iter: 10,
        };
        group.bench_with_input(BenchmarkId::new("banded", w), &w, |bench, _| {
            bench.iter(|| sparse_direct_with(black_box(&a), &b, &stop, usize::MAX))
        });
        group.bench_with_input(BenchmarkId::new("faer_amd", w), &w, |bench, _| {
            bench.iter(|| sparse_direct_with(black_box(&a), &b, &stop, 0))
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = kernels, methods, lu_1000, thresholds, sparse_band
}
criterion_main!(benches);
