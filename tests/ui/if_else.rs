use fold_runtime::prelude::*;

#[fold(state = x, params(c))]
fn step(x: &DVector<f64>, c: &DVector<f64>, alpha: f64) -> DVector<f64> {
    if alpha > 0.0 {
        x - c * alpha
    } else {
        x.clone()
    }
}

fn main() {}
