use fold_runtime::prelude::*;

#[fold(state = x, params(c))]
fn step<T: Copy>(x: &DVector<f64>, c: &DVector<f64>) -> DVector<f64> {
    x + c
}

fn main() {}
