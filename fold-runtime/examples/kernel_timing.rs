//! Times the fused product-and-check kernel against a check followed by a product.
use fold_runtime::nalgebra::{DMatrix, DVector};
use std::time::Instant;
fn best<T>(mut f: impl FnMut() -> T) -> f64 {
    let mut b = f64::MAX;
    for _ in 0..300 {
        let t = Instant::now();
        std::hint::black_box(f());
        b = b.min(t.elapsed().as_secs_f64());
    }
    b * 1e6
}
fn main() {
    let n = 1000;
    let a = DMatrix::from_fn(n, n, |i, j| ((i * 7 + j * 3) as f64).sin());
    let x = DVector::from_fn(n, |i, _| (i as f64).cos());
    println!(
        "check + mv  : {:.1} us",
        best(|| {
            fold_runtime::__private::check::finite_matrix(&a, "a").unwrap();
            fold_runtime::__private::kernels::mv(1.0, &a, &x)
        })
    );
    println!(
        "mv (faer)   : {:.1} us",
        best(|| fold_runtime::__private::kernels::mv(1.0, &a, &x))
    );
    println!(
        "mv_checked  : {:.1} us",
        best(|| fold_runtime::__private::kernels::mv_checked(1.0, &a, &x, false, "a").unwrap())
    );
    println!(
        "check + mtv : {:.1} us",
        best(|| {
            fold_runtime::__private::check::finite_matrix(&a, "a").unwrap();
            fold_runtime::__private::kernels::mtv(1.0, &a, &x)
        })
    );
    println!(
        "mtv_checked : {:.1} us",
        best(|| fold_runtime::__private::kernels::mv_checked(1.0, &a, &x, true, "a").unwrap())
    );
}
