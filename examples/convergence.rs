//! The convergence theorem of folded optimization, made visible.
//!
//! ```sh
//! cargo run --release --example convergence
//! ```
//!
//! Kotary, Dinh & Fioretto (IJCAI 2023) show that backpropagating through `K` unrolled
//! iterations of a solver `x ← U(x, θ)` is a linear fixed-point iteration (LFPI)
//! `w ← Φ_kᵀ w + g` whose Jacobians `Φ_k = ∂U/∂x (x_k)` are taken at the moving iterates:
//! its gradient error decays at the forward iteration's linear rate and *lags* the
//! forward error. Folding solves the same linear system `(I − Φ)ᵀ w = g` at the fixed
//! point `x*` instead — by LFPI (the same rate, but started from the solution) or by a
//! Krylov method (far fewer products).
//!
//! Two projected-gradient problems with a random SPD `Q` (n = 100), loss `L = gᵀx*`:
//!
//! * **convex box-QP** `min ½xᵀQx + cᵀx, 0 ≤ x ≤ 1`, parameter `c`. `Φ` depends on `x`
//!   only through the active set, so once that settles unrolling *is* LFPI at `x*`;
//! * **nonconvex QP** `min ½xᵀQx + pᵀ sin x, −1 ≤ x ≤ 1`, parameter `p`. `Φ` varies
//!   smoothly with `x`: the unrolled recursion inherits the forward error, and its lag
//!   grows with depth (error ≈ K ρ^K rather than ρ^K).
//!
//! For every iteration count we record the forward error ‖x_k − x*‖/‖x*‖ (k steps from
//! x₀ = 0), the unrolled gradient error ‖∇_K − ∇*‖/‖∇*‖ (reverse through x₀ … x_K), and
//! the folded LFPI and GMRES errors after j products with `Φᵀ` at `x*`; `∇*` is the exact
//! folded gradient `Ψᵀ (I − Φ)⁻ᵀ g` (dense Jacobians from the macro, nalgebra's LU).
//! Writes `out/convergence.csv` and `out/convergence.png` (log-scale errors) and prints
//! the fitted linear rates.

use fold_runtime::prelude::*;
use fold_runtime::unrolled::unrolled_backward_each;
use plotters::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::error::Error;
use std::io::Write;
use std::time::Instant;

/// Projected gradient on the convex box-QP  min ½xᵀQx + cᵀx  s.t.  0 ≤ x ≤ 1.
#[fold(state = x, params(c))]
fn boxqp_step(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
    proj_box(&(x - (q * x + c) * alpha), 0.0, 1.0)
}

/// Projected gradient on the nonconvex QP  min ½xᵀQx + pᵀ sin x  s.t.  −1 ≤ x ≤ 1.
#[fold(state = x, params(p))]
fn ncvx_step(x: &DVector<f64>, p: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
    proj_box(&(x - (q * x + p.component_mul(&cos(x))) * alpha), -1.0, 1.0)
}

/// Errors below this are plotted at this value (an exact zero has no logarithm).
const FLOOR: f64 = 1e-16;
/// The forward iteration is followed until its error reaches this.
const TARGET: f64 = 1e-14;
/// Where the linear rates are fitted: the asymptotic regime, above round-off.
const FIT: (f64, f64) = (1e-11, 1e-3);

/// The error curves of one problem (index = iterations / depth / products).
struct Curves {
    name: &'static str,
    /// Why the lag behaves as it does for this problem.
    note: &'static str,
    forward: Vec<f64>,
    unrolled: Vec<f64>,
    lfpi: Vec<f64>,
    gmres: Vec<f64>,
    /// Spectral radius of Φ at x*.
    rho: f64,
    free: usize,
    /// ‖U(x*) − x*‖∞ after polishing.
    fixed_point_residual: f64,
    /// The default backward (Method::Auto): method, unknowns, relative error.
    auto: (Method, usize, f64),
    unroll_seconds: f64,
}

