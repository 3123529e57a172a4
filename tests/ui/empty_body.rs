use fold_runtime::prelude::*;

#[fold(state = x)]
fn step(x: &DVector<f64>) -> DVector<f64> {}

fn main() {}
