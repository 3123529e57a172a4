//! The sparse path at n = 10⁶ stays O(nnz) in memory: no dense |S| × |S| (8 TB here) or
//! n × n anywhere. Its own test binary, so that the peak resident set is this test's.

use fold_runtime::nalgebra_sparse::CooMatrix;
use fold_runtime::prelude::*;

#[fold(state = p, params(y))]
fn tv_step(
    p: &DVector<f64>,
    y: &DVector<f64>,
    d: &CsrMatrix<f64>,
    alpha: f64,
    lam: f64,
) -> DVector<f64> {
    clamp(&(p - d * (d.transpose() * p - y) * alpha), -lam, lam)
}

/// Peak resident set (`VmHWM`) in MiB, from /proc (Linux only).
fn peak_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[test]
fn backward_at_a_million_states_needs_memory_linear_in_nnz() {
    let n = 1_000_000;
    let mut coo = CooMatrix::new(n - 1, n);
    for e in 0..n - 1 {
        coo.push(e, e, -1.0);
        coo.push(e, e + 1, 1.0);
    }
    let d = CsrMatrix::from(&coo);
    drop(coo);
    // Choose z = p − α D(Dᵀp − y) first (every fourth coordinate beyond λ, runs of three
    // free ones between), p = clamp(z), and solve D y = (z − p)/α + D Dᵀ p for y by a
    // cumulative sum: the free set is then known.
    let (alpha, lam) = (0.25, 0.5);
    let z = DVector::from_fn(n - 1, |i, _| {
        if i % 4 == 0 {
            2.0 * lam
        } else {
            0.1 * ((i % 7) as f64 - 3.0)
        }
    });
    let p = z.map(|v| v.clamp(-lam, lam));
    let r = (&z - &p) / alpha + &d * (d.transpose() * &p);
    let mut y = DVector::zeros(n);
    for e in 0..n - 1 {
        y[e + 1] = y[e] + r[e];
    }
    let g = DVector::from_fn(n - 1, |i, _| ((i * 31) % 17) as f64 / 17.0 - 0.5);
    let before = peak_mib();
    let (grads, stats) =
        tv_step::backward_with_stats(&p, &y, &d, alpha, lam, &g, &BackwardOptions::default())
            .expect("backward");
    assert!(grads.y.iter().all(|v| v.is_finite()));
    assert_eq!(stats.method, Method::Direct);
    assert_eq!(stats.system_dim, (n - 1) - (n - 1).div_ceil(4));
    let (Some(b), Some(a)) = (before, peak_mib()) else {
        eprintln!("SKIPPED the peak-memory check: no /proc/self/status");
        return;
    };
    // Inputs are ~56 MB; the reduced matrix, its factor and the products a few times that.
    assert!(
        a - b < 600.0,
        "the backward raised the peak resident set by {:.0} MiB",
        a - b
    );
}
