//! Batches: the forward solve and the folded backward of many samples of one rule, in
//! parallel, generic over [`FoldRule`].
//!
//! Every sample is computed on its own, by the same sequential code whatever the thread
//! count, and results come back in sample order: a batch gives bit for bit the values of
//! per-sample calls, for any number of threads. The runtime's dense kernels (faer) run
//! sequentially, so a batch's threads are the only ones (no oversubscription). A failing
//! sample does not stop the others: each result is its own `Result`, and
//! [`BatchResults::into_all`] turns the first failure into a [`BatchError`] carrying its
//! index.
//!
//! ```
//! use fold_runtime::prelude::*;
//! use fold_runtime::batch::{Batcher, PerSample};
//!
//! #[fold(state = x, params(c))]
//! fn pgd_step(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
//!     proj_box(&(x - (q * x + c) * alpha), 0.0, 1.0)
//! }
//!
//! let k = pgd_step::Consts { q: DMatrix::identity(2, 2), alpha: 0.5 };
//! let params: Vec<_> = (0..4)
//!     .map(|i| pgd_step::Params { c: DVector::from_vec(vec![-0.2 * i as f64, if i == 1 { f64::NAN } else { 0.1 }]) })
//!     .collect();
//! let batch = Batcher::with_threads(2)?;
//! let x0 = DVector::zeros(2);
//! let sols = batch.solve::<pgd_step::Rule>(&params, PerSample::Shared(&k), PerSample::Shared(&x0), &ForwardOptions::default());
//! assert!(sols.results[0].is_ok() && sols.results[2].is_ok());
//! // c is NaN for sample 1: its error names it, the others are kept.
//! let err = sols.into_all().unwrap_err();
//! assert_eq!(err.index, 1);
//! # Ok::<(), fold_runtime::batch::BatchError>(())
//! ```

use crate::{
    BackwardOptions, Cotangent, FoldError, FoldRule, ForwardOptions, Solution, SolveStats,
};
use nalgebra::DVector;
use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;

/// A value shared by every sample of a batch, or one per sample.
#[derive(Debug)]
pub enum PerSample<'a, T> {
    /// The same value for every sample.
    Shared(&'a T),
    /// One value per sample, in sample order.
    Each(&'a [T]),
}

impl<T> Clone for PerSample<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for PerSample<'_, T> {}

impl<'a, T> PerSample<'a, T> {
    fn get(&self, i: usize) -> &'a T {
        match self {
            PerSample::Shared(v) => v,
            PerSample::Each(v) => &v[i],
        }
    }

    fn check(&self, n: usize, what: &str) -> Result<(), FoldError> {
        match self {
            PerSample::Shared(_) => Ok(()),
            PerSample::Each(v) => crate::__private::check::same_dim(what, n, v.len()),
        }
    }
}

/// A failed sample of a batch.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("sample {index} of the batch failed: {error}")]
pub struct BatchError {
    /// Its index in the batch.
    pub index: usize,
    /// Why it failed.
    #[source]
    pub error: FoldError,
}

/// One result per sample, in sample order.
#[derive(Debug, Clone)]
pub struct BatchResults<T> {
    /// Sample `i`'s value or error.
    pub results: Vec<Result<T, FoldError>>,
}

impl<T> BatchResults<T> {
    /// Every value, or the first failing sample with its index.
    pub fn into_all(self) -> Result<Vec<T>, BatchError> {
        self.results
            .into_iter()
            .enumerate()
            .map(|(index, r)| r.map_err(|error| BatchError { index, error }))
            .collect()
    }

    /// The failing samples, with their indices.
    pub fn failures(&self) -> impl Iterator<Item = BatchError> + '_ {
        self.results.iter().enumerate().filter_map(|(index, r)| {
            r.as_ref().err().map(|e| BatchError {
                index,
                error: e.clone(),
            })
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.results.len()
    }

    /// Whether the batch was empty.
    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }
}

