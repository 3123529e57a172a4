//! The sparse backward benchmark: total-variation denoising duals from
//! `../shared/benchdata-sparse/` (1-D up to n = 10⁶, 2-D up to 512²), the folded backward
//! with `p*` given, against the reference gradient.
//!
//! ```sh
//! cargo run --release --example bench_sparse -- --json sparse.json
//! python3 ../shared/tools/compare_sparse.py sparse.json ../shared/benchdata-sparse/peer_results.json
//! ```
//!
//! Options: `--json FILE`, `--only NAME[,NAME…]` (instances), `--methods auto,gmres,bicgstab`,
//! `--reps K` (median of K after one warm-up call, default 7; the explicit full-system
//! methods run `max(1, K/3)` times, a call over a second once), `--max-full N` (explicit
//! methods only up to N states, default 3·10⁵).
//!
//! Timed, as for the peers: everything that depends on `p*` — the linearization (z, the
//! free set, the reduced matrix and its factorization), the solve and the gradient
//! `dL/dy = g + Ψᵀw` with the cotangent `−D g`. Not timed: loading the data.

use fold::sparsedata::{self, SparseInstance};
use fold_runtime::prelude::*;
use std::time::Instant;

/// The dual projected-gradient step of TV denoising (state `p`, parameter `y`).
#[fold(state = p, params(y))]
fn tv_dual(
    p: &DVector<f64>,
    y: &DVector<f64>,
    d: &CsrMatrix<f64>,
    alpha: f64,
    lam: f64,
) -> DVector<f64> {
    clamp(&(p - d * (d.transpose() * p - y) * alpha), -lam, lam)
}

/// `−A x` by CSR rows: the loss's own product, which nalgebra-sparse's generic
/// `&CsrMatrix * &DVector` does several times slower (rows of two entries, the
/// differences, without the inner loop).
fn neg_mul(a: &CsrMatrix<f64>, x: &DVector<f64>) -> DVector<f64> {
    let (off, idx, val) = (a.row_offsets(), a.col_indices(), a.values());
    let x = x.as_slice();
    DVector::from_iterator(
        a.nrows(),
        off.windows(2)
            .map(|w| match (&idx[w[0]..w[1]], &val[w[0]..w[1]]) {
                ([i, j], [u, v]) => -(u * x[*i] + v * x[*j]),
                (cols, vals) => -cols.iter().zip(vals).map(|(&j, &v)| v * x[j]).sum::<f64>(),
            }),
    )
}

/// `dL/dy` for `L = g·x*`, `x* = y − Dᵀp*`, by the folded backward.
fn gradient(
    inst: &SparseInstance,
    opts: &BackwardOptions,
) -> Result<(DVector<f64>, SolveStats), FoldError> {
    let cot = neg_mul(&inst.d, &inst.g);
    let (grads, stats) = tv_dual::backward_with_stats(
        &inst.p_star,
        &inst.y,
        &inst.d,
        inst.alpha,
        inst.lam,
        &cot,
        opts,
    )?;
    Ok((grads.y + &inst.g, stats))
}

/// The 1-D reduced backward written by hand for this problem (what `scipy_expert` does):
/// z and the free set, the block-tridiagonal `α (D Dᵀ)_FF` by its two diagonals, a
/// tridiagonal `LDLᵀ`, and `dL/dy = g + α Dᵀ w`. The same-run baseline of `fold_auto`.
fn expert_1d(inst: &SparseInstance) -> DVector<f64> {
    let (p, y, g, a, lam) = (&inst.p_star, &inst.y, &inst.g, inst.alpha, inst.lam);
    let (n, m) = (inst.n, inst.m);
    // x = y − Dᵀp, (Dᵀp)_j = p_{j−1} − p_j; z = p − α D(Dᵀp − y) = p + α D x.
    let x = DVector::from_fn(n, |j, _| {
        y[j] - (if j > 0 { p[j - 1] } else { 0.0 }) + (if j < m { p[j] } else { 0.0 })
    });
    let free: Vec<usize> = (0..m)
        .filter(|&e| (p[e] + a * (x[e + 1] - x[e])).abs() < lam)
        .collect();
    let k = free.len();
    // rhs = (−D g)_F; diagonal 2α, off-diagonal −α between consecutive edges.
    let mut xi: Vec<f64> = free.iter().map(|&e| -(g[e + 1] - g[e])).collect();
    let mut dpiv = vec![0.0; k];
    let mut l = vec![0.0; k];
    for i in 0..k {
        let off = if i > 0 && free[i] == free[i - 1] + 1 {
            -a
        } else {
            0.0
        };
        let li = if i > 0 { off / dpiv[i - 1] } else { 0.0 };
        l[i] = li;
        dpiv[i] = 2.0 * a - li * off;
    }
    for i in 1..k {
        xi[i] -= l[i] * xi[i - 1];
    }
    for i in 0..k {
        xi[i] /= dpiv[i];
    }
    for i in (0..k.saturating_sub(1)).rev() {
        xi[i] -= l[i + 1] * xi[i + 1];
    }
    let mut w = vec![0.0; m];
    for (i, &e) in free.iter().enumerate() {
        w[e] = xi[i];
    }
    DVector::from_fn(n, |j, _| {
        g[j] + a * ((if j > 0 { w[j - 1] } else { 0.0 }) - (if j < m { w[j] } else { 0.0 }))
    })
}

