//! The candle layer: its gradient equals the folded backward of every sample (any number
//! of parameters, scalar, vector and matrix, f32 and f64), central finite differences of
//! a whole pipeline (linear layer → fold layer → loss) agree with `loss.backward()`, and
//! a failing sample surfaces as a candle error carrying its index and `FoldError`.

#![allow(clippy::needless_range_loop)]

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::*;
use fold_runtime::integrations::candle::{fold_error, FoldLayer};
use fold_runtime::prelude::*;

#[fold(state = x, params(c))]
fn pgd(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
    proj_box(&(x - (q * x + c) * alpha), 0.0, 1.0)
}

/// Four parameters (more than candle's three custom-op inputs): matrix, vector, two scalars.
#[fold(state = x, params(w, b, s, t))]
fn deq(x: &DVector<f64>, w: &DMatrix<f64>, b: &DVector<f64>, s: f64, t: f64) -> DVector<f64> {
    tanh(&((w * x + b) * s)) * t
}

/// A two-block state: the layer returns the packed `(x, y)`.
#[fold(state = (x, y), params(c))]
fn heavy_ball(
    x: &DVector<f64>,
    y: &DVector<f64>,
    c: &DVector<f64>,
    q: &DMatrix<f64>,
    alpha: f64,
    beta: f64,
) -> (DVector<f64>, DVector<f64>) {
    let x_new = y - (q * y + c) * alpha;
    let y_new = &x_new + (&x_new - x) * beta;
    (x_new, y_new)
}

fn tight() -> ForwardOptions {
    ForwardOptions {
        tol: 1e-15,
        max_iter: 100_000,
        anderson: None,
    }
}

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap()
}

