//! Portfolio selection with predicted returns: decision-focused vs two-stage learning.
//!
//! ```sh
//! cargo run --release --example portfolio
//! ```
//!
//! Data follow SPO's portfolio generator (Elmachtoub & Grigas 2022): n = 50 assets,
//! 5 features φ, returns `r̄ⱼ = (ℓ/√5 (Bφ)ⱼ + 0.1^{1/deg})^deg` plus factor noise `Lf`
//! (4 factors) and idiosyncratic noise; covariance `Σ = LLᵀ + 0.01² I`; everything in
//! percent. The loading is `ℓ = 0.2` (SPO uses 0.05, at which `r̄` is nearly linear in φ
//! for every degree and the two methods below tie within 0.1 point of normalized regret).
//! A linear model predicts the returns `μ̂ = Wφ + c`; the model class is misspecified
//! when `deg > 1`. Two decision layers, each differentiated by `#[fold]`:
//!
//! 1. **mean-variance on the simplex**: `max μᵀx − ½γ xᵀΣx` over `{x ≥ 0, Σx = 1}`, solved
//!    by projected gradient, `x ← proj_simplex(x − α(γΣx − μ̂), 1)`;
//! 2. **risk-constrained** (through the QP layer): `max μᵀx` s.t. `xᵀΣx ≤ κ`, `Σx = 1`,
//!    `x ≥ 0`, solved by SQP with primal-dual state `(x, λ)`: each step solves the local QP
//!    (Hessian `2λ_riskΣ + δI`, linearized risk constraint) with `qp_solve`. This is the
//!    paper's f-SQP.
//!
//! **Two-stage** fits `μ̂` by least squares; **decision-focused** starts from it and
//! minimizes the realized regret of its decisions by Adam, with the gradient from the
//! folded backward (checked once per layer against finite differences of the whole
//! forward solve). The table reports regret on 200 held-out instances (realized returns),
//! `U(x*(r); r) − U(x*(μ̂); r)`, and normalized by `Σ|U(x*(r); r)|`.

use fold_runtime::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use std::sync::Mutex;
use std::time::Instant;

/// One projected-gradient step of the mean-variance problem on the simplex (`sigma` is the
/// risk-aversion-scaled covariance γΣ).
#[fold(state = x, params(mu))]
fn mv_step(x: &DVector<f64>, mu: &DVector<f64>, sigma: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
    proj_simplex(&(x - (sigma * x - mu) * alpha), 1.0)
}

/// One SQP step of  max μᵀx  s.t.  xᵀΣx ≤ κ, 1ᵀx = 1, x ≥ 0, with state `(x, λ)`:
/// `λ` holds the inequality multipliers `[λ_risk; λ_{x≥0}]` (`e1` picks `λ_risk`).
/// The local QP in z: min ½(z − x)ᵀH(z − x) − μᵀz with `H = 2λ_risk Σ + δI`, subject to
/// the risk constraint linearized at x, `2(Σx)ᵀz ≤ κ + xᵀΣx`, and `1ᵀz = 1`, `−z ≤ 0`
/// (`e_low = [0; I]` turns `e1 (2Σx)ᵀ − e_low` into those `n + 1` rows).
#[fold(state = (x, lam), params(mu))]
#[allow(clippy::too_many_arguments)]
fn sqp_step(
    x: &DVector<f64>,
    lam: &DVector<f64>,
    mu: &DVector<f64>,
    sigma: &DMatrix<f64>,
    kappa: f64,
    delta: f64,
    eye: &DMatrix<f64>,
    e1: &DVector<f64>,
    e_low: &DMatrix<f64>,
    a: &DMatrix<f64>,
    b: &DVector<f64>,
) -> (DVector<f64>, DVector<f64>) {
    let sx = sigma * x;
    let hess = sigma * (e1.dot(lam) * 2.0) + eye * delta;
    let lin = -(mu + &hess * x);
    let gm = e1 * (sx.clone() * 2.0).transpose() - e_low;
    let hv = e1 * (kappa + x.dot(&sx));
    let (xn, _y, zn) = qp_solve(&hess, &lin, a, b, &gm, &hv);
    (xn, zn)
}

