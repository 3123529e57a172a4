//! Learning the weight of 1-D total-variation denoising end to end, through a folded
//! dual proximal-gradient step with a sparse difference operator.
//!
//! ```sh
//! cargo run --release --example denoising
//! ```
//!
//! Denoising `x*(λ) = argmin ½‖x − b‖² + λ‖Dx‖₁` (D the (n−1)×n first differences) has
//! the dual `min ½‖Dᵀy − b‖²  s.t. ‖y‖∞ ≤ λ`, solved by projected gradient
//!
//! ```text
//! y ← clamp(y + α D(b − Dᵀy), −λ, λ),     x = b − Dᵀy,     α = 1/4 ≤ 1/‖DDᵀ‖.
//! ```
//!
//! That step is the `#[fold]` rule, with `D` a `CsrMatrix` (products stay O(n); a dense D
//! at n = 10⁵ would take 80 GB). We learn λ by gradient descent on the mean squared error
//! `L(λ) = Σ_s ‖x_s*(λ) − x_true,s‖² / (S n)` over a few noisy piecewise-constant signals.
//!
//! * Forward: any solver may produce the fixed point. We use Condat's exact direct
//!   algorithm (O(n), no iterations) for `x*` and recover the dual `y*` from `x*` by a
//!   cumulative sum; the printed residual `‖U(y*) − y*‖∞` shows it is the rule's fixed point.
//! * Backward (folded): `dL/dλ` from the generated `backward` at `y*`, with cotangent
//!   `∂L/∂y = −D ∂L/∂x` (chain rule through `x = b − Dᵀy`). The rule ends in a clamp whose
//!   bounds are λ, so the runtime assembles the reduced system `α (D Dᵀ)_FF` on the free
//!   set sparse (block tridiagonal), factors it, and adds the clamp's own λ-terms.
//! * Baseline (unrolled): K projected-gradient steps from y = 0 and backpropagation
//!   through all of them (`unrolled_backward`), which must store K iterates.
//!
//! Gradients are checked against central finite differences of the exact solve.

use fold_runtime::nalgebra_sparse::CooMatrix;
use fold_runtime::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

/// One step of projected gradient on the TV dual (state `y`, parameter `λ`).
#[fold(state = y, params(lambda))]
fn tv_dual_step(
    y: &DVector<f64>,
    lambda: f64,
    b: &DVector<f64>,
    d: &CsrMatrix<f64>,
    alpha: f64,
) -> DVector<f64> {
    let x = b - d.transpose() * y;
    clamp(&(y + d * x * alpha), -lambda, lambda)
}

/// Step size of the dual projected gradient: ‖DDᵀ‖ < 4.
const ALPHA: f64 = 0.25;
/// Noise level of the observations.
const SIGMA: f64 = 0.3;

/// A denoising data set: clean signals and their noisy observations, one difference
/// operator shared by all (same length).
struct Data {
    n: usize,
    clean: Vec<DVector<f64>>,
    noisy: Vec<DVector<f64>>,
    d: CsrMatrix<f64>,
}