#[test]
fn layer_gradient_equals_the_folded_backward_of_each_sample() {
    let mut r = rng(31);
    let (n, batch) = (5, 3);
    let ws: Vec<DMatrix<f64>> = (0..batch).map(|_| normal_mat(&mut r, n, n) * 0.3).collect();
    let bs: Vec<DVector<f64>> = (0..batch).map(|_| normal_vec(&mut r, n)).collect();
    let ss = [0.8, 1.1, 0.9];
    let ts = [0.7, 0.5, 0.9];
    let gs: Vec<DVector<f64>> = (0..batch).map(|_| normal_vec(&mut r, n)).collect();
    let dev = Device::Cpu;
    // (B, rows, cols) row-major, as a network would produce it.
    let w_data: Vec<f64> = ws
        .iter()
        .flat_map(|w| (0..n).flat_map(move |i| (0..n).map(move |j| w[(i, j)])))
        .collect();
    let b_data: Vec<f64> = bs.iter().flat_map(|b| b.iter().copied()).collect();
    let g_data: Vec<f64> = gs.iter().flat_map(|g| g.iter().copied()).collect();
    for dtype in [DType::F64, DType::F32] {
        let w = Var::from_tensor(
            &Tensor::from_vec(w_data.clone(), (batch, n, n), &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap(),
        )
        .unwrap();
        let b = Var::from_tensor(
            &Tensor::from_vec(b_data.clone(), (batch, n), &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap(),
        )
        .unwrap();
        let s =
            Var::from_tensor(&Tensor::new(&ss, &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
        let t = Var::from_tensor(
            &Tensor::new(&ts, &dev)
                .unwrap()
                .reshape((batch, 1))
                .unwrap()
                .to_dtype(dtype)
                .unwrap(),
        )
        .unwrap();
        let g = Tensor::from_vec(g_data.clone(), (batch, n), &dev)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let layer = FoldLayer::<deq::Rule>::new(deq::Consts {}, DVector::zeros(n))
            .with_forward_options(tight());
        let x = layer
            .forward(&[w.as_tensor(), b.as_tensor(), s.as_tensor(), t.as_tensor()])
            .unwrap();
        assert_eq!(x.dtype(), dtype);
        assert_eq!(x.dims(), &[batch, n]);
        let loss = (&x * &g).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let dw = grads
            .get(w.as_tensor())
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec3::<f64>()
            .unwrap();
        let db = rows(grads.get(b.as_tensor()).unwrap());
        let ds = grads
            .get(s.as_tensor())
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let dt = rows(grads.get(t.as_tensor()).unwrap());
        let xs = rows(&x);
        let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
        for i in 0..batch {
            let x0 = DVector::zeros(n);
            let xi = deq::solve(&x0, &ws[i], &bs[i], ss[i], ts[i], &tight())
                .unwrap()
                .x;
            for j in 0..n {
                assert!((xs[i][j] - xi[j]).abs() <= tol, "x*[{i}][{j}]");
            }
            let direct = deq::backward(
                &xi,
                &ws[i],
                &bs[i],
                ss[i],
                ts[i],
                &gs[i],
                &BackwardOptions::default(),
            )
            .unwrap();
            let close = |a: f64, b: f64, what: &str| {
                assert!(
                    (a - b).abs() <= tol * (1.0 + b.abs()),
                    "{dtype:?} {what}: {a} vs {b}"
                )
            };
            for p in 0..n {
                for q in 0..n {
                    close(dw[i][p][q], direct.w[(p, q)], "dW");
                }
                close(db[i][p], direct.b[p], "db");
            }
            close(ds[i], direct.s, "ds");
            close(dt[i][0], direct.t, "dt");
        }
        let st = layer.stats();
        assert_eq!((st.forward_samples, st.backward_samples), (batch, batch));
    }
}

#[test]
fn a_two_block_state_layer_returns_packed_blocks_and_their_folded_gradient() {
    let mut r = rng(37);
    let (n, batch) = (4, 3);
    let m = normal_mat(&mut r, n, n);
    let q = &m * m.transpose() + DMatrix::identity(n, n);
    let alpha = 0.5 / q.clone().symmetric_eigen().eigenvalues.max();
    let (beta, dev) = (0.3, Device::Cpu);
    let cs: Vec<DVector<f64>> = (0..batch).map(|_| normal_vec(&mut r, n)).collect();
    // A cotangent on both blocks of the packed state.
    let gs: Vec<DVector<f64>> = (0..batch).map(|_| normal_vec(&mut r, 2 * n)).collect();
    let flat = |v: &[DVector<f64>], w: usize| {
        let data: Vec<f64> = v.iter().flat_map(|c| c.iter().copied()).collect();
        Tensor::from_vec(data, (batch, w), &dev).unwrap()
    };
    let c = Var::from_tensor(&flat(&cs, n)).unwrap();
    let consts = heavy_ball::Consts {
        q: q.clone(),
        alpha,
        beta,
    };
    let x0 = (DVector::zeros(n), DVector::zeros(n));
    let layer =
        FoldLayer::<heavy_ball::Rule>::new(consts, x0.clone()).with_forward_options(tight());
    let x = layer.forward(&[c.as_tensor()]).unwrap();
    assert_eq!(x.dims(), &[batch, 2 * n]);
    let loss = (&x * &flat(&gs, 2 * n)).unwrap().sum_all().unwrap();
    let dc = rows(loss.backward().unwrap().get(c.as_tensor()).unwrap());
    let xs = rows(&x);
    for i in 0..batch {
        let sol = heavy_ball::solve(&x0.0, &x0.1, &cs[i], &q, alpha, beta, &tight()).unwrap();
        let (xi, yi) = heavy_ball::unpack(&sol.x, [n, n]);
        for j in 0..2 * n {
            assert!((xs[i][j] - sol.x[j]).abs() <= 1e-12, "packed x*[{i}][{j}]");
        }
        let direct = heavy_ball::backward(
            &xi,
            &yi,
            &cs[i],
            &q,
            alpha,
            beta,
            &gs[i],
            &BackwardOptions::default(),
        )
        .unwrap();
        for j in 0..n {
            let (a, b) = (dc[i][j], direct.c[j]);
            assert!(
                (a - b).abs() <= 1e-10 * (1.0 + b.abs()),
                "dc[{i}][{j}]: {a} vs {b}"
            );
        }
    }
}

/// `L(W, b) = Σ_i tgt_iᵀ x*(W z_i + b)` in plain nalgebra, through the module's solve.
fn pipeline_loss(
    w: &DMatrix<f64>,
    b: &DVector<f64>,
    z: &[DVector<f64>],
    tgt: &[DVector<f64>],
    q: &DMatrix<f64>,
    alpha: f64,
) -> f64 {
    z.iter()
        .zip(tgt)
        .map(|(zi, ti)| {
            let c = w * zi + b;
            let x = pgd::solve(&DVector::zeros(c.len()), &c, q, alpha, &tight())
                .unwrap()
                .x;
            ti.dot(&x)
        })
        .sum()
}

#[test]
fn finite_differences_of_a_linear_then_fold_pipeline() {
    let mut r = rng(32);
    let (n, p, batch) = (6, 3, 4);
    let q = spd(&mut r, n, 0.5);
    let alpha = 1.0 / lambda_max(&q);
    let w = normal_mat(&mut r, n, p) * 0.4;
    let b = normal_vec(&mut r, n) * 0.2;
    let z: Vec<DVector<f64>> = (0..batch).map(|_| normal_vec(&mut r, p)).collect();
    let tgt: Vec<DVector<f64>> = (0..batch).map(|_| normal_vec(&mut r, n)).collect();
    let dev = Device::Cpu;
    let w_rm: Vec<f64> = (0..n)
        .flat_map(|i| (0..p).map(move |j| (i, j)))
        .map(|(i, j)| w[(i, j)])
        .collect();
    let wv = Var::from_vec(w_rm, (n, p), &dev).unwrap();
    let bv = Var::from_vec(b.iter().copied().collect::<Vec<_>>(), n, &dev).unwrap();
    let zt = Tensor::from_vec(
        z.iter().flat_map(|v| v.iter().copied()).collect::<Vec<_>>(),
        (batch, p),
        &dev,
    )
    .unwrap();
    let tt = Tensor::from_vec(
        tgt.iter()
            .flat_map(|v| v.iter().copied())
            .collect::<Vec<_>>(),
        (batch, n),
        &dev,
    )
    .unwrap();
    let c = zt
        .matmul(&wv.as_tensor().t().unwrap())
        .unwrap()
        .broadcast_add(bv.as_tensor())
        .unwrap();
    let layer = FoldLayer::<pgd::Rule>::new(
        pgd::Consts {
            q: q.clone(),
            alpha,
        },
        DVector::zeros(n),
    )
    .with_forward_options(tight());
    let x = layer.forward(&[&c]).unwrap();
    let loss = (&x * &tt).unwrap().sum_all().unwrap();
    let l_candle = loss.to_scalar::<f64>().unwrap();
    assert!((l_candle - pipeline_loss(&w, &b, &z, &tgt, &q, alpha)).abs() < 1e-12);
    let grads = loss.backward().unwrap();
    let dw = rows(grads.get(wv.as_tensor()).unwrap());
    let db = grads.get(bv.as_tensor()).unwrap().to_vec1::<f64>().unwrap();
    let h = 1e-6;
    let mut nonzero = 0;
    for i in 0..n {
        for j in 0..p {
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp[(i, j)] += h;
            wm[(i, j)] -= h;
            let fd = (pipeline_loss(&wp, &b, &z, &tgt, &q, alpha)
                - pipeline_loss(&wm, &b, &z, &tgt, &q, alpha))
                / (2.0 * h);
            assert!(
                (dw[i][j] - fd).abs() < 1e-6,
                "dW[{i}][{j}]: {} vs {fd}",
                dw[i][j]
            );
            nonzero += usize::from(fd.abs() > 1e-3);
        }
        let (mut bp, mut bm) = (b.clone(), b.clone());
        bp[i] += h;
        bm[i] -= h;
        let fd = (pipeline_loss(&w, &bp, &z, &tgt, &q, alpha)
            - pipeline_loss(&w, &bm, &z, &tgt, &q, alpha))
            / (2.0 * h);
        assert!((db[i] - fd).abs() < 1e-6, "db[{i}]: {} vs {fd}", db[i]);
    }
    assert!(nonzero > 0, "the check must exercise non-trivial gradients");
}

#[test]
fn a_failing_sample_is_a_candle_error_carrying_its_index() {
    let n = 3;
    let layer = FoldLayer::<pgd::Rule>::new(
        pgd::Consts {
            q: DMatrix::identity(n, n),
            alpha: 0.5,
        },
        DVector::zeros(n),
    );
    let c = Tensor::from_vec(
        vec![0.1, 0.2, 0.3, 0.1, f64::NAN, 0.3],
        (2, n),
        &Device::Cpu,
    )
    .unwrap();
    let e = layer.forward(&[&c]).unwrap_err();
    let be = fold_error(&e).expect("carries the BatchError");
    assert_eq!(be.index, 1);
    assert!(matches!(be.error, FoldError::NonFinite { .. }));
    // Wrong parameter count and rank are errors too.
    assert!(layer.forward(&[&c, &c]).is_err());
    let bad = Tensor::zeros((2, 1, 1, 3), DType::F64, &Device::Cpu).unwrap();
    assert!(fold_error(&layer.forward(&[&bad]).unwrap_err()).is_some());
}
