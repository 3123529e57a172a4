use fold_runtime::prelude::*;

#[fold(state = x, params(c))]
fn step(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>) -> DVector<f64> {
    let f = q.cholesky();
    let inv = q.try_inverse();
    x - c
}

fn main() {}
