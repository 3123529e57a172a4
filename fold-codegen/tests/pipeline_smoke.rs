//! Prints the expansion of a rule: a debugging aid kept as a smoke test.
use quote::quote;

#[test]
fn polyhedron_rule_expands() {
    let e = fold_codegen::try_expand(
        quote!(state = y, params(p)),
        quote! {
            fn ncvx_step(y: &DVector<f64>, p: &DVector<f64>, q: &DMatrix<f64>, a: &DMatrix<f64>, b: &DVector<f64>, g: &DMatrix<f64>, h: &DVector<f64>, alpha: f64) -> DVector<f64> {
                let grad = q * y + p.component_mul(&cos(y));
                proj_polyhedron(&(y - grad * alpha), a, b, g, h)
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    println!("{}\n{}", e.derivatives, e.source);
}
