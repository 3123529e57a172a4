//! The folded backward of Fold's generated code against hand-written and unrolled
//! baselines on the fixed instances of `../shared/benchdata/`, which JAXopt, PyTorch
//! (fold-opt style) and NumPy were measured on (`peer_results.json`).
//!
//! ```sh
//! taskset -c 0 cargo run --release --example bench -- --json bench.json
//! python3 ../shared/tools/compare_peers.py bench.json ../shared/benchdata/peer_results.json
//! ```
//!
//! Methods: `fold_auto` (default options: the reduced backward here), `fold_direct`,
//! `fold_gmres`, `fold_lfpi` (full system), `handwritten` (closed-form Φ/Ψ written by hand,
//! default options, i.e. the same solvers without the generated structure),
//! `handwritten_gmres`, `expert` (a hand-written reduced Cholesky/KKT solve, what an expert
//! would write for each problem), and `unrolled` (forward from 0 for the manifest's
//! `unroll_K_to_1e-10` steps, then the reverse pass).
//!
//! A second table (and `fold_auto_vs_expert` in the JSON file) times `fold_auto` and
//! `expert` in alternating rounds and keeps the fastest round of each: their ratio holds
//! on a shared machine whose speed changes between rows of the first table.

use fold::benchdata::{self, Instance};
use fold_runtime::__private::{Cholesky, Lu};
use fold_runtime::prelude::*;
use std::time::{Duration, Instant};

/// p1: projected gradient on the box-QP  min ½xᵀQx + cᵀx, 0 ≤ x ≤ 1.
#[fold(state = x, params(c))]
fn p1_step(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
    proj_box(&(x - (q * x + c) * alpha), 0.0, 1.0)
}

/// p2: projected gradient on the nonconvex box-QP  min ½xᵀQx + pᵀ sin x, −1 ≤ x ≤ 1.
#[fold(state = x, params(p))]
fn p2_step(x: &DVector<f64>, p: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
    proj_box(&(x - (q * x + p.component_mul(&cos(x))) * alpha), -1.0, 1.0)
}

/// p3: projected gradient on the simplex  min ½xᵀΣx − μᵀx.
#[fold(state = x, params(mu))]
fn p3_step(x: &DVector<f64>, mu: &DVector<f64>, sigma: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
    proj_simplex(&(x - (sigma * x - mu) * alpha), 1.0)
}

/// `fold_auto` and `expert` timed in alternating rounds ([`paired`]).
struct Pair {
    problem: String,
    n: usize,
    fold_s: f64,
    expert_s: f64,
}

struct Row {
    problem: String,
    n: usize,
    method: &'static str,
    median_s: f64,
    rel_err: f64,
    iterations: String,
}

/// Median wall time of one call of `f` after warm-up: at least `min_reps` samples, more
/// while the budget lasts. A sample times enough back-to-back calls to span 50 µs, so
/// that calls of a microsecond are not measured against the timer's own cost and jitter.
fn time<T>(mut f: impl FnMut() -> T, budget: Duration, min_reps: usize) -> (f64, T) {
    let _ = f();
    let t = Instant::now();
    let mut out = f();
    let once = t.elapsed().as_secs_f64();
    let calls = ((50e-6 / once.max(1e-9)).ceil() as usize).clamp(1, 10_000);
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < min_reps || (start.elapsed() < budget && times.len() < 2000) {
        let t = Instant::now();
        for _ in 0..calls {
            out = f();
        }
        times.push(t.elapsed().as_secs_f64() / calls as f64);
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], out)
}

/// `f` and `g` timed in alternating rounds of back-to-back calls (each round ≥ 50 µs),
/// the fastest round of each: a ratio that holds on a machine whose speed changes
/// between rows, since both see the same moments.
fn paired<T, U>(
    mut f: impl FnMut() -> T,
    mut g: impl FnMut() -> U,
    budget: Duration,
) -> (f64, f64) {
    let calls = |h: &mut dyn FnMut()| {
        h();
        let t = Instant::now();
        h();
        ((50e-6 / t.elapsed().as_secs_f64().max(1e-9)).ceil() as usize).clamp(1, 10_000)
    };
    let (cf, cg) = (calls(&mut || drop(f())), calls(&mut || drop(g())));
    let (mut tf, mut tg) = (f64::INFINITY, f64::INFINITY);
    let start = Instant::now();
    let mut rounds = 0;
    while rounds < 5 || (start.elapsed() < budget && rounds < 2000) {
        let t = Instant::now();
        for _ in 0..cf {
            std::hint::black_box(f());
        }
        tf = tf.min(t.elapsed().as_secs_f64() / cf as f64);
        let t = Instant::now();
        for _ in 0..cg {
            std::hint::black_box(g());
        }
        tg = tg.min(t.elapsed().as_secs_f64() / cg as f64);
        rounds += 1;
    }
    (tf, tg)
}

