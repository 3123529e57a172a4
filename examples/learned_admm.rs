//! Learned ADMM: learning the metric of a lasso denoiser through ADMM, whose x-update is a
//! linear solve with the learned matrix.
//!
//! ```sh
//! cargo run --release --example learned_admm
//! ```
//!
//! A sparse signal `x₀` is observed in correlated noise, `b = x₀ + e`, `e ~ N(0, Σ)`. The
//! estimator is the lasso in a learned metric `P = L Lᵀ`,
//!
//! ```text
//!     x*(b; L) = argmin ½ (x − b)ᵀ P (x − b) + λ ‖x‖₁      (P = Σ⁻¹ is the MAP metric)
//! ```
//!
//! solved by ADMM on the split `x = z` with penalty `ρ`:
//!
//! ```text
//!     x⁺ = (P + ρI)⁻¹ (P b + ρ (z − u)),   z⁺ = S_{λ/ρ}(x⁺ + u),   u⁺ = u + x⁺ − z⁺.
//! ```
//!
//! In the single variable `s = x⁺ + u` (ADMM is Douglas–Rachford in it) one step is
//! `z = S_{λ/ρ}(s)`, `x = (P + ρI)⁻¹ (P b + ρ (2z − s))`, `s⁺ = s + x − z`, and at the fixed
//! point `x* = z* = S_{λ/ρ}(s*)`. That step is the `#[fold]` rule below: `linsolve` is
//! differentiated in its matrix (`∂a = −w xᵀ`) and the factorization of `P + ρI`
//! (Cholesky: it is symmetric positive definite) is computed once per linearization.
//!
//! The example prints the generated `DERIVATIVES`, checks the folded gradient `dℓ/dL` of
//! `ℓ = ‖x* − x₀‖²` against central finite differences of the whole forward solve, times
//! the folded backward against unrolling `K` ADMM steps (`unrolled_backward`), and trains
//! `L` by a few gradient steps on a training set, reporting the held-out error.

use fold_runtime::prelude::*;
use fold_runtime::{iterates, unrolled_backward};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use std::time::Instant;

/// One ADMM step for the lasso in the metric `P = L Lᵀ`, in the Douglas–Rachford variable
/// `s = x + u` (the learned parameter is the factor `l`).
#[fold(state = s, params(l))]
fn admm_step(
    s: &DVector<f64>,
    l: &DMatrix<f64>,
    b: &DVector<f64>,
    eye: &DMatrix<f64>,
    rho: f64,
    lam: f64,
) -> DVector<f64> {
    let p = l * l.transpose();
    let z = soft_threshold(s, lam / rho);
    let x = linsolve(&(&p + eye * rho), &(&p * b + (&z * 2.0 - s) * rho));
    s + x - z
}

/// Signal length.
const N: usize = 24;
/// ADMM penalty.
const RHO: f64 = 1.0;
/// Lasso weight.
const LAM: f64 = 0.2;
/// Noise correlation between neighbours (AR(1)), and noise level.
const CORR: f64 = 0.8;
const SIGMA: f64 = 0.3;

fn fwd() -> ForwardOptions {
    ForwardOptions {
        tol: 1e-13,
        max_iter: 100_000,
        anderson: None,
    }
}

/// One denoising instance: a sparse signal and its noisy observation.
struct Sample {
    clean: DVector<f64>,
    noisy: DVector<f64>,
}

/// `count` samples with 4 spikes each in AR(1) noise (`chol` is the noise's factor).
fn samples(rng: &mut StdRng, chol: &DMatrix<f64>, count: usize) -> Vec<Sample> {
    (0..count)
        .map(|_| {
            let mut clean = DVector::zeros(N);
            for _ in 0..4 {
                let i = rng.random_range(0..N);
                let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
                clean[i] = sign * rng.random_range(1.0..2.0);
            }
            let w = DVector::from_fn(N, |_, _| rng.sample::<f64, _>(StandardNormal));
            let noisy = &clean + chol * w * SIGMA;
            Sample { clean, noisy }
        })
        .collect()
}

/// The estimate `x* = S_{λ/ρ}(s*)` and the fixed point `s*`.
fn estimate(
    l: &DMatrix<f64>,
    b: &DVector<f64>,
    eye: &DMatrix<f64>,
) -> Result<(DVector<f64>, DVector<f64>), FoldError> {
    let s = admm_step::solve(&DVector::zeros(N), l, b, eye, RHO, LAM, &fwd())?.x;
    Ok((soft_threshold(&s, LAM / RHO), s))
}

/// `∂ℓ/∂s` of `ℓ = ‖S_{λ/ρ}(s) − x₀‖²` (the chain rule through the soft threshold).
fn loss_grad_s(s: &DVector<f64>, clean: &DVector<f64>) -> DVector<f64> {
    let t = LAM / RHO;
    let z = soft_threshold(s, t);
    DVector::from_fn(N, |i, _| {
        if s[i].abs() > t {
            2.0 * (z[i] - clean[i])
        } else {
            0.0
        }
    })
}

/// Mean loss and its folded gradient in `l` over `data`.
fn loss_and_grad(
    l: &DMatrix<f64>,
    data: &[Sample],
    eye: &DMatrix<f64>,
) -> Result<(f64, DMatrix<f64>), FoldError> {
    let (mut loss, mut grad) = (0.0, DMatrix::zeros(N, N));
    for d in data {
        let (x, s) = estimate(l, &d.noisy, eye)?;
        loss += (&x - &d.clean).norm_squared();
        let g = loss_grad_s(&s, &d.clean);
        let grads = admm_step::backward(&s, l, &d.noisy, eye, RHO, LAM, &g, &Default::default())?;
        grad += grads.l;
    }
    let k = data.len() as f64;
    Ok((loss / k, grad / k))
}

