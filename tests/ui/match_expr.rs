use fold_runtime::prelude::*;

#[fold(state = x, params(c))]
fn step(x: &DVector<f64>, c: &DVector<f64>, alpha: f64) -> DVector<f64> {
    let scale = match alpha > 1.0 {
        true => 1.0,
        false => alpha,
    };
    x - c * scale
}

fn main() {}