/// Runs batches on rayon's global pool, or on the calling thread with helpers of its
/// own pool for a fixed number of threads.
#[derive(Debug, Default)]
pub struct Batcher {
    /// `threads − 1` helpers; `None` with `threads == 0`: rayon's global pool.
    pool: Option<rayon::ThreadPool>,
    /// Threads a batch runs on, the calling one included (`0`: the global pool's).
    threads: usize,
    /// How long helpers stay awake after a batch (see [`Batcher::with_linger`]).
    linger: Duration,
    /// Batches started: a change releases the helpers lingering after the last one.
    started: Arc<AtomicUsize>,
    /// Batches in flight: nested ones (a batch inside another's samples) neither linger
    /// nor wait by spinning, since a helper may be the one running their outer sample.
    running: AtomicUsize,
}

impl Batcher {
    /// Batches on rayon's global pool (as many threads as `RAYON_NUM_THREADS` or cores).
    pub fn global() -> Self {
        Batcher::on(None, 0)
    }

    fn on(pool: Option<rayon::ThreadPool>, threads: usize) -> Self {
        Batcher {
            pool,
            threads,
            linger: Duration::ZERO,
            started: Arc::default(),
            running: AtomicUsize::new(0),
        }
    }

    /// Batches on exactly `threads` threads: the calling thread and `threads − 1` helpers
    /// (`1`: sequentially on the calling thread, no pool).
    pub fn with_threads(threads: usize) -> Result<Self, BatchError> {
        if threads <= 1 {
            return Ok(Batcher::on(None, 1));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads - 1)
            .build()
            .map_err(|e| BatchError {
                index: 0,
                error: FoldError::primitive("rayon thread pool", e.to_string()),
            })?;
        Ok(Batcher::on(Some(pool), threads))
    }

    /// Keeps the helpers awake (spinning) for up to `linger` after each batch, until the
    /// next one starts. Rayon parks idle workers, and waking one costs tens of
    /// microseconds: a training loop whose batches take about that long, with other work
    /// between them, otherwise runs most of each batch on the calling thread alone. For the
    /// same reason the calling thread, done with its samples, spins up to `linger` for the
    /// helpers' last ones instead of sleeping. The price is a busy helper core for up to
    /// `linger` after every batch; results are the same bits either way. Nested batches
    /// (one inside another's samples) do neither. No effect on one thread or on the
    /// global pool.
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// The number of threads batches run on.
    pub fn threads(&self) -> usize {
        match self.threads {
            0 => rayon::current_num_threads(),
            t => t,
        }
    }

    /// `f(i)` for every `i < n`, in parallel, collected in index order.
    pub fn map<T: Send>(&self, n: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
        match &self.pool {
            None if self.threads == 0 => (0..n).into_par_iter().map(&f).collect(),
            Some(pool) if n > 1 => {
                let batch = self.started.fetch_add(1, Ordering::AcqRel) + 1;
                let outermost = self.running.fetch_add(1, Ordering::AcqRel) == 0;
                let spin = if outermost {
                    self.linger
                } else {
                    Duration::ZERO
                };
                let out = helped_map(pool, self.threads - 1, n, spin, &f);
                if self.running.fetch_sub(1, Ordering::AcqRel) == 1 {
                    self.linger_in(pool, batch);
                }
                out
            }
            _ => (0..n).map(f).collect(),
        }
    }

    /// One spinning job per helper, returning when a batch after `batch` starts (at once
    /// if one from another thread already has), the batcher is dropped or `linger` has
    /// passed: a worker that just ran one finds the next batch's jobs at once.
    fn linger_in(&self, pool: &rayon::ThreadPool, batch: usize) {
        if self.linger.is_zero() {
            return;
        }
        for _ in 1..self.threads {
            let (started, linger) = (self.started.clone(), self.linger);
            pool.spawn(move || {
                let t = Instant::now();
                while started.load(Ordering::Acquire) == batch && t.elapsed() < linger {
                    std::hint::spin_loop();
                }
            });
        }
    }

