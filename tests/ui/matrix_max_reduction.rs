use fold_runtime::prelude::*;

#[fold(state = x, params(c))]
fn step(x: &DVector<f64>, c: &DVector<f64>, a: &DMatrix<f64>) -> DVector<f64> {
    let m = a.max();
    x * m + c
}

fn main() {}
