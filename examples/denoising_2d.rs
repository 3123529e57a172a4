//! Learning the weight of 2-D total-variation denoising (a 512 × 512 image) through the
//! folded dual projected-gradient step, against unrolling.
//!
//! ```sh
//! cargo run --release --example denoising_2d            # 512 × 512, writes denoising_2d.png
//! cargo run --release --example denoising_2d -- --n 128 # a quicker run
//! ```
//!
//! The rule is the 1-D example's (`y ← clamp(y + α D(b − Dᵀy), −λ, λ)`, `x = b − Dᵀy`)
//! with `D` the horizontal and vertical differences of the grid (a `CsrMatrix`, α = 1/8).
//! The forward is FISTA with gradient restart on the dual, warm-started across training
//! steps, to `‖U(y) − y‖∞ ≤ 1e-9`. The backward is the generated one: its reduced system
//! `α (D Dᵀ)_FF` on the free edges is the Gram matrix of a graph's edges, which the runtime
//! solves on a spanning forest of the free edges. That matrix is singular — the free edges
//! contain cycles — but the system is consistent and the gradient of a loss on `x` unique;
//! the forest's rows are a nonsingular subsystem that solves it.
//!
//! We learn λ by gradient descent on `ln λ` for the mean squared error against the clean
//! image, and write the clean, noisy, initially and finally denoised images to a PNG.

use fold_runtime::nalgebra_sparse::CooMatrix;
use fold_runtime::prelude::*;
use plotters::prelude::*;
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

/// Step of the dual gradient: ‖DDᵀ‖ < 8 on a grid.
const ALPHA: f64 = 0.125;
/// Noise level.
const SIGMA: f64 = 0.3;
/// Forward tolerance on `‖U(y) − y‖∞`.
const TOL: f64 = 1e-9;

/// Horizontal then vertical differences on an `n × n` grid (pixel `r·n + c`).
fn grid_differences(n: usize) -> CsrMatrix<f64> {
    let m = 2 * n * (n - 1);
    let mut coo = CooMatrix::new(m, n * n);
    let mut e = 0;
    for r in 0..n {
        for c in 0..n - 1 {
            coo.push(e, r * n + c, -1.0);
            coo.push(e, r * n + c + 1, 1.0);
            e += 1;
        }
    }
    for r in 0..n - 1 {
        for c in 0..n {
            coo.push(e, r * n + c, -1.0);
            coo.push(e, (r + 1) * n + c, 1.0);
            e += 1;
        }
    }
    CsrMatrix::from(&coo)
}

/// 12 random rectangles and disks on a zero background, and the image plus noise.
fn make_image(rng: &mut StdRng, n: usize) -> (DVector<f64>, DVector<f64>) {
    let mut x = DVector::zeros(n * n);
    for k in 0..12 {
        let level = rng.random_range(-1.5..1.5);
        let (cr, cc) = (rng.random_range(0..n) as f64, rng.random_range(0..n) as f64);
        let size = rng.random_range(0.05..0.25) * n as f64;
        for r in 0..n {
            for c in 0..n {
                let (dr, dc) = (r as f64 - cr, c as f64 - cc);
                let inside = if k % 2 == 0 {
                    dr.abs() < size && dc.abs() < 0.6 * size
                } else {
                    dr * dr + dc * dc < size * size
                };
                if inside {
                    x[r * n + c] = level;
                }
            }
        }
    }
    let normal = |rng: &mut StdRng| {
        let (u, v): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    };
    let b = DVector::from_fn(n * n, |i, _| x[i] + SIGMA * normal(rng));
    (x, b)
}

/// One step of the rule through its generated code (`d.transpose() * y` in the body
/// would copy `Dᵀ` on every call; the generated step reads `D` transposed in place).
fn step(
    k: &tv_dual_step::Consts,
    lambda: f64,
    y: &DVector<f64>,
) -> Result<DVector<f64>, FoldError> {
    <tv_dual_step::Rule as FoldRule>::step(&tv_dual_step::Params { lambda }, k, y)
}