const N: usize = 50; // assets
const D: usize = 5; // features
const FACTORS: usize = 4;
const N_TRAIN_MV: usize = 1000;
const N_TRAIN_SQP: usize = 200;
const N_TEST: usize = 200;
const GAMMA: f64 = 10.0; // risk aversion of the mean-variance problem
const KAPPA: f64 = 0.1; // variance budget (%²) of the risk-constrained problem
const DELTA: f64 = 0.05; // proximal term of the SQP Hessian
const LR_MV: f64 = 0.01;
const LR_SQP: f64 = 0.01;
/// Feature loading of the return model (SPO uses 0.05, which makes `r̄` nearly linear in φ
/// at every degree; the two methods then tie within 0.1 point of normalized regret).
const LOADING: f64 = 0.2;

/// One instance: features and realized returns (percent).
struct Sample {
    phi: DVector<f64>,
    r: DVector<f64>,
}

/// The market: feature loadings, factor loadings and the covariance (percent²).
struct Market {
    bmat: DMatrix<f64>,
    l: DMatrix<f64>,
    sigma: DMatrix<f64>,
}

fn gauss(r: &mut StdRng) -> f64 {
    let u: f64 = r.random_range(1e-12..1.0);
    let v: f64 = r.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

impl Market {
    fn new(rng: &mut StdRng) -> Market {
        let bmat = DMatrix::from_fn(N, D, |_, _| if rng.random::<bool>() { 1.0 } else { 0.0 });
        let l = DMatrix::from_fn(N, FACTORS, |_, _| rng.random_range(-0.0025..0.0025));
        let sigma = (&l * l.transpose() + DMatrix::identity(N, N) * 0.01f64.powi(2)) * 1e4;
        Market { bmat, l, sigma }
    }

    fn sample(&self, rng: &mut StdRng, deg: i32) -> Sample {
        let phi = DVector::from_fn(D, |_, _| gauss(rng));
        let base = 0.1f64.powf(1.0 / deg as f64);
        let rbar = (&self.bmat * &phi).map(|v| (LOADING / (D as f64).sqrt() * v + base).powi(deg));
        let f = DVector::from_fn(FACTORS, |_, _| gauss(rng));
        let noise = DVector::from_fn(N, |_, _| 0.01 * gauss(rng));
        Sample {
            phi,
            r: (rbar + &self.l * f + noise) * 100.0,
        }
    }
}

/// A linear predictor `μ̂ = Wφ + c`.
#[derive(Clone)]
struct Linear {
    w: DMatrix<f64>,
    c: DVector<f64>,
}

impl Linear {
    fn predict(&self, phi: &DVector<f64>) -> DVector<f64> {
        &self.w * phi + &self.c
    }

    /// Least squares of `r` on `[φ, 1]`: the two-stage fit.
    fn least_squares(data: &[Sample]) -> Linear {
        let x = DMatrix::from_fn(
            data.len(),
            D + 1,
            |i, j| {
                if j < D {
                    data[i].phi[j]
                } else {
                    1.0
                }
            },
        );
        let y = DMatrix::from_fn(data.len(), N, |i, j| data[i].r[j]);
        let gram = x.transpose() * &x + DMatrix::identity(D + 1, D + 1) * 1e-8;
        let coef = gram.cholesky().expect("SPD").solve(&(x.transpose() * y));
        Linear {
            w: coef.rows(0, D).transpose(),
            c: coef.row(D).transpose(),
        }
    }

    fn params(&self) -> Vec<f64> {
        self.w.iter().chain(self.c.iter()).copied().collect()
    }

    fn set_params(&mut self, p: &[f64]) {
        self.w.copy_from_slice(&p[..N * D]);
        self.c.copy_from_slice(&p[N * D..]);
    }
}

/// A decision layer: the decision for predicted returns, its utility under realized
/// returns, and `∂(−utility)/∂μ̂` by the folded backward.
trait Layer: Sync {
    fn name(&self) -> &'static str;
    /// The decision for `mu_hat`, for instance `k` (which may warm-start from its last one).
    fn decide(&self, k: usize, mu_hat: &DVector<f64>) -> Result<DVector<f64>, FoldError>;
    fn utility(&self, x: &DVector<f64>, r: &DVector<f64>) -> f64;
    /// `∂(−U(x*(μ̂); r))/∂μ̂` at the decision `x = x*(μ̂)`.
    fn loss_grad(
        &self,
        k: usize,
        x: &DVector<f64>,
        mu_hat: &DVector<f64>,
        r: &DVector<f64>,
    ) -> Result<DVector<f64>, FoldError>;
}

/// Mean-variance on the simplex by folded PGD.
struct MeanVariance {
    /// γΣ.
    sigma: DMatrix<f64>,
    alpha: f64,
}

impl Layer for MeanVariance {
    fn name(&self) -> &'static str {
        "mean-variance (PGD + proj_simplex)"
    }
    fn decide(&self, _k: usize, mu_hat: &DVector<f64>) -> Result<DVector<f64>, FoldError> {
        let x0 = DVector::from_element(N, 1.0 / N as f64);
        let opts = ForwardOptions {
            tol: 1e-10,
            max_iter: 50_000,
            anderson: None,
        };
        Ok(mv_step::solve(&x0, mu_hat, &self.sigma, self.alpha, &opts)?.x)
    }
    fn utility(&self, x: &DVector<f64>, r: &DVector<f64>) -> f64 {
        r.dot(x) - 0.5 * x.dot(&(&self.sigma * x))
    }
    fn loss_grad(
        &self,
        _k: usize,
        x: &DVector<f64>,
        mu_hat: &DVector<f64>,
        r: &DVector<f64>,
    ) -> Result<DVector<f64>, FoldError> {
        let g = &self.sigma * x - r;
        let opts = BackwardOptions::default();
        Ok(mv_step::backward(x, mu_hat, &self.sigma, self.alpha, &g, &opts)?.mu)
    }
}

