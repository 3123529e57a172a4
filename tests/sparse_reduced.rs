//! The sparse reduced backward (rules with `CsrMatrix` constants ending in a projection)
//! against the full-system solvers, the dense reduced solve of the same rule with a dense
//! `D`, the closed form of total-variation denoising (component averages), finite
//! differences, and the reference gradients of `../shared/benchdata-sparse/`.

use fold_runtime::nalgebra_sparse::CooMatrix;
use fold_runtime::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// TV-denoising dual step with a sparse difference operator.
#[fold(state = p, params(y))]
fn tv_sparse(
    p: &DVector<f64>,
    y: &DVector<f64>,
    d: &CsrMatrix<f64>,
    alpha: f64,
    lam: f64,
) -> DVector<f64> {
    clamp(&(p - d * (d.transpose() * p - y) * alpha), -lam, lam)
}

/// The same step with a dense `D` (the dense reduced path).
#[fold(state = p, params(y))]
fn tv_dense(
    p: &DVector<f64>,
    y: &DVector<f64>,
    d: &DMatrix<f64>,
    alpha: f64,
    lam: f64,
) -> DVector<f64> {
    clamp(&(p - d * (d.transpose() * p - y) * alpha), -lam, lam)
}

/// A nonlinear graph step: a diagonal (tanh′) between the sparse factors of `M`.
#[fold(state = p, params(y))]
fn graph_tanh(
    p: &DVector<f64>,
    y: &DVector<f64>,
    d: &CsrMatrix<f64>,
    alpha: f64,
    lam: f64,
) -> DVector<f64> {
    clamp(
        &(p - d * (tanh(&(d.transpose() * p)) - y) * alpha),
        -lam,
        lam,
    )
}

/// A damped step: sums, signs and several scalings of the sparse factors in `M`.
#[fold(state = p, params(y))]
fn tv_damped(
    p: &DVector<f64>,
    y: &DVector<f64>,
    d: &CsrMatrix<f64>,
    alpha: f64,
    beta: f64,
    lam: f64,
) -> DVector<f64> {
    let step = p - d * ((d.transpose() * p) * beta - y) * alpha;
    clamp(&(p * 0.5 + step * 0.5), -lam, lam)
}

/// Edges of a path (1-D) or an `r × c` grid (horizontal edges, then vertical): `(from, to)`.
fn edges(shape: &[usize]) -> (usize, Vec<(usize, usize)>) {
    match *shape {
        [n] => (n, (0..n - 1).map(|e| (e, e + 1)).collect()),
        [r, c] => {
            let mut e = Vec::new();
            for i in 0..r {
                for j in 0..c - 1 {
                    e.push((i * c + j, i * c + j + 1));
                }
            }
            for i in 0..r - 1 {
                for j in 0..c {
                    e.push((i * c + j, (i + 1) * c + j));
                }
            }
            (r * c, e)
        }
        _ => unreachable!("1-D or 2-D"),
    }
}

fn difference_matrix(n: usize, e: &[(usize, usize)]) -> (CsrMatrix<f64>, DMatrix<f64>) {
    let mut coo = CooMatrix::new(e.len(), n);
    let mut dense = DMatrix::zeros(e.len(), n);
    for (k, &(a, b)) in e.iter().enumerate() {
        coo.push(k, a, -1.0);
        coo.push(k, b, 1.0);
        dense[(k, a)] = -1.0;
        dense[(k, b)] = 1.0;
    }
    (CsrMatrix::from(&coo), dense)
}

/// Mean of `g` over each connected component of (nodes, free edges).
fn component_means(
    n: usize,
    e: &[(usize, usize)],
    free: &[bool],
    g: &DVector<f64>,
) -> DVector<f64> {
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    for (k, &(a, b)) in e.iter().enumerate() {
        if free[k] {
            let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
            parent[ra] = rb;
        }
    }
    let mut sum = vec![0.0; n];
    let mut count = vec![0usize; n];
    for i in 0..n {
        let r = find(&mut parent, i);
        sum[r] += g[i];
        count[r] += 1;
    }
    DVector::from_fn(n, |i, _| {
        let r = find(&mut parent, i);
        sum[r] / count[r] as f64
    })
}

