//! Helpers shared by the integration tests: seeded random data and independent
//! references (dense nalgebra solves written here, never the code under test).
#![allow(dead_code)]

use fold_runtime::nalgebra::{DMatrix, DVector};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn normal_vec(r: &mut StdRng, n: usize) -> DVector<f64> {
    DVector::from_fn(n, |_, _| gauss(r))
}

pub fn normal_mat(r: &mut StdRng, m: usize, n: usize) -> DMatrix<f64> {
    DMatrix::from_fn(m, n, |_, _| gauss(r))
}

/// A standard normal by Box–Muller (keeps the tests independent of rand_distr).
pub fn gauss(r: &mut StdRng) -> f64 {
    let u: f64 = r.random_range(1e-12..1.0);
    let v: f64 = r.random_range(0.0..1.0);
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// `MᵀM/n + shift·I`, exactly symmetric.
pub fn spd(r: &mut StdRng, n: usize, shift: f64) -> DMatrix<f64> {
    let m = normal_mat(r, n, n);
    let q = m.transpose() * &m / n as f64 + DMatrix::identity(n, n) * shift;
    (&q + q.transpose()) * 0.5
}

/// Largest eigenvalue of a symmetric matrix.
pub fn lambda_max(q: &DMatrix<f64>) -> f64 {
    q.clone().symmetric_eigen().eigenvalues.max()
}

/// Dense solve by nalgebra's LU (the independent reference).
pub fn dense_solve(a: &DMatrix<f64>, b: &DVector<f64>) -> DVector<f64> {
    a.clone()
        .lu()
        .solve(b)
        .expect("reference system is nonsingular")
}

/// Relative error ‖a − b‖ / max(‖b‖, tiny).
pub fn rel_err(a: &DVector<f64>, b: &DVector<f64>) -> f64 {
    (a - b).norm() / b.norm().max(1e-300)
}

/// Central finite-difference gradient of `f` at `x`.
pub fn fd_grad(f: impl Fn(&DVector<f64>) -> f64, x: &DVector<f64>, h: f64) -> DVector<f64> {
    DVector::from_fn(x.len(), |i, _| {
        let mut p = x.clone();
        let mut m = x.clone();
        p[i] += h;
        m[i] -= h;
        (f(&p) - f(&m)) / (2.0 * h)
    })
}
