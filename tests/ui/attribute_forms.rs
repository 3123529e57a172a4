use fold_runtime::prelude::*;

// Every malformed key is reported at once.
#[fold(state(x), params = c, primitive(shrink))]
fn step(x: &DVector<f64>, c: &DVector<f64>) -> DVector<f64> {
    x + c
}

fn main() {}
