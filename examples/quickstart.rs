//! Quickstart: differentiate a box-constrained QP solved by projected gradient.
//!
//! ```sh
//! cargo run --release --example quickstart
//! ```
//!
//! One projected-gradient step is written as a plain function and annotated with
//! `#[fold]`; the macro generates its derivatives at compile time. We solve the QP
//! forward, run the folded backward pass for a loss `L = gᵀx*`, and check the gradient
//! `dL/dc` against finite differences of the whole solver and against the closed form
//! `−Q_FF⁻¹ g_F` on the free set `F`.

use fold_runtime::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One projected-gradient step for  min ½xᵀQx + cᵀx  s.t.  0 ≤ x ≤ 1.
#[fold(state = x, params(c))]
fn pgd_step(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
    let grad = q * x + c;
    proj_box(&(x - grad * alpha), 0.0, 1.0)
}

fn main() -> Result<(), FoldError> {
    // Built-in data: a random positive definite Q, a linear term c and a loss direction g.
    let n = 40;
    let mut rng = StdRng::seed_from_u64(7);
    let mut normal = move || -> f64 {
        let (u, v): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    };
    let m = DMatrix::from_fn(n, n, |_, _| normal());
    let q = (m.transpose() * &m) / n as f64 + DMatrix::identity(n, n) * 0.1;
    let c = DVector::from_fn(n, |_, _| 2.0 * normal());
    let g = DVector::from_fn(n, |_, _| normal());
    let alpha = 1.0 / q.clone().symmetric_eigen().eigenvalues.max();

    // Forward: iterate the step to its fixed point x* (the solution of the QP).
    let fwd = ForwardOptions {
        tol: 1e-15,
        max_iter: 100_000,
        anderson: None,
    };
    let sol = pgd_step::solve(&DVector::zeros(n), &c, &q, alpha, &fwd)?;
    let x = sol.x;
    println!(
        "forward: {} iterations to a fixed point (last step {:.1e})",
        sol.iterations, sol.residual
    );

    // Backward: the folded gradient dL/dc for L = gᵀx*.
    let (grads, stats) =
        pgd_step::backward_with_stats(&x, &c, &q, alpha, &g, &BackwardOptions::default())?;
    println!(
        "backward: {:?}, {} unknowns (of {n}), residual {:.1e}",
        stats.method, stats.system_dim, stats.residual
    );

    // Check 1: the closed form −Q_FF⁻¹ g_F on the free set F = {i : 0 < zᵢ < 1}.
    let z = &x - (&q * &x + &c) * alpha;
    let free: Vec<usize> = (0..n).filter(|&i| 0.0 < z[i] && z[i] < 1.0).collect();
    let qff = DMatrix::from_fn(free.len(), free.len(), |i, j| q[(free[i], free[j])]);
    let gf = DVector::from_fn(free.len(), |i, _| g[free[i]]);
    let s = qff.lu().solve(&gf).ok_or(FoldError::Singular)?;
    let mut closed = DVector::zeros(n);
    for (k, &i) in free.iter().enumerate() {
        closed[i] = -s[k];
    }
    let err_closed = (&grads.c - &closed).norm() / closed.norm();

    // Check 2: central finite differences of the whole forward solve.
    let loss = |c: &DVector<f64>| -> Result<f64, FoldError> {
        Ok(g.dot(&pgd_step::solve(&DVector::zeros(n), c, &q, alpha, &fwd)?.x))
    };
    let h = 1e-6;
    let mut fd = DVector::zeros(n);
    for i in 0..n {
        let (mut cp, mut cm) = (c.clone(), c.clone());
        cp[i] += h;
        cm[i] -= h;
        fd[i] = (loss(&cp)? - loss(&cm)?) / (2.0 * h);
    }
    let err_fd = (&grads.c - &fd).norm() / fd.norm();

    println!();
    println!(
        "free set: {} of {n} coordinates strictly inside the box",
        free.len()
    );
    println!("dL/dc vs closed form −Q_FF⁻¹ g_F : relative error {err_closed:.1e}");
    println!("dL/dc vs finite differences      : relative error {err_fd:.1e}");

    println!("\n--- pgd_step::DERIVATIVES (what the macro derived and simplified) ---");
    print!("{}", pgd_step::DERIVATIVES);
    println!("\n--- pgd_step::SOURCE (first lines of the generated code) ---");
    let start = pgd_step::SOURCE.find("fn stage").unwrap_or(0);
    for line in pgd_step::SOURCE[start..].lines().take(22) {
        println!("{line}");
    }
    println!("    …");
    let st = &pgd_step::STATS;
    println!("\n--- pgd_step::STATS ---");
    println!(
        "e-graph: {} nodes, {} classes, {} iterations, stopped: {}",
        st.egraph_nodes, st.egraph_classes, st.iterations, st.stop_reason
    );
    println!(
        "flops of one Φᵀv at n = {n}: {:.0} before simplification, {:.0} after",
        st.vjp_before.flops(n as f64),
        st.vjp_after.flops(n as f64)
    );
    println!(
        "reduced backward generated: {}; expansion took {} µs",
        st.reduced, st.expansion_micros
    );
    Ok(())
}
