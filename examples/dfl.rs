//! Decision-focused learning through a box-QP layer: the training benchmark of
//! `../shared/benchdata-train/dfl_boxqp` (its README specifies every step), with the MLP in
//! candle and the layer from `#[fold]`.
//!
//! ```sh
//! taskset -c 0 cargo run --release --example dfl -- --json dfl.json
//! python3 ../shared/tools/compare_dfl.py dfl.json ../shared/benchdata-train/dfl_boxqp/peer_results.json
//! ```
//!
//! `--rounds R` trains every configuration R times in alternating rounds (the same
//! trajectory each time, checked) and reports each epoch's fastest round, for a shared
//! host whose speed drifts. `--only a,b` runs some of the configurations; `--merge` adds
//! them to an existing JSON file (so the one-thread runs can be pinned to one core and the
//! two-thread run to two: `taskset -c 0 … -- --only fold_pgd,fold --json dfl.json`, then
//! `taskset -c 0,1 … -- --only fold_2threads --merge --json dfl.json`).
//!
//! Runs: `fold_pgd` (the data set's PGD forward exactly, one thread), `fold` (warm starts
//! and a Newton active-set step on the fixed-point residual, every x* verified against the
//! rule to ‖U(x) − x‖∞ ≤ 1e-12, one thread), `fold_2threads` (the same, each thread running
//! the whole training step on half of the batch, the halves' gradients added in order;
//! its forward and backward columns are the layer's time per thread).

use candle_core::{DType, Device, Tensor, Var};
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use fold_runtime::batch::Batcher;
use fold_runtime::integrations::candle::{BatchForward, FoldLayer};
use fold_runtime::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One projected-gradient step of the data set's decision layer (README §3).
#[fold(state = x, params(c))]
fn boxqp(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
    proj_box(&(x - (q * x + c) * alpha), 0.0, 1.0)
}

type R = boxqp::Rule;
type Res<T> = Result<T, Box<dyn std::error::Error>>;

const N: usize = 50;
const BATCH: usize = 32;
const EPOCHS: usize = 5;
/// How long the helper thread stays awake after a batch of the layer (2 threads).
const LINGER: std::time::Duration = std::time::Duration::from_millis(2);

struct Data {
    dir: PathBuf,
    arrays: HashMap<String, (Vec<usize>, Vec<f64>)>,
    alpha: f64,
    tol: f64,
    maxit: usize,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
}

impl Data {
    fn load(dir: &Path) -> Res<Data> {
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json"))?)?;
        let mut arrays = HashMap::new();
        for a in m["arrays"].as_array().ok_or("manifest: no arrays")? {
            let name = a["name"].as_str().ok_or("array name")?.to_string();
            let shape: Vec<usize> = a["shape"]
                .as_array()
                .ok_or("array shape")?
                .iter()
                .map(|v| v.as_u64().unwrap_or(0) as usize)
                .collect();
            let bytes = std::fs::read(dir.join(a["file"].as_str().ok_or("array file")?))?;
            let len: usize = shape.iter().product();
            if bytes.len() != 8 * len {
                return Err(format!("{name}: {} bytes for shape {shape:?}", bytes.len()).into());
            }
            let data = bytes
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                .collect();
            arrays.insert(name, (shape, data));
        }
        let s = &m["scalars"];
        let get = |k: &str| s[k].as_f64().ok_or(format!("manifest: no scalar {k}"));
        Ok(Data {
            dir: dir.to_path_buf(),
            arrays,
            alpha: get("alpha")?,
            tol: get("pgd_tol_inf")?,
            maxit: get("pgd_maxit")? as usize,
            lr: get("adam_lr")?,
            beta1: get("adam_beta1")?,
            beta2: get("adam_beta2")?,
            eps: get("adam_eps")?,
        })
    }

    fn get(&self, name: &str) -> Res<&(Vec<usize>, Vec<f64>)> {
        self.arrays
            .get(name)
            .ok_or_else(|| format!("{}: no array {name}", self.dir.display()).into())
    }

    fn tensor(&self, name: &str) -> Res<Tensor> {
        let (shape, data) = self.get(name)?;
        Ok(Tensor::from_vec(
            data.clone(),
            shape.as_slice(),
            &Device::Cpu,
        )?)
    }

    fn q(&self) -> Res<DMatrix<f64>> {
        let (_, d) = self.get("Q")?;
        Ok(DMatrix::from_row_slice(N, N, d))
    }
}

