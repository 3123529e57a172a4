//! Portfolio selection with predicted returns: decision-focused vs two-stage learning, with
//! an MLP predictor in candle and the decision layers as candle layers from `#[fold]`.
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
//! An MLP (5 → 32 → 50, ReLU) predicts the returns `μ̂(φ)`. Two decision layers, each a
//! [`FoldLayer`] of a `#[fold]` rule, so that `loss.backward()` runs the folded backward:
//!
//! 1. **mean-variance on the simplex**: `max μᵀx − ½γ xᵀΣx` over `{x ≥ 0, Σx = 1}`, solved
//!    by projected gradient, `x ← proj_simplex(x − α(γΣx − μ̂), 1)`;
//! 2. **risk-constrained** (through the QP layer): `max μᵀx` s.t. `xᵀΣx ≤ κ`, `Σx = 1`,
//!    `x ≥ 0`, solved by SQP with primal-dual state `(x, λ)`: each step solves the local QP
//!    (Hessian `2λ_riskΣ + δI`, linearized risk constraint) with `qp_solve`. This is the
//!    paper's f-SQP; every instance warm-starts from its last `(x, λ)`.
//!
//! **Two-stage** fits the MLP to the returns by mean squared error; **decision-focused**
//! starts from it and minimizes the realized regret of its decisions. Both train with
//! candle-nn's Adam (`AdamW` without weight decay) on shuffled mini-batches. The folded
//! gradient through each layer is checked once against central finite differences of the
//! whole forward solve. The table reports regret on 200 held-out instances (realized
//! returns), `U(x*(r); r) − U(x*(μ̂); r)`, and normalized by `Σ|U(x*(r); r)|`.

use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Linear, Module, Optimizer, ParamsAdamW};
use fold_runtime::integrations::candle::{fold_error, FoldLayer};
use fold_runtime::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

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

const HIDDEN: usize = 32;
/// Mini-batches of the decision-focused runs, and of the two-stage fit.
const BATCH: usize = 10;
const MSE_BATCH: usize = 50;
const MSE_EPOCHS: usize = 200;
const LR_MSE: f64 = 0.01;
const LR_MV: f64 = 0.003;
const LR_SQP: f64 = 0.01;

/// The predictor `μ̂ = W₂ relu(W₁φ + b₁) + b₂`.
struct Mlp {
    vars: Vec<Var>,
    l1: Linear,
    l2: Linear,
}

impl Mlp {
    /// Weights and biases uniform in `±1/√fan_in` (torch's `Linear` default), drawn from
    /// `rng` so that runs repeat.
    fn new(rng: &mut StdRng) -> Res<Mlp> {
        let mut uniform = |shape: &[usize], fan_in: usize| -> Res<Var> {
            let b = 1.0 / (fan_in as f64).sqrt();
            let len = shape.iter().product();
            let v: Vec<f64> = (0..len).map(|_| rng.random_range(-b..b)).collect();
            Ok(Var::from_tensor(&Tensor::from_vec(
                v,
                shape,
                &Device::Cpu,
            )?)?)
        };
        let vars = vec![
            uniform(&[HIDDEN, D], D)?,
            uniform(&[HIDDEN], D)?,
            uniform(&[N, HIDDEN], HIDDEN)?,
            uniform(&[N], HIDDEN)?,
        ];
        Ok(Mlp::with_vars(vars))
    }

    fn with_vars(vars: Vec<Var>) -> Mlp {
        let t = |i: usize| vars[i].as_tensor().clone();
        Mlp {
            l1: Linear::new(t(0), Some(t(1))),
            l2: Linear::new(t(2), Some(t(3))),
            vars,
        }
    }

    /// A copy with variables of its own.
    fn copy(&self) -> Res<Mlp> {
        let vars = self
            .vars
            .iter()
            .map(|v| Var::from_tensor(&v.as_tensor().copy()?))
            .collect::<candle_core::Result<_>>()?;
        Ok(Mlp::with_vars(vars))
    }

    fn forward(&self, phi: &Tensor) -> candle_core::Result<Tensor> {
        self.l2.forward(&self.l1.forward(phi)?.relu()?)
    }

