use fold_runtime::prelude::*;

#[fold(state = x, params(c, b))]
fn step(x: &DVector<f64>, c: &DVector<f64>) -> DVector<f64> {
    x + c
}

fn main() {}