// --- forward solvers ------------------------------------------------------------------

/// README §3 exactly, for a batch: `x_k = clip(x_{k−1} − α (Q x_{k−1} + ĉ), 0, 1)` until
/// `max|x_k − x_{k−1}| ≤ tol`, each sample stopped by its own test (finished columns leave
/// the working set); one matrix–matrix product per iteration for the active samples.
fn pgd_batch(
    q: &DMatrix<f64>,
    alpha: f64,
    cs: &[&DVector<f64>],
    tol: f64,
    maxit: usize,
) -> (Vec<DVector<f64>>, Vec<usize>) {
    let b = cs.len();
    let mut x = DMatrix::<f64>::zeros(N, b);
    let mut g = DMatrix::<f64>::zeros(N, b);
    let mut owner: Vec<usize> = (0..b).collect();
    let mut out = vec![DVector::zeros(N); b];
    let mut iters = vec![maxit; b];
    let mut k = b;
    for it in 1..=maxit {
        if k == 0 {
            break;
        }
        // G[:, :k] = Q X[:, :k] (faer, sequential).
        matmul(
            MatMut::from_column_major_slice_mut(&mut g.as_mut_slice()[..N * k], N, k),
            Accum::Replace,
            MatRef::from_column_major_slice(q.as_slice(), N, N),
            MatRef::from_column_major_slice(&x.as_slice()[..N * k], N, k),
            1.0,
            Par::Seq,
        );
        let mut j = 0;
        while j < k {
            let c = cs[owner[j]].as_slice();
            let xs = &mut x.as_mut_slice()[j * N..(j + 1) * N];
            let gs = &g.as_slice()[j * N..(j + 1) * N];
            let mut next = [0.0f64; N];
            for (((xn, xi), gi), ci) in next.iter_mut().zip(xs.iter()).zip(gs).zip(c) {
                let grad = gi + ci;
                let y = xi - alpha * grad;
                // min(max(y, 0), 1), numpy's clip (clamp would differ only on NaN).
                #[allow(clippy::manual_clamp)]
                let v = y.max(0.0).min(1.0);
                *xn = v;
            }
            // max |x_k − x_{k−1}| in eight lanes (vectorizes).
            let mut lanes = [0.0f64; 8];
            for (cn, cx) in next.chunks(8).zip(xs.chunks(8)) {
                for ((l, a), b) in lanes.iter_mut().zip(cn).zip(cx) {
                    *l = l.max((a - b).abs());
                }
            }
            let step = lanes.iter().fold(0.0f64, |m, &v| m.max(v));
            xs.copy_from_slice(&next);
            if step <= tol {
                let s = owner[j];
                out[s] = x.column(j).into_owned();
                iters[s] = it;
                k -= 1;
                x.swap_columns(j, k);
                g.swap_columns(j, k);
                owner.swap(j, k);
            } else {
                j += 1;
            }
        }
    }
    for j in 0..k {
        out[owner[j]] = x.column(j).into_owned();
    }
    (out, iters)
}

