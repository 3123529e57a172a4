use fold_runtime::prelude::*;

#[fold(state = x, params(c))]
fn step(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>) -> DVector<f64> {
    let mut y = x + c;
    for _ in 0..3 {
        y = q * &y;
    }
    y
}

fn main() {}
