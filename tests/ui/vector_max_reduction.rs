use fold_runtime::prelude::*;

#[fold(state = x, params(c))]
fn step(x: &DVector<f64>, c: &DVector<f64>) -> DVector<f64> {
    let m = (x + c).max();
    x * m
}

fn main() {}