fn main() -> Result<(), FoldError> {
    let t0 = Instant::now();
    println!(
        "1-D total-variation denoising: learn λ through the folded dual projected-gradient step"
    );
    println!("rule: y ← clamp(y + α D(b − Dᵀy), −λ, λ), x = b − Dᵀy, D sparse (n−1)×n differences");
    println!("what #[fold] derived (tv_dual_step::DERIVATIVES):");
    for line in tv_dual_step::DERIVATIVES.lines() {
        println!("    {line}");
    }
    println!();

    let mut rng = StdRng::seed_from_u64(6);
    // n = 10³: 8 training and 8 held-out signals; unrolling up to 10⁴ steps.
    let train = make_data(&mut rng, 1000, 8);
    let test = make_data(&mut rng, 1000, 8);
    experiment(&train, Some(&test), &[100, 1000, 10_000], 15)?;

    // n = 10⁵: one long recording; unrolling up to 10³ steps (800 MB of iterates).
    let long = make_data(&mut rng, 100_000, 1);
    experiment(&long, None, &[100, 1000], 8)?;

    // n = 10⁶: the sparse reduced solve at scale; unrolling 100 steps holds 800 MB.
    let huge = make_data(&mut rng, 1_000_000, 1);
    experiment(&huge, None, &[100], 5)?;

    println!("total {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}

/// Gradient check and timing (folded vs unrolled), then training, on one data set.
fn experiment(
    data: &Data,
    test: Option<&Data>,
    depths: &[usize],
    steps: usize,
) -> Result<(), FoldError> {
    let n = data.n;
    println!(
        "=== n = {n}: {} training signal(s){} ===",
        data.clean.len(),
        test.map_or(String::new(), |t| format!(", {} held out", t.clean.len()))
    );

    // --- Gradient at a fixed λ: finite differences, folded, unrolled.
    let lambda = 0.6;
    let exact = solve_all(data, lambda)?;
    println!(
        "forward at λ = {lambda}: Condat's exact algorithm, {:.2} ms per signal; \
         ‖U(y*) − y*‖∞ = {:.1e}",
        exact.seconds * 1e3 / data.clean.len() as f64,
        exact.residual
    );
    // Central differences of the exact solve; a second step size estimates their own error.
    let central = |h: f64| -> Result<f64, FoldError> {
        Ok((solve_all(data, lambda + h)?.loss - solve_all(data, lambda - h)?.loss) / (2.0 * h))
    };
    let h = 1e-6 * lambda;
    let fd = central(h)?;
    let fd_spread = rel(central(h / 4.0)?, fd);

    println!(
        "dL/dλ at λ = {lambda} (time per training step = forward + backward over all signals):"
    );
    println!(
        "  {:<56} {:>13} {:>11} {:>11}",
        "method", "dL/dλ", "rel. error", "time/step"
    );
    println!(
        "  {:<56} {:>13.6e} {:>11} {:>11}",
        format!("finite differences, exact solves (h/4 differs by {fd_spread:.0e})"),
        fd,
        "—",
        "—"
    );
    let auto = BackwardOptions {
        max_iter: 50_000,
        ..BackwardOptions::default()
    };
    let bicgstab = BackwardOptions {
        method: Method::BiCgStab,
        ..auto.clone()
    };
    for (name, opts) in [("Auto", &auto), ("BiCGSTAB", &bicgstab)] {
        let t = Instant::now();
        let sol = solve_all(data, lambda)?;
        let forward = t.elapsed().as_secs_f64();
        let (grad, stats) = folded_gradient(data, &sol, lambda, opts)?;
        let secs = t.elapsed().as_secs_f64();
        let ratio = (secs - forward) / forward;
        let how = match stats.method {
            Method::Gmres { .. } if stats.system_dim < n - 1 => {
                format!("GMRES on |F| = {}", stats.system_dim)
            }
            m => format!("{m:?} on {}", stats.system_dim),
        };
        println!(
            "  {:<56} {:>13.6e} {:>11.1e} {:>10.3}s",
            format!("folded, {name}: {how}, backward {ratio:.1}× forward"),
            grad,
            rel(grad, fd),
            secs
        );
    }
    for &k in depths {
        let bar = bar(data.clean.len() as u64, &format!("unrolling K = {k}"));
        let t = Instant::now();
        let grad = unrolled_gradient(data, lambda, k, &bar)?;
        let secs = t.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let mb = (k + 1) as f64 * (n - 1) as f64 * 8.0 / 1e6;
        println!(
            "  {:<56} {:>13.6e} {:>11.1e} {:>10.3}s",
            format!("unrolled, K = {k} steps ({mb:.0} MB of iterates)"),
            grad,
            rel(grad, fd),
            secs
        );
    }

    // --- Training: gradient descent on θ = ln λ with the folded gradient (bold driver:
    // the step grows 20% after a decrease of the loss, halves and is undone otherwise).
    let mut lambda = 0.05;
    let mut sol = solve_all(data, lambda)?;
    let (g0, _) = folded_gradient(data, &sol, lambda, &auto)?;
    let mut lr = 0.5 / (lambda * g0).abs().max(1e-300);
    println!("training (folded gradient, GD on ln λ from λ = {lambda}):");
    let bar = bar(steps as u64, "training");
    let t = Instant::now();
    let mut history = vec![(lambda, sol.loss)];
    for _ in 0..steps {
        let (g, _) = folded_gradient(data, &sol, lambda, &auto)?;
        let candidate = lambda * (-lr * lambda * g).exp();
        let next = solve_all(data, candidate)?;
        if next.loss < sol.loss {
            lambda = candidate;
            sol = next;
            lr *= 1.2;
        } else {
            lr *= 0.5;
        }
        history.push((lambda, sol.loss));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let secs = t.elapsed().as_secs_f64();
    let shown: Vec<String> = history
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < 4 || i % 5 == 0 || *i == history.len() - 1)
        .map(|(i, (l, loss))| format!("step {i}: λ = {l:.4}, loss {loss:.4e}"))
        .collect();
    for line in shown {
        println!("  {line}");
    }
    println!(
        "  {steps} steps in {secs:.2} s ({:.3} s per step, including the extra forward solve \
         that accepts or rejects it)",
        secs / steps as f64
    );

    // A grid search on the training loss, as a check that training found its minimum.
    let grid: Vec<f64> = (0..=40)
        .map(|i| 0.05 * 60f64.powf(i as f64 / 40.0))
        .collect();
    let mut best = (f64::NAN, f64::INFINITY);
    for &l in &grid {
        let loss = solve_all(data, l)?.loss;
        if loss < best.1 {
            best = (l, loss);
        }
    }
    println!(
        "  grid search over λ ∈ [0.05, 3] (41 values): best λ = {:.4}, loss {:.4e}",
        best.0, best.1
    );
    let noisy_mse = mse(&data.noisy, &data.clean);
    println!(
        "training MSE: noisy input {noisy_mse:.4e} → denoised with learned λ {:.4e}",
        sol.loss
    );
    if let Some(test) = test {
        let before = solve_all(test, history[0].0)?.loss;
        let after = solve_all(test, lambda)?.loss;
        println!(
            "held-out MSE: noisy input {:.4e}, λ = {} {before:.4e}, learned λ = {lambda:.4} {after:.4e}",
            mse(&test.noisy, &test.clean),
            history[0].0
        );
    }
    println!();
    Ok(())
}

// ------------------------------------------------------------------------------------
// Data
// ------------------------------------------------------------------------------------

fn gauss(rng: &mut StdRng) -> f64 {
    let (u, v): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// `count` piecewise-constant signals of length `n` (pieces of 10–60 samples, levels
/// uniform in [−2, 2]) with Gaussian noise of standard deviation SIGMA.
fn make_data(rng: &mut StdRng, n: usize, count: usize) -> Data {
    let mut clean = Vec::new();
    let mut noisy = Vec::new();
    for _ in 0..count {
        let mut x = DVector::zeros(n);
        let mut i = 0;
        while i < n {
            let len = rng.random_range(10..=60);
            let level = rng.random_range(-2.0..2.0);
            for v in x.rows_mut(i, len.min(n - i)).iter_mut() {
                *v = level;
            }
            i += len;
        }
        let b = &x + DVector::from_fn(n, |_, _| SIGMA * gauss(rng));
        clean.push(x);
        noisy.push(b);
    }
    Data {
        n,
        clean,
        noisy,
        d: differences(n),
    }
}

/// The (n−1)×n first-difference operator `(Dx)ᵢ = x_{i+1} − xᵢ`.
fn differences(n: usize) -> CsrMatrix<f64> {
    let mut coo = CooMatrix::new(n - 1, n);
    for i in 0..n - 1 {
        coo.push(i, i, -1.0);
        coo.push(i, i + 1, 1.0);
    }
    CsrMatrix::from(&coo)
}

/// `D v` (written out here, independent of the generated code).
fn diff(v: &DVector<f64>) -> DVector<f64> {
    DVector::from_fn(v.len() - 1, |i, _| v[i + 1] - v[i])
}

/// `Dᵀ y`: `(Dᵀy)_j = y_{j−1} − y_j` with `y_{−1} = y_{n−1} = 0`.
fn diff_t(y: &DVector<f64>) -> DVector<f64> {
    let m = y.len();
    DVector::from_fn(m + 1, |j, _| {
        (if j > 0 { y[j - 1] } else { 0.0 }) - (if j < m { y[j] } else { 0.0 })
    })
}

fn mse(a: &[DVector<f64>], b: &[DVector<f64>]) -> f64 {
    let n = a[0].len() * a.len();
    a.iter()
        .zip(b)
        .map(|(u, v)| (u - v).norm_squared())
        .sum::<f64>()
        / n as f64
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

fn bar(len: u64, msg: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("  {msg} [{bar:30}] {pos}/{len} {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(msg.to_string());
    bar
}

// ------------------------------------------------------------------------------------
// Forward: exact solves
// ------------------------------------------------------------------------------------

/// Exact solutions for every signal at one λ.
struct Solved {
    /// Primal solutions x*.
    x: Vec<DVector<f64>>,
    /// Dual solutions y* (the fixed points of the rule).
    y: Vec<DVector<f64>>,
    loss: f64,
    /// Largest ‖U(y*) − y*‖∞ over the signals.
    residual: f64,
    seconds: f64,
}

fn solve_all(data: &Data, lambda: f64) -> Result<Solved, FoldError> {
    let t = Instant::now();
    let x: Vec<DVector<f64>> = data
        .noisy
        .iter()
        .map(|b| DVector::from_vec(tv_denoise(b.as_slice(), lambda)))
        .collect();
    let seconds = t.elapsed().as_secs_f64();
    let y: Vec<DVector<f64>> = data
        .noisy
        .iter()
        .zip(&x)
        .map(|(b, x)| dual_from_primal(b, x, lambda))
        .collect();
    let mut residual = 0.0f64;
    for (yi, b) in y.iter().zip(&data.noisy) {
        let step = tv_dual_step(yi, lambda, b, &data.d, ALPHA);
        residual = residual.max((step - yi).amax());
    }
    if residual.is_nan() || residual > 1e-9 {
        // Never expected (Condat's algorithm is exact); guard the gradients anyway.
        return Err(FoldError::NotConverged {
            iterations: 0,
            residual,
            tol: 1e-9,
        });
    }
    let loss = mse(&x, &data.clean);
    Ok(Solved {
        x,
        y,
        loss,
        residual,
        seconds,
    })
}

/// The dual solution from the primal one: `x = b − Dᵀy` with `(Dᵀy)_j = y_{j−1} − y_j`
/// gives `y_j = y_{j−1} − (b_j − x_j)`, `y_{−1} = 0` (clamped against round-off).
fn dual_from_primal(b: &DVector<f64>, x: &DVector<f64>, lambda: f64) -> DVector<f64> {
    let mut acc = 0.0;
    DVector::from_fn(b.len() - 1, |j, _| {
        acc -= b[j] - x[j];
        acc.clamp(-lambda, lambda)
    })
}

/// Exact 1-D TV denoising `argmin ½‖x − b‖² + λ Σ|x_{i+1} − x_i|` by L. Condat's direct
/// algorithm ("A direct algorithm for 1D total variation denoising", IEEE SPL 2013):
/// a single left-to-right sweep that keeps the range of admissible values of the current
/// segment and backtracks to the last position where a jump is forced.
fn tv_denoise(input: &[f64], lambda: f64) -> Vec<f64> {
    let width = input.len();
    let mut out = vec![0.0; width];
    if width == 0 {
        return out;
    }
    // Write `v` on out[k0..=last] and advance k0 past it.
    let fill = |out: &mut [f64], k0: &mut usize, last: usize, v: f64| {
        while *k0 <= last {
            out[*k0] = v;
            *k0 += 1;
        }
    };
    let (mut k, mut k0) = (0usize, 0usize);
    // Dual variable bounds of the current segment and its value range [vmin, vmax].
    let (mut umin, mut umax) = (lambda, -lambda);
    let (mut vmin, mut vmax) = (input[0] - lambda, input[0] + lambda);
    // Last positions where umax = −λ and umin = λ.
    let (mut kplus, mut kminus) = (0usize, 0usize);
    loop {
        while k == width - 1 {
            // Right boundary.
            if umin < 0.0 {
                // vmin is too high: negative jump.
                fill(&mut out, &mut k0, kminus, vmin);
                k = k0;
                kminus = k0;
                vmin = input[k0];
                umin = lambda;
                umax = vmin + umin - vmax;
            } else if umax > 0.0 {
                // vmax is too low: positive jump.
                fill(&mut out, &mut k0, kplus, vmax);
                k = k0;
                kplus = k0;
                vmax = input[k0];
                umax = -lambda;
                umin = vmax + umax - vmin;
            } else {
                vmin += umin / (k - k0 + 1) as f64;
                fill(&mut out, &mut k0, k, vmin);
                return out;
            }
        }
        umin += input[k + 1] - vmin;
        if umin < -lambda {
            // Negative jump necessary.
            fill(&mut out, &mut k0, kminus, vmin);
            k = k0;
            kminus = k0;
            kplus = k0;
            vmin = input[k0];
            vmax = vmin + 2.0 * lambda;
            umin = lambda;
            umax = -lambda;
            continue;
        }
        umax += input[k + 1] - vmax;
        if umax > lambda {
            // Positive jump necessary.
            fill(&mut out, &mut k0, kplus, vmax);
            k = k0;
            kminus = k0;
            kplus = k0;
            vmax = input[k0];
            vmin = vmax - 2.0 * lambda;
            umin = lambda;
            umax = -lambda;
            continue;
        }
        // No jump: extend the segment.
        k += 1;
        if umin >= lambda {
            kminus = k;
            vmin += (umin - lambda) / (kminus - k0 + 1) as f64;
            umin = lambda;
        }
        if umax <= -lambda {
            kplus = k;
            vmax += (umax + lambda) / (kplus - k0 + 1) as f64;
            umax = -lambda;
        }
    }
}

// ------------------------------------------------------------------------------------
// Backward: folded and unrolled
// ------------------------------------------------------------------------------------

/// `∂L/∂y` for `L = Σ‖x − x_true‖²/(S n)` and `x = b − Dᵀy`: `−D (2 (x − x_true)/(S n))`.
fn loss_grad_y(x: &DVector<f64>, clean: &DVector<f64>, scale: f64) -> DVector<f64> {
    -diff(&((x - clean) * (2.0 * scale)))
}

/// The folded `dL/dλ` at the exact solutions, summed over the signals; the stats of the
/// last signal's solve.
fn folded_gradient(
    data: &Data,
    sol: &Solved,
    lambda: f64,
    opts: &BackwardOptions,
) -> Result<(f64, SolveStats), FoldError> {
    let scale = 1.0 / (data.n * data.clean.len()) as f64;
    let mut total = 0.0;
    let mut last = None;
    for s in 0..data.clean.len() {
        let g = loss_grad_y(&sol.x[s], &data.clean[s], scale);
        let (grads, stats) = tv_dual_step::backward_with_stats(
            &sol.y[s],
            lambda,
            &data.noisy[s],
            &data.d,
            ALPHA,
            &g,
            opts,
        )?;
        total += grads.lambda;
        last = Some(stats);
    }
    Ok((total, last.expect("at least one signal")))
}

/// `dL/dλ` by unrolling K projected-gradient steps from y = 0 (the loss at `x_K`).
fn unrolled_gradient(
    data: &Data,
    lambda: f64,
    k: usize,
    bar: &ProgressBar,
) -> Result<f64, FoldError> {
    let scale = 1.0 / (data.n * data.clean.len()) as f64;
    let mut total = 0.0;
    for s in 0..data.clean.len() {
        let b = &data.noisy[s];
        // The generated step: the body's `d.transpose() * y` would copy Dᵀ every step.
        let consts = tv_dual_step::Consts {
            b: b.clone(),
            d: data.d.clone(),
            alpha: ALPHA,
        };
        let params = tv_dual_step::Params { lambda };
        let ys = fold_runtime::iterates(
            |y| <tv_dual_step::Rule as FoldRule>::step(&params, &consts, y),
            DVector::zeros(data.n - 1),
            k,
        )?;
        let yk = ys.last().expect("K + 1 iterates");
        let xk = b - diff_t(yk);
        let g = loss_grad_y(&xk, &data.clean[s], scale);
        let grads = unrolled_backward(
            &ys,
            |y| Ok(tv_dual_step::linearize(y, lambda, b, &data.d, ALPHA)),
            &g,
        )?;
        total += grads.lambda;
        bar.inc(1);
    }
    Ok(total)
}
