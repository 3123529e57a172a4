//! Batches through `FoldRule`: the same bits as per-sample calls for 1 and 2 threads,
//! per-sample constants, and a bad sample reported by index with the others kept.

mod common;

use common::*;
use fold_runtime::batch::{sum_grads, Batcher, PerSample};
use fold_runtime::prelude::*;

#[fold(state = x, params(c))]
fn pgd(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
    proj_box(&(x - (q * x + c) * alpha), 0.0, 1.0)
}

type R = pgd::Rule;

fn problem(
    seed: u64,
    n: usize,
    samples: usize,
) -> (pgd::Consts, Vec<pgd::Params>, Vec<DVector<f64>>) {
    let mut r = rng(seed);
    let q = spd(&mut r, n, 0.3);
    let alpha = 1.0 / lambda_max(&q);
    let params = (0..samples)
        .map(|_| pgd::Params {
            c: normal_vec(&mut r, n),
        })
        .collect();
    let grads = (0..samples).map(|_| normal_vec(&mut r, n)).collect();
    (pgd::Consts { q, alpha }, params, grads)
}

#[test]
fn batch_equals_per_sample_bit_for_bit_for_any_thread_count() {
    let n = 20;
    let (k, params, gs) = problem(21, n, 17);
    let x0 = DVector::zeros(n);
    let fwd = ForwardOptions::default();
    let bwd = BackwardOptions::default();
    // Per-sample reference through the module's own functions.
    let xs: Vec<DVector<f64>> = params
        .iter()
        .map(|p| pgd::solve(&x0, &p.c, &k.q, k.alpha, &fwd).unwrap().x)
        .collect();
    let refs: Vec<DVector<f64>> = params
        .iter()
        .zip(&xs)
        .zip(&gs)
        .map(|((p, x), g)| pgd::backward(x, &p.c, &k.q, k.alpha, g, &bwd).unwrap().c)
        .collect();
    for threads in [1, 2, 3] {
        let b = Batcher::with_threads(threads).unwrap();
        assert_eq!(b.threads(), threads);
        let sols = b
            .solve::<R>(&params, PerSample::Shared(&k), PerSample::Shared(&x0), &fwd)
            .into_all()
            .unwrap();
        let got: Vec<DVector<f64>> = sols.into_iter().map(|s| s.x).collect();
        assert_eq!(got, xs, "{threads} threads: forward");
        let grads = b
            .backward::<R>(&params, PerSample::Shared(&k), &got, &gs, &bwd)
            .into_all()
            .unwrap();
        let got: Vec<DVector<f64>> = grads.into_iter().map(|(g, _)| g.c).collect();
        assert_eq!(got, refs, "{threads} threads: backward");
    }
    // The sequential sum in sample order.
    let mut acc = refs[0].clone();
    for g in &refs[1..] {
        acc += g;
    }
    let wrapped: Vec<pgd::Grads> = refs.iter().map(|c| pgd::Grads { c: c.clone() }).collect();
    assert_eq!(sum_grads(&wrapped).unwrap().c, acc);
    assert!(sum_grads::<pgd::Grads>(&[]).is_none());
}

#[test]
fn per_sample_constants_and_starts() {
    let n = 8;
    let (k, params, _) = problem(22, n, 3);
    let ks: Vec<pgd::Consts> = (0..3)
        .map(|i| pgd::Consts {
            q: &k.q * (1.0 + i as f64),
            alpha: k.alpha / (1.0 + i as f64),
        })
        .collect();
    let starts: Vec<DVector<f64>> = (0..3)
        .map(|i| DVector::from_element(n, 0.3 * i as f64))
        .collect();
    let fwd = ForwardOptions::default();
    let b = Batcher::with_threads(2).unwrap();
    let sols = b
        .solve::<R>(
            &params,
            PerSample::Each(&ks),
            PerSample::Each(&starts),
            &fwd,
        )
        .into_all()
        .unwrap();
    for i in 0..3 {
        let direct = pgd::solve(&starts[i], &params[i].c, &ks[i].q, ks[i].alpha, &fwd).unwrap();
        assert_eq!(sols[i].x, direct.x);
    }
    // Wrong number of per-sample values: an error, not a panic.
    let short = b.solve::<R>(
        &params,
        PerSample::Each(&ks[..2]),
        PerSample::Shared(&starts[0]),
        &fwd,
    );
    assert!(matches!(
        short.results[0],
        Err(FoldError::DimensionMismatch { .. })
    ));
}

