use fold_runtime::prelude::*;

#[fold(state = (x, z, u), params(c))]
fn admm(
    x: &DVector<f64>,
    z: &DVector<f64>,
    u: &DVector<f64>,
    c: &DVector<f64>,
) -> (DVector<f64>, DVector<f64>) {
    let _ = u;
    (x + c, z + c)
}

fn main() {}