/// Mean loss over `data`.
fn mean_loss(l: &DMatrix<f64>, data: &[Sample], eye: &DMatrix<f64>) -> Result<f64, FoldError> {
    let mut loss = 0.0;
    for d in data {
        loss += (estimate(l, &d.noisy, eye)?.0 - &d.clean).norm_squared();
    }
    Ok(loss / data.len() as f64)
}

/// Best of `reps` wall-clock runs of `f`, in seconds.
fn best_time<T>(reps: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..reps {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed().as_secs_f64());
        out = Some(v);
    }
    (best, out.expect("reps ≥ 1"))
}

fn main() -> Result<(), FoldError> {
    let mut rng = StdRng::seed_from_u64(15);
    let eye = DMatrix::identity(N, N);
    let cov = DMatrix::from_fn(N, N, |i, j| CORR.powi((i as i32 - j as i32).abs()));
    let chol = cov.clone().cholesky().ok_or(FoldError::Singular)?.l();
    let train = samples(&mut rng, &chol, 32);
    let test = samples(&mut rng, &chol, 64);

    println!("--- admm_step::DERIVATIVES ---");
    print!("{}", admm_step::DERIVATIVES);

    // 1. The folded gradient against finite differences of the whole forward solve, at a
    //    generic metric (random L near the identity) on one sample.
    let l0 = &eye + DMatrix::from_fn(N, N, |_, _| 0.1 * rng.sample::<f64, _>(StandardNormal));
    let d = &train[0];
    let (x, s) = estimate(&l0, &d.noisy, &eye)?;
    let sol = admm_step::solve(&DVector::zeros(N), &l0, &d.noisy, &eye, RHO, LAM, &fwd())?;
    let g = loss_grad_s(&s, &d.clean);
    let opts = BackwardOptions::default();
    let folded = admm_step::backward(&s, &l0, &d.noisy, &eye, RHO, LAM, &g, &opts)?.l;
    let loss_at = |l: &DMatrix<f64>| -> Result<f64, FoldError> {
        Ok((estimate(l, &d.noisy, &eye)?.0 - &d.clean).norm_squared())
    };
    let h = 1e-6;
    let mut fd = DMatrix::zeros(N, N);
    for j in 0..N {
        for i in 0..N {
            let (mut lp, mut lm) = (l0.clone(), l0.clone());
            lp[(i, j)] += h;
            lm[(i, j)] -= h;
            fd[(i, j)] = (loss_at(&lp)? - loss_at(&lm)?) / (2.0 * h);
        }
    }
    let fd_err = (&folded - &fd).norm() / fd.norm();
    let support = x.iter().filter(|v| **v != 0.0).count();
    println!(
        "\nforward: {} ADMM steps to ‖s⁺ − s‖ = {:.1e}; x* has {support} of {N} nonzeros",
        sol.iterations, sol.residual
    );
    println!("dℓ/dL (all {} entries) vs central finite differences of the whole solve: relative error {fd_err:.1e}", N * N);

    // 2. Folded backward against unrolling K ADMM steps from s = 0.
    let reps = 20;
    let (t_fold, _) = best_time(reps, || {
        admm_step::backward(&s, &l0, &d.noisy, &eye, RHO, LAM, &g, &opts)
    });
    println!("\nbackward passes (unrolled: linearize at each of K stored iterates, then reverse):");
    println!("| backward | gradient error vs folded | time |");
    println!("|---|---|---|");
    println!("| folded (at s*) | — | {:.1} µs |", t_fold * 1e6);
    for k in [10, 30, 100, 300] {
        let step = |s: &DVector<f64>| Ok(admm_step(s, &l0, &d.noisy, &eye, RHO, LAM));
        let ss = iterates(step, DVector::zeros(N), k)?;
        let gk = loss_grad_s(ss.last().expect("K + 1 iterates"), &d.clean);
        let (t, grads) = best_time(reps.min(2000 / k), || {
            unrolled_backward(
                &ss,
                |s| Ok(admm_step::linearize(s, &l0, &d.noisy, &eye, RHO, LAM)),
                &gk,
            )
        });
        let err = (&grads?.l - &folded).norm() / folded.norm();
        println!(
            "| unrolled K = {k} | {err:.1e} | {:.1} µs ({:.0}× folded) |",
            t * 1e6,
            t / t_fold
        );
    }

    // 3. Training: gradient descent on L from the identity (the plain lasso, P = I).
    let mut l = eye.clone();
    let lr = 0.05;
    let t = Instant::now();
    println!(
        "\ntraining L from the identity (the plain lasso), {} samples:",
        train.len()
    );
    println!(
        "| step | train loss | held-out loss ({} samples) |",
        test.len()
    );
    println!("|---|---|---|");
    for step in 0..=40 {
        let (loss, grad) = loss_and_grad(&l, &train, &eye)?;
        if step % 5 == 0 {
            println!(
                "| {step} | {loss:.4} | {:.4} |",
                mean_loss(&l, &test, &eye)?
            );
        }
        l -= grad * lr;
    }
    println!("training took {:.2} s", t.elapsed().as_secs_f64());
    Ok(())
}