    /// Adam on the weights (candle-nn's `AdamW` without weight decay).
    fn adam(&self, lr: f64) -> Res<AdamW> {
        let params = ParamsAdamW {
            lr,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        };
        Ok(AdamW::new(self.vars.clone(), params)?)
    }
}

/// Instances as tensors: features `(m, D)` and realized returns `(m, N)`.
struct Split {
    phi: Tensor,
    r: Tensor,
}

impl Split {
    fn new(data: &[Sample]) -> Res<Split> {
        let rows = |f: &dyn Fn(&Sample) -> &DVector<f64>, width: usize| -> Res<Tensor> {
            let flat: Vec<f64> = data.iter().flat_map(|s| f(s).iter().copied()).collect();
            Ok(Tensor::from_vec(flat, (data.len(), width), &Device::Cpu)?)
        };
        Ok(Split {
            phi: rows(&|s| &s.phi, D)?,
            r: rows(&|s| &s.r, N)?,
        })
    }

    fn len(&self) -> usize {
        self.phi.dims()[0]
    }
}

/// A decision layer on a candle graph: decisions for predicted returns and their utility.
trait Decision {
    fn name(&self) -> &'static str;
    /// `x*` `(B, N)` for the predicted returns `mu` `(B, N)` of instances `slots` (the
    /// risk-constrained layer warm-starts each from its last state).
    fn decide(&self, mu: &Tensor, slots: &[usize]) -> candle_core::Result<Tensor>;
    /// `U(x; r)` of every row, `(B)`.
    fn utility(&self, x: &Tensor, r: &Tensor) -> candle_core::Result<Tensor>;
}

/// Mean-variance on the simplex by folded PGD.
struct MeanVariance {
    layer: FoldLayer<mv_step::Rule>,
    /// γΣ.
    gsigma: Tensor,
}

impl MeanVariance {
    fn new(gsigma: DMatrix<f64>, alpha: f64) -> Res<MeanVariance> {
        let t = Tensor::from_vec(gsigma.as_slice().to_vec(), (N, N), &Device::Cpu)?; // symmetric
        let opts = ForwardOptions {
            tol: 1e-10,
            max_iter: 50_000,
            anderson: None,
        };
        let x0 = DVector::from_element(N, 1.0 / N as f64);
        let layer = FoldLayer::new(
            mv_step::Consts {
                sigma: gsigma,
                alpha,
            },
            x0,
        )
        .with_forward_options(opts);
        Ok(MeanVariance { layer, gsigma: t })
    }
}

impl Decision for MeanVariance {
    fn name(&self) -> &'static str {
        "mean-variance (PGD + proj_simplex)"
    }
    fn decide(&self, mu: &Tensor, _slots: &[usize]) -> candle_core::Result<Tensor> {
        self.layer.forward(&[mu])
    }
    fn utility(&self, x: &Tensor, r: &Tensor) -> candle_core::Result<Tensor> {
        let risk = (x.matmul(&self.gsigma)? * x)?.sum(1)?;
        (r * x)?.sum(1)? - (risk * 0.5)?
    }
}

/// The SQP layer's state `(x, λ)`.
type SqpState = (DVector<f64>, DVector<f64>);

/// Risk-constrained return maximization by folded SQP with `qp_solve`.
struct RiskConstrained {
    layer: FoldLayer<sqp_step::Rule>,
    /// The last `(x, λ)` of every instance slot.
    warm: std::cell::RefCell<Vec<Option<SqpState>>>,
}

