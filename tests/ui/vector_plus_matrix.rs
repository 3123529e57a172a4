use fold_runtime::prelude::*;

#[fold(state = x, params(c))]
fn step(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>) -> DVector<f64> {
    let y = x + q;
    y + c
}

fn main() {}