/// Newton's method on the fixed-point residual `x − U(x)` from a warm start, accepted only
/// when the rule itself gives `max|U(x) − x| ≤ 1e-12`; plain PGD steps if it stalls.
///
/// For this rule a Newton step is an active-set solve read off `u = U(x)`: the free set
/// `F = {i : 0 < uᵢ < 1}` is the pre-image's, the active set `A` its complement with
/// `x_A = b_A` (1 where `uᵢ = 1`, else 0), and `Qx + ĉ + λ = 0` with `λ_F = 0`. Each
/// iteration costs one rule step and one Cholesky factorization of the smaller of two
/// systems: `Q_FF x_F = −(ĉ_F + Q_FA b_A)`, or, with `P = Q⁻¹` and `y = Pĉ`, the
/// multipliers' `P_AA λ_A = −(y_A + b_A)` and then `x_F = −(y_F + P_FA λ_A)`.
fn newton(
    p: &boxqp::Params,
    k: &boxqp::Consts,
    inv: &DMatrix<f64>,
    x0: &DVector<f64>,
) -> Result<DVector<f64>, FoldError> {
    const TOL: f64 = 1e-12;
    let (q, c) = (&k.q, &p.c);
    let y = inv * c;
    let mut x = x0.clone();
    let mut u = R::step(p, k, &x)?;
    let residual = |x: &DVector<f64>, u: &DVector<f64>| (u - x).amax();
    let mut res = residual(&x, &u);
    for _ in 0..30 {
        if res <= TOL {
            return Ok(x);
        }
        let (free, active): (Vec<usize>, Vec<usize>) =
            (0..N).partition(|&i| u[i] > 0.0 && u[i] < 1.0);
        let mut next = DVector::from_fn(N, |i, _| if u[i] >= 1.0 { 1.0 } else { 0.0 });
        let sub = |m: &DMatrix<f64>, rows: &[usize], cols: &[usize]| {
            DMatrix::from_fn(rows.len(), cols.len(), |a, b| m[(rows[a], cols[b])])
        };
        if active.is_empty() || free.len() <= active.len() {
            if !free.is_empty() {
                let rhs = DVector::from_fn(free.len(), |a, _| {
                    let i = free[a];
                    -(c[i] + active.iter().map(|&j| q[(i, j)] * next[j]).sum::<f64>())
                });
                let qff = sub(q, &free, &free);
                let xf = qff.cholesky().ok_or(FoldError::Singular)?.solve(&rhs);
                for (a, &i) in free.iter().enumerate() {
                    next[i] = xf[a];
                }
            }
        } else {
            let rhs = DVector::from_fn(active.len(), |a, _| -(y[active[a]] + next[active[a]]));
            let paa = sub(inv, &active, &active);
            let lambda = paa.cholesky().ok_or(FoldError::Singular)?.solve(&rhs);
            let xf = -(sub(inv, &free, &active) * lambda);
            for (a, &i) in free.iter().enumerate() {
                next[i] = xf[a] - y[i];
            }
        }
        x = next;
        u = R::step(p, k, &x)?;
        res = residual(&x, &u);
    }
    let mut steps = 0;
    while res > TOL && steps < 200_000 {
        x = u;
        u = R::step(p, k, &x)?;
        res = residual(&x, &u);
        steps += 1;
    }
    if res > TOL {
        return Err(FoldError::NotConverged {
            iterations: steps,
            residual: res,
            tol: TOL,
        });
    }
    Ok(x)
}

// --- the model ---------------------------------------------------------------------------

struct Mlp {
    vars: Vec<Var>, // W1 (64×5), b1, W2 (50×64), b2
    m: Vec<Vec<f64>>,
    v: Vec<Vec<f64>>,
    t: i32,
}

impl Mlp {
    fn new(d: &Data) -> Res<Mlp> {
        let vars = ["W1", "b1", "W2", "b2"]
            .iter()
            .map(|n| Ok(Var::from_tensor(&d.tensor(n)?)?))
            .collect::<Res<Vec<Var>>>()?;
        let zeros: Vec<Vec<f64>> = vars.iter().map(|v| vec![0.0; v.elem_count()]).collect();
        Ok(Mlp {
            vars,
            m: zeros.clone(),
            v: zeros,
            t: 0,
        })
    }

    /// `Ĉ = max(Z W1ᵀ + b1, 0) W2ᵀ + b2`, with the ReLU's derivative 0 at 0.
    fn forward(&self, z: &Tensor) -> candle_core::Result<Tensor> {
        let [w1, b1, w2, b2] = [0, 1, 2, 3].map(|i| self.vars[i].as_tensor());
        let a = z.matmul(&w1.t()?)?.broadcast_add(b1)?;
        let mask = a.gt(0.0)?.to_dtype(DType::F64)?;
        let h = (&a * &mask)?;
        h.matmul(&w2.t()?)?.broadcast_add(b2)
    }

    /// One Adam step with torch semantics (README §6).
    fn adam(&mut self, grads: &[Vec<f64>], d: &Data) -> Res<()> {
        self.t += 1;
        let bc1 = 1.0 - d.beta1.powi(self.t);
        let bc2 = 1.0 - d.beta2.powi(self.t);
        let step = d.lr / bc1;
        for (i, var) in self.vars.iter().enumerate() {
            let mut th = var.as_tensor().flatten_all()?.to_vec1::<f64>()?;
            if th.len() != grads[i].len() {
                return Err("a gradient's length is not its parameter's".into());
            }
            // Zipped slices, so the loop vectorizes (no bounds checks).
            let (b1, b2, sqrt_bc2) = (d.beta1, d.beta2, bc2.sqrt());
            let (m, v) = (&mut self.m[i], &mut self.v[i]);
            for (((th, m), v), &g) in th
                .iter_mut()
                .zip(m.iter_mut())
                .zip(v.iter_mut())
                .zip(&grads[i])
            {
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                let denom = v.sqrt() / sqrt_bc2 + d.eps;
                *th -= step * (*m / denom);
            }
            var.set(&Tensor::from_vec(th, var.shape(), &Device::Cpu)?)?;
        }
        Ok(())
    }