    /// Forward solves of every sample: `params[i]` with its constants and start.
    pub fn solve<R: FoldRule>(
        &self,
        params: &[R::Params],
        consts: PerSample<'_, R::Consts>,
        x0: PerSample<'_, R::State>,
        opts: &ForwardOptions,
    ) -> BatchResults<Solution> {
        let n = params.len();
        let shapes = consts
            .check(n, "number of per-sample constants")
            .and_then(|_| x0.check(n, "number of per-sample starts"));
        let results = match shapes {
            Err(e) => vec![Err(e); n.max(1)],
            Ok(()) => self.map(n, |i| R::solve(&params[i], consts.get(i), x0.get(i), opts)),
        };
        BatchResults { results }
    }

    /// Folded backward passes of every sample at its fixed point `x[i]` for the
    /// cotangent `grad[i]` (packed state).
    pub fn backward<R: FoldRule>(
        &self,
        params: &[R::Params],
        consts: PerSample<'_, R::Consts>,
        x: &[R::State],
        grad: &[DVector<f64>],
        opts: &BackwardOptions,
    ) -> BatchResults<(R::Grads, SolveStats)> {
        let n = params.len();
        let shapes = consts
            .check(n, "number of per-sample constants")
            .and_then(|_| crate::__private::check::same_dim("number of fixed points", n, x.len()))
            .and_then(|_| crate::__private::check::same_dim("number of cotangents", n, grad.len()));
        let results = match shapes {
            Err(e) => vec![Err(e); n.max(1)],
            Ok(()) => self.map(n, |i| {
                R::backward(&params[i], consts.get(i), &x[i], &grad[i], opts)
            }),
        };
        BatchResults { results }
    }
}

impl Drop for Batcher {
    /// Releases helpers still lingering after the last batch.
    fn drop(&mut self) {
        self.started.fetch_add(1, Ordering::Release);
    }
}

/// `f(i)` for every `i < n` on the calling thread and `helpers` jobs of `pool`, each taking
/// the next index until none is left; in index order.
///
/// The calling thread works instead of waiting, so a batch never has more runnable
/// threads than it was given, and a helper that wakes late only takes fewer samples. Done
/// first, the calling thread spins up to `spin` for the helpers before it blocks: rayon
/// parks a waiting outside thread, and waking it costs tens of microseconds.
fn helped_map<T: Send>(
    pool: &rayon::ThreadPool,
    helpers: usize,
    n: usize,
    spin: Duration,
    f: &(impl Fn(usize) -> T + Sync),
) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let take = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                return done;
            }
            done.push((i, f(i)));
        }
    };
    let helped = Mutex::new(Vec::new());
    let running = AtomicUsize::new(helpers);
    let mut mine = Vec::new();
    pool.in_place_scope(|s| {
        for _ in 0..helpers {
            s.spawn(|_| {
                let done = take();
                helped.lock().unwrap_or_else(|p| p.into_inner()).push(done);
                running.fetch_sub(1, Ordering::Release);
            });
        }
        mine = take();
        let t = Instant::now();
        while running.load(Ordering::Acquire) > 0 && t.elapsed() < spin {
            std::hint::spin_loop();
        }
    });
    let helped = helped.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut slots: Vec<Option<T>> = (0..n).map(|_| None).collect();
    for (i, v) in mine.into_iter().chain(helped.into_iter().flatten()) {
        slots[i] = Some(v);
    }
    // Every index was taken exactly once.
    slots.into_iter().flatten().collect()
}

/// The sum of per-sample gradients, added in sample order (the same bits for any thread
/// count); `None` for an empty batch.
pub fn sum_grads<G: Cotangent>(grads: &[G]) -> Option<G> {
    let (first, rest) = grads.split_first()?;
    let mut acc = first.clone();
    for g in rest {
        acc += g;
    }
    Some(acc)
}
