use fold_runtime::prelude::*;

#[fold(state = x, params(c))]
struct Step {
    x: DVector<f64>,
}

fn main() {}
