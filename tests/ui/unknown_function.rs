use fold_runtime::prelude::*;

fn shrink(v: &DVector<f64>) -> DVector<f64> {
    v * 0.5
}

#[fold(state = x, params(c))]
fn step(x: &DVector<f64>, c: &DVector<f64>) -> DVector<f64> {
    shrink(&(x + c))
}

fn main() {}