impl RiskConstrained {
    fn new(sigma: &DMatrix<f64>, slots: usize) -> RiskConstrained {
        let mut e_low = DMatrix::zeros(N + 1, N);
        e_low.view_mut((1, 0), (N, N)).fill_with_identity();
        let mut e1 = DVector::zeros(N + 1);
        e1[0] = 1.0;
        let consts = sqp_step::Consts {
            sigma: sigma.clone(),
            kappa: KAPPA,
            delta: DELTA,
            eye: DMatrix::identity(N, N),
            e1,
            e_low,
            a: DMatrix::from_element(1, N, 1.0),
            b: DVector::from_element(1, 1.0),
        };
        let opts = ForwardOptions {
            tol: 1e-10,
            max_iter: 500,
            anderson: None,
        };
        let x0 = (
            DVector::from_element(N, 1.0 / N as f64),
            DVector::zeros(N + 1),
        );
        RiskConstrained {
            layer: FoldLayer::new(consts, x0).with_forward_options(opts),
            warm: std::cell::RefCell::new(vec![None; slots]),
        }
    }
}

impl Decision for RiskConstrained {
    fn name(&self) -> &'static str {
        "risk-constrained (f-SQP + qp_solve)"
    }
    fn decide(&self, mu: &Tensor, slots: &[usize]) -> candle_core::Result<Tensor> {
        let starts = {
            let warm = self.warm.borrow();
            let x0 = (
                DVector::from_element(N, 1.0 / N as f64),
                DVector::zeros(N + 1),
            );
            slots
                .iter()
                .map(|&k| warm[k].clone().unwrap_or_else(|| x0.clone()))
                .collect()
        };
        // (B, N + N + 1): the packed (x, λ).
        let state = self.layer.forward_from(&[mu], starts)?;
        let mut warm = self.warm.borrow_mut();
        for (&k, row) in slots.iter().zip(state.to_vec2::<f64>()?) {
            warm[k] = Some((
                DVector::from_column_slice(&row[..N]),
                DVector::from_column_slice(&row[N..]),
            ));
        }
        state.narrow(1, 0, N)
    }
    fn utility(&self, x: &Tensor, r: &Tensor) -> candle_core::Result<Tensor> {
        (r * x)?.sum(1)
    }
}

/// The rows `ids` of `t`.
fn rows(t: &Tensor, ids: &[usize]) -> candle_core::Result<Tensor> {
    let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
    t.index_select(&Tensor::new(ids.as_slice(), t.device())?, 0)
}

/// Adam on `loss(μ̂, rows)` over shuffled mini-batches of `data`; a batch whose decision
/// layer fails a solve is skipped (counted in the result).
#[allow(clippy::too_many_arguments)]
fn train(
    mlp: &Mlp,
    opt: &mut AdamW,
    data: &Split,
    epochs: usize,
    batch: usize,
    rng: &mut StdRng,
    bar: &ProgressBar,
    loss: impl Fn(&Tensor, &[usize]) -> candle_core::Result<Tensor>,
) -> Res<usize> {
    let mut skipped = 0;
    let mut order: Vec<usize> = (0..data.len()).collect();
    for _ in 0..epochs {
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        for ids in order.chunks(batch) {
            let mu = mlp.forward(&rows(&data.phi, ids)?)?;
            match loss(&mu, ids) {
                Ok(l) => opt.backward_step(&l)?,
                Err(e) if fold_error(&e).is_some() => skipped += 1,
                Err(e) => return Err(e.into()),
            }
            bar.inc(1);
        }
    }
    Ok(skipped)
}