/// Risk-constrained return maximization by folded SQP with `qp_solve`.
struct RiskConstrained {
    sigma: DMatrix<f64>,
    eye: DMatrix<f64>,
    e1: DVector<f64>,
    e_low: DMatrix<f64>,
    a: DMatrix<f64>,
    b: DVector<f64>,
    /// The last `(x, λ)` of every instance (training set first, then test), to warm-start.
    warm: Vec<Mutex<Option<DVector<f64>>>>,
}

impl RiskConstrained {
    fn new(sigma: &DMatrix<f64>, instances: usize) -> RiskConstrained {
        let mut e_low = DMatrix::zeros(N + 1, N);
        e_low.view_mut((1, 0), (N, N)).fill_with_identity();
        let mut e1 = DVector::zeros(N + 1);
        e1[0] = 1.0;
        RiskConstrained {
            sigma: sigma.clone(),
            eye: DMatrix::identity(N, N),
            e1,
            e_low,
            a: DMatrix::from_element(1, N, 1.0),
            b: DVector::from_element(1, 1.0),
            warm: (0..instances).map(|_| Mutex::new(None)).collect(),
        }
    }

    fn state(&self, k: usize, mu_hat: &DVector<f64>) -> Result<DVector<f64>, FoldError> {
        let start = self.warm[k].lock().expect("not poisoned").clone();
        let start = start.unwrap_or_else(|| {
            let x = DVector::from_element(N, 1.0 / N as f64);
            sqp_step::pack(&x, &DVector::zeros(N + 1))
        });
        let (x0, lam0) = sqp_step::unpack(&start, [N, N + 1]);
        let opts = ForwardOptions {
            tol: 1e-10,
            max_iter: 500,
            anderson: None,
        };
        let sol = sqp_step::solve(
            &x0,
            &lam0,
            mu_hat,
            &self.sigma,
            KAPPA,
            DELTA,
            &self.eye,
            &self.e1,
            &self.e_low,
            &self.a,
            &self.b,
            &opts,
        )?;
        *self.warm[k].lock().expect("not poisoned") = Some(sol.x.clone());
        Ok(sol.x)
    }
}

