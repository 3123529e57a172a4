use fold_runtime::prelude::*;

#[fold(state = x, params(c))]
fn step(x: &DVector<f64>, c: &DVector<f64>) -> DVector<f64> {
    porj_box(&(x + c), 0.0, 1.0)
}

fn main() {}
