use fold_runtime::prelude::*;

#[fold(state = x, params(c))]
fn step(x: &DVector<f64>, c: &DVector<f64>, weights: Vec<f64>) -> DVector<f64> {
    let _ = weights;
    x + c
}

fn main() {}