    fn flat(&self) -> Res<Vec<f64>> {
        let mut out = Vec::new();
        for v in &self.vars {
            out.extend(v.as_tensor().flatten_all()?.to_vec1::<f64>()?);
        }
        Ok(out)
    }
}

fn rows(t: &Tensor) -> Res<Vec<DVector<f64>>> {
    Ok(t.to_vec2::<f64>()?
        .into_iter()
        .map(DVector::from_vec)
        .collect())
}

/// Max |a − b| / max(1, max|b|).
fn rel(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(1e-300f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
        / scale
}

fn f_val(q: &DMatrix<f64>, x: &DVector<f64>, c: &DVector<f64>) -> f64 {
    0.5 * x.dot(&(q * x)) + c.dot(x)
}

fn test_regret(d: &Data, mlp: &Mlp, q: &DMatrix<f64>) -> Res<f64> {
    let chat = rows(&mlp.forward(&d.tensor("z_test")?)?)?;
    let refs: Vec<&DVector<f64>> = chat.iter().collect();
    let (xs, _) = pgd_batch(q, d.alpha, &refs, d.tol, d.maxit);
    let (_, ct) = d.get("c_test")?;
    let (_, fopt) = d.get("f_opt_test")?;
    let mut num = 0.0;
    for (j, x) in xs.iter().enumerate() {
        let c = DVector::from_column_slice(&ct[j * N..(j + 1) * N]);
        num += f_val(q, x, &c) - fopt[j];
    }
    Ok(num / fopt.iter().map(|v| v.abs()).sum::<f64>())
}

#[derive(Clone, Copy, PartialEq)]
enum Config {
    Pgd,
    Newton { threads: usize },
}

struct Run {
    epochs: Vec<[f64; 4]>,
    regret: Vec<f64>,
    threads: usize,
    checks: Vec<(String, f64)>,
}

fn train(d: &Data, config: Config, bar: &ProgressBar) -> Res<Run> {
    let q = d.q()?;
    let consts = boxqp::Consts {
        q: q.clone(),
        alpha: d.alpha,
    };
    let threads = match config {
        Config::Pgd => 1,
        Config::Newton { threads } => threads,
    };
    let last_iters: Arc<Mutex<Vec<usize>>> = Arc::default();
    // With two threads each runs the whole training step (network, layer, loss, backward)
    // on its share of the batch; the shares' gradients are added in order before Adam. The
    // helper is kept awake between steps (the rest of a step takes about 0.1 ms).
    let shards = Batcher::with_threads(threads)?.with_linger(LINGER);
    let solver: Arc<BatchForward<R>> = match config {
        Config::Pgd => {
            let (tol, maxit, it) = (d.tol, d.maxit, last_iters.clone());
            Arc::new(
                move |ps: &[boxqp::Params], k: &boxqp::Consts, _starts: &[DVector<f64>]| {
                    let cs: Vec<&DVector<f64>> = ps.iter().map(|p| &p.c).collect();
                    let (xs, iters) = pgd_batch(&k.q, k.alpha, &cs, tol, maxit);
                    if let Ok(mut l) = it.lock() {
                        *l = iters;
                    }
                    xs.into_iter().map(Ok).collect()
                },
            )
        }
        Config::Newton { .. } => {
            // Q⁻¹ once (Q is constant, cond 39.5).
            let inv = q
                .clone()
                .cholesky()
                .ok_or("Q is not positive definite")?
                .inverse();
            Arc::new(
                move |ps: &[boxqp::Params], k: &boxqp::Consts, starts: &[DVector<f64>]| {
                    ps.iter()
                        .zip(starts)
                        .map(|(p, x0)| newton(p, k, &inv, x0))
                        .collect()
                },
            )
        }
    };
    // Each thread's share runs sequentially inside the layer.
    let layer = FoldLayer::<R>::new(consts, DVector::zeros(N))
        .with_solver(solver)
        .with_batcher(Batcher::with_threads(1)?);
    let mut mlp = Mlp::new(d)?;
    let q_half = half_q(&q)?;
    let (zshape, ztrain) = d.get("z_train")?;
    let (_, ctrain) = d.get("c_train")?;
    let (_, perm) = d.get("perm")?;
    let p_in = zshape[1];
    let ntrain = zshape[0];
    let mut warm: Vec<DVector<f64>> = vec![DVector::zeros(N); ntrain];
    let mut run = Run {
        epochs: vec![],
        regret: vec![test_regret(d, &mlp, &q)?],
        threads,
        checks: vec![],
    };
    batch0_checks(d, &mlp, &layer, config, &last_iters, &mut run.checks)?;
    let mut losses = Vec::new();
    for e in 0..EPOCHS {
        layer.reset_stats();
        let start = Instant::now();
        for b in 0..ntrain / BATCH {
            let idx: Vec<usize> = perm[e * ntrain + b * BATCH..e * ntrain + (b + 1) * BATCH]
                .iter()
                .map(|&v| v as usize)
                .collect();
            let share = BATCH.div_ceil(threads);
            let parts = shards.map(threads, |h| {
                let ids = &idx[(h * share).min(BATCH)..((h + 1) * share).min(BATCH)];
                let starts = matches!(config, Config::Newton { .. })
                    .then(|| ids.iter().map(|&i| warm[i].clone()).collect());
                part_step(&mlp, &layer, &q_half, ids, ztrain, ctrain, p_in, starts)
            });
            let parts = parts.into_iter().collect::<candle_core::Result<Vec<_>>>()?;
            let mut loss = 0.0;
            let mut grads = vec![Vec::new(); mlp.vars.len()];
            for part in &parts {
                loss += part.loss;
                for (sum, g) in grads.iter_mut().zip(&part.grads) {
                    if sum.is_empty() {
                        sum.clone_from(g);
                    } else {
                        sum.iter_mut().zip(g).for_each(|(s, v)| *s += v);
                    }
                }
            }
            mlp.adam(&grads, d)?;
            losses.push(loss);
            if matches!(config, Config::Newton { .. }) {
                let xs = parts.iter().flat_map(|p| p.x.iter());
                for (r, &i) in xs.zip(&idx) {
                    warm[i] = r.clone();
                }
            }
            if e == 0 && b == 0 {
                run.checks.push((
                    "ref_b0_params_after".into(),
                    rel(&mlp.flat()?, &d.get("ref_b0_params_after")?.1),
                ));
            }
        }
        let wall = start.elapsed().as_secs_f64();
        // The layer's time summed over the threads, per thread.
        let st = layer.stats();
        let per_thread = |t: std::time::Duration| t.as_secs_f64() / threads as f64;
        let (fw, bw) = (per_thread(st.forward), per_thread(st.backward));
        run.epochs.push([wall, fw, bw, wall - fw - bw]);
        let p_ref = &d.get("ref_params_after_epoch")?.1;
        let np = p_ref.len() / EPOCHS;
        run.checks.push((
            format!("params after epoch {}", e + 1),
            rel(&mlp.flat()?, &p_ref[e * np..(e + 1) * np]),
        ));
        run.regret.push(test_regret(d, &mlp, &q)?);
        bar.inc(1);
    }
    run.checks.push((
        "ref_train_loss".into(),
        rel(&losses, &d.get("ref_train_loss")?.1),
    ));
    let rr = &d.get("ref_test_regret")?.1;
    run.checks.push((
        "ref_test_regret (final, relative)".into(),
        (run.regret[EPOCHS] - rr[EPOCHS]).abs() / rr[EPOCHS].abs(),
    ));
    Ok(run)
}

/// Rows `ids` of the row-major `data` (rows of `width`), as a `len(ids) × width` tensor.
fn gather_rows(data: &[f64], ids: &[usize], width: usize) -> candle_core::Result<Tensor> {
    let rows: Vec<f64> = ids
        .iter()
        .flat_map(|&i| data[i * width..(i + 1) * width].iter().copied())
        .collect();
    Tensor::from_vec(rows, (ids.len(), width), &Device::Cpu)
}

/// `Q/2` as a tensor (exact: a power-of-two scaling; `Q` is symmetric, so rows or columns).
fn half_q(q: &DMatrix<f64>) -> candle_core::Result<Tensor> {
    Tensor::from_vec((q * 0.5).as_slice().to_vec(), (N, N), &Device::Cpu)
}

/// The batch loss `L = (1/32) Σ_j f_j`, `f_j = ½ x_jᵀ Q x_j + c_jᵀ x_j` over the rows of
/// `x` (README §4), as `Σ (X Q/2 + C) ⊙ X / 32`: the fewest candle ops, since every op
/// costs a few microseconds at this size, forward and backward.
fn batch_loss(x: &Tensor, c: &Tensor, q_half: &Tensor) -> candle_core::Result<Tensor> {
    ((x.matmul(q_half)? + c)? * x)?.sum_all()? / BATCH as f64
}

/// What one thread's share of a training step returns.
struct Part {
    /// Its share of the batch loss, `Σ f_j / BATCH` over its samples.
    loss: f64,
    /// The share's gradients of W1, b1, W2, b2, flattened.
    grads: Vec<Vec<f64>>,
    /// x* of its samples, in order.
    x: Vec<DVector<f64>>,
}

/// The training step's forward and backward on the samples `ids` (README §7): gather,
/// network, layer (from `starts` if given), loss and `loss.backward()`.
#[allow(clippy::too_many_arguments)]
fn part_step(
    mlp: &Mlp,
    layer: &FoldLayer<R>,
    q_half: &Tensor,
    ids: &[usize],
    ztrain: &[f64],
    ctrain: &[f64],
    p_in: usize,
    starts: Option<Vec<DVector<f64>>>,
) -> candle_core::Result<Part> {
    let c = gather_rows(ctrain, ids, N)?;
    let chat = mlp.forward(&gather_rows(ztrain, ids, p_in)?)?;
    let x = match starts {
        None => layer.forward(&[&chat])?,
        Some(starts) => layer.forward_from(&[&chat], starts)?,
    };
    let loss = batch_loss(&x, &c, q_half)?;
    let store = loss.backward()?;
    let grads = mlp
        .vars
        .iter()
        .map(|v| {
            store
                .get(v.as_tensor())
                .ok_or_else(|| candle_core::Error::msg("no gradient"))?
                .flatten_all()?
                .to_vec1::<f64>()
        })
        .collect::<candle_core::Result<_>>()?;
    let x = x
        .to_vec2::<f64>()?
        .into_iter()
        .map(DVector::from_vec)
        .collect();
    Ok(Part {
        loss: loss.to_scalar::<f64>()?,
        grads,
        x,
    })
}

/// README §8, epoch 0 batch 0 at the initial weights: Ĉ, x*, the PGD step counts and the
/// layer's VJP ∂L/∂Ĉ (taken at Ĉ as a leaf, so candle keeps its gradient).
fn batch0_checks(
    d: &Data,
    mlp: &Mlp,
    layer: &FoldLayer<R>,
    config: Config,
    iters: &Mutex<Vec<usize>>,
    out: &mut Vec<(String, f64)>,
) -> Res<()> {
    let (zshape, ztrain) = d.get("z_train")?;
    let (_, ctrain) = d.get("c_train")?;
    let (_, perm) = d.get("perm")?;
    let p_in = zshape[1];
    let idx: Vec<usize> = perm[..BATCH].iter().map(|&v| v as usize).collect();
    let chat = mlp.forward(&gather_rows(ztrain, &idx, p_in)?)?;
    let leaf = Var::from_tensor(&chat.detach())?;
    let x = layer.forward_from(&[leaf.as_tensor()], vec![DVector::zeros(N); BATCH])?;
    let q_half = half_q(&d.q()?)?;
    let c = gather_rows(ctrain, &idx, N)?;
    let grads = batch_loss(&x, &c, &q_half)?.backward()?;
    let flat = |t: &Tensor| -> Res<Vec<f64>> { Ok(t.flatten_all()?.to_vec1::<f64>()?) };
    let g = flat(grads.get(leaf.as_tensor()).ok_or("no dL/dĈ")?)?;
    let chk = |name: &str, v: &[f64]| -> Res<(String, f64)> {
        Ok((name.to_string(), rel(v, &d.get(name)?.1)))
    };
    out.push(chk("ref_b0_chat", &flat(&chat)?)?);
    out.push(chk("ref_b0_x_star", &flat(&x)?)?);
    out.push(chk("ref_b0_g_chat", &g)?);
    let r = &d.get("ref_b0_g_chat")?.1;
    let same = g.iter().zip(r).all(|(a, b)| (*a == 0.0) == (*b == 0.0));
    out.push((
        "ref_b0_g_chat: exact zeros in the same places (1 = yes)".into(),
        f64::from(u8::from(same)),
    ));
    if config == Config::Pgd {
        let it: Vec<f64> = iters
            .lock()
            .map_err(|_| "lock")?
            .iter()
            .map(|&v| v as f64)
            .collect();
        out.push(chk("ref_b0_iters", &it)?);
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Res<()> {
    // candle sizes its CPU kernels' thread count from RAYON_NUM_THREADS, else re-reads the
    // core count (/proc/cpuinfo) at every matmul. The network is tiny and the benchmark
    // single-core: run candle's kernels on one thread (the Fold layer uses its own pools).
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    let args: Vec<String> = std::env::args().collect();
    let json = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let dir = match std::env::var_os("FOLD_BENCHDATA_TRAIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/benchdata-train/dfl_boxqp"),
    };
    if !dir.join("manifest.json").exists() {
        println!(
            "dfl: no training data at {} (set FOLD_BENCHDATA_TRAIN); nothing to run",
            dir.display()
        );
        return Ok(());
    }
    let d = Data::load(&dir)?;
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let merge = args.iter().any(|a| a == "--merge");
    let configs: Vec<(&str, Config)> = [
        ("fold_pgd", Config::Pgd),
        ("fold", Config::Newton { threads: 1 }),
        ("fold_2threads", Config::Newton { threads: 2 }),
    ]
    .into_iter()
    .filter(|(name, _)| {
        only.as_ref()
            .is_none_or(|o| o.split(',').any(|n| n == *name))
    })
    .collect();
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .map_or(Ok(1), |r| r.parse())?;
    if rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    let bar = ProgressBar::new((configs.len() * EPOCHS * rounds) as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:30} {pos}/{len} epochs {msg}",
    )?);
    let mut results = serde_json::Map::new();
    if let (true, Some(path)) = (merge, &json) {
        if let Ok(text) = std::fs::read_to_string(path) {
            let old: serde_json::Value = serde_json::from_str(&text)?;
            if let Some(m) = old["results"].as_object() {
                results = m.clone();
            }
        }
    }
    // Rounds alternate the configurations; each epoch's time is its fastest round.
    let mut runs: Vec<(&str, Run)> = Vec::new();
    for round in 0..rounds {
        for (i, &(name, config)) in configs.iter().enumerate() {
            bar.set_message(name);
            let run = train(&d, config, &bar)?;
            if round == 0 {
                runs.push((name, run));
                continue;
            }
            let best = &mut runs[i].1;
            if run.regret != best.regret {
                return Err(format!("{name}: round {round} left the trajectory of round 0").into());
            }
            for (b, e) in best.epochs.iter_mut().zip(run.epochs) {
                if e[0] < b[0] {
                    *b = e;
                }
            }
        }
    }
    for (name, run) in &runs {
        let epochs: Vec<serde_json::Value> = run
            .epochs
            .iter()
            .map(|e| serde_json::json!({"wall_s": e[0], "forward_s": e[1], "backward_s": e[2], "rest_s": e[3]}))
            .collect();
        results.insert(
            name.to_string(),
            serde_json::json!({"epochs": epochs, "test_regret": run.regret, "threads": run.threads}),
        );
    }
    bar.finish_and_clear();
    println!(
        "{:16} {:>7} {:>9} {:>9} {:>9} {:>9} {:>14}",
        "run", "threads", "epoch s", "fwd s", "bwd s", "rest s", "final regret"
    );
    for (name, run) in &runs {
        let col = |k: usize| median(run.epochs.iter().map(|e| e[k]).collect());
        println!(
            "{:16} {:>7} {:9.4} {:9.4} {:9.5} {:9.4} {:14.10}",
            name,
            run.threads,
            col(0),
            col(1),
            col(2),
            col(3),
            run.regret[EPOCHS]
        );
    }
    println!("\nagainst the reference trajectory (numpy_expert), max relative difference:");
    for (name, run) in &runs {
        for (what, v) in &run.checks {
            println!("  {name:14} {what:48} {v:.2e}");
        }
    }
    if let Some(path) = json {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&serde_json::json!({"results": results}))?,
        )?;
        println!("wrote {path}");
    }
    Ok(())
}