impl Layer for RiskConstrained {
    fn name(&self) -> &'static str {
        "risk-constrained (f-SQP + qp_solve)"
    }
    fn decide(&self, k: usize, mu_hat: &DVector<f64>) -> Result<DVector<f64>, FoldError> {
        Ok(self.state(k, mu_hat)?.rows(0, N).into_owned())
    }
    fn utility(&self, x: &DVector<f64>, r: &DVector<f64>) -> f64 {
        r.dot(x)
    }
    fn loss_grad(
        &self,
        k: usize,
        _x: &DVector<f64>,
        mu_hat: &DVector<f64>,
        r: &DVector<f64>,
    ) -> Result<DVector<f64>, FoldError> {
        // The state at the fixed point (cached by `decide`), and the cotangent on x only.
        let state = self.warm[k]
            .lock()
            .expect("not poisoned")
            .clone()
            .ok_or_else(|| FoldError::non_finite("missing SQP state"))?;
        let (x, lam) = sqp_step::unpack(&state, [N, N + 1]);
        let g = sqp_step::pack(&-r, &DVector::zeros(N + 1));
        let grads = sqp_step::backward(
            &x,
            &lam,
            mu_hat,
            &self.sigma,
            KAPPA,
            DELTA,
            &self.eye,
            &self.e1,
            &self.e_low,
            &self.a,
            &self.b,
            &g,
            &BackwardOptions::default(),
        )?;
        Ok(grads.mu)
    }
}

/// The utility of the hindsight decision `x*(r)` of every instance (`None` if its solve
/// failed); instance `i` uses warm-start slot `offset + i`.
fn hindsight(layer: &dyn Layer, data: &[Sample], offset: usize) -> Vec<Option<f64>> {
    data.par_iter()
        .enumerate()
        .map(|(i, s)| {
            let x = layer.decide(offset + i, &s.r).ok()?;
            Some(layer.utility(&x, &s.r))
        })
        .collect()
}

/// Held-out results of one model through one layer.
struct Eval {
    /// Mean regret `U(x*(r); r) − U(x*(μ̂); r)`.
    regret: f64,
    /// `Σ regret / Σ |U(x*(r); r)|`.
    normalized: f64,
    /// Mean number of assets with weight above 1e-6.
    held: f64,
    failed: usize,
}

/// Evaluates `model` through `layer` on `data` against the hindsight utilities `best`
/// (instance `i` warm-starts from slot `offset + i`).
fn evaluate(
    layer: &dyn Layer,
    model: &Linear,
    data: &[Sample],
    offset: usize,
    best: &[Option<f64>],
) -> Eval {
    let res: Vec<Option<(f64, f64, f64)>> = data
        .par_iter()
        .enumerate()
        .map(|(i, s)| {
            let best = best[i]?;
            let x = layer.decide(offset + i, &model.predict(&s.phi)).ok()?;
            let held = x.iter().filter(|&&v| v > 1e-6).count() as f64;
            Some((best - layer.utility(&x, &s.r), best.abs(), held))
        })
        .collect();
    let ok: Vec<(f64, f64, f64)> = res.iter().flatten().copied().collect();
    let count = ok.len().max(1) as f64;
    let regret: f64 = ok.iter().map(|v| v.0).sum();
    Eval {
        regret: regret / count,
        normalized: regret / ok.iter().map(|v| v.1).sum::<f64>(),
        held: ok.iter().map(|v| v.2).sum::<f64>() / count,
        failed: res.len() - ok.len(),
    }
}

/// `∂(−U)/∂μ̂` of the folded backward against central finite differences of the whole
/// forward solve, on one instance (warm-start slot `slot`): the relative error.
fn check_gradient(
    layer: &dyn Layer,
    model: &Linear,
    s: &Sample,
    slot: usize,
) -> Result<f64, FoldError> {
    let mu = model.predict(&s.phi);
    let x = layer.decide(slot, &mu)?;
    let folded = layer.loss_grad(slot, &x, &mu, &s.r)?;
    let eps = 1e-5;
    let mut fd = DVector::zeros(N);
    for i in 0..N {
        let (mut mp, mut mm) = (mu.clone(), mu.clone());
        mp[i] += eps;
        mm[i] -= eps;
        let up = -layer.utility(&layer.decide(slot, &mp)?, &s.r);
        let um = -layer.utility(&layer.decide(slot, &mm)?, &s.r);
        fd[i] = (up - um) / (2.0 * eps);
    }
    Ok((folded - &fd).norm() / fd.norm())
}