fn main() -> Result<(), Box<dyn Error>> {
    let t0 = Instant::now();
    let n = 100;
    let mut rng = StdRng::seed_from_u64(2023);
    let mut normal = move || -> f64 {
        let (u, v): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    };
    // Built-in data: Q = MᵀM/n + 0.3 I (eigenvalues ≈ 0.3 … 4.3) and a loss direction g.
    let m = DMatrix::from_fn(n, n, |_, _| normal());
    let q = (m.transpose() * &m) / n as f64 + DMatrix::identity(n, n) * 0.3;
    let q = (&q + q.transpose()) * 0.5;
    let lmax = q.clone().symmetric_eigen().eigenvalues.max();
    let g = DVector::from_fn(n, |_, _| normal());

    // Box-QP: c = −Q x₀ + noise with x₀ spread over [−0.5, 1.5], so that about half the
    // coordinates end strictly inside the box and the others on a bound.
    let x0 = DVector::from_fn(n, |i, _| -0.5 + 2.0 * (i as f64 + 0.5) / n as f64);
    let c = -(&q * &x0) + DVector::from_fn(n, |_, _| 0.1 * normal());
    let alpha = 1.0 / lmax;
    let boxqp = {
        let step = |x: &DVector<f64>| boxqp_step(x, &c, &q, alpha);
        let phi = |x: &DVector<f64>| boxqp_step::jacobians(x, &c, &q, alpha).state;
        let xstar = fixed_point_exact(&step, &phi, n)?;
        let xs = forward_iterates(&step, &xstar);
        let jac = boxqp_step::jacobians(&xstar, &c, &q, alpha);
        let grad_star = exact_gradient(&jac.state, &jac.c, &g)?;
        let (auto, st) = boxqp_step::backward_with_stats(
            &xstar,
            &c,
            &q,
            alpha,
            &g,
            &BackwardOptions::default(),
        )?;
        let mut cv = analyse(
            &xs,
            &xstar,
            &g,
            &grad_star,
            |x| boxqp_step::linearize(x, &c, &q, alpha),
            |gr: &boxqp_step::Grads| gr.c.clone(),
            jac.state,
        )?;
        cv.name = "convex box-QP";
        cv.note = "(Φ depends on x only through the active set: once that settles, unrolling \
                   is LFPI at x*, and the lag stays bounded.)";
        cv.free = count_free(&xstar, 0.0, 1.0);
        cv.fixed_point_residual = (step(&xstar) - &xstar).amax();
        cv.auto = (st.method, st.system_dim, rel_err(&auto.c, &grad_star));
        cv
    };

    // Nonconvex QP: p of moderate size keeps x* a strict local minimum (PGD converges).
    let p = DVector::from_fn(n, |_, _| 1.5 * normal());
    let alpha_p = 1.0 / (lmax + p.amax());
    let ncvx = {
        let step = |x: &DVector<f64>| ncvx_step(x, &p, &q, alpha_p);
        let phi = |x: &DVector<f64>| ncvx_step::jacobians(x, &p, &q, alpha_p).state;
        let xstar = fixed_point_exact(&step, &phi, n)?;
        let xs = forward_iterates(&step, &xstar);
        let jac = ncvx_step::jacobians(&xstar, &p, &q, alpha_p);
        let grad_star = exact_gradient(&jac.state, &jac.p, &g)?;
        let (auto, st) = ncvx_step::backward_with_stats(
            &xstar,
            &p,
            &q,
            alpha_p,
            &g,
            &BackwardOptions::default(),
        )?;
        let mut cv = analyse(
            &xs,
            &xstar,
            &g,
            &grad_star,
            |x| ncvx_step::linearize(x, &p, &q, alpha_p),
            |gr: &ncvx_step::Grads| gr.p.clone(),
            jac.state,
        )?;
        cv.name = "nonconvex QP";
        cv.note = "(Φ varies smoothly with x: the unrolled recursion carries the forward \
                   error, error ≈ K ρ^K, and the lag grows with depth.)";
        cv.free = count_free(&xstar, -1.0, 1.0);
        cv.fixed_point_residual = (step(&xstar) - &xstar).amax();
        cv.auto = (st.method, st.system_dim, rel_err(&auto.p, &grad_star));
        cv
    };
    let cases = [boxqp, ncvx];

    // Output files.
    std::fs::create_dir_all("out")?;
    let csv_path = "out/convergence.csv";
    write_csv(csv_path, &cases)?;
    let png_path = "out/convergence.png";
    let font = register_system_font();
    plot(png_path, &cases, font.is_some())?;

    for cv in &cases {
        summary(cv, n);
    }
    println!("wrote {csv_path} and {png_path}");
    if font.is_none() {
        println!(
            "(no TrueType font found — set FOLD_FONT=/path/to/font.ttf for labels; the \
             PNG has none: blue = forward, red = unrolled, green = folded LFPI, black = GMRES)"
        );
    }
    println!("total {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}

fn rel_err(a: &DVector<f64>, b: &DVector<f64>) -> f64 {
    (a - b).norm() / b.norm()
}

/// The reference `∇* = Ψᵀ (I − Φ)⁻ᵀ g` from the dense Jacobians and nalgebra's LU
/// (independent of the runtime's solvers).
fn exact_gradient(
    phi: &DMatrix<f64>,
    psi: &DMatrix<f64>,
    g: &DVector<f64>,
) -> Result<DVector<f64>, Box<dyn Error>> {
    let n = phi.nrows();
    let a = (DMatrix::identity(n, n) - phi).transpose();
    let w = a.lu().solve(g).ok_or("I − Φ is singular at x*")?;
    Ok(psi.tr_mul(&w))
}

fn count_free(x: &DVector<f64>, lo: f64, hi: f64) -> usize {
    x.iter().filter(|&&v| lo < v && v < hi).count()
}

/// The fixed point to machine precision: iterate from 0 until the active set has settled
/// (tol 1e-12), then polish with Newton steps `x ← x + (I − Φ)⁻¹ (U(x) − x)` using the
/// generated Jacobian Φ — so the error curves are not floored by a solver tolerance.
fn fixed_point_exact(
    step: &dyn Fn(&DVector<f64>) -> DVector<f64>,
    phi: &dyn Fn(&DVector<f64>) -> DMatrix<f64>,
    n: usize,
) -> Result<DVector<f64>, Box<dyn Error>> {
    let opts = ForwardOptions {
        tol: 1e-12,
        max_iter: 100_000,
        anderson: None,
    };
    let mut x = fixed_point(|x| Ok(step(x)), DVector::zeros(n), &opts)?.x;
    for _ in 0..5 {
        let r = step(&x) - &x;
        if r.amax() <= 1e-16 {
            break;
        }
        let a = DMatrix::identity(n, n) - phi(&x);
        x += a
            .lu()
            .solve(&r)
            .ok_or("singular I − Φ while polishing x*")?;
        x = step(&x);
    }
    Ok(x)
}

/// `x₀ = 0, x₁, …`: until ‖x_k − x*‖/‖x*‖ ≤ TARGET, then as many steps again, so that
/// the (lagging) unrolled gradient reaches its floor too.
fn forward_iterates(
    step: &dyn Fn(&DVector<f64>) -> DVector<f64>,
    xstar: &DVector<f64>,
) -> Vec<DVector<f64>> {
    let xnorm = xstar.norm();
    let mut xs = vec![DVector::zeros(xstar.len())];
    let mut extra = None;
    while xs.len() < 20_000 {
        let last = xs.last().unwrap();
        if extra.is_none() && (last - xstar).norm() <= TARGET * xnorm {
            extra = Some(xs.len());
        }
        if extra.is_some_and(|k| xs.len() >= 2 * k) {
            break;
        }
        let next = step(last);
        xs.push(next);
    }
    xs
}

/// Forward, unrolled, folded-LFPI and folded-GMRES error curves of one problem.
fn analyse<'a, L, G>(
    xs: &'a [DVector<f64>],
    xstar: &'a DVector<f64>,
    g: &DVector<f64>,
    grad_star: &DVector<f64>,
    linearize: impl Fn(&'a DVector<f64>) -> L,
    grad_of: impl Fn(&G) -> DVector<f64>,
    phi_star: DMatrix<f64>,
) -> Result<Curves, FoldError>
where
    L: Linearized<Grads = G>,
    G: Cotangent,
{
    let rel = |v: &DVector<f64>| rel_err(v, grad_star);
    let xnorm = xstar.norm();
    let forward: Vec<f64> = xs.iter().map(|x| (x - xstar).norm() / xnorm).collect();

    // Unrolled gradients ∇_K for every K = 1 … k_max (one reverse pass per K);
    // ∇₀ = 0 (x₀ does not depend on the parameter), error 1.
    let t = Instant::now();
    let each = unrolled_backward_each(xs, |x| Ok(linearize(x)), |_| g.clone())?;
    let unroll_seconds = t.elapsed().as_secs_f64();
    let unrolled: Vec<f64> = std::iter::once(1.0)
        .chain(each.iter().map(|gr| rel(&grad_of(gr))))
        .collect();

    // Folded LFPI at x*: w₀ = 0, w_{j+1} = Φᵀ w_j + g, gradient estimate Ψᵀ w_j.
    let lin = linearize(xstar);
    let mut w = DVector::zeros(g.len());
    let mut lfpi = vec![1.0];
    while *lfpi.last().unwrap() > FLOOR && lfpi.len() < xs.len() {
        w = lin.vjp_state(&w) + g;
        lfpi.push(rel(&grad_of(&lin.vjp_params(&w))));
    }

    // Folded GMRES at x*: the j-th iterate of (I − Φᵀ) w = g (unrestarted).
    let gmres = gmres_errors(
        &lin,
        g,
        &|w: &DVector<f64>| rel(&grad_of(&lin.vjp_params(w))),
        120,
    );

    let rho = phi_star
        .complex_eigenvalues()
        .iter()
        .map(|z| z.norm())
        .fold(0.0, f64::max);
    Ok(Curves {
        name: "",
        note: "",
        forward,
        unrolled,
        lfpi,
        gmres,
        rho,
        free: 0,
        fixed_point_residual: 0.0,
        auto: (Method::Auto, 0, 0.0),
        unroll_seconds,
    })
}

fn summary(cv: &Curves, n: usize) {
    let k_max = cv.forward.len() - 1;
    println!(
        "=== {} (n = {n}, {} of {n} coordinates strictly inside the box) ===",
        cv.name, cv.free
    );
    println!(
        "x* polished to ‖U(x*) − x*‖∞ = {:.1e}; spectral radius of Φ at x*: ρ = {:.4}",
        cv.fixed_point_residual, cv.rho
    );
    let rate = |e: &[f64]| fit_rate(e, FIT).map_or("—".to_string(), |r| format!("{r:.4}"));
    println!(
        "observed linear rates (fit of log error over {:.0e}…{:.0e}): forward {}, unrolled {}, \
         folded LFPI {}",
        FIT.0,
        FIT.1,
        rate(&cv.forward),
        rate(&cv.unrolled),
        rate(&cv.lfpi)
    );
    println!("iterations (forward steps / unrolling depth K / products with Φᵀ at x*) to reach an error:");
    println!(
        "  {:>8}  {:>8}  {:>9}  {:>12}  {:>13}",
        "error", "forward", "unrolled", "folded LFPI", "folded GMRES"
    );
    for level in [1e-2, 1e-4, 1e-6, 1e-8, 1e-10, 1e-12] {
        let cell = |e: &[f64]| first_below(e, level).map_or("—".to_string(), |k| k.to_string());
        println!(
            "  {:>8.0e}  {:>8}  {:>9}  {:>12}  {:>13}",
            level,
            cell(&cv.forward),
            cell(&cv.unrolled),
            cell(&cv.lfpi),
            cell(&cv.gmres)
        );
    }
    let lags: Vec<String> = [1e-2, 1e-4, 1e-6, 1e-8, 1e-10, 1e-12]
        .iter()
        .map(|&level| {
            match (
                first_below(&cv.unrolled, level),
                first_below(&cv.forward, level),
            ) {
                (Some(u), Some(f)) => format!("{}", u as i64 - f as i64),
                _ => "—".to_string(),
            }
        })
        .collect();
    println!(
        "→ unrolling lags the forward iteration by {} steps (at the errors above).",
        lags.join(", ")
    );
    println!("  {}", cv.note);
    let at = |e: &[f64]| first_below(e, 1e-10).map_or("—".to_string(), |k| k.to_string());
    println!(
        "→ folded LFPI at x* converges at the same rate, started from the solution with no \
         stored iterates: 1e-10 after {} products (unrolling: depth {}); GMRES on the same \
         system needs {}.",
        at(&cv.lfpi),
        at(&cv.unrolled),
        at(&cv.gmres)
    );
    println!(
        "→ default backward (Method::Auto): {:?} on {} unknowns, error {:.1e}; unrolled \
         gradients for all K ≤ {k_max} took {:.2} s ({} products).",
        cv.auto.0,
        cv.auto.1,
        cv.auto.2,
        cv.unroll_seconds,
        k_max * (k_max + 1) / 2
    );
    println!();
}

/// Errors of the GMRES iterates of `(I − Φᵀ) w = g` (from `w = 0`), one per product,
/// until the error reaches FLOOR or `max_steps`; `err(w)` is the gradient error of `Ψᵀw`.
/// Plain Arnoldi with modified Gram–Schmidt; the small least-squares problem is solved
/// afresh each step (clarity over speed at n = 100).
fn gmres_errors<L: Linearized>(
    lin: &L,
    g: &DVector<f64>,
    err: &dyn Fn(&DVector<f64>) -> f64,
    max_steps: usize,
) -> Vec<f64> {
    let beta = g.norm();
    let mut basis = vec![g / beta];
    let mut h = DMatrix::<f64>::zeros(max_steps + 1, max_steps);
    let mut errs = vec![1.0];
    for j in 0..max_steps {
        let v = &basis[j];
        let mut w = v - lin.vjp_state(v);
        for (i, vi) in basis.iter().enumerate() {
            let hij = vi.dot(&w);
            w.axpy(-hij, vi, 1.0);
            h[(i, j)] = hij;
        }
        let hn = w.norm();
        h[(j + 1, j)] = hn;
        // y = argmin ‖β e₁ − H̄ y‖ over the j + 1 columns so far; w_j = V y.
        let hj = h.view((0, 0), (j + 2, j + 1)).into_owned();
        let mut rhs = DVector::zeros(j + 2);
        rhs[0] = beta;
        let Ok(y) = hj.svd(true, true).solve(&rhs, 1e-300) else {
            break;
        };
        let mut wj = DVector::zeros(g.len());
        for (yi, vi) in y.iter().zip(&basis) {
            wj.axpy(*yi, vi, 1.0);
        }
        errs.push(err(&wj));
        if *errs.last().unwrap() <= TARGET || hn <= 1e-15 * beta {
            break;
        }
        basis.push(w / hn);
    }
    errs
}

/// The first index whose error is at or below `level`.
fn first_below(errs: &[f64], level: f64) -> Option<usize> {
    errs.iter().position(|&e| e <= level)
}

/// `10^slope` of the least-squares line through `log10(error)` against the index, over
/// the points with error inside `range` (the asymptotic, linear regime).
fn fit_rate(errs: &[f64], range: (f64, f64)) -> Option<f64> {
    let pts: Vec<(f64, f64)> = errs
        .iter()
        .enumerate()
        .filter(|(_, &e)| e > range.0 && e < range.1)
        .map(|(k, &e)| (k as f64, e.log10()))
        .collect();
    if pts.len() < 3 {
        return None;
    }
    let m = pts.len() as f64;
    let (sx, sy) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / m, sy / m);
    let (sxy, sxx) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    Some(10f64.powf(sxy / sxx))
}

/// One row per problem and iteration count; a cell is empty once its curve has stopped.
fn write_csv(path: &str, cases: &[Curves]) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        f,
        "problem,k,forward_err,unrolled_err,folded_lfpi_err,folded_gmres_err"
    )?;
    for cv in cases {
        let cols = [&cv.forward, &cv.unrolled, &cv.lfpi, &cv.gmres];
        let rows = cols.iter().map(|c| c.len()).max().unwrap_or(0);
        for k in 0..rows {
            let cells: Vec<String> = cols
                .iter()
                .map(|c| c.get(k).map_or(String::new(), |e| format!("{e:.6e}")))
                .collect();
            writeln!(f, "{},{k},{}", cv.name, cells.join(","))?;
        }
    }
    f.flush()
}