#[test]
fn one_bad_sample_is_reported_by_index_and_the_others_are_kept() {
    let n = 10;
    let (k, mut params, gs) = problem(23, n, 6);
    params[4].c[3] = f64::NAN;
    let x0 = DVector::zeros(n);
    let fwd = ForwardOptions::default();
    let b = Batcher::with_threads(2).unwrap();
    let sols = b.solve::<R>(&params, PerSample::Shared(&k), PerSample::Shared(&x0), &fwd);
    let failures: Vec<_> = sols.failures().collect();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].index, 4);
    assert!(matches!(failures[0].error, FoldError::NonFinite { .. }));
    for (i, r) in sols.results.iter().enumerate() {
        if i != 4 {
            let direct = pgd::solve(&x0, &params[i].c, &k.q, k.alpha, &fwd).unwrap();
            assert_eq!(r.as_ref().unwrap().x, direct.x);
        }
    }
    let err = sols.clone().into_all().unwrap_err();
    assert_eq!(err.index, 4);
    assert!(err.to_string().contains("sample 4"));
    // Backward: the NaN parameter fails there too, the others are computed.
    let xs: Vec<DVector<f64>> = sols
        .results
        .iter()
        .map(|r| {
            r.as_ref()
                .map(|s| s.x.clone())
                .unwrap_or_else(|_| x0.clone())
        })
        .collect();
    let back = b.backward::<R>(
        &params,
        PerSample::Shared(&k),
        &xs,
        &gs,
        &BackwardOptions::default(),
    );
    assert_eq!(
        back.failures().map(|e| e.index).collect::<Vec<_>>(),
        vec![4]
    );
    assert_eq!(back.results.iter().filter(|r| r.is_ok()).count(), 5);
}

#[test]
fn a_batch_runs_on_the_calling_thread_and_its_helpers_in_index_order() {
    let caller = std::thread::current().id();
    for threads in [2, 3] {
        let b = Batcher::with_threads(threads).unwrap();
        let out = b.map(24, |i| {
            std::thread::sleep(std::time::Duration::from_millis(1));
            (i, std::thread::current().id())
        });
        let order: Vec<usize> = out.iter().map(|&(i, _)| i).collect();
        assert_eq!(order, (0..24).collect::<Vec<_>>());
        let mut ids: Vec<_> = out.iter().map(|&(_, id)| id).collect();
        ids.sort_by_key(|id| format!("{id:?}"));
        ids.dedup();
        assert!(ids.len() <= threads, "{threads} threads: {} ran", ids.len());
        assert!(ids.contains(&caller), "the calling thread works too");
    }
    assert!(Batcher::with_threads(2).unwrap().map(0, |i| i).is_empty());
}

#[test]
fn lingering_helpers_give_the_same_bits_and_join_the_next_batch() {
    let n = 12;
    let (k, params, gs) = problem(23, n, 9);
    let x0 = DVector::zeros(n);
    let (fwd, bwd) = (ForwardOptions::default(), BackwardOptions::default());
    let plain = Batcher::with_threads(2).unwrap();
    // A linger far longer than the test: only the next batch's start releases it.
    let linger = Batcher::with_threads(2)
        .unwrap()
        .with_linger(std::time::Duration::from_secs(60));
    let run = |b: &Batcher| {
        let xs: Vec<DVector<f64>> = b
            .solve::<R>(&params, PerSample::Shared(&k), PerSample::Shared(&x0), &fwd)
            .into_all()
            .unwrap()
            .into_iter()
            .map(|s| s.x)
            .collect();
        let grads: Vec<DVector<f64>> = b
            .backward::<R>(&params, PerSample::Shared(&k), &xs, &gs, &bwd)
            .into_all()
            .unwrap()
            .into_iter()
            .map(|(g, _)| g.c)
            .collect();
        (xs, grads)
    };
    let reference = run(&plain);
    for _ in 0..3 {
        assert_eq!(run(&linger), reference);
    }
    // The helper left its spin for this batch and took samples of it.
    let caller = std::thread::current().id();
    let ids = linger.map(24, |_| {
        std::thread::sleep(std::time::Duration::from_millis(1));
        std::thread::current().id()
    });
    assert!(
        ids.iter().any(|&id| id != caller),
        "the helper joined the batch"
    );
    // Dropping the batcher releases the linger of its last batch.
    drop(linger);
}

#[test]
fn a_batch_nested_in_a_lingering_batch_does_not_wait_out_the_linger() {
    // Inner batches run on the helper too, which then must not spin for jobs queued
    // behind itself.
    let b = Batcher::with_threads(2)
        .unwrap()
        .with_linger(std::time::Duration::from_secs(60));
    let start = std::time::Instant::now();
    let sums = b.map(4, |i| b.map(6, |j| i * 10 + j).into_iter().sum::<usize>());
    assert_eq!(sums, vec![15, 75, 135, 195]);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(20),
        "nested batches took {:?}",
        start.elapsed()
    );
}
