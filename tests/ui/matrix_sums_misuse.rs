use fold_runtime::prelude::*;

// `column_sum` / `row_sum` are matrix reductions; a vector has `.sum()`.
#[fold(state = x, params(c))]
fn on_vector(x: &DVector<f64>, c: &DVector<f64>) -> DVector<f64> {
    x * x.column_sum().sum() + c
}

// `row_sum()` is a row (1 × ncols), as in nalgebra: transpose it to add it to a vector.
#[fold(state = x, params(m))]
fn row_plus_vector(x: &DVector<f64>, m: &DMatrix<f64>) -> DVector<f64> {
    m.row_sum() + x
}

fn main() {}