/// Registers a TrueType font found on this machine with plotters (pure-Rust `ab_glyph`
/// rendering, no fontconfig): `$FOLD_FONT`, else common system locations. `None` if no
/// readable font exists (or `FOLD_FONT=none`) — the plot is then drawn without text
/// instead of failing.
fn register_system_font() -> Option<String> {
    let candidates = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
        "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
        "/usr/share/fonts/noto/NotoSans-Regular.ttf",
        "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
        "/System/Library/Fonts/Supplemental/Arial.ttf",
        "/Library/Fonts/Arial.ttf",
        "C:\\Windows\\Fonts\\arial.ttf",
    ];
    let from_env = std::env::var("FOLD_FONT").ok();
    if from_env.as_deref() == Some("none") {
        return None;
    }
    for path in from_env.iter().map(String::as_str).chain(candidates) {
        if let Ok(bytes) = std::fs::read(path) {
            // plotters keeps registered fonts for the life of the program.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return Some(path.to_string());
            }
        }
    }
    None
}

/// One panel per problem: log-scale error curves against the iteration count; text
/// only when a font was registered.
fn plot(path: &str, cases: &[Curves], text: bool) -> Result<(), Box<dyn Error>> {
    let root = BitMapBackend::new(path, (1400, 620)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, cases.len()));
    for (area, cv) in panels.iter().zip(cases) {
        let k_max = cv.forward.len() - 1;
        let mut builder = ChartBuilder::on(area);
        builder.margin(18);
        let title = format!("{}: gradient and iterate errors", cv.name);
        if text {
            builder
                .caption(&title, ("sans-serif", 22))
                .x_label_area_size(45)
                .y_label_area_size(65);
        }
        let mut chart = builder.build_cartesian_2d(0..k_max, (FLOOR..2.0).log_scale())?;
        if text {
            chart
                .configure_mesh()
                .x_desc("k  (forward steps / unrolling depth / products with Φᵀ)")
                .y_desc("relative error")
                .y_label_formatter(&|v| format!("{v:.0e}"))
                .label_style(("sans-serif", 15))
                .draw()?;
        } else {
            // plotters' mesh always lays out tick labels (and `x_labels(0)` loops forever
            // in plotters 0.3.7): draw a plain grid instead, one line per decade.
            let grey = RGBColor(210, 210, 210);
            for d in -16..=0 {
                let y = 10f64.powi(d);
                chart.draw_series(LineSeries::new([(0, y), (k_max, y)], grey))?;
            }
            for k in (0..=k_max).step_by(100) {
                chart.draw_series(LineSeries::new([(k, FLOOR), (k, 2.0)], grey))?;
            }
        }
        let series = [
            ("forward ‖x_k − x*‖", &cv.forward, BLUE),
            ("unrolled ‖∇_K − ∇*‖", &cv.unrolled, RED),
            ("folded LFPI at x*", &cv.lfpi, GREEN),
            ("folded GMRES at x*", &cv.gmres, BLACK),
        ];
        for (label, errs, color) in series {
            let pts: Vec<(usize, f64)> = errs
                .iter()
                .enumerate()
                .map(|(k, &e)| (k, e.max(FLOOR)))
                .collect();
            let drawn = chart.draw_series(LineSeries::new(pts, color.stroke_width(2)))?;
            if text {
                drawn.label(label).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            }
        }
        if text {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .label_font(("sans-serif", 15))
                .position(SeriesLabelPosition::UpperRight)
                .draw()?;
        }
    }
    root.present()?;
    Ok(())
}