struct Case {
    n: usize,
    e: Vec<(usize, usize)>,
    d: CsrMatrix<f64>,
    dd: DMatrix<f64>,
    y: DVector<f64>,
    p: DVector<f64>,
    g: DVector<f64>,
    alpha: f64,
    lam: f64,
    free: Vec<bool>,
}

/// A random piecewise-constant signal on `shape`, its dual fixed point by the rule's own
/// forward solve, or `None` when strict complementarity fails (margin < 1e-7).
fn case(shape: &[usize], seed: u64) -> Option<Case> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (n, e) = edges(shape);
    let (d, dd) = difference_matrix(n, &e);
    let level: Vec<f64> = (0..4).map(|_| rng.random_range(-1.0..1.0)).collect();
    let y = DVector::from_fn(n, |i, _| {
        level[(i * 4) / n] + 0.3 * rng.random_range(-1.0..1.0)
    });
    let g = DVector::from_fn(n, |_, _| rng.random_range(-1.0..1.0));
    let alpha = if shape.len() == 1 { 0.25 } else { 0.125 };
    let lam = 0.15;
    let opts = ForwardOptions {
        tol: 1e-14,
        max_iter: 2_000_000,
        ..ForwardOptions::default()
    };
    let sol = tv_sparse::solve(&DVector::zeros(e.len()), &y, &d, alpha, lam, &opts).ok()?;
    let p = sol.x;
    let z = &p - (&dd * (dd.transpose() * &p - &y)) * alpha;
    let margin = z
        .iter()
        .map(|v| (v.abs() - lam).abs())
        .fold(f64::INFINITY, f64::min);
    if margin < 1e-7 {
        return None;
    }
    let free = z.iter().map(|v| v.abs() < lam).collect();
    Some(Case {
        n,
        e,
        d,
        dd,
        y,
        p,
        g,
        alpha,
        lam,
        free,
    })
}

fn rel(a: &DVector<f64>, b: &DVector<f64>) -> f64 {
    (a - b).norm() / b.norm().max(1e-300)
}

fn grad_with(c: &Case, method: Method) -> (DVector<f64>, SolveStats) {
    let cot = -(&c.dd * &c.g);
    let opts = BackwardOptions {
        method,
        tol: 1e-12,
        max_iter: 100_000,
    };
    let (gr, st) = tv_sparse::backward_with_stats(&c.p, &c.y, &c.d, c.alpha, c.lam, &cot, &opts)
        .unwrap_or_else(|e| panic!("{method:?}: {e}"));
    (gr.y + &c.g, st)
}

fn check_cases(shape: &[usize], singular_expected: bool) {
    let mut tested = 0;
    let mut singular_seen = false;
    for seed in 0..60 {
        if tested == 8 {
            break;
        }
        let Some(c) = case(shape, seed) else {
            continue;
        };
        tested += 1;
        let closed = component_means(c.n, &c.e, &c.free, &c.g);
        let (auto, st) = grad_with(&c, Method::Auto);
        assert_eq!(
            st.method,
            Method::Direct,
            "the sparse reduced solve is direct"
        );
        assert_eq!(st.system_dim, c.free.iter().filter(|&&f| f).count());
        assert!(
            rel(&auto, &closed) < 1e-9,
            "seed {seed}: auto vs closed form {}",
            rel(&auto, &closed)
        );
        let (gm, _) = grad_with(&c, Method::Gmres { restart: 50 });
        assert!(
            rel(&gm, &closed) < 1e-7,
            "seed {seed}: gmres vs closed form {}",
            rel(&gm, &closed)
        );
        // The dense reduced path of the same rule.
        let cot = -(&c.dd * &c.g);
        let (dense, dst) = tv_dense::backward_with_stats(
            &c.p,
            &c.y,
            &c.dd,
            c.alpha,
            c.lam,
            &cot,
            &BackwardOptions::default(),
        )
        .expect("dense reduced");
        assert!(
            rel(&(dense.y + &c.g), &auto) < 1e-9,
            "seed {seed}: dense reduced vs sparse"
        );
        singular_seen |= dst.null_space_dim.is_some_and(|k| k > 0);
    }
    assert!(
        tested >= 5,
        "only {tested} strictly complementary instances"
    );
    assert_eq!(
        singular_seen, singular_expected,
        "singular reduced systems seen: {singular_seen}"
    );
}

#[test]
fn one_dimensional_sparse_reduced_solve_matches_dense_krylov_and_closed_form() {
    check_cases(&[40], false);
}