/// Adam from the two-stage model on the mean realized regret; returns the trained model
/// and the number of failed solves.
fn train(
    layer: &dyn Layer,
    init: &Linear,
    data: &[Sample],
    epochs: usize,
    lr: f64,
    bar: &ProgressBar,
    rng: &mut StdRng,
) -> (Linear, usize) {
    const BATCH: usize = 10;
    let mut model = init.clone();
    let mut params = model.params();
    let (mut m, mut v) = (vec![0.0; params.len()], vec![0.0; params.len()]);
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
    let mut t = 0;
    let mut failed = 0;
    let mut order: Vec<usize> = (0..data.len()).collect();
    for _ in 0..epochs {
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        for idx in order.chunks(BATCH) {
            let grads: Vec<Result<(usize, DVector<f64>), FoldError>> = idx
                .par_iter()
                .map(|&k| {
                    let mu_hat = model.predict(&data[k].phi);
                    let x = layer.decide(k, &mu_hat)?;
                    Ok((k, layer.loss_grad(k, &x, &mu_hat, &data[k].r)?))
                })
                .collect();
            let mut gw = DMatrix::zeros(N, D);
            let mut gc = DVector::zeros(N);
            let mut used = 0;
            for g in grads {
                match g {
                    Ok((k, gmu)) => {
                        // μ̂ = Wφ + c:  ∂/∂W = ∂/∂μ̂ φᵀ,  ∂/∂c = ∂/∂μ̂.
                        gw.ger(1.0, &gmu, &data[k].phi, 1.0);
                        gc += &gmu;
                        used += 1;
                    }
                    Err(_) => failed += 1,
                }
            }
            if used > 0 {
                let s = 1.0 / used as f64;
                t += 1;
                for (i, g) in gw.iter().chain(gc.iter()).enumerate() {
                    let g = g * s;
                    m[i] = b1 * m[i] + (1.0 - b1) * g;
                    v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                    let (mh, vh) = (m[i] / (1.0 - b1.powi(t)), v[i] / (1.0 - b2.powi(t)));
                    params[i] -= lr * mh / (vh.sqrt() + eps);
                }
                model.set_params(&params);
            }
            bar.inc(1);
        }
    }
    (model, failed)
}