struct Row {
    instance: String,
    method: String,
    median_s: f64,
    rel_err: f64,
    iterations: usize,
    solver: String,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let json = flag("--json");
    let only: Option<Vec<String>> =
        flag("--only").map(|s| s.split(',').map(String::from).collect());
    let methods: Vec<String> = flag("--methods")
        .unwrap_or_else(|| "auto,gmres,bicgstab".into())
        .split(',')
        .map(String::from)
        .collect();
    let reps: usize = flag("--reps").map_or(Ok(7), |s| s.parse())?;
    let max_full: usize = flag("--max-full").map_or(Ok(300_000), |s| s.parse())?;

    let root = sparsedata::default_root();
    let list = match sparsedata::list(&root) {
        Ok(l) if !l.is_empty() => l,
        _ => {
            eprintln!(
                "no instances under {} (set FOLD_BENCHDATA_SPARSE)",
                root.display()
            );
            std::process::exit(2);
        }
    };
    println!(
        "{:20} {:14} {:>11} {:>9} {:>7} {:>10}",
        "instance", "method", "median", "rel_err", "iters", "solver"
    );
    let mut rows: Vec<Row> = Vec::new();
    for (_, _, dir) in list {
        let name = dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if only.as_ref().is_some_and(|o| !o.contains(&name)) {
            continue;
        }
        let inst = sparsedata::load(&dir)?;
        let refn = inst.ref_grad.norm();
        if inst.problem == "p4_tv1d" {
            let mut times = Vec::new();
            // One warm-up call first, as the peers were timed.
            let mut grad = expert_1d(&inst);
            for _ in 0..reps {
                let t = Instant::now();
                grad = expert_1d(&inst);
                times.push(t.elapsed().as_secs_f64());
            }
            let row = Row {
                instance: name.clone(),
                method: "rust_expert".into(),
                median_s: median(times),
                rel_err: (&grad - &inst.ref_grad).norm() / refn,
                iterations: 1,
                solver: "tridiagonal".into(),
            };
            println!(
                "{:20} {:14} {:>9.3} ms {:>9.1e} {:>7} {:>10}",
                row.instance,
                row.method,
                row.median_s * 1e3,
                row.rel_err,
                row.iterations,
                row.solver
            );
            rows.push(row);
        }
        for method in &methods {
            let (label, m, k) = match method.as_str() {
                "auto" => ("fold_auto", Method::Auto, reps),
                "gmres" => (
                    "fold_gmres",
                    Method::Gmres { restart: 30 },
                    (reps / 3).max(1),
                ),
                "bicgstab" => ("fold_bicgstab", Method::BiCgStab, (reps / 3).max(1)),
                other => return Err(format!("unknown method {other}").into()),
            };
            if !matches!(m, Method::Auto) && inst.m > max_full {
                continue;
            }
            let opts = BackwardOptions {
                method: m,
                tol: 1e-10,
                max_iter: 20_000,
            };
            // One warm-up call first, as the peers were timed; a call longer than a
            // second is timed once (that call).
            let t = Instant::now();
            let mut last = Some(gradient(&inst, &opts));
            let warm = t.elapsed().as_secs_f64();
            let (mut times, k) = if warm > 1.0 {
                (vec![warm], 0)
            } else {
                (vec![], k)
            };
            for _ in 0..k {
                let t = Instant::now();
                let out = gradient(&inst, &opts);
                times.push(t.elapsed().as_secs_f64());
                last = Some(out);
            }
            let row = match last {
                Some(Ok((grad, stats))) => Row {
                    instance: name.clone(),
                    method: label.into(),
                    median_s: median(times),
                    rel_err: (&grad - &inst.ref_grad).norm() / refn,
                    iterations: stats.iterations,
                    solver: format!("{:?}", stats.method),
                },
                Some(Err(e)) => {
                    println!("{name:20} {label:14} failed: {e}");
                    continue;
                }
                None => continue,
            };
            println!(
                "{:20} {:14} {:>9.3} ms {:>9.1e} {:>7} {:>10}",
                row.instance,
                row.method,
                row.median_s * 1e3,
                row.rel_err,
                row.iterations,
                row.solver
            );
            rows.push(row);
        }
    }
    if let Some(path) = json {
        let results: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "instance": r.instance,
                    "method": r.method,
                    "median_s": r.median_s,
                    "rel_err": r.rel_err,
                    "iterations": r.iterations,
                    "solver": r.solver,
                })
            })
            .collect();
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&serde_json::json!({ "results": results }))?,
        )?;
        println!("wrote {path}");
    }
    Ok(())
}