#[test]
fn two_dimensional_singular_consistent_reduced_solve_matches_closed_form() {
    check_cases(&[7, 6], true);
}

#[test]
fn derivatives_show_the_sparse_assembly() {
    assert!(
        tv_sparse::DERIVATIVES.contains("assembled sparse"),
        "{}",
        tv_sparse::DERIVATIVES
    );
    const { assert!(tv_sparse::STATS.reduced) };
    assert!(!tv_dense::DERIVATIVES.contains("assembled sparse"));
}

#[test]
fn a_diagonal_between_sparse_factors_is_assembled_and_matches_finite_differences() {
    assert!(
        graph_tanh::DERIVATIVES.contains("assembled sparse"),
        "{}",
        graph_tanh::DERIVATIVES
    );
    let shape = [5, 5];
    let (n, e) = edges(&shape);
    let (d, _) = difference_matrix(n, &e);
    let mut rng = StdRng::seed_from_u64(11);
    let y = DVector::from_fn(n, |_, _| rng.random_range(-0.5..0.5));
    let (alpha, lam) = (0.1, 0.05);
    let opts = ForwardOptions {
        tol: 1e-14,
        max_iter: 1_000_000,
        ..ForwardOptions::default()
    };
    let solve = |y: &DVector<f64>| {
        graph_tanh::solve(&DVector::zeros(e.len()), y, &d, alpha, lam, &opts)
            .expect("forward")
            .x
    };
    let p = solve(&y);
    let wts = DVector::from_fn(e.len(), |_, _| rng.random_range(-1.0..1.0));
    let bopts = |m| BackwardOptions {
        method: m,
        tol: 1e-12,
        max_iter: 100_000,
    };
    let (auto, st) =
        graph_tanh::backward_with_stats(&p, &y, &d, alpha, lam, &wts, &bopts(Method::Auto))
            .unwrap();
    assert_eq!(st.method, Method::Direct);
    let full = graph_tanh::backward(
        &p,
        &y,
        &d,
        alpha,
        lam,
        &wts,
        &bopts(Method::Gmres { restart: 40 }),
    )
    .unwrap();
    assert!(rel(&auto.y, &full.y) < 1e-8, "{}", rel(&auto.y, &full.y));
    let h = 1e-6;
    for i in [0, 7, 13, 24] {
        let mut yp = y.clone();
        yp[i] += h;
        let mut ym = y.clone();
        ym[i] -= h;
        let fd = (wts.dot(&solve(&yp)) - wts.dot(&solve(&ym))) / (2.0 * h);
        assert!(
            (fd - auto.y[i]).abs() < 1e-6,
            "y[{i}]: fd {fd} vs {}",
            auto.y[i]
        );
    }
}

#[test]
fn scaled_and_summed_sparse_terms_match_the_full_solve() {
    assert!(
        tv_damped::DERIVATIVES.contains("assembled sparse"),
        "{}",
        tv_damped::DERIVATIVES
    );
    // 1-D: the reduced matrix is nonsingular, so any cotangent is consistent (in 2-D a
    // cotangent off the range is rightly `Singular`).
    let (n, e) = edges(&[30]);
    let (d, _) = difference_matrix(n, &e);
    let mut rng = StdRng::seed_from_u64(5);
    let y = DVector::from_fn(n, |_, _| rng.random_range(-0.5..0.5));
    let p = DVector::from_fn(e.len(), |_, _| rng.random_range(-0.2..0.2));
    let v = DVector::from_fn(e.len(), |_, _| rng.random_range(-1.0..1.0));
    let opts = |m| BackwardOptions {
        method: m,
        tol: 1e-12,
        max_iter: 100_000,
    };
    let (auto, st) =
        tv_damped::backward_with_stats(&p, &y, &d, 0.1, 0.7, 0.15, &v, &opts(Method::Auto))
            .unwrap();
    assert_eq!(st.method, Method::Direct);
    let full = tv_damped::backward(
        &p,
        &y,
        &d,
        0.1,
        0.7,
        0.15,
        &v,
        &opts(Method::Gmres { restart: 40 }),
    )
    .unwrap();
    assert!(rel(&auto.y, &full.y) < 1e-9, "{}", rel(&auto.y, &full.y));
}