fn main() {
    let start = Instant::now();
    let mut rng = StdRng::seed_from_u64(42);
    let market = Market::new(&mut rng);
    let gsigma = &market.sigma * GAMMA;
    let lmax = gsigma.clone().symmetric_eigen().eigenvalues.max();
    let mv = MeanVariance {
        sigma: gsigma,
        alpha: 1.0 / lmax,
    };
    let degrees = [1, 2, 4, 6];
    const MV_EPOCHS: usize = 10;
    const SQP_EPOCHS: usize = 4;
    let sqp_degrees = [1, 4, 6];

    println!(
        "Portfolio selection with predicted returns: {N} assets, {D} features, {FACTORS} factors"
    );
    println!(
        "{N_TRAIN_MV} (mean-variance) or {N_TRAIN_SQP} (risk-constrained) training / {N_TEST} test instances per degree; linear predictor μ̂ = Wφ + c"
    );
    println!();

    let steps = degrees.len() * MV_EPOCHS * N_TRAIN_MV.div_ceil(10)
        + sqp_degrees.len() * SQP_EPOCHS * N_TRAIN_SQP.div_ceil(10);
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("training {bar:30} {pos}/{len} steps  {elapsed}  {msg}")
            .expect("valid template"),
    );

    struct Row {
        layer: &'static str,
        deg: i32,
        two_stage: Eval,
        dfl: Eval,
        failed: usize,
        secs: f64,
    }
    let mut rows = Vec::new();
    for (li, &deg) in degrees
        .iter()
        .map(|d| (0, d))
        .chain(sqp_degrees.iter().map(|d| (1, d)))
        .collect::<Vec<_>>()
        .iter()
    {
        let t0 = Instant::now();
        let mut drng = StdRng::seed_from_u64(1000 + deg as u64);
        let n_train = if *li == 0 { N_TRAIN_MV } else { N_TRAIN_SQP };
        let train_set: Vec<Sample> = (0..n_train)
            .map(|_| market.sample(&mut drng, deg))
            .collect();
        let test_set: Vec<Sample> = (0..N_TEST).map(|_| market.sample(&mut drng, deg)).collect();
        // Warm-start slots (SQP): training, test, test hindsight, gradient check.
        let slots = n_train + 2 * N_TEST + 1;
        let sqp;
        let layer: &dyn Layer = if *li == 0 {
            &mv
        } else {
            // Slots: training instances, then test instances, then their hindsight decisions.
            sqp = RiskConstrained::new(&market.sigma, slots);
            &sqp
        };
        bar.set_message(format!("{}, deg {deg}", layer.name()));
        let two_stage = Linear::least_squares(&train_set);
        if deg == 4 {
            // Warm-start slot beyond the others.
            let err = check_gradient(layer, &two_stage, &test_set[0], slots - 1);
            let msg = match err {
                Ok(e) => format!("{e:.1e}"),
                Err(e) => format!("failed: {e}"),
            };
            bar.suspend(|| {
                println!(
                    "check ({}, deg {deg}): folded ∂regret/∂μ̂ vs finite differences of the solve: rel. error {msg}",
                    layer.name()
                )
            });
        }
        let (epochs, lr) = if *li == 0 {
            (MV_EPOCHS, LR_MV)
        } else {
            (SQP_EPOCHS, LR_SQP)
        };
        let (model, failed) = train(layer, &two_stage, &train_set, epochs, lr, &bar, &mut rng);
        // Test instances warm-start from the slots after the training ones.
        let best = hindsight(layer, &test_set, n_train + N_TEST);
        let ts = evaluate(layer, &two_stage, &test_set, n_train, &best);
        let df = evaluate(layer, &model, &test_set, n_train, &best);
        rows.push(Row {
            layer: layer.name(),
            deg,
            failed: failed + ts.failed + df.failed,
            two_stage: ts,
            dfl: df,
            secs: t0.elapsed().as_secs_f64(),
        });
    }
    bar.finish_and_clear();

    println!();
    println!(
        "held-out regret U(x*(r); r) − U(x*(μ̂); r), mean over {N_TEST} test instances (normalized in parentheses)"
    );
    println!(
        "{:<37} {:>3} {:>17} {:>17} {:>11} {:>6}",
        "layer", "deg", "two-stage (MSE)", "decision-focused", "assets held", "time"
    );
    for r in &rows {
        println!(
            "{:<37} {:>3} {:>8.4} ({:>5.2}%) {:>8.4} ({:>5.2}%) {:>5.1} → {:<4.1} {:>5.1}s{}",
            r.layer,
            r.deg,
            r.two_stage.regret,
            100.0 * r.two_stage.normalized,
            r.dfl.regret,
            100.0 * r.dfl.normalized,
            r.two_stage.held,
            r.dfl.held,
            r.secs,
            if r.failed > 0 {
                format!("  ({} failed solves skipped)", r.failed)
            } else {
                String::new()
            }
        );
    }
    println!("(assets held: mean number with weight > 1e-6, two-stage → decision-focused)");
    let at = |layer: &str, deg: i32| rows.iter().find(|r| r.layer == layer && r.deg == deg);
    println!();
    let mut headline = Vec::new();
    for layer in [mv.name(), "risk-constrained (f-SQP + qp_solve)"] {
        if let Some(r) = at(layer, 4) {
            headline.push(format!(
                "{}: {:.2}% → {:.2}%",
                layer.split(' ').next().unwrap_or(layer),
                100.0 * r.two_stage.normalized,
                100.0 * r.dfl.normalized
            ));
        }
    }
    println!(
        "headline (deg 4, normalized held-out regret, two-stage → decision-focused): {}; total {:.1} s",
        headline.join(", "),
        start.elapsed().as_secs_f64()
    );
}
