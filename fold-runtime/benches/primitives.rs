//! Primitive costs: `proj_simplex` (value and VJP) from n = 10³ to 10⁶, which should
//! scale as n log n or better; `proj_polyhedron` linearized once versus one VJP, showing
//! products reuse the KKT factorization instead of refactoring.
//!
//! `cargo bench -p fold-runtime --bench primitives`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fold_runtime::nalgebra::{DMatrix, DVector};
use fold_runtime::ops::{proj_simplex, ProjPolyhedronLin, ProjSimplexLin};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use std::hint::black_box;
use std::time::Duration;

fn randn(rng: &mut StdRng, n: usize) -> DVector<f64> {
    DVector::from_fn(n, |_, _| rng.sample(StandardNormal))
}

fn simplex(c: &mut Criterion) {
    let mut group = c.benchmark_group("proj_simplex");
    let mut rng = StdRng::seed_from_u64(1);
    for n in [1_000usize, 10_000, 100_000, 1_000_000] {
        let v = randn(&mut rng, n);
        let g = randn(&mut rng, n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("value", n), &v, |b, v| {
            b.iter(|| proj_simplex(black_box(v), 1.0))
        });
        // Value plus what the derivative keeps (the support).
        group.bench_with_input(BenchmarkId::new("linearize", n), &v, |b, v| {
            b.iter(|| ProjSimplexLin::new(black_box(v), 1.0))
        });
        let lin = ProjSimplexLin::new(&v, 1.0).expect("feasible");
        group.bench_with_input(BenchmarkId::new("vjp", n), &g, |b, g| {
            b.iter(|| lin.vjp(black_box(g)))
        });
    }
    group.finish();
}

/// Projection of a far-away point onto `{Ax = b, Gx ≤ h}` with `G = [I; −I; random]`
/// around a feasible point, so that many constraints are active.
fn polyhedron(c: &mut Criterion) {
    let mut group = c.benchmark_group("proj_polyhedron");
    let mut rng = StdRng::seed_from_u64(2);
    for (n, m, extra) in [(50usize, 5usize, 50usize), (200, 10, 200)] {
        let x0 = randn(&mut rng, n) * 0.1;
        let a = DMatrix::from_fn(m, n, |_, _| rng.sample(StandardNormal));
        let b = &a * &x0;
        let q = 2 * n + extra;
        let mut g = DMatrix::zeros(q, n);
        for i in 0..n {
            g[(i, i)] = 1.0;
            g[(n + i, i)] = -1.0;
        }
        for i in 0..extra {
            for j in 0..n {
                g[(2 * n + i, j)] = rng.sample(StandardNormal);
            }
        }
        let h = &g * &x0 + DVector::from_element(q, 1.0);
        let v = randn(&mut rng, n) * 3.0;
        let w = randn(&mut rng, n);
        let id = format!("n={n},m={m},q={q}");
        group.bench_function(BenchmarkId::new("linearize", &id), |bch| {
            bch.iter(|| ProjPolyhedronLin::new(black_box(&v), &a, &b, &g, &h))
        });
        let lin = ProjPolyhedronLin::new(&v, &a, &b, &g, &h).expect("feasible");
        eprintln!(
            "proj_polyhedron {id}: {} active inequalities, degenerate: {}",
            lin.active_set().len(),
            lin.is_degenerate()
        );
        group.bench_function(BenchmarkId::new("vjp", &id), |bch| {
            bch.iter(|| lin.vjp(black_box(&w)))
        });
    }
    group.finish();
}

fn quick() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! { name = benches; config = quick(); targets = simplex, polyhedron }
criterion_main!(benches);