#[test]
fn an_inconsistent_singular_sparse_reduced_system_is_an_error() {
    // On a grid the free edges contain cycles: a cotangent off the range has no adjoint.
    let (n, e) = edges(&[6, 5]);
    let (d, _) = difference_matrix(n, &e);
    let mut rng = StdRng::seed_from_u64(5);
    let y = DVector::from_fn(n, |_, _| rng.random_range(-0.5..0.5));
    let p = DVector::from_fn(e.len(), |_, _| rng.random_range(-0.1..0.1));
    let v = DVector::from_fn(e.len(), |_, _| rng.random_range(-1.0..1.0));
    let out = tv_damped::backward(&p, &y, &d, 0.1, 0.7, 0.15, &v, &BackwardOptions::default());
    assert!(matches!(out, Err(FoldError::Singular)), "{out:?}");
}

#[test]
fn every_benchdata_sparse_instance_matches_its_reference_gradient() {
    let root = fold::sparsedata::default_root();
    let Ok(list) = fold::sparsedata::list(&root) else {
        eprintln!("SKIPPED: no sparse benchmark data under {}", root.display());
        return;
    };
    if list.is_empty() {
        eprintln!("SKIPPED: no sparse benchmark data under {}", root.display());
        return;
    }
    for (_, _, dir) in list {
        let inst = fold::sparsedata::load(&dir).expect("instance");
        let cot = -(&inst.d * &inst.g);
        let (gr, st) = tv_sparse::backward_with_stats(
            &inst.p_star,
            &inst.y,
            &inst.d,
            inst.alpha,
            inst.lam,
            &cot,
            &BackwardOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", inst.name));
        let err = rel(&(gr.y + &inst.g), &inst.ref_grad);
        assert!(err <= 1e-8, "{}: rel_err {err:.1e} ({st:?})", inst.name);
        assert_eq!(st.method, Method::Direct, "{}", inst.name);
    }
}

/// A 1-D fixed point built backwards (no forward solve): `z` chosen with every `period`-th
/// coordinate beyond `λ`, `p = clamp(z)`, and `y` from `D y = (z − p)/α + D Dᵀ p` by a
/// cumulative sum.
fn chain_fixed_point(n: usize, period: usize, shift: f64) -> (CsrMatrix<f64>, [DVector<f64>; 3]) {
    let (alpha, lam) = (0.25, 0.5);
    let mut coo = CooMatrix::new(n - 1, n);
    for e in 0..n - 1 {
        coo.push(e, e, -1.0);
        coo.push(e, e + 1, 1.0);
    }
    let d = CsrMatrix::from(&coo);
    let z = DVector::from_fn(n - 1, |i, _| {
        if i % period == 0 {
            2.0 * lam
        } else {
            0.1 * ((i % 7) as f64 - 3.0) + shift
        }
    });
    let p = z.map(|v| v.clamp(-lam, lam));
    let r = (&z - &p) / alpha + &d * (d.transpose() * &p);
    let mut y = DVector::zeros(n);
    for e in 0..n - 1 {
        y[e + 1] = y[e] + r[e];
    }
    let g = DVector::from_fn(n - 1, |i, _| ((i * 31) % 17) as f64 / 17.0 - 0.5 + shift);
    (d, [p, y, g])
}

#[test]
fn large_reduced_solves_do_not_depend_on_what_ran_before_on_the_thread() {
    // Large enough that the runtime keeps its work buffers between calls: a call after
    // others (of other sizes and values) gives the same bits as one on a fresh thread.
    let run = |n: usize, period: usize, shift: f64| {
        let (d, [p, y, g]) = chain_fixed_point(n, period, shift);
        let (gr, st) =
            tv_sparse::backward_with_stats(&p, &y, &d, 0.25, 0.5, &g, &BackwardOptions::default())
                .expect("backward");
        assert_eq!(st.method, Method::Direct);
        gr.y
    };
    let fresh = std::thread::spawn(move || run(60_000, 4, 0.0))
        .join()
        .expect("thread");
    let first = run(60_000, 4, 0.0);
    let _ = run(90_000, 3, 0.05);
    let _ = run(40_000, 5, -0.02);
    let again = run(60_000, 4, 0.0);
    assert!(fresh.iter().all(|v| v.is_finite()));
    assert_eq!(first.as_slice(), fresh.as_slice());
    assert_eq!(again.as_slice(), fresh.as_slice());
}
