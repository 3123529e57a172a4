use fold_runtime::prelude::*;

fn shrink(v: &DVector<f64>) -> DVector<f64> {
    v * 0.5
}

// Every rejected construct of the body is reported at once, each on its own code.
#[fold(state = x, params(c))]
fn step(x: &DVector<f64>, c: &DVector<f64>, q: &DMatrix<f64>, alpha: f64) -> DVector<f64> {
    let g = q * x + c;
    let first = g[0];
    let step = if first > 0.0 { alpha } else { 0.5 * alpha };
    let h = shrink(&g) * c;
    (x - h * step).normalize()
}

fn main() {}