/// The dual fixed point by FISTA with gradient restart from `start`, and the iterations.
fn forward(
    k: &tv_dual_step::Consts,
    lambda: f64,
    start: &DVector<f64>,
) -> Result<(DVector<f64>, usize), FoldError> {
    let mut y = start.map(|v| v.clamp(-lambda, lambda));
    let mut v = y.clone();
    let mut t: f64 = 1.0;
    for it in 1..=20_000 {
        let next = step(k, lambda, &v)?;
        // Restart when the step points against the momentum.
        let restart = (&v - &next).dot(&(&next - &y)) > 0.0;
        let t_next = if restart {
            1.0
        } else {
            (1.0 + (1.0 + 4.0 * t * t).sqrt()) / 2.0
        };
        v = if restart {
            next.clone()
        } else {
            &next + (&next - &y) * ((t - 1.0) / t_next)
        };
        y = next;
        t = t_next;
        if it % 20 == 0 && (step(k, lambda, &y)? - &y).amax() <= TOL {
            return Ok((y, it));
        }
    }
    Err(FoldError::NotConverged {
        iterations: 20_000,
        residual: (step(k, lambda, &y)? - &y).amax(),
        tol: TOL,
    })
}

/// Mean squared error of `x = b − Dᵀy` against the clean image.
fn loss(y: &DVector<f64>, b: &DVector<f64>, d: &CsrMatrix<f64>, clean: &DVector<f64>) -> f64 {
    (b - d.transpose() * y - clean).norm_squared() / clean.len() as f64
}

