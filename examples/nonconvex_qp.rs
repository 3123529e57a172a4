//! Decision-focused learning through a nonconvex QP, differentiated by folded PGD.
//!
//! ```sh
//! cargo run --release --example nonconvex_qp
//! ```
//!
//! The decision problem is DC3's nonconvex QP (Donti, Rolnick & Kolter 2021):
//!
//! ```text
//! y*(p) = argmin ½yᵀQy + pᵀ sin y   s.t.  Ay = b,  Gy ≤ h
//! ```
//!
//! with `Q` diagonal positive, `A`, `G` standard normal, `h = Σⱼ |(G A⁺)ᵢⱼ|` and, per
//! instance, `b ∈ [−1, 1]ᵐ` (so `A⁺b` is feasible and is the solver's start). The
//! coefficients `p` are unknown: a linear model predicts them from 5 features, and the true
//! `p` depends on the features through a degree-4 polynomial (SPO's generator), so the
//! model is misspecified. The solver is projected gradient descent (Anderson-accelerated
//! forward iteration) whose projection onto the polyhedron is the opaque primitive
//! `proj_polyhedron` (a QP solved by clarabel and differentiated through its KKT system);
//! `#[fold]` differentiates the whole solve at its fixed point.
//!
//! Two ways to fit the model:
//! - **two-stage**: least squares on `p` (the usual predict-then-optimize);
//! - **decision-focused**: start from the two-stage model, then minimize the true cost of
//!   the decision, `½y*ᵀQy* + pᵀ sin y*` with `y* = y*(p̂)`, by Adam, with `∂cost/∂p̂` from
//!   the folded backward of the PGD step.
//!
//! The table reports regret `cost(y*(p̂); p) − cost(y*(p); p)` on held-out instances
//! (both decisions by the same solver from the same start, so the problem being
//! nonconvex, a negative regret is possible: a better local minimum).

use fold_runtime::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// One projected-gradient step for  min ½yᵀQy + pᵀ sin y  s.t.  Ay = b, Gy ≤ h.
#[fold(state = y, params(p))]
#[allow(clippy::too_many_arguments)]
fn pgd_step(
    y: &DVector<f64>,
    p: &DVector<f64>,
    q: &DMatrix<f64>,
    a: &DMatrix<f64>,
    b: &DVector<f64>,
    g: &DMatrix<f64>,
    h: &DVector<f64>,
    alpha: f64,
) -> DVector<f64> {
    let grad = q * y + p.component_mul(&cos(y));
    proj_polyhedron(&(y - grad * alpha), a, b, g, h)
}

/// Forward PGD iterations and solves, for the report.
static ITERS: AtomicUsize = AtomicUsize::new(0);
static SOLVES: AtomicUsize = AtomicUsize::new(0);

const N: usize = 16; // decision variables
const M_EQ: usize = 4; // equality constraints
const M_IN: usize = 8; // inequality constraints
const D: usize = 5; // features
const DEG: i32 = 4; // degree of the true feature → p map
const N_TRAIN: usize = 100;
const N_TEST: usize = 100;
const EPOCHS: usize = 20;
const LR: f64 = 0.02;
const BATCH: usize = 10;

/// The constraint data shared by every instance.
struct Problem {
    q: DMatrix<f64>,
    a: DMatrix<f64>,
    g: DMatrix<f64>,
    h: DVector<f64>,
    /// `A⁺`, for the feasible start `A⁺b`.
    a_pinv: DMatrix<f64>,
    /// `λ_max(Q)`.
    q_max: f64,
}

/// One instance: features, the true coefficients and its right-hand side `b`.
struct Instance {
    phi: DVector<f64>,
    p: DVector<f64>,
    b: DVector<f64>,
    /// The start `A⁺b` and the decision under the true `p`, with its cost.
    y0: DVector<f64>,
    y_opt: DVector<f64>,
    cost_opt: f64,
}

