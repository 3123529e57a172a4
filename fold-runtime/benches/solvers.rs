//! Solver and kernel benchmarks: `cargo bench -p fold-runtime --bench solvers`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fold_runtime::linalg;
use fold_runtime::nalgebra::{DMatrix, DVector};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
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
    for n in [10usize, 30, 60, 100, 200] {
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
        let lu = linalg::Lu::factor(&m).unwrap();
        let mut z = x.clone();
        group.bench_with_input(BenchmarkId::new("lu_only_solve", n), &n, |b, _| {
            b.iter(|| {
                z.copy_from(&x);
                lu.solve_in_place(black_box(&mut z))
            })
        });
        group.bench_with_input(BenchmarkId::new("lu_only_solve_t", n), &n, |b, _| {
            b.iter(|| {
                z.copy_from(&x);
                lu.solve_transpose_in_place(black_box(&mut z))
            })
        });
        group.bench_with_input(BenchmarkId::new("lu_raw/faer", n), &n, |b, _| {
            b.iter(|| {
                use faer::dyn_stack::{MemBuffer, MemStack};
                let mut lu = black_box(&m).clone();
                let mut p = vec![0usize; n];
                let mut pi = vec![0usize; n];
                let mut mem = MemBuffer::new(
                    faer::linalg::lu::partial_pivoting::factor::lu_in_place_scratch::<usize, f64>(
                        n,
                        n,
                        faer::Par::Seq,
                        Default::default(),
                    ),
                );
                faer::linalg::lu::partial_pivoting::factor::lu_in_place(
                    faer::MatMut::from_column_major_slice_mut(lu.as_mut_slice(), n, n),
                    &mut p,
                    &mut pi,
                    faer::Par::Seq,
                    MemStack::new(&mut mem),
                    Default::default(),
                );
                lu
            })
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

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = kernels
}
criterion_main!(benches);
