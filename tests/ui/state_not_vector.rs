use fold_runtime::prelude::*;

#[fold(state = q, params(c))]
fn step(q: &DMatrix<f64>, c: &DMatrix<f64>) -> DVector<f64> {
    (q + c).column(0).into_owned()
}

fn main() {}
