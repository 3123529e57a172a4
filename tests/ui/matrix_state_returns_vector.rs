use fold_runtime::prelude::*;

#[fold(state = x, params(c))]
fn step(x: &DMatrix<f64>, c: &DVector<f64>) -> DMatrix<f64> {
    x * c
}

fn main() {}
