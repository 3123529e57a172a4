//! Wall time of one `#[fold]` expansion (parse, differentiate, saturate, extract, emit,
//! pretty-print): per representative rule, and against rule size (k chained steps, a wide
//! rule of k terms). `cargo bench -p fold-codegen --bench expansion`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fold_codegen::samples::{cases, chained, wide};
use fold_codegen::try_expand;
use std::time::Duration;

fn expansion(c: &mut Criterion) {
    let mut group = c.benchmark_group("expansion");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(2));
    for case in cases() {
        group.bench_function(case.name, |b| {
            b.iter(|| try_expand(case.attr.clone(), case.item.clone()).expect("expands"))
        });
    }
    group.finish();
}

fn scaling(c: &mut Criterion) {
    let mut group = c.benchmark_group("scaling");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for (name, build) in [("chained", chained as fn(usize) -> _), ("wide", wide)] {
        for k in [1usize, 4, 16, 64] {
            let (attr, item) = build(k);
            group.bench_with_input(BenchmarkId::new(name, k), &k, |b, _| {
                b.iter(|| try_expand(attr.clone(), item.clone()).expect("expands"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, expansion, scaling);
criterion_main!(benches);
