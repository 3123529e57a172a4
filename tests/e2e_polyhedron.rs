use fold_runtime::prelude::*;

#[fold(state = y, params(p))]
fn ncvx_step(
    y: &DVector<f64>,
    p: &DVector<f64>,
    q: &DMatrix<f64>,
    a: &DMatrix<f64>,
    b: &DVector<f64>,
    g: &DMatrix<f64>,
    h: &DVector<f64>,
    alpha: f64,
) -> DVector<f64> {
    let grad = q * y + p.component_mul(&cos(y));
    proj_polyhedron(&(y - grad * alpha), a, b, g, h)
}

#[test]
fn polyhedron_rule_compiles_and_runs() {
    println!("{}", ncvx_step::DERIVATIVES);
}
