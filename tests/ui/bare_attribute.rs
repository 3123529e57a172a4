use fold_runtime::prelude::*;

#[fold]
fn step(x: &DVector<f64>) -> DVector<f64> {
    x * 0.5
}

fn main() {}