fn rel_err(a: &DVector<f64>, b: &DVector<f64>) -> f64 {
    (a - b).norm() / b.norm().max(1e-300)
}

/// Closed-form Φ = J M, Ψ = J N with J = diag(m) or the simplex kernel, written by hand
/// (M = I − α(A − diag(shift))).
struct Handwritten<'a> {
    /// Ψ's diagonal-like factor: Ψ = P diag(psi) with P the projection Jacobian.
    psi: DVector<f64>,
    mask: DVector<f64>,
    simplex: bool,
    a: &'a DMatrix<f64>,
    alpha: f64,
    shift: DVector<f64>,
}

impl Handwritten<'_> {
    /// J y (J = diag(mask), or diag(s) − ssᵀ/|S| for the simplex).
    fn proj(&self, y: &DVector<f64>) -> DVector<f64> {
        let mut t = y.component_mul(&self.mask);
        if self.simplex {
            let k = self.mask.sum().max(1.0);
            let mean = t.sum() / k;
            t -= &self.mask * mean;
        }
        t
    }
}

impl Linearized for Handwritten<'_> {
    type Grads = DVector<f64>;
    fn state_dim(&self) -> usize {
        self.mask.len()
    }
    fn vjp_state(&self, v: &DVector<f64>) -> DVector<f64> {
        // Mᵀ J v with M = I − α(A − diag(shift)).
        let t = self.proj(v);
        let mut out = t.clone() + (t.component_mul(&self.shift)) * self.alpha;
        fold_runtime::__private::gemv_t(&mut out, -self.alpha, self.a, &t, 1.0);
        out
    }
    fn jvp_state(&self, u: &DVector<f64>) -> DVector<f64> {
        let mut mu = u.clone() + u.component_mul(&self.shift) * self.alpha;
        fold_runtime::__private::gemv(&mut mu, -self.alpha, self.a, u, 1.0);
        self.proj(&mu)
    }
    fn vjp_params(&self, v: &DVector<f64>) -> DVector<f64> {
        self.proj(v).component_mul(&self.psi)
    }
    fn jvp_params(&self, d: &DVector<f64>) -> DVector<f64> {
        self.proj(&d.component_mul(&self.psi))
    }
    fn state_jacobian(&self) -> Option<DMatrix<f64>> {
        let n = self.mask.len();
        let m =
            DMatrix::identity(n, n) - (self.a - DMatrix::from_diagonal(&self.shift)) * self.alpha;
        let mut phi = DMatrix::zeros(n, n);
        for j in 0..n {
            phi.set_column(j, &self.proj(&m.column(j).into_owned()));
        }
        Some(phi)
    }
}

/// The hand-written linearization of each problem at x*.
fn handwritten<'a>(
    inst: &Instance,
    x: &DVector<f64>,
    a: &'a DMatrix<f64>,
    theta: &DVector<f64>,
    alpha: f64,
) -> Handwritten<'a> {
    let n = x.len();
    let (z, shift, psi, mask, simplex) = match inst.problem.as_str() {
        "p1_boxqp" => {
            let z = x - (a * x + theta) * alpha;
            let mask = z.map(|e| if 0.0 < e && e < 1.0 { 1.0 } else { 0.0 });
            (
                z,
                DVector::zeros(n),
                DVector::from_element(n, -alpha),
                mask,
                false,
            )
        }
        "p2_ncvxqp" => {
            let z = x - (a * x + theta.component_mul(&x.map(f64::cos))) * alpha;
            let mask = z.map(|e| if -1.0 < e && e < 1.0 { 1.0 } else { 0.0 });
            let shift = theta.component_mul(&x.map(f64::sin));
            let psi = x.map(f64::cos) * -alpha;
            (z, shift, psi, mask, false)
        }
        _ => {
            let z = x - (a * x - theta) * alpha;
            let y = proj_simplex(&z, 1.0);
            let mask = y.map(|e| if e > 0.0 { 1.0 } else { 0.0 });
            (
                z,
                DVector::zeros(n),
                DVector::from_element(n, alpha),
                mask,
                true,
            )
        }
    };
    let _ = z;
    Handwritten {
        psi,
        mask,
        simplex,
        a,
        alpha,
        shift,
    }
}

