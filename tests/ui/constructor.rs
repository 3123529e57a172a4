use fold_runtime::prelude::*;

#[fold(state = x, params(c))]
fn step(x: &DVector<f64>, c: &DVector<f64>) -> DVector<f64> {
    let ones = DVector::from_element(3, 1.0);
    x + c + ones
}

fn main() {}
