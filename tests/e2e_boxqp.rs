use fold_runtime::prelude::*;

/// One projected-gradient step for  min ½xᵀQx + cᵀx  s.t.  0 ≤ x ≤ 1.
#[fold(state = x, params(c))]
fn pgd_step(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
    let grad = q * x + c;
    proj_box(&(x - grad * alpha), 0.0, 1.0)
}

#[test]
fn prints() {
    println!("{}", pgd_step::DERIVATIVES);
    println!("{}", pgd_step::SOURCE);
}