/// What an expert writes by hand: the reduced system on the free set / support.
fn expert(
    inst: &Instance,
    x: &DVector<f64>,
    a: &DMatrix<f64>,
    theta: &DVector<f64>,
    alpha: f64,
    g: &DVector<f64>,
) -> Result<DVector<f64>, FoldError> {
    let n = x.len();
    let mut out = DVector::zeros(n);
    match inst.problem.as_str() {
        "p1_boxqp" | "p2_ncvxqp" => {
            let p2 = inst.problem == "p2_ncvxqp";
            let mut grad = DVector::zeros(n);
            fold_runtime::__private::gemv(&mut grad, 1.0, a, x, 0.0);
            let (lo, hi) = if p2 { (-1.0, 1.0) } else { (0.0, 1.0) };
            let free: Vec<usize> = (0..n)
                .filter(|&i| {
                    let gi = grad[i] + if p2 { theta[i] * x[i].cos() } else { theta[i] };
                    let z = x[i] - alpha * gi;
                    lo < z && z < hi
                })
                .collect();
            let mut h = DMatrix::from_fn(free.len(), free.len(), |i, j| a[(free[i], free[j])]);
            if p2 {
                for (k, &i) in free.iter().enumerate() {
                    h[(k, k)] -= theta[i] * x[i].sin();
                }
            }
            let gf = DVector::from_fn(free.len(), |k, _| g[free[k]]);
            let s = Cholesky::factor(&h)?.solve(&gf);
            for (k, &i) in free.iter().enumerate() {
                out[i] = if p2 { -x[i].cos() * s[k] } else { -s[k] };
            }
        }
        _ => {
            let mut grad = DVector::zeros(n);
            fold_runtime::__private::gemv(&mut grad, 1.0, a, x, 0.0);
            let z = x - (grad - theta) * alpha;
            let y = proj_simplex(&z, 1.0);
            let s: Vec<usize> = (0..n).filter(|&i| y[i] > 0.0).collect();
            let k = s.len();
            // Bordered KKT on the support: [Σ_SS 1; 1ᵀ 0] [dx; dν] = [dμ; 0].
            let mut kkt = DMatrix::zeros(k + 1, k + 1);
            for (i, &si) in s.iter().enumerate() {
                for (j, &sj) in s.iter().enumerate() {
                    kkt[(i, j)] = a[(si, sj)];
                }
                kkt[(i, k)] = 1.0;
                kkt[(k, i)] = 1.0;
            }
            let mut rhs = DVector::zeros(k + 1);
            for (i, &si) in s.iter().enumerate() {
                rhs[i] = g[si];
            }
            let sol = Lu::factor(&kkt)?.solve(&rhs);
            for (i, &si) in s.iter().enumerate() {
                out[si] = sol[i];
            }
        }
    }
    Ok(out)
}