fn gauss(r: &mut StdRng) -> f64 {
    let u: f64 = r.random_range(1e-12..1.0);
    let v: f64 = r.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn forward_opts() -> ForwardOptions {
    ForwardOptions {
        tol: 1e-10,
        max_iter: 20_000,
        anderson: Some(5),
    }
}

impl Problem {
    fn new(r: &mut StdRng) -> Problem {
        let q = DMatrix::from_diagonal(&DVector::from_fn(N, |_, _| r.random_range(0.5..1.5)));
        let a = DMatrix::from_fn(M_EQ, N, |_, _| gauss(r));
        let g = DMatrix::from_fn(M_IN, N, |_, _| gauss(r));
        let a_pinv = a.transpose() * (&a * a.transpose()).try_inverse().expect("full rank A");
        let h = (&g * &a_pinv).abs().column_sum();
        let q_max = q.diagonal().max();
        Problem {
            q,
            a,
            g,
            h,
            a_pinv,
            q_max,
        }
    }

    /// The true cost of decision `y` under coefficients `p`.
    fn cost(&self, y: &DVector<f64>, p: &DVector<f64>) -> f64 {
        0.5 * y.dot(&(&self.q * y)) + p.dot(&y.map(f64::sin))
    }

    /// The step size for predicted coefficients `p` (1/L of the objective's gradient).
    fn alpha(&self, p: &DVector<f64>) -> f64 {
        1.0 / (self.q_max + p.amax())
    }

    /// The decision for coefficients `p`: PGD from `A⁺b` to a fixed point.
    fn decide(
        &self,
        y0: &DVector<f64>,
        b: &DVector<f64>,
        p: &DVector<f64>,
    ) -> Result<DVector<f64>, FoldError> {
        let alpha = self.alpha(p);
        let sol = pgd_step::solve(
            y0,
            p,
            &self.q,
            &self.a,
            b,
            &self.g,
            &self.h,
            alpha,
            &forward_opts(),
        )?;
        ITERS.fetch_add(sol.iterations, Ordering::Relaxed);
        SOLVES.fetch_add(1, Ordering::Relaxed);
        Ok(sol.x)
    }

    /// `∂ cost(y*(p̂); p) / ∂p̂` by the folded backward at the decision `y`.
    fn cost_grad(
        &self,
        y: &DVector<f64>,
        b: &DVector<f64>,
        p_hat: &DVector<f64>,
        p: &DVector<f64>,
    ) -> Result<DVector<f64>, FoldError> {
        let dcost_dy = &self.q * y + p.component_mul(&y.map(f64::cos));
        let alpha = self.alpha(p_hat);
        let grads = pgd_step::backward(
            y,
            p_hat,
            &self.q,
            &self.a,
            b,
            &self.g,
            &self.h,
            alpha,
            &dcost_dy,
            &BackwardOptions::default(),
        )?;
        Ok(grads.p)
    }

    fn instance(&self, r: &mut StdRng, bmat: &DMatrix<f64>) -> Result<Instance, FoldError> {
        let phi = DVector::from_fn(D, |_, _| gauss(r));
        // SPO's generator: ((Bφ)/√d + 3)^deg, rescaled to about [−1, 3.5] and perturbed.
        let raw = (bmat * &phi) / (D as f64).sqrt();
        let p = raw.map(|v| {
            let noise = r.random_range(0.9..1.1);
            ((v + 3.0).powi(DEG) / 3f64.powi(DEG) - 1.0) * noise
        });
        let b = DVector::from_fn(M_EQ, |_, _| r.random_range(-1.0..1.0));
        let y0 = &self.a_pinv * &b;
        let y_opt = self.decide(&y0, &b, &p)?;
        let cost_opt = self.cost(&y_opt, &p);
        Ok(Instance {
            phi,
            p,
            b,
            y0,
            y_opt,
            cost_opt,
        })
    }
}

/// A linear predictor `p̂ = Wφ + c`.
#[derive(Clone)]
struct Linear {
    w: DMatrix<f64>,
    c: DVector<f64>,
}

impl Linear {
    fn predict(&self, phi: &DVector<f64>) -> DVector<f64> {
        &self.w * phi + &self.c
    }

    /// Least squares of `p` on `[φ, 1]` (with a tiny ridge): the two-stage fit.
    fn least_squares(data: &[Instance]) -> Linear {
        let x = DMatrix::from_fn(
            data.len(),
            D + 1,
            |i, j| if j < D { data[i].phi[j] } else { 1.0 },
        );
        let y = DMatrix::from_fn(data.len(), N, |i, j| data[i].p[j]);
        let gram = x.transpose() * &x + DMatrix::identity(D + 1, D + 1) * 1e-8;
        let coef = gram.cholesky().expect("SPD").solve(&(x.transpose() * y)); // (D+1) × N
        Linear {
            w: coef.rows(0, D).transpose(),
            c: coef.row(D).transpose(),
        }
    }
}

/// Adam on the predictor's parameters, flattened.
struct Adam {
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
    lr: f64,
}

impl Adam {
    fn step(&mut self, params: &mut [f64], grad: &[f64]) {
        let (b1, b2, eps) = (0.9, 0.999, 1e-8);
        self.t += 1;
        for i in 0..params.len() {
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * grad[i];
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * grad[i] * grad[i];
            let mh = self.m[i] / (1.0 - b1.powi(self.t));
            let vh = self.v[i] / (1.0 - b2.powi(self.t));
            params[i] -= self.lr * mh / (vh.sqrt() + eps);
        }
    }
}

struct Eval {
    regret: f64,
    norm_regret: f64,
    mse: f64,
    failures: usize,
}

/// Mean regret, normalized regret `Σ regret / Σ |cost*|` and MSE of `p̂` on `data`.
fn evaluate(prob: &Problem, model: &Linear, data: &[Instance]) -> Eval {
    let per: Vec<Option<(f64, f64)>> = data
        .par_iter()
        .map(|inst| {
            let p_hat = model.predict(&inst.phi);
            let mse = (&p_hat - &inst.p).norm_squared() / N as f64;
            let y = prob.decide(&inst.y0, &inst.b, &p_hat).ok()?;
            Some((prob.cost(&y, &inst.p) - inst.cost_opt, mse))
        })
        .collect();
    let ok: Vec<(f64, f64)> = per.iter().flatten().copied().collect();
    let denom: f64 = data.iter().map(|i| i.cost_opt.abs()).sum::<f64>() / data.len() as f64;
    let regret = ok.iter().map(|r| r.0).sum::<f64>() / ok.len() as f64;
    Eval {
        regret,
        norm_regret: regret / denom,
        mse: ok.iter().map(|r| r.1).sum::<f64>() / ok.len() as f64,
        failures: per.len() - ok.len(),
    }
}

/// One decision-focused step on a minibatch: the mean regret and the gradient of the
/// mean cost with respect to the model's `(W, c)`, by the folded backward per instance.
fn batch_gradient(prob: &Problem, model: &Linear, batch: &[&Instance]) -> (Vec<f64>, f64, usize) {
    let results: Vec<Result<(DVector<f64>, f64), FoldError>> = batch
        .par_iter()
        .map(|inst| {
            let p_hat = model.predict(&inst.phi);
            let y = prob.decide(&inst.y0, &inst.b, &p_hat)?;
            let gp = prob.cost_grad(&y, &inst.b, &p_hat, &inst.p)?;
            Ok((gp, prob.cost(&y, &inst.p) - inst.cost_opt))
        })
        .collect();
    let mut gw = DMatrix::zeros(N, D);
    let mut gc = DVector::zeros(N);
    let (mut regret, mut used, mut failed) = (0.0, 0usize, 0usize);
    for (inst, res) in batch.iter().zip(results) {
        match res {
            Ok((gp, reg)) => {
                // p̂ = Wφ + c:  ∂/∂W = ∂/∂p̂ φᵀ,  ∂/∂c = ∂/∂p̂.
                gw.ger(1.0, &gp, &inst.phi, 1.0);
                gc += &gp;
                regret += reg;
                used += 1;
            }
            Err(_) => failed += 1,
        }
    }
    let scale = 1.0 / used.max(1) as f64;
    let grad = gw.iter().chain(gc.iter()).map(|g| g * scale).collect();
    (grad, regret * scale, failed)
}

fn main() -> Result<(), FoldError> {
    let start = Instant::now();
    let mut r = StdRng::seed_from_u64(2023);
    let prob = Problem::new(&mut r);
    let bmat = DMatrix::from_fn(N, D, |_, _| if r.random::<bool>() { 1.0 } else { 0.0 });
    let mut make = |k: usize| -> Result<Vec<Instance>, FoldError> {
        (0..k).map(|_| prob.instance(&mut r, &bmat)).collect()
    };
    let train = make(N_TRAIN)?;
    let test = make(N_TEST)?;
    let nonconvex = test
        .iter()
        .filter(|i| (0..N).any(|j| i.p[j].abs() > prob.q[(j, j)]))
        .count();
    let active: usize = test
        .iter()
        .map(|i| {
            (&prob.h - &prob.g * &i.y_opt)
                .iter()
                .filter(|&&s| s < 1e-7)
                .count()
        })
        .sum();
    println!("Decision-focused learning through a nonconvex QP (folded PGD + proj_polyhedron)");
    println!(
        "n = {N} variables, {M_EQ} equalities, {M_IN} inequalities, {D} features; {N_TRAIN} training / {N_TEST} test instances"
    );
    println!(
        "{nonconvex} of {N_TEST} test instances are nonconvex (some |pᵢ| > Qᵢᵢ); {:.1} active inequalities per solution on average",
        active as f64 / N_TEST as f64
    );

    // Sanity check of the folded gradient on one training instance: finite differences of
    // the whole forward solve (PGD to its fixed point), 2n solves.
    {
        let inst = &train[0];
        let p_hat = &inst.p * 0.8;
        let y = prob.decide(&inst.y0, &inst.b, &p_hat)?;
        let folded = prob.cost_grad(&y, &inst.b, &p_hat, &inst.p)?;
        let eps = 1e-6;
        let mut fd = DVector::zeros(N);
        for i in 0..N {
            let (mut pp, mut pm) = (p_hat.clone(), p_hat.clone());
            pp[i] += eps;
            pm[i] -= eps;
            let cp = prob.cost(&prob.decide(&inst.y0, &inst.b, &pp)?, &inst.p);
            let cm = prob.cost(&prob.decide(&inst.y0, &inst.b, &pm)?, &inst.p);
            fd[i] = (cp - cm) / (2.0 * eps);
        }
        let step = pgd_step(
            &y,
            &p_hat,
            &prob.q,
            &prob.a,
            &inst.b,
            &prob.g,
            &prob.h,
            prob.alpha(&p_hat),
        );
        println!(
            "check: ∂cost/∂p̂ folded vs finite differences of the solve: rel. error {:.1e} (fixed-point residual {:.1e})",
            (&folded - &fd).norm() / fd.norm(),
            (step - &y).amax()
        );
    }

    // Baselines: a constant prediction (the training mean of p) and two-stage least squares.
    let mean_p = train.iter().fold(DVector::zeros(N), |acc, i| acc + &i.p) / N_TRAIN as f64;
    let constant = Linear {
        w: DMatrix::zeros(N, D),
        c: mean_p,
    };
    let two_stage = Linear::least_squares(&train);

    // Decision-focused: from the two-stage model, minimize the true cost of the decisions.
    let mut model = two_stage.clone();
    let nparam = N * D + N;
    let mut adam = Adam {
        m: vec![0.0; nparam],
        v: vec![0.0; nparam],
        t: 0,
        lr: LR,
    };
    println!();
    println!(
        "decision-focused training (Adam, lr {LR}, batches of {BATCH}), from the two-stage model:"
    );
    println!(
        "{:>7} {:>14} {:>13}",
        "epoch", "train regret", "test regret"
    );
    let te0 = evaluate(&prob, &model, &test);
    println!("{:>7} {:>14} {:>13.4}", 0, "", te0.regret);
    let bar = ProgressBar::new((EPOCHS * N_TRAIN.div_ceil(BATCH)) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {elapsed}  {msg}")
            .expect("valid template"),
    );
    let mut order: Vec<usize> = (0..N_TRAIN).collect();
    let mut failures = 0usize;
    let train_start = Instant::now();
    for epoch in 1..=EPOCHS {
        // Shuffle (Fisher–Yates).
        for i in (1..order.len()).rev() {
            let j = r.random_range(0..=i);
            order.swap(i, j);
        }
        let mut epoch_regret = 0.0;
        for idx in order.chunks(BATCH) {
            let batch: Vec<&Instance> = idx.iter().map(|&k| &train[k]).collect();
            let (grad, regret, failed) = batch_gradient(&prob, &model, &batch);
            failures += failed;
            epoch_regret += regret * batch.len() as f64 / N_TRAIN as f64;
            let mut params: Vec<f64> = model.w.iter().chain(model.c.iter()).copied().collect();
            adam.step(&mut params, &grad);
            model.w.copy_from_slice(&params[..N * D]);
            model.c.copy_from_slice(&params[N * D..]);
            bar.set_message(format!("batch regret {regret:.4}"));
            bar.inc(1);
        }
        if epoch % 5 == 0 || epoch == EPOCHS {
            let te = evaluate(&prob, &model, &test);
            bar.suspend(|| println!("{epoch:>7} {epoch_regret:>14.4} {:>13.4}", te.regret));
        }
    }
    bar.finish_and_clear();
    let train_secs = train_start.elapsed().as_secs_f64();

    println!();
    println!(
        "held-out regret  cost(y*(p̂); p) − cost(y*(p); p), mean over {N_TEST} test instances:"
    );
    println!(
        "{:<27} {:>12} {:>12} {:>13} {:>12}",
        "method", "train regret", "test regret", "normalized", "test MSE(p)"
    );
    let rows = [
        ("constant p̂ (train mean)", &constant),
        ("two-stage (MSE)", &two_stage),
        ("decision-focused (folded)", &model),
    ];
    let mut test_regret = Vec::new();
    for (name, m) in rows {
        let tr = evaluate(&prob, m, &train);
        let te = evaluate(&prob, m, &test);
        println!(
            "{name:<27} {:>12.4} {:>12.4} {:>12.2}% {:>12.3}",
            tr.regret,
            te.regret,
            100.0 * te.norm_regret,
            te.mse
        );
        if tr.failures + te.failures > 0 {
            println!(
                "  ({} forward solves failed and were skipped)",
                tr.failures + te.failures
            );
        }
        test_regret.push(te.regret);
    }
    println!("(normalized: mean regret / mean |cost*|; MSE(p): mean squared error of p̂ per entry)");
    println!();
    let solves = SOLVES.load(Ordering::Relaxed);
    println!(
        "training: {EPOCHS} epochs in {train_secs:.1} s; {solves} forward solves in total, {:.1} PGD steps each on average (Anderson(5)); {failures} failed",
        ITERS.load(Ordering::Relaxed) as f64 / solves as f64
    );
    println!(
        "headline: held-out regret {:.4} (two-stage) → {:.4} (decision-focused), {:.0}% lower; total {:.1} s",
        test_regret[1],
        test_regret[2],
        100.0 * (1.0 - test_regret[2] / test_regret[1]),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