/// `∂L/∂y = −D (2 (x − x_true) / n)`.
fn loss_grad_y(
    y: &DVector<f64>,
    b: &DVector<f64>,
    d: &CsrMatrix<f64>,
    clean: &DVector<f64>,
) -> DVector<f64> {
    let x = b - d.transpose() * y;
    -(d * ((x - clean) * (2.0 / clean.len() as f64)))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--n")
        .and_then(|i| args.get(i + 1))
        .map_or(Ok(512), |s| s.parse())?;
    let t0 = Instant::now();
    println!("2-D total-variation denoising of a {n} × {n} image: learn λ through the folded step");
    println!("what #[fold] derived (tv_dual_step::DERIVATIVES):");
    for line in tv_dual_step::DERIVATIVES.lines() {
        println!("    {line}");
    }
    let mut rng = StdRng::seed_from_u64(512);
    let (clean, b) = make_image(&mut rng, n);
    let d = grid_differences(n);
    let m = d.nrows();
    let consts = tv_dual_step::Consts {
        b: b.clone(),
        d: d.clone(),
        alpha: ALPHA,
    };

    // --- The gradient at a fixed λ: folded, finite differences, unrolled.
    let lambda = 0.1;
    let t = Instant::now();
    let (y, iters) = forward(&consts, lambda, &DVector::zeros(m))?;
    let fwd = t.elapsed().as_secs_f64();
    let g = loss_grad_y(&y, &b, &d, &clean);
    let t = Instant::now();
    let (grads, stats) = tv_dual_step::backward_with_stats(
        &y,
        lambda,
        &b,
        &d,
        ALPHA,
        &g,
        &BackwardOptions::default(),
    )?;
    let bwd = t.elapsed().as_secs_f64();
    println!(
        "forward (FISTA from 0): {iters} iterations, {fwd:.2} s; folded backward: {:?} on |F| = {} of {m} edges, {:.1} ms",
        stats.method,
        stats.system_dim,
        bwd * 1e3
    );
    let h = 1e-4 * lambda;
    let (yp, _) = forward(&consts, lambda + h, &y)?;
    let (ym, _) = forward(&consts, lambda - h, &y)?;
    let fd = (loss(&yp, &b, &d, &clean) - loss(&ym, &b, &d, &clean)) / (2.0 * h);
    println!("dL/dλ at λ = {lambda}:");
    println!(
        "  {:<44} {:>13} {:>10} {:>12}",
        "method", "dL/dλ", "rel. err", "backward"
    );
    println!(
        "  {:<44} {:>13.6e} {:>10} {:>12}",
        "finite differences of the forward", fd, "—", "—"
    );
    let rel = |v: f64| (v - fd).abs() / fd.abs();
    println!(
        "  {:<44} {:>13.6e} {:>10.1e} {:>10.1} ms",
        "folded (Auto)",
        grads.lambda,
        rel(grads.lambda),
        bwd * 1e3
    );
    for k in [100, 300] {
        let t = Instant::now();
        let ys = fold_runtime::iterates(|y| step(&consts, lambda, y), DVector::zeros(m), k)?;
        let gk = loss_grad_y(ys.last().expect("iterates"), &b, &d, &clean);
        let un = unrolled_backward(
            &ys,
            |y| Ok(tv_dual_step::linearize(y, lambda, &b, &d, ALPHA)),
            &gk,
        )?;
        let secs = t.elapsed().as_secs_f64();
        let mb = (k + 1) as f64 * m as f64 * 8.0 / 1e6;
        println!(
            "  {:<44} {:>13.6e} {:>10.1e} {:>10.1} ms",
            format!("unrolled K = {k} ({mb:.0} MB of iterates)"),
            un.lambda,
            rel(un.lambda),
            secs * 1e3
        );
    }

    // --- Training: GD on θ = ln λ (bold driver), warm-started forwards.
    let mut lambda = 0.02;
    let (mut y, _) = forward(&consts, lambda, &DVector::zeros(m))?;
    let first = (lambda, y.clone());
    let mut cur = loss(&y, &b, &d, &clean);
    let g = loss_grad_y(&y, &b, &d, &clean);
    let g0 =
        tv_dual_step::backward(&y, lambda, &b, &d, ALPHA, &g, &BackwardOptions::default())?.lambda;
    let mut lr = 0.5 / (lambda * g0).abs().max(1e-300);
    println!("training (GD on ln λ from λ = {lambda}, loss {cur:.4e}):");
    let (mut t_fwd, mut t_bwd) = (0.0, 0.0);
    let steps = 6;
    for step in 1..=steps {
        let t = Instant::now();
        let g = loss_grad_y(&y, &b, &d, &clean);
        let dl =
            tv_dual_step::backward(&y, lambda, &b, &d, ALPHA, &g, &BackwardOptions::default())?
                .lambda;
        t_bwd += t.elapsed().as_secs_f64();
        let candidate = lambda * (-lr * lambda * dl).exp();
        let t = Instant::now();
        let (next, iters) = forward(&consts, candidate, &y)?;
        t_fwd += t.elapsed().as_secs_f64();
        let l = loss(&next, &b, &d, &clean);
        if l < cur {
            (lambda, y, cur) = (candidate, next, l);
            lr *= 1.2;
        } else {
            lr *= 0.5;
        }
        println!("  step {step}: λ = {lambda:.4}, loss {cur:.4e} (forward {iters} iterations)");
    }
    println!(
        "  per step: forward {:.2} s (warm-started FISTA), folded backward {:.1} ms",
        t_fwd / steps as f64,
        t_bwd / steps as f64 * 1e3
    );
    println!(
        "MSE: noisy {:.4e} → λ = {} {:.4e} → learned λ = {lambda:.4} {cur:.4e}",
        (&b - &clean).norm_squared() / (n * n) as f64,
        first.0,
        loss(&first.1, &b, &d, &clean)
    );

    // --- The picture: clean | noisy | λ₀ | learned λ.
    let path = "denoising_2d.png";
    let panels = [
        clean.clone(),
        b.clone(),
        &b - d.transpose() * &first.1,
        &b - d.transpose() * &y,
    ];
    let root = BitMapBackend::new(path, (4 * n as u32, n as u32)).into_drawing_area();
    for (p, img) in panels.iter().enumerate() {
        for r in 0..n {
            for c in 0..n {
                let v = ((img[r * n + c] + 2.0) / 4.0).clamp(0.0, 1.0);
                let g = (v * 255.0).round() as u8;
                root.draw_pixel(((p * n + c) as i32, r as i32), &RGBColor(g, g, g))?;
            }
        }
    }
    root.present()?;
    println!(
        "wrote {path} (clean | noisy | λ = {} | learned λ = {lambda:.4})",
        first.0
    );
    println!("total {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}