fn run(inst: &Instance, rows: &mut Vec<Row>, pairs: &mut Vec<Pair>) -> Result<(), String> {
    let (matrix, param) = match inst.problem.as_str() {
        "p1_boxqp" => ("Q", "c"),
        "p2_ncvxqp" => ("Q", "p"),
        "p3_simplex" => ("Sigma", "mu"),
        other => return Err(format!("unknown problem {other}")),
    };
    let a = inst.matrix(matrix)?;
    let theta = inst.vector(param)?;
    let g = inst.vector("g")?;
    let x = inst.vector("x_star")?;
    let reference = inst.vector("ref_grad")?;
    let alpha = inst.scalar("alpha")?;
    let k_unroll = inst.scalar("unroll_K_to_1e-10")? as usize;
    let n = inst.n;
    let budget = Duration::from_millis(if n >= 1000 { 1500 } else { 400 });
    let err = |e: FoldError| e.to_string();

    let backward = |opts: &BackwardOptions| -> Result<(DVector<f64>, SolveStats), FoldError> {
        match inst.problem.as_str() {
            "p1_boxqp" => p1_step::backward_with_stats(&x, &theta, &a, alpha, &g, opts)
                .map(|(gr, s)| (gr.c, s)),
            "p2_ncvxqp" => p2_step::backward_with_stats(&x, &theta, &a, alpha, &g, opts)
                .map(|(gr, s)| (gr.p, s)),
            _ => p3_step::backward_with_stats(&x, &theta, &a, alpha, &g, opts)
                .map(|(gr, s)| (gr.mu, s)),
        }
    };
    let tight = |method| BackwardOptions {
        method,
        tol: 1e-10,
        max_iter: 5000,
    };
    let methods: [(&'static str, BackwardOptions); 4] = [
        ("fold_auto", BackwardOptions::default()),
        ("fold_direct", tight(Method::Direct)),
        ("fold_gmres", tight(Method::Gmres { restart: 50 })),
        ("fold_lfpi", tight(Method::Lfpi)),
    ];
    for (name, opts) in methods {
        let (t, out) = time(|| backward(&opts), budget, 5);
        let (grad, stats) = out.map_err(err)?;
        let iterations = if stats.iterations == 0 {
            format!("direct |S|={}", stats.system_dim)
        } else {
            format!("{} (|S|={})", stats.iterations, stats.system_dim)
        };
        rows.push(Row {
            problem: inst.problem.clone(),
            n,
            method: name,
            median_s: t,
            rel_err: rel_err(&grad, &reference),
            iterations,
        });
    }
    for (name, opts) in [
        ("handwritten", BackwardOptions::default()),
        ("handwritten_gmres", tight(Method::Gmres { restart: 50 })),
    ] {
        let (t, out) = time(
            || {
                let lin = handwritten(inst, &x, &a, &theta, alpha);
                folded_backward(&lin, &g, &opts)
            },
            budget,
            5,
        );
        let (grad, stats) = out.map_err(err)?;
        rows.push(Row {
            problem: inst.problem.clone(),
            n,
            method: name,
            median_s: t,
            rel_err: rel_err(&grad, &reference),
            iterations: stats.iterations.to_string(),
        });
    }
    let (t, out) = time(|| expert(inst, &x, &a, &theta, alpha, &g), budget, 5);
    let grad = out.map_err(err)?;
    rows.push(Row {
        problem: inst.problem.clone(),
        n,
        method: "expert",
        median_s: t,
        rel_err: rel_err(&grad, &reference),
        iterations: "direct".into(),
    });
    let auto = BackwardOptions::default();
    let (fold_s, expert_s) = paired(
        || backward(&auto),
        || expert(inst, &x, &a, &theta, alpha, &g),
        budget,
    );
    pairs.push(Pair {
        problem: inst.problem.clone(),
        n,
        fold_s,
        expert_s,
    });

    let unrolled = || -> Result<DVector<f64>, FoldError> {
        let x0 = DVector::zeros(n);
        match inst.problem.as_str() {
            "p1_boxqp" => {
                let xs =
                    fold_runtime::iterates(|x| Ok(p1_step(x, &theta, &a, alpha)), x0, k_unroll)?;
                unrolled_backward(&xs, |x| Ok(p1_step::linearize(x, &theta, &a, alpha)), &g)
                    .map(|gr| gr.c)
            }
            "p2_ncvxqp" => {
                let xs =
                    fold_runtime::iterates(|x| Ok(p2_step(x, &theta, &a, alpha)), x0, k_unroll)?;
                unrolled_backward(&xs, |x| Ok(p2_step::linearize(x, &theta, &a, alpha)), &g)
                    .map(|gr| gr.p)
            }
            _ => {
                let xs =
                    fold_runtime::iterates(|x| Ok(p3_step(x, &theta, &a, alpha)), x0, k_unroll)?;
                unrolled_backward(&xs, |x| Ok(p3_step::linearize(x, &theta, &a, alpha)), &g)
                    .map(|gr| gr.mu)
            }
        }
    };
    let (t, out) = time(unrolled, budget, 3);
    let grad = out.map_err(err)?;
    rows.push(Row {
        problem: inst.problem.clone(),
        n,
        method: "unrolled",
        median_s: t,
        rel_err: rel_err(&grad, &reference),
        iterations: k_unroll.to_string(),
    });
    Ok(())
}

/// The best accurate peer per instance (as `compare_peers.py` picks it).
fn peers(root: &std::path::Path) -> Vec<(String, usize, f64, String)> {
    let Ok(text) = std::fs::read_to_string(root.join("peer_results.json")) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    let mut best: Vec<(String, usize, f64, String)> = Vec::new();
    for r in v["results"].as_array().into_iter().flatten() {
        let (Some(p), Some(n), Some(t), Some(m)) = (
            r["problem"].as_str(),
            r["n"].as_u64(),
            r["median_s"].as_f64(),
            r["method"].as_str(),
        ) else {
            continue;
        };
        let accurate = r["rel_err"].as_f64().is_some_and(|e| e <= 1e-8);
        if !accurate || m.starts_with("torch_unrolled") {
            continue;
        }
        match best.iter_mut().find(|b| b.0 == p && b.1 == n as usize) {
            Some(b) if b.2 <= t => {}
            Some(b) => *b = (p.to_string(), n as usize, t, m.to_string()),
            None => best.push((p.to_string(), n as usize, t, m.to_string())),
        }
    }
    best
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json_path = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let root = benchdata::default_root();
    let instances = match benchdata::load_all(&root) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("cannot read the benchmark instances: {e}");
            std::process::exit(1);
        }
    };
    let bar = indicatif::ProgressBar::new(instances.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").expect("template"),
    );
    let mut rows = Vec::new();
    let mut pairs = Vec::new();
    for inst in &instances {
        bar.set_message(format!("{} n={}", inst.problem, inst.n));
        if let Err(e) = run(inst, &mut rows, &mut pairs) {
            eprintln!("{} n={}: {e}", inst.problem, inst.n);
            std::process::exit(1);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let best = peers(&root);
    println!(
        "{:<12}{:>6}  {:<18}{:>12}{:>10}  {:<16}{:>12}{:>8}",
        "problem", "n", "method", "median", "rel_err", "iterations", "best peer", "ratio"
    );
    for r in &rows {
        let peer = best.iter().find(|b| b.0 == r.problem && b.1 == r.n);
        let (pt, ratio) = match peer {
            Some(b) => (format!("{:.3e}", b.2), format!("{:.3}", r.median_s / b.2)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{:<12}{:>6}  {:<18}{:>12.3e}{:>10.1e}  {:<16}{:>12}{:>8}",
            r.problem, r.n, r.method, r.median_s, r.rel_err, r.iterations, pt, ratio
        );
    }
    println!("\nfold_auto against expert, alternating rounds (the fastest of each):");
    println!(
        "{:<12}{:>6}{:>14}{:>14}{:>8}",
        "problem", "n", "fold_auto", "expert", "ratio"
    );
    for p in &pairs {
        println!(
            "{:<12}{:>6}{:>14.3e}{:>14.3e}{:>8.2}",
            p.problem,
            p.n,
            p.fold_s,
            p.expert_s,
            p.fold_s / p.expert_s
        );
    }
    if let Some(path) = json_path {
        let results: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "problem": r.problem, "n": r.n, "method": r.method,
                    "median_s": r.median_s, "rel_err": r.rel_err, "iterations": r.iterations,
                })
            })
            .collect();
        let paired: Vec<serde_json::Value> = pairs
            .iter()
            .map(|p| {
                serde_json::json!({
                    "problem": p.problem, "n": p.n, "fold_auto_s": p.fold_s,
                    "expert_s": p.expert_s, "ratio": p.fold_s / p.expert_s,
                })
            })
            .collect();
        let doc = serde_json::json!({ "results": results, "fold_auto_vs_expert": paired });
        if let Err(e) = std::fs::write(
            &path,
            serde_json::to_string_pretty(&doc).unwrap_or_default(),
        ) {
            eprintln!("cannot write {path}: {e}");
            std::process::exit(1);
        }
        println!("wrote {path}");
    }
}