/// The utility and the number of assets held (weight above 1e-6) of the decision for every
/// row of `mu`, `None` where the solve failed: the whole batch at once, sample by sample
/// if one fails.
fn outcomes(
    layer: &dyn Decision,
    mu: &Tensor,
    r: &Tensor,
    slots: &[usize],
) -> Res<Vec<Option<(f64, f64)>>> {
    let of = |x: &Tensor, r: &Tensor| -> candle_core::Result<Vec<Option<(f64, f64)>>> {
        let u = layer.utility(x, r)?.to_vec1::<f64>()?;
        let held = x.to_vec2::<f64>()?;
        Ok(u.into_iter()
            .zip(held)
            .map(|(u, x)| Some((u, x.iter().filter(|&&v| v > 1e-6).count() as f64)))
            .collect())
    };
    match layer.decide(mu, slots) {
        Ok(x) => Ok(of(&x, r)?),
        Err(e) if fold_error(&e).is_some() => {
            let mut out = Vec::with_capacity(slots.len());
            for (i, &k) in slots.iter().enumerate() {
                let (m, ri) = (mu.narrow(0, i, 1)?, r.narrow(0, i, 1)?);
                match layer.decide(&m, &[k]) {
                    Ok(x) => out.extend(of(&x, &ri)?),
                    Err(e) if fold_error(&e).is_some() => out.push(None),
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(out)
        }
        Err(e) => Err(e.into()),
    }
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

/// `mlp` through `layer` on `test` against the hindsight utilities `best` (instance `i`
/// warm-starts from slot `offset + i`).
fn evaluate(
    layer: &dyn Decision,
    mlp: &Mlp,
    test: &Split,
    offset: usize,
    best: &[Option<(f64, f64)>],
) -> Res<Eval> {
    let mu = mlp.forward(&test.phi)?.detach();
    let slots: Vec<usize> = (offset..offset + test.len()).collect();
    let got = outcomes(layer, &mu, &test.r, &slots)?;
    let ok: Vec<(f64, f64, f64)> = got
        .iter()
        .zip(best)
        .filter_map(|(g, b)| {
            let ((u, held), (ub, _)) = ((*g)?, (*b)?);
            Some((ub - u, ub.abs(), held))
        })
        .collect();
    let count = ok.len().max(1) as f64;
    let regret: f64 = ok.iter().map(|v| v.0).sum();
    Ok(Eval {
        regret: regret / count,
        normalized: regret / ok.iter().map(|v| v.1).sum::<f64>(),
        held: ok.iter().map(|v| v.2).sum::<f64>() / count,
        failed: got.len() - ok.len(),
    })
}

/// `∂(−U)/∂μ̂` through the layer (candle's backward, i.e. the folded backward) against
/// central finite differences of the whole forward solve, on one instance (slot `slot`):
/// the relative error.
fn check_gradient(layer: &dyn Decision, mlp: &Mlp, test: &Split, slot: usize) -> Res<f64> {
    let (phi, r) = (test.phi.narrow(0, 0, 1)?, test.r.narrow(0, 0, 1)?);
    let mu = Var::from_tensor(&mlp.forward(&phi)?.detach())?;
    let loss = |m: &Tensor| -> candle_core::Result<Tensor> {
        layer
            .utility(&layer.decide(m, &[slot])?, &r)?
            .neg()?
            .sum_all()
    };
    let grads = loss(mu.as_tensor())?.backward()?;
    let folded = grads
        .get(mu.as_tensor())
        .ok_or("no gradient for μ̂")?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let base = mu.as_tensor().flatten_all()?.to_vec1::<f64>()?;
    let eps = 1e-5;
    let at = |i: usize, h: f64| -> Res<f64> {
        let mut m = base.clone();
        m[i] += h;
        Ok(loss(&Tensor::from_vec(m, (1, N), &Device::Cpu)?)?.to_scalar::<f64>()?)
    };
    let mut diff = 0.0;
    let mut norm = 0.0;
    for (i, g) in folded.iter().enumerate() {
        let fd = (at(i, eps)? - at(i, -eps)?) / (2.0 * eps);
        diff += (g - fd).powi(2);
        norm += fd * fd;
    }
    Ok((diff / norm).sqrt())
}

fn main() -> Res<()> {
    let start = Instant::now();
    let mut rng = StdRng::seed_from_u64(42);
    let market = Market::new(&mut rng);
    let gsigma = &market.sigma * GAMMA;
    let lmax = gsigma.clone().symmetric_eigen().eigenvalues.max();
    let mv = MeanVariance::new(gsigma, 1.0 / lmax)?;
    let degrees = [1, 2, 4, 6];
    const MV_EPOCHS: usize = 10;
    const SQP_EPOCHS: usize = 4;
    let sqp_degrees = [1, 4, 6];

    println!(
        "Portfolio selection with predicted returns: {N} assets, {D} features, {FACTORS} factors"
    );
    println!(
        "{N_TRAIN_MV} (mean-variance) or {N_TRAIN_SQP} (risk-constrained) training / {N_TEST} test instances per degree; MLP predictor {D} → {HIDDEN} → {N} (ReLU) in candle"
    );
    println!();

    let runs: Vec<(usize, i32)> = degrees
        .iter()
        .map(|&d| (0, d))
        .chain(sqp_degrees.iter().map(|&d| (1, d)))
        .collect();
    let steps: usize = runs
        .iter()
        .map(|&(li, _)| {
            let (m, epochs) = if li == 0 {
                (N_TRAIN_MV, MV_EPOCHS)
            } else {
                (N_TRAIN_SQP, SQP_EPOCHS)
            };
            MSE_EPOCHS * m.div_ceil(MSE_BATCH) + epochs * m.div_ceil(BATCH)
        })
        .sum();
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(ProgressStyle::with_template(
        "training {bar:30} {pos}/{len} steps  {elapsed}  {msg}",
    )?);

    struct Row {
        layer: &'static str,
        deg: i32,
        two_stage: Eval,
        dfl: Eval,
        failed: usize,
        secs: f64,
    }
    let mut rows_out = Vec::new();
    for &(li, deg) in &runs {
        let t0 = Instant::now();
        let mut drng = StdRng::seed_from_u64(1000 + deg as u64);
        let n_train = if li == 0 { N_TRAIN_MV } else { N_TRAIN_SQP };
        let train_set: Vec<Sample> = (0..n_train)
            .map(|_| market.sample(&mut drng, deg))
            .collect();
        let test_set: Vec<Sample> = (0..N_TEST).map(|_| market.sample(&mut drng, deg)).collect();
        let (train_data, test) = (Split::new(&train_set)?, Split::new(&test_set)?);
        // Warm-start slots (SQP): training, test, test hindsight, gradient check.
        let slots = n_train + 2 * N_TEST + 1;
        let sqp;
        let layer: &dyn Decision = if li == 0 {
            &mv
        } else {
            sqp = RiskConstrained::new(&market.sigma, slots);
            &sqp
        };
        bar.set_message(format!("{}, deg {deg}", layer.name()));

        // Two-stage: the MLP fitted to the returns.
        let two_stage = Mlp::new(&mut rng)?;
        let mut opt = two_stage.adam(LR_MSE)?;
        let r = &train_data.r;
        train(
            &two_stage,
            &mut opt,
            &train_data,
            MSE_EPOCHS,
            MSE_BATCH,
            &mut rng,
            &bar,
            |mu, ids| (mu - rows(r, ids)?)?.sqr()?.mean_all(),
        )?;
        if deg == 4 {
            let err = check_gradient(layer, &two_stage, &test, slots - 1);
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

        // Decision-focused: from the two-stage weights, the realized regret through the layer.
        let dfl = two_stage.copy()?;
        let (epochs, lr) = if li == 0 {
            (MV_EPOCHS, LR_MV)
        } else {
            (SQP_EPOCHS, LR_SQP)
        };
        let mut opt = dfl.adam(lr)?;
        let skipped = train(
            &dfl,
            &mut opt,
            &train_data,
            epochs,
            BATCH,
            &mut rng,
            &bar,
            |mu, ids| {
                let x = layer.decide(mu, ids)?;
                layer.utility(&x, &rows(r, ids)?)?.neg()?.mean_all()
            },
        )?;

        // Test instances warm-start from the slots after the training ones.
        let hind: Vec<usize> = (n_train + N_TEST..n_train + 2 * N_TEST).collect();
        let best = outcomes(layer, &test.r, &test.r, &hind)?;
        let ts = evaluate(layer, &two_stage, &test, n_train, &best)?;
        let df = evaluate(layer, &dfl, &test, n_train, &best)?;
        rows_out.push(Row {
            layer: layer.name(),
            deg,
            failed: skipped + ts.failed + df.failed,
            two_stage: ts,
            dfl: df,
            secs: t0.elapsed().as_secs_f64(),
        });
    }
    bar.finish_and_clear();
    let rows = rows_out;

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
                format!("  ({} failed solves or skipped batches)", r.failed)
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
    Ok(())
}
