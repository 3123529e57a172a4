use fold_runtime::prelude::*;

// A matrix state returns the next matrix, not its flattening.
#[fold(state = x, params(a))]
fn stein(x: &DMatrix<f64>, a: &DMatrix<f64>) -> DVector<f64> {
    a * x * a.transpose()
}

// Block state: one value per block, of the block's type.
#[fold(state = (m, p), params(c))]
fn blocks(m: &DVector<f64>, p: &DMatrix<f64>, c: &DVector<f64>) -> (DVector<f64>, DVector<f64>) {
    (m + c, p * c)
}

fn main() {}
