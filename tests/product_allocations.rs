//! Generated products allocate only what they return: once a thread has computed a product,
//! computing it again takes every intermediate array's storage from the buffers the last
//! call handed back. Counted by a global allocator that tallies this thread's allocations
//! (its own test binary, so that no other test's allocator is replaced).

mod common;

use common::*;
use fold_runtime::nalgebra_sparse::{CooMatrix, CsrMatrix};
use fold_runtime::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting the allocations of threads that ask for it.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn tally() {
    if COUNTING.with(Cell::get) {
        COUNT.with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: every call is forwarded to `System` unchanged; the tally touches only
// const-initialized thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        tally();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        tally();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        tally();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The allocations `f` makes on this thread, after two warm-up calls, and its value.
fn allocations<T>(mut f: impl FnMut() -> T) -> (usize, T) {
    drop(f());
    drop(f());
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (COUNT.with(Cell::get), out)
}

/// Asserts that each product of `lin` allocates at most its result's arrays (`grads`
/// arrays for the parameter products), and that the values did not change with reuse.
fn assert_products_allocate_only_results<P: Linearized>(
    name: &str,
    lin: &P,
    v: &DVector<f64>,
    grads: usize,
) {
    let fresh = lin.vjp_state(v);
    let (n, out) = allocations(|| lin.vjp_state(v));
    assert!(n <= 1, "{name}: vjp_state made {n} allocations");
    assert_eq!(out, fresh, "{name}: vjp_state changed on reuse");
    let (n, out) = allocations(|| lin.jvp_state(v));
    assert!(n <= 1, "{name}: jvp_state made {n} allocations");
    assert_eq!(out, lin.jvp_state(v));
    let (n, _) = allocations(|| lin.vjp_params(v));
    assert!(n <= grads, "{name}: vjp_params made {n} allocations");
    let tangent = lin.vjp_params(v);
    let (n, _) = allocations(|| lin.jvp_params(&tangent));
    assert!(n <= 1, "{name}: jvp_params made {n} allocations");
    if let Some(f) = lin.factored() {
        let (n, out) = allocations(|| f.inner_vjp_state(v));
        assert!(n <= 1, "{name}: inner_vjp_state made {n} allocations");
        assert_eq!(out, f.inner_vjp_state(v));
        let (n, _) = allocations(|| f.inner_vjp_params(v));
        assert!(n <= grads, "{name}: inner_vjp_params made {n} allocations");
    }
}

#[fold(state = x, params(c))]
fn box_qp(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
    let grad = q * x + c;
    clamp(&(x - grad * alpha), 0.0, 1.0)
}

#[fold(state = x, params(w, lam))]
fn logistic_gd(
    x: &DVector<f64>,
    w: &DVector<f64>,
    lam: f64,
    a: &DMatrix<f64>,
    eta: f64,
) -> DVector<f64> {
    let r = sigmoid(&(a * x)) - w;
    x - (a.transpose() * r + x * lam) * eta
}

#[fold(state = x, params(c, p))]
fn wavy_box(
    x: &DVector<f64>,
    c: &DVector<f64>,
    p: &DVector<f64>,
    q: &DMatrix<f64>,
    alpha: f64,
) -> DVector<f64> {
    let g = q * x + c + p.component_mul(&sin(x));
    clamp(&(x - g * alpha), -1.0, 1.0)
}

#[fold(state = z, params(y))]
fn tv_dual(
    z: &DVector<f64>,
    y: &DVector<f64>,
    d: &CsrMatrix<f64>,
    tau: f64,
    lam: f64,
) -> DVector<f64> {
    clamp(&(z - d * (d.transpose() * z - y) * tau), -lam, lam)
}

#[fold(state = x, params(a, c))]
fn sylvester(x: &DMatrix<f64>, a: &DMatrix<f64>, c: &DMatrix<f64>) -> DMatrix<f64> {
    a * x * a.transpose() * 0.5 + c
}

#[fold(state = x, params(p, c))]
fn newton(x: &DVector<f64>, p: &DMatrix<f64>, c: &DVector<f64>) -> DVector<f64> {
    let s = sigmoid(x);
    let grad = p * x + c + &s;
    let h = p + DMatrix::from_diagonal(&(&s - s.component_mul(&s)));
    x - linsolve(&h, &grad)
}

#[fold(state = x, params(mu))]
fn simplex_pgd(
    x: &DVector<f64>,
    mu: &DVector<f64>,
    sigma: &DMatrix<f64>,
    alpha: f64,
) -> DVector<f64> {
    proj_simplex(&(x - (sigma * x - mu) * alpha), 1.0)
}

#[fold(state = z, params(b, s))]
fn equilibrium(z: &DVector<f64>, b: &DVector<f64>, s: f64, w: &DMatrix<f64>) -> DVector<f64> {
    let y = w * z + b;
    softmax(&y) * 0.5 + tanh(&(relu(&y) * s)) + y.add_scalar(0.1 * y.max() + 0.2 * y.mean())
}

#[test]
fn dense_products_allocate_only_their_results() {
    let mut r = rng(11);
    for n in [10, 150] {
        let q = spd(&mut r, n, 0.5);
        let alpha = 0.9 / lambda_max(&q);
        let c = normal_vec(&mut r, n);
        let x = normal_vec(&mut r, n).map(|v| (v * 0.6 + 0.5).clamp(0.0, 1.0));
        let v = normal_vec(&mut r, n);
        let lin = box_qp::linearize(&x, &c, &q, alpha);
        assert_products_allocate_only_results("box_qp", &lin, &v, 1);

        let a = normal_mat(&mut r, n, n) / (n as f64).sqrt();
        let w = normal_vec(&mut r, n).map(|v| v.abs().min(1.0));
        let lin = logistic_gd::linearize(&x, &w, 0.1, &a, 0.2);
        assert_products_allocate_only_results("logistic_gd", &lin, &v, 1);

        let p = normal_vec(&mut r, n) * 0.3;
        let lin = wavy_box::linearize(&x, &c, &p, &q, alpha);
        assert_products_allocate_only_results("wavy_box", &lin, &v, 2);

        let pm = &q * 0.5;
        let lin = newton::linearize(&x, &pm, &c);
        assert_products_allocate_only_results("newton", &lin, &v, 2);

        let xs = x.map(|v| v.max(0.0)) / x.map(|v| v.max(0.0)).sum().max(1e-9);
        let lin = simplex_pgd::linearize(&xs, &c, &q, alpha);
        assert_products_allocate_only_results("simplex_pgd", &lin, &v, 1);

        let w3 = &a * 0.3;
        let lin = equilibrium::linearize(&x, &c, 0.7, &w3);
        assert_products_allocate_only_results("equilibrium", &lin, &v, 1);
    }
}

#[test]
fn sparse_products_allocate_only_their_results() {
    let mut r = rng(12);
    let n = 400;
    let mut coo = CooMatrix::new(n - 1, n);
    for e in 0..n - 1 {
        coo.push(e, e, -1.0);
        coo.push(e, e + 1, 1.0);
    }
    let d = CsrMatrix::from(&coo);
    let y = normal_vec(&mut r, n);
    let z = normal_vec(&mut r, n - 1).map(|v| (v * 0.4).clamp(-0.5, 0.5));
    let v = normal_vec(&mut r, n - 1);
    let lin = tv_dual::linearize(&z, &y, &d, 0.25, 0.5);
    assert_products_allocate_only_results("tv_dual", &lin, &v, 1);
}

#[test]
fn matrix_state_products_allocate_only_their_results() {
    let mut r = rng(13);
    let (a, c, x) = (
        normal_mat(&mut r, 14, 14) * 0.1,
        normal_mat(&mut r, 14, 14),
        normal_mat(&mut r, 14, 14),
    );
    let v = normal_vec(&mut r, 196);
    let lin = sylvester::linearize(&x, &a, &c);
    assert_products_allocate_only_results("sylvester", &lin, &v, 2);
}
