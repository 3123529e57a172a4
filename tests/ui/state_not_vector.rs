use fold_runtime::prelude::*;

#[fold(state = q, params(c))]
fn step(q: f64, c: &DVector<f64>) -> DVector<f64> {
    c * q
}

fn main() {}
