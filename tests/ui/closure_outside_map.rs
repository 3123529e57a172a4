use fold_runtime::prelude::*;

#[fold(state = x, params(c))]
fn step(x: &DVector<f64>, c: &DVector<f64>) -> DVector<f64> {
    let half = |v: &DVector<f64>| v * 0.5;
    half(&(x + c))
}

fn main() {}
