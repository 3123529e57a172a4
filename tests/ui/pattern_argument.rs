use fold_runtime::prelude::*;

#[fold(state = x, params(c))]
fn step(x: &DVector<f64>, c: &DVector<f64>, (lo, hi): (f64, f64)) -> DVector<f64> {
    proj_box(&(x + c), lo, hi)
}

fn main() {}
