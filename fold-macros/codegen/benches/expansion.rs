//! Wall time of one `#[fold]` expansion (parse, differentiate, saturate, extract, emit,
//! pretty-print) per representative rule: `cargo bench -p fold-codegen --bench expansion`.

use criterion::{criterion_group, criterion_main, Criterion};
use fold_codegen::samples::cases;
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

criterion_group!(benches, expansion);
criterion_main!(benches);
